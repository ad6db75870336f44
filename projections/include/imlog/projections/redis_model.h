#pragma once
// The Redis read model (docs/architecture.md, "Projections"): a cache of recent history, through
// hiredis, pipelined:
//   hot_messages:<conv>   ZSET, score = seq, member = the message as JSON; capped at 300, TTL 7 days
//   conv_seq:<conv>       STRING, the conversation's last seq (no TTL)
//   read_seq:<conv>       HASH, field = user, value = read seq: the conversation's participants
//   msg_seqs:<conv>       ZSET, score = member = seq of each message row (not system rows);
//                         the same window and TTL as hot_messages
//   unread:<user>         HASH, field = conversation, value = unread count: the messages of
//                         msg_seqs above the read seq (recomputed, never incremented, so
//                         re-applying an event is harmless)
//   projection:positions  HASH, field = partition, value = "<next_offset>:<token>:<link>"
// Every key starts with the configured prefix (default none), so replay can build a second model
// in the same server. A batch is one MULTI/EXEC including the positions (redis_model.cpp says how
// reads, idempotence and failures are handled).
//
// It answers HotHistory (recent history) for the query service.
//
// Threading: thread-safe (a connection per caller thread, or a mutex per connection).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/projections/projection.h"
#include "imlog/projections/query.h"

namespace imlog {

struct RedisConfig {
  std::string host = "127.0.0.1";
  int32_t port = 6379;
  std::string password;
  int32_t db = 0;
  std::string key_prefix;                 // "" in production; replay and tests use their own
  uint32_t hot_messages = 300;            // per conversation
  std::chrono::seconds hot_ttl{7 * 24 * 3600};
};

class RedisModel;
Result<std::unique_ptr<RedisModel>> open_redis_model(const RedisConfig& config);

class RedisModel : public ProjectionSink, public HotHistory {
 public:
  ~RedisModel() override = default;
  // Deletes every key under the prefix (for replay into a fresh target and tests).
  virtual Status drop() = 0;
};

}  // namespace imlog
