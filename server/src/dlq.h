#pragma once
// `imlog dlq`: the operator's view of im.dlq, where the fan-out workers put the tasks they gave up
// on (docs/operations.md, "Dead letters"). Each dead letter keeps the original task's bytes, so it
// can be looked at and driven again:
//
//   imlog dlq list                 one line per dead letter: where it is, when, why, its trace id
//   imlog dlq show P:O             the dead letter at partition P, offset O of im.dlq, as JSON,
//                                  its task decoded
//   imlog dlq replay P:O | all     appends the original task again to its topic (im.tasks) under
//                                  its key, where a worker takes it like any other
//
// The log is append-only: a replayed dead letter stays in im.dlq (note its P:O). Runs beside a
// running deployment (Kafka); on the embedded log, with the node stopped (the log is locked).
// Threading: call from main.

#include <ostream>
#include <string>

#include "server_config.h"

namespace imlog {

struct DlqCommand {
  std::string action;  // list, show, replay
  std::string which;   // show, replay: "P:O"; replay: or "all"
};

// Runs the command against the configured log, writing to `out`; returns the exit code (1 with a
// message on `err` when the log cannot be read or `which` names no dead letter).
int run_dlq(const ServerConfig& config, const DlqCommand& command, std::ostream& out, std::ostream& err);

}  // namespace imlog
