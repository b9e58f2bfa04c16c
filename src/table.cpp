// table.cpp - the public Table: argument checks, hashing, fork safety, then the engine.
#include "shmht/table.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "engines/engine.hpp"
#include "engines/recovery.hpp"
#include "fault_injection.hpp"
#include "hash.hpp"
#include "region.hpp"
#include "table_access.hpp"

namespace shmht {

namespace detail {
std::atomic<testing::FaultHook> g_fault_hook{nullptr};
}  // namespace detail

void testing::set_fault_hook(FaultHook hook) noexcept { detail::g_fault_hook.store(hook, std::memory_order_relaxed); }

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
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kSystem: return "system";
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

constexpr std::uint64_t kForEachBatchSlots = 1024;

}  // namespace

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
      // come round again (engines/owner.hpp).
      impl->repaired_at_attach_ += impl->engine_->with_exclusive_access([] {});
    }
    return impl;
  }

  std::uint64_t repaired_at_attach() const noexcept { return repaired_at_attach_; }

  ~TableImpl() {
    // A handle inherited across fork() names its parent's entry: leave that alone.
    if (!inherited_across_fork()) context_.region().detach(context_.entry_index());
  }

  bool inherited_across_fork() const noexcept {
    return fork_generation_ != g_fork_generation.load(std::memory_order_relaxed);
  }

  HashedKey key(std::string_view bytes) const {
    check_usable();
    if (bytes.size() > context_.fixed().max_key_bytes) {
      throw Error(ErrorCode::kKeyTooLarge, "key is " + std::to_string(bytes.size()) + " bytes; this table's maximum is " +
                                               std::to_string(context_.fixed().max_key_bytes));
    }
    return {bytes, hash_key(bytes, context_.fixed().hash_seed)};
  }

  void check_value(std::string_view value) const {
    if (value.size() > context_.fixed().max_value_bytes) {
      throw Error(ErrorCode::kValueTooLarge, "value is " + std::to_string(value.size()) +
                                                 " bytes; this table's maximum is " +
                                                 std::to_string(context_.fixed().max_value_bytes));
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
    s.slots = r.fixed().home_slots;
    s.items = size();
    s.load_factor = static_cast<double>(s.items) / static_cast<double>(s.slots);
    s.max_key_bytes = r.fixed().max_key_bytes;
    s.max_value_bytes = r.fixed().max_value_bytes;
    s.apparent_bytes = r.apparent_bytes();
    s.resident_bytes = r.allocated_bytes();
    s.arena_bytes = r.header().arena_end.load(std::memory_order_relaxed) - r.fixed().arena_offset;
    std::int64_t live = 0;
    std::uint64_t free = 0;
    for (std::uint32_t i = 0; i < r.fixed().max_processes; ++i) {
      live = layout::wrapping_add(live, r.entry(i).live_bytes.load(std::memory_order_relaxed));
      free += r.entry(i).free_bytes.load(std::memory_order_relaxed);
    }
    s.live_record_bytes = live < 0 ? 0 : static_cast<std::uint64_t>(live);
    s.free_record_bytes = free + r.header().shared_free_bytes.load(std::memory_order_relaxed);
    s.attached_pids = r.attached_pids();
    return s;
  }

  void for_each(const std::function<void(std::string_view, std::string_view)>& fn) {
    check_usable();
    const std::uint64_t home_slots = context_.slots().home_slots();
    std::vector<KeyValue> batch;
    for (std::uint64_t begin = 0; begin < home_slots; begin += kForEachBatchSlots) {
      batch.clear();
      engine_->copy_home_range(begin, std::min(home_slots, begin + kForEachBatchSlots), &batch);
      for (const auto& [k, v] : batch) fn(k, v);
    }
  }

  EngineBase& engine() { return *engine_; }
  TableContext& context() { return context_; }
  Engine engine_kind() const { return engine_kind_; }
  const std::string& path() { return context_.region().path(); }

 private:
  TableImpl(Region region, Engine engine, std::uint32_t entry)
      : context_(std::move(region), entry), engine_kind_(engine) {}

  TableContext context_;
  Engine engine_kind_;
  std::unique_ptr<EngineBase> engine_;
  std::uint64_t repaired_at_attach_ = 0;
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
  return Table(TableImpl::attach(Region::open(resolve_table_path(name)), options.engine, options.stripes));
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
  const Region region = Region::open(resolve_table_path(name));
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

bool Table::remove(const std::string& name) {
  const std::string path = resolve_table_path(name);
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw Error(errno == EACCES || errno == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kSystem,
              "removing " + path + ": " + std::strerror(errno));
}

std::optional<std::string> Table::get(std::string_view key) {
  const HashedKey k = impl().key(key);
  std::string value;
  if (!impl_->engine().get(k, &value)) return std::nullopt;
  return value;
}

std::optional<std::size_t> Table::get(std::string_view key, std::span<char> out) {
  return impl().engine().get(impl_->key(key), out);
}

bool Table::contains(std::string_view key) { return impl().engine().contains(impl_->key(key)); }

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

bool Table::erase(std::string_view key) { return impl().engine().erase(impl_->key(key)); }

std::uint64_t Table::size() { return impl().size(); }

void Table::for_each(const std::function<void(std::string_view, std::string_view)>& fn) { impl().for_each(fn); }

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
