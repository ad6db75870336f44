#include "imlog/tasks/router.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/audience.h"
#include "imlog/engine/snapshot_file.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"
#include "event_follow.h"

namespace imlog {

// The outcome of one routed batch's deliveries and fan-out tasks, reported by their callbacks
// on any thread.
struct BatchOutcome {
  std::atomic<int> left{0};  // deliveries and appends not yet answered
  std::mutex mu;
  std::optional<Error> error;  // the first failure

  void done(const Status& s) {
    if (!s) {
      std::lock_guard lock(mu);
      if (!error) error = s.error();
    }
    left.fetch_sub(1, std::memory_order_acq_rel);
  }
  [[nodiscard]] bool finished() const { return left.load(std::memory_order_acquire) == 0; }
};

// A routed batch whose outputs may still be on their way: where each partition's reading stands
// once they are out.
struct SentBatch {
  std::map<int32_t, int64_t> next;
  std::shared_ptr<BatchOutcome> outcome;
};

// The router's loop. Its partitions of im.events come from its consumer group (RebalanceListener,
// inside reader->poll() on the loop's thread): it holds state — membership, the epoch filter, what
// is out — only for the partitions it owns.
struct Router::Loop final : public RebalanceListener {
  Loop(EventLog& l, DeliveryTransport& d, SessionRegistry& s, RouterConfig c)
      : log(l), deliveries(d), sessions(s), config(c), logger(imlog::logger("router")) {}

  EventLog& log;
  DeliveryTransport& deliveries;
  SessionRegistry& sessions;
  RouterConfig config;
  std::shared_ptr<spdlog::logger> logger;
  RouterStats stats;
  std::unique_ptr<Consumer> reader;
  EpochFilter filter;
  using Groups = std::unordered_map<uint64_t, std::unordered_set<uint64_t>>;  // group id → members
  std::map<int32_t, Groups> groups;  // per partition of im.events (a group lives in one)
  std::vector<Record> batch;
  std::deque<SentBatch> sent;            // oldest first
  // Per owned partition (the keys are the partitions this router owns and has taken):
  std::map<int32_t, int64_t> delivered;  // every event before this is out
  std::map<int32_t, int64_t> committed;  // what the group has stored from us (-1: nothing yet)
  std::set<int32_t> untaken;  // assigned, but their state could not be loaded yet: taken in step()
  std::chrono::steady_clock::time_point last_commit;
  std::chrono::steady_clock::time_point last_snapshot;
  // The state of a partition as of an offset this router committed: membership and the epoch
  // filter there. Held for the partitions it does not own (read from the snapshot file, or kept
  // when one was revoked), so taking one again reads only the log after that offset.
  struct Restored {
    int64_t offset = 0;
    EpochFilter::State filter;
    Groups groups;
  };
  using RestoredMap = std::map<int32_t, Restored>;
  RestoredMap restored;
  Worker worker{"router", [this] { return step(std::chrono::milliseconds(200)); }};
  bool tasks_topic = false;  // im.tasks exists: large groups go to the tasks workers

  // Output of one batch: deliveries per gateway, and fan-out tasks.
  std::map<std::string, std::vector<std::string>> out;
  std::vector<OutRecord> tasks_out;
  std::vector<uint64_t> audience;
  std::vector<std::pair<uint64_t, std::string>> located;

  // ---- membership, derived from the events themselves ----------------------------------------

  void track_membership(int32_t partition, const StreamRef& ref, const fb::EventEnvelope& e) {
    if (ref.kind != StreamKind::group) return;
    auto& members = groups[partition][ref.a];
    switch (e.event_type()) {
      case fb::Event::GroupCreated: {
        auto* gc = e.event_as_GroupCreated();
        members.insert(gc->owner());
        if (gc->members()) members.insert(gc->members()->begin(), gc->members()->end());
        break;
      }
      case fb::Event::MemberJoined: members.insert(e.event_as_MemberJoined()->user_id()); break;
      case fb::Event::MemberLeft: members.erase(e.event_as_MemberLeft()->user_id()); break;
      case fb::Event::MemberRemoved: members.erase(e.event_as_MemberRemoved()->user_id()); break;
      default: break;
    }
  }

