// c_api/shmht_c.cpp - include/shmht.h over shmht::Table.
//
// Every entry point runs its body through `guarded`, which turns whatever the C++ side
// throws into a result code and this thread's last-error message: no exception crosses
// into C. A NULL handle, key or out-parameter is checked before anything is touched.
#include "shmht.h"

#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmht/table.hpp"

struct shmht_iter;

struct shmht_table {
  shmht::Table table;
  std::optional<shmht::Item> taken;  // what shmht_take_any returned last: its bytes are the caller's until the next call
  bool read_only = false;            // opened with SHMHT_OPEN_READ_ONLY: every write is refused up front
  shmht_iter* iterators = nullptr;   // the open iterators, so that shmht_close can detach them
};

// An iterator reads through its table's mapping, so it must not outlive the handle:
// shmht_close detaches every open iterator (table = nullptr) and shmht_iter_next then
// reports the misuse instead of reading unmapped memory. The list is intrusive so that
// linking and unlinking never allocate (a handle belongs to one thread at a time).
struct shmht_iter {
  shmht::ItemIterator position;  // the item shmht_iter_next returned last, once `started`
  bool started = false;
  shmht_table* table = nullptr;  // nullptr once the table was closed
  shmht_iter* prev = nullptr;
  shmht_iter* next = nullptr;
};

