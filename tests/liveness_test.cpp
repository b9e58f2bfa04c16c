// liveness_test.cpp - the pieces of crash recovery that recovery_test.cpp's scenarios do
// not reach on their own: descriptors inherited across fork, adopting the active engine,
// lock words naming the asker, chunks claimed by a process that died, chunk tails,
// a cold start (engine switch) that is itself interrupted, and a FIFO planted where the
// lock file goes.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "layout/engine_area.hpp"
#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;

std::string path_of(const std::string& name) { return "/dev/shm/" + name; }

layout::ImmutableHeader read_fixed_header(const std::string& name) {
  layout::ImmutableHeader h{};
  const int fd = ::open(path_of(name).c_str(), O_RDONLY);
  EXPECT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ::close(fd);
  return h;
}

void expect_clean(const std::string& name) {
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

void expect_clean_and_nothing_leaked(const std::string& name) {
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.unaccounted_bytes, 0u) << "arena bytes neither live, free nor an unused chunk tail";
}

// A child keeps its parent's descriptors after fork(). If it kept the parent's
// attachment lock too, a parent that dies holding a bucket would look alive for as long
// as the child lives, and everyone would wait for it.
class ForkedChild : public ::testing::TestWithParam<Engine> {};

TEST_P(ForkedChild, DoesNotKeepADeadParentAlive) {
  ScopedName name;
  Table::create(name, {.capacity = 2000, .engine = GetParam()}).close();
  {
    Table t = Table::open(name);
    for (int i = 0; i < 1000; ++i) t.insert(key_of(i), "v");
  }
  SharedArray<pid_t> grandchild(1);
  Children children;
  children.spawn([&] {
    Table t = Table::open(name);
    t.get(key_of(0));  // attached and used
    const pid_t sleeper = fork();
    if (sleeper == 0) {
      pause();  // holds every descriptor it inherited, until the test kills it
      _exit(0);
    }
    grandchild[0] = sleeper;
    die_at(stage_in(GetParam(), FaultPoint::kAfterLock));
    t.insert("dies-holding-a-lock", "v");
    return 3;
  });
  children.wait_all(std::chrono::seconds(20));
  struct KillSleeper {
    pid_t pid;
    ~KillSleeper() {
      if (pid > 0) kill(pid, SIGKILL);  // reparented to init, which reaps it
    }
  } kill_sleeper{grandchild[0]};
  ASSERT_GT(grandchild[0], 0);

  Children probers;
  probers.spawn([&] {
    Table t = Table::open(name);
    for (int i = 0; i < 1000; ++i) {
      if (t.get(key_of(i)) != "v") return 1;
    }
    return t.insert("after", "v") ? 0 : 2;
  });
  probers.expect_all_succeed(std::chrono::seconds(15));
  expect_clean(name);
}

INSTANTIATE_TEST_SUITE_P(Engines, ForkedChild, ::testing::ValuesIn(built_engines()), engine_param_name);

TEST(AdoptEngine, OpeningWithoutAnEngineUsesTheActiveOne) {
  ScopedName name;
  Table creator = Table::create(name, {.capacity = 100, .engine = Engine::kSeqlock});
  creator.assign("k", "v");
  Table second = Table::open(name);  // live seqlock attachment: no mismatch, same engine
  EXPECT_EQ(second.engine(), Engine::kSeqlock);
  EXPECT_EQ(second.get("k"), "v");
  second.close();
  creator.close();
  Table alone = Table::open(name);  // nobody attached: still the table's engine
  EXPECT_EQ(alone.engine(), Engine::kSeqlock);
  alone.close();
  Table switched = Table::open(name, {.engine = Engine::kStripedRwLock});
  EXPECT_EQ(switched.engine(), Engine::kStripedRwLock);
  EXPECT_EQ(switched.get("k"), "v");
}

// A hostile or damaged file can mark a bucket (or stripe) held by the very owner id the
// next opener will get. Waiting for ourselves would never end: it is corruption.
class HeldBySelf : public ::testing::TestWithParam<Engine> {};

