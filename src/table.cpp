// table.cpp - the public Table: argument checks, hashing, fork safety, then the engine.
#include "shmht/table.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <algorithm>
#include <array>
#include <mutex>

#include "batch_prefetch.hpp"
#include "engines/engine.hpp"
#include "engines/recovery.hpp"
#include "fault_injection.hpp"
#include "hash.hpp"
#include "region.hpp"
#include "table_access.hpp"

namespace shmht {

namespace detail {
std::atomic<testing::FaultHook> g_fault_hook{nullptr};
std::atomic<testing::Flaw> g_flaw{testing::Flaw::kNone};
}  // namespace detail

void testing::set_fault_hook(FaultHook hook) noexcept { detail::g_fault_hook.store(hook, std::memory_order_relaxed); }
void testing::set_flaw(Flaw flaw) noexcept { detail::g_flaw.store(flaw, std::memory_order_relaxed); }

std::string_view error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kKeyTooLarge: return "key_too_large";
    case ErrorCode::kValueTooLarge: return "value_too_large";
    case ErrorCode::kTableFull: return "table_full";
    case ErrorCode::kNoSpace: return "no_space";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kVersionMismatch: return "version_mismatch";
    case ErrorCode::kEngineMismatch: return "engine_mismatch";
    case ErrorCode::kEngineUnavailable: return "engine_unavailable";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kTooManyProcesses: return "too_many_processes";
    case ErrorCode::kInUse: return "in_use";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kSystem: return "system";
    case ErrorCode::kNotACounter: return "not_a_counter";
    case ErrorCode::kCounterOverflow: return "counter_overflow";
  }
  return "unknown";
}

namespace {

// Bumped in every child after fork(): a handle remembers the value it was opened under.
std::atomic<std::uint64_t> g_fork_generation{0};

void register_fork_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
  });
}

// Where a walk over home slots stands: a home slot of one generation's slot array.
struct HomeCursor {
  std::uint32_t generation;
  std::uint64_t slot;
};

// Home slots per batch of iteration: a multiple of 14, so every batch boundary is a home
// group boundary of the array before (engines copy a migrating table group by group).
constexpr std::uint64_t kForEachBatchSlots = 1022;
static_assert(kForEachBatchSlots % 14 == 0);

// Free records per size class, from the counters the arena keeps (no list is walked, so
// this is safe next to writers; a shared stack's counter may lag by the pushes and pops
// in flight, whence the clamp).
std::vector<FreeClass> free_by_class(const Region& r) {
  std::vector<FreeClass> classes;
  for (unsigned c = 0; c < layout::kSizeClassCount; ++c) {
    std::int64_t records = static_cast<std::int64_t>(r.header().shared_free_counts[c].load(std::memory_order_relaxed));
    for (std::uint32_t i = 0; i < r.fixed().max_processes; ++i) records += r.entry(i).free_counts[c].load(std::memory_order_relaxed);
    if (records > 0) classes.push_back({layout::class_bytes(c), static_cast<std::uint64_t>(records)});
  }
  return classes;
}

// ---- Counters: the decimal text of an int64 (table.hpp) ------------------------------

// `bytes` for a message: printable ASCII as it is, anything else (and \ and ') as \xNN,
// cut after kShownBytes with the full length named, so neither a binary nor a 64 KiB
// value floods the message.
std::string shown_bytes(std::string_view bytes) {
  constexpr std::size_t kShownBytes = 40;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (const char c : bytes.substr(0, kShownBytes)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\' && c != '\'') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  out += "'";
  if (bytes.size() > kShownBytes) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

// The int64 whose canonical decimal text `bytes` is, or nullopt.
std::optional<std::int64_t> parse_counter(std::string_view bytes) {
  const bool negative = !bytes.empty() && bytes.front() == '-';
  const std::string_view digits = bytes.substr(negative ? 1 : 0);
  if (digits.empty() || digits.size() > 19) return std::nullopt;  // 19 digits hold INT64_MAX
  if (digits.front() == '0' && (digits.size() > 1 || negative)) return std::nullopt;  // "007", "-0"
  // Accumulate negatively: INT64_MIN's magnitude does not fit a positive int64.
  std::int64_t value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    if (__builtin_mul_overflow(value, 10, &value) || __builtin_sub_overflow(value, c - '0', &value)) return std::nullopt;
  }
  if (negative) return value;
  if (value == INT64_MIN) return std::nullopt;  // "9223372036854775808"
  return -value;
}

[[noreturn]] void throw_not_a_counter(std::string_view what, std::string_view bytes) {
  throw Error(ErrorCode::kNotACounter,
              std::string(what) + " is " + shown_bytes(bytes) +
                  ", not a counter: a counter is the decimal text of a signed 64-bit integer (\"42\", \"-7\"; no '+', "
                  "spaces or leading zeros), as Redis INCR keeps it");
}

