// recovery_test.cpp - recovery from a lock holder that is gone, in the situations where
// "is the holder alive?" is easy to get wrong: a zombie, a thread killed by exec, peers in
// different pid namespaces, a process out of file descriptors, a copied table file, a
// killed `check`, and an engine switch right after a crash.
//
// Every step that may hang when recovery is wrong runs in a forked child with a deadline
// (Child below), so a hang is reported as "did not finish in N s", never a hung binary;
// every child is killed and reaped by pid when its Child goes out of scope.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using namespace std::chrono_literals;
using testing::FaultPoint;
using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC: comparable across processes

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

template <class Pred>
bool wait_for(Pred&& pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// One object in MAP_SHARED anonymous memory: the test and its forked children see the same
// bytes (the pattern of SharedArray in multiprocess_test.cpp).
template <class T>
class Shared {
 public:
  Shared() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    value_ = new (p) T();
  }
  ~Shared() {
    value_->~T();
    munmap(value_, sizeof(T));
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T* operator->() const { return value_; }
  T& operator*() const { return *value_; }

 private:
  T* value_;
};

struct Message {
  char text[4096];
  void set(const std::string& s) {
    const std::size_t n = std::min(s.size(), sizeof(text) - 1);
    std::memcpy(text, s.data(), n);
    text[n] = '\0';
  }
  std::string get() const { return text; }
};

// What a child's body returns when the fault point it waited for never came (an engine
// without that point, such as one that takes no lock): the scenario does not exist there.
constexpr char kNeverFired[] = "the fault point never fired";

// What a child is doing, for the message when a deadline kills it (set with stage()).
Message* g_child_stage = nullptr;
void stage(const std::string& what) {
  if (g_child_stage != nullptr) g_child_stage->set(what);
}

// body()'s outcome, an exception turned into its description.
std::string run_body(const std::function<std::string()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return std::string("exception: ") + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// One forked child running body(): "" is success, anything else says what went wrong.
// Only this child's pid is ever waited for (never waitpid(-1)), so a zombie kept on
// purpose by another Child stays a zombie. The destructor kills and reaps the child.
class Child {
 public:
  explicit Child(const std::function<std::string()>& body) {
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      g_child_stage = &*stage_;
      const std::string failure = run_body(body);
      message_->set(failure);
      _exit(failure.empty() ? 0 : 1);
    }
  }
  ~Child() { kill_and_reap(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::string message() const { return message_->get(); }

  struct Result {
    bool finished = false;  // false: still running at the deadline, and killed
    bool exited = false;    // false: killed by a signal
    int code_or_signal = 0;
    std::string message;  // the body's result; if !finished, the last stage() it reached
    double limit_s = 0;
  };

  // Waits until `deadline` for the child to end and reaps it; kills it at the deadline.
  Result wait_until(Clock::time_point deadline) {
    Result r;
    r.limit_s = std::round(std::chrono::duration<double>(deadline - Clock::now()).count() * 10) / 10;
    for (;;) {
      int status = 0;
      const pid_t got = reaped_ ? -1 : waitpid(pid_, &status, WNOHANG);
      if (got == pid_) {
        reaped_ = true;
        r.finished = true;
        r.exited = WIFEXITED(status);
        r.code_or_signal = r.exited ? WEXITSTATUS(status) : WTERMSIG(status);
        r.message = message();
        return r;
      }
      if ((got < 0 && errno != EINTR) || Clock::now() > deadline) {
        kill_and_reap();
        r.message = stage_->get();
        return r;
      }
      std::this_thread::sleep_for(1ms);
    }
  }
  Result wait(std::chrono::milliseconds limit) { return wait_until(Clock::now() + limit); }

  // Waits up to `limit` for a state change in `which` (WEXITED, WSTOPPED) without
  // consuming it: a dead child stays a zombie. nullopt if nothing happened in time.
  std::optional<siginfo_t> wait_state(int which, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid_), &info, which | WNOWAIT | WNOHANG) == 0 && info.si_pid == pid_) {
        return info;
      }
      if (Clock::now() > deadline) return std::nullopt;
      std::this_thread::sleep_for(1ms);
    }
  }

  void kill_and_reap() {
    if (pid_ <= 0 || reaped_) return;
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }

 private:
  Shared<Message> message_, stage_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

