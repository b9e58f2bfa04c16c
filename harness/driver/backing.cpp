// backing.cpp - see backing.hpp.
#include "backing.hpp"

#include <sys/statfs.h>

#include <fstream>
#include <sstream>

namespace shmht::harness {
namespace {

constexpr const char* kTmpfsDirectory = "/dev/shm";
constexpr const char* kDiskDirectory = "/tmp";

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// "always within_size advise [never] deny force" -> "never".
std::string bracketed_choice(const std::string& line) {
  const auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return line;
  return line.substr(open + 1, close - open - 1);
}

long meminfo_value(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  long value = 0;
  std::string rest;
  while (in >> name >> value) {
    std::getline(in, rest);
    if (name == field + ":") return value;
  }
  return 0;
}

struct Mount {
  std::string directory, type, options;
};

std::optional<Mount> find_mount(const std::string& wanted_type, const std::string& wanted_directory = "") {
  std::ifstream in("/proc/mounts");
  std::string device;
  Mount m;
  std::string rest;
  while (in >> device >> m.directory >> m.type >> m.options) {
    std::getline(in, rest);
    if (m.type == wanted_type && (wanted_directory.empty() || m.directory == wanted_directory)) return m;
  }
  return std::nullopt;
}

}  // namespace

std::optional<BackingKind> parse_backing(std::string_view name) {
  if (name == "tmpfs") return BackingKind::kTmpfs;
  if (name == "disk") return BackingKind::kDisk;
  if (name == "memfd") return BackingKind::kMemfd;
  if (name == "hugepages") return BackingKind::kHugePages;
  return std::nullopt;
}

std::string_view backing_name(BackingKind kind) {
  switch (kind) {
    case BackingKind::kTmpfs: return "tmpfs";
    case BackingKind::kDisk: return "disk";
    case BackingKind::kMemfd: return "memfd";
    case BackingKind::kHugePages: return "hugepages";
  }
  return "unknown";
}

std::string filesystem_name(const std::string& path) {
  struct statfs info {};
  if (statfs(path.c_str(), &info) != 0) return "unknown";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0x01021994UL: return "tmpfs";
    case 0x958458f6UL: return "hugetlbfs";
    case 0xEF53UL: return "ext4";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794c7630UL: return "overlayfs";
    default: {
      std::ostringstream out;
      out << "0x" << std::hex << static_cast<unsigned long>(info.f_type);
      return out.str();
    }
  }
}

BackingProbe probe_backing(BackingKind kind) {
  BackingProbe probe;
  Backing b;
  b.kind = kind;
  b.huge_pages = "none";
  switch (kind) {
    case BackingKind::kTmpfs:
      b.directory = kTmpfsDirectory;
      break;
    case BackingKind::kDisk:
      b.directory = kDiskDirectory;
      break;
    case BackingKind::kMemfd:
      b.filesystem = "memfd";
      probe.backing = b;
      return probe;
    case BackingKind::kHugePages: {
      const long free_pages = meminfo_value("HugePages_Free");
      if (auto mount = find_mount("hugetlbfs"); mount && free_pages > 0) {
        b.directory = mount->directory;
        b.huge_pages = "hugetlbfs";
        break;
      }
      const std::string shmem_thp =
          bracketed_choice(read_first_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled"));
      const auto shm_mount = find_mount("tmpfs", kTmpfsDirectory);
      const bool shm_mount_huge = shm_mount && (shm_mount->options.find("huge=always") != std::string::npos ||
                                                shm_mount->options.find("huge=within_size") != std::string::npos);
      // shmht advises MADV_HUGEPAGE on its mappings (file_mapping.cpp), which "advise",
      // "always" and "within_size" honour as well as "force".
      const bool shmem_thp_honoured = shmem_thp == "force" || shmem_thp == "advise" || shmem_thp == "always" ||
                                      shmem_thp == "within_size";
      if (shmem_thp_honoured || shm_mount_huge) {
        b.directory = kTmpfsDirectory;
        b.huge_pages = "thp-shmem";
        break;
      }
      probe.unavailable_reason = "no hugetlbfs mount with free pages (HugePages_Free " + std::to_string(free_pages) +
                                 ") and no transparent huge pages for /dev/shm (shmem_enabled [" + shmem_thp +
                                 "], mount options " + (shm_mount ? shm_mount->options : std::string("?")) + ")";
      return probe;
    }
  }
  b.filesystem = filesystem_name(b.directory);
  probe.backing = b;
  return probe;
}

}  // namespace shmht::harness
