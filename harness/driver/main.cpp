// shmht-driver - runs one benchmark cell: N worker processes on one store, one workload,
// and prints ONE JSON object (schema "shmht-harness-run/1") on stdout.
//
//   shmht-driver --store global --processes 2 --keys 100000 --mix get=90,assign=10 --duration 1
//   shmht-driver --list-stores        JSON: every store, whether it is built, its backings
//   shmht-driver --list-engines       JSON: our engines and whether each is built
//
// Exit status: 0 ok; 1 the run failed (the JSON says why); 2 usage error (stderr, no
// JSON); 3 skipped: the store or backing is not available here (the JSON says why).
// Options are parsed by CLI11 (--help lists them); the JSON is written by nlohmann::json.
//
// The parent never runs the workload. It creates the store, prefills it, forks the
// workers, releases them together, and waits at most --timeout seconds: workers that
// overrun are killed. Whatever happens, it removes every file and segment it made
// before printing the result (names start with --name-prefix, so a caller can sweep up
// after a driver that was itself killed).
#include <hwloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "backing.hpp"
#include "cli/number_option.hpp"
#include "json.hpp"
#include "machine.hpp"
#include "placement.hpp"
#include "seed_scenario.hpp"
#include "shared_control.hpp"
#include "shmht/engine.hpp"
#include "store.hpp"
#include "worker.hpp"
#include "workload.hpp"

namespace shmht::harness {
namespace {

constexpr int kExitOk = 0, kExitFailed = 1, kExitUsage = 2, kExitSkipped = 3;
constexpr const char* kSchema = "shmht-harness-run/1";

const char* const kDescription =
    "shmht-driver - runs one benchmark cell (N worker processes on one store, one workload) and prints\n"
    "one JSON object (schema shmht-harness-run/1) on stdout.\n"
    "  shmht-driver --store seqlock --processes 2 --keys 100000 --mix get=90,assign=10 --duration 1\n"
    "  shmht-driver --list-stores | --list-engines\n"
    "Exit status: 0 ok; 1 the run failed (the JSON says why); 2 usage error (stderr, no JSON);\n"
    "3 skipped: the store or backing is not available here (the JSON says why).";

// A command line that makes sense option by option but not as a whole.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --stop-one: the parent SIGSTOPs worker 0 for stopped_ms in every period_ms of the timed
// phase (issue 22: what a preempted or paused process costs the others).
struct StopOne {
  std::uint32_t period_ms = 0, stopped_ms = 0;
};

std::optional<StopOne> parse_stop_one(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) return std::nullopt;
  const auto period = cli::parse_number<std::uint32_t>(text.substr(0, colon));
  const auto stopped = cli::parse_number<std::uint32_t>(text.substr(colon + 1));
  if (!period || !stopped || *stopped == 0 || *stopped >= *period) return std::nullopt;
  return StopOne{*period, *stopped};
}

std::optional<LatencyTiming> parse_latency_timing(const std::string& text) {
  if (text == "every") return LatencyTiming::kEvery;
  if (text == "sampled") return LatencyTiming::kSampled;
  return std::nullopt;
}

struct DriverOptions {
  std::string store = "global";
  std::uint32_t processes = 1;
  WorkloadSpec workload;
  std::string workload_name;
  std::string backing = "tmpfs";
  CpuPolicy placement = CpuPolicy::kCompact;
  MemoryPolicy memory = MemoryPolicy::kFirstTouch;
  std::uint32_t batch = 64;
  double timeout_s = 0;  // 0: derived from the workload
  std::string name_prefix;
  bool list_stores = false, list_engines = false;
  std::uint64_t start_capacity = 0;  // 0: --keys (a shmht table that never grows)
  LatencyTiming latency = LatencyTiming::kEvery;
  std::optional<StopOne> stop_one;  // --stop-one PERIOD_MS:STOPPED_MS
};

std::array<std::uint32_t, kOpTypes> parse_mix(const std::string& text) {
  std::array<std::uint32_t, kOpTypes> mix{};
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    const auto eq = part.find('=');
    const std::string name = part.substr(0, eq);
    const auto it = std::find(kOpNames.begin(), kOpNames.end(), name);
    const auto weight = eq == std::string::npos ? std::nullopt : cli::parse_number<std::uint32_t>(part.substr(eq + 1));
    if (it == kOpNames.end() || !weight) {
      throw CLI::ValidationError("--mix", "'" + part + "' is not OP=WEIGHT with OP one of get, insert, assign, erase");
    }
    mix[static_cast<std::size_t>(it - kOpNames.begin())] = *weight;
  }
  return mix;
}

// Adds `flag` taking one of `names`, stored in `target` as `parse` makes it.
template <class Value, class Parse>
void add_choice_option(CLI::App& app, const std::string& flag, Value& target, Parse parse,
                       const std::vector<std::string>& names, const std::string& description) {
  std::string alternatives;  // "a, b or c"
  for (std::size_t i = 0; i < names.size(); ++i) {
    alternatives += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  }
  app.add_option_function<std::string>(
         flag,
         [&target, parse, flag, alternatives](const std::string& text) {
           const std::optional<Value> value = parse(text);
           if (!value) throw CLI::ValidationError(flag, "'" + text + "' is not " + alternatives);
           target = *value;
         },
         description)
      ->type_name(CLI::detail::join(names, "|"));
}

std::optional<KeyDistribution> parse_distribution(const std::string& text) {
  if (text == "uniform") return KeyDistribution::kUniform;
  if (text == "zipf") return KeyDistribution::kZipf;
  return std::nullopt;
}

