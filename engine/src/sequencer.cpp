#include "imlog/engine/sequencer.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/engine/audience.h"
#include "imlog/engine/message_ids.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "state_store.h"

namespace imlog {
namespace {

std::string default_instance_id() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(::getpid());
}

// An epoch token must differ from every other writer's, past and concurrent, or a zombie's events
// would pass the validity rule (validity.h): it comes from the OS CSPRNG (libsodium), never from a
// generator seeded with guessable or colliding values (a pid, the time).
Result<uint64_t> new_token() {
  static const int ready = sodium_init();  // 0, or 1 when already initialised; -1 on failure
  if (ready < 0) return fail(std::errc::io_error, "libsodium could not initialise its random source");
  uint64_t t = 0;
  while (t == 0) randombytes_buf(&t, sizeof t);
  return t;
}

// A recall index entry not yet in the store, and the event that put it there.
struct PendingRecall {
  RecentMessage entry;
  uint64_t event_id = 0;
};

// Everything the sequencer holds for one owned partition.
struct PartitionCtx {
  PartitionCtx(const Clock& clock, int32_t p) : partition(p), ids(clock, p) {}
  int32_t partition;
  uint64_t token = 0;
  int64_t acked_event_offset = 0;       // next im.events offset after the last acknowledged event
  int64_t acked_command_offset = -1;    // highest command offset whose events are acknowledged
  // Fencing check: below verified_offset no other writer's EpochStarted follows our marker;
  // unverified_events of ours were acknowledged at or after it (see fenced_since_verified()).
  int64_t verified_offset = 0;
  uint64_t unverified_events = 0;
  uint64_t last_event_id = 0;
  // The event id of the last record this engine appended to the partition (its marker, then each
  // event): the next event links to it (prev_event_id; validity.h).
  uint64_t link = 0;
  MessageIdGenerator ids;
  std::unordered_map<std::string, StreamState> streams;
  std::unordered_set<std::string> dirty;
  std::unordered_map<std::string, DedupeEntry> pending_dedupe;  // not yet in the store
  // The keys record_event() put in pending_dedupe since the last batch took them: the live path
  // hands them to the batch that carries their events (Inflight::dedupe_keys).
  std::vector<std::string> recorded_keys;
  std::unordered_map<std::string, uint64_t> pending_names;
  // Recall index entries not yet in the store, by StateStore::recall_key(), with the event that
  // put each; recorded_recalls as recorded_keys, for the batch that carries their events.
  std::unordered_map<std::string, PendingRecall> pending_recalls;
  std::vector<std::string> recorded_recalls;
};

struct Reply {
  int32_t partition;  // of the command answered
  std::string gateway;
  std::string bytes;  // an encoded Delivery holding the CommandReply
};

// An entry a batch put in a pending map (the dedupe index's or the recall index's): its key and
// the event (or CommandRefused record) that put it, so a later entry under the same key (after the
// window evicted this one, or a recall of the message) is never taken for it.
struct PendingRef {
  int32_t partition;
  std::string key;
  uint64_t event_id;
};

struct Inflight {
  std::map<int32_t, int64_t> command_offsets;  // per partition: highest command offset in the batch
  std::vector<Reply> replies;                  // sent once the batch and all before it are durable
  std::vector<std::pair<int32_t, uint64_t>> registered;  // (partition, user) it registers: RecentUsers
  std::vector<std::pair<int32_t, uint64_t>> erased;      // (partition, user) it erases: their key goes
  std::vector<PendingRef> dedupe_keys;  // the entries its events put in the dedupe index
  std::vector<PendingRef> recall_keys;  // ... and in the recall index
  size_t events = 0;    // records appended: events and CommandRefused records
  size_t refusals = 0;  // of them, CommandRefused records
  // The append's outcome, once its callback came. Batches are finished in order (complete()).
  std::optional<Result<std::vector<RecordPosition>>> result;
};

struct Completion {
  uint64_t batch;
  Result<std::vector<RecordPosition>> result;
};

// The directory as this sequencer decides with it: the users whose registration it made durable
// itself are known at once, before the directory has read their event back from the log. Without
// it a client that registers and, on its ack, sends its first command may be told that it does
// not exist. An entry leaves once the directory knows the user. Sequencer thread only.
class RecentUsers final : public Directory {
 public:
  explicit RecentUsers(const Directory& directory) : directory_(directory) {}

  [[nodiscard]] UserFacts user(uint64_t user_id) const override {
    UserFacts facts = directory_.user(user_id);
    if (facts.exists || facts.erased_at_ms > 0) {
      recent_.erase(user_id);
    } else if (recent_.contains(user_id)) {
      facts.exists = true;  // a new user's settings are the defaults
    }
    return facts;
  }
  void add(uint64_t user_id) { recent_.insert(user_id); }
  void forget(uint64_t user_id) { recent_.erase(user_id); }

 private:
  const Directory& directory_;
  mutable std::unordered_set<uint64_t> recent_;
};

}  // namespace

class Sequencer::Loop final : public RebalanceListener {
 public:
  Loop(EventLog& log, SequencerTransports transports, const Directory& directory, KeyStore& keys, const Clock& clock,
       EngineConfig config, std::unique_ptr<StateStore> store)
      : log_(log), transports_(transports), directory_(directory), keys_(keys), clock_(clock), config_(std::move(config)),
        store_(std::move(store)), logger_(logger("engine")) {
    if (config_.instance_id.empty()) config_.instance_id = default_instance_id();
  }

  Status start() {
    auto horizon = store_->dedupe_horizon();
    IMLOG_TRY(horizon);
    dedupe_horizon_ = *horizon;
    auto recall_horizon = store_->recall_horizon();
    IMLOG_TRY(recall_horizon);
    recall_horizon_ = *recall_horizon;
    ConsumerOptions opts;
    opts.group = config_.group;
    opts.max_batch = config_.max_batch;
    opts.listener = this;
    commands_ = transports_.commands.reader(opts);
    thread_ = std::thread([this] {
      name_this_thread("sequencer");
      run();
    });
    return {};
  }

  void stop() {
    if (!thread_.joinable()) return;
    running_ = false;
    {
      std::lock_guard lock(mu_);  // a loop in wait_in_batch_window() is before its check or asleep
    }
    cv_.notify_all();
    if (commands_) commands_->wakeup();
    thread_.join();
  }

  std::string failure() const {
    std::lock_guard lock(mu_);
    return failure_;
  }

  std::string not_ready() const {
    if (int32_t p = catching_up_.load(); p >= 0) {
      return "the engine is catching up partition " + std::to_string(p) + " of " + std::string(kEventsTopic) +
             " from the log: offset " + std::to_string(catch_up_next_.load()) + " of " +
             std::to_string(catch_up_through_.load());
    }
    if (taking_.load()) return "the engine is taking its partitions of " + std::string(kEventsTopic);
    if (!assigned_.load()) return "the engine is starting";
    return {};
  }

  SequencerStats stats;

  // ---- RebalanceListener: runs inside commands_->poll(), on the loop thread ----------------------

  void on_assigned(const std::vector<TopicPartition>& parts) override {
    taking_ = true;
    for (const auto& tp : parts) {
      if (auto s = take_partition(tp.partition); !s) fail_loop(s.error());
    }
    taking_ = false;
    assigned_ = true;
  }

  void on_revoked(const std::vector<TopicPartition>& parts) override {
    quiesce();
    checkpoint();
    for (const auto& tp : parts) {
      partitions_.erase(tp.partition);
      retake_.erase(tp.partition);
      logger_->info("released partition {} of {}", tp.partition, kCommandsTopic);
    }
    stats.partitions = static_cast<int32_t>(partitions_.size());
  }

