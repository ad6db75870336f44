// KafkaLog: the EventLog on Kafka through librdkafka's C API (see kafka_log.h).
//
// Append path
//
//   append(topic, records, done)                         caller's thread
//     ├─ partition count from the cache (metadata on a miss)
//     ├─ one AppendBatch owns the records; each record is produced without a copy of its
//     │  value (librdkafka keeps a pointer until the delivery report) and with a pointer to its
//     │  slot in the batch as the message opaque
//     └─ queue full → wait for deliveries, up to append_block_timeout, then queue_full
//   delivery report per record                          poller thread (rd_kafka_poll)
//     └─ the last report of a batch calls done(positions in batch order | first error)
//
// Immediate failures (unknown topic, bad partition) are posted to the poller thread too, so a
// callback always runs there and never inside append().
//
// Consumers are independent librdkafka consumer handles (see KafkaConsumer below); they share
// nothing with the producer but the configuration.
//
// Metadata is always read for all topics, never for the one wanted: librdkafka 2.0.2's mock
// cluster auto-creates (with 4 partitions) any topic a metadata request names, which would turn
// "unknown topic" into a silently created one.

#include "imlog/engine/kafka_log.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/engine/partitioner.h"

namespace imlog {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// How long a metadata, watermark or committed-offsets request may take.
constexpr milliseconds kRequestTimeout{10000};
// How long the destructor waits for unacknowledged appends before purging them.
constexpr milliseconds kCloseDrainTimeout{10000};
// How long the poller waits in one rd_kafka_poll when nothing happens.
constexpr int kPollerIdleMs = 100;

std::shared_ptr<spdlog::logger> klog() {
  static const auto logger_ = logger("kafka");
  return logger_;
}

// --- owning wrappers for librdkafka handles: no raw C handle outlives its scope ---------------

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using Conf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
using TopicHandle = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
using Metadata = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using Message = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using ErrorObject = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
using Event = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

int to_ms(milliseconds d) {
  return static_cast<int>(std::clamp<int64_t>(d.count(), 0, std::numeric_limits<int>::max()));
}

using AdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)>;

AdminOptions admin_options(rd_kafka_t* rk, rd_kafka_admin_op_t op) {
  AdminOptions options(rd_kafka_AdminOptions_new(rk, op), &rd_kafka_AdminOptions_destroy);
  char why[512];
  rd_kafka_AdminOptions_set_request_timeout(options.get(), to_ms(kRequestTimeout), why, sizeof why);
  if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS) {
    rd_kafka_AdminOptions_set_operation_timeout(options.get(), to_ms(kRequestTimeout), why, sizeof why);
  }
  return options;
}

Error error(LogErrc code, std::string message, bool retryable = false) {
  return Error(make_error_code(code), std::move(message), retryable);
}

Error kafka_error(rd_kafka_resp_err_t err, std::string_view context) {
  return KafkaLog::error_from_code(static_cast<int>(err), context);
}

// Kafka's rule for topic names: 1..249 of [a-zA-Z0-9._-].
Status check_topic_name(std::string_view topic) {
  if (topic.empty()) return fail(LogErrc::bad_argument, "the topic name is empty");
  bool legal = topic.size() <= 249 && std::all_of(topic.begin(), topic.end(), [](char c) {
                 return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-';
               });
  if (!legal) {
    return fail(LogErrc::bad_argument,
                "topic name `" + std::string(topic) + "` is not 1..249 characters of [a-zA-Z0-9._-]");
  }
  return {};
}

// librdkafka's log lines, from its own threads, into the "kafka" logger.
void log_line(const rd_kafka_t* rk, int level, const char* facility, const char* text) {
  auto lvl = level <= 3   ? spdlog::level::err
             : level == 4 ? spdlog::level::warn
             : level <= 6 ? spdlog::level::info
                          : spdlog::level::debug;
  klog()->log(lvl, "librdkafka {} {}: {}", rd_kafka_name(rk), facility, text);
}

// Errors librdkafka reports outside any request (a broker down, all brokers down). It recovers
// from these by itself; the requests that suffer report their own errors. Logged only; a
// broken connection is already in librdkafka's own log line.
void log_client_error(rd_kafka_t* rk, int err, const char* reason, void*) {
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__TRANSPORT) return;
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    klog()->critical("{}: fatal error {}: {}", rd_kafka_name(rk), rd_kafka_err2name(orig), fatal);
    return;
  }
  klog()->warn("{}: {} ({})", rd_kafka_name(rk), reason, rd_kafka_err2name(code));
}

// Sets one property, naming it on failure.
Status set_property(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char why[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK) {
    return fail(LogErrc::bad_argument,
                "kafka property `" + key + "` = `" + value + "` is not accepted: " + why);
  }
  return {};
}

Status set_properties(rd_kafka_conf_t* conf, const std::vector<std::pair<std::string, std::string>>& props) {
  for (const auto& [k, v] : props) IMLOG_TRY(set_property(conf, k, v));
  return {};
}

std::string join_brokers(const std::vector<std::string>& brokers) {
  std::string out;
  for (const auto& b : brokers) out += (out.empty() ? "" : ",") + b;
  return out;
}

// The partition count of `topic`, nullopt if the cluster has no such topic. One all-topics
// metadata request (see the file comment for why never a single-topic one).
Result<std::optional<int32_t>> lookup_partitions(rd_kafka_t* rk, std::string_view topic) {
  const rd_kafka_metadata_t* raw = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &raw, to_ms(kRequestTimeout));
  if (err) {
    return tl::unexpected(kafka_error(err, "reading the metadata of topic " + std::string(topic)));
  }
  Metadata md(raw);
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (topic != t.topic) continue;
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return std::nullopt;
    if (t.err || t.partition_cnt <= 0) {
      return tl::unexpected(Error(
          make_error_code(LogErrc::unavailable),
          "topic " + std::string(topic) +
              " is not ready: " + rd_kafka_err2str(t.err ? t.err : RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE),
          true));
    }
    return t.partition_cnt;
  }
  return std::nullopt;
}

