// Integration tests of the MySQL and Redis projection sinks (projections/src/{mysql,redis}_model.cpp)
// against REAL servers: the MariaDB and Redis that scripts/test starts (IMLOG_MYSQL_* and
// IMLOG_REDIS_* variables). Without those variables this binary starts its own mariadbd and
// redis-server in a temporary directory on free ports — except under CI (CI=true), where a missing
// server is a failure, never a skip.
//
// The log: a real Sequencer (tests/support engine harness) on a LocalLog turns a script of
// commands — registrations, a friendship, one-to-one and group and world messages, joins, leaves,
// role changes with an ownership transfer, profile and settings edits, blocks, a recall, read
// marks, a group with more messages than the hot cache keeps, a private group whose members read
// from their join, with removals that ban, a settings change and a lifted ban, and content that
// tries SQL injection — into im.events. Every record is read back and sorted by the EpochFilter exactly as
// the projector does; one hand-encoded partition adds a registration whose username no engine
// would accept (quotes, semicolons), to show such bytes are stored verbatim.
//
// What is checked, for each sink:
//   - the generated log projects to the expected answers (queries, Redis keys);
//   - rapidcheck: applying any prefix of the log twice, in any batch sizes, equals applying it once
//     (compared by dump()), and the positions are the prefix's;
//   - batch sizes and the interleaving of partitions do not change the model;
//   - a process killed (SIGKILL) in the middle of projecting, then resumed from the positions the
//     sink stored, ends equal to an uninterrupted build: nothing lost, nothing doubled;
//   - a batch that fails half-way leaves the positions where they were, and re-applying it from
//     there gives the uninterrupted model;
// and across sinks: MySQL and Redis give the same history pages, and the same unread counts.
// Plus: UNIQUE (conversation_id, seq_id) holds in MySQL; unreachable servers are retryable errors
// naming host:port; migrations are idempotent.
//
// Cases of the rapidcheck properties: 100 (Redis) and 25 (MySQL: each case drops and re-creates a
// database) unless RC_PARAMS is set. Every test name starts with ProjectionSinks:
//   scripts/test -R ProjectionSinks

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cppconn/driver.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "imlog/core/logging.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "imlog/projections/mysql_model.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/redis_model.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/sinks.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;

// ---- the generated log --------------------------------------------------------------------------

// One valid event as the projector hands it to a sink, with the EpochFilter state after it.
struct LogEvent {
  int32_t partition = 0;
  int64_t offset = 0;
  const fb::EventEnvelope* event = nullptr;
  EpochFilter::State after;
  int64_t timestamp = 0;
  std::string_view text;  // a message's opened text (EventBatch::Item::text)
  bool erased = false;    // its owner's key is gone (EventBatch::Item::erased)
};

PartitionPosition position_after(const LogEvent& e) {
  return PartitionPosition{e.partition, e.offset + 1, e.after.token, e.after.link};
}

// The hand-encoded partition: after the engine's two.
constexpr int32_t kSyntheticPartition = 2;
constexpr uint64_t kSyntheticToken = 9001;
const std::string kNastyUsername = "o'brien\"; DROP TABLE users; --";
const std::string kNastyNickname = "Robert'); DROP TABLE users;-- \\ %_ \"q\"";
const std::string kNastyContent = "'; DROP TABLE messages; -- \" \\ %_ \t\n ünïcødé 🚀 \\' OR '1'='1";
const std::string kNote = "hi 'there' \\ %_";
const std::string kGroupName = "Team 'A'; --";
constexpr int kBigGroupMessages = 320;  // more than the 300 the hot cache keeps

struct Users {
  uint64_t ann = 0, bob = 0, cyd = 0, dee = 0;
};

// The system clock moved on by `offset_ms` (the script's retention part skips days).
class OffsetClock final : public Clock {
 public:
  [[nodiscard]] int64_t now_ms() const override { return SystemClock::instance().now_ms() + offset_.load(); }
  void skip_ms(int64_t d) { offset_ += d; }

 private:
  std::atomic<int64_t> offset_{0};
};

class GeneratedLog {
 public:
  Users users;
  std::string single_ab, single_cd, group1, group2, group3;
  std::string group4;  // retention: keeps 1 day; its rows 1..4 expired three days later
  uint64_t recalled_message_id = 0;
  uint64_t synthetic_user_id = 0;
  std::deque<std::string> bytes;   // owns every event's bytes; never modified once decoded
  std::deque<std::string> texts;   // owns the messages' opened texts
  std::vector<LogEvent> events;    // valid events, partitions interleaved by timestamp
  std::vector<LogEvent> partition_major;  // the same events, partition by partition
  std::string problem;             // why generation failed, if it did
  std::unique_ptr<t::TempDir> log_dir;  // the LocalLog the engine wrote (closed), for the projector
  std::string log_path;

  // The events from which a sink with these positions resumes.
  [[nodiscard]] std::vector<LogEvent> after(const std::vector<PartitionPosition>& positions) const {
    std::map<int32_t, int64_t> next;
    for (const auto& p : positions) next[p.partition] = p.next_offset;
    std::vector<LogEvent> out;
    for (const auto& e : events) {
      if (e.offset >= next[e.partition]) out.push_back(e);
    }
    return out;
  }

  // The positions after the first `n` events.
  [[nodiscard]] std::vector<PartitionPosition> positions_after(size_t n) const {
    std::map<int32_t, PartitionPosition> pos;
    for (size_t i = 0; i < n; ++i) pos[events[i].partition] = position_after(events[i]);
    std::vector<PartitionPosition> out;
    for (auto& [p, v] : pos) out.push_back(v);
    return out;
  }
};

EventBatch make_batch(const std::vector<LogEvent>& events, size_t begin, size_t end) {
  EventBatch b;
  std::map<int32_t, PartitionPosition> pos;
  for (size_t i = begin; i < end; ++i) {
    const auto& e = events[i];
    b.events.push_back({e.partition, e.offset, e.event, e.text, e.erased});
    pos[e.partition] = position_after(e);
  }
  for (auto& [p, v] : pos) b.positions.push_back(v);
  return b;
}

// Applies events [0, n) in batches of `batch` events.
Status apply_all(ProjectionSink& sink, const std::vector<LogEvent>& events, size_t n, size_t batch) {
  for (size_t i = 0; i < n; i += batch) IMLOG_TRY(sink.apply(make_batch(events, i, std::min(n, i + batch))));
  return {};
}

using Dump = std::vector<std::pair<std::string, std::string>>;

Result<Dump> dump_of(ProjectionSink& sink) {
  Dump out;
  IMLOG_TRY(sink.dump([&](std::string_view k, std::string_view v) {
    out.emplace_back(k, v);
    return true;
  }));
  return out;
}

// "" when equal; otherwise the first difference.
std::string diff(const Dump& a, const Dump& b) {
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size()) return "only in the second: " + b[i].first + " = " + b[i].second;
    if (i >= b.size()) return "only in the first: " + a[i].first + " = " + a[i].second;
    if (a[i] != b[i]) {
      return "row " + std::to_string(i) + ": " + a[i].first + " = " + a[i].second + "\n  vs " + b[i].first + " = " +
             b[i].second;
    }
  }
  return {};
}

std::string encode(fb::EventEnvelopeT e) { return encode_event(e); }

// Runs the engine over the command script and collects im.events.
class LogBuilder {
 public:
  explicit LogBuilder(GeneratedLog& out) : out_(out) {}

  Status build() {
    out_.log_dir = std::make_unique<t::TempDir>("imlog-sinks-log");
    t::TempDir& dir = *out_.log_dir;
    LocalLogConfig lc;
    lc.dir = dir.str() + "/log";
    out_.log_path = lc.dir;
    auto opened = LocalLog::open(lc);
    IMLOG_TRY(opened);
    LocalLog& log = **opened;
    log_ = &log;
    IMLOG_TRY(t::create_engine_topics(log, 2, kGateway));
    {
      EngineConfig ec;
      ec.state_dir = dir.str() + "/engine";
      ec.instance_id = "sinks-test";
      ec.checkpoint_interval = 50ms;
      auto node = t::EngineNode::start(log, ec, clock_);
      IMLOG_TRY(node);
      if (!(*node)->wait_for_partitions(2)) return fail(LogErrc::timed_out, "the sequencer did not take both partitions");
      auto tail = t::LogTail::open(log, kGateway);
      IMLOG_TRY(tail);
      tail_ = tail->get();
      node_ = node->get();
      IMLOG_TRY(script());
      tail_ = nullptr;
      node_ = nullptr;
    }  // the engine stops here: no threads of it remain when tests fork
    IMLOG_TRY(collect(log));
    add_synthetic_partition();
    return {};
  }

 private:
  static constexpr const char* kGateway = "gw-sinks";

