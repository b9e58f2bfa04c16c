// shmht/options.hpp - what a caller chooses when creating or opening a table.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmht/engine.hpp"

namespace shmht {

// Slots after the last home slot (layout/slot.hpp): probes never wrap, so a key whose home
// is near the end lives there. They let more items fit than there are home slots, so the
// load factor (items / home slots, Stats::load_factor) can pass 1.
inline constexpr std::uint64_t kOverflowSlots = 255;

// The allowed range of each number in CreateOptions. Table::create checks every field
// before it creates anything and throws kInvalidArgument naming the field and its range
// ("max_key_bytes must be between 1 and 67108856; got 0"); the Python binding and the CLI
// check the same ranges before they narrow a number to the field's type, so a value never
// wraps around on its way in.
struct OptionRange {
  std::string_view field;  // the CreateOptions member, as the Python keyword names it too
  std::uint64_t min, max;
  int base = 10;           // how numbers of this field are written in messages (mode: 8)
  bool contains(std::uint64_t value) const noexcept { return value >= min && value <= max; }
};
// `value` written as messages about `range` write numbers (mode in octal: "0640").
std::string option_value_text(const OptionRange& range, std::uint64_t value);
// What a value outside `range` is told: "<field> must be between <min> and <max>; got
// <value>", `value` as the caller wrote it (it may not even fit a uint64: "-1", "2**70").
std::string out_of_range_message(const OptionRange& range, std::string_view value);

// A record holds a key and its value (plus an 8-byte header) in at most 64 MiB.
inline constexpr std::uint64_t kMaxKeyAndValueBytes = (std::uint64_t{64} << 20) - 8;
inline constexpr OptionRange kCapacityRange{"capacity", 1, std::uint64_t{1} << 36};
inline constexpr OptionRange kMaxKeyBytesRange{"max_key_bytes", 1, kMaxKeyAndValueBytes};
inline constexpr OptionRange kMaxValueBytesRange{"max_value_bytes", 0, kMaxKeyAndValueBytes - 1};
// The least max_bytes also depends on the other fields (the fixed part plus one chunk):
// create says how much this capacity needs when it is less. The most, 8 TiB, is what a
// slot word can address (a record offset / 8 in 40 bits; region.cpp static_asserts it):
// a record past it would read as another record, or as a lock-free operation's descriptor.
inline constexpr OptionRange kMaxBytesRange{"max_bytes", 1, std::uint64_t{1} << 43};
inline constexpr OptionRange kMaxProcessesRange{"max_processes", 1, 4096};
inline constexpr OptionRange kModeRange{"mode", 0, 0777, 8};
inline constexpr OptionRange kStripesRange{"stripes", 1, 64};

// Fixed when the table is created; recorded in the header.
struct CreateOptions {
  // The starting size (kCapacityRange): the first slot array is sized so that `capacity`
  // items fit at a load factor of at most 0.85. The table grows past it on its own: when
  // the items pass 0.85 of the home slots, or an insert finds no free slot within the
  // probe-distance limit (254) of its key's home, the slot array doubles, online, while
  // every process keeps working (src/growth.hpp). An insert fails only when the table
  // cannot grow: kTableFull when the file would pass max_bytes (the message names it),
  // kNoSpace when the filesystem is full; the table stays usable for what it holds. A
  // table that will hold many items can start larger to skip the early doublings. The
  // default keeps a new table small: one holding a single item takes about 0.6 MiB of
  // /dev/shm (most of it the first chunk of records and the attachment table).
  std::uint64_t capacity = 1000;
  // Longest key and value (kMaxKeyBytesRange, kMaxValueBytesRange; together at most
  // kMaxKeyAndValueBytes).
  std::uint32_t max_key_bytes = 1024;
  std::uint32_t max_value_bytes = 64 * 1024;
  // Upper bound of the file (header + slots + arena), rounded up to a 4096-byte page
  // (kMaxBytesRange). The file itself grows on demand; this only bounds it and the
  // virtual address range each process reserves. Past it, writes throw kTableFull (the
  // records and the growing slot array both live in the file).
  std::uint64_t max_bytes = std::uint64_t{64} << 30;
  // Attachment entries (kMaxProcessesRange): every open read-write handle holds one, so
  // this bounds the handles open at once, over all processes (a process with two handles
  // holds two); one more open throws kTooManyProcesses. 128 covers a pool of one worker
  // per core on machines up to about 120 cores plus its parent and tools; each entry
  // costs about 2 KiB of the file, allocated at create, and 37 KiB more (lock-free
  // descriptors) only once a handle has used it. A pool with more workers, or workers
  // with a handle per thread, needs a larger value: it cannot change after create.
  std::uint32_t max_processes = 128;
  // Permission bits of a file-backed table (kModeRange: no setuid, setgid or sticky bit).
  // As with open(2), the process's umask is applied: the file gets mode & ~umask (so
  // 0666 under the usual umask 022 gives 0644). To share a table with other users'
  // processes, set the umask or chmod the file after create.
  mode_t mode = 0600;
  // The engine the creating process attaches with.
  Engine engine = kDefaultEngine;
  // Striped engine only: how many reader-writer locks cover the buckets (kStripesRange).
  std::uint32_t stripes = 64;
};

struct OpenOptions {
  // The engine to attach with. Unset: the table's active engine (the one its live
  // attachments use, or used last). Set to another engine: allowed only while no live
  // process is attached, and switches the table to it (kEngineMismatch otherwise).
  std::optional<Engine> engine;
  // Striped engine only, and only when this open switches the table to it (no live
  // process attached): the stripe count (1..64). Otherwise the recorded count is kept.
  std::uint32_t stripes = 64;
  // Open for reading only: the file is opened O_RDONLY and mapped read-only, so a table
  // whose file the caller may only read (mode 0644, another user's) can be read. Only
  // for tables active with an engine whose readers never write to shared memory
  // (seqlock); kInvalidArgument names the reason otherwise. Writes through such a handle
  // throw kPermissionDenied; so does meeting a lock left by a dead writer (recovering it
  // needs write access: open the table read-write once). A read-only handle does not
  // attach: it is not listed among the table's processes. `engine` must be unset or
  // the active engine.
  bool read_only = false;
  // Open a table that another user owns although it may be a plant: by default a table
  // whose owner is neither you nor root is refused (kPermissionDenied) when every user
  // may write it, or when you are root and open it for writing, because its owner (or
  // anyone) can read and rewrite what you store. Tables shared by a group (mode 0660) or
  // published read-only (0644) need no opt-in. CLI: --trust-owner; Python: trust_foreign_owner=True.
  bool trust_foreign_owner = false;
};

struct RemoveOptions {
  // Remove the table even while live processes are attached (they keep using the
  // removed file), or when its header is damaged.
  bool force = false;
};

}  // namespace shmht