Error unknown_topic(std::string_view topic) {
  return error(LogErrc::unknown_topic, "topic " + std::string(topic) + " does not exist: create it first");
}

// (low, high) watermarks of a partition: its first readable offset and its end.
Result<std::pair<int64_t, int64_t>> watermarks(rd_kafka_t* rk, const TopicPartition& tp) {
  int64_t lo = 0, hi = 0;
  rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(rk, tp.topic.c_str(), tp.partition, &lo, &hi, to_ms(kRequestTimeout));
  if (err) {
    return tl::unexpected(
        kafka_error(err, "reading the offsets of " + tp.topic + "[" + std::to_string(tp.partition) + "]"));
  }
  return std::pair{lo, hi};
}

}  // namespace

Error KafkaLog::error_from_code(int code, std::string_view context) {
  auto err = static_cast<rd_kafka_resp_err_t>(code);
  LogErrc c = LogErrc::io_error;
  bool retryable = false;
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      c = LogErrc::timed_out, retryable = true;
      break;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__WAIT_CACHE:
    case RD_KAFKA_RESP_ERR__ISR_INSUFF:
    case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
    case RD_KAFKA_RESP_ERR__RETRY:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      c = LogErrc::unavailable, retryable = true;
      break;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      c = LogErrc::queue_full, retryable = true;
      break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      c = LogErrc::record_too_large;
      break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      c = LogErrc::unknown_topic;
      break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
      c = LogErrc::bad_argument;
      break;
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      c = LogErrc::offset_out_of_range;
      break;
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
      c = LogErrc::rebalance_in_progress, retryable = true;
      break;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      c = LogErrc::topic_mismatch;
      break;
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__BAD_COMPRESSION:
      c = LogErrc::corrupt_record;
      break;
    case RD_KAFKA_RESP_ERR_INVALID_MSG:  // the broker saw a CRC mismatch in transit: resend
      c = LogErrc::io_error, retryable = true;
      break;
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      c = LogErrc::closed;
      break;
    default:
      // Authorization, invalid records or requests, unsupported versions, fatal producer
      // states: the same call would fail the same way.
      c = LogErrc::io_error;
      break;
  }
  std::string message(context);
  message += message.empty() ? "" : ": ";
  message += rd_kafka_err2str(err);
  message += " (";
  message += rd_kafka_err2name(err);
  message += ")";
  return Error(make_error_code(c), std::move(message), retryable);
}

// --------------------------------------------------------------------------------------------
// Producer side.

namespace {

// One append() call in flight. Owned by the State from append() until its callback has run;
// freed by finish(). `slots[i]` points back here and is the opaque of record i, so a delivery
// report finds its batch and its index without a lookup.
struct AppendBatch {
  KafkaLog::State* state = nullptr;
  std::string topic;
  AppendCallback done;
  std::vector<OutRecord> records;  // the produced values point into these strings
  std::vector<RecordPosition> positions;
  std::unique_ptr<AppendBatch*[]> slots;
  // Records not yet reported, plus one held by append() until it has produced them all.
  std::atomic<size_t> remaining{0};
  std::mutex error_mu;  // append() and the poller may both record errors
  size_t error_index = SIZE_MAX;
  std::optional<Error> error;

  void record_error(size_t index, Error e) {
    std::lock_guard lk(error_mu);
    if (index < error_index) {
      error_index = index;
      error = std::move(e);
    }
  }
};

struct TopicEntry {
  TopicHandle handle;
  int32_t partitions = 0;
};

}  // namespace

// Threading: every member is either immutable after open(), atomic, or guarded by the mutex
// named beside it. The poller thread is the only one that calls rd_kafka_poll on the producer
// and the only one that runs append callbacks.
struct KafkaLog::State {
  KafkaLogConfig config;
  std::string description;
  Handle producer;
  Queue main_queue;  // the producer's callback queue; yielded to wake the poller

  std::shared_mutex topics_mu;
  std::unordered_map<std::string, TopicEntry> topics;  // guarded by topics_mu

  std::mutex posted_mu;
  std::deque<std::function<void()>> posted;  // guarded by posted_mu; run by the poller

  // Appends whose callbacks have not run; flush() and a blocked append() wait on `flight_cv`.
  std::mutex flight_mu;
  std::condition_variable flight_cv;
  size_t in_flight = 0;          // guarded by flight_mu
  uint64_t delivery_rounds = 0;  // guarded by flight_mu; bumped after each busy poll
  std::atomic<int> space_waiters{0};

  std::atomic<bool> stopping{false};
  std::thread poller;
  std::atomic<std::thread::id> poller_id{};

  ~State() { shutdown(); }

  // --- the poller thread ---------------------------------------------------------------------

  void run_poller() {
    while (!stopping.load(std::memory_order_acquire)) {
      int served = rd_kafka_poll(producer.get(), kPollerIdleMs);
      run_posted();
      if (served > 0 && space_waiters.load(std::memory_order_acquire) > 0) {
        std::lock_guard lk(flight_mu);
        ++delivery_rounds;
        flight_cv.notify_all();
      }
    }
    run_posted();
  }

  void run_posted() {
    std::deque<std::function<void()>> work;
    {
      std::lock_guard lk(posted_mu);
      work.swap(posted);
    }
    for (auto& f : work) f();
  }

