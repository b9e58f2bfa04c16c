// table_bench.cpp - single-process speed of each engine against two private baselines,
// in one run: std::unordered_map<std::string, std::string> and a plain private
// open-addressing table (private_open_addressing.hpp).
//
// Workload (issue 2): 1M keys of 16 bytes, 32-byte values, accessed in a random order
// (a precomputed permutation, so the hardware prefetcher cannot help anyone).
//   get_hit, get_miss   on a table holding all 1M keys
//   insert              into a table sized for 1M keys; refilled from empty when full
//   overwrite           assign to existing keys
//   erase               erase existing keys; re-filled when empty (refill not timed)
//
//   build/bench/table_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <span>

#include "private_open_addressing.hpp"
#include "shmht/table.hpp"

namespace {

constexpr std::size_t kKeys = 1'000'000;
constexpr std::size_t kKeyBytes = 16, kValueBytes = 32;

struct Keys {
  std::vector<std::string> present, absent;
  std::vector<std::uint32_t> order;  // random permutation of [0, kKeys)
  std::string value = std::string(kValueBytes, 'v');
  Keys() {
    std::mt19937_64 rng(1);
    auto make = [&](char tag) {
      std::string k(kKeyBytes, tag);
      const std::uint64_t r = rng();
      std::memcpy(k.data() + 1, &r, sizeof r);
      return k;
    };
    for (std::size_t i = 0; i < kKeys; ++i) present.push_back(make('p'));
    for (std::size_t i = 0; i < kKeys; ++i) absent.push_back(make('a'));
    order.resize(kKeys);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
  }
};
const Keys& keys() {
  static const Keys k;
  return k;
}

// Adapters: one interface over the three contenders.
class ShmhtAdapter {
 public:
  explicit ShmhtAdapter(shmht::Engine engine) {
    name_ = "shmht-bench-" + std::to_string(getpid());
    shmht::Table::remove(name_, {.force = true});
    table_ = std::make_unique<shmht::Table>(shmht::Table::create(
        name_, {.capacity = kKeys, .max_key_bytes = 64, .max_value_bytes = 64, .engine = engine}));
  }
  ~ShmhtAdapter() {
    table_.reset();
    shmht::Table::remove(name_, {.force = true});
  }
  bool get(const std::string& k, char* out) { return table_->get(k, std::span<char>(out, kValueBytes)).has_value(); }
  void assign(const std::string& k, const std::string& v) { table_->assign(k, v); }
  void erase(const std::string& k) { table_->erase(k); }

 private:
  std::string name_;
  std::unique_ptr<shmht::Table> table_;
};

class UnorderedMapAdapter {
 public:
  explicit UnorderedMapAdapter(shmht::Engine) { map_.reserve(kKeys); }
  bool get(const std::string& k, char* out) {
    const auto it = map_.find(k);
    if (it == map_.end()) return false;
    std::memcpy(out, it->second.data(), it->second.size());
    return true;
  }
  void assign(const std::string& k, const std::string& v) { map_.insert_or_assign(k, v); }
  void erase(const std::string& k) { map_.erase(k); }

 private:
  std::unordered_map<std::string, std::string> map_;
};

class PrivateAdapter {
 public:
  explicit PrivateAdapter(shmht::Engine) {}
  bool get(const std::string& k, char* out) { return table_.get(k, out, kValueBytes) >= 0; }
  void assign(const std::string& k, const std::string& v) { table_.assign(k, v); }
  void erase(const std::string& k) { table_.erase(k); }

 private:
  shmht::bench::PrivateOpenAddressing table_{kKeys};
};

template <class Adapter>
std::unique_ptr<Adapter> filled(shmht::Engine engine) {
  auto a = std::make_unique<Adapter>(engine);
  for (const auto& k : keys().present) a->assign(k, keys().value);
  return a;
}

// Gets of present keys (expect_hits) or of absent ones, in random order; fails the
// benchmark if any result is not the expected one.
template <class Adapter>
void run_gets(benchmark::State& state, shmht::Engine engine, bool expect_hits) {
  auto table = filled<Adapter>(engine);
  const std::vector<std::string>& probe_keys = expect_hits ? keys().present : keys().absent;
  char out[kValueBytes];
  std::size_t i = 0, hits = 0;
  for (auto _ : state) {
    hits += table->get(probe_keys[keys().order[i]], out);
    if (++i == kKeys) i = 0;
  }
  if (hits != (expect_hits ? static_cast<std::size_t>(state.iterations()) : 0)) {
    state.SkipWithError(expect_hits ? "a present key was not found" : "an absent key was found");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <class Adapter>
void BM_GetHit(benchmark::State& state, shmht::Engine engine) {
  run_gets<Adapter>(state, engine, true);
}

template <class Adapter>
void BM_GetMiss(benchmark::State& state, shmht::Engine engine) {
  run_gets<Adapter>(state, engine, false);
}

template <class Adapter>
void BM_Insert(benchmark::State& state, shmht::Engine engine) {
  auto table = std::make_unique<Adapter>(engine);
  std::size_t i = 0;
  for (auto _ : state) {
    table->assign(keys().present[keys().order[i]], keys().value);
    if (++i == kKeys) {
      state.PauseTiming();
      table.reset();
      table = std::make_unique<Adapter>(engine);
      i = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <class Adapter>
void BM_Overwrite(benchmark::State& state, shmht::Engine engine) {
  auto table = filled<Adapter>(engine);
  std::size_t i = 0;
  for (auto _ : state) {
    table->assign(keys().present[keys().order[i]], keys().value);
    if (++i == kKeys) i = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <class Adapter>
void BM_Erase(benchmark::State& state, shmht::Engine engine) {
  auto table = filled<Adapter>(engine);
  std::size_t i = 0;
  for (auto _ : state) {
    table->erase(keys().present[keys().order[i]]);
    if (++i == kKeys) {
      state.PauseTiming();
      for (const auto& k : keys().present) table->assign(k, keys().value);
      i = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// Registers operation x contender as "<operation>/<contender>", e.g. "get_hit/global".
template <class Adapter>
void register_contender(const std::string& contender, shmht::Engine engine) {
  const std::pair<const char*, void (*)(benchmark::State&, shmht::Engine)> operations[] = {
      {"get_hit", BM_GetHit<Adapter>}, {"get_miss", BM_GetMiss<Adapter>}, {"insert", BM_Insert<Adapter>},
      {"overwrite", BM_Overwrite<Adapter>}, {"erase", BM_Erase<Adapter>}};
  for (const auto& [operation, fn] : operations) {
    benchmark::RegisterBenchmark((std::string(operation) + "/" + contender).c_str(), fn, engine)
        ->Unit(benchmark::kNanosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  keys();  // build the 2M keys now, not inside whichever benchmark happens to run first
  register_contender<UnorderedMapAdapter>("unordered_map", shmht::Engine{});
  register_contender<PrivateAdapter>("private_open_addressing", shmht::Engine{});
  for (shmht::Engine engine : shmht::kAllEngines) {
    if (shmht::engine_is_built(engine)) register_contender<ShmhtAdapter>(std::string(shmht::engine_name(engine)), engine);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