std::optional<Scenario> parse_scenario(const std::string& text) {
  if (text == "mix") return Scenario::kMix;
  if (text == "seed") return Scenario::kSeed;
  return std::nullopt;
}

// Declares every flag on `app`, writing into `o`. Returns the --prefill option (whether
// it was given matters to the seed scenario).
CLI::Option* declare_options(CLI::App& app, DriverOptions& o) {
  WorkloadSpec& w = o.workload;
  app.add_flag("--list-stores", o.list_stores, "print every store (JSON): whether it is built, its backings; exit");
  app.add_flag("--list-engines", o.list_engines, "print our engines (JSON) and whether each is built; exit");
  app.add_option("--store", o.store, "the store to run (see --list-stores)")->capture_default_str();
  cli::add_number_option(app, "--processes", o.processes, "worker processes (at least 1)");
  cli::add_number_option(app, "--keys", w.keys, "distinct keys (the store's capacity)");
  cli::add_number_option(app, "--start-capacity", o.start_capacity,
                         "shmht only: the table's starting capacity, below --keys to make it grow during prefill (0: --keys)");
  cli::add_number_option(app, "--key-bytes", w.key_bytes, "bytes per key");
  cli::add_number_option(app, "--value-bytes", w.value_bytes, "bytes per value");
  app.add_option_function<std::string>("--mix", [&w](const std::string& text) { w.mix = parse_mix(text); },
                                       "operation weights, e.g. get=90,assign=10 (default get=90,assign=10)")
      ->type_name("get=W,insert=W,assign=W,erase=W");
  add_choice_option(app, "--distribution", w.distribution, parse_distribution, {"uniform", "zipf"},
                    "how keys are chosen (default uniform)");
  cli::add_number_option(app, "--zipf-theta", w.zipf_theta, "zipf skew");
  CLI::Option* prefill = cli::add_number_option(app, "--prefill", w.prefill,
                                                "fraction of the keys inserted before the timed phase (seed: 0)");
  cli::add_number_option(app, "--ops", w.total_ops, "operations in all, split over the workers (or --duration)");
  cli::add_number_option(app, "--duration", w.duration_s, "seconds to run (or --ops)");
  cli::add_number_option(app, "--seed", w.seed, "random seed");
  add_choice_option(app, "--scenario", w.scenario, parse_scenario, {"mix", "seed"},
                    "mix: the timed mix; seed: pyshmht's multi-process test (default mix)");
  cli::add_number_option(app, "--lockstep", w.lockstep_every, "seed: all workers meet every N sets (0: never)");
  app.add_option("--backing", o.backing, "where a file-backed store lives: tmpfs, disk, memfd or hugepages")
      ->capture_default_str();
  add_choice_option(app, "--placement", o.placement, parse_cpu_policy, {"compact", "scatter", "none"},
                    "how workers are pinned to CPUs (default compact)");
  add_choice_option(app, "--memory", o.memory, parse_memory_policy, {"first-touch", "local", "interleave"},
                    "NUMA memory policy (default first-touch)");
  cli::add_number_option(app, "--batch", o.batch,
                         "operations per batch: lmdb-batched's writes per transaction, redis-pipelined's commands "
                         "per round trip (at least 1)");
  cli::add_number_option(app, "--timeout", o.timeout_s, "seconds before workers are killed (0: 3 x duration + 60, or 300)");
  app.add_option("--name-prefix", o.name_prefix, "prefix of every file and segment the run makes")
      ->capture_default_str();
  app.add_option("--workload-name", o.workload_name, "a label for the workload, copied into the result");
  add_choice_option(app, "--latency", o.latency, parse_latency_timing, {"every", "sampled"},
                    "which operations are timed: every one (p99.99 and max over all ops; two clock reads per op) "
                    "or every k-th (the cheaper sampling of earlier drivers) (default every)");
  app.add_option_function<std::string>(
         "--stop-one",
         [&o](const std::string& text) {
           o.stop_one = parse_stop_one(text);
           if (!o.stop_one) {
             throw CLI::ValidationError("--stop-one", "'" + text + "' is not PERIOD_MS:STOPPED_MS with 0 < STOPPED_MS < PERIOD_MS");
           }
         },
         "SIGSTOP worker 0 for STOPPED_MS in the middle of every PERIOD_MS of the timed phase, e.g. 1000:100 "
         "(default: never)")
      ->type_name("PERIOD_MS:STOPPED_MS");
  return prefill;
}

// The checks that need several options at once, and the derived defaults.
void finish_options(DriverOptions& o, bool prefill_given) {
  if (o.processes == 0) throw UsageError("--processes must be at least 1");
  if (o.batch == 0) throw UsageError("--batch must be at least 1");
  if (o.stop_one && o.workload.scenario == Scenario::kSeed) {
    throw UsageError("--stop-one applies to the timed mix, not to --scenario seed");
  }
  if (o.workload.scenario == Scenario::kSeed) {
    if (!prefill_given) o.workload.prefill = 0;  // the scenario writes its own keys
    if (o.processes > seed_scenario::kMaxProcesses) {
      throw UsageError("--scenario seed names processes by the letters of pyshmht's test: at most " +
                       std::to_string(seed_scenario::kMaxProcesses) + " processes");
    }
  }
  if (const auto problem = validate(o.workload)) throw UsageError("workload: " + *problem);
  if (o.timeout_s == 0) o.timeout_s = o.workload.duration_s > 0 ? o.workload.duration_s * 3 + 60 : 300;
}

// ---------------------------------------------------------------------------------------
// --list-stores / --list-engines

