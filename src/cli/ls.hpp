// cli/ls.hpp - `shmht ls [DIR]`: the shmht tables in a directory, with their engine,
// items, bytes and attached processes, read without attaching to any of them.
//
// WHAT IT MAY DO TO A TABLE: nothing. Each file is opened O_RDONLY and mapped PROT_READ
// (Region::open's read-only mode: no attachment entry, no liveness lock, no lock file
// created), so listing cannot start a cold-start recovery, switch an engine or take a
// slot in the process table. It reads the header, the attachments' item counters and,
// through the lock file, which attachment locks are held.
//
// WHAT IT MAY MEET:
// - Any file at all (a directory such as /dev/shm is shared by every program): only a
//   regular file whose first 8 bytes are shmht's magic is listed; everything else, lock
//   files (*.shmht-lock) and files this user may not read included, is skipped. A file
//   with the magic that fails validation (truncated, overwritten) is listed as corrupt
//   with the reason Region::open gives, never read past its validated size.
// - A table whose admin lock is held (a process attaching, recovering or switching it,
//   or one stopped while doing so): it is listed as busy with the holder's pid, and not
//   read further; ls never waits for that lock (F_OFD_GETLK asks without waiting).
// - A lock-free table mid-operation: a counter word may hold an operation's reference
//   (engines/lockfree/kcas.hpp), which a reader that may not write cannot finish; the
//   item count is then unknown (null, "?") rather than a guess.
// - A file whose creator has not set its header's state to ready (it died while
//   creating it, or the file was made to look so): listed as initialising at once, read
//   no further (Region::open would wait 2 s for it).
// - A file truncated while it is read: a mapped page past the new end raises SIGBUS. So
//   each file is read in a forked child (describe_isolated), which sends its row back
//   through a pipe; a child killed by a signal (or still reading after
//   kDescribeSeconds) leaves a row saying so, and ls goes on with the next file.
// - A lock file that is not a regular file (a FIFO: opening it would wait for a writer):
//   not trusted (LockFile::open opens it O_NONBLOCK), so its pids are "?".
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "engines/engine.hpp"
#include "engines/lockfree/kcas.hpp"
#include "layout/header.hpp"
#include "liveness.hpp"
#include "region.hpp"
#include "shmht/engine.hpp"
#include "shmht/error.hpp"

