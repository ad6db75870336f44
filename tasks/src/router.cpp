#include "imlog/tasks/router.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/audience.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"

namespace imlog {

struct Router::Loop {
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
  std::unordered_map<uint64_t, std::unordered_set<uint64_t>> groups;  // group id → members
  std::vector<int64_t> deliver_from;  // per partition: events before this were routed by a former run
  std::vector<Record> batch;
  Worker worker{"router", [this] { return step(); }};
  bool tasks_topic = false;  // im.tasks exists: large groups go to the tasks workers

  // Output of one batch: deliveries per gateway, and fan-out tasks.
  std::map<std::string, std::vector<std::string>> out;
  std::vector<OutRecord> tasks_out;
  std::vector<uint64_t> audience;
  std::vector<std::pair<uint64_t, std::string>> located;

  // ---- membership, derived from the events themselves ----------------------------------------

  void track_membership(const StreamRef& ref, const fb::EventEnvelope& e) {
    if (ref.kind != StreamKind::group) return;
    auto& members = groups[ref.a];
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
  void find_audience(const StreamRef& ref, const fb::EventEnvelope& e, std::vector<uint64_t>& who) {
    who.clear();
    if (shown_to_actor_only(e.event_type())) {
      who.push_back(e.actor());
      return;
    }
    switch (ref.kind) {
      case StreamKind::single: who = one_to_one_audience(ref, e); break;
      case StreamKind::group: {
        auto& members = groups[ref.a];
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

  void deliver(const StreamRef& ref, const fb::EventEnvelope& e, std::string_view bytes) {
    located.clear();
    if (ref.kind == StreamKind::world && e.event_type() != fb::Event::ReadMarked) {
      sessions.all_online(located);
    } else {
      find_audience(ref, e, audience);
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

  // A gateway that went away leaves its deliveries unread; its clients sync on reconnect. A lost
  // task is a large group's message not pushed (clients sync on their next gap or reconnect).
  void flush_output() {
    for (auto& [gateway, batch] : out) {
      if (!batch.empty()) deliveries.deliver(gateway, std::move(batch), {});
    }
    out.clear();
    if (tasks_out.empty()) return;
    log.append(kTasksTopic, std::move(tasks_out), [this](Result<std::vector<RecordPosition>> r) {
      if (!r) logger->error("writing fan-out tasks failed: {}", r.error().to_string());
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

  void route(const Record& r) {
    auto ev = read_event(r.value);
    if (!ev) {
      logger->error("skipping undecodable event at im.events partition {} offset {}: {}", r.partition, r.offset,
                    ev.error().to_string());
      return;
    }
    const fb::EventEnvelope& e = **ev;
    if (!filter.accept(r.partition, e) || e.event_type() == fb::Event::EpochStarted) return;
    auto ref = parse_stream(sv(e.stream()));
    if (!ref) return;
    bool live = r.offset >= deliver_from[static_cast<size_t>(r.partition)];
    // A leaver must see their own leave: find the audience before the membership changes.
    bool leaving = e.event_type() == fb::Event::MemberLeft || e.event_type() == fb::Event::MemberRemoved;
    if (live && leaving) deliver(*ref, e, r.value);
    track_membership(*ref, e);
    if (!live) return;
    stats.events++;
    bool pushed = pushed_with_ack(*ref, e);
    logger->debug("routing {}/{}{} trace_id={}", sv(e.stream()), e.seq(), pushed ? " (pushed with its ack)" : "",
                  sv(e.trace_id()));
    if (!leaving && !pushed) deliver(*ref, e, r.value);
  }

  Status rebuild() {
    auto count = log.partition_count(kEventsTopic);
    IMLOG_TRY(count);
    std::vector<TopicPartitionOffset> from;
    for (int32_t p = 0; p < *count; ++p) {
      auto end = log.end_offset(TopicPartition{std::string(kEventsTopic), p});
      IMLOG_TRY(end);
      deliver_from.push_back(*end);
      from.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, 0});
    }
    ConsumerOptions opts;
    opts.max_batch = config.max_batch;
    reader = log.consumer(opts);
    IMLOG_TRY(reader->assign(from));
    std::vector<int64_t> next(deliver_from.size(), 0);
    std::vector<Record> batch;
    auto behind = [&] {
      for (size_t p = 0; p < next.size(); ++p) {
        if (next[p] < deliver_from[p]) return true;
      }
      return false;
    };
    while (behind()) {
      auto polled = reader->poll(batch, std::chrono::milliseconds(1000));
      if (!polled) return fail(polled.error().with_context("router rebuilding membership"));
      for (const auto& r : batch) {
        next[static_cast<size_t>(r.partition)] = r.offset + 1;
        route(r);
      }
    }
    flush_output();  // a batch may have reached past the rebuild point
    return {};
  }

  // One poll of im.events, routed. A poll error goes to the worker: retried with back-off, or the
  // router fails visibly (/readyz, /metrics) instead of leaving its thread silently.
  Status step() {
    auto polled = reader->poll(batch, std::chrono::milliseconds(200));
    if (!polled) return fail(polled.error().with_context("router reading im.events"));
    for (const auto& r : batch) route(r);
    flush_output();
    return {};
  }
};

Router::Router(EventLog& log, DeliveryTransport& deliveries, SessionRegistry& sessions, RouterConfig config)
    : loop_(std::make_unique<Loop>(log, deliveries, sessions, config)) {}

Router::~Router() { stop(); }

Status Router::start() {
  loop_->tasks_topic = loop_->log.partition_count(kTasksTopic).has_value();
  if (!loop_->tasks_topic) {
    loop_->logger->warn("router: {} does not exist; groups over {} members are delivered by the router itself",
                        kTasksTopic, loop_->config.large_group_threshold);
  }
  IMLOG_TRY(loop_->rebuild());
  loop_->worker.on_wake([l = loop_.get()] { l->reader->wakeup(); });
  loop_->worker.start();
  loop_->logger->info("router started; {} groups known", loop_->groups.size());
  return {};
}

void Router::stop() { loop_->worker.stop(); }

const RouterStats& Router::stats() const { return loop_->stats; }

}  // namespace imlog