  // Runs `f` on the poller thread soon.
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(posted_mu);
      posted.push_back(std::move(f));
    }
    rd_kafka_queue_yield(main_queue.get());
  }

  // --- batches ---------------------------------------------------------------------------------

  AppendBatch* begin_batch(std::string_view topic, std::vector<OutRecord>&& records, AppendCallback&& done) {
    auto* b = new AppendBatch;
    b->state = this;
    b->topic = std::string(topic);
    b->done = std::move(done);
    b->records = std::move(records);
    b->positions.resize(b->records.size());
    b->remaining.store(b->records.size() + 1, std::memory_order_relaxed);
    std::lock_guard lk(flight_mu);
    ++in_flight;
    return b;
  }

  // Drops `n` of the batch's outstanding reports; the last one finishes it. On the poller
  // thread the callback runs at once, elsewhere it is posted there.
  void release(AppendBatch* b, size_t n) {
    if (n == 0) return;
    if (b->remaining.fetch_sub(n, std::memory_order_acq_rel) != n) return;
    if (std::this_thread::get_id() == poller_id) {
      finish(b);
    } else {
      post([this, b] { finish(b); });
    }
  }

  void finish(AppendBatch* b) {
    std::unique_ptr<AppendBatch> owned(b);
    if (b->error) {
      b->done(tl::unexpected(*b->error));
    } else {
      b->done(std::move(b->positions));
    }
    std::lock_guard lk(flight_mu);
    --in_flight;
    flight_cv.notify_all();
  }

  // A batch that fails before any record is produced.
  void fail_now(AppendCallback&& done, Error e) {
    AppendBatch* b = begin_batch("", {}, std::move(done));
    b->record_error(0, std::move(e));
    release(b, 1);
  }

  // Delivery report of one record, on the poller thread.
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto** slot = static_cast<AppendBatch**>(m->_private);
    AppendBatch* b = *slot;
    auto index = static_cast<size_t>(slot - b->slots.get());
    if (m->err) {
      b->record_error(
          index, kafka_error(m->err, "appending to " + b->topic + "[" + std::to_string(m->partition) + "]"));
    } else {
      b->positions[index] = RecordPosition{m->partition, m->offset};
    }
    b->state->release(b, 1);
  }

  // --- topics ----------------------------------------------------------------------------------

  // The cached topic entry, after a metadata lookup on a miss. Returns the handle and count.
  Result<std::pair<rd_kafka_topic_t*, int32_t>> topic(std::string_view name) {
    {
      std::shared_lock lk(topics_mu);
      if (auto it = topics.find(std::string(name)); it != topics.end()) {
        return std::pair{it->second.handle.get(), it->second.partitions};
      }
    }
    IMLOG_TRY(check_topic_name(name));
    auto count = lookup_partitions(producer.get(), name);
    if (!count) return tl::unexpected(count.error());
    if (!*count) return tl::unexpected(unknown_topic(name));
    return remember(name, **count);
  }

  std::pair<rd_kafka_topic_t*, int32_t> remember(std::string_view name, int32_t partitions) {
    std::unique_lock lk(topics_mu);
    auto& entry = topics[std::string(name)];
    if (!entry.handle) {
      entry.handle.reset(rd_kafka_topic_new(producer.get(), std::string(name).c_str(), nullptr));
      entry.partitions = partitions;
    }
    return {entry.handle.get(), entry.partitions};
  }

  Status check_partition(const TopicPartition& tp) {
    auto t = topic(tp.topic);
    if (!t) return tl::unexpected(t.error());
    if (tp.partition < 0 || tp.partition >= t->second) {
      return fail(LogErrc::bad_argument, "topic " + tp.topic + " has partitions 0.." +
                                             std::to_string(t->second - 1) + ", not " +
                                             std::to_string(tp.partition));
    }
    return {};
  }

  // --- shutdown --------------------------------------------------------------------------------

  void shutdown() {
    if (!producer) return;
    if (poller.joinable()) {
      // Give unacknowledged appends a chance, then fail the rest with `closed` (purged
      // messages get delivery reports with a purge error).
      {
        std::unique_lock lk(flight_mu);
        flight_cv.wait_for(lk, kCloseDrainTimeout, [&] { return in_flight == 0; });
      }
      rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      {
        std::unique_lock lk(flight_mu);
        flight_cv.wait_for(lk, std::chrono::seconds(5), [&] { return in_flight == 0; });
        if (in_flight != 0) klog()->error("{}: {} appends still unreported at close", description, in_flight);
      }
      stopping.store(true, std::memory_order_release);
      rd_kafka_queue_yield(main_queue.get());
      poller.join();
    }
    run_posted();
    topics.clear();
    main_queue.reset();
    producer.reset();
  }
};

KafkaLog::KafkaLog(std::unique_ptr<State> state) : state_(std::move(state)) {}

KafkaLog::~KafkaLog() = default;

