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
//                                                   (or enqueue... collect: pipelined)
//            wait for the workers <---------------------------------------'
//            store.footprint(); store.destroy()     destroy() also runs on every failure
//
// A store whose data lives in a server process (Redis) starts that server in create()
// and stops it in destroy(); server_usage() reports its CPU time, which the workers'
// own figures do not include.
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
#include "workload.hpp"

namespace shmht::harness {

// What every store is created with.
struct StoreParams {
  std::string name_prefix;     // every file or segment the store makes begins with it
  Backing backing;             // resolved: where the store's memory lives
  std::uint64_t capacity = 0;  // distinct keys the workload can insert
  std::uint64_t start_capacity = 0;  // shmht: where the slot array starts (it grows to capacity)
  std::uint32_t key_bytes = 0, value_bytes = 0;
  std::uint32_t processes = 1;
  std::uint32_t batch = 1;     // writes per commit, for stores with transactions
};

// The store's memory as the file system sees it. Unset fields: not applicable.
struct Footprint {
  std::string location;
  std::optional<std::uint64_t> apparent_bytes, resident_bytes, items;
  // shmht only: the slot array's size and growth (issue 20), when the run ended.
  std::optional<std::uint64_t> slot_array_bytes, growths;
  std::optional<bool> migrating;
};

// The result of one pipelined operation: what the one-at-a-time call would have returned,
// or why the operation failed (an error reply; the other operations still count).
struct OpResult {
  bool value = false;
  std::string error;
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
  // Pipelining, for stores whose operations are requests to a server: enqueue() sends
  // nothing yet (or nothing that needs an answer); collect() sends what is queued and
  // fills one result per queued operation, in order. A session that cannot pipeline keeps
  // these defaults. Throws only when the session itself fails (a lost connection).
  virtual bool can_pipeline() const { return false; }
  virtual void enqueue(OpType op, std::string_view key, std::string_view value) {
    (void)op, (void)key, (void)value;
    throw std::logic_error("this store cannot pipeline");
  }
  virtual void collect(std::span<OpResult> results) {
    (void)results;
    throw std::logic_error("this store cannot pipeline");
  }
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

// A server process that a store runs for its workers to talk to (redis-server), and its
// CPU time so far.
struct ServerUsage {
  std::string program, version;
  int pid = 0;
  double user_s = 0, sys_s = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // In the parent (for prefill) or in a worker after fork.
  virtual std::unique_ptr<StoreSession> attach() = 0;
  // Called in the parent just before fork: release anything a child must not inherit in use.
  virtual void before_fork() {}
  virtual Footprint footprint() = 0;
  // Stores served by a process of their own: its CPU time so far, read by the driver just
  // before and after the timed phase; nullopt if it cannot be read. Must not throw.
  // Others keep the default.
  virtual std::optional<ServerUsage> server_usage() { return std::nullopt; }
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
  // True: in the timed phase each worker sends --batch operations per round trip
  // (StoreSession::enqueue/collect) instead of one at a time.
  bool pipelined = false;
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