 private:
  // ---- the loop -------------------------------------------------------------------------------

  void run() {
    logger_->info("sequencer {} started (group {})", config_.instance_id, config_.group);
    std::vector<Record> records;
    auto next_checkpoint = std::chrono::steady_clock::now() + config_.checkpoint_interval;
    while (running_ && failure().empty()) {
      drain_completions(false);
      if (!retake_.empty()) {
        retake_partitions();
        continue;
      }
      if (inflight_.size() >= config_.max_inflight_batches) {
        drain_completions(true);
        continue;
      }
      if (auto started = std::chrono::steady_clock::now(); started >= next_checkpoint) {
        quiesce();
        checkpoint();
        auto done = std::chrono::steady_clock::now();
        stats.checkpoint_seconds.observe(done - started);
        next_checkpoint = done + config_.checkpoint_interval;
      }
      if (in_batch_window()) {
        wait_in_batch_window();  // answers what becomes durable meanwhile (the loop's top)
        continue;
      }
      // With a batch in flight, its completion wakes this loop: commands that come meanwhile
      // are read together then, not one wake-up each. They lose little: the log writer is busy
      // with that batch, and they would have waited for its sync in the log's queue instead.
      // The cost is that the next batch is decided after that sync, not during it, so on the
      // in-process queue max_inflight_batches rarely goes past 1.
      commands_->expect_wakeup(!inflight_.empty());
      auto polled = commands_->poll(records, std::chrono::milliseconds(100));
      assigned_ = true;  // a group member may own nothing yet, or for good (a standby): it is up
      if (!polled) {
        if (polled.error().retryable()) continue;
        fail_loop(polled.error().with_context("reading im.commands"));
        break;
      }
      if (!records.empty()) handle_batch(records);
    }
    quiesce();
    checkpoint();
    commands_->close();
    logger_->info("sequencer {} stopped: {} commands, {} events, {} refused, {} duplicates",
                  config_.instance_id, stats.commands.load(), stats.events.load(),
                  stats.refused.load(), stats.duplicates.load());
  }

  void fail_loop(const Error& e) {
    logger_->critical("sequencer stops: {}", e.to_string());
    std::lock_guard lock(mu_);
    if (failure_.empty()) failure_ = e.to_string();
  }

  // ---- taking a partition: epoch marker, then catch-up ------------------------------------------

  Status take_partition(int32_t p) {
    auto cp = store_->checkpoint(p);
    IMLOG_TRY(cp);
    auto ctx = std::make_unique<PartitionCtx>(clock_, p);
    ctx->ids.observe(cp->last_event_id);
    ctx->last_event_id = cp->last_event_id;

    auto fresh = new_token();
    IMLOG_TRY(fresh);
    uint64_t token = *fresh;
    fb::EventEnvelopeT marker;
    marker.event_id = ctx->ids.next();
    marker.timestamp_ms = clock_.now_ms();
    marker.epoch = token;
    fb::EpochStartedT ep;
    ep.token = token;
    ep.partition = p;
    ep.writer = config_.instance_id;
    marker.event.Set(std::move(ep));
    std::vector<OutRecord> out;
    out.push_back(OutRecord{"", encode_event(marker), p});
    auto pos = log_.append_wait(kEventsTopic, std::move(out));
    if (!pos) return fail(pos.error().with_context("writing the epoch marker of partition " + std::to_string(p)));
    int64_t marker_offset = pos->at(0).offset;

    auto caught = catch_up(*ctx, cp->next_event_offset, EpochFilter::State{cp->token, cp->link}, marker_offset);
    IMLOG_TRY(caught);
    ctx->token = token;
    ctx->link = marker.event_id;
    ctx->acked_event_offset = marker_offset + 1;
    ctx->verified_offset = marker_offset + 1;
    logger_->info("took partition {}: epoch {:x}, caught up {} events from offset {} to {}", p, token,
                  *caught, cp->next_event_offset, marker_offset);
    partitions_[p] = std::move(ctx);
    stats.epochs++;
    stats.partitions = static_cast<int32_t>(partitions_.size());
    return {};
  }

  // Applies the valid events of partition p in [from, through] to ctx; returns how many. What it
  // has applied is written to the store with a checkpoint every checkpoint_interval, as the live
  // loop does: a rebuild of a long log neither holds every dedupe entry of the log in memory nor
  // writes them all in one batch at its end, and a crash part-way resumes from the last one.
  Result<uint64_t> catch_up(PartitionCtx& ctx, int64_t from, EpochFilter::State resume, int64_t through) {
    int32_t p = ctx.partition;
    EpochFilter filter;
    filter.restore(p, resume);
    ConsumerOptions opts;
    opts.max_batch = 4096;
    auto reader = log_.consumer(opts);
    IMLOG_TRY(reader->assign({TopicPartitionOffset{std::string(kEventsTopic), p, from}}));
    CatchUpProgress progress(*this, p, from, through);
    std::vector<Record> records;
    uint64_t applied = 0;
    int64_t next = from;
    while (next <= through) {
      if (progress.due(next)) IMLOG_TRY(save_catch_up(ctx, next, filter.state(p)));
      progress.at(next);
      auto polled = reader->poll(records, std::chrono::milliseconds(1000));
      if (!polled) return fail(polled.error().with_context("catching up partition " + std::to_string(p)));
      for (const auto& r : records) {
        // Past our own marker are later writers' records (a newer epoch would fence us): not ours
        // to apply.
        if (r.offset > through) break;
        next = r.offset + 1;
        auto ev = read_event(r.value);
        if (!ev) {
          return fail(ev.error().with_context("im.events partition " + std::to_string(p) + " offset " +
                                              std::to_string(r.offset)));
        }
        ctx.ids.observe((*ev)->event_id());
        if (!filter.accept(p, **ev) || (*ev)->event_type() == fb::Event::EpochStarted) continue;
        IMLOG_TRY(record_event(ctx, **ev));
        ++applied;
      }
    }
    return applied;
  }

  // What not_ready() says while a partition is caught up, and a log line now and then for a long
  // one. Sequencer thread; the atomics are read by not_ready() on any thread.
  class CatchUpProgress {
   public:
    CatchUpProgress(Loop& loop, int32_t p, int64_t from, int64_t through)
        : loop_(loop), from_(from), started_(std::chrono::steady_clock::now()), last_save_(started_),
          last_log_(started_) {
      loop_.catch_up_through_ = through;
      loop_.catch_up_next_ = from;
      loop_.catching_up_ = p;
    }
    ~CatchUpProgress() { loop_.catching_up_ = -1; }
    CatchUpProgress(const CatchUpProgress&) = delete;
    CatchUpProgress& operator=(const CatchUpProgress&) = delete;

    // Whether a save is due at `next` (never before anything is applied); if so, counts it done.
    bool due(int64_t next) {
      if (next == from_) return false;
      auto now = std::chrono::steady_clock::now();
      if (now - last_save_ < loop_.config_.checkpoint_interval) return false;
      last_save_ = now;
      return true;
    }
    void at(int64_t next) {
      loop_.catch_up_next_ = next;
      auto now = std::chrono::steady_clock::now();
      if (now - last_log_ < std::chrono::seconds(10)) return;
      last_log_ = now;
      loop_.logger_->info("catching up partition {}: offset {} of {} ({} records in {} s)", loop_.catching_up_.load(),
                          next, loop_.catch_up_through_.load(), next - from_,
                          std::chrono::duration_cast<std::chrono::seconds>(now - started_).count());
    }

