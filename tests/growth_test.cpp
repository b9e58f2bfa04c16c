// growth_test.cpp - growing the file and walking the free lists never wait for, or loop
// on, another process (issue 19 §1, §2).
//
// - A process stopped while it holds the admin lock (attach, detach, `check`) does not
//   stop writers that need new chunks: file growth takes no lock.
// - A process stopped after claiming a larger file size and before reserving the space
//   does not stop them either: whoever needs the bytes reserves them itself.
// - A claim whose reservation failed (ENOSPC) leaves others kNoSpace, not waiting.
// - max_bytes is limited to what a slot word can address.
// - The shared free stacks' head encoding round-trips at its limits.
// - A free list that loops (a broken or hostile peer wrote it), with arena_end set past
//   any real size, ends in kCorrupt (or a bounded count) instead of an endless walk.
//
// Every multi-process case bounds its children (Children::wait_all kills overrunners) and
// removes its table (ScopedName) whatever happens.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "arena.hpp"
#include "engines/engine.hpp"
#include "layout/header.hpp"
#include "loop_detector.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "table_access.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using namespace std::chrono_literals;
using testing::FaultPoint;

// 20,000 records of ~1 KiB: about 80 chunks of 256 KiB, so the file must grow many times.
constexpr std::uint64_t kGrowthKeys = 20'000;
const std::string kGrowthValue(1000, 'g');
constexpr auto kGrowthLimit = 30s;  // far more than the inserts need; reached only by waiting

CreateOptions growth_options(Engine engine) {
  return {.capacity = kGrowthKeys + 1000, .max_key_bytes = 64, .max_value_bytes = 1024,
          .max_bytes = std::uint64_t{256} << 20, .max_processes = 8, .engine = engine};
}

// A writer opened before the obstacle appears, waiting for `go` to insert kGrowthKeys
// new keys; `ready` is raised once it is attached.
pid_t spawn_grower(Children& children, const std::string& name, SharedArray<std::atomic<int>>& flags) {
  return children.spawn([&, name] {
    Table t = Table::open(name);
    flags[0] = 1;  // ready
    while (flags[1].load() == 0) sched_yield();  // go; the parent's wait_all bounds this
    for (std::uint64_t i = 0; i < kGrowthKeys; ++i) {
      if (!t.insert("grow-" + std::to_string(i), kGrowthValue)) return 2;
    }
    return 0;
  });
}

bool wait_for(const std::atomic<int>& flag, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (flag.load() == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    sched_yield();
  }
  return true;
}

// True when the writer finished; false (with the reason reported) when it overran the
// limit (it waited for a stopped process) or failed.
bool grower_finished(Children& growers) {
  const auto outcomes = growers.wait_all(kGrowthLimit);
  const bool finished = outcomes.size() == 1 && outcomes[0].exited && outcomes[0].code_or_signal == 0;
  EXPECT_TRUE(finished) << "the writer that needed new chunks "
                        << (outcomes.empty() ? "vanished" : outcomes[0].exited ? "exited with " : "was killed by signal ")
                        << (outcomes.empty() ? 0 : outcomes[0].code_or_signal)
                        << " (killed: it waited for a stopped process)";
  return finished;
}

// Header::file_bytes (the length claimed) and the file's real length, read from outside.
struct FileGrowth {
  std::uint64_t claimed = 0, length = 0;
};
FileGrowth file_growth(const std::string& path) {
  FileGrowth g;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st{};
  if (fd < 0 || fstat(fd, &st) != 0 ||
      pread(fd, &g.claimed, sizeof g.claimed, offsetof(layout::Header, file_bytes)) != sizeof g.claimed) {
    ADD_FAILURE() << "cannot read " << path;
  }
  g.length = static_cast<std::uint64_t>(st.st_size);
  if (fd >= 0) ::close(fd);
  return g;
}

// Each test: a table of the parameter's engine and a writer attached to it, waiting for
// flags_[1] to start growing the file.
class GrowthStall : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    Table::create(name_, growth_options(GetParam())).close();
    spawn_grower(growers_, name_, flags_);
    ASSERT_TRUE(wait_for(flags_[0], 20s)) << "the writer never attached";
  }
  ScopedName name_;
  SharedArray<std::atomic<int>> flags_{2};
  Children growers_;
};

