// backing.hpp - where a store's shared memory lives, and whether this machine has it.
//
//   tmpfs      /dev/shm/<name>                  (RAM; the default)
//   disk       /tmp/<name>                      (a regular file; on this machine /tmp is on
//                                                the root disk file system, not tmpfs)
//   memfd      an anonymous memfd (memfd_create), reached by children as /proc/<pid>/fd/<n>
//   hugepages  a file on a hugetlbfs mount with free 2 MB pages, or a tmpfs file when the
//              kernel gives shmem transparent huge pages; "unavailable" otherwise
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace shmht::harness {

enum class BackingKind { kTmpfs, kDisk, kMemfd, kHugePages };

std::optional<BackingKind> parse_backing(std::string_view name);
std::string_view backing_name(BackingKind kind);

struct Backing {
  BackingKind kind = BackingKind::kTmpfs;
  std::string directory;    // where named files go ("" for memfd)
  std::string filesystem;   // "tmpfs", "ext4", "hugetlbfs", ... (statfs of directory)
  std::string huge_pages;   // "hugetlbfs", "thp-shmem" or "none"
};

struct BackingProbe {
  std::optional<Backing> backing;  // set when available
  std::string unavailable_reason;  // set when not
};

// Looks at the machine (mounts, /proc/meminfo, /sys/kernel/mm/transparent_hugepage).
BackingProbe probe_backing(BackingKind kind);

// The file system type of `path` as a name ("tmpfs", "ext4", "xfs", ... or a hex magic).
std::string filesystem_name(const std::string& path);

}  // namespace shmht::harness
