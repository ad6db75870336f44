// Projector (projector.h): im.events → valid events → a sink, positions stored by the sink.
//
// One Pass owns a plain (group-less) consumer assigned every partition at the sink's positions,
// the EpochFilter restored from the positions' tokens, and the positions as they advance. Each
// poll becomes one EventBatch: valid events other than epoch markers, plus the positions after
// the batch (markers and invalid events advance positions and tokens too, so a resumed pass
// restores the filter exactly). The records' bytes back the batch's event views, so a batch is
// applied before the next poll reuses them.

#include "imlog/projections/projector.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"

namespace imlog {

namespace {

using Clock = std::chrono::steady_clock;

// One run over the log: from the sink's positions, on one thread.
class Pass {
 public:
  Pass(EventLog& log, ProjectionSink& sink, const ProjectorConfig& config) : log_(log), sink_(sink), config_(config) {}

  // Reads the sink's positions and assigns the consumer. `ends` (optional): stop at these offsets.
  Status open(const std::vector<int64_t>* ends) {
    auto n = log_.partition_count(kEventsTopic);
    IMLOG_TRY(n);
    partitions_ = *n;
    positions_.clear();
    for (int32_t p = 0; p < partitions_; ++p) positions_.push_back(PartitionPosition{p, 0, 0, 0});
    auto stored = sink_.positions();
    if (!stored) return tl::unexpected(stored.error().with_context("reading the " + std::string(sink_.name()) + " model's positions"));
    for (const auto& s : *stored) {
      if (s.partition < 0 || s.partition >= partitions_) {
        return fail(LogErrc::bad_argument, "the " + std::string(sink_.name()) + " model has a position for partition " +
                                               std::to_string(s.partition) + " but " + std::string(kEventsTopic) +
                                               " has " + std::to_string(partitions_) +
                                               " partitions: it was built from another log");
      }
      positions_[static_cast<size_t>(s.partition)] = s;
    }
    for (const auto& p : positions_) filter_.restore(p.partition, EpochFilter::State{p.token, p.link});
    if (ends != nullptr) {
      if (ends->size() != static_cast<size_t>(partitions_)) {
        return fail(LogErrc::bad_argument, "run_until: " + std::to_string(ends->size()) + " end offsets for " +
                                               std::to_string(partitions_) + " partitions of " +
                                               std::string(kEventsTopic));
      }
      ends_ = *ends;
      for (int32_t p = 0; p < partitions_; ++p) {
        auto end = log_.end_offset({std::string(kEventsTopic), p});
        IMLOG_TRY(end);
        if (ends_[static_cast<size_t>(p)] > *end) {
          return fail(LogErrc::bad_argument, "run_until: end offset " + std::to_string(ends_[static_cast<size_t>(p)]) +
                                                 " of partition " + std::to_string(p) + " is past the log's end " +
                                                 std::to_string(*end));
        }
      }
    }
    ConsumerOptions opts;
    opts.max_batch = config_.max_batch == 0 ? 1 : config_.max_batch;
    consumer_ = log_.consumer(opts);
    std::vector<TopicPartitionOffset> from;
    for (const auto& p : positions_) {
      if (!ends_.empty() && p.next_offset >= ends_[static_cast<size_t>(p.partition)]) continue;
      from.push_back({std::string(kEventsTopic), p.partition, p.next_offset});
    }
    if (!from.empty()) IMLOG_TRY(consumer_->assign(from));
    return {};
  }

  // Records left before `ends_` (run_until only).
  [[nodiscard]] int64_t remaining() const {
    int64_t left = 0;
    for (const auto& p : positions_) left += std::max<int64_t>(0, ends_[static_cast<size_t>(p.partition)] - p.next_offset);
    return left;
  }

  // What one poll became: its records (which back the batch's event views) and its batch.
  struct Chunk {
    std::vector<Record> records;
    EventBatch batch;
    int64_t consumed = 0;  // records taken from the log (valid or not)
  };

