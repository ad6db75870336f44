#include "imlog/testing/engine_harness.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <tuple>

#include "imlog/engine/streams.h"
#include "imlog/testing/support.h"

namespace imlog::testing {

using namespace std::chrono_literals;

Status create_engine_topics(EventLog& log, int32_t partitions, std::string_view gateway) {
  IMLOG_TRY(log.create_topic(TopicSpec{std::string(kCommandsTopic), partitions, true}));
  IMLOG_TRY(log.create_topic(TopicSpec{std::string(kEventsTopic), partitions, true}));
  if (!gateway.empty()) IMLOG_TRY(log.create_topic(TopicSpec{delivery_topic(gateway), 1, false}));
  return {};
}

// ---- commands ---------------------------------------------------------------------------------

fb::CommandEnvelopeT command_envelope(std::string stream, uint64_t actor, std::string client_msg_id,
                                      std::string gateway, uint64_t request_id) {
  fb::CommandEnvelopeT c;
  c.stream = std::move(stream);
  c.actor = actor;
  c.client_msg_id = std::move(client_msg_id);
  c.reply_to = std::make_unique<fb::ReplyToT>();
  c.reply_to->gateway = std::move(gateway);
  c.reply_to->request_id = request_id;
  c.trace_id = "t-" + std::to_string(request_id);
  c.timestamp_ms = SystemClock::instance().now_ms();
  return c;
}

fb::CommandEnvelopeT send_message(std::string stream, uint64_t actor, std::string client_msg_id,
                                  std::string content, std::string gateway, uint64_t request_id) {
  auto c = command_envelope(std::move(stream), actor, std::move(client_msg_id), std::move(gateway),
                            request_id);
  fb::SendMessageT m;
  m.message_type = fb::MessageType::Text;
  m.content = std::move(content);
  c.command.Set(std::move(m));
  return c;
}

fb::CommandEnvelopeT register_user(const std::string& username, std::string client_msg_id,
                                   std::string gateway, uint64_t request_id) {
  auto c = command_envelope(names_stream(username), 0, std::move(client_msg_id), std::move(gateway),
                            request_id);
  fb::RegisterUserT r;
  r.username = username;
  r.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$test$test";
  c.command.Set(std::move(r));
  return c;
}

fb::CommandEnvelopeT create_group(uint64_t group_id, uint64_t actor, std::vector<uint64_t> members,
                                  std::string client_msg_id, std::string gateway,
                                  uint64_t request_id, fb::JoinPolicy policy) {
  auto c = command_envelope(group_stream(group_id), actor, std::move(client_msg_id),
                            std::move(gateway), request_id);
  fb::CreateGroupT g;
  g.group_id = group_id;
  g.name = "group " + std::to_string(group_id);
  g.members = std::move(members);
  g.join_policy = policy;
  c.command.Set(std::move(g));
  return c;
}

fb::CommandEnvelopeT join_group(uint64_t group_id, uint64_t actor, std::string client_msg_id,
                                std::string gateway, uint64_t request_id) {
  auto c = command_envelope(group_stream(group_id), actor, std::move(client_msg_id),
                            std::move(gateway), request_id);
  c.command.Set(fb::JoinGroupT{});
  return c;
}

fb::CommandEnvelopeT leave_group(uint64_t group_id, uint64_t actor, std::string client_msg_id,
                                 std::string gateway, uint64_t request_id) {
  auto c = command_envelope(group_stream(group_id), actor, std::move(client_msg_id),
                            std::move(gateway), request_id);
  c.command.Set(fb::LeaveGroupT{});
  return c;
}

namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

fb::CommandEnvelopeT crash_load_command(uint64_t i, const std::string& gateway) {
  constexpr uint64_t kGroups = 3;
  constexpr uint64_t kJoiners = 3;  // users 2..4 join every group
  constexpr uint64_t kWorldUsers = 6;
  std::string cmid = "c-" + std::to_string(i);
  uint64_t rid = i + 1;
  if (i < kGroups) return create_group(i + 1, 1, {}, cmid, gateway, rid);
  if (i < kGroups + kGroups * kJoiners) {
    uint64_t j = i - kGroups;
    return join_group(j / kJoiners + 1, 2 + j % kJoiners, cmid, gateway, rid);
  }
  uint64_t h = mix(i);
  uint64_t target = h % (kGroups + 1);
  std::string content = "message " + std::to_string(i);
  if (target == 0) {
    return send_message(std::string(kWorldStream), 1 + (h >> 16) % kWorldUsers, cmid, content,
                        gateway, rid);
  }
  return send_message(group_stream(target), 1 + (h >> 16) % (1 + kJoiners), cmid, content, gateway,
                      rid);
}

std::optional<uint64_t> crash_load_index(std::string_view client_msg_id) {
  if (!client_msg_id.starts_with("c-") || client_msg_id.size() == 2) return std::nullopt;
  uint64_t v = 0;
  auto digits = client_msg_id.substr(2);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
  return v;
}

Status submit(EventLog& log, const std::vector<fb::CommandEnvelopeT>& commands) {
  std::vector<OutRecord> records;
  records.reserve(commands.size());
  for (const auto& c : commands) records.push_back(OutRecord{c.stream, encode_command(c), kByKey});
  auto r = log.append_wait(kCommandsTopic, std::move(records));
  if (!r) return tl::unexpected(r.error());
  return {};
}

// ---- LogTail ----------------------------------------------------------------------------------

Result<std::unique_ptr<LogTail>> LogTail::open(EventLog& log, std::string gateway) {
  std::unique_ptr<LogTail> t(new LogTail());
  t->log_ = &log;
  t->gateway_ = std::move(gateway);
  auto n = log.partition_count(kEventsTopic);
  IMLOG_TRY(n);
  t->partitions_ = *n;
  t->next_event_offset_.assign(static_cast<size_t>(*n), 0);
  ConsumerOptions opts;
  opts.max_batch = 4096;
  t->events_ = log.consumer(opts);
  std::vector<TopicPartitionOffset> from;
  for (int32_t p = 0; p < *n; ++p) from.push_back({std::string(kEventsTopic), p, 0});
  IMLOG_TRY(t->events_->assign(from));
  if (!t->gateway_.empty()) {
    t->deliveries_ = log.consumer(opts);
    IMLOG_TRY(t->deliveries_->assign({{delivery_topic(t->gateway_), 0, 0}}));
  }
  return t;
}

LogTail::~LogTail() = default;

void LogTail::take_event(const Record& r) {
  next_event_offset_.at(static_cast<size_t>(r.partition)) = r.offset + 1;
  auto ev = read_event(r.value);
  if (!ev) {
    problems_.push_back("im.events partition " + std::to_string(r.partition) + " offset " +
                        std::to_string(r.offset) + ": " + ev.error().to_string());
    return;
  }
  const fb::EventEnvelope& e = **ev;
  SeenEvent s;
  s.partition = r.partition;
  s.offset = r.offset;
  s.type = e.event_type();
  s.stream = sv(e.stream());
  s.seq = e.seq();
  s.event_id = e.event_id();
  s.actor = e.actor();
  s.epoch = e.epoch();
  s.client_msg_id = sv(e.client_msg_id());
  s.client_sent_at = e.client_sent_at();
  if (e.reply_to()) {
    s.gateway = sv(e.reply_to()->gateway());
    s.request_id = e.reply_to()->request_id();
  }
  if (auto* m = e.event_as_MessageAppended()) {
    // Opened with this process's keys (every EngineNode seals with them).
    auto text = message_text(e, *m, test_keys());
    s.content = text ? std::move(*text) : "<does not open: " + text.error().to_string() + ">";
  }
  if (auto* u = e.event_as_UserRegistered()) s.result_id = u->user_id();
  if (auto* g = e.event_as_GroupCreated()) s.result_id = g->group_id();
  if (auto* x = e.event_as_MessagesExpired()) s.through_seq = x->through_seq();
  if (auto* m = e.event_as_EpochStarted()) {
    s.token = m->token();
    s.writer = sv(m->writer());
  }
  bool valid = filter_.accept(r.partition, e);
  if (auto* refused = e.event_as_CommandRefused()) {
    s.code = sv(refused->code());
    s.message = sv(refused->message());
  }
  if (e.event_type() == fb::Event::EpochStarted) {
    markers_.push_back(std::move(s));
  } else if (valid && e.event_type() == fb::Event::CommandRefused) {
    refusals_.push_back(std::move(s));
  } else if (valid) {
    if (!gateway_.empty() && s.gateway == gateway_) by_request_[s.request_id] = valid_.size();
    valid_.push_back(std::move(s));
  } else {
    rejected_.push_back(std::move(s));
  }
}

void LogTail::take_delivery(const Record& r) {
  next_delivery_offset_ = r.offset + 1;
  auto d = read_delivery(r.value);
  if (!d) {
    problems_.push_back(delivery_topic(gateway_) + " offset " + std::to_string(r.offset) + ": " +
                        d.error().to_string());
    return;
  }
  if ((*d)->reply() == nullptr) return;
  fb::CommandReplyT reply;
  (*d)->reply()->UnPackTo(&reply);
  replies_.push_back(std::move(reply));
}

Status LogTail::poll(std::chrono::milliseconds timeout) {
  std::vector<Record> records;
  auto slice = std::min<std::chrono::milliseconds>(timeout, 50ms);
  IMLOG_TRY(events_->poll(records, slice));
  for (const auto& r : records) take_event(r);
  if (deliveries_) {
    IMLOG_TRY(deliveries_->poll(records, records.empty() ? slice : 0ms));
    for (const auto& r : records) take_delivery(r);
  }
  return {};
}

Result<bool> LogTail::wait_for(const std::function<bool()>& done,
                               std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    IMLOG_TRY(poll(left));
  }
  return true;
}

