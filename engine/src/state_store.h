#pragma once
// The sequencer's local state store (docs/architecture.md, "Dedupe and seq assignment"): a RocksDB
// cache of what the sequencer derived from im.events — stream states, the dedupe index, the recall
// index, claimed usernames — with, per partition, the checkpoint they are consistent with (next im.events offset,
// epoch token, highest event id). Deleting the directory costs only a rebuild from the log.
//
// Layout (one column family; the first byte names the kind):
//   'c' partition(4 BE)                         → Checkpoint
//   's' stream                                  → encode_state(StreamState)
//   'd' stream 0x00 actor(8 BE) client_msg_id   → DedupeEntry: seq, event id, result id (8 LE
//                                                  each); a remembered refusal adds its code's
//                                                  length (1 byte), the code and the message
//   'n' username                                → user id (8 LE)
//   't' client_sent_at(8 BE) dedupe key         → (empty) the time index of the dedupe entries
//                                                  whose command carried a client_sent_at
//   'h'                                         → the dedupe horizon H (8 LE, Unix ms)
//   'r' message_id(8 BE) stream                 → the recall index's entry (stream_state.h,
//                                                  RecallIndex): sender, seq, timestamp_ms (8 LE
//                                                  each), recalled (1 byte)
//   'g'                                         → the recall horizon (8 LE, a message id)
//
// The dedupe window (engine/README.md, "The dedupe window"): a write with a dedupe_cutoff
// removes every entry whose client_sent_at is below it — a range scan of the time index, from
// the old horizon to the cut-off — and stores the cut-off as the new horizon in the same atomic
// write, so the store never holds a horizon below an eviction it made. Entries without a
// client_sent_at (0) have no time index entry and are kept for ever.
//
// The recall index is ordered by message id, and so by time (message_ids.h): a write with a
// recall_cutoff removes the entries below it (a range scan from the old recall horizon) and
// stores it as the new horizon, as the dedupe window does. Its entries are written as the
// events that make them become durable, ahead of the stream's state (a replay from the
// checkpoint puts the same values again), so a checkpoint's states do not carry a conversation's
// last minutes of messages.
//
// Writes are unsynced: the store is a cache, and a lost write only means a longer catch-up.
// Each write() is atomic, so a checkpoint is always consistent with the states written with it.
// Not thread-safe: owned by the sequencer thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"
#include "imlog/engine/stream_state.h"

namespace imlog {

struct Checkpoint {
  int64_t next_event_offset = 0;  // first im.events offset not reflected in the store
  uint64_t token = 0;             // epoch token current at that offset
  uint64_t last_event_id = 0;     // highest event id of the partition so far
  uint64_t link = 0;              // EpochFilter link at that offset (0: not stored, take the next)
};

// What a (stream, actor, client_msg_id) got: the event it was accepted with, or a refusal the
// sequencer remembers (a CommandRefused record: code non-empty, seq and result id 0, event_id the
// record's).
struct DedupeEntry {
  uint64_t seq = 0;
  uint64_t event_id = 0;
  uint64_t result_id = 0;
  std::string code;     // the refusal's reason code; empty for an accepted command
  std::string message;  // the refusal's text
  int64_t client_sent_at = 0;  // the command's (schema 8); 0: none, the entry is kept for ever
  [[nodiscard]] bool refused() const { return !code.empty(); }
};

// One atomic write: everything the sequencer learned since the last one.
struct StoreBatch {
  std::vector<std::pair<std::string, const StreamState*>> states;
  std::vector<std::pair<std::string, DedupeEntry>> dedupe;  // key from dedupe_key()
  std::vector<std::pair<std::string, uint64_t>> names;
  std::vector<std::pair<std::string, RecentMessage>> recalls;  // key from recall_key()
  std::vector<std::pair<int32_t, Checkpoint>> checkpoints;
  // Above the stored horizon: evict the entries sent before it (and leave out those of `dedupe`)
  // and make it the horizon. 0 or at most the horizon: evict nothing.
  int64_t dedupe_cutoff = 0;
  // Above the stored recall horizon: remove the recall entries of message ids below it (and leave
  // out those of `recalls`) and make it the horizon. 0 or at most the horizon: remove nothing.
  uint64_t recall_cutoff = 0;
};

// The interface is the seam tests wrap (a fault-injecting store, sequencer_store_fault_test.cpp);
// open() gives the RocksDB store. A read that fails returns its error: the sequencer must never
// decide on a default in its place (engine/README.md, "The sequencer").
class StateStore {
 public:
  static Result<std::unique_ptr<StateStore>> open(const std::string& dir);
  virtual ~StateStore() = default;

  virtual Result<Checkpoint> checkpoint(int32_t partition) = 0;
  // False when the stream has no stored state. A state stored before the recall index (version
  // 5 or older) has its recent messages moved into the index as it is read, and is stored again
  // as the current version in the same write.
  virtual Result<bool> load(std::string_view stream, StreamState& out) = 0;
  virtual Result<std::optional<DedupeEntry>> dedupe(std::string_view key) = 0;
  // The user a username is claimed by; none when it is free.
  virtual Result<std::optional<uint64_t>> name_holder(std::string_view username) = 0;
  // The highest dedupe cut-off ever applied (0: none): every entry sent before it may be gone.
  virtual Result<int64_t> dedupe_horizon() = 0;
  // The recall index's entry of a message of `stream`; none when the index does not hold it.
  virtual Result<std::optional<RecentMessage>> recall(std::string_view stream, uint64_t message_id) = 0;
  // The highest recall cut-off ever applied (0: none): every entry below it is gone.
  virtual Result<uint64_t> recall_horizon() = 0;
  virtual Status write(const StoreBatch& batch) = 0;

  static std::string dedupe_key(std::string_view stream, uint64_t actor, std::string_view client_msg_id);
  static std::string recall_key(std::string_view stream, uint64_t message_id);
};

}  // namespace imlog
