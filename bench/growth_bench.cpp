// growth_bench.cpp - what growing the slot array costs (issue 20), as ratios measured side
// by side in one run (this machine is shared and noisy: runs alternate, medians reported).
//
//   build/bench/growth_bench load    [ROUNDS=5] [KEYS=1000000] [ENGINES...]
//     Loads KEYS new keys (16 B, 32 B values) into a table started at capacity 1,000
//     (it doubles about ten times on the way) and into one created at capacity KEYS
//     (never grows), alternately, ROUNDS times per engine. Prints the median throughput of
//     each and grown/presized. Target: >= 0.7.
//
//   build/bench/growth_bench insert  [ROUNDS=5] [KEYS=1000000] [ENGINES...]
//     Loads KEYS new keys into a table created at capacity KEYS, every engine once per
//     round (order rotating): insert throughput side by side (issue 22).
//
//   build/bench/growth_bench latency [KEYS=3000000] [ENGINES...]
//     A writer process inserts KEYS new keys into a table started at capacity 1,000 while
//     a reader process gets random keys among 100,000 inserted first, timing every get
//     and filing it by whether a migration was under way before and after it (the growth
//     word's low bit, read from a private read-only mapping of the header). Prints
//     p50/p99/p99.9 of both sets and their ratio. Target (seqlock, lockfree): p99.9 <= 2x.
//
//   build/bench/growth_bench seed
//     pyshmht's scenario with default options: 333,333 items ("<i>a" -> "aaaaaaa") into a
//     table created with no capacity given; prints resident (allocated) bytes per item.
//     Target: <= 50.
//
// Output: one line per measurement, then a JSON object per engine on stdout's last lines
// (machine name, rounds, medians), for experiments/results/growth/.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "layout/header.hpp"
#include "shmht/table.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::string key_of(std::uint64_t i) {
  char key[17];
  std::snprintf(key, sizeof key, "k%015llu", static_cast<unsigned long long>(i));
  return std::string(key, 16);
}
const std::string kValue(32, 'v');

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<shmht::Engine> engines_from(int argc, char** argv, int first) {
  std::vector<shmht::Engine> engines;
  for (int i = first; i < argc; ++i) {
    if (auto e = shmht::parse_engine(argv[i])) engines.push_back(*e);
  }
  if (engines.empty()) {
    for (shmht::Engine e : {shmht::Engine::kGlobalLock, shmht::Engine::kStripedRwLock, shmht::Engine::kSeqlock,
                            shmht::Engine::kLockFreeRobinHood}) {
      if (shmht::engine_is_built(e)) engines.push_back(e);
    }
  }
  return engines;
}

std::string table_name(const char* what) { return std::string("shmht-growth-bench-") + what + "-" + std::to_string(getpid()); }

// Inserts `keys` new keys into a fresh table of `capacity`; returns inserts per second.
double load_once(shmht::Engine engine, std::uint64_t capacity, std::uint64_t keys) {
  const std::string name = table_name("load");
  shmht::Table::remove(name, {.force = true});
  double rate = 0;
  {
    shmht::Table t = shmht::Table::create(
        name, {.capacity = capacity, .max_key_bytes = 16, .max_value_bytes = 32, .max_bytes = std::uint64_t{4} << 30, .engine = engine});
    const auto start = Clock::now();
    for (std::uint64_t i = 0; i < keys; ++i) t.insert(key_of(i), kValue);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rate = static_cast<double>(keys) / seconds;
    if (t.size() != keys) std::fprintf(stderr, "growth_bench: size %llu, not %llu\n", (unsigned long long)t.size(), (unsigned long long)keys);
  }
  shmht::Table::remove(name, {.force = true});
  return rate;
}