// A child takes the admin lock through its own descriptor of the table's lock file (as
// attach, cold start and `check` do: liveness.hpp) and stops; a writer attached before
// then inserts enough to grow the file many times.
TEST_P(GrowthStall, WritersGrowTheFileWhileTheAdminLockHolderIsStopped) {
  const std::string& name = name_;
  Children holder;
  const pid_t stopped = holder.spawn([&] {
    const int fd = ::open(("/dev/shm/" + name + ".shmht-lock").c_str(), O_RDWR | O_CLOEXEC);
    struct flock admin{};
    admin.l_type = F_WRLCK;
    admin.l_whence = SEEK_SET;
    admin.l_start = static_cast<off_t>(layout::kAdminLockByte);
    admin.l_len = 1;
    if (fd < 0 || fcntl(fd, F_OFD_SETLK, &admin) != 0) return 3;
    raise(SIGSTOP);
    return 0;
  });
  ASSERT_TRUE(wait_until_stopped(stopped, 20s)) << "the admin lock holder never stopped";

  flags_[1] = 1;
  EXPECT_TRUE(grower_finished(growers_));
  kill(stopped, SIGKILL);  // holder's destructor reaps it
}

// A writer stops itself after claiming a larger file size, before reserving it; another,
// attached before then, needs new chunks past the claimed size's old end.
TEST_P(GrowthStall, WritersGrowTheFileWhileAClaimerIsStoppedBeforeReserving) {
  const std::string& name = name_;
  Children claimer;
  const pid_t stopped = claimer.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kFileGrowthClaimed);
    for (std::uint64_t i = 0; i < kGrowthKeys && stop_pending(); ++i) t.insert("claim-" + std::to_string(i), kGrowthValue);
    return stop_pending() ? 3 : 0;  // 3: it never needed to grow the file
  });
  ASSERT_TRUE(wait_until_stopped(stopped, 20s)) << "the claimer never stopped at its claim";
  const FileGrowth stalled = file_growth("/dev/shm/" + name);
  EXPECT_GT(stalled.claimed, stalled.length) << "stopped between its claim and its reservation, the claim is ahead";

  flags_[1] = 1;
  const bool finished = grower_finished(growers_);

  kill(stopped, SIGCONT);
  const auto resumed = claimer.wait_all(kGrowthLimit);
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_TRUE(resumed[0].exited && resumed[0].code_or_signal == 0)
      << "the resumed claimer " << (resumed[0].exited ? "exited with " : "was killed by signal ") << resumed[0].code_or_signal;
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  if (!finished) return;
  Table t = Table::open(name);
  for (std::uint64_t i = 0; i < kGrowthKeys; i += 997) {
    ASSERT_EQ(t.get("grow-" + std::to_string(i)), kGrowthValue) << "key " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, GrowthStall, ::testing::ValuesIn(built_engines()), engine_param_name);

// A claim whose reservation failed (ENOSPC) stays ahead of the file: another handle that
// needs those bytes finds the file short, tries to reserve them itself and gets kNoSpace
// too (never SIGBUS, never a wait); once space is freed both grow again.
TEST(GrowthNoSpace, AClaimAheadOfTheFileIsRetriedByWhoeverNeedsIt) {
  in_private_tmpfs([](const std::string& dir) -> std::string {
    const std::string filler = dir + "/filler", path = dir + "/table";
    const int fd = ::open(filler.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || posix_fallocate(fd, 0, 8 << 20) != 0) return "could not make the filler file";
    ::close(fd);
    Table first = Table::create(path, growth_options(Engine::kLockFreeRobinHood));
    Table second = Table::open(path);
    std::uint64_t stored = 0;
    try {
      for (; stored < kGrowthKeys; ++stored) first.insert("first-" + std::to_string(stored), kGrowthValue);
      return "the filesystem never filled up";
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNoSpace) return std::string("first: wrong error: ") + e.what();
    }
    const FileGrowth full = file_growth(path);
    if (full.claimed <= full.length) return "the failed claim is not ahead of the file";
    try {
      for (int i = 0; i < 1000; ++i) second.insert("second-" + std::to_string(i), kGrowthValue);
      return "the second handle grew the file on a full filesystem";
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNoSpace) return std::string("second: wrong error: ") + e.what();
    }
    ::unlink(filler.c_str());
    for (int i = 0; i < 1000; ++i) second.insert("second-" + std::to_string(i), kGrowthValue);
    for (std::uint64_t i = stored; i < stored + 1000; ++i) first.insert("first-" + std::to_string(i), kGrowthValue);
    const FileGrowth grown = file_growth(path);
    if (grown.length < full.claimed) return "the file never reached the claim that failed";
    first.close();
    second.close();
    const CheckReport report = check_table(path);
    return report.clean ? "" : "check: " + (report.problems.empty() ? std::string("?") : report.problems.front());
  });
}

// Slot words hold a record offset / 8 in 40 bits (layout/slot.hpp): a table whose arena
// could pass 8 TiB would have records whose slot words read as something else.
TEST(MaxBytes, PastWhatSlotWordsAddressIsRefused) {
  ScopedName name;
  const std::uint64_t too_large = (std::uint64_t{1} << 43) + layout::kPageBytes;
  expect_error(ErrorCode::kInvalidArgument, "max_bytes must be between 1 and 8796093022208; got 8796093026304",
               [&] { Table::create(name, {.capacity = 100, .max_bytes = too_large}); });
}