// What Table::add stores for `key`: `seen` (its value; absent counts as 0) plus delta.
std::int64_t counter_sum(std::string_view key, const std::optional<std::string>& seen, std::int64_t delta) {
  std::int64_t before = 0;
  if (seen) {
    const std::optional<std::int64_t> parsed = parse_counter(*seen);
    if (!parsed) throw_not_a_counter("add: the value of key " + shown_bytes(key), *seen);
    before = *parsed;
  }
  std::int64_t after = 0;
  if (__builtin_add_overflow(before, delta, &after)) {
    throw Error(ErrorCode::kCounterOverflow, "add: key " + shown_bytes(key) + ": " + std::to_string(before) + " + " +
                                                 std::to_string(delta) +
                                                 " does not fit in a signed 64-bit counter; the counter is unchanged");
  }
  return after;
}

}  // namespace

std::string encode_counter(std::int64_t value) { return std::to_string(value); }

std::int64_t decode_counter(std::string_view bytes) {
  if (const std::optional<std::int64_t> value = parse_counter(bytes)) return *value;
  throw_not_a_counter("decode_counter: the value", bytes);
}

class TableImpl {
 public:
  // engine: nullopt adopts the table's active engine.
  static std::unique_ptr<TableImpl> attach(Region region, std::optional<Engine> engine, std::uint32_t stripes) {
    register_fork_handler();
    if (engine) require_engine_built(*engine);
    const Region::Attachment a =
        region.attach(engine ? static_cast<std::uint32_t>(*engine) : kAdoptActiveEngine, stripes, &recovery::cold_start);
    // Detaches again if anything below throws.
    auto impl = std::unique_ptr<TableImpl>(new TableImpl(std::move(region), static_cast<Engine>(a.engine), a.entry));
    require_engine_built(impl->engine_kind_);
    impl->repaired_at_attach_ = a.repaired_shifts;
    impl->context_.arena().inherit_interrupted_claim(a.previous_generation);
    impl->engine_ = make_engine(impl->engine_kind_, impl->context_);
    if (a.inherited_dead_entry) {
      // Take over whatever the entry's dead holder still holds before its owner id can
      // come round again (engines/owner.hpp), and correct the counters of the free lists
      // it may have died changing (the entry is ours alone now).
      impl->repaired_at_attach_ += impl->engine_->with_exclusive_access([] {});
      recount_free_lists(impl->context_.region(), a.entry);
    }
    return impl;
  }

  // A read-only handle: no entry, no liveness lock, nothing written (OpenOptions::read_only).
  static std::unique_ptr<TableImpl> open_read_only(Region region, std::optional<Engine> engine) {
    register_fork_handler();
    const auto active = static_cast<Engine>(region.header().active_engine.load(std::memory_order_acquire));
    if (engine && *engine != active) {
      throw Error(ErrorCode::kEngineMismatch, region.path() + ": table is active with engine '" +
                                                  std::string(engine_name(active)) + "'; a read-only open cannot switch it to '" +
                                                  std::string(engine_name(*engine)) + "'");
    }
    if (active != Engine::kSeqlock) {
      throw Error(ErrorCode::kInvalidArgument,
                  region.path() + ": read-only access needs an engine whose readers never write to the table (seqlock); this "
                                  "table is active with '" + std::string(engine_name(active)) + "', whose readers " +
                      (active == Engine::kLockFreeRobinHood ? "finish the operations they meet" : "take a lock"));
    }
    const std::uint32_t no_entry = region.fixed().max_processes;
    auto impl = std::unique_ptr<TableImpl>(new TableImpl(std::move(region), active, no_entry));
    impl->attached_ = false;
    impl->engine_ = make_read_only_engine(make_engine(active, impl->context_), impl->context_.region());
    return impl;
  }

  std::uint64_t repaired_at_attach() const noexcept { return repaired_at_attach_; }

  ~TableImpl() {
    // A handle inherited across fork() names its parent's entry: leave that alone.
    if (attached_ && !inherited_across_fork()) context_.region().detach(context_.entry_index());
  }

  bool inherited_across_fork() const noexcept {
    return fork_generation_ != g_fork_generation.load(std::memory_order_relaxed);
  }

  // A key to store under: throws kKeyTooLarge past the table's max_key_bytes.
  HashedKey key(std::string_view bytes) const {
    if (std::optional<HashedKey> k = lookup_key(bytes)) return *k;
    throw Error(ErrorCode::kKeyTooLarge, "key is " + std::to_string(bytes.size()) + (bytes.size() == 1 ? " byte" : " bytes") +
                                             "; this table's maximum is " +
                                             std::to_string(context_.fixed().max_key_bytes));
  }

