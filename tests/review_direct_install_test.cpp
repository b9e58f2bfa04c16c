// review_direct_install_test.cpp - reproducers from the adversarial review of the lock-free
// KCAS's owner direct installs (commit 967bac4, engines/lockfree/kcas.hpp THE OWNER'S DIRECT
// INSTALLS). That argument rests on "a bucket version only grows (mod 2^40) while the owner
// is inside run()". This file checks that premise where growth.cpp could break it, and the
// reader that met the owner's late direct install.
// Fixed: growth::start no longer adopts another grower's unpublished array (only its claimer
// writes or publishes an array, so a stopped one wakes to an array nobody used); resolve()
// helps an operation a second time when the owner's late direct install put its reference
// back after the first help. Each test below failed before its fix.
//
// Every multi-process case bounds its children (Children::wait_all kills overrunners),
// SIGCONTs what it stopped, and removes its table (ScopedName) whatever happens.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engines/lockfree/kcas.hpp"
#include "hash.hpp"
#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "shmht/check.hpp"
#include "shmht/error.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "home_slots.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using namespace std::chrono_literals;
using testing::FaultPoint;

std::string cat(std::string prefix, std::uint64_t i) { return prefix.append(std::to_string(i)); }

// The raw control words of the first `count` buckets of generation `g`'s array.
std::vector<std::uint64_t> controls_of(const std::string& path, std::uint32_t g, std::uint64_t count) {
  std::vector<std::uint64_t> controls;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return controls;
  const off_t size = lseek(fd, 0, SEEK_END);
  void* base = mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) return controls;
  const auto* bytes = static_cast<const std::byte*>(base);
  const std::uint64_t array = reinterpret_cast<const layout::Header*>(bytes)->array_offsets[g].load();
  if (array != 0 && array + count * sizeof(layout::Bucket) <= static_cast<std::uint64_t>(size)) {
    for (std::uint64_t b = 0; b < count; ++b) {
      controls.push_back(reinterpret_cast<const layout::Bucket*>(bytes + array + b * sizeof(layout::Bucket))->control.load());
    }
  }
  munmap(base, static_cast<std::size_t>(size));
  return controls;
}

// The versions (MOVED stripped) of the same buckets.
std::vector<std::uint64_t> versions_of(const std::string& path, std::uint32_t g, std::uint64_t count) {
  std::vector<std::uint64_t> versions = controls_of(path, g, count);
  for (std::uint64_t& v : versions) v &= lockfree::kValueMask;
  return versions;
}

// A lock-free table at capacity 1,000 (its first growth comes after about 1,000 inserts).
const CreateOptions kGrowingOptions{.capacity = 1000, .max_key_bytes = 32, .max_value_bytes = 32, .max_processes = 4,
                                    .engine = Engine::kLockFreeRobinHood};

// G1: a child that inserts until it starts the first growth and stops (SIGSTOP) inside its
// control-word loop; once continued it exits 0 (4: an insert failed, 5: it never grew).
pid_t spawn_grower_stopping_in_its_reset_loop(Children& children, const std::string& name, std::uint64_t slots0) {
  return children.spawn([&name, slots0] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kGrowthResettingControls);
    for (std::uint64_t i = 0; i < 2 * slots0; ++i) {
      if (!t.insert(cat("g", i), "v")) return 4;
      if (!stop_pending()) return 0;  // grew (stopped and continued): done
    }
    return 5;  // never grew
  });
}