Status LogTail::read_to_end(std::chrono::milliseconds deadline) {
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < partitions_; ++p) {
    auto e = log_->end_offset({std::string(kEventsTopic), p});
    IMLOG_TRY(e);
    ends.push_back(*e);
  }
  int64_t delivery_end = 0;
  if (deliveries_) {
    auto e = log_->end_offset({delivery_topic(gateway_), 0});
    IMLOG_TRY(e);
    delivery_end = *e;
  }
  auto at_end = [&] {
    for (size_t p = 0; p < ends.size(); ++p) {
      if (next_event_offset_[p] < ends[p]) return false;
    }
    return next_delivery_offset_ >= delivery_end;
  };
  auto done = wait_for(at_end, deadline);
  IMLOG_TRY(done);
  if (!*done) {
    return fail(LogErrc::timed_out, "the test's reader did not reach the end of " + log_->describe() +
                                        " within " + std::to_string(deadline.count()) + " ms");
  }
  return {};
}

const SeenEvent* LogTail::event_for_request(uint64_t request_id) const {
  auto it = by_request_.find(request_id);
  return it == by_request_.end() ? nullptr : &valid_[it->second];
}

std::vector<const fb::CommandReplyT*> LogTail::replies_for(uint64_t request_id) const {
  std::vector<const fb::CommandReplyT*> out;
  for (const auto& r : replies_) {
    if (r.request_id == request_id) out.push_back(&r);
  }
  return out;
}

