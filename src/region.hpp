// region.hpp - one mapped table file: create, open and validate, lazy remap, growth,
// and the attached-process table.
//
// Each process reserves max_bytes of address space (PROT_NONE) once per file and maps the
// file over the front of it (file_mapping.hpp; handles on one file share it). When the
// file grows (another process allocated a chunk), the process maps the new tail at the
// same base address the first time it meets an offset past its mapping (ensure_mapped),
// so addresses handed out earlier stay valid.
//
// GROWTH TAKES NO LOCK. A process that needs the file to reach `end` (a chunk it is about
// to take) claims that length (CAS of Header::file_bytes to the larger value), then
// reserves with fallocate whatever the file still lacks below `end`, and maps it.
// fallocate is idempotent and never shrinks the file, and the kernel never makes the
// file longer than what it has allocated; so any number of processes may grow at once,
// each reserving what it finds missing, and one stopped or killed anywhere in between
// (before, during or after its claim) leaves a file whose every byte is reserved, maybe
// shorter than it claimed, and the next process that needs those bytes reserves them itself. Nobody waits for
// anybody: growth is lock-free under every engine (it never took the engines' locks; it
// no longer takes the admin lock either, which attach and `check` hold for a while).
// A claim is only a claim: file_bytes runs ahead of the file while a claimant is between
// claim and reservation, and stays ahead when its reservation failed (ENOSPC). Others
// then find the file short, try to reserve it themselves and get kNoSpace too, as they
// should while the filesystem is full; once space is freed, the next grower succeeds.
// Nothing is mapped or read by file_bytes; only the file's own size (fstat) says what
// exists, and a mapping never passes it.
//
// Who is attached (liveness.hpp) is asked through the table's lock file, a companion
// only its writers can open; attach() opens it (creating it if needed), a read-only
// handle opens it on its first question if it may.
//
// Every offset that comes out of shared memory is checked with contains() /
// ensure_mapped() before it is dereferenced: a corrupt or hostile peer can make us
// report kCorrupt, never read outside our mapping.
//
// TRUST: anyone who may write the file may write the header at any moment, after open()
// validated it as well as before. So the immutable header is validated once, on a
// private copy (a pread, before anything is mapped), and that copy is the one used:
// fixed() returns it, never the mapped bytes, so max_processes, the offsets and the
// limits that size every walk and index cannot change under us. The mutable words are
// read through accessors that bound them by the private copy (arena_end()), or are
// bounded where they are read (entry_high_water by max_processes, stripe_count by
// kMaxStripes or kCorrupt, an unknown active_engine is an error, state and file_bytes
// are only compared, the shared free-list heads are offsets like any other). A hostile
// peer can therefore make operations fail with kCorrupt or return wrong data, never
// crash its peers.
//
// Whose file it is: open() takes only a regular file (opened O_NONBLOCK, so a FIFO at
// the name cannot block it) and refuses a table that another user could have planted
// (check_owner_trust() in region.cpp states the rule) unless the caller trusts its owner.
// create() initialises an O_TMPFILE, which has no name anyone could pre-create or open,
// and links it into place.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "file_mapping.hpp"
#include "layout/header.hpp"
#include "liveness.hpp"
#include "layout/slot.hpp"
#include "shmht/options.hpp"

namespace shmht {

// Where a table name lives: a bare name is /dev/shm/<name>; an absolute path is a file.
std::string resolve_table_path(const std::string& name);

// Offsets of every part of a region, derived from the creation parameters alone; create()
// writes them and open() recomputes them to validate the header.
struct RegionLayout {
  std::uint64_t home_slots, bucket_count;
  std::uint64_t process_table_offset, engine_area_offset, engine_area_bytes;
  std::uint64_t slot_array_offset, arena_offset;
  std::uint32_t chunk_bytes;