void list_stores() {
  Json stores = Json::array();
  for (const StoreKind& k : store_kinds()) {
    const auto reason = k.unavailable_reason();
    Json backings = Json::array();
    for (BackingKind b : k.backings) backings.push_back(backing_name(b));
    stores.push_back({
        {"name", k.name},
        {"family", store_family_name(k.family)},
        {"description", k.description},
        {"built", !reason.has_value()},
        {"unavailable_reason", reason},
        {"process_private", k.process_private},
        {"backings", backings},
    });
  }
  Json backings = Json::object();
  for (BackingKind b : {BackingKind::kTmpfs, BackingKind::kDisk, BackingKind::kMemfd, BackingKind::kHugePages}) {
    const BackingProbe probe = probe_backing(b);
    Json& entry = backings[std::string(backing_name(b))];
    entry["available"] = probe.backing.has_value();
    if (probe.backing) {
      entry["directory"] = probe.backing->directory;
      entry["filesystem"] = probe.backing->filesystem;
    } else {
      entry["unavailable_reason"] = probe.unavailable_reason;
    }
  }
  print_json(std::cout, {{"schema", "shmht-harness-stores/1"}, {"stores", stores}, {"backings", backings}});
}

void list_engines() {
  Json engines = Json::array();
  for (Engine e : kAllEngines) engines.push_back({{"name", engine_name(e)}, {"built", engine_is_built(e)}});
  print_json(std::cout, {{"engines", engines}});
}

// ---------------------------------------------------------------------------------------
// One run

// Everything the result reports besides the configuration.
struct RunOutcome {
  std::string status = "ok";  // ok | failed | skipped
  std::string error;
  std::vector<WorkerPlacement> plan;
  TopologySummary topology;
  std::optional<Backing> backing;
  std::vector<pid_t> pids;
  std::vector<int> exit_status;  // per worker: wait status, -1 if never reaped
  std::vector<bool> killed;
  ControlBlock* control = nullptr;
  Footprint footprint;
  std::optional<ServerUsage> server;  // over the timed phase, for stores served by a process
  double create_s = 0, prefill_s = 0, wall_s = 0;
  std::uint32_t stops = 0;  // --stop-one: SIGSTOPs sent to worker 0
  double stopped_s = 0;     // and the time from each SIGSTOP to its SIGCONT, summed
};

// Operations per round trip in the timed phase.
std::uint32_t pipeline_depth(const DriverOptions& o, const StoreKind* kind) {
  return kind && kind->pipelined ? o.batch : 1;
}

// The server's CPU time between two readings (the start and the end of the timed phase).
std::optional<ServerUsage> timed_phase_usage(const std::optional<ServerUsage>& before,
                                             const std::optional<ServerUsage>& after) {
  if (!before || !after) return std::nullopt;
  ServerUsage used = *after;
  used.user_s -= before->user_s;
  used.sys_s -= before->sys_s;
  return used;
}

class Topology {
 public:
  Topology() {
    hwloc_topology_init(&topology_);
    hwloc_topology_load(topology_);
  }
  ~Topology() { hwloc_topology_destroy(topology_); }
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  hwloc_topology_t get() const { return topology_; }

 private:
  hwloc_topology_t topology_{};
};

double seconds_since(std::uint64_t start_ns) { return static_cast<double>(monotonic_ns() - start_ns) / 1e9; }

void kill_workers(RunOutcome& r) {
  for (std::size_t i = 0; i < r.pids.size(); ++i) {
    if (r.exit_status[i] == -1) {
      kill(r.pids[i], SIGKILL);
      r.killed[i] = true;
    }
  }
  for (std::size_t i = 0; i < r.pids.size(); ++i) {
    if (r.exit_status[i] == -1) {
      int status = 0;
      waitpid(r.pids[i], &status, 0);
      r.exit_status[i] = status;
    }
  }
}

// Reaps every worker that has exited; returns how many are still running.
std::size_t reap_exited(RunOutcome& r) {
  std::size_t running = 0;
  for (std::size_t i = 0; i < r.pids.size(); ++i) {
    if (r.exit_status[i] != -1) continue;
    int status = 0;
    if (waitpid(r.pids[i], &status, WNOHANG) == r.pids[i]) {
      r.exit_status[i] = status;
    } else {
      ++running;
    }
  }
  return running;
}

// Waits until `done()` or the deadline; SIGCHLD wakes us early, SIGINT/SIGTERM/SIGHUP
// abort. `act(now)` does whatever is due at `now` and returns when it next needs to run
// (UINT64_MAX: never). Returns "" or why it stopped waiting.
template <class Done, class Act>
std::string wait_until(RunOutcome& r, const sigset_t& signals, std::uint64_t deadline_ns, long poll_ns, Done done,
                       Act act) {
  for (;;) {
    reap_exited(r);
    if (done()) return "";
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return "timeout";
    const std::uint64_t wake = std::min({deadline_ns, now + static_cast<std::uint64_t>(poll_ns), act(now)});
    const std::uint64_t wait_ns = wake > now ? wake - now : 0;
    timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    const int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) return "interrupted by signal " + std::to_string(sig);
  }
}

template <class Done>
std::string wait_until(RunOutcome& r, const sigset_t& signals, std::uint64_t deadline_ns, long poll_ns, Done done) {
  return wait_until(r, signals, deadline_ns, poll_ns, done, [](std::uint64_t) { return UINT64_MAX; });
}

