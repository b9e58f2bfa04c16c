// killed_check_recovery.cpp - how long the next operation waits after `shmht check` was
// SIGKILLed while it held the whole table (issue 9: recovery costs memory work, not a
// wait per bucket the dead process held).
//
//   build/bench/killed_check_recovery [ITEMS] [ROUNDS]     (default: 800000 3)
//
// For every built engine and two situations, ROUNDS times: fill a table with ITEMS
// items, fork a child that runs check_table() and kills itself at the moment it holds
// every bucket/stripe/mutex (FaultPoint::kExclusiveHeld), then time the first get():
//   warm: this process stayed attached throughout (recovery by takeover of dead owners);
//   cold: nobody else was attached, the get opens the table (cold-start recovery).
// Prints one JSON object per engine and situation: the median, min and max in seconds.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"

namespace {

void die_holding_everything(shmht::testing::FaultPoint point) {
  if (point == shmht::testing::FaultPoint::kExclusiveHeld) raise(SIGKILL);
}

// Runs check in a child that dies inside its exclusive scope; true if it did.
bool kill_check_midway(const std::string& name) {
  const pid_t child = fork();
  if (child == 0) {
    shmht::testing::set_fault_hook(&die_holding_everything);
    shmht::check_table(name);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double one_round(shmht::Engine engine, long items, bool warm) {
  const std::string name = "shmht-recovery-" + std::to_string(getpid());
  shmht::Table::remove(name, {.force = true});
  std::optional<shmht::Table> holder(shmht::Table::create(name, {.capacity = static_cast<std::uint64_t>(items), .engine = engine}));
  for (long i = 0; i < items; ++i) holder->insert("key-" + std::to_string(i), "value-" + std::to_string(i));
  if (!warm) holder.reset();
  if (!kill_check_midway(name)) {
    std::fprintf(stderr, "check was not killed inside its exclusive scope\n");
    std::exit(1);
  }
  const auto start = std::chrono::steady_clock::now();
  std::optional<std::string> value;
  if (warm) {
    value = holder->get("key-1");
  } else {
    value = shmht::Table::open(name).get("key-1");
  }
  const double elapsed = seconds_since(start);
  if (value != "value-1") {
    std::fprintf(stderr, "wrong value after recovery\n");
    std::exit(1);
  }
  holder.reset();
  shmht::Table::remove(name, {.force = true});
  return elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const long items = argc > 1 ? std::atol(argv[1]) : 800'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  if (items <= 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: killed_check_recovery [ITEMS] [ROUNDS]\n");
    return 2;
  }
  for (shmht::Engine engine : shmht::kAllEngines) {
    if (!shmht::engine_is_built(engine)) continue;
    for (const bool warm : {true, false}) {
      std::vector<double> times;
      for (int r = 0; r < rounds; ++r) times.push_back(one_round(engine, items, warm));
      std::sort(times.begin(), times.end());
      std::printf("{\"engine\": \"%s\", \"items\": %ld, \"situation\": \"%s\", \"rounds\": %d, "
                  "\"first_get_median_s\": %.4f, \"first_get_min_s\": %.4f, \"first_get_max_s\": %.4f}\n",
                  std::string(shmht::engine_name(engine)).c_str(), items, warm ? "warm" : "cold", rounds,
                  times[times.size() / 2], times.front(), times.back());
      std::fflush(stdout);
    }
  }
  return 0;
}
