// soak.cpp - shmht-soak: N processes doing random operations on one table while a
// supervisor SIGKILLs and SIGSTOP/SIGCONTs them at random, for a given time; then every
// write any process had acknowledged is checked, and `check` must find the table clean.
//
//   shmht-soak --engine seqlock --processes 4 --seconds 600 [--json FILE] [--seed N] [--capacity N]
//   (--capacity: the table's starting size; below the keys the workers hold, it grows
//   while they are being killed)
//
// WHAT IS CHECKED
//   Worker slot w owns the keys "w<w>-k<i>" (i < kKeysPerWorker), so the final state of
//   each key is fixed by that slot's own acknowledged operations. The slot's ledger, in
//   memory the supervisor shares with its children, holds per key the version last
//   acknowledged (0: absent), and the one operation in flight (written before the call,
//   cleared after it returned). A value is "w<w>-k<i>-v<version>" plus padding.
//   - While running, a worker reads its own keys and must get exactly the acknowledged
//     version (a different one is stale, none is lost); insert must agree with the ledger.
//   - A worker killed mid-operation leaves an operation in flight: its replacement (and
//     the final verification) reads the key, which must hold the acknowledged or the
//     intended state, and takes whichever it holds as acknowledged.
//   - At the end every key of every slot is read and compared, then check_table runs.
//   Lost = an acknowledged write missing; stale = an older or foreign version seen.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shmht/check.hpp"
#include "shmht/table.hpp"