// --stop-one's schedule, kept by the parent while it waits for the timed phase: worker 0
// is stopped over [k P + (P - S) / 2, k P + (P + S) / 2) after the start, centred in each
// period P (a 1 s phase with 1000:100 has one stop, from 450 to 550 ms), for every k whose
// stop begins before the phase's planned end (in --ops mode: while the worker runs). A
// window the parent wakes too late for entirely is skipped, never shifted, so no stop is
// longer than S; `stops` counts the ones made. The worker is continued as soon as it
// should be, when it exits, by finish(), and by the destructor on any other way out.
class WorkerStopper {
 public:
  WorkerStopper(const std::optional<StopOne>& plan, pid_t pid, std::uint64_t start_ns, std::uint64_t end_ns)
      : plan_(plan), pid_(pid), start_ns_(start_ns), end_ns_(end_ns) {}
  ~WorkerStopper() { finish(); }
  WorkerStopper(const WorkerStopper&) = delete;
  WorkerStopper& operator=(const WorkerStopper&) = delete;

  // Sends what is due at `now` while the worker is `running`; returns when to call again.
  std::uint64_t act(std::uint64_t now, bool running) {
    if (!plan_) return UINT64_MAX;
    const std::uint64_t period = plan_->period_ms * 1'000'000ULL, stopped = plan_->stopped_ms * 1'000'000ULL;
    const std::uint64_t offset = (period - stopped) / 2;
    if (stopped_) {
      const std::uint64_t resume_at = window_begin_ + stopped;
      if (now < resume_at && running) return resume_at;
      resume(now);
    }
    for (; running; ++next_window_) {
      const std::uint64_t begin = start_ns_ + next_window_ * period + offset;
      if (begin >= end_ns_) break;
      if (now < begin) return begin;
      if (now >= begin + stopped) continue;  // woke too late for this window: skip it
      if (kill(pid_, SIGSTOP) == 0) {
        stopped_ = true;
        window_begin_ = begin;
        since_ns_ = now;
        ++stops_;
      }
      ++next_window_;
      return begin + stopped;
    }
    return UINT64_MAX;
  }
  void finish() { resume(monotonic_ns()); }
  std::uint32_t stops() const { return stops_; }
  double stopped_s() const { return static_cast<double>(stopped_ns_) / 1e9; }

 private:
  void resume(std::uint64_t now) {
    if (!stopped_) return;
    kill(pid_, SIGCONT);
    stopped_ = false;
    stopped_ns_ += now - since_ns_;
  }

  std::optional<StopOne> plan_;
  pid_t pid_;
  std::uint64_t start_ns_, end_ns_;
  std::uint64_t next_window_ = 0, window_begin_ = 0, since_ns_ = 0, stopped_ns_ = 0;
  bool stopped_ = false;
  std::uint32_t stops_ = 0;
};

bool any_worker_gone_before_ready(const RunOutcome& r) {
  for (std::size_t i = 0; i < r.pids.size(); ++i) {
    if (r.exit_status[i] != -1) return true;
  }
  return false;
}

std::string describe_worker_failures(const RunOutcome& r) {
  std::string out;
  for (std::size_t i = 0; i < r.pids.size(); ++i) {
    const WorkerReport& w = r.control->reports[i];
    if (w.state.load(std::memory_order_acquire) == WorkerState::kDone) continue;
    out += (out.empty() ? "" : "; ") + std::string("worker ") + std::to_string(i) + ": ";
    if (w.error[0]) {
      out += w.error;
    } else if (r.killed[i]) {
      out += "killed by the driver";
    } else if (r.exit_status[i] != -1 && WIFSIGNALED(r.exit_status[i])) {
      out += std::string("died of signal ") + strsignal(WTERMSIG(r.exit_status[i]));
    } else {
      out += "exited without a report";
    }
  }
  return out;
}