  // Submits the commands and waits until each is answered; a refusal is a failure of the script.
  Status run(std::vector<fb::CommandEnvelopeT> commands) {
    std::vector<uint64_t> ids;
    for (auto& c : commands) {
      c.reply_to->request_id = ++request_;
      ids.push_back(request_);
    }
    IMLOG_TRY(t::submit(*log_, commands));
    auto done = tail_->wait_for(
        [&] {
          for (uint64_t id : ids) {
            if (!tail_->answered(id)) return false;
          }
          return true;
        },
        60s);
    IMLOG_TRY(done);
    if (!*done) return fail(LogErrc::timed_out, "the engine did not answer the script's commands within 60 s");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!tail_->event_for_request(ids[i])) {
        const auto* r = tail_->replies_for(ids[i]).front();
        return fail(LogErrc::bad_argument, "script command " + std::to_string(i) + " on " + commands[i].stream +
                                               " was answered " + r->code + ": " + r->message);
      }
    }
    last_ids_ = ids;
    return {};
  }

  fb::CommandEnvelopeT cmd(const std::string& stream, uint64_t actor) {
    return t::command_envelope(stream, actor, "c" + std::to_string(++client_), kGateway, 0);
  }
  fb::CommandEnvelopeT send(const std::string& stream, uint64_t actor, const std::string& content) {
    auto c = t::send_message(stream, actor, "c" + std::to_string(++client_), content, kGateway, 0);
    return c;
  }
  template <class T>
  fb::CommandEnvelopeT with(fb::CommandEnvelopeT c, T command) {
    c.command.Set(std::move(command));
    return c;
  }

  Status script() {
    Users& u = out_.users;
    // Registrations; their ids follow from the names.
    std::vector<fb::CommandEnvelopeT> regs;
    for (const char* name : {"ann", "bob", "cyd", "dee"}) {
      auto c = t::register_user(name, "reg", kGateway, 0);
      c.command.AsRegisterUser()->nickname = std::string(name) == "dee" ? kNastyNickname : std::string("Nick ") + name;
      c.command.AsRegisterUser()->email = std::string(name) + "@example.com";
      regs.push_back(std::move(c));
    }
    IMLOG_TRY(run(std::move(regs)));
    uint64_t* ids[] = {&u.ann, &u.bob, &u.cyd, &u.dee};
    for (size_t i = 0; i < 4; ++i) *ids[i] = tail_->event_for_request(last_ids_[i])->result_id;
    if (!t::wait_until(
            [&] {
              for (auto* id : ids) {
                if (!node_->directory().user(*id).exists) return false;
              }
              return true;
            },
            30s)) {
      return fail(LogErrc::timed_out, "the directory did not learn the registered users");
    }
    out_.single_ab = single_stream(u.ann, u.bob);
    out_.single_cd = single_stream(u.cyd, u.dee);
    out_.group1 = group_stream(1);
    out_.group2 = group_stream(2);
    out_.group3 = group_stream(3);
    const auto& ab = out_.single_ab;
    const auto& g1 = out_.group1;
    const std::string world(kWorldStream);

    std::vector<fb::CommandEnvelopeT> c;
    // A friendship, then a conversation.
    c.push_back(with(cmd(ab, u.ann), fb::RequestFriendT{{}, u.bob, kNote}));
    c.push_back(with(cmd(ab, u.bob), fb::AcceptFriendT{{}, u.ann}));
    c.push_back(send(ab, u.ann, "hello bob"));
    c.push_back(send(ab, u.ann, "are you there?"));
    c.push_back(send(ab, u.bob, "yes"));
    c.push_back(send(ab, u.ann, "great"));
    c.push_back(send(ab, u.bob, "see you"));
    c.push_back(with(cmd(ab, u.bob), fb::MarkReadT{{}, 4}));
    // A group: created with members, joined, left, roles, ownership moves.
    {
      auto g = t::create_group(1, u.ann, {u.bob, u.cyd}, "c" + std::to_string(++client_), kGateway, 0);
      g.command.AsCreateGroup()->name = kGroupName;
      g.command.AsCreateGroup()->description = "the first group";
      c.push_back(std::move(g));
    }
    c.push_back(send(g1, u.bob, "hi team"));
    c.push_back(send(g1, u.cyd, "hello"));
    c.push_back(t::join_group(1, u.dee, "c" + std::to_string(++client_), kGateway, 0));
    c.push_back(send(g1, u.dee, "glad to be here"));
    c.push_back(t::leave_group(1, u.cyd, "c" + std::to_string(++client_), kGateway, 0));
    c.push_back(with(cmd(g1, u.ann), fb::ChangeRoleT{{}, u.bob, fb::Role::Admin}));
    c.push_back(with(cmd(g1, u.ann), fb::ChangeRoleT{{}, u.dee, fb::Role::Owner}));
    c.push_back(send(g1, u.bob, "to be recalled"));
    c.push_back(with(cmd(g1, u.dee), fb::MarkReadT{{}, 3}));
    // world, with content that tries SQL injection.
    c.push_back(send(world, u.ann, "hello world"));
    c.push_back(send(world, u.bob, "hi all"));
    c.push_back(send(world, u.dee, kNastyContent));
    c.push_back(with(cmd(world, u.cyd), fb::MarkReadT{{}, 2}));
    // Profiles, settings, friend groups (user streams).
    {
      fb::UpdateProfileT p;
      p.nickname = "Annie";
      p.signature = "sig of ann";
      c.push_back(with(cmd(user_stream(u.ann), u.ann), std::move(p)));
      fb::UpdateSettingsT s;
      s.allow_search = false;
      c.push_back(with(cmd(user_stream(u.cyd), u.cyd), std::move(s)));
      fb::UpdateSettingsT m;
      m.muted = {g1};
      m.message_policy = fb::MessagePolicy::FriendsOnly;
      m.quiet_start_minute = 1320;
      m.time_zone = "Asia/Shanghai";
      c.push_back(with(cmd(user_stream(u.bob), u.bob), std::move(m)));
      // Push devices: two registered, one removed, one registered again under a new id (kept).
      c.push_back(with(cmd(user_stream(u.ann), u.ann),
                       fb::RegisterDeviceT{{}, 501, fb::PushPlatform::Webhook, "https://hooks.example/ann", "app.x"}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann), fb::RegisterDeviceT{{}, 502, fb::PushPlatform::Fcm, "fcm:ann", ""}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann), fb::RemoveDeviceT{{}, 502}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann),
                       fb::RegisterDeviceT{{}, 503, fb::PushPlatform::Webhook, "https://hooks.example/ann", ""}));
      // A logout (schema 7): the devices of the ended session go (504), another session's stay (505).
      c.push_back(with(cmd(user_stream(u.ann), u.ann),
                       fb::RegisterDeviceT{{}, 504, fb::PushPlatform::Fcm, "fcm:ann-phone", "", "sess-phone"}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann),
                       fb::RegisterDeviceT{{}, 505, fb::PushPlatform::Fcm, "fcm:ann-tablet", "", "sess-tablet"}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann),
                       fb::RevokeRefreshTokenT{{}, "jti-ann-phone", 1'900'000'000'000, "sess-phone"}));
      c.push_back(with(cmd(user_stream(u.ann), u.ann), fb::SetFriendGroupT{{}, u.bob, "work"}));
    }
    // A block.
    c.push_back(with(cmd(out_.single_cd, u.cyd), fb::BlockUserT{{}, u.dee}));
    // A group with more messages than the hot cache keeps.
    c.push_back(t::create_group(2, u.dee, {u.ann}, "c" + std::to_string(++client_), kGateway, 0));
    for (int i = 0; i < kBigGroupMessages; ++i) c.push_back(send(out_.group2, i % 3 ? u.dee : u.ann, "bulk " + std::to_string(i)));
    size_t recall_index = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      if (auto* m = c[i].command.AsSendMessage(); m && m->content == "to be recalled") recall_index = i;
    }
    IMLOG_TRY(run(std::move(c)));
    out_.recalled_message_id = tail_->event_for_request(last_ids_[recall_index])->event_id;

    std::vector<fb::CommandEnvelopeT> d;
    d.push_back(with(cmd(g1, u.bob), fb::RecallMessageT{{}, out_.recalled_message_id}));
    d.push_back(send(g1, u.ann, "after the recall"));
    d.push_back(with(cmd(g1, u.bob), fb::JoinGroupT{{}, u.cyd}));  // an admin adds cyd back
    d.push_back(send(world, u.cyd, "back in the world"));
    // A private group, history from the join (the engine's default for private groups): cyd is
    // added at 4, dee added and removed (banned), bob removed (banned), the group made public,
    // bob's ban lifted and bob back by himself at 11.
    const auto& g3 = out_.group3;
    d.push_back(
        t::create_group(3, u.ann, {u.bob}, "c" + std::to_string(++client_), kGateway, 0, fb::JoinPolicy::Private));
    d.push_back(send(g3, u.ann, "g3 before cyd"));
    d.push_back(send(g3, u.bob, "g3 bob before cyd"));
    d.push_back(with(cmd(g3, u.ann), fb::JoinGroupT{{}, u.cyd}));  // 4
    d.push_back(send(g3, u.cyd, "g3 cyd is here"));
    d.push_back(with(cmd(g3, u.ann), fb::JoinGroupT{{}, u.dee}));
    d.push_back(with(cmd(g3, u.ann), fb::RemoveMemberT{{}, u.dee}));
    d.push_back(with(cmd(g3, u.ann), fb::RemoveMemberT{{}, u.bob}));  // 8
    {
      fb::ChangeGroupSettingsT open;
      open.join_policy = fb::JoinPolicy::Public;
      d.push_back(with(cmd(g3, u.ann), std::move(open)));
    }
    d.push_back(with(cmd(g3, u.ann), fb::UnbanMemberT{{}, u.bob}));
    d.push_back(t::join_group(3, u.bob, "c" + std::to_string(++client_), kGateway, 0));  // 11
    d.push_back(send(g3, u.bob, "g3 bob is back"));
    IMLOG_TRY(run(std::move(d)));
    return retention_script();
  }

  // Group 4 keeps messages 1 day (ann, its owner, sets it at 4). Three days later ann writes 5 and
  // 6, and the retention task's ExpireMessages (asking for more) expires 1..4: bob, who read none,
  // has 2 unread instead of 4; "expiring" is found nowhere; 5 and 6 keep their seqs.
  Status retention_script() {
    const Users& u = out_.users;
    out_.group4 = group_stream(4);
    const auto& g4 = out_.group4;
    std::vector<fb::CommandEnvelopeT> e;
    e.push_back(t::create_group(4, u.ann, {u.bob}, "c" + std::to_string(++client_), kGateway, 0));
    e.push_back(send(g4, u.ann, "expiring alpha"));
    e.push_back(send(g4, u.ann, "expiring beta"));
    e.push_back(with(cmd(g4, u.ann), fb::SetRetentionT{{}, 1}));
    IMLOG_TRY(run(std::move(e)));
    clock_.skip_ms(3 * kDayMs);
    std::vector<fb::CommandEnvelopeT> f;
    f.push_back(send(g4, u.ann, "kept gamma"));
    f.push_back(send(g4, u.ann, "kept delta"));
    IMLOG_TRY(run(std::move(f)));
    std::vector<fb::CommandEnvelopeT> x;
    x.push_back(with(cmd(g4, 0), fb::ExpireMessagesT{{}, 99}));
    return run(std::move(x));
  }

  Status collect(LocalLog& log) {
    auto n = log.partition_count(kEventsTopic);
    IMLOG_TRY(n);
    ConsumerOptions opts;
    opts.max_batch = 4096;
    auto consumer = log.consumer(opts);
    std::vector<TopicPartitionOffset> from;
    std::vector<int64_t> ends;
    int64_t total = 0;
    for (int32_t p = 0; p < *n; ++p) {
      from.push_back({std::string(kEventsTopic), p, 0});
      auto end = log.end_offset({std::string(kEventsTopic), p});
      IMLOG_TRY(end);
      ends.push_back(*end);
      total += *end;
    }
    IMLOG_TRY(consumer->assign(from));
    std::vector<Record> records;
    for (auto deadline = std::chrono::steady_clock::now() + 30s;
         static_cast<int64_t>(records.size()) < total && std::chrono::steady_clock::now() < deadline;) {
      std::vector<Record> got;
      IMLOG_TRY(consumer->poll(got, 1s));
      for (auto& r : got) records.push_back(std::move(r));
    }
    consumer.reset();
    if (static_cast<int64_t>(records.size()) != total) return fail(LogErrc::timed_out, "could not read im.events to its end");
    std::sort(records.begin(), records.end(),
              [](const Record& a, const Record& b) { return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset); });
    EpochFilter filter;
    for (auto& r : records) {
      out_.bytes.push_back(std::move(r.value));
      auto ev = read_event(out_.bytes.back());
      IMLOG_TRY(ev);
      if (!filter.accept(r.partition, **ev)) continue;
      EventBatch::Item item{r.partition, r.offset, *ev, {}};
      IMLOG_TRY(open_item(item, out_.texts, &t::test_keys()));
      out_.partition_major.push_back(
          {r.partition, r.offset, item.event, filter.state(r.partition), (*ev)->timestamp_ms(), item.text, item.erased});
    }
    return {};
  }

  // A partition no engine wrote: an epoch marker, then a registration with a username the engine
  // would refuse (quotes, a semicolon) — the sinks store what the log says, byte for byte.
  void add_synthetic_partition() {
    int64_t ts = out_.partition_major.empty() ? 1'700'000'000'000 : out_.partition_major.back().timestamp;
    fb::EventEnvelopeT epoch;
    epoch.event_id = 1;
    epoch.epoch = kSyntheticToken;
    epoch.timestamp_ms = ts;
    epoch.event.Set(fb::EpochStartedT{{}, kSyntheticToken, kSyntheticPartition, "synthetic"});
    fb::EventEnvelopeT reg;
    reg.stream = "names_63";
    reg.seq = 1;
    reg.event_id = 2;
    reg.epoch = kSyntheticToken;
    reg.timestamp_ms = ts + 1;
    out_.synthetic_user_id = 1'000'000'001;
    reg.event.Set(fb::UserRegisteredT{{}, out_.synthetic_user_id, kNastyUsername, "$argon2id$x'y", kNastyNickname, "a@b"});
    int64_t offset = 0;
    for (auto* e : {&epoch, &reg}) {
      out_.bytes.push_back(encode(*e));
      auto ev = read_event(out_.bytes.back());
      out_.partition_major.push_back({kSyntheticPartition, offset++, *ev, {kSyntheticToken, e->event_id}, e->timestamp_ms, {}});
    }
    out_.events = out_.partition_major;
    std::stable_sort(out_.events.begin(), out_.events.end(),
                     [](const LogEvent& a, const LogEvent& b) { return a.timestamp < b.timestamp; });
    // Keep each partition in offset order (a stable sort by time could not break it unless clocks
    // stepped back; make sure).
    std::map<int32_t, int64_t> last;
    for (const auto& e : out_.events) {
      if (last.contains(e.partition) && last[e.partition] > e.offset) {
        out_.events = out_.partition_major;
        break;
      }
      last[e.partition] = e.offset;
    }
  }

  GeneratedLog& out_;
  t::LogTail* tail_ = nullptr;
  t::EngineNode* node_ = nullptr;
  EventLog* log_ = nullptr;
  uint64_t request_ = 0;
  OffsetClock clock_;
  uint64_t client_ = 0;
  std::vector<uint64_t> last_ids_;
};