bool LogTail::answered(uint64_t request_id) const {
  if (event_for_request(request_id) != nullptr) return true;
  // An ack is written after its event, but the two topics are read apart: wait for the event.
  for (const auto* r : replies_for(request_id)) {
    if (r->status != fb::ReplyStatus::Accepted) return true;
  }
  return false;
}

// ---- invariants -------------------------------------------------------------------------------

std::vector<std::string> check_log_invariants(const std::vector<SeenEvent>& valid,
                                              const std::vector<SeenEvent>& refusals) {
  std::vector<std::string> out;
  std::map<std::string, uint64_t> last;
  std::set<std::tuple<std::string, uint64_t, std::string>> commands;
  std::set<uint64_t> ids;
  auto where = [](const SeenEvent& e) {
    return "(partition " + std::to_string(e.partition) + " offset " + std::to_string(e.offset) + ")";
  };
  for (const auto& e : valid) {
    if (e.seq != 0) {
      uint64_t& l = last[e.stream];
      if (e.seq != l + 1) {
        out.push_back("stream " + e.stream + ": seq " + std::to_string(e.seq) + " follows seq " +
                      std::to_string(l) + " " + where(e));
      }
      l = e.seq;
    }
    if (!e.client_msg_id.empty() &&
        !commands.emplace(e.stream, e.actor, e.client_msg_id).second) {
      out.push_back("stream " + e.stream + ": actor " + std::to_string(e.actor) +
                    " client_msg_id " + e.client_msg_id + " has a second valid event " + where(e));
    }
    if (!ids.insert(e.event_id).second) {
      out.push_back("event id " + std::to_string(e.event_id) + " appears twice " + where(e));
    }
  }
  for (const auto& r : refusals) {
    if (r.seq != 0) out.push_back("stream " + r.stream + ": a refusal record has seq " + std::to_string(r.seq) + " " + where(r));
    if (r.code.empty()) out.push_back("stream " + r.stream + ": a refusal record without a code " + where(r));
    if (!commands.emplace(r.stream, r.actor, r.client_msg_id).second) {
      out.push_back("stream " + r.stream + ": actor " + std::to_string(r.actor) + " client_msg_id " + r.client_msg_id +
                    " was refused (" + r.code + ") and has another valid event or refusal " + where(r));
    }
    if (!ids.insert(r.event_id).second) {
      out.push_back("event id " + std::to_string(r.event_id) + " appears twice " + where(r));
    }
  }
  return out;
}

