#pragma once
// The RocksDB read model (docs/architecture.md, "Projections"), always on: messages by
// (conversation, seq) and by id, conversations with last message and per-user read pointers (unread
// counts), members, users by id and by name, friends and blocks, a token index for message search,
// and the projection positions — all in one database so a batch is one atomic WriteBatch.
//
// Threading: thread-safe; apply() from the projector thread, queries from any thread.

#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/projections/projection.h"
#include "imlog/projections/query.h"

namespace imlog {

struct RocksDbModelConfig {
  // Directory of the database. Default <data_dir>/model.
  std::string dir = "./data/model";
  // Skip the write-ahead log (replay into a fresh target: a crash restarts the replay anyway,
  // which resumes from the positions flushed so far). Default false.
  bool disable_wal = false;
  // Tune for one writer filling a fresh target (replay): memtables are plain vectors sorted once
  // when flushed, on RocksDB's background thread, instead of skiplists kept sorted on every
  // insert. Reads of unflushed rows are slow (each read sorts a copy), so only for a model nobody
  // queries while it is built. Default false.
  bool bulk_load = false;
};

class RocksDbModel;
Result<std::unique_ptr<RocksDbModel>> open_rocksdb_model(const RocksDbModelConfig& config);

class RocksDbModel : public ProjectionSink, public ReadModel {
 public:
  ~RocksDbModel() override = default;
  // Flushes memtables to disk (after a WAL-less replay).
  virtual Status flush() = 0;
};

}  // namespace imlog
