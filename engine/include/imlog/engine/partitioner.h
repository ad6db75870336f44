#pragma once
// The one partitioning function of both log backends: a record keyed K lands in partition_for(K, n)
// of an n-partition topic, on the embedded log and on Kafka alike, so a command and the events it
// produces share a partition number (docs/architecture.md, "Streams and partitions").

#include <cstdint>
#include <string_view>

namespace imlog {

// xxHash64 of the key (seed 0), modulo the partition count. Stable across versions and machines:
// changing it would move streams between partitions, so it never changes.
// Precondition: partitions > 0.
int32_t partition_for(std::string_view key, int32_t partitions);

}  // namespace imlog