std::map<std::string, uint64_t> last_seqs(const std::vector<SeenEvent>& valid) {
  std::map<std::string, uint64_t> out;
  for (const auto& e : valid) {
    if (e.seq != 0) out[e.stream] = std::max(out[e.stream], e.seq);
  }
  return out;
}

// ---- data keys --------------------------------------------------------------------------------

KeyStore& test_keys() {
  static TempDir dir("imlog-test-keys");
  static std::unique_ptr<KeyStore> keys = [] {
    auto opened = open_rocksdb_key_store(dir.str());
    if (!opened) throw std::runtime_error("opening the test key store: " + opened.error().to_string());
    return std::move(*opened);
  }();
  return *keys;
}

// ---- EngineNode -------------------------------------------------------------------------------

Result<std::unique_ptr<EngineNode>> EngineNode::start(EventLog& log, EngineConfig config, const Clock& clock,
                                                      const SequencerTransports* transports, KeyStore* keys) {
  std::unique_ptr<EngineNode> n(new EngineNode());
  if (!transports) {
    n->commands_ = log_commands(log);
    n->deliveries_ = log_deliveries(log);
  }
  SequencerTransports use = transports ? *transports : SequencerTransports{*n->commands_, *n->deliveries_};
  n->directory_ = std::make_unique<LogDirectory>(log);
  IMLOG_TRY(n->directory_->start());
  auto seq = Sequencer::create(log, use, *n->directory_, keys ? *keys : test_keys(), clock, std::move(config));
  IMLOG_TRY(seq);
  n->sequencer_ = std::move(*seq);
  IMLOG_TRY(n->sequencer_->start());
  return n;
}

EngineNode::~EngineNode() { stop(); }

void EngineNode::stop() {
  if (sequencer_) sequencer_->stop();
  if (directory_) directory_->stop();
}

bool EngineNode::wait_for_partitions(int32_t partitions, std::chrono::milliseconds deadline) {
  return wait_until([&] { return sequencer_->stats().partitions.load() == partitions; }, deadline);
}

}  // namespace imlog::testing
