// batch_bench.cpp - batched lookups (Table::get_many) against one get() per key, per
// engine, in one run (issue 13's target: batched at least 3x the per-key throughput).
//
// Workload: 1M keys of 16 bytes with 32-byte values, looked up in a random order (a
// precomputed permutation: neither the hardware prefetcher nor the cache helps).
//   get/E            Table::get(key) -> optional<string>, one key per call
//   get_many/E/B     Table::get_many(B keys) -> vector<optional<string>>, per key
//   get_into/E       Table::get(key, span) into a caller's buffer: no allocation
//   get_many_into/E/256  Table::get_many(keys, found(i, value)): no allocation per key
//   hot_get_into/E, hot_get_many_into/E/256  the same over 1,000 keys that stay in cache:
//                    what a lookup costs besides its cache misses
//   contains_many/E/256, contains/E   the same without copying values
// Times are per key (items/s is keys/s).
//
//   build/bench/batch_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include "shmht/table.hpp"

namespace {

constexpr std::size_t kKeys = 1'000'000;
constexpr std::size_t kKeyBytes = 16, kValueBytes = 32;

// Keys whose lines stay in cache: the "hot" variants look up only these (1,000 keys of the
// same table, in a random order), which leaves what a lookup costs besides its misses.
constexpr std::size_t kHotKeys = 1'000;

struct Workload {
  std::vector<std::string> keys;
  std::vector<std::string_view> in_random_order;  // every key once, shuffled
  std::vector<std::string_view> hot;              // kKeys lookups of the first kHotKeys keys
  Workload() {
    std::mt19937_64 rng(1);
    for (std::size_t i = 0; i < kKeys; ++i) {
      std::string k(kKeyBytes, 'k');
      const std::uint64_t r = rng();
      std::memcpy(k.data() + 1, &r, sizeof r);
      keys.push_back(std::move(k));
    }
    in_random_order.assign(keys.begin(), keys.end());
    std::shuffle(in_random_order.begin(), in_random_order.end(), rng);
    for (std::size_t i = 0; i < kKeys; ++i) hot.push_back(keys[rng() % kHotKeys]);
  }
};
const Workload& workload() {
  static const Workload w;
  return w;
}

// One filled table per engine, kept for every benchmark of that engine.
class FilledTable {
 public:
  explicit FilledTable(shmht::Engine engine) : name_("shmht-batch-bench-" + std::to_string(getpid()) + "-" +
                                                     std::string(shmht::engine_name(engine))) {
    shmht::Table::remove(name_, {.force = true});
    table_ = std::make_unique<shmht::Table>(shmht::Table::create(
        name_, {.capacity = kKeys, .max_key_bytes = 64, .max_value_bytes = 64, .engine = engine}));
    const std::string value(kValueBytes, 'v');
    for (const std::string& k : workload().keys) table_->assign(k, value);
  }
  ~FilledTable() {
    table_.reset();
    shmht::Table::remove(name_, {.force = true});
  }
  shmht::Table& table() { return *table_; }

 private:
  std::string name_;
  std::unique_ptr<shmht::Table> table_;
};

shmht::Table& table_for(shmht::Engine engine) {
  static std::unique_ptr<FilledTable> current;
  static shmht::Engine current_engine{};
  if (!current || current_engine != engine) {
    current.reset();
    current = std::make_unique<FilledTable>(engine);
    current_engine = engine;
  }
  return current->table();
}

void BM_Get(benchmark::State& state, shmht::Engine engine) {
  shmht::Table& t = table_for(engine);
  const auto& order = workload().in_random_order;
  std::size_t i = 0, hits = 0;
  for (auto _ : state) {
    const std::optional<std::string> v = t.get(order[i]);
    hits += v.has_value();
    benchmark::DoNotOptimize(v);
    if (++i == order.size()) i = 0;
  }
  if (hits != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_GetInto(benchmark::State& state, shmht::Engine engine, bool hot) {
  shmht::Table& t = table_for(engine);
  const auto& order = hot ? workload().hot : workload().in_random_order;
  std::size_t i = 0, hits = 0;
  char buffer[kValueBytes];
  for (auto _ : state) {
    hits += t.get(order[i], std::span<char>(buffer, sizeof buffer)).has_value();
    benchmark::DoNotOptimize(buffer);
    if (++i == order.size()) i = 0;
  }
  if (hits != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_Contains(benchmark::State& state, shmht::Engine engine) {
  shmht::Table& t = table_for(engine);
  const auto& order = workload().in_random_order;
  std::size_t i = 0, hits = 0;
  for (auto _ : state) {
    hits += t.contains(order[i]);
    if (++i == order.size()) i = 0;
  }
  if (hits != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// One iteration = one call of `batch` keys; items = keys.
enum class Many { kStrings, kInto, kContains };
template <Many kHow>
void BM_Many(benchmark::State& state, shmht::Engine engine, bool hot) {
  shmht::Table& t = table_for(engine);
  const auto& order = hot ? workload().hot : workload().in_random_order;
  const std::size_t batch = static_cast<std::size_t>(state.range(0));
  std::size_t first = 0, hits = 0;
  for (auto _ : state) {
    if (first + batch > order.size()) first = 0;
    const std::span<const std::string_view> keys(order.data() + first, batch);
    if constexpr (kHow == Many::kStrings) {
      const auto values = t.get_many(keys);
      for (const auto& v : values) hits += v.has_value();
    } else if constexpr (kHow == Many::kInto) {
      t.get_many(keys, [&](std::size_t, std::string_view value) {
        benchmark::DoNotOptimize(value.data());
        ++hits;
      });
    } else {
      const auto present = t.contains_many(keys);
      hits += static_cast<std::size_t>(std::count(present.begin(), present.end(), true));
    }
    first += batch;
  }
  if (hits != static_cast<std::size_t>(state.iterations()) * batch) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

}  // namespace

int main(int argc, char** argv) {
  workload();
  for (shmht::Engine engine : shmht::kAllEngines) {
    if (!shmht::engine_is_built(engine)) continue;
    const std::string e(shmht::engine_name(engine));
    benchmark::RegisterBenchmark(("get/" + e).c_str(), BM_Get, engine)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("get_many/" + e).c_str(), BM_Many<Many::kStrings>, engine, false)->Arg(16)->Arg(256)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("get_into/" + e).c_str(), BM_GetInto, engine, false)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("get_many_into/" + e).c_str(), BM_Many<Many::kInto>, engine, false)->Arg(256)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("hot_get_into/" + e).c_str(), BM_GetInto, engine, true)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("hot_get_many_into/" + e).c_str(), BM_Many<Many::kInto>, engine, true)->Arg(256)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("contains/" + e).c_str(), BM_Contains, engine)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("contains_many/" + e).c_str(), BM_Many<Many::kContains>, engine, false)->Arg(256)->Unit(benchmark::kNanosecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
