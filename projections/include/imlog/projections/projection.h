#pragma once
// The projection framework (docs/architecture.md, "Projections"): read models built from im.events.
//
//   consume valid events in batches → apply to a sink → store the consumed positions in the sink
//   in the same atomic write → repeat
//
// A sink's stored positions are the only record of how far it got, so a crash between apply and
// commit cannot happen: they are one write. Re-applying an event changes nothing (sinks are
// idempotent: puts keyed by the event's identity, upserts), so a replay over a prefix is harmless.
// Validity is the engine's rule (EpochFilter); a sink never sees an invalid event.
//
// Every sink can list its whole model as ordered (key, value) rows — dump() — in a canonical
// form, so `replay --verify` can compare a rebuilt model with the live one and name the first row
// that differs, and a digest is a hash of the rows.

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"
#include "imlog/schema/codec.h"

namespace imlog {

class KeyStore;

// How far a sink has consumed one partition of im.events.
struct PartitionPosition {
  int32_t partition = 0;
  int64_t next_offset = 0;  // first offset not yet applied
  // The EpochFilter state at next_offset (validity.h): the epoch token current there, and the
  // event id of the last valid record before it (0: not stored, as by an older version).
  uint64_t token = 0;
  uint64_t link = 0;
  bool operator==(const PartitionPosition&) const = default;
};

// One batch for a sink: valid events in log order (per partition), and the positions after it.
struct EventBatch {
  struct Item {
    int32_t partition = 0;
    int64_t offset = 0;
    const fb::EventEnvelope* event = nullptr;  // valid while the batch lives (open_item() may re-point it)
    // A message's text (MessageAppended only): its sealed content opened with the sender's key
    // (engine/include/imlog/engine/data_keys.h), or the content of a message written before
    // sealing. Sinks read a message's text here, never from the event. Valid while the batch lives.
    std::string_view text;
    // The event's owner was erased (schema 10): their data key is destroyed, so its sealed fields
    // cannot be opened. A MessageAppended's text is then empty and its row is written erased
    // (timeline.h); a UserRegistered or ProfileUpdated writes nothing.
    bool erased = false;
  };
  std::vector<Item> events;
  std::vector<PartitionPosition> positions;
  std::deque<std::string> texts;  // what the items' text views point into
};

// Opens what `item`'s event sealed (engine/include/imlog/engine/data_keys.h), keeping what it
// opens in `storage`: a message's text into item.text; a registration's or profile update's
// fields into a re-encoded copy of the event, which item.event then points to. An owner whose key
// was destroyed marks the item erased instead. On a UserErased it destroys the user's key (again:
// the engine did once the erasure was durable, unless its store failed then). `keys` null: a
// sealed event fails `unavailable`, a UserErased destroys nothing. One attempt: a store that does
// not answer fails retryable.
Status open_item(EventBatch::Item& item, std::deque<std::string>& storage, KeyStore* keys);

// An item for `event`, its text taken from the event's plain `content` (a message written before
// sealing; tests and benches that build batches by hand).
EventBatch::Item plain_item(int32_t partition, int64_t offset, const fb::EventEnvelope& event);

// Receives the rows of a model in canonical order. Returns false to stop early.
using RowVisitor = std::function<bool(std::string_view key, std::string_view value)>;

class ProjectionSink {
 public:
  virtual ~ProjectionSink() = default;
  // "rocksdb", "mysql", "redis".
  [[nodiscard]] virtual std::string_view name() const = 0;
  // The positions stored by the last apply(); empty for a fresh model.
  virtual Result<std::vector<PartitionPosition>> positions() = 0;
  // Applies the events and stores batch.positions in one atomic write. Idempotent per event.
  virtual Status apply(const EventBatch& batch) = 0;
  // Every row of the model (positions excluded), ordered by key, in a canonical encoding.
  virtual Status dump(const RowVisitor& visit) = 0;
};

}  // namespace imlog