  // Polls once into `c` and builds its batch: the valid events, and the positions after them.
  // Returns the records consumed (0 on time-out or wakeup). A record that does not decode fails
  // the pass, naming it; nothing is skipped. The reading side: owns the consumer, the filter and
  // the positions.
  Result<int64_t> read(Chunk& c, std::chrono::milliseconds timeout) {
    c.consumed = 0;
    IMLOG_TRY(consumer_->poll(c.records, timeout));
    if (c.records.empty()) return int64_t{0};
    c.batch.events.clear();
    c.batch.texts.clear();
    touched_.assign(static_cast<size_t>(partitions_), false);
    for (const Record& r : c.records) {
      if (r.partition < 0 || r.partition >= partitions_) continue;
      auto& pos = positions_[static_cast<size_t>(r.partition)];
      if (r.offset < pos.next_offset) continue;  // already applied (a redelivery)
      if (!ends_.empty() && r.offset >= ends_[static_cast<size_t>(r.partition)]) continue;
      auto ev = read_event(r.value);
      if (!ev) {
        return tl::unexpected(ev.error().with_context(std::string(kEventsTopic) + " partition " +
                                                      std::to_string(r.partition) + " offset " +
                                                      std::to_string(r.offset) + ": the record is not an event"));
      }
      const fb::EventEnvelope& e = **ev;
      bool valid = filter_.accept(r.partition, e);
      pos.next_offset = r.offset + 1;
      auto state = filter_.state(r.partition);
      pos.token = state.token;
      pos.link = state.link;
      touched_[static_cast<size_t>(r.partition)] = true;
      ++c.consumed;
      // Control records (epoch markers, remembered refusals) count for validity and positions only.
      if (valid && !is_control_record(e.event_type())) {
        EventBatch::Item item{r.partition, r.offset, &e, {}};
        if (auto opened = open_sealed(c.batch, item); !opened) {
          return tl::unexpected(opened.error().with_context(std::string(kEventsTopic) + " partition " +
                                                            std::to_string(r.partition) + " offset " +
                                                            std::to_string(r.offset)));
        }
        c.batch.events.push_back(item);
      }
    }
    c.batch.positions.clear();
    for (const auto& p : positions_) {
      if (touched_[static_cast<size_t>(p.partition)]) c.batch.positions.push_back(p);
    }
    return c.consumed;
  }

  // open_item() with a key store that cannot be reached waited for, with back-off, until it
  // answers or the projector stops.
  Status open_sealed(EventBatch& batch, EventBatch::Item& item) {
    std::chrono::milliseconds backoff{50};
    while (true) {
      auto opened = open_item(item, batch.texts, config_.keys);
      if (opened || !opened.error().retryable() || stopped_.load()) return opened;
      logger("projections")->warn("the key store did not answer, retrying in {} ms: {}", backoff.count(),
                                  opened.error().to_string());
      std::unique_lock lk(wait_mu_);
      wait_cv_.wait_for(lk, backoff, [&] { return stopped_.load(); });
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
    }
  }

  // Applies a chunk's batch. A retryable failure of the sink (its server away) is retried with
  // the same batch, so the positions never move past events that were not applied. The applying
  // side: may run on another thread than read().
  Status apply(const Chunk& c, const std::atomic<bool>* stopping) {
    if (c.consumed == 0) return {};
    std::chrono::milliseconds backoff{50};
    while (true) {
      auto started = std::chrono::steady_clock::now();
      auto applied = sink_.apply(c.batch);
      if (apply_seconds != nullptr) apply_seconds->observe(std::chrono::steady_clock::now() - started);
      if (applied) break;
      if (apply_retries != nullptr) apply_retries->fetch_add(1, std::memory_order_relaxed);
      if (!applied.error().retryable() || (stopping != nullptr && stopping->load())) {
        return tl::unexpected(applied.error().with_context("applying to the " + std::string(sink_.name()) + " model"));
      }
      logger("projections")->warn("the {} model refused a batch, retrying in {} ms: {}", sink_.name(), backoff.count(),
                                  applied.error().to_string());
      std::unique_lock lk(wait_mu_);
      wait_cv_.wait_for(lk, backoff, [&] { return stopping != nullptr && stopping->load(); });
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
    }
    applied_ += c.batch.events.size();
    if (auto log = logger("projections"); log->should_log(spdlog::level::debug)) {
      for (const auto& item : c.batch.events) {
        log->debug("applied {}/{} to the {} model trace_id={}", sv(item.event->stream()), item.event->seq(),
                   sink_.name(), sv(item.event->trace_id()));
      }
    }
    return {};
  }

