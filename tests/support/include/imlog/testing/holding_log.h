#pragma once
// HoldingLog: a fault-injecting EventLog over a real one (the LocalLog cannot be told to delay or
// fail a write), for tests of what the engine answers while an append is not yet durable, or
// after it failed. Appends to im.events can be held back, then released (written, in order) or
// failed (never written). Thread-safe like the log it wraps.

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "imlog/engine/event_log.h"
#include "imlog/engine/streams.h"

namespace imlog::testing {

class HoldingLog final : public EventLog {
 public:
  explicit HoldingLog(EventLog& inner) : inner_(inner) {}

  void hold(bool on) {
    std::lock_guard lock(mu_);
    holding_ = on;
  }
  size_t held() const {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Appends made to `topic` through this log, held ones included.
  size_t appends_to(const std::string& topic) const {
    std::lock_guard lock(mu_);
    auto it = appends_.find(topic);
    return it == appends_.end() ? 0 : it->second;
  }
  void release() {
    for (auto& h : take_held()) inner_.append(kEventsTopic, std::move(h.records), std::move(h.done));
  }
  void fail_held() {
    for (auto& h : take_held()) {
      h.done(fail(LogErrc::unavailable, "append to im.events failed by the test", true));
    }
  }
  // The first held append fails (never written), the later ones are written in order: a log that
  // lost one batch but stored the next, already in flight (a Kafka message timing out in the
  // producer's queue while a later one is sent; librdkafka does not promise otherwise).
  void fail_first_release_rest(LogErrc why = LogErrc::unavailable) {
    auto held = take_held();
    if (held.empty()) return;
    held.front().done(fail(why, "append to im.events failed by the test", true));
    for (size_t i = 1; i < held.size(); ++i) {
      inner_.append(kEventsTopic, std::move(held[i].records), std::move(held[i].done));
    }
  }

  Status create_topic(const TopicSpec& spec) override { return inner_.create_topic(spec); }
  Result<int32_t> partition_count(std::string_view topic) override { return inner_.partition_count(topic); }
  void append(std::string_view topic, std::vector<OutRecord> records, AppendCallback done) override {
    {
      std::lock_guard lock(mu_);
      appends_[std::string(topic)]++;
      if (holding_ && topic == kEventsTopic) {
        held_.push_back(Held{std::move(records), std::move(done)});
        return;
      }
    }
    inner_.append(topic, std::move(records), std::move(done));
  }
  Result<int64_t> end_offset(const TopicPartition& p) override { return inner_.end_offset(p); }
  Result<int64_t> begin_offset(const TopicPartition& p) override { return inner_.begin_offset(p); }
  std::unique_ptr<Consumer> consumer(const ConsumerOptions& o) override { return inner_.consumer(o); }
  Status flush(std::chrono::milliseconds timeout) override { return inner_.flush(timeout); }
  [[nodiscard]] std::string describe() const override { return "holding " + inner_.describe(); }

 private:
  struct Held {
    std::vector<OutRecord> records;
    AppendCallback done;
  };
  std::vector<Held> take_held() {
    std::lock_guard lock(mu_);
    return std::exchange(held_, {});
  }

  EventLog& inner_;
  mutable std::mutex mu_;
  bool holding_ = false;
  std::vector<Held> held_;
  std::map<std::string, size_t> appends_;
};

}  // namespace imlog::testing