void run(const DriverOptions& o, const StoreKind& kind, hwloc_topology_t topology, RunOutcome& r) {
  r.plan = plan_placement(topology, o.placement, static_cast<int>(o.processes));
  const std::vector<int> nodes_used = numa_nodes_used(topology, r.plan);

  StoreParams params;
  params.name_prefix = o.name_prefix;
  params.capacity = o.workload.keys;
  params.start_capacity = o.start_capacity != 0 ? o.start_capacity : o.workload.keys;
  params.key_bytes = o.workload.key_bytes;
  params.value_bytes = o.workload.value_bytes;
  params.processes = o.processes;
  params.batch = o.batch;
  if (r.backing) params.backing = *r.backing;

  // The parent prefills, so it takes the memory policy the workers will have (worker
  // 0's node for "local"): prefilled pages land where the policy says.
  const WorkerPlacement parent_placement = r.plan.empty() ? WorkerPlacement{} : r.plan[0];
  bind_process_memory(topology, o.memory, parent_placement, nodes_used);

  // Signals the parent waits for are blocked so sigtimedwait can take them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  sigprocmask(SIG_BLOCK, &signals, nullptr);

  const std::uint64_t started = monotonic_ns();
  const auto deadline = started + static_cast<std::uint64_t>(o.timeout_s * 1e9);
  const std::uint64_t create_start = monotonic_ns();
  std::unique_ptr<Store> store = kind.create(params);
  r.create_s = seconds_since(create_start);
  // destroy() runs on every path out of here, exceptions included.
  struct StoreCleanup {
    Store& store;
    ~StoreCleanup() { store.destroy(); }
  } cleanup{*store};

  const std::uint64_t prefill_start = monotonic_ns();
  if (!kind.process_private) {
    std::unique_ptr<StoreSession> session = store->attach();
    prefill(*session, o.workload, o.batch);
  }
  r.prefill_s = seconds_since(prefill_start);
  store->before_fork();

  // Zipf's zeta(n) is computed once here and inherited by the workers.
  const KeyChooser keys(o.workload);
  const OpMix mix(o.workload.mix);
  r.control = map_control_block(o.processes);
  r.pids.assign(o.processes, 0);
  r.exit_status.assign(o.processes, -1);
  r.killed.assign(o.processes, false);
  std::cout.flush();
  std::cerr.flush();
  for (std::uint32_t i = 0; i < o.processes; ++i) {
    WorkerContext c;
    c.index = i;
    c.processes = o.processes;
    if (o.workload.total_ops > 0) {
      c.ops = o.workload.total_ops / o.processes + (i < o.workload.total_ops % o.processes ? 1 : 0);
    }
    c.spec = &o.workload;
    c.keys = &keys;
    c.mix = &mix;
    c.store = store.get();
    c.prefill_here = kind.process_private;
    c.pipeline_depth = pipeline_depth(o, &kind);
    c.latency_timing = o.latency;
    c.topology = topology;
    c.placement = r.plan[i];
    c.memory_policy = o.memory;
    c.nodes_used = nodes_used;
    c.control = r.control;
    const pid_t pid = fork();
    if (pid < 0) {
      r.pids.resize(i);
      r.exit_status.resize(i);
      r.killed.resize(i);
      kill_workers(r);
      throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) run_worker(c);
    r.pids[i] = pid;
  }

  // Barrier: every worker attached (or one gave up), then all start together.
  std::string stop = wait_until(r, signals, deadline, 1'000'000, [&] {
    return r.control->ready.load(std::memory_order_acquire) == o.processes || any_worker_gone_before_ready(r);
  });
  if (stop.empty() && r.control->ready.load(std::memory_order_acquire) == o.processes) {
    const std::optional<ServerUsage> server_before = store->server_usage();
    release_workers(*r.control);
    const std::uint64_t phase_end = o.workload.total_ops > 0 ? UINT64_MAX
                                    : r.control->go_ns + static_cast<std::uint64_t>(o.workload.duration_s * 1e9);
    WorkerStopper stopper(o.stop_one, r.pids[0], r.control->go_ns, phase_end);
    stop = wait_until(r, signals, deadline, 1'000'000'000, [&] { return reap_exited(r) == 0; },
                      [&](std::uint64_t now) { return stopper.act(now, r.exit_status[0] == -1); });
    stopper.finish();  // before any kill below: no worker is left stopped
    r.stops = stopper.stops();
    r.stopped_s = stopper.stopped_s();
    r.server = timed_phase_usage(server_before, store->server_usage());
  } else if (stop.empty()) {
    stop = "a worker exited before the start";
  }
  if (!stop.empty()) kill_workers(r);
  r.wall_s = seconds_since(started);

  const std::string failures = describe_worker_failures(r);
  if (!stop.empty() || !failures.empty()) {
    r.status = "failed";
    r.error = stop.empty() ? failures : stop + (failures.empty() ? "" : "; " + failures);
  }
  try {
    r.footprint = store->footprint();
  } catch (const std::exception& e) {
    r.footprint.location = std::string("unavailable: ") + e.what();
  }
}

// ---------------------------------------------------------------------------------------
// The result

struct Percentiles {
  std::optional<double> p50, p99, p999;
  std::size_t samples = 0;
};

Percentiles percentiles(std::vector<std::uint32_t> samples) {
  Percentiles p;
  p.samples = samples.size();
  if (samples.empty()) return p;
  auto at = [&](double q) {
    const auto k = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1));
    std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k), samples.end());
    return static_cast<double>(samples[k]);
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  return p;
}

const char* latency_timing_name(LatencyTiming timing) {
  return timing == LatencyTiming::kEvery ? "every" : "sampled";
}

// latency_ns: percentiles from the histogram of every timed operation (all of them with
// --latency every), its exact maximum, and under "sampled" the exact percentiles of the
// kept samples (every k-th op), which is how earlier drivers computed p50/p99/p999.
Json latency_json(const LatencyHistogram& histogram, std::vector<std::uint32_t> samples, LatencyTiming timing,
                  double clock_read_ns) {
  const bool any = histogram.count() > 0;
  auto at = [&](double q) { return any ? std::optional<double>(static_cast<double>(histogram.percentile(q))) : std::nullopt; };
  const Percentiles sampled = percentiles(samples);
  const auto sample_max = samples.empty() ? std::nullopt
                                          : std::optional<double>(*std::max_element(samples.begin(), samples.end()));
  return {
      {"p50", at(0.50)},
      {"p99", at(0.99)},
      {"p999", at(0.999)},
      {"p9999", at(0.9999)},
      {"max", any ? std::optional<double>(static_cast<double>(histogram.max())) : std::nullopt},
      {"samples", histogram.count()},
      {"method", "histogram"},
      {"timed", latency_timing_name(timing)},
      {"relative_error", LatencyHistogram::kRelativeError},
      {"clock_read_ns", clock_read_ns},
      {"sampled",
       {{"p50", sampled.p50}, {"p99", sampled.p99}, {"p999", sampled.p999}, {"max", sample_max},
        {"samples", sampled.samples}}},
  };
}

// Sums over workers, written as the "aggregate" object and per worker.
struct Figures {
  std::uint64_t ops[kOpTypes] = {}, misses[kOpTypes] = {};
  std::uint64_t errors = 0, user_us = 0, sys_us = 0, minor = 0, major = 0, voluntary = 0, involuntary = 0;
  std::uint64_t failed_cas = 0, helped = 0;
  std::uint64_t start_ns = UINT64_MAX, end_ns = 0;
  std::vector<std::uint32_t> samples;
  LatencyHistogram histogram;
  double clock_read_ns_sum = 0;
  std::size_t workers = 0;

