#include "file_mapping.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "layout/header.hpp"
#include "shmht/error.hpp"

namespace shmht {

int keep_off_stdio(int fd) noexcept {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  const int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

int create_exclusive_off_stdio(const char* path, int flags, mode_t mode) noexcept {
  const int fd = ::open(path, flags | O_CREAT | O_EXCL, mode);
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = keep_off_stdio(fd);
  if (moved < 0) {
    const int err = errno;
    ::unlink(path);  // ours: O_EXCL made it, under a name nobody else uses
    errno = err;
  }
  return moved;
}

namespace {

using FileId = std::tuple<unsigned long, unsigned long, bool>;  // device, inode, writable

}  // namespace

// The process's mappings by file. Entries are weak: a mapping dies with its last handle.
// `live` lists every mapping not yet destroyed, for the fork handlers.
struct FileMapping::Registry {
  std::mutex mutex;
  std::map<FileId, std::weak_ptr<FileMapping>> mappings;
  std::vector<FileMapping*> live;

  static Registry& get();
  // fork() copies only the calling thread: a mutex another thread held at that moment
  // stays locked in the child forever, and the child's first Table::open (Python's
  // reopen-after-fork, say) would wait on it. So every mutex here is taken before fork
  // and released on both sides: the registry's, then each mapping's remap_mutex_ (the
  // order FileMapping::of takes them in). A mapping cannot be destroyed meanwhile: its
  // destructor takes the registry's mutex before the mapping goes away.
  static void before_fork() {
    Registry& r = get();
    r.mutex.lock();
    for (FileMapping* m : r.live) m->remap_mutex_.lock();
  }
  static void after_fork() {
    Registry& r = get();
    for (FileMapping* m : r.live) m->remap_mutex_.unlock();
    r.mutex.unlock();
  }
};

FileMapping::Registry& FileMapping::Registry::get() {
  static Registry* r = [] {
    auto* made = new Registry;  // never destroyed: handles may outlive static destructors
    pthread_atfork(&Registry::before_fork, &Registry::after_fork, &Registry::after_fork);
    return made;
  }();
  return *r;
}

namespace {

FileMapping::Registry& registry() { return FileMapping::Registry::get(); }

constexpr std::uint64_t kHugePageBytes = std::uint64_t{2} << 20;

[[noreturn]] void throw_mapping_error(const std::string& what, int err) {
  throw Error(err == ENOMEM ? ErrorCode::kTableFull : ErrorCode::kSystem, what + ": " + std::strerror(err));
}

}  // namespace

std::shared_ptr<FileMapping> FileMapping::of(int fd, const std::string& path, std::uint64_t reserve_bytes,
                                             std::uint64_t file_bytes, bool writable) {
  // This call owns fd until a new mapping takes it: every way out before that (an error,
  // an allocation that throws, an existing mapping of the same file) closes it.
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } owned{fd};
  struct stat st{};
  if (fstat(fd, &st) != 0) throw_mapping_error("fstat " + path, errno);
  const FileId id{st.st_dev, st.st_ino, writable};
  Registry& r = registry();
  // Declared before the lock: if mapping fails, the mapping may die here, and its
  // destructor takes the registry's mutex, so it must die after the lock is released.
  std::shared_ptr<FileMapping> mapping;
  // Likewise a new mapping whose shared_ptr control block fails to allocate: it stays
  // here, to die after the lock is released (mapping.reset(new ...) would destroy it
  // under the lock, and its destructor would wait on the lock forever).
  std::unique_ptr<FileMapping> made;
  std::exception_ptr failed;
  {
    std::lock_guard lock(r.mutex);
    mapping = r.mappings[id].lock();
    if (!mapping) {
      r.live.reserve(r.live.size() + 1);  // so that the push_back below cannot throw
      made.reset(new FileMapping(fd, path, reserve_bytes, st.st_dev, st.st_ino, writable));
      owned.fd = -1;  // the mapping closes it now
      mapping = std::move(made);  // on failure `made` keeps it
      r.live.push_back(mapping.get());  // its destructor removes it
    }
    try {
      mapping->map_up_to(file_bytes);
      r.mappings[id] = mapping;
    } catch (...) {
      failed = std::current_exception();
    }
  }
  if (failed) std::rethrow_exception(failed);
  return mapping;
}

FileMapping::FileMapping(int fd, std::string path, std::uint64_t reserve_bytes, unsigned long device,
                         unsigned long inode, bool writable)
    : fd_(fd), path_(std::move(path)), reserved_bytes_(reserve_bytes), device_(device), inode_(inode), writable_(writable) {
  // Reserve one huge page more than needed and start at a huge-page boundary: a shmem
  // huge page can only back a 2 MiB-aligned range of addresses whose file offsets are
  // 2 MiB-aligned too, and file offset 0 is at base_.
  const std::uint64_t padded = reserve_bytes + kHugePageBytes;
  void* base = mmap(nullptr, padded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    const int err = errno;  // fd_ stays open: a constructor that throws leaves it to its caller (FileMapping::of)
    throw_mapping_error("reserving " + std::to_string(reserve_bytes) + " bytes of address space for " + path_, err);
  }
  auto* raw = static_cast<std::byte*>(base);
  base_ = raw + (kHugePageBytes - reinterpret_cast<std::uintptr_t>(raw) % kHugePageBytes) % kHugePageBytes;
  // Give back the padding on either side.
  if (base_ != raw) munmap(raw, static_cast<std::size_t>(base_ - raw));
  const std::byte* end = raw + padded;
  if (end != base_ + reserve_bytes) munmap(base_ + reserve_bytes, static_cast<std::size_t>(end - (base_ + reserve_bytes)));
}

FileMapping::~FileMapping() {
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    const auto it = r.mappings.find({device_, inode_, writable_});
    if (it != r.mappings.end() && it->second.expired()) r.mappings.erase(it);
    std::erase(r.live, this);
  }
  munmap(base_, reserved_bytes_);
  ::close(fd_);
}

void FileMapping::map_up_to(std::uint64_t file_bytes) {
  file_bytes = std::min(file_bytes / layout::kPageBytes * layout::kPageBytes, reserved_bytes_);
  if (file_bytes <= mapped_bytes()) return;
  std::lock_guard lock(remap_mutex_);
  const std::uint64_t mapped = mapped_bytes_.load(std::memory_order_relaxed);
  if (file_bytes <= mapped) return;
  void* at = mmap(base_ + mapped, file_bytes - mapped, writable_ ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_FIXED, fd_,
                  static_cast<off_t>(mapped));
  if (at == MAP_FAILED) throw_mapping_error("mapping " + path_, errno);
  // Ask for huge pages: the kernel uses them for a tmpfs file when shmem THP is set to
  // "advise" (or "always"/"within_size"; see /sys/kernel/mm/transparent_hugepage/
  // shmem_enabled), which saves a TLB miss on most lookups of a large table. Elsewhere the
  // advice is ignored, or refused (EINVAL, on filesystems without THP): either is fine.
  madvise(at, file_bytes - mapped, MADV_HUGEPAGE);
  mapped_bytes_.store(file_bytes, std::memory_order_release);
}

}  // namespace shmht
