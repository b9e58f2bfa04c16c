// shmht/table.hpp - a hash table in shared memory, used by many processes at once.
//
//   auto t = shmht::Table::create("users", {.capacity = 1'000'000});   // /dev/shm/users
//   t.assign("alice", "42");
//   std::optional<std::string> v = t.get("alice");                     // "42"
//
//   // another process:
//   auto u = shmht::Table::open("users");   // with the engine the table is used with
//
// Keys and values are byte strings (std::string_view). A Table handle belongs to one
// thread at a time (like a std container); threads that work concurrently each open
// their own handle, which is cheap. A handle must not be used in a child after fork():
// open the table again there (operations on an inherited handle throw kInvalidArgument).
//
// Errors are thrown as shmht::Error with an ErrorCode (shmht/error.hpp).
//
// Oversize arguments: a key longer than the table's max_key_bytes cannot be in the table,
// so lookups and removals (get, contains, erase, take, and compare_and_set with an
// expected value) report it absent; only an operation that would store it (insert,
// assign, add, compare_and_set that inserts) throws kKeyTooLarge. A value to store longer
// than max_value_bytes always throws kValueTooLarge (insert, assign, compare_and_set's
// desired), whatever the table holds; an expected value that long matches nothing.
#pragma once

#include <sys/types.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmht/engine.hpp"
#include "shmht/error.hpp"
#include "shmht/options.hpp"

namespace shmht {

// The free records of one size class: every record is rounded up to its class's size,
// and a freed record is reused only by a record of the same class.
struct FreeClass {
  std::uint64_t record_bytes;  // the class's size
  std::uint64_t records;       // free records of that size
};

struct Stats {
  std::string path;
  Engine engine;
  std::uint64_t capacity;        // items guaranteed to fit
  std::uint64_t slots;           // home slots of the current slot array (the load factor's denominator)
  std::uint64_t items;
  double load_factor;            // items / slots
  std::uint32_t max_key_bytes;
  std::uint32_t max_value_bytes;
  std::uint64_t max_bytes;       // the most the file may grow to (CreateOptions::max_bytes, page-rounded)
  std::uint32_t max_processes;   // attachment entries (CreateOptions::max_processes)
  std::uint64_t apparent_bytes;  // file size (ls -l)
  std::uint64_t resident_bytes;  // bytes the filesystem has allocated (du), i.e. in RAM on tmpfs
  std::uint64_t arena_bytes;     // arena handed out in chunks
  std::uint64_t live_record_bytes;
  std::uint64_t free_record_bytes;  // in free lists, ready for reuse
  std::vector<FreeClass> free_by_class;  // the classes with free records, smallest first
  std::vector<pid_t> attached_pids;
  // The file this handle has open (fstat of its own descriptor): what a name such as an
  // anonymous table's /proc/<pid>/fd/<n>, which any file may take over, named when opened.
  std::uint64_t file_device;
  std::uint64_t file_inode;
  // Growth (the slot array doubles when it fills; capacity is only the starting size):
  std::uint64_t slot_array_bytes;        // the current slot array's bytes (64-byte buckets)
  std::uint32_t growths;                 // doublings since create: the current array's generation
  bool migrating;                        // entries are moving from the previous array into the current one
  std::uint64_t migration_groups;        // home groups (old buckets) the migration moves; 0 when not migrating
  std::uint64_t migration_groups_moved;  // of those, already moved
};

// What this handle's operations cost in coordination (the lock-free engine counts; the
// lock engines report zeros): multi-word CASes that failed because another operation
// changed a word first (the operation then starts again), and operations of other
// processes this handle finished on their behalf.
struct OperationCounters {
  std::uint64_t failed_cas = 0;
  std::uint64_t helped = 0;
};

// ---- Counters (Table::add) -------------------------------------------------------
// A counter value is the decimal text of a std::int64_t, as Redis INCR stores it, so a
// number stored as text ("20261206") is a counter, and every process, language and the
// CLI read the same bytes: an optional '-', then digits; no '+', no spaces, no leading
// zeros ("0" itself excepted) and no "-0"; within [INT64_MIN, INT64_MAX]. At most 20
// bytes ("-9223372036854775808").
// (Counters used to be 8 binary bytes (a little-endian int64); such a value
// is now kNotACounter. The table layout is unchanged: values are opaque to it.)
inline constexpr std::size_t kMaxCounterBytes = 20;
// The value Table::add stores for `value`: its canonical decimal text.
std::string encode_counter(std::int64_t value);
// The number a counter value holds. Throws Error(kNotACounter) unless `bytes` is the
// canonical decimal text of an int64 (the message shows the value, escaped and cut short).
std::int64_t decode_counter(std::string_view bytes);

class TableImpl;
class ItemRange;

class Table {
 public:
  // Creates a new table. `name` is a bare name (/dev/shm/<name>) or an absolute path.
  // Fails with kAlreadyExists if it exists. The creator is attached with options.engine.
  static Table create(const std::string& name, const CreateOptions& options = {});
  // Opens an existing table, with its active engine unless options.engine says otherwise
  // (see OpenOptions).
  static Table open(const std::string& name, const OpenOptions& options = {});
  // Opens `name`, creating it with `create_options` if it does not exist.
  static Table open_or_create(const std::string& name, const CreateOptions& create_options = {});
  // A table backed by an anonymous memfd; path() names it for processes forked from this
  // one while this handle is open.
  static Table create_anonymous(const CreateOptions& options = {});
  // The engine the table was last opened with (what live attachments use).
  static Engine active_engine(const std::string& name);
  // Deletes the named table's file: false if there is none. Only a shmht table (its
  // magic is checked; any other file gives kInvalidArgument and stays). While live
  // processes are attached it throws kInUse naming their pids, unless options.force;
  // forced, they keep their mappings of the removed file and new openers get a new table.
  static bool remove(const std::string& name, const RemoveOptions& options = {});