Result<std::unique_ptr<KafkaLog>> KafkaLog::open(const KafkaLogConfig& config) {
  if (config.brokers.empty()) {
    return fail(LogErrc::bad_argument,
                "KafkaLogConfig::brokers is empty: give at least one host:port (config key "
                "`kafka.brokers`)");
  }
  for (const auto& b : config.brokers) {
    if (b.empty()) return fail(LogErrc::bad_argument, "KafkaLogConfig::brokers has an empty entry");
  }
  if (config.append_block_timeout.count() < 0 || config.delivery_timeout.count() < 0) {
    return fail(LogErrc::bad_argument, "KafkaLogConfig timeouts must not be negative");
  }

  auto state = std::make_unique<State>();
  state->config = config;
  state->description = "kafka:" + join_brokers(config.brokers);

  Conf conf(rd_kafka_conf_new());
  uint64_t kbytes = std::clamp<uint64_t>(config.max_pending_bytes / 1024, 1, 2147483647);
  IMLOG_TRY(set_properties(conf.get(),
                           {
                               {"bootstrap.servers", join_brokers(config.brokers)},
                               {"client.id", config.client_id},
                               {"enable.idempotence", "true"},
                               {"acks", "all"},
                               {"linger.ms", std::to_string(config.linger.count())},
                               {"message.timeout.ms", std::to_string(config.delivery_timeout.count())},
                               {"queue.buffering.max.kbytes", std::to_string(kbytes)},
                               {"queue.buffering.max.messages", "0"},  // bytes bound the queue, not a count
                               {"allow.auto.create.topics", "false"},
                           }));
  for (const auto& [k, v] : config.properties) IMLOG_TRY(set_property(conf.get(), k, v));
  // Consumers get the same extra properties: check them now, so a bad one fails open().
  {
    Conf consumer_conf(rd_kafka_conf_new());
    IMLOG_TRY(set_property(consumer_conf.get(), "group.id", "imlog-check"));
    for (const auto& [k, v] : config.properties) IMLOG_TRY(set_property(consumer_conf.get(), k, v));
  }

  rd_kafka_conf_set_opaque(conf.get(), state.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &State::on_delivery);
  rd_kafka_conf_set_log_cb(conf.get(), log_line);
  rd_kafka_conf_set_error_cb(conf.get(), log_client_error);

  char why[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), why, sizeof why);
  if (rk == nullptr) {
    return fail(LogErrc::bad_argument, std::string("cannot create the Kafka producer: ") + why);
  }
  conf.release();  // rd_kafka_new took it
  state->producer.reset(rk);
  state->main_queue.reset(rd_kafka_queue_get_main(rk));

  State* s = state.get();
  s->poller = std::thread([s] {
    name_this_thread("kafka-poller");
    s->run_poller();
  });
  s->poller_id = s->poller.get_id();
  return std::unique_ptr<KafkaLog>(new KafkaLog(std::move(state)));
}

Status KafkaLog::create_topic(const TopicSpec& spec) {
  IMLOG_TRY(check_topic_name(spec.name));
  if (spec.partitions < 1) {
    return fail(LogErrc::bad_argument, "topic " + spec.name + ": partitions must be at least 1, got " +
                                           std::to_string(spec.partitions));
  }
  rd_kafka_t* rk = state_->producer.get();
  auto mismatch = [&](int32_t have) {
    return fail(LogErrc::topic_mismatch, "topic " + spec.name + " exists with " + std::to_string(have) +
                                             " partitions, not " + std::to_string(spec.partitions));
  };
  auto existing = lookup_partitions(rk, spec.name);
  if (!existing) return tl::unexpected(existing.error());
  if (*existing) {
    if (**existing != spec.partitions) return mismatch(**existing);
    state_->remember(spec.name, **existing);
    return {};
  }

  // Absent: ask the cluster to create it (Admin API). librdkafka's mock cluster refuses.
  char why[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions,
                                                  state_->config.replication_factor, why, sizeof why);
  if (nt == nullptr) return fail(LogErrc::bad_argument, "topic " + spec.name + ": " + why);
  std::unique_ptr<rd_kafka_NewTopic_t, decltype(&rd_kafka_NewTopic_destroy)> new_topic(
      nt, &rd_kafka_NewTopic_destroy);
  for (const auto& [key, value] : creation_settings(spec.name)) {
    if (rd_kafka_NewTopic_set_config(nt, key.c_str(), value.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail(LogErrc::bad_argument, "topic " + spec.name + ": setting " + key + "=" + value + " refused");
    }
  }
  auto options = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  Queue reply(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* topics[] = {new_topic.get()};
  rd_kafka_CreateTopics(rk, topics, 1, options.get(), reply.get());
  Event ev(rd_kafka_queue_poll(reply.get(), to_ms(kRequestTimeout + milliseconds(2000))));

  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  std::string detail = "no answer";
  if (ev) {
    err = rd_kafka_event_error(ev.get());
    if (const char* s = rd_kafka_event_error_string(ev.get()); err && s) detail = s;
    if (!err) {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
      if (n == 1) {
        err = rd_kafka_topic_result_error(results[0]);
        if (const char* s = rd_kafka_topic_result_error_string(results[0]); s) detail = s;
      }
    }
  }
  if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    Error e = kafka_error(err, "");
    return fail(LogErrc::io_error,
                "topic " + spec.name + " does not exist and the cluster did not create it (" + detail + "; " +
                    e.message() +
                    "): create it with the broker's tooling (kafka-topics.sh --create --topic " + spec.name +
                    " --partitions " + std::to_string(spec.partitions) +
                    "), or, on the test mock, with `create-topic " + spec.name + " " +
                    std::to_string(spec.partitions) + "` on imlog-kafka-mock's control socket",
                e.retryable());
  }
  // Created (or raced with another creator): wait until metadata shows it.
  auto deadline = Clock::now() + kRequestTimeout;
  while (true) {
    auto now_there = lookup_partitions(rk, spec.name);
    if (now_there && *now_there) {
      if (**now_there != spec.partitions) return mismatch(**now_there);
      state_->remember(spec.name, **now_there);
      return {};
    }
    if (Clock::now() >= deadline) {
      return fail(LogErrc::timed_out,
                  "topic " + spec.name + " was created but is not yet in the cluster metadata", true);
    }
    std::this_thread::sleep_for(milliseconds(100));  // metadata has no change notification
  }
}

Result<TopicConfig> KafkaLog::topic_config(const std::string& topic) {
  rd_kafka_t* rk = state_->producer.get();
  std::unique_ptr<rd_kafka_ConfigResource_t, decltype(&rd_kafka_ConfigResource_destroy)> resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()), &rd_kafka_ConfigResource_destroy);
  auto options = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  Queue reply(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};
  rd_kafka_DescribeConfigs(rk, resources, 1, options.get(), reply.get());
  Event ev(rd_kafka_queue_poll(reply.get(), to_ms(kRequestTimeout + milliseconds(2000))));
  std::string context = "reading the settings of topic " + topic + " (DescribeConfigs)";
  if (!ev) return tl::unexpected(kafka_error(RD_KAFKA_RESP_ERR__TIMED_OUT, context));
  if (auto err = rd_kafka_event_error(ev.get())) return tl::unexpected(kafka_error(err, context));
  size_t n = 0;
  const rd_kafka_ConfigResource_t** described =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
  if (n != 1) return fail(LogErrc::io_error, context + ": the broker answered for " + std::to_string(n) + " resources");
  if (auto err = rd_kafka_ConfigResource_error(described[0])) return tl::unexpected(kafka_error(err, context));
  size_t entries = 0;
  const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[0], &entries);
  TopicConfig out;
  for (size_t i = 0; i < entries; ++i) {
    const char* value = rd_kafka_ConfigEntry_value(configs[i]);
    out[rd_kafka_ConfigEntry_name(configs[i])] = value ? value : "";
  }
  return out;
}

