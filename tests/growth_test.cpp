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

class GrowthStall : public ::testing::TestWithParam<Engine> {};

// A child takes the admin lock through its own descriptor of the file (as attach, detach
// and `check` do) and stops; a writer attached before then inserts enough to grow the
// file many times.
TEST_P(GrowthStall, WritersGrowTheFileWhileTheAdminLockHolderIsStopped) {
  ScopedName name;
  Table::create(name, growth_options(GetParam())).close();
  SharedArray<std::atomic<int>> flags(2);
  Children growers;
  spawn_grower(growers, name, flags);
  ASSERT_TRUE(wait_for(flags[0], 20s)) << "the writer never attached";

  Children holder;
  const pid_t stopped = holder.spawn([&] {
    const int fd = ::open(("/dev/shm/" + name.str()).c_str(), O_RDWR | O_CLOEXEC);
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

  flags[1] = 1;
  EXPECT_TRUE(grower_finished(growers));
  kill(stopped, SIGKILL);  // holder's destructor reaps it
}

// A writer stops itself after claiming a larger file size, before reserving it; another,
// attached before then, needs new chunks past the claimed size's old end.
TEST_P(GrowthStall, WritersGrowTheFileWhileAClaimerIsStoppedBeforeReserving) {
  ScopedName name;
  Table::create(name, growth_options(GetParam())).close();
  SharedArray<std::atomic<int>> flags(2);
  Children growers;
  spawn_grower(growers, name, flags);
  ASSERT_TRUE(wait_for(flags[0], 20s)) << "the writer never attached";

  Children claimer;
  const pid_t stopped = claimer.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kFileGrowthClaimed);
    for (std::uint64_t i = 0; i < kGrowthKeys && stop_pending(); ++i) t.insert("claim-" + std::to_string(i), kGrowthValue);
    return stop_pending() ? 3 : 0;  // 3: it never needed to grow the file
  });
  ASSERT_TRUE(wait_until_stopped(stopped, 20s)) << "the claimer never stopped at its claim";
  const FileGrowth stalled = file_growth("/dev/shm/" + name.str());
  EXPECT_GT(stalled.claimed, stalled.length) << "stopped between its claim and its reservation, the claim is ahead";

  flags[1] = 1;
  const bool finished = grower_finished(growers);

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

// Makes the first free record of the caller's own list of some size class link to
// itself, and sets arena_end far past any real size (what a hostile peer can write), then
// runs fn(context) in a child bounded in time; fn returns 0 for success.
void with_looping_free_list(const std::function<int(TableContext&)>& fn) {
  ScopedName name;
  Table::create(name, {.capacity = 1000, .max_key_bytes = 64, .max_value_bytes = 64,
                       .max_bytes = std::uint64_t{32} << 20, .max_processes = 8}).close();
  Children child;
  child.spawn([&] {
    Table t = Table::open(name);
    for (int i = 0; i < 3; ++i) t.insert(key_of(i), "v");
    for (int i = 0; i < 3; ++i) t.erase(key_of(i));  // onto this attachment's own list
    int result = 4;  // no free record found
    TableAccess::with_admin_lock(t, [&](TableContext& ctx, const std::vector<std::uint32_t>&) {
      layout::ProcessEntry& entry = ctx.own_entry();
      for (unsigned c = 0; c < layout::kSizeClassCount; ++c) {
        const std::uint64_t first = entry.free_heads[c].load();
        if (first == 0) continue;
        *ctx.region().at<std::uint64_t>(first) = first;  // the record links to itself
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

}  // namespace
}  // namespace shmht::test
