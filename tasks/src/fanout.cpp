// The tasks workers' fan-out (fanout.h has the flow and the delivery guarantee).

#include "imlog/tasks/fanout.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"

namespace imlog {
namespace {

// The outcome of several deliveries, waited for together. Callbacks run on the transport's
// thread (or the caller's, in process).
struct DeliveryWaiter {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;
  std::vector<std::optional<Error>> errors;

  explicit DeliveryWaiter(size_t n) : left(n), errors(n) {}
  DeliveryTransport::Delivered callback(size_t i) {
    return [this, i](Status s) {
      std::lock_guard lock(mu);
      if (!s) errors[i] = s.error();
      if (--left == 0) cv.notify_all();
    };
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return left == 0; });
  }
};

}  // namespace

struct FanoutWorker::Loop {
  Loop(EventLog& l, DeliveryTransport& d, SessionRegistry& s, FanoutConfig c, const Clock& k)
      : log(l), deliveries(d), sessions(s), config(std::move(c)), clock(k), logger(imlog::logger("tasks")) {}

  EventLog& log;
  DeliveryTransport& deliveries;
  SessionRegistry& sessions;
  FanoutConfig config;
  const Clock& clock;
  std::shared_ptr<spdlog::logger> logger;
  FanoutStats stats;
  std::unique_ptr<Consumer> consumer;
  std::vector<Record> batch;
  // Its back-off is for polls; a batch's lookups and deliveries back off inside the step, on
  // worker.wait_for(), so stop() ends those waits too.
  Worker worker{"tasks", [this] { return step(); }, BackOff{config.first_backoff, config.max_backoff}};

  // The deliveries of a batch to one gateway: one hand-over, retried as a whole.
  struct Output {
    std::string gateway;
    std::vector<std::string> records;
    std::vector<size_t> tasks;  // indices into the batch
    uint64_t pushes = 0;
  };
  // Why a task of the batch goes to im.dlq (empty: it does not) and after how many attempts.
  struct Verdict {
    std::string reason;
    uint32_t attempts = 0;
  };

  // Waits `d` unless stopped first; returns whether still running.
  bool pause(std::chrono::milliseconds d) { return worker.wait_for(d); }

  // ---- planning: who is where -------------------------------------------------------------------

  // Locates the task's recipients and adds its deliveries to `outputs`; a failed lookup adds
  // nothing and is returned.
  Status plan(size_t index, const fb::FanoutTask& task, std::map<std::string, Output>& outputs) {
    std::map<std::string, std::vector<uint64_t>> by_gateway;
    std::vector<uint64_t> chunk;
    std::vector<std::pair<uint64_t, std::string>> located;
    const auto& users = *task.recipients();
    for (size_t from = 0; from < users.size(); from += config.lookup_batch) {
      size_t to = std::min<size_t>(users.size(), from + config.lookup_batch);
      chunk.assign(users.begin() + static_cast<long>(from), users.begin() + static_cast<long>(to));
      located.clear();
      IMLOG_TRY(sessions.try_locate(chunk, located));
      for (auto& [user, gateway] : located) by_gateway[gateway].push_back(user);
    }
    for (auto& [gateway, recipients] : by_gateway) {
      fb::DeliveryT d;
      d.recipients = std::move(recipients);
      d.event.assign(task.event()->begin(), task.event()->end());
      Output& out = outputs[gateway];
      out.gateway = gateway;
      out.pushes += d.recipients.size();
      out.tasks.push_back(index);
      out.records.push_back(encode_delivery(d));
    }
    return {};
  }