  // Who should see the event. For a group, members before and after it: a leaver sees their leave.
  void find_audience(int32_t partition, const StreamRef& ref, const fb::EventEnvelope& e, std::vector<uint64_t>& who) {
    who.clear();
    if (shown_to_actor_only(ref, e.event_type())) {
      who.push_back(e.actor());
      return;
    }
    switch (ref.kind) {
      case StreamKind::single: who = one_to_one_audience(ref, e); break;
      case StreamKind::group: {
        auto& members = groups[partition][ref.a];
        who.assign(members.begin(), members.end());
        break;
      }
      case StreamKind::user: who.push_back(ref.a); break;
      case StreamKind::world:
      case StreamKind::names: break;  // world: everyone online, handled by the caller
    }
  }

  // ---- output -------------------------------------------------------------------------------------

  // One FanoutTask per page of the audience (sorted, so a user keeps their page from one event to
  // the next while membership holds, and the page's key keeps their deliveries in seq order).
  void hand_to_tasks(const fb::EventEnvelope& e, std::string_view bytes) {
    std::sort(audience.begin(), audience.end());
    uint32_t page_size = std::max<uint32_t>(config.task_page, 1);
    auto pages = static_cast<uint32_t>((audience.size() + page_size - 1) / page_size);
    for (uint32_t page = 0; page < pages; ++page) {
      fb::FanoutTaskT t;
      t.stream = sv(e.stream());
      t.seq = e.seq();
      t.task_id = task_id(t.stream, t.seq, page);
      t.page = page;
      t.pages = pages;
      size_t from = size_t{page} * page_size, to = std::min(audience.size(), from + page_size);
      t.recipients.assign(audience.begin() + static_cast<long>(from), audience.begin() + static_cast<long>(to));
      t.event.assign(bytes.begin(), bytes.end());
      t.trace_id = sv(e.trace_id());
      tasks_out.push_back(OutRecord{task_key(t.stream, page), encode_task(t), kByKey});
      stats.tasks++;
    }
    logger->debug("handing {}/{} to the tasks workers: {} users in {} tasks trace_id={}", sv(e.stream()), e.seq(),
                  audience.size(), pages, sv(e.trace_id()));
  }

  void deliver(int32_t partition, const StreamRef& ref, const fb::EventEnvelope& e, std::string_view bytes) {
    located.clear();
    if (ref.kind == StreamKind::world && e.event_type() != fb::Event::ReadMarked) {
      sessions.all_online(located);
    } else {
      find_audience(partition, ref, e, audience);
      if (audience.empty()) return;
      if (ref.kind == StreamKind::group && tasks_topic && audience.size() > config.large_group_threshold) {
        hand_to_tasks(e, bytes);
        return;
      }
      sessions.locate(audience, located);
    }
    if (located.empty()) return;
    std::map<std::string_view, std::vector<uint64_t>> by_gateway;
    for (const auto& [user, gateway] : located) by_gateway[gateway].push_back(user);
    for (auto& [gateway, users] : by_gateway) {
      fb::DeliveryT d;
      d.recipients = std::move(users);
      d.event.assign(bytes.begin(), bytes.end());
      stats.deliveries += d.recipients.size();
      out[std::string(gateway)].push_back(encode_delivery(d));
    }
  }

  // Sends the batch's deliveries and tasks; `outcome` hears each one's answer. A gateway that
  // went away answers ok in process (nobody to push to) and its clients sync on reconnect.
  void flush_output(const std::shared_ptr<BatchOutcome>& outcome) {
    int outputs = static_cast<int>(out.size()) + (tasks_out.empty() ? 0 : 1);
    outcome->left.fetch_add(outputs, std::memory_order_acq_rel);  // before any callback can run
    for (auto& [gateway, batch] : out) {
      deliveries.deliver(gateway, std::move(batch), [outcome](Status s) { outcome->done(s); });
    }
    out.clear();
    if (tasks_out.empty()) return;
    log.append(kTasksTopic, std::move(tasks_out), [outcome](Result<std::vector<RecordPosition>> r) {
      outcome->done(r ? Status{} : Status(fail(r.error())));
    });
    tasks_out.clear();
  }

