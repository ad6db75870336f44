#pragma once
// LogDirectory: a Directory built by reading im.events — every partition, from offset 0 —
// keeping what the sequencer needs about users: who exists, their message policy and
// allow_search. A small projection that lives in the engine process, so an engine needs nothing
// but the log to run. Eventually consistent (docs/architecture.md, "State, decide and apply").
//
// Threading: one Worker, "directory" (core/include/imlog/core/worker.h): a poll error is retried
// with back-off and logged once, or fails the directory visibly; user() may be called from any thread.

#include <cstdint>
#include <memory>

#include "imlog/core/result.h"
#include "imlog/engine/directory.h"
#include "imlog/engine/event_log.h"

namespace imlog {

class LogDirectory final : public Directory {
 public:
  explicit LogDirectory(EventLog& log);
  ~LogDirectory() override;

  // Starts reading and returns once the directory has read to the end of the log as it was when
  // called (so a restarted engine knows every user registered before it), or the error.
  Status start();
  void stop();

  [[nodiscard]] UserFacts user(uint64_t user_id) const override;
  // Users known so far.
  [[nodiscard]] size_t size() const;

  struct State;  // private

 private:
  std::unique_ptr<State> state_;
};

}  // namespace imlog
