// demo.cpp - shmht in one screen: create a table in /dev/shm, let several processes
// hammer it at once, then print what `shmht stat` shows and check its invariants.
//
//   build/demo [PROCESSES] [OPS_PER_PROCESS]      (scripts/demo.sh builds and runs it)
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "shmht/check.hpp"
#include "shmht/table.hpp"

int main(int argc, char** argv) {
  const int processes = argc > 1 ? std::atoi(argv[1]) : 2;
  const long ops = argc > 2 ? std::atol(argv[2]) : 200'000;
  const std::string name = "shmht-demo-" + std::to_string(getpid());
  constexpr long kKeys = 100'000;

  shmht::Table table = shmht::Table::create(name, {.capacity = kKeys});
  std::printf("created /dev/shm/%s; %d processes x %ld operations (70%% get, 25%% assign, 5%% erase)...\n",
              name.c_str(), processes, ops);
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = fork();
    if (pid == 0) {
      int status = 0;
      try {
        shmht::Table t = shmht::Table::open(name);  // each process attaches by name
        std::mt19937_64 rng(static_cast<std::uint64_t>(p) + 1);
        for (long i = 0; i < ops; ++i) {
          const std::string key = "user:" + std::to_string(rng() % kKeys);
          const auto dice = rng() % 100;
          if (dice < 70) t.get(key);
          else if (dice < 95) t.assign(key, "visits=" + std::to_string(i));
          else t.erase(key);
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %d: %s\n", p, e.what());
        status = 1;
      }
      _exit(status);
    }
    children.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const shmht::Stats s = table.stats();
  std::printf("done in %.2f s (%.0f ops/s in total)\n\n", seconds, static_cast<double>(processes * ops) / seconds);
  std::printf("engine          %s\n", std::string(shmht::engine_name(s.engine)).c_str());
  std::printf("items           %llu of capacity %llu (load factor %.2f)\n", static_cast<unsigned long long>(s.items),
              static_cast<unsigned long long>(s.capacity), s.load_factor);
  std::printf("file            %llu B apparent, %llu B resident, %.1f B/item\n",
              static_cast<unsigned long long>(s.apparent_bytes), static_cast<unsigned long long>(s.resident_bytes),
              s.items ? static_cast<double>(s.apparent_bytes) / static_cast<double>(s.items) : 0.0);
  std::printf("arena           %llu B live records, %llu B free for reuse\n",
              static_cast<unsigned long long>(s.live_record_bytes), static_cast<unsigned long long>(s.free_record_bytes));
  const shmht::CheckReport report = shmht::check_table(name);
  std::printf("check           %s\n", report.clean ? "clean" : report.problems.front().c_str());
  table.close();
  shmht::Table::remove(name);
  return failed == 0 && report.clean ? 0 : 1;
}