::testing::AssertionResult succeeded(const Child::Result& r) {
  if (!r.finished) {
    return ::testing::AssertionFailure() << "did not finish in " << r.limit_s << " s (killed while "
                                         << (r.message.empty() ? "starting" : r.message) << ")";
  }
  if (!r.exited) {
    return ::testing::AssertionFailure() << "killed by signal " << r.code_or_signal << " ("
                                         << strsignal(r.code_or_signal) << ")";
  }
  if (r.code_or_signal != 0) return ::testing::AssertionFailure() << "failed: " << r.message;
  return ::testing::AssertionSuccess();
}

std::string problems_of(const CheckReport& r) {
  std::string text = "check_table found " + std::to_string(r.problems.size()) + " problem(s):";
  for (std::size_t i = 0; i < r.problems.size() && i < 3; ++i) text += " [" + r.problems[i] + "]";
  return text;
}

// check_table(name) in a child with a deadline (a wedged table would hang it).
::testing::AssertionResult checks_clean(const std::string& name, std::chrono::milliseconds limit = 20s) {
  Child checker([&]() -> std::string {
    stage("running check_table");
    const CheckReport r = check_table(name);
    return r.clean ? "" : problems_of(r);
  });
  return succeeded(checker.wait(limit));
}

// /proc/<pid>/stat's state letter ('Z' for a zombie), or '?'.
char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close_paren = text.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= text.size() ? '?' : text[close_paren + 2];
}

std::string proc_comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// Value of key_of(i) in the pid-namespace test (appended, not `"v" + ...`: GCC 12 gives a
// false -Wrestrict for operator+(const char*, std::string&&)).
std::string value_of(std::uint64_t i) {
  std::string v = "v";
  v += std::to_string(i);
  return v;
}

// ---- The common table: 3000 committed keys at load ~0.64 (as in crash_test.cpp).

constexpr std::uint64_t kCapacity = 4000, kCommitted = 3000;
constexpr char kInFlight[] = "in-flight";  // the key a holder was writing when it stopped

void make_committed_table(const std::string& name, Engine engine) {
  Table t = Table::create(name, {.capacity = kCapacity, .engine = engine});
  for (std::uint64_t i = 0; i < kCommitted; ++i) t.insert(key_of(i), "committed");
}

// What a process that arrives after the holder is gone must be able to do: read every
// committed key, write the key the holder was writing and new ones, and check the table.
std::string probe_table(const std::string& name, Engine engine) {
  stage("opening the table");
  Table t = Table::open(name, {.engine = engine});
  stage("reading the committed keys");
  for (std::uint64_t i = 0; i < kCommitted; ++i) {
    const auto v = t.get(key_of(i));
    if (v != "committed") return key_of(i) + (v ? " reads '" + *v + "'" : " is missing");
  }
  stage(std::string("assigning ") + kInFlight + ", the key the holder was writing");
  t.assign(kInFlight, "prober");
  if (t.get(kInFlight) != "prober") return std::string(kInFlight) + " does not read back";
  stage("inserting new keys");
  for (int k = 0; k < 100; ++k) {
    if (!t.insert("probe-" + std::to_string(k), "p")) return "probe-" + std::to_string(k) + " was already present";
  }
  stage("running check_table");
  const CheckReport r = check_table(name);
  if (!r.clean) return problems_of(r);
  if (r.items != kCommitted + 101)
    return "check counted " + std::to_string(r.items) + " items, expected " + std::to_string(kCommitted + 101);
  return "";
}

// ---- Fault hooks (installed in children only).

FaultPoint g_point = FaultPoint::kAfterLock;
std::atomic<bool> g_armed{false};

void kill_at_point(FaultPoint point) {
  if (point == g_point && g_armed.load()) raise(SIGKILL);
}
void stop_at_point(FaultPoint point) {
  if (point == g_point && g_armed.exchange(false)) raise(SIGSTOP);
}

class Recovery : public ::testing::TestWithParam<Engine> {};