// A grower G1 claims the chunks of generation 1's array and starts setting its control
// words (version 1), checking once every 64 buckets that nobody has published the array.
// G1 stops (SIGSTOP, or any preemption) just after such a check. Before the fix, the parent's
// growth found the claimed, unpublished array and adopted it (growth::start), set
// every control word, publishes it and migrates into it: group moves and writes bump its
// versions past 1. G1 resumes inside its loop and, for the up to 64 buckets before its
// next check, loads each control word and CASes it back to version 1.
// Versions of a published, live array then go backwards: the premise of the owner's direct
// installs ("versions only grow"), of every KCAS's version expectations and of the
// optimistic readers' validation is broken.
TEST(ReviewDirectInstall, AGrowerStoppedInItsResetLoopNeverTurnsALiveArraysVersionsBack) {
  alarm(120);
  ScopedName name;
  Table parent = Table::create(name, kGrowingOptions);
  const std::uint64_t slots0 = parent.stats().slots;
  Children children;
  const pid_t grower = spawn_grower_stopping_in_its_reset_loop(children, name, slots0);
  ASSERT_TRUE(wait_until_stopped(grower, 60s)) << "the grower never reached its control-word loop";
  EXPECT_EQ(parent.stats().growths, 0u) << "the stopped grower has not published anything";

  // The parent grows (before the fix, into the stopped grower's adopted array) and finishes the migration.
  std::uint64_t i = 0;
  for (; i < slots0 && (parent.stats().growths == 0 || parent.stats().migrating); ++i) {
    ASSERT_TRUE(parent.insert(cat("p", i), "v"));
  }
  ASSERT_EQ(parent.stats().growths, 1u);
  ASSERT_FALSE(parent.stats().migrating);
  // Some more writes into the new array's first buckets' keys (assign: overwrite, bumps).
  for (std::uint64_t j = 0; j < i; ++j) parent.assign(cat("p", j), "w");
  const std::vector<std::uint64_t> before = versions_of(parent.path(), 1, 64);
  ASSERT_EQ(before.size(), 64u);
  std::uint64_t above_one = 0;
  for (const std::uint64_t v : before) above_one += v > 1;
  ASSERT_GT(above_one, 0u) << "no version of the new array's first 64 buckets moved past 1: nothing to turn back";

  kill(grower, SIGCONT);
  const auto done = children.wait_all(60s);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].exited && done[0].code_or_signal == 0) << "grower: " << done[0].code_or_signal;
  ASSERT_EQ(parent.stats().growths, 1u) << "a second growth would punch the array compared";
  const std::vector<std::uint64_t> after = versions_of(parent.path(), 1, 64);
  ASSERT_EQ(after.size(), 64u);
  std::uint64_t went_back = 0;
  std::string example;
  for (std::uint64_t b = 0; b < 64; ++b) {
    // Versions wrap only past 2^40 - 1: nothing here comes near.
    if (after[b] < before[b]) {
      if (went_back++ == 0) example = "bucket " + std::to_string(b) + ": " + std::to_string(before[b]) + " -> " + std::to_string(after[b]);
    }
  }
  EXPECT_EQ(went_back, 0u) << went_back << " of 64 control words of the live generation-1 array went back, e.g. " << example;
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  alarm(0);
}

// The same stopped grower, resumed later: (before the fix) its adopted array has become the OLD array of
// the next migration, and groups of it are MOVED. Its reset (load, CAS to version 1)
// drops MOVED too ("set once, never cleared", lockfree_robin_hood.cpp GROWTH): the next
// write to a key of such a group moves the group AGAIN, into an array that already holds
// its keys. Seen from outside: lost writes, duplicates, a dirty check.
TEST(ReviewDirectInstall, AGrowerStoppedInItsResetLoopNeverClearsMovedInTheOldArray) {
  alarm(120);
  ScopedName name;
  Table parent = Table::create(name, kGrowingOptions);
  const std::uint64_t slots0 = parent.stats().slots;
  Children children;
  const pid_t grower = spawn_grower_stopping_in_its_reset_loop(children, name, slots0);
  ASSERT_TRUE(wait_until_stopped(grower, 60s)) << "the grower never reached its control-word loop";

  // Growth 1 (before the fix, into the stopped grower's adopted array), finished; then growth 2 started
  // and partly done: generation 1 is the old array, its first groups MOVED.
  std::uint64_t keys = 0;
  for (; keys < 8 * slots0 && !(parent.stats().growths == 2 && parent.stats().migrating); ++keys) {
    ASSERT_TRUE(parent.insert(cat("p", keys), "v1"));
  }
  ASSERT_EQ(parent.stats().growths, 2u);
  for (std::uint64_t extra = 0; parent.stats().migration_groups_moved < 80 && extra < 64; ++extra) {
    ASSERT_TRUE(parent.insert(cat("x", extra), "v1"));
  }
  ASSERT_TRUE(parent.stats().migrating) << "the test needs the second migration unfinished";
  const std::vector<std::uint64_t> before = controls_of(parent.path(), 1, 64);
  ASSERT_EQ(before.size(), 64u);
  std::uint64_t moved_before = 0;
  for (const std::uint64_t c : before) moved_before += layout::is_moved(c);
  ASSERT_GT(moved_before, 0u) << "no group of the old array's first 64 buckets has moved yet";

  kill(grower, SIGCONT);
  const auto done = children.wait_all(60s);
  ASSERT_EQ(done.size(), 1u);
  const std::vector<std::uint64_t> after = controls_of(parent.path(), 1, 64);
  ASSERT_EQ(after.size(), 64u);
  std::uint64_t cleared = 0;
  for (std::uint64_t b = 0; b < 64; ++b) cleared += layout::is_moved(before[b]) && !layout::is_moved(after[b]);
  EXPECT_EQ(cleared, 0u) << cleared << " of " << moved_before << " MOVED bits of the old array were cleared";

  // What a user sees: rewrite every key, then read every key back.
  for (std::uint64_t i = 0; i < keys; ++i) parent.assign(cat("p", i), "v2");
  std::uint64_t wrong = 0;
  std::string example;
  for (std::uint64_t i = 0; i < keys; ++i) {
    const std::optional<std::string> seen = parent.get(cat("p", i));
    if (seen != "v2" && wrong++ == 0) example = cat("p", i) + " reads " + (seen ? *seen : "nothing");
  }
  EXPECT_EQ(wrong, 0u) << wrong << " keys do not read back what was just assigned, e.g. " << example;
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  alarm(0);
}