// The log, generated once per process (a few seconds of engine time), and its directory removed
// when the process ends.
const GeneratedLog& generated_log() {
  static const std::unique_ptr<GeneratedLog> log = [] {
    setup_logging(LogConfig{"warn", "text"});
    auto g = std::make_unique<GeneratedLog>();
    if (auto r = LogBuilder(*g).build(); !r) g->problem = r.error().to_string();
    return g;
  }();
  return *log;
}


// ---- sinks under test ---------------------------------------------------------------------------

struct Target {
  MysqlConfig mysql;
  RedisConfig redis;
};

struct Opened {
  std::unique_ptr<ProjectionSink> sink;
  MysqlModel* mysql = nullptr;
  RedisModel* redis = nullptr;
  Status drop() { return mysql ? mysql->drop() : redis->drop(); }
};

Result<Opened> open_sink(const std::string& which, const Target& target) {
  Opened o;
  if (which == "mysql") {
    auto m = open_mysql_model(target.mysql);
    IMLOG_TRY(m);
    o.mysql = m->get();
    o.sink = std::move(*m);
  } else {
    auto r = open_redis_model(target.redis);
    IMLOG_TRY(r);
    o.redis = r->get();
    o.sink = std::move(*r);
  }
  return o;
}

#define ASSERT_OK(expr)                                                       \
  do {                                                                        \
    auto&& assert_ok_r_ = (expr);                                             \
    ASSERT_TRUE(assert_ok_r_.has_value()) << #expr << ": " << assert_ok_r_.error().to_string(); \
  } while (0)

std::string server_problem(const std::string& which) {
  const auto& s = t::TestServers::get();
  return which == "mysql" ? s.mysql_problem : s.redis_problem;
}

// Runs a rapidcheck property with a default number of cases (RC_PARAMS overrides), as a gtest
// failure naming the seed.
void check_property(const std::string& id, int default_cases, const std::function<void()>& property) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = default_cases;
  rc::detail::TestMetadata metadata;
  metadata.id = id;
  metadata.description = id;
  auto result = rc::detail::checkTestable(property, metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(seed " << params.seed << "; rerun with RC_PARAMS=\"seed=" << params.seed << "\")";
  }
}

class SinkTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto problem = server_problem(GetParam());
    ASSERT_TRUE(problem.empty()) << problem;
    ASSERT_TRUE(generated_log().problem.empty()) << "generating the log: " << generated_log().problem;
  }
  void TearDown() override {
    for (auto& t : targets_) {
      auto o = open_sink(GetParam(), t);
      if (o) (void)o->drop();
    }
  }
  Target new_target() {
    targets_.push_back(Target{t::fresh_mysql(GetParam()), t::fresh_redis(GetParam())});
    return targets_.back();
  }
  const GeneratedLog& log() const { return generated_log(); }

  std::vector<Target> targets_;
};

std::string param_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

TEST_P(SinkTest, AppliesTheGeneratedLogAndStoresItsPositions) {
  auto target = new_target();
  auto o = open_sink(GetParam(), target);
  ASSERT_OK(o);
  auto before = o->sink->positions();
  ASSERT_OK(before);
  EXPECT_TRUE(before->empty());
  ASSERT_OK(apply_all(*o->sink, log().events, log().events.size(), 16));
  auto after = o->sink->positions();
  ASSERT_OK(after);
  EXPECT_EQ(*after, log().positions_after(log().events.size()));
  EXPECT_EQ(after->size(), 3u);  // the engine's two partitions and the hand-encoded one
  // Another instance (another process, say) sees the same positions and rows.
  auto again = open_sink(GetParam(), target);
  ASSERT_OK(again);
  auto p2 = again->sink->positions();
  ASSERT_OK(p2);
  EXPECT_EQ(*p2, *after);
  auto d1 = dump_of(*o->sink);
  auto d2 = dump_of(*again->sink);
  ASSERT_OK(d1);
  ASSERT_OK(d2);
  EXPECT_GT(d1->size(), 10u);
  EXPECT_EQ(diff(*d1, *d2), "");
  EXPECT_TRUE(std::is_sorted(d1->begin(), d1->end())) << "dump() rows must come ordered by key";
}

TEST_P(SinkTest, BatchSizesAndPartitionInterleavingDoNotChangeTheModel) {
  const auto& events = log().events;
  std::vector<Dump> dumps;
  struct Way {
    const std::vector<LogEvent>* order;
    size_t batch;
  };
  for (Way way : {Way{&events, 1}, Way{&events, events.size()}, Way{&log().partition_major, 50}}) {
    auto target = new_target();
    auto o = open_sink(GetParam(), target);
    ASSERT_OK(o);
    ASSERT_OK(apply_all(*o->sink, *way.order, way.order->size(), way.batch));
    auto d = dump_of(*o->sink);
    ASSERT_OK(d);
    dumps.push_back(std::move(*d));
  }
  EXPECT_EQ(diff(dumps[0], dumps[1]), "") << "one event per batch vs one batch";
  EXPECT_EQ(diff(dumps[0], dumps[2]), "") << "time-interleaved vs partition by partition";
}

TEST_P(SinkTest, ApplyingAPrefixTwiceEqualsApplyingItOnce) {
  auto target = new_target();
  auto o = open_sink(GetParam(), target);
  ASSERT_OK(o);
  const auto& events = log().events;
  check_property("ProjectionSinks/SinkTest/" + GetParam() + "/PrefixTwice", GetParam() == "mysql" ? 25 : 100, [&] {
    size_t n = *rc::gen::inRange<size_t>(0, events.size() + 1);
    size_t first = *rc::gen::element<size_t>(1, 2, 5, 17, 64, 4096);
    size_t second = *rc::gen::element<size_t>(1, 3, 9, 40, 4096);
    auto dropped = o->drop();
    RC_ASSERT(dropped.has_value());
    auto a = apply_all(*o->sink, events, n, first);
    if (!a) RC_FAIL("first application: " + a.error().to_string());
    auto once = dump_of(*o->sink);
    if (!once) RC_FAIL(once.error().to_string());
    auto b = apply_all(*o->sink, events, n, second);
    if (!b) RC_FAIL("second application: " + b.error().to_string());
    auto twice = dump_of(*o->sink);
    if (!twice) RC_FAIL(twice.error().to_string());
    auto d = diff(*once, *twice);
    if (!d.empty()) RC_FAIL("prefix of " + std::to_string(n) + " events applied twice differs: " + d);
    auto pos = o->sink->positions();
    RC_ASSERT(pos.has_value());
    RC_ASSERT(*pos == log().positions_after(n));
  });
}

