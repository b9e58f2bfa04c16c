// liveness_hardening_test.cpp - liveness and the admin lock against what issue 19 found:
// lock queries that skip live attachments, fork from a threaded process, a hostile
// read-only user holding lock bytes, a process stopped holding the admin lock, and
// read-only handles reading while the table is rewritten under them.
//
// Every multi-process part runs in forked children with a deadline (Children::wait_all),
// so a hang is reported as a failure, never as a stuck test run.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;
using namespace std::chrono_literals;

std::string path_of(const std::string& name) { return "/dev/shm/" + name; }

OpenOptions read_only() {
  OpenOptions options;
  options.read_only = true;
  return options;
}

// Waits (bounded) until flag reaches at least `value`; false on timeout.
bool wait_for(std::atomic<int>& flag, int value, std::chrono::seconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (flag.load() < value) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// 1. Every live attachment is seen, whatever order the locks were taken in. F_OFD_GETLK
// reports one conflicting lock (the oldest), not the lowest.
TEST(HeldEntries, SeesEveryAttachmentWhateverOrderTheirLocksWereTakenIn) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .engine = Engine::kSeqlock}).close();
  // step[i]: child i's progress (1: attached, 2: asked to close its handle, 3: closed);
  // release: the children may exit.
  SharedArray<std::atomic<int>> step(5);
  SharedArray<pid_t> pid_of(4);
  Children children;
  auto holder = [&](int i) {
    return [&, i] {
      std::optional<Table> t(Table::open(name));
      pid_of[i] = getpid();
      step[i] = 1;
      if (i == 0) {  // the first holder (entry 0) lets go, so a later one takes entry 0
        if (!wait_for(step[i], 2)) return 2;
        t.reset();
        step[i] = 3;
      }
      return wait_for(step[4], 1, 30s) ? 0 : 3;
    };
  };
  for (int i = 0; i < 3; ++i) {
    children.spawn(holder(i));
    ASSERT_TRUE(wait_for(step[i], 1));
  }
  step[0] = 2;
  ASSERT_TRUE(wait_for(step[0], 3));
  children.spawn(holder(3));  // takes entry 0: the newest lock on the lowest byte
  ASSERT_TRUE(wait_for(step[3], 1));

  const std::vector<pid_t> seen = Table::open(name, read_only()).stats().attached_pids;
  const std::set<pid_t> expected{pid_of[1], pid_of[2], pid_of[3]};
  EXPECT_EQ(std::set<pid_t>(seen.begin(), seen.end()), expected);
  EXPECT_EQ(seen.size(), 3u);
  step[4] = 1;
  children.expect_all_succeed(30s);
}

// ---------------------------------------------------------------------------------------
// 2. fork() while other threads open, grow and close tables: the child must be able to
// open a table (no mutex of the mapping registry left locked in it).
TEST(ForkFromThreads, ChildrenOpenTablesWhileOtherThreadsOpenGrowAndClose) {
  ScopedName shared_name, churn_name;
  Table::create(shared_name, {.capacity = 5000}).close();
  Table::create(churn_name, {.capacity = 5000}).close();
  std::atomic<bool> stop{false};
  auto churn = [&](const std::string& name, int seed) {
    for (std::uint64_t round = 0; !stop.load(); ++round) {
      Table t = Table::open(name);
      // Values big enough to claim new chunks now and then: the file grows, handles remap.
      const std::string value(200 + (round % 7) * 100, 'x');
      for (int i = 0; i < 20; ++i) t.assign(key_of(seed * 1000000 + (round * 20 + i) % 4000), value);
    }
  };
  std::thread a(churn, shared_name.str(), 1), b(churn, churn_name.str(), 2);
  Children children;
  constexpr int kChildren = 300;
  for (int i = 0; i < kChildren; ++i) {
    children.spawn([&] {
      Table t = Table::open(shared_name);
      t.get(key_of(1));
      return 0;
    });
  }
  int hung = 0, failed = 0;
  for (const Children::Outcome& o : children.wait_all(30s, /*overrun_fails=*/false)) {
    if (!o.exited) ++hung;
    else if (o.code_or_signal != 0) ++failed;
  }
  stop = true;
  a.join();
  b.join();
  EXPECT_EQ(hung, 0) << "children hung in Table::open (killed at the deadline) out of " << kChildren;
  EXPECT_EQ(failed, 0);
}

// ---------------------------------------------------------------------------------------
// 3. A user who may only read the table file holds OFD read locks on its bytes 0..128
// (the bytes that used to be the admin lock and the attachment entries).
class HostileReader : public ::testing::TestWithParam<Engine> {};