  // An event the sequencer already pushed with its ack (RouterConfig::one_to_one_pushed_by_engine):
  // a one-to-one conversation's event that answered a gateway's command.
  bool pushed_with_ack(const StreamRef& ref, const fb::EventEnvelope& e) const {
    if (!config.one_to_one_pushed_by_engine || ref.kind != StreamKind::single) return false;
    const auto* to = e.reply_to();
    return to != nullptr && to->gateway() != nullptr && to->gateway()->size() > 0;
  }

  // ---- the loop -------------------------------------------------------------------------------------

  // Routes one event of im.events; `live`: deliver it (else only track membership).
  void route(const Record& r, bool live) {
    auto ev = read_event(r.value);
    if (!ev) {
      logger->error("skipping undecodable event at im.events partition {} offset {}: {}", r.partition, r.offset,
                    ev.error().to_string());
      return;
    }
    const fb::EventEnvelope& e = **ev;
    // Control records (epoch markers, remembered refusals) go to the filter only: no one is shown
    // them; a refusal was answered by the sequencer, to its sender alone.
    if (!filter.accept(r.partition, e) || is_control_record(e.event_type())) return;
    auto ref = parse_stream(sv(e.stream()));
    if (!ref) return;
    // A leaver must see their own leave: find the audience before the membership changes.
    bool leaving = e.event_type() == fb::Event::MemberLeft || e.event_type() == fb::Event::MemberRemoved;
    if (live && leaving) deliver(r.partition, *ref, e, r.value);
    track_membership(r.partition, *ref, e);
    if (!live) return;
    stats.events++;
    bool pushed = pushed_with_ack(*ref, e);
    logger->debug("routing {}/{}{} trace_id={}", sv(e.stream()), e.seq(), pushed ? " (pushed with its ack)" : "",
                  sv(e.trace_id()));
    if (!leaving && !pushed) deliver(r.partition, *ref, e, r.value);
  }

  // Reads partition p of im.events up to `until`, tracking membership only: the state as of the
  // position deliveries resume from. From the partition's restored state when it holds up to no
  // further than `until`; else from the partition's first record. Reads partition p alone (a
  // group's membership lives in its own stream's partition).
  Status rebuild(int32_t p, int64_t until) {
    int64_t from = 0;
    groups[p].clear();
    filter.restore(p, {});
    if (auto it = restored.find(p); it != restored.end() && it->second.offset <= until) {
      from = it->second.offset;
      groups[p] = std::move(it->second.groups);
      filter.restore(p, it->second.filter);
    } else if (it != restored.end()) {
      logger->warn("router state of partition {} is at offset {}, past the committed {}: rebuilding from offset 0", p,
                   it->second.offset, until);
    }
    restored.erase(p);  // an owned partition's state is the live one
    stats.rebuilt_from_log += static_cast<uint64_t>(until - from);
    return read_partition_until(
        log, p, from, until, config.max_batch, [this] { return worker.stopping(); },
        [this](const Record& r) { route(r, false); }, "router rebuilding membership");
  }

  // ---- the snapshot (snapshot_file.h): partitions u32, then per partition: partition i32,
  // offset i64, filter token u64 and link u64, groups u64, then per group: id u64, members u32,
  // member ids u64 ----------------------------------------------------------------------------

  static constexpr std::string_view kMagic = "IMLRTR01";

  static void put_partition(SnapshotWriter& out, int32_t p, int64_t offset, const EpochFilter::State& f,
                            const Groups& g) {
    out.put(p);
    out.put(offset);
    out.put(f.token);
    out.put(f.link);
    out.put(static_cast<uint64_t>(g.size()));
    for (const auto& [id, members] : g) {
      out.put(id);
      out.put(static_cast<uint32_t>(members.size()));
      for (uint64_t m : members) out.put(m);
    }
  }

