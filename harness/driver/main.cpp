// shmht-driver - runs one benchmark cell: N worker processes on one store, one workload,
// and prints ONE JSON object (schema "shmht-harness-run/1") on stdout.
//
//   shmht-driver --store global --processes 2 --keys 100000 --mix get=90,assign=10 --duration 1
//   shmht-driver --list-stores        JSON: every store, whether it is built, its backings
//   shmht-driver --list-engines       JSON: our engines and whether each is built
//
// Exit status: 0 ok; 1 the run failed (the JSON says why); 2 usage error (stderr, no
// JSON); 3 skipped: the store or backing is not available here (the JSON says why).
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
#include <charconv>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "backing.hpp"
#include "json_writer.hpp"
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

const char* const kUsage =
    "usage: shmht-driver [--store NAME] [--processes N] [--keys N] [--key-bytes N] [--value-bytes N]\n"
    "                    [--mix get=W,insert=W,assign=W,erase=W] [--distribution uniform|zipf]\n"
    "                    [--zipf-theta T] [--prefill F] (--ops N | --duration S) [--seed N]\n"
    "                    [--backing tmpfs|disk|memfd|hugepages] [--placement compact|scatter|none]\n"
    "                    [--memory first-touch|local|interleave] [--batch N] [--timeout S]\n"
    "                    [--name-prefix P] [--workload-name LABEL] [--scenario mix|seed]\n"
    "                    [--lockstep N]  (seed: all workers meet every N sets)\n"
    "       shmht-driver --list-stores | --list-engines\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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
};

template <class Number>
Number parse_number(const std::string& flag, const std::string& text) {
  Number value{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) throw UsageError(flag + " expects a number, got '" + text + "'");
  if constexpr (std::is_floating_point_v<Number>) {
    if (value < 0) throw UsageError(flag + " must not be negative, got '" + text + "'");
  }
  return value;
}

std::array<std::uint32_t, kOpTypes> parse_mix(const std::string& text) {
  std::array<std::uint32_t, kOpTypes> mix{};
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    const auto eq = part.find('=');
    const std::string name = part.substr(0, eq);
    const auto it = std::find(kOpNames.begin(), kOpNames.end(), name);
    if (eq == std::string::npos || it == kOpNames.end()) {
      throw UsageError("--mix: '" + part + "' is not OP=WEIGHT with OP one of get, insert, assign, erase");
    }
    mix[static_cast<std::size_t>(it - kOpNames.begin())] = parse_number<std::uint32_t>("--mix " + name, part.substr(eq + 1));
  }
  return mix;
}

