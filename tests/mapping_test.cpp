// mapping_test.cpp - how a table is mapped: at a huge-page-aligned address, advised
// MADV_HUGEPAGE (so shmem THP set to "advise" backs a large table with 2 MiB pages).
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace shmht::test
