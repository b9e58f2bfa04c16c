// liveness.hpp - is that attachment still alive? Open-file-description locks answer.
//
// THE QUESTION
//   A lock word that names an attachment (engines/owner.hpp) must be waited for while its
//   holder lives and taken over once it cannot come back. The answer must be right when
//   the holder is a zombie not yet reaped, has exec'd another program, runs in another PID
//   namespace or container sharing the file, or when the asker's fd table is full; and it
//   must never be "dead" because a query failed.
//
// THE MECHANISM (fcntl F_OFD_SETLK / F_OFD_GETLK, Linux 3.15)
//   Each attachment opens the table file once more, getting an open file description of
//   its own (O_CLOEXEC), and takes a write lock on one byte of the file:
//   layout::kEntryLockBase + its entry index. The kernel releases an OFD lock when the
//   last descriptor of its description closes: at exit (before the process becomes a
//   zombie), at exec (close-on-exec), at a clean detach; the lock lives on the inode, so
//   every namespace sees it; it does not survive a reboot and does not follow a copy of
//   the file. Anyone asks with F_OFD_GETLK through a descriptor it already holds (no new
//   fd, so EMFILE cannot happen); an error from the query counts as "alive".
//   Attach, detach, cold-start recovery and file growth serialise on another OFD lock, on
//   byte layout::kAdminLockByte, taken with F_OFD_SETLKW: a holder that dies releases it.
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
// WHY QUERIES GO THROUGH THE MAPPING'S DESCRIPTOR
//   F_OFD_GETLK reports no conflict with locks of the description it is asked through.
//   The file mapping's descriptor (file_mapping.hpp) never holds a lock, so through it
//   every attachment's lock, this process's own included, is seen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shmht::liveness {

// One attachment's own open file description of the table file, registered for fork.
class AttachmentFd {
 public:
  // Opens `path` again (a new description) and checks that it is the same file as the
  // one mapped (device, inode). Throws shmht::Error.
  AttachmentFd(const std::string& path, unsigned long device, unsigned long inode);
  ~AttachmentFd();
  AttachmentFd(const AttachmentFd&) = delete;
  AttachmentFd& operator=(const AttachmentFd&) = delete;

  // Takes the lock on entry `index` without waiting; false if someone holds it.
  bool try_lock_entry(std::uint32_t index);
  // Releases it (clean detach). No-op in a forked child (its copy is closed).
  void unlock_entry(std::uint32_t index) noexcept;

  // The admin lock (byte kAdminLockByte), held for the object's lifetime; waits.
  class AdminLock {
   public:
    explicit AdminLock(AttachmentFd& fd);
    ~AdminLock();
    AdminLock(const AdminLock&) = delete;
    AdminLock& operator=(const AdminLock&) = delete;

   private:
    int fd_;
  };

 private:
  friend struct Registry;
  int fd_;
  std::string path_;
};

// True unless it is certain that nobody holds entry `index`'s lock (a failed query
// counts as held). `query_fd` must be a descriptor of the table that holds no lock.
bool entry_is_held(int query_fd, std::uint32_t index) noexcept;

// Entries in [0, count) whose lock is held, by one query per held entry plus one.
// Throws shmht::Error(kSystem) if the kernel cannot answer: callers decide nothing then.
std::vector<std::uint32_t> held_entries(int query_fd, std::uint32_t count);

}  // namespace shmht::liveness
