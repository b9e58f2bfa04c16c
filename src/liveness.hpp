// liveness.hpp - is that attachment still alive? Open-file-description locks answer.
//
// THE QUESTION
//   A lock word that names an attachment (engines/owner.hpp) must be waited for while its
//   holder lives and taken over once it cannot come back. The answer must be right when
//   the holder is a zombie not yet reaped, has exec'd another program, runs in another PID
//   namespace or container sharing the file, or when the asker's fd table is full; it
//   must never be "dead" because a query failed; and nobody who may only READ the table
//   may change it (issue 19 §3: a reader's lock must neither block the owner, nor make a
//   dead writer look alive, nor use up the entries).
//
// THE LOCK FILE (who may hold a liveness lock)
//   Anyone who can open a file, even O_RDONLY, can take an OFD read lock on any of its
//   bytes. So the locks do not live on the table file but on a companion lock file,
//   <table path>.shmht-lock, that only the table's writers can open: its mode keeps, for
//   each of user/group/other, read+write where the table grants write and nothing where
//   it does not (table 0644 -> 0600, 0660 -> 0660, 0666 -> 0666), and its group is the
//   table's. create() makes it before the table file gets its name (so no table exists
//   whose lock file name was free to plant); a writer that finds none (removed by hand,
//   or a removed table's name reused) creates it under a random private name with that
//   mode and the header below, then link()s it into place (atomic; the loser of a race
//   opens the winner's). A /proc/<pid>/fd/<n> name of a named table stands for the file
//   it links to, whose lock file is beside it. If the table's owner widens the table's
//   mode later (chmod g+w), its next open widens the lock file it made; nothing ever
//   narrows one (descriptors already open would stay). Anyone may have created a file of
//   that name first (/dev/shm is world-writable), so every opener checks it before
//   trusting it: a regular file with
//   one link, on the table's filesystem, whose mode grants nobody more than the table's
//   writers, owned by the table's owner, root, or (table group-writable) a member of its
//   group. A file that fails is refused with kPermissionDenied naming it.
//   Its first bytes (LockFileHeader, read and written with pread/pwrite, never mapped)
//   name the table it belongs to (device, inode, creation time, hash seed): a lock file
//   left by a removed table whose name was reused is stale, and the writer holding its
//   admin lock renames a fresh one over it (then everyone re-opens: whoever waited on the
//   old file sees that the name moved on). Removing a table removes its lock file.
//   An anonymous (memfd) table has no directory entry to put a companion next to and
//   only processes given its descriptor can open it: its locks stay on the memfd.
//
// THE MECHANISM (fcntl F_OFD_SETLK / F_OFD_GETLK, Linux 3.15)
//   Each attachment opens the lock file once more, getting an open file description of
//   its own (O_CLOEXEC), and takes a write lock on one byte of it: kEntryLockBase + its
//   entry index. The kernel releases an OFD lock when the last descriptor of its
//   description closes: at exit (before the process becomes a zombie), at exec
//   (close-on-exec), at a clean detach; the lock lives on the inode, so every namespace
//   sees it; it does not survive a reboot and does not follow a copy of the file. Anyone
//   asks with F_OFD_GETLK through a descriptor it already holds (no new fd, so EMFILE
//   cannot happen); an error from the query counts as "alive". Queries ask about a READ
//   lock, which conflicts with write locks only: a read lock (which a reader of a memfd
//   could take) is never taken for an attachment. GETLK reports ONE conflicting lock of
//   a range, not necessarily the lowest (Linux reports the oldest), so held_entries()
//   bisects: it asks for the whole range, then for the parts on either side of the lock
//   reported, one query per held run of entries plus one per gap.
//
// THE ADMIN LOCK (attach and its cold start, Region::with_admin_lock, file growth)
//   Byte kAdminLockByte of the lock file, taken with F_OFD_SETLK and retried for at most
//   kAdminLockWait: a holder that dies releases it, but one that is stopped (SIGSTOP, a
//   debugger, a frozen container) would block every opener forever, so attach gives up
//   with kInUse ("busy", naming the holder's pid, which each holder writes into the lock
//   file's header: an OFD lock does not record its holder).
//
// WHY NOT A ROBUST MUTEX PER ATTACHMENT (the other candidate)
//   It belongs to the thread that locked it: a handle used from another thread, or a
//   thread that exits while the process goes on, would read as dead; and a robust mutex
//   copied with the file, or left held at a reboot, is held forever. OFD locks belong to
//   the description, which the handle owns, whichever thread uses it.
//
// FORK
//   A child inherits its parent's descriptors, and with them the parent's lock: the parent
//   would look alive while any child lives. Every attachment descriptor is registered
//   here, and a pthread_atfork child handler closes the child's copies (the child's own
//   attachments open their own). A child made without fork handlers that does not exec
//   (raw clone) keeps the copies: its parent then reads as alive until it exits.
//
// WHY QUERIES GO THROUGH A DESCRIPTOR OF THEIR OWN
//   F_OFD_GETLK reports no conflict with locks of the description it is asked through.
//   The lock file's query descriptor (LockFile::query_fd) never holds a lock, so through
//   it every attachment's lock, this process's own included, is seen.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace shmht::liveness {

