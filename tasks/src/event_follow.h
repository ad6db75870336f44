#pragma once
// What the tasks that follow im.events from their own committed position share — the router
// (router.cpp) and the push worker (push.cpp): where a partition resumes, and a read of a
// partition from its first record up to there, which rebuilds what they derive from the whole
// log (the EpochFilter's state, the router's group membership).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"

namespace imlog {

// Where a follower resumes partition p of im.events: its group's committed offset (`reader` is
// its group consumer), or, for a partition the group never committed, the log's end now (a new
// follower does not act on old events).
Result<int64_t> resume_point(EventLog& log, Consumer& reader, int32_t p);

// For every partition of im.events that `group` never committed, commits the log's end now: a new
// group starts there, not where its first member is later assigned the partition (a Kafka group's
// first join takes seconds, and what is appended meanwhile would be skipped). Through a plain
// reader of the group, so it is refused (and returns the error) once the group has members: they
// hold those partitions and start them at the end themselves. The routers' start.
Status commit_unseen_ends(EventLog& log, const std::string& group);

// Opens the reader of a follower of every partition of im.events whose position is committed under
// `group`, and assigns each partition at its resume point (resume_point) once `resumed(p, at)` has
// rebuilt what the follower derives from the partition before `at` (read_partition_until) and
// recorded `at`. The router's and the push worker's start.
Result<std::unique_ptr<Consumer>> follow_events(EventLog& log, const std::string& group, uint64_t max_batch,
                                                const std::function<Status(int32_t p, int64_t at)>& resumed);

// Hands each record of partition p of im.events from offset `from` to before offset `until` to
// `each`, in offset order, in polls of at most `max_batch` records. Fails `closed` when
// `stopping()` turns true; `who` names the reader in errors.
Status read_partition_until(EventLog& log, int32_t p, int64_t from, int64_t until, uint64_t max_batch,
                            const std::function<bool()>& stopping, const std::function<void(const Record&)>& each,
                            std::string_view who);

}  // namespace imlog