   private:
    Loop& loop_;
    int64_t from_;
    std::chrono::steady_clock::time_point started_, last_save_, last_log_;
  };

  // Writes what a catch-up applied so far, with the partition's checkpoint at `next` (the first
  // offset not applied) and the epoch filter's state there.
  Status save_catch_up(PartitionCtx& ctx, int64_t next, EpochFilter::State at) {
    StoreBatch batch;
    add_unwritten(batch, ctx);
    batch.checkpoints.emplace_back(ctx.partition, Checkpoint{next, at.token, ctx.last_event_id, at.link});
    batch.dedupe_cutoff = dedupe_cutoff(clock_.now_ms());
    IMLOG_TRY(store_->write(batch));
    dedupe_horizon_ = batch.dedupe_cutoff;
    written(ctx);
    return {};
  }

  // ---- derived state ------------------------------------------------------------------------------

  // A stream's state, from the cache or the store. A store that cannot be read is an error, never
  // an empty state: deciding on one would give the stream's seqs out again.
  Result<StreamState*> state_of(PartitionCtx& ctx, const std::string& stream) {
    auto it = ctx.streams.find(stream);
    if (it != ctx.streams.end()) return &it->second;
    StreamState s;
    if (auto loaded = store_->load(stream, s); !loaded) return fail(loaded.error());
    return &ctx.streams.emplace(stream, std::move(s)).first->second;
  }

  // Folds one valid event into the partition's derived state: the live path and catch-up share it.
  // A CommandRefused record changes no stream state: it only puts its refusal in the dedupe index,
  // so the same (stream, actor, client_msg_id) gets it again (handle_command()).
  Status record_event(PartitionCtx& ctx, const fb::EventEnvelope& e) {
    std::string stream(sv(e.stream()));
    if (const auto* refused = e.event_as_CommandRefused()) {
      ctx.last_event_id = std::max(ctx.last_event_id, e.event_id());
      if (e.client_msg_id() && e.client_msg_id()->size() > 0 && refused->code() && refused->code()->size() > 0) {
        auto key = StateStore::dedupe_key(stream, e.actor(), sv(e.client_msg_id()));
        ctx.pending_dedupe[key] = DedupeEntry{0, e.event_id(), 0, std::string(sv(refused->code())),
                                              std::string(sv(refused->message())), e.client_sent_at()};
        ctx.recorded_keys.push_back(std::move(key));
      }
      return {};
    }
    auto ref = parse_stream(stream);
    if (!ref) return {};
    auto state = state_of(ctx, stream);
    IMLOG_TRY(state);
    StreamState& s = **state;
    apply(*ref, s, e);
    ctx.dirty.insert(stream);
    if (is_conversation(ref->kind)) record_recall(ctx, stream, e);
    ctx.last_event_id = std::max(ctx.last_event_id, e.event_id());
    uint64_t result_id = 0;
    if (auto* gone = e.event_as_UserErased()) erased_.insert(gone->user_id());
    if (auto* reg = e.event_as_UserRegistered()) {
      result_id = reg->user_id();
      ctx.pending_names[std::string(sv(reg->username()))] = reg->user_id();
    } else if (auto* gc = e.event_as_GroupCreated()) {
      result_id = gc->group_id();
    } else if (auto* dr = e.event_as_DeviceRegistered()) {
      result_id = dr->device_id();
    }
    if (e.client_msg_id() && e.client_msg_id()->size() > 0) {
      auto key = StateStore::dedupe_key(stream, e.actor(), sv(e.client_msg_id()));
      ctx.pending_dedupe[key] = DedupeEntry{e.seq(), e.event_id(), result_id, {}, {}, e.client_sent_at()};
      ctx.recorded_keys.push_back(std::move(key));
    }
    return {};
  }

  // Puts the recall index entry a conversation's event makes (recall_entry_of()) among the pending
  // ones. One already past the window (a catch-up of old events) is left out: the index would
  // evict it, and decide() refuses its recall whether it is held or not.
  void record_recall(PartitionCtx& ctx, std::string_view stream, const fb::EventEnvelope& e) {
    auto entry = recall_entry_of(e);
    if (!entry || entry->message_id < advance_recall_horizon()) return;
    auto key = StateStore::recall_key(stream, entry->message_id);
    ctx.pending_recalls[key] = PendingRecall{*entry, e.event_id()};
    ctx.recorded_recalls.push_back(std::move(key));
  }

  // The original of a retried command, if any. An unreadable index is an error, never "not a
  // duplicate": that would give the retry a second event.
  Result<std::optional<DedupeEntry>> find_duplicate(PartitionCtx& ctx, const std::string& key) {
    if (auto it = ctx.pending_dedupe.find(key); it != ctx.pending_dedupe.end()) return it->second;
    return store_->dedupe(key);
  }

  // decide() asks whether a username is taken and cannot take an error for an answer: an unreadable
  // index says "taken" (so nothing is accepted on it) and keeps the error, which then aborts the
  // batch (handle_command()) instead of refusing the registration for good.
  class Names final : public NameIndex {
   public:
    Names(PartitionCtx& ctx, StateStore& store) : ctx_(ctx), store_(store) {}
    std::optional<uint64_t> holder(std::string_view name) const override {
      if (auto it = ctx_.pending_names.find(std::string(name)); it != ctx_.pending_names.end()) return it->second;
      auto h = store_.name_holder(name);
      if (!h) {
        if (!error) error = h.error();
        return kUnknownHolder;
      }
      return *h;
    }
    // Held by nobody who could be released: the answer while the store cannot be read.
    static constexpr uint64_t kUnknownHolder = 0;
    mutable std::optional<Error> error;

   private:
    PartitionCtx& ctx_;
    StateStore& store_;
  };

  // decide() asks the recall index for a message, and likewise cannot take an error: an unreadable
  // index says "not held" and keeps the error, which aborts the batch (handle_command()) instead
  // of refusing the recall for good.
  class Recalls final : public RecallIndex {
   public:
    Recalls(PartitionCtx& ctx, StateStore& store, uint64_t horizon) : ctx_(ctx), store_(store), horizon_(horizon) {}
    std::optional<RecentMessage> find(std::string_view stream, uint64_t message_id) const override {
      auto key = StateStore::recall_key(stream, message_id);
      if (auto it = ctx_.pending_recalls.find(key); it != ctx_.pending_recalls.end()) return it->second.entry;
      auto found = store_.recall(stream, message_id);
      if (!found) {
        if (!error) error = found.error();
        return std::nullopt;
      }
      return *found;
    }
    uint64_t horizon() const override { return horizon_; }
    mutable std::optional<Error> error;

   private:
    PartitionCtx& ctx_;
    StateStore& store_;
    uint64_t horizon_;
  };

  // ---- live commands ------------------------------------------------------------------------------

