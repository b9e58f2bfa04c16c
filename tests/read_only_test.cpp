// read_only_test.cpp - OpenOptions::read_only: a table whose file may only be read can
// be read (seqlock), writes are refused with kPermissionDenied, the other engines are
// refused with their reason, and a dead writer's lock is an error, never a hang or a
// store through the read-only mapping.
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;

OpenOptions read_only() {
  OpenOptions options;
  options.read_only = true;
  return options;
}

// The permissions of this process's mapping of `path` ("r--s" for a read-only one).
std::string mapping_permissions(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0) {
      return line.substr(line.find(' ') + 1, 4);
    }
  }
  return "";
}

TEST(ReadOnly, ReadsWorkWritesAreRefusedAndTheMappingIsReadOnly) {
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = 1000, .engine = Engine::kSeqlock});
    for (int i = 0; i < 100; ++i) t.insert(key_of(i), std::string("v").append(std::to_string(i)));
  }
  Table r = Table::open(name, read_only());
  EXPECT_EQ(mapping_permissions(r.path()), "r--s");
  EXPECT_EQ(r.get(key_of(7)), std::string("v7"));
  EXPECT_TRUE(r.contains(key_of(99)));
  EXPECT_FALSE(r.contains("absent"));
  EXPECT_EQ(r.size(), 100u);
  int seen = 0;
  r.for_each([&](std::string_view, std::string_view) { ++seen; });
  EXPECT_EQ(seen, 100);
  EXPECT_TRUE(r.stats().attached_pids.empty()) << "a read-only handle does not attach";
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.assign("k", "v"); });
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.insert("k", "v"); });
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.erase(key_of(1)); });
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.take(key_of(1)); });
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.compare_and_set(key_of(1), "v1", "w"); });
  expect_error(ErrorCode::kPermissionDenied, "read-only", [&] { r.add("counter", 1); });
  // add names itself, not the compare_and_set it is made of (issue 21).
  expect_error(ErrorCode::kPermissionDenied, "add: this table handle was opened read-only", [&] { r.add("counter", 1); });
  expect_error(ErrorCode::kPermissionDenied, "take_any: this table handle was opened read-only", [&] { r.take_any(); });
  EXPECT_EQ(r.size(), 100u);
}

TEST(ReadOnly, SeesWhatALiveWriterWrites) {
  ScopedName name;
  Table writer = Table::create(name, {.capacity = 1000, .engine = Engine::kSeqlock});
  Table r = Table::open(name, read_only());
  writer.assign("k", "first");
  EXPECT_EQ(r.get("k"), "first");
  writer.assign("k", "second");
  EXPECT_EQ(r.get("k"), "second");
  for (int i = 0; i < 500; ++i) writer.insert(key_of(i), std::string(100, 'x'));  // grows the file
  EXPECT_EQ(r.get(key_of(499)), std::string(100, 'x'));
}

class ReadOnlyRefused : public ::testing::TestWithParam<Engine> {};

TEST_P(ReadOnlyRefused, ForEnginesWhoseReadersWrite) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .engine = GetParam()}).close();
  expect_error(ErrorCode::kInvalidArgument, "readers", [&] { Table::open(name, read_only()); });
}

INSTANTIATE_TEST_SUITE_P(Engines, ReadOnlyRefused,
                         ::testing::Values(Engine::kGlobalLock, Engine::kStripedRwLock, Engine::kLockFreeRobinHood),
                         engine_param_name);

TEST(ReadOnly, ADeadWritersLockIsAnErrorNotAHang) {
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = 1000, .engine = Engine::kSeqlock});
    t.insert("k", "v");
  }
  Children children;
  children.spawn([&] {
    Table t = Table::open(name);
    die_at(FaultPoint::kAfterLock);
    t.assign("k", "w");
    return 3;
  });
  ASSERT_FALSE(children.wait_all(std::chrono::seconds(20)).at(0).exited);
  Children reader;  // bounded: a hang shows as an overrun
  reader.spawn([&] {
    Table r = Table::open(name, read_only());
    try {
      r.get("k");
    } catch (const Error& e) {
      return e.code() == ErrorCode::kPermissionDenied && std::strstr(e.what(), "write access") != nullptr ? 0 : 1;
    }
    return 2;
  });
  reader.expect_all_succeed(std::chrono::seconds(30));
  Table writer = Table::open(name);  // a read-write open recovers it
  EXPECT_EQ(writer.get("k"), "v");
}

// A writer stopped (SIGSTOP) holding a bucket looks alive for ever, to a read-only
// handle that asks the lock file and to one that may not open it and judges by the
// writer's pid (which another pid namespace, or a reused pid, makes look alive just the
// same after it died). A reader must never wait on it without end: after
// liveness::kAdminLockWait it gets kInUse naming the bucket. Run both as root (asks the
// lock file) and as uid 65534 (may not open it: the pid's word).
class ReadOnlyHeldBucket : public ::testing::TestWithParam<bool> {};

TEST_P(ReadOnlyHeldBucket, AStoppedWritersLockEndsInKInUseNotAHang) {
  const bool other_user = GetParam();
  if (other_user && geteuid() != 0) GTEST_SKIP() << "playing another user needs root (setuid)";
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = 1000, .mode = 0644, .engine = Engine::kSeqlock});
    t.insert("k", "v");
  }
  Children writer;  // its destructor SIGKILLs the stopped writer
  const pid_t w = writer.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(FaultPoint::kAfterLock);
    t.assign("k", "w");
    return 3;
  });
  ASSERT_TRUE(wait_until_stopped(w, std::chrono::seconds(20)));
  SharedArray<char> message(512);
  Children reader;  // bounded: a hang shows as an overrun (the unfixed reader spun for ever)
  reader.spawn([&] {
    if (other_user && (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)) return 2;
    Table r = Table::open(name, read_only());
    try {
      r.get("k");
      return 3;
    } catch (const Error& e) {
      std::snprintf(&message[0], 512, "%s", e.what());
      return e.code() == ErrorCode::kInUse ? 0 : 4;
    }
  });
  reader.expect_all_succeed(std::chrono::seconds(20));
  EXPECT_NE(std::string(&message[0]).find("has held bucket"), std::string::npos) << &message[0];
  EXPECT_NE(std::string(&message[0]).find("cannot tell which"), std::string::npos) << &message[0];
  kill(w, SIGKILL);  // dies holding the bucket; a read-write open recovers it
  writer.wait_all(std::chrono::seconds(20), /*overrun_fails=*/false);
  Table t = Table::open(name);
  EXPECT_EQ(t.get("k"), "v");
}

INSTANTIATE_TEST_SUITE_P(Readers, ReadOnlyHeldBucket, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "OtherUser" : "Root"; });

// The real use: a filesystem (here a private tmpfs remounted read-only) on which the file
// cannot be opened for writing at all.
TEST(ReadOnly, ReadsATableOnAReadOnlyFilesystem) {
  in_private_tmpfs([](const std::string& dir) -> std::string {
    const std::string path = dir + "/table";
    Table::create(path, {.capacity = 100, .engine = Engine::kSeqlock}).assign("k", "v");
    if (mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) return "remounting read-only failed";
    try {
      Table::open(path);
      return "a read-write open worked on a read-only filesystem";
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kPermissionDenied || std::strstr(e.what(), "read-only") == nullptr) {
        return std::string("the read-write open failed without pointing at read-only: ") + e.what();
      }
    }
    Table r = Table::open(path, read_only());
    return r.get("k") == "v" ? "" : "the read-only handle did not read the value";
  });
}

}  // namespace
}  // namespace shmht::test
