// table_object.cpp - see table_object.hpp for the design.
#include "table_object.hpp"

#include <pthread.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "prefetch.hpp"
#include "shmht/table.hpp"

namespace shmht::python {
namespace {

// ---------------------------------------------------------------------------------------
// Fork detection

// Bumped in the child after every fork(); an object remembers the value it opened under.
std::atomic<std::uint64_t> g_fork_generation{0};

void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

std::uint64_t fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------
// Small RAII helpers

// Owns one Python reference.
class PyRef {
 public:
  explicit PyRef(PyObject* object = nullptr) noexcept : object_(object) {}
  PyRef(PyRef&& other) noexcept : object_(other.release()) {}
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Py_XDECREF(object_); }
  PyObject* get() const noexcept { return object_; }
  PyObject* release() noexcept { return std::exchange(object_, nullptr); }
  explicit operator bool() const noexcept { return object_ != nullptr; }

 private:
  PyObject* object_;
};

// The bytes of a key or value argument: bytes (used in place), str (its cached UTF-8
// form, also in place) or any object exporting a simple buffer (bytearray, memoryview).
class BytesArg {
 public:
  BytesArg() = default;
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  ~BytesArg() {
    if (has_buffer_) PyBuffer_Release(&buffer_);
  }

  // False with a Python error (TypeError, UnicodeEncodeError) set.
  bool parse(PyObject* object, const char* what) {
    if (PyBytes_Check(object)) [[likely]] {
      view_ = {PyBytes_AS_STRING(object), static_cast<std::size_t>(PyBytes_GET_SIZE(object))};
      return true;
    }
    if (PyUnicode_Check(object)) {
      Py_ssize_t size = 0;
      const char* data = PyUnicode_AsUTF8AndSize(object, &size);
      if (data == nullptr) return false;
      view_ = {data, static_cast<std::size_t>(size)};
      return true;
    }
    if (PyObject_CheckBuffer(object)) {
      if (PyObject_GetBuffer(object, &buffer_, PyBUF_SIMPLE) < 0) return false;
      has_buffer_ = true;
      view_ = {static_cast<const char*>(buffer_.buf), static_cast<std::size_t>(buffer_.len)};
      return true;
    }
    PyErr_Format(PyExc_TypeError,
                 "shmht.Table %s must be bytes, str (stored as UTF-8), bytearray or memoryview (any object with "
                 "the buffer protocol), not %.200s",
                 what, Py_TYPE(object)->tp_name);
    return false;
  }

  std::string_view view() const noexcept { return view_; }

 private:
  std::string_view view_;
  Py_buffer buffer_{};
  bool has_buffer_ = false;
};

// Many keys or values for a batch call, readable without the GIL: bytes and str are
// viewed in place, each kept alive by a strong reference the batch holds (the caller's
// list is no guarantee: while the GIL is released another thread may clear or mutate it,
// freeing the objects), anything else is copied. Destroy it with the GIL held.
class BytesBatch {
 public:
  bool add(PyObject* object, const char* what) {
    BytesArg arg;
    if (!arg.parse(object, what)) return false;
    if (PyBytes_Check(object) || PyUnicode_Check(object)) {
      owned_.emplace_back(Py_NewRef(object));
      views_.push_back(arg.view());
    } else {
      copies_.emplace_back(arg.view());  // a buffer export ends with `arg`: keep a copy
      views_.push_back(copies_.back());
    }
    return true;
  }
  std::size_t size() const noexcept { return views_.size(); }
  std::string_view operator[](std::size_t i) const noexcept { return views_[i]; }
  std::span<const std::string_view> views() const noexcept { return views_; }