  void add(const WorkerReport& w) {
    for (std::size_t i = 0; i < kOpTypes; ++i) {
      ops[i] += w.ops[i];
      misses[i] += w.misses[i];
    }
    errors += w.errors;
    user_us += w.user_us;
    sys_us += w.sys_us;
    minor += w.minor_faults;
    major += w.major_faults;
    voluntary += w.voluntary_switches;
    involuntary += w.involuntary_switches;
    failed_cas += w.failed_cas;
    helped += w.helped;
    if (w.start_ns) start_ns = std::min(start_ns, w.start_ns);
    end_ns = std::max(end_ns, w.end_ns);
    samples.insert(samples.end(), w.latency_ns, w.latency_ns + w.sample_count);
    histogram.merge(w.latency_histogram);
    clock_read_ns_sum += w.clock_read_ns;
    ++workers;
  }
  std::uint64_t total_ops() const { return ops[0] + ops[1] + ops[2] + ops[3]; }
  double elapsed_s() const { return end_ns > start_ns ? static_cast<double>(end_ns - start_ns) / 1e9 : 0; }

  // The fields the "aggregate" object and each worker's share, added to `j`.
  void add_to(Json& j, LatencyTiming timing) const {
    const double total = static_cast<double>(total_ops());
    const double cpu_s = static_cast<double>(user_us + sys_us) / 1e6;
    auto per_op = [&](double value) { return total > 0 ? value / total : 0.0; };
    Json ops_by_type = Json::object(), misses_by_type = Json::object();
    for (std::size_t i = 0; i < kOpTypes; ++i) {
      ops_by_type[std::string(kOpNames[i])] = ops[i];
      misses_by_type[std::string(kOpNames[i])] = misses[i];
    }
    j["ops"] = total_ops();
    j["ops_by_type"] = ops_by_type;
    j["misses_by_type"] = misses_by_type;
    j["errors"] = errors;
    j["elapsed_s"] = elapsed_s();
    j["throughput_ops_s"] = elapsed_s() > 0 ? total / elapsed_s() : 0.0;
    j["latency_ns"] = latency_json(histogram, samples, timing, workers ? clock_read_ns_sum / static_cast<double>(workers) : 0.0);
    j["cpu"] = {
        {"user_s", static_cast<double>(user_us) / 1e6},
        {"sys_s", static_cast<double>(sys_us) / 1e6},
        {"sys_share", cpu_s > 0 ? static_cast<double>(sys_us) / 1e6 / cpu_s : 0.0},
        {"cpu_s_per_mop", per_op(cpu_s) * 1e6},
    };
    j["faults"] = {{"minor", minor}, {"major", major}, {"per_op", per_op(static_cast<double>(minor + major))}};
    j["context_switches"] = {
        {"voluntary", voluntary},
        {"involuntary", involuntary},
        {"per_op", per_op(static_cast<double>(voluntary + involuntary))},
    };
    // The lock-free engine's coordination costs (zeros for every other store).
    j["lockfree"] = {
        {"failed_cas", failed_cas},
        {"helped", helped},
        {"failed_cas_per_op", per_op(static_cast<double>(failed_cas))},
        {"helped_per_op", per_op(static_cast<double>(helped))},
    };
  }
};

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buffer;
}

Json config_json(const DriverOptions& o, const StoreKind* kind) {
  const WorkloadSpec& w = o.workload;
  Json mix = Json::object();
  for (std::size_t i = 0; i < kOpTypes; ++i) mix[std::string(kOpNames[i])] = w.mix[i];
  const bool zipf = w.distribution == KeyDistribution::kZipf;
  return {
      {"store", o.store},
      {"store_family", kind ? store_family_name(kind->family) : "unknown"},
      {"processes", o.processes},
      {"backing", o.backing},
      {"placement", cpu_policy_name(o.placement)},
      {"memory_policy", memory_policy_name(o.memory)},
      {"batch", o.batch},
      {"pipeline_depth", pipeline_depth(o, kind)},
      {"timeout_s", o.timeout_s},
      {"start_capacity", o.start_capacity},
      {"latency_timing", latency_timing_name(o.latency)},
      {"stop_one", o.stop_one ? Json{{"period_ms", o.stop_one->period_ms},
                                     {"stopped_ms", o.stop_one->stopped_ms},
                                     {"worker", 0}}
                              : Json(nullptr)},
      {"workload",
       {
           {"name", o.workload_name},
           {"keys", w.keys},
           {"key_bytes", w.key_bytes},
           {"value_bytes", w.value_bytes},
           {"mix", mix},
           {"distribution", zipf ? "zipf" : "uniform"},
           {"zipf_theta", zipf ? std::optional<double>(w.zipf_theta) : std::nullopt},
           {"prefill", w.prefill},
           {"ops", w.total_ops ? std::optional<std::uint64_t>(w.total_ops) : std::nullopt},
           {"duration_s", w.duration_s > 0 ? std::optional<double>(w.duration_s) : std::nullopt},
           {"seed", w.seed},
           {"scenario", w.scenario == Scenario::kSeed ? "seed" : "mix"},
           {"lockstep_every", w.lockstep_every},
       }},
  };
}

