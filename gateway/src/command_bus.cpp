#include "imlog/gateway/command_bus.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/streams.h"

namespace imlog {
namespace {

class BusCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "command bus"; }
  std::string message(int c) const override {
    switch (static_cast<BusErrc>(c)) {
      case BusErrc::timed_out: return "no answer in time";
      case BusErrc::unavailable: return "the event log is unavailable";
    }
    return "unknown command bus error";
  }
};

using Done = std::function<void(Result<fb::CommandReplyT>)>;
using SteadyTime = std::chrono::steady_clock::time_point;

}  // namespace

const std::error_category& bus_category() {
  static const BusCategory category;
  return category;
}

struct CommandBus::State {
  State(EventLog& l, std::string id, const Clock& c)
      : log(l), gateway_id(std::move(id)), topic(delivery_topic(gateway_id)), clock(c), logger(imlog::logger("gateway")) {}

  struct Pending {
    Done done;
    std::multimap<SteadyTime, uint64_t>::iterator expiry;
  };

  EventLog& log;
  std::string gateway_id;
  std::string topic;
  const Clock& clock;
  std::shared_ptr<spdlog::logger> logger;
  std::function<void(Push)> on_push;
  std::unique_ptr<Consumer> reader;
  std::thread thread;
  std::atomic<bool> running{false};
  // Request ids start from the clock so a restarted gateway never reuses one still in flight.
  std::atomic<uint64_t> next_request{0};

  std::mutex mu;  // guards pending and expiries
  std::unordered_map<uint64_t, Pending> pending;
  std::multimap<SteadyTime, uint64_t> expiries;

  // Removes and returns the callback of a request, if it is still waiting.
  Done take(uint64_t request_id) {
    std::lock_guard lock(mu);
    auto it = pending.find(request_id);
    if (it == pending.end()) return nullptr;
    Done done = std::move(it->second.done);
    expiries.erase(it->second.expiry);
    pending.erase(it);
    return done;
  }

  void expire_overdue() {
    std::vector<Done> overdue;
    {
      std::lock_guard lock(mu);
      auto now = std::chrono::steady_clock::now();
      while (!expiries.empty() && expiries.begin()->first <= now) {
        auto id = expiries.begin()->second;
        expiries.erase(expiries.begin());
        auto it = pending.find(id);
        if (it == pending.end()) continue;
        overdue.push_back(std::move(it->second.done));
        pending.erase(it);
      }
    }
    for (auto& done : overdue) {
      done(fail(BusErrc::timed_out, "the engine did not answer in time; retry with the same client_msg_id", true));
    }
  }

  void handle(const Record& r) {
    auto d = read_delivery(r.value);
    if (!d) {
      logger->warn("skipping an undecodable delivery at {} offset {}: {}", topic, r.offset, d.error().to_string());
      return;
    }
    if (auto* reply = (*d)->reply()) {
      if (Done done = take(reply->request_id())) {
        fb::CommandReplyT value;
        reply->UnPackTo(&value);
        done(std::move(value));
      }
    }
    if (((*d)->event() || (*d)->presence()) && (*d)->recipients() && on_push) {
      Push push;
      push.recipients.assign((*d)->recipients()->begin(), (*d)->recipients()->end());
      if ((*d)->event()) {
        push.event_bytes = std::make_shared<const std::string>(
            reinterpret_cast<const char*>((*d)->event()->data()), (*d)->event()->size());
      }
      if ((*d)->presence()) (*d)->presence()->UnPackTo(&push.presence.emplace());
      on_push(std::move(push));
    }
  }

  void run() {
    std::vector<Record> batch;
    while (running) {
      auto polled = reader->poll(batch, std::chrono::milliseconds(50));
      if (!polled) {
        logger->error("reading {}: {}", topic, polled.error().to_string());
        if (!polled.error().retryable()) break;
      } else {
        for (const auto& r : batch) handle(r);
      }
      expire_overdue();
    }
  }
};

CommandBus::CommandBus(EventLog& log, std::string gateway_id, const Clock& clock)
    : state_(std::make_unique<State>(log, std::move(gateway_id), clock)) {
  state_->next_request = static_cast<uint64_t>(clock.now_ms()) << 20;
}

CommandBus::~CommandBus() { stop(); }

const std::string& CommandBus::gateway_id() const { return state_->gateway_id; }

void CommandBus::deliver(std::string_view gateway_id, const fb::DeliveryT& delivery) {
  std::vector<OutRecord> records;
  records.push_back(OutRecord{"", encode_delivery(delivery), 0});
  auto topic = delivery_topic(gateway_id);
  state_->log.append(topic, std::move(records), [this, topic](Result<std::vector<RecordPosition>> r) {
    if (!r) state_->logger->warn("a presence push to {} was lost: {}", topic, r.error().to_string());
  });
}

Status CommandBus::start(std::function<void(Push)> on_push) {
  auto& s = *state_;
  s.on_push = std::move(on_push);
  // One partition keeps a gateway's deliveries in order; not synced, as losing them is harmless
  // (acks are retried by clients, pushes are caught up by sync).
  IMLOG_TRY(s.log.create_topic(TopicSpec{s.topic, 1, false}));
  auto end = s.log.end_offset(TopicPartition{s.topic, 0});
  IMLOG_TRY(end);
  ConsumerOptions opts;
  opts.max_batch = 4096;
  s.reader = s.log.consumer(opts);
  IMLOG_TRY(s.reader->assign({TopicPartitionOffset{s.topic, 0, *end}}));
  s.running = true;
  s.thread = std::thread([this] { state_->run(); });
  return {};
}

void CommandBus::stop() {
  auto& s = *state_;
  if (!s.thread.joinable()) return;
  s.running = false;
  s.reader->wakeup();
  s.thread.join();
}

void CommandBus::submit(fb::CommandEnvelopeT command, std::chrono::milliseconds timeout, Done done) {
  auto& s = *state_;
  uint64_t id = ++s.next_request;
  command.reply_to = std::make_unique<fb::ReplyToT>();
  command.reply_to->gateway = s.gateway_id;
  command.reply_to->request_id = id;
  if (command.timestamp_ms == 0) command.timestamp_ms = s.clock.now_ms();
  std::string key = command.stream;
  {
    std::lock_guard lock(s.mu);
    auto expiry = s.expiries.emplace(std::chrono::steady_clock::now() + timeout, id);
    s.pending.emplace(id, State::Pending{std::move(done), expiry});
  }
  std::vector<OutRecord> records;
  records.push_back(OutRecord{std::move(key), encode_command(command)});
  s.log.append(kCommandsTopic, std::move(records), [this, id](Result<std::vector<RecordPosition>> r) {
    if (r) return;
    if (Done d = state_->take(id)) {
      d(fail(BusErrc::unavailable, "the event log refused the command: " + r.error().message(),
             r.error().retryable()));
    }
  });
}

}  // namespace imlog
