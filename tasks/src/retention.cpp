// The retention worker (retention.h).

#include "imlog/tasks/retention.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "imlog/schema/codec.h"

namespace imlog {
namespace {

constexpr std::string_view kRetentionLease = "retention";
constexpr int64_t kHourMs = 3600 * 1000;
// A pass's pace: at most this many expiries, then a pause (2,560 a second).
constexpr uint32_t kSendBurst = 256;
constexpr std::chrono::milliseconds kBurstPause{100};

// What the worker keeps of one conversation: the engine's retention state of it.
struct Followed {
  StreamRef ref;
  StreamState state;
};

}  // namespace

struct RetentionWorker::Loop {
  Loop(EventLog& l, CommandTransport& c, RetentionConfig cfg, LeaseStore* ls, const Clock& k)
      : log(l), commands(c), config(cfg), leases(ls), clock(k) {}

  EventLog& log;
  CommandTransport& commands;
  RetentionConfig config;
  LeaseStore* leases;
  const Clock& clock;
  std::string holder = lease_holder_name();
  std::shared_ptr<spdlog::logger> logger = imlog::logger("retention");
  RetentionStats stats;
  std::unique_ptr<Consumer> reader;  // set and reset on the worker's thread, under reader_mu
  std::mutex reader_mu;              // so stop()'s wake-up never sees it half replaced
  EpochFilter filter;
  std::vector<int64_t> start_ends;  // each partition's end when the worker started
  std::vector<int64_t> next;        // each partition's next offset to read
  std::unordered_map<std::string, Followed> conversations;
  std::vector<Record> batch;
  std::chrono::steady_clock::time_point last_scan{};
  std::chrono::steady_clock::time_point last_renewal{};
  bool holding = false;  // this worker holds the lease (or needs none)
  // Sends that failed since the last pass's report. Shared with the transport's callbacks, which
  // may run after the worker is gone (Kafka answers later).
  struct FailedSends {
    std::mutex mu;
    uint64_t count = 0;
    std::string last;
  };
  std::shared_ptr<FailedSends> failed = std::make_shared<FailedSends>();
  Worker worker{"retention", [this] { return step(); }};

  Status open_reader() {
    drop_reader();
    auto n = log.partition_count(kEventsTopic);
    IMLOG_TRY(n);
    ConsumerOptions opts;
    opts.max_batch = config.max_batch;
    auto opened = log.consumer(opts);
    {
      std::lock_guard lock(reader_mu);
      reader = std::move(opened);
    }
    std::vector<TopicPartitionOffset> from;
    for (int32_t p = 0; p < *n; ++p) {
      auto end = log.end_offset({std::string(kEventsTopic), p});
      IMLOG_TRY(end);
      start_ends.push_back(*end);
      next.push_back(0);
      from.push_back({std::string(kEventsTopic), p, 0});
    }
    return reader->assign(from);
  }

  // A record that does not decode stops the worker, naming it (as it stops a projector): every
  // later record's validity, and the state it keeps, depend on it.
  Status follow(const Record& r) {
    auto ev = read_event(r.value);
    if (!ev) {
      return fail(ev.error().with_context("retention worker: " + std::string(kEventsTopic) + "[" +
                                          std::to_string(r.partition) + "]@" + std::to_string(r.offset)));
    }
    const fb::EventEnvelope& e = **ev;
    if (!filter.accept(r.partition, e) || is_control_record(e.event_type())) return {};
    auto stream = sv(e.stream());
    auto it = conversations.find(std::string(stream));
    if (it == conversations.end()) {
      auto ref = parse_stream(stream);
      if (!ref || !is_conversation(ref->kind)) return {};
      it = conversations.emplace(std::string(stream), Followed{*ref, {}}).first;
      stats.conversations = conversations.size();
    }
    apply_retention(it->second.ref, it->second.state, e);
    stats.events++;
    if (e.event_type() == fb::Event::MessagesExpired) stats.expired++;
    return {};
  }

  [[nodiscard]] bool caught_up() const {
    for (size_t p = 0; p < next.size(); ++p) {
      if (next[p] < start_ends[p]) return false;
    }
    return true;
  }

  void send_expiry(const std::string& stream, uint64_t through, int64_t now) {
    fb::CommandEnvelopeT c;
    c.stream = stream;
    c.actor = 0;
    // Within the hour the same expiry is a Duplicate; past it a new try (a refusal, say on an
    // engine clock behind this one, is remembered only under its own id).
    c.client_msg_id = "expire:" + std::to_string(through) + ":" + std::to_string(now / kHourMs);
    c.client_sent_at = now;  // bounds the engine's dedupe entry of it (the dedupe window)
    c.timestamp_ms = now;
    c.trace_id = "retention";
    c.command.Set(fb::ExpireMessagesT{{}, through});
    std::string bytes = encode_command(c);
    // A full engine queue refuses at once (in process): wait and send it again, the pause doubling
    // from 10 ms to 1 s, so that a pass over many conversations neither floods the queue the
    // clients' messages share nor leaves most of them for the next pass.
    auto pause = std::chrono::milliseconds(10);
    while (!send_once(stream, bytes)) {
      if (!worker.wait_for(pause)) return;  // stopping
      pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(1));
    }
    stats.expiries_sent++;
  }

  // False when the transport refused the command as overloaded before returning. Any other
  // failure, or one that comes later (Kafka), is counted for the pass's summary: that
  // conversation is sent again at the next pass.
  bool send_once(const std::string& stream, const std::string& bytes) {
    enum : int { pending, overloaded, answered };
    auto state = std::make_shared<std::atomic<int>>(pending);
    commands.send(stream, bytes, [failed = failed, state](const Error& e) {
      int expected = pending;
      if (e.code() == make_error_code(LogErrc::overloaded) && state->compare_exchange_strong(expected, overloaded)) return;
      std::lock_guard lock(failed->mu);
      failed->count++;
      failed->last = e.to_string();
    });
    return state->exchange(answered) != overloaded;
  }

