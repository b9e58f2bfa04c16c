// machine.cpp - see machine.hpp.
#include "machine.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace shmht::harness {
namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

long meminfo_kib(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  std::string name, rest;
  long value = 0;
  while (in >> name >> value) {
    std::getline(in, rest);
    if (name == field + ":") return value;
  }
  return -1;
}

// "always [madvise] never" -> "madvise"
std::string selected(const std::string& line) {
  const auto open = line.find('['), close = line.find(']');
  return open == std::string::npos || close == std::string::npos ? line : line.substr(open + 1, close - open - 1);
}

}  // namespace

Json machine_json() {
  utsname u{};
  uname(&u);
  return {
      {"hostname", std::string(u.nodename)},
      {"kernel", std::string(u.sysname) + " " + u.release},
      {"arch", std::string(u.machine)},
      {"cpu_model", cpu_model()},
      {"logical_cpus", sysconf(_SC_NPROCESSORS_ONLN)},
      {"memory_bytes", meminfo_kib("MemTotal") * 1024},
      {"thp_enabled", selected(first_line("/sys/kernel/mm/transparent_hugepage/enabled"))},
      {"thp_shmem_enabled", selected(first_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled"))},
      {"hugepages_total", meminfo_kib("HugePages_Total")},
      {"hugepages_free", meminfo_kib("HugePages_Free")},
      {"compiler", __VERSION__},
  };
}

}  // namespace shmht::harness