// The projection in a child process, killed by SIGKILL after `batches_started` batches began,
// then resumed here from the positions the sink stored.
TEST_P(SinkTest, KilledMidProjectionResumesWithoutLossOrDuplicates) {
  const auto& events = log().events;
  Dump reference;
  {
    auto target = new_target();
    auto o = open_sink(GetParam(), target);
    ASSERT_OK(o);
    ASSERT_OK(apply_all(*o->sink, events, events.size(), 9));
    auto d = dump_of(*o->sink);
    ASSERT_OK(d);
    reference = std::move(*d);
  }
  for (int batches_started : {1, 2, 5, 17, 40}) {
    SCOPED_TRACE("killed after " + std::to_string(batches_started) + " batches began");
    auto target = new_target();
    {
      auto o = open_sink(GetParam(), target);  // create the database before the child races for it
      ASSERT_OK(o);
    }
    // fds: the child says a batch begins; go: the parent lets it apply it. Without the answer the
    // child could begin more batches between the parent's read and its SIGKILL.
    int fds[2], go[2];
    ASSERT_EQ(::pipe(fds), 0);
    ASSERT_EQ(::pipe(go), 0);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: no gtest here, and _exit without destructors of the parent's objects.
      t::die_with_parent(parent);
      ::close(fds[0]);
      ::close(go[1]);
      auto o = open_sink(GetParam(), target);
      if (!o) ::_exit(2);
      for (size_t i = 0; i < events.size(); i += 9) {
        char c;
        if (::write(fds[1], "b", 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(3);
        if (!o->sink->apply(make_batch(events, i, std::min(events.size(), i + 9)))) ::_exit(4);
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    ::close(go[0]);
    int seen = 0;
    while (seen < batches_started) {
      pollfd p{fds[0], POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 60'000), 1) << "the child stopped reporting";
      char c;
      if (::read(fds[0], &c, 1) != 1) break;  // the child finished
      ASSERT_EQ(::write(go[1], "g", 1), 1);
      ++seen;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ::close(fds[0]);
    ::close(go[1]);
    EXPECT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) << "status " << status;

    auto o = open_sink(GetParam(), target);
    ASSERT_OK(o);
    auto pos = o->sink->positions();
    ASSERT_OK(pos);
    auto rest = log().after(*pos);
    // Batches 1..k-1 were committed before batch k began; batch k may or may not have been.
    size_t applied = events.size() - rest.size();
    size_t committed = std::min(events.size(), size_t{9} * static_cast<size_t>(batches_started - 1));
    EXPECT_GE(applied, committed) << "a batch the child finished was lost";
    EXPECT_LE(applied, std::min(events.size(), committed + 9)) << "positions ran ahead of the batches begun";
    std::cout << "[ killed   ] " << GetParam() << " after " << batches_started << " batches began: "
              << (applied == committed && applied < events.size() ? "batch " + std::to_string(batches_started) +
                                                                        " was in flight (not stored)"
                                                                  : "between batches")
              << "\n";
    ASSERT_OK(apply_all(*o->sink, rest, rest.size(), 13));
    auto d = dump_of(*o->sink);
    ASSERT_OK(d);
    EXPECT_EQ(diff(reference, *d), "");
    auto final_pos = o->sink->positions();
    ASSERT_OK(final_pos);
    EXPECT_EQ(*final_pos, log().positions_after(events.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(ProjectionSinks, SinkTest, ::testing::Values("mysql", "redis"), param_name);

// ---- MySQL specifics ---------------------------------------------------------------------------

class ProjectionSinksMysql : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
    ASSERT_TRUE(generated_log().problem.empty()) << "generating the log: " << generated_log().problem;
    config_ = t::fresh_mysql("q");
    auto m = open_mysql_model(config_);
    ASSERT_OK(m);
    model_ = std::move(*m);
  }
  void TearDown() override {
    if (model_) (void)model_->drop();
  }
  void apply_log() { ASSERT_OK(apply_all(*model_, log().events, log().events.size(), 32)); }
  const GeneratedLog& log() const { return generated_log(); }

  MysqlConfig config_;
  std::unique_ptr<MysqlModel> model_;
};

std::map<std::string, ConversationView> by_id(const std::vector<ConversationView>& v) {
  std::map<std::string, ConversationView> out;
  for (const auto& c : v) out[c.conversation_id] = c;
  return out;
}

TEST_F(ProjectionSinksMysql, AnswersTheQueriesOfTheGeneratedLog) {
  apply_log();
  const Users& u = log().users;
  const auto& g1 = log().group1;

  // Users, profiles, settings, credentials, search.
  auto ann = model_->user(u.ann);
  ASSERT_OK(ann);
  ASSERT_TRUE(ann->has_value());
  EXPECT_EQ((*ann)->username, "ann");
  EXPECT_EQ((*ann)->nickname, "Annie");
  EXPECT_EQ((*ann)->signature, "sig of ann");
  EXPECT_EQ((*ann)->email, "ann@example.com");
  auto bob = model_->user(u.bob);
  ASSERT_OK(bob);
  EXPECT_EQ((*bob)->nickname, "Nick bob");
  EXPECT_EQ((*bob)->message_policy, "friends_only");
  EXPECT_EQ((*bob)->quiet_start_minute, 1320);
  EXPECT_EQ((*bob)->quiet_end_minute, -1);
  EXPECT_EQ((*bob)->muted, std::vector<std::string>{g1});
  EXPECT_EQ((*bob)->time_zone, "Asia/Shanghai");
  EXPECT_TRUE((*bob)->devices.empty());
  ASSERT_EQ((*ann)->devices.size(), 2u) << "502 removed; 503 was the same token as 501; 504 logged out";
  EXPECT_EQ((*ann)->devices[1].device_id, 505u) << "another session's device stays";
  EXPECT_EQ((*ann)->devices[0].device_id, 501u);
  EXPECT_EQ((*ann)->devices[0].platform, "webhook");
  EXPECT_EQ((*ann)->devices[0].token, "https://hooks.example/ann");
  EXPECT_EQ((*ann)->devices[0].app_id, "") << "the later registration's app_id";
  EXPECT_GT((*ann)->devices[0].created_at, 0);
  auto cred = model_->credentials("bob");
  ASSERT_OK(cred);
  ASSERT_TRUE(cred->has_value());
  EXPECT_EQ((*cred)->user_id, u.bob);
  auto none = model_->credentials("BOB");
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value()) << "usernames are exact bytes";
  auto padded = model_->credentials("bob ");
  ASSERT_OK(padded);
  EXPECT_FALSE(padded->has_value()) << "a trailing space is part of the name";
  auto found = model_->search_users("NI", 0, 10);  // nicknames "Nick ..." of bob (cyd hides)
  ASSERT_OK(found);
  std::set<uint64_t> ids;
  for (const auto& f : *found) ids.insert(f.user_id);
  EXPECT_TRUE(ids.contains(u.bob));
  EXPECT_FALSE(ids.contains(u.cyd)) << "cyd set allow_search = false";
  auto pct = model_->search_users("%", 0, 10);
  ASSERT_OK(pct);
  EXPECT_TRUE(pct->empty()) << "% is a literal in a search prefix";

  // Groups and members: ownership moved to dee; ann stays as admin; cyd left and was added back.
  auto g = model_->group(1);
  ASSERT_OK(g);
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->name, kGroupName);
  EXPECT_EQ((*g)->owner_id, u.dee);
  EXPECT_EQ((*g)->member_count, 4u);
  auto members = model_->members(1, 0, 100);
  ASSERT_OK(members);
  std::map<uint64_t, std::string> roles;
  for (const auto& m : *members) roles[m.user_id] = m.role;
  EXPECT_EQ(roles, (std::map<uint64_t, std::string>{{u.ann, "admin"}, {u.bob, "admin"}, {u.cyd, "member"}, {u.dee, "owner"}}));
  EXPECT_TRUE(model_->read_access(g1, u.cyd)->allowed);
  EXPECT_FALSE(model_->read_access(log().group2, u.bob)->allowed);
  EXPECT_TRUE(model_->read_access(log().single_ab, u.bob)->allowed);
  EXPECT_FALSE(model_->read_access(log().single_ab, u.cyd)->allowed);

  // Group settings, join seqs and bans (group 3); the history rule over MySQL.
  const auto& g3 = log().group3;
  auto third = model_->group(3);
  ASSERT_OK(third);
  ASSERT_TRUE(third->has_value());
  EXPECT_EQ((*third)->join_policy, "public");
  EXPECT_EQ((*third)->history, "from_join");
  EXPECT_EQ((*model_->group(1))->join_policy, "public") << "the harness creates public groups";
  EXPECT_EQ((*model_->group(1))->history, "all");
  EXPECT_EQ(*model_->read_access(g3, u.cyd), (ReadAccess{true, "from_join", 4}));
  EXPECT_EQ(*model_->read_access(g3, u.bob), (ReadAccess{true, "from_join", 11})) << "the latest join";
  EXPECT_EQ(*model_->read_access(g3, u.ann), (ReadAccess{true, "from_join", 1}));
  EXPECT_FALSE(model_->read_access(g3, u.dee)->allowed);
  auto bans = model_->bans(3, 0, 10);
  ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 1u);
  EXPECT_EQ(bans->front().user_id, u.dee);
  EXPECT_EQ(bans->front().banned_by, u.ann);
  EXPECT_GT(bans->front().banned_at, 0);
  QueryService q(*model_);
  auto from = q.readable_from(g3, u.cyd);
  ASSERT_OK(from);
  EXPECT_EQ(*from, 4u);
  auto cyds = q.history(g3, *from, HistoryRequest{uint64_t{0}, 0, 50});
  ASSERT_OK(cyds);
  ASSERT_FALSE(cyds->messages.empty());
  EXPECT_EQ(cyds->messages.front().seq_id, 4u) << "cyd reads from his join";
  EXPECT_EQ(cyds->messages.back().seq_id, 12u);
  auto g3_rows = model_->history(g3, HistoryRange{0, 0, false, 50});
  ASSERT_OK(g3_rows);
  ASSERT_EQ(g3_rows->messages.size(), 12u);
  EXPECT_NE(g3_rows->messages[0].content.find(R"("join_policy":"private","history":"from_join")"), std::string::npos)
      << g3_rows->messages[0].content;
  EXPECT_NE(g3_rows->messages[7].content.find(R"("ban":true)"), std::string::npos) << g3_rows->messages[7].content;
  EXPECT_EQ(g3_rows->messages[8].content, R"({"event":"group_settings_changed","join_policy":"public","by":)" +
                                              std::to_string(u.ann) + "}");

  // Friends, friend groups, blocks.
  auto fa = model_->friends(u.ann);
  ASSERT_OK(fa);
  ASSERT_EQ(fa->size(), 1u);
  EXPECT_EQ((*fa)[0].user_id, u.bob);
  EXPECT_EQ((*fa)[0].status, "friends");
  EXPECT_EQ((*fa)[0].note, kNote);
  EXPECT_EQ((*fa)[0].group_name, "work");
  EXPECT_EQ(*model_->friend_groups(u.ann), std::vector<std::string>{"work"});
  EXPECT_EQ(*model_->blocked(u.cyd), std::vector<uint64_t>{u.dee});
  EXPECT_TRUE(model_->blocked(u.dee)->empty());

  // History: dense seqs, system rows, the recall.
  auto h = model_->history(g1, HistoryRange{0, 0, false, 200});
  ASSERT_OK(h);
  ASSERT_EQ(h->messages.size(), 12u);
  for (size_t i = 0; i < h->messages.size(); ++i) EXPECT_EQ(h->messages[i].seq_id, i + 1);
  EXPECT_EQ(h->messages[0].message_type, "system");
  EXPECT_NE(h->messages[0].content.find("\"event\":\"group_created\""), std::string::npos) << h->messages[0].content;
  EXPECT_EQ(h->messages[3].content, "{\"event\":\"member_joined\",\"user_id\":" + std::to_string(u.dee) + ",\"invited_by\":0}");
  const auto& recalled = h->messages[8];
  EXPECT_EQ(recalled.message_id, log().recalled_message_id);
  EXPECT_TRUE(recalled.recalled);
  EXPECT_EQ(recalled.content, "");
  EXPECT_EQ(h->messages[9].message_type, "system");
  EXPECT_NE(h->messages[9].content.find("\"event\":\"message_recalled\""), std::string::npos);
  auto page = model_->history(g1, HistoryRange{3, 0, true, 2});
  ASSERT_OK(page);
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0].seq_id, 4u);
  EXPECT_TRUE(page->has_more);
  auto back = model_->history(g1, HistoryRange{0, 3, false, 5});
  ASSERT_OK(back);
  ASSERT_EQ(back->messages.size(), 2u);
  EXPECT_FALSE(back->has_more);
  auto msg = model_->message(log().recalled_message_id);
  ASSERT_OK(msg);
  ASSERT_TRUE(msg->has_value());
  EXPECT_TRUE((*msg)->recalled);

  // Conversations with unread counts (timeline.h: the messages above the read seq, no system rows).
  auto convs = model_->conversations(u.ann);
  ASSERT_OK(convs);
  auto ca = by_id(*convs);
  ASSERT_TRUE(ca.contains(g1) && ca.contains(log().single_ab) && ca.contains(log().group2) && ca.contains("world"));
  EXPECT_EQ(ca[g1].last_seq, 12u);
  EXPECT_EQ(ca[g1].unread, 0u);  // bob's adding cyd after ann's last message is a system row
  EXPECT_EQ(ca[g1].title, kGroupName);
  EXPECT_EQ(ca[log().single_ab].unread, 1u);
  EXPECT_EQ(ca[log().single_ab].peer_id, u.bob);
  EXPECT_EQ(ca[log().single_ab].title, "Nick bob");
  ASSERT_TRUE(ca[log().single_ab].last_message.has_value());
  EXPECT_EQ(ca[log().single_ab].last_message->content, "see you");
  for (size_t i = 1; i < convs->size(); ++i) EXPECT_GE((*convs)[i - 1].updated_at, (*convs)[i].updated_at);
  auto cd = by_id(*model_->conversations(u.dee));
  // Read to 5 (own message; a read marker at 3 does not move it back); of 6..12 only bob's
  // message at 9 (recalled since) and ann's at 11 are messages.
  EXPECT_EQ(cd[g1].unread, 2u);
  auto cc = by_id(*model_->conversations(u.cyd));
  EXPECT_EQ(cc[g1].unread, 0u);  // added back at 12 (a system row): read to 11
  EXPECT_EQ(cc["world"].read_seq, 4u);
  EXPECT_FALSE(by_id(*model_->conversations(u.bob)).contains(log().group2));

  // Search.
  auto s = model_->search_messages(SearchRequest{u.bob, "HELLO", "", 0, 10});
  ASSERT_OK(s);
  std::set<std::string> contents;
  for (const auto& m : s->messages) contents.insert(m.content);
  EXPECT_TRUE(contents.contains("hello bob"));
  EXPECT_TRUE(contents.contains("hello world"));
  EXPECT_TRUE(contents.contains("hello"));  // cyd's, in group 1 which bob is in
  auto s2 = model_->search_messages(SearchRequest{u.cyd, "hello bob", "", 0, 10});
  ASSERT_OK(s2);
  EXPECT_TRUE(s2->messages.empty()) << "cyd is not in ann and bob's conversation";
  // Accent-folded words, through message_tokens.
  auto folded = model_->search_messages(SearchRequest{u.bob, "UNICODE", "world", 0, 10});
  ASSERT_OK(folded);
  ASSERT_EQ(folded->messages.size(), 1u);
  EXPECT_EQ(folded->messages[0].content, kNastyContent);
  auto gone = model_->search_messages(SearchRequest{u.bob, "recalled", "", 0, 10});
  ASSERT_OK(gone);
  EXPECT_TRUE(gone->messages.empty()) << "a recalled message never matches";
  // Pages of 7 through the 320 bulk messages of group 2, newest first, none twice or missed.
  std::set<uint64_t> seen;
  uint64_t before = 0, last = UINT64_MAX;
  for (int page = 0; page < 100; ++page) {
    auto p = model_->search_messages(SearchRequest{u.ann, "bulk", "", before, 7});
    ASSERT_OK(p);
    for (const auto& m : p->messages) {
      EXPECT_LT(m.message_id, last);
      last = m.message_id;
      seen.insert(m.message_id);
    }
    if (p->next_before_id == 0) break;
    before = p->next_before_id;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kBigGroupMessages));
}

