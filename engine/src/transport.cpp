#include "imlog/engine/transport.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/partitioner.h"
#include "imlog/engine/streams.h"

namespace imlog {
namespace {

// ---- commands, in process ------------------------------------------------------------------------

// The single node's command queue: many producers (gateway I/O threads), one reader (the
// sequencer). Bounded; a full queue refuses at once instead of blocking an I/O thread.
class InProcessCommands final : public CommandTransport {
 public:
  InProcessCommands(int32_t partitions, InProcessLimits limits)
      : partitions_(partitions), limits_(limits), next_offset_(static_cast<size_t>(partitions), 0) {}

  void send(std::string stream, std::string command, std::function<void(const Error&)> on_failure) override {
    int32_t p = partition_for(stream, partitions_);
    std::unique_lock lock(mu_);
    if (closed_) {
      lock.unlock();
      return on_failure(Error(make_error_code(LogErrc::closed), "the engine has stopped", true));
    }
    if (queue_.size() >= limits_.command_queue) {
      lock.unlock();
      return on_failure(Error(make_error_code(LogErrc::overloaded),
                              "the engine has " + std::to_string(limits_.command_queue) +
                                  " commands queued: retry shortly",
                              true));
    }
    Record r;
    r.partition = p;
    r.offset = next_offset_[static_cast<size_t>(p)]++;
    r.key = std::move(stream);
    r.value = std::move(command);
    queue_.push_back(std::move(r));
    bool wake = reader_waiting_;
    reader_waiting_ = false;
    lock.unlock();
    if (wake) cv_.notify_one();
  }

  std::unique_ptr<Consumer> reader(const ConsumerOptions& options) override;
  Result<int32_t> partitions() override { return partitions_; }

  [[nodiscard]] std::string describe() const override {
    return "in-process queue (" + std::to_string(limits_.command_queue) + " commands)";
  }

 private:
  friend class InProcessCommandReader;

  // Moves up to `max` queued commands into `out`, waiting up to `timeout` for the first.
  void take(std::vector<Record>& out, size_t max, std::chrono::milliseconds timeout) {
    out.clear();
    std::unique_lock lock(mu_);
    if (queue_.empty() && !woken_) {
      // A reader that expects its wakeup() is not woken per command: the commands that come
      // meanwhile wait for that wakeup (or the timeout) and are taken together.
      reader_waiting_ = !wakeup_expected_;
      cv_.wait_for(lock, timeout, [&] { return woken_ || (!queue_.empty() && !wakeup_expected_); });
      reader_waiting_ = false;
    }
    woken_ = false;
    if (queue_.size() <= max) {
      out.swap(queue_);
      return;
    }
    out.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + static_cast<long>(max)));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(max));
  }

  void wakeup() {
    {
      std::lock_guard lock(mu_);
      woken_ = true;
    }
    cv_.notify_one();
  }

  void expect_wakeup(bool expected) {
    std::lock_guard lock(mu_);
    wakeup_expected_ = expected;
  }

  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    queue_.clear();  // never acked: their clients time out and retry
  }

  void open() {
    std::lock_guard lock(mu_);
    closed_ = false;
    wakeup_expected_ = false;  // a new reader has said nothing yet
  }

  const int32_t partitions_;
  const InProcessLimits limits_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Record> queue_;
  std::vector<int64_t> next_offset_;
  bool reader_waiting_ = false;  // the reader sleeps on cv_: a send must notify
  bool woken_ = false;           // wakeup() was called since the last take()
  bool wakeup_expected_ = false;  // the reader's hint (Consumer::expect_wakeup)
  bool closed_ = false;
};

// The sequencer's view of the in-process queue: every partition, always; nothing to commit.
class InProcessCommandReader final : public Consumer {
 public:
  InProcessCommandReader(InProcessCommands& queue, ConsumerOptions options)
      : queue_(queue), options_(std::move(options)) {
    for (int32_t p = 0; p < queue_.partitions_; ++p) owned_.push_back(TopicPartition{std::string(kCommandsTopic), p});
    queue_.open();
  }
  ~InProcessCommandReader() override { close(); }

