// Model-based property of the sequencer (docs/architecture.md, "The engine"):
// random interleavings of commands from several senders into several streams — `world`, two
// groups created by one user with some members, and one-to-one streams — with duplicates
// (a small pool of client_msg_ids per sender, so the same (stream, actor, client_msg_id) comes
// back, sometimes with other content), explicit client retries, and commands that must be refused
// (a non-member sending to a group, sending after leaving, joining twice, writing to a one-to-one
// stream of two other users, creating a group twice).
//
// Each case runs against a real Sequencer (and LogDirectory) on a LocalLog in a fresh temporary
// directory, and compares what the log and the delivery topic say with a SIMPLE MODEL written
// here from the rules of docs/architecture.md — never by calling decide():
//   - the valid events (EpochFilter) are exactly the model's accepted commands, with the model's
//     stream, seq, actor, client_msg_id, type and content; per stream seq is 1, 2, 3, ...;
//   - a duplicate never yields a second event; its reply (Duplicate) carries the original's seq,
//     event id and result id;
//   - a refusal writes no event; its reply (Refused) carries the model's reason code. A refusal that
//     depends on state is remembered (one CommandRefused record on the log, no seq): any later
//     command with the same (stream, actor, client_msg_id) — a retry, or another command reusing
//     the id — gets the same refusal, code and message, whatever the state has become since; one
//     decided on the command alone (not_participant here) writes nothing and is not remembered;
//   - an accepted command gets exactly one answer, an ack (Accepted) naming its event; every
//     other command gets exactly one reply.
// The sequence is an rc::state command sequence, so a failure shrinks to a short one. The
// engine's batching knobs (max_batch, in-flight batches, how commands are split into appends) are
// part of the case.
//
// Cases: 60 unless RC_PARAMS is set (then RC_PARAMS decides), each of at most ~50 commands.

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "imlog/core/logging.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::EngineNode;
using testing::LogTail;

constexpr int kDefaultCases = 60;
constexpr const char* kGateway = "gw-model";
constexpr std::array<const char*, 4> kUserNames = {"ann", "bob", "cyd", "dee"};
constexpr int kUsers = static_cast<int>(kUserNames.size());
constexpr int kGroups = 2;    // group_1, group_2
constexpr int kClientIds = 6; // client_msg_ids "k0".."k5" per sender: collisions are duplicates

// ---- the commands of a case -----------------------------------------------------------------

enum class Kind { send, create, join, leave };
enum class Target { world, group, single };

struct OpSpec {
  Kind kind = Kind::send;
  int actor = 0;                // index into the users
  Target target = Target::world;  // send
  int group = 1;                // send to a group, create, join, leave
  int lo = 0, hi = 1;           // send to a one-to-one stream: its two users (indexes)
  std::vector<int> members;     // create: initial members besides the creator
  std::string client_msg_id;
  std::string content;          // send
  bool retry = false;           // re-sent by the client (same stream, actor, client_msg_id)
};

// ---- the model --------------------------------------------------------------------------------

struct Expected {
  enum class Kind { accepted, duplicate, refused } kind = Kind::refused;
  std::string stream;
  uint64_t seq = 0;            // accepted
  fb::Event type = fb::Event::NONE;
  size_t original = 0;         // duplicate: index of the command whose event it repeats;
                               // remembered refusal: index of the command first refused
  std::string code;            // refused
  bool remembered = false;     // refused: the answer of an earlier command with the same key
};

struct Model {
  struct Group {
    bool created = false;
    uint64_t owner = 0;
    std::set<uint64_t> members;
  };
  std::vector<uint64_t> ids;  // user ids by index
  std::map<std::string, uint64_t> last_seq;
  std::map<int, Group> groups;
  // (stream, actor, client_msg_id) of every accepted command → its index
  std::map<std::tuple<std::string, uint64_t, std::string>, size_t> accepted;
  // ... and of every command refused on state (remembered): its index and code
  std::map<std::tuple<std::string, uint64_t, std::string>, std::pair<size_t, std::string>> refused;
  std::vector<OpSpec> history;  // for generating retries
  size_t ops = 0;
};

std::string stream_of(const Model& m, const OpSpec& op) {
  if (op.kind != Kind::send || op.target == Target::group) return group_stream(static_cast<uint64_t>(op.group));
  if (op.target == Target::world) return std::string(kWorldStream);
  return single_stream(m.ids[static_cast<size_t>(op.lo)], m.ids[static_cast<size_t>(op.hi)]);
}

