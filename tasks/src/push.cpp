#include "imlog/tasks/push.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <thread>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/time_zone.h"
#include "imlog/core/worker.h"
#include "imlog/engine/snapshot_file.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"
#include "event_follow.h"
#include "provider_http.h"

namespace imlog {

std::string_view push_failure_name(PushFailure f) {
  switch (f) {
    case PushFailure::none: return "none";
    case PushFailure::timeout: return "timeout";
    case PushFailure::network: return "network";
    case PushFailure::throttled: return "throttled";
    case PushFailure::server_error: return "server_error";
    case PushFailure::rejected: return "rejected";
    case PushFailure::invalid_token: return "invalid_token";
    case PushFailure::address_refused: return "address_refused";
    case PushFailure::auth: return "auth";
    case PushFailure::count_: break;
  }
  return "unknown";
}

std::string_view push_skip_name(PushSkip s) {
  switch (s) {
    case PushSkip::none: return "none";
    case PushSkip::online: return "online";
    case PushSkip::disabled: return "disabled";
    case PushSkip::quiet_hours: return "quiet_hours";
    case PushSkip::muted: return "muted";
    case PushSkip::blocked: return "blocked";
    case PushSkip::no_devices: return "no_devices";
  }
  return "unknown";
}

bool in_quiet_hours(int start_minute, int end_minute, int minute) {
  if (start_minute < 0 || end_minute < 0 || start_minute == end_minute) return false;
  if (start_minute < end_minute) return minute >= start_minute && minute < end_minute;
  return minute >= start_minute || minute < end_minute;  // across midnight
}

PushSkip should_push(const UserView& recipient, std::string_view conversation, uint64_t sender, bool online,
                     const std::vector<uint64_t>& blocked, int64_t now_ms) {
  if (online) return PushSkip::online;
  if (!recipient.push_enabled) return PushSkip::disabled;
  if (std::find(recipient.muted.begin(), recipient.muted.end(), conversation) != recipient.muted.end()) {
    return PushSkip::muted;
  }
  if (std::find(blocked.begin(), blocked.end(), sender) != blocked.end()) return PushSkip::blocked;
  // A zone the database no longer has reads as UTC rather than silencing the user.
  int minute = local_minute_of_day(recipient.time_zone, now_ms)
                   .value_or(local_minute_of_day("", now_ms).value_or(0));
  if (in_quiet_hours(recipient.quiet_start_minute, recipient.quiet_end_minute, minute)) return PushSkip::quiet_hours;
  if (recipient.devices.empty()) return PushSkip::no_devices;
  return PushSkip::none;
}

std::string preview_of(std::string_view content, uint32_t chars) {
  if (chars == 0) return "";
  size_t i = 0;
  for (uint32_t n = 0; i < content.size() && n < chars; ++n) {
    ++i;  // the lead byte, then its continuation bytes
    while (i < content.size() && (static_cast<unsigned char>(content[i]) & 0xC0) == 0x80) ++i;
  }
  std::string out(content.substr(0, i));
  if (i < content.size()) out += "\u2026";
  return out;
}

// A JSON string literal, as the FCM and APNs bodies write theirs.
void json_string(std::string& out, std::string_view s) { out += push_http::json_quote(s); }


std::string push_payload_json(const PushNotification& n) {
  std::string out = "{\"key\":";
  json_string(out, n.key);
  out += ",\"user_id\":" + std::to_string(n.user_id);
  out += ",\"device_id\":" + std::to_string(n.device.device_id);
  out += ",\"conversation_id\":";
  json_string(out, n.conversation_id);
  out += ",\"seq\":" + std::to_string(n.seq);
  out += ",\"sender_id\":" + std::to_string(n.sender_id);
  out += ",\"sender_nickname\":";
  json_string(out, n.sender_nickname);
  out += ",\"preview\":";
  json_string(out, n.preview);
  out += ",\"badge\":" + std::to_string(n.badge);
  out += ",\"collapsed\":" + std::to_string(n.collapsed);
  out += "}";
  return out;
}

SendResult FakePushProvider::send(const PushNotification& n) {
  std::lock_guard lock(mu_);
  calls_.push_back(n);
  size_t i = calls_.size() - 1;
  SendOutcome o = i < script_.size() ? script_[i] : SendOutcome::sent;
  switch (o) {
    case SendOutcome::sent: return {o, "", PushFailure::none};
    case SendOutcome::retry: return {o, "scripted failure", PushFailure::server_error};
    case SendOutcome::failed: return {o, "scripted failure", PushFailure::rejected};
    case SendOutcome::invalid_token: return {o, "scripted invalid token", PushFailure::invalid_token};
  }
  return {o, "", PushFailure::none};
}

void FakePushProvider::script(std::vector<SendOutcome> outcomes) {
  std::lock_guard lock(mu_);
  script_ = std::move(outcomes);
}

std::vector<PushNotification> FakePushProvider::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

// ---- the worker -----------------------------------------------------------------------------

namespace {

constexpr std::string_view kPushLease = "push";
constexpr std::string_view kProgressMagic = "imlogPP1";

// One message to one recipient, as a collapse window holds it. Ordered by (time, stream, seq):
// a function of the log, whatever order the partitions were read in.
struct Member {
  int64_t time = 0;  // its event time (a late message's: the end of the user's last window)
  std::string stream;
  uint64_t seq = 0;
  uint64_t sender = 0;
  // Not part of the order: an erasure of the sender blanks it in place (forget_sender()).
  mutable std::shared_ptr<const std::string> content;
  int32_t partition = 0;  // where it is in im.events (the dead letter's source)
  int64_t offset = 0;
  bool operator<(const Member& o) const { return std::tie(time, stream, seq) < std::tie(o.time, o.stream, o.seq); }
};

// A user's collapse window: the members with event time in [start, start + collapse_window),
// start being its first member's (tasks/README.md, "Offline push").
struct Window {
  uint64_t user = 0;
  int64_t start = 0;
  int64_t end = 0;
  std::set<Member> members;
  // While the read model has not reached `end`: when to ask again (steady time, never the
  // injectable clock, which may step), and the wait before that.
  std::chrono::steady_clock::time_point retry_at{};
  std::chrono::milliseconds wait{0};
};

// The waits of a window whose read model lags: doubling from the first to the last, so a lagging
// model (MySQL in the distributed mode) is not asked for every waiting window at every step.
constexpr std::chrono::milliseconds kFirstModelWait{100};
constexpr std::chrono::milliseconds kLastModelWait{2000};

// One notification waiting for its (next) attempt.
struct Outgoing {
  PushNotification n;
  int64_t due_ms = 0;
  int64_t window_start = 0;  // holds the committed offsets back (cut_of())
  int64_t window_end = 0;
  int32_t partition = 0;     // of the window's first message
  int64_t offset = 0;
  uint32_t attempts = 0;
  int64_t event_ms = 0;    // the window's first message's event time (the latency histogram)
  bool in_flight = false;  // a pool thread is sending it
};

// A provider's answer to one send, handed back to the worker's thread.
struct Answer {
  uint64_t id = 0;  // of the Outgoing
  SendResult result;
};

// A fixed set of threads running sends, so a slow receiver holds one of them and not the rest.
class SendPool {
 public:
  explicit SendPool(uint32_t threads) {
    for (uint32_t i = 0; i < std::max<uint32_t>(threads, 1); ++i) threads_.emplace_back([this] { run(); });
  }
  ~SendPool() { stop(); }
  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // Runs what was posted, then joins. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

struct PushWorker::Loop {
  Loop(EventLog& l, SessionRegistry& s, ReadModel& m, PushProviders p, PushConfig c, CommandTransport* cmds,
       LeaseStore* ls, const Clock& k)
      : log(l), sessions(s), model(m), providers(p), config(std::move(c)), commands(cmds), leases(ls), clock(k),
        logger(imlog::logger("push")) {}

