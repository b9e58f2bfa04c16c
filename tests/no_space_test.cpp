// no_space_test.cpp - a table on a filesystem that fills up: the writer gets kNoSpace
// (naming the file, the filesystem's size and free bytes, and what to do), never SIGBUS;
// nothing acknowledged is lost; operations that need no new space go on working; once
// space is freed, inserts work again; check is clean. For every engine.
//
// Each case runs in a forked child that unshares its mount namespace and mounts a 16 MiB
// tmpfs (root only; the test skips with the reason otherwise). MS_REC | MS_PRIVATE first,
// so the mount never reaches the host; it goes away with the child.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

constexpr std::uint64_t kFillerBytes = 4 << 20;

// Runs the scenario; returns a failure description, or "" on success.
std::string fill_until_no_space(const std::string& dir, Engine engine) {
  const std::string filler = dir + "/filler";
  {
    const int fd = ::open(filler.c_str(), O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || posix_fallocate(fd, 0, kFillerBytes) != 0) return "could not make the filler file";
    ::close(fd);
  }
  const std::string path = dir + "/table";
  Table t = Table::create(path, {.capacity = 100'000, .max_value_bytes = 1024, .engine = engine});
  const std::string value(200, 'v');
  std::uint64_t stored = 0;
  for (;; ++stored) {
    if (stored > 1'000'000) return "the filesystem never filled up";
    try {
      t.insert(key_of(stored), value);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNoSpace) return std::string("wrong error: ") + e.what();
      const std::string message = e.what();
      for (const std::string& part : std::initializer_list<std::string>{path, dir + "/", "MiB free", "--shm-size", "Nothing was changed"}) {
        if (message.find(part) == std::string::npos) return "the message lacks '" + part + "': " + message;
      }
      break;
    }
  }
  if (stored == 0) return "not one item fitted";
  // Everything acknowledged is there; the failed key is not.
  for (std::uint64_t i = 0; i < stored; ++i) {
    if (t.get(key_of(i)) != value) return "acknowledged key " + std::to_string(i) + " is missing";
  }
  if (t.contains(key_of(stored))) return "the key whose insert failed is present";
  if (t.size() != stored) return "size() is " + std::to_string(t.size()) + ", stored " + std::to_string(stored);
  // What needs no new space still works: erase, then insert into the freed records.
  for (std::uint64_t i = 0; i < 100; ++i) {
    if (!t.erase(key_of(i))) return "erase failed";
  }
  for (std::uint64_t i = 0; i < 100; ++i) {
    if (!t.insert("again-" + std::to_string(i), value)) return "insert into freed space failed";
  }
  // Once space is freed on the filesystem, the table grows again.
  if (::unlink(filler.c_str()) != 0) return "could not remove the filler";
  for (std::uint64_t i = 0; i < 2'000; ++i) t.insert("after-" + std::to_string(i), value);
  t.close();
  const CheckReport report = check_table(path);
  if (!report.clean) return "check: " + report.problems.front();
  return "";
}

class NoSpace : public ::testing::TestWithParam<Engine> {};

TEST_P(NoSpace, AFullFilesystemIsAnErrorNotASignal) {
  in_private_tmpfs([&](const std::string& dir) { return fill_until_no_space(dir, GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Engines, NoSpace, ::testing::ValuesIn(built_engines()), engine_param_name);

}  // namespace
}  // namespace shmht::test
