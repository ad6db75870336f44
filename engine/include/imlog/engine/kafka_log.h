#pragma once
// KafkaLog: the EventLog on Apache Kafka through librdkafka, for the distributed mode
// (docs/architecture.md, "Two ways to run", "Exactly once without broker transactions").
//
// Producer: idempotent (enable.idempotence=true, acks=all), so a retried produce is never stored
// twice; records are sent to the partition chosen by partition_for() (the same function as
// LocalLog). Delivery reports, served by one poller thread, drive the append callbacks.
// Consumers: one librdkafka consumer each; group members get assignment / revocation notices
// through RebalanceListener from inside poll(); offsets are committed explicitly, never
// automatically.
//
// Topics: create_topic uses the Admin API on a real broker, with the settings the topic must keep
// (creation_settings() of topic_settings.h). librdkafka's mock cluster (tests) has
// no Admin API: there topics are created by the mock tool (tests/kafka_mock), and create_topic
// succeeds when the topic already exists with the asked partition count (for a missing topic it
// fails after the Admin API's 10 s time-out, saying how to create it). Metadata is always read
// for all topics: the mock creates any topic a metadata request names.
//
// Threading: thread-safe; append callbacks run on the poller thread and must not block.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "imlog/engine/event_log.h"
#include "imlog/engine/topic_settings.h"

namespace imlog {

struct KafkaLogConfig {
  // Bootstrap brokers, "host:port". Required.
  std::vector<std::string> brokers;
  // client.id reported to brokers. Default "imlog".
  std::string client_id = "imlog";
  // linger.ms: how long the producer waits to fill a batch. Low for chat latency. Default 1 ms.
  std::chrono::milliseconds linger{1};
  // fetch.wait.max.ms: how long a broker may hold a fetch for data. Default 10 ms.
  std::chrono::milliseconds fetch_wait{10};
  // session.timeout.ms of group members. Default 10 s (tests use 6 s: see platform notes).
  std::chrono::milliseconds session_timeout{10000};
  // How long a produce may stay unacknowledged before it fails (message.timeout.ms). Default 30 s.
  std::chrono::milliseconds delivery_timeout{30000};
  // Back-pressure: queue.buffering.max.kbytes, in bytes. Default 64 MiB.
  uint64_t max_pending_bytes = 64ull << 20;
  // How long append() may block on a full queue before failing with queue_full. Default 5 s.
  std::chrono::milliseconds append_block_timeout{5000};
  // Replication factor for create_topic on a real cluster; -1 uses the broker default.
  int32_t replication_factor = -1;
  // Extra librdkafka properties, applied last ("compression.type": "lz4", ...).
  std::map<std::string, std::string> properties;
};

class KafkaLog final : public EventLog, public TopicConfigSource {
 public:
  // Connects the producer. Fails with bad_argument naming a bad property or an empty broker list.
  static Result<std::unique_ptr<KafkaLog>> open(const KafkaLogConfig& config);
  ~KafkaLog() override;

  Status create_topic(const TopicSpec& spec) override;
  Result<int32_t> partition_count(std::string_view topic) override;
  void append(std::string_view topic, std::vector<OutRecord> records,
              AppendCallback done) override;
  Result<int64_t> end_offset(const TopicPartition& partition) override;
  Result<int64_t> begin_offset(const TopicPartition& partition) override;
  std::unique_ptr<Consumer> consumer(const ConsumerOptions& options) override;
  Status flush(std::chrono::milliseconds timeout) override;
  [[nodiscard]] std::string describe() const override;
  // DescribeConfigs of a topic (topic_settings.h). Not on librdkafka's mock cluster.
  Result<TopicConfig> topic_config(const std::string& topic) override;

  // How a librdkafka error code (an rd_kafka_resp_err_t value, passed as int so no librdkafka
  // type leaks here) is reported by this backend: its LogErrc, whether it is retryable, and the
  // message "<context>: <librdkafka's text> (<code name>)". Public for the error-mapping tests.
  [[nodiscard]] static Error error_from_code(int rd_kafka_error_code, std::string_view context);

  struct State;  // private; see kafka_log.cpp

 private:
  explicit KafkaLog(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace imlog
