#pragma once
// Test support for the read models' sinks (header-only: a test that includes it links
// imlog::projections).

#include <string_view>
#include <vector>

#include "imlog/projections/projection.h"

namespace imlog::testing {

// A sink that remembers nothing of where it got to, so a projector re-applies from offset 0.
class Forgetful final : public ProjectionSink {
 public:
  explicit Forgetful(ProjectionSink& inner) : inner_(inner) {}
  std::string_view name() const override { return inner_.name(); }
  Result<std::vector<PartitionPosition>> positions() override { return std::vector<PartitionPosition>(); }
  Status apply(const EventBatch& batch) override { return inner_.apply(batch); }
  Status dump(const RowVisitor& visit) override { return inner_.dump(visit); }

 private:
  ProjectionSink& inner_;
};

}  // namespace imlog::testing