  EventLog& log;
  SessionRegistry& sessions;
  ReadModel& model;
  PushProviders providers;
  PushConfig config;
  CommandTransport* commands;
  LeaseStore* leases;
  std::string holder = lease_holder_name();
  std::chrono::steady_clock::time_point last_renewal;
  const Clock& clock;
  std::shared_ptr<spdlog::logger> logger;
  PushStats stats;
  std::unique_ptr<Consumer> reader;
  EpochFilter filter;
  std::vector<Record> batch;
  // Collapsing (tasks/README.md, "Offline push"): members not yet cut into a window, by user; the
  // end of each user's last window cut; windows cut and waiting for the read model.
  std::unordered_map<uint64_t, std::set<Member>> waiting;
  std::unordered_set<uint64_t> erased;  // senders whose UserErased this worker read (rare)
  std::unordered_map<uint64_t, int64_t> chain_end;
  std::vector<Window> closing;
  // The progress kept with the lease (save_progress()), so that a restarted worker forms the same
  // windows: per user, the end of the latest window done with (sent, given up, or not to send);
  // each late member and the time it was moved to, by (user, stream, seq).
  std::unordered_map<uint64_t, int64_t> done_end;
  using LateKey = std::tuple<uint64_t, std::string, uint64_t>;  // (user, stream, seq)
  std::map<LateKey, int64_t> late;
  // The predecessor's progress (load_progress()): its read positions, and per user the end of its
  // windows done with. A member it read (below its position) and before that end was handled.
  std::map<int32_t, int64_t> handed_next;
  std::unordered_map<uint64_t, int64_t> handed_done;
  std::string saved_progress;  // the bytes last saved
  // The log's progress: per partition, the latest event time read, and the first offset read of
  // each event time (the committed offset is the first one at or after the cut).
  std::map<int32_t, int64_t> read_time;
  std::map<int32_t, std::map<int64_t, int64_t>> first_at;
  std::map<int32_t, int64_t> end_offset;  // per partition: its end when last asked
  // The event times of the messages read since the cut, by stream and seq: is the read model past
  // them yet (badge_as_of)?
  std::unordered_map<std::string, std::map<uint64_t, int64_t>> seen;
  std::map<uint64_t, Outgoing> outgoing;  // by id, in the order queued
  uint64_t next_outgoing = 1;
  uint32_t in_flight = 0;
  std::unordered_set<uint64_t> sending_to;      // devices with a send in flight
  std::unordered_set<uint64_t> removed_devices;  // invalid tokens: RemoveDevice submitted
  std::mutex answers_mu;
  std::vector<Answer> answers;  // from the pool, under answers_mu
  std::unique_ptr<SendPool> pool;
  std::map<int32_t, int64_t> next;       // per partition: the next offset to read
  std::map<int32_t, int64_t> committed;  // per partition: what the group has stored (-1: nothing)
  std::chrono::steady_clock::time_point last_commit;
  Worker worker{"push", [this] { return step(); }};

  // ---- who is told ------------------------------------------------------------------------------

  // What the read model said this step: a group's members, and each recipient's view and blocked
  // list, asked once per step however many of the step's messages they concern (a message to a
  // group of 600 would otherwise cost 1,200 reads of the model). Cleared at each step's start, so
  // a change in the model is seen within a step.
  struct RecipientFacts {
    std::optional<UserView> view;
    std::vector<uint64_t> blocked;
  };
  std::unordered_map<uint64_t, std::vector<uint64_t>> members_this_step;
  std::unordered_map<uint64_t, RecipientFacts> facts_this_step;

