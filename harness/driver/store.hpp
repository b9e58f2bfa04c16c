// store.hpp - what the driver benchmarks: our engines, peers and baselines, behind one
// small interface.
//
// Life of a store in one driver run:
//
//   parent:  kind.create(params) -> Store        makes the shared file / segment / env
//            store.attach() -> session, prefill, session dropped
//            store.before_fork()
//            fork N workers ------------------------------------------------.
//   worker:                                         store.attach() -> session (after fork)
//                                                   get/insert/assign/erase..., flush()
//            wait for the workers <---------------------------------------'
//            store.footprint(); store.destroy()     destroy() also runs on every failure
//
// Adding a store is one file: implement Store and StoreSession and register a StoreKind
// from a static object in that file (see store_private_map.cpp, the smallest), then list
// the file in harness/meson.build.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backing.hpp"

namespace shmht::harness {

// What every store is created with.
struct StoreParams {
  std::string name_prefix;     // every file or segment the store makes begins with it
  Backing backing;             // resolved: where the store's memory lives
  std::uint64_t capacity = 0;  // distinct keys the workload can insert
  std::uint32_t key_bytes = 0, value_bytes = 0;
  std::uint32_t processes = 1;
  std::uint32_t batch = 1;     // writes per commit, for stores with transactions
};

// The store's memory as the file system sees it. Unset fields: not applicable.
struct Footprint {
  std::string location;
  std::optional<std::uint64_t> apparent_bytes, resident_bytes, items;
};

// One process's handle on the store. Never shared between processes.
class StoreSession {
 public:
  virtual ~StoreSession() = default;
  // True if found; copies the value into `value_out` (truncated to its size).
  virtual bool get(std::string_view key, std::span<char> value_out) = 0;
  // True if the key was absent (and is now inserted).
  virtual bool insert(std::string_view key, std::string_view value) = 0;
  // True if the key was new; overwrites otherwise.
  virtual bool assign(std::string_view key, std::string_view value) = 0;
  // True if the key was present.
  virtual bool erase(std::string_view key) = 0;
  // Makes buffered writes visible (batched stores); the default has nothing to do.
  virtual void flush() {}
  // Lock-free coordination costs of this session so far: failed multi-word CASes and
  // operations of others it finished (shmht's lockfree engine; zeros elsewhere).
  virtual std::pair<std::uint64_t, std::uint64_t> coordination() { return {0, 0}; }
  // Calls fn(key, value) for every entry (the seed scenario's "foreach" passes). Stores
  // that cannot iterate keep this default, which throws; the driver reports the error.
  virtual void for_each(const std::function<void(std::string_view key, std::string_view value)>& fn) {
    (void)fn;
    throw std::runtime_error("this store has no iterate operation (the seed scenario needs one)");
  }
};

class Store {
 public:
  virtual ~Store() = default;
  // In the parent (for prefill) or in a worker after fork.
  virtual std::unique_ptr<StoreSession> attach() = 0;
  // Called in the parent just before fork: release anything a child must not inherit in use.
  virtual void before_fork() {}
  virtual Footprint footprint() = 0;
  // Removes files and segments. Idempotent; must not throw (it runs on failure paths).
  virtual void destroy() noexcept = 0;
};

enum class StoreFamily { kEngine, kPeer, kBaseline };
std::string_view store_family_name(StoreFamily family);

struct StoreKind {
  std::string name;         // what sweeps, results and plots call it
  StoreFamily family;
  std::string description;
  std::vector<BackingKind> backings;  // supported backings
  // True: the data lives in the worker's own heap, so the one worker prefills it itself
  // and there can be only one process.
  bool process_private = false;
  // nullopt when this build can run it; otherwise why not ("engine 'seqlock' is not built").
  std::function<std::optional<std::string>()> unavailable_reason;
  std::function<std::unique_ptr<Store>(const StoreParams&)> create;
};

// Called from a static object in each store's file.
struct StoreRegistration {
  explicit StoreRegistration(StoreKind kind);
};

const std::vector<StoreKind>& store_kinds();
const StoreKind* find_store_kind(std::string_view name);

}  // namespace shmht::harness