  // A key to look up or remove: nullopt past the table's max_key_bytes. Such a key cannot
  // be in the table, so lookups and removals report it absent without asking the engine.
  std::optional<HashedKey> lookup_key(std::string_view bytes) const {
    check_usable();
    if (bytes.size() > context_.fixed().max_key_bytes) return std::nullopt;
    return HashedKey{bytes, hash_key(bytes, context_.fixed().hash_seed)};
  }

  // A key of a batch lookup: hashed whatever its length. A key longer than the table's
  // maximum matches no record (no stored key is that long), so it comes back absent like
  // lookup_key's, without taking it out of the batch.
  HashedKey batch_key(std::string_view bytes) const {
    check_usable();
    return {bytes, hash_key(bytes, context_.fixed().hash_seed)};
  }

  std::uint32_t max_value_bytes() const noexcept { return context_.fixed().max_value_bytes; }
  bool value_fits(std::string_view value) const noexcept { return value.size() <= context_.fixed().max_value_bytes; }

  void check_value(std::string_view value) const {
    if (!value_fits(value)) {
      throw Error(ErrorCode::kValueTooLarge, "value is " + std::to_string(value.size()) +
                                                 (value.size() == 1 ? " byte" : " bytes") + "; this table's maximum is " +
                                                 std::to_string(context_.fixed().max_value_bytes));
    }
  }

  // A read-only handle (OpenOptions::read_only) refuses `operation` by its own name.
  void check_writable(const char* operation) const {
    if (!attached_) {
      throw Error(ErrorCode::kPermissionDenied,
                  std::string(operation) + ": this table handle was opened read-only (" + context_.region().path() + ")");
    }
  }

  void check_usable() const {
    if (inherited_across_fork()) [[unlikely]] {
      throw Error(ErrorCode::kInvalidArgument,
                  "this Table handle was inherited across fork(); open the table again in the child");
    }
  }

  std::uint64_t size() {
    check_usable();
    const std::int64_t total = engine_->item_count(context_.region());
    return total < 0 ? 0 : static_cast<std::uint64_t>(total);
  }

  Stats stats() {
    Stats s{};
    Region& r = context_.region();
    s.path = r.path();
    s.engine = engine_kind_;
    s.capacity = r.fixed().capacity;
    const growth::ArrayView view = context_.view();
    s.slots = view.current.home_slots();
    s.slot_array_bytes = growth::array_bytes(view.current.home_slots());
    s.growths = view.generation;
    s.migrating = view.migrating;
    s.migration_groups = view.migrating ? view.old.group_count() : 0;
    s.migration_groups_moved = growth::moved_groups(r, view);
    s.items = size();
    s.load_factor = static_cast<double>(s.items) / static_cast<double>(s.slots);
    s.max_key_bytes = r.fixed().max_key_bytes;
    s.max_value_bytes = r.fixed().max_value_bytes;
    s.max_bytes = r.fixed().max_bytes;
    s.max_processes = r.fixed().max_processes;
    s.apparent_bytes = r.apparent_bytes();
    s.resident_bytes = r.allocated_bytes();
    s.arena_bytes = r.arena_end(std::memory_order_relaxed) - r.fixed().arena_offset;
    std::int64_t live = 0;
    for (std::uint32_t i = 0; i < r.fixed().max_processes; ++i) {
      live = layout::wrapping_add(live, r.entry(i).live_bytes.load(std::memory_order_relaxed));
    }
    s.live_record_bytes = live < 0 ? 0 : static_cast<std::uint64_t>(live);
    s.free_by_class = free_by_class(r);
    s.free_record_bytes = 0;
    for (const FreeClass& c : s.free_by_class) s.free_record_bytes += c.records * c.record_bytes;
    s.attached_pids = r.attached_pids();
    struct stat st{};
    if (fstat(r.fd(), &st) != 0) throw Error(ErrorCode::kSystem, "fstat " + s.path + ": " + std::strerror(errno));
    s.file_device = st.st_dev;
    s.file_inode = st.st_ino;
    return s;
  }

  // One batch of iteration (Table::items, for_each): appends the items whose home slot
  // is in [at, at + kForEachBatchSlots) of the slot array of at.generation to *out and
  // returns where the next batch starts (in the generation the batch was copied at: the
  // same hashes, scaled, if the table grew meanwhile); nullopt, copying nothing, once `at`
  // is past the last home slot. A cursor of an older generation is first scaled to the
  // current one: a batch is never more than kForEachBatchSlots of the current array.
  std::optional<HomeCursor> copy_items_batch(HomeCursor at, std::vector<KeyValue>* out) {
    check_usable();
    const growth::ArrayView& view = context_.view();
    if (view.generation > at.generation) {
      at.slot <<= view.generation - at.generation;
      at.generation = view.generation;
    }
    const std::uint64_t home_slots = growth::home_slots_of(context_.fixed(), at.generation);
    if (at.slot >= home_slots) return std::nullopt;
    const std::uint64_t end = std::min(home_slots, at.slot + kForEachBatchSlots);
    if (!view.migrating) batch::prefetch_records_in(context_, at.slot, end);
    const std::uint32_t copied_at = engine_->copy_home_range(at.generation, at.slot, end, out);
    return HomeCursor{copied_at, end << (copied_at - at.generation)};
  }