  // ---- The same, naming the table by a std::filesystem::path --------------------------
  // (Templates so that a string literal still picks the std::string overloads above,
  // rather than being ambiguous between std::string and path.)
  template <std::same_as<std::filesystem::path> Path>
  static Table create(const Path& name, const CreateOptions& options = {}) { return create(name.string(), options); }
  template <std::same_as<std::filesystem::path> Path>
  static Table open(const Path& name, const OpenOptions& options = {}) { return open(name.string(), options); }
  template <std::same_as<std::filesystem::path> Path>
  static Table open_or_create(const Path& name, const CreateOptions& create_options = {}) {
    return open_or_create(name.string(), create_options);
  }
  template <std::same_as<std::filesystem::path> Path>
  static Engine active_engine(const Path& name) { return active_engine(name.string()); }
  template <std::same_as<std::filesystem::path> Path>
  static bool remove(const Path& name, const RemoveOptions& options = {}) { return remove(name.string(), options); }

  Table(Table&&) noexcept;
  Table& operator=(Table&&) noexcept;
  ~Table();

  // Value of `key`, or nullopt.
  std::optional<std::string> get(std::string_view key);
  // Copies the value into `out` if it fits and returns its length (copying nothing when
  // the length exceeds out.size(): retry with a larger buffer); nullopt if absent.
  std::optional<std::size_t> get(std::string_view key, std::span<char> out);
  bool contains(std::string_view key);
  // Looks up many keys in one call: out[i] is keys[i]'s value, or nullopt. Overlaps the
  // keys' cache misses (their buckets, then their records, are prefetched before any is
  // used; the global engine locks once per 16 keys), so per key it costs a fraction of
  // get(). Each answer is what a get() during the call could have returned; the batch
  // as a whole is not one atomic step.
  std::vector<std::optional<std::string>> get_many(std::span<const std::string_view> keys);
  // The same lookups without a std::string per value: found(i, value) is called for each
  // present keys[i], in key order; `value` is valid only during the call. No lock is held
  // while found runs: it may read and write this table (not close or move it). A key
  // absent gets no call.
  void get_many(std::span<const std::string_view> keys,
                const std::function<void(std::size_t index, std::string_view value)>& found);
  // Like get_many, without the values: out[i] is true if keys[i] is present.
  std::vector<bool> contains_many(std::span<const std::string_view> keys);
  // Inserts if absent. Returns false, changing nothing, if the key is present.
  bool insert(std::string_view key, std::string_view value);
  // Inserts or overwrites. Returns true if the key was new.
  bool assign(std::string_view key, std::string_view value);
  // Returns true if the key was present.
  bool erase(std::string_view key);
  std::uint64_t size();

  // ---- Atomic read-modify-write ---------------------------------------------------
  // Each call below is one linearizable operation on one key under every engine: no
  // write by another process or thread can fall between its read and its write.

  // Compares the key's value with `expected` and, only if they are equal, makes it
  // `desired`; returns whether it did. std::nullopt means "absent" on either side:
  //   expected nullopt, desired v:  insert v if the key is absent;
  //   expected e,       desired v:  overwrite with v if the value is e;
  //   expected e,       desired nullopt: erase if the value is e;
  //   expected nullopt, desired nullopt: change nothing; true if the key is absent.
  // Oversize arguments (see the top of this file): an oversize key is absent (false when
  // `expected` is set; kKeyTooLarge only when the call would insert it); an oversize
  // `desired` throws kValueTooLarge; an oversize `expected` equals no value (false).
  // When it returns false and `current` is given, *current receives the value that made
  // it fail (nullopt: the key was absent), read in the same atomic step, so a retry loop
  // needs no separate get (see add()). On a full table (kTableFull) nothing changes.
  bool compare_and_set(std::string_view key, std::optional<std::string_view> expected,
                       std::optional<std::string_view> desired, std::optional<std::string>* current = nullptr);