// A child that opens the table file O_RDONLY, read-locks bytes [0, 129) and waits.
pid_t spawn_read_locker(Children& children, const std::string& name, std::atomic<int>& ready) {
  return children.spawn([&] {
    const int fd = ::open(path_of(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 2;
    struct flock range{};
    range.l_type = F_RDLCK;
    range.l_whence = SEEK_SET;
    range.l_start = 0;
    range.l_len = 129;
    if (fcntl(fd, F_OFD_SETLK, &range) != 0) return 3;
    ready = 1;
    for (;;) pause();
  });
}

TEST_P(HostileReader, CannotBlockOpensNorKeepADeadWriterAlive) {
  ScopedName name;
  Table::create(name, {.capacity = 2000, .engine = GetParam()}).close();
  SharedArray<std::atomic<int>> ready(1);
  Children locker;
  spawn_read_locker(locker, name, ready[0]);
  ASSERT_TRUE(wait_for(ready[0], 1));

  // A writer dies holding a lock; then an owner opens, writes, reads, grows the file and
  // opens a second handle. All in a child with a deadline: before the fix this hung.
  Children writer;
  writer.spawn([&] {
    Table t = Table::open(name);
    die_at(stage_in(GetParam(), FaultPoint::kAfterLock));
    t.insert("dies-holding-a-lock", "v");
    return 3;
  });
  const auto died = writer.wait_all(20s);
  ASSERT_EQ(died.size(), 1u);
  ASSERT_FALSE(died[0].exited) << "the writer should have died at its fault point";

  Children owner;
  owner.spawn([&] {
    Table t = Table::open(name);
    // The dead writer's bucket: recovered, not waited on for ever.
    t.assign("dies-holding-a-lock", "again");
    if (t.get("dies-holding-a-lock") != "again") return 7;
    const std::string big(1000, 'v');
    for (int i = 0; i < 1500; ++i) t.assign(key_of(i), big);  // grows the file
    for (int i = 0; i < 1500; ++i) {
      if (t.get(key_of(i)) != big) return 4;
    }
    Table second = Table::open(name);
    if (second.get(key_of(7)) != big) return 5;
    // Nobody else is alive: the dead writer must not be listed, only our two handles.
    const std::vector<pid_t> listed = second.stats().attached_pids;
    if (listed != std::vector<pid_t>{getpid(), getpid()}) return 6;
    return 0;
  });
  owner.expect_all_succeed(30s);
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

INSTANTIATE_TEST_SUITE_P(Engines, HostileReader, ::testing::ValuesIn(built_engines()), engine_param_name);

// The lock file itself: one that someone else could have made is not trusted, and one a
// removed table left behind (still locked by that table's processes) is replaced.
TEST(LockFile, OneThatGrantsMoreThanTheTablesWritersIsRefused) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .mode = 0644}).close();
  const std::string lock = path_of(name) + ".shmht-lock";
  struct stat st{};
  ASSERT_EQ(::stat(lock.c_str(), &st), 0) << "the first attach creates it";
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "table 0644: only the owner writes, so only the owner may lock";
  ASSERT_EQ(::unlink(lock.c_str()), 0);
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fchmod(fd, 0666), 0);  // as a hostile user would leave it: anyone may lock
  ::close(fd);
  expect_error(ErrorCode::kPermissionDenied, "not to be trusted", [&] { Table::open(name); });
  // Nobody can tell who is attached through it: only a forced remove goes ahead.
  expect_error(ErrorCode::kPermissionDenied, "not to be trusted", [&] { Table::remove(name); });
  RemoveOptions force;
  force.force = true;
  EXPECT_TRUE(Table::remove(name, force));
  EXPECT_NE(::stat(lock.c_str(), &st), 0) << "remove takes the lock file with the table";
}

TEST(LockFile, OneLeftByARemovedTableIsReplacedNotTrusted) {
  ScopedName name;
  Table::create(name, {.capacity = 100}).close();
  SharedArray<std::atomic<int>> step(2);
  Children old_user;
  old_user.spawn([&] {
    Table t = Table::open(name);  // holds entry 0 of the old table's lock file
    step[0] = 1;
    return wait_for(step[1], 1, 30s) ? 0 : 2;
  });
  ASSERT_TRUE(wait_for(step[0], 1));
  ASSERT_EQ(::unlink(path_of(name).c_str()), 0);  // removed behind its back: the lock file stays
  Table fresh = Table::create(name, {.capacity = 100});
  const std::vector<pid_t> attached = fresh.stats().attached_pids;
  EXPECT_EQ(attached, std::vector<pid_t>{getpid()}) << "the old table's user is not attached to the new table";
  step[1] = 1;
  old_user.expect_all_succeed(30s);
}

