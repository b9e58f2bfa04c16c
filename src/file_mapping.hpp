// file_mapping.hpp - one mapping of a table file per process, shared by all its handles.
//
// Every Table handle a process opens on the same file (same device and inode) shares one
// FileMapping: one reservation of address space, one base address. Besides saving
// address space, this makes threads that use separate handles touch the same virtual
// addresses, so ThreadSanitizer sees their accesses to shared memory as accesses to the
// same bytes (with one mapping per handle it would see two unrelated addresses).
// Read-only handles (OpenOptions::read_only) share a second, PROT_READ mapping.
//
// The reservation is PROT_NONE and starts on a 2 MiB boundary; the file is mapped over
// its front (advised MADV_HUGEPAGE), and map_up_to() maps the part of the file that grew
// since, at the same base (addresses never move).
// map_up_to is thread-safe; mapped() may be read by any thread at any time.
// fork() from a threaded process: pthread_atfork handlers take this file's mutexes (the
// registry's and every mapping's remap_mutex_) before the fork and release them on both
// sides, so a child never inherits one locked by a thread it does not have.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace shmht {

// Every descriptor this library keeps (a table file, a lock file, a memfd, a staging file)
// goes through this: a process started with stdin, stdout or stderr closed gets its next
// open() at 0, 1 or 2, and whatever it then prints (printf, a log line, std::cerr) would
// be written into the table's header. Returns `fd` when it is 3 or above, or negative (a
// failed open: errno is kept); else a copy at 3 or above (F_DUPFD_CLOEXEC), the original
// closed. If copying fails, closes `fd` and returns -1 with errno set.
int keep_off_stdio(int fd) noexcept;
// open(path, flags | O_CREAT | O_EXCL, mode), kept off fd 0-2 as keep_off_stdio does;
// if moving it fails, the file it just created is removed too, so a failure leaves no
// stray file behind (a staging file under a private name, never someone else's).
int create_exclusive_off_stdio(const char* path, int flags, mode_t mode) noexcept;

class FileMapping {
 public:
  // The mapping of the file open on `fd`: this process's existing one if the file is
  // already mapped (then `fd` is closed), else a new one reserving `reserve_bytes` and
  // mapping the first `file_bytes` (then it owns `fd`).
  // `writable` false maps it PROT_READ (a read-only handle's, from an O_RDONLY fd); a
  // process's read-only and read-write handles on one file use separate mappings.
  static std::shared_ptr<FileMapping> of(int fd, const std::string& path, std::uint64_t reserve_bytes,
                                         std::uint64_t file_bytes, bool writable = true);

  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  std::byte* base() const noexcept { return base_; }
  // Never used to take a lock (liveness.hpp asks through it).
  int fd() const noexcept { return fd_; }
  unsigned long device() const noexcept { return device_; }
  unsigned long inode() const noexcept { return inode_; }
  std::uint64_t reserved_bytes() const noexcept { return reserved_bytes_; }
  bool writable() const noexcept { return writable_; }
  struct Registry;  // the process's mappings (file_mapping.cpp)
  std::uint64_t mapped_bytes() const noexcept { return mapped_bytes_.load(std::memory_order_acquire); }
  // Maps the file up to `file_bytes` (page-rounded down, capped at the reservation).
  void map_up_to(std::uint64_t file_bytes);

 private:
  FileMapping(int fd, std::string path, std::uint64_t reserve_bytes, unsigned long device, unsigned long inode,
              bool writable);

  int fd_;
  std::string path_;
  std::byte* base_ = nullptr;
  std::uint64_t reserved_bytes_;
  std::atomic<std::uint64_t> mapped_bytes_{0};
  std::mutex remap_mutex_;
  unsigned long device_, inode_;
  bool writable_;
};

}  // namespace shmht