  // ---- take_any: a cursor over home slots, kept by this handle (Table::take_any) -----

  std::optional<std::pair<std::string, std::string>> take_any() {
    check_writable("take_any");
    check_usable();
    for (;;) {
      while (!take_cursor_.keys.empty()) {
        std::string key = std::move(take_cursor_.keys.back());
        take_cursor_.keys.pop_back();
        // Taken since it was seen (by another process, or erased): on to the next.
        std::string value;
        if (!engine_->take(HashedKey{key, hash_key(key, context_.fixed().hash_seed)}, &value)) continue;
        take_cursor_.scanned_since_found = 0;
        return std::pair{std::move(key), std::move(value)};
      }
      const std::uint64_t home_slots = context_.view().current.home_slots();
      if (take_cursor_.scanned_since_found >= home_slots) {
        take_cursor_.scanned_since_found = 0;  // the next call looks a full lap again
        return std::nullopt;
      }
      scan_for_take();
    }
  }

  std::uint64_t take_any_slots_scanned() const noexcept { return take_cursor_.slots_scanned; }

  EngineBase& engine() { return *engine_; }
  TableContext& context() { return context_; }
  Engine engine_kind() const { return engine_kind_; }
  const std::string& path() { return context_.region().path(); }

 private:
  TableImpl(Region region, Engine engine, std::uint32_t entry)
      : context_(std::move(region), entry), engine_kind_(engine) {}

  // Where take_any resumes. It copies one range of home slots at a time and keeps only
  // the keys (a value is copied again by the take that removes it), so a call that finds
  // an item early costs one take, not a walk from slot 0 (issue 21: 20,000 popitems
  // walked a default table 20,000 times).
  struct TakeCursor {
    HomeCursor next{0, 0};                  // the next range to scan starts here
    std::vector<std::string> keys;          // seen in the last range, not yet tried (back first)
    std::uint64_t scanned_since_found = 0;  // home slots scanned since take_any last found one
    std::uint64_t slots_scanned = 0;        // in all, for TableAccess (tests count the work)
  };
  // Home slots per range: small enough that a cached key is rarely stale when many
  // handles drain one table, large enough that scanning is a sequential read. A multiple
  // of 14, as kForEachBatchSlots.
  static constexpr std::uint64_t kTakeAnyRangeSlots = 252;
  static_assert(kTakeAnyRangeSlots % 14 == 0);

  void scan_for_take() {
    const growth::ArrayView& view = context_.view();
    HomeCursor at = take_cursor_.next;
    if (view.generation > at.generation) {
      at.slot <<= view.generation - at.generation;
      at.generation = view.generation;
    }
    const std::uint64_t home_slots = growth::home_slots_of(context_.fixed(), at.generation);
    if (at.slot >= home_slots) at.slot = 0;
    const std::uint64_t end = std::min(home_slots, at.slot + kTakeAnyRangeSlots);
    std::vector<KeyValue> found;
    const std::uint32_t copied_at = engine_->copy_home_range(at.generation, at.slot, end, &found);
    for (auto it = found.rbegin(); it != found.rend(); ++it) take_cursor_.keys.push_back(std::move(it->first));
    take_cursor_.next = end == home_slots ? HomeCursor{copied_at, 0} : HomeCursor{copied_at, end << (copied_at - at.generation)};
    take_cursor_.scanned_since_found += end - at.slot;
    take_cursor_.slots_scanned += end - at.slot;
  }

  TakeCursor take_cursor_;

  TableContext context_;
  Engine engine_kind_;
  std::unique_ptr<EngineBase> engine_;
  std::uint64_t repaired_at_attach_ = 0;
  bool attached_ = true;  // false: a read-only handle, which holds no entry
  std::uint64_t fork_generation_ = g_fork_generation.load(std::memory_order_relaxed);
};

Table::Table(std::unique_ptr<TableImpl> impl) noexcept : impl_(std::move(impl)) {}
Table::Table(Table&&) noexcept = default;
Table& Table::operator=(Table&&) noexcept = default;
Table::~Table() = default;

TableImpl& Table::impl() {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "the table handle is closed");
  return *impl_;
}

