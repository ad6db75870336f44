#pragma once
// The records of im.tasks and im.dlq (schema/tasks.fbs): encoding and verified reading.
//
//   im.tasks  one FanoutTask per page of a large conversation's audience for one event, written
//             by the router, key "<stream>/<page>" (so the same page of successive events of a
//             conversation lands on one partition; no seq-order promise to a member — pages
//             shift when members join or leave — clients order and sync by seq).
//   im.dlq    one DeadLetter per record a consumer gave up on, keyed by the original key: the
//             reason, the source topic/partition/offset, the attempts, and the original value.
//
// Thread-safe: every function is pure.

#include <cstdint>
#include <string>
#include <string_view>

#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/schema/tasks_generated.h"

namespace imlog {

std::string encode_task(const fb::FanoutTaskT& task);
// A verified view into `bytes` (valid while they live); the error says what is wrong.
Result<const fb::FanoutTask*> read_task(std::string_view bytes);

// "<stream>/<seq>/<page>" and the im.tasks key "<stream>/<page>".
std::string task_id(std::string_view stream, uint64_t seq, uint32_t page);
std::string task_key(std::string_view stream, uint32_t page);

// The trace id of the command whose event a task fans out (FanoutTask.trace_id, or for a task
// written before that field, its event's); "" when neither is there.
std::string trace_of(const fb::FanoutTask& task);
// im.dlq's record for `source`, keyed as it was: the reason, where it came from, its bytes, and
// its trace id when it is a readable task.
OutRecord dead_letter(const Record& source, std::string_view reason, uint32_t attempts, int64_t now_ms);
Result<const fb::DeadLetter*> read_dead_letter(std::string_view bytes);

}  // namespace imlog