Result<int32_t> KafkaLog::partition_count(std::string_view topic) {
  auto t = state_->topic(topic);
  if (!t) return tl::unexpected(t.error());
  return t->second;
}

void KafkaLog::append(std::string_view topic, std::vector<OutRecord> records, AppendCallback done) {
  State& s = *state_;
  if (char fatal[256]; rd_kafka_fatal_error(s.producer.get(), fatal, sizeof fatal)) {
    s.fail_now(std::move(done), error(LogErrc::io_error, "the Kafka producer stopped on a fatal error (" +
                                                             std::string(fatal) + "): reopen the log"));
    return;
  }
  auto t = s.topic(topic);
  if (!t) {
    s.fail_now(std::move(done), t.error().with_context("appending to " + std::string(topic)));
    return;
  }
  auto [rkt, partitions] = *t;
  for (auto& r : records) {
    if (r.partition == kByKey) {
      r.partition = partition_for(r.key, partitions);
    } else if (r.partition < 0 || r.partition >= partitions) {
      s.fail_now(std::move(done),
                 error(LogErrc::bad_argument, "appending to " + std::string(topic) + ": partition " +
                                                  std::to_string(r.partition) + " is not in 0.." +
                                                  std::to_string(partitions - 1)));
      return;
    }
  }

  AppendBatch* b = s.begin_batch(topic, std::move(records), std::move(done));
  const size_t n = b->records.size();
  b->slots = std::make_unique<AppendBatch*[]>(n);
  const auto deadline = Clock::now() + s.config.append_block_timeout;
  const bool on_poller = std::this_thread::get_id() == s.poller_id.load();
  const std::string where = "appending to " + std::string(topic);

  // Hands record i to librdkafka, waiting for room while the queue is full. False on failure,
  // with the error recorded in the batch.
  auto produce_one = [&](size_t i) {
    OutRecord& r = b->records[i];
    b->slots[i] = b;
    bool registered = false;  // counted in space_waiters, so the poller signals deliveries
    uint64_t round = 0;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    while (true) {
      // No RD_KAFKA_MSG_F_COPY: the value stays in b->records until its delivery report.
      if (rd_kafka_produce(rkt, r.partition, 0, r.value.empty() ? nullptr : r.value.data(), r.value.size(),
                           r.key.empty() ? nullptr : r.key.data(), r.key.size(), &b->slots[i]) == 0) {
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
        break;
      }
      err = rd_kafka_last_error();
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || on_poller || Clock::now() >= deadline) break;
      std::unique_lock lk(s.flight_mu);
      if (!registered) {
        // Register, then retry at once: deliveries before this point were not signalled.
        registered = true;
        s.space_waiters.fetch_add(1, std::memory_order_acq_rel);
        round = s.delivery_rounds;
        continue;
      }
      s.flight_cv.wait_until(lk, deadline, [&] { return s.delivery_rounds != round; });
      round = s.delivery_rounds;
    }
    if (registered) s.space_waiters.fetch_sub(1, std::memory_order_acq_rel);
    if (!err) return true;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      b->record_error(
          i, error(LogErrc::queue_full,
                   where + ": more than " + std::to_string(s.config.max_pending_bytes) +
                       " bytes unacknowledged for " + std::to_string(s.config.append_block_timeout.count()) +
                       " ms" + (on_poller ? " (an append from an append callback never waits)" : ""),
                   true));
    } else {
      b->record_error(i, kafka_error(err, where + "[" + std::to_string(r.partition) + "]"));
    }
    return false;
  };

  size_t produced = 0;  // records handed to librdkafka; each will get a delivery report
  while (produced < n && produce_one(produced)) ++produced;
  // Records never produced get no report; nor does append()'s own hold.
  s.release(b, n - produced + 1);
}

Result<int64_t> KafkaLog::end_offset(const TopicPartition& partition) {
  IMLOG_TRY(state_->check_partition(partition));
  auto w = watermarks(state_->producer.get(), partition);
  if (!w) return tl::unexpected(w.error());
  return w->second;
}

Result<int64_t> KafkaLog::begin_offset(const TopicPartition& partition) {
  IMLOG_TRY(state_->check_partition(partition));
  auto w = watermarks(state_->producer.get(), partition);
  if (!w) return tl::unexpected(w.error());
  return w->first;
}

Status KafkaLog::flush(milliseconds timeout) {
  State& s = *state_;
  if (std::this_thread::get_id() == s.poller_id) {
    return fail(LogErrc::bad_argument, "flush() called from an append callback would wait on itself");
  }
  std::unique_lock lk(s.flight_mu);
  if (!s.flight_cv.wait_for(lk, timeout, [&] { return s.in_flight == 0; })) {
    return fail(LogErrc::timed_out,
                std::to_string(s.in_flight) + " appends to " + s.description +
                    " still unacknowledged after " + std::to_string(timeout.count()) + " ms",
                true);
  }
  return {};
}