 private:
  std::vector<std::string_view> views_;
  std::vector<PyRef> owned_;        // the bytes and str objects viewed in place
  std::deque<std::string> copies_;  // deque: growing it does not move earlier strings
};

PyObject* bytes_from(std::string_view bytes) {
  return PyBytes_FromStringAndSize(bytes.data(), static_cast<Py_ssize_t>(bytes.size()));
}

// ---------------------------------------------------------------------------------------
// Shared attachments
//
// Every unpickled copy of a Table (multiprocessing sends one per task) used to attach
// again, holding one of the table's max_processes entries each until it was collected:
// a pool worker ran out of entries and Pool.map hung (issue 21). Now copies share one
// attachment per process and (path, engine, read_only, trust_foreign_owner): a
// SharedHandle, reference-counted by the Table objects using it, detached when the last
// of them closes. Table(...) itself opens a handle of its own (two Tables opened
// explicitly are two attachments, as before) and offers it to later copies.
//
// Everything here runs with the GIL held, which also serialises the single operations of
// threads on one shared shmht::Table (a C++ handle is single-threaded). Batch calls that
// release the GIL mark the handle `busy` and hold its mutex, and every other user of the
// handle, whichever Table object it comes through, waits for them (run_batch).

struct HandleKey {
  std::string path;  // resolved (Table::path())
  shmht::Engine engine;
  bool read_only;
  bool trust_foreign_owner;
  auto operator<=>(const HandleKey&) const = default;
};

// A file's identity: what a name named when it was opened. A name may come to name
// another file: a table removed and created again, and above all an anonymous table's
// /proc/<pid>/fd/<n>, which the next file its creator opens may take over.
struct FileId {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  bool operator==(const FileId&) const = default;
};

// The file `path` names now; nullopt if it names none (or cannot be looked up).
std::optional<FileId> file_named(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// The file `table` has open (fstat of its own descriptor, through stats(): tens of
// microseconds, so only for anonymous tables, whose name is the least stable). Throws
// shmht::Error.
FileId file_of(shmht::Table& table) {
  const shmht::Stats s = table.stats();
  return {s.file_device, s.file_inode};
}

struct SharedHandle {
  shmht::Table table;
  HandleKey key;
  std::uint64_t generation;  // fork generation it was opened under
  // The file `table` has open: for an anonymous table, fstat of its descriptor; for a
  // named one, what its path named just after opening (nullopt if that failed).
  std::optional<FileId> file;
  long refs = 1;             // Table objects using it
  bool busy = false;         // a batch call is using `table` with the GIL released
  unsigned long busy_thread = 0;  // the thread running that batch (PyThread_get_thread_ident)
  // Held by that batch call. Shared so that a waiter keeps it alive while a closing
  // thread drops the handle.
  std::shared_ptr<std::mutex> batch_mutex = std::make_shared<std::mutex>();
  // A forked child re-opens an anonymous table through a duplicate of the descriptor it
  // inherited, which `key.path` (/proc/<child>/fd/<kept_fd>) names: kept open while the
  // handle lives, so that copies the child pickles can attach. -1 if none.
  int kept_fd = -1;
  ~SharedHandle() {
    if (kept_fd >= 0) ::close(kept_fd);
  }
};

// The handles that later copies may share, for the current fork generation only: a
// child starts with an empty registry (the inherited handles belong to the parent).
struct Registry {
  std::map<HandleKey, SharedHandle*> handles;
  std::uint64_t generation = 0;
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: handles may outlive module teardown
  if (r->generation != fork_generation()) {
    r->handles.clear();  // forgets the parent's handles; their objects release them
    r->generation = fork_generation();
  }
  return *r;
}

// True if `h` has open the file its path names now (not one the name named before).
bool same_file(const SharedHandle& h) { return h.file && file_named(h.key.path) == h.file; }

// Offers `h` to later copies, unless an equivalent handle is offered already.
void register_handle(SharedHandle* h) {
  Registry& r = registry();
  const auto it = r.handles.find(h->key);
  if (it == r.handles.end() || !same_file(*it->second)) r.handles[h->key] = h;
}

// A handle equivalent to `key` that this process has open, with one more reference;
// nullptr if there is none. Equivalent means the same engine and flags and the same file:
// `file` if given (an anonymous table, whatever path this process knows it by), else the
// file `key.path` names now. Never by path alone: the path may name another file now.
SharedHandle* find_shared(const HandleKey& key, const std::optional<FileId>& file = std::nullopt) {
  Registry& r = registry();
  SharedHandle* found = nullptr;
  if (file) {
    for (const auto& [k, h] : r.handles) {
      if (h->file == file && k.engine == key.engine && k.read_only == key.read_only &&
          k.trust_foreign_owner == key.trust_foreign_owner) {
        found = h;
        break;
      }
    }
  } else if (const auto it = r.handles.find(key); it != r.handles.end() && same_file(*it->second)) {
    found = it->second;
  }
  if (found != nullptr) ++found->refs;
  return found;
}

// Drops one reference; the last detaches (in a forked child, an inherited handle is
// deleted without detaching, as Table's destructor does by itself).
void release(SharedHandle* h) {
  if (h == nullptr || --h->refs > 0) return;
  const bool inherited = h->generation != fork_generation();
  if (!inherited) {
    Registry& r = registry();
    const auto it = r.handles.find(h->key);
    if (it != r.handles.end() && it->second == h) r.handles.erase(it);
  } else {
    // The inherited mutex may be held by a parent thread that does not exist here: leak
    // it (a few bytes per fork) rather than destroy a locked mutex.
    new std::shared_ptr<std::mutex>(std::move(h->batch_mutex));
  }
  delete h;
}

// ---------------------------------------------------------------------------------------
// The object

extern PyTypeObject g_table_type;  // _TableBase, defined with its slots at the end

struct TableObject {
  PyObject_HEAD
  SharedHandle* handle;     // nullptr before _attach, after close(), or after a failed re-open
  std::string* path;        // resolved path, to re-open after fork; nullptr before _attach
  // An anonymous table (Table.temporary, or a copy of one): the file it is, which every
  // re-open checks, since its /proc/<pid>/fd/<n> path may come to name any other file.
  FileId* temporary_file;  // nullptr for a named table
  shmht::Engine engine;     // the engine the handle uses (re-opened with it after fork)
  bool read_only;           // opened with OpenOptions::read_only
  bool trust_foreign_owner; // opened with OpenOptions::trust_foreign_owner (kept for re-opens)
  bool closed;              // close() was called
};

TableObject* as_table(PyObject* object) { return reinterpret_cast<TableObject*>(object); }

PyObject* set_closed_error() {
  PyErr_SetString(PyExc_ValueError, "operation on a closed shmht.Table");
  return nullptr;
}

shmht::OpenOptions open_options(std::optional<shmht::Engine> engine, bool read_only, bool trust_foreign_owner) {
  return {.engine = engine, .read_only = read_only, .trust_foreign_owner = trust_foreign_owner};
}

// Table::open_or_create, except that a table that exists is opened with `open` (whose
// trust_foreign_owner open_or_create cannot pass on).
shmht::Table open_trusted_or_create(const char* name, const shmht::OpenOptions& open, const shmht::CreateOptions& create) {
  if (open.trust_foreign_owner) {
    try {
      return shmht::Table::open(name, open);
    } catch (const shmht::Error& e) {
      if (e.code() != shmht::ErrorCode::kNotFound) throw;
    }
  }
  return shmht::Table::open_or_create(name, create);
}

// A new handle around `table`, offered to later copies; throws like new. `file`: the
// file it has open, if known (else what its path names now).
SharedHandle* adopt(shmht::Table table, bool read_only, bool trust_foreign_owner, std::optional<FileId> file = std::nullopt,
                    int kept_fd = -1) {
  HandleKey key{table.path(), table.engine(), read_only, trust_foreign_owner};
  if (!file) file = file_named(key.path);
  auto* h = new SharedHandle{std::move(table), std::move(key), fork_generation(), file};
  h->kept_fd = kept_fd;
  register_handle(h);
  return h;
}

// The error for an anonymous table that `path` no longer names (review R-api F1-F4).
[[noreturn]] void throw_temporary_gone(const std::string& path) {
  throw shmht::Error(shmht::ErrorCode::kNotFound,
                     "the temporary table " + path + " was closed by its creator (or the creator exited): that name "
                     "now names another file or none. A temporary table can be attached only while its creator keeps "
                     "it open, and only from the creator's PID namespace");
}

// The handle for `key`: one this process has open already, else a new attachment.
// `file`: the anonymous table the handle must be (checked before and after opening, so
// that a reused /proc/<pid>/fd/<n> never attaches to another file). `kept_fd`: see
// SharedHandle; the new handle owns it (closed here if no handle is made).
// Throws shmht::Error.
SharedHandle* shared_or_open(const HandleKey& key, const std::optional<FileId>& file = std::nullopt, int kept_fd = -1) {
  struct KeptFd {
    int fd;
    ~KeptFd() {
      if (fd >= 0) ::close(fd);
    }
  } kept{kept_fd};
  if (SharedHandle* h = find_shared(key, file)) return h;
  if (file && file_named(key.path) != file) throw_temporary_gone(key.path);
  shmht::Table table = shmht::Table::open(key.path, open_options(key.engine, key.read_only, key.trust_foreign_owner));
  if (file && file_of(table) != *file) throw_temporary_gone(key.path);  // replaced between the two looks
  SharedHandle* h = adopt(std::move(table), key.read_only, key.trust_foreign_owner, file, kept.fd);
  kept.fd = -1;
  return h;
}

// A forked child's way back to an anonymous table: its own inherited descriptor <n> of
// the parent's /proc/<parent>/fd/<n>, if that is still the table (the parent may have
// closed it since, and reused <n>). Duplicated, so that the child's name for it,
// /proc/<child>/fd/<dup>, stays valid after the inherited handle goes. -1 if none.
int inherited_fd_of(const std::string& path, const FileId& file) {
  const auto slash = path.rfind('/');
  if (path.rfind("/proc/", 0) != 0 || slash == std::string::npos) return -1;
  int fd = 0;
  for (const char c : path.substr(slash + 1)) {
    if (c < '0' || c > '9' || fd > 1'000'000) return -1;
    fd = fd * 10 + (c - '0');
  }
  struct stat st{};
  if (::fstat(fd, &st) == 0 && FileId{st.st_dev, st.st_ino} == file) return ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  // Not under the parent's number: a process that unpickled the table opened it under a
  // number of its own, which its children inherit. Any descriptor of ours on that file
  // will do (review R2 F2: a fork of such a process lost the table once its creator exited).
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long candidate = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || candidate == ::dirfd(dir)) continue;
    if (::fstat(static_cast<int>(candidate), &st) == 0 && FileId{st.st_dev, st.st_ino} == file) {
      found = ::fcntl(static_cast<int>(candidate), F_DUPFD_CLOEXEC, 3);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// Re-attaches in a forked child (sharing with the child's other objects on the table).
// The inherited handle goes only once the new one is open: an anonymous table is
// re-opened through the descriptor the inherited handle holds.
bool reopen_after_fork(TableObject* self) {
  SharedHandle* inherited = self->handle;
  self->handle = nullptr;
  try {
    const HandleKey key{*self->path, self->engine, self->read_only, self->trust_foreign_owner};
    const std::optional<FileId> file =
        self->temporary_file != nullptr ? std::optional<FileId>(*self->temporary_file) : std::nullopt;
    if (file) {
      if (SharedHandle* h = find_shared(key, file)) {
        self->handle = h;
      } else if (const int kept = inherited_fd_of(key.path, *file); kept >= 0) {
        const std::string own = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(kept);
        self->handle = shared_or_open({own, key.engine, key.read_only, key.trust_foreign_owner}, file, kept);
      }
    }
    if (self->handle == nullptr) self->handle = shared_or_open(key, file);
    *self->path = self->handle->table.path();
  } catch (const shmht::Error& e) {
    release(inherited);
    set_python_error(e);
    return false;
  } catch (const std::bad_alloc&) {
    release(inherited);
    PyErr_NoMemory();
    return false;
  }
  release(inherited);
  return true;
}

// RuntimeError if the batch call using `h` runs on this thread: a signal handler (run
// by the batch's SignalPoll) is using the table; waiting for the batch would wait for
// ever. True if it is safe to wait.
bool may_wait_for_batch(const SharedHandle* h) {
  if (h->busy_thread != PyThread_get_thread_ident()) return true;
  PyErr_SetString(PyExc_RuntimeError,
                  "shmht.Table used from a signal handler during a batch call on the same handle (get_many, update, "
                  "clear or iteration): it cannot wait for the batch it interrupted; keep table calls out of signal "
                  "handlers, or set a flag there and act on it after the call");
  return false;
}

// Waits, with the GIL released, until the batch call using the handle has finished.
void wait_for_batch(SharedHandle* h) {
  const std::shared_ptr<std::mutex> mutex = h->batch_mutex;
  Py_BEGIN_ALLOW_THREADS
  mutex->lock();
  mutex->unlock();
  Py_END_ALLOW_THREADS
}

shmht::Table* handle_slow(TableObject* self) {
  for (;;) {
    if (self->path == nullptr || self->closed) {
      set_closed_error();
      return nullptr;
    }
    if ((self->handle == nullptr || self->handle->generation != fork_generation()) && !reopen_after_fork(self)) {
      return nullptr;
    }
    if (!self->handle->busy) return &self->handle->table;
    if (!may_wait_for_batch(self->handle)) return nullptr;
    wait_for_batch(self->handle);  // then look again: it may have been closed meanwhile
  }
}

// The handle this thread may use now (GIL held), or nullptr with a Python error set.
inline shmht::Table* handle(TableObject* self) {
  SharedHandle* h = self->handle;
  if (h != nullptr && !h->busy && h->generation == fork_generation()) [[likely]] return &h->table;
  return handle_slow(self);
}

// Lets a long batch notice Ctrl-C. With the GIL released Python cannot run its signal
// handlers, so a KeyboardInterrupt would wait for the whole batch. Every kEvery calls,
// poll() takes the GIL back for a moment and runs them; if one raised, poll() throws
// Interrupted (the Python exception stays set) and the batch stops between two complete
// operations, each of which is atomic: the table stays consistent.
class SignalPoll {
 public:
  struct Interrupted {};
  explicit SignalPoll(PyThreadState** saved) noexcept : saved_(saved) {}
  // `operations`: how many the batch did since the last call.
  void operator()(std::uint64_t operations = 1) {
    calls_ += operations;
    if (calls_ < next_check_) [[likely]] return;
    next_check_ = calls_ + kEvery;
    PyEval_RestoreThread(*saved_);
    const int raised = PyErr_CheckSignals();
    *saved_ = PyEval_SaveThread();
    if (raised != 0) throw Interrupted{};
  }

 private:
  // Operations between checks: the GIL round trip is rare next to them, and Ctrl-C waits
  // for at most this many (python/tests/test_interrupt.py bounds the wait).
  static constexpr std::uint64_t kEvery = 4096;
  PyThreadState** saved_;
  std::uint64_t calls_ = 0, next_check_ = kEvery;
};

// Runs a batch with the GIL released and the handle reserved (see table_object.hpp).
// `work` must not touch Python objects; it is called as work(table), or as
// work(table, poll) if it takes a SignalPoll& (long batches, which call poll() between
// operations). Returns false with a Python error set.
template <typename Work>
bool run_batch(TableObject* self, Work&& work) {
  shmht::Table* table = handle(self);
  if (table == nullptr) return false;
  SharedHandle* shared = self->handle;  // close() waits for `busy`: it stays
  const std::shared_ptr<std::mutex> mutex = shared->batch_mutex;
  shared->busy = true;
  shared->busy_thread = PyThread_get_thread_ident();
  mutex->lock();
  std::optional<shmht::Error> failure;
  bool out_of_memory = false, interrupted = false;
  PyThreadState* saved = PyEval_SaveThread();
  try {
    if constexpr (std::is_invocable_v<Work, shmht::Table&, SignalPoll&>) {
      SignalPoll poll(&saved);
      work(*table, poll);
    } else {
      work(*table);
    }
  } catch (const shmht::Error& e) {
    failure.emplace(e);
  } catch (const std::bad_alloc&) {
    out_of_memory = true;
  } catch (const SignalPoll::Interrupted&) {
    interrupted = true;
  }
  PyEval_RestoreThread(saved);
  shared->busy = false;
  shared->busy_thread = 0;
  mutex->unlock();
  if (interrupted) return false;  // the signal handler's exception is set
  if (failure) {
    set_python_error(*failure);
    return false;
  }
  if (out_of_memory) {
    PyErr_NoMemory();
    return false;
  }
  return true;
}

// The value of `key` as a new bytes object; nullptr with *found = false when absent (no
// error set), nullptr with an error set on failure. Values up to kStackValueBytes are read
// into the stack; longer ones straight into a bytes object of the reported length.
constexpr std::size_t kStackValueBytes = 256;

PyObject* read_value(shmht::Table& table, std::string_view key, bool* found) {
  *found = true;
  char stack[kStackValueBytes];
  std::optional<std::size_t> length = table.get(key, std::span<char>(stack, sizeof stack));
  if (!length) {
    *found = false;
    return nullptr;
  }
  if (*length <= sizeof stack) return PyBytes_FromStringAndSize(stack, static_cast<Py_ssize_t>(*length));
  // Another process may replace the value between two reads: retry until it fits.
  for (;;) {
    PyRef out(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(*length)));
    if (!out) return nullptr;
    const std::optional<std::size_t> now = table.get(key, std::span<char>(PyBytes_AS_STRING(out.get()), *length));
    if (!now) {
      *found = false;
      return nullptr;
    }
    if (*now <= *length) {
      PyObject* result = out.release();
      if (*now < *length && _PyBytes_Resize(&result, static_cast<Py_ssize_t>(*now)) < 0) return nullptr;
      return result;
    }
    length = now;
  }
}

shmht::Engine engine_from_name(const char* name, bool* ok) {
  const std::optional<shmht::Engine> engine = shmht::parse_engine(name);
  *ok = engine.has_value();
  if (!*ok) {
    PyErr_Format(PyExc_ValueError, "unknown engine '%s'; the engines are global, striped, seqlock and lockfree", name);
    return shmht::Engine::kGlobalLock;
  }
  return *engine;
}

// ---------------------------------------------------------------------------------------
// Lifetime

PyObject* table_new(PyTypeObject* type, PyObject*, PyObject*) {
  PyObject* object = type->tp_alloc(type, 0);
  if (object == nullptr) return nullptr;
  TableObject* self = as_table(object);
  self->handle = nullptr;
  self->path = nullptr;
  self->temporary_file = nullptr;
  self->engine = shmht::Engine::kGlobalLock;
  self->read_only = false;
  self->trust_foreign_owner = false;
  self->closed = false;
  return object;
}

void table_dealloc(PyObject* object) {
  TableObject* self = as_table(object);
  release(self->handle);  // the last user detaches; in a forked child, harmlessly does not
  delete self->path;
  delete self->temporary_file;
  Py_TYPE(object)->tp_free(object);
}

// A creation option given as a Python int, checked against its range (shmht/options.hpp)
// before it is narrowed to the C++ field: false with InvalidArgumentError naming the
// field and its range (2**40 must not become 0, nor -1 become 4294967295), or TypeError.
bool option_in_range(PyObject* value, const shmht::OptionRange& range, std::uint64_t* out) {
  if (!PyLong_Check(value)) {
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", std::string(range.field).c_str(),
                 Py_TYPE(value)->tp_name);
    return false;
  }
  const unsigned long long number = PyLong_AsUnsignedLongLong(value);  // OverflowError if negative or > 2**64-1
  const bool fits = !(number == static_cast<unsigned long long>(-1) && PyErr_Occurred());
  PyErr_Clear();
  if (fits && range.contains(number)) {
    *out = number;
    return true;
  }
  std::string written;
  if (fits) {
    written = shmht::option_value_text(range, number);
  } else {
    PyRef text(PyObject_Str(value));
    const char* utf8 = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
    if (utf8 == nullptr) return false;
    written = utf8;
  }
  set_python_error(shmht::Error(shmht::ErrorCode::kInvalidArgument, shmht::out_of_range_message(range, written)));
  return false;
}

// The CreateOptions a new table gets, from _attach's arguments; false with a Python error.
bool create_options_from(PyObject* const* numbers, shmht::CreateOptions* options) {
  std::uint64_t capacity = 0, max_key_bytes = 0, max_value_bytes = 0, max_bytes = 0, max_processes = 0, mode = 0;
  if (!option_in_range(numbers[0], shmht::kCapacityRange, &capacity) ||
      !option_in_range(numbers[1], shmht::kMaxKeyBytesRange, &max_key_bytes) ||
      !option_in_range(numbers[2], shmht::kMaxValueBytesRange, &max_value_bytes) ||
      !option_in_range(numbers[3], shmht::kMaxBytesRange, &max_bytes) ||
      !option_in_range(numbers[4], shmht::kMaxProcessesRange, &max_processes) ||
      !option_in_range(numbers[5], shmht::kModeRange, &mode)) {
    return false;
  }
  // Each value is inside its range, whose maximum fits the field's type.
  options->capacity = capacity;
  options->max_key_bytes = static_cast<std::uint32_t>(max_key_bytes);
  options->max_value_bytes = static_cast<std::uint32_t>(max_value_bytes);
  options->max_bytes = max_bytes;
  options->max_processes = static_cast<std::uint32_t>(max_processes);
  options->mode = static_cast<mode_t>(mode);
  return true;
}

// _attach(path, engine, how, read_only, trust_foreign_owner, capacity, max_key_bytes,
//         max_value_bytes, max_bytes, max_processes, mode, temporary_file=None)
// path is bytes (os.fsencode of the name); engine a name or None (the table's active
// engine; only for opening). `how`:
//   "open"      an existing table, a handle of this object's own;
//   "create"    open it, creating it first if it does not exist (needs an engine);
//   "share"     an existing table, sharing the attachment this process already has on
//               it with the same engine and flags (unpickled copies: see above);
//   "temporary" a new anonymous table (Table::create_anonymous; `path` is ignored).
// temporary_file: with "share", the (device, inode) of the anonymous table `path` named
// when pickled (_temporary_file()): a handle on any other file is refused with
// TableNotFoundError.
// Policy (defaults, engine choice, parameter checks) lives in shmht/__init__.py; this
// only does it.
PyObject* table_attach(PyObject* object, PyObject* args) {
  TableObject* self = as_table(object);
  const char* name = nullptr;
  const char* engine_name = nullptr;
  const char* how_text = nullptr;
  int read_only = 0, trust_foreign_owner = 0;
  PyObject* numbers[6] = {};
  PyObject* temporary_file = Py_None;
  if (!PyArg_ParseTuple(args, "yzsppOOOOOO|O:_attach", &name, &engine_name, &how_text, &read_only, &trust_foreign_owner,
                        &numbers[0], &numbers[1],
                        &numbers[2], &numbers[3], &numbers[4], &numbers[5], &temporary_file)) {
    return nullptr;
  }
  std::optional<FileId> expected_file;
  if (temporary_file != Py_None) {
    unsigned long long device = 0, inode = 0;
    if (!PyArg_ParseTuple(temporary_file, "KK:_attach temporary_file", &device, &inode)) return nullptr;
    expected_file = FileId{device, inode};
  }
  const std::string_view how = how_text;
  if (how != "open" && how != "create" && how != "share" && how != "temporary") {
    return PyErr_Format(PyExc_ValueError, "_attach: how must be 'open', 'create', 'share' or 'temporary', not '%s'", how_text);
  }
  std::optional<shmht::Engine> engine;
  if (engine_name != nullptr) {
    bool ok = false;
    engine = engine_from_name(engine_name, &ok);
    if (!ok) return nullptr;
  }
  shmht::CreateOptions options;
  if (!create_options_from(numbers, &options)) return nullptr;
  if (self->handle != nullptr && self->handle->busy) {
    return PyErr_Format(PyExc_RuntimeError, "_attach while a batch call uses this table");
  }
  const bool creates = how == "create" || how == "temporary";
  if (creates && (read_only || !engine)) return PyErr_Format(PyExc_ValueError, "_attach: creating needs an engine, read-write");
  if (how == "share" && !engine) return PyErr_Format(PyExc_ValueError, "_attach: sharing needs the engine");
  if (expected_file && how != "share") return PyErr_Format(PyExc_ValueError, "_attach: temporary_file is for sharing");
  if (engine) options.engine = *engine;
  SharedHandle* h = nullptr;
  try {
    const shmht::OpenOptions open = open_options(engine, read_only != 0, trust_foreign_owner != 0);
    if (how == "share") {
      h = shared_or_open({name, *engine, read_only != 0, trust_foreign_owner != 0}, expected_file);
    } else {
      shmht::Table table = how == "create"      ? open_trusted_or_create(name, open, options)
                           : how == "temporary" ? shmht::Table::create_anonymous(options)
                                                : shmht::Table::open(name, open);
      std::optional<FileId> file;
      if (how == "temporary") file = file_of(table);
      h = adopt(std::move(table), read_only != 0, trust_foreign_owner != 0, file);
    }
    std::unique_ptr<std::string> path = std::make_unique<std::string>(h->table.path());
    std::unique_ptr<FileId> file;
    if (how == "temporary" || expected_file) file = std::make_unique<FileId>(*h->file);
    release(self->handle);
    delete self->path;
    delete self->temporary_file;
    self->handle = h;
    self->path = path.release();
    self->temporary_file = file.release();
  } catch (const shmht::Error& e) {
    release(h);
    return set_python_error(e);
  } catch (const std::bad_alloc&) {
    release(h);
    return PyErr_NoMemory();
  }
  self->engine = h->table.engine();
  self->read_only = read_only != 0;
  self->trust_foreign_owner = trust_foreign_owner != 0;
  self->closed = false;
  Py_RETURN_NONE;
}

PyObject* table_close(PyObject* object, PyObject*) {
  TableObject* self = as_table(object);
  while (self->handle != nullptr && self->handle->busy) {
    if (!may_wait_for_batch(self->handle)) return nullptr;
    wait_for_batch(self->handle);
  }
  // The last object using the handle detaches it; in a forked child the inherited handle
  // is deleted without detaching, as it must be. Other copies keep theirs.
  release(self->handle);
  self->handle = nullptr;
  self->closed = true;
  Py_RETURN_NONE;
}

// _temporary_file() -> (device, inode) of an anonymous table (Table.temporary or a copy of
// one), which its pickle carries; None for a named table.
PyObject* table_temporary_file(PyObject* object, PyObject*) {
  const FileId* file = as_table(object)->temporary_file;
  if (file == nullptr) Py_RETURN_NONE;
  return Py_BuildValue("(KK)", static_cast<unsigned long long>(file->device), static_cast<unsigned long long>(file->inode));
}

// _shares_handle_with(other) -> True if both objects use one attachment (tests).
PyObject* table_shares_handle_with(PyObject* object, PyObject* other) {
  if (!PyObject_TypeCheck(other, &g_table_type)) Py_RETURN_FALSE;
  const SharedHandle* mine = as_table(object)->handle;
  return PyBool_FromLong(mine != nullptr && mine == as_table(other)->handle);
}

// ---------------------------------------------------------------------------------------
// Mapping slots (the hot path)

PyObject* table_subscript(PyObject* object, PyObject* key) {
  BytesArg k;
  if (!k.parse(key, "keys")) return nullptr;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    bool found = false;
    PyObject* value = read_value(*table, k.view(), &found);
    if (!found) PyErr_SetObject(PyExc_KeyError, key);
    return value;
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

int table_ass_subscript(PyObject* object, PyObject* key, PyObject* value) {
  BytesArg k, v;
  if (!k.parse(key, "keys")) return -1;
  if (value != nullptr && !v.parse(value, "values")) return -1;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return -1;
  try {
    if (value != nullptr) {
      table->assign(k.view(), v.view());
    } else if (!table->erase(k.view())) {
      PyErr_SetObject(PyExc_KeyError, key);
      return -1;
    }
    return 0;
  } catch (const shmht::Error& e) {
    return set_python_error_int(e);
  }
}

int table_contains(PyObject* object, PyObject* key) {
  BytesArg k;
  if (!k.parse(key, "keys")) return -1;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return -1;
  try {
    return table->contains(k.view()) ? 1 : 0;
  } catch (const shmht::Error& e) {
    return set_python_error_int(e);
  }
}

Py_ssize_t table_length(PyObject* object) {
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return -1;
  try {
    return static_cast<Py_ssize_t>(table->size());
  } catch (const shmht::Error& e) {
    return set_python_error_int(e);
  }
}

// ---------------------------------------------------------------------------------------
// Snapshots: iteration walks the table once (weakly consistent, see Table::for_each),
// copying the entries into a C++ vector with the GIL released, and returns an iterator
// that makes each Python object only when it is asked for. Building every object up
// front (a list of tuples) cost ~3x more on 666k items: hundreds of thousands of
// tracked tuples alive at once keep triggering the cyclic garbage collector.

enum class SnapshotKind { kKeys, kValues, kItems };

// The copied entries, packed: entry i's key is bytes[offsets[2i], offsets[2i+1]) and its
// value bytes[offsets[2i+1], offsets[2i+2]). One buffer instead of a vector of string
// pairs: 666k short entries took ~60 MB as std::string pairs and most of the walk's time
// went to growing and moving them.
class PackedEntries {
 public:
  void reserve(std::size_t entries, std::size_t bytes) {
    offsets_.reserve(2 * entries + 1);
    bytes_.reserve(bytes);
  }
  void add(std::string_view key, std::string_view value) {
    offsets_.push_back(bytes_.size());
    bytes_.append(key);
    offsets_.push_back(bytes_.size());
    bytes_.append(value);
  }
  void finish() { offsets_.push_back(bytes_.size()); }
  std::size_t size() const noexcept { return offsets_.empty() ? 0 : (offsets_.size() - 1) / 2; }
  std::string_view key(std::size_t i) const noexcept { return slice(2 * i); }
  std::string_view value(std::size_t i) const noexcept { return slice(2 * i + 1); }

 private:
  std::string_view slice(std::size_t j) const noexcept {
    return std::string_view(bytes_).substr(offsets_[j], offsets_[j + 1] - offsets_[j]);
  }
  std::string bytes_;
  std::vector<std::size_t> offsets_;
};

struct SnapshotObject {
  PyObject_HEAD
  PackedEntries* entries;
  std::size_t next;
  SnapshotKind kind;
};

SnapshotObject* as_snapshot(PyObject* object) { return reinterpret_cast<SnapshotObject*>(object); }

void snapshot_dealloc(PyObject* object) {
  delete as_snapshot(object)->entries;
  Py_TYPE(object)->tp_free(object);
}

PyObject* snapshot_next(PyObject* object) {
  SnapshotObject* self = as_snapshot(object);
  if (self->next >= self->entries->size()) return nullptr;  // StopIteration
  const std::size_t i = self->next++;
  switch (self->kind) {
    case SnapshotKind::kKeys: return bytes_from(self->entries->key(i));
    case SnapshotKind::kValues: return bytes_from(self->entries->value(i));
    case SnapshotKind::kItems: break;
  }
  PyRef k(bytes_from(self->entries->key(i))), v(bytes_from(self->entries->value(i)));
  if (!k || !v) return nullptr;
  return PyTuple_Pack(2, k.get(), v.get());
}

PyObject* snapshot_length_hint(PyObject* object, PyObject*) {
  const SnapshotObject* self = as_snapshot(object);
  return PyLong_FromSize_t(self->entries->size() - self->next);
}

PyMethodDef g_snapshot_methods[] = {
    {"__length_hint__", snapshot_length_hint, METH_NOARGS, "__length_hint__($self, /)\n--\n\nEntries not yet returned."},
    {nullptr, nullptr, 0, nullptr},
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
PyTypeObject g_snapshot_type = {PyVarObject_HEAD_INIT(nullptr, 0)};
#pragma GCC diagnostic pop

PyObject* snapshot(TableObject* self, SnapshotKind kind) {
  auto entries = std::make_unique<PackedEntries>();
  const bool keys_only = kind == SnapshotKind::kKeys;
  if (!run_batch(self, [&](shmht::Table& table, SignalPoll& poll) {
        // A guess that avoids most regrowth; the walk may see more or fewer entries. At
        // most kFirstReserve entries up front: reserving a large table's whole walk
        // before the first poll kept Ctrl-C waiting for it (tens of ms where the
        // allocator fills new memory, as under meson's MALLOC_PERTURB_:
        // python/tests/test_interrupt.py); past it, the buffers grow between polls.
        constexpr std::size_t kFirstReserve = 16384;
        const std::size_t expected = std::min<std::size_t>(static_cast<std::size_t>(table.size()) + 64, kFirstReserve);
        entries->reserve(expected, expected * 32);
        table.for_each([&](std::string_view key, std::string_view value) {
          poll();
          entries->add(key, keys_only ? std::string_view() : value);
        });
        entries->finish();
      })) {
    return nullptr;
  }
  SnapshotObject* iterator = PyObject_New(SnapshotObject, &g_snapshot_type);
  if (iterator == nullptr) return nullptr;
  iterator->entries = entries.release();
  iterator->next = 0;
  iterator->kind = kind;
  return reinterpret_cast<PyObject*>(iterator);
}

PyObject* table_iter(PyObject* object) { return snapshot(as_table(object), SnapshotKind::kKeys); }
PyObject* table_keys_iter(PyObject* object, PyObject*) { return snapshot(as_table(object), SnapshotKind::kKeys); }
PyObject* table_values_iter(PyObject* object, PyObject*) { return snapshot(as_table(object), SnapshotKind::kValues); }
PyObject* table_items_iter(PyObject* object, PyObject*) { return snapshot(as_table(object), SnapshotKind::kItems); }

// ---------------------------------------------------------------------------------------
// Methods

// get(key, default=None)
PyObject* table_get(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  if (!_PyArg_CheckPositional("get", nargs, 1, 2)) return nullptr;
  BytesArg k;
  if (!k.parse(args[0], "keys")) return nullptr;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    bool found = false;
    PyObject* value = read_value(*table, k.view(), &found);
    if (found) return value;
    PyObject* fallback = nargs > 1 ? args[1] : Py_None;
    return Py_NewRef(fallback);
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

// pop(key[, default]): the value this call erased, read and erased in one atomic step
// (Table::take).
PyObject* table_pop(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  if (!_PyArg_CheckPositional("pop", nargs, 1, 2)) return nullptr;
  BytesArg k;
  if (!k.parse(args[0], "keys")) return nullptr;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    if (const std::optional<std::string> value = table->take(k.view())) return bytes_from(*value);
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
  if (nargs > 1) return Py_NewRef(args[1]);
  PyErr_SetObject(PyExc_KeyError, args[0]);
  return nullptr;
}

// A value argument that may be None (absent).
bool parse_optional_value(PyObject* object, BytesArg* arg, std::optional<std::string_view>* out) {
  if (object == Py_None) {
    out->reset();
    return true;
  }
  if (!arg->parse(object, "values")) return false;
  *out = arg->view();
  return true;
}

// compare_and_set(key, expected, desired) as Table::compare_and_set, None meaning absent.
// Returns false with a Python error set.
bool compare_and_set(PyObject* object, PyObject* const* args, Py_ssize_t nargs, const char* name, bool* applied,
                     std::optional<std::string>* seen) {
  if (!_PyArg_CheckPositional(name, nargs, 3, 3)) return false;
  BytesArg k, e, d;
  std::optional<std::string_view> expected, desired;
  if (!k.parse(args[0], "keys") || !parse_optional_value(args[1], &e, &expected) ||
      !parse_optional_value(args[2], &d, &desired)) {
    return false;
  }
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return false;
  try {
    *applied = table->compare_and_set(k.view(), expected, desired, seen);
    return true;
  } catch (const shmht::Error& error) {
    set_python_error(error);
    return false;
  }
}

// compare_and_set(key, expected, desired) -> bool
PyObject* table_compare_and_set(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  bool applied = false;
  if (!compare_and_set(object, args, nargs, "compare_and_set", &applied, nullptr)) return nullptr;
  return PyBool_FromLong(applied);
}

// _compare_and_set_seen(key, expected, desired) -> (applied, the value seen when not
// applied, or None): what update_value and setdefault retry with, without another read.
PyObject* table_compare_and_set_seen(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  bool applied = false;
  std::optional<std::string> seen;
  if (!compare_and_set(object, args, nargs, "_compare_and_set_seen", &applied, &seen)) return nullptr;
  PyRef value(seen ? bytes_from(*seen) : Py_NewRef(Py_None));
  if (!value) return nullptr;
  return Py_BuildValue("(NO)", PyBool_FromLong(applied), value.get());
}

// add(key, delta=1) -> the counter's new value (Table::add).
PyObject* table_add(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  if (!_PyArg_CheckPositional("add", nargs, 1, 2)) return nullptr;
  BytesArg k;
  if (!k.parse(args[0], "keys")) return nullptr;
  long long delta = 1;
  if (nargs > 1) {
    if (!PyLong_Check(args[1])) {
      return PyErr_Format(PyExc_TypeError, "add: delta must be an int, not %.200s", Py_TYPE(args[1])->tp_name);
    }
    int overflow = 0;
    delta = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (delta == -1 && PyErr_Occurred()) return nullptr;
    if (overflow != 0) {
      // Not Python's generic "int too big to convert": say what range a delta has.
      PyRef text(PyObject_Str(args[1]));
      const char* digits = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
      if (digits == nullptr) return nullptr;
      return set_python_error(shmht::Error(
          shmht::ErrorCode::kCounterOverflow,
          std::string("add: delta ") + digits +
              " is outside the int64 range [-9223372036854775808, 9223372036854775807] that counters have; the "
              "counter is unchanged"));
    }
  }
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    return PyLong_FromLongLong(table->add(k.view(), delta));
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

// _take_any() -> (key, value) removed in one atomic step, or None if a full lap of the
// table since this handle last found one finds nothing (Table::take_any: a per-handle
// cursor, so draining a table is amortised O(1) per item).
PyObject* table_take_any(PyObject* object, PyObject*) {
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  std::optional<std::pair<std::string, std::string>> item;
  try {
    item = table->take_any();
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
  if (!item) Py_RETURN_NONE;
  PyRef k(bytes_from(item->first)), v(bytes_from(item->second));
  if (!k || !v) return nullptr;
  return PyTuple_Pack(2, k.get(), v.get());
}

// insert(key, value) -> bool: stores only if the key is absent (atomically).
PyObject* table_insert(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  if (!_PyArg_CheckPositional("insert", nargs, 2, 2)) return nullptr;
  BytesArg k, v;
  if (!k.parse(args[0], "keys") || !v.parse(args[1], "values")) return nullptr;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    return PyBool_FromLong(table->insert(k.view(), v.view()));
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

// discard(key) -> bool: erases the key if present.
PyObject* table_discard(PyObject* object, PyObject* key) {
  BytesArg k;
  if (!k.parse(key, "keys")) return nullptr;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    return PyBool_FromLong(table->erase(k.view()));
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

// How many key objects ahead get_many's argument loop requests.
constexpr Py_ssize_t kKeyObjectsAhead = 8;

// get_many(keys, default=None) -> list, one C++ crossing with the GIL released.
PyObject* table_get_many(PyObject* object, PyObject* const* args, Py_ssize_t nargs) {
  if (!_PyArg_CheckPositional("get_many", nargs, 1, 2)) return nullptr;
  PyObject* fallback = nargs > 1 ? args[1] : Py_None;
  PyRef keys(PySequence_Fast(args[0], "get_many() expects an iterable of keys"));
  if (!keys) return nullptr;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(keys.get());
  BytesBatch batch;
  PyObject** items = PySequence_Fast_ITEMS(keys.get());
  for (Py_ssize_t i = 0; i < count; ++i) {
    // The key objects lie anywhere in the heap: reading each one's type is a cache miss,
    // the largest cost of this loop (perf). Request them a few keys ahead, with the
    // line after each (a short key's bytes).
    if (i + kKeyObjectsAhead < count) {
      const char* ahead = reinterpret_cast<const char*>(items[i + kKeyObjectsAhead]);
      shmht::prefetch_for_read(ahead);
      shmht::prefetch_for_read(ahead + 64);
    }
    if (!batch.add(items[i], "keys")) return nullptr;
  }
  // The values found, back to back in one buffer (no string per value), copied out while
  // the GIL is released and made into bytes objects once it is held again.
  constexpr std::size_t kAbsent = ~std::size_t{0};
  std::string found_bytes;
  std::vector<std::size_t> begin(batch.size(), kAbsent), length(batch.size());
  if (!run_batch(as_table(object), [&](shmht::Table& table, SignalPoll& poll) {
        // Table::get_many overlaps the keys' cache misses; chunks keep Ctrl-C prompt.
        constexpr std::size_t kChunk = 1024;
        const std::span<const std::string_view> views = batch.views();
        for (std::size_t first = 0; first < views.size(); first += kChunk) {
          const std::size_t n = std::min(kChunk, views.size() - first);
          table.get_many(views.subspan(first, n), [&](std::size_t i, std::string_view value) {
            begin[first + i] = found_bytes.size();
            length[first + i] = value.size();
            found_bytes.append(value);
          });
          poll(n);
        }
      })) {
    return nullptr;
  }
  PyRef list(PyList_New(count));
  if (!list) return nullptr;
  for (Py_ssize_t i = 0; i < count; ++i) {
    const std::size_t at = static_cast<std::size_t>(i);
    PyObject* item = begin[at] == kAbsent ? Py_NewRef(fallback)
                                          : bytes_from(std::string_view(found_bytes).substr(begin[at], length[at]));
    if (item == nullptr) return nullptr;
    PyList_SET_ITEM(list.get(), i, item);
  }
  return list.release();
}

// _assign_many(iterable of (key, value)) -> number of new keys; GIL released while
// writing. Not atomic: on an error the pairs before the failing one are stored.
PyObject* table_assign_many(PyObject* object, PyObject* pairs_arg) {
  PyRef pairs(PySequence_Fast(pairs_arg, "expected an iterable of (key, value) pairs"));
  if (!pairs) return nullptr;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(pairs.get());
  // Each pair is unpacked into a fast sequence that we keep, so the views stay valid.
  std::vector<PyRef> unpacked;
  unpacked.reserve(static_cast<std::size_t>(count));
  BytesBatch keys, values;
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* pair = PySequence_Fast_GET_ITEM(pairs.get(), i);
    unpacked.emplace_back(PySequence_Fast(pair, "update() expects (key, value) pairs"));
    PyObject* fast = unpacked.back().get();
    if (fast == nullptr) return nullptr;
    if (PySequence_Fast_GET_SIZE(fast) != 2) {
      return PyErr_Format(PyExc_ValueError, "update() sequence element #%zd has length %zd; 2 is required", i,
                          PySequence_Fast_GET_SIZE(fast));
    }
    if (!keys.add(PySequence_Fast_GET_ITEM(fast, 0), "keys")) return nullptr;
    if (!values.add(PySequence_Fast_GET_ITEM(fast, 1), "values")) return nullptr;
  }
  std::size_t created = 0;
  if (!run_batch(as_table(object), [&](shmht::Table& table, SignalPoll& poll) {
        for (std::size_t i = 0; i < keys.size(); ++i) {
          poll();
          created += table.assign(keys[i], values[i]);
        }
      })) {
    return nullptr;
  }
  return PyLong_FromSize_t(created);
}

// _erase_all() -> number of keys this call erased; GIL released. Keys inserted by other
// processes during the call may survive it.
PyObject* table_erase_all(PyObject* object, PyObject*) {
  std::size_t erased = 0;
  if (!run_batch(as_table(object), [&](shmht::Table& table, SignalPoll& poll) {
        std::vector<std::string> keys;
        table.for_each([&](std::string_view key, std::string_view) {
          poll();
          keys.emplace_back(key);
        });
        for (const std::string& key : keys) {
          poll();
          erased += table.erase(key);
        }
      })) {
    return nullptr;
  }
  return PyLong_FromSize_t(erased);
}

// Adds key -> value (a new reference, stolen) to dict; false on failure.
bool put(PyObject* dict, const char* key, PyObject* value) {
  if (value == nullptr) return false;
  const int rc = PyDict_SetItemString(dict, key, value);
  Py_DECREF(value);
  return rc == 0;
}

PyObject* table_stats(PyObject* object, PyObject*) {
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  shmht::Stats s;
  try {
    s = table->stats();
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
  PyRef pids(PyList_New(static_cast<Py_ssize_t>(s.attached_pids.size())));
  if (!pids) return nullptr;
  for (std::size_t i = 0; i < s.attached_pids.size(); ++i) {
    PyObject* pid = PyLong_FromLong(s.attached_pids[i]);
    if (pid == nullptr) return nullptr;
    PyList_SET_ITEM(pids.get(), static_cast<Py_ssize_t>(i), pid);
  }
  PyRef free_by_class(PyDict_New());  // {record bytes of the class: free records}
  if (!free_by_class) return nullptr;
  for (const shmht::FreeClass& c : s.free_by_class) {
    PyRef size(PyLong_FromUnsignedLongLong(c.record_bytes));
    PyRef records(PyLong_FromUnsignedLongLong(c.records));
    if (!size || !records || PyDict_SetItem(free_by_class.get(), size.get(), records.get()) != 0) return nullptr;
  }
  const std::string_view engine = shmht::engine_name(s.engine);
  PyRef dict(PyDict_New());
  const bool ok = dict && put(dict.get(), "path", PyUnicode_DecodeFSDefaultAndSize(s.path.data(), static_cast<Py_ssize_t>(s.path.size()))) &&
                  put(dict.get(), "engine", PyUnicode_FromStringAndSize(engine.data(), static_cast<Py_ssize_t>(engine.size()))) &&
                  put(dict.get(), "capacity", PyLong_FromUnsignedLongLong(s.capacity)) &&
                  put(dict.get(), "slots", PyLong_FromUnsignedLongLong(s.slots)) &&
                  put(dict.get(), "items", PyLong_FromUnsignedLongLong(s.items)) &&
                  put(dict.get(), "load_factor", PyFloat_FromDouble(s.load_factor)) &&
                  put(dict.get(), "max_key_bytes", PyLong_FromUnsignedLong(s.max_key_bytes)) &&
                  put(dict.get(), "max_value_bytes", PyLong_FromUnsignedLong(s.max_value_bytes)) &&
                  put(dict.get(), "max_bytes", PyLong_FromUnsignedLongLong(s.max_bytes)) &&
                  put(dict.get(), "max_processes", PyLong_FromUnsignedLong(s.max_processes)) &&
                  put(dict.get(), "apparent_bytes", PyLong_FromUnsignedLongLong(s.apparent_bytes)) &&
                  put(dict.get(), "resident_bytes", PyLong_FromUnsignedLongLong(s.resident_bytes)) &&
                  put(dict.get(), "arena_bytes", PyLong_FromUnsignedLongLong(s.arena_bytes)) &&
                  put(dict.get(), "live_record_bytes", PyLong_FromUnsignedLongLong(s.live_record_bytes)) &&
                  put(dict.get(), "free_record_bytes", PyLong_FromUnsignedLongLong(s.free_record_bytes)) &&
                  put(dict.get(), "free_by_class", free_by_class.release()) &&
                  put(dict.get(), "slot_array_bytes", PyLong_FromUnsignedLongLong(s.slot_array_bytes)) &&
                  put(dict.get(), "growths", PyLong_FromUnsignedLong(s.growths)) &&
                  put(dict.get(), "migrating", PyBool_FromLong(s.migrating)) &&
                  put(dict.get(), "migration_groups", PyLong_FromUnsignedLongLong(s.migration_groups)) &&
                  put(dict.get(), "migration_groups_moved", PyLong_FromUnsignedLongLong(s.migration_groups_moved)) &&
                  put(dict.get(), "attached_pids", pids.release());
  return ok ? dict.release() : nullptr;
}

// ---------------------------------------------------------------------------------------
// Properties

PyObject* table_get_path(PyObject* object, void*) {
  const TableObject* self = as_table(object);
  if (self->path == nullptr) Py_RETURN_NONE;
  // As os.fsdecode: a name that is not UTF-8 round-trips through os.fsencode.
  return PyUnicode_DecodeFSDefaultAndSize(self->path->data(), static_cast<Py_ssize_t>(self->path->size()));
}

PyObject* table_get_engine(PyObject* object, void*) {
  const TableObject* self = as_table(object);
  if (self->path == nullptr) Py_RETURN_NONE;
  const std::string_view name = shmht::engine_name(self->engine);
  return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
}

PyObject* table_get_read_only(PyObject* object, void*) {
  return PyBool_FromLong(as_table(object)->read_only);
}

PyObject* table_get_trust_foreign_owner(PyObject* object, void*) {
  return PyBool_FromLong(as_table(object)->trust_foreign_owner);
}

PyObject* table_get_closed(PyObject* object, void*) {
  const TableObject* self = as_table(object);
  return PyBool_FromLong(self->path == nullptr || self->closed);
}

// _unlink_if_same() -> True if this handle's file was deleted; False if its name is gone
// or now names another file (Table::unlink).
// An anonymous table has no name to remove (it goes when its last handle closes): False.
PyObject* table_unlink_if_same(PyObject* object, PyObject*) {
  if (as_table(object)->temporary_file != nullptr && !as_table(object)->closed) Py_RETURN_FALSE;
  shmht::Table* table = handle(as_table(object));
  if (table == nullptr) return nullptr;
  try {
    return PyBool_FromLong(table->unlink());
  } catch (const shmht::Error& e) {
    return set_python_error(e);
  }
}

// ---------------------------------------------------------------------------------------
// The type

// Each docstring opens with a text signature ("name($self, ...)\n--\n\n"), from which
// inspect.signature and help() read the parameters of these C methods.
template <auto Function>
PyCFunction fastcall() {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Function));
}

PyMethodDef g_methods[] = {
    {"_unlink_if_same", table_unlink_if_same, METH_NOARGS,
     "_unlink_if_same($self, /)\n--\n\nTrue if this handle's file was deleted (see Table.unlink)."},
    {"_attach", table_attach, METH_VARARGS,
     "_attach($self, path, engine, create, read_only, trust_foreign_owner, capacity, max_key_bytes, max_value_bytes, max_bytes,\n"
     "        max_processes, mode, /)\n--\n\nOpen or create the table (shmht.Table.__init__ decides the arguments)."},
    {"close", table_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Detach from the table (the file stays; see shmht.unlink). Further use raises ValueError."},
    {"get", fastcall<table_get>(), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nThe value of `key` as bytes, or `default` if it is absent."},
    {"pop", fastcall<table_pop>(), METH_FASTCALL,
     "pop($self, key, default=..., /)\n--\n\n"
     "Erase `key` and return the value this call erased; if absent, return `default`\n"
     "when given, else raise KeyError.\n\n"
     "Atomic: the value is read and the key erased in one step (C++ Table::take), so a write\n"
     "by another process is either returned here or survives the pop, never erased unseen."},
    {"compare_and_set", fastcall<table_compare_and_set>(), METH_FASTCALL,
     "compare_and_set($self, key, expected, desired, /)\n--\n\n"
     "Make the value of `key` `desired` only if it is `expected`; return True if it did.\n\n"
     "Atomic: if the key's value equals `expected`, make it `desired`; otherwise change nothing.\n"
     "None means absent on either side: expected=None inserts only if the key is absent,\n"
     "desired=None erases only if the value is `expected`. A key longer than the table's\n"
     "max_key_bytes is absent (KeyTooLargeError only if this call would insert it); a desired\n"
     "value over max_value_bytes raises ValueTooLargeError; an expected one matches nothing."},
    {"_compare_and_set_seen", fastcall<table_compare_and_set_seen>(), METH_FASTCALL,
     "_compare_and_set_seen($self, key, expected, desired, /)\n--\n\n"
     "(applied, the value seen if not applied, or None)."},
    {"add", fastcall<table_add>(), METH_FASTCALL,
     "add($self, key, delta=1, /)\n--\n\n"
     "Add `delta` to the counter at `key` and return its new value (an int).\n\n"
     "Atomic: adds `delta` to the counter at `key` (an absent key counts as 0); of many\n"
     "processes adding at once, every add counts exactly once. A counter is stored as the\n"
     "decimal text of an int64, as Redis INCR keeps it: b\"41\" becomes b\"42\" (shmht.encode_counter,\n"
     "shmht.counter_value). NotACounterError (a ValueError) if the value is not such text;\n"
     "CounterOverflowError (an OverflowError) if delta or the sum leaves the int64 range.\n"
     "Either way nothing changes."},
    {"insert", fastcall<table_insert>(), METH_FASTCALL,
     "insert($self, key, value, /)\n--\n\n"
     "Store `value` only if `key` is absent (atomically): True if stored, False (changing\n"
     "nothing) if the key was present."},
    {"discard", table_discard, METH_O,
     "discard($self, key, /)\n--\n\nErase `key` if present: True if it was (and is now erased), else False."},
    {"get_many", fastcall<table_get_many>(), METH_FASTCALL,
     "get_many($self, keys, default=None, /)\n--\n\n"
     "A list of the values of `keys` (`default` where absent).\n\n"
     "Crosses into C++ once and releases the GIL while reading."},
    {"_assign_many", table_assign_many, METH_O,
     "_assign_many($self, pairs, /)\n--\n\nStore (key, value) pairs; the number of new keys (GIL released)."},
    {"_erase_all", table_erase_all, METH_NOARGS,
     "_erase_all($self, /)\n--\n\nErase every key; the number erased (GIL released)."},
    {"_keys", table_keys_iter, METH_NOARGS, "_keys($self, /)\n--\n\nAn iterator over the keys of one weakly consistent walk."},
    {"_values", table_values_iter, METH_NOARGS,
     "_values($self, /)\n--\n\nAn iterator over the values of one weakly consistent walk."},
    {"_items", table_items_iter, METH_NOARGS,
     "_items($self, /)\n--\n\nAn iterator over (key, value) pairs of one weakly consistent walk."},
    {"_take_any", table_take_any, METH_NOARGS,
     "_take_any($self, /)\n--\n\nRemove and return some (key, value) pair atomically, or None if empty (popitem)."},
    {"_temporary_file", table_temporary_file, METH_NOARGS,
     "_temporary_file($self, /)\n--\n\n(device, inode) of a temporary table, which its pickle carries; None if named."},
    {"_shares_handle_with", table_shares_handle_with, METH_O,
     "_shares_handle_with($self, other, /)\n--\n\nTrue if both use one attachment (unpickled copies share one)."},
    {"stats", table_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "A dict: path, engine, capacity (the starting size), slots, items, load_factor, max_key_bytes,\n"
     "max_value_bytes, max_bytes, max_processes, apparent_bytes, resident_bytes, arena_bytes,\n"
     "live_record_bytes, free_record_bytes, free_by_class ({record bytes: free records}),\n"
     "attached_pids, and the growth of the slot array: slot_array_bytes, growths, migrating,\n"
     "migration_groups and migration_groups_moved."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef g_getset[] = {
    {"path", table_get_path, nullptr, "The table's file (a bare name resolves to /dev/shm/<name>).", nullptr},
    {"engine", table_get_engine, nullptr, "The engine this handle uses ('global', 'seqlock', ...).", nullptr},
    {"read_only", table_get_read_only, nullptr, "True if opened with read_only=True (writes raise PermissionDeniedError).",
     nullptr},
    {"trust_foreign_owner", table_get_trust_foreign_owner, nullptr,
     "True if opened with trust_foreign_owner=True (kept when re-attaching after fork or in a spawned process).", nullptr},
    {"closed", table_get_closed, nullptr, "True after close() (or before the table was attached).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

// The C-API structs are filled field by field in add_table_type (C++ has no out-of-order
// designated initialisers); the head initialiser is the documented way to start a
// static type, and leaves the rest zero.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
PyMappingMethods g_mapping = {table_length, table_subscript, table_ass_subscript};
PySequenceMethods g_sequence = {};  // only sq_contains, set in add_table_type
PyTypeObject g_table_type = {PyVarObject_HEAD_INIT(nullptr, 0)};
#pragma GCC diagnostic pop

}  // namespace

bool add_table_type(PyObject* module) {
  if (pthread_atfork(nullptr, nullptr, on_fork_child) != 0) {
    PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
    return false;
  }
  g_sequence.sq_contains = table_contains;
  PyTypeObject& t = g_table_type;
  t.tp_name = "shmht._shmht._TableBase";
  t.tp_doc = "The C core of shmht.Table; use shmht.Table.";
  t.tp_basicsize = sizeof(TableObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
  t.tp_new = table_new;
  t.tp_dealloc = table_dealloc;
  t.tp_as_mapping = &g_mapping;
  t.tp_as_sequence = &g_sequence;
  t.tp_iter = table_iter;
  t.tp_methods = g_methods;
  t.tp_getset = g_getset;
  if (PyType_Ready(&t) < 0) return false;

  PyTypeObject& it = g_snapshot_type;
  it.tp_name = "shmht._shmht._Snapshot";
  it.tp_doc = "An iterator over one walk of a shmht.Table.";
  it.tp_basicsize = sizeof(SnapshotObject);
  it.tp_flags = Py_TPFLAGS_DEFAULT;
  it.tp_dealloc = snapshot_dealloc;
  it.tp_iter = PyObject_SelfIter;
  it.tp_iternext = snapshot_next;
  it.tp_methods = g_snapshot_methods;
  if (PyType_Ready(&it) < 0) return false;
  return PyModule_AddObjectRef(module, "_TableBase", reinterpret_cast<PyObject*>(&t)) == 0;
}

}  // namespace shmht::python
