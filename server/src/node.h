#pragma once
// A running imlog process: the event log it opened and the roles it runs (docs/architecture.md,
// "Two ways to run"). The single node runs every role over the embedded log; a distributed
// deployment runs the same binary with --roles over Kafka.
//
// Lifecycle: start() → (signal) → stop(). Threading: start/stop from main; each role owns its
// threads.

#include <memory>

#include "imlog/core/result.h"
#include "server_config.h"

namespace imlog {

class EventLog;

// Opens the configured event log backend.
Result<std::unique_ptr<EventLog>> open_event_log(const EventLogSettings& settings);

class Node {
 public:
  explicit Node(ServerConfig config);
  ~Node();
  Status start();
  void stop();
  // Non-empty when a role stopped on an error it cannot recover from.
  [[nodiscard]] std::string failure() const;

  struct Parts;  // private

 private:
  std::unique_ptr<Parts> parts_;
};

}  // namespace imlog