std::string KafkaLog::describe() const { return state_->description; }

// --------------------------------------------------------------------------------------------
// Consumer side.

namespace {

// One librdkafka consumer handle. A group member (topics given) subscribes and learns its
// partitions through the rebalance callback, which librdkafka runs inside rd_kafka_consumer_poll,
// i.e. inside poll() on the owner's thread; a plain reader is assign()ed partitions.
//
// Starting offsets: auto.offset.reset is `error`, so a read position that falls out of the log
// (retention, a seek past the end) surfaces as offset_out_of_range instead of a silent jump.
// Partitions without a committed offset therefore get an explicit start (beginning or end) in
// the assignment callback.
//
// Threading: one owner thread at a time; wakeup() from any thread. A wakeup() while no poll() is
// blocked makes the next poll() return at once, empty (librdkafka's queue yield is sticky).
// Lifecycle: constructed by KafkaLog::consumer() (a handle that cannot be created, or a
// subscription to a missing topic, gives a consumer whose every call returns that error);
// close() (or the destructor) leaves the group, running on_revoked, and destroys the handle.
// Independent of the KafkaLog that made it: it may outlive it.
class KafkaConsumer final : public Consumer {
 public:
  KafkaConsumer(const KafkaLogConfig& config, const ConsumerOptions& options)
      : options_(options), group_given_(!options.group.empty()) {
    if (auto s = open(config); !s) {
      broken_ = s.error();
      klog()->error("cannot create a Kafka consumer: {}", broken_->message());
    }
  }

  ~KafkaConsumer() override { close(); }