// A writer killed holding its lock is a zombie until its parent reaps it, and a zombie
// keeps /proc/<pid>/stat with the same start time. Liveness judged by that file makes
// everyone wait for a parent that may never call wait(): a dead holder must count as dead
// as soon as it has died.
TEST_P(Recovery, ZombieHolderDoesNotBlock) {
  const Engine engine = GetParam();
  ScopedName name;
  make_committed_table(name, engine);
  Child victim([&] {
    Table t = Table::open(name, {.engine = engine});
    g_point = stage_in(engine, FaultPoint::kAfterLock);
    g_armed = true;
    testing::set_fault_hook(&kill_at_point);
    t.insert(kInFlight, "victim");
    return std::string(kNeverFired);
  });
  const auto death = victim.wait_state(WEXITED, 10s);  // not reaped: it stays a zombie
  ASSERT_TRUE(death) << "the victim did not die within 10 s";
  if (death->si_code == CLD_EXITED && victim.message() == kNeverFired) GTEST_SKIP() << "no kAfterLock in this engine";
  ASSERT_EQ(death->si_code, CLD_KILLED) << "the victim ended otherwise: " << victim.message();
  ASSERT_EQ(proc_state(victim.pid()), 'Z') << "the victim should be an unreaped zombie now";

  Child prober([&] { return probe_table(name, engine); });
  EXPECT_TRUE(succeeded(prober.wait(10s))) << "prober, while the dead holder is an unreaped zombie";
  victim.kill_and_reap();  // only now
}

// exec() in a multithreaded process kills every other thread, including one that holds a
// table lock, but keeps the pid and /proc start time (the kernel gives the exec'ing thread
// the leader's). The writer here is the main thread (pid == tid), parked inside its write
// at kAfterLock; a second thread execs /bin/sleep. Nobody will ever release that lock, so
// the others must recover it although the pid is alive.
std::atomic<bool> g_writer_parked{false};
thread_local bool t_is_writer = false;
void park_writer_at_lock(FaultPoint point) {
  if (point != g_point || !t_is_writer) return;
  g_writer_parked = true;
  for (;;) pause();
}

TEST_P(Recovery, ExecDoesNotBlock) {
  const Engine engine = GetParam();
  ScopedName name;
  make_committed_table(name, engine);
  Child victim([&] {
    Table t = Table::open(name, {.engine = engine});
    testing::set_fault_hook(&park_writer_at_lock);
    std::thread([] {
      while (!g_writer_parked.load()) std::this_thread::sleep_for(1ms);
      execl("/bin/sleep", "sleep", "30", nullptr);
      _exit(4);
    }).detach();
    g_point = stage_in(engine, FaultPoint::kAfterLock);
    t_is_writer = true;
    t.insert(kInFlight, "victim");  // parks in the hook until the exec ends this thread
    return std::string(kNeverFired);
  });
  // The exec has happened (and every other thread is gone) once comm says "sleep".
  std::optional<siginfo_t> ended;
  const bool execed = wait_for(
      [&] {
        ended = victim.wait_state(WEXITED, 0ms);
        return ended.has_value() || proc_comm(victim.pid()) == "sleep";
      },
      10s);
  ASSERT_TRUE(execed) << "the victim did not exec within 10 s";
  if (ended && ended->si_code == CLD_EXITED && victim.message() == kNeverFired)
    GTEST_SKIP() << "no kAfterLock in this engine";
  ASSERT_FALSE(ended) << "the victim ended instead of exec'ing: " << victim.message();

  Child prober([&] { return probe_table(name, engine); });
  EXPECT_TRUE(succeeded(prober.wait(10s))) << "prober, after the lock holder's thread was killed by exec";
  victim.kill_and_reap();
}

// Runs body() as pid 1 of a new pid namespace with its own /proc, in a grandchild, and
// returns its outcome ("" = success; "unsupported: ..." when the kernel or our privileges
// do not allow it). Call it only in a forked child: it moves the caller into a new mount
// namespace. The host is untouched: CLONE_NEWNS gives the caller a copy of the mount
// table, MS_REC | MS_PRIVATE stops propagation between that copy and the host's before
// anything is mounted, so the new proc mount exists only inside the namespace and goes
// away with it.
constexpr char kUnsupported[] = "unsupported: ";
std::string run_as_pid_one_with_own_proc(const std::function<std::string()>& body) {
  const auto unsupported_or_failed = [](const std::string& what) {
    const int e = errno;
    return std::string(e == EPERM || e == EINVAL || e == EACCES ? kUnsupported : "") + what + ": " + std::strerror(e);
  };
  if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) return unsupported_or_failed("unshare(CLONE_NEWPID | CLONE_NEWNS)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return unsupported_or_failed("mount --make-rprivate /");
  Shared<Message> inner;
  const pid_t pid = fork();  // pid 1 of the new namespace
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with us when a deadline kills us
    std::string failure;
    if (getpid() != 1) {
      failure = "not pid 1 in the new namespace";
    } else if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      failure = unsupported_or_failed("mount proc on /proc");
    } else {
      failure = run_body(body);
    }
    inner->set(failure);
    _exit(failure.empty() ? 0 : 1);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return "pid 1 of the new namespace was killed by signal " + std::to_string(WTERMSIG(status));
  return WEXITSTATUS(status) == 0 ? "" : inner->get();
}

