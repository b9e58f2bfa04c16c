// The seed emulation's layout maths (seed_layout.hpp) against pyshmht's, and the seed
// scenario's exact check (seed_scenario.cpp) on hand-made iteration results.
#include <gtest/gtest.h>

#include <numeric>

#include "seed_layout.hpp"
#include "seed_scenario.hpp"

namespace shmht::harness {
namespace {

bool is_prime(std::uint64_t n) {
  if (n < 2) return false;
  for (std::uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

TEST(SeedLayout, SlotCountIsTheFirstTablePrimeAboveTwiceTheCapacity) {
  for (std::uint64_t p : seed::kPrimes) EXPECT_TRUE(is_prime(p)) << p;
  for (std::uint64_t capacity : {1ULL, 26ULL, 27ULL, 1000ULL, 98'316ULL, 333'333ULL, 393'216ULL, 393'217ULL}) {
    const std::uint64_t slots = seed::slot_count(capacity);
    EXPECT_GT(slots, 2 * capacity) << capacity;
    // No smaller table prime would do.
    for (std::uint64_t p : seed::kPrimes) {
      if (p < slots) {
        EXPECT_LE(p, 2 * capacity) << capacity;
      }
    }
  }
  EXPECT_EQ(seed::slot_count(333'333), 786'433u);
  EXPECT_EQ(seed::slot_count(805'306'457), 0u) << "beyond the table: pyshmht cannot open it";
}

TEST(SeedLayout, FileSizeIsHeaderFlagsAndFixedBuckets) {
  const seed::Geometry g = seed::fixed_geometry(333'333);
  EXPECT_EQ(g.bucket_bytes(), 1280u);
  EXPECT_EQ(seed::padded_slots(g.slots), 786'436u);
  EXPECT_EQ(g.bucket_offset(), 1024u + 786'436u);
  // 1,024 + padded slots x (1 flag byte + 1,280): the README's 961 MiB file.
  EXPECT_EQ(g.file_bytes(), 1024u + 786'436u * 1281u);
  EXPECT_EQ(g.file_bytes() >> 20, 960u);
  EXPECT_EQ(g.max_key_bytes(), 252u);
  EXPECT_EQ(g.max_value_bytes(), 1020u);
}

TEST(SeedLayout, InsertsStopAboveSixtyFivePercentLoad) {
  const seed::Geometry g = seed::fixed_geometry(333'333);
  const auto cap = static_cast<std::uint64_t>(0.65 * 786'433);  // 511,181
  EXPECT_FALSE(g.over_loaded(cap));      // this insert still goes in (size becomes cap + 1)
  EXPECT_TRUE(g.over_loaded(cap + 1));   // and the next one fails
  // The seed test's 333,333 items fit; twice that would not.
  EXPECT_FALSE(g.over_loaded(333'333));
  EXPECT_TRUE(g.over_loaded(2 * 333'333));
}

TEST(SeedLayout, RightSizedSlotsKeepTheSlotCountAndAlignment) {
  const seed::Geometry g = seed::right_sized_geometry(333'333, 9, 9);
  EXPECT_EQ(g.slots, 786'433u);
  EXPECT_EQ(g.key_region % 4, 0u);
  EXPECT_EQ(g.value_region % 4, 0u);
  EXPECT_GE(g.max_key_bytes(), 9u);
  EXPECT_LT(g.file_bytes(), seed::fixed_geometry(333'333).file_bytes() / 30);
}

TEST(SeedLayout, Djb2AndTriangularProbing) {
  EXPECT_EQ(seed::djb2("ab"), (5381u * 33 + 'a') * 33 + 'b');
  // Signed chars, as pyshmht's `char c` on x86: a high byte subtracts.
  EXPECT_EQ(seed::djb2("\xff"), static_cast<std::uint32_t>(5381 * 33 - 1));
  seed::ProbeSequence probe(10, 97);
  std::vector<std::uint64_t> seen;
  for (int i = 0; i < 5; ++i, probe.next()) seen.push_back(probe.slot());
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{10, 11, 13, 16, 20}));
}

TEST(SeedScenario, KeysAndValuesAsInTheTest) {
  EXPECT_EQ(seed_scenario::key(76930, 1), "76930b");
  EXPECT_EQ(seed_scenario::value(2), "ccccccc");
  EXPECT_EQ(seed_scenario::items_per_worker(333'333, 2), 166'666u);
  EXPECT_EQ(seed_scenario::key(0, 12), "0n");  // the test's letters: "...klnmo"
}

TEST(SeedScenario, VerdictCountsMissingDuplicatedAndTorn) {
  using Entries = std::vector<std::pair<std::string, std::string>>;
  Entries all;
  for (std::uint32_t w = 0; w < 2; ++w) {
    for (std::uint64_t i = 0; i < 3; ++i) all.emplace_back(seed_scenario::key(i, w), seed_scenario::value(w));
  }
  seed_scenario::Verdict v = seed_scenario::verify(all, 2, 3);
  EXPECT_EQ(v.expected, 6u);
  EXPECT_EQ(v.missing + v.duplicated + v.unexpected + v.values_wrong, 0u);

  Entries damaged = all;
  damaged.erase(damaged.begin());                 // "0a" lost
  damaged.push_back(damaged.front());              // "1a" twice
  damaged.emplace_back("01a", "aaaaaaa");          // not str(i): torn
  damaged.emplace_back("3a", "aaaaaaa");           // index beyond the share
  damaged.emplace_back("1c", "ccccccc");           // a letter no worker had
  damaged[1].second = "bbbbbbb";                   // "2a" with b's value
  v = seed_scenario::verify(damaged, 2, 3);
  EXPECT_EQ(v.missing, 1u);
  EXPECT_EQ(v.duplicated, 1u);
  EXPECT_EQ(v.unexpected, 3u);
  EXPECT_EQ(v.values_wrong, 1u);
}

}  // namespace
}  // namespace shmht::harness