namespace {

using namespace std::chrono;

constexpr std::uint32_t kKeysPerWorker = 2000;
constexpr std::uint32_t kMaxWorkers = 64;

// One worker slot's ledger; lives in MAP_SHARED memory, survives the worker.
struct Ledger {
  std::atomic<std::uint32_t> acked[kKeysPerWorker];  // version acknowledged, 0 = absent
  std::atomic<std::uint32_t> in_flight_key;          // kKeysPerWorker = none
  std::atomic<std::uint32_t> in_flight_version;      // intended version, 0 = erase
  std::atomic<std::uint32_t> next_version;
  std::atomic<std::uint64_t> operations;
  std::atomic<std::uint64_t> lost, stale, errors;
  char first_error[256];  // the first worker error's message, for the report (a killed
                          // worker's stderr line may never be written)
};

struct Shared {
  Ledger slots[kMaxWorkers];
};

std::string key_of(std::uint32_t w, std::uint32_t i) {
  std::string key = "w";
  key.append(std::to_string(w)).append("-k").append(std::to_string(i));
  return key;
}
std::string version_prefix(std::uint32_t w, std::uint32_t i) { return key_of(w, i).append("-v"); }
std::string value_of(std::uint32_t w, std::uint32_t i, std::uint32_t version, std::size_t pad) {
  return version_prefix(w, i).append(std::to_string(version)).append(pad, '.');
}
// The version a value names if it belongs to key (w, i); 0 if it names another key.
std::uint32_t version_in(const std::string& value, std::uint32_t w, std::uint32_t i) {
  const std::string prefix = version_prefix(w, i);
  if (value.compare(0, prefix.size(), prefix) != 0) return 0;
  return static_cast<std::uint32_t>(std::strtoul(value.c_str() + prefix.size(), nullptr, 10));
}

// The key's state in the table: its version, 0 if absent, UINT32_MAX if foreign.
std::uint32_t observed_version(shmht::Table& t, std::uint32_t w, std::uint32_t i) {
  const std::optional<std::string> v = t.get(key_of(w, i));
  if (!v) return 0;
  const std::uint32_t version = version_in(*v, w, i);
  return version == 0 ? UINT32_MAX : version;
}

// Compares what the table holds for (w, i) with the ledger; counts lost or stale.
void expect_acknowledged(shmht::Table& t, Ledger& l, std::uint32_t w, std::uint32_t i) {
  const std::uint32_t want = l.acked[i].load();
  const std::uint32_t got = observed_version(t, w, i);
  if (got == want) return;
  if (got == 0) {
    l.lost.fetch_add(1);
  } else {
    l.stale.fetch_add(1);
  }
  std::fprintf(stderr, "soak: key %s: acknowledged version %u, table has %u\n", key_of(w, i).c_str(), want, got);
}

// Settles the operation a killed worker left in flight: the key must hold the
// acknowledged or the intended state; whichever it holds becomes acknowledged.
void settle_in_flight(shmht::Table& t, Ledger& l, std::uint32_t w) {
  const std::uint32_t i = l.in_flight_key.load();
  if (i >= kKeysPerWorker) return;
  const std::uint32_t intended = l.in_flight_version.load();
  if (observed_version(t, w, i) == intended) l.acked[i].store(intended);
  expect_acknowledged(t, l, w, i);
  l.in_flight_key.store(kKeysPerWorker);
}

int run_worker(const std::string& name, std::uint32_t w, Ledger& l, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  shmht::Table t = shmht::Table::open(name);
  settle_in_flight(t, l, w);
  for (;;) {
    const std::uint32_t i = static_cast<std::uint32_t>(rng() % kKeysPerWorker);
    const std::uint32_t op = static_cast<std::uint32_t>(rng() % 100);
    try {
      if (op < 35) {
        expect_acknowledged(t, l, w, i);
      } else if (op < 38) {
        t.get(key_of(static_cast<std::uint32_t>(rng() % kMaxWorkers), i));  // someone else's key: must not fail
      } else if (op < 39 && rng() % 20 == 0) {
        std::uint64_t n = 0;
        t.for_each([&](std::string_view, std::string_view) { ++n; });
      } else {
        // A write: note it in flight, do it, acknowledge it.
        const bool erase = op >= 85;
        const bool insert = !erase && op < 50;
        const std::uint32_t version = erase ? 0 : l.next_version.fetch_add(1) + 1;
        l.in_flight_version.store(version);
        l.in_flight_key.store(i);
        if (erase) {
          const bool was_present = t.erase(key_of(w, i));
          if (was_present != (l.acked[i].load() != 0)) l.stale.fetch_add(1);
          l.acked[i].store(0);
        } else if (insert) {
          const bool inserted = t.insert(key_of(w, i), value_of(w, i, version, rng() % 200));
          if (inserted != (l.acked[i].load() == 0)) l.stale.fetch_add(1);
          if (inserted) l.acked[i].store(version);
        } else {
          t.assign(key_of(w, i), value_of(w, i, version, rng() % 200));
          l.acked[i].store(version);
        }
        l.in_flight_key.store(kKeysPerWorker);
      }
    } catch (const shmht::Error& e) {
      std::fprintf(stderr, "soak: worker %u: %s\n", w, e.what());
      if (l.errors.load() == 0) std::snprintf(l.first_error, sizeof l.first_error, "%s", e.what());
      l.errors.fetch_add(1);
      return 2;
    }
    l.operations.fetch_add(1, std::memory_order_relaxed);
  }
}

struct Options {
  std::string engine = "seqlock";
  std::uint32_t processes = 4;
  double seconds = 10;
  std::uint64_t seed = 1;
  std::string json;
  std::uint64_t capacity = 0;  // 0: every key a worker may hold (no growth); smaller: the table grows
};

Options parse(int argc, char** argv) {
  Options o;
  for (int a = 1; a < argc; ++a) {
    const std::string flag = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
      return argv[++a];
    };
    if (flag == "--engine") o.engine = value();
    else if (flag == "--processes") o.processes = static_cast<std::uint32_t>(std::stoul(value()));
    else if (flag == "--seconds") o.seconds = std::stod(value());
    else if (flag == "--seed") o.seed = std::stoull(value());
    else if (flag == "--json") o.json = value();
    else if (flag == "--capacity") o.capacity = std::stoull(value());
    else throw std::invalid_argument("unknown option " + flag + " (see the comment at the top of tests/soak/soak.cpp)");
  }
  if (o.processes < 1 || o.processes > kMaxWorkers) throw std::invalid_argument("--processes must be 1.." + std::to_string(kMaxWorkers));
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const std::optional<shmht::Engine> engine = shmht::parse_engine(o.engine);
  if (!engine) throw std::invalid_argument("unknown engine " + o.engine);
  const std::string name = "shmht-soak-" + std::to_string(getpid());
  // Capacity = the most keys there can be: a full table, long Robin Hood runs, many shifts
  // for a kill to interrupt. With --capacity smaller, the table grows while workers are
  // killed, so kills land inside migrations too.
  const std::uint64_t capacity = o.capacity != 0 ? o.capacity : std::uint64_t{kKeysPerWorker} * o.processes;
  shmht::Table::create(name, {.capacity = capacity, .engine = *engine}).close();

  void* memory = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::runtime_error("mmap failed");
  auto* shared = new (memory) Shared();
  for (auto& l : shared->slots) l.in_flight_key.store(kKeysPerWorker);

