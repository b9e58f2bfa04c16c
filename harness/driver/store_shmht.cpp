// store_shmht.cpp - our table, one store kind per engine ("global", "striped", ...).
//
// The parent creates the table (and keeps that handle open: for a memfd table it is
// what keeps /proc/<pid>/fd/<n> valid); every worker opens its own handle after fork,
// as the fork rule in shmht/table.hpp requires.
#include <algorithm>

#include "shmht/table.hpp"
#include "store.hpp"

namespace shmht::harness {
namespace {

class ShmhtSession final : public StoreSession {
 public:
  explicit ShmhtSession(Table table) : table_(std::move(table)) {}
  ~ShmhtSession() override { table_.close(); }
  bool get(std::string_view key, std::span<char> value_out) override { return table_.get(key, value_out).has_value(); }
  bool insert(std::string_view key, std::string_view value) override { return table_.insert(key, value); }
  bool assign(std::string_view key, std::string_view value) override { return table_.assign(key, value); }
  bool erase(std::string_view key) override { return table_.erase(key); }
  void for_each(const std::function<void(std::string_view, std::string_view)>& fn) override { table_.for_each(fn); }
  std::pair<std::uint64_t, std::uint64_t> coordination() override {
    const shmht::OperationCounters c = table_.counters();
    return {c.failed_cas, c.helped};
  }

 private:
  Table table_;
};

class ShmhtStore final : public Store {
 public:
  ShmhtStore(Engine engine, const StoreParams& params) : engine_(engine) {
    CreateOptions options;
    // Headroom over the key count: the workload may insert every key it names.
    options.capacity = std::max<std::uint64_t>(params.capacity + params.capacity / 8, 1024);
    // --start-capacity: a table that starts small and grows to hold the keys.
    if (params.start_capacity != 0 && params.start_capacity < params.capacity) options.capacity = params.start_capacity;
    options.max_key_bytes = params.key_bytes;
    options.max_value_bytes = params.value_bytes;
    options.max_processes = std::max<std::uint32_t>(params.processes + 8, 16);
    options.engine = engine;
    // Bound the address range each process reserves to a generous multiple of the data.
    const std::uint64_t data = params.capacity * (std::uint64_t{params.key_bytes} + params.value_bytes + 64);
    options.max_bytes = std::max<std::uint64_t>(data * 8, std::uint64_t{256} << 20);
    if (params.backing.kind == BackingKind::kMemfd) {
      creator_ = Table::create_anonymous(options);
    } else {
      named_path_ = params.backing.directory + "/" + params.name_prefix + "table";
      creator_ = Table::create(named_path_, options);
    }
    path_ = creator_->path();
  }
  ~ShmhtStore() override { destroy(); }

  std::unique_ptr<StoreSession> attach() override {
    return std::make_unique<ShmhtSession>(Table::open(path_, {.engine = engine_}));
  }

  Footprint footprint() override {
    Footprint f;
    f.location = path_;
    if (!creator_) return f;
    const Stats s = creator_->stats();
    f.apparent_bytes = s.apparent_bytes;
    f.resident_bytes = s.resident_bytes;
    f.items = s.items;
    f.slot_array_bytes = s.slot_array_bytes;
    f.growths = s.growths;
    f.migrating = s.migrating;
    return f;
  }

  void destroy() noexcept override {
    if (creator_) {
      creator_->close();
      creator_.reset();
    }
    if (!named_path_.empty()) {
      try {
        Table::remove(named_path_, {.force = true});
      } catch (...) {
        // Already gone; nothing else to clean.
      }
      named_path_.clear();
    }
  }

 private:
  Engine engine_;
  std::optional<Table> creator_;
  std::string path_, named_path_;
};

std::optional<std::string> unavailable(Engine engine) {
  if (engine_is_built(engine)) return std::nullopt;
  return "engine '" + std::string(engine_name(engine)) + "' is not built in this build of shmht";
}

// One registration per engine, in shmht::kAllEngines order.
const bool kRegistered = [] {
  for (Engine engine : kAllEngines) {
    StoreRegistration({
        .name = std::string(engine_name(engine)),
        .family = StoreFamily::kEngine,
        .description = "shmht table, engine '" + std::string(engine_name(engine)) + "'",
        .backings = {BackingKind::kTmpfs, BackingKind::kDisk, BackingKind::kMemfd, BackingKind::kHugePages},
        .process_private = false,
        .unavailable_reason = [engine] { return unavailable(engine); },
        .create = [engine](const StoreParams& p) -> std::unique_ptr<Store> {
          return std::make_unique<ShmhtStore>(engine, p);
        },
    });
  }
  return true;
}();

}  // namespace
}  // namespace shmht::harness