  Status poll(std::vector<Record>& out, std::chrono::milliseconds timeout) override {
    if (closed_) return fail(LogErrc::closed, "the in-process command reader is closed");
    if (!announced_) {
      announced_ = true;
      if (options_.listener) options_.listener->on_assigned(owned_);
    }
    queue_.take(out, options_.max_batch, timeout);
    return {};
  }
  Status assign(const std::vector<TopicPartitionOffset>&) override {
    return fail(LogErrc::bad_argument, "the in-process command reader owns every partition; assign() is not for it");
  }
  Status seek(const TopicPartitionOffset&) override { return {}; }
  Status commit(const std::vector<TopicPartitionOffset>&) override { return {}; }
  Result<std::optional<int64_t>> committed(const TopicPartition&) override { return std::optional<int64_t>(); }
  [[nodiscard]] std::vector<TopicPartition> assignment() const override { return owned_; }
  void wakeup() override { queue_.wakeup(); }
  void expect_wakeup(bool expected) override { queue_.expect_wakeup(expected); }
  // The sequencer has checkpointed by then; nothing to revoke.
  void close() override {
    if (closed_) return;
    closed_ = true;
    queue_.close();
  }

 private:
  InProcessCommands& queue_;
  ConsumerOptions options_;
  std::vector<TopicPartition> owned_;
  bool announced_ = false;
  bool closed_ = false;
};

std::unique_ptr<Consumer> InProcessCommands::reader(const ConsumerOptions& options) {
  return std::make_unique<InProcessCommandReader>(*this, options);
}

// ---- deliveries, in process ----------------------------------------------------------------------

// Calls the gateway's handler on the sender's thread. A subscription's end waits for calls in
// progress (the shared lock is held across the call), so a handler never runs after its
// subscription is gone.
class InProcessDeliveries final : public DeliveryTransport {
 public:
  void deliver(std::string_view gateway_id, std::vector<std::string> deliveries, Delivered done) override {
    {
      std::shared_lock lock(mu_);
      auto it = handlers_.find(gateway_id);
      if (it != handlers_.end()) it->second(std::move(deliveries));  // else no such gateway here: nobody to deliver to
    }
    if (done) done(Status{});
  }

  Result<std::unique_ptr<Subscription>> subscribe(const std::string& gateway_id, Handler handler) override {
    std::unique_lock lock(mu_);
    if (!handlers_.emplace(gateway_id, std::move(handler)).second) {
      return fail(LogErrc::bad_argument, "gateway `" + gateway_id + "` is already subscribed to its deliveries");
    }
    return std::unique_ptr<Subscription>(new Sub(*this, gateway_id));
  }

 private:
  class Sub final : public Subscription {
   public:
    Sub(InProcessDeliveries& owner, std::string id) : owner_(owner), id_(std::move(id)) {}
    ~Sub() override {
      std::unique_lock lock(owner_.mu_);
      owner_.handlers_.erase(id_);
    }

   private:
    InProcessDeliveries& owner_;
    std::string id_;
  };

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::shared_mutex mu_;
  std::unordered_map<std::string, Handler, Hash, std::equal_to<>> handlers_;
};

// ---- over the log ----------------------------------------------------------------------------------

class LogCommands final : public CommandTransport {
 public:
  explicit LogCommands(EventLog& log) : log_(log) {}

  void send(std::string stream, std::string command, std::function<void(const Error&)> on_failure) override {
    std::vector<OutRecord> records;
    records.push_back(OutRecord{std::move(stream), std::move(command)});
    log_.append(kCommandsTopic, std::move(records),
                [on_failure = std::move(on_failure)](Result<std::vector<RecordPosition>> r) {
                  if (!r) on_failure(r.error());
                });
  }