Table Table::create(const std::string& name, const CreateOptions& options) {
  Region region = Region::create(resolve_table_path(name), options, &switch_engine_state);
  return Table(TableImpl::attach(std::move(region), options.engine, options.stripes));
}

Table Table::create_anonymous(const CreateOptions& options) {
  Region region = Region::create_anonymous(options, &switch_engine_state);
  return Table(TableImpl::attach(std::move(region), options.engine, options.stripes));
}

Table Table::open(const std::string& name, const OpenOptions& options) {
  Region region = Region::open(resolve_table_path(name), options.read_only, options.trust_foreign_owner);
  if (options.read_only) return Table(TableImpl::open_read_only(std::move(region), options.engine));
  return Table(TableImpl::attach(std::move(region), options.engine, options.stripes));
}

Table Table::open_or_create(const std::string& name, const CreateOptions& create_options) {
  // Two processes may race to create: the loser of O_EXCL opens what the winner made.
  for (int attempt = 0;; ++attempt) {
    try {
      return open(name, {.engine = create_options.engine, .stripes = create_options.stripes});
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound || attempt > 0) throw;
    }
    try {
      return create(name, create_options);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kAlreadyExists) throw;
    }
  }
}

Engine Table::active_engine(const std::string& name) {
  // Reads the header only, which tells nothing stored: no owner check.
  const Region region = Region::open(resolve_table_path(name), /*read_only=*/true, /*trust_foreign_owner=*/true);
  return static_cast<Engine>(region.header().active_engine.load(std::memory_order_acquire));
}

void TableAccess::run_exclusive(Table& table, const std::function<void(TableContext&)>& fn, std::uint64_t* repaired) {
  TableImpl& impl = table.impl();
  impl.check_usable();
  *repaired = impl.repaired_at_attach() + impl.engine().with_exclusive_access([&] {
    detail::fault_point(testing::FaultPoint::kExclusiveHeld);
    fn(impl.context());
  });
}

void TableAccess::with_admin_lock(Table& table,
                                  const std::function<void(TableContext&, const std::vector<std::uint32_t>& live)>& fn) {
  TableImpl& impl = table.impl();
  impl.check_usable();
  impl.context().region().with_admin_lock([&](const std::vector<std::uint32_t>& live) { fn(impl.context(), live); });
}

namespace {

[[noreturn]] void throw_remove_error(const std::string& path, int err) {
  throw Error(err == EACCES || err == EPERM || err == EROFS ? ErrorCode::kPermissionDenied : ErrorCode::kSystem,
              "removing " + path + ": " + std::strerror(err));
}

// The pids attached to the table file `file` (named `path` in messages), each once.
// Throws kInvalidArgument if the file is not a shmht table (its magic), leaving it alone.
[[noreturn]] void throw_replaced_while_checked(const std::string& path) {
  throw Error(ErrorCode::kInvalidArgument,
              path + " was replaced by another file while it was being checked; nothing was removed (run remove again if it "
                     "should go)");
}

// `opened`: the file that will be unlinked (opened relative to its directory). It is
// validated by its name, and must be the file that name opened: through the name, the
// lock file beside it answers who is attached (and no /proc is needed).
// How each interface spells RemoveOptions::force, for the messages that suggest it.
constexpr std::string_view kHowToForce = "shmht rm --force, Python unlink(name, force=True), C++ RemoveOptions::force";

std::vector<pid_t> attached_pids_of_table_file(const std::string& path, const struct stat& opened) {
  Region region = [&] {
    try {
      // Reads who is attached, nothing stored: no owner check.
      return Region::open(path, /*read_only=*/true, /*trust_foreign_owner=*/true);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCorrupt && e.code() != ErrorCode::kVersionMismatch) throw;
      if (std::string_view(e.what()).find("bad magic") != std::string_view::npos ||
          std::string_view(e.what()).find("not a shmht table") != std::string_view::npos) {
        throw Error(ErrorCode::kInvalidArgument, path + " is not a shmht table (" + e.what() + "); refusing to remove it");
      }
      throw Error(e.code(), std::string(e.what()) + "; it can only be removed by force (" + std::string(kHowToForce) + ")");
    }
  }();
  struct stat validated{};
  if (fstat(region.fd(), &validated) != 0 || validated.st_dev != opened.st_dev || validated.st_ino != opened.st_ino) {
    throw_replaced_while_checked(path);
  }
  std::vector<pid_t> pids = region.attached_pids();
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

}  // namespace