  // The owned partitions' membership as of `delivered`, only when everything read is out (nothing
  // in `sent`) and committed, so the groups and the filter are exactly those of the offsets
  // written beside them; and the restored state of the partitions not owned, each as of an offset
  // committed then. A restart (which resumes at the committed offsets) never finds the snapshot
  // ahead of them. Until it can be written, each commit tries again.
  void save_snapshot() {
    if (config.snapshot_path.empty() || !sent.empty()) return;
    for (auto [p, offset] : delivered) {
      if (committed[p] != offset) return;
    }
    last_snapshot = std::chrono::steady_clock::now();
    SnapshotWriter out(kMagic);
    out.put(static_cast<uint32_t>(delivered.size() + restored.size()));
    for (auto [p, offset] : delivered) put_partition(out, p, offset, filter.state(p), groups[p]);
    for (const auto& [p, r] : restored) put_partition(out, p, r.offset, r.filter, r.groups);
    if (auto s = out.write(config.snapshot_path); !s) {
      logger->warn("router snapshot not written (the next start reads more of the log): {}", s.error().to_string());
    }
  }

  // Every partition's state in the snapshot file; nothing (with a warning) if it is damaged or
  // foreign.
  RestoredMap read_snapshot_file() {
    RestoredMap entries;
    if (config.snapshot_path.empty()) return entries;
    auto snapshot = SnapshotReader::open(config.snapshot_path, kMagic);
    if (!snapshot) return entries;
    std::string why = snapshot->problem().empty() ? read_snapshot(*snapshot, entries) : snapshot->problem();
    if (!why.empty()) {
      entries.clear();
      logger->warn("router snapshot {} not used ({}): rebuilding membership from offset 0", config.snapshot_path, why);
    }
    return entries;
  }

  // Empty when the snapshot was read whole; else why not.
  static std::string read_snapshot(SnapshotReader& r, RestoredMap& entries) {
    uint32_t partitions = 0;
    if (!r.get(partitions)) return "truncated";
    for (uint32_t i = 0; i < partitions; ++i) {
      int32_t p = 0;
      Restored entry;
      uint64_t count = 0;
      if (!r.get(p) || !r.get(entry.offset) || !r.get(entry.filter.token) || !r.get(entry.filter.link) ||
          !r.get(count)) {
        return "truncated";
      }
      for (uint64_t g = 0; g < count; ++g) {
        uint64_t id = 0;
        uint32_t n = 0;
        if (!r.get(id) || !r.get(n) || r.left() < n * sizeof(uint64_t)) return "truncated";
        auto& members = entry.groups[id];
        for (uint32_t m = 0; m < n; ++m) {
          uint64_t member = 0;
          r.get(member);
          members.insert(member);
        }
      }
      entries[p] = std::move(entry);
    }
    return r.left() == 0 ? "" : "trailing bytes";
  }

  // ---- partitions from the group (RebalanceListener: inside reader->poll(), on the loop's thread)

  // Takes partition p: its state as of the group's committed position (event_follow.h: the log's
  // end now if the group never committed it; a new router does not push old messages, clients
  // catch up with sync), and its reading from there.
  Status take(int32_t p) {
    auto at = resume_point(log, *reader, p);
    IMLOG_TRY(at);
    IMLOG_TRY(rebuild(p, *at));
    IMLOG_TRY(reader->seek(TopicPartitionOffset{std::string(kEventsTopic), p, *at}));
    delivered[p] = *at;
    committed[p] = -1;  // commit `at` at the next commit
    untaken.erase(p);
    stats.taken++;
    stats.partitions = static_cast<int32_t>(delivered.size());
    logger->info("router takes im.events partition {} at offset {} ({} groups)", p, *at, groups[p].size());
    return {};
  }