TEST_F(ProjectionSinksMysql, StoresInjectionAttemptsVerbatim) {
  apply_log();
  const Users& u = log().users;
  auto dee = model_->user(u.dee);
  ASSERT_OK(dee);
  EXPECT_EQ((*dee)->nickname, kNastyNickname);
  auto nasty = model_->credentials(kNastyUsername);
  ASSERT_OK(nasty);
  ASSERT_TRUE(nasty->has_value());
  EXPECT_EQ((*nasty)->user_id, log().synthetic_user_id);
  EXPECT_EQ((*nasty)->password_hash, "$argon2id$x'y");
  auto found = model_->search_users("o'brien\"; drop", 0, 10);
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].username, kNastyUsername);
  auto world = model_->history("world", HistoryRange{0, 0, false, 10});
  ASSERT_OK(world);
  bool seen = false;
  for (const auto& m : world->messages) seen = seen || m.content == kNastyContent;
  EXPECT_TRUE(seen);
  auto s = model_->search_messages(SearchRequest{u.ann, "DROP TABLE messages; --", "", 0, 10});
  ASSERT_OK(s);
  ASSERT_EQ(s->messages.size(), 1u);
  EXPECT_EQ(s->messages[0].content, kNastyContent);
  EXPECT_EQ((*model_->group(1))->name, kGroupName);
  // The tables are all still there.
  auto conn = t::raw_mysql(config_);
  std::unique_ptr<sql::Statement> st(conn->createStatement());
  std::unique_ptr<sql::ResultSet> rs(st->executeQuery(
      "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()"));
  ASSERT_TRUE(rs->next());
  EXPECT_EQ(rs->getInt(1), 14);  // 13 tables and schema_migrations
}

TEST_F(ProjectionSinksMysql, MessagesHaveAUniqueConversationSeq) {
  apply_log();
  auto conn = t::raw_mysql(config_);
  std::unique_ptr<sql::PreparedStatement> ins(conn->prepareStatement(
      "INSERT INTO messages (message_id, conversation_id, seq_id, sender_id, content, message_type, created_at) "
      "VALUES (?, 'world', 1, 1, 'impostor', 'text', 0)"));
  ins->setUInt64(1, 42);
  try {
    ins->executeUpdate();
    ADD_FAILURE() << "a second row for (world, 1) was accepted";
  } catch (const sql::SQLException& e) {
    EXPECT_EQ(e.getErrorCode(), 1062) << e.what();  // ER_DUP_ENTRY
  }
  // A (forged) event claiming an existing (conversation, seq) does not replace the row.
  auto original = model_->history("world", HistoryRange{0, 2, false, 1});
  ASSERT_OK(original);
  ASSERT_EQ(original->messages.size(), 1u);
  fb::EventEnvelopeT forged;
  forged.stream = "world";
  forged.seq = 1;
  forged.event_id = 43;
  forged.actor = log().users.cyd;
  forged.timestamp_ms = 1;
  forged.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "impostor"});
  std::string bytes = encode(forged);
  EventBatch b;
  b.events.push_back(plain_item(kSyntheticPartition, 2, **read_event(bytes)));
  b.positions.push_back({kSyntheticPartition, 3, kSyntheticToken});
  ASSERT_OK(model_->apply(b));
  auto after = model_->history("world", HistoryRange{0, 2, false, 1});
  ASSERT_OK(after);
  EXPECT_EQ(after->messages, original->messages);
  EXPECT_FALSE(model_->message(43)->has_value());
}

// A batch whose last statement fails (a username too long for its column) rolls back whole: the
// positions stay, and the rows written earlier in the same batch are gone.
TEST_F(ProjectionSinksMysql, ABatchThatFailsHalfWayWritesNothing) {
  const auto& events = log().events;
  size_t half = events.size() / 2;
  ASSERT_OK(apply_all(*model_, events, half, 20));
  auto before = dump_of(*model_);
  ASSERT_OK(before);
  auto pos_before = model_->positions();
  ASSERT_OK(pos_before);
  fb::EventEnvelopeT bad;
  bad.stream = "names_1";
  bad.seq = 1;
  bad.event_id = 77;
  bad.epoch = 5;
  bad.timestamp_ms = 1;
  bad.event.Set(fb::UserRegisteredT{{}, 5'000'000'001, std::string(300, 'x'), "h", "n", ""});
  std::string bytes = encode(bad);
  EventBatch b = make_batch(events, half, events.size());
  b.events.push_back(plain_item(7, 0, **read_event(bytes)));
  b.positions.push_back({7, 1, 5});
  auto r = model_->apply(b);
  ASSERT_FALSE(r.has_value()) << "a 300-byte username fit a VARCHAR(64)";
  EXPECT_FALSE(r.error().retryable()) << r.error().to_string();
  auto after = dump_of(*model_);
  ASSERT_OK(after);
  EXPECT_EQ(diff(*before, *after), "");
  EXPECT_EQ(*model_->positions(), *pos_before);
  // Resume from the stored positions: the uninterrupted model.
  auto rest = log().after(*pos_before);
  ASSERT_OK(apply_all(*model_, rest, rest.size(), 20));
  auto ref_target = t::fresh_mysql("ref");
  auto ref = open_mysql_model(ref_target);
  ASSERT_OK(ref);
  ASSERT_OK(apply_all(**ref, events, events.size(), 20));
  EXPECT_EQ(diff(*dump_of(**ref), *dump_of(*model_)), "");
  (void)(*ref)->drop();
}

TEST_F(ProjectionSinksMysql, MigrationsAreIdempotent) {
  ASSERT_OK(migrate_mysql(config_));
  ASSERT_OK(migrate_mysql(config_));
  auto conn = t::raw_mysql(config_);
  std::unique_ptr<sql::Statement> st(conn->createStatement());
  std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT version, name FROM schema_migrations ORDER BY version"));
  std::vector<std::string> names;
  while (rs->next()) names.push_back(rs->getString(2).asStdString());
  EXPECT_EQ(names, (std::vector<std::string>{"001_identity", "002_conversations", "003_group_settings",
                                             "004_message_search", "005_push_devices", "006_epoch_links", "007_erasure",
                                             "008_retention"}));
  // A model is usable after drop(): the next use re-creates the database.
  ASSERT_OK(model_->drop());
  ASSERT_OK(apply_all(*model_, log().events, 10, 5));
  EXPECT_EQ(*model_->positions(), log().positions_after(10));
}

// A database projected before migration 3 has no join seqs: the migration fills them in as a
// projection from scratch writes them, so `replay --verify` stays equal after the upgrade.
TEST_F(ProjectionSinksMysql, Migration3FillsInTheJoinSeqsOfRowsProjectedBeforeIt) {
  apply_log();
  auto projected = dump_of(*model_);
  ASSERT_OK(projected);
  {
    auto conn = t::raw_mysql(config_);
    std::unique_ptr<sql::Statement> st(conn->createStatement());
    ASSERT_GT(st->executeUpdate("UPDATE group_members SET joined_seq = 0"), 0);
    st->execute("DELETE FROM schema_migrations WHERE version = 3");
  }
  ASSERT_OK(migrate_mysql(config_));
  auto migrated = dump_of(*model_);
  ASSERT_OK(migrated);
  EXPECT_EQ(diff(*projected, *migrated), "");
}

// RetentionSet (schema 9) in the MySQL model, beside the RocksDB one: after each step — set,
// changed, for ever, back to the default; a group's own, each user's of a one-to-one — both answer
// each side's latest override; the log applied twice, in other batches, equals it applied once;
// migration 8 on a model projected before it fills in what its retention_set rows show, as a
// projection from scratch writes it; expiry leaves the overrides.
TEST(ProjectionSinks, RetentionOverridesOfAGroupAndAOneToOne) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  t::TempDir dir("imlog-sinks-retention");
  LocalLogConfig lc;
  lc.dir = dir.str() + "/log";
  auto log = LocalLog::open(lc);
  ASSERT_OK(log);
  auto builder = t::EventLogBuilder::open(**log, 2);
  ASSERT_OK(builder);
  auto& b = **builder;
  const MysqlConfig mc = t::fresh_mysql("rt");
  auto mysql = open_mysql_model(mc);
  ASSERT_OK(mysql);
  RocksDbModelConfig rc;
  rc.dir = dir.str() + "/model";
  auto rocks = open_rocksdb_model(rc);
  ASSERT_OK(rocks);
  auto project = [&](ProjectionSink& sink, uint64_t batch) -> Status {
    auto ends = b.ends();
    IMLOG_TRY(ends);
    return Projector(**log, sink, ProjectorConfig{batch}).run_until(*ends);
  };
  // Projects what is new into both models; both must answer `want` for `conv`.
  auto expect = [&](const std::string& conv, RetentionOverrides want, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_OK(project(**mysql, 2));
    ASSERT_OK(project(**rocks, 5));
    for (ReadModel* m : std::initializer_list<ReadModel*>{mysql->get(), rocks->get()}) {
      auto got = m->retention(conv);
      ASSERT_OK(got);
      EXPECT_EQ(got->a, want.a) << (m == mysql->get() ? "mysql" : "rocksdb");
      EXPECT_EQ(got->b, want.b) << (m == mysql->get() ? "mysql" : "rocksdb");
    }
  };

  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  const uint64_t lo = std::min(ann, bob), hi = std::max(ann, bob);
  const std::string g = group_stream(7), one = single_stream(ann, bob);
  b.create_group(7, ann, {bob});
  b.message(one, ann, "hello");
  expect(g, {}, "nothing set");
  b.retention(g, ann, 30);
  expect(g, {30, std::nullopt}, "the group keeps 30 days");
  b.retention(g, ann, 7);
  expect(g, {7, std::nullopt}, "changed to 7");
  b.retention(g, ann, 0);
  expect(g, {0, std::nullopt}, "for ever is 0, not none");
  b.retention(g, ann, std::nullopt);
  expect(g, {}, "back to the default");
  b.retention(g, ann, 30);
  b.retention(one, hi, 7);
  expect(one, {std::nullopt, 7}, "the higher user's side only");
  b.retention(one, lo, 30);
  expect(one, {30, 7}, "each user their own side");
  b.retention(one, hi, std::nullopt);
  expect(one, {30, std::nullopt}, "one user back to the default");
  expect(g, {30, std::nullopt}, "the group's untouched by the one-to-one");
  expect(std::string(kWorldStream), {}, "world has none");

  auto once = dump_of(**mysql);
  ASSERT_OK(once);
  EXPECT_TRUE(std::any_of(once->begin(), once->end(), [](const auto& r) {
    return r.first.starts_with("conversation_retention|");
  })) << "the overrides are part of the dump replay --verify compares";
  t::Forgetful again(**mysql);
  ASSERT_OK(project(again, 3));
  auto twice = dump_of(**mysql);
  ASSERT_OK(twice);
  EXPECT_EQ(diff(*once, *twice), "") << "applied twice equals applied once";

  {
    auto conn = t::raw_mysql(mc);
    std::unique_ptr<sql::Statement> st(conn->createStatement());
    ASSERT_GT(st->executeUpdate("DELETE FROM conversation_retention"), 0);
    st->execute("DELETE FROM schema_migrations WHERE version = 8");
  }
  ASSERT_OK(migrate_mysql(mc));
  auto migrated = dump_of(**mysql);
  ASSERT_OK(migrated);
  EXPECT_EQ(diff(*once, *migrated), "") << "migration 8 fills in what a projection writes";

  b.expire(g, b.last_seq(g));
  b.expire(one, b.last_seq(one));
  expect(g, {30, std::nullopt}, "expiry takes the rows, not the group's override");
  expect(one, {30, std::nullopt}, "expiry takes the rows, not the users' preferences");
  (void)(*mysql)->drop();
}

// ---- Redis specifics -----------------------------------------------------------------------------

class ProjectionSinksRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
    ASSERT_TRUE(generated_log().problem.empty()) << "generating the log: " << generated_log().problem;
    config_ = t::fresh_redis("q");
    auto m = open_redis_model(config_);
    ASSERT_OK(m);
    model_ = std::move(*m);
  }
  void TearDown() override {
    if (model_) (void)model_->drop();
  }
  const GeneratedLog& log() const { return generated_log(); }
  std::string key(const std::string& k) const { return config_.key_prefix + k; }

  RedisConfig config_;
  std::unique_ptr<RedisModel> model_;
};

