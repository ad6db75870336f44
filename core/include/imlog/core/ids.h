#pragma once
// Strong ids (after Redpanda's named_type): every domain id has its own type, so a UserId cannot be
// passed where a Seq is wanted. Each wraps one plain value and compares, hashes and prints like it.

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>

namespace imlog {

template <class T, class Tag>
class StrongId {
 public:
  using value_type = T;
  constexpr StrongId() = default;
  constexpr explicit StrongId(T v) : v_(std::move(v)) {}
  [[nodiscard]] constexpr const T& value() const { return v_; }
  constexpr auto operator<=>(const StrongId&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const StrongId& id) { return os << id.v_; }

 private:
  T v_{};
};

using UserId = StrongId<uint64_t, struct UserIdTag>;
using GroupId = StrongId<uint64_t, struct GroupIdTag>;
using MessageId = StrongId<uint64_t, struct MessageIdTag>;
using Seq = StrongId<uint64_t, struct SeqTag>;           // per stream, dense, from 1
using Offset = StrongId<int64_t, struct OffsetTag>;      // per partition, dense, from 0
using Partition = StrongId<int32_t, struct PartitionTag>;
using StreamId = StrongId<std::string, struct StreamIdTag>;  // "single_1_2", "group_7", "world"

}  // namespace imlog

template <class T, class Tag>
struct std::hash<imlog::StrongId<T, Tag>> {
  size_t operator()(const imlog::StrongId<T, Tag>& id) const noexcept {
    return std::hash<T>{}(id.value());
  }
};