  static RegionLayout compute(std::uint64_t capacity, std::uint32_t max_processes,
                              std::uint32_t max_key_bytes, std::uint32_t max_value_bytes);
};

// Prepares the engine area and control words for an engine (engines/engine.hpp).
using EngineStateInit = void (*)(class Region&, std::uint32_t engine, std::uint32_t stripes);
// Cold-start recovery (engines/recovery.hpp): run by an attacher that finds no other live
// attachment. `recover`: a reason to recover or switch (otherwise it only resets lock
// state that nobody can hold then). Returns the interrupted shifts repaired.
using ColdStart = std::uint64_t (*)(class Region&, std::uint32_t own_entry, std::uint32_t engine, std::uint32_t stripes,
                                    bool recover);

// Pass as the engine to attach() to adopt the table's active engine.
inline constexpr std::uint32_t kAdoptActiveEngine = 0;

class Region {
 public:
  // `init_engine` runs before the table is published as ready.
  static Region create(const std::string& path, const CreateOptions& options, EngineStateInit init_engine);
  static Region create_anonymous(const CreateOptions& options, EngineStateInit init_engine);
  // read_only: the file is opened O_RDONLY and mapped PROT_READ (a read-only handle,
  // which never attaches: it cannot write its entry or take a liveness lock).
  // Refuses anything but a regular file (a FIFO would block the open), and a table that
  // may not be trusted (trust_foreign_owner: see check_owner_trust()).
  static Region open(const std::string& path, bool read_only = false, bool trust_foreign_owner = false);

  Region(Region&&) noexcept = default;
  Region& operator=(Region&&) noexcept = default;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return mapping_->fd(); }
  bool read_only() const noexcept { return !mapping_->writable(); }
  std::byte* base() const noexcept { return base_; }
  layout::Header& header() const noexcept { return *reinterpret_cast<layout::Header*>(base_); }
  // The immutable header as validated when this handle was made: a private copy, so a
  // peer that overwrites the mapped one afterwards changes nothing here.
  const layout::ImmutableHeader& fixed() const noexcept { return fixed_; }
  // The arena's bump pointer, bounded to [arena_offset, max_bytes] of the private copy:
  // a bound for walks, never an offset to dereference (ensure_mapped() that).
  std::uint64_t arena_end(std::memory_order order = std::memory_order_acquire) const noexcept;
  layout::ProcessEntry& entry(std::uint32_t index) const noexcept;
  std::byte* engine_area() const noexcept { return base_ + fixed().engine_area_offset; }