TEST_F(ProjectionSinksRedis, KeepsTheSeedsLayout) {
  ASSERT_OK(apply_all(*model_, log().events, log().events.size(), 64));
  t::RawRedis r(config_);
  const std::string g2 = log().group2;
  EXPECT_EQ(r.run({"ZCARD", key("hot_messages:" + g2)}), "300");
  EXPECT_EQ(r.run({"GET", key("conv_seq:" + g2)}), std::to_string(kBigGroupMessages + 1));
  long ttl = std::stol(r.run({"TTL", key("hot_messages:" + g2)}));
  EXPECT_GT(ttl, 7 * 24 * 3600 - 60);
  EXPECT_LE(ttl, 7 * 24 * 3600);
  EXPECT_EQ(r.run({"TTL", key("conv_seq:" + g2)}), "-1");
  // The oldest kept row is seq last - 299.
  auto oldest = r.run({"ZRANGE", key("hot_messages:" + g2), "0", "0", "WITHSCORES"});
  EXPECT_EQ(oldest.substr(oldest.rfind('\n', oldest.size() - 2) + 1), std::to_string(kBigGroupMessages + 1 - 299) + "\n");
  // The recalled message: empty content, recalled, the wire contract's fields.
  auto recalled = r.run({"ZRANGEBYSCORE", key("hot_messages:" + log().group1), "9", "9"});
  EXPECT_EQ(recalled.substr(0, 16 + std::to_string(log().recalled_message_id).size()),
            "{\"message_id\":\"" + std::to_string(log().recalled_message_id) + "\"");
  EXPECT_NE(recalled.find(",\"content\":\"\",\"recalled\":true}"), std::string::npos) << recalled;
  EXPECT_NE(recalled.find("\"sender_id\":" + std::to_string(log().users.bob)), std::string::npos);
  // unread:<user> per conversation: the messages above the read seq, not system rows.
  EXPECT_EQ(r.run({"HGET", key("unread:" + std::to_string(log().users.dee)), log().group1}), "2");
  EXPECT_EQ(r.run({"HGET", key("unread:" + std::to_string(log().users.ann)), log().group1}), "0");
  // msg_seqs holds the seqs of group1's messages (2, 3, 5, 9, 11), and group2's newest window.
  EXPECT_EQ(r.run({"ZRANGE", key("msg_seqs:" + log().group1), "0", "-1"}), "2\n3\n5\n9\n11\n");
  EXPECT_EQ(r.run({"ZCARD", key("msg_seqs:" + g2)}), "300");
  EXPECT_EQ(r.run({"HGET", key("unread:" + std::to_string(log().users.ann)), log().single_ab}), "1");
  EXPECT_EQ(r.run({"HGET", key("unread:" + std::to_string(log().users.bob)), log().group2}), "");
  // Injection content survives the JSON round trip.
  auto world = model_->history("world", HistoryRange{0, 0, false, 10});
  ASSERT_OK(world);
  ASSERT_TRUE(world->has_value());
  bool seen = false;
  for (const auto& m : (*world)->messages) seen = seen || m.content == kNastyContent;
  EXPECT_TRUE(seen);
}

// A batch that fails inside the script (a key of the wrong type, put there behind the model's
// back) leaves the positions where they were; the writes made before the failure are harmless
// because re-applying the batch from those positions gives the uninterrupted model.
TEST_F(ProjectionSinksRedis, ABatchThatFailsHalfWayIsReappliedFromThePositions) {
  const auto& events = log().events;
  size_t split = 0;
  while (split < events.size() && sv(events[split].event->stream()) != log().group2) ++split;
  ASSERT_LT(split, events.size());
  ASSERT_OK(apply_all(*model_, events, split, 25));
  auto pos_before = model_->positions();
  ASSERT_OK(pos_before);
  t::RawRedis r(config_);
  ASSERT_EQ(r.run({"SET", key("hot_messages:" + log().group2), "not a zset"}), "OK");
  auto failed = model_->apply(make_batch(events, split, events.size()));
  ASSERT_FALSE(failed.has_value());
  EXPECT_NE(failed.error().message().find("WRONGTYPE"), std::string::npos) << failed.error().to_string();
  EXPECT_EQ(*model_->positions(), *pos_before);
  ASSERT_EQ(r.run({"DEL", key("hot_messages:" + log().group2)}), "1");
  auto rest = log().after(*pos_before);
  ASSERT_OK(apply_all(*model_, rest, rest.size(), 25));
  auto ref_config = t::fresh_redis("ref");
  auto ref = open_redis_model(ref_config);
  ASSERT_OK(ref);
  ASSERT_OK(apply_all(**ref, events, events.size(), 25));
  EXPECT_EQ(diff(*dump_of(**ref), *dump_of(*model_)), "");
  (void)(*ref)->drop();
}

// ---- across sinks ---------------------------------------------------------------------------------

TEST(ProjectionSinks, GiveTheSameHistoryAndUnreadCounts) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  const auto& log = generated_log();
  ASSERT_TRUE(log.problem.empty()) << log.problem;
  auto mc = t::fresh_mysql("x");
  auto rc = t::fresh_redis("x");
  auto mysql = open_mysql_model(mc);
  ASSERT_OK(mysql);
  auto redis = open_redis_model(rc);
  ASSERT_OK(redis);
  ASSERT_OK(apply_all(**mysql, log.events, log.events.size(), 50));
  ASSERT_OK(apply_all(**redis, log.events, log.events.size(), 7));

  int answered = 0, declined = 0;
  for (const std::string& conv : {log.single_ab, log.single_cd, log.group1, log.group2, std::string("world")}) {
    auto latest = (*mysql)->history(conv, HistoryRange{0, 0, false, 1});
    ASSERT_OK(latest);
    ASSERT_FALSE(latest->messages.empty()) << conv;
    uint64_t last = latest->messages.back().seq_id;
    bool all_hot = last <= 300;
    for (uint64_t after : {uint64_t{0}, uint64_t{1}, uint64_t{2}, last / 2, last - 1, last, last + 5}) {
      for (uint64_t before : {uint64_t{0}, uint64_t{1}, uint64_t{3}, last / 2 + 1, last, last + 1, last + 10}) {
        for (uint32_t limit : {0u, 1u, 2u, 3u, 50u, 200u}) {
          for (bool forward : {true, false}) {
            SCOPED_TRACE(conv + " after " + std::to_string(after) + " before " + std::to_string(before) + " limit " +
                         std::to_string(limit) + (forward ? " forward" : " backward"));
            const HistoryRange range{after, before, forward, limit};
            auto m = (*mysql)->history(conv, range);
            ASSERT_OK(m);
            auto r = (*redis)->history(conv, range);
            ASSERT_OK(r);
            if (!r->has_value()) {
              ++declined;
              EXPECT_FALSE(all_hot) << "Redis holds every row of this conversation";
              // It declines only ranges reaching below the newest 300 rows.
              if (!m->messages.empty()) {
                EXPECT_LT(m->messages.front().seq_id, last - 299);
              }
              continue;
            }
            ++answered;
            EXPECT_EQ((*r)->messages, m->messages);
            EXPECT_EQ((*r)->has_more, m->has_more);
          }
        }
      }
    }
  }
  EXPECT_GT(answered, 0);
  EXPECT_GT(declined, 0) << "the big group's old rows must be beyond the hot cache";

  // Unread counts: MySQL's conversation list and Redis's unread:<user> hashes.
  auto rows = dump_of(**redis);
  ASSERT_OK(rows);
  const Users& u = log.users;
  for (uint64_t user : {u.ann, u.bob, u.cyd, u.dee}) {
    std::map<std::string, uint64_t> from_mysql, from_redis;
    auto convs = (*mysql)->conversations(user);
    ASSERT_OK(convs);
    for (const auto& c : *convs) from_mysql[c.conversation_id] = c.unread;
    for (const auto& [k, v] : *rows) {
      if (k != "unread:" + std::to_string(user)) continue;
      std::stringstream ss(v);
      for (std::string line; std::getline(ss, line);) {
        auto eq = line.find('=');
        from_redis[line.substr(0, eq)] = std::stoull(line.substr(eq + 1));
      }
    }
    EXPECT_EQ(from_redis, from_mysql) << "user " << user;
  }
  (void)(*mysql)->drop();
  (void)(*redis)->drop();
}

