// worker.cpp - see worker.hpp.
#include "worker.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

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

// Where a timed latency goes: the histogram (every timed operation) and the sampler (every
// k-th). With LatencyTiming::kEvery every operation is timed; with kSampled only those
// the sampler keeps, so the histogram then holds the samples alone.
class LatencyRecorder {
 public:
  LatencyRecorder(WorkerReport& report, LatencyTiming timing)
      : sampler_(report), histogram_(report.latency_histogram), every_(timing == LatencyTiming::kEvery) {}
  bool should_time(std::uint64_t n) const { return every_ || sampler_.should_sample(n); }
  // `ns` timed operation (or batch) number n, which stands for `ops` operations.
  void add(std::uint64_t n, std::uint64_t ns, std::uint64_t ops = 1) {
    histogram_.add(ns, ops);
    if (sampler_.should_sample(n)) sampler_.add(ns);
  }

 private:
  LatencySampler sampler_;
  LatencyHistogram& histogram_;
  bool every_;
};

// The mean cost of one monotonic_ns() over back-to-back reads: what timing costs here
// (two reads per timed operation), reported so a reader can weigh the overhead.
double measure_clock_read_ns() {
  constexpr int kReads = 1000;
  const std::uint64_t first = monotonic_ns();
  std::uint64_t last = first;
  for (int i = 0; i < kReads; ++i) last = monotonic_ns();
  return static_cast<double>(last - first) / kReads;
}

void bind(const WorkerContext& c, WorkerReport& report) {
  const BindingOutcome cpu = bind_worker_cpu(c.topology, c.placement);
  const BindingOutcome memory = bind_process_memory(c.topology, c.memory_policy, c.placement, c.nodes_used);
  copy_text(report.cpu_binding, cpu.obtained);
  copy_text(report.memory_binding, memory.obtained);
  copy_text(report.memory_policy, memory.policy);
  copy_text(report.cpu_binding_error, cpu.error);
  copy_text(report.memory_binding_error, memory.error);
}

// The worker's sequence of operations: which operation, on which key. Seeded per worker,
// so a cell replays the same sequence whether or not it is pipelined.
class OpStream {
 public:
  explicit OpStream(const WorkerContext& c)
      : random_(c.spec->seed, c.index + 1), keys_(*c.keys), mix_(*c.mix), key_(c.spec->key_bytes, 'k') {}
  OpType next() {
    const OpType op = mix_.next(random_);
    format_key(keys_.next(random_), key_);
    return op;
  }
  std::string_view key() const { return key_; }

 private:
  Random random_;
  const KeyChooser& keys_;
  const OpMix& mix_;
  std::string key_;
};

void note_error(WorkerReport& report, const std::string& what) {
  if (report.errors++ == 0) copy_text(report.error, what);
}

// Counts one operation; `returned` is what the store's call returned (assign: "was new").
void record_op(WorkerReport& report, OpType op, bool returned) {
  // OpMix never returns more than kOpTypes - 1; the min only tells GCC's -Warray-bounds.
  const std::size_t slot = std::min(static_cast<std::size_t>(op), kOpTypes - 1);
  ++report.ops[slot];
  const bool hit = op == OpType::kAssign ? !returned : returned;
  if (!hit) ++report.misses[slot];
}

bool call(StoreSession& session, OpType op, std::string_view key, std::string_view value, std::span<char> value_out) {
  switch (op) {
    case OpType::kGet: return session.get(key, value_out);
    case OpType::kInsert: return session.insert(key, value);
    case OpType::kAssign: return session.assign(key, value);
    case OpType::kErase: return session.erase(key);
  }
  return false;
}

// When the timed phase ends: after the worker's share of ops, or at the deadline.
struct PhaseEnd {
  std::uint64_t ops;     // 0 in duration mode
  std::uint64_t end_ns;  // duration mode
  bool reached(std::uint64_t done) const { return ops != 0 ? done >= ops : monotonic_ns() >= end_ns; }
  std::uint64_t left(std::uint64_t done) const { return ops != 0 ? ops - done : UINT64_MAX; }
};

