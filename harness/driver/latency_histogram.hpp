// latency_histogram.hpp - a fixed-size, log-bucketed histogram of latencies in
// nanoseconds (HdrHistogram's layout), plus the exact minimum and maximum.
//
// Why: a worker times every operation (tens of millions per second over a sweep), and the
// tail (p99.99, the maximum) needs every one of them; a sample buffer keeps too few, and
// a sorted list of all of them is too big for the report slot in shared memory. The
// histogram has a fixed size, so it lives in WorkerReport as plain counters, and the
// parent merges workers by adding counts.
//
// Resolution: values 0..63 ns have a bucket each (exact). Above, each power-of-two range
// [2^e, 2^(e+1)) is split into kSubBuckets = 32 equal buckets, so a bucket is at most
// 1/32 (3.1%) of its lower bound wide. A percentile is reported as its bucket's midpoint,
// clamped to the exact [min, max]: within 1/64 (1.6%) of the true order statistic. The
// range is all of std::uint64_t (1,920 buckets, 15 KiB of counters).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace shmht::harness {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBucketBits = 5;
  static constexpr std::uint64_t kSubBuckets = 1ULL << kSubBucketBits;  // 32 per power of two
  // Values below this have a bucket each: the first two power-of-two ranges at unit width.
  static constexpr std::uint64_t kExactBelow = 2 * kSubBuckets;                      // 64
  static constexpr std::size_t kBuckets = kExactBelow + (64 - (kSubBucketBits + 1)) * kSubBuckets;  // 1,920
  // Half a bucket over its lower bound, for the buckets above kExactBelow: the most a
  // reported percentile can be off from the true order statistic, relatively.
  static constexpr double kRelativeError = 1.0 / (2.0 * kSubBuckets);

  static constexpr std::size_t bucket_of(std::uint64_t ns) {
    if (ns < kExactBelow) return static_cast<std::size_t>(ns);
    const unsigned exponent = 63 - static_cast<unsigned>(std::countl_zero(ns));  // >= kSubBucketBits + 1
    const unsigned shift = exponent - kSubBucketBits;
    const std::uint64_t mantissa = ns >> shift;  // in [kSubBuckets, 2 * kSubBuckets)
    return static_cast<std::size_t>(kExactBelow + (exponent - (kSubBucketBits + 1)) * kSubBuckets +
                                    (mantissa - kSubBuckets));
  }
  // The smallest value in `bucket`, and the largest.
  static constexpr std::uint64_t lowest_in(std::size_t bucket) {
    if (bucket < kExactBelow) return bucket;
    const std::size_t above = bucket - kExactBelow;
    const unsigned shift = static_cast<unsigned>(above / kSubBuckets) + 1;
    return (kSubBuckets + above % kSubBuckets) << shift;
  }
  static constexpr std::uint64_t highest_in(std::size_t bucket) {
    return bucket + 1 == kBuckets ? std::numeric_limits<std::uint64_t>::max() : lowest_in(bucket + 1) - 1;
  }

  void add(std::uint64_t ns, std::uint64_t count = 1) {
    counts_[bucket_of(ns)] += count;
    total_ += count;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
  }

  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }  // exact; 0 when empty
  std::uint64_t min() const { return total_ ? min_ : 0; }

  // The value of rank floor(q * (count - 1)) (0-based, ascending), as the sorted-sample
  // percentiles compute it: its bucket's midpoint, clamped to [min, max] (the lowest and
  // highest ranks: min and max themselves). 0 when empty.
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_ - 1));
    if (rank == 0) return min();  // the ends are known exactly
    if (rank == total_ - 1) return max_;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) {
        const std::uint64_t low = lowest_in(i), high = highest_in(i);
        const std::uint64_t mid = low + (high - low) / 2;
        return std::clamp(mid, min(), max_);
      }
    }
    return max_;
  }

 private:
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

static_assert(LatencyHistogram::bucket_of(std::numeric_limits<std::uint64_t>::max()) ==
                  LatencyHistogram::kBuckets - 1,
              "the last bucket holds the largest value");
static_assert(LatencyHistogram::lowest_in(LatencyHistogram::bucket_of(64)) == 64 &&
                  LatencyHistogram::highest_in(LatencyHistogram::bucket_of(64)) == 65,
              "the first bucket above the exact range is two wide");

}  // namespace shmht::harness