  // Reads and applies one poll's worth on the calling thread.
  Result<int64_t> step(std::chrono::milliseconds timeout, const std::atomic<bool>* stopping) {
    auto n = read(single_, timeout);
    IMLOG_TRY(n);
    IMLOG_TRY(apply(single_, stopping));
    return *n;
  }

  // Reads on a second thread while the calling thread applies, two chunks in flight, until
  // `target` records are consumed (run_until: replay is the case where reading the log and
  // writing the model are both heavy). `progress` gets the records consumed after each batch.
  Status pipeline(int64_t target, const std::atomic<bool>& stopping, const std::function<void(int64_t)>& progress) {
    Chunk chunks[2];
    std::deque<Chunk*> free{&chunks[0], &chunks[1]}, ready;
    bool reader_done = false, quit = false;
    std::optional<Error> reader_error;
    std::thread reader([&] {
      int64_t read_total = 0;
      while (read_total < target) {
        Chunk* c = nullptr;
        {
          std::unique_lock lk(wait_mu_);
          wait_cv_.wait(lk, [&] { return !free.empty() || quit || stopping.load(); });
          if (quit || stopping.load()) break;
          c = free.front();
          free.pop_front();
        }
        auto n = read(*c, std::chrono::milliseconds(200));
        std::lock_guard lk(wait_mu_);
        if (!n) {
          reader_error = n.error();
          break;
        }
        read_total += *n;
        (*n > 0 ? ready : free).push_back(c);
        wait_cv_.notify_all();
      }
      std::lock_guard lk(wait_mu_);
      reader_done = true;
      wait_cv_.notify_all();
    });
    auto finish = [&](Status s) -> Status {
      {
        std::lock_guard lk(wait_mu_);
        quit = true;
        wait_cv_.notify_all();
      }
      consumer_->wakeup();
      reader.join();
      return s;
    };
    int64_t consumed = 0;
    while (consumed < target) {
      Chunk* c = nullptr;
      {
        std::unique_lock lk(wait_mu_);
        wait_cv_.wait(lk, [&] { return !ready.empty() || reader_done || stopping.load(); });
        if (stopping.load()) {
          lk.unlock();
          return finish(fail(LogErrc::closed, "the projector was stopped " + std::to_string(target - consumed) +
                                                  " records before the end offsets"));
        }
        if (ready.empty()) {
          auto e = reader_error ? *reader_error : Error(make_error_code(LogErrc::closed), "the log's reader stopped");
          lk.unlock();
          return finish(tl::unexpected(e));
        }
        c = ready.front();
        ready.pop_front();
      }
      if (auto a = apply(*c, &stopping); !a) return finish(a);
      consumed += c->consumed;
      if (progress) progress(consumed);
      std::lock_guard lk(wait_mu_);
      free.push_back(c);
      wait_cv_.notify_all();
    }
    return finish({});
  }

  // Records between the positions and the log's ends now.
  Result<int64_t> lag() {
    int64_t lag = 0;
    for (const auto& p : positions_) {
      auto end = log_.end_offset({std::string(kEventsTopic), p.partition});
      IMLOG_TRY(end);
      lag += std::max<int64_t>(0, *end - p.next_offset);
    }
    return lag;
  }

  [[nodiscard]] uint64_t applied() const { return applied_; }
  Consumer& consumer() { return *consumer_; }
  // The projector's figures this pass feeds (null: none).
  metrics::Histogram* apply_seconds = nullptr;
  std::atomic<uint64_t>* apply_retries = nullptr;
  // Waits `d`, or less if `stopping` is set meanwhile (notify_stop()).
  void wait_unless_stopped(std::chrono::milliseconds d, const std::atomic<bool>& stopping) {
    std::unique_lock lk(wait_mu_);
    wait_cv_.wait_for(lk, d, [&] { return stopping.load(); });
  }

