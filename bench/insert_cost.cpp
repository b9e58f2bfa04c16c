// insert_cost.cpp - where the time of filling a new table goes: user vs kernel CPU and
// page faults per insert (getrusage), for one engine. Deterministic enough to compare
// two builds when wall-clock timings on a shared VM are too noisy to.
//
//   build-release/bench/insert_cost [ENGINE] [ITEMS]      (default: global 1000000)
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "shmht/table.hpp"

namespace {
double seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; }
}  // namespace

int main(int argc, char** argv) {
  const auto engine = shmht::parse_engine(argc > 1 ? argv[1] : "global");
  const long items = argc > 2 ? std::atol(argv[2]) : 1'000'000;
  if (!engine || items <= 0) {
    std::fprintf(stderr, "usage: insert_cost [global|striped|seqlock] [ITEMS]\n");
    return 2;
  }
  const std::string name = "shmht-insert-cost-" + std::to_string(getpid());
  shmht::Table::remove(name, {.force = true});
  int status = 0;
  {
    shmht::Table t = shmht::Table::create(name, {.capacity = static_cast<std::uint64_t>(items), .engine = *engine});
    const std::string value(32, 'v');
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    for (long i = 0; i < items; ++i) t.insert("key-" + std::to_string(i) + "-padding", value);
    getrusage(RUSAGE_SELF, &after);
    const double n = static_cast<double>(items);
    std::printf("{\"engine\": \"%s\", \"items\": %ld, \"user_s\": %.3f, \"sys_s\": %.3f, \"minor_faults_per_insert\": %.4f}\n",
                std::string(shmht::engine_name(*engine)).c_str(), items, seconds(after.ru_utime) - seconds(before.ru_utime),
                seconds(after.ru_stime) - seconds(before.ru_stime),
                static_cast<double>(after.ru_minflt - before.ru_minflt) / n);
    status = t.size() == static_cast<std::uint64_t>(items) ? 0 : 1;
  }
  shmht::Table::remove(name, {.force = true});
  return status;
}