// Expiry is an event (schema 9): every model drops group 4's rows 1..4 at the same seq — history,
// search, the hot cache and unread counts — and rows 5 and 6 keep their seqs.
TEST(ProjectionSinks, ExpiredRowsAreGoneFromEveryModelAtTheSameSeq) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  const auto& log = generated_log();
  ASSERT_TRUE(log.problem.empty()) << log.problem;
  const Users& u = log.users;
  auto mysql = open_mysql_model(t::fresh_mysql("e"));
  ASSERT_OK(mysql);
  auto redis = open_redis_model(t::fresh_redis("e"));
  ASSERT_OK(redis);
  t::TempDir dir("imlog-sinks-expiry");
  RocksDbModelConfig rc;
  rc.dir = dir.str() + "/model";
  auto rocks = open_rocksdb_model(rc);
  ASSERT_OK(rocks);
  ASSERT_OK(apply_all(**mysql, log.events, log.events.size(), 16));
  ASSERT_OK(apply_all(**redis, log.events, log.events.size(), 5));
  ASSERT_OK(apply_all(**rocks, log.events, log.events.size(), 64));

  for (ReadModel* m : std::initializer_list<ReadModel*>{mysql->get(), rocks->get()}) {
    SCOPED_TRACE(m == mysql->get() ? "mysql" : "rocksdb");
    auto h = m->history(log.group4, HistoryRange{0, 0, true, 50});
    ASSERT_OK(h);
    ASSERT_EQ(h->messages.size(), 2u);
    EXPECT_EQ(h->messages[0].seq_id, 5u);
    EXPECT_EQ(h->messages[0].content, "kept gamma");
    EXPECT_EQ(h->messages[1].seq_id, 6u);
    auto convs = m->conversations(u.bob);
    ASSERT_OK(convs);
    auto by = by_id(*convs);
    ASSERT_TRUE(by.contains(log.group4));
    EXPECT_EQ(by[log.group4].unread, 2u) << "5 and 6; 2 and 3 expired";
    auto gone = m->search_messages(SearchRequest{u.bob, "expiring", "", 0, 10});
    ASSERT_OK(gone);
    EXPECT_TRUE(gone->messages.empty()) << "expired rows are never found";
    auto kept = m->search_messages(SearchRequest{u.bob, "kept", log.group4, 0, 10});
    ASSERT_OK(kept);
    EXPECT_EQ(kept->messages.size(), 2u);
  }
  // The hot cache: holds exactly 5 and 6, answers from 4 on, and declines a range reaching below.
  auto hot = (*redis)->history(log.group4, HistoryRange{4, 0, true, 50});
  ASSERT_OK(hot);
  ASSERT_TRUE(hot->has_value());
  ASSERT_EQ((*hot)->messages.size(), 2u);
  EXPECT_EQ((*hot)->messages[0].seq_id, 5u);
  auto below = (*redis)->history(log.group4, HistoryRange{0, 0, true, 50});
  ASSERT_OK(below);
  EXPECT_FALSE(below->has_value()) << "rows 1..4 are not in the cache: the read model answers";
  auto rows = dump_of(**redis);
  ASSERT_OK(rows);
  bool found_unread = false;
  for (const auto& [k, v] : *rows) {
    if (k == "unread:" + std::to_string(u.bob)) {
      found_unread = true;
      EXPECT_NE(v.find(log.group4 + "=2"), std::string::npos) << v;
    }
    if (k.find(log.group4) != std::string::npos) {
      EXPECT_EQ(v.find("expiring"), std::string::npos) << k << " = " << v;
    }
  }
  EXPECT_TRUE(found_unread);
  // No row keeps an expired message's text. MySQL deletes its message_tokens with it; the RocksDB
  // model keeps only the token's postings (t| keys), which lead nowhere (search found nothing
  // above): taking them out would walk each token's blocks once per expired conversation.
  for (ProjectionSink* sink : std::initializer_list<ProjectionSink*>{rocks->get(), mysql->get()}) {
    auto model = dump_of(*sink);
    ASSERT_OK(model);
    for (const auto& [k, v] : *model) {
      bool posting = sink == rocks->get() && k.starts_with("t|expiring|");
      if (!posting) EXPECT_EQ(k.find("expiring"), std::string::npos) << sink->name() << ": " << k << " = " << v;
      EXPECT_EQ(v.find("expiring"), std::string::npos) << sink->name() << ": " << k << " = " << v;
    }
  }
  (void)(*mysql)->drop();
  (void)(*redis)->drop();
}

// Queries come from gateway threads while the projector applies: the pools and the writer's
// mutex keep them apart (run under TSan to see races; here: no errors, consistent answers).
TEST(ProjectionSinks, QueriesFromManyThreadsWhileApplying) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  const auto& log = generated_log();
  ASSERT_TRUE(log.problem.empty()) << log.problem;
  auto mysql = open_mysql_model(t::fresh_mysql("mt"));
  ASSERT_OK(mysql);
  auto redis = open_redis_model(t::fresh_redis("mt"));
  ASSERT_OK(redis);
  std::atomic<bool> done{false};
  std::atomic<int> errors{0}, queries{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        const std::string& conv = t % 2 ? log.group1 : log.group2;
        auto h = (*mysql)->history(conv, HistoryRange{0, 0, false, 20});
        auto c = (*mysql)->conversations(t % 2 ? log.users.ann : log.users.dee);
        auto r = (*redis)->history(conv, HistoryRange{0, 0, false, 20});
        if (!h || !c || !r) ++errors;
        // A page is always a dense run of seqs.
        if (h) {
          for (size_t i = 1; i < h->messages.size(); ++i) {
            if (h->messages[i].seq_id != h->messages[i - 1].seq_id + 1) ++errors;
          }
        }
        ++queries;
      }
    });
  }
  Status applied_mysql = apply_all(**mysql, log.events, log.events.size(), 11);
  Status applied_redis = apply_all(**redis, log.events, log.events.size(), 11);
  done = true;
  for (auto& th : readers) th.join();
  ASSERT_OK(applied_mysql);
  ASSERT_OK(applied_redis);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(queries.load(), 0);
  (void)(*mysql)->drop();
  (void)(*redis)->drop();
}

// The real Projector over the engine's LocalLog feeds each sink exactly what applying the valid
// events directly gives (the hand-encoded partition is not in that log, so it is left out here).
TEST(ProjectionSinks, TheProjectorOverTheLogBuildsTheSameModels) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  const auto& log = generated_log();
  ASSERT_TRUE(log.problem.empty()) << log.problem;
  std::vector<LogEvent> engine_events;
  for (const auto& e : log.events) {
    if (e.partition != kSyntheticPartition) engine_events.push_back(e);
  }
  LocalLogConfig lc;
  lc.dir = log.log_path;
  auto local = LocalLog::open(lc);
  ASSERT_OK(local);
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < 2; ++p) {
    auto end = (*local)->end_offset({std::string(kEventsTopic), p});
    ASSERT_OK(end);
    ends.push_back(*end);
  }
  for (const std::string which : {"mysql", "redis"}) {
    SCOPED_TRACE(which);
    Target projected{t::fresh_mysql("p"), t::fresh_redis("p")}, direct{t::fresh_mysql("d"), t::fresh_redis("d")};
    auto a = open_sink(which, projected);
    ASSERT_OK(a);
    auto b = open_sink(which, direct);
    ASSERT_OK(b);
    {
      ProjectorConfig pc;
      pc.max_batch = 37;
      pc.keys = &t::test_keys();
      Projector projector(**local, *a->sink, pc);
      ASSERT_OK(projector.run_until(ends));
    }
    ASSERT_OK(apply_all(*b->sink, engine_events, engine_events.size(), 50));
    auto da = dump_of(*a->sink);
    auto db = dump_of(*b->sink);
    ASSERT_OK(da);
    ASSERT_OK(db);
    EXPECT_EQ(diff(*db, *da), "");
    auto pos = a->sink->positions();
    ASSERT_OK(pos);
    ASSERT_EQ(pos->size(), 2u);
    for (const auto& p : *pos) EXPECT_EQ(p.next_offset, ends[static_cast<size_t>(p.partition)]);
    (void)a->drop();
    (void)b->drop();
  }
}

TEST(ProjectionSinks, UnreachableServersAreRetryableErrorsNamingTheAddress) {
  int port = t::free_port();  // nothing listens there
  MysqlConfig mc;
  mc.host = "127.0.0.1";
  mc.port = port;
  mc.user = "root";
  auto m = open_mysql_model(mc);
  ASSERT_FALSE(m.has_value());
  EXPECT_TRUE(m.error().retryable()) << m.error().to_string();
  EXPECT_NE(m.error().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos) << m.error().to_string();
  RedisConfig rc;
  rc.host = "127.0.0.1";
  rc.port = port;
  auto r = open_redis_model(rc);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().retryable()) << r.error().to_string();
  EXPECT_NE(r.error().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos) << r.error().to_string();
  MysqlConfig bad = mc;
  bad.database = "x`; DROP DATABASE mysql; --";
  auto b = migrate_mysql(bad);
  ASSERT_FALSE(b.has_value());
  EXPECT_NE(b.error().message().find("mysql.database"), std::string::npos) << b.error().to_string();
}


// ---- a log of its own: erasure, storage -----------------------------------------------------------

// Runs an engine over a log of its own with a key store of its own (user ids repeat across the
// logs of one process, and erasure destroys a key), so a test can grow the log step by step.
class OwnLog {
 public:
  static constexpr const char* kGateway = "gw-own";

  Status start() {
    auto keys = open_rocksdb_key_store(dir_.str() + "/keys");
    IMLOG_TRY(keys);
    keys_ = std::move(*keys);
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto log = LocalLog::open(lc);
    IMLOG_TRY(log);
    log_ = std::move(*log);
    IMLOG_TRY(t::create_engine_topics(*log_, 2, kGateway));
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "own-log";
    auto node = t::EngineNode::start(*log_, ec, SystemClock::instance(), nullptr, keys_.get());
    IMLOG_TRY(node);
    node_ = std::move(*node);
    if (!node_->wait_for_partitions(2)) return fail(LogErrc::timed_out, "the sequencer did not take both partitions");
    auto tail = t::LogTail::open(*log_, kGateway);
    IMLOG_TRY(tail);
    tail_ = std::move(*tail);
    return {};
  }

  // Submits the commands and waits for each one's answer; the result ids (or event ids), in order.
  Result<std::vector<uint64_t>> run(std::vector<fb::CommandEnvelopeT> commands) {
    std::vector<uint64_t> ids;
    for (auto& c : commands) {
      c.reply_to->request_id = ++request_;
      ids.push_back(request_);
    }
    IMLOG_TRY(t::submit(*log_, commands));
    // Each one's reply (an event can be read before the engine acks it) and event.
    auto done = tail_->wait_for(
        [&] {
          return std::all_of(ids.begin(), ids.end(), [&](uint64_t id) {
            return !tail_->replies_for(id).empty() && tail_->answered(id);
          });
        },
        30s);
    IMLOG_TRY(done);
    std::vector<uint64_t> out;
    for (uint64_t id : ids) {
      const auto* e = tail_->event_for_request(id);
      if (e == nullptr) return fail(LogErrc::bad_argument, "command " + std::to_string(id) + " was refused");
      out.push_back(e->result_id != 0 ? e->result_id : e->event_id);
    }
    return out;
  }