  // True when [offset, offset + bytes) is inside the arena part of this mapping.
  bool contains(std::uint64_t offset, std::uint64_t bytes) const noexcept {
    const std::uint64_t mapped = mapping_->mapped_bytes();
    return offset >= arena_offset_ && bytes <= mapped && offset <= mapped - bytes;
  }
  // Like contains(), but first maps any part of the file that grew since we last looked.
  // Inline: every record a lookup reads passes through it, and is nearly always mapped.
  bool ensure_mapped(std::uint64_t offset, std::uint64_t bytes) {
    return contains(offset, bytes) || map_grown_part(offset, bytes);
  }
  template <class T = std::byte>
  T* at(std::uint64_t offset) const noexcept {
    return reinterpret_cast<T*>(base_ + offset);
  }
  // The inverse of at(): the region offset of a pointer into this mapping.
  std::uint64_t offset_of(const void* p) const noexcept {
    return static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base_);
  }

  // Best effort: allocates and maps [offset, offset + bytes) for writing in one call
  // (MADV_POPULATE_WRITE); on kernels without it, pages fault in one by one as usual.
  void populate_for_write(std::uint64_t offset, std::uint64_t bytes) const noexcept;

  // Makes the file at least `end` bytes long (page-rounded), with the space reserved,
  // and maps it; lock-free (see GROWTH above); never shrinks the file. Throws kTableFull
  // past max_bytes, kNoSpace when the filesystem cannot hold it (the file unchanged then,
  // though the claim in file_bytes stays).
  void grow_file_to(std::uint64_t end);
  // Reserves the filesystem's space for [offset, offset + bytes) of the file (extending
  // it if needed), so that touching those pages can never raise SIGBUS on a full tmpfs.
  // Throws kNoSpace with the filesystem's size and free bytes and what to do.
  void reserve(std::uint64_t offset, std::uint64_t bytes) const;
  // True when [offset, offset + bytes) lies inside the file (mapping what grew since we
  // looked), whether or not arena_end covers it yet: for claiming a chunk.
  bool ensure_file_mapped(std::uint64_t offset, std::uint64_t bytes);

  // The most records of `record_bytes` each that the arena can ever hold, from this
  // process's own reservation (sized from the validated max_bytes), never from a word a
  // peer can write: the bound on every walk of a list in shared memory (arena.cpp).
  std::uint64_t max_records(std::uint64_t record_bytes) const noexcept {
    return (mapping_->reserved_bytes() - arena_offset_) / record_bytes;
  }

  // Returns [offset, offset + bytes)'s whole pages to the filesystem (a punched hole reads
  // as zeros; the file keeps its size). Best effort: false where the filesystem cannot.
  bool punch_hole(std::uint64_t offset, std::uint64_t bytes) const noexcept;

  // File size as the filesystem reports it (apparent) and bytes actually allocated.
  std::uint64_t apparent_bytes() const;
  std::uint64_t allocated_bytes() const;

  // --- the attached-process table (liveness.hpp; admin lock held inside) ---
  struct Attachment {
    std::uint32_t entry;
    std::uint32_t engine;            // the engine attached with (adopted or requested)
    bool inherited_dead_entry;       // the entry's previous holder died attached
    std::uint64_t repaired_shifts;   // by cold-start recovery, if it ran
    std::uint32_t previous_generation;  // the entry's generation before this attach
  };
  // Takes an entry (one never used or cleanly detached first, else a dead one) and locks
  // it. `engine` must agree with the live attachments' (kAdoptActiveEngine: use theirs).
  // With no other live attachment, runs `cold_start`, recovering if any attachment died
  // (an interrupted cold start included) or the engine changes.
  Attachment attach(std::uint32_t engine, std::uint32_t stripes, ColdStart cold_start);
  void detach(std::uint32_t index) noexcept;
  // False only when entry `index` is certainly not held (a failed query means live). A
  // read-only handle that may not open the lock file judges by the entry's pid instead.
  bool entry_is_live(std::uint32_t index) const noexcept;
  // A read-only handle that may not open the lock file judges by pids, as entry_is_live.
  // Throws kPermissionDenied when the lock file is not to be trusted (liveness.hpp).
  std::vector<pid_t> attached_pids() const;
  // Runs fn under the admin lock, so nobody attaches meanwhile, with the entries live at
  // the start (the set can only shrink while fn runs). Needs an attached handle. fn must
  // not wait for anything a live attachment holds: attach waits for this lock.
  void with_admin_lock(const std::function<void(const std::vector<std::uint32_t>& live)>& fn);

 private:
  // ensure_mapped's slow path: maps the file up to the published arena end if [offset,
  // offset + bytes) lies inside it.
  bool map_grown_part(std::uint64_t offset, std::uint64_t bytes);
  // Raises Header::file_bytes to `end` unless it is already there (grow_file_to).
  void claim_file_size(std::uint64_t end) noexcept;
  Region() = default;
  // Writes a new table's header into `fd` (which it takes over).
  void initialize(int fd, const CreateOptions& options, EngineStateInit init_engine);
  void attach_mapping(std::shared_ptr<FileMapping> mapping, std::uint64_t arena_offset);
  // attach()'s work once it holds the admin lock of the table's own lock file.
  Attachment attach_under_admin_lock(std::uint32_t engine, std::uint32_t stripes, ColdStart cold_start);
  // The table file as the lock file must name it.
  liveness::TableIdentity identity() const;
  // The lock file to ask through: the one attach() opened, else (a read-only handle) the
  // table's, opened now if it has one this user may open; nullptr: there is none (nobody
  // is attached), or, with *may_not_open set, this user may not open it. Throws as
  // liveness::LockFile::open.
  std::shared_ptr<const liveness::LockFile> query_file(bool* may_not_open = nullptr) const;
  // entry_is_live's answer where the lock file cannot be opened (a read-only user).
  bool may_be_alive_by_pid(std::uint32_t index) const noexcept;

  // The lock file, shared by attach and queries from any thread; mutable: a read-only
  // handle opens it on its first question. Boxed so Region stays movable.
  struct QueryFile {
    std::mutex mutex;
    std::shared_ptr<const liveness::LockFile> file;
  };

  std::string path_;
  std::shared_ptr<FileMapping> mapping_;  // shared with this process's other handles on the file
  std::unique_ptr<liveness::AttachmentFd> attachment_fd_;  // this handle's own description, once attached
  std::unique_ptr<QueryFile> query_file_ = std::make_unique<QueryFile>();
  std::byte* base_ = nullptr;             // mapping_->base(), cached for the hot path
  layout::ImmutableHeader fixed_{};       // the validated header (fixed())
  std::uint64_t arena_offset_ = 0;
};

}  // namespace shmht