int run_load(int argc, char** argv) {
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::uint64_t keys = argc > 3 ? std::stoull(argv[3]) : 1'000'000;
  for (shmht::Engine engine : engines_from(argc, argv, 4)) {
    std::vector<double> grown, presized, ratios;
    for (int r = 0; r < rounds; ++r) {
      // Alternate which goes first, so neither always meets a warmer or colder machine.
      const bool grown_first = r % 2 == 0;
      const double a = load_once(engine, grown_first ? 1000 : keys, keys);
      const double b = load_once(engine, grown_first ? keys : 1000, keys);
      grown.push_back(grown_first ? a : b);
      presized.push_back(grown_first ? b : a);
      ratios.push_back(grown.back() / presized.back());
      std::printf("load %s round %d: from 1000 %.3f M/s, presized %.3f M/s, ratio %.3f\n",
                  std::string(shmht::engine_name(engine)).c_str(), r, grown.back() / 1e6, presized.back() / 1e6, ratios.back());
      std::fflush(stdout);
    }
    std::printf("{\"bench\": \"load\", \"engine\": \"%s\", \"keys\": %llu, \"rounds\": %d, \"grown_mops\": %.4f, "
                "\"presized_mops\": %.4f, \"median_ratio\": %.4f}\n",
                std::string(shmht::engine_name(engine)).c_str(), (unsigned long long)keys, rounds, median(grown) / 1e6,
                median(presized) / 1e6, median(ratios));
  }
  return 0;
}

// The growth word, read from a private read-only mapping of the header page.
class GrowthWord {
 public:
  explicit GrowthWord(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    base_ = fd < 0 ? MAP_FAILED : mmap(nullptr, shmht::layout::kPageBytes, PROT_READ, MAP_SHARED, fd, 0);
    if (fd >= 0) ::close(fd);
  }
  ~GrowthWord() {
    if (base_ != MAP_FAILED) munmap(base_, shmht::layout::kPageBytes);
  }
  bool migrating() const {
    const auto* header = static_cast<const shmht::layout::Header*>(base_);
    return (header->growth.load(std::memory_order_relaxed) & 1) != 0;
  }
  bool ok() const { return base_ != MAP_FAILED; }

 private:
  void* base_;
};

struct Percentiles {
  double p50, p99, p999;
  std::size_t samples;
};
Percentiles percentiles(std::vector<float>& ns) {
  if (ns.empty()) return {0, 0, 0, 0};
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return static_cast<double>(ns[std::min(ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())))]); };
  return {at(0.50), at(0.99), at(0.999), ns.size()};
}

int run_latency(int argc, char** argv) {
  const std::uint64_t keys = argc > 2 ? std::stoull(argv[2]) : 3'000'000;
  constexpr std::uint64_t kReadKeys = 100'000;
  for (shmht::Engine engine : engines_from(argc, argv, 3)) {
    const std::string name = table_name("latency");
    shmht::Table::remove(name, {.force = true});
    shmht::Table t = shmht::Table::create(
        name, {.capacity = 1000, .max_key_bytes = 16, .max_value_bytes = 32, .max_bytes = std::uint64_t{8} << 30, .engine = engine});
    for (std::uint64_t i = 0; i < kReadKeys; ++i) t.insert(key_of(i), kValue);
    auto* done = static_cast<std::atomic<int>*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    done->store(0);
    const pid_t writer = fork();
    if (writer == 0) {
      alarm(600);
      shmht::Table w = shmht::Table::open(name);
      for (std::uint64_t i = kReadKeys; i < kReadKeys + keys; ++i) w.insert(key_of(i), kValue);
      done->store(1);
      _exit(0);
    }
    GrowthWord growth(t.path());
    std::vector<float> during, steady;
    during.reserve(1 << 22);
    steady.reserve(1 << 22);
    std::mt19937_64 rng(42);
    char value[64];
    std::uint64_t misses = 0;
    while (done->load(std::memory_order_relaxed) == 0) {
      const std::string key = key_of(rng() % kReadKeys);
      const bool before = growth.migrating();
      const auto start = Clock::now();
      const bool found = t.get(key, std::span<char>(value)).has_value();
      const auto ns = std::chrono::duration<float, std::nano>(Clock::now() - start).count();
      const bool after = growth.migrating();
      misses += !found;
      if (before && after) {
        during.push_back(ns);
      } else if (!before && !after) {
        steady.push_back(ns);
      }
    }
    int status = 0;
    waitpid(writer, &status, 0);
    const shmht::Stats s = t.stats();
    t.close();
    shmht::Table::remove(name, {.force = true});
    munmap(done, 4096);
    const Percentiles d = percentiles(during), st = percentiles(steady);
    const std::string e(shmht::engine_name(engine));
    std::printf("latency %s: %u growths, %llu misses; steady (writer inserting) p50 %.0f p99 %.0f p99.9 %.0f ns (%zu gets); "
                "during migration p50 %.0f p99 %.0f p99.9 %.0f ns (%zu gets); p99.9 ratio %.2f\n",
                e.c_str(), s.growths, (unsigned long long)misses, st.p50, st.p99, st.p999, st.samples, d.p50, d.p99, d.p999,
                d.samples, st.p999 > 0 ? d.p999 / st.p999 : 0.0);
    std::printf("{\"bench\": \"latency\", \"engine\": \"%s\", \"writer_keys\": %llu, \"growths\": %u, \"misses\": %llu, "
                "\"steady\": {\"p50_ns\": %.0f, \"p99_ns\": %.0f, \"p999_ns\": %.0f, \"gets\": %zu}, "
                "\"migrating\": {\"p50_ns\": %.0f, \"p99_ns\": %.0f, \"p999_ns\": %.0f, \"gets\": %zu}, \"p999_ratio\": %.3f}\n",
                e.c_str(), (unsigned long long)keys, s.growths, (unsigned long long)misses, st.p50, st.p99, st.p999, st.samples,
                d.p50, d.p99, d.p999, d.samples, st.p999 > 0 ? d.p999 / st.p999 : 0.0);
    std::fflush(stdout);
    if (misses != 0) return 1;
  }
  return 0;
}