  Result<const std::vector<uint64_t>*> members_of(uint64_t group) {
    if (auto it = members_this_step.find(group); it != members_this_step.end()) return &it->second;
    std::vector<uint64_t> all;
    for (uint64_t after = 0;;) {
      auto page = model.members(group, after, 500);
      IMLOG_TRY(page);
      for (const auto& m : *page) all.push_back(m.user_id);
      if (page->size() < 500) break;
      after = page->back().user_id;
    }
    return &members_this_step.emplace(group, std::move(all)).first->second;
  }

  Result<const RecipientFacts*> facts_of(uint64_t user) {
    if (auto it = facts_this_step.find(user); it != facts_this_step.end()) return &it->second;
    auto view = model.user(user);
    IMLOG_TRY(view);
    RecipientFacts f{std::move(*view), {}};
    if (f.view) {
      auto blocked = model.blocked(user);
      IMLOG_TRY(blocked);
      f.blocked = std::move(*blocked);
    }
    return &facts_this_step.emplace(user, std::move(f)).first->second;
  }

  Result<std::vector<uint64_t>> recipients(const StreamRef& ref, uint64_t sender) {
    std::vector<uint64_t> out;
    if (ref.kind == StreamKind::single) {
      out.push_back(ref.a == sender ? ref.b : ref.a);
      return out;
    }
    auto members = members_of(ref.a);
    IMLOG_TRY(members);
    out.reserve((*members)->size());
    for (uint64_t u : **members) {
      if (u != sender) out.push_back(u);
    }
    return out;
  }

  Result<std::unordered_set<uint64_t>> online_of(const std::vector<uint64_t>& users) {
    std::vector<std::pair<uint64_t, std::string>> located;
    IMLOG_TRY(sessions.try_locate(users, located));
    std::unordered_set<uint64_t> out;
    for (const auto& [user, gateway] : located) out.insert(user);
    return out;
  }

  int64_t window_ms() const { return std::max<int64_t>(config.collapse_window.count(), 1); }

  // Partition p's record at `offset` has event time `time`: the log's progress, and where the
  // committed offset may stop.
  void note_position(int32_t p, int64_t offset, int64_t time) {
    auto& at = read_time.try_emplace(p, std::numeric_limits<int64_t>::min()).first->second;
    at = std::max(at, time);
    auto [it, fresh] = first_at[p].try_emplace(time, offset);
    if (!fresh) it->second = std::min(it->second, offset);
  }

  // Adds the message to the recipient's members. A message older than the end of the user's last
  // window cut (it reached the worker more than close_delay late) joins the next window instead,
  // and keeps that time when read again (late). One the predecessor handled is left out.
  void add_member(uint64_t user, const Record& r, const fb::EventEnvelope& e,
                  const std::shared_ptr<const std::string>& content) {
    Member m{e.timestamp_ms(), std::string(sv(e.stream())), e.seq(), e.actor(), content, r.partition, r.offset};
    auto moved = late.empty() ? late.end() : late.find({user, m.stream, m.seq});
    if (moved != late.end()) m.time = moved->second;
    if (handled_before(user, r, m.time)) return;
    if (auto it = chain_end.find(user); moved == late.end() && it != chain_end.end() && m.time < it->second) {
      logger->debug("push: message {}/{} to user {} came after its window closed", m.stream, m.seq, user);
      m.time = it->second;
      late[{user, m.stream, m.seq}] = m.time;
    }
    if (m.time != e.timestamp_ms()) note_position(r.partition, r.offset, m.time);  // held with its window
    waiting[user].insert(std::move(m));
  }

  // An erased user's messages opened for windows not sent yet: their text goes from memory now, so
  // a notification that leaves later carries no preview of it (nor the sender's nickname).
  void forget_sender(uint64_t user) {
    erased.insert(user);  // a read model that has not applied the erasure yet still names them
    static const auto empty = std::make_shared<const std::string>();
    auto blank = [&](const std::set<Member>& members) {
      for (const Member& m : members) {
        if (m.sender == user) m.content = empty;
      }
    };
    for (const auto& [recipient, members] : waiting) blank(members);
    for (const auto& w : closing) blank(w.members);
    for (auto& [id, o] : outgoing) {  // one in flight too: its send works on a copy, a retry on this
      if (o.n.sender_id != user) continue;
      o.n.preview.clear();
      o.n.sender_nickname.clear();
    }
  }

  // Did the predecessor handle this member: read it, and finish the user's windows past its time?
  bool handled_before(uint64_t user, const Record& r, int64_t time) const {
    auto p = handed_next.find(r.partition);
    if (p == handed_next.end() || r.offset >= p->second) return false;
    auto d = handed_done.find(user);
    return d != handed_done.end() && time < d->second;
  }

  void note_done(uint64_t user, int64_t end) {
    auto& at = done_end[user];
    at = std::max(at, end);
  }