  void handle_batch(const std::vector<Record>& records) {
    Inflight batch;
    std::vector<OutRecord> events;
    events.reserve(records.size());
    Status reads;  // fails with the first state store read that failed in this batch
    for (const auto& r : records) {
      auto it = partitions_.find(r.partition);
      if (it == partitions_.end()) continue;  // revoked meanwhile; the next owner handles it
      if (reads) {
        reads = handle_command(*it->second, r, batch, events);
      } else {
        queue_unavailable(r, batch);
      }
      auto& off = batch.command_offsets[r.partition];
      off = std::max(off, r.offset);
    }
    stats.commands += records.size();
    stats.batch_commands.observe(static_cast<double>(records.size()));
    for (auto [p, off] : batch.command_offsets) {
      auto it = partitions_.find(p);
      if (it == partitions_.end()) continue;
      for (auto& key : it->second->recorded_keys) {
        auto entry = it->second->pending_dedupe.find(key);
        if (entry == it->second->pending_dedupe.end()) continue;  // the checkpoint writes what it missed
        batch.dedupe_keys.push_back(PendingRef{p, std::move(key), entry->second.event_id});
      }
      it->second->recorded_keys.clear();
      for (auto& key : it->second->recorded_recalls) {
        auto entry = it->second->pending_recalls.find(key);
        if (entry == it->second->pending_recalls.end()) continue;
        batch.recall_keys.push_back(PendingRef{p, std::move(key), entry->second.event_id});
      }
      it->second->recorded_recalls.clear();
    }
    uint64_t id = next_batch_++;
    if (!reads) {
      // Fail closed: part of this batch was decided without the state it needed, so none of it
      // is appended. Its partitions are dropped (their in-memory state ran ahead of the log), its
      // commands are answered `unavailable` in batch order, and the loop stops as on any store
      // failure; whoever takes the partitions next rebuilds them from the log.
      Error why = reads.error().with_context("nothing of the batch was appended");
      for (auto [p, off] : batch.command_offsets) partitions_.erase(p);
      stats.partitions = static_cast<int32_t>(partitions_.size());
      inflight_.emplace(id, std::move(batch));
      complete(id, tl::unexpected(why));
      flush_replies();
      fail_loop(why);
      return;
    }
    batch.events = events.size();
    inflight_.emplace(id, std::move(batch));
    if (events.empty()) {
      complete(id, std::vector<RecordPosition>{});
      flush_replies();
      return;
    }
    uint64_t bytes = 0;
    for (const auto& e : events) bytes += e.key.size() + e.value.size();
    stats.appended_bytes += bytes;
    auto appended_at = std::chrono::steady_clock::now();
    last_append_ = appended_at;
    log_.append(kEventsTopic, std::move(events), [this, id, appended_at](Result<std::vector<RecordPosition>> r) {
      stats.append_seconds.observe(std::chrono::steady_clock::now() - appended_at);
      if (!r) stats.append_failures++;
      // All under the lock: once the loop sees this completion it may quiesce and stop, and the
      // sequencer and its command reader be destroyed, so nothing here may touch them after it.
      std::lock_guard lock(mu_);
      completions_.push_back(Completion{id, std::move(r)});
      cv_.notify_one();
      commands_->wakeup();
    });
  }

  // A command of a batch that will not be appended: a placeholder reply, which
  // answer_unavailable() turns into `unavailable`.
  void queue_unavailable(const Record& r, Inflight& batch) {
    auto parsed = read_command(r.value);
    if (!parsed) return;
    queue_reply(batch, r.partition, **parsed, fb::ReplyStatus::Refused, refusal_code(Refusal::invalid), "",
                DedupeEntry{});
  }

  // Dedupes, decides and (if accepted) sequences one command into the batch. An error means the
  // state it needed could not be read: the batch must not be appended (handle_batch()).
  Status handle_command(PartitionCtx& ctx, const Record& r, Inflight& batch, std::vector<OutRecord>& events) {
    auto parsed = read_command(r.value);
    if (!parsed) {
      stats.malformed++;
      logger_->warn("dropping a malformed command at im.commands partition {} offset {}: {}", r.partition,
                    r.offset, parsed.error().to_string());
      return {};
    }
    const fb::CommandEnvelope& c = **parsed;
    std::string stream(sv(c.stream()));
    auto ref = parse_stream(stream);
    // A refusal that is only answered, not remembered: one decided on the command alone, which
    // every retry gets again (Decision::stateless), and the checks below that come before there is
    // a dedupe key.
    auto refuse = [&](Refusal why, std::string message) -> Status {
      stats.refused++;
      stats.refused_by[static_cast<size_t>(why)]++;
      queue_reply(batch, r.partition, c, fb::ReplyStatus::Refused, refusal_code(why), std::move(message),
                  DedupeEntry{});
      return {};
    };
    if (!ref) return refuse(Refusal::invalid, "`" + stream + "` is not a stream id");
    if (r.key != stream) return refuse(Refusal::invalid, "the command's key does not match its stream");
    auto cmid = sv(c.client_msg_id());
    if (cmid.empty() || cmid.size() > 128) return refuse(Refusal::invalid, "client_msg_id must be 1 to 128 bytes");

    std::string key = StateStore::dedupe_key(stream, c.actor(), cmid);
    auto dup = find_duplicate(ctx, key);
    IMLOG_TRY(dup);
    if (!*dup && past_window(c.client_sent_at())) {
      return refuse(Refusal::retry_window_expired,
                    "sent_at " + std::to_string(c.client_sent_at()) + " is older than the dedupe window (entries " +
                        "sent before " + std::to_string(dedupe_horizon_) + " are forgotten): this may be a " +
                        "retry of a command already written, so it is not written again; send it as a new " +
                        "command (a new client_msg_id and sent_at) if it is not");
    }
    if (*dup) {
      stats.duplicates++;
      const DedupeEntry& original = **dup;
      if (original.refused()) {
        // A refusal remembered (CommandRefused): the same answer, never a decision on today's state.
        queue_reply(batch, r.partition, c, fb::ReplyStatus::Refused, original.code, original.message, DedupeEntry{});
      } else {
        queue_reply(batch, r.partition, c, fb::ReplyStatus::Duplicate, "", "", original);
      }
      return {};
    }
    int64_t now = clock_.now_ms();
    if (too_far_ahead(c.client_sent_at(), now)) {
      return refuse(Refusal::invalid, "sent_at " + std::to_string(c.client_sent_at()) + " is more than " +
                                          std::to_string(max_ahead_ms()) + " ms (the dedupe window and the clock " +
                                          "skew) ahead of the server's clock (" + std::to_string(now) +
                                          "): check the device's clock");
    }
    // An erased user's commands, on any stream, from the moment their erasure is decided (the
    // directory learns of it later): nothing is sealed with their key again, nothing new of theirs
    // is written.
    if (c.actor() != 0 && erased_.contains(c.actor())) {
      return refuse(Refusal::not_found, "user " + std::to_string(c.actor()) + " was erased");
    }
    auto loaded = state_of(ctx, stream);
    IMLOG_TRY(loaded);
    StreamState& state = **loaded;
    Names names(ctx, *store_);
    Recalls recalls(ctx, *store_, advance_recall_horizon());
    Decision d = decide(*ref, state, c, DecideContext{recent_users_, config_.limits, now, &names, &recalls});
    if (names.error) return fail(*names.error);
    if (recalls.error) return fail(*recalls.error);
    if (d.kind == Decision::Kind::refuse && d.stateless) return refuse(d.refusal, std::move(d.message));
    if (d.kind == Decision::Kind::refuse) return remember_refusal(ctx, r, c, d, batch, events);

    // The key before the envelope: a command refused here takes no event id. Without its key the
    // command alone is answered (the loop and the rest of the batch go on): a destroyed key
    // refuses it for good, any other failure (the store away, a damaged key) asks for a retry.
    auto sealing = sealing_key(d, c);
    if (!sealing) {
      if (sealing.error().code() == make_error_code(KeyErrc::erased)) {
        return refuse(Refusal::not_found, sealing.error().message());
      }
      logger_->warn("answering a command on {} `unavailable`: {}", stream, sealing.error().to_string());
      queue_reply(batch, r.partition, c, fb::ReplyStatus::Refused, "unavailable",
                  "the data key this event is sealed with could not be had (" + sealing.error().message() +
                      "); retry with the same client_msg_id",
                  DedupeEntry{});
      return {};
    }
    fb::EventEnvelopeT e = envelope_of(ctx, c, d.timeline ? state.last_seq + 1 : 0, now);
    e.event = std::move(d.event);
    if (*sealing) seal_fields(**sealing, e);
    std::string bytes = encode_event(e);
    const auto& event = *flatbuffers::GetRoot<fb::EventEnvelope>(bytes.data());
    IMLOG_TRY(record_event(ctx, event));
    PushWithAck push;
    if (config_.push_one_to_one && ref->kind == StreamKind::single) {
      push = PushWithAck{bytes, one_to_one_audience(*ref, event)};
    }
    queue_reply(batch, r.partition, c, fb::ReplyStatus::Accepted, "", "",
                DedupeEntry{e.seq, e.event_id, result_id_of(e), {}, {}}, std::move(push));
    if (const auto* reg = event.event_as_UserRegistered()) batch.registered.emplace_back(ctx.partition, reg->user_id());
    if (const auto* gone = event.event_as_UserErased()) batch.erased.emplace_back(ctx.partition, gone->user_id());
    events.push_back(OutRecord{stream, std::move(bytes), ctx.partition});
    return {};
  }

