#include "imlog/gateway/command_bus.h"

#include <atomic>
#include <map>
#include <mutex>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"

namespace imlog {
namespace {

class BusCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "command bus"; }
  std::string message(int c) const override {
    switch (static_cast<BusErrc>(c)) {
      case BusErrc::timed_out: return "no answer in time";
      case BusErrc::unavailable: return "the engine is unavailable";
      case BusErrc::overloaded: return "the engine is overloaded";
    }
    return "unknown command bus error";
  }
};

using Done = std::function<void(Result<fb::CommandReplyT>)>;
using SteadyTime = std::chrono::steady_clock::time_point;

// How often requests past their time-out are failed: the precision of command_timeout.
constexpr auto kExpiryTick = std::chrono::milliseconds(100);

}  // namespace

const std::error_category& bus_category() {
  static const BusCategory category;
  return category;
}

struct CommandBus::State {
  State(CommandTransport& c, DeliveryTransport& d, std::string id, const Clock& cl)
      : commands(c), deliveries(d), gateway_id(std::move(id)), clock(cl), logger(imlog::logger("gateway")) {}

  struct Pending {
    Done done;
    std::multimap<SteadyTime, uint64_t>::iterator expiry;
  };

  CommandTransport& commands;
  DeliveryTransport& deliveries;
  std::string gateway_id;
  const Clock& clock;
  std::shared_ptr<spdlog::logger> logger;
  std::function<void(std::vector<Push>&&)> on_pushes;
  std::unique_ptr<DeliveryTransport::Subscription> subscription;
  // Request ids start from the clock so a restarted gateway never reuses one still in flight.
  std::atomic<uint64_t> next_request{0};

  mutable std::mutex mu;  // guards pending, expiries, stopping and broken
  std::unordered_map<uint64_t, Pending> pending;
  std::multimap<SteadyTime, uint64_t> expiries;
  bool stopping = false;
  // Why the bus cannot take commands any more (its worker failed); empty while it can.
  std::string broken;
  Worker worker{"command-bus", [this] { return expire_step(); }};

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

  // Takes every waiting request whose deadline is at or before `until`.
  std::vector<Done> take_due(SteadyTime until) {
    std::vector<Done> due;
    std::lock_guard lock(mu);
    while (!expiries.empty() && expiries.begin()->first <= until) {
      auto it = pending.find(expiries.begin()->second);
      expiries.erase(expiries.begin());
      if (it == pending.end()) continue;
      due.push_back(std::move(it->second.done));
      pending.erase(it);
    }
    return due;
  }

  // One tick: fails the requests past their time-out. When the subscription's reader has failed,
  // no answer can come: the bus fails too (failed_all), instead of letting requests wait.
  Status expire_step() {
    if (!worker.wait_for(kExpiryTick)) return {};
    if (auto why = subscription ? subscription->failure() : std::string(); !why.empty()) {
      return fail(BusErrc::unavailable, "no answer can reach this gateway: " + why, false);
    }
    for (auto& done : take_due(std::chrono::steady_clock::now())) {
      done(fail(BusErrc::timed_out, "the engine did not answer in time; retry with the same client_msg_id", true));
    }
    return {};
  }

  // The worker failed: every waiting request, and every one submitted from now on, is answered
  // unavailable at once.
  void fail_all(const Error& e) {
    {
      std::lock_guard lock(mu);
      broken = "the gateway's command bus failed: " + e.message();
    }
    for (auto& done : take_due(SteadyTime::max())) done(fail(BusErrc::unavailable, broken, true));
  }

  // Per message, at debug level: which event goes to how many users here, under its trace id.
  void log_push(const std::string& event_bytes, size_t recipients) {
    auto e = read_event(event_bytes);
    if (!e) return;
    logger->debug("pushing {}/{} to {} users trace_id={}", sv((*e)->stream()), (*e)->seq(), recipients,
                  sv((*e)->trace_id()));
  }