  fb::CommandEnvelopeT cmd(const std::string& stream, uint64_t actor) {
    return t::command_envelope(stream, actor, "e" + std::to_string(++client_), kGateway, 0);
  }
  template <class T>
  fb::CommandEnvelopeT with(fb::CommandEnvelopeT c, T command) {
    c.command.Set(std::move(command));
    return c;
  }
  fb::CommandEnvelopeT send(const std::string& stream, uint64_t actor, const std::string& text) {
    return t::send_message(stream, actor, "e" + std::to_string(++client_), text, kGateway, 0);
  }

  Result<std::vector<int64_t>> ends() {
    std::vector<int64_t> out;
    for (int32_t p = 0; p < 2; ++p) {
      auto end = log_->end_offset({std::string(kEventsTopic), p});
      IMLOG_TRY(end);
      out.push_back(*end);
    }
    return out;
  }

  // Projects im.events into `sink` up to `ends`, from where the sink's positions are.
  Status project(ProjectionSink& sink, const std::vector<int64_t>& ends) {
    ProjectorConfig pc;
    pc.max_batch = 5;
    pc.keys = keys_.get();
    Projector projector(*log_, sink, pc);
    return projector.run_until(ends);
  }

  t::EngineNode& node() { return *node_; }
  KeyStore& keys() { return *keys_; }

  // Stops the engine, closes the log (which flushes it) and opens it again: what im.events takes
  // in files, where RocksDB's estimate of a memtable would be a guess.
  Result<uint64_t> events_bytes_on_disk() {
    tail_.reset();
    node_.reset();
    log_.reset();
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto log = LocalLog::open(lc);
    IMLOG_TRY(log);
    log_ = std::move(*log);
    return log_->approximate_bytes(kEventsTopic);
  }
  t::TempDir& dir() { return dir_; }

 private:
  t::TempDir dir_{"imlog-sinks-own-log"};
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<t::EngineNode> node_;
  std::unique_ptr<t::LogTail> tail_;
  uint64_t request_ = 0, client_ = 0;
};

// Erasure (schema 10) in every model: one projector follows the log as it grows — ann's profile
// and messages (one-to-one and in a group, one of them recalled) while her key lives, then her
// erasure — and a rebuild projects the whole log afterwards, when her key is gone and nothing she
// sealed opens. Both give the same rows; neither holds her text or her profile; bob's rows stay.
TEST(ProjectionSinks, AnErasureAppliedLiveEqualsARebuildAfterIt) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  OwnLog log;
  ASSERT_OK(log.start());
  auto reg_ann = t::register_user("era_ann", "r1", OwnLog::kGateway, 0);
  reg_ann.command.AsRegisterUser()->nickname = "Ann Secretnick";
  auto users = log.run({reg_ann, t::register_user("era_bob", "r2", OwnLog::kGateway, 0)});
  ASSERT_OK(users);
  const uint64_t ann = (*users)[0], bob = (*users)[1];
  ASSERT_TRUE(t::wait_until([&] { return log.node().directory().user(ann).exists && log.node().directory().user(bob).exists; }, 30s));
  const std::string ab = single_stream(ann, bob), g = group_stream(77);
  fb::UpdateProfileT profile;
  profile.signature = "sigsecret of ann";
  auto first = log.run({log.with(log.cmd(user_stream(ann), ann), profile), log.send(ab, ann, "annsecret one"),
                        log.send(ab, bob, "bob keeps this"), log.send(ab, ann, "annsecret recalled"),
                        t::create_group(77, ann, {bob}, "g77", OwnLog::kGateway, 0)});
  ASSERT_OK(first);
  auto more = log.run({log.send(g, ann, "annsecret in the group"), log.send(g, bob, "bob in the group"),
                       log.with(log.cmd(ab, ann), fb::RecallMessageT{{}, (*first)[3]})});
  ASSERT_OK(more);
  auto before = log.ends();
  ASSERT_OK(before);

  const std::vector<std::string> kinds{"mysql", "redis", "rocksdb"};
  std::vector<Opened> live, rebuilt;
  auto open = [&](const std::string& which, const std::string& name) -> Result<Opened> {
    if (which != "rocksdb") return open_sink(which, Target{t::fresh_mysql(name), t::fresh_redis(name)});
    RocksDbModelConfig rc;
    rc.dir = log.dir().str() + "/model-" + name;
    auto m = open_rocksdb_model(rc);
    IMLOG_TRY(m);
    Opened o;
    o.sink = std::move(*m);
    return o;
  };
  for (const auto& which : kinds) {  // every model follows the log while ann's key lives
    SCOPED_TRACE(which);
    auto o = open(which, "el");
    ASSERT_OK(o);
    ASSERT_OK(log.project(*o->sink, *before));
    auto seen = dump_of(*o->sink);
    ASSERT_OK(seen);
    std::string all;
    for (const auto& [k, v] : *seen) all += k + "=" + v + "\n";
    ASSERT_NE(all.find("annsecret"), std::string::npos) << "her text never reached the model";
    live.push_back(std::move(*o));
  }

  ASSERT_OK(log.run({log.with(log.cmd(user_stream(ann), ann), fb::EraseUserT{})}));
  auto gone = log.keys().key_for_reading(ann);
  ASSERT_FALSE(gone) << "the engine did not destroy the key";
  EXPECT_EQ(gone.error().code(), make_error_code(KeyErrc::erased));
  auto after = log.ends();
  ASSERT_OK(after);

  for (size_t i = 0; i < kinds.size(); ++i) {
    SCOPED_TRACE(kinds[i]);
    ASSERT_OK(log.project(*live[i].sink, *after));
    auto o = open(kinds[i], "er");
    ASSERT_OK(o);
    rebuilt.push_back(std::move(*o));
    ASSERT_OK(log.project(*rebuilt.back().sink, *after));
    auto a = dump_of(*live[i].sink);
    auto b = dump_of(*rebuilt.back().sink);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(diff(*a, *b), "");
    std::string rows;
    for (const auto& [k, v] : *a) rows += k + "=" + v + "\n";
    for (const char* secret : {"annsecret", "ecretnick", "sigsecret"}) {
      EXPECT_EQ(rows.find(secret), std::string::npos) << secret << " is still in the model:\n" << rows;
    }
    EXPECT_NE(rows.find("bob keeps this"), std::string::npos);
    EXPECT_NE(rows.find("bob in the group"), std::string::npos);
  }
  for (auto* models : {&live, &rebuilt}) {
    for (auto& o : *models) {
      if (o.mysql || o.redis) (void)o.drop();
    }
  }
}


// Bytes per message of the log and of each read model (docs/benchmarks.md, "Storage"): 20,000
// one-to-one messages of 60 bytes of text, sealed, through a real sequencer; the log's im.events
// (its files once the log is closed), the RocksDB model's files after a clean close, MySQL's tables
// (information_schema after ANALYZE) and the Redis keys' logical bytes (a bounded window per
// conversation: it does not grow with the count of messages). A figure, printed; the bounds only
// catch a format that grew by an order of magnitude.
TEST(ProjectionSinks, StorageBytesPerMessage) {
  ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem;
  constexpr size_t kMessages = 20'000, kUsers = 20;
  OwnLog log;
  ASSERT_OK(log.start());
  std::vector<fb::CommandEnvelopeT> regs;
  for (size_t i = 0; i < kUsers; ++i) regs.push_back(t::register_user("size_" + std::to_string(i), "r" + std::to_string(i), OwnLog::kGateway, 0));
  auto users = log.run(std::move(regs));
  ASSERT_OK(users);
  ASSERT_TRUE(t::wait_until([&] { return log.node().directory().user(users->back()).exists; }, 30s));
  std::vector<fb::CommandEnvelopeT> batch;
  for (size_t i = 0; i < kMessages; ++i) {
    uint64_t from = (*users)[i % kUsers], to = (*users)[(i * 7 + 1) % kUsers];
    if (from == to) to = (*users)[(i + 1) % kUsers];
    std::string text = "message " + std::to_string(100000 + i) + ": see you at the station at seven, ok?!";
    batch.push_back(log.send(single_stream(std::min(from, to), std::max(from, to)), from, text.substr(0, 60)));
    if (batch.size() == 1000) {
      ASSERT_OK(log.run(std::move(batch)));
      batch.clear();
    }
  }
  auto ends = log.ends();
  ASSERT_OK(ends);

  RocksDbModelConfig rc;
  rc.dir = log.dir().str() + "/model-size";
  uint64_t rocks_bytes = 0;
  {
    auto rocks = open_rocksdb_model(rc);
    ASSERT_OK(rocks);
    ASSERT_OK(log.project(**rocks, *ends));
  }  // closed: flushed
  for (const auto& f : std::filesystem::recursive_directory_iterator(rc.dir)) {
    if (f.is_regular_file() && f.path().extension() == ".sst") rocks_bytes += f.file_size();
  }
  auto mysql_config = t::fresh_mysql("size");
  auto mysql = open_mysql_model(mysql_config);
  ASSERT_OK(mysql);
  ASSERT_OK(log.project(**mysql, *ends));
  uint64_t mysql_bytes = 0;
  {
    auto conn = t::raw_mysql(mysql_config);
    std::unique_ptr<sql::Statement> st(conn->createStatement());
    for (const char* table : {"messages", "message_tokens", "conversations", "read_pointers"}) {
      std::unique_ptr<sql::ResultSet>(st->executeQuery(std::string("ANALYZE TABLE ") + table));
    }
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery(
        "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE()"));
    ASSERT_TRUE(rs->next());
    mysql_bytes = rs->getUInt64(1);
  }
  auto redis = open_redis_model(t::fresh_redis("size"));
  ASSERT_OK(redis);
  ASSERT_OK(log.project(**redis, *ends));
  auto redis_rows = dump_of(**redis);
  ASSERT_OK(redis_rows);
  uint64_t redis_bytes = 0;
  for (const auto& [k, v] : *redis_rows) redis_bytes += k.size() + v.size();

  auto log_bytes = log.events_bytes_on_disk();
  ASSERT_OK(log_bytes);
  auto per = [](uint64_t bytes) { return std::to_string(bytes / kMessages); };
  std::cout << "[ figure   ] storage, " << kMessages << " sealed messages of 60 bytes in " << kUsers * (kUsers - 1) / 2
            << " one-to-one conversations: log im.events " << *log_bytes << " bytes (" << per(*log_bytes)
            << " per message); RocksDB model SST files " << rocks_bytes << " (" << per(rocks_bytes)
            << "); MySQL data+index " << mysql_bytes << " (" << per(mysql_bytes) << "); Redis keys "
            << redis_bytes << " (logical, a window of each conversation's newest rows)" << std::endl;
  for (uint64_t bytes : {*log_bytes, rocks_bytes, mysql_bytes}) {
    EXPECT_GT(bytes, kMessages * 20);
    EXPECT_LT(bytes, kMessages * 4000);
  }
  (void)(*mysql)->drop();
  (void)(*redis)->drop();
}

}  // namespace
}  // namespace imlog