  // One event of im.events: a message adds itself to its recipients' collapse windows.
  Status handle(const Record& r) {
    auto ev = read_event(r.value);
    if (!ev) return {};  // the router and projections log undecodable records
    const fb::EventEnvelope& e = **ev;
    note_position(r.partition, r.offset, e.timestamp_ms());
    if (!filter.accept(r.partition, e)) return {};
    if (const auto* gone = e.event_as_UserErased()) {
      forget_sender(gone->user_id());
      return {};
    }
    auto* m = e.event_as_MessageAppended();
    if (!m) return {};
    seen[std::string(sv(e.stream()))][e.seq()] = e.timestamp_ms();
    if (m->message_type() == fb::MessageType::System) return {};
    auto ref = parse_stream(sv(e.stream()));
    if (!ref || (ref->kind != StreamKind::single && ref->kind != StreamKind::group)) return {};
    stats.events++;
    stats.lag_ms = clock.now_ms() - e.timestamp_ms();
    auto who = recipients(*ref, e.actor());
    IMLOG_TRY(who);
    // A sender whose erasure this worker read first (partitions are read in any order) is not
    // opened with a key another cache may still hold: notified, without a preview.
    auto text = erased.contains(e.actor()) ? Result<std::optional<std::string>>(std::string()) : open_text(e, *m);
    IMLOG_TRY(text);
    if (!text->has_value()) return {};
    auto content = std::make_shared<const std::string>(std::move(**text));
    for (uint64_t user : *who) IMLOG_TRY(consider(user, r, e, content));
    return {};
  }

  // A message's text for its preview; none (logged) when it cannot be opened: its sender erased,
  // or no key store. A key store that does not answer fails the step, which is tried again.
  Result<std::optional<std::string>> open_text(const fb::EventEnvelope& e, const fb::MessageAppended& m) {
    if (config.keys == nullptr) {
      if (m.sealed_content() == nullptr) return std::optional<std::string>(std::string(sv(m.content())));
      logger->warn("push: message {} is sealed and the worker has no key store: not pushed", e.event_id());
      return std::optional<std::string>{};
    }
    auto text = message_text(e, m, *config.keys);
    if (text) return std::optional<std::string>(std::move(*text));
    if (text.error().retryable()) return tl::unexpected(text.error());
    logger->warn("push: message {} is not pushed: {}", e.event_id(), text.error().to_string());
    return std::optional<std::string>{};
  }

  // The recipient's settings decide, at the message's event time (quiet hours), whether it is one
  // to push; whether they are online is asked when its window closes.
  Status consider(uint64_t user, const Record& r, const fb::EventEnvelope& e,
                  const std::shared_ptr<const std::string>& content) {
    auto facts = facts_of(user);
    IMLOG_TRY(facts);
    if (!(*facts)->view) return {};
    PushSkip skip = should_push(*(*facts)->view, sv(e.stream()), e.actor(), false, (*facts)->blocked, e.timestamp_ms());
    if (skip != PushSkip::none) {
      stats.skipped++;
      logger->debug("no push to user {} for {}/{}: {}", user, sv(e.stream()), e.seq(), push_skip_name(skip));
      return {};
    }
    add_member(user, r, e, content);
    return {};
  }

  // ---- closing windows and sending ------------------------------------------------------------

  // Is partition p read to its end? Asks the log only when what it last said is reached.
  Result<bool> caught_up(int32_t p, int64_t read) {
    auto& end = end_offset.try_emplace(p, 0).first->second;
    if (read < end) return false;
    auto now_end = log.end_offset(TopicPartition{std::string(kEventsTopic), p});
    IMLOG_TRY(now_end);
    end = *now_end;
    return read >= end;
  }

  // How far in event time the log has been read: the least, over the partitions, of the latest
  // event time read, or of now less close_delay for a partition read to its end (its next message,
  // not yet written or on its way, is not older than that).
  Result<int64_t> watermark() {
    int64_t now = clock.now_ms(), at = std::numeric_limits<int64_t>::max();
    for (auto [p, read] : next) {
      auto it = read_time.find(p);
      int64_t t = it == read_time.end() ? std::numeric_limits<int64_t>::min() : it->second;
      auto done = caught_up(p, read);
      IMLOG_TRY(done);
      if (*done) t = std::max(t, now - config.close_delay.count());
      at = std::min(at, t);
    }
    return at;
  }

  // Cuts each user's members into windows whose end the log's progress has passed: no message of
  // them can come any more, so each window is the same whenever, and by whichever worker, it is cut.
  Status cut_windows() {
    if (waiting.empty()) return {};
    auto mark = watermark();
    IMLOG_TRY(mark);
    for (auto it = waiting.begin(); it != waiting.end();) {
      auto& members = it->second;
      while (!members.empty() && members.begin()->time + window_ms() <= *mark) {
        Window w{it->first, members.begin()->time, members.begin()->time + window_ms(), {}};
        while (!members.empty() && members.begin()->time < w.end) {
          w.members.insert(members.extract(members.begin()));
        }
        chain_end[w.user] = w.end;
        closing.push_back(std::move(w));
      }
      it = members.empty() ? waiting.erase(it) : std::next(it);
    }
    return {};
  }

  // The messages of conversation c at or after `end` that c's unread count of `user` holds (from
  // others, not system rows, above the read seq), read back from the newest.
  Result<uint64_t> unread_after(uint64_t user, const ConversationView& c, int64_t end) {
    if (c.last_message && c.last_message->created_at < end) return uint64_t{0};
    uint64_t n = 0;
    HistoryRange range;
    range.before_seq = c.last_seq + 1;
    range.limit = 200;
    for (;;) {
      auto page = model.history(c.conversation_id, range);
      IMLOG_TRY(page);
      for (auto m = page->messages.rbegin(); m != page->messages.rend(); ++m) {
        if (m->created_at < end || m->seq_id <= c.read_seq) return n;
        if (m->sender_id != user && m->message_type != "system") n++;
      }
      if (!page->has_more || page->messages.empty()) return n;
      range.before_seq = page->messages.front().seq_id;
    }
  }