  void on_assigned(const std::vector<TopicPartition>& parts) override {
    for (const auto& tp : parts) {
      if (auto s = take(tp.partition); !s) {
        untaken.insert(tp.partition);  // its records are skipped until step() takes it
        logger->warn("router could not take im.events partition {} yet: {}", tp.partition, s.error().to_string());
      }
    }
    commit();  // a partition the group never committed starts where this router took it
  }

  // Hands partitions over: waits (bounded) for what is on its way, commits what is out, and keeps
  // each one's state as of that committed offset, to take it again cheaply. When the commit is
  // refused (a Kafka group refuses commits while it rebalances) or something is still on its
  // way, the next owner resumes at the last committed offset and pushes the events since then
  // again (at least once), and this router keeps the partition's state from its snapshot file.
  void on_revoked(const std::vector<TopicPartition>& parts) override {
    bool failed = settle(kHandOverWait).has_value();
    bool out = !failed && sent.empty() && commit();
    std::vector<int32_t> released;
    for (const auto& tp : parts) {
      untaken.erase(tp.partition);
      for (auto& b : sent) b.next.erase(tp.partition);  // no longer ours to account for
      if (delivered.contains(tp.partition)) released.push_back(tp.partition);
    }
    RestoredMap on_disk = out ? RestoredMap{} : read_snapshot_file();
    for (int32_t p : released) {
      if (out) {
        restored[p] = Restored{delivered[p], filter.state(p), std::move(groups[p])};
      } else if (auto it = on_disk.find(p); it != on_disk.end()) {
        restored[p] = std::move(it->second);
      }
      groups.erase(p);
      filter.restore(p, {});
      delivered.erase(p);
      committed.erase(p);
      stats.released++;
      logger->info("router releases im.events partition {}{}", p,
                   out ? "" : " (what was pushed since its last commit is pushed again by its next owner)");
    }
    stats.partitions = static_cast<int32_t>(delivered.size());
  }

  static constexpr std::chrono::seconds kHandOverWait{5};

  // ---- the loop, continued --------------------------------------------------------------------

  // Takes the finished batches off the front of `sent`, oldest first, waiting up to `wait` for
  // them. A failed batch is returned: its events must be routed again.
  std::optional<Error> settle(std::chrono::milliseconds wait) {
    auto until = std::chrono::steady_clock::now() + wait;
    while (!sent.empty()) {
      auto& front = sent.front();
      if (!front.outcome->finished()) {
        if (std::chrono::steady_clock::now() >= until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      {
        std::lock_guard lock(front.outcome->mu);
        if (front.outcome->error) return front.outcome->error;
      }
      for (auto [p, next] : front.next) delivered[p] = next;
      sent.pop_front();
    }
    return std::nullopt;
  }

  // Stores, under the router's group, where each owned partition's deliveries are out up to;
  // false if the group refused.
  bool commit() {
    std::vector<TopicPartitionOffset> offsets;
    for (auto [p, next] : delivered) {
      if (committed[p] != next) offsets.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, next});
    }
    last_commit = std::chrono::steady_clock::now();
    if (offsets.empty()) return true;
    // A failed commit is retried at the next one; a crash before then pushes some events again.
    if (auto s = reader->commit(offsets); !s) {
      logger->warn("committing im.events offsets: {}", s.error().to_string());
      return false;
    }
    for (const auto& o : offsets) committed[o.partition] = o.offset;
    if (std::chrono::steady_clock::now() - last_snapshot >= config.snapshot_every) save_snapshot();
    return true;
  }

  // Events of the owned partitions not out yet (for /metrics): one end-offset look-up per partition.
  void measure_lag() {
    int64_t lag = 0;
    for (auto [p, next] : delivered) {
      if (auto end = log.end_offset(TopicPartition{std::string(kEventsTopic), p})) lag += std::max<int64_t>(0, *end - next);
    }
    stats.lag = lag;
  }