// How long attach waits for the admin lock before it reports the table busy. Attach,
// detach and cold start hold it for milliseconds; seconds mean a stopped holder.
inline constexpr std::chrono::seconds kAdminLockWait{5};

// The first bytes of a companion lock file: which table it belongs to, and who took its
// admin lock last (for the "busy" message). Private to the lock file, never mapped.
struct LockFileHeader {
  char magic[8];                  // kLockFileMagic
  std::uint64_t table_device;
  std::uint64_t table_inode;
  std::uint64_t table_created_unix_ns;
  std::uint64_t table_hash_seed;
  std::uint32_t admin_holder_pid;  // in the holder's PID namespace; 0: none recorded
  std::uint32_t reserved;
};
inline constexpr char kLockFileMagic[8] = {'s', 'h', 'm', 'h', 't', 'l', 'c', 'k'};

// What a lock file is checked against: the table file, as fstat and its header say.
struct TableIdentity {
  std::string path;
  unsigned long device, inode;
  std::uint32_t mode, uid, gid;  // st_mode's permission bits, owner, group
  std::uint64_t created_unix_ns, hash_seed;
};

// Where the lock file of the table at `table_path` is ("" for an anonymous table, whose
// locks stay on the memfd).
std::string lock_file_path(const std::string& table_path);

// The file whose bytes are locked: a table's companion lock file, or the memfd itself.
class LockFile {
 public:
  // Opens the table's lock file, checked (above). `for_writer`: creates it if missing.
  // A reader gets nullopt where there is none (nobody ever attached: nobody is live), and
  // where it may not open it if `may_not_open` is given (then set to true). Throws
  // kPermissionDenied when it cannot be opened or is not to be trusted.
  static std::optional<LockFile> open(const TableIdentity& table, int table_fd, bool for_writer,
                                      bool* may_not_open = nullptr);
  ~LockFile();
  LockFile(LockFile&& other) noexcept;
  LockFile& operator=(LockFile&&) = delete;
  LockFile(const LockFile&) = delete;

  const std::string& path() const noexcept { return path_; }
  int query_fd() const noexcept { return fd_; }
  unsigned long device() const noexcept { return device_; }
  unsigned long inode() const noexcept { return inode_; }
  bool companion() const noexcept { return companion_; }
  // False when its header names another table (left by a removed one).
  bool belongs_to(const TableIdentity& table) const;
  // False when the path now names another file (a stale one was replaced).
  bool still_at_its_path() const;
  // Renames a fresh lock file for `table` over this one (the caller holds this one's
  // admin lock and has seen it stale and still at its path).
  void replace_with_fresh(const TableIdentity& table) const;

 private:
  LockFile(int fd, std::string path, unsigned long device, unsigned long inode, bool companion);
  int fd_;
  std::string path_;
  unsigned long device_, inode_;
  bool companion_;
};

// Removes the lock file of the table that was at `table_path` (its device and inode)
// unless the lock file there names another table (Table::remove, Table::unlink): a table
// created again under the name meanwhile keeps its own, live lock file. noexcept: a lock
// file left behind is harmless (the next table of that name replaces it).
void remove_lock_file(const std::string& table_path, std::uint64_t table_device, std::uint64_t table_inode) noexcept;

// One attachment's own open file description of the table file, registered for fork.
class AttachmentFd {
 public:
  // Opens the lock file again (a new description) and checks that it is the same file
  // (device, inode). Throws shmht::Error.
  explicit AttachmentFd(const LockFile& file);
  ~AttachmentFd();
  AttachmentFd(const AttachmentFd&) = delete;
  AttachmentFd& operator=(const AttachmentFd&) = delete;

  // Takes the lock on entry `index` without waiting; false if someone holds it.
  bool try_lock_entry(std::uint32_t index);
  // Releases it (clean detach). No-op in a forked child (its copy is closed).
  void unlock_entry(std::uint32_t index) noexcept;

  // The admin lock (byte kAdminLockByte), held for the object's lifetime. Waits at most
  // kAdminLockWait, then throws kInUse naming the holder.
  class AdminLock {
   public:
    explicit AdminLock(AttachmentFd& fd);
    ~AdminLock();
    AdminLock(const AdminLock&) = delete;
    AdminLock& operator=(const AdminLock&) = delete;

   private:
    [[noreturn]] static void throw_busy(const AttachmentFd& owner);
    int fd_;
  };

 private:
  friend struct Registry;
  int fd_;
  std::string path_;
  bool companion_;  // the admin holder's pid is recorded in the header
};

// True unless it is certain that nobody holds entry `index`'s lock (a failed query
// counts as held). `query_fd` must be a descriptor of the lock file that holds no lock.
bool entry_is_held(int query_fd, std::uint32_t index) noexcept;

// Entries in [0, count) whose lock is held, ascending: one query per held run of
// entries and one per gap between them (whichever lock the kernel reports).
// Throws shmht::Error(kSystem) if the kernel cannot answer: callers decide nothing then.
std::vector<std::uint32_t> held_entries(int query_fd, std::uint32_t count);

}  // namespace shmht::liveness
