// seed_scenario.cpp - see seed_scenario.hpp.
#include "seed_scenario.hpp"

#include <sys/resource.h>
#include <sched.h>
#include <time.h>

#include <charconv>
#include <cstring>
#include <exception>
#include <optional>

namespace shmht::harness::seed_scenario {
namespace {

// How often worker 0 looks whether the others have finished setting.
constexpr long kWaitPollNs = 200'000;

std::uint64_t micros(const timeval& tv) {
  return static_cast<std::uint64_t>(tv.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(tv.tv_usec);
}

// Adds the rusage between `before` and now to the report's CPU, fault and switch figures.
class PhaseUsage {
 public:
  PhaseUsage() { getrusage(RUSAGE_SELF, &before_); }
  void charge(WorkerReport& r) const {
    rusage now{};
    getrusage(RUSAGE_SELF, &now);
    r.user_us += micros(now.ru_utime) - micros(before_.ru_utime);
    r.sys_us += micros(now.ru_stime) - micros(before_.ru_stime);
    r.minor_faults += static_cast<std::uint64_t>(now.ru_minflt - before_.ru_minflt);
    r.major_faults += static_cast<std::uint64_t>(now.ru_majflt - before_.ru_majflt);
    r.voluntary_switches += static_cast<std::uint64_t>(now.ru_nvcsw - before_.ru_nvcsw);
    r.involuntary_switches += static_cast<std::uint64_t>(now.ru_nivcsw - before_.ru_nivcsw);
  }

 private:
  rusage before_{};
};

void note_error(WorkerReport& r, const char* what) {
  if (r.errors++ == 0) std::snprintf(r.error, sizeof r.error, "%s", what);
}

// "76930b" -> (76930, worker 1); nullopt unless it is exactly what key() makes.
std::optional<std::pair<std::uint64_t, std::uint32_t>> parse_key(std::string_view k, std::uint32_t processes) {
  if (k.size() < 2) return std::nullopt;
  const std::size_t letter = kLetters.find(k.back());
  if (letter == std::string_view::npos || letter >= processes) return std::nullopt;
  const std::string_view digits = k.substr(0, k.size() - 1);
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;  // str(i) has no leading zero
  std::uint64_t index = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return std::pair{index, static_cast<std::uint32_t>(letter)};
}

// A counting barrier: round r is passed when processes x r arrivals have happened. Spins
// briefly, then yields: on 2 cores a spinning worker would hold the core its partner needs.
void lockstep_barrier(ControlBlock& control, std::uint32_t processes, std::uint64_t round) {
  control.lockstep_arrivals.fetch_add(1, std::memory_order_acq_rel);
  const std::uint64_t target = static_cast<std::uint64_t>(processes) * round;
  for (std::uint32_t spins = 0; control.lockstep_arrivals.load(std::memory_order_acquire) < target; ++spins) {
    if (spins > 64) sched_yield();
  }
}

void wait_for_all_sets(ControlBlock& control, std::uint32_t processes) {
  const timespec pause{0, kWaitPollNs};
  while (control.set_done.load(std::memory_order_acquire) < processes) nanosleep(&pause, nullptr);
}

}  // namespace

std::uint64_t items_per_worker(std::uint64_t items, std::uint32_t processes) { return items / processes; }

std::string key(std::uint64_t index, std::uint32_t worker) { return std::to_string(index) + kLetters[worker]; }

std::string value(std::uint32_t worker) { return std::string(kValueRepeat, kLetters[worker]); }

Verdict verify(const std::vector<std::pair<std::string, std::string>>& entries, std::uint32_t processes,
               std::uint64_t per_worker) {
  Verdict v;
  v.expected = per_worker * processes;
  v.seen = entries.size();
  std::vector<std::uint32_t> sightings(v.expected, 0);
  for (const auto& [k, val] : entries) {
    const auto parsed = parse_key(k, processes);
    if (!parsed || parsed->first >= per_worker) {
      ++v.unexpected;
      continue;
    }
    const auto [index, worker] = *parsed;
    if (sightings[worker * per_worker + index]++ > 0) ++v.duplicated;
    if (val != value(worker)) ++v.values_wrong;
  }
  for (std::uint32_t count : sightings) v.missing += count == 0 ? 1 : 0;
  return v;
}

void run(StoreSession& session, ControlBlock& control, std::uint32_t worker, std::uint32_t processes,
         std::uint64_t items, std::uint32_t lockstep_every, WorkerReport& report) {
  const std::uint64_t per_worker = items_per_worker(items, processes);
  const std::string my_value = value(worker);

  // The set pass: d[str(i) + letter] = letter * 7.
  report.start_ns = monotonic_ns();
  {
    const PhaseUsage usage;
    std::string k;
    for (std::uint64_t i = 0; i < per_worker; ++i) {
      if (lockstep_every != 0 && i % lockstep_every == 0) lockstep_barrier(control, processes, i / lockstep_every + 1);
      k = key(i, worker);
      try {
        session.assign(k, my_value);
      } catch (const std::exception& e) {
        note_error(report, e.what());
      }
      ++report.ops[static_cast<std::size_t>(OpType::kAssign)];
    }
    session.flush();
    usage.charge(report);
  }
  report.set_end_ns = report.end_ns = monotonic_ns();
  control.set_done.fetch_add(1, std::memory_order_acq_rel);
  if (worker != 0) return;

  // Worker 0, like the test's foreground process, iterates once everyone has set.
  wait_for_all_sets(control, processes);
  std::vector<std::pair<std::string, std::string>> entries;
  report.iterate_start_ns = monotonic_ns();
  bool iterated = false;
  try {
    const PhaseUsage usage;
    std::uint64_t counted = 0;  // len(d)
    session.for_each([&](std::string_view, std::string_view) { ++counted; });
    entries.reserve(counted);   // d.keys() (values too, for the check below)
    session.for_each([&](std::string_view k, std::string_view v) { entries.emplace_back(k, v); });
    usage.charge(report);
    report.seed_pass1_entries = counted;
    report.seed_pass2_entries = entries.size();
    iterated = true;
  } catch (const std::exception& e) {
    note_error(report, e.what());
  }
  report.iterate_end_ns = report.end_ns = monotonic_ns();
  if (!iterated) return;  // no verdict: the error says why

  const Verdict v = verify(entries, processes, per_worker);
  report.seed_expected = v.expected;
  report.seed_missing = v.missing;
  report.seed_duplicated = v.duplicated;
  report.seed_unexpected = v.unexpected;
  report.seed_values_wrong = v.values_wrong;
  report.seed_verified = true;
}

}  // namespace shmht::harness::seed_scenario