// The seed scenario's own figures (seed_scenario.hpp): phases and worker 0's verdict.
Json seed_json(const DriverOptions& o, const RunOutcome& r) {
  const std::size_t reported = r.control ? r.pids.size() : 0;
  if (reported == 0) return nullptr;
  std::uint64_t start = UINT64_MAX, set_end = 0;
  for (std::size_t i = 0; i < reported; ++i) {
    const WorkerReport& w = r.control->reports[i];
    if (w.start_ns) start = std::min(start, w.start_ns);
    set_end = std::max(set_end, w.set_end_ns);
  }
  const WorkerReport& first = r.control->reports[0];
  auto span_s = [](std::uint64_t from, std::uint64_t to) {
    return to > from && from != UINT64_MAX ? std::optional<double>(static_cast<double>(to - from) / 1e9) : std::nullopt;
  };
  auto count = [&](std::uint64_t value) {
    return first.seed_verified ? std::optional<std::uint64_t>(value) : std::nullopt;
  };
  return {
      {"items", o.workload.keys},
      {"items_per_process", seed_scenario::items_per_worker(o.workload.keys, o.processes)},
      {"set_phase_s", span_s(start, set_end)},
      {"iterate_phase_s", span_s(first.iterate_start_ns, first.iterate_end_ns)},
      {"scenario_wall_s", span_s(start, first.iterate_end_ns)},
      {"verified", first.seed_verified},
      {"pass1_entries", count(first.seed_pass1_entries)},
      {"pass2_entries", count(first.seed_pass2_entries)},
      {"keys_expected", count(first.seed_expected)},
      {"keys_missing", count(first.seed_missing)},
      {"keys_duplicated", count(first.seed_duplicated)},
      {"keys_unexpected", count(first.seed_unexpected)},
      {"values_wrong", count(first.seed_values_wrong)},
  };
}

// A store's server process over the timed phase (Redis executes commands on one thread,
// so this is where most of a Redis run's CPU goes); null for stores without one.
Json server_json(const std::optional<ServerUsage>& server, std::uint64_t ops) {
  if (!server) return nullptr;
  const double cpu_s = server->user_s + server->sys_s;
  return {
      {"program", server->program},
      {"version", server->version},
      {"pid", server->pid},
      {"user_s", server->user_s},
      {"sys_s", server->sys_s},
      {"cpu_s_per_mop", ops > 0 ? cpu_s / static_cast<double>(ops) * 1e6 : 0.0},
      {"clock_tick_s", 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK))},
  };
}

// A text field of shared memory: "" as null.
std::optional<std::string> text_or_null(const char* text) {
  return text[0] ? std::optional<std::string>(text) : std::nullopt;
}

Json placement_json(const DriverOptions& o, const RunOutcome& r, std::size_t reported) {
  Json workers = Json::array();
  for (std::size_t i = 0; i < r.plan.size(); ++i) {
    const WorkerPlacement& p = r.plan[i];
    Json worker = {
        {"worker", p.worker},
        {"planned_pu", p.pu_os_index},
        {"core", p.core_index},
        {"numa_node", p.numa_os_index},
        {"package", p.package_index},
        {"shares_core", p.shares_core},
        {"oversubscribed", p.oversubscribed},
    };
    if (i < reported) {
      const WorkerReport& w = r.control->reports[i];
      worker["obtained_cpus"] = std::string(w.cpu_binding);
      worker["obtained_memory_nodes"] = std::string(w.memory_binding);
      worker["obtained_memory_policy"] = std::string(w.memory_policy);
      worker["cpu_binding_error"] = text_or_null(w.cpu_binding_error);
      worker["memory_binding_error"] = text_or_null(w.memory_binding_error);
    }
    workers.push_back(std::move(worker));
  }
  return {
      {"policy", cpu_policy_name(o.placement)},
      {"memory_policy", memory_policy_name(o.memory)},
      {"workers", workers},
  };
}

