// review_direct_install_test.cpp - reproducers from the adversarial review of the lock-free
// KCAS's owner direct installs (commit 967bac4, engines/lockfree/kcas.hpp THE OWNER'S DIRECT
// INSTALLS). That argument rests on "a bucket version only grows (mod 2^40) while the owner
// is inside run()". This file checks that premise where growth.cpp can break it.
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
#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using namespace std::chrono_literals;
using testing::FaultPoint;

std::string cat(std::string prefix, std::uint64_t i) { return prefix.append(std::to_string(i)); }

// The versions (MOVED stripped) of the first `count` buckets of generation `g`'s array,
// read from the file. Empty if the array is not published or not in the file.
std::vector<std::uint64_t> versions_of(const std::string& path, std::uint32_t g, std::uint64_t count) {
  std::vector<std::uint64_t> versions;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return versions;
  const off_t size = lseek(fd, 0, SEEK_END);
  void* base = mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) return versions;
  const auto* bytes = static_cast<const std::byte*>(base);
  const auto* header = reinterpret_cast<const layout::Header*>(bytes);
  const std::uint64_t array = header->array_offsets[g].load();
  if (array != 0 && array + count * sizeof(layout::Bucket) <= static_cast<std::uint64_t>(size)) {
    for (std::uint64_t b = 0; b < count; ++b) {
      const auto* bucket = reinterpret_cast<const layout::Bucket*>(bytes + array + b * sizeof(layout::Bucket));
      versions.push_back(bucket->control.load() & lockfree::kValueMask);
    }
  }
  munmap(base, static_cast<std::size_t>(size));
  return versions;
}

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

// A grower G1 claims the chunks of generation 1's array and starts setting its control
// words (version 1), checking once every 64 buckets that nobody has published the array.
// G1 stops (SIGSTOP, or any preemption) just after such a check. The parent's growth finds
// the claimed, unpublished array and adopts it (growth::start, unpublished_array), sets
// every control word, publishes it and migrates into it: group moves and writes bump its
// versions past 1. G1 resumes inside its loop and, for the up to 64 buckets before its
// next check, loads each control word and CASes it back to version 1.
// Versions of a published, live array then go backwards: the premise of the owner's direct
// installs ("versions only grow"), of every KCAS's version expectations and of the
// optimistic readers' validation is broken.
TEST(ReviewDirectInstall, AGrowerStoppedInItsResetLoopNeverTurnsALiveArraysVersionsBack) {
  alarm(120);
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 1000, .max_key_bytes = 32, .max_value_bytes = 32, .max_processes = 4,
                                      .engine = Engine::kLockFreeRobinHood});
  const std::uint64_t slots0 = parent.stats().slots;
  Children children;
  const pid_t grower = children.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kGrowthResettingControls);
    for (std::uint64_t i = 0; i < 2 * slots0; ++i) {
      if (!t.insert(cat("g", i), "v")) return 4;
      if (!stop_pending()) return 0;  // grew (stopped and continued): done
    }
    return 5;  // never grew
  });
  ASSERT_TRUE(wait_until_stopped(grower, 60s)) << "the grower never reached its control-word loop";
  EXPECT_EQ(parent.stats().growths, 0u) << "the stopped grower has not published anything";

  // The parent grows (adopting the stopped grower's array) and finishes the migration.
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

// The same stopped grower, resumed later: its adopted array has become the OLD array of
// the next migration, and groups of it are MOVED. Its reset (load, CAS to version 1)
// drops MOVED too ("set once, never cleared", lockfree_robin_hood.cpp GROWTH): the next
// write to a key of such a group moves the group AGAIN, into an array that already holds
// its keys. Seen from outside: lost writes, duplicates, a dirty check.
TEST(ReviewDirectInstall, AGrowerStoppedInItsResetLoopNeverClearsMovedInTheOldArray) {
  alarm(120);
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 1000, .max_key_bytes = 32, .max_value_bytes = 32, .max_processes = 4,
                                      .engine = Engine::kLockFreeRobinHood});
  const std::uint64_t slots0 = parent.stats().slots;
  Children children;
  const pid_t grower = children.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kGrowthResettingControls);
    for (std::uint64_t i = 0; i < 2 * slots0; ++i) {
      if (!t.insert(cat("g", i), "v")) return 4;
      if (!stop_pending()) return 0;
    }
    return 5;
  });
  ASSERT_TRUE(wait_until_stopped(grower, 60s)) << "the grower never reached its control-word loop";

  // Growth 1 (into the stopped grower's adopted array), finished; then growth 2 started
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

}  // namespace
}  // namespace shmht::test
