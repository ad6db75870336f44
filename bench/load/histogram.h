#pragma once
// Latency histogram in the manner of HdrHistogram: exact below 128 µs, then 64 sub-buckets per
// power of two (about 1.6% resolution) up to 2^40 µs. Not thread-safe: one per I/O thread,
// merged at the end.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace imlog::bench {

class LatencyHistogram {
 public:
  void record(int64_t us) {
    uint64_t v = us < 0 ? 0 : static_cast<uint64_t>(us);
    counts_[index(v)]++;
    count_++;
    max_ = std::max(max_, v);
  }
  void merge(const LatencyHistogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    max_ = std::max(max_, o.max_);
  }
  [[nodiscard]] uint64_t count() const { return count_; }
  [[nodiscard]] double max_ms() const { return static_cast<double>(max_) / 1000.0; }
  // The value below which a fraction `p` of the samples fall (the bucket's upper edge), in ms.
  [[nodiscard]] double percentile_ms(double p) const {
    if (count_ == 0) return 0;
    auto rank = static_cast<uint64_t>(p * static_cast<double>(count_));
    rank = std::min(rank + 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return static_cast<double>(std::min(upper(i), max_)) / 1000.0;
    }
    return max_ms();
  }

 private:
  static constexpr int kMaxBit = 40;
  static constexpr size_t kBuckets = 128 + (kMaxBit - 7 + 1) * 64;
  static size_t index(uint64_t v) {
    if (v < 128) return v;
    int msb = std::min(63 - std::countl_zero(v), kMaxBit);
    if (msb == kMaxBit) return kBuckets - 1;
    int shift = msb - 6;
    return 128 + static_cast<size_t>(msb - 7) * 64 + ((v >> shift) - 64);
  }
  static uint64_t upper(size_t i) {
    if (i < 128) return i;
    size_t group = (i - 128) / 64, sub = (i - 128) % 64;
    int shift = static_cast<int>(group) + 1;
    return ((sub + 64 + 1) << shift) - 1;
  }
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(kBuckets);
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace imlog::bench