  std::unique_ptr<Consumer> reader(const ConsumerOptions& options) override {
    ConsumerOptions o = options;
    o.topics = {std::string(kCommandsTopic)};
    return log_.consumer(o);
  }

  Result<int32_t> partitions() override { return log_.partition_count(kCommandsTopic); }
  [[nodiscard]] std::string describe() const override { return std::string(kCommandsTopic); }

 private:
  EventLog& log_;
};

// Reads one gateway's topic on a worker of its own and hands each poll's records to the handler.
// A retryable poll error is retried with back-off; any other fails the worker, and the gateway's
// bus, seeing failure(), fails its requests at once.
class LogSubscription final : public DeliveryTransport::Subscription {
 public:
  LogSubscription(std::unique_ptr<Consumer> reader, std::string topic, DeliveryTransport::Handler handler)
      : reader_(std::move(reader)), topic_(std::move(topic)), handler_(std::move(handler)),
        worker_("deliveries " + topic_, [this] { return step(); }) {
    worker_.on_wake([this] { reader_->wakeup(); });
    worker_.start();
  }
  ~LogSubscription() override { worker_.stop(); }

  [[nodiscard]] std::string failure() const override { return worker_.failure(); }

 private:
  Status step() {
    auto polled = reader_->poll(batch_, std::chrono::milliseconds(200));
    if (!polled) return fail(polled.error().with_context("reading " + topic_));
    if (batch_.empty()) return {};
    std::vector<std::string> deliveries;
    deliveries.reserve(batch_.size());
    for (auto& r : batch_) deliveries.push_back(std::move(r.value));
    handler_(std::move(deliveries));
    return {};
  }

  std::unique_ptr<Consumer> reader_;
  std::string topic_;
  DeliveryTransport::Handler handler_;
  std::vector<Record> batch_;
  Worker worker_;
};

class LogDeliveries final : public DeliveryTransport {
 public:
  explicit LogDeliveries(EventLog& log) : log_(log) {}

  void deliver(std::string_view gateway_id, std::vector<std::string> deliveries, Delivered done) override {
    std::vector<OutRecord> records;
    records.reserve(deliveries.size());
    for (auto& d : deliveries) records.push_back(OutRecord{"", std::move(d), 0});
    log_.append(delivery_topic(gateway_id), std::move(records),
                [topic = delivery_topic(gateway_id), done = std::move(done)](Result<std::vector<RecordPosition>> r) {
                  if (done) return done(r ? Status{} : Status(tl::unexpected(r.error())));
                  if (!r) logger("router")->debug("delivering to {} failed: {}", topic, r.error().to_string());
                });
  }

  Result<std::unique_ptr<Subscription>> subscribe(const std::string& gateway_id, Handler handler) override {
    // One partition keeps a gateway's deliveries in order; not synced, as losing them is harmless.
    std::string topic = delivery_topic(gateway_id);
    IMLOG_TRY(log_.create_topic(TopicSpec{topic, 1, false}));
    auto end = log_.end_offset(TopicPartition{topic, 0});
    IMLOG_TRY(end);
    ConsumerOptions opts;
    opts.max_batch = 4096;
    auto reader = log_.consumer(opts);
    IMLOG_TRY(reader->assign({TopicPartitionOffset{topic, 0, *end}}));
    return std::unique_ptr<Subscription>(new LogSubscription(std::move(reader), std::move(topic), std::move(handler)));
  }

 private:
  EventLog& log_;
};

}  // namespace

std::unique_ptr<CommandTransport> in_process_commands(int32_t partitions, InProcessLimits limits) {
  return std::make_unique<InProcessCommands>(partitions, limits);
}
std::unique_ptr<DeliveryTransport> in_process_deliveries() { return std::make_unique<InProcessDeliveries>(); }
std::unique_ptr<CommandTransport> log_commands(EventLog& log) { return std::make_unique<LogCommands>(log); }
std::unique_ptr<DeliveryTransport> log_deliveries(EventLog& log) { return std::make_unique<LogDeliveries>(log); }

}  // namespace imlog