namespace {

// SHMHT_ENGINE_* are shmht::Engine's values, so that they convert with a cast both ways.
static_assert(SHMHT_ENGINE_GLOBAL == static_cast<int>(shmht::Engine::kGlobalLock), "C and C++ engine numbers differ");
static_assert(SHMHT_ENGINE_STRIPED == static_cast<int>(shmht::Engine::kStripedRwLock), "C and C++ engine numbers differ");
static_assert(SHMHT_ENGINE_SEQLOCK == static_cast<int>(shmht::Engine::kSeqlock), "C and C++ engine numbers differ");
static_assert(SHMHT_ENGINE_LOCKFREE == static_cast<int>(shmht::Engine::kLockFreeRobinHood), "C and C++ engine numbers differ");

// ---- Errors ------------------------------------------------------------------------------

// The message of this thread's last error. Assigning it may itself fail to allocate; then
// a fixed sentence stands in, so that reporting an error never throws.
thread_local std::string t_last_error;
thread_local const char* t_last_error_fallback = nullptr;

int fail(int code, const char* message) noexcept {
  try {
    t_last_error = message;
    t_last_error_fallback = nullptr;
  } catch (...) {
    t_last_error_fallback = "out of memory while recording the error message";
  }
  return code;
}

int fail(int code, const std::string& message) noexcept { return fail(code, message.c_str()); }

int code_of(shmht::ErrorCode code) noexcept {
  using shmht::ErrorCode;
  switch (code) {  // no default: a new ErrorCode gets a compiler warning here
    case ErrorCode::kKeyTooLarge: return SHMHT_KEY_TOO_LARGE;
    case ErrorCode::kValueTooLarge: return SHMHT_VALUE_TOO_LARGE;
    case ErrorCode::kTableFull: return SHMHT_TABLE_FULL;
    case ErrorCode::kNoSpace: return SHMHT_NO_SPACE;
    case ErrorCode::kCorrupt: return SHMHT_CORRUPT;
    case ErrorCode::kVersionMismatch: return SHMHT_VERSION_MISMATCH;
    case ErrorCode::kEngineMismatch: return SHMHT_ENGINE_MISMATCH;
    case ErrorCode::kEngineUnavailable: return SHMHT_ENGINE_UNAVAILABLE;
    case ErrorCode::kPermissionDenied: return SHMHT_PERMISSION_DENIED;
    case ErrorCode::kNotFound: return SHMHT_NO_SUCH_TABLE;
    case ErrorCode::kAlreadyExists: return SHMHT_ALREADY_EXISTS;
    case ErrorCode::kTooManyProcesses: return SHMHT_TOO_MANY_PROCESSES;
    case ErrorCode::kInUse: return SHMHT_IN_USE;
    case ErrorCode::kInvalidArgument: return SHMHT_INVALID_ARGUMENT;
    case ErrorCode::kSystem: return SHMHT_SYSTEM;
    case ErrorCode::kNotACounter: return SHMHT_NOT_A_COUNTER;
    case ErrorCode::kCounterOverflow: return SHMHT_COUNTER_OVERFLOW;
  }
  return SHMHT_INTERNAL;
}

// Runs body() (which returns a result code) and maps every exception to a code.
template <typename Body>
int guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const shmht::Error& e) {
    return fail(code_of(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(SHMHT_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(SHMHT_INTERNAL, std::string("unexpected error: ") + e.what());
  } catch (...) {
    return fail(SHMHT_INTERNAL, "unexpected error of unknown type");
  }
}

// ---- Arguments ---------------------------------------------------------------------------

void require(bool ok, const char* what) {
  if (!ok) throw shmht::Error(shmht::ErrorCode::kInvalidArgument, what);
}

// A (pointer, length) byte string: NULL only with length 0.
std::string_view bytes(const void* data, size_t length, const char* what) {
  if (data == nullptr) {
    if (length != 0) throw shmht::Error(shmht::ErrorCode::kInvalidArgument, std::string(what) + " is NULL with a length of " + std::to_string(length));
    return {};
  }
  return {static_cast<const char*>(data), length};
}

// A (pointer, length) where NULL means "absent" (shmht_cas).
std::optional<std::string_view> optional_bytes(const void* data, size_t length) {
  if (data == nullptr) return std::nullopt;
  return std::string_view(static_cast<const char*>(data), length);
}

shmht::Table& table_of(shmht_table* t) {
  require(t != nullptr, "the table handle is NULL");
  return t->table;
}

// The table of a handle that a write goes through. A read-only handle is refused here,
// before the key is looked at, so that a write's answer does not depend on whether the
// key exists (shmht_take would otherwise read the value into the caller's buffer first).
shmht::Table& writable_table_of(shmht_table* t, const char* function) {
  shmht::Table& table = table_of(t);
  if (t->read_only) {
    throw shmht::Error(shmht::ErrorCode::kPermissionDenied, std::string(function) + ": this table handle was opened read-only");
  }
  return table;
}

void link_iterator(shmht_table* t, shmht_iter* it) noexcept {
  it->table = t;
  it->prev = nullptr;
  it->next = t->iterators;
  if (t->iterators != nullptr) t->iterators->prev = it;
  t->iterators = it;
}

void unlink_iterator(shmht_iter* it) noexcept {
  if (it->table == nullptr) return;  // its table was closed: already detached
  if (it->prev != nullptr) it->prev->next = it->next;
  else it->table->iterators = it->next;
  if (it->next != nullptr) it->next->prev = it->prev;
  it->table = nullptr;
  it->prev = it->next = nullptr;
}

std::optional<shmht::Engine> engine_of(uint32_t engine) {
  if (engine == SHMHT_ENGINE_ACTIVE) return std::nullopt;
  for (const shmht::Engine e : shmht::kAllEngines) {
    if (static_cast<uint32_t>(e) == engine) return e;
  }
  throw shmht::Error(shmht::ErrorCode::kInvalidArgument,
                     "engine " + std::to_string(engine) + " is not one of SHMHT_ENGINE_ACTIVE (0), GLOBAL (1), STRIPED (2), SEQLOCK (3), LOCKFREE (4)");
}

// The caller's options over the defaults: only the first struct_size bytes are the
// caller's (a program built against an older, shorter shmht_options).
shmht_options read_options(const shmht_options* opts) {
  shmht_options merged;
  shmht_options_init(&merged);
  if (opts == nullptr) return merged;
  const size_t size = opts->struct_size;
  if (size < offsetof(shmht_options, flags) + sizeof opts->flags || size > sizeof(shmht_options)) {
    throw shmht::Error(shmht::ErrorCode::kInvalidArgument,
                       "shmht_options.struct_size is " + std::to_string(size) + "; this library's is " + std::to_string(sizeof(shmht_options)) +
                           " (fill the options with shmht_options_init first)");
  }
  std::memcpy(&merged, opts, size);
  return merged;
}

constexpr uint32_t kKnownFlags = SHMHT_OPEN_CREATE | SHMHT_OPEN_EXCL | SHMHT_OPEN_READ_ONLY | SHMHT_OPEN_TRUST_FOREIGN_OWNER;

shmht::Table open_table(const std::string& name, const shmht_options& o) {
  if ((o.flags & ~kKnownFlags) != 0) throw shmht::Error(shmht::ErrorCode::kInvalidArgument, "shmht_options.flags has unknown bits " + std::to_string(o.flags & ~kKnownFlags));
  const bool read_only = (o.flags & SHMHT_OPEN_READ_ONLY) != 0;
  const bool create = (o.flags & (SHMHT_OPEN_CREATE | SHMHT_OPEN_EXCL)) != 0;
  if (read_only && create) throw shmht::Error(shmht::ErrorCode::kInvalidArgument, "SHMHT_OPEN_READ_ONLY cannot be combined with SHMHT_OPEN_CREATE or SHMHT_OPEN_EXCL");
  const std::optional<shmht::Engine> engine = engine_of(o.engine);
  if (!create) {
    return shmht::Table::open(name, {.engine = engine, .stripes = o.stripes, .read_only = read_only,
                                     .trust_foreign_owner = (o.flags & SHMHT_OPEN_TRUST_FOREIGN_OWNER) != 0});
  }
  const shmht::CreateOptions create_options{
      .capacity = o.capacity, .max_key_bytes = o.max_key_bytes, .max_value_bytes = o.max_value_bytes,
      .max_bytes = o.max_bytes, .max_processes = o.max_processes, .mode = static_cast<mode_t>(o.mode),
      .engine = engine.value_or(shmht::kDefaultEngine), .stripes = o.stripes};
  if ((o.flags & SHMHT_OPEN_EXCL) != 0) return shmht::Table::create(name, create_options);
  // Open first (with the given engine, or the active one), so that
  // SHMHT_OPEN_TRUST_FOREIGN_OWNER applies: CreateOptions cannot carry it. Create only if
  // missing; open_or_create then handles a creator racing this one.
  try {
    return shmht::Table::open(name, {.engine = engine, .stripes = o.stripes, .trust_foreign_owner = (o.flags & SHMHT_OPEN_TRUST_FOREIGN_OWNER) != 0});
  } catch (const shmht::Error& e) {
    if (e.code() != shmht::ErrorCode::kNotFound) throw;
  }
  return shmht::Table::open_or_create(name, create_options);
}

int unlink_table(const char* name, bool force) {
  return guarded([&]() -> int {
    require(name != nullptr, "the table name is NULL");
    if (!shmht::Table::remove(name, {.force = force})) return fail(SHMHT_NO_SUCH_TABLE, std::string("no table named ") + name);
    return SHMHT_OK;
  });
}

}  // namespace

// ---- The API -----------------------------------------------------------------------------

extern "C" {

const char* shmht_strerror(int code) {
  switch (code) {
    case SHMHT_OK: return "success";
    case SHMHT_NOT_FOUND: return "key absent";
    case SHMHT_KEY_EXISTS: return "key already present";
    case SHMHT_CAS_MISMATCH: return "value differs from the expected one";
    case SHMHT_END: return "no more items";
    case SHMHT_KEY_TOO_LARGE: return "key too large for this table";
    case SHMHT_VALUE_TOO_LARGE: return "value too large for this table";
    case SHMHT_TABLE_FULL: return "table full";
    case SHMHT_NO_SPACE: return "no space left on the filesystem holding the table";
    case SHMHT_CORRUPT: return "table corrupt";
    case SHMHT_VERSION_MISMATCH: return "table written by an incompatible version";
    case SHMHT_ENGINE_MISMATCH: return "table in use with another engine";
    case SHMHT_ENGINE_UNAVAILABLE: return "engine not available in this build";
    case SHMHT_PERMISSION_DENIED: return "permission denied";
    case SHMHT_NO_SUCH_TABLE: return "no table of that name";
    case SHMHT_ALREADY_EXISTS: return "table already exists";
    case SHMHT_TOO_MANY_PROCESSES: return "too many processes attached";
    case SHMHT_IN_USE: return "table in use";
    case SHMHT_INVALID_ARGUMENT: return "invalid argument";
    case SHMHT_SYSTEM: return "system error";
    case SHMHT_NOT_A_COUNTER: return "value is not a counter";
    case SHMHT_COUNTER_OVERFLOW: return "counter overflow";
    case SHMHT_BUFFER_TOO_SMALL: return "buffer too small for the value";
    case SHMHT_OUT_OF_MEMORY: return "out of memory";
    case SHMHT_INTERNAL: return "internal error";
    default: return "unknown shmht result code";
  }
}

const char* shmht_last_error(void) {
  return t_last_error_fallback != nullptr ? t_last_error_fallback : t_last_error.c_str();
}

void shmht_options_init(shmht_options* opts) {
  if (opts == nullptr) return;
  const shmht::CreateOptions defaults;
  *opts = shmht_options{};
  opts->struct_size = sizeof(shmht_options);
  opts->flags = SHMHT_OPEN_CREATE;
  opts->engine = SHMHT_ENGINE_ACTIVE;
  opts->capacity = defaults.capacity;
  opts->max_key_bytes = defaults.max_key_bytes;
  opts->max_value_bytes = defaults.max_value_bytes;
  opts->max_bytes = defaults.max_bytes;
  opts->max_processes = defaults.max_processes;
  opts->mode = static_cast<uint32_t>(defaults.mode);
  opts->stripes = defaults.stripes;
}

int shmht_open(const char* name, const shmht_options* opts, shmht_table** out) {
  if (out != nullptr) *out = nullptr;
  return guarded([&]() -> int {
    require(out != nullptr, "shmht_open: out is NULL");
    require(name != nullptr, "shmht_open: the table name is NULL");
    const shmht_options options = read_options(opts);
    shmht::Table table = open_table(name, options);
    // Should this allocation fail, `table` closes as the exception leaves: no attachment
    // is left behind without a handle.
    auto* handle = new shmht_table{std::move(table), std::nullopt, (options.flags & SHMHT_OPEN_READ_ONLY) != 0, nullptr};
    *out = handle;
    return SHMHT_OK;
  });
}

void shmht_close(shmht_table* t) {
  if (t == nullptr) return;
  while (t->iterators != nullptr) unlink_iterator(t->iterators);
  delete t;
}

int shmht_unlink(const char* name) { return unlink_table(name, false); }

int shmht_unlink_force(const char* name) { return unlink_table(name, true); }

int shmht_put(shmht_table* t, const void* key, size_t klen, const void* value, size_t vlen) {
  return guarded([&]() -> int {
    writable_table_of(t, "shmht_put").assign(bytes(key, klen, "key"), bytes(value, vlen, "value"));
    return SHMHT_OK;
  });
}

int shmht_insert(shmht_table* t, const void* key, size_t klen, const void* value, size_t vlen) {
  return guarded([&]() -> int {
    return writable_table_of(t, "shmht_insert").insert(bytes(key, klen, "key"), bytes(value, vlen, "value")) ? SHMHT_OK : SHMHT_KEY_EXISTS;
  });
}

int shmht_get(shmht_table* t, const void* key, size_t klen, void* buf, size_t cap, size_t* vlen) {
  return guarded([&]() -> int {
    shmht::Table& table = table_of(t);
    require(vlen != nullptr, "shmht_get: vlen is NULL");
    require(buf != nullptr || cap == 0, "shmht_get: buf is NULL with a capacity above 0");
    const std::optional<size_t> length = table.get(bytes(key, klen, "key"), std::span<char>(static_cast<char*>(buf), cap));
    if (!length) return SHMHT_NOT_FOUND;
    *vlen = *length;
    if (*length > cap) {
      return fail(SHMHT_BUFFER_TOO_SMALL, "the value is " + std::to_string(*length) + " bytes; the buffer holds " + std::to_string(cap));
    }
    return SHMHT_OK;
  });
}

int shmht_del(shmht_table* t, const void* key, size_t klen) {
  return guarded([&]() -> int { return writable_table_of(t, "shmht_del").erase(bytes(key, klen, "key")) ? SHMHT_OK : SHMHT_NOT_FOUND; });
}

// A take that cannot drop the value: read it into the caller's buffer, then erase the key
// only if it still holds exactly those bytes (compare_and_set). If another process
// changed the value in between, read again. A value longer than the buffer is reported
// before anything is erased.
int shmht_take(shmht_table* t, const void* key, size_t klen, void* buf, size_t cap, size_t* vlen) {
  return guarded([&]() -> int {
    shmht::Table& table = writable_table_of(t, "shmht_take");
    require(vlen != nullptr, "shmht_take: vlen is NULL");
    require(buf != nullptr || cap == 0, "shmht_take: buf is NULL with a capacity above 0");
    const std::string_view k = bytes(key, klen, "key");
    char* out = static_cast<char*>(buf);
    for (;;) {
      const std::optional<size_t> length = table.get(k, std::span<char>(out, cap));
      if (!length) return SHMHT_NOT_FOUND;
      *vlen = *length;
      if (*length > cap) {
        return fail(SHMHT_BUFFER_TOO_SMALL, "the value is " + std::to_string(*length) + " bytes; the buffer holds " + std::to_string(cap) + "; nothing was taken");
      }
      if (table.compare_and_set(k, std::string_view(out, *length), std::nullopt)) return SHMHT_OK;
    }
  });
}

int shmht_take_any(shmht_table* t, const void** key, size_t* klen, const void** value, size_t* vlen) {
  return guarded([&]() -> int {
    require(t != nullptr, "shmht_take_any: the table handle is NULL");
    writable_table_of(t, "shmht_take_any");
    require(key != nullptr && klen != nullptr && value != nullptr && vlen != nullptr,
            "shmht_take_any: an out-parameter is NULL");
    t->taken.reset();  // the previous item's bytes were the caller's until this call
    std::optional<shmht::Item> item = t->table.take_any();
    if (!item) return SHMHT_NOT_FOUND;
    // Moving the taken strings into the handle cannot fail, so the item is never dropped
    // between being erased and being handed over.
    t->taken = std::move(item);
    *key = t->taken->first.data();
    *klen = t->taken->first.size();
    *value = t->taken->second.data();
    *vlen = t->taken->second.size();
    return SHMHT_OK;
  });
}

int shmht_add(shmht_table* t, const void* key, size_t klen, int64_t delta, int64_t* result) {
  return guarded([&]() -> int {
    const std::int64_t sum = writable_table_of(t, "shmht_add").add(bytes(key, klen, "key"), delta);
    if (result != nullptr) *result = sum;
    return SHMHT_OK;
  });
}

int shmht_cas(shmht_table* t, const void* key, size_t klen, const void* expected, size_t elen, const void* desired, size_t dlen) {
  return guarded([&]() -> int {
    return writable_table_of(t, "shmht_cas").compare_and_set(bytes(key, klen, "key"), optional_bytes(expected, elen), optional_bytes(desired, dlen))
               ? SHMHT_OK
               : SHMHT_CAS_MISMATCH;
  });
}

int shmht_size(shmht_table* t, uint64_t* out) {
  return guarded([&]() -> int {
    shmht::Table& table = table_of(t);
    require(out != nullptr, "shmht_size: out is NULL");
    *out = table.size();
    return SHMHT_OK;
  });
}

int shmht_stats_get(shmht_table* t, shmht_stats* out) {
  return guarded([&]() -> int {
    shmht::Table& table = table_of(t);
    require(out != nullptr, "shmht_stats_get: out is NULL");
    if (out->struct_size < offsetof(shmht_stats, engine) + sizeof out->engine || out->struct_size > sizeof(shmht_stats)) {
      throw shmht::Error(shmht::ErrorCode::kInvalidArgument, "shmht_stats.struct_size is " + std::to_string(out->struct_size) +
                                                                 "; set it to sizeof(shmht_stats) (" + std::to_string(sizeof(shmht_stats)) + ")");
    }
    const shmht::Stats s = table.stats();
    shmht_stats full{};
    full.struct_size = out->struct_size;
    full.engine = static_cast<uint32_t>(table.engine());
    full.max_key_bytes = s.max_key_bytes;
    full.max_value_bytes = s.max_value_bytes;
    full.max_processes = s.max_processes;
    full.capacity = s.capacity;
    full.items = s.items;
    full.resident_bytes = s.resident_bytes;
    full.slot_array_bytes = s.slot_array_bytes;
    full.growths = s.growths;
    full.migrating = s.migrating ? 1 : 0;
    std::memcpy(out, &full, out->struct_size);  // only the fields the caller's struct has
    return SHMHT_OK;
  });
}

int shmht_iter_open(shmht_table* t, shmht_iter** out) {
  if (out != nullptr) *out = nullptr;
  return guarded([&]() -> int {
    shmht::Table& table = table_of(t);
    require(out != nullptr, "shmht_iter_open: out is NULL");
    auto* it = new shmht_iter{table.items().begin()};
    link_iterator(t, it);
    *out = it;
    return SHMHT_OK;
  });
}

int shmht_iter_next(shmht_iter* it, const void** key, size_t* klen, const void** value, size_t* vlen) {
  return guarded([&]() -> int {
    require(it != nullptr, "shmht_iter_next: the iterator is NULL");
    require(it->table != nullptr, "shmht_iter_next: its table was closed (shmht_close); close the iterator with shmht_iter_close");
    require(key != nullptr && klen != nullptr && value != nullptr && vlen != nullptr, "shmht_iter_next: an out-parameter is NULL");
    // Step past the item returned last only now, so that its copies stayed valid until
    // this call (the step may copy the next batch over them).
    if (it->started && it->position != std::default_sentinel) ++it->position;
    it->started = true;
    if (it->position == std::default_sentinel) return SHMHT_END;
    const shmht::Item& item = *it->position;
    *key = item.first.data();
    *klen = item.first.size();
    *value = item.second.data();
    *vlen = item.second.size();
    return SHMHT_OK;
  });
}

void shmht_iter_close(shmht_iter* it) {
  if (it == nullptr) return;
  unlink_iterator(it);
  delete it;
}

}  // extern "C"