// The shared stacks' heads pack a tag and an offset / 16 into one word; both must
// survive at their limits, and a tag that wraps must leave the offset alone.
TEST(SharedFreeHead, EncodingRoundTripsAtTheLimits) {
  const std::uint64_t top_offset = kMaxBytesRange.max - 16;  // the last record any table can have
  const std::uint64_t max_tag = (std::uint64_t{1} << 25) - 1;  // at least 25 bits of tag
  for (std::uint64_t tag : {std::uint64_t{0}, std::uint64_t{1}, max_tag}) {
    for (std::uint64_t offset : {std::uint64_t{16}, std::uint64_t{4096}, top_offset}) {
      const std::uint64_t head = layout::shared_head(tag, offset);
      EXPECT_EQ(layout::shared_head_offset(head), offset) << "tag " << tag;
      EXPECT_EQ(layout::shared_head_tag(head) & max_tag, tag) << "offset " << offset;
    }
  }
  // The largest tag, bumped: it wraps to 0 and the offset is untouched.
  const std::uint64_t wrapped = layout::shared_head(layout::shared_head_tag(layout::shared_head(~std::uint64_t{0} >> 1, 16)) + 1, top_offset);
  EXPECT_EQ(layout::shared_head_offset(wrapped), top_offset);
}

// Makes the caller's own list of some size class loop: its first free record links to
// itself (loop_of_two false) or its second back to the first (a 2-record cycle), and sets
// arena_end far past any real size (what a hostile peer can write), then runs
// fn(context) in a child bounded in time (alarm(5): the walk must end after a few steps,
// whatever max_bytes allows); fn returns 0 for success.
void with_looping_free_list(const std::function<int(TableContext&)>& fn, std::uint64_t max_bytes = std::uint64_t{32} << 20,
                            bool loop_of_two = false) {
  ScopedName name;
  Table::create(name, {.capacity = 1000, .max_key_bytes = 64, .max_value_bytes = 64,
                       .max_bytes = max_bytes, .max_processes = 8}).close();
  Children child;
  child.spawn([&] {
    alarm(5);
    Table t = Table::open(name);
    for (int i = 0; i < 3; ++i) t.insert(key_of(i), "v");
    for (int i = 0; i < 3; ++i) t.erase(key_of(i));  // onto this attachment's own list
    int result = 4;  // no free record found
    TableAccess::with_admin_lock(t, [&](TableContext& ctx, const std::vector<std::uint32_t>&) {
      layout::ProcessEntry& entry = ctx.own_entry();
      for (unsigned c = 0; c < layout::kSizeClassCount; ++c) {
        const std::uint64_t first = entry.free_heads[c].load();
        if (first == 0) continue;
        const std::uint64_t second = *ctx.region().at<std::uint64_t>(first);
        if (loop_of_two && second == 0) return;  // result 4: one record only
        *ctx.region().at<std::uint64_t>(loop_of_two ? second : first) = first;  // the loop
        ctx.region().header().arena_end.store(std::uint64_t{1} << 62);
        result = fn(ctx);
        break;
      }
    });
    return result;
  });
  const auto outcomes = child.wait_all(20s);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].exited && outcomes[0].code_or_signal == 0)
      << "the walker " << (outcomes[0].exited ? "exited with " : "was killed by signal ") << outcomes[0].code_or_signal
      << (outcomes[0].exited ? "" : " (killed at the time limit: the walk never ended)");
}

// Hand-over (here from reclaim, which hands every list over) walks the list to its end.
TEST(FreeListWalk, ALoopingListEndsInCorruptNotAnEndlessWalk) {
  with_looping_free_list([](TableContext& ctx) {
    const std::uint64_t anywhere = ctx.fixed().arena_offset;
    try {
      ctx.arena().reclaim(anywhere, anywhere);  // nothing to reclaim; hands every list over
    } catch (const Error& e) {
      return e.code() == ErrorCode::kCorrupt && std::string(e.what()).find("loops") != std::string::npos ? 0 : 5;
    }
    return 6;  // no error
  });
}

// Recounting (an heir, cold start) walks every list too; it reports a count, bounded.
TEST(FreeListWalk, RecountingALoopingListEnds) {
  with_looping_free_list([](TableContext& ctx) {
    recount_free_lists(ctx.region(), ctx.entry_index());
    return 0;
  });
}