// Whether a refusal is decided on the command alone (Decision::stateless), so not remembered: of
// the refusals this test provokes, writing to a one-to-one stream of two other users.
bool stateless(const std::string& code) { return code == "not_participant"; }

// The rules, as docs/architecture.md ("The engine") states them, for the commands this test sends.
Expected expect(const Model& m, const OpSpec& op) {
  Expected e;
  e.stream = stream_of(m, op);
  uint64_t actor = m.ids[static_cast<size_t>(op.actor)];
  if (auto it = m.accepted.find({e.stream, actor, op.client_msg_id}); it != m.accepted.end()) {
    e.kind = Expected::Kind::duplicate;
    e.original = it->second;
    return e;
  }
  if (auto it = m.refused.find({e.stream, actor, op.client_msg_id}); it != m.refused.end()) {
    e.kind = Expected::Kind::refused;
    e.code = it->second.second;
    e.original = it->second.first;
    e.remembered = true;
    return e;
  }
  auto refuse = [&](std::string code) {
    e.kind = Expected::Kind::refused;
    e.code = std::move(code);
    return e;
  };
  Model::Group g;
  if (auto it = m.groups.find(op.group); it != m.groups.end()) g = it->second;
  switch (op.kind) {
    case Kind::send:
      e.type = fb::Event::MessageAppended;
      if (op.target == Target::group) {
        if (!g.created) return refuse("not_found");
        if (!g.members.contains(actor)) return refuse("not_member");
      } else if (op.target == Target::single) {
        if (op.actor != op.lo && op.actor != op.hi) return refuse("not_participant");
      }
      break;
    case Kind::create:
      e.type = fb::Event::GroupCreated;
      if (g.created) return refuse("already_exists");
      break;
    case Kind::join:
      e.type = fb::Event::MemberJoined;
      if (!g.created) return refuse("not_found");
      if (g.members.contains(actor)) return refuse("already_member");
      break;
    case Kind::leave:
      e.type = fb::Event::MemberLeft;
      if (!g.created) return refuse("not_found");
      if (!g.members.contains(actor)) return refuse("not_member");
      if (actor == g.owner && g.members.size() > 1) return refuse("owner_must_transfer");
      break;
  }
  e.kind = Expected::Kind::accepted;
  auto it = m.last_seq.find(e.stream);
  e.seq = (it == m.last_seq.end() ? 0 : it->second) + 1;
  return e;
}

// The system under test while the sequence is built: the commands to submit and what the model
// expects of each.
struct Plan {
  std::vector<fb::CommandEnvelopeT> commands;
  std::vector<Expected> expected;
  std::vector<std::string> shown;
};

uint64_t request_id_of(size_t op) { return op + 1; }

using OpBase = rc::state::Command<Model, Plan>;

struct Op final : OpBase {
  explicit Op(OpSpec s) : spec(std::move(s)) {}
  OpSpec spec;

  void apply(Model& m) const override {
    Expected e = expect(m, spec);
    m.history.push_back(spec);
    size_t index = m.ops++;
    uint64_t actor = m.ids[static_cast<size_t>(spec.actor)];
    if (e.kind == Expected::Kind::refused && !e.remembered && !stateless(e.code)) {
      m.refused[{e.stream, actor, spec.client_msg_id}] = {index, e.code};
    }
    if (e.kind != Expected::Kind::accepted) return;
    m.last_seq[e.stream] = e.seq;
    m.accepted[{e.stream, actor, spec.client_msg_id}] = index;
    Model::Group& g = m.groups[spec.group];
    switch (spec.kind) {
      case Kind::create:
        g.created = true;
        g.owner = actor;
        g.members = {actor};
        for (int i : spec.members) g.members.insert(m.ids[static_cast<size_t>(i)]);
        break;
      case Kind::join:
        // The first to join a group its last member left becomes its owner.
        if (g.members.empty()) g.owner = actor;
        g.members.insert(actor);
        break;
      case Kind::leave:
        g.members.erase(actor);
        if (actor == g.owner) g.owner = 0;  // an owner who left keeps no owner powers
        break;
      case Kind::send: break;
    }
  }

