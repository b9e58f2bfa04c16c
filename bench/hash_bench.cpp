// hash_bench.cpp - the table's key hash (hash.hpp: XXH3, xxHash 0.8, XXH3_64bits_withSeed,
// inlined) against the multiply-fold hash of layout versions 1-3 (issue 13).
//
//   build/bench/hash_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//       speed on 8, 16, 64 and 256-byte keys (ns per hash)
//   build/bench/hash_bench --spread
//       how evenly each spreads 1M keys over the home slots of a 1M-capacity table and
//       over the 16-bit tags: chi-square / degrees of freedom (1.0 = as uniform as random;
//       well above 1 = clustering), for random keys and for structured ones ("key-0000001"),
//       and whether a key crafted without the seed collides with others (seed independence).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "hash.hpp"
#include "layout/slot.hpp"

namespace {

// The hash of layout versions 1-3, kept here to compare against.
namespace previous {
namespace hash_detail {
inline constexpr std::uint64_t kMul0 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
inline constexpr std::uint64_t kMul1 = 0xD6E8FEB86659FD93ull;
inline constexpr std::uint64_t kMul2 = 0xA0761D6478BD642Full;

__extension__ using Uint128 = unsigned __int128;

inline std::uint64_t fold_multiply(std::uint64_t a, std::uint64_t b) noexcept {
  const Uint128 product = static_cast<Uint128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}
inline std::uint64_t load_word(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}
}  // namespace hash_detail

inline std::uint64_t multiply_fold_hash(std::string_view key, std::uint64_t seed) noexcept {
  using namespace hash_detail;
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = seed ^ (n * kMul0);
  for (; n >= 16; n -= 16, p += 16) {
    h = fold_multiply(load_word(p) ^ kMul1 ^ h, load_word(p + 8) ^ kMul2);
  }
  if (n >= 8) {
    h = fold_multiply(load_word(p) ^ kMul1 ^ h, load_word(p + n - 8) ^ kMul2);
  } else if (n > 0) {
    // 1..7 bytes: first, middle and last byte plus the first/last 4 (overlapping) cover all.
    std::uint64_t tail = 0;
    if (n >= 4) {
      std::uint32_t a, b;
      std::memcpy(&a, p, 4);
      std::memcpy(&b, p + n - 4, 4);
      tail = (std::uint64_t{a} << 32) | b;
    } else {
      tail = (std::uint64_t{static_cast<unsigned char>(p[0])} << 16) |
             (std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
             static_cast<unsigned char>(p[n - 1]);
    }
    h = fold_multiply(tail ^ kMul1 ^ h, kMul2);
  }
  return fold_multiply(h ^ kMul0, kMul1 ^ seed);
}

}  // namespace previous

using HashFn = std::uint64_t (*)(std::string_view, std::uint64_t);

std::uint64_t multiply_fold(std::string_view key, std::uint64_t seed) { return previous::multiply_fold_hash(key, seed); }
std::uint64_t xxh3(std::string_view key, std::uint64_t seed) { return shmht::hash_key(key, seed); }

constexpr std::uint64_t kSeed = 0x243F6A8885A308D3ull;

void BM_Hash(benchmark::State& state, HashFn fn) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  std::vector<std::string> keys(1024);
  std::mt19937_64 rng(7);
  for (auto& k : keys) {
    k.resize(bytes);
    for (auto& c : k) c = static_cast<char>(rng());
  }
  std::size_t i = 0;
  std::uint64_t sink = 0;
  for (auto _ : state) {
    sink += fn(keys[i++ & 1023], kSeed);
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// chi-square / degrees of freedom of `counts` against a uniform expectation.
double chi2_per_df(const std::vector<std::uint32_t>& counts, double total) {
  const double expected = total / static_cast<double>(counts.size());
  double chi2 = 0;
  for (std::uint32_t c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2 / static_cast<double>(counts.size() - 1);
}

void report_spread(const char* name, HashFn fn) {
  constexpr std::size_t kItems = 1'000'000;
  const std::uint64_t home_slots = kItems * 100 / 85;  // the table's sizing: load factor 0.85
  const shmht::layout::SlotArray slots(nullptr, home_slots);
  for (const char* kind : {"random 16 B", "structured key-N"}) {
    std::vector<std::uint32_t> per_bucket(home_slots / 64 + 1), per_tag(1 << 16);
    std::mt19937_64 rng(11);
    char buffer[32];
    for (std::size_t i = 0; i < kItems; ++i) {
      std::string_view key;
      std::string random;
      if (kind[0] == 'r') {
        random.resize(16);
        for (auto& c : random) c = static_cast<char>(rng());
        key = random;
      } else {
        key = std::string_view(buffer, static_cast<std::size_t>(std::snprintf(buffer, sizeof buffer, "key-%07zu", i)));
      }
      const std::uint64_t h = fn(key, kSeed);
      ++per_bucket[slots.home_of(h) / 64];  // 64 home slots per cell: ~54 keys each
      ++per_tag[shmht::layout::SlotArray::tag_of_hash(h)];
    }
    std::printf("%-14s %-18s home slots chi2/df %.3f   tags chi2/df %.3f\n", name, kind,
                chi2_per_df(per_bucket, kItems), chi2_per_df(per_tag, kItems));
  }
  // Seed independence: keys of 16 bytes whose second word is fixed to a constant chosen
  // without the seed; a hash that multiplies by (word ^ constant) collapses them.
  std::vector<std::uint64_t> seen;
  for (std::uint64_t w0 = 0; w0 < 1000; ++w0) {
    char key[16];
    const std::uint64_t w1 = previous::hash_detail::kMul2;
    std::memcpy(key, &w0, 8);
    std::memcpy(key + 8, &w1, 8);
    seen.push_back(fn(std::string_view(key, 16), kSeed));
  }
  std::sort(seen.begin(), seen.end());
  const auto distinct = static_cast<std::size_t>(std::unique(seen.begin(), seen.end()) - seen.begin());
  std::printf("%-14s 1000 crafted 16-byte keys -> %zu distinct hashes\n", name, distinct);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--spread") == 0) {
    report_spread("multiply-fold", multiply_fold);
    report_spread("xxh3", xxh3);
    return 0;
  }
  const std::pair<const char*, HashFn> contenders[] = {{"multiply_fold", multiply_fold}, {"xxh3", xxh3}};
  for (const auto& [name, fn] : contenders) {
    benchmark::RegisterBenchmark(name, BM_Hash, fn)->Arg(8)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kNanosecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