  // Plans every decoded task (null: not decoded). A task whose lookup failed — the registry is
  // unavailable, not "nobody online" — is planned again after first_backoff, doubling, up to
  // max_attempts, then gets a verdict (im.dlq) like a hopeless delivery. False if stopped first.
  bool plan_all(const std::vector<const fb::FanoutTask*>& tasks, std::map<std::string, Output>& outputs,
                std::vector<Verdict>& verdicts) {
    std::vector<size_t> pending;
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i]) pending.push_back(i);
    }
    auto backoff = config.first_backoff;
    for (uint32_t attempt = 1; !pending.empty(); ++attempt) {
      std::vector<size_t> failed;
      Error last;
      for (size_t i : pending) {
        auto s = plan(i, *tasks[i], outputs);
        if (s) continue;
        last = s.error();
        failed.push_back(i);
        if (attempt >= config.max_attempts) {
          verdicts[i] = Verdict{"locating the recipients failed after " + std::to_string(attempt) +
                                    " attempts: " + last.to_string(),
                                attempt};
        }
      }
      if (failed.empty() || attempt >= config.max_attempts) break;
      logger->warn("locating the recipients of {} tasks failed (attempt {} of {}), retrying in {} ms: {}",
                   failed.size(), attempt, config.max_attempts, backoff.count(), last.to_string());
      stats.lookup_retries += failed.size();
      if (!pause(backoff)) return false;
      backoff = std::min(backoff * 2, config.max_backoff);
      pending = std::move(failed);
    }
    return !worker.stopping();
  }

  // ---- delivering, with retries -----------------------------------------------------------------

  // Hands every output over at once and waits; returns the error of each (nullopt: delivered).
  std::vector<std::optional<Error>> deliver_all(const std::vector<Output*>& outputs) {
    DeliveryWaiter waiter(outputs.size());
    for (size_t i = 0; i < outputs.size(); ++i) {
      deliveries.deliver(outputs[i]->gateway, outputs[i]->records, waiter.callback(i));
    }
    waiter.wait();
    return std::move(waiter.errors);
  }

  // Delivers the outputs; a task whose output still fails after max_attempts gets a verdict.
  // Returns false if stopped first.
  bool deliver(std::map<std::string, Output>& outputs, std::vector<Verdict>& verdicts) {
    std::vector<Output*> pending;
    for (auto& [gateway, out] : outputs) pending.push_back(&out);
    auto backoff = config.first_backoff;
    for (uint32_t attempt = 1; !pending.empty(); ++attempt) {
      auto errors = deliver_all(pending);
      std::vector<Output*> failed;
      for (size_t i = 0; i < pending.size(); ++i) {
        if (!errors[i]) {
          stats.deliveries += pending[i]->pushes;
          continue;
        }
        if (!errors[i]->retryable()) {
          // A gateway whose topic is gone (as the router does): its clients sync on reconnect.
          logger->warn("not delivering to gateway {}: {}", pending[i]->gateway, errors[i]->to_string());
          continue;
        }
        failed.push_back(pending[i]);
        if (attempt < config.max_attempts) {
          logger->warn("delivering to gateway {} failed (attempt {} of {}), retrying in {} ms: {}", pending[i]->gateway, attempt,
                       config.max_attempts, backoff.count(), errors[i]->to_string());
          continue;
        }
        for (size_t t : pending[i]->tasks) {
          verdicts[t] = Verdict{"delivery to " + delivery_topic(pending[i]->gateway) + " failed after " + std::to_string(attempt) +
                                    " attempts: " + errors[i]->to_string(),
                                attempt};
        }
      }
      if (failed.empty() || attempt >= config.max_attempts) break;
      stats.retries += failed.size();
      if (!pause(backoff)) return false;
      backoff = std::min(backoff * 2, config.max_backoff);
      pending = std::move(failed);
    }
    return !worker.stopping();
  }

  // Appends the batch's dead letters, retrying until acknowledged; false if stopped first.
  bool dead_letters(const std::vector<Record>& batch, const std::vector<Verdict>& verdicts,
                    const std::vector<std::string>& traces) {
    std::vector<OutRecord> letters;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (verdicts[i].reason.empty()) continue;
      letters.push_back(dead_letter(batch[i], verdicts[i].reason, verdicts[i].attempts, clock.now_ms()));
      logger->error("task at im.tasks partition {} offset {} goes to {}: {} trace_id={}", batch[i].partition,
                    batch[i].offset, kDeadLetterTopic, verdicts[i].reason, traces[i]);
    }
    if (letters.empty()) return true;
    auto backoff = config.first_backoff;
    while (!worker.stopping()) {
      auto r = log.append_wait(kDeadLetterTopic, letters);
      if (r) {
        stats.dead_letters += letters.size();
        return true;
      }
      logger->error("writing {} dead letters failed, retrying: {}", letters.size(), r.error().to_string());
      if (!pause(backoff)) return false;
      backoff = std::min(backoff * 2, config.max_backoff);
    }
    return false;
  }

  // ---- the loop ---------------------------------------------------------------------------------

  // Handles a polled batch; false if stopped before it was done (nothing of it is committed).
  bool handle(const std::vector<Record>& batch) {
    std::map<std::string, Output> outputs;
    std::vector<Verdict> verdicts(batch.size());
    std::vector<const fb::FanoutTask*> tasks(batch.size(), nullptr);
    std::vector<std::string> traces(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      auto task = read_task(batch[i].value);
      if (!task) {
        stats.corrupt++;
        verdicts[i] = Verdict{"corrupt task: " + task.error().message(), 0};
        continue;
      }
      tasks[i] = *task;
      traces[i] = trace_of(**task);
      logger->debug("task {}: {} recipients trace_id={}", sv((*task)->task_id()),
                    (*task)->recipients() ? (*task)->recipients()->size() : 0, traces[i]);
    }
    if (!plan_all(tasks, outputs, verdicts)) return false;
    if (!deliver(outputs, verdicts)) return false;
    if (!dead_letters(batch, verdicts, traces)) return false;
    stats.tasks += batch.size();
    return true;
  }

  void commit(const std::vector<Record>& batch) {
    std::map<int32_t, int64_t> next;
    for (const auto& r : batch) next[r.partition] = std::max(next[r.partition], r.offset + 1);
    std::vector<TopicPartitionOffset> offsets;
    for (auto [p, o] : next) offsets.push_back(TopicPartitionOffset{std::string(kTasksTopic), p, o});
    // A refused commit (a rebalance) means the tasks come again to the partition's next owner.
    if (auto s = consumer->commit(offsets); !s) logger->warn("committing im.tasks offsets: {}", s.error().to_string());
  }

  // One poll of im.tasks, handled and committed (not committed if stopped half-way). A poll error
  // goes to the worker: retried with back-off, or the tasks worker fails visibly.
  Status step() {
    auto polled = consumer->poll(batch, std::chrono::milliseconds(200));
    if (!polled) return fail(polled.error().with_context("tasks worker reading im.tasks"));
    if (!batch.empty() && handle(batch)) commit(batch);
    return {};
  }
};