// Two processes attached to one table from different pid namespaces see each other's
// pid as someone else's (or no one's): each takes the other for dead, reuses its
// attachment entry (allocator state included) and takes over its locks. The table must
// tell who is attached without trusting another namespace's pid.
TEST_P(Recovery, PidNamespacePeersDoNotStealEachOthersEntries) {
  {
    Child probe([] {
      return run_as_pid_one_with_own_proc([] { return getpid() == 1 && proc_state(1) != '?' ? "" : "no /proc/1"; });
    });
    const Child::Result r = probe.wait(10s);
    if (r.finished && r.exited && r.message.rfind(kUnsupported, 0) == 0) {
      GTEST_SKIP() << "needs root (CAP_SYS_ADMIN) for a pid namespace with its own /proc: " << r.message;
    }
    ASSERT_TRUE(succeeded(r)) << "setting up a pid namespace";
  }
  const Engine engine = GetParam();
  constexpr std::uint64_t kPerLoader = 100'000;
  ScopedName name;
  // The test stays attached throughout: its entry must not be taken either.
  Table parent = Table::create(name, {.capacity = 250'000, .engine = engine});
  struct Sync {
    std::atomic<int> attached{0};
    std::atomic<bool> go{false};
  };
  Shared<Sync> sync;
  const auto load = [&](std::uint64_t first) -> std::string {
    stage("attaching");
    Table t = Table::open(name, {.engine = engine});
    ++sync->attached;
    if (!wait_for([&] { return sync->go.load(); }, 30s)) return "never told to start";
    for (std::uint64_t i = first; i < first + kPerLoader; ++i) {
      if (i % 10'000 == 0) stage("inserting " + key_of(i));
      if (!t.insert(key_of(i), value_of(i))) return "insert of " + key_of(i) + " found it present";
    }
    return "";
  };
  // B attaches first, inside its namespace; then A, in ours; then both load at once.
  Child b([&] { return run_as_pid_one_with_own_proc([&] { return load(kPerLoader); }); });
  ASSERT_TRUE(wait_for([&] { return sync->attached.load() == 1; }, 10s))
      << "loader B did not attach: " << succeeded(b.wait(0ms)).message();
  Child a([&] { return load(0); });
  ASSERT_TRUE(wait_for([&] { return sync->attached.load() == 2; }, 10s))
      << "loader A did not attach: " << succeeded(a.wait(0ms)).message();
  // Everyone in this namespace who is attached is listed as attached (B's pid means
  // nothing here, so it is not asked about).
  const auto listed = [&](pid_t pid) {
    const std::vector<pid_t> pids = parent.stats().attached_pids;
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
  };
  EXPECT_TRUE(listed(getpid())) << "this process's attachment was taken over by a loader";
  EXPECT_TRUE(listed(a.pid())) << "loader A's attachment was taken over";
  sync->go = true;
  const auto deadline = Clock::now() + 30s;
  EXPECT_TRUE(succeeded(a.wait_until(deadline))) << "loader A (this pid namespace)";
  EXPECT_TRUE(succeeded(b.wait_until(deadline))) << "loader B (pid 1 of its own pid namespace)";
  EXPECT_TRUE(listed(getpid())) << "after loading, this process is no longer listed as attached";

  Child verifier([&]() -> std::string {
    stage("opening the table");
    Table t = Table::open(name, {.engine = engine});
    stage("reading every key");
    std::uint64_t missing = 0, wrong = 0;
    std::string first;
    for (std::uint64_t i = 0; i < 2 * kPerLoader; ++i) {
      const auto v = t.get(key_of(i));
      if (v == value_of(i)) continue;
      ++(v ? wrong : missing);
      if (first.empty()) first = key_of(i) + (v ? " reads '" + *v + "'" : " is missing");
    }
    std::string failure;
    if (missing + wrong != 0) {
      failure += std::to_string(missing) + " keys missing, " + std::to_string(wrong) +
                 " with a wrong value (first: " + first + "); ";
    }
    if (t.size() != 2 * kPerLoader) failure += "size() is " + std::to_string(t.size()) + "; ";
    stage("running check_table");
    const CheckReport r = check_table(name);
    if (!r.clean) failure += problems_of(r);
    return failure;
  });
  EXPECT_TRUE(succeeded(verifier.wait(20s))) << "all " << 2 * kPerLoader << " keys, size and check";
}

// Reading /proc/<pid>/stat needs a file descriptor. A process whose descriptor table is
// full cannot open it, and that must not read as "the holder is dead": the prober here
// waits for a live holder's lock with no descriptor to spare, and must still wait.
TEST_P(Recovery, FullFdTableNeverMeansDead) {
  const Engine engine = GetParam();
  if (engine == Engine::kLockFreeRobinHood) {
    GTEST_SKIP() << "lockfree holds no lock for the prober to wait on: it finishes the holder's operation instead";
  }
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = 1000, .engine = engine});
    for (int i = 0; i < 500; ++i) t.insert(key_of(static_cast<std::uint64_t>(i)), "v");
    t.assign("contended", "initial");
  }
  struct Times {
    std::atomic<std::int64_t> prober_ready{0}, holder_locked{0}, holder_hook_returned{0}, prober_done{0};
  };
  Shared<Times> times;
  static Times* s_times;  // for the hook, in the holder
  s_times = &*times;

  Child prober([&]() -> std::string {
    Table t = Table::open(name, {.engine = engine});  // while descriptors are still available
    int highest = -1;
    if (DIR* dir = opendir("/proc/self/fd")) {
      while (const dirent* entry = readdir(dir)) highest = std::max(highest, std::atoi(entry->d_name));
      closedir(dir);
    }
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = static_cast<rlim_t>(highest + 1 + 4);
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return std::string("setrlimit: ") + std::strerror(errno);
    for (;;) {
      if (open("/dev/null", O_RDONLY) >= 0) continue;
      if (errno == EMFILE) break;
      return std::string("open /dev/null: ") + std::strerror(errno);
    }
    if (open("/proc/self/stat", O_RDONLY) >= 0) return "the descriptor table is not full";
    times->prober_ready = now_ns();
    stage("waiting for the holder to lock");
    if (!wait_for([&] { return times->holder_locked.load() != 0; }, 10s)) return "the holder never took its lock";
    stage("assigning the contended key with no descriptor to spare");
    t.assign("contended", "prober");  // must wait for the holder
    times->prober_done = now_ns();
    return "";
  });
  ASSERT_TRUE(wait_for([&] { return times->prober_ready.load() != 0; }, 10s))
      << "the prober did not get ready: " << succeeded(prober.wait(0ms)).message();

  Child holder([&]() -> std::string {
    Table t = Table::open(name, {.engine = engine});
    g_point = stage_in(engine, FaultPoint::kAfterLock);
    testing::set_fault_hook([](FaultPoint point) {
      if (point != g_point || !g_armed.exchange(false)) return;
      s_times->holder_locked = now_ns();
      std::this_thread::sleep_for(1500ms);
      s_times->holder_hook_returned = now_ns();  // the engine unlocks after this, never before
    });
    g_armed = true;
    t.assign("contended", "holder");
    return times->holder_locked.load() == 0 ? kNeverFired : "";
  });
  const auto deadline = Clock::now() + 20s;
  const Child::Result held = holder.wait_until(deadline);
  if (held.finished && held.exited && held.message == kNeverFired) GTEST_SKIP() << "no kAfterLock in this engine";
  EXPECT_TRUE(succeeded(held)) << "holder";
  EXPECT_TRUE(succeeded(prober.wait_until(deadline))) << "prober with a full descriptor table";
  EXPECT_TRUE(times->prober_done.load() >= times->holder_hook_returned.load())
      << "the prober's assign finished " << (times->holder_hook_returned.load() - times->prober_done.load()) / 1'000'000
      << " ms before the live holder released the lock: it took the lock of a live process";

  Child verifier([&]() -> std::string {
    stage("reading the contended key");
    Table t = Table::open(name, {.engine = engine});
    const auto v = t.get("contended");
    if (v != "holder" && v != "prober") return "contended reads '" + v.value_or("<missing>") + "'";
    const CheckReport r = check_table(name);
    return r.clean ? "" : problems_of(r);
  });
  EXPECT_TRUE(succeeded(verifier.wait(20s))) << "value and check afterwards";
}