  // The key an accepted event's personal fields are sealed with (data_keys.h): its owner's (a
  // message's sender, a registration's new user, a profile's user), made on first use; none for
  // events without personal fields.
  Result<std::optional<DataKey>> sealing_key(const Decision& d, const fb::CommandEnvelope& c) {
    uint64_t owner = sealing_owner(d.event, c.actor());
    if (owner == 0) return std::optional<DataKey>{};
    auto key = keys_.key_for_writing(owner);  // a destroyed key fails `erased`, naming the user
    IMLOG_TRY(key);
    return std::optional<DataKey>(*key);
  }

  // An erasure is durable: the user's data key goes before the erasure is acked, so that no reader
  // opens their sealed fields again (data_keys.h). A store that fails here is not fatal: every
  // projector destroys the key again when it applies the UserErased, and until a key is gone the
  // engine seals nothing more for the user (their user stream takes no command after it).
  void destroy_key(uint64_t user) {
    recent_users_.forget(user);
    if (auto gone = keys_.destroy(user); !gone) {
      logger_->warn("the data key of erased user {} was not destroyed yet (the projectors will): {}", user,
                    gone.error().to_string());
      stats.key_destroy_failures++;
    }
  }

  // Whether a command not found in the dedupe index was sent before the horizon, so its entry,
  // had it been written, may have been evicted: it cannot be told from a retry.
  bool past_window(int64_t client_sent_at) const {
    return client_sent_at > 0 && client_sent_at < dedupe_horizon_;
  }

  // Whether a new command's sent_at is further ahead of the engine's clock than the window and the
  // skew: its dedupe entry would outlive the window by as much, so a client could keep the engine's
  // state growing with far-future values. Refused, not written (a retry of a command already
  // written was answered from the index before). The bound is wide so that a device whose clock
  // is minutes or hours fast still sends; an entry then lives at most twice the window and skew.
  int64_t max_ahead_ms() const { return config_.dedupe_window.count() + config_.clock_skew.count(); }
  bool too_far_ahead(int64_t client_sent_at, int64_t now) const { return client_sent_at > now + max_ahead_ms(); }

  // The dedupe cut-off of a checkpoint at the engine's time now: entries sent before it are
  // evicted. Never below the horizon, so a clock stepped back evicts nothing and lets nothing in.
  int64_t dedupe_cutoff(int64_t now) const {
    int64_t cut = now - config_.dedupe_window.count() - config_.clock_skew.count();
    return std::max(cut, dedupe_horizon_);
  }

  // The envelope of the next record of the partition for command `c`: the command's stream, actor,
  // reply address, trace and client_msg_id, the next event id, the epoch's token, and the link to
  // the partition's last record (which it becomes).
  fb::EventEnvelopeT envelope_of(PartitionCtx& ctx, const fb::CommandEnvelope& c, uint64_t seq, int64_t now) {
    fb::EventEnvelopeT e;
    e.schema_version = kSchemaVersion;
    e.stream = sv(c.stream());
    e.seq = seq;
    e.event_id = ctx.ids.next();
    e.timestamp_ms = now;
    e.actor = c.actor();
    e.epoch = ctx.token;
    e.prev_event_id = std::exchange(ctx.link, e.event_id);
    if (c.reply_to()) {
      e.reply_to = std::make_unique<fb::ReplyToT>();
      c.reply_to()->UnPackTo(e.reply_to.get());
    }
    e.trace_id = sv(c.trace_id());
    e.client_msg_id = sv(c.client_msg_id());
    e.client_sent_at = c.client_sent_at();
    return e;
  }

  // A refusal that depends on the stream's state: appended as a CommandRefused record (seq 0, the
  // command's envelope, linked like any record of the epoch) and put in the dedupe index, so the
  // command redelivered after a crash, or retried with the same client_msg_id, gets this same
  // refusal — never a decision on a later state that might accept it. Its answer leaves with the
  // batch, once the record is durable and the epoch still ours, as an ack does.
  Status remember_refusal(PartitionCtx& ctx, const Record& r, const fb::CommandEnvelope& c, Decision& d,
                          Inflight& batch, std::vector<OutRecord>& events) {
    stats.refused++;
    stats.refused_by[static_cast<size_t>(d.refusal)]++;
    fb::EventEnvelopeT e = envelope_of(ctx, c, 0, clock_.now_ms());
    fb::CommandRefusedT refused;
    refused.code = refusal_code(d.refusal);
    refused.message = d.message;
    e.event.Set(std::move(refused));
    std::string bytes = encode_event(e);
    IMLOG_TRY(record_event(ctx, *flatbuffers::GetRoot<fb::EventEnvelope>(bytes.data())));
    queue_reply(batch, r.partition, c, fb::ReplyStatus::Refused, refusal_code(d.refusal), std::move(d.message),
                DedupeEntry{});
    ++batch.refusals;
    events.push_back(OutRecord{std::string(sv(c.stream())), std::move(bytes), ctx.partition});
    return {};
  }

  // What an accepted command created, for its ack: the user id of a registration, the group id
  // of a creation, the device id of a device registration; 0 otherwise.
  static uint64_t result_id_of(const fb::EventEnvelopeT& e) {
    if (auto* reg = e.event.AsUserRegistered()) return reg->user_id;
    if (auto* gc = e.event.AsGroupCreated()) return gc->group_id;
    if (auto* dr = e.event.AsDeviceRegistered()) return dr->device_id;
    return 0;
  }

  // The pushes an ack carries (EngineConfig::push_one_to_one): the event and who is shown it.
  struct PushWithAck {
    std::string_view event;
    std::vector<uint64_t> recipients;
  };

  // `code`: the refusal's reason code (status Refused), else empty.
  void queue_reply(Inflight& batch, int32_t partition, const fb::CommandEnvelope& c,
                   fb::ReplyStatus status, std::string_view code, std::string message,
                   const DedupeEntry& original, PushWithAck push = {}) {
    logger_->debug("command {} on {} from user {}: {}{}{} seq {} trace_id={}", fb::EnumNameCommand(c.command_type()),
                   sv(c.stream()), c.actor(), fb::EnumNameReplyStatus(status), code.empty() ? "" : " ", code,
                   original.seq, sv(c.trace_id()));
    if (!c.reply_to() || !c.reply_to()->gateway() || c.reply_to()->gateway()->size() == 0) return;
    fb::DeliveryT d;
    d.reply = std::make_unique<fb::CommandReplyT>();
    auto& r = *d.reply;
    r.request_id = c.reply_to()->request_id();
    r.status = status;
    if (status == fb::ReplyStatus::Refused) r.code = code;
    r.message = std::move(message);
    r.stream = sv(c.stream());
    r.seq = original.seq;
    r.event_id = original.event_id;
    r.result_id = original.result_id;
    r.client_msg_id = sv(c.client_msg_id());
    r.actor = c.actor();
    if (!push.recipients.empty()) {
      d.recipients = std::move(push.recipients);
      d.event.assign(push.event.begin(), push.event.end());
    }
    batch.replies.push_back(Reply{partition, std::string(sv(c.reply_to()->gateway())), encode_delivery(d)});
  }