DriverOptions parse_options(const std::map<std::string, std::string>& flags) {
  DriverOptions o;
  o.name_prefix = "shmht-bench-" + std::to_string(getpid()) + "-";
  for (const auto& [flag, text] : flags) {
    WorkloadSpec& w = o.workload;
    if (flag == "--store") o.store = text;
    else if (flag == "--processes") o.processes = parse_number<std::uint32_t>(flag, text);
    else if (flag == "--keys") w.keys = parse_number<std::uint64_t>(flag, text);
    else if (flag == "--key-bytes") w.key_bytes = parse_number<std::uint32_t>(flag, text);
    else if (flag == "--value-bytes") w.value_bytes = parse_number<std::uint32_t>(flag, text);
    else if (flag == "--mix") w.mix = parse_mix(text);
    else if (flag == "--distribution") {
      if (text == "uniform") w.distribution = KeyDistribution::kUniform;
      else if (text == "zipf") w.distribution = KeyDistribution::kZipf;
      else throw UsageError("--distribution: '" + text + "' is not uniform or zipf");
    } else if (flag == "--zipf-theta") w.zipf_theta = parse_number<double>(flag, text);
    else if (flag == "--prefill") w.prefill = parse_number<double>(flag, text);
    else if (flag == "--ops") w.total_ops = parse_number<std::uint64_t>(flag, text);
    else if (flag == "--duration") w.duration_s = parse_number<double>(flag, text);
    else if (flag == "--seed") w.seed = parse_number<std::uint64_t>(flag, text);
    else if (flag == "--backing") o.backing = text;
    else if (flag == "--placement") {
      const auto p = parse_cpu_policy(text);
      if (!p) throw UsageError("--placement: '" + text + "' is not compact, scatter or none");
      o.placement = *p;
    } else if (flag == "--memory") {
      const auto p = parse_memory_policy(text);
      if (!p) throw UsageError("--memory: '" + text + "' is not first-touch, local or interleave");
      o.memory = *p;
    } else if (flag == "--batch") o.batch = parse_number<std::uint32_t>(flag, text);
    else if (flag == "--timeout") o.timeout_s = parse_number<double>(flag, text);
    else if (flag == "--name-prefix") o.name_prefix = text;
    else if (flag == "--workload-name") o.workload_name = text;
    else if (flag == "--lockstep") w.lockstep_every = parse_number<std::uint32_t>(flag, text);
    else if (flag == "--scenario") {
      if (text == "mix") w.scenario = Scenario::kMix;
      else if (text == "seed") w.scenario = Scenario::kSeed;
      else throw UsageError("--scenario: '" + text + "' is not mix or seed");
    }
    else throw UsageError("unknown option " + flag);
  }
  if (o.processes == 0) throw UsageError("--processes must be at least 1");
  if (o.batch == 0) throw UsageError("--batch must be at least 1");
  if (o.workload.scenario == Scenario::kSeed) {
    if (!flags.contains("--prefill")) o.workload.prefill = 0;  // the scenario writes its own keys
    if (o.processes > seed_scenario::kMaxProcesses) {
      throw UsageError("--scenario seed names processes by the letters of pyshmht's test: at most " +
                       std::to_string(seed_scenario::kMaxProcesses) + " processes");
    }
  }
  if (const auto problem = validate(o.workload)) throw UsageError("workload: " + *problem);
  if (o.timeout_s == 0) o.timeout_s = o.workload.duration_s > 0 ? o.workload.duration_s * 3 + 60 : 300;
  return o;
}

// ---------------------------------------------------------------------------------------
// --list-stores / --list-engines