// Brent's detector on synthetic lists (offsets 16, 32, ...; the last links back to
// record mu): it finds every loop in fewer than 3 * (mu + lambda) + 4 steps, with its
// length, and records_before_loop counts the distinct records, mu + lambda.
TEST(LoopDetector, FindsEveryLoopInStepsLinearInItsSize) {
  for (std::uint64_t mu : {0u, 1u, 2u, 3u, 7u, 100u, 1000u}) {
    for (std::uint64_t lambda : {1u, 2u, 3u, 5u, 64u, 1000u, 4097u}) {
      auto next = [&](std::uint64_t offset) -> std::uint64_t {
        if (offset == 0) return 0;
        const std::uint64_t i = offset / 16 - 1;
        return 16 * ((i + 1 < mu + lambda ? i + 1 : mu) + 1);
      };
      LoopDetector loop;
      std::uint64_t offset = 16;
      while (!loop.revisits(offset)) {
        offset = next(offset);
        ASSERT_LT(loop.steps(), 3 * (mu + lambda) + 4) << "mu " << mu << " lambda " << lambda;
      }
      EXPECT_EQ(loop.loop_length(), lambda) << "mu " << mu;
      EXPECT_EQ(records_before_loop(16, loop.loop_length(), next, 1u << 20), mu + lambda);
    }
  }
}

// The reviewer's case: a 2-record cycle in a table whose max_bytes (2^43, the largest)
// once bounded the walk at ~5.5e11 steps (about 20 minutes). Brent's cycle detection
// ends each walk after a few steps; the children's alarm(5) kills a walk that does not.
constexpr std::uint64_t kLargestMaxBytes = std::uint64_t{1} << 43;

TEST(FreeListWalk, ATwoRecordLoopEndsInCorruptAfterAFewStepsAtTheLargestMaxBytes) {
  with_looping_free_list(
      [](TableContext& ctx) {
        const std::uint64_t anywhere = ctx.fixed().arena_offset;
        try {
          ctx.arena().reclaim(anywhere, anywhere);  // hands every list over
        } catch (const Error& e) {
          return e.code() == ErrorCode::kCorrupt && std::string(e.what()).find("loops") != std::string::npos ? 0 : 5;
        }
        return 6;
      },
      kLargestMaxBytes, /*loop_of_two=*/true);
}

TEST(FreeListWalk, RecountingATwoRecordLoopCountsTheRecordsBeforeTheLoop) {
  with_looping_free_list(
      [](TableContext& ctx) {
        recount_free_lists(ctx.region(), ctx.entry_index());
        std::uint64_t records = 0;
        for (unsigned c = 0; c < layout::kSizeClassCount; ++c) records += ctx.own_entry().free_counts[c].load();
        return records == 2 ? 0 : 7;  // the two records of the cycle, each once
      },
      kLargestMaxBytes, /*loop_of_two=*/true);
}

// The repro's path: a peer makes the shared stack of class 0 a 2-record cycle while nobody
// is attached; the next open switches the engine, so cold start recounts the shared
// lists under the admin lock. It must finish at once, and `check` must report the loop.
TEST(FreeListWalk, ColdStartRecountOfASharedTwoRecordLoopEndsAtOnce) {
  ScopedName name;
  const std::string path = "/dev/shm/" + name.str();
  {
    Table t = Table::create(name, {.capacity = 1000, .max_bytes = kLargestMaxBytes, .engine = Engine::kGlobalLock});
    t.assign("k", "v");  // the first chunk exists
  }
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  layout::Header h{};
  ASSERT_EQ(pread(fd, &h.fixed, sizeof h.fixed, 0), static_cast<ssize_t>(sizeof h.fixed));
  const std::uint64_t a = h.fixed.arena_offset + 4096, b = a + 16;
  const std::uint64_t head = layout::shared_head(0, a);
  ASSERT_EQ(pwrite(fd, &head, sizeof head, offsetof(layout::Header, shared_free_heads)), 8);
  ASSERT_EQ(pwrite(fd, &b, sizeof b, static_cast<off_t>(a)), 8);  // a -> b
  ASSERT_EQ(pwrite(fd, &a, sizeof a, static_cast<off_t>(b)), 8);  // b -> a
  ::close(fd);
  SharedArray<char> message(512);
  Children child;
  child.spawn([&] {
    alarm(5);
    Table::open(name, {.engine = Engine::kSeqlock}).close();  // engine switch: cold start recounts
    const CheckReport report = check_table(name);
    for (const std::string& p : report.problems) {
      if (p.find("loops") != std::string::npos) return 0;
    }
    std::snprintf(&message[0], 512, "%s", report.problems.empty() ? "no problem reported" : report.problems[0].c_str());
    return 8;
  });
  const auto outcomes = child.wait_all(20s);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].exited && outcomes[0].code_or_signal == 0)
      << (outcomes[0].exited ? "exited with " : "killed by signal ") << outcomes[0].code_or_signal << " " << &message[0];
}

}  // namespace
}  // namespace shmht::test