  // The user's unread badge as it was at `end` (tasks/README.md): each conversation's unread count
  // in the read model less its messages at or after `end`. Nothing while the read model has not
  // yet reached `end` in a conversation the worker read.
  Result<std::optional<uint64_t>> badge_as_of(uint64_t user, int64_t end) {
    auto convs = model.conversations(user);
    IMLOG_TRY(convs);
    uint64_t n = 0;
    for (const auto& c : *convs) {
      if (auto it = seen.find(c.conversation_id); it != seen.end()) {
        for (auto m = it->second.upper_bound(c.last_seq); m != it->second.end(); ++m) {
          if (m->second < end) return std::optional<uint64_t>();  // the read model is behind
        }
      }
      auto later = unread_after(user, c, end);
      IMLOG_TRY(later);
      n += c.unread > *later ? c.unread - *later : 0;
    }
    return std::optional<uint64_t>(n);
  }

  // A window closed: one notification per device, unless the user came online meanwhile. False
  // while the read model has not reached the window's end (tried again next step).
  Result<bool> close_window(const Window& w) {
    auto online = online_of({w.user});
    IMLOG_TRY(online);
    if (!online->empty()) {
      stats.skipped++;
      note_done(w.user, w.end);
      return true;
    }
    auto badge = badge_as_of(w.user, w.end);
    IMLOG_TRY(badge);
    if (!*badge) return false;
    auto view = model.user(w.user);
    IMLOG_TRY(view);
    const Member& first = *w.members.begin();
    const Member& latest = *w.members.rbegin();
    auto sender = model.user(latest.sender);
    IMLOG_TRY(sender);
    bool queued = false;
    for (const auto& d : *view ? (*view)->devices : std::vector<DeviceView>{}) {
      if (removed_devices.contains(d.device_id)) continue;  // its token is invalid; the model lags
      Outgoing o;
      o.n.user_id = w.user;
      o.n.device = d;
      o.n.key = std::to_string(w.user) + "/" + first.stream + "/" + std::to_string(first.seq) + "/" +
                std::to_string(d.device_id);
      o.n.conversation_id = latest.stream;
      o.n.seq = latest.seq;
      o.n.sender_id = latest.sender;
      o.n.sender_nickname = *sender && !erased.contains(latest.sender) ? (*sender)->nickname : "";
      o.n.preview = preview_of(*latest.content, config.preview_chars);
      o.n.badge = **badge;
      o.n.collapsed = static_cast<uint32_t>(w.members.size());
      o.due_ms = clock.now_ms();
      o.window_start = w.start;
      o.window_end = w.end;
      o.partition = first.partition;
      o.offset = first.offset;
      o.event_ms = first.time;
      outgoing.emplace(next_outgoing++, std::move(o));
      queued = true;
    }
    if (queued) stats.collapsed += w.members.size() - 1;
    else note_done(w.user, w.end);
    return true;
  }

  Status close_due_windows() {
    IMLOG_TRY(cut_windows());
    auto now = std::chrono::steady_clock::now();
    // A user's windows close in order: one waiting for the model holds the user's later ones (in
    // `closing` in the order cut), so a device never gets an older preview and badge last. A
    // failed read keeps its window and every one after it for the next step.
    std::unordered_set<uint64_t> held;
    std::vector<Window> kept;
    Status status;  // the first failure, if any
    for (auto& w : closing) {
      if (status && !held.contains(w.user) && w.retry_at <= now) {
        auto closed = close_window(w);
        if (!closed) {
          status = tl::unexpected(closed.error());
        } else if (*closed) {
          continue;
        } else {
          w.wait = std::clamp(w.wait * 2, kFirstModelWait, kLastModelWait);
          w.retry_at = now + w.wait;
        }
      }
      held.insert(w.user);
      kept.push_back(std::move(w));
    }
    closing = std::move(kept);
    return status;
  }

  PushProvider* provider_for(std::string_view platform) const {
    if (platform == "apns") return providers.apns;
    if (platform == "fcm") return providers.fcm;
    if (platform == "webhook") return providers.webhook;
    return nullptr;
  }

  std::chrono::milliseconds backoff(uint32_t attempts) const {
    auto d = config.first_backoff;
    for (uint32_t i = 1; i < attempts && d < config.max_backoff; ++i) d *= 2;
    return std::min(d, config.max_backoff);
  }

  // Writes the notification to im.dlq and waits for the log's answer; false if it failed.
  bool dead_letter_of(const Outgoing& o, const std::string& reason) {
    Record source{std::string(kEventsTopic), o.partition, o.offset, clock.now_ms(), o.n.key, push_payload_json(o.n)};
    auto done = std::make_shared<std::promise<bool>>();
    auto answer = done->get_future();
    log.append(kDeadLetterTopic, {dead_letter(source, reason, o.attempts, clock.now_ms())},
               [done](Result<std::vector<RecordPosition>> r) { done->set_value(r.has_value()); });
    if (answer.wait_for(std::chrono::seconds(10)) != std::future_status::ready || !answer.get()) {
      logger->warn("push: writing a dead letter for {} failed; trying again later", o.n.key);
      return false;
    }
    stats.dead_lettered++;
    logger->warn("push to {} dead-lettered after {} attempts: {}", o.n.key, o.attempts, reason);
    return true;
  }

