// mapping_test.cpp - how a table is mapped: at a huge-page-aligned address, advised
// MADV_HUGEPAGE (so shmem THP set to "advise" backs a large table with 2 MiB pages); and
// which descriptor numbers the files it keeps get.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

// The start address and VmFlags of this process's mapping of the file `path` names,
// found in /proc/self/smaps by its inode (a table is created under a staging name, which
// is the one smaps shows).
struct MappingInfo {
  std::uint64_t start = 0;
  std::string vm_flags;
};
MappingInfo mapping_of(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return {};
  std::ifstream smaps("/proc/self/smaps");
  MappingInfo info;
  bool in_mapping = false;
  for (std::string line; std::getline(smaps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, device;
    unsigned long inode = 0;
    if (line.rfind("VmFlags:", 0) == 0) {
      if (in_mapping && info.vm_flags.empty()) info.vm_flags = line;
      continue;
    }
    // A mapping's header: "start-end perms offset dev inode [path]".
    if (fields >> range >> perms >> offset >> device >> inode && range.find('-') != std::string::npos &&
        device.find(':') != std::string::npos) {
      in_mapping = inode == st.st_ino;
      if (in_mapping && info.start == 0) info.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    }
  }
  return info;
}

TEST(Mapping, IsHugePageAlignedAndAdvisedHugePages) {
  ScopedName name;
  Table t = Table::create(name, {.capacity = 100'000});
  for (int i = 0; i < 1000; ++i) t.assign(key_of(i), std::string(100, 'v'));
  const MappingInfo info = mapping_of(t.path());
  ASSERT_NE(info.start, 0u) << "no mapping of " << t.path() << " in /proc/self/smaps";
  EXPECT_EQ(info.start % (2u << 20), 0u) << "the file's offset 0 must sit on a 2 MiB boundary";
  EXPECT_NE(info.vm_flags.find(" hg"), std::string::npos) << "not advised MADV_HUGEPAGE: " << info.vm_flags;
}

// A process started with stdin, stdout and stderr closed (a daemon, `cmd >&-`) gets its
// next open() at 0, 1 or 2. A table file, lock file, memfd or staging file kept there
// would take every later printf or log line into the table's header. So the library keeps
// none of them below 3 (file_mapping.hpp keep_off_stdio), and what such a process writes
// to 0, 1 and 2 changes no table.
TEST(Mapping, KeepsNoDescriptorAtStdinStdoutOrStderr) {
  ScopedName existing, created;
  Table::create(existing, {.capacity = 100}).assign("k", "v");
  Children children;
  children.spawn([&]() -> int {
    for (int fd = 0; fd <= 2; ++fd) ::close(fd);
    Table opened = Table::open(existing);            // Region::open, the lock file, the attachment
    Table made = Table::create(created, {.capacity = 100});  // the O_TMPFILE staging file
    Table anonymous = Table::create_anonymous({.capacity = 100});  // the memfd
    made.assign("k", "v");
    anonymous.assign("k", "v");
    for (int fd = 0; fd <= 2; ++fd) {
      if (fcntl(fd, F_GETFD) != -1) return 10 + fd;  // a descriptor of the library's sits there
      const char junk[] = "printed with stdio closed";
      [[maybe_unused]] const ssize_t ignored = ::write(fd, junk, sizeof junk);
    }
    if (opened.get("k") != "v" || made.get("k") != "v" || anonymous.get("k") != "v") return 20;
    return 0;
  });
  children.expect_all_succeed(std::chrono::seconds(30));
  for (const ScopedName* name : {&existing, &created}) {
    EXPECT_TRUE(check_table(*name).clean) << name->str() << " was damaged";
    EXPECT_EQ(Table::open(*name).get("k"), "v") << name->str();
  }
}

// A create that fails because the descriptor it got at 0 cannot be moved up (no free
// descriptor above 2) leaves no staging file behind (review R2 F3: the lock file's
// "<name>.shmht-lock.creating-<random>" stayed in the directory for good).
TEST(Mapping, ACreateThatCannotKeepItsDescriptorOffStdioLeavesNoStagingFile) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes open files of their own (UBSan reads /proc/self/cmdline the
  // first time it checks a dynamic type) and spin when no descriptor is free.
  GTEST_SKIP() << "a sanitizer runtime cannot run with every descriptor taken";
#endif
  char dir_template[] = "/tmp/shmht-stdio-emfile-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  Children children;
  children.spawn([&]() -> int {
    const rlimit limit{16, 16};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 2;
    while (::open("/dev/null", O_RDONLY) >= 0) {
    }
    // Free: fd 0 and fd 15. The table's O_TMPFILE lands at 0 and moves to 15; the lock
    // file's staging file then lands at 0 with nowhere to move.
    ::close(0);
    ::close(15);
    try {
      Table::create(dir + "/t", {.capacity = 100});
      return 3;  // it cannot have succeeded: it needs more descriptors than it has
    } catch (const Error&) {
    }
    return 0;
  });
  children.expect_all_succeed(std::chrono::seconds(30));
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) left.push_back(entry.path().filename());
  for (const std::string& name : left) std::filesystem::remove(dir + "/" + name);
  std::filesystem::remove(dir);
  EXPECT_TRUE(left.empty()) << "left in the directory: " << ::testing::PrintToString(left);
}

}  // namespace
}  // namespace shmht::test