  // Erases the key and returns the value it erased, in one atomic step; nullopt (and
  // nothing changed) if it was absent. A write to the key by another process is either
  // before the take (its value is returned) or after it (it survives): never lost unseen.
  std::optional<std::string> take(std::string_view key);

  // Adds `delta` to the counter stored at `key` and returns the new value; an absent key
  // counts as 0 (so the first add stores delta). A counter value is the decimal text of
  // an int64 ("42", "-7"; see encode_counter above), as Redis INCRBY keeps it. A
  // compare_and_set retry loop: under contention some attempts fail and are repeated,
  // but every call adds exactly once.
  // Throws kNotACounter (changing nothing; the message names the key and shows its value)
  // if the key holds anything else, and kCounterOverflow (changing nothing) if the sum
  // leaves [INT64_MIN, INT64_MAX]: like Redis INCRBY, a counter never wraps around. A
  // read-only handle throws kPermissionDenied.
  std::int64_t add(std::string_view key, std::int64_t delta);

  // Removes some item and returns it, in one atomic take(): the pair returned is exactly
  // what this call removed. nullopt when a full lap of the table since this handle last
  // found an item finds none (an item present for the whole call is found). Amortised
  // O(1): the handle keeps a cursor over home slots and a batch of keys it has seen, and
  // resumes where it stopped, so draining n items from a table of s home slots scans
  // O(n + s) slots, not O(n * s). Several processes may take_any at once: each item goes
  // to exactly one of them. (Python's Table.popitem; a work queue's "take any job".)
  std::optional<std::pair<std::string, std::string>> take_any();

  // Calls fn(key, value) for every entry. Weakly consistent: a key present for the whole
  // iteration is seen exactly once; keys inserted or erased meanwhile may or may not be.
  // fn runs without any lock held and may call this table.
  void for_each(const std::function<void(std::string_view key, std::string_view value)>& fn);

  // The items as an input range, with for_each's guarantee (a key present for the whole
  // walk is seen exactly once), so that a loop can stop early:
  //   for (const auto& [key, value] : table.items()) if (key.starts_with("job:")) break;
  // It copies a batch of home slots' items at a time (as for_each does) and holds no lock
  // between batches: the loop body may read and write this table. The table must stay
  // open, and not be moved, while the range or an iterator of it is in use.
  ItemRange items();

  Stats stats();
  OperationCounters counters();
  const std::string& path() const;
  Engine engine() const;
  // Deletes the file this handle has open, if its name still names it (same device and
  // inode): false, deleting nothing, if the name is gone or now names another file.
  // Other attached processes are not asked: they keep their mappings, as this one does.
  bool unlink();
  // Detaches. Further calls throw kInvalidArgument. The destructor closes too.
  void close() noexcept;

 private:
  friend struct TableAccess;  // internal: the checker and tests reach the engine
  friend class ItemIterator;  // copies batches of items (Table::items)
  explicit Table(std::unique_ptr<TableImpl> impl) noexcept;
  TableImpl& impl();
  std::unique_ptr<TableImpl> impl_;
};

// ---- Table::items(): iteration as a range ----------------------------------------------

using Item = std::pair<std::string, std::string>;  // (key, value)

// An input iterator over a table's items; it compares equal to std::default_sentinel at
// the end. Each item is a copy: it stays valid until the iterator moves on.
class ItemIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Item;
  using difference_type = std::ptrdiff_t;
  using reference = const Item&;
  using pointer = const Item*;

  ItemIterator() = default;  // the end
  reference operator*() const { return batch_[index_]; }
  pointer operator->() const { return &batch_[index_]; }
  ItemIterator& operator++();
  void operator++(int) { ++*this; }
  friend bool operator==(const ItemIterator& it, std::default_sentinel_t) noexcept { return it.table_ == nullptr; }

 private:
  friend class ItemRange;
  explicit ItemIterator(Table* table);
  // Copies the next batches of home slots until one holds an item, or the table ends.
  void fill();

  Table* table_ = nullptr;       // nullptr at the end
  std::uint64_t next_slot_ = 0;  // the first home slot of the next batch,
  std::uint32_t next_generation_ = 0;  // in the slot array of this generation (the table grows)
  std::vector<Item> batch_;
  std::size_t index_ = 0;
};

class ItemRange {
 public:
  explicit ItemRange(Table* table) noexcept : table_(table) {}
  // Each begin() starts a new walk.
  ItemIterator begin() { return ItemIterator(table_); }
  std::default_sentinel_t end() const noexcept { return std::default_sentinel; }

 private:
  Table* table_;
};

}  // namespace shmht
