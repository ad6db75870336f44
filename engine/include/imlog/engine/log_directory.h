#pragma once
// LogDirectory: a Directory built by reading im.events — every partition, from offset 0, or from
// where its snapshot (LogDirectoryOptions) left off — keeping what the sequencer needs about
// users: who exists, their message policy and allow_search. A small projection that lives in the engine process, so an engine needs nothing
// but the log to run. Eventually consistent (docs/architecture.md, "State, decide and apply").
//
// Threading: one Worker, "directory" (core/include/imlog/core/worker.h): a poll error is retried
// with back-off and logged once, or fails the directory visibly; user() may be called from any thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/engine/directory.h"
#include "imlog/engine/event_log.h"

namespace imlog {

struct LogDirectoryOptions {
  // A file the directory keeps what it has read in (users, and per partition the offset and the
  // epoch filter's state), so a restart reads only the events after it instead of the whole log.
  // Written atomically every `snapshot_every` while following, after the start-up read, and at
  // stop(). Empty: none (every start reads from offset 0). A missing, damaged or foreign snapshot
  // (another partition count, or ahead of the log's end) is ignored with a warning.
  std::string snapshot_path;
  std::chrono::milliseconds snapshot_every{30000};
};

class LogDirectory final : public Directory {
 public:
  explicit LogDirectory(EventLog& log, LogDirectoryOptions options = {});
  ~LogDirectory() override;

  // Starts reading and returns once the directory has read to the end of the log as it was when
  // called (so a restarted engine knows every user registered before it), or the error.
  Status start();
  void stop();

  [[nodiscard]] UserFacts user(uint64_t user_id) const override;
  // Users known so far.
  [[nodiscard]] size_t size() const;
  // Records the last start() read before returning: the whole log without a usable snapshot, only
  // what came after it with one.
  [[nodiscard]] uint64_t read_at_start() const;

  struct State;  // private

 private:
  std::unique_ptr<State> state_;
};

}  // namespace imlog