TEST_P(HeldBySelf, IsReportedAsCorruptionNotSpunOn) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .engine = GetParam()}).close();  // entry 0, generation 1
  const layout::ImmutableHeader h = read_fixed_header(name);
  const std::uint32_t next_owner = (2u << 16) | 1u;  // entry 0 again, generation 2
  const int fd = ::open(path_of(name).c_str(), O_RDWR);
  if (GetParam() == Engine::kSeqlock) {
    const std::uint64_t odd = (std::uint64_t{next_owner} << 32) | 1;
    for (std::uint64_t b = 0; b < h.bucket_count; ++b) {
      ASSERT_EQ(pwrite(fd, &odd, 8, static_cast<off_t>(h.slot_array_offset + b * sizeof(layout::Bucket))), 8);
    }
  } else {
    for (std::uint32_t s = 0; s < layout::kMaxStripes; ++s) {
      const off_t at = static_cast<off_t>(h.engine_area_offset + layout::kWriterWordsOffset + s * sizeof(layout::WriterWord));
      ASSERT_EQ(pwrite(fd, &next_owner, 4, at), 4);
    }
  }
  ::close(fd);
  Children children;
  children.spawn([&] {
    Table t = Table::open(name);
    try {
      t.insert("k", "v");
    } catch (const Error& e) {
      const bool named = std::string(e.what()).find("held by this attachment") != std::string::npos;
      return e.code() == ErrorCode::kCorrupt && named ? 0 : 1;
    }
    return 2;  // no error
  });
  children.expect_all_succeed(std::chrono::seconds(10));
}

INSTANTIATE_TEST_SUITE_P(LockWordEngines, HeldBySelf, ::testing::Values(Engine::kStripedRwLock, Engine::kSeqlock),
                         engine_param_name);

// A process killed after winning a chunk's claim but before recording the chunk in its
// entry must not leak the chunk: the next holder of the entry takes it.
TEST(ChunkClaim, ADeadClaimantsChunkGoesToTheHeirOfItsEntry) {
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 1000, .max_processes = 2, .engine = Engine::kSeqlock});
  parent.assign("parent", "v");  // entry 0 has its chunk
  Children children;
  children.spawn([&] {
    Table t = Table::open(name);  // entry 1
    die_at(FaultPoint::kAfterChunkClaim);
    t.assign("child", "v");
    return 3;
  });
  const auto outcomes = children.wait_all(std::chrono::seconds(20));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "the child never claimed a chunk";
  const std::uint64_t chunks_after_crash = parent.stats().arena_bytes;

  Table heir = Table::open(name);  // entry 0 is live: takes the dead entry 1
  for (int i = 0; i < 100; ++i) heir.assign(key_of(i), "v");
  EXPECT_EQ(heir.stats().arena_bytes, chunks_after_crash) << "the heir took a new chunk instead of the claimed one";
  heir.close();
  expect_clean_and_nothing_leaked(name);
}

// The output of `$SHMHT_CLI ARGS` (stdout and stderr), or nullopt when meson did not say
// where the CLI is.
std::optional<std::string> run_cli(const std::string& args) {
  const char* cli = std::getenv("SHMHT_CLI");
  if (cli == nullptr) return std::nullopt;
  std::string command = "'";
  command.append(cli).append("' ").append(args).append(" 2>&1");
  FILE* out = popen(command.c_str(), "r");
  if (out == nullptr) return std::nullopt;
  std::string text;
  char buffer[512];
  while (const std::size_t n = fread(buffer, 1, sizeof buffer, out)) text.append(buffer, n);
  pclose(out);
  return text;
}

int g_claimed_fd = -1;

// A writer between claiming a chunk and recording it in its entry (kAfterChunkClaim:
// allocation, before any lock) holds arena bytes no slot or free list accounts for. While
// it lives they are in flight, not leaked: check sees its attachment, and `shmht check`
// must not call them "leaked by crashed writers".
TEST(ChunkClaim, ALiveClaimantsChunkIsInFlightNotLeaked) {
  ScopedName name;
  Table::create(name, {.capacity = 1000, .engine = Engine::kSeqlock}).close();
  int claimed[2];
  ASSERT_EQ(pipe(claimed), 0);
  Children children;
  children.spawn([&] {
    ::close(claimed[0]);
    Table t = Table::open(name);
    g_claimed_fd = claimed[1];
    testing::set_fault_hook([](FaultPoint reached) {
      if (reached != FaultPoint::kAfterChunkClaim) return;
      const char byte = 1;
      if (write(g_claimed_fd, &byte, 1) == 1) pause();  // until the test kills it
    });
    t.assign("child", "v");
    return 3;  // never claimed a chunk
  });
  ::close(claimed[1]);
  pollfd ready{claimed[0], POLLIN, 0};
  const int polled = poll(&ready, 1, 20'000);
  ::close(claimed[0]);
  ASSERT_EQ(polled, 1) << "the child did not reach kAfterChunkClaim within 20 s";

  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.other_attachments, 1u) << "the paused writer's attachment";
  // check accounts a chunk to the attachment whose claiming_chunk names it, live or dead.
  EXPECT_EQ(report.unaccounted_bytes, 0u) << "the chunk being claimed belongs to its claimant";

  const std::optional<std::string> output = run_cli("check " + name.str());
  if (!output) GTEST_SKIP() << "SHMHT_CLI is not set (meson test sets it)";
  EXPECT_EQ(output->find("leaked"), std::string::npos) << *output;
}