// A lock word names its holder, and a copy of the file (a backup taken while a writer is
// inside a write, or the file as found after a reboot) keeps naming it. In the copy
// nobody holds anything: the copy must open and work, whether or not the process named
// there is alive (here it is, stopped inside its write on the original).
TEST_P(Recovery, CopyOfATableWithAHeldLockOpens) {
  const Engine engine = GetParam();
  ScopedName name, copy;
  make_committed_table(name, engine);
  Child holder([&] {
    Table t = Table::open(name, {.engine = engine});
    g_point = stage_in(engine, FaultPoint::kAfterLock);
    g_armed = true;
    testing::set_fault_hook(&stop_at_point);
    t.insert(kInFlight, "holder");
    return std::string(kNeverFired);
  });
  const auto state = holder.wait_state(WEXITED | WSTOPPED, 10s);
  ASSERT_TRUE(state) << "the holder did not stop within 10 s";
  if (state->si_code == CLD_EXITED && holder.message() == kNeverFired) GTEST_SKIP() << "no kAfterLock in this engine";
  ASSERT_EQ(state->si_code, CLD_STOPPED) << "the holder ended instead of stopping: " << holder.message();

  {  // byte for byte, while the holder is stopped holding its lock
    std::ifstream in("/dev/shm/" + name.str(), std::ios::binary);
    std::ofstream out("/dev/shm/" + copy.str(), std::ios::binary);
    out << in.rdbuf();
    ASSERT_TRUE(in.good() && out.good()) << "copying the table file";
  }
  Child prober([&] { return probe_table(copy, engine); });
  EXPECT_TRUE(succeeded(prober.wait(10s))) << "prober of the copy, while the lock holder of the original lives";
  holder.kill_and_reap();
}