FanoutWorker::FanoutWorker(EventLog& log, DeliveryTransport& deliveries, SessionRegistry& sessions,
                           FanoutConfig config, const Clock& clock)
    : loop_(std::make_unique<Loop>(log, deliveries, sessions, std::move(config), clock)) {}

FanoutWorker::~FanoutWorker() { stop(); }

Status FanoutWorker::start() {
  auto& l = *loop_;
  auto parts = l.log.partition_count(kTasksTopic);
  if (!parts) return fail(parts.error().with_context("tasks worker: " + std::string(kTasksTopic) + " (create it first)"));
  if (l.config.lookup_batch == 0 || l.config.max_attempts == 0 || l.config.max_batch == 0) {
    return fail(LogErrc::bad_argument, "tasks worker: lookup_batch, max_attempts and max_batch must be at least 1");
  }
  ConsumerOptions opts;
  opts.group = l.config.group;
  opts.topics = {std::string(kTasksTopic)};
  // A new group reads from the start, so nothing written before the first worker joined is lost;
  // the cost is a renamed group re-pushing what im.tasks retains (FanoutConfig::group).
  opts.start_at_beginning = true;
  opts.max_batch = l.config.max_batch;
  l.consumer = l.log.consumer(opts);
  l.worker.on_wake([&l] { l.consumer->wakeup(); });
  l.worker.start();
  l.logger->info("tasks worker started in group {}", l.config.group);
  return {};
}

void FanoutWorker::stop() {
  auto& l = *loop_;
  if (!l.consumer) return;
  l.worker.stop();
  l.consumer->close();  // leaves the group: the partitions go to the other workers
  l.consumer.reset();
}

const FanoutStats& FanoutWorker::stats() const { return loop_->stats; }

}  // namespace imlog