void list_stores() {
  JsonWriter j(std::cout);
  j.begin_object();
  j.field("schema", "shmht-harness-stores/1");
  j.key("stores");
  j.begin_array();
  for (const StoreKind& k : store_kinds()) {
    const auto reason = k.unavailable_reason();
    j.begin_object();
    j.field("name", k.name);
    j.field("family", store_family_name(k.family));
    j.field("description", k.description);
    j.field("built", !reason.has_value());
    j.field("unavailable_reason", reason);
    j.field("process_private", k.process_private);
    j.key("backings");
    j.begin_array();
    for (BackingKind b : k.backings) j.value(backing_name(b));
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.key("backings");
  j.begin_object();
  for (BackingKind b : {BackingKind::kTmpfs, BackingKind::kDisk, BackingKind::kMemfd, BackingKind::kHugePages}) {
    const BackingProbe probe = probe_backing(b);
    j.key(backing_name(b));
    j.begin_object();
    j.field("available", probe.backing.has_value());
    if (probe.backing) {
      j.field("directory", probe.backing->directory);
      j.field("filesystem", probe.backing->filesystem);
    } else {
      j.field("unavailable_reason", probe.unavailable_reason);
    }
    j.end_object();
  }
  j.end_object();
  j.end_object();
  std::cout << "\n";
}

void list_engines() {
  JsonWriter j(std::cout);
  j.begin_object();
  j.key("engines");
  j.begin_array();
  for (Engine e : kAllEngines) {
    j.begin_object();
    j.field("name", engine_name(e));
    j.field("built", engine_is_built(e));
    j.end_object();
  }
  j.end_array();
  j.end_object();
  std::cout << "\n";
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
  double create_s = 0, prefill_s = 0, wall_s = 0;
};

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
// abort. Returns "" or why it stopped waiting.
template <class Done>
std::string wait_until(RunOutcome& r, const sigset_t& signals, std::uint64_t deadline_ns, long poll_ns, Done done) {
  for (;;) {
    reap_exited(r);
    if (done()) return "";
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return "timeout";
    const std::uint64_t wait_ns = std::min<std::uint64_t>(deadline_ns - now, static_cast<std::uint64_t>(poll_ns));
    timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    const int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) return "interrupted by signal " + std::to_string(sig);
  }
}

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
    prefill(*session, o.workload);
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
    release_workers(*r.control);
    stop = wait_until(r, signals, deadline, 1'000'000'000, [&] { return reap_exited(r) == 0; });
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

void write_percentiles(JsonWriter& j, const Percentiles& p) {
  j.begin_object();
  j.field("p50", p.p50);
  j.field("p99", p.p99);
  j.field("p999", p.p999);
  j.field("samples", p.samples);
  j.end_object();
}

// Sums over workers, written as the "aggregate" object and per worker.
struct Figures {
  std::uint64_t ops[kOpTypes] = {}, misses[kOpTypes] = {};
  std::uint64_t errors = 0, user_us = 0, sys_us = 0, minor = 0, major = 0, voluntary = 0, involuntary = 0;
  std::uint64_t failed_cas = 0, helped = 0;
  std::uint64_t start_ns = UINT64_MAX, end_ns = 0;
  std::vector<std::uint32_t> samples;

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
  }
  std::uint64_t total_ops() const { return ops[0] + ops[1] + ops[2] + ops[3]; }
  double elapsed_s() const { return end_ns > start_ns ? static_cast<double>(end_ns - start_ns) / 1e9 : 0; }

  void write(JsonWriter& j) const {
    const double total = static_cast<double>(total_ops());
    const double cpu_s = static_cast<double>(user_us + sys_us) / 1e6;
    j.field("ops", total_ops());
    j.key("ops_by_type");
    j.begin_object();
    for (std::size_t i = 0; i < kOpTypes; ++i) j.field(kOpNames[i], ops[i]);
    j.end_object();
    j.key("misses_by_type");
    j.begin_object();
    for (std::size_t i = 0; i < kOpTypes; ++i) j.field(kOpNames[i], misses[i]);
    j.end_object();
    j.field("errors", errors);
    j.field("elapsed_s", elapsed_s());
    j.field("throughput_ops_s", elapsed_s() > 0 ? total / elapsed_s() : 0.0);
    j.key("latency_ns");
    write_percentiles(j, percentiles(samples));
    j.key("cpu");
    j.begin_object();
    j.field("user_s", static_cast<double>(user_us) / 1e6);
    j.field("sys_s", static_cast<double>(sys_us) / 1e6);
    j.field("sys_share", cpu_s > 0 ? static_cast<double>(sys_us) / 1e6 / cpu_s : 0.0);
    j.field("cpu_s_per_mop", total > 0 ? cpu_s / total * 1e6 : 0.0);
    j.end_object();
    j.key("faults");
    j.begin_object();
    j.field("minor", minor);
    j.field("major", major);
    j.field("per_op", total > 0 ? static_cast<double>(minor + major) / total : 0.0);
    j.end_object();
    j.key("context_switches");
    j.begin_object();
    j.field("voluntary", voluntary);
    j.field("involuntary", involuntary);
    j.field("per_op", total > 0 ? static_cast<double>(voluntary + involuntary) / total : 0.0);
    j.end_object();
    // The lock-free engine's coordination costs (zeros for every other store).
    j.key("lockfree");
    j.begin_object();
    j.field("failed_cas", failed_cas);
    j.field("helped", helped);
    j.field("failed_cas_per_op", total > 0 ? static_cast<double>(failed_cas) / total : 0.0);
    j.field("helped_per_op", total > 0 ? static_cast<double>(helped) / total : 0.0);
    j.end_object();
  }
};

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buffer;
}