// The lock file is made before the table has a name, so a file planted under the lock
// file's name stops the create cleanly: no table is left behind that nobody can open.
TEST(LockFile, OnePlantedBeforeCreateStopsTheCreateAndLeavesNoTable) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to plant the file as another user";
  ScopedName name;
  const std::string lock = path_of(name) + ".shmht-lock";
  Children planter;
  planter.spawn([&] {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) return 2;
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return 3;
    ::close(fd);
    return 0;
  });
  planter.expect_all_succeed(20s);
  expect_error(ErrorCode::kPermissionDenied, "not to be trusted", [&] { Table::create(name, {.capacity = 100}); });
  struct stat st{};
  EXPECT_NE(::stat(path_of(name).c_str(), &st), 0) << "the failed create left a table behind";
  ::unlink(lock.c_str());
}

// /proc/<pid>/fd/<n> of a NAMED table is that table: it shares its lock file, so the
// live attachments it reports (and the engine check) are the table's.
TEST(LockFile, AProcFdNameOfANamedTableUsesThatTablesLockFile) {
  ScopedName name;
  Table owner = Table::create(name, {.capacity = 100, .engine = Engine::kGlobalLock});
  const int fd = ::open(path_of(name).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  OpenOptions lockfree;
  lockfree.engine = Engine::kLockFreeRobinHood;
  expect_error(ErrorCode::kEngineMismatch, "in use", [&] { Table::open("/proc/self/fd/" + std::to_string(fd), lockfree); });
  ::close(fd);
  EXPECT_EQ(Table::active_engine(name), Engine::kGlobalLock);
}

// A table's owner who widens its mode later (here to group writers) updates the lock
// file when it next opens the table, so the new writers can attach.
TEST(LockFile, FollowsTheTablesModeWhenItsOwnerChangesIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to write as a member of the group";
  ScopedName name;
  Table::create(name, {.capacity = 100, .mode = 0644}).close();
  ASSERT_EQ(::chown(path_of(name).c_str(), static_cast<uid_t>(-1), 65534), 0);
  ASSERT_EQ(::chmod(path_of(name).c_str(), 0664), 0);
  Table::open(name).close();  // the owner opens it once
  Children group_writer;
  group_writer.spawn([&] {
    const gid_t group = 65534;
    if (setgroups(1, &group) != 0 || setresgid(65534, 65534, 65534) != 0 || setresuid(65533, 65533, 65533) != 0) return 2;
    try {
      Table t = Table::open(name);
      t.assign("k", "v");
      return 0;
    } catch (const Error& e) {
      std::fprintf(stderr, "group writer: %s\n", e.what());
      return 3;
    }
  });
  group_writer.expect_all_succeed(20s);
}

// An anonymous table has no directory entry for a companion: its locks stay on the memfd.
TEST(LockFile, AnAnonymousTableLocksItsMemfd) {
  Table t = Table::create_anonymous({.capacity = 100});
  t.assign("k", "v");
  SharedArray<std::atomic<int>> step(2);
  Children child;
  child.spawn([&] {
    Table mine = Table::open(t.path());
    step[0] = 1;
    return wait_for(step[1], 1, 30s) && mine.get("k") == "v" ? 0 : 2;
  });
  ASSERT_TRUE(wait_for(step[0], 1));
  EXPECT_EQ(t.stats().attached_pids.size(), 2u);
  step[1] = 1;
  child.expect_all_succeed(30s);
  EXPECT_EQ(t.stats().attached_pids, std::vector<pid_t>{getpid()});
}

// A read-only user who may not open the lock file cannot ask the kernel who is alive; it
// must still not wait for ever on a bucket a dead writer left locked.
TEST(LockFile, AReaderWhoMayNotOpenItStillLearnsOfADeadWriter) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to read as another user";
  ScopedName name;
  Table::create(name, {.capacity = 100, .mode = 0644, .engine = Engine::kSeqlock}).close();
  Children writer;
  writer.spawn([&] {
    Table t = Table::open(name);
    die_at(FaultPoint::kAfterLock);
    t.insert("dies-holding-a-lock", "v");
    return 3;
  });
  writer.wait_all(20s);
  SharedArray<char> message(512);
  Children reader;
  reader.spawn([&] {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) return 2;
    Table t = Table::open(name, read_only());
    if (!t.stats().attached_pids.empty()) return 5;  // the writer is dead, its pid gone
    try {
      t.get("dies-holding-a-lock");
      return 3;
    } catch (const Error& e) {
      std::snprintf(&message[0], 512, "%s", e.what());
      return e.code() == ErrorCode::kPermissionDenied ? 0 : 4;
    }
  });
  reader.expect_all_succeed(30s);
  EXPECT_NE(std::string(&message[0]).find("dead writer"), std::string::npos) << &message[0];
}