  Status poll(std::vector<Record>& out, milliseconds timeout) override {
    out.clear();
    IMLOG_TRY(usable());
    if (pending_error_) {
      Error e = std::move(*pending_error_);
      pending_error_.reset();
      return tl::unexpected(std::move(e));
    }
    collecting_ = &out;
    auto finish = [&] { collecting_ = nullptr; };
    Message m(rd_kafka_consumer_poll(rk_.get(), to_ms(timeout)));
    while (m) {
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          Error e = message_error(*m);
          finish();
          if (out.empty()) return tl::unexpected(std::move(e));
          pending_error_ = std::move(e);  // return the records read before it first
          return {};
        }
      } else {
        out.push_back(to_record(*m));
      }
      if (out.size() >= options_.max_batch) break;
      m.reset(rd_kafka_consumer_poll(rk_.get(), 0));
    }
    finish();
    return {};
  }

  Status assign(const std::vector<TopicPartitionOffset>& partitions) override {
    IMLOG_TRY(usable());
    if (!options_.topics.empty()) {
      return fail(LogErrc::bad_argument,
                  "assign() on a member of group " + options_.group +
                      ": its partitions come from the group (ConsumerOptions::topics is set)");
    }
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    std::unordered_map<std::string, int32_t> counts;
    for (const auto& p : partitions) {
      IMLOG_TRY(check_topic_name(p.topic));
      if (p.offset < 0) {
        return fail(LogErrc::bad_argument, "assign " + p.topic + "[" + std::to_string(p.partition) +
                                               "]: negative offset " + std::to_string(p.offset));
      }
      auto it = counts.find(p.topic);
      if (it == counts.end()) {
        auto n = lookup_partitions(rk_.get(), p.topic);
        if (!n) return tl::unexpected(n.error());
        if (!*n) return tl::unexpected(unknown_topic(p.topic));
        it = counts.emplace(p.topic, **n).first;
      }
      if (p.partition < 0 || p.partition >= it->second) {
        return fail(LogErrc::bad_argument, "topic " + p.topic + " has partitions 0.." +
                                               std::to_string(it->second - 1) + ", not " +
                                               std::to_string(p.partition));
      }
      rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset = p.offset;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk_.get(), partitions.empty() ? nullptr : list.get());
    if (err) return tl::unexpected(kafka_error(err, "assigning partitions"));
    return {};
  }

  Status seek(const TopicPartitionOffset& position) override {
    IMLOG_TRY(usable());
    std::string where = position.topic + "[" + std::to_string(position.partition) + "]";
    if (position.offset < 0) {
      return fail(LogErrc::bad_argument,
                  "seek " + where + ": negative offset " + std::to_string(position.offset));
    }
    // Inside on_assigned the partitions are not handed to librdkafka yet: move the start.
    if (assigning_ != nullptr) {
      if (auto* e =
              rd_kafka_topic_partition_list_find(assigning_, position.topic.c_str(), position.partition)) {
        IMLOG_TRY(check_in_range(position, where));
        e->offset = position.offset;
        return {};
      }
    }
    auto current = assignment();
    if (std::find(current.begin(), current.end(), TopicPartition{position.topic, position.partition}) ==
        current.end()) {
      return fail(LogErrc::bad_argument,
                  "seek " + where + ": the partition is not assigned to this consumer");
    }
    IMLOG_TRY(check_in_range(position, where));
    PartitionList list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), position.topic.c_str(), position.partition)->offset =
        position.offset;
    ErrorObject e(rd_kafka_seek_partitions(rk_.get(), list.get(), to_ms(kRequestTimeout)));
    if (e) return tl::unexpected(kafka_error(rd_kafka_error_code(e.get()), "seek " + where));
    if (list->elems[0].err) return tl::unexpected(kafka_error(list->elems[0].err, "seek " + where));
    return {};
  }

  Status commit(const std::vector<TopicPartitionOffset>& offsets) override {
    IMLOG_TRY(usable());
    IMLOG_TRY(need_group("commit"));
    if (offsets.empty()) return {};
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
    for (const auto& o : offsets) {
      IMLOG_TRY(check_topic_name(o.topic));
      if (o.offset < 0 || o.partition < 0) {
        return fail(LogErrc::bad_argument, "commit " + o.topic + "[" + std::to_string(o.partition) +
                                               "]: negative partition or offset " + std::to_string(o.offset));
      }
      rd_kafka_topic_partition_list_add(list.get(), o.topic.c_str(), o.partition)->offset = o.offset;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(rk_.get(), list.get(), 0);
    if (err) return tl::unexpected(kafka_error(err, "committing offsets of group " + options_.group));
    for (int i = 0; i < list->cnt; ++i) {
      const auto& e = list->elems[i];
      if (e.err) {
        return tl::unexpected(kafka_error(e.err, "committing " + std::string(e.topic) + "[" +
                                                     std::to_string(e.partition) + "] for group " +
                                                     options_.group));
      }
    }
    return {};
  }

  Result<std::optional<int64_t>> committed(const TopicPartition& partition) override {
    IMLOG_TRY(usable());
    IMLOG_TRY(need_group("committed"));
    IMLOG_TRY(check_topic_name(partition.topic));
    PartitionList list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), partition.topic.c_str(), partition.partition);
    std::string where = partition.topic + "[" + std::to_string(partition.partition) + "]";
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), list.get(), to_ms(kRequestTimeout));
    if (err) return tl::unexpected(kafka_error(err, "reading the committed offset of " + where));
    const auto& e = list->elems[0];
    if (e.err) return tl::unexpected(kafka_error(e.err, "reading the committed offset of " + where));
    if (e.offset < 0) return std::optional<int64_t>{};
    return std::optional<int64_t>{e.offset};
  }

  [[nodiscard]] std::vector<TopicPartition> assignment() const override {
    std::vector<TopicPartition> out;
    if (!rk_) return out;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(rk_.get(), &raw) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      PartitionList current(raw);
      for (int i = 0; i < raw->cnt; ++i) out.push_back({raw->elems[i].topic, raw->elems[i].partition});
    }
    // Inside on_assigned the new partitions are not handed to librdkafka yet; count them.
    if (assigning_ != nullptr) {
      for (int i = 0; i < assigning_->cnt; ++i) {
        out.push_back({assigning_->elems[i].topic, assigning_->elems[i].partition});
      }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  void wakeup() override {
    std::lock_guard lk(wakeup_mu_);
    if (queue_) rd_kafka_queue_yield(queue_.get());
  }

  void close() override {
    if (closed_ || closing_ || !rk_) {
      closed_ = true;
      return;
    }
    // Leaves the group. A member's on_revoked runs from in here (the rebalance callback) and may
    // still commit, so the consumer counts as open until this returns.
    closing_ = true;
    if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk_.get()); err) {
      klog()->warn("closing consumer of group {}: {}", options_.group, rd_kafka_err2str(err));
    }
    closed_ = true;
    {
      std::lock_guard lk(wakeup_mu_);
      queue_.reset();
    }
    rk_.reset();
  }

 private:
  Status open(const KafkaLogConfig& config) {
    Conf conf(rd_kafka_conf_new());
    std::string group = options_.group;
    if (group.empty()) {
      // librdkafka wants a group id for a consumer handle; a plain reader never joins or
      // commits, so a throwaway one serves.
      std::random_device rd;
      group = "imlog-reader-" + std::to_string(rd()) + std::to_string(rd());
    }
    std::string strategy = "range";  // eager: revocation precedes reassignment
    IMLOG_TRY(
        set_properties(conf.get(), {
                                       {"bootstrap.servers", join_brokers(config.brokers)},
                                       {"client.id", config.client_id},
                                       {"group.id", group},
                                       {"enable.auto.commit", "false"},
                                       {"enable.auto.offset.store", "false"},
                                       {"auto.offset.reset", "error"},
                                       {"enable.partition.eof", "false"},
                                       {"session.timeout.ms", std::to_string(config.session_timeout.count())},
                                       {"fetch.wait.max.ms", std::to_string(config.fetch_wait.count())},
                                       {"partition.assignment.strategy", strategy},
                                   }));
    for (const auto& [k, v] : config.properties) IMLOG_TRY(set_property(conf.get(), k, v));
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_log_cb(conf.get(), log_line);
    rd_kafka_conf_set_error_cb(conf.get(), log_client_error);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &KafkaConsumer::on_rebalance);
    char why[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), why, sizeof why);
    if (rk == nullptr) {
      return fail(LogErrc::bad_argument, std::string("cannot create a Kafka consumer: ") + why);
    }
    conf.release();
    rk_.reset(rk);
    rd_kafka_poll_set_consumer(rk);  // errors and logs are served by consumer_poll too
    queue_.reset(rd_kafka_queue_get_consumer(rk));
    if (!options_.topics.empty()) {
      if (!group_given_) {
        return fail(LogErrc::bad_argument,
                    "ConsumerOptions::topics is set but ConsumerOptions::group is empty: a group "
                    "is needed to share topics");
      }
      PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
      for (const auto& t : options_.topics) {
        IMLOG_TRY(check_topic_name(t));
        // A missing topic is an error here as on LocalLog (and the mock cluster would create it
        // with 4 partitions on the subscription's first metadata request).
        auto exists = lookup_partitions(rk, t);
        if (!exists) return tl::unexpected(exists.error().with_context("subscribing to " + t));
        if (!*exists) return tl::unexpected(unknown_topic(t).with_context("subscribing"));
        rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
      }
      if (rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, list.get()); err) {
        return tl::unexpected(kafka_error(err, "subscribing group " + group));
      }
    }
    return {};
  }

  Status usable() const {
    if (broken_) return tl::unexpected(*broken_);
    if (closed_) return fail(LogErrc::closed, "the consumer is closed");
    return {};
  }

  Status need_group(const char* what) const {
    if (!group_given_) {
      return fail(LogErrc::bad_argument,
                  std::string(what) + " needs a consumer group: set ConsumerOptions::group");
    }
    return {};
  }

  // A seek target must lie within the partition: [first retained, end].
  Status check_in_range(const TopicPartitionOffset& p, const std::string& where) {
    auto w = watermarks(rk_.get(), {p.topic, p.partition});
    if (!w) return tl::unexpected(w.error());
    if (p.offset < w->first || p.offset > w->second) {
      return fail(LogErrc::offset_out_of_range, "seek " + where + " to " + std::to_string(p.offset) +
                                                    ": the partition holds " + std::to_string(w->first) +
                                                    ".." + std::to_string(w->second));
    }
    return {};
  }

  static Record to_record(const rd_kafka_message_t& m) {
    Record r;
    r.topic = rd_kafka_topic_name(m.rkt);
    r.partition = m.partition;
    r.offset = m.offset;
    r.timestamp_ms = rd_kafka_message_timestamp(&m, nullptr);
    if (m.key != nullptr) r.key.assign(static_cast<const char*>(m.key), m.key_len);
    if (m.payload != nullptr) r.value.assign(static_cast<const char*>(m.payload), m.len);
    return r;
  }

  static Error message_error(const rd_kafka_message_t& m) {
    std::string where =
        m.rkt != nullptr ? std::string(rd_kafka_topic_name(m.rkt)) + "[" + std::to_string(m.partition) + "]"
                         : std::string("the consumer");
    std::string context = "reading " + where;
    if (m.offset >= 0) context += " at offset " + std::to_string(m.offset);
    const char* detail = rd_kafka_message_errstr(&m);
    if (detail != nullptr && *detail != '\0') context += " (" + std::string(detail) + ")";
    return kafka_error(m.err, context);
  }

  // librdkafka's rebalance callback; runs inside rd_kafka_consumer_poll (so inside poll() or
  // close()) on the owner's thread. Eager protocols (range, roundrobin: the default) hand over
  // the whole assignment each time; a cooperative one set through `properties` hands over only
  // the partitions that move, which the listener sees the same way.
  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    std::vector<TopicPartition> tps;
    for (int i = 0; i < parts->cnt; ++i) {
      tps.push_back({parts->elems[i].topic, parts->elems[i].partition});
    }
    std::sort(tps.begin(), tps.end());
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->assign_from_group(rk, parts, tps, cooperative);
      return;
    }
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      klog()->error("group {}: rebalance failed: {}", self->options_.group, rd_kafka_err2str(err));
    }
    // Records of these partitions read in this poll() but not yet returned: drop them, the next
    // owner reads them from the committed offset.
    if (self->collecting_ != nullptr) {
      auto& v = *self->collecting_;
      v.erase(std::remove_if(
                  v.begin(), v.end(),
                  [&](const Record& r) {
                    return std::binary_search(tps.begin(), tps.end(), TopicPartition{r.topic, r.partition});
                  }),
              v.end());
    }
    if (self->options_.listener != nullptr && !tps.empty()) {
      self->options_.listener->on_revoked(tps);
    }
    if (cooperative) {
      ErrorObject e(rd_kafka_incremental_unassign(rk, parts));
      if (e) klog()->error("group {}: unassign: {}", self->options_.group, rd_kafka_error_string(e.get()));
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }

  void assign_from_group(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts,
                         const std::vector<TopicPartition>& tps, bool cooperative) {
    // Start where the group left off, else at the configured end.
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, to_ms(kRequestTimeout));
    if (err) {
      // librdkafka will look the committed offsets up itself; a partition that has none then
      // reports offset_out_of_range (auto.offset.reset=error) and the caller may seek.
      klog()->warn("group {}: cannot read committed offsets on assignment: {}", options_.group,
                   rd_kafka_err2str(err));
      for (int i = 0; i < parts->cnt; ++i) parts->elems[i].offset = RD_KAFKA_OFFSET_STORED;
    } else {
      for (int i = 0; i < parts->cnt; ++i) {
        auto& e = parts->elems[i];
        if (e.offset < 0) {
          e.offset = options_.start_at_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        }
        e.err = RD_KAFKA_RESP_ERR_NO_ERROR;
      }
    }
    if (options_.listener != nullptr && !tps.empty()) {
      assigning_ = parts;  // a seek() from the listener moves the start in `parts`
      options_.listener->on_assigned(tps);
      assigning_ = nullptr;
    }
    std::optional<Error> failed;
    if (cooperative) {
      ErrorObject e(rd_kafka_incremental_assign(rk, parts));
      if (e)
        failed = kafka_error(rd_kafka_error_code(e.get()), "taking partitions from group " + options_.group);
    } else if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts); e) {
      failed = kafka_error(e, "taking partitions from group " + options_.group);
    }
    if (failed) pending_error_ = std::move(*failed);
  }

  ConsumerOptions options_;
  bool group_given_;
  Handle rk_;
  std::mutex wakeup_mu_;  // guards queue_ against close() while wakeup() runs
  Queue queue_;
  std::optional<Error> broken_;  // set when the handle could not be created
  bool closed_ = false;
  bool closing_ = false;                // inside close(): a second close() from a listener returns at once
  std::optional<Error> pending_error_;  // returned by the next poll()
  std::vector<Record>* collecting_ = nullptr;             // the poll() output being filled
  rd_kafka_topic_partition_list_t* assigning_ = nullptr;  // inside on_assigned only
};

}  // namespace

std::unique_ptr<Consumer> KafkaLog::consumer(const ConsumerOptions& options) {
  return std::make_unique<KafkaConsumer>(state_->config, options);
}

}  // namespace imlog
