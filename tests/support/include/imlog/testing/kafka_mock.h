#pragma once
// The Kafka mock broker that tests talk to over TCP: librdkafka's mock cluster, run as its own
// process by the program tests/kafka_mock (imlog-kafka-mock).
//
// scripts/test starts one for the whole run and exports IMLOG_KAFKA_MOCK_DIR, the directory where
// the program wrote `bootstrap` (the broker list) and `control` (host:port of its command socket).
// A test binary run by hand, without that variable, starts its own instance as a child process,
// so no Kafka test ever skips for want of a broker.
//
// Commands (one line each over the control socket, answered "ok ..." or "error <why>"):
//   create-topic NAME PARTITIONS     broker-down ID     broker-up ID
//   produce-errors COUNT ERRCODE     (the next COUNT Produce requests fail with ERRCODE)
//   leader TOPIC PARTITION BROKER_ID
// Not thread-safe; tests call it from their main thread.

#include <filesystem>
#include <memory>
#include <string>

#include "imlog/engine/kafka_log.h"

namespace imlog::testing {

class Subprocess;
class TempDir;

class KafkaMock {
 public:
  // The process-wide instance (started on first use when not provided by scripts/test).
  static KafkaMock& shared();
  // A mock of the caller's own (3 brokers), stopped when destroyed. For tests that break the
  // cluster: a broker down or injected produce errors would hit every test sharing a broker, and
  // scripts/test runs test binaries in parallel.
  static std::unique_ptr<KafkaMock> start_private();
  ~KafkaMock();

  [[nodiscard]] const std::string& bootstrap() const { return bootstrap_; }
  // "host:port" of the control socket (for a program that sends commands itself: `imlog init`
  // with event_log.kafka.mock_control).
  [[nodiscard]] std::string control_address() const { return control_host_ + ":" + std::to_string(control_port_); }

  // Sends one command line; returns the reply after "ok". Throws std::runtime_error on "error".
  std::string command(const std::string& line);

  void create_topic(const std::string& name, int partitions);
  void broker_down(int id);
  void broker_up(int id);
  void produce_errors(int count, int error_code);

  // A KafkaLogConfig aimed at this broker with test timings (session timeout 6 s, linger 1 ms).
  [[nodiscard]] KafkaLogConfig log_config() const;

  // A topic or group name no other test in this run uses: "<prefix>-<pid>-<counter>".
  static std::string unique_name(const std::string& prefix);

 private:
  KafkaMock() = default;
  void read_files(const std::filesystem::path& dir);
  std::string bootstrap_;
  std::string control_host_;
  int control_port_ = 0;
  std::unique_ptr<Subprocess> owned_;  // set when this process started the mock itself
  std::unique_ptr<TempDir> owned_dir_;  // its --dir
};

}  // namespace imlog::testing