  // ---- completions ----------------------------------------------------------------------------------

  // Within engine.batch_window of the last append, commands are left queued: those that come
  // meanwhile are read, decided and appended as one batch when it ends.
  [[nodiscard]] bool in_batch_window() const {
    return config_.batch_window.count() > 0 && std::chrono::steady_clock::now() < last_append_ + config_.batch_window;
  }

  // Sleeps until the window ends, a batch in flight completes, or the loop stops.
  void wait_in_batch_window() {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, last_append_ + config_.batch_window,
                   [&] { return !completions_.empty() || !running_.load(); });
  }

  void drain_completions(bool wait) {
    std::deque<Completion> ready;
    {
      std::unique_lock lock(mu_);
      if (wait) cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !completions_.empty(); });
      ready.swap(completions_);
    }
    for (auto& c : ready) complete(c.batch, std::move(c.result));
    flush_replies();
    write_durable_entries();
  }

  // Writes the dedupe and recall index entries of the batches finished so far, once
  // kDurableWriteEntries of them are waiting or kDurableWriteEvery has passed, with at most every
  // kEvictEvery the eviction of the entries past the dedupe and recall windows: small store writes
  // between batches instead of one at the checkpoint. Written all at once there, a second of dedupe
  // entries (ten thousand at 10,000 messages a second) held the loop for 50-130 ms every second,
  // and recall entries held in the stream states made every checkpoint rewrite each busy
  // conversation's last two minutes of messages: the tail of the ack's latency
  // (docs/benchmarks.md). Early is safe: an entry is written only once its event is durable and
  // valid, a replay from the stored checkpoint puts the same value again, and a stream's state —
  // which a replay would apply twice — still waits for the checkpoint. What is not written here
  // the checkpoint writes (add_unwritten()).
  void write_durable_entries() {
    auto now = std::chrono::steady_clock::now();
    size_t waiting = durable_dedupe_.size() + durable_recalls_.size();
    bool due = waiting >= kDurableWriteEntries || (waiting > 0 && now - last_durable_write_ >= kDurableWriteEvery);
    if (!due) return;
    last_durable_write_ = now;
    if (!failure().empty()) {  // the loop is stopping: the store failed
      durable_dedupe_.clear();
      durable_recalls_.clear();
      return;
    }
    bool evict = now - last_eviction_ >= kEvictEvery;
    StoreBatch batch;
    add_pending(&PartitionCtx::pending_dedupe, durable_dedupe_, batch.dedupe, [](const DedupeEntry& e) { return e; });
    add_pending(&PartitionCtx::pending_recalls, durable_recalls_, batch.recalls,
                [](const PendingRecall& p) { return p.entry; });
    if (evict) {
      batch.dedupe_cutoff = dedupe_cutoff(clock_.now_ms());
      batch.recall_cutoff = advance_recall_horizon();
      last_eviction_ = now;
    }
    if (auto s = store_->write(batch); !s) return fail_loop(s.error());
    if (evict) dedupe_horizon_ = std::max(dedupe_horizon_, batch.dedupe_cutoff);
    forget_written(&PartitionCtx::pending_dedupe, durable_dedupe_);
    forget_written(&PartitionCtx::pending_recalls, durable_recalls_);
  }

  // The entry `ref` names in its partition's pending map (`pending_dedupe` or `pending_recalls`),
  // while it is still the one in memory under its key: not yet written by a checkpoint, its
  // partition still owned, not replaced by a later event's (after an eviction, or the message's
  // recall, whose batch may not be durable yet).
  template <class Entry>
  const Entry* pending(std::unordered_map<std::string, Entry> PartitionCtx::*map, const PendingRef& ref) const {
    auto ctx = partitions_.find(ref.partition);
    if (ctx == partitions_.end()) return nullptr;
    const auto& entries = (*ctx->second).*map;
    auto entry = entries.find(ref.key);
    if (entry == entries.end() || entry->second.event_id != ref.event_id) return nullptr;
    return &entry->second;
  }

  // The entries `refs` name that are still pending, as `value` of each, into `out`.
  template <class Entry, class Out, class Value>
  void add_pending(std::unordered_map<std::string, Entry> PartitionCtx::*map, const std::vector<PendingRef>& refs,
                   Out& out, Value value) const {
    out.reserve(refs.size());
    for (const auto& ref : refs) {
      if (const Entry* entry = pending(map, ref)) out.emplace_back(ref.key, value(*entry));
    }
  }

  // After their write: the entries `refs` name leave memory (unless replaced meanwhile).
  template <class Entry>
  void forget_written(std::unordered_map<std::string, Entry> PartitionCtx::*map, std::vector<PendingRef>& refs) {
    for (const auto& ref : refs) {
      if (pending(map, ref)) (partitions_.at(ref.partition).get()->*map).erase(ref.key);
    }
    refs.clear();
  }

  // Raises the recall horizon to the cut-off at the engine's time now (as a message id: the
  // messages made before it are past the recall window) and returns it. It never goes down, so a
  // clock stepped back makes nothing the index forgot (or left out) recallable again: decide()
  // refuses every id below it `recall_window_passed` (RecallIndex::horizon()). An entry's time is
  // its event's, at most its id's (the id is made after the event's time is read), so what the
  // cut-off forgets decide() would refuse anyway.
  uint64_t advance_recall_horizon() {
    int64_t cut = clock_.now_ms() - config_.limits.recall_window_ms;
    if (cut > MessageIdGenerator::kEpochMs) {
      uint64_t id = static_cast<uint64_t>(cut - MessageIdGenerator::kEpochMs)
                    << (MessageIdGenerator::kPartitionBits + MessageIdGenerator::kCounterBits);
      recall_horizon_ = std::max(recall_horizon_, id);
    }
    return recall_horizon_;
  }

  // Batches finish in the order they were appended, whatever order their callbacks come in: a
  // batch's replies (a duplicate's original may be in an earlier batch still in flight) and
  // command offsets are released only once every earlier batch is durable too.
  void complete(uint64_t id, Result<std::vector<RecordPosition>> result) {
    auto it = inflight_.find(id);
    if (it == inflight_.end()) return;
    it->second.result = std::move(result);
    while (!inflight_.empty() && inflight_.begin()->second.result) {
      auto node = inflight_.extract(inflight_.begin());
      finish(node.mapped());
    }
  }

  void finish(Inflight& batch) {
    auto& result = *batch.result;
    if (!result) {
      // Our in-memory state ran ahead of a log that may hold any part of the batch: drop the
      // affected partitions now, so later batches decided on that state answer nothing and commit
      // nothing, and let the loop rebuild them from the log (a new epoch) and read their commands
      // again (retake_partitions()).
      logger_->error("the batch of {} events failed: {}; retaking the partitions", batch.events,
                     result.error().to_string());
      for (auto [p, off] : batch.command_offsets) {
        if (partitions_.erase(p) > 0) retake_.insert(p);
      }
      stats.partitions = static_cast<int32_t>(partitions_.size());
      answer_unavailable(batch, result.error());
      return;
    }
    stats.events += result->size() - std::min(result->size(), batch.refusals);
    stats.refusals_recorded += batch.refusals;
    std::map<int32_t, std::pair<int64_t, uint64_t>> written;  // partition → (end, events)
    for (const auto& pos : *result) {
      auto& w = written[pos.partition];
      w.first = std::max(w.first, pos.offset + 1);
      ++w.second;
    }
    for (auto [p, w] : written) {
      auto it = partitions_.find(p);
      if (it == partitions_.end()) continue;
      PartitionCtx& ctx = *it->second;
      ctx.acked_event_offset = std::max(ctx.acked_event_offset, w.first);
      ctx.unverified_events += w.second;
      auto fenced = fenced_since_verified(ctx);
      if (!fenced) {
        // Whether its events are valid is unknown: the stop's checkpoint must not store what they
        // derived. Whoever takes the partition next rebuilds it from the log.
        partitions_.erase(it);
        stats.partitions = static_cast<int32_t>(partitions_.size());
        return fail_loop(fenced.error());
      }
      if (*fenced) stand_down(p);
    }
    for (auto [p, off] : batch.command_offsets) {
      if (auto it = partitions_.find(p); it != partitions_.end()) {
        it->second->acked_command_offset = std::max(it->second->acked_command_offset, off);
      }
    }
    // Its dedupe and recall entries may go to the store now (write_durable_entries()): their events are durable
    // and valid, as the acks say.
    for (auto& ref : batch.dedupe_keys) {
      if (partitions_.contains(ref.partition)) durable_dedupe_.push_back(std::move(ref));
    }
    for (auto& ref : batch.recall_keys) {
      if (partitions_.contains(ref.partition)) durable_recalls_.push_back(std::move(ref));
    }
    // Registrations on a partition we still own are valid to every reader from now on.
    for (auto [p, user] : batch.registered) {
      if (partitions_.contains(p)) recent_users_.add(user);
    }
    for (auto [p, user] : batch.erased) {
      if (partitions_.contains(p)) destroy_key(user);
    }
    // A partition we stood down from (or dropped after a failed append) was decided on a state no
    // reader shares: its commands are not acked but told to retry.
    auto dropped = std::stable_partition(batch.replies.begin(), batch.replies.end(),
                                         [&](const Reply& r) { return partitions_.contains(r.partition); });
    Inflight retry;
    retry.replies.assign(std::make_move_iterator(dropped), std::make_move_iterator(batch.replies.end()));
    batch.replies.erase(dropped, batch.replies.end());
    send_replies(std::move(batch.replies));
    if (!retry.replies.empty()) {
      answer_unavailable(retry, Error(make_error_code(LogErrc::unavailable),
                                      "this engine no longer owns the conversation's partition", true));
    }
  }

  // Whether another writer's EpochStarted landed in ctx's partition after our marker and before our
  // last acknowledged event, which makes our events since invalid to every reader
  // (docs/architecture.md, "Epochs and fencing"). Appends to a partition land in the order we make
  // them and batches finish in that order, so if only we wrote there, [verified_offset,
  // acked_event_offset) holds exactly our unverified_events; when it holds more, read what the
  // others wrote. Events of a zombie (older token) are harmless; a marker with another token means
  // we were fenced.
  Result<bool> fenced_since_verified(PartitionCtx& ctx) {
    int64_t span = ctx.acked_event_offset - ctx.verified_offset;
    if (span != static_cast<int64_t>(ctx.unverified_events)) {
      ConsumerOptions opts;
      opts.max_batch = 4096;
      auto reader = log_.consumer(opts);
      IMLOG_TRY(reader->assign({TopicPartitionOffset{std::string(kEventsTopic), ctx.partition, ctx.verified_offset}}));
      std::vector<Record> records;
      int64_t next = ctx.verified_offset;
      while (next < ctx.acked_event_offset) {
        auto polled = reader->poll(records, std::chrono::milliseconds(1000));
        if (!polled) {
          return fail(polled.error().with_context("checking the epoch of partition " + std::to_string(ctx.partition)));
        }
        for (const auto& r : records) {
          if (r.offset >= ctx.acked_event_offset) break;
          next = r.offset + 1;
          auto ev = read_event(r.value);
          if (!ev) {
            return fail(ev.error().with_context("im.events partition " + std::to_string(ctx.partition) +
                                                " offset " + std::to_string(r.offset)));
          }
          auto* marker = (*ev)->event_as_EpochStarted();
          if (marker != nullptr && marker->token() != ctx.token) {
            logger_->error("partition {} of {} was fenced at offset {} by {} (epoch {:x}); our epoch {:x}",
                           ctx.partition, kEventsTopic, r.offset, sv(marker->writer()), marker->token(),
                           ctx.token);
            return true;
          }
        }
      }
    }
    ctx.verified_offset = ctx.acked_event_offset;
    ctx.unverified_events = 0;
    return false;
  }

  // Another sequencer took the partition: stop writing it and drop what we derived since our last
  // checkpoint (never stored, never committed), so the commands come again to whoever owns it, or
  // to us after a new assignment, which catches up from the log under a new epoch.
  void stand_down(int32_t p) {
    logger_->error("standing down from partition {} of {}: another sequencer owns it", p, kCommandsTopic);
    partitions_.erase(p);
    stats.stood_down++;
    stats.partitions = static_cast<int32_t>(partitions_.size());
  }

  // Answers wait in outgoing_ until flush_replies(), so the batches one group commit made durable
  // reach each gateway in one call (one hand-off, one post per session), in the order the
  // commands came.
  void send_replies(std::vector<Reply> replies) {
    for (auto& r : replies) outgoing_[r.gateway].push_back(std::move(r.bytes));
  }

  void flush_replies() {
    for (auto& [gateway, deliveries] : outgoing_) {
      if (!deliveries.empty()) transports_.deliveries.deliver(gateway, std::move(deliveries), {});
    }
    outgoing_.clear();
  }

  // None of the batch's commands may be acked: its append failed (some of its events may be on the
  // log all the same) or it was decided on a state this engine dropped. Each waiting client hears
  // `unavailable` at once instead of waiting for its time-out; its retry with the same
  // client_msg_id is deduplicated against whatever did land. (On im.commands the command is also
  // read again after the retake and answered a second time; the gateway keeps the first answer.)
  void answer_unavailable(Inflight& batch, const Error& why) {
    for (auto& r : batch.replies) {
      auto d = read_delivery(r.bytes);
      if (!d || !(*d)->reply()) continue;
      fb::DeliveryT out;
      out.reply = std::make_unique<fb::CommandReplyT>();
      (*d)->reply()->UnPackTo(out.reply.get());
      auto& reply = *out.reply;
      reply.status = fb::ReplyStatus::Refused;
      reply.code = "unavailable";
      reply.message = "the engine did not write the command (" + why.message() +
                      "); retry with the same client_msg_id";
      reply.seq = 0;
      reply.event_id = 0;
      reply.result_id = 0;
      r.bytes = encode_delivery(out);
    }
    send_replies(std::move(batch.replies));
  }

  // Retakes the partitions whose appends failed, once nothing is in flight.
  void retake_partitions() {
    quiesce();
    auto parts = std::move(retake_);
    retake_.clear();
    taking_ = true;
    for (int32_t p : parts) retake_partition(p);
    taking_ = false;
  }

  void retake_partition(int32_t p) {
    if (auto s = take_partition(p); !s) return fail_loop(s.error());
    auto committed = commands_->committed(TopicPartition{std::string(kCommandsTopic), p});
    // Not knowing where to resume is an error, not offset 0: commands read again from the start
    // would be decided again on today's state (one refused then may be accepted now).
    if (!committed) return fail_loop(committed.error().with_context("reading the committed offset of partition " +
                                                                    std::to_string(p)));
    int64_t from = *committed ? **committed : 0;
    if (auto s = commands_->seek(TopicPartitionOffset{std::string(kCommandsTopic), p, from}); !s) {
      fail_loop(s.error());
    }
  }

  // Waits until no append is in flight, so the derived state equals the acknowledged log.
  void quiesce() {
    while (!inflight_.empty()) drain_completions(true);
  }

  // ---- checkpoints --------------------------------------------------------------------------------

  // What the partition derived and the store does not hold yet, into `batch`.
  static void add_unwritten(StoreBatch& batch, PartitionCtx& ctx) {
    for (const auto& stream : ctx.dirty) batch.states.emplace_back(stream, &ctx.streams.at(stream));
    for (auto& kv : ctx.pending_dedupe) batch.dedupe.emplace_back(kv.first, kv.second);
    for (auto& kv : ctx.pending_names) batch.names.emplace_back(kv.first, kv.second);
    for (auto& kv : ctx.pending_recalls) batch.recalls.emplace_back(kv.first, kv.second.entry);
  }

  // After a write of add_unwritten()'s batch: nothing is pending, and a cache past its bound is
  // dropped (the states are in the store).
  void written(PartitionCtx& ctx) const {
    ctx.dirty.clear();
    ctx.pending_dedupe.clear();
    ctx.recorded_keys.clear();
    ctx.pending_names.clear();
    ctx.pending_recalls.clear();
    ctx.recorded_recalls.clear();
    if (ctx.streams.size() > config_.max_cached_streams) ctx.streams.clear();
  }

  // Precondition: quiesce()d. Writes derived state and checkpoints atomically, then commits the
  // command offsets whose events are durable.
  void checkpoint() {
    if (partitions_.empty()) return;
    StoreBatch batch;
    std::vector<TopicPartitionOffset> offsets;
    for (auto& [p, ctx] : partitions_) {
      add_unwritten(batch, *ctx);
      batch.checkpoints.emplace_back(p, Checkpoint{ctx->acked_event_offset, ctx->token, ctx->last_event_id, ctx->link});
      if (ctx->acked_command_offset >= 0) {
        offsets.push_back(TopicPartitionOffset{std::string(kCommandsTopic), p, ctx->acked_command_offset + 1});
      }
    }
    batch.dedupe_cutoff = dedupe_cutoff(clock_.now_ms());
    batch.recall_cutoff = advance_recall_horizon();
    if (auto s = store_->write(batch); !s) return fail_loop(s.error());
    dedupe_horizon_ = batch.dedupe_cutoff;
    for (auto& [p, ctx] : partitions_) written(*ctx);
    durable_dedupe_.clear();  // every pending entry went with the checkpoint
    durable_recalls_.clear();
    if (!offsets.empty()) {
      if (auto s = commands_->commit(offsets); !s) {
        // Not fatal: the commands come again after a restart and are deduplicated.
        logger_->warn("committing command offsets failed: {}", s.error().to_string());
      }
    }
  }

  EventLog& log_;
  SequencerTransports transports_;
  const Directory& directory_;
  RecentUsers recent_users_{directory_};
  // Users whose erasure this sequencer decided or read from its partitions (a few ids: erasures
  // are rare). Their commands are refused at once, before the directory knows (decide() asks it).
  std::unordered_set<uint64_t> erased_;
  KeyStore& keys_;
  const Clock& clock_;
  EngineConfig config_;
  std::unique_ptr<StateStore> store_;
  // The highest dedupe cut-off applied to the store (state_store.h): a command sent before it
  // and not in the index is refused retry_window_expired. Never goes down.
  int64_t dedupe_horizon_ = 0;
  // The recall horizon (advance_recall_horizon()): at or above the store's. Never goes down.
  uint64_t recall_horizon_ = 0;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<Consumer> commands_;
  std::thread thread_;
  std::atomic<bool> running_{true};
  std::chrono::steady_clock::time_point last_append_{};  // of an event batch (batch_window)

  // For not_ready(): whether the reader has polled or been assigned once, and the partition being
  // caught up (-1: none), with the next offset and the last one of its catch-up.
  std::atomic<bool> assigned_{false};
  std::atomic<bool> taking_{false};  // inside on_assigned() or retake_partitions()
  std::atomic<int32_t> catching_up_{-1};
  std::atomic<int64_t> catch_up_next_{0};
  std::atomic<int64_t> catch_up_through_{0};

  std::map<int32_t, std::unique_ptr<PartitionCtx>> partitions_;
  std::set<int32_t> retake_;  // owned partitions dropped after a failed append, to take again
  std::map<uint64_t, Inflight> inflight_;
  // (partition, key) of the dedupe and recall entries of finished batches, for
  // write_durable_entries().
  std::vector<PendingRef> durable_dedupe_;
  std::vector<PendingRef> durable_recalls_;
  static constexpr size_t kDurableWriteEntries = 1024;
  static constexpr auto kDurableWriteEvery = std::chrono::milliseconds(20);
  static constexpr auto kEvictEvery = std::chrono::milliseconds(100);
  std::chrono::steady_clock::time_point last_durable_write_{};
  std::chrono::steady_clock::time_point last_eviction_{};
  std::map<std::string, std::vector<std::string>> outgoing_;  // gateway → answers not yet handed over
  uint64_t next_batch_ = 1;

  mutable std::mutex mu_;  // guards completions_ and failure_
  std::condition_variable cv_;
  std::deque<Completion> completions_;
  std::string failure_;
};

