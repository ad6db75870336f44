#include "imlog/engine/log_directory.h"

#include <shared_mutex>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "imlog/core/worker.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"

namespace imlog {

struct LogDirectory::State {
  explicit State(EventLog& l) : log(l) {}
  EventLog& log;
  mutable std::shared_mutex mu;
  std::unordered_map<uint64_t, UserFacts> users;
  std::unique_ptr<Consumer> reader;
  EpochFilter filter;
  std::vector<Record> batch;
  Worker worker{"directory", [this] { return follow(); }};

  void consume(const std::vector<Record>& records) {
    for (const auto& r : records) {
      auto ev = read_event(r.value);
      if (ev && filter.accept(r.partition, **ev) && !is_control_record((*ev)->event_type())) apply(**ev);
    }
  }

  // One poll past the start-up read. A retryable error (the log away) is retried with back-off and
  // logged once, not once per spin. A corrupt record is not retryable: reading it again cannot
  // help, so the directory fails, named on /readyz, as a projector stops on one.
  Status follow() {
    auto polled = reader->poll(batch, std::chrono::milliseconds(200));
    if (!polled) return fail(polled.error().with_context("directory reading im.events"));
    consume(batch);
    return {};
  }

  void apply(const fb::EventEnvelope& e) {
    if (auto* reg = e.event_as_UserRegistered()) {
      std::unique_lock lock(mu);
      users[reg->user_id()].exists = true;
    } else if (auto* set = e.event_as_SettingsUpdated()) {
      std::unique_lock lock(mu);
      UserFacts& f = users[set->user_id()];
      if (set->message_policy()) f.message_policy = *set->message_policy();
      if (set->allow_search()) f.allow_search = *set->allow_search();
    }
  }
};

LogDirectory::LogDirectory(EventLog& log) : state_(std::make_unique<State>(log)) {}
LogDirectory::~LogDirectory() { stop(); }

Status LogDirectory::start() {
  auto count = state_->log.partition_count(kEventsTopic);
  IMLOG_TRY(count);
  std::vector<TopicPartitionOffset> from;
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < *count; ++p) {
    from.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, 0});
    auto end = state_->log.end_offset(TopicPartition{std::string(kEventsTopic), p});
    IMLOG_TRY(end);
    ends.push_back(*end);
  }
  ConsumerOptions opts;
  opts.max_batch = 4096;
  state_->reader = state_->log.consumer(opts);
  IMLOG_TRY(state_->reader->assign(from));

  // Read to the ends seen above on this thread, then keep following on the worker's thread.
  std::vector<int64_t> next(ends.size(), 0);
  auto behind = [&] {
    for (size_t p = 0; p < ends.size(); ++p) {
      if (next[p] < ends[p]) return true;
    }
    return false;
  };
  auto& batch = state_->batch;
  while (behind()) {
    auto polled = state_->reader->poll(batch, std::chrono::milliseconds(1000));
    if (!polled) return fail(polled.error().with_context("directory catching up on im.events"));
    for (const auto& r : batch) next[static_cast<size_t>(r.partition)] = r.offset + 1;
    state_->consume(batch);
  }
  state_->worker.on_wake([st = state_.get()] { st->reader->wakeup(); });
  state_->worker.start();
  return {};
}

void LogDirectory::stop() { state_->worker.stop(); }

UserFacts LogDirectory::user(uint64_t user_id) const {
  std::shared_lock lock(state_->mu);
  auto it = state_->users.find(user_id);
  return it == state_->users.end() ? UserFacts{} : it->second;
}

size_t LogDirectory::size() const {
  std::shared_lock lock(state_->mu);
  return state_->users.size();
}

}  // namespace imlog
