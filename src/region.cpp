#include "region.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "fault_injection.hpp"
#include "file_mapping.hpp"
#include "layout/engine_area.hpp"
#include "shmht/engine.hpp"
#include "shmht/error.hpp"

namespace shmht {
namespace {

using layout::Header;
using layout::header_checksum;
using layout::ImmutableHeader;
using layout::kPageBytes;
using layout::ProcessEntry;

static_assert(layout::kTailSlots == kOverflowSlots, "the overflow slot count users are told about (options.hpp)");

constexpr double kMaxLoadFactor = 0.85;
constexpr std::uint32_t kMinChunkBytes = 256 * 1024;

std::uint64_t round_up(std::uint64_t value, std::uint64_t to) { return (value + to - 1) / to * to; }

// The directory part of `path` ("/a/b" for "/a/b/t"), or "" when it has none.
std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : slash == 0 ? "/" : path.substr(0, slash);
}

bool directory_exists(const std::string& directory) {
  struct stat st{};
  return ::stat(directory.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Why `path` does not exist: its directory is missing (say so, not "no such table"), or
// the table is.
[[noreturn]] void throw_not_found(const std::string& what, const std::string& path) {
  const std::string directory = directory_of(path);
  if (!directory.empty() && !directory_exists(directory)) {
    throw Error(ErrorCode::kNotFound, what + ": directory " + directory + " does not exist");
  }
  throw Error(ErrorCode::kNotFound, what + ": no such table; create it first");
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  ErrorCode code = ErrorCode::kSystem;
  std::string hint;
  switch (err) {
    case ENOENT: code = ErrorCode::kNotFound; break;
    case EEXIST: code = ErrorCode::kAlreadyExists; hint = " (remove it or open it instead)"; break;
    case EACCES:
    case EPERM: code = ErrorCode::kPermissionDenied; hint = " (a table you may only read can be opened read-only)"; break;
    case EROFS: code = ErrorCode::kPermissionDenied; hint = " (read-only filesystem: open the table read-only)"; break;
    case ELOOP: code = ErrorCode::kInvalidArgument; hint = " (is a symbolic link; refusing to follow it)"; break;
    case ENOSPC: code = ErrorCode::kNoSpace; break;
    case EFBIG: code = ErrorCode::kTableFull; break;
    default: break;
  }
  throw Error(code, what + ": " + std::strerror(err) + hint);
}

[[noreturn]] void corrupt(const std::string& path, const std::string& why) {
  throw Error(ErrorCode::kCorrupt, path + ": corrupt table: " + why);
}

std::uint64_t now_unix_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::uint64_t fd_size(int fd, const std::string& path) {
  struct stat st{};
  if (fstat(fd, &st) != 0) throw_errno("fstat " + path, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

std::string with_units(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

// Reserves the filesystem's space for [offset, offset + bytes), extending the file if it
// ends before: on tmpfs a page that was never allocated is allocated when first touched,
// and a full tmpfs answers that with SIGBUS; reserved pages never fail. Idempotent, and
// it never shrinks the file, so several processes may run it on overlapping ranges at
// once (grow_file_to's helpers). fallocate(2), not posix_fallocate(3): where the
// filesystem cannot reserve, glibc's posix_fallocate writes a zero byte into each block
// that reads as zero, and a helper doing that could overwrite a record that a peer wrote
// there meanwhile; such a filesystem is refused instead (tmpfs, ext4, xfs, btrfs reserve).
void reserve_space(int fd, const std::string& path, std::uint64_t offset, std::uint64_t bytes) {
  if (bytes == 0) return;
  int rc;
  do {
    rc = ::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(bytes)) == 0 ? 0 : errno;
  } while (rc == EINTR);
  if (rc == 0) return;
  if (rc == EOPNOTSUPP || rc == ENOSYS) {
    throw Error(ErrorCode::kSystem, path + ": the filesystem holding it cannot reserve file space (fallocate: " +
                                        std::strerror(rc) + "), so a write could die of SIGBUS when it fills up; " +
                                        "put the table on tmpfs (a bare name: /dev/shm) or on ext4, xfs or btrfs");
  }
  if (rc != ENOSPC && rc != EFBIG && rc != EDQUOT) {
    throw_errno("reserving " + std::to_string(bytes) + " bytes of " + path, rc);
  }
  struct statvfs fs{};
  std::string room;
  if (fstatvfs(fd, &fs) == 0) {
    room = " (the filesystem is " + with_units(std::uint64_t{fs.f_blocks} * fs.f_frsize) + ", " +
           with_units(std::uint64_t{fs.f_bavail} * fs.f_frsize) + " free)";
  }
  const std::string directory = path.substr(0, path.rfind('/') + 1);
  throw Error(ErrorCode::kNoSpace,
              path + ": no space left to grow the table by " + with_units(bytes) + " on the filesystem holding " +
                  directory + room + "; free space there, mount a larger tmpfs (a container: --shm-size), " +
                  "or create the table at an absolute path on another filesystem. Nothing was changed");
}

static_assert(kMaxBytesRange.max <= layout::kMaxRecordOffset + (std::uint64_t{1} << layout::kOffsetShift),
              "every 8-aligned record offset below the largest max_bytes fits a slot word (layout/slot.hpp): "
              "past it a record would read as another, or as a descriptor reference");
static_assert(kMaxKeyAndValueBytes == layout::kMaxRecordBytes - sizeof(layout::RecordHeader),
              "the public record limit is the largest size class less the record header");
static_assert(kStripesRange.max == layout::kMaxStripes, "one reader-flag byte per stripe (layout/engine_area.hpp)");

// Every field of `o` in its range (options.hpp), named in the error otherwise; nothing is
// created before this passes.
void validate_options(const CreateOptions& o) {
  auto check = [](const OptionRange& range, std::uint64_t value) {
    if (!range.contains(value)) {
      throw Error(ErrorCode::kInvalidArgument, out_of_range_message(range, option_value_text(range, value)));
    }
  };
  check(kCapacityRange, o.capacity);
  check(kMaxKeyBytesRange, o.max_key_bytes);
  check(kMaxValueBytesRange, o.max_value_bytes);
  check(kMaxBytesRange, o.max_bytes);
  check(kMaxProcessesRange, o.max_processes);
  check(kModeRange, o.mode);
  check(kStripesRange, o.stripes);
  const std::uint64_t key_and_value = std::uint64_t{o.max_key_bytes} + o.max_value_bytes;
  if (key_and_value > kMaxKeyAndValueBytes) {
    throw Error(ErrorCode::kInvalidArgument, "max_key_bytes + max_value_bytes is " + std::to_string(key_and_value) +
                                                 "; the limit is " + std::to_string(kMaxKeyAndValueBytes));
  }
  const RegionLayout l = RegionLayout::compute(o.capacity, o.max_processes, o.max_key_bytes, o.max_value_bytes);
  if (o.max_bytes < l.arena_offset + l.chunk_bytes) {
    throw Error(ErrorCode::kInvalidArgument, "max_bytes " + std::to_string(o.max_bytes) +
                                                 " is too small: this capacity and max_processes need at least " +
                                                 std::to_string(l.arena_offset + l.chunk_bytes));
  }
}

// The trust rule for a table file that someone else owns (like ssh's StrictModes): whoever
// owns or may write a table can read everything stored in it, so a service must not use a
// table another user planted under its name. Refused without the caller's opt-in
// (OpenOptions::trust_foreign_owner) when the owner is neither the caller's euid nor
// root, and either every user may write the file (anyone could have planted or rewritten
// it), or the caller is root and opens it for writing (permission bits do not stop root,
// so for root any user's file could be a plant). Tables shared by a group (mode 0660)
// or published read-only to all (0644) keep working for the other users.
void check_owner_trust(const struct stat& st, const std::string& path, bool read_only) {
  const uid_t me = geteuid();
  if (st.st_uid == me || st.st_uid == 0) return;
  const bool world_writable = (st.st_mode & S_IWOTH) != 0;
  if (!world_writable && (me != 0 || read_only)) return;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  throw Error(ErrorCode::kPermissionDenied,
              path + " belongs to uid " + std::to_string(st.st_uid) + " (you are uid " + std::to_string(me) + ") and " +
                  (world_writable ? "every user may write it (mode " + std::string(mode) + ")"
                                  : std::string("you are root opening it for writing")) +
                  ": whoever owns or may write a table can read and rewrite what you store in it, so refusing to "
                  "use it. If you trust it, open it with trust_foreign_owner (Python trust_foreign_owner=True, "
                  "shmht --trust-owner); otherwise remove it and create the table again");
}

// A file being initialised by create(): an O_TMPFILE (no name at all until it is linked,
// so nobody can open, replace or pre-create it), or, where the filesystem lacks
// O_TMPFILE, a randomly named file in the same directory (`name`), created O_EXCL.
struct StagingFile {
  int fd = -1;
  std::string name;  // empty for an O_TMPFILE
};

// open(2) applies the umask to `mode`, as for any file this process creates
// (CreateOptions::mode); linking keeps the staging file's mode.
StagingFile create_staging_file(const std::string& path, std::uint32_t mode) {
  const std::string directory = directory_of(path).empty() ? "." : directory_of(path);
  StagingFile staging;
  // An O_TMPFILE is linked through /proc/self/fd (linkat's AT_EMPTY_PATH needs a
  // capability): without /proc (some containers), use a random name.
  const bool proc_fd_links = ::access("/proc/self/fd", X_OK) == 0;
  staging.fd = proc_fd_links ? keep_off_stdio(::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode)) : -1;
  if (staging.fd >= 0) return staging;
  if (proc_fd_links && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    if (errno == ENOENT) throw_not_found("creating " + path, path);
    throw_errno("creating " + path, errno);
  }
  std::random_device random;
  char suffix[32];
  for (int attempt = 0;; ++attempt) {
    std::snprintf(suffix, sizeof suffix, "%08x%08x", random(), random());
    staging.name = directory + "/.shmht-creating-" + suffix;
    staging.fd = create_exclusive_off_stdio(staging.name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, mode);
    if (staging.fd >= 0) return staging;
    if (errno != EEXIST || attempt == 8) {
      const int err = errno;
      staging.name.clear();
      if (err == ENOENT) throw_not_found("creating " + path, path);
      throw_errno("creating " + path, err);
    }
  }
}

// Gives the initialised staging file (open as `fd`) its name `path`; EEXIST if taken.
void publish_staging_file(const StagingFile& staging, int fd, const std::string& path) {
  const int rc = staging.name.empty()
                     ? ::linkat(AT_FDCWD, ("/proc/self/fd/" + std::to_string(fd)).c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW)
                     : ::link(staging.name.c_str(), path.c_str());
  if (rc != 0) throw_errno("creating " + path, errno);
}

}  // namespace

std::string option_value_text(const OptionRange& range, std::uint64_t value) {
  char text[32];
  // Octal with a leading 0 as C and chmod write it; zero is "0" either way.
  std::snprintf(text, sizeof text, range.base == 8 && value != 0 ? "0%llo" : "%llu", static_cast<unsigned long long>(value));
  return text;
}

std::string out_of_range_message(const OptionRange& range, std::string_view value) {
  return std::string(range.field) + " must be between " + option_value_text(range, range.min) + " and " +
         option_value_text(range, range.max) + "; got " + std::string(value);
}

std::string resolve_table_path(const std::string& name) {
  if (name.empty()) throw Error(ErrorCode::kInvalidArgument, "table name is empty");
  if (name.front() == '/') return name;
  if (name.find('/') != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                "table name '" + name + "' contains '/': use a bare name (for /dev/shm) or an absolute path");
  }
  return "/dev/shm/" + name;
}

RegionLayout RegionLayout::compute(std::uint64_t capacity, std::uint32_t max_processes,
                                   std::uint32_t max_key_bytes, std::uint32_t max_value_bytes) {
  RegionLayout l{};
  l.home_slots = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(static_cast<double>(capacity) / kMaxLoadFactor) + 1);
  l.bucket_count = layout::SlotArray::bucket_count_for(l.home_slots);
  l.process_table_offset = kPageBytes;
  l.engine_area_offset =
      round_up(l.process_table_offset + std::uint64_t{max_processes} * sizeof(ProcessEntry), 64);
  l.engine_area_bytes = layout::engine_area_bytes(max_processes);
  l.slot_array_offset = round_up(l.engine_area_offset + l.engine_area_bytes, 64);
  l.arena_offset = round_up(l.slot_array_offset + l.bucket_count * sizeof(layout::Bucket), kPageBytes);
  const std::uint64_t record = sizeof(layout::RecordHeader) + std::uint64_t{max_key_bytes} + max_value_bytes;
  // A chunk holds its ChunkHeader and at least one record of the largest size.
  l.chunk_bytes = static_cast<std::uint32_t>(std::max<std::uint64_t>(
      kMinChunkBytes, std::bit_ceil(sizeof(layout::ChunkHeader) + layout::class_bytes(layout::size_class_of(record)))));
  return l;
}

bool Region::map_grown_part(std::uint64_t offset, std::uint64_t bytes) {
  const std::uint64_t reserved = mapping_->reserved_bytes();
  if (offset < arena_offset_ || bytes > reserved || offset > reserved - bytes) return false;
  // The header's arena_end says how far chunks were handed out; the file is at least that long.
  const std::uint64_t end = arena_end();
  if (offset + bytes > end) return false;
  mapping_->map_up_to(std::min(end, fd_size(fd(), path_)));
  return contains(offset, bytes);
}

std::uint64_t Region::arena_end(std::memory_order order) const noexcept {
  return std::clamp(header().arena_end.load(order), fixed_.arena_offset, fixed_.max_bytes);
}

layout::ProcessEntry& Region::entry(std::uint32_t index) const noexcept {
  return at<ProcessEntry>(fixed().process_table_offset)[index];
}

Region Region::create(const std::string& path, const CreateOptions& options, EngineStateInit init_engine) {
  validate_options(options);
  Region region;
  region.path_ = path;
  // Initialise a file nobody else can name yet, then link it to `path` (atomic, EEXIST if
  // taken): a concurrent open() sees no file or a complete one, never an empty or
  // half-written header (open_or_create callers racing used to get kCorrupt).
  StagingFile staging = create_staging_file(path, options.mode);
  try {
    region.initialize(std::exchange(staging.fd, -1), options, init_engine);  // takes the fd over
    // The lock file (liveness.hpp) is there before the table has a name: nobody can
    // plant a file under the lock file's name of a table that exists, except by
    // deleting the real one by hand (to plant one before the table exists, one could as
    // well plant the table's own name: names in a shared directory are first come).
    // A create that then fails (the name taken by a racing creator) leaves the lock file
    // as it is: the racing winner may be using one this create made, and a lock file
    // naming another table is replaced by the first attacher of the table at the name.
    liveness::LockFile::open(region.identity(), region.fd(), /*for_writer=*/true);
    publish_staging_file(staging, region.fd(), path);
  } catch (...) {
    if (staging.fd >= 0) ::close(staging.fd);
    if (!staging.name.empty()) ::unlink(staging.name.c_str());
    throw;
  }
  if (!staging.name.empty()) ::unlink(staging.name.c_str());
  return region;
}

Region Region::create_anonymous(const CreateOptions& options, EngineStateInit init_engine) {
  validate_options(options);
  Region region;
  const int fd = keep_off_stdio(memfd_create("shmht", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) throw_errno("memfd_create", errno);
  // The name other processes (forked children) can open while this one holds the fd.
  region.path_ = "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd);
  region.initialize(fd, options, init_engine);
  // A memfd, unlike a file in /dev/shm, can forbid shrinking: then no process can
  // truncate the table under another's mapping (touching the lost pages would SIGBUS).
  if (fcntl(region.fd(), F_ADD_SEALS, F_SEAL_SHRINK) != 0) throw_errno("sealing " + region.path_ + " against shrinking", errno);
  return region;
}

void Region::initialize(int fd, const CreateOptions& options, EngineStateInit init_engine) {
  const RegionLayout l = RegionLayout::compute(options.capacity, options.max_processes,
                                               options.max_key_bytes, options.max_value_bytes);
  if (ftruncate(fd, static_cast<off_t>(l.arena_offset)) != 0) {  // validate_options checked max_bytes
    const int err = errno;
    ::close(fd);
    throw_errno("sizing " + path_, err);
  }
  // Reserve every page of the fixed part that gets touched (the header, the process
  // table, the locks, the slot array), so a full filesystem fails this create instead of
  // killing a later writer. The lock-free descriptors are reserved per attachment
  // (attach()): most entries never use theirs.
  const std::uint64_t descriptors = l.engine_area_offset + layout::descriptors_offset(options.max_processes);
  try {
    reserve_space(fd, path_, 0, descriptors);
    reserve_space(fd, path_, l.slot_array_offset, l.arena_offset - l.slot_array_offset);
  } catch (...) {
    ::close(fd);
    throw;
  }
  attach_mapping(FileMapping::of(fd, path_, round_up(options.max_bytes, kPageBytes), l.arena_offset), l.arena_offset);

  Header& h = header();
  ImmutableHeader& f = h.fixed;
  std::memcpy(f.magic, layout::kMagic, sizeof f.magic);
  f.layout_version = layout::kLayoutVersion;
  f.abi_tag = layout::abi_tag();
  f.hash_seed = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  f.capacity = options.capacity;
  f.home_slots = l.home_slots;
  f.bucket_count = l.bucket_count;
  f.max_key_bytes = options.max_key_bytes;
  f.max_value_bytes = options.max_value_bytes;
  f.max_processes = options.max_processes;
  f.chunk_bytes = l.chunk_bytes;
  f.process_table_offset = l.process_table_offset;
  f.engine_area_offset = l.engine_area_offset;
  f.engine_area_bytes = l.engine_area_bytes;
  f.slot_array_offset = l.slot_array_offset;
  f.arena_offset = l.arena_offset;
  f.max_bytes = round_up(options.max_bytes, kPageBytes);
  f.created_unix_ns = now_unix_ns();
  f.checksum = header_checksum(f);
  fixed_ = f;
  h.active_engine.store(static_cast<std::uint32_t>(options.engine), std::memory_order_relaxed);
  h.arena_end.store(l.arena_offset, std::memory_order_relaxed);
  h.file_bytes.store(l.arena_offset, std::memory_order_relaxed);
  init_engine(*this, static_cast<std::uint32_t>(options.engine), options.stripes);
  // Everything else (process table, engine area, slots) is zero: a new file reads as zeros,
  // which is every engine's initial state.
  h.state.store(layout::kStateReady, std::memory_order_release);
}

Region Region::open(const std::string& path, bool read_only, bool trust_foreign_owner) {
  Region region;
  region.path_ = path;
  // /proc/<pid>/fd/<n> (an anonymous table's name) is a symlink by design: follow it.
  const bool proc_fd = path.rfind("/proc/", 0) == 0;
  // O_NONBLOCK until the file is known to be regular: opening a FIFO would otherwise wait
  // for a writer (forever, for a read-only open).
  const int fd = keep_off_stdio(
      ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | (proc_fd ? 0 : O_NOFOLLOW)));
  if (fd < 0) {
    if (errno == ENOENT) throw_not_found("opening " + path, path);
    throw_errno("opening " + path, errno);
  }
  // Until the mapping owns it, close the fd on every error path.
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } guard{fd};