  void run(const Model& m, Plan& plan) const override {
    Expected e = expect(m, spec);
    uint64_t actor = m.ids[static_cast<size_t>(spec.actor)];
    uint64_t rid = request_id_of(m.ops);
    auto gid = static_cast<uint64_t>(spec.group);
    switch (spec.kind) {
      case Kind::send:
        plan.commands.push_back(testing::send_message(e.stream, actor, spec.client_msg_id,
                                                      spec.content, kGateway, rid));
        break;
      case Kind::create: {
        std::vector<uint64_t> members;
        for (int i : spec.members) members.push_back(m.ids[static_cast<size_t>(i)]);
        plan.commands.push_back(
            testing::create_group(gid, actor, members, spec.client_msg_id, kGateway, rid));
        break;
      }
      case Kind::join:
        plan.commands.push_back(testing::join_group(gid, actor, spec.client_msg_id, kGateway, rid));
        break;
      case Kind::leave:
        plan.commands.push_back(testing::leave_group(gid, actor, spec.client_msg_id, kGateway, rid));
        break;
    }
    plan.expected.push_back(e);
    std::ostringstream os;
    os << "#" << m.ops << " ";
    show(os);
    os << " → stream " << e.stream << ": "
       << (e.kind == Expected::Kind::accepted    ? "accepted seq " + std::to_string(e.seq)
           : e.kind == Expected::Kind::duplicate ? "duplicate of #" + std::to_string(e.original)
           : e.remembered                        ? "refused " + e.code + " again, as #" + std::to_string(e.original)
                                                 : "refused " + e.code);
    plan.shown.push_back(os.str());
  }

  void show(std::ostream& os) const override {
    const char* kinds[] = {"send", "create", "join", "leave"};
    os << (spec.retry ? "retry " : "") << kinds[static_cast<int>(spec.kind)] << " by "
       << kUserNames[static_cast<size_t>(spec.actor)] << " cmid " << spec.client_msg_id;
    if (spec.kind == Kind::send) {
      if (spec.target == Target::world) os << " to world";
      if (spec.target == Target::group) os << " to group_" << spec.group;
      if (spec.target == Target::single) {
        os << " to " << kUserNames[static_cast<size_t>(spec.lo)] << "+"
           << kUserNames[static_cast<size_t>(spec.hi)];
      }
      os << " `" << spec.content << "`";
    } else {
      os << " group_" << spec.group;
      if (spec.kind == Kind::create) {
        os << " members";
        for (int i : spec.members) os << " " << kUserNames[static_cast<size_t>(i)];
      }
    }
  }
};

// A uniform choice in [lo, hi): rapidcheck's inRange scales the range with the case size, which
// would make early cases all `world` sends by the first user.
int pick(int lo, int hi) { return *rc::gen::resize(100, rc::gen::inRange(lo, hi)); }

rc::Gen<std::shared_ptr<const OpBase>> gen_op(const Model& m) {
  std::vector<OpSpec> history = m.history;
  size_t n = m.ops;
  return rc::gen::exec([history, n] {
    // One in five: a client retry of an earlier command, sometimes with other content.
    if (!history.empty() && pick(0, 5) == 0) {
      OpSpec s = history[static_cast<size_t>(pick(0, static_cast<int>(history.size())))];
      s.retry = true;
      if (s.kind == Kind::send && *rc::gen::arbitrary<bool>()) s.content = "again " + std::to_string(n);
      return std::shared_ptr<const OpBase>(std::make_shared<const Op>(std::move(s)));
    }
    OpSpec s;
    s.actor = pick(0, kUsers);
    s.client_msg_id = "k" + std::to_string(pick(0, kClientIds));
    s.group = pick(1, kGroups + 1);
    int what = pick(0, 12);
    if (what < 7) {
      s.kind = Kind::send;
      s.content = "m" + std::to_string(n);
      int target = pick(0, 3);
      s.target = static_cast<Target>(target);
      if (s.target == Target::single) {
        // Mostly a stream the sender is part of; sometimes one of two other users.
        int a = s.actor;
        if (pick(0, 4) == 0) a = pick(0, kUsers);
        int b = pick(0, kUsers - 1);
        if (b >= a) ++b;
        s.lo = std::min(a, b);
        s.hi = std::max(a, b);
      }
    } else if (what < 8) {
      s.kind = Kind::create;
      for (int i = 0; i < kUsers; ++i) {
        if (i != s.actor && *rc::gen::arbitrary<bool>()) s.members.push_back(i);
      }
    } else if (what < 10) {
      s.kind = Kind::join;
    } else {
      s.kind = Kind::leave;
    }
    return std::shared_ptr<const OpBase>(std::make_shared<const Op>(std::move(s)));
  });
}