  // The provider says the device's token is invalid: remove the device the way DELETE
  // /api/v1/devices/{id} does, by a command on the user's stream (the engine writes DeviceRemoved,
  // so replay and every read model agree). The dedupe key makes a repeat (another window's send, a
  // restarted worker) a duplicate, not a second removal.
  void remove_device(const PushNotification& n, const std::string& why) {
    removed_devices.insert(n.device.device_id);
    if (!commands) {
      logger->warn("push: device {} of user {} has an invalid token ({}); no command path to remove it",
                   n.device.device_id, n.user_id, why);
      return;
    }
    fb::CommandEnvelopeT c;
    c.stream = user_stream(n.user_id);
    c.actor = n.user_id;
    c.client_msg_id = "push-invalid-token:" + std::to_string(n.device.device_id);
    c.timestamp_ms = clock.now_ms();
    c.trace_id = "push:" + n.key;
    c.command.Set(fb::RemoveDeviceT{{}, n.device.device_id});
    std::string stream = c.stream;
    auto log_failure = [logger = logger, device = n.device.device_id](const Error& e) {
      logger->warn("push: submitting the removal of device {} failed: {} (tried again at its next send)", device,
                   e.to_string());
    };
    commands->send(std::move(stream), encode_command(c), log_failure);
    stats.devices_removed++;
    logger->info("push: device {} of user {} removed: its token is invalid ({})", n.device.device_id, n.user_id, why);
  }

  // A notification done with.
  std::map<uint64_t, Outgoing>::iterator forget(std::map<uint64_t, Outgoing>::iterator it) {
    note_done(it->second.n.user_id, it->second.window_end);
    return outgoing.erase(it);
  }

  // Hands due notifications to the pool, at most max_in_flight at once and one per device.
  void send_due() {
    int64_t now = clock.now_ms();
    for (auto it = outgoing.begin(); it != outgoing.end() && in_flight < config.max_in_flight;) {
      Outgoing& o = it->second;
      if (o.in_flight || o.due_ms > now || sending_to.contains(o.n.device.device_id)) {
        ++it;
        continue;
      }
      PushProvider* p = provider_for(o.n.device.platform);
      if (!p || removed_devices.contains(o.n.device.device_id)) {
        if (!p) stats.unsupported++;
        it = forget(it);
        continue;
      }
      o.in_flight = true;
      in_flight++;
      stats.in_flight = in_flight;
      sending_to.insert(o.n.device.device_id);
      pool->post([this, id = it->first, p, n = o.n] {
        SendResult r = p->send(n);
        {
          std::lock_guard lock(answers_mu);
          answers.push_back(Answer{id, std::move(r)});
        }
        reader->wakeup();  // the worker's poll returns to take the answer
      });
      ++it;
    }
  }

  // Takes the pool's answers: sent, retried later, dead-lettered, or the device removed.
  void take_answers() {
    std::vector<Answer> got;
    {
      std::lock_guard lock(answers_mu);
      got.swap(answers);
    }
    for (auto& a : got) {
      auto it = outgoing.find(a.id);
      if (it == outgoing.end()) continue;
      Outgoing& o = it->second;
      o.in_flight = false;
      in_flight--;
      stats.in_flight = in_flight;
      sending_to.erase(o.n.device.device_id);
      if (done_with(o, a.result)) forget(it);
    }
  }

  // One answer to one attempt; true when the notification is done with.
  bool done_with(Outgoing& o, const SendResult& r) {
    o.attempts++;
    if (r.outcome == SendOutcome::sent) {
      stats.sent++;
      stats.latency.observe(std::max<int64_t>(clock.now_ms() - o.event_ms, 0) / 1000.0);
      return true;
    }
    stats.failed++;
    stats.failures[static_cast<size_t>(r.reason == PushFailure::none ? PushFailure::rejected : r.reason)]++;
    if (r.outcome == SendOutcome::invalid_token) {
      remove_device(o.n, r.detail);
      return true;
    }
    if (r.outcome == SendOutcome::retry && o.attempts < config.max_attempts) {
      stats.retried++;
      o.due_ms = clock.now_ms() + backoff(o.attempts).count();
      return false;
    }
    std::string reason = "push to " + o.n.device.platform + " device " + std::to_string(o.n.device.device_id) +
                         " failed after " + std::to_string(o.attempts) + " attempts: " + r.detail;
    if (dead_letter_of(o, reason)) return true;
    o.attempts--;  // the log did not take it: sent once more later, the count staying at its limit
    o.due_ms = clock.now_ms() + config.max_backoff.count();
    return false;
  }

  // ---- positions ------------------------------------------------------------------------------

  // The earliest start of each user's windows not done with (waiting, closing or sending).
  std::unordered_map<uint64_t, int64_t> open_starts() const {
    std::unordered_map<uint64_t, int64_t> out;
    auto note = [&out](uint64_t user, int64_t start) {
      auto [it, fresh] = out.try_emplace(user, start);
      if (!fresh) it->second = std::min(it->second, start);
    };
    for (const auto& [user, members] : waiting) note(user, members.begin()->time);
    for (const auto& w : closing) note(w.user, w.start);
    for (const auto& [id, o] : outgoing) note(o.n.user_id, o.window_start);
    return out;
  }

  // The cut: the event time from which a restarted worker must read everything again — the first
  // member of every window not done with is at or after it. Windows done with may straddle it: the
  // saved progress tells the restarted worker which members it reads again were handled, so it
  // forms exactly the same windows, and sends again only whole ones. int64 max when nothing is open.
  static int64_t cut_of(const std::unordered_map<uint64_t, int64_t>& open) {
    int64_t at = std::numeric_limits<int64_t>::max();
    for (const auto& [user, start] : open) at = std::min(at, start);
    return at;
  }