  struct stat st{};
  if (fstat(fd, &st) != 0) throw_errno("fstat " + path, errno);
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kInvalidArgument, path + " is not a regular file (a FIFO, device, socket or directory), so "
                                                    "not a shmht table; remove it or use another name");
  }
  if (!trust_foreign_owner) check_owner_trust(st, path, read_only);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) throw_errno("opening " + path, errno);

  const std::uint64_t size = fd_size(fd, path);
  if (size < kPageBytes) {
    corrupt(path, "file is " + std::to_string(size) + (size == 1 ? " byte" : " bytes") + "; a shmht table is at least " +
                      std::to_string(kPageBytes) + " (truncated, or not a shmht table)");
  }
  ImmutableHeader f{};
  if (pread(fd, &f, sizeof f, 0) != static_cast<ssize_t>(sizeof f)) throw_errno("reading header of " + path, errno);
  if (std::memcmp(f.magic, layout::kMagic, sizeof f.magic) != 0) corrupt(path, "bad magic: not a shmht table");
  if (f.layout_version != layout::kLayoutVersion) {
    throw Error(ErrorCode::kVersionMismatch, path + ": written with layout version " + std::to_string(f.layout_version) +
                                                 "; this build reads version " + std::to_string(layout::kLayoutVersion));
  }
  if (f.abi_tag != layout::abi_tag()) {
    throw Error(ErrorCode::kVersionMismatch, path + ": written by a build with different shared struct sizes (abi tag " +
                                                 std::to_string(f.abi_tag) + ", expected " + std::to_string(layout::abi_tag()) + ")");
  }
  if (f.checksum != header_checksum(f)) corrupt(path, "header checksum mismatch (a fixed field was overwritten)");

  auto field = [&](bool ok, const std::string& name) {
    if (!ok) corrupt(path, "header field " + name + " is out of range");
  };
  field(kCapacityRange.contains(f.capacity), "capacity");
  field(f.max_key_bytes >= 1, "max_key_bytes");
  field(sizeof(layout::RecordHeader) + std::uint64_t{f.max_key_bytes} + f.max_value_bytes <= layout::kMaxRecordBytes,
        "max_key_bytes + max_value_bytes");
  field(kMaxProcessesRange.contains(f.max_processes), "max_processes");
  const RegionLayout l = RegionLayout::compute(f.capacity, f.max_processes, f.max_key_bytes, f.max_value_bytes);
  field(f.home_slots == l.home_slots, "home_slots");
  field(f.bucket_count == l.bucket_count, "bucket_count");
  field(f.chunk_bytes == l.chunk_bytes, "chunk_bytes");
  field(f.process_table_offset == l.process_table_offset, "process_table_offset");
  field(f.engine_area_offset == l.engine_area_offset, "engine_area_offset");
  field(f.engine_area_bytes == l.engine_area_bytes, "engine_area_bytes");
  field(f.slot_array_offset == l.slot_array_offset, "slot_array_offset");
  field(f.arena_offset == l.arena_offset, "arena_offset");
  field(f.max_bytes % kPageBytes == 0 && f.max_bytes >= l.arena_offset + l.chunk_bytes && f.max_bytes <= kMaxBytesRange.max,
        "max_bytes");
  if (size < f.arena_offset) {
    corrupt(path, "file is " + std::to_string(size) + " bytes but its slot array ends at " +
                      std::to_string(f.arena_offset) + " (truncated)");
  }
  if (size > f.max_bytes) corrupt(path, "file is larger than its max_bytes");

  guard.fd = -1;
  region.fixed_ = f;  // from here on only this validated copy is read (fixed())
  region.attach_mapping(FileMapping::of(fd, path, f.max_bytes, size, !read_only), f.arena_offset);
  Header& h = region.header();
  // A creator still initialising: wait briefly for it to publish kStateReady.
  for (int waited_ms = 0; h.state.load(std::memory_order_acquire) != layout::kStateReady; ++waited_ms) {
    if (waited_ms >= 2000) corrupt(path, "never finished initialising (its creator died?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Peers grow the file before they publish a larger arena_end, so a size read after
  // arena_end covers it (the size read above may predate a concurrent growth).
  const std::uint64_t arena_end = h.arena_end.load(std::memory_order_acquire);
  const std::uint64_t size_now = fd_size(region.fd(), path);
  field(arena_end >= f.arena_offset && arena_end <= size_now && (arena_end - f.arena_offset) % f.chunk_bytes == 0,
        "arena_end");
  const auto active = static_cast<Engine>(h.active_engine.load(std::memory_order_relaxed));
  field(engine_name(active) != "unknown", "active_engine");
  field(active != Engine::kStripedRwLock ||
            (h.stripe_count.load(std::memory_order_relaxed) >= 1 && h.stripe_count.load(std::memory_order_relaxed) <= layout::kMaxStripes),
        "stripe_count");
  field(h.entry_high_water.load(std::memory_order_relaxed) <= f.max_processes, "entry_high_water");
  return region;
}

void Region::grow_file_to(std::uint64_t end) {
  end = round_up(end, kPageBytes);
  // The reservation is this process's own, sized from the validated max_bytes: a peer
  // cannot move this limit.
  const std::uint64_t max_bytes = mapping_->reserved_bytes();
  if (end > max_bytes) {
    throw Error(ErrorCode::kTableFull, path_ + ": table full: the file would grow to " + std::to_string(end) +
                                           " bytes but the table was created with max_bytes " + std::to_string(max_bytes) +
                                           "; erase items, or create the table with a larger max_bytes (Python max_bytes=, "
                                           "shmht create --max-bytes; at most " + std::to_string(kMaxBytesRange.max) + ")");
  }
  if (!attachment_fd_) throw Error(ErrorCode::kInvalidArgument, path_ + ": growing a table needs an attached handle");
  if (mapping_->mapped_bytes() >= end) return;  // mapped means in the file: nothing to do
  claim_file_size(end);
  detail::fault_point(testing::FaultPoint::kFileGrowthClaimed);
  // Whoever claimed [size, end), us or a peer that may be stopped or dead, we reserve
  // what is missing ourselves: nobody waits for the claimant.
  const std::uint64_t size = fd_size(fd(), path_);
  if (size < end) reserve(size, end - size);
  mapping_->map_up_to(end);
}

void Region::claim_file_size(std::uint64_t end) noexcept {
  std::atomic<std::uint64_t>& claimed = header().file_bytes;
  std::uint64_t seen = claimed.load(std::memory_order_relaxed);
  while (seen < end && !claimed.compare_exchange_weak(seen, end, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

void Region::reserve(std::uint64_t offset, std::uint64_t bytes) const {
  reserve_space(mapping_->fd(), path_, offset, bytes);
}

bool Region::ensure_file_mapped(std::uint64_t offset, std::uint64_t bytes) {
  if (contains(offset, bytes)) return true;
  const std::uint64_t reserved = mapping_->reserved_bytes();
  if (offset < arena_offset_ || bytes > reserved || offset > reserved - bytes) return false;
  mapping_->map_up_to(fd_size(fd(), path_));
  return contains(offset, bytes);
}

void Region::populate_for_write(std::uint64_t offset, std::uint64_t bytes) const noexcept {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older glibc headers lack the name
#endif
  madvise(base_ + offset, bytes, MADV_POPULATE_WRITE);  // errors only mean "no prefault"
}

void Region::attach_mapping(std::shared_ptr<FileMapping> mapping, std::uint64_t arena_offset) {
  mapping_ = std::move(mapping);
  base_ = mapping_->base();
  arena_offset_ = arena_offset;
}

bool Region::punch_hole(std::uint64_t offset, std::uint64_t bytes) const noexcept {
  const std::uint64_t begin = round_up(offset, kPageBytes);
  const std::uint64_t end = (offset + bytes) / kPageBytes * kPageBytes;
  if (read_only() || end <= begin) return false;
  return ::fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(begin),
                     static_cast<off_t>(end - begin)) == 0;
}

std::uint64_t Region::apparent_bytes() const { return fd_size(fd(), path_); }

std::uint64_t Region::allocated_bytes() const {
  struct stat st{};
  if (fstat(fd(), &st) != 0) throw_errno("fstat " + path_, errno);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

liveness::TableIdentity Region::identity() const {
  struct stat st{};
  if (fstat(fd(), &st) != 0) throw_errno("fstat " + path_, errno);
  return {path_, st.st_dev, st.st_ino, st.st_mode & 07777u, st.st_uid, st.st_gid, fixed().created_unix_ns, fixed().hash_seed};
}

std::shared_ptr<const liveness::LockFile> Region::query_file(bool* may_not_open) const {
  std::lock_guard lock(query_file_->mutex);
  if (query_file_->file) return query_file_->file;
  // A read-only handle (attach() sets the file before any question). Not remembered
  // while there is none: a writer may create it at any moment.
  const liveness::TableIdentity table = identity();
  std::optional<liveness::LockFile> file = liveness::LockFile::open(table, fd(), /*for_writer=*/false, may_not_open);
  if (!file || !file->belongs_to(table)) return nullptr;  // none, or a removed table's: nobody of ours
  query_file_->file = std::make_shared<const liveness::LockFile>(std::move(*file));
  return query_file_->file;
}

bool Region::entry_is_live(std::uint32_t index) const noexcept {
  bool may_not_open = false;
  std::shared_ptr<const liveness::LockFile> file;
  try {
    file = query_file(&may_not_open);
  } catch (...) {
    return true;  // an untrusted lock file, say: never "dead" from not knowing
  }
  if (may_not_open) return may_be_alive_by_pid(index);
  return file && liveness::entry_is_held(file->query_fd(), index);
}

// A read-only handle that may not open the lock file (it is the table's writers' alone)
// cannot ask the kernel. Waiting for ever on a writer that died would hang it, so it
// judges by the pid the entry names: "dead" only when it detached cleanly or no process
// has that pid here. A wrong "dead" costs only this reader an error (it cannot recover
// anything: protocol_engine.hpp's throw_needs_write_access); writers never judge so.
bool Region::may_be_alive_by_pid(std::uint32_t index) const noexcept {
  const ProcessEntry& e = entry(index);
  if (e.attached.load(std::memory_order_acquire) == 0) return false;
  const auto pid = static_cast<pid_t>(e.pid.load(std::memory_order_relaxed));
  return pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH;
}

std::vector<pid_t> Region::attached_pids() const {
  bool may_not_open = false;
  const std::shared_ptr<const liveness::LockFile> file = query_file(&may_not_open);
  std::vector<std::uint32_t> live;
  if (file) live = liveness::held_entries(file->query_fd(), fixed().max_processes);
  for (std::uint32_t i = 0; may_not_open && i < fixed().max_processes; ++i) {
    if (may_be_alive_by_pid(i)) live.push_back(i);  // a read-only user: the pids' word, as entry_is_live
  }
  std::vector<pid_t> pids;
  for (std::uint32_t i : live) pids.push_back(static_cast<pid_t>(entry(i).pid.load(std::memory_order_relaxed)));
  return pids;
}

namespace {

// The pids of `entries`, each once (a process with several handles holds several).
std::string pid_list(const Region& region, const std::vector<std::uint32_t>& entries) {
  std::vector<std::uint32_t> pids;
  for (std::uint32_t i : entries) pids.push_back(region.entry(i).pid.load(std::memory_order_relaxed));
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  std::string text;
  for (std::uint32_t pid : pids) text += (text.empty() ? "" : ", ") + std::to_string(pid);
  return text;
}

}  // namespace

Region::Attachment Region::attach(std::uint32_t engine, std::uint32_t stripes, ColdStart cold_start) {
  const liveness::TableIdentity table = identity();
  // Normally one pass. Another: the lock file found was a removed table's (replaced here)
  // or was replaced by another attacher while we waited for its admin lock.
  constexpr int kAttempts = 4;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (!attachment_fd_) {
      auto file = std::make_shared<const liveness::LockFile>(std::move(*liveness::LockFile::open(table, fd(), true)));
      attachment_fd_ = std::make_unique<liveness::AttachmentFd>(*file);
      std::lock_guard lock(query_file_->mutex);
      query_file_->file = std::move(file);
    }
    {
      const liveness::AttachmentFd::AdminLock admin(*attachment_fd_);
      const std::shared_ptr<const liveness::LockFile> file = query_file();
      if (file->still_at_its_path()) {
        if (file->belongs_to(table)) return attach_under_admin_lock(engine, stripes, cold_start);
        file->replace_with_fresh(table);
      }
    }
    attachment_fd_.reset();
    std::lock_guard lock(query_file_->mutex);
    query_file_->file.reset();
  }
  throw Error(ErrorCode::kSystem, path_ + ": its lock file " + liveness::lock_file_path(path_) + " was replaced " +
                                      std::to_string(kAttempts) + " times while attaching; open again");
}

Region::Attachment Region::attach_under_admin_lock(std::uint32_t engine, std::uint32_t stripes, ColdStart cold_start) {
  // Under the admin lock nobody attaches, so the live set can only shrink meanwhile.
  const std::vector<std::uint32_t> live = liveness::held_entries(query_file()->query_fd(), fixed().max_processes);
  const std::uint32_t active = header().active_engine.load(std::memory_order_acquire);
  if (engine == kAdoptActiveEngine) engine = active;
  if (!live.empty() && engine != active) {
    throw Error(ErrorCode::kEngineMismatch,
                path_ + ": table is in use with engine '" + std::string(engine_name(static_cast<Engine>(active))) +
                    "' by pid " + pid_list(*this, live) + "; open it with that engine, or wait until they detach");
  }

  // An entry never used or cleanly detached first; a dead attachment's only if none is left.
  Attachment a{fixed().max_processes, engine, false, 0, 0};
  auto is_live = [&](std::uint32_t i) { return std::find(live.begin(), live.end(), i) != live.end(); };
  auto is_dead = [&](std::uint32_t i) { return !is_live(i) && entry(i).attached.load(std::memory_order_acquire) != 0; };
  bool any_dead = false;
  for (std::uint32_t i = 0; i < fixed().max_processes; ++i) any_dead |= is_dead(i);
  for (int pass = 0; pass < 2 && a.entry == fixed().max_processes; ++pass) {
    for (std::uint32_t i = 0; i < fixed().max_processes; ++i) {
      if (is_live(i)) continue;
      const bool dead = is_dead(i);
      if (dead != (pass == 1) || !attachment_fd_->try_lock_entry(i)) continue;
      a.entry = i;
      a.inherited_dead_entry = dead;
      break;
    }
  }
  if (a.entry == fixed().max_processes) {
    throw Error(ErrorCode::kTooManyProcesses,
                path_ + ": all " + std::to_string(fixed().max_processes) +
                    " attachment entries are held by live handles (each open handle holds one; this table was created "
                    "with max_processes " + std::to_string(fixed().max_processes) +
                    "); close some handles, or create the table with a larger max_processes (Python max_processes=, "
                    "shmht create --max-processes; at most " + std::to_string(kMaxProcessesRange.max) + ")");
  }
  try {
    reserve(fixed().engine_area_offset + layout::descriptors_offset(fixed().max_processes) +
                sizeof(layout::KcasDescriptor) * a.entry,
            sizeof(layout::KcasDescriptor));
  } catch (...) {
    attachment_fd_->unlock_entry(a.entry);
    throw;
  }
  ProcessEntry& e = entry(a.entry);
  a.previous_generation = e.generation.load(std::memory_order_relaxed);
  e.generation.store(a.previous_generation + 1, std::memory_order_release);
  e.pid.store(static_cast<std::uint32_t>(getpid()), std::memory_order_relaxed);
  e.attached.store(1, std::memory_order_release);
  auto& high_water = header().entry_high_water;
  if (high_water.load(std::memory_order_relaxed) <= a.entry) high_water.store(a.entry + 1, std::memory_order_release);

  // Alone, and something to recover or switch: what any dead attachment held (locks,
  // half-done shifts, counters) is recovered now, before anyone else can attach. Alone
  // and nothing to recover: nobody can hold a lock, and cold_start makes sure none reads
  // as held.
  if (live.empty()) {
    const bool recover = any_dead || engine != active;
    a.repaired_shifts = cold_start(*this, a.entry, engine, stripes, recover);
    if (recover) a.inherited_dead_entry = false;  // nothing of the dead holder's is left to recover
  }
  return a;
}

void Region::with_admin_lock(const std::function<void(const std::vector<std::uint32_t>& live)>& fn) {
  if (!attachment_fd_) throw Error(ErrorCode::kInvalidArgument, path_ + ": the admin lock needs an attached handle");
  const liveness::AttachmentFd::AdminLock admin(*attachment_fd_);
  fn(liveness::held_entries(query_file()->query_fd(), fixed().max_processes));
}

void Region::detach(std::uint32_t index) noexcept {
  ProcessEntry& e = entry(index);
  e.attached.store(0, std::memory_order_release);
  e.pid.store(0, std::memory_order_relaxed);
  if (attachment_fd_) attachment_fd_->unlock_entry(index);
}

}  // namespace shmht