// One operation at a time; each timed latency is one operation (the store call alone:
// choosing the key and counting the result are outside the clock reads).
void run_one_by_one(const WorkerContext& c, StoreSession& session, const PhaseEnd& end, WorkerReport& report) {
  OpStream stream(c);
  const std::string value(c.spec->value_bytes, 'v');
  std::string value_out(c.spec->value_bytes, '\0');
  LatencyRecorder latencies(report, c.latency_timing);
  for (std::uint64_t n = 0;; ++n) {
    if ((end.ops != 0 || n % kClockCheckInterval == 0) && end.reached(n)) break;
    const OpType op = stream.next();
    const bool timed = latencies.should_time(n);
    const std::uint64_t t0 = timed ? monotonic_ns() : 0;
    bool returned = op != OpType::kAssign;  // an operation that throws counts as a hit
    try {
      returned = call(session, op, stream.key(), value, value_out);
    } catch (const std::exception& e) {
      note_error(report, e.what());
    }
    if (timed) latencies.add(n, monotonic_ns() - t0);
    record_op(report, op, returned);
  }
}

// `depth` operations per round trip (StoreKind::pipelined); each timed latency is one
// batch's round trip, which is also how long each of its operations waited for its reply
// (the histogram counts it once per operation in the batch, the sampler once).
void run_pipelined(const WorkerContext& c, StoreSession& session, const PhaseEnd& end, WorkerReport& report) {
  OpStream stream(c);
  const std::string value(c.spec->value_bytes, 'v');
  std::vector<OpType> ops(c.pipeline_depth);
  std::vector<OpResult> results(c.pipeline_depth);
  LatencyRecorder latencies(report, c.latency_timing);
  std::uint64_t n = 0;
  for (std::uint64_t batch = 0; !end.reached(n); ++batch) {
    const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(c.pipeline_depth, end.left(n)));
    const bool timed = latencies.should_time(batch);
    const std::uint64_t t0 = timed ? monotonic_ns() : 0;
    std::size_t attempted = 0;
    try {
      while (attempted < size) {
        ops[attempted] = stream.next();
        session.enqueue(ops[attempted++], stream.key(), value);
      }
      session.collect(std::span(results).first(size));
    } catch (const std::exception& e) {
      // The session failed (a lost connection): every operation sent in this batch failed.
      for (std::size_t i = 0; i < attempted; ++i) results[i] = {.value = ops[i] != OpType::kAssign, .error = e.what()};
    }
    if (timed && attempted > 0) latencies.add(batch, monotonic_ns() - t0, attempted);
    for (std::size_t i = 0; i < attempted; ++i) {
      if (!results[i].error.empty()) note_error(report, results[i].error);
      record_op(report, ops[i], results[i].value);
    }
    n += attempted;
  }
}

void run_timed_phase(const WorkerContext& c, StoreSession& session, WorkerReport& report) {
  const PhaseEnd end{.ops = c.ops,
                     .end_ns = c.ops == 0 ? c.control->go_ns + static_cast<std::uint64_t>(c.spec->duration_s * 1e9)
                                          : UINT64_MAX};
  rusage before{}, after{};
  const auto coordination_before = session.coordination();
  getrusage(RUSAGE_SELF, &before);
  report.start_ns = monotonic_ns();
  if (c.pipeline_depth > 1) {
    run_pipelined(c, session, end, report);
  } else {
    run_one_by_one(c, session, end, report);
  }
  try {
    session.flush();
  } catch (const std::exception& e) {
    note_error(report, e.what());
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

void prefill(StoreSession& session, const WorkloadSpec& spec, std::uint32_t pipeline_depth) {
  const auto count = static_cast<std::uint64_t>(spec.prefill * static_cast<double>(spec.keys));
  std::string key(spec.key_bytes, 'k');
  const std::string value(spec.value_bytes, 'v');
  if (pipeline_depth > 1 && session.can_pipeline()) {
    std::vector<OpResult> results(pipeline_depth);
    for (std::uint64_t i = 0; i < count;) {
      const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(pipeline_depth, count - i));
      for (std::size_t j = 0; j < size; ++j, ++i) {
        format_key(i, key);
        session.enqueue(OpType::kAssign, key, value);
      }
      session.collect(std::span(results).first(size));
      for (std::size_t j = 0; j < size; ++j) {
        if (!results[j].error.empty()) throw std::runtime_error("prefill: " + results[j].error);
      }
    }
  } else {
    for (std::uint64_t i = 0; i < count; ++i) {
      format_key(i, key);
      session.assign(key, value);
    }
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
    if (c.prefill_here) prefill(*session, *c.spec, c.pipeline_depth);
    report.clock_read_ns = measure_clock_read_ns();
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