Sequencer::Sequencer(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
Sequencer::~Sequencer() { stop(); }

namespace {

Status check_topics(EventLog& log, SequencerTransports transports) {
  auto commands = transports.commands.partitions();
  IMLOG_TRY(commands);
  auto events = log.partition_count(kEventsTopic);
  IMLOG_TRY(events);
  if (*commands != *events) {
    return fail(LogErrc::topic_mismatch, "commands (" + transports.commands.describe() + ") have " +
                                             std::to_string(*commands) + " partitions and im.events " +
                                             std::to_string(*events) + ": they must be equal (imlog init creates both)");
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Sequencer>> Sequencer::create(EventLog& log, SequencerTransports transports,
                                                     const Directory& directory, KeyStore& keys, const Clock& clock,
                                                     EngineConfig config) {
  auto store = StateStore::open(config.state_dir);
  IMLOG_TRY(store);
  return create(log, transports, directory, keys, clock, std::move(config), std::move(*store));
}

Result<std::unique_ptr<Sequencer>> Sequencer::create(EventLog& log, SequencerTransports transports,
                                                     const Directory& directory, KeyStore& keys, const Clock& clock,
                                                     EngineConfig config, std::unique_ptr<StateStore> store) {
  IMLOG_TRY(check_topics(log, transports));
  return std::unique_ptr<Sequencer>(new Sequencer(
      std::make_unique<Loop>(log, transports, directory, keys, clock, std::move(config), std::move(store))));
}

Status Sequencer::start() { return loop_->start(); }
void Sequencer::stop() { loop_->stop(); }
std::string Sequencer::failure() const { return loop_->failure(); }
std::string Sequencer::not_ready() const { return loop_->not_ready(); }
const SequencerStats& Sequencer::stats() const { return loop_->stats; }

}  // namespace imlog
