// worker.cpp - see worker.hpp.
#include "worker.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "seed_scenario.hpp"

namespace shmht::harness {
namespace {

// Duration mode reads the clock once per this many ops.
constexpr std::uint64_t kClockCheckInterval = 64;
// Every k-th op is timed; k starts here and doubles whenever the sample buffer fills.
constexpr std::uint32_t kInitialSampleStride = 8;

template <std::size_t N>
void copy_text(char (&out)[N], const std::string& text) {
  std::snprintf(out, N, "%s", text.c_str());
}

std::uint64_t micros(const timeval& tv) {
  return static_cast<std::uint64_t>(tv.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(tv.tv_usec);
}

// Keeps every stride-th latency; halves the samples and doubles the stride when full,
// so the kept samples stay spread evenly over the whole run.
class LatencySampler {
 public:
  explicit LatencySampler(WorkerReport& report) : report_(report) { report_.sample_stride = kInitialSampleStride; }
  bool should_sample(std::uint64_t op_number) const { return op_number % report_.sample_stride == 0; }
  void add(std::uint64_t nanoseconds) {
    if (report_.sample_count == kMaxLatencySamples) {
      for (std::uint32_t i = 0; i < kMaxLatencySamples / 2; ++i) report_.latency_ns[i] = report_.latency_ns[2 * i];
      report_.sample_count = kMaxLatencySamples / 2;
      report_.sample_stride *= 2;
    }
    report_.latency_ns[report_.sample_count++] =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(nanoseconds, UINT32_MAX));
  }

 private:
  WorkerReport& report_;
};

void bind(const WorkerContext& c, WorkerReport& report) {
  const BindingOutcome cpu = bind_worker_cpu(c.topology, c.placement);
  const BindingOutcome memory = bind_process_memory(c.topology, c.memory_policy, c.placement, c.nodes_used);
  copy_text(report.cpu_binding, cpu.obtained);
  copy_text(report.memory_binding, memory.obtained);
  copy_text(report.memory_policy, memory.policy);
  copy_text(report.cpu_binding_error, cpu.error);
  copy_text(report.memory_binding_error, memory.error);
}

void run_timed_phase(const WorkerContext& c, StoreSession& session, WorkerReport& report) {
  const WorkloadSpec& spec = *c.spec;
  Random random(spec.seed, c.index + 1);
  std::string key(spec.key_bytes, 'k');
  const std::string value(spec.value_bytes, 'v');
  std::string value_out(spec.value_bytes, '\0');
  LatencySampler sampler(report);
  const std::uint64_t end_ns =
      c.ops == 0 ? c.control->go_ns + static_cast<std::uint64_t>(spec.duration_s * 1e9) : UINT64_MAX;

  rusage before{}, after{};
  const auto coordination_before = session.coordination();
  getrusage(RUSAGE_SELF, &before);
  report.start_ns = monotonic_ns();
  for (std::uint64_t n = 0;; ++n) {
    if (c.ops != 0 ? n >= c.ops : (n % kClockCheckInterval == 0 && monotonic_ns() >= end_ns)) break;
    const OpType op = c.mix->next(random);
    format_key(c.keys->next(random), key);
    const bool timed = sampler.should_sample(n);
    const std::uint64_t t0 = timed ? monotonic_ns() : 0;
    bool hit = true;
    try {
      switch (op) {
        case OpType::kGet: hit = session.get(key, value_out); break;
        case OpType::kInsert: hit = session.insert(key, value); break;
        case OpType::kAssign: hit = !session.assign(key, value); break;
        case OpType::kErase: hit = session.erase(key); break;
      }
    } catch (const std::exception& e) {
      if (report.errors++ == 0) copy_text(report.error, e.what());
    }
    if (timed) sampler.add(monotonic_ns() - t0);
    // OpMix never returns more than kOpTypes - 1; the min only tells GCC's -Warray-bounds.
    const std::size_t slot = std::min(static_cast<std::size_t>(op), kOpTypes - 1);
    ++report.ops[slot];
    if (!hit) ++report.misses[slot];
  }
  try {
    session.flush();
  } catch (const std::exception& e) {
    if (report.errors++ == 0) copy_text(report.error, e.what());
  }
  report.end_ns = monotonic_ns();
  getrusage(RUSAGE_SELF, &after);
  report.user_us = micros(after.ru_utime) - micros(before.ru_utime);
  report.sys_us = micros(after.ru_stime) - micros(before.ru_stime);
  report.minor_faults = static_cast<std::uint64_t>(after.ru_minflt - before.ru_minflt);
  report.major_faults = static_cast<std::uint64_t>(after.ru_majflt - before.ru_majflt);
  report.voluntary_switches = static_cast<std::uint64_t>(after.ru_nvcsw - before.ru_nvcsw);
  report.involuntary_switches = static_cast<std::uint64_t>(after.ru_nivcsw - before.ru_nivcsw);
  const auto coordination_after = session.coordination();
  report.failed_cas = coordination_after.first - coordination_before.first;
  report.helped = coordination_after.second - coordination_before.second;
}

}  // namespace

void prefill(StoreSession& session, const WorkloadSpec& spec) {
  const auto count = static_cast<std::uint64_t>(spec.prefill * static_cast<double>(spec.keys));
  std::string key(spec.key_bytes, 'k');
  const std::string value(spec.value_bytes, 'v');
  for (std::uint64_t i = 0; i < count; ++i) {
    format_key(i, key);
    session.assign(key, value);
  }
  session.flush();
}

void run_worker(const WorkerContext& c) {
  // Die with the parent: a killed driver must not leave workers behind.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // the parent blocks signals it waits for
  WorkerReport& report = c.control->reports[c.index];
  report.pid = getpid();
  int status = 0;
  try {
    bind(c, report);
    const std::uint64_t attach_start = monotonic_ns();
    std::unique_ptr<StoreSession> session = c.store->attach();
    report.attach_ns = monotonic_ns() - attach_start;
    if (c.prefill_here) prefill(*session, *c.spec);
    report.state.store(WorkerState::kReady, std::memory_order_release);
    c.control->ready.fetch_add(1, std::memory_order_acq_rel);
    wait_for_go(*c.control);
    if (c.spec->scenario == Scenario::kSeed) {
      seed_scenario::run(*session, *c.control, c.index, c.processes, c.spec->keys, c.spec->lockstep_every, report);
    } else {
      run_timed_phase(c, *session, report);
    }
    session.reset();  // detach before reporting done
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    report.peak_rss_kb = static_cast<std::uint64_t>(usage.ru_maxrss);
    report.state.store(WorkerState::kDone, std::memory_order_release);
  } catch (const std::exception& e) {
    copy_text(report.error, e.what());
    report.state.store(WorkerState::kFailed, std::memory_order_release);
    status = 1;
  }
  _exit(status);
}

}  // namespace shmht::harness