  std::mt19937_64 rng(o.seed);
  std::vector<pid_t> workers(o.processes, -1);
  // Whatever happens below, no worker and no table file outlives the run.
  struct Cleanup {
    std::vector<pid_t>& workers;
    const std::string& name;
    void kill_workers() {
      for (pid_t& pid : workers) {
        if (pid > 0) {
          kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
        }
        pid = -1;
      }
    }
    ~Cleanup() {
      kill_workers();
      try {
        shmht::Table::remove(name, {.force = true});
      } catch (const shmht::Error& e) {
        std::fprintf(stderr, "shmht-soak: %s\n", e.what());
      }
    }
  } cleanup{workers, name};
  auto spawn = [&](std::uint32_t w) {
    const std::uint64_t seed = rng();
    const pid_t pid = fork();
    if (pid == 0) {
      int code = 3;
      try {
        code = run_worker(name, w, shared->slots[w], seed);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "soak: worker %u: %s\n", w, e.what());
      }
      _exit(code);
    }
    workers[w] = pid;
  };
  for (std::uint32_t w = 0; w < o.processes; ++w) spawn(w);

  std::uint64_t kills = 0, stops = 0, worker_failures = 0;
  const auto start = steady_clock::now();
  const auto end = start + duration_cast<steady_clock::duration>(duration<double>(o.seconds));
  auto next_report = start + seconds(10);
  while (steady_clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(5 + rng() % 45));
    const std::uint32_t w = static_cast<std::uint32_t>(rng() % o.processes);
    if (rng() % 3 == 0) {  // SIGSTOP for 1-100 ms, then SIGCONT
      kill(workers[w], SIGSTOP);
      std::this_thread::sleep_for(milliseconds(1 + rng() % 100));
      kill(workers[w], SIGCONT);
      ++stops;
    } else if (rng() % 2 == 0) {
      kill(workers[w], SIGKILL);
      int status = 0;
      waitpid(workers[w], &status, 0);
      ++kills;
      spawn(w);
    }
    // A worker that exited on its own failed (it reports why on stderr): replace it.
    for (int status = 0;;) {
      const pid_t gone = waitpid(-1, &status, WNOHANG);
      if (gone <= 0) break;
      ++worker_failures;
      if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "soak: worker pid %d was killed by signal %d (%s), not by the soak\n", gone, WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
      } else {
        std::fprintf(stderr, "soak: worker pid %d exited with status %d\n", gone, WEXITSTATUS(status));
      }
      for (std::uint32_t v = 0; v < o.processes; ++v) {
        if (workers[v] == gone) spawn(v);
      }
    }
    if (steady_clock::now() >= next_report) {
      std::uint64_t ops = 0;
      for (std::uint32_t v = 0; v < o.processes; ++v) ops += shared->slots[v].operations.load();
      std::fprintf(stderr, "soak %s: %.0f/%.0f s, %llu operations, %llu kills, %llu stops\n", o.engine.c_str(),
                   duration<double>(steady_clock::now() - start).count(), o.seconds, static_cast<unsigned long long>(ops),
                   static_cast<unsigned long long>(kills), static_cast<unsigned long long>(stops));
      next_report += seconds(10);
    }
  }
  cleanup.kill_workers();

  // Final verification: every acknowledged write of every slot, then check.
  std::uint64_t ops = 0, lost = 0, stale = 0;
  {
    shmht::Table t = shmht::Table::open(name);
    for (std::uint32_t w = 0; w < o.processes; ++w) {
      Ledger& l = shared->slots[w];
      settle_in_flight(t, l, w);
      for (std::uint32_t i = 0; i < kKeysPerWorker; ++i) expect_acknowledged(t, l, w, i);
      ops += l.operations.load();
      lost += l.lost.load();
      stale += l.stale.load();
      worker_failures += l.errors.load();
      if (l.errors.load() != 0) std::fprintf(stderr, "soak: worker %u's first error: %s\n", w, l.first_error);
    }
  }
  const shmht::CheckReport report = shmht::check_table(name);
  const shmht::CheckReport repaired = shmht::check_table(name, {.reclaim_leaked = true});
  for (const std::string& p : report.problems) std::fprintf(stderr, "soak: check: %s\n", p.c_str());

  char line[512];
  std::snprintf(line, sizeof line,
                "{\"engine\": \"%s\", \"processes\": %u, \"seconds\": %.0f, \"operations\": %llu, \"kills\": %llu, "
                "\"stops\": %llu, \"lost\": %llu, \"stale\": %llu, \"worker_errors\": %llu, \"check_clean\": %s, "
                "\"leaked_bytes\": %llu, \"reclaimed_bytes\": %llu}",
                o.engine.c_str(), o.processes, o.seconds, static_cast<unsigned long long>(ops),
                static_cast<unsigned long long>(kills), static_cast<unsigned long long>(stops),
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(stale),
                static_cast<unsigned long long>(worker_failures), report.clean ? "true" : "false",
                static_cast<unsigned long long>(report.unaccounted_bytes),
                static_cast<unsigned long long>(repaired.reclaimed_bytes));
  std::printf("%s\n", line);
  if (!o.json.empty()) std::ofstream(o.json, std::ios::app) << line << "\n";
  const bool ok = lost == 0 && stale == 0 && worker_failures == 0 && report.clean && repaired.clean;
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "shmht-soak: %s\n", e.what());
  return 2;
}