// `check` takes exclusive access to the whole table (every bucket, or every stripe, or
// the mutex). Killed inside it, it leaves all of them held by a dead process, and the
// next operation must recover them all in time proportional to the table, not pay a
// per-unit wait for each one.
TEST_P(Recovery, KilledCheckRecoversInBoundedTime) {
  const Engine engine = GetParam();
  constexpr std::uint64_t kItems = 100'000;
  ScopedName name;
  std::uint64_t buckets = 0;
  {
    Table t = Table::create(name, {.capacity = kItems, .engine = engine});
    for (std::uint64_t i = 0; i < kItems; ++i) t.insert(key_of(i), "v");
    // A bucket is 7 slots; stats().slots is the home slots, capacity / 0.85 (~117,650), so
    // ~16,800 buckets (the 256-slot probe tail adds ~37 more).
    buckets = (t.stats().slots + 6) / 7;
  }
  // 0.5 s plus 50 us a bucket: ~1.3 s here. Waiting even 0.36 ms per bucket held by a
  // dead process (1,024 backoff rounds before a liveness check) is ~6 s.
  const auto bound = std::chrono::duration<double>(0.5 + 50e-6 * static_cast<double>(buckets));

  struct Progress {
    std::atomic<int> calls{0};
    std::atomic<std::int64_t> last_call_ns{0};
    std::atomic<std::int64_t> open_ns{0}, first_get_ns{0};
  };
  constexpr int kRounds = 3;
  for (int round = 0; round < kRounds; ++round) {
    Shared<Progress> progress;
    Child checker([&]() -> std::string {
      for (;;) {
        const std::int64_t start = now_ns();
        ++progress->calls;
        check_table(name);
        progress->last_call_ns = now_ns() - start;
      }
    });
    // Kill it halfway through a call, timed from the previous call's duration: the
    // exclusive scope covers nearly all of a check of 100,000 items.
    ASSERT_TRUE(wait_for([&] { return progress->last_call_ns.load() != 0; }, 20s)) << "check_table never completed";
    const int calls = progress->calls.load();
    ASSERT_TRUE(wait_for([&] { return progress->calls.load() != calls; }, 20s)) << "check_table stopped being called";
    std::this_thread::sleep_for(std::chrono::nanoseconds(progress->last_call_ns.load() / 2));
    checker.kill_and_reap();

    Child prober([&]() -> std::string {
      // Timed from before the open: recovering at open instead of at the first get is fine,
      // but it counts.
      stage("opening the table");
      const std::int64_t start = now_ns();
      Table t = Table::open(name, {.engine = engine});
      progress->open_ns = now_ns() - start;
      stage("the first get");
      const auto v = t.get(key_of(0));
      progress->first_get_ns = now_ns() - start;
      return v == "v" ? "" : key_of(0) + " reads wrong";
    });
    ASSERT_TRUE(succeeded(prober.wait(20s))) << "open + first get after check was killed (round " << round << ")";
    const double seconds = static_cast<double>(progress->first_get_ns.load()) / 1e9;
    const double check_ms = static_cast<double>(progress->last_call_ns.load()) / 1e6;
    std::printf(
        "[ measured ] %s round %d: check_table took %.1f ms; open + first get after killing it took %.3f s (open "
        "%.3f s; bound %.3f s, %llu buckets)\n",
        std::string(engine_name(engine)).c_str(), round, check_ms, seconds,
        static_cast<double>(progress->open_ns.load()) / 1e9, bound.count(), static_cast<unsigned long long>(buckets));
    RecordProperty("first_get_ms_round_" + std::to_string(round), static_cast<int>(seconds * 1000));
    ASSERT_LT(seconds, bound.count()) << "open + first get after a killed check took " << seconds << " s";
  }
  EXPECT_TRUE(checks_clean(name));
}