namespace shmht::cli {

// One table as ls found it. `state` is "ok", or why the rest is missing: "busy" (its
// admin lock is held), "corrupt", "other-version" (another layout or ABI), "unreadable"
// or "error"; `problem` then says what exactly. An "ok" row's problem is empty, or says
// why its items are unknown.
struct TableListing {
  std::string name;  // the file's name in the directory
  std::string path;
  std::string state = "ok";
  std::string problem;
  std::optional<Engine> engine;
  std::optional<std::uint64_t> items;  // nullopt: unknown (busy, damaged, an operation in flight)
  std::uint64_t apparent_bytes = 0;    // ls -l
  std::uint64_t resident_bytes = 0;    // du: on tmpfs, memory
  std::optional<std::vector<pid_t>> attached_pids;  // nullopt: could not be asked
};

// Closes a descriptor on every path.
struct ListingFd {
  int fd;
  explicit ListingFd(int f) : fd(f) {}
  ~ListingFd() {
    if (fd >= 0) ::close(fd);
  }
  ListingFd(const ListingFd&) = delete;
  ListingFd& operator=(const ListingFd&) = delete;
};

// True when `path` is a regular file that starts with shmht's magic. O_NONBLOCK: opening
// a FIFO must not wait for a writer; O_NOFOLLOW: a symlink is not one of this directory's
// tables.
inline bool starts_with_table_magic(const std::string& path) {
  const ListingFd file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (file.fd < 0) return false;
  struct stat st{};
  if (fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  char magic[sizeof layout::kMagic];
  return pread(file.fd, magic, sizeof magic, 0) == static_cast<ssize_t>(sizeof magic) &&
         std::memcmp(magic, layout::kMagic, sizeof magic) == 0;
}

// The pid holding the table's admin lock, 0 when none recorded, nullopt when nobody holds
// it (or there is no lock file: nobody ever attached). Asks with F_OFD_GETLK, which never
// waits; a lock file this user may not open answers nullopt (nothing known).
inline std::optional<pid_t> admin_lock_holder(const std::string& table_path) {
  const std::string lock_path = liveness::lock_file_path(table_path);
  if (lock_path.empty()) return std::nullopt;
  const ListingFd file(::open(lock_path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (file.fd < 0) return std::nullopt;
  struct stat st{};
  if (fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  struct flock range{};
  range.l_type = F_RDLCK;  // conflicts with the holder's write lock only
  range.l_whence = SEEK_SET;
  range.l_start = static_cast<off_t>(layout::kAdminLockByte);
  range.l_len = 1;
  if (fcntl(file.fd, F_OFD_GETLK, &range) != 0 || range.l_type == F_UNLCK) return std::nullopt;
  liveness::LockFileHeader header{};
  if (pread(file.fd, &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) return pid_t{0};
  return static_cast<pid_t>(header.admin_holder_pid);
}

// The items the attachments' counters add up to, or nullopt when a lock-free counter
// holds a running operation's reference (see above).
inline std::optional<std::uint64_t> items_without_attaching(const Region& region) {
  bool in_flight = false;
  const std::int64_t total = counted_items(region, [&](const std::atomic<std::uint64_t>& word) -> std::uint64_t {
    const std::uint64_t value = word.load(std::memory_order_acquire);
    if (lockfree::is_ref(value)) in_flight = true;
    return in_flight ? 0 : value;
  });
  if (in_flight) return std::nullopt;
  return total < 0 ? 0 : static_cast<std::uint64_t>(total);
}

inline std::string listing_state_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kVersionMismatch: return "other-version";
    case ErrorCode::kPermissionDenied: return "unreadable";
    case ErrorCode::kNotFound: return "removed";  // between the listing and the open
    default: return "error";
  }
}

// True when the header's state word (read with pread, not through a mapping) says the
// creator finished initialising the file.
// A file too short to hold its state word is not being initialised but damaged (creation
// sizes the file before it writes the header): the open below calls it corrupt.
inline bool header_says_ready(const std::string& path) {
  const ListingFd file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  std::uint32_t state = 0;
  if (file.fd < 0) return false;
  const ssize_t got = pread(file.fd, &state, sizeof state, offsetof(layout::Header, state));
  if (got >= 0 && got < static_cast<ssize_t>(sizeof state)) return true;  // short: let Region::open say what is wrong
  return got == static_cast<ssize_t>(sizeof state) && state == layout::kStateReady;
}

// Reads one file that starts with the magic. Never throws shmht::Error: a table that
// cannot be read is a row saying why. Reads through a mapping: call it in a child
// (describe_isolated).
inline TableListing describe_table(const std::string& name, const std::string& path) {
  TableListing row;
  row.name = name;
  row.path = path;
  if (!header_says_ready(path)) {
    row.state = "initialising";
    row.problem = "its header is not marked ready: its creator is still writing it, or died doing so (remove it if "
                  "it stays so)";
    return row;
  }
  if (const std::optional<pid_t> holder = admin_lock_holder(path)) {
    row.state = "busy";
    // The pid is what the lock file records (its writers may write anything there).
    row.problem = "its admin lock is held" +
                  (*holder > 0 ? " (the lock file names pid " + std::to_string(*holder) + ")" : std::string()) +
                  " (attaching, recovering or switching engines; held for seconds, the holder may be stopped)";
    return row;
  }
  try {
    // trust_foreign_owner: nothing stored is read, only the header and counters.
    const Region region = Region::open(path, /*read_only=*/true, /*trust_foreign_owner=*/true);
    row.engine = static_cast<Engine>(region.header().active_engine.load(std::memory_order_acquire));
    row.items = items_without_attaching(region);
    // The counters are in the shared file: anyone who may write it may damage them.
    if (const std::uint64_t slots = region.fixed().home_slots + kOverflowSlots; row.items && *row.items > slots) {
      row.problem = "its item counters add up to " + std::to_string(*row.items) + ", more than its " + std::to_string(slots) +
                    " slots: they are damaged (shmht check counts the slots)";
      row.items.reset();
    }
    row.apparent_bytes = region.apparent_bytes();
    row.resident_bytes = region.allocated_bytes();
    try {
      row.attached_pids = region.attached_pids();
    } catch (const Error&) {
      row.attached_pids.reset();  // an untrusted lock file: not asked
    }
  } catch (const Error& e) {
    row.state = listing_state_of(e.code());
    row.problem = e.what();
  }
  return row;
}

// describe_table's row less name and path, as the child sends it to the parent: six
// lines (state; engine number or -; items or -; apparent bytes; resident bytes; pids or
// -), then the problem's bytes up to the end.
inline std::string encode_row(const TableListing& row) {
  std::ostringstream out;
  out << row.state << "\n";
  out << (row.engine ? std::to_string(static_cast<std::uint32_t>(*row.engine)) : "-") << "\n";
  out << (row.items ? std::to_string(*row.items) : "-") << "\n" << row.apparent_bytes << "\n" << row.resident_bytes << "\n";
  if (!row.attached_pids) out << "-";
  for (pid_t p : row.attached_pids.value_or(std::vector<pid_t>{})) out << p << " ";
  out << "\n" << row.problem;
  return out.str();
}

inline bool decode_row(const std::string& bytes, TableListing& row) {
  std::istringstream in(bytes);
  std::string engine, items, pids;
  if (!std::getline(in, row.state) || !std::getline(in, engine) || !std::getline(in, items) ||
      !(in >> row.apparent_bytes >> row.resident_bytes) || in.get() != '\n' || !std::getline(in, pids)) {
    return false;
  }
  if (engine != "-") row.engine = static_cast<Engine>(std::stoul(engine));
  if (items != "-") row.items = std::stoull(items);
  if (pids != "-") {
    std::istringstream list(pids);
    row.attached_pids.emplace();
    for (pid_t p = 0; list >> p;) row.attached_pids->push_back(p);
  }
  const std::streamoff problem_at = in.tellg();
  row.problem = problem_at < 0 ? "" : bytes.substr(static_cast<std::size_t>(problem_at));
  return true;
}

// How long a child may take over one file before it is killed (Region::open waits up to
// 2 s for a header whose state changes back under it; nothing else waits).
inline constexpr unsigned kDescribeSeconds = 10;

// describe_table in a forked child, so that a SIGBUS (the file truncated under the
// mapping) or a hang costs one row, not the listing.
inline TableListing describe_isolated(const std::string& name, const std::string& path) {
  TableListing row;
  row.name = name;
  row.path = path;
  row.state = "error";
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    row.problem = std::string("cannot make a pipe to read it in a child: ") + std::strerror(errno);
    return row;
  }
  // A SIGCHLD ignored by whoever started us would let the kernel reap the child, and
  // waitpid could not say how it ended: take it back to the default for the wait.
  struct sigaction default_child{}, inherited_child{};
  default_child.sa_handler = SIG_DFL;
  sigemptyset(&default_child.sa_mask);
  sigaction(SIGCHLD, &default_child, &inherited_child);
  const pid_t child = fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    // The alarm must be able to end a hung read, whatever SIGALRM's inherited disposition.
    ::signal(SIGALRM, SIG_DFL);
    sigset_t alarm_only;
    sigemptyset(&alarm_only);
    sigaddset(&alarm_only, SIGALRM);
    sigprocmask(SIG_UNBLOCK, &alarm_only, nullptr);
    alarm(kDescribeSeconds);
    std::string bytes;
    try {
      bytes = encode_row(describe_table(name, path));
    } catch (...) {
      _exit(3);
    }
    for (std::size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = ::write(pipe_fds[1], bytes.data() + sent, bytes.size() - sent);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(4);
      sent += static_cast<std::size_t>(n);
    }
    _exit(0);  // not exit(): the parent's buffered output must not be written twice
  }
  const int fork_error = errno;
  ::close(pipe_fds[1]);
  std::string bytes;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  if (child < 0) {
    sigaction(SIGCHLD, &inherited_child, nullptr);
    row.problem = std::string("cannot fork a child to read it: ") + std::strerror(fork_error);
    return row;
  }
  int status = 0;
  pid_t waited = -1;
  while ((waited = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  const int wait_error = errno;
  sigaction(SIGCHLD, &inherited_child, nullptr);
  if (waited < 0) {
    if (decode_row(bytes, row)) return row;  // it answered in full; how it ended is unknown
    row.state = "error";
    row.problem = std::string("reading it failed, and how the child ended is unknown (waitpid: ") +
                  std::strerror(wait_error) + ")";
    return row;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && decode_row(bytes, row)) return row;
  row.state = "error";
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) {
    row.problem = "the file shrank while it was read (SIGBUS): it is being truncated or replaced; list again";
  } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
    row.problem = "reading it took more than " + std::to_string(kDescribeSeconds) + " s; not read";
  } else {
    row.problem = "reading it failed (" +
                  (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                       : "exit status " + std::to_string(WEXITSTATUS(status))) +
                  ")";
  }
  return row;
}

// The tables in `directory`, by name. Throws std::filesystem::filesystem_error when the
// directory cannot be read.
inline std::vector<TableListing> list_tables(const std::filesystem::path& directory) {
  std::vector<TableListing> rows;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator(directory)) {
    std::error_code ignored;
    if (!entry.is_regular_file(ignored) || entry.is_symlink(ignored)) continue;
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".shmht-lock")) continue;  // a table's companion lock file (liveness.hpp)
    const std::string path = entry.path().string();
    if (!starts_with_table_magic(path)) continue;
    rows.push_back(describe_isolated(name, path));
  }
  std::sort(rows.begin(), rows.end(), [](const TableListing& a, const TableListing& b) { return a.name < b.name; });
  return rows;
}

}  // namespace shmht::cli