  // One batch of this gateway's deliveries: answers to their requests, pushes to on_pushes.
  void handle(const std::vector<std::string>& batch) {
    std::vector<Push> pushes;
    for (std::string_view bytes : batch) {
      auto d = read_delivery(bytes);
      if (!d) {
        logger->warn("skipping an undecodable delivery for gateway {}: {}", gateway_id, d.error().to_string());
        continue;
      }
      if (auto* reply = (*d)->reply()) {
        if (Done done = take(reply->request_id())) {
          fb::CommandReplyT value;
          reply->UnPackTo(&value);
          done(std::move(value));
        }
      }
      if (((*d)->event() || (*d)->presence()) && (*d)->recipients()) {
        Push& push = pushes.emplace_back();
        push.recipients.assign((*d)->recipients()->begin(), (*d)->recipients()->end());
        if ((*d)->event()) {
          push.event_bytes = std::make_shared<const std::string>(
              reinterpret_cast<const char*>((*d)->event()->data()), (*d)->event()->size());
          if (logger->should_log(spdlog::level::debug)) log_push(*push.event_bytes, push.recipients.size());
        }
        if ((*d)->presence()) (*d)->presence()->UnPackTo(&push.presence.emplace());
      }
    }
    if (!pushes.empty() && on_pushes) on_pushes(std::move(pushes));
  }
};

CommandBus::CommandBus(CommandTransport& commands, DeliveryTransport& deliveries, std::string gateway_id,
                       const Clock& clock)
    : state_(std::make_shared<State>(commands, deliveries, std::move(gateway_id), clock)) {
  state_->next_request = static_cast<uint64_t>(clock.now_ms()) << 20;
}

CommandBus::~CommandBus() { stop(); }

const std::string& CommandBus::gateway_id() const { return state_->gateway_id; }

size_t CommandBus::pending() const {
  std::lock_guard lock(state_->mu);
  return state_->pending.size();
}

void CommandBus::deliver(std::string_view gateway_id, const fb::DeliveryT& delivery) {
  std::vector<std::string> batch;
  batch.push_back(encode_delivery(delivery));
  state_->deliveries.deliver(gateway_id, std::move(batch), {});
}

Status CommandBus::start(std::function<void(std::vector<Push>&&)> on_pushes, Executor executor) {
  auto& s = *state_;
  s.on_pushes = std::move(on_pushes);
  auto handler = [st = state_.get(), executor = std::move(executor)](std::vector<std::string>&& batch) {
    if (!executor) return st->handle(batch);
    executor([st, batch = std::move(batch)] { st->handle(batch); });
  };
  auto sub = s.deliveries.subscribe(s.gateway_id, std::move(handler));
  IMLOG_TRY(sub);
  s.subscription = std::move(*sub);
  s.worker.on_failure([st = state_.get()](const Error& e) { st->fail_all(e); });
  s.worker.start();
  return {};
}

void CommandBus::stop() {
  auto& s = *state_;
  s.worker.stop();  // before the subscription: its step reads it
  {
    std::lock_guard lock(s.mu);
    s.stopping = true;
  }
  s.subscription.reset();  // no answer or push runs after this
  for (auto& done : s.take_due(SteadyTime::max())) {
    done(fail(BusErrc::unavailable, "the gateway is stopping; retry with the same client_msg_id", true));
  }
}

void CommandBus::submit(fb::CommandEnvelopeT command, std::chrono::milliseconds timeout, Done done) {
  auto& s = *state_;
  uint64_t id = ++s.next_request;
  command.reply_to = std::make_unique<fb::ReplyToT>();
  command.reply_to->gateway = s.gateway_id;
  command.reply_to->request_id = id;
  if (command.timestamp_ms == 0) command.timestamp_ms = s.clock.now_ms();
  command.schema_version = kSchemaVersion;
  std::string key = command.stream;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) {
      return done(fail(BusErrc::unavailable, "the gateway is stopping; retry with the same client_msg_id", true));
    }
    if (!s.broken.empty()) return done(fail(BusErrc::unavailable, s.broken, true));
    auto expiry = s.expiries.emplace(std::chrono::steady_clock::now() + timeout, id);
    s.pending.emplace(id, State::Pending{std::move(done), expiry});
  }
  s.commands.send(std::move(key), encode_command(command), [weak = std::weak_ptr<State>(state_), id](const Error& e) {
    auto st = weak.lock();
    if (!st) return;  // the bus is gone, and with it the request
    Done d = st->take(id);
    if (!d) return;
    if (e.code() == make_error_code(LogErrc::overloaded)) {
      return d(fail(BusErrc::overloaded, e.message(), true));
    }
    d(fail(BusErrc::unavailable, "the engine did not take the command: " + e.message(), e.retryable()));
  });
}

}  // namespace imlog