namespace {

// The file a path names, opened relative to a descriptor of its directory, so every later
// step (validating, re-checking, unlinking) meets the same directory and the same file even
// if a directory on the path is swapped meanwhile.
class DirectoryEntry {
 public:
  explicit DirectoryEntry(const std::string& path) : path_(path) {
    const auto slash = path.rfind('/');  // resolve_table_path: always absolute
    name_ = path.substr(slash + 1);
    directory_fd_ = ::open(slash == 0 ? "/" : path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (directory_fd_ < 0) {
      open_errno_ = errno;
      return;
    }
    // O_NONBLOCK: a FIFO at the name must not block us; O_NOFOLLOW: nor redirect us.
    file_fd_ = ::openat(directory_fd_, name_.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (file_fd_ < 0) open_errno_ = errno;
  }
  ~DirectoryEntry() {
    if (file_fd_ >= 0) ::close(file_fd_);
    if (directory_fd_ >= 0) ::close(directory_fd_);
  }
  DirectoryEntry(const DirectoryEntry&) = delete;
  DirectoryEntry& operator=(const DirectoryEntry&) = delete;

  // False if there is nothing at the path; throws if the open failed otherwise.
  bool exists() const {
    if (file_fd_ >= 0) return true;
    if (open_errno_ == ENOENT) return false;
    if (open_errno_ == ELOOP) throw Error(ErrorCode::kInvalidArgument, path_ + " is a symbolic link; refusing to remove it");
    throw_remove_error(path_, open_errno_);
  }
  // The opened file as a name Region::open can open again (the same inode, whatever the path names now).
  struct stat opened_file_status() const {
    struct stat st{};
    if (fstat(file_fd_, &st) != 0) throw_remove_error(path_, errno);
    return st;
  }
  // Unlinks the name if it still names the opened file; false if it names nothing now.
  bool unlink_if_still(const struct stat& opened) const {
    struct stat now{};
    if (fstatat(directory_fd_, name_.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return false;
      throw_remove_error(path_, errno);
    }
    if (now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) {
      throw_replaced_while_checked(path_);
    }
    if (unlinkat(directory_fd_, name_.c_str(), 0) == 0) return true;
    if (errno == ENOENT) return false;
    throw_remove_error(path_, errno);
  }

 private:
  std::string path_, name_;
  int directory_fd_ = -1, file_fd_ = -1;
  int open_errno_ = 0;  // why the directory or the file did not open
};

}  // namespace

bool Table::remove(const std::string& name, const RemoveOptions& options) {
  const std::string path = resolve_table_path(name);
  const DirectoryEntry entry(path);
  if (!entry.exists()) return false;
  const struct stat opened = entry.opened_file_status();
  if (!S_ISREG(opened.st_mode)) throw Error(ErrorCode::kInvalidArgument, path + " is not a regular file; refusing to remove it");
  try {
    const std::vector<pid_t> pids = attached_pids_of_table_file(path, opened);
    if (!pids.empty() && !options.force) {
      // The caller itself may be one of them (a handle it still holds): say so, since
      // "close it first" is then advice about its own handle.
      std::string list;
      for (pid_t pid : pids) list += (list.empty() ? "" : ", ") + std::to_string(pid) + (pid == getpid() ? " (this process)" : "");
      throw Error(ErrorCode::kInUse, path + ": " + std::to_string(pids.size()) + (pids.size() == 1 ? " process is" : " processes are") +
                                         " attached (pid " + list + "); close it first, or remove it by force (" +
                                         std::string(kHowToForce) + "; attached processes keep using the removed file, new "
                                         "openers get a new table)");
    }
  } catch (const Error& e) {
    // A damaged table (its magic right, the rest not) may be removed by force.
    if (!options.force || e.code() == ErrorCode::kInvalidArgument || e.code() == ErrorCode::kInUse) throw;
  }
  if (!entry.unlink_if_still(opened)) return false;
  liveness::remove_lock_file(path, opened.st_dev, opened.st_ino);  // its companion (liveness.hpp); attached processes keep theirs open
  return true;
}

bool Table::unlink() {
  TableImpl& impl = this->impl();
  const std::string& path = impl.path();
  struct stat named{}, open_file{};
  if (::stat(path.c_str(), &named) != 0) {
    if (errno == ENOENT) return false;
    throw_remove_error(path, errno);
  }
  if (fstat(impl.context().region().fd(), &open_file) != 0) throw_remove_error(path, errno);
  if (named.st_dev != open_file.st_dev || named.st_ino != open_file.st_ino) return false;  // the name was reused
  if (::unlink(path.c_str()) == 0) {
    liveness::remove_lock_file(path, open_file.st_dev, open_file.st_ino);
    return true;
  }
  if (errno == ENOENT) return false;
  throw_remove_error(path, errno);
}

std::optional<std::string> Table::get(std::string_view key) {
  const std::optional<HashedKey> k = impl().lookup_key(key);
  std::string value;
  if (!k || !impl_->engine().get(*k, &value)) return std::nullopt;
  return value;
}

std::optional<std::size_t> Table::get(std::string_view key, std::span<char> out) {
  const std::optional<HashedKey> k = impl().lookup_key(key);
  if (!k) return std::nullopt;
  return impl_->engine().get(*k, out);
}

bool Table::contains(std::string_view key) {
  const std::optional<HashedKey> k = impl().lookup_key(key);
  return k && impl_->engine().contains(*k);
}

namespace {

// get_many and contains_many: batches of batch::kKeysPerBatch keys, software-pipelined
// (batch_prefetch.hpp). Each round does one step for each of four batches, each step a
// batch ahead of the next, so that every line a step needs was requested one round (16
// lookups' time) before:
//   batch k + 3: its keys' bytes requested;
//   batch k + 2: its keys hashed (their bytes have arrived), their buckets requested;
//   batch k + 1: its buckets read, the records whose tags match requested;
//   batch k:     looked up by the engine, whose lines are now in cache.
class LookupPipeline {
 public:
  LookupPipeline(TableImpl& impl, std::span<const std::string_view> keys) : impl_(impl), keys_(keys) {}

  // Calls found(i, value) for each present key, in key order, after the engine has
  // answered (and released whatever it locked for) that key's batch.
  void run(bool want_values, const std::function<void(std::size_t, std::string_view)>& found) {
    const auto batches = static_cast<std::ptrdiff_t>((keys_.size() + batch::kKeysPerBatch - 1) / batch::kKeysPerBatch);
    auto exists = [&](std::ptrdiff_t k) { return k >= 0 && k < batches; };
    for (std::ptrdiff_t k = -3; k < batches; ++k) {
      if (exists(k + 3)) request_key_bytes(k + 3);
      if (exists(k + 2)) hash_and_request_buckets(k + 2);
      if (exists(k + 1)) batch::prefetch_matching_records(impl_.context(), hashed(k + 1).keys());
      if (exists(k)) look_up(k, want_values, found);
    }
  }

 private:
  struct HashedBatch {
    std::array<HashedKey, batch::kKeysPerBatch> keys_hashed;
    std::size_t count = 0;
    std::span<const HashedKey> keys() const { return {keys_hashed.data(), count}; }
  };

  // Batches k, k + 1 and k + 2 are hashed at once: three buffers, reused in turn.
  HashedBatch& hashed(std::ptrdiff_t k) { return hashed_[static_cast<std::size_t>(k) % hashed_.size()]; }

  std::span<const std::string_view> batch_keys(std::ptrdiff_t k) const {
    const std::size_t first = static_cast<std::size_t>(k) * batch::kKeysPerBatch;
    return keys_.subspan(first, std::min(batch::kKeysPerBatch, keys_.size() - first));
  }

  void request_key_bytes(std::ptrdiff_t k) const {
    for (const std::string_view key : batch_keys(k)) prefetch_for_read(key.data());
  }

  void look_up(std::ptrdiff_t k, bool want_values, const std::function<void(std::size_t, std::string_view)>& found) {
    const HashedBatch& batch = hashed(k);
    answers_.reset(batch.count);
    impl_.engine().lookup_batch(batch.keys(), want_values, answers_);
    const std::size_t first = static_cast<std::size_t>(k) * batch::kKeysPerBatch;
    for (std::size_t i = 0; i < batch.count; ++i) {
      if (answers_.found(i)) found(first + i, answers_.value(i));
    }
  }

  void hash_and_request_buckets(std::ptrdiff_t k) {
    HashedBatch& batch = hashed(k);
    const std::span<const std::string_view> keys = batch_keys(k);
    batch.count = keys.size();
    for (std::size_t i = 0; i < keys.size(); ++i) batch.keys_hashed[i] = impl_.batch_key(keys[i]);
    batch::prefetch_probed_buckets(impl_.context(), batch.keys());
  }

  TableImpl& impl_;
  std::span<const std::string_view> keys_;
  std::array<HashedBatch, 3> hashed_;
  BatchAnswers answers_;
};

}  // namespace

std::vector<std::optional<std::string>> Table::get_many(std::span<const std::string_view> keys) {
  std::vector<std::optional<std::string>> values(keys.size());
  LookupPipeline(impl(), keys).run(true, [&](std::size_t i, std::string_view value) { values[i].emplace(value); });
  return values;
}

void Table::get_many(std::span<const std::string_view> keys,
                     const std::function<void(std::size_t index, std::string_view value)>& found) {
  LookupPipeline(impl(), keys).run(true, found);
}

std::vector<bool> Table::contains_many(std::span<const std::string_view> keys) {
  std::vector<bool> present(keys.size());
  LookupPipeline(impl(), keys).run(false, [&](std::size_t i, std::string_view) { present[i] = true; });
  return present;
}

bool Table::insert(std::string_view key, std::string_view value) {
  const HashedKey k = impl().key(key);
  impl_->check_value(value);
  return impl_->engine().insert(k, value);
}

bool Table::assign(std::string_view key, std::string_view value) {
  const HashedKey k = impl().key(key);
  impl_->check_value(value);
  return impl_->engine().assign(k, value);
}

bool Table::erase(std::string_view key) {
  const std::optional<HashedKey> k = impl().lookup_key(key);
  return k && impl_->engine().erase(*k);
}

bool Table::compare_and_set(std::string_view key, std::optional<std::string_view> expected,
                            std::optional<std::string_view> desired, std::optional<std::string>* current) {
  TableImpl& impl = this->impl();
  if (desired) impl.check_value(*desired);  // as insert and assign check what they would store
  const std::optional<HashedKey> k = impl.lookup_key(key);
  if (!k) {
    // The key cannot be in the table: it is absent. Only "insert if absent" would store.
    if (expected) {
      if (current != nullptr) current->reset();
      return false;
    }
    if (desired) impl.key(key);  // throws kKeyTooLarge
    return true;
  }
  if (expected && !impl.value_fits(*expected)) {
    // No stored value can equal it: the comparison fails at the moment of this read.
    if (current == nullptr) return false;
    std::string value;
    *current = impl.engine().get(*k, &value) ? std::optional<std::string>(std::move(value)) : std::nullopt;
    return false;
  }
  return impl.engine().compare_and_set(*k, expected, desired, current);
}

std::optional<std::string> Table::take(std::string_view key) {
  const std::optional<HashedKey> k = impl().lookup_key(key);
  std::string old;
  if (!k || !impl_->engine().take(*k, &old)) return std::nullopt;
  return old;
}

std::int64_t Table::add(std::string_view key, std::int64_t delta) {
  impl().check_writable("add");  // before compare_and_set could name itself as the refused writer
  const HashedKey k = impl_->key(key);
  std::optional<std::string> seen;
  if (std::string value; impl_->engine().get(k, &value)) seen = std::move(value);
  for (;;) {
    const std::int64_t next = counter_sum(key, seen, delta);
    const std::string desired = encode_counter(next);
    if (!impl_->value_fits(desired)) {  // a table whose values are shorter than a counter
      throw Error(ErrorCode::kValueTooLarge, "add: the counter " + shown_bytes(key) + " would be " + desired + " (" +
                                                 std::to_string(desired.size()) + " bytes); this table's maximum value is " +
                                                 std::to_string(impl_->max_value_bytes()) + " bytes");
    }
    // `expected` views `seen`, so the value a failed attempt reports goes elsewhere first.
    std::optional<std::string> now;
    if (impl_->engine().compare_and_set(k, seen, desired, &now)) return next;
    seen = std::move(now);
  }
}

std::optional<std::pair<std::string, std::string>> Table::take_any() { return impl().take_any(); }

std::uint64_t TableAccess::take_any_slots_scanned(Table& table) { return table.impl().take_any_slots_scanned(); }

std::uint64_t Table::size() { return impl().size(); }

void Table::for_each(const std::function<void(std::string_view, std::string_view)>& fn) {
  for (const auto& [key, value] : items()) fn(key, value);
}

// ---- Table::items() ------------------------------------------------------------------

ItemRange Table::items() {
  impl();  // a closed handle throws here, not at the first begin()
  return ItemRange(this);
}

ItemIterator::ItemIterator(Table* table) : table_(table) { fill(); }

ItemIterator& ItemIterator::operator++() {
  if (index_ + 1 < batch_.size()) {
    ++index_;
  } else {
    fill();
  }
  return *this;
}

// The strong guarantee: the next batch is copied into a local vector and the iterator
// changes only once that succeeded. If a copy throws (an allocation fails part-way), the
// iterator still stands on the item it stood on, and a retried ++ copies the same batch
// again rather than returning the items copied before the failure a second time.
void ItemIterator::fill() {
  TableImpl& impl = table_->impl();
  std::vector<Item> batch;
  HomeCursor next{next_generation_, next_slot_};
  while (batch.empty()) {
    const std::optional<HomeCursor> after = impl.copy_items_batch(next, &batch);
    if (!after) {
      batch_.clear();
      index_ = 0;
      table_ = nullptr;  // the end
      return;
    }
    next = *after;
  }
  batch_.swap(batch);
  index_ = 0;
  next_generation_ = next.generation;
  next_slot_ = next.slot;
}

Stats Table::stats() { return impl().stats(); }

OperationCounters Table::counters() { return impl().engine().counters(); }

const std::string& Table::path() const {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "the table handle is closed");
  return impl_->path();
}

Engine Table::engine() const {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "the table handle is closed");
  return impl_->engine_kind();
}

void Table::close() noexcept { impl_.reset(); }

}  // namespace shmht