// Records of mixed sizes leave chunk tails too small for the next record; without a
// crash, every arena byte is live, free or an unused tail, never "unaccounted".
TEST(ChunkClaim, ChunkTailsAreNotReportedAsLeaked) {
  ScopedName name;
  Table t = Table::create(name, {.capacity = 1000, .max_value_bytes = 64 * 1024});
  const std::size_t sizes[] = {100, 5000, 20'000, 60'000, 700};
  for (int i = 0; i < 200; ++i) t.assign(key_of(i), std::string(sizes[i % 5], 'x'));
  for (int i = 0; i < 200; i += 3) t.erase(key_of(i));
  t.close();
  expect_clean_and_nothing_leaked(name);
}

// An engine switch that dies half-way (old lock state cleared, new one not yet set up)
// is finished by the next opener: the global engine's mutex is robust and shared again,
// so a holder killed afterwards is recovered and contending processes all finish.
TEST(ColdStart, AnInterruptedSwitchIsCompletedByTheNextOpener) {
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = 4000, .engine = Engine::kSeqlock});
    for (int i = 0; i < 3000; ++i) t.insert(key_of(i), "committed");
  }
  Children switcher;
  switcher.spawn([&] {
    die_at(FaultPoint::kColdStartMidway);
    Table::open(name, {.engine = Engine::kGlobalLock});
    return 3;
  });
  const auto outcomes = switcher.wait_all(std::chrono::seconds(20));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "the switch never reached its midpoint";

  Children killed;
  killed.spawn([&] {
    Table t = Table::open(name, {.engine = Engine::kGlobalLock});
    die_at(FaultPoint::kAfterLock);
    t.assign("victim", "v");
    return 3;
  });
  killed.wait_all(std::chrono::seconds(20));
  Children contenders;
  for (int c = 0; c < 3; ++c) {
    contenders.spawn([&, c] {
      Table t = Table::open(name);
      if (t.engine() != Engine::kGlobalLock) return 1;
      for (int i = 0; i < 2000; ++i) t.assign(key_of(i % 100), std::to_string(c));
      return 0;
    });
  }
  contenders.expect_all_succeed(std::chrono::seconds(30));
  Table t = Table::open(name);
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(t.get(key_of(i))) << "key " << i;
  t.close();
  expect_clean(name);
}

// Anyone who may write the table's directory may put a FIFO at NAME.shmht-lock. Opening
// one O_RDONLY waits for a writer for ever: a read-only handle asking who is attached
// (stats(), `shmht ls`, `stat --read-only`) hung. The lock file is opened O_NONBLOCK and,
// not being a regular file, refused (kPermissionDenied, "not to be trusted"); a writer
// is refused the same way.
TEST(LockFile, AFifoInItsPlaceIsRefusedNotWaitedOn) {
  ScopedName name;
  Table::create(name, {.capacity = 100}).assign("k", "v");
  const std::string lock_path = path_of(name) + ".shmht-lock";
  ASSERT_EQ(::unlink(lock_path.c_str()), 0);
  ASSERT_EQ(::mkfifo(lock_path.c_str(), 0600), 0);
  Children children;
  children.spawn([&]() -> int {
    try {
      Table reader = Table::open(name, {.engine = std::nullopt, .read_only = true});
      reader.stats();  // asks the lock file which attachments are live
      return 10;       // a FIFO trusted as a lock file
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kPermissionDenied || std::string(e.what()).find("not a regular file") == std::string::npos) return 11;
    }
    try {
      Table::open(name);
      return 12;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kPermissionDenied ? 0 : 13;
    }
  });
  children.expect_all_succeed(std::chrono::seconds(10));  // a hang is killed here and fails
}

}  // namespace
}  // namespace shmht::test