// ---- running a case ---------------------------------------------------------------------------

struct Knobs {
  uint64_t max_batch = 4096;
  uint32_t max_inflight = 8;
  size_t submit_chunk = 1;  // commands per append to im.commands
};

std::string join_lines(const std::vector<std::string>& v, size_t limit = 30) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < limit; ++i) out += "\n  " + v[i];
  if (v.size() > limit) out += "\n  ... " + std::to_string(v.size() - limit) + " more";
  return out;
}

#define CASE_OK(expr)                                                               \
  do {                                                                              \
    auto&& case_ok_r_ = (expr);                                                     \
    if (!case_ok_r_) RC_FAIL(std::string(#expr) + ": " + case_ok_r_.error().to_string()); \
  } while (0)

void run_case(const Knobs& knobs, const rc::state::Commands<OpBase>& ops) {
  testing::TempDir dir("imlog-seq-model");
  LocalLogConfig lc;
  lc.dir = dir.str() + "/log";
  auto opened = LocalLog::open(lc);
  CASE_OK(opened);
  LocalLog& log = **opened;
  CASE_OK(testing::create_engine_topics(log, 2, kGateway));

  EngineConfig ec;
  ec.state_dir = dir.str() + "/engine";
  ec.instance_id = "model";
  ec.max_batch = knobs.max_batch;
  ec.max_inflight_batches = knobs.max_inflight;
  ec.checkpoint_interval = 20ms;
  auto node = EngineNode::start(log, ec);
  CASE_OK(node);
  auto tail = LogTail::open(log, kGateway);
  CASE_OK(tail);

  // Register the users first, so the directory knows them (one-to-one streams and group members
  // must exist). Their ids follow from the names (dense per names bucket), as the model says.
  Model model;
  std::map<uint32_t, uint64_t> per_bucket;
  std::vector<fb::CommandEnvelopeT> registrations;
  for (size_t i = 0; i < kUserNames.size(); ++i) {
    uint32_t bucket = name_bucket(kUserNames[i]);
    model.ids.push_back(user_id_for(bucket, ++per_bucket[bucket]));
    model.last_seq[names_stream(kUserNames[i])]++;
    registrations.push_back(testing::register_user(kUserNames[i], "reg", kGateway, 10'000 + i));
  }
  CASE_OK(testing::submit(log, registrations));
  auto registered = (*tail)->wait_for(
      [&] {
        for (size_t i = 0; i < kUserNames.size(); ++i) {
          if ((*tail)->event_for_request(10'000 + i) == nullptr) return false;
        }
        return true;
      },
      20s);
  CASE_OK(registered);
  RC_ASSERT(*registered);
  for (size_t i = 0; i < kUserNames.size(); ++i) {
    const auto* ev = (*tail)->event_for_request(10'000 + i);
    RC_ASSERT(ev->type == fb::Event::UserRegistered);
    RC_ASSERT(ev->result_id == model.ids[i]);
  }
  RC_ASSERT(testing::wait_until(
      [&] {
        for (uint64_t id : model.ids) {
          if (!(*node)->directory().user(id).exists) return false;
        }
        return true;
      },
      20s));

  // Build the plan from the model, then submit it in chunks.
  Plan plan;
  rc::state::runAll(ops, model, plan);
  for (size_t i = 0; i < plan.commands.size(); i += knobs.submit_chunk) {
    size_t end = std::min(plan.commands.size(), i + knobs.submit_chunk);
    CASE_OK(testing::submit(log, {plan.commands.begin() + static_cast<ptrdiff_t>(i),
                                  plan.commands.begin() + static_cast<ptrdiff_t>(end)}));
  }

  auto answered = [&](size_t i) {
    uint64_t rid = request_id_of(i);
    return (*tail)->answered(rid);
  };
  auto all = (*tail)->wait_for(
      [&] {
        for (size_t i = 0; i < plan.expected.size(); ++i) {
          if (!answered(i)) return false;
        }
        return true;
      },
      30s);
  CASE_OK(all);
  std::vector<std::string> problems;
  if (!*all) {
    for (size_t i = 0; i < plan.expected.size(); ++i) {
      if (!answered(i)) problems.push_back("no answer to " + plan.shown[i]);
    }
  }

  // Everything the sequencer will write is written once it stops; then read it all.
  (*node)->stop();
  std::string failure = (*node)->sequencer().failure();
  RC_ASSERT(failure.empty());
  CASE_OK(log.flush(std::chrono::seconds(10)));  // the answers are appended without waiting
  CASE_OK((*tail)->read_to_end());
  const LogTail& t = **tail;

  for (const auto& p : t.problems()) problems.push_back("undecodable: " + p);
  for (const auto& v : testing::check_log_invariants(t.valid(), t.refusals())) problems.push_back(v);
  if (!t.rejected().empty()) {
    problems.push_back(std::to_string(t.rejected().size()) +
                       " events were rejected by the EpochFilter with one sequencer running");
  }

  size_t accepted = 0;
  for (size_t i = 0; i < plan.expected.size(); ++i) {
    const Expected& e = plan.expected[i];
    const fb::CommandEnvelopeT& c = plan.commands[i];
    uint64_t rid = request_id_of(i);
    const testing::SeenEvent* ev = t.event_for_request(rid);
    auto replies = t.replies_for(rid);
    const std::string& what = plan.shown[i];
    if (e.kind == Expected::Kind::accepted) {
      ++accepted;
      if (ev == nullptr) {
        std::string answers;
        for (const auto* r : replies) {
          answers += std::string(" ") + fb::EnumNameReplyStatus(r->status) + " `" + r->code + "` (" + r->message + ")";
        }
        problems.push_back(what + ": no valid event; replies:" + (answers.empty() ? " none" : answers));
        continue;
      }
      // One answer, the ack, naming the event.
      if (replies.size() != 1 || replies[0]->status != fb::ReplyStatus::Accepted || replies[0]->seq != ev->seq ||
          replies[0]->event_id != ev->event_id) {
        problems.push_back(what + ": accepted, but answered by " + std::to_string(replies.size()) +
                           " replies, not one ack naming its event");
      }
      if (ev->stream != e.stream || ev->seq != e.seq || ev->type != e.type || ev->actor != c.actor ||
          ev->client_msg_id != c.client_msg_id) {
        problems.push_back(what + ": event is " + ev->stream + " seq " + std::to_string(ev->seq) +
                           " " + std::string(event_type_name(ev->type)) + " actor " +
                           std::to_string(ev->actor) + " cmid " + ev->client_msg_id);
      }
      if (e.type == fb::Event::MessageAppended && ev->content != c.command.AsSendMessage()->content) {
        problems.push_back(what + ": content is `" + ev->content + "`");
      }
      if (e.type == fb::Event::GroupCreated && ev->result_id != c.command.AsCreateGroup()->group_id) {
        problems.push_back(what + ": created group " + std::to_string(ev->result_id));
      }
      continue;
    }
    if (ev != nullptr) {
      problems.push_back(what + ": wrote an event (" + ev->stream + " seq " +
                         std::to_string(ev->seq) + ")");
    }
    if (replies.size() != 1) {
      problems.push_back(what + ": " + std::to_string(replies.size()) + " replies, not 1");
      if (replies.empty()) continue;
    }
    const fb::CommandReplyT& r = *replies[0];
    if (r.stream != e.stream || r.client_msg_id != c.client_msg_id || r.actor != c.actor) {
      problems.push_back(what + ": reply names " + r.stream + " cmid " + r.client_msg_id);
    }
    if (e.kind == Expected::Kind::refused) {
      if (r.status != fb::ReplyStatus::Refused || r.code != e.code) {
        problems.push_back(what + ": reply is " + std::string(fb::EnumNameReplyStatus(r.status)) +
                           " `" + r.code + "` (" + r.message + ")");
      }
      if (r.seq != 0 || r.event_id != 0) problems.push_back(what + ": a refusal carries ids");
      if (e.remembered) {
        auto first = t.replies_for(request_id_of(e.original));
        if (!first.empty() && first[0]->message != r.message) {
          problems.push_back(what + ": refused `" + r.message + "`; the first refusal said `" + first[0]->message + "`");
        }
      }
      continue;
    }
    const testing::SeenEvent* orig = t.event_for_request(request_id_of(e.original));
    if (r.status != fb::ReplyStatus::Duplicate) {
      problems.push_back(what + ": reply is " + std::string(fb::EnumNameReplyStatus(r.status)) +
                         " `" + r.code + "` (" + r.message + ")");
    } else if (orig == nullptr) {
      problems.push_back(what + ": the original has no valid event");
    } else if (r.seq != orig->seq || r.event_id != orig->event_id || r.result_id != orig->result_id) {
      problems.push_back(what + ": duplicate reply seq " + std::to_string(r.seq) + " event " +
                         std::to_string(r.event_id) + " result " + std::to_string(r.result_id) +
                         ", the original is seq " + std::to_string(orig->seq) + " event " +
                         std::to_string(orig->event_id) + " result " +
                         std::to_string(orig->result_id));
    }
  }

  // Nothing beyond the model: registrations plus the accepted commands, and per stream the last
  // seq the model reached.
  if (t.valid().size() != kUserNames.size() + accepted) {
    problems.push_back(std::to_string(t.valid().size()) + " valid events; the model has " +
                       std::to_string(kUserNames.size() + accepted));
  }
  Model final_model = model;
  rc::state::applyAll(ops, final_model);
  // One refusal record per refusal remembered, naming its command's key and code.
  std::map<std::tuple<std::string, uint64_t, std::string>, std::string> recorded;
  for (const auto& r : t.refusals()) recorded[{r.stream, r.actor, r.client_msg_id}] = r.code;
  std::map<std::tuple<std::string, uint64_t, std::string>, std::string> remembered;
  for (const auto& [key, first] : final_model.refused) remembered[key] = first.second;
  if (t.refusals().size() != final_model.refused.size() || recorded != remembered) {
    problems.push_back(std::to_string(t.refusals().size()) + " refusal records; the model remembers " +
                       std::to_string(final_model.refused.size()) + " refusals");
  }
  if (testing::last_seqs(t.valid()) != final_model.last_seq) {
    problems.push_back("per-stream last seqs differ from the model's");
  }

  RC_CLASSIFY(std::any_of(plan.expected.begin(), plan.expected.end(), [](const Expected& e) { return e.remembered; }),
              "a remembered refusal answered again");
  if (!problems.empty()) {
    RC_FAIL("knobs: max_batch " + std::to_string(knobs.max_batch) + ", in-flight " +
            std::to_string(knobs.max_inflight) + ", submit chunk " +
            std::to_string(knobs.submit_chunk) + "\ncommands:" + join_lines(plan.shown, 200) +
            "\nproblems:" + join_lines(problems));
  }
}

// The initial model: only the user ids are needed to generate commands.
Model initial_model() {
  Model m;
  std::map<uint32_t, uint64_t> per_bucket;
  for (const char* name : kUserNames) {
    uint32_t bucket = name_bucket(name);
    m.ids.push_back(user_id_for(bucket, ++per_bucket[bucket]));
  }
  return m;
}

TEST(SequencerModel, ValidEventsAndRepliesAreExactlyTheModels) {
  setup_logging(LogConfig{"warn", "text"});  // one engine start and stop per case: keep it quiet
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = kDefaultCases;
  rc::detail::TestMetadata metadata;
  metadata.id = "SequencerModel/ValidEventsAndRepliesAreExactlyTheModels";
  metadata.description = metadata.id;
  auto result = rc::detail::checkTestable(
      [] {
        Knobs knobs;
        constexpr uint64_t kBatches[] = {1, 3, 4096};
        constexpr uint32_t kInflight[] = {1, 2, 8};
        knobs.max_batch = kBatches[pick(0, 3)];
        knobs.max_inflight = kInflight[pick(0, 3)];
        knobs.submit_chunk = static_cast<size_t>(pick(1, 13));
        auto ops = *rc::gen::scale(0.5, rc::state::gen::commands(initial_model(), gen_op));
        // The model needs the ids the registrations produce; generation used the same ones.
        run_case(knobs, ops);
      },
      metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(seed " << params.seed << "; rerun with RC_PARAMS=\"seed=" << params.seed
           << "\")";
  } else {
    const auto& success = result.get<rc::detail::SuccessResult>();
    int remembered = 0;
    for (const auto& [tags, n] : success.distribution) {
      if (!tags.empty()) remembered += n;
    }
    std::cout << "model cases passed: " << success.numSuccess << ", " << remembered
              << " of them answered a remembered refusal again" << std::endl;
    if (std::getenv("RC_PARAMS") == nullptr) {
      EXPECT_GT(remembered, 0) << "no case retried a refused command: the property did not exercise remembering";
    }
  }
}

}  // namespace
}  // namespace imlog