INSTANTIATE_TEST_SUITE_P(Engines, Recovery, ::testing::ValuesIn(built_engines()), engine_param_name);

// A table written under engine W, whose writer was killed at a fault point, opened first
// by engine R with nobody attached. Switching engines resets the lock words, and with them
// the evidence that someone died inside a write: the repair (removing the duplicate of an
// interrupted shift, recounting) must run before the switch, or never happens.
enum class Op { kInsert, kErase, kAssign };

struct SwitchCase {
  Engine writer;
  Engine reopen;
  Op op;
  FaultPoint point;
};

std::string switch_case_name(const ::testing::TestParamInfo<SwitchCase>& info) {
  static const char* points[] = {"AfterLock", "AfterSlotWrite", "MidShift", "BeforeUnlock", "ReadLocked"};
  static const char* ops[] = {"Insert", "Erase", "Assign"};
  const SwitchCase& c = info.param;
  return std::string(engine_name(c.writer)) + "_to_" + std::string(engine_name(c.reopen)) + "_" +
         ops[static_cast<int>(c.op)] + "_" + points[static_cast<int>(c.point)];
}

void PrintTo(const SwitchCase& c, std::ostream* os) { *os << switch_case_name({c, 0}); }

std::vector<SwitchCase> switch_cases() {
  const std::pair<Op, FaultPoint> faults[] = {
      {Op::kInsert, FaultPoint::kMidShift},       {Op::kErase, FaultPoint::kMidShift},
      {Op::kInsert, FaultPoint::kBeforeUnlock},   {Op::kErase, FaultPoint::kBeforeUnlock},
      {Op::kAssign, FaultPoint::kAfterSlotWrite}, {Op::kInsert, FaultPoint::kAfterLock},
  };
  std::vector<SwitchCase> cases;
  for (Engine w : built_engines()) {
    for (Engine r : built_engines()) {
      for (const auto& [op, point] : faults) cases.push_back({w, r, op, point});
    }
  }
  return cases;
}

// The writer's i-th operation (as in crash_test.cpp).
std::string key_for_op(Op op, std::int64_t i) {
  switch (op) {
    case Op::kInsert: return "victim-" + std::to_string(i);
    case Op::kErase: return key_of(kCommitted - 1 - static_cast<std::uint64_t>(i));
    case Op::kAssign: return key_of(static_cast<std::uint64_t>(i));
  }
  return "";
}