  // The progress a restarted worker needs (the members above): read positions; per user, where the
  // windows done with end, up to the user's first window not done with, when that is past the cut;
  // the late members at or after the cut.
  std::string encode_progress(const std::unordered_map<uint64_t, int64_t>& open, int64_t cut_at) const {
    SnapshotWriter out(kProgressMagic);
    out.put(static_cast<uint32_t>(next.size()));
    for (auto [p, at] : next) {
      out.put(p);
      out.put(at);
    }
    std::vector<std::pair<uint64_t, int64_t>> done;
    for (auto [user, end] : done_end) {
      auto o = open.find(user);
      int64_t until = o == open.end() ? end : std::min(end, o->second);
      if (until > cut_at) done.emplace_back(user, until);
    }
    out.put(static_cast<uint32_t>(done.size()));
    for (auto [user, until] : done) {
      out.put(user);
      out.put(until);
    }
    std::vector<std::pair<const LateKey*, int64_t>> kept;
    for (const auto& [key, time] : late) {
      if (time >= cut_at) kept.emplace_back(&key, time);
    }
    out.put(static_cast<uint32_t>(kept.size()));
    for (auto [key, time] : kept) {
      out.put(std::get<0>(*key));
      out.put_bytes(std::get<1>(*key));
      out.put(std::get<2>(*key));
      out.put(time);
    }
    return out.finish();
  }

  // Saves the progress with the lease (only its holder may), unless it is what was saved last.
  Status save_progress(const std::unordered_map<uint64_t, int64_t>& open, int64_t cut_at) {
    if (!leases) return {};
    std::string bytes = encode_progress(open, cut_at);
    if (bytes == saved_progress) return {};
    IMLOG_TRY(leases->save_state(kPushLease, holder, bytes));
    saved_progress = std::move(bytes);
    return {};
  }

  // The predecessor's progress. A damaged one is left aside with a warning: windows it finished
  // across the committed position may then be notified again in part, never left out.
  Status load_progress() {
    if (!leases) return {};
    auto bytes = leases->load_state(kPushLease);
    IMLOG_TRY(bytes);
    if (bytes->empty()) return {};
    auto in = SnapshotReader::parse(std::move(*bytes), kProgressMagic);
    if (!in.problem().empty() || !decode_progress(in)) {
      logger->warn("push: the saved progress is unusable ({}); windows across the committed position may be "
                   "notified again in part",
                   in.problem().empty() ? "truncated" : in.problem());
      handed_next.clear();
      handed_done.clear();
      late.clear();
      return {};
    }
    done_end = handed_done;  // kept, and saved again, while a cut may need them
    logger->info("push: resuming with the saved progress of {} users", handed_done.size());
    return {};
  }

  bool decode_progress(SnapshotReader& in) {
    uint32_t n = 0;
    if (!in.get(n)) return false;
    for (uint32_t i = 0; i < n; ++i) {
      int32_t p = 0;
      int64_t at = 0;
      if (!in.get(p) || !in.get(at)) return false;
      handed_next[p] = at;
    }
    if (!in.get(n)) return false;
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t user = 0;
      int64_t until = 0;
      if (!in.get(user) || !in.get(until)) return false;
      handed_done[user] = until;
    }
    if (!in.get(n)) return false;
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t user = 0, seq = 0;
      std::string stream;
      int64_t time = 0;
      if (!in.get(user) || !in.get_bytes(stream) || !in.get(seq) || !in.get(time)) return false;
      late[{user, std::move(stream), seq}] = time;
    }
    return in.left() == 0;
  }

  // Forgets what no later cut can need: positions, spans and seen messages before both the cut
  // and the log's progress (a message read later is not older than the progress, unless late, and
  // a late one joins a window after its user's last).
  void prune(int64_t cut_at) {
    auto mark = watermark();
    if (!mark) return;  // the log did not answer: next time
    int64_t before = std::min(cut_at, *mark);
    for (auto& [p, times] : first_at) times.erase(times.begin(), times.lower_bound(before));
    std::erase_if(done_end, [before](const auto& user_end) { return user_end.second <= before; });
    std::erase_if(chain_end, [before](const auto& user_end) { return user_end.second <= before; });
    std::erase_if(late, [before](const auto& moved) { return moved.second < before; });
    bool past_handed = std::all_of(handed_next.begin(), handed_next.end(), [this](const auto& pn) {
      auto it = next.find(pn.first);
      return it != next.end() && it->second >= pn.second;
    });
    if (past_handed) {
      handed_next.clear();
      handed_done.clear();
    }
    for (auto it = seen.begin(); it != seen.end();) {
      std::erase_if(it->second, [before](const auto& m) { return m.second < before; });
      it = it->second.empty() ? seen.erase(it) : std::next(it);
    }
  }

  // Where partition p is done up to: the first offset read at or after the cut, else all it read.
  int64_t done_up_to(int32_t p, int64_t read, int64_t cut_at) const {
    int64_t at = read;
    if (auto it = first_at.find(p); it != first_at.end()) {
      for (auto t = it->second.lower_bound(cut_at); t != it->second.end(); ++t) at = std::min(at, t->second);
    }
    return at;
  }

