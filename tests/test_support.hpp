// test_support.hpp - what every shmht test needs: unique table names that are always
// removed, and forked children whose lifetime is bounded.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "layout/header.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"

namespace shmht::test {

// Removes /dev/shm/shmht-test-<pid>-* files whose <pid> is no longer running: what a
// test process killed outright (a sanitizer abort, SIGKILL, a timeout) could not remove.
inline void remove_tables_of_dead_test_processes() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  const std::string prefix = "shmht-test-";
  while (const dirent* entry = readdir(dir)) {
    const std::string file = entry->d_name;
    if (file.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(file.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) unlink(("/dev/shm/" + file).c_str());
  }
  closedir(dir);
}

// A /dev/shm table name unique to this process and call; the file is removed when the
// object dies, whatever the test did.
class ScopedName {
 public:
  ScopedName() {
    static std::once_flag sweep;
    std::call_once(sweep, remove_tables_of_dead_test_processes);
    static std::atomic<int> counter{0};
    name_ = "shmht-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    remove_file();
  }
  // Whatever the test left there (a table in use, a damaged one, a foreign file) goes.
  ~ScopedName() { remove_file(); }
  ScopedName(const ScopedName&) = delete;
  ScopedName& operator=(const ScopedName&) = delete;
  const std::string& str() const { return name_; }
  operator const std::string&() const { return name_; }  // NOLINT: used as a name

 private:
  void remove_file() const {
    ::unlink(("/dev/shm/" + name_).c_str());
    ::unlink(("/dev/shm/" + name_ + ".shmht-lock").c_str());  // its liveness lock file (liveness.hpp)
  }
  std::string name_;
};

// Forked children, each running a function and exiting with its result (0 = success).
// wait_all() waits up to a deadline and kills stragglers; the destructor kills whatever
// is still running, so a failing test leaves no process behind.
class Children {
 public:
  ~Children() { kill_all(); }

  pid_t spawn(const std::function<int()>& body) {
    const pid_t pid = fork();
    if (pid == 0) {
      int code = 99;
      try {
        code = body();
      } catch (const std::exception& e) {
        fprintf(stderr, "child %d: %s\n", getpid(), e.what());
        code = 98;
      }
      _exit(code);
    }
    if (pid > 0) pids_.push_back(pid);
    return pid;
  }

  struct Outcome {
    pid_t pid;
    bool exited;      // false: killed by a signal (or by us at the deadline)
    int code_or_signal;
  };

  // Children still running at the deadline are killed (reported as killed by SIGKILL),
  // which is a test failure unless `overrun_fails` is false.
  std::vector<Outcome> wait_all(std::chrono::seconds limit = std::chrono::seconds(60), bool overrun_fails = true) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<Outcome> outcomes;
    while (!pids_.empty()) {
      // This set's children only (never waitpid(-1)): a test with several sets must not
      // reap another set's child, which that set would then wait for until its deadline.
      bool reaped = false;
      for (const pid_t child : pids_) {
        int status = 0;
        if (waitpid(child, &status, WNOHANG) == child && (WIFEXITED(status) || WIFSIGNALED(status))) {
          std::erase(pids_, child);
          outcomes.push_back({child, WIFEXITED(status) != 0, WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)});
          reaped = true;
          break;  // pids_ changed under the loop
        }
      }
      if (reaped) continue;
      if (std::chrono::steady_clock::now() > deadline) {
        if (overrun_fails) ADD_FAILURE() << pids_.size() << " child process(es) overran " << limit.count() << " s; killing them";
        for (pid_t p : pids_) outcomes.push_back({p, false, SIGKILL});
        kill_all();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return outcomes;
  }

  // Waits for every child and expects each to have exited with status 0.
  void expect_all_succeed(std::chrono::seconds limit = std::chrono::seconds(60)) {
    for (const Outcome& o : wait_all(limit)) {
      EXPECT_TRUE(o.exited && o.code_or_signal == 0)
          << "child " << o.pid << (o.exited ? " exited with " : " killed by signal ") << o.code_or_signal;
    }
  }

 private:
  void kill_all() {
    for (pid_t p : pids_) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
    pids_.clear();
  }
  std::vector<pid_t> pids_;
};

// Memory the parent and its children share, for children to report figures.
template <class T>
class SharedArray {
 public:
  explicit SharedArray(std::size_t n) : n_(n) {
    void* p = mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    data_ = new (p) T[n]();
  }
  ~SharedArray() { munmap(data_, sizeof(T) * n_); }
  T& operator[](std::size_t i) { return data_[i]; }

 private:
  std::size_t n_;
  T* data_;
};

// Lets forked children start their racing part together (forks are sequential, so the
// first child would otherwise be done before the last one starts). Create it before
// forking; each child calls arrive_and_wait(). False if the others did not all arrive
// within the limit.
class StartLine {
 public:
  explicit StartLine(int parties) : parties_(parties), arrived_(1) {}
  bool arrive_and_wait(std::chrono::seconds limit = std::chrono::seconds(30)) {
    arrived_[0].fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (arrived_[0].load() < parties_) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      sched_yield();
    }
    return true;
  }

 private:
  int parties_;
  SharedArray<std::atomic<int>> arrived_;
};

// Crash tests: die_at(point) makes this process SIGKILL itself when an engine reaches
// `point` (install it in a forked child only).
inline testing::FaultPoint g_die_at;
inline void die_at(testing::FaultPoint point) {
  g_die_at = point;
  testing::set_fault_hook([](testing::FaultPoint reached) {
    if (reached == g_die_at) raise(SIGKILL);
  });
}

