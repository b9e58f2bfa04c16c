#include "liveness.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "layout/header.hpp"
#include "shmht/error.hpp"

namespace shmht::liveness {

namespace {

[[noreturn]] void throw_system(const std::string& what, int err) {
  throw Error(err == EACCES || err == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kSystem,
              what + ": " + std::strerror(err));
}

struct flock byte_range(short type, std::uint64_t start, std::uint64_t length) {
  struct flock range{};
  range.l_type = type;
  range.l_whence = SEEK_SET;
  range.l_start = static_cast<off_t>(start);
  range.l_len = static_cast<off_t>(length);
  range.l_pid = 0;  // F_OFD_* requires 0
  return range;
}

// fcntl that retries when a signal interrupts it (F_OFD_SETLKW sleeps).
int fcntl_lock(int fd, int command, struct flock* range) {
  int rc;
  do {
    rc = fcntl(fd, command, range);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

}  // namespace

// Every attachment descriptor of this process, so that a forked child can close its
// copies. Held across fork() by the prepare handler, so no thread is half-way through
// registering when the child's handler runs.
struct Registry {
  std::mutex mutex;
  std::vector<AttachmentFd*> fds;

  static Registry& get() {
    static Registry* registry = [] {
      auto* r = new Registry;  // never destroyed: attachments may outlive static destructors
      pthread_atfork([] { get().mutex.lock(); }, [] { get().mutex.unlock(); },
                     [] {
                       Registry& self = get();
                       for (AttachmentFd* a : self.fds) {
                         ::close(a->fd_);
                         a->fd_ = -1;  // the child's copy is gone; its owner must not close it again
                       }
                       self.fds.clear();
                       self.mutex.unlock();
                     });
      return r;
    }();
    return *registry;
  }
};

AttachmentFd::AttachmentFd(const std::string& path, unsigned long device, unsigned long inode) : path_(path) {
  // /proc/<pid>/fd/<n> (an anonymous table's name) is a symlink by design: follow it.
  const bool proc_fd = path.rfind("/proc/", 0) == 0;
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (proc_fd ? 0 : O_NOFOLLOW));
  if (fd_ < 0) throw_system("opening " + path + " for its attachment lock", errno);
  struct stat st{};
  if (fstat(fd_, &st) != 0 || st.st_dev != device || st.st_ino != inode) {
    ::close(fd_);
    throw Error(ErrorCode::kNotFound, path + ": the file was removed or replaced while it was being opened");
  }
  Registry& registry = Registry::get();
  std::lock_guard lock(registry.mutex);
  registry.fds.push_back(this);
}

AttachmentFd::~AttachmentFd() {
  Registry& registry = Registry::get();
  std::lock_guard lock(registry.mutex);
  std::erase(registry.fds, this);
  if (fd_ >= 0) ::close(fd_);  // releases every lock of this description
}

bool AttachmentFd::try_lock_entry(std::uint32_t index) {
  struct flock range = byte_range(F_WRLCK, layout::kEntryLockBase + index, 1);
  if (fcntl_lock(fd_, F_OFD_SETLK, &range) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  throw_system("locking attachment entry " + std::to_string(index) + " of " + path_, errno);
}

void AttachmentFd::unlock_entry(std::uint32_t index) noexcept {
  if (fd_ < 0) return;
  struct flock range = byte_range(F_UNLCK, layout::kEntryLockBase + index, 1);
  fcntl_lock(fd_, F_OFD_SETLK, &range);
}

AttachmentFd::AdminLock::AdminLock(AttachmentFd& owner) : fd_(owner.fd_) {
  struct flock range = byte_range(F_WRLCK, layout::kAdminLockByte, 1);
  if (fcntl_lock(fd_, F_OFD_SETLKW, &range) != 0) throw_system("taking the admin lock of " + owner.path_, errno);
}

AttachmentFd::AdminLock::~AdminLock() {
  struct flock range = byte_range(F_UNLCK, layout::kAdminLockByte, 1);
  fcntl_lock(fd_, F_OFD_SETLK, &range);
}

bool entry_is_held(int query_fd, std::uint32_t index) noexcept {
  struct flock range = byte_range(F_WRLCK, layout::kEntryLockBase + index, 1);
  if (fcntl_lock(query_fd, F_OFD_GETLK, &range) != 0) return true;  // never "dead" from an error
  return range.l_type != F_UNLCK;
}

std::vector<std::uint32_t> held_entries(int query_fd, std::uint32_t count) {
  std::vector<std::uint32_t> held;
  std::uint64_t next = 0;
  while (next < count) {
    struct flock range = byte_range(F_WRLCK, layout::kEntryLockBase + next, count - next);
    if (fcntl_lock(query_fd, F_OFD_GETLK, &range) != 0) throw_system("asking which attachments are live", errno);
    if (range.l_type == F_UNLCK) break;
    // The conflicting lock may span more than one byte (one description's adjacent locks
    // merge, e.g. the admin byte and entry 0): every byte in it is held.
    const std::uint64_t first = std::max<std::uint64_t>(static_cast<std::uint64_t>(range.l_start), layout::kEntryLockBase + next);
    const std::uint64_t end = range.l_len == 0 ? layout::kEntryLockBase + count
                                               : static_cast<std::uint64_t>(range.l_start + range.l_len);
    for (std::uint64_t byte = first; byte < end && byte < layout::kEntryLockBase + count; ++byte) {
      held.push_back(static_cast<std::uint32_t>(byte - layout::kEntryLockBase));
    }
    next = std::max(next + 1, end - layout::kEntryLockBase);
  }
  return held;
}

}  // namespace shmht::liveness
