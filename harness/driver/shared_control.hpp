// shared_control.hpp - the parent's and workers' meeting point: a start barrier and one
// report per worker, in an anonymous MAP_SHARED mapping made before fork (so there is
// no file to clean up).
//
// Why a plain per-worker struct rather than a Boost.Lockfree spsc_queue: each worker
// sends exactly one fixed-size report, once, after its timed phase, and the parent reads
// it only after that worker has exited. A queue would add a capacity and a protocol for
// a single message; a slot per worker with a release-store of `state` says the same, and
// a worker that dies without reporting is visible as a slot still in kRunning.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "latency_histogram.hpp"
#include "workload.hpp"

namespace shmht::harness {

// Latency samples each worker keeps (every k-th op; k doubles when the buffer fills).
inline constexpr std::size_t kMaxLatencySamples = 16384;

// Which operations a worker times (--latency): every one (the histogram then holds every
// operation, so p99.99 and the maximum mean what they say), or only the sampled ones (the
// driver's cost before the histogram: one clock read pair per sample, not per op).
enum class LatencyTiming : std::uint32_t { kEvery = 0, kSampled = 1 };

enum class WorkerState : std::uint32_t { kStarting = 0, kReady = 1, kDone = 2, kFailed = 3 };

struct WorkerReport {
  std::atomic<WorkerState> state{WorkerState::kStarting};
  pid_t pid = 0;
  char error[256] = {};              // kFailed, or the first operation error
  std::uint64_t ops[kOpTypes] = {};
  std::uint64_t misses[kOpTypes] = {};  // get/erase: absent; insert: present; assign: key was new
  std::uint64_t errors = 0;
  std::uint64_t start_ns = 0, end_ns = 0;  // CLOCK_MONOTONIC, comparable across processes
  // getrusage(RUSAGE_SELF) over the timed phase only (attach and prefill excluded).
  std::uint64_t user_us = 0, sys_us = 0;
  std::uint64_t minor_faults = 0, major_faults = 0;
  std::uint64_t voluntary_switches = 0, involuntary_switches = 0;
  std::uint64_t failed_cas = 0, helped = 0;  // lock-free engine, over the timed phase
  char cpu_binding[64] = {};         // what the kernel granted, hwloc list syntax
  char memory_binding[64] = {};      // nodes
  char memory_policy[32] = {};
  char cpu_binding_error[128] = {};
  char memory_binding_error[128] = {};  // e.g. ENOSYS on a kernel built without NUMA
  // Seed scenario only (seed_scenario.hpp): phase ends, and worker 0's verdict.
  std::uint64_t set_end_ns = 0, iterate_start_ns = 0, iterate_end_ns = 0;
  std::uint64_t attach_ns = 0;         // time spent attaching (MAP_POPULATE shows here)
  std::uint64_t peak_rss_kb = 0;       // getrusage ru_maxrss at the end of the run
  std::uint64_t seed_pass1_entries = 0, seed_pass2_entries = 0;
  std::uint64_t seed_expected = 0, seed_missing = 0, seed_duplicated = 0, seed_unexpected = 0,
                seed_values_wrong = 0;
  bool seed_verified = false;
  std::uint32_t sample_stride = 1;
  std::uint32_t sample_count = 0;
  std::uint32_t latency_ns[kMaxLatencySamples] = {};
  // Every timed operation's latency (a pipelined batch counts once per operation in it),
  // with the exact maximum; see latency_histogram.hpp for its resolution.
  LatencyHistogram latency_histogram;
  // What one monotonic_ns() read cost this worker, measured before the timed phase
  // (the mean over a run of back-to-back reads): timing an op costs two of them.
  double clock_read_ns = 0;
};

struct ControlBlock {
  std::atomic<std::uint32_t> ready{0};  // workers attached and waiting
  std::atomic<std::uint32_t> go{0};     // futex word: 1 = start
  std::uint64_t go_ns = 0;              // written before go; duration mode ends at go_ns + duration
  std::atomic<std::uint32_t> set_done{0};  // seed scenario: workers past their set pass
  std::atomic<std::uint64_t> lockstep_arrivals{0};  // seed scenario with lockstep_every
  std::uint32_t workers = 0;
  WorkerReport reports[1];              // really `workers` of them (see ControlBlock::bytes)

  static std::size_t bytes(std::uint32_t workers) {
    return offsetof(ControlBlock, reports) + sizeof(WorkerReport) * workers;
  }
};

static_assert(std::atomic<std::uint32_t>::is_always_lock_free,
              "the barrier words are shared between processes: they must not hide a lock");
static_assert(std::atomic<WorkerState>::is_always_lock_free, "worker state is read by the parent across processes");

// Maps a zeroed ControlBlock for `workers` workers, shared with children forked later.
ControlBlock* map_control_block(std::uint32_t workers);
void unmap_control_block(ControlBlock* block);

// Process-shared futex wait/wake on the go word (std::atomic::wait may use private futexes).
void wait_for_go(ControlBlock& block);
void release_workers(ControlBlock& block);

std::uint64_t monotonic_ns();

}  // namespace shmht::harness