void write_result(const DriverOptions& o, const StoreKind* kind, const RunOutcome& r) {
  const std::size_t reported = r.control ? r.pids.size() : 0;
  Json result = {
      {"schema", kSchema},
      {"status", r.status},
      {"error", r.error.empty() ? std::nullopt : std::optional<std::string>(r.error)},
      {"date", utc_now()},
      {"config", config_json(o, kind)},
      {"machine", machine_json()},
      {"topology",
       {
           {"packages", r.topology.packages},
           {"numa_nodes", r.topology.numa_nodes},
           {"cores", r.topology.cores},
           {"pus", r.topology.pus},
           {"synthetic", r.topology.synthetic},
       }},
  };
  if (r.backing) {
    result["backing"] = {
        {"kind", backing_name(r.backing->kind)},
        {"directory", r.backing->directory},
        {"filesystem", r.backing->filesystem},
        {"huge_pages", r.backing->huge_pages},
    };
  } else {
    result["backing"] = nullptr;
  }
  result["placement"] = placement_json(o, r, reported);

  auto all_workers = std::make_unique<Figures>();
  Figures& all = *all_workers;
  // With --stop-one: every worker but the stopped one (worker 0), whose own operation that
  // a stop lands in lasts the whole stop. What the others' latencies show is what the stop
  // cost THEM: a lock engine's survivor waits for a lock the stopped worker holds.
  auto survivor_workers = std::make_unique<Figures>();
  Json workers = Json::array();
  std::uint64_t rss_max = 0, rss_sum = 0;
  double attach_max = 0;
  for (std::size_t i = 0; i < reported; ++i) {
    const WorkerReport& w = r.control->reports[i];
    // Figures holds a histogram (15 KiB): on the heap, one worker at a time.
    auto mine = std::make_unique<Figures>();
    mine->add(w);
    all.add(w);
    if (i != 0) survivor_workers->add(w);
    rss_max = std::max(rss_max, w.peak_rss_kb);
    rss_sum += w.peak_rss_kb;
    attach_max = std::max(attach_max, static_cast<double>(w.attach_ns) / 1e9);
    const WorkerState state = w.state.load(std::memory_order_acquire);
    Json worker = {
        {"worker", i},
        {"pid", r.pids[i]},
        {"status", state == WorkerState::kDone ? "done" : r.killed[i] ? "killed" : "failed"},
        {"first_error", text_or_null(w.error)},
        {"sample_stride", w.sample_stride},
        {"attach_s", static_cast<double>(w.attach_ns) / 1e9},
        {"peak_rss_kb", w.peak_rss_kb},
    };
    mine->add_to(worker, o.latency);
    workers.push_back(std::move(worker));
  }
  result["workers"] = std::move(workers);
  Json aggregate = Json::object();
  all.add_to(aggregate, o.latency);
  result["aggregate"] = std::move(aggregate);

  std::optional<double> per_item;
  if (r.footprint.resident_bytes && r.footprint.items && *r.footprint.items > 0) {
    per_item = static_cast<double>(*r.footprint.resident_bytes) / static_cast<double>(*r.footprint.items);
  }
  result["footprint"] = {
      {"location", r.footprint.location},
      {"apparent_bytes", r.footprint.apparent_bytes},
      {"resident_bytes", r.footprint.resident_bytes},
      {"items", r.footprint.items},
      {"resident_bytes_per_item", per_item},
      {"slot_array_bytes", r.footprint.slot_array_bytes},
      {"growths", r.footprint.growths},
      {"migrating", r.footprint.migrating},
  };
  result["memory"] = {{"peak_rss_kb_max", rss_max}, {"peak_rss_kb_sum", rss_sum}};
  result["server"] = server_json(r.server, all.total_ops());
  // What --stop-one did: stops made, and the time worker 0 spent stopped (the parent's
  // SIGSTOP to SIGCONT, summed); null without the option.
  Json survivors = nullptr;
  if (o.stop_one && reported > 1) {
    survivors = Json::object();
    survivor_workers->add_to(survivors, o.latency);
  }
  result["stop_one"] = o.stop_one ? Json{{"worker", 0},
                                         {"pid", r.pids.empty() ? Json(nullptr) : Json(r.pids[0])},
                                         {"period_ms", o.stop_one->period_ms},
                                         {"stopped_ms", o.stop_one->stopped_ms},
                                         {"stops", r.stops},
                                         {"stopped_s", r.stopped_s},
                                         {"survivors", std::move(survivors)}}
                                  : Json(nullptr);
  result["seed"] = o.workload.scenario == Scenario::kSeed ? seed_json(o, r) : Json(nullptr);
  result["timing"] = {
      {"create_s", r.create_s},
      {"attach_s_max", attach_max},
      {"prefill_s", r.prefill_s},
      {"wall_s", r.wall_s},
  };
  print_json(std::cout, result);
}

// One line on stderr for a bad command line, and where help is.
int usage_error(const std::string& why) {
  std::cerr << "shmht-driver: " << why << "\nRun 'shmht-driver --help' for usage.\n";
  return kExitUsage;
}

int main_driver(int argc, char** argv) {
  DriverOptions options;
  options.name_prefix = "shmht-bench-" + std::to_string(getpid()) + "-";
  CLI::App app(kDescription, "shmht-driver");
  const CLI::Option* prefill = declare_options(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
    const std::vector<std::string> stray = app.remaining();
    return usage_error(stray.empty() ? e.what() : "unexpected argument '" + stray.front() + "'");
  }
  if (options.list_stores) {
    list_stores();
    return kExitOk;
  }
  if (options.list_engines) {
    list_engines();
    return kExitOk;
  }
  finish_options(options, prefill->count() > 0);
  const StoreKind* kind = find_store_kind(options.store);
  if (!kind) {
    std::string names;
    for (const StoreKind& k : store_kinds()) names += (names.empty() ? "" : ", ") + k.name;
    throw UsageError("--store: unknown store '" + options.store + "'; known: " + names);
  }

  Topology topology;
  RunOutcome outcome;
  outcome.topology = summarize_topology(topology.get());
  auto skip = [&](const std::string& why) {
    outcome.status = "skipped";
    outcome.error = why;
    write_result(options, kind, outcome);
    return kExitSkipped;
  };
  if (const auto reason = kind->unavailable_reason()) return skip(*reason);
  if (kind->process_private && options.processes > 1) {
    return skip("store '" + kind->name + "' is private to one process; asked for " + std::to_string(options.processes));
  }
  if (!kind->backings.empty()) {
    const auto backing = parse_backing(options.backing);
    if (!backing) throw UsageError("--backing: '" + options.backing + "' is not tmpfs, disk, memfd or hugepages");
    if (std::find(kind->backings.begin(), kind->backings.end(), *backing) == kind->backings.end()) {
      return skip("store '" + kind->name + "' does not support backing '" + options.backing + "'");
    }
    BackingProbe probe = probe_backing(*backing);
    if (!probe.backing) return skip("backing '" + options.backing + "' unavailable: " + probe.unavailable_reason);
    outcome.backing = probe.backing;
  }

  try {
    run(options, *kind, topology.get(), outcome);
  } catch (const std::exception& e) {
    outcome.status = "failed";
    outcome.error = e.what();
  }
  write_result(options, kind, outcome);
  unmap_control_block(outcome.control);
  return outcome.status == "ok" ? kExitOk : kExitFailed;
}

}  // namespace
}  // namespace shmht::harness

int main(int argc, char** argv) {
  try {
    return shmht::harness::main_driver(argc, argv);
  } catch (const shmht::harness::UsageError& e) {
    return shmht::harness::usage_error(e.what());
  }
}