void write_config(JsonWriter& j, const DriverOptions& o, const StoreKind* kind) {
  const WorkloadSpec& w = o.workload;
  j.begin_object();
  j.field("store", o.store);
  j.field("store_family", kind ? store_family_name(kind->family) : "unknown");
  j.field("processes", o.processes);
  j.field("backing", o.backing);
  j.field("placement", cpu_policy_name(o.placement));
  j.field("memory_policy", memory_policy_name(o.memory));
  j.field("batch", o.batch);
  j.field("timeout_s", o.timeout_s);
  j.key("workload");
  j.begin_object();
  j.field("name", o.workload_name);
  j.field("keys", w.keys);
  j.field("key_bytes", w.key_bytes);
  j.field("value_bytes", w.value_bytes);
  j.key("mix");
  j.begin_object();
  for (std::size_t i = 0; i < kOpTypes; ++i) j.field(kOpNames[i], w.mix[i]);
  j.end_object();
  j.field("distribution", w.distribution == KeyDistribution::kZipf ? "zipf" : "uniform");
  if (w.distribution == KeyDistribution::kZipf) {
    j.field("zipf_theta", w.zipf_theta);
  } else {
    j.key("zipf_theta");
    j.null();
  }
  j.field("prefill", w.prefill);
  if (w.total_ops) {
    j.field("ops", w.total_ops);
  } else {
    j.key("ops");
    j.null();
  }
  j.field("duration_s", w.duration_s > 0 ? std::optional<double>(w.duration_s) : std::nullopt);
  j.field("seed", w.seed);
  j.field("scenario", w.scenario == Scenario::kSeed ? "seed" : "mix");
  j.field("lockstep_every", w.lockstep_every);
  j.end_object();
  j.end_object();
}

// The seed scenario's own figures (seed_scenario.hpp): phases and worker 0's verdict.
void write_seed(JsonWriter& j, const DriverOptions& o, const RunOutcome& r) {
  const std::size_t reported = r.control ? r.pids.size() : 0;
  if (reported == 0) {
    j.null();
    return;
  }
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
  j.begin_object();
  j.field("items", o.workload.keys);
  j.field("items_per_process", seed_scenario::items_per_worker(o.workload.keys, o.processes));
  j.field("set_phase_s", span_s(start, set_end));
  j.field("iterate_phase_s", span_s(first.iterate_start_ns, first.iterate_end_ns));
  j.field("scenario_wall_s", span_s(start, first.iterate_end_ns));
  j.field("verified", first.seed_verified);
  auto count = [&](std::uint64_t value) {
    return first.seed_verified ? std::optional<std::uint64_t>(value) : std::nullopt;
  };
  j.field("pass1_entries", count(first.seed_pass1_entries));
  j.field("pass2_entries", count(first.seed_pass2_entries));
  j.field("keys_expected", count(first.seed_expected));
  j.field("keys_missing", count(first.seed_missing));
  j.field("keys_duplicated", count(first.seed_duplicated));
  j.field("keys_unexpected", count(first.seed_unexpected));
  j.field("values_wrong", count(first.seed_values_wrong));
  j.end_object();
}