  // A batch's deliveries failed: drop what is on its way and read every partition again from what
  // is out, so each event after it is routed again (at least once; clients drop a seq they have).
  // Each partition's state as of that position comes from the snapshot file when it has it (it is
  // written only with nothing on its way, so at or below what is out), else from offset 0.
  Status resume_after(const Error& failure) {
    sent.clear();
    RestoredMap on_disk = read_snapshot_file();
    for (const auto& [p, from] : delivered) {
      if (auto it = on_disk.find(p); it != on_disk.end()) restored[p] = std::move(it->second);
      IMLOG_TRY(rebuild(p, from));
      IMLOG_TRY(reader->seek(TopicPartitionOffset{std::string(kEventsTopic), p, from}));
    }
    return fail(failure.with_context("router delivering (the events after the last delivered are routed again)"));
  }

  // One poll of im.events, routed; its outputs leave without waiting, and what is out is committed
  // every commit_interval. A poll error goes to the worker: retried with back-off, or the router
  // fails visibly (/readyz, /metrics) instead of leaving its thread silently.
  Status step(std::chrono::milliseconds wait) {
    for (int32_t p : std::set<int32_t>(untaken)) IMLOG_TRY(take(p));
    auto polled = reader->poll(batch, wait);
    if (!polled) return fail(polled.error().with_context("router reading im.events"));
    if (!batch.empty()) {
      auto outcome = std::make_shared<BatchOutcome>();
      SentBatch b{{}, outcome};
      for (const auto& r : batch) {
        if (!delivered.contains(r.partition)) continue;  // not taken yet: read again from its position
        route(r, true);
        b.next[r.partition] = r.offset + 1;
      }
      flush_output(outcome);
      sent.push_back(std::move(b));
    }
    if (auto failed = settle(std::chrono::milliseconds(0))) return resume_after(*failed);
    if (std::chrono::steady_clock::now() - last_commit >= config.commit_interval) {
      commit();
      measure_lag();
    }
    return {};
  }

  // On a clean stop: waits for what is on its way (bounded), commits it, and leaves the group.
  void finish() {
    if (!reader) return;
    if (!settle(std::chrono::seconds(5))) {
      commit();
      save_snapshot();
    }
    reader->close();  // on_revoked hands the partitions over
    reader.reset();
  }
};

Router::Router(EventLog& log, DeliveryTransport& deliveries, SessionRegistry& sessions, RouterConfig config)
    : loop_(std::make_unique<Loop>(log, deliveries, sessions, config)) {}

Router::~Router() { stop(); }

Status Router::start() {
  auto& l = *loop_;
  l.tasks_topic = l.log.partition_count(kTasksTopic).has_value();
  if (!l.tasks_topic) {
    l.logger->warn("router: {} does not exist; groups over {} members are delivered by the router itself",
                   kTasksTopic, l.config.large_group_threshold);
  }
  l.restored = l.read_snapshot_file();
  if (auto s = commit_unseen_ends(l.log, l.config.group); !s) {
    l.logger->debug("router group {} has members: they hold its positions ({})", l.config.group, s.error().to_string());
  }
  ConsumerOptions opts;
  opts.group = l.config.group;
  opts.topics = {std::string(kEventsTopic)};
  opts.start_at_beginning = false;
  opts.max_batch = l.config.max_batch;
  opts.listener = &l;
  l.reader = l.log.consumer(opts);
  l.last_commit = l.last_snapshot = std::chrono::steady_clock::now();
  // The embedded log hands a group's partitions over at the first poll: take them before start()
  // returns, so every event appended after it is routed. A Kafka group's join completes later, in
  // the loop (its positions are committed above for a new group).
  IMLOG_TRY(l.step(std::chrono::milliseconds(0)));
  l.worker.on_wake([&l] { l.reader->wakeup(); });
  l.worker.start();
  l.logger->info("router started; partitions of im.events shared by the consumer group {}", l.config.group);
  return {};
}

void Router::stop() {
  loop_->worker.stop();
  loop_->finish();
}

const RouterStats& Router::stats() const { return loop_->stats; }

}  // namespace imlog