  void commit() {
    last_commit = std::chrono::steady_clock::now();
    auto open = open_starts();
    int64_t cut_at = cut_of(open);
    std::vector<TopicPartitionOffset> offsets;
    for (auto [p, read] : next) {
      int64_t at = done_up_to(p, read, cut_at);
      if (committed[p] != at) offsets.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, at});
    }
    prune(cut_at);
    if (offsets.empty()) return;
    // The progress first: offsets committed past it would leave the next worker without it.
    auto saved = renew_lease(true);
    if (saved) saved = save_progress(open, cut_at);
    if (!saved) {
      logger->warn("push: saving the progress: {} (offsets not committed)", saved.error().to_string());
      return;
    }
    if (auto s = reader->commit(offsets); !s) {
      logger->warn("push: committing im.events offsets: {}", s.error().to_string());
      return;
    }
    for (const auto& o : offsets) committed[o.partition] = o.offset;
  }

  // Feeds partition p's records before `until` to the validity filter only (the epoch in force
  // where reading resumes), as the router does.
  Status restore_filter(int32_t p, int64_t until) {
    filter.restore(p, {});
    return read_partition_until(
        log, p, 0, until, config.max_batch, [this] { return worker.stopping(); },
        [this, p](const Record& r) {
          if (auto ev = read_event(r.value)) filter.accept(p, **ev);
        },
        "push worker restoring epochs");
  }

  // Partition p resumes at `at` (event_follow.h), with the validity filter restored up to it.
  Status resume(int32_t p, int64_t at) {
    IMLOG_TRY(restore_filter(p, at));
    next[p] = at;
    committed[p] = -1;
    logger->info("push worker resumes im.events partition {} at offset {}", p, at);
    return {};
  }

  // A record of the batch could not be handled (the read model or the registry failed): read
  // again from it in its partition, and from the first unhandled record in each other one.
  Status read_again_from(size_t i, const Error& why) {
    std::map<int32_t, int64_t> from;
    for (size_t j = i; j < batch.size(); ++j) from.try_emplace(batch[j].partition, batch[j].offset);
    for (auto [p, offset] : from) {
      IMLOG_TRY(reader->seek(TopicPartitionOffset{std::string(kEventsTopic), p, offset}));
      next[p] = offset;
    }
    return fail(why.with_context("push worker (reading again from the message it could not handle)"));
  }

  // The single-worker rule (push.h): another holder is a failure for good, the store away a
  // retryable one (no sends meanwhile; another process cannot take the lease either).
  // `now`: renew whenever it was last renewed (before saving the progress, which only the holder
  // may: a step slower than the lease's time-to-live lets it lapse).
  Status renew_lease(bool now = false) {
    if (!leases || (!now && std::chrono::steady_clock::now() - last_renewal < config.lease_ttl / 3)) return {};
    auto other = leases->acquire(kPushLease, holder, config.lease_ttl);
    if (!other) return fail(other.error().with_context("push worker renewing its lease"));
    if (!other->empty()) {
      return fail(std::errc::device_or_resource_busy,
                  "push worker lost its lease to " + *other + ": push.enabled must be on in one process only");
    }
    last_renewal = std::chrono::steady_clock::now();
    return {};
  }

  // Takes the lease at start, waiting up to lease_ttl for one a stopped or killed worker left.
  Status take_lease() {
    if (!leases) return {};
    auto deadline = std::chrono::steady_clock::now() + config.lease_ttl + std::chrono::seconds(1);
    for (;;) {
      auto other = leases->acquire(kPushLease, holder, config.lease_ttl);
      IMLOG_TRY(other);
      if (other->empty()) {
        last_renewal = std::chrono::steady_clock::now();
        return {};
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail(std::errc::device_or_resource_busy,
                    "another push worker is running (" + *other + " holds the lease `" + std::string(kPushLease) +
                        "`): set push.enabled in one process only (docs/configuration.md)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }

  Status step() {
    IMLOG_TRY(renew_lease());
    members_this_step.clear();
    facts_this_step.clear();
    auto polled = reader->poll(batch, std::chrono::milliseconds(100));
    if (!polled) return fail(polled.error().with_context("push worker reading im.events"));
    for (size_t i = 0; i < batch.size(); ++i) {
      if (auto s = handle(batch[i]); !s) return read_again_from(i, s.error());
      next[batch[i].partition] = batch[i].offset + 1;
    }
    take_answers();
    IMLOG_TRY(close_due_windows());
    send_due();
    if (std::chrono::steady_clock::now() - last_commit >= config.commit_interval) commit();
    return {};
  }

  void finish() {
    if (!reader) return;
    take_answers();  // the sends that ended after the last step
    commit();  // what is done; open windows and sends are read again by the next worker
    reader->close();
    reader.reset();
  }
};

PushWorker::PushWorker(EventLog& log, SessionRegistry& sessions, ReadModel& model, PushProviders providers,
                       PushConfig config, CommandTransport* commands, LeaseStore* leases, const Clock& clock)
    : loop_(std::make_unique<Loop>(log, sessions, model, providers, std::move(config), commands, leases, clock)) {}

PushWorker::~PushWorker() { stop(); }

Status PushWorker::start() {
  auto& l = *loop_;
  IMLOG_TRY(l.take_lease());
  if (auto s = l.load_progress(); !s) {
    l.leases->release(kPushLease, l.holder);
    return fail(s.error().with_context("push worker reading its saved progress"));
  }
  auto reader = follow_events(l.log, l.config.group, l.config.max_batch,
                              [&l](int32_t p, int64_t at) { return l.resume(p, at); });
  if (!reader) {
    if (l.leases) l.leases->release(kPushLease, l.holder);
    return fail(reader.error());
  }
  l.reader = std::move(*reader);
  l.pool = std::make_unique<SendPool>(l.config.max_in_flight);
  l.last_commit = std::chrono::steady_clock::now();
  l.worker.on_wake([&l] { l.reader->wakeup(); });
  l.worker.start();
  l.logger->info("push worker started; offsets committed as group {}", l.config.group);
  return {};
}

void PushWorker::stop() {
  loop_->worker.stop();
  if (loop_->pool) loop_->pool->stop();  // the sends under way end (each within its time-out)
  bool started = loop_->reader != nullptr;
  loop_->finish();
  if (started && loop_->leases) loop_->leases->release(kPushLease, loop_->holder);
}

const PushStats& PushWorker::stats() const { return loop_->stats; }

}  // namespace imlog
