// stall_contrast.cpp - what one stopped process costs everyone else, per engine (issue 10).
//
//   build/bench/stall_contrast [SECONDS] [ITEMS] [ENGINE]  (default: 5 100000, every engine)
//
// For every built engine: a table of ITEMS items; a staller process starts a write and
// stops itself (SIGSTOP) in the middle of it: holding the global mutex, a stripe or a
// bucket (fault point kAfterLock), or, under lockfree, with its multi-word CAS published
// but not applied (kKcasPublished). A survivor then runs a write-heavy loop (50 % assign,
// 25 % get, 25 % erase-then-insert of a key, all keys uniform) for SECONDS, while the
// staller stays stopped. Reported per engine, one JSON object each:
//   survivor_ops          operations the survivor completed while the staller was stopped
//   longest_wait_s        the longest time one survivor operation took (the block)
//   file_bytes_before/after  the table file's size before the stop and after SECONDS:
//                         whether a stopped process makes memory pile up
// Then the staller is resumed, both exit, and check must be clean (`clean`).
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct SurvivorReport {
  std::atomic<std::uint64_t> ops{0};
  std::atomic<std::uint64_t> longest_wait_ns{0};
  std::atomic<std::uint64_t> op_started_ns{0};  // CLOCK_MONOTONIC: the same clock in every process
};

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

shmht::testing::FaultPoint g_stop_at;
std::atomic<bool> g_armed{false};
void stop_once(shmht::testing::FaultPoint point) {
  if (point == g_stop_at && g_armed.exchange(false)) raise(SIGSTOP);
}

std::string key_of(std::uint64_t i) { return "key-" + std::to_string(i); }

bool wait_until_stopped(pid_t pid) {
  for (int i = 0; i < 10'000; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WUNTRACED | WNOHANG) == pid) return WIFSTOPPED(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// The survivor's loop; runs in a child so that a blocked survivor can be killed.
[[noreturn]] void survive(const std::string& name, std::uint64_t items, double seconds, SurvivorReport* report) {
  shmht::Table t = shmht::Table::open(name);
  std::mt19937_64 rng(42);
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    const std::string key = key_of(rng() % items);
    const std::uint64_t start = now_ns();
    report->op_started_ns = start;
    switch (rng() % 4) {
      case 0: t.get(key); break;
      case 1: t.erase(key); t.insert(key, "survivor"); break;
      default: t.assign(key, "survivor"); break;
    }
    const std::uint64_t waited = now_ns() - start;
    if (waited > report->longest_wait_ns) report->longest_wait_ns = waited;
    ++report->ops;
  }
  _exit(0);
}

void measure(shmht::Engine engine, double seconds, std::uint64_t items, SurvivorReport* report) {
  const std::string name = "shmht-stall-contrast-" + std::to_string(getpid());
  shmht::Table::remove(name, {.force = true});
  {
    shmht::Table t = shmht::Table::create(name, {.capacity = items * 2, .engine = engine});
    for (std::uint64_t i = 0; i < items; ++i) t.insert(key_of(i), "committed");
  }
  const std::uint64_t before = shmht::Table::open(name).stats().apparent_bytes;
  const pid_t staller = fork();
  if (staller == 0) {
    shmht::Table t = shmht::Table::open(name);
    g_stop_at = engine == shmht::Engine::kLockFreeRobinHood ? shmht::testing::FaultPoint::kKcasPublished
                                                             : shmht::testing::FaultPoint::kAfterLock;
    g_armed = true;
    shmht::testing::set_fault_hook(&stop_once);
    t.assign(key_of(0), "staller");
    _exit(0);
  }
  if (!wait_until_stopped(staller)) {
    std::fprintf(stderr, "the staller never stopped\n");
    std::exit(1);
  }
  report->ops = 0;
  report->longest_wait_ns = 0;
  report->op_started_ns = now_ns();
  const auto started = Clock::now();
  const pid_t survivor = fork();
  if (survivor == 0) survive(name, items, seconds, report);
  // A blocked survivor never ends its loop: stop waiting a little after SECONDS.
  int status = 0;
  while (waitpid(survivor, &status, WNOHANG) == 0) {
    if (Clock::now() - started > std::chrono::duration<double>(seconds + 1.0)) {
      // Its current operation has been waiting since it started: that is its longest wait.
      report->longest_wait_ns = std::max<std::uint64_t>(report->longest_wait_ns, now_ns() - report->op_started_ns);
      kill(survivor, SIGKILL);
      waitpid(survivor, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::uint64_t after = shmht::Table::open(name).stats().apparent_bytes;
  kill(staller, SIGCONT);
  waitpid(staller, &status, 0);
  const bool clean = shmht::check_table(name).clean;
  std::printf("{\"engine\": \"%s\", \"stopped_s\": %.1f, \"items\": %llu, \"survivor_ops\": %llu, "
              "\"longest_wait_s\": %.4f, \"file_bytes_before\": %llu, \"file_bytes_after\": %llu, \"clean\": %s}\n",
              std::string(shmht::engine_name(engine)).c_str(), seconds, static_cast<unsigned long long>(items),
              static_cast<unsigned long long>(report->ops.load()), static_cast<double>(report->longest_wait_ns.load()) / 1e9,
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(after), clean ? "true" : "false");
  std::fflush(stdout);
  shmht::Table::remove(name, {.force = true});
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  const std::uint64_t items = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 100'000;
  const std::optional<shmht::Engine> only = argc > 3 ? shmht::parse_engine(argv[3]) : std::nullopt;
  if (seconds <= 0 || items == 0 || (argc > 3 && !only)) {
    std::fprintf(stderr, "usage: stall_contrast [SECONDS] [ITEMS] [global|striped|seqlock|lockfree]\n");
    return 2;
  }
  void* shared = mmap(nullptr, sizeof(SurvivorReport), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 1;
  auto* report = new (shared) SurvivorReport;
  for (shmht::Engine engine : shmht::kAllEngines) {
    if (shmht::engine_is_built(engine) && (!only || *only == engine)) measure(engine, seconds, items, report);
  }
  return 0;
}