  // One line per pass for the expiries that could not be sent, not one per conversation.
  void report_failed_sends() {
    std::lock_guard lock(failed->mu);
    if (failed->count == 0) return;
    logger->warn("retention: {} expiries failed on their way to the engine (the last: {}); they are sent again next "
                 "pass", failed->count, failed->last);
    failed->count = 0;
  }

  // One pass. Expiries go in bursts of kSendBurst a kBurstPause apart, so a pass over many
  // conversations takes at most a few hundred places of the engine's queue and leaves the rest to
  // the clients' messages; the lease is renewed between bursts, and a pass stops if it is lost.
  void scan() {
    const int64_t now = clock.now_ms();
    // Listed first: renewing the lease may drop what the worker read (conversations included).
    std::vector<std::pair<std::string, uint64_t>> due;
    for (const auto& [stream, f] : conversations) {
      uint32_t keep = effective_keep_days(f.ref, f.state, config.default_keep_days);
      uint64_t through = expirable_through(f.state, keep, now);
      if (through > f.state.expired_through) due.emplace_back(stream, through);
    }
    for (size_t i = 0; i < due.size(); ++i) {
      if (i > 0 && i % kSendBurst == 0 && (!worker.wait_for(kBurstPause) || !still_holding())) return;
      send_expiry(due[i].first, due[i].second, now);
      if (worker.stopping()) return;
    }
    report_failed_sends();
    stats.scans++;
  }

  // Renews the lease in a long pass; false when it is gone (or cannot be asked for).
  bool still_holding() {
    if (auto s = hold_lease(); !s) {
      logger->warn("retention: stopping a pass: {}", s.error().to_string());
      return false;
    }
    return holding;
  }

  // The single-worker rule: without the lease the worker stands by, asking for it every third of
  // its time-to-live; with it, it renews it as often. Losing it (a pause longer than the
  // time-to-live) drops what it read and stands by again: the new holder reads the log itself.
  Status hold_lease() {
    if (!leases) {
      holding = true;
      return {};
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_renewal < config.lease_ttl / 3) return {};
    auto other = leases->acquire(kRetentionLease, holder, config.lease_ttl);
    if (!other) return fail(other.error().with_context("retention worker asking for its lease"));
    last_renewal = now;
    if (other->empty()) {
      if (!holding) logger->info("retention: this process holds the lease `{}`", kRetentionLease);
      holding = true;
      return {};
    }
    if (holding) {
      logger->warn("retention: lost the lease `{}` to {}; standing by", kRetentionLease, *other);
      drop_reader();
    }
    holding = false;
    return {};
  }

  void drop_reader() {
    std::unique_ptr<Consumer> old;
    {
      std::lock_guard lock(reader_mu);
      old = std::move(reader);
    }
    if (old) old->close();
    filter = EpochFilter{};
    start_ends.clear();
    next.clear();
    conversations.clear();
    stats.conversations = 0;
    stats.caught_up = false;
  }

  Status step() {
    IMLOG_TRY(hold_lease());
    if (!holding) {
      worker.wait_for(config.lease_ttl / 3);
      return {};
    }
    if (!reader) IMLOG_TRY(open_reader());
    batch.clear();
    auto polled = reader->poll(batch, std::chrono::milliseconds(100));
    if (!polled) return fail(polled.error().with_context("retention worker reading im.events"));
    for (const auto& r : batch) {
      IMLOG_TRY(follow(r));
      next[static_cast<size_t>(r.partition)] = r.offset + 1;
    }
    if (!stats.caught_up && caught_up()) {
      stats.caught_up = true;
      logger->info("retention: read im.events to where it ended at start; {} conversations followed",
                   conversations.size());
    }
    if (stats.caught_up && std::chrono::steady_clock::now() - last_scan >= config.interval) {
      scan();
      last_scan = std::chrono::steady_clock::now();
    }
    // Caught up, the worker needs what came since only at its next pass: it reads in batches a
    // pause apart instead of waking for every append (a thread's wake-up per group commit).
    if (stats.caught_up && batch.size() < config.max_batch) worker.wait_for(follow_pause());
    return {};
  }

  [[nodiscard]] std::chrono::milliseconds follow_pause() const {
    return std::clamp<std::chrono::milliseconds>(config.interval / 2, std::chrono::milliseconds(1),
                                                  std::chrono::seconds(1));
  }
};

RetentionWorker::RetentionWorker(EventLog& log, CommandTransport& commands, RetentionConfig config, LeaseStore* leases,
                                 const Clock& clock)
    : loop_(std::make_unique<Loop>(log, commands, config, leases, clock)) {}

RetentionWorker::~RetentionWorker() { stop(); }

Status RetentionWorker::start() {
  auto& l = *loop_;
  l.worker.on_wake([&l] {
    std::lock_guard lock(l.reader_mu);
    if (l.reader) l.reader->wakeup();
  });
  l.worker.start();
  l.logger->info("retention worker started: default policy {}, a pass every {} ms",
                 l.config.default_keep_days == 0 ? std::string("keep for ever")
                                                 : std::to_string(l.config.default_keep_days) + " days",
                 l.config.interval.count());
  return {};
}

void RetentionWorker::stop() {
  loop_->worker.stop();
  bool held = loop_->holding && loop_->leases;
  loop_->drop_reader();
  if (held) loop_->leases->release(kRetentionLease, loop_->holder);
  loop_->holding = false;
}

const RetentionStats& RetentionWorker::stats() const { return loop_->stats; }

}  // namespace imlog