// Stall tests: stop_once_at(point) makes this process SIGSTOP itself the first time an
// engine reaches `point` (install it in a forked child only); stop_pending() stays true
// until it has. The parent waits for the stop with wait_until_stopped, then SIGCONTs.
inline testing::FaultPoint g_stop_at;
inline std::atomic<bool> g_stop_armed{false};
inline void stop_once_at(testing::FaultPoint point) {
  g_stop_at = point;
  g_stop_armed = true;
  testing::set_fault_hook([](testing::FaultPoint reached) {
    if (reached == g_stop_at && g_stop_armed.exchange(false)) raise(SIGSTOP);
  });
}
inline bool stop_pending() { return g_stop_armed; }

// Waits (bounded) until `pid` has stopped itself; false if it exited or the time ran out.
inline bool wait_until_stopped(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t got = waitpid(pid, &status, WUNTRACED | WNOHANG);
    if (got == pid) return WIFSTOPPED(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// The lock engines' fault points name moments of a write done under a lock; the
// lock-free engine has no lock, but the same moments of its multi-word CAS. The point of
// `engine` that plays the part of `lock_point` (itself, for the lock engines).
inline testing::FaultPoint stage_in(Engine engine, testing::FaultPoint lock_point) {
  if (engine != Engine::kLockFreeRobinHood) return lock_point;
  using testing::FaultPoint;
  switch (lock_point) {
    case FaultPoint::kAfterLock: return FaultPoint::kKcasPublished;       // started, nothing changed
    case FaultPoint::kMidShift: return FaultPoint::kKcasMidInstall;       // partly in place
    case FaultPoint::kBeforeUnlock: return FaultPoint::kKcasDecided;      // done, not yet cleaned up
    case FaultPoint::kAfterSlotWrite: return FaultPoint::kKcasMidCleanup; // one word final
    default: return lock_point;
  }
}

inline std::string key_of(std::uint64_t i) { return "key-" + std::to_string(i); }

// A max_bytes at which a table made with `options` has `record_chunks` arena chunks for
// its records and nothing more: a growth (growth.hpp) is first tried at 0.85 load, when
// the records already take most of those chunks, so the doubled slot array never fits.
// For tests of what a table does at its probe-distance limit, as tables did before they
// grew: such a test checks Stats::growths stays 0. Measured on a scratch table.
inline std::uint64_t max_bytes_without_growth(CreateOptions options, std::uint64_t record_chunks) {
  ScopedName scratch;
  Table::create(scratch, options).close();
  layout::ImmutableHeader fixed{};
  const int fd = ::open(("/dev/shm/" + scratch.str()).c_str(), O_RDONLY | O_CLOEXEC);
  const bool read = fd >= 0 && ::pread(fd, &fixed, sizeof fixed, 0) == static_cast<ssize_t>(sizeof fixed);
  if (fd >= 0) ::close(fd);
  if (!read) throw std::runtime_error("cannot read the scratch table's header");
  return fixed.arena_offset + record_chunks * fixed.chunk_bytes;
}

// Every engine this build has, for value-parameterised suites.
inline std::vector<Engine> built_engines() {
  std::vector<Engine> built;
  for (Engine e : kAllEngines) {
    if (engine_is_built(e)) built.push_back(e);
  }
  return built;
}

// gtest's name for a parameterised case: the engine's name.
inline std::string engine_param_name(const ::testing::TestParamInfo<Engine>& info) {
  return std::string(engine_name(info.param));
}

// Expects `fn` to throw shmht::Error with `code` and a message containing `fragment`.
template <class Fn>
void expect_error(ErrorCode code, const std::string& fragment, Fn&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << error_code_name(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << "message: " << e.what();
  }
}

// Runs body(dir) in a forked child that unshares its mount namespace and mounts a private
// 16 MiB tmpfs at a fresh directory `dir`, so the mount never reaches the host and goes
// away with the child; body returns a string, empty for success, else what went wrong.
// The test is skipped, saying why, where mounting is not allowed (not root).
inline void in_private_tmpfs(const std::function<std::string(const std::string& dir)>& body) {
  char dir_template[] = "/tmp/shmht-tmpfs-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr) << std::strerror(errno);
  const std::string dir = dir_template;
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() { ::rmdir(dir.c_str()); }
  } remove_dir{dir};
  constexpr int kUnsupported = 77;
  SharedArray<char> failure(512);
  Children child;
  child.spawn([&] {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=16m") != 0) {
      std::snprintf(&failure[0], 512, "%s", std::strerror(errno));
      return kUnsupported;
    }
    const std::string problem = body(dir);
    std::snprintf(&failure[0], 512, "%s", problem.c_str());
    return problem.empty() ? 0 : 1;
  });
  const auto outcomes = child.wait_all(std::chrono::seconds(60));
  ASSERT_EQ(outcomes.size(), 1u);
  if (outcomes[0].exited && outcomes[0].code_or_signal == kUnsupported) {
    GTEST_SKIP() << "cannot mount a private tmpfs here (needs root): " << &failure[0];
  }
  ASSERT_TRUE(outcomes[0].exited) << "the child was killed by signal " << outcomes[0].code_or_signal
                                  << (outcomes[0].code_or_signal == SIGBUS ? " (SIGBUS)" : "");
  EXPECT_EQ(outcomes[0].code_or_signal, 0) << &failure[0];
}

}  // namespace shmht::test