  void notify_stop() {
    stopped_ = true;
    { std::lock_guard lk(wait_mu_); }  // a waiter is either before its check or asleep
    wait_cv_.notify_all();
  }

 private:
  EventLog& log_;
  ProjectionSink& sink_;
  const ProjectorConfig& config_;
  int32_t partitions_ = 0;
  std::vector<PartitionPosition> positions_;  // index = partition
  std::vector<int64_t> ends_;                 // empty: follow the log
  EpochFilter filter_;
  std::unique_ptr<Consumer> consumer_;
  Chunk single_;  // step()'s
  std::vector<bool> touched_;
  uint64_t applied_ = 0;
  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::atomic<bool> stopped_{false};  // notify_stop() was called
};

}  // namespace

struct Projector::Loop {
  std::unique_ptr<Pass> pass;  // start()'s pass, used by `thread`
  std::thread thread;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  Pass* active = nullptr;  // the pass running now (start() or run_until()), for stop(); under mu
  std::optional<Error> failure;
};

Projector::Projector(EventLog& log, ProjectionSink& sink, ProjectorConfig config)
    : log_(log), sink_(sink), config_(config), loop_(std::make_unique<Loop>()) {}

Projector::~Projector() { stop(); }

Status Projector::start() {
  if (loop_->thread.joinable()) return fail(LogErrc::bad_argument, "the projector is already running");
  loop_->stopping = false;
  loop_->pass = std::make_unique<Pass>(log_, sink_, config_);
  loop_->pass->apply_seconds = &apply_seconds_;
  loop_->pass->apply_retries = &apply_retries_;
  IMLOG_TRY(loop_->pass->open(nullptr));
  if (auto l = loop_->pass->lag()) lag_ = *l;
  {
    std::lock_guard lk(loop_->mu);
    loop_->active = loop_->pass.get();
  }
  loop_->thread = std::thread([this] {
    name_this_thread("proj-" + std::string(sink_.name()));
    Loop& loop = *loop_;
    Pass& pass = *loop.pass;
    auto log = logger("projections");
    log->info("projector for the {} model started on {}", sink_.name(), log_.describe());
    auto last_lag = Clock::now();
    std::chrono::milliseconds backoff{100};
    while (!loop.stopping.load()) {
      auto step = pass.step(std::chrono::milliseconds(500), &loop.stopping);
      if (!step) {
        if (step.error().retryable() && !loop.stopping.load()) {
          // The log is away (a broker down): wait, longer each time, and read again from where
          // the positions are — nothing was applied from the failed poll.
          log->warn("projector for the {} model: {}; retrying in {} ms", sink_.name(), step.error().to_string(),
                    backoff.count());
          pass.wait_unless_stopped(backoff, loop.stopping);
          backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
          continue;
        }
        if (loop.stopping.load()) break;
        log->error("projector for the {} model stopped: {}", sink_.name(), step.error().to_string());
        std::lock_guard lk(loop.mu);
        loop.failure = step.error();
        break;
      }
      backoff = std::chrono::milliseconds(100);
      applied_ = pass.applied();
      // Lag costs a round trip per partition on Kafka: refresh it at most twice a second, and
      // whenever the projector has caught up.
      if (*step == 0 || Clock::now() - last_lag > std::chrono::milliseconds(500)) {
        if (auto l = pass.lag()) lag_ = *l;
        last_lag = Clock::now();
      }
    }
  });
  return {};
}

void Projector::stop() {
  Loop& loop = *loop_;
  {
    std::lock_guard lk(loop.mu);
    loop.stopping = true;
    if (loop.active != nullptr) {
      loop.active->consumer().wakeup();
      loop.active->notify_stop();
    }
  }
  if (loop.thread.joinable()) loop.thread.join();
  std::lock_guard lk(loop.mu);
  if (loop.active == loop.pass.get()) loop.active = nullptr;
  loop.pass.reset();
}

bool Projector::drain(std::chrono::milliseconds timeout) {
  auto count = log_.partition_count(kEventsTopic);
  if (!count) return false;
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < *count; ++p) {
    auto end = log_.end_offset({std::string(kEventsTopic), p});
    if (!end) return false;
    ends.push_back(*end);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (failure()) return false;
    auto stored = sink_.positions();
    if (!stored) return false;
    std::vector<int64_t> at(ends.size(), 0);
    for (const auto& pos : *stored) {
      if (pos.partition >= 0 && static_cast<size_t>(pos.partition) < at.size()) at[static_cast<size_t>(pos.partition)] = pos.next_offset;
    }
    bool caught_up = true;
    for (size_t p = 0; p < ends.size(); ++p) caught_up = caught_up && at[p] >= ends[p];
    if (caught_up) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<Error> Projector::failure() const {
  std::lock_guard lk(loop_->mu);
  return loop_->failure;
}

Status Projector::run_until(const std::vector<int64_t>& end_offsets,
                            const std::function<void(const ProjectorProgress&)>& progress) {
  if (loop_->thread.joinable()) return fail(LogErrc::bad_argument, "run_until() while the projector's loop runs");
  loop_->stopping = false;
  Pass pass(log_, sink_, config_);
  IMLOG_TRY(pass.open(&end_offsets));
  {
    std::lock_guard lk(loop_->mu);
    loop_->active = &pass;
  }
  struct Deactivate {
    Loop& loop;
    ~Deactivate() {
      std::lock_guard lk(loop.mu);
      loop.active = nullptr;
    }
  } deactivate{*loop_};
  ProjectorProgress p;
  p.target = pass.remaining();
  lag_ = p.target;
  if (p.target == 0) return {};
  return pass.pipeline(p.target, loop_->stopping, [&](int64_t consumed) {
    p.consumed = consumed;
    p.applied = pass.applied();
    applied_ = p.applied;
    lag_ = p.target - consumed;
    if (progress) progress(p);
  });
}

namespace {

// An owner whose key was destroyed marks the item erased; any other failure is the error.
Status erased_or(const Error& error, EventBatch::Item& item) {
  if (error.code() != make_error_code(KeyErrc::erased)) return tl::unexpected(error);
  item.erased = true;
  return {};
}

}  // namespace

Status open_item(EventBatch::Item& item, std::deque<std::string>& storage, KeyStore* keys) {
  const fb::EventEnvelope& e = *item.event;
  const auto* m = e.event_as_MessageAppended();
  const auto* reg = e.event_as_UserRegistered();
  const auto* upd = e.event_as_ProfileUpdated();
  const auto* gone = e.event_as_UserErased();
  if (m != nullptr) item.text = sv(m->content());  // written before 10, or the default
  bool sealed = (m != nullptr && m->sealed_content() != nullptr) || (reg != nullptr && reg->sealed_profile() != nullptr) ||
                (upd != nullptr && upd->sealed_profile() != nullptr);
  if (!sealed && gone == nullptr) return {};
  if (keys == nullptr) {
    if (gone != nullptr) return {};  // no store: no key to destroy
    return fail(KeyErrc::unavailable, "event " + std::to_string(e.event_id()) + " is sealed and no key store was given");
  }
  if (gone != nullptr) return keys->destroy(gone->user_id());
  if (m != nullptr) {
    auto text = message_text(e, *m, *keys);
    if (!text) return erased_or(text.error(), item);
    item.text = storage.emplace_back(std::move(*text));
    return {};
  }
  auto opened = open_profile(e, *keys);
  if (!opened) return erased_or(opened.error(), item);
  const std::string& bytes = storage.emplace_back(std::move(**opened));
  item.event = flatbuffers::GetRoot<fb::EventEnvelope>(bytes.data());
  return {};
}

EventBatch::Item plain_item(int32_t partition, int64_t offset, const fb::EventEnvelope& event) {
  EventBatch::Item item{partition, offset, &event, {}};
  if (const auto* m = event.event_as_MessageAppended()) item.text = sv(m->content());
  return item;
}

}  // namespace imlog