// ---------------------------------------------------------------------------------------
// 4. A process stopped while it holds the admin lock (here: in a cold start that switches
// the engine) makes openers give up after a bounded wait, with a clear error.
TEST(AdminLock, OpenersGiveUpOnAStoppedHolderWithAClearError) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .engine = Engine::kSeqlock}).close();
  Children holder;
  const pid_t stopped = holder.spawn([&] {
    stop_once_at(FaultPoint::kColdStartMidway);
    Table t = Table::open(name, {.engine = Engine::kGlobalLock});  // alone: switches, stops midway
    return 0;
  });
  ASSERT_TRUE(wait_until_stopped(stopped, 20s));

  SharedArray<char> message(512);
  Children opener;
  opener.spawn([&] {
    try {
      Table::open(name);
      return 2;
    } catch (const Error& e) {
      std::snprintf(&message[0], 512, "%s", e.what());
      return e.code() == ErrorCode::kInUse ? 0 : 3;
    }
  });
  opener.expect_all_succeed(30s);
  const std::string text = &message[0];
  EXPECT_NE(text.find("busy"), std::string::npos) << text;
  EXPECT_NE(text.find(std::to_string(stopped)), std::string::npos) << "names the holder: " << text;
  kill(stopped, SIGKILL);  // dies midway; the next open recovers
  holder.wait_all(20s, /*overrun_fails=*/false);
  Table::open(name).close();
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// ---------------------------------------------------------------------------------------
// 5. A read-only handle keeps reading while another process switches the engine (a cold
// start) and writes with the other engine: every read is right or a clear error.
TEST(ReadOnlyHandle, NeverReturnsAWrongValueWhileTheTableIsSwitchedUnderIt) {
  ScopedName name;
  constexpr int kFixed = 300;
  auto value_of = [](int i) { return "value-of-" + std::to_string(i); };
  {
    Table t = Table::create(name, {.capacity = 1200, .engine = Engine::kSeqlock});
    for (int i = 0; i < kFixed; ++i) t.insert(key_of(i), value_of(i));
  }
  SharedArray<std::atomic<int>> stop(1);
  Children switcher;
  switcher.spawn([&] {
    const Engine others[] = {Engine::kStripedRwLock, Engine::kGlobalLock, Engine::kLockFreeRobinHood};
    for (int round = 0; stop[0].load() == 0; ++round) {
      {
        Table t = Table::open(name, {.engine = others[round % 3]});
        // Churn other keys: Robin Hood shifts move the fixed keys, records get reused.
        for (int i = 0; i < 700; ++i) t.assign("churn-" + std::to_string((round * 700 + i) % 900), std::string(i % 50, 'c'));
        for (int i = 0; i < 700; ++i) t.erase("churn-" + std::to_string((round * 700 + i) % 900));
      }
      Table back = Table::open(name, {.engine = Engine::kSeqlock});
      for (int i = 0; i < 300; ++i) back.assign("churn-" + std::to_string(i), "s");
      for (int i = 0; i < 300; ++i) back.erase("churn-" + std::to_string(i));
    }
    return 0;
  });
  std::optional<Table> reader;
  int wrong = 0, right = 0, errors = 0;
  std::string first_wrong;
  const auto deadline = std::chrono::steady_clock::now() + 6s;
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      if (!reader) reader.emplace(Table::open(name, read_only()));
      for (int i = 0; i < kFixed; ++i) {
        const std::optional<std::string> got = reader->get(key_of(i));
        if (got == value_of(i)) {
          ++right;
        } else if (++wrong == 1) {
          first_wrong = key_of(i) + " -> " + (got ? "'" + *got + "'" : "absent");
        }
      }
    } catch (const Error&) {
      ++errors;  // a clear error (the table is not seqlock now, or busy): reopen later
      reader.reset();
      std::this_thread::sleep_for(1ms);
    }
  }
  stop[0] = 1;
  switcher.expect_all_succeed(60s);
  EXPECT_EQ(wrong, 0) << "first wrong read: " << first_wrong << " (" << right << " right, " << errors << " errors)";
  EXPECT_GT(right, 0);
}

}  // namespace
}  // namespace shmht::test
