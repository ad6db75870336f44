#pragma once
// Test support: a StateStore around a real one whose reads fail on demand, in the spirit of
// RocksDB's FaultInjectionTestFS. A test keeps the Faults (shared) and tells them which reads to
// fail; the store, owned by the sequencer, consults them on every read:
//   - fail_nth(n, kind): the n-th read from now (1-based), of any kind or only of `kind`, fails once;
//   - fail_key(key): every read of that key fails until clear() — a stream id (load), a dedupe key
//     (StateStore::dedupe_key), a username (name_holder) or checkpoint_key(p) (checkpoint).
// A failed read returns an io_error naming the fault and leaves the real store untouched; writes
// always pass through, counted (dedupe_written_ahead()).
//
// Thread-safe: the test configures the Faults while the sequencer thread reads through them.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

#include "state_store.h"

namespace imlog::testing {

class StoreFaults {
 public:
  enum class Read { checkpoint, load, dedupe, name, recall };

  static std::string checkpoint_key(int32_t partition) { return "checkpoint/" + std::to_string(partition); }

  void fail_nth(uint64_t n, std::optional<Read> kind = std::nullopt) {
    std::lock_guard lock(mu_);
    nth_ = n;
    nth_kind_ = kind;
  }
  void fail_key(std::string key) {
    std::lock_guard lock(mu_);
    keys_.insert(std::move(key));
  }
  void clear() {
    std::lock_guard lock(mu_);
    nth_ = 0;
    keys_.clear();
  }

  [[nodiscard]] uint64_t reads() const {
    std::lock_guard lock(mu_);
    return reads_;
  }
  [[nodiscard]] uint64_t injected() const {
    std::lock_guard lock(mu_);
    return injected_;
  }
  // Dedupe entries written by writes that carry no checkpoint (written ahead of one).
  [[nodiscard]] uint64_t dedupe_written_ahead() const {
    std::lock_guard lock(mu_);
    return written_ahead_;
  }
  // Recall entries written by writes that carry no checkpoint.
  [[nodiscard]] uint64_t recalls_written_ahead() const {
    std::lock_guard lock(mu_);
    return recalls_ahead_;
  }
  // Recall entries written with a checkpoint.
  [[nodiscard]] uint64_t recalls_with_checkpoints() const {
    std::lock_guard lock(mu_);
    return recalls_with_checkpoints_;
  }

  // Counts one write.
  void wrote(const StoreBatch& batch) {
    std::lock_guard lock(mu_);
    if (batch.checkpoints.empty()) {
      written_ahead_ += batch.dedupe.size();
      recalls_ahead_ += batch.recalls.size();
    } else {
      recalls_with_checkpoints_ += batch.recalls.size();
    }
  }

  // Counts one read; an error when it is to fail.
  Status read(Read kind, std::string_view key) {
    std::lock_guard lock(mu_);
    ++reads_;
    bool failing = keys_.contains(std::string(key));
    if (nth_ > 0 && (!nth_kind_ || *nth_kind_ == kind) && --nth_ == 0) failing = true;
    if (!failing) return {};
    ++injected_;
    return fail(std::errc::io_error, "engine state store: injected fault reading `" + printable(key) + "`");
  }

 private:
  static std::string printable(std::string_view key) {
    std::string out;
    for (char ch : key) out += (ch >= 0x20 && ch < 0x7f) ? std::string(1, ch) : "\\x" + hex(ch);
    return out;
  }
  static std::string hex(char ch) {
    constexpr char kDigits[] = "0123456789abcdef";
    auto u = static_cast<unsigned char>(ch);
    return {kDigits[u >> 4], kDigits[u & 0xf]};
  }

  mutable std::mutex mu_;
  uint64_t nth_ = 0;
  std::optional<Read> nth_kind_;
  std::set<std::string> keys_;
  uint64_t reads_ = 0;
  uint64_t injected_ = 0;
  uint64_t written_ahead_ = 0;
  uint64_t recalls_ahead_ = 0;
  uint64_t recalls_with_checkpoints_ = 0;
};

class FaultStateStore final : public StateStore {
 public:
  FaultStateStore(std::unique_ptr<StateStore> base, std::shared_ptr<StoreFaults> faults)
      : base_(std::move(base)), faults_(std::move(faults)) {}

  Result<Checkpoint> checkpoint(int32_t partition) override {
    IMLOG_TRY(faults_->read(StoreFaults::Read::checkpoint, StoreFaults::checkpoint_key(partition)));
    return base_->checkpoint(partition);
  }
  Result<bool> load(std::string_view stream, StreamState& out) override {
    IMLOG_TRY(faults_->read(StoreFaults::Read::load, stream));
    return base_->load(stream, out);
  }
  Result<std::optional<DedupeEntry>> dedupe(std::string_view key) override {
    IMLOG_TRY(faults_->read(StoreFaults::Read::dedupe, key));
    return base_->dedupe(key);
  }
  Result<std::optional<uint64_t>> name_holder(std::string_view username) override {
    IMLOG_TRY(faults_->read(StoreFaults::Read::name, username));
    return base_->name_holder(username);
  }
  Result<int64_t> dedupe_horizon() override { return base_->dedupe_horizon(); }
  Result<std::optional<RecentMessage>> recall(std::string_view stream, uint64_t message_id) override {
    IMLOG_TRY(faults_->read(StoreFaults::Read::recall, recall_key(stream, message_id)));
    return base_->recall(stream, message_id);
  }
  Result<uint64_t> recall_horizon() override { return base_->recall_horizon(); }
  Status write(const StoreBatch& batch) override {
    faults_->wrote(batch);
    return base_->write(batch);
  }

 private:
  std::unique_ptr<StateStore> base_;
  std::shared_ptr<StoreFaults> faults_;
};

}  // namespace imlog::testing
