// cli/stdio.hpp - the command line's stdin, stdout and stderr, made safe to rely on.
//
// CLOSED AT START. A program started with fd 0, 1 or 2 closed (`shmht get T k 2>&-`, a
// daemon's child) gets its next open() there: the table file would be fd 1 or 2 and the
// error message would be written over the table's header. occupy_closed_stdio() opens
// /dev/null onto each closed one before anything else is opened (the library also keeps
// its own descriptors at 3 and above: file_mapping.hpp keep_off_stdio), and remembers
// which were closed: a value or load input read from a closed stdin is refused, and output
// meant for a closed stdout is an error (EBADF), not silently discarded.
//
// ERRORS ARE ERRORS. std::cin takes a read error (stdin is a directory: EISDIR; EIO) for
// the end of input, and std::cout's failures go unnoticed unless asked. So stdin is read
// with read(2) (StdinReader, every error thrown with its errno), and std::cout writes
// through StdoutWriter, which keeps the first write error's errno for main to report
// (exit 3) when it flushes before exiting: `shmht dump T > /dev/full` fails, loudly.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <streambuf>
#include <string>

#include "shmht/error.hpp"

namespace shmht::cli {

// Which of stdin, stdout and stderr were closed when the command started.
struct ClosedAtStart {
  bool in = false, out = false, err = false;
};

// Opens /dev/null onto each of fd 0, 1, 2 that is closed, lowest first (open returns the
// lowest free number: the closed one itself). Returns false if /dev/null cannot be
// opened: then the command must not open anything (it would get a standard fd).
inline bool occupy_closed_stdio(ClosedAtStart& closed) {
  bool* const was_closed[] = {&closed.in, &closed.out, &closed.err};
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    *was_closed[fd] = true;
    const int opened = ::open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
    if (opened != fd) {
      if (opened >= 0) ::close(opened);
      return false;
    }
  }
  return true;
}

// A std::streambuf writing to a descriptor with write(2), keeping the first error's errno
// (error()); after an error it discards what is written. `closed_at_start`: the
// descriptor is /dev/null standing in for a closed one, and writing anything is EBADF.
class StdoutWriter : public std::streambuf {
 public:
  StdoutWriter(int fd, bool closed_at_start) : fd_(fd), error_(closed_at_start ? EBADF : 0) { reset(); }
  int error() const noexcept { return error_; }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  void reset() { setp(buffer_, buffer_ + sizeof buffer_); }
  // Writes what is buffered; false (and the buffer emptied) on an error, now or before.
  bool drain() {
    const char* from = pbase();
    std::size_t left = static_cast<std::size_t>(pptr() - pbase());
    reset();
    if (left == 0) return true;  // nothing to write: no new error (a closed stdout may stay unused)
    while (error_ == 0 && left > 0) {
      const ssize_t wrote = ::write(fd_, from, left);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) {
        error_ = wrote < 0 ? errno : EIO;
        break;
      }
      from += wrote;
      left -= static_cast<std::size_t>(wrote);
    }
    return error_ == 0;
  }

  int fd_;
  int error_;
  char buffer_[64 * 1024];
};

// Reads a descriptor with read(2): a read error is thrown (kSystem, with its errno's
// text), never taken for the end of the input.
class StdinReader {
 public:
  StdinReader(int fd, bool closed_at_start) : fd_(fd), closed_at_start_(closed_at_start) {}

  // Appends up to `limit` more bytes to `out` (fewer only at the end of the input).
  void read_up_to(std::string& out, std::size_t limit) {
    while (limit > 0 && (pending() > 0 || fill())) {
      const std::size_t n = std::min(limit, pending());
      out.append(buffer_ + begin_, n);
      begin_ += n;
      limit -= n;
    }
  }

  // The next line, without its '\n', into `line`; false at the end of the input (a last
  // line without '\n' is a line). More than `limit` bytes without a newline stop the read:
  // then returns true with line.size() == limit + 1 (the caller says it is too long).
  bool next_line(std::string& line, std::size_t limit) {
    line.clear();
    bool any = false;
    while (pending() > 0 || fill()) {
      any = true;
      const char* start = buffer_ + begin_;
      const auto* newline = static_cast<const char*>(std::memchr(start, '\n', pending()));
      const std::size_t n = newline ? static_cast<std::size_t>(newline - start) : pending();
      const std::size_t room = limit + 1 - line.size();
      if (n >= room) {
        line.append(start, room);
        begin_ += room;
        return true;
      }
      line.append(start, n);
      begin_ += n;
      if (newline) {
        ++begin_;
        return true;
      }
    }
    return any;
  }

 private:
  std::size_t pending() const noexcept { return end_ - begin_; }
  // Reads more; false at the end of the input.
  bool fill() {
    if (closed_at_start_) throw Error(ErrorCode::kInvalidArgument, "stdin is closed (the command was started without one): there is no input to read");
    begin_ = end_ = 0;
    for (;;) {
      const ssize_t got = ::read(fd_, buffer_, sizeof buffer_);
      if (got > 0) {
        end_ = static_cast<std::size_t>(got);
        return true;
      }
      if (got == 0) return false;
      if (errno != EINTR) {
        throw Error(ErrorCode::kSystem, std::string("reading stdin failed: ") + std::strerror(errno));
      }
    }
  }

  int fd_;
  bool closed_at_start_;
  std::size_t begin_ = 0, end_ = 0;
  char buffer_[64 * 1024];
};

}  // namespace shmht::cli