void write_result(const DriverOptions& o, const StoreKind* kind, const RunOutcome& r) {
  JsonWriter j(std::cout);
  j.begin_object();
  j.field("schema", kSchema);
  j.field("status", r.status);
  j.field("error", r.error.empty() ? std::nullopt : std::optional<std::string>(r.error));
  j.field("date", utc_now());
  j.key("config");
  write_config(j, o, kind);
  j.key("machine");
  write_machine(j);
  j.key("topology");
  j.begin_object();
  j.field("packages", r.topology.packages);
  j.field("numa_nodes", r.topology.numa_nodes);
  j.field("cores", r.topology.cores);
  j.field("pus", r.topology.pus);
  j.field("synthetic", r.topology.synthetic);
  j.end_object();

  j.key("backing");
  if (r.backing) {
    j.begin_object();
    j.field("kind", backing_name(r.backing->kind));
    j.field("directory", r.backing->directory);
    j.field("filesystem", r.backing->filesystem);
    j.field("huge_pages", r.backing->huge_pages);
    j.end_object();
  } else {
    j.null();
  }

  const std::size_t reported = r.control ? r.pids.size() : 0;
  j.key("placement");
  j.begin_object();
  j.field("policy", cpu_policy_name(o.placement));
  j.field("memory_policy", memory_policy_name(o.memory));
  j.key("workers");
  j.begin_array();
  for (std::size_t i = 0; i < r.plan.size(); ++i) {
    const WorkerPlacement& p = r.plan[i];
    j.begin_object();
    j.field("worker", p.worker);
    j.field("planned_pu", p.pu_os_index);
    j.field("core", p.core_index);
    j.field("numa_node", p.numa_os_index);
    j.field("package", p.package_index);
    j.field("shares_core", p.shares_core);
    j.field("oversubscribed", p.oversubscribed);
    if (i < reported) {
      const WorkerReport& w = r.control->reports[i];
      j.field("obtained_cpus", std::string(w.cpu_binding));
      j.field("obtained_memory_nodes", std::string(w.memory_binding));
      j.field("obtained_memory_policy", std::string(w.memory_policy));
      auto text_or_null = [](const char* text) { return text[0] ? std::optional<std::string>(text) : std::nullopt; };
      j.field("cpu_binding_error", text_or_null(w.cpu_binding_error));
      j.field("memory_binding_error", text_or_null(w.memory_binding_error));
    }
    j.end_object();
  }
  j.end_array();
  j.end_object();

  Figures all;
  j.key("workers");
  j.begin_array();
  for (std::size_t i = 0; i < reported; ++i) {
    const WorkerReport& w = r.control->reports[i];
    Figures mine;
    mine.add(w);
    all.add(w);
    j.begin_object();
    j.field("worker", i);
    j.field("pid", r.pids[i]);
    const WorkerState state = w.state.load(std::memory_order_acquire);
    j.field("status", state == WorkerState::kDone ? "done" : r.killed[i] ? "killed" : "failed");
    j.field("first_error", w.error[0] ? std::optional<std::string>(w.error) : std::nullopt);
    j.field("sample_stride", w.sample_stride);
    j.field("attach_s", static_cast<double>(w.attach_ns) / 1e9);
    j.field("peak_rss_kb", w.peak_rss_kb);
    mine.write(j);
    j.end_object();
  }
  j.end_array();
  j.key("aggregate");
  j.begin_object();
  all.write(j);
  j.end_object();

  j.key("footprint");
  j.begin_object();
  j.field("location", r.footprint.location);
  j.field("apparent_bytes", r.footprint.apparent_bytes);
  j.field("resident_bytes", r.footprint.resident_bytes);
  j.field("items", r.footprint.items);
  std::optional<double> per_item;
  if (r.footprint.resident_bytes && r.footprint.items && *r.footprint.items > 0) {
    per_item = static_cast<double>(*r.footprint.resident_bytes) / static_cast<double>(*r.footprint.items);
  }
  j.field("resident_bytes_per_item", per_item);
  j.end_object();

  j.key("memory");
  j.begin_object();
  std::uint64_t rss_max = 0, rss_sum = 0;
  double attach_max = 0;
  for (std::size_t i = 0; i < reported; ++i) {
    rss_max = std::max(rss_max, r.control->reports[i].peak_rss_kb);
    rss_sum += r.control->reports[i].peak_rss_kb;
    attach_max = std::max(attach_max, static_cast<double>(r.control->reports[i].attach_ns) / 1e9);
  }
  j.field("peak_rss_kb_max", rss_max);
  j.field("peak_rss_kb_sum", rss_sum);
  j.end_object();

  j.key("seed");
  if (o.workload.scenario == Scenario::kSeed) {
    write_seed(j, o, r);
  } else {
    j.null();
  }

  j.key("timing");
  j.begin_object();
  j.field("create_s", r.create_s);
  j.field("attach_s_max", attach_max);
  j.field("prefill_s", r.prefill_s);
  j.field("wall_s", r.wall_s);
  j.end_object();
  j.end_object();
  std::cout << "\n";
  std::cout.flush();
}

int main_driver(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--list-stores") {
      list_stores();
      return kExitOk;
    }
    if (arg == "--list-engines") {
      list_engines();
      return kExitOk;
    }
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return kExitOk;
    }
    if (arg.rfind("--", 0) != 0 || i + 1 >= argc) throw UsageError("expected --option VALUE, got '" + arg + "'");
    flags[arg] = argv[++i];
  }
  const DriverOptions options = parse_options(flags);
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
    std::cerr << "shmht-driver: " << e.what() << "\n" << shmht::harness::kUsage;
    return shmht::harness::kExitUsage;
  }
}