int run_seed() {
  constexpr std::uint64_t kItems = 333'333;
  const std::string name = table_name("seed");
  shmht::Table::remove(name, {.force = true});
  {
    shmht::Table t = shmht::Table::create(name, {});  // default options, as a new user's
    for (std::uint64_t i = 0; i < kItems; ++i) t.insert(std::to_string(i) + "a", "aaaaaaa");
    const shmht::Stats s = t.stats();
    std::printf("{\"bench\": \"seed\", \"engine\": \"%s\", \"items\": %llu, \"capacity\": %llu, \"growths\": %u, "
                "\"resident_bytes\": %llu, \"resident_bytes_per_item\": %.2f, \"apparent_bytes\": %llu, "
                "\"slot_array_bytes\": %llu, \"live_record_bytes\": %llu}\n",
                std::string(shmht::engine_name(s.engine)).c_str(), (unsigned long long)s.items, (unsigned long long)s.capacity,
                s.growths, (unsigned long long)s.resident_bytes, static_cast<double>(s.resident_bytes) / kItems,
                (unsigned long long)s.apparent_bytes, (unsigned long long)s.slot_array_bytes,
                (unsigned long long)s.live_record_bytes);
  }
  shmht::Table::remove(name, {.force = true});
  return 0;
}

}  // namespace

// Loads KEYS new keys into a table created at capacity KEYS (it never grows), for every
// engine in turn within each round, the order rotating round by round: the engines'
// insert throughput side by side (issue 22's "insert 1M new keys" cell).
int run_insert(int argc, char** argv) {
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::uint64_t keys = argc > 3 ? std::stoull(argv[3]) : 1'000'000;
  const std::vector<shmht::Engine> engines = engines_from(argc, argv, 4);
  std::vector<std::vector<double>> rates(engines.size());
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < engines.size(); ++i) {
      const std::size_t e = (i + static_cast<std::size_t>(r)) % engines.size();
      rates[e].push_back(load_once(engines[e], keys, keys));
      std::printf("insert %s round %d: %.3f M/s\n", std::string(shmht::engine_name(engines[e])).c_str(), r, rates[e].back() / 1e6);
      std::fflush(stdout);
    }
  }
  for (std::size_t e = 0; e < engines.size(); ++e) {
    std::printf("{\"bench\": \"insert\", \"engine\": \"%s\", \"keys\": %llu, \"rounds\": %d, \"median_mops\": %.4f}\n",
                std::string(shmht::engine_name(engines[e])).c_str(), (unsigned long long)keys, rounds, median(rates[e]) / 1e6);
  }
  return 0;
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "load") return run_load(argc, argv);
  if (mode == "insert") return run_insert(argc, argv);
  if (mode == "latency") return run_latency(argc, argv);
  if (mode == "seed") return run_seed();
  std::fprintf(stderr, "usage: growth_bench load [ROUNDS] [KEYS] [ENGINES...] | insert [ROUNDS] [KEYS] [ENGINES...] | latency [KEYS] [ENGINES...] | seed\n");
  return 2;
}
