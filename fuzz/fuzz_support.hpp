// fuzz_support.hpp - what both fuzz targets (and their regression replays) share: a table
// file of this process that is always removed, and "errors only" as code.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>

#include "shmht/error.hpp"
#include "shmht/table.hpp"

namespace shmht::fuzz {

// An absolute path under /dev/shm unique to this process and object; the file is removed
// when the object dies. A fuzzer that stops at a finding exits without removing it: the
// name is that of a test table (shmht-test-<pid>-...), which the test suite removes once
// its pid is gone (tests/test_support.hpp).
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& tag) {
    static std::atomic<unsigned> counter{0};
    path_ = "/dev/shm/shmht-test-" + std::to_string(getpid()) + "-fuzz-" + tag + "-" + std::to_string(counter++);
    remove();
  }
  ~ScratchFile() { remove(); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const noexcept { return path_; }

  // The file and, when it was opened as a table, its liveness lock file (liveness.hpp).
  void remove() const {
    ::unlink(path_.c_str());
    ::unlink((path_ + ".shmht-lock").c_str());
  }

  // Replaces the file's contents with `bytes`.
  void write(std::span<const std::uint8_t> bytes) const {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) throw std::runtime_error("creating " + path_ + ": " + std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("writing " + path_ + ": " + std::strerror(err));
      }
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }

 private:
  std::string path_;
};

// Runs fn; a shmht::Error is an allowed outcome (the library refused bad input), so it is
// swallowed and reported as false. Anything else propagates: a crash, a hang, a sanitizer
// report or any other exception is a finding.
template <class Fn>
bool errors_only(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace shmht::fuzz
