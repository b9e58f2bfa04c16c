#include "liveness.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

#include "file_mapping.hpp"
#include "layout/header.hpp"
#include "shmht/error.hpp"

namespace shmht::liveness {

namespace {

// Closes a descriptor on the way out of a scope, unless fd was set to -1 (handed over).
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

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

// fcntl that retries when a signal interrupts it.
int fcntl_lock(int fd, int command, struct flock* range) {
  int rc;
  do {
    rc = fcntl(fd, command, range);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

static_assert(sizeof(LockFileHeader) == 48 && offsetof(LockFileHeader, admin_holder_pid) == 40,
              "the lock file's header: identity words, then the admin holder's pid");

// The file a /proc/<pid>/fd/<n> name stands for: an anonymous table ("" : a memfd, which
// has no directory to put a lock file in), or a named table's path (its lock file is
// beside that path, where its other users look for it). Any other name is itself.
std::string named_path_of(const std::string& table_path) {
  if (table_path.rfind("/proc/", 0) != 0) return table_path;
  char target[4096];
  const ssize_t length = ::readlink(table_path.c_str(), target, sizeof target - 1);
  if (length <= 0 || target[0] != '/' || std::string_view(target, static_cast<std::size_t>(length)).starts_with("/memfd:")) {
    return "";
  }
  std::string path(target, static_cast<std::size_t>(length));
  constexpr std::string_view kDeleted = " (deleted)";  // a removed table: its lock file was removed with it
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

bool is_anonymous(const std::string& table_path) { return named_path_of(table_path).empty(); }

// For each of user, group, other: read+write where the table grants write, else nothing.
std::uint32_t writers_only_mode(std::uint32_t table_mode) {
  std::uint32_t mode = 0;
  for (std::uint32_t shift : {6u, 3u, 0u}) {
    if (table_mode & (S_IWOTH << shift)) mode |= (S_IROTH | S_IWOTH) << shift;
  }
  return mode;
}

LockFileHeader header_for(const TableIdentity& table) {
  LockFileHeader h{};
  std::memcpy(h.magic, kLockFileMagic, sizeof h.magic);
  h.table_device = table.device;
  h.table_inode = table.inode;
  h.table_created_unix_ns = table.created_unix_ns;
  h.table_hash_seed = table.hash_seed;
  return h;
}

// Why the lock file open on `fd` must not be trusted for `table`, or "" if it may be.
std::string distrust(int fd, const TableIdentity& table) {
  struct stat st{};
  if (fstat(fd, &st) != 0) return std::string("fstat failed: ") + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "it is not a regular file";
  if (st.st_nlink != 1) return "it has " + std::to_string(st.st_nlink) + " links";
  if (st.st_dev != table.device) return "it is on another filesystem than the table";
  const std::uint32_t perms = st.st_mode & 07777;
  if ((perms & ~writers_only_mode(table.mode)) != 0) {
    return "its mode grants access to users who may not write the table";
  }
  if ((perms & 070) != 0 && st.st_gid != table.gid) return "its group is not the table's";
  const bool owner_may_write = st.st_uid == table.uid || st.st_uid == 0 || (table.mode & S_IWOTH) != 0 ||
                               ((table.mode & S_IWGRP) != 0 && st.st_gid == table.gid);
  if (!owner_may_write) return "its owner (uid " + std::to_string(st.st_uid) + ") may not write the table";
  return "";
}

// distrust(), allowing for a lock file that its creator has just link()ed into place and
// not yet unlinked from its staging name: two links for a moment. A second link that
// stays (someone hard-linked it) is still refused, after kPublicationWait.
std::string distrust_after_publication(int fd, const TableIdentity& table) {
  constexpr auto kPublicationWait = std::chrono::milliseconds(200);
  const auto deadline = std::chrono::steady_clock::now() + kPublicationWait;
  for (;;) {
    struct stat st{};
    const bool being_published = fstat(fd, &st) == 0 && st.st_nlink == 2;
    if (!being_published || std::chrono::steady_clock::now() > deadline) return distrust(fd, table);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A table's owner who gave its table more writers after its lock file was made (chmod
// g+w, chgrp) widens the lock file, when it made it, to grant the table's writers again:
// otherwise the new writers could not attach. Only ever widening, from a lock file that
// nobody outside the new writers could have opened: narrowing would not take back the
// descriptors that users the new mode excludes may hold, so a lock file granting too
// much stays refused (distrust() judges the result either way).
void follow_wider_table_permissions_if_mine(int fd, const TableIdentity& table) {
  struct stat st{};
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || !S_ISREG(st.st_mode)) return;
  const std::uint32_t current = st.st_mode & 07777, wanted = writers_only_mode(table.mode);
  const bool only_widens = (current & ~wanted) == 0 && ((current & 070) == 0 || st.st_gid == table.gid);
  if (!only_widens || current == wanted) return;
  if ((wanted & 070) != 0 && st.st_gid != table.gid && fchown(fd, static_cast<uid_t>(-1), table.gid) != 0) return;
  fchmod(fd, wanted);
}

// Creates a lock file for `table` under a private name in the lock file's directory, with
// its final mode, group and header, and puts it at `path`: link() (EEXIST if someone was
// first: false), or rename() over a stale one. Throws on other errors.
bool publish_fresh_lock_file(const std::string& path, const TableIdentity& table, bool replace) {
  // A random name: a predictable one could be planted first and stop every creator.
  std::random_device random;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%08x%08x", random(), random());
  const std::string staging = path + ".creating-" + suffix;
  const int fd = create_exclusive_off_stdio(staging.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw_system("creating the lock file " + staging, errno);
  struct Cleanup {
    int fd;
    const std::string& staging;
    ~Cleanup() {
      ::close(fd);
      ::unlink(staging.c_str());
    }
  } cleanup{fd, staging};
  const std::uint32_t mode = writers_only_mode(table.mode);
  // A group that may write the table may write its lock file: give it the table's group
  // (a creator in that group may; one who writes through "other" bits needs no group).
  if ((mode & 070) != 0 && fchown(fd, static_cast<uid_t>(-1), table.gid) != 0) {
    throw_system("giving the lock file " + staging + " the table's group", errno);
  }
  // fchmod, not the open mode: the umask must not take bits from a group's writers.
  if (fchmod(fd, mode) != 0) throw_system("setting the mode of the lock file " + staging, errno);
  const LockFileHeader header = header_for(table);
  if (pwrite(fd, &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
    throw_system("writing the lock file " + staging, errno);
  }
  if (replace) {
    if (::rename(staging.c_str(), path.c_str()) != 0) throw_system("replacing the stale lock file " + path, errno);
    return true;
  }
  if (::link(staging.c_str(), path.c_str()) == 0) return true;
  if (errno == EEXIST) return false;
  throw_system("creating the lock file " + path, errno);
}

}  // namespace

std::string lock_file_path(const std::string& table_path) {
  const std::string named = named_path_of(table_path);
  return named.empty() ? "" : named + ".shmht-lock";
}

std::optional<LockFile> LockFile::open(const TableIdentity& table, int table_fd, bool for_writer, bool* may_not_open) {
  if (is_anonymous(table.path)) {
    // A memfd: its own bytes, asked through a descriptor of our own description (a dup
    // of the mapping's would share its description, which holds no lock either: fine),
    // numbered 3 or above (keep_off_stdio says why).
    const int fd = fcntl(table_fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (fd < 0) throw_system("duplicating the descriptor of " + table.path, errno);
    FdGuard owned{fd};
    LockFile file(fd, table.path, table.device, table.inode, false);  // copying the path may throw
    owned.fd = -1;  // `file` closes it now
    return file;
  }
  const std::string path = lock_file_path(table.path);
  for (int attempt = 0;; ++attempt) {
    // O_NONBLOCK: anyone who may write the directory may put a FIFO at this name, and
    // opening one O_RDONLY would wait for a writer for ever (distrust() then refuses
    // anything but a regular file). It changes nothing for a regular file's reads,
    // writes or locks.
    const int fd = keep_off_stdio(::open(path.c_str(), (for_writer ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT && !for_writer) return std::nullopt;
      if (err == ENOENT && attempt < 4) {
        publish_fresh_lock_file(path, table, /*replace=*/false);  // false: another creator won; open theirs
        continue;
      }
      if ((err == EACCES || err == EPERM) && !for_writer && may_not_open != nullptr) {
        *may_not_open = true;
        return std::nullopt;
      }
      if (err == EACCES || err == EPERM || err == ELOOP) {
        throw Error(ErrorCode::kPermissionDenied,
                    "opening the lock file " + path + ": " + std::strerror(err) +
                        " (only the table's writers may open it. If you may write the table, its mode or group changed "
                        "after the lock file was made: its owner updates the lock file by opening the table once, or "
                        "gives it the table's writers with chmod/chgrp. Never remove a lock file while the table is in use)");
      }
      throw_system("opening the lock file " + path, err);
    }
    FdGuard owned{fd};  // until the LockFile below owns it: whatever throws closes it
    if (for_writer) follow_wider_table_permissions_if_mine(fd, table);
    const std::string why = distrust_after_publication(fd, table);
    if (!why.empty()) {
      throw Error(ErrorCode::kPermissionDenied, "the lock file " + path + " is not to be trusted: " + why +
                                                    "; whoever may delete it should remove it (rm " + path +
                                                    "), then open the table again");
    }
    struct stat st{};
    fstat(fd, &st);  // distrust() just succeeded on it
    LockFile file(fd, path, st.st_dev, st.st_ino, true);  // copying the path may throw
    owned.fd = -1;  // `file` closes it now
    return file;
  }
}

LockFile::LockFile(int fd, std::string path, unsigned long device, unsigned long inode, bool companion)
    : fd_(fd), path_(std::move(path)), device_(device), inode_(inode), companion_(companion) {}

LockFile::LockFile(LockFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)), device_(other.device_), inode_(other.inode_),
      companion_(other.companion_) {}

LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool LockFile::belongs_to(const TableIdentity& table) const {
  if (!companion_) return true;
  LockFileHeader found{};
  if (pread(fd_, &found, sizeof found, 0) != static_cast<ssize_t>(sizeof found)) return false;
  const LockFileHeader expected = header_for(table);
  return std::memcmp(&found, &expected, offsetof(LockFileHeader, admin_holder_pid)) == 0;
}

bool LockFile::still_at_its_path() const {
  if (!companion_) return true;
  struct stat st{};
  return ::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_;
}

void LockFile::replace_with_fresh(const TableIdentity& table) const { publish_fresh_lock_file(path_, table, true); }

void remove_lock_file(const std::string& table_path, std::uint64_t table_device, std::uint64_t table_inode) noexcept {
  if (is_anonymous(table_path)) return;
  const std::string path = lock_file_path(table_path);
  const int fd = keep_off_stdio(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd < 0) return;
  LockFileHeader found{};
  struct stat opened{}, now{};
  const bool is_lock_file = pread(fd, &found, sizeof found, 0) == static_cast<ssize_t>(sizeof found) &&
                            std::memcmp(found.magic, kLockFileMagic, sizeof found.magic) == 0;
  const bool names_another_table = is_lock_file && (found.table_device != table_device || found.table_inode != table_inode);
  const bool read_it = fstat(fd, &opened) == 0;
  ::close(fd);
  // Unlink only the file just read (the name may have been replaced since), and never the
  // live lock file of a table created again under the name.
  if (read_it && !names_another_table && ::lstat(path.c_str(), &now) == 0 && now.st_dev == opened.st_dev && now.st_ino == opened.st_ino) {
    ::unlink(path.c_str());
  }
}

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

AttachmentFd::AttachmentFd(const LockFile& file) : path_(file.path()), companion_(file.companion()) {
  // /proc/<pid>/fd/<n> (an anonymous table's name) is a symlink by design: follow it.
  // O_NONBLOCK: the name may have been replaced by a FIFO since LockFile::open (the
  // identity check below refuses it).
  fd_ = keep_off_stdio(::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK | (file.companion() ? O_NOFOLLOW : 0)));
  if (fd_ < 0) throw_system("opening " + path_ + " for its attachment lock", errno);
  struct stat st{};
  if (fstat(fd_, &st) != 0 || st.st_dev != file.device() || st.st_ino != file.inode()) {
    ::close(fd_);
    throw Error(ErrorCode::kNotFound, path_ + ": the file was removed or replaced while it was being opened; open again");
  }
  Registry& registry = Registry::get();
  std::lock_guard lock(registry.mutex);
  try {
    registry.fds.push_back(this);
  } catch (...) {
    ::close(fd_);  // the destructor does not run for a constructor that throws
    throw;
  }
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
  // Polls rather than sleeping in F_OFD_SETLKW, which has no timeout (an alarm signal
  // would be the process's, not ours to take).
  const auto deadline = std::chrono::steady_clock::now() + kAdminLockWait;
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    struct flock range = byte_range(F_WRLCK, layout::kAdminLockByte, 1);
    if (fcntl_lock(fd_, F_OFD_SETLK, &range) == 0) break;
    if (errno != EAGAIN && errno != EACCES) throw_system("taking the admin lock of " + owner.path_, errno);
    if (std::chrono::steady_clock::now() >= deadline) throw_busy(owner);
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(20));
  }
  if (owner.companion_) {
    const auto pid = static_cast<std::uint32_t>(getpid());
    // Only for the "busy" message of whoever waits next: a failed write costs nothing else.
    [[maybe_unused]] const ssize_t written = pwrite(fd_, &pid, sizeof pid, offsetof(LockFileHeader, admin_holder_pid));
  }
}

void AttachmentFd::AdminLock::throw_busy(const AttachmentFd& owner) {
  std::string holder = "another process";
  std::uint32_t pid = 0;
  if (owner.companion_ &&
      pread(owner.fd_, &pid, sizeof pid, offsetof(LockFileHeader, admin_holder_pid)) == static_cast<ssize_t>(sizeof pid) &&
      pid != 0) {
    holder += " (pid " + std::to_string(pid) + ")";
  }
  throw Error(ErrorCode::kInUse, owner.path_ + ": the table is busy: " + holder + " has held its admin lock for over " +
                                     std::to_string(kAdminLockWait.count()) +
                                     " s while opening, recovering or switching it; it may be stopped (SIGSTOP, a "
                                     "debugger). Try again; if it stays busy, resume or end that process");
}

AttachmentFd::AdminLock::~AdminLock() {
  struct flock range = byte_range(F_UNLCK, layout::kAdminLockByte, 1);
  fcntl_lock(fd_, F_OFD_SETLK, &range);
}

namespace {

// Asks about a READ lock: only write locks conflict, so read locks (which are never
// attachments) are not reported.
struct flock query_range(std::uint64_t start, std::uint64_t length) { return byte_range(F_RDLCK, start, length); }

// Appends the held bytes of [first, end) to `held`: the one lock GETLK reports (any of
// them), then the parts on either side of it.
void collect_held_bytes(int query_fd, std::uint64_t first, std::uint64_t end, std::vector<std::uint64_t>& held) {
  if (first >= end) return;
  struct flock range = query_range(first, end - first);
  if (fcntl_lock(query_fd, F_OFD_GETLK, &range) != 0) throw_system("asking which attachments are live", errno);
  if (range.l_type == F_UNLCK) return;
  // The conflicting lock may span more than one byte (one description's adjacent locks
  // merge, e.g. the admin byte and entry 0) or start before the range: clip it.
  const auto start = static_cast<std::uint64_t>(range.l_start);
  const std::uint64_t lock_first = std::max(start, first);
  const std::uint64_t lock_end = range.l_len == 0 ? end : std::min(end, start + static_cast<std::uint64_t>(range.l_len));
  if (lock_first >= lock_end) throw Error(ErrorCode::kSystem, "the kernel reported a lock outside the range asked about");
  collect_held_bytes(query_fd, first, lock_first, held);
  for (std::uint64_t byte = lock_first; byte < lock_end; ++byte) held.push_back(byte);
  collect_held_bytes(query_fd, lock_end, end, held);
}

}  // namespace

bool entry_is_held(int query_fd, std::uint32_t index) noexcept {
  struct flock range = query_range(layout::kEntryLockBase + index, 1);
  if (fcntl_lock(query_fd, F_OFD_GETLK, &range) != 0) return true;  // never "dead" from an error
  return range.l_type != F_UNLCK;
}

std::vector<std::uint32_t> held_entries(int query_fd, std::uint32_t count) {
  std::vector<std::uint64_t> bytes;
  collect_held_bytes(query_fd, layout::kEntryLockBase, layout::kEntryLockBase + count, bytes);
  std::vector<std::uint32_t> held;
  held.reserve(bytes.size());
  for (std::uint64_t byte : bytes) held.push_back(static_cast<std::uint32_t>(byte - layout::kEntryLockBase));
  return held;  // ascending: the bisection appends left part, lock, right part
}

}  // namespace shmht::liveness
