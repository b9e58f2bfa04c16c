// The driver's latency histogram (latency_histogram.hpp): bucket boundaries, the promised
// resolution, and percentiles against the exact order statistics of the same values.
#include "latency_histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

namespace shmht::harness {
namespace {

using H = LatencyHistogram;

// The value of rank floor(q (n - 1)) in `values`, as the driver's sample percentiles compute it.
std::uint64_t exact_percentile(std::vector<std::uint64_t> values, double q) {
  const auto k = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

TEST(LatencyHistogram, SmallValuesHaveABucketEach) {
  for (std::uint64_t v = 0; v < H::kExactBelow; ++v) {
    EXPECT_EQ(H::bucket_of(v), v);
    EXPECT_EQ(H::lowest_in(v), v);
    EXPECT_EQ(H::highest_in(v), v);
  }
}

TEST(LatencyHistogram, BucketsTileTheWholeRangeWithinTheirRelativeWidth) {
  // Consecutive buckets meet exactly, each holds what it says, and none is wider than
  // 1/32 of its lower bound.
  for (std::size_t b = 0; b + 1 < H::kBuckets; ++b) {
    const std::uint64_t low = H::lowest_in(b), high = H::highest_in(b);
    ASSERT_LE(low, high) << b;
    ASSERT_EQ(high + 1, H::lowest_in(b + 1)) << b;
    ASSERT_EQ(H::bucket_of(low), b) << b;
    ASSERT_EQ(H::bucket_of(high), b) << b;
    if (low >= H::kExactBelow) {
      ASSERT_LE(static_cast<double>(high - low + 1), static_cast<double>(low) / H::kSubBuckets) << b;
    }
  }
  EXPECT_EQ(H::bucket_of(std::numeric_limits<std::uint64_t>::max()), H::kBuckets - 1);
  EXPECT_EQ(H::highest_in(H::kBuckets - 1), std::numeric_limits<std::uint64_t>::max());
}

TEST(LatencyHistogram, EmptyReportsZeros) {
  const auto h = std::make_unique<H>();
  EXPECT_EQ(h->count(), 0u);
  EXPECT_EQ(h->max(), 0u);
  EXPECT_EQ(h->min(), 0u);
  EXPECT_EQ(h->percentile(0.5), 0u);
}

TEST(LatencyHistogram, PercentilesAreWithinTheStatedErrorOfTheExactOnes) {
  // A heavy-tailed mix: mostly ~100 ns, some microseconds, a few milliseconds.
  std::mt19937_64 random(7);
  std::lognormal_distribution<double> body(4.7, 0.4);
  std::vector<std::uint64_t> values;
  const auto h = std::make_unique<H>();
  for (int i = 0; i < 200'000; ++i) {
    std::uint64_t v = static_cast<std::uint64_t>(body(random));
    if (i % 1000 == 0) v *= 50;
    if (i % 20'011 == 0) v = 3'000'000 + static_cast<std::uint64_t>(i);
    values.push_back(v);
    h->add(v);
  }
  EXPECT_EQ(h->count(), values.size());
  EXPECT_EQ(h->max(), *std::max_element(values.begin(), values.end()));
  EXPECT_EQ(h->min(), *std::min_element(values.begin(), values.end()));
  for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const double exact = static_cast<double>(exact_percentile(values, q));
    const double got = static_cast<double>(h->percentile(q));
    EXPECT_LE(std::abs(got - exact), exact * H::kRelativeError + 0.5) << "q " << q << " exact " << exact;
  }
  EXPECT_EQ(h->percentile(1.0), h->max());
  EXPECT_LE(h->percentile(0.999), h->percentile(0.9999));
  EXPECT_LE(h->percentile(0.9999), h->max());
}

TEST(LatencyHistogram, OneHugeOutlierIsTheMaxNotThePercentiles) {
  const auto h = std::make_unique<H>();
  for (int i = 0; i < 100'000; ++i) h->add(100);
  h->add(100'000'000);  // one stopped operation: 100 ms
  EXPECT_EQ(h->max(), 100'000'000u);
  EXPECT_EQ(h->percentile(0.9999), 100u);
  EXPECT_EQ(h->percentile(1.0), 100'000'000u);
}

TEST(LatencyHistogram, PercentilesStayWithinMinAndMax) {
  // One value in a wide bucket: the midpoint would lie above it, the clamp keeps it exact.
  const auto h = std::make_unique<H>();
  h->add(1'000'001);
  EXPECT_EQ(h->percentile(0.5), 1'000'001u);
  EXPECT_EQ(h->percentile(0.9999), 1'000'001u);
}

TEST(LatencyHistogram, MergeAndWeightedAddsCountLikeSeparateAdds) {
  const auto a = std::make_unique<H>(), b = std::make_unique<H>(), both = std::make_unique<H>();
  for (std::uint64_t v : {5u, 70u, 900u}) {
    a->add(v);
    both->add(v);
  }
  b->add(123'456, 64);  // a pipelined batch: one round trip for 64 operations
  for (int i = 0; i < 64; ++i) both->add(123'456);
  a->merge(*b);
  EXPECT_EQ(a->count(), both->count());
  EXPECT_EQ(a->max(), 123'456u);
  EXPECT_EQ(a->min(), 5u);
  for (double q : {0.0, 0.01, 0.04, 0.05, 0.5, 1.0}) EXPECT_EQ(a->percentile(q), both->percentile(q)) << q;
}

}  // namespace
}  // namespace shmht::harness