// resolve() (kcas.cpp) helps the KCAS a word refers to and then throws kCorrupt if the
// word still holds that reference: "a KCAS reference is installed at most once per word,
// before the decision". The owner's direct install breaks that premise: it may install
// AFTER the decision (a late install, finalized later by its own phase 2), so a process
// that finalized the word and re-reads it may find the owner's late reference there and
// report a healthy table corrupt. Under RDCSS the owner's late install was an RDCSS
// reference (another value), completed back to the expected one by the owner itself.
//
// The interleaving (all stops by fault hooks; h = the last slot of bucket 2):
//   The table holds a0 at h. O inserts k (home h): its KCAS is O's item counter, the
//     versions of buckets 2 and 3, and slot h + 1 (bucket 3). O installs its counter and
//     stops (kKcasMidInstall): next it would install bucket 2's version, directly.
//   The parent inserts d at h + 2 (bucket 3 only): O's KCAS will fail at bucket 3's version.
//   H runs check: help_all helps O's KCAS and stops with its RDCSS in bucket 2's version.
//   P reads a0: meets that RDCSS, completes it (the version word holds O's reference),
//     resolves that: helps O's KCAS to FAILED, finalizes every word (bucket 2's version is
//     its old value again), and stops before re-reading the word (kKcasResolveHelped, a
//     fault point added on this branch).
//   O resumes: its direct install of bucket 2's version (expected: the value it holds
//     again) succeeds, after the decision; bucket 3's version fails; O stops (kKcasDecided)
//     before its phase 2.
//   P resumes: the word holds O's reference again: kCorrupt on a healthy table.
std::atomic<int> g_owner_stops{0};
void stop_at_mid_install_then_decided(FaultPoint reached) {
  if ((reached == FaultPoint::kKcasMidInstall && g_owner_stops == 0) || (reached == FaultPoint::kKcasDecided && g_owner_stops == 1)) {
    ++g_owner_stops;
    raise(SIGSTOP);
  }
}

TEST(ReviewDirectInstall, AReaderNeverReportsCorruptionWhenTheOwnersLateDirectInstallLandsAfterItsHelp) {
  alarm(120);
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 64, .max_processes = 8, .engine = Engine::kLockFreeRobinHood});
  const HomeSlots homes(parent.path());
  const std::uint64_t h = 3 * layout::kSlotsPerBucket - 1;  // last slot of bucket 2
  const std::string a0 = homes.key_at("a", h), k = homes.key_at("k", h), d = homes.key_at("d", h + 2);
  ASSERT_TRUE(parent.insert(a0, "a"));
  Children owner, helper, reader;
  const pid_t o = owner.spawn([&] {
    Table t = Table::open(name);
    testing::set_fault_hook(stop_at_mid_install_then_decided);
    if (!t.insert(k, "k")) return 4;
    return g_owner_stops == 2 ? 0 : 3;
  });
  ASSERT_TRUE(wait_until_stopped(o, 30s)) << "O never installed its first word";
  ASSERT_TRUE(parent.insert(d, "d"));

  const pid_t hp = helper.spawn([&] {
    stop_once_at(FaultPoint::kKcasMidRdcss);
    try {
      (void)check_table(name);
    } catch (const Error&) {
      return 4;
    }
    return stop_pending() ? 3 : 0;
  });
  const bool h_stopped = wait_until_stopped(hp, 30s);
  const pid_t p = reader.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kKcasResolveHelped);
    try {
      if (t.get(a0) != "a") return 5;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kCorrupt ? 7 : 8;
    }
    return stop_pending() ? 3 : 0;
  });
  const bool p_stopped = h_stopped && wait_until_stopped(p, 30s);
  kill(o, SIGCONT);
  const bool o_stopped = p_stopped && wait_until_stopped(o, 30s);
  kill(p, SIGCONT);
  const auto p_done = reader.wait_all(30s);
  kill(o, SIGCONT);
  kill(hp, SIGCONT);
  const auto o_done = owner.wait_all(30s);
  const auto h_done = helper.wait_all(30s);
  ASSERT_TRUE(h_stopped) << "check never installed into O's words";
  ASSERT_TRUE(p_stopped) << "P never resolved O's reference";
  ASSERT_TRUE(o_stopped) << "O never reached its decision";
  ASSERT_EQ(p_done.size(), 1u);
  EXPECT_TRUE(p_done[0].exited && p_done[0].code_or_signal == 0)
      << "P's get() on a healthy table: " << (p_done[0].code_or_signal == 7 ? std::string("kCorrupt") : std::to_string(p_done[0].code_or_signal));
  ASSERT_EQ(o_done.size(), 1u);
  EXPECT_TRUE(o_done[0].exited && o_done[0].code_or_signal == 0) << "O: " << o_done[0].code_or_signal;
  ASSERT_EQ(h_done.size(), 1u);
  EXPECT_TRUE(h_done[0].exited && h_done[0].code_or_signal == 0) << "H: " << h_done[0].code_or_signal;
  EXPECT_EQ(parent.get(k), "k");
  EXPECT_EQ(parent.size(), 3u);
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  alarm(0);
}

}  // namespace
}  // namespace shmht::test