// Run by the first process to open the table after the crash, with engine R.
std::string verify_after_crash(const std::string& name, const SwitchCase& c, std::int64_t in_flight) {
  stage("reopening with " + std::string(engine_name(c.reopen)));
  Table t = Table::open(name, {.engine = c.reopen});
  std::string problems;
  int count = 0;
  const auto problem = [&](const std::string& text) {
    if (count++ < 6) problems += text + "; ";
  };
  stage("check_table right after reopening");
  if (const CheckReport r = check_table(name); !r.clean) problem("right after reopening, " + problems_of(r));
  stage("for_each");

  // What must be there: every key whose operation completed, with its value; the key in
  // flight may be there (with either value) or not.
  std::map<std::string, std::vector<std::string>> required, may_be_there;
  for (std::uint64_t i = 0; i < kCommitted; ++i) required[key_of(i)] = {"committed"};
  for (std::int64_t i = 0; i < in_flight; ++i) {
    const std::string key = key_for_op(c.op, i);
    if (c.op == Op::kInsert) required[key] = {"v"};
    if (c.op == Op::kErase) required.erase(key);
    if (c.op == Op::kAssign) required[key] = {"overwritten"};
  }
  const std::string in_flight_key = key_for_op(c.op, in_flight);
  required.erase(in_flight_key);
  may_be_there[in_flight_key] = {c.op == Op::kInsert ? "v" : "committed", "overwritten"};

  std::map<std::string, std::vector<std::string>> seen;
  t.for_each([&](std::string_view key, std::string_view value) { seen[std::string(key)].emplace_back(value); });
  for (const auto& [key, values] : seen) {
    if (values.size() != 1) problem(key + " is there " + std::to_string(values.size()) + " times");
    const auto* allowed = required.count(key) ? &required[key] : may_be_there.count(key) ? &may_be_there[key] : nullptr;
    if (allowed == nullptr) {
      problem(key + " should not be there");
    } else if (std::find(allowed->begin(), allowed->end(), values.front()) == allowed->end()) {
      problem(key + " reads '" + values.front() + "'");
    }
  }
  for (const auto& [key, values] : required) {
    if (!seen.count(key)) problem(key + " is missing");
  }
  if (t.size() != seen.size())
    problem("size() is " + std::to_string(t.size()) + " but for_each saw " + std::to_string(seen.size()));

  // Survivors go on: the key in flight is erased, new keys go in, the table stays clean.
  stage("erasing the key in flight and inserting new keys");
  t.erase(in_flight_key);
  if (t.contains(in_flight_key)) problem(in_flight_key + " is still there after erase");
  for (int k = 0; k < 100; ++k) {
    if (!t.insert("after-" + std::to_string(k), "a")) problem("after-" + std::to_string(k) + " was already present");
  }
  stage("the final check_table");
  if (const CheckReport r = check_table(name); !r.clean) problem("after erasing and inserting, " + problems_of(r));
  return count <= 6 ? problems : problems + "(" + std::to_string(count) + " problems in all)";
}

class RecoverySwitch : public ::testing::TestWithParam<SwitchCase> {};

TEST_P(RecoverySwitch, EngineSwitchAfterACrashRepairsFirst) {
  const SwitchCase c = GetParam();
  ScopedName name;
  make_committed_table(name, c.writer);  // and closed: this process holds no handle
  Shared<std::atomic<std::int64_t>> current;
  Child writer([&] {
    Table t = Table::open(name, {.engine = c.writer});
    g_point = stage_in(c.writer, c.point);
    g_armed = true;
    testing::set_fault_hook(&kill_at_point);
    // Keep operating until the fault point fires (a shift needs the right neighbours).
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(kCommitted); ++i) {
      *current = i;
      const std::string key = key_for_op(c.op, i);
      switch (c.op) {
        case Op::kInsert: t.insert(key, "v"); break;
        case Op::kErase: t.erase(key); break;
        case Op::kAssign: t.assign(key, "overwritten"); break;
      }
    }
    return std::string(kNeverFired);
  });
  const Child::Result crashed = writer.wait(30s);
  ASSERT_TRUE(crashed.finished) << "the writer did not reach its fault point within 30 s";
  if (crashed.exited && crashed.message == kNeverFired)
    GTEST_SKIP() << "this fault point never fires in " << engine_name(c.writer);
  ASSERT_FALSE(crashed.exited) << "the writer ended otherwise: " << crashed.message;
  ASSERT_EQ(crashed.code_or_signal, SIGKILL);

  const std::int64_t in_flight = current->load();
  Child reopener([&] { return verify_after_crash(name, c, in_flight); });
  EXPECT_TRUE(succeeded(reopener.wait(20s)))
      << engine_name(c.writer) << " writer killed, first reopened with " << engine_name(c.reopen);
}

INSTANTIATE_TEST_SUITE_P(Matrix, RecoverySwitch, ::testing::ValuesIn(switch_cases()), switch_case_name);

}  // namespace
}  // namespace shmht::test
