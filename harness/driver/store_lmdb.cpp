// store_lmdb.cpp - LMDB as a peer: "lmdb" commits every write in its own transaction,
// "lmdb-batched" commits every `batch` writes (and before a read would need to wait).
//
// The environment is a directory on the chosen backing (tmpfs by default), opened with
// MDB_NOSYNC | MDB_WRITEMAP: no fsync, writes go straight into the shared map, which is
// the closest LMDB gets to an in-memory shared table. LMDB forbids using an environment
// across fork(), so the parent closes its environment before forking and every worker
// opens its own.
#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "store.hpp"

namespace shmht::harness {
namespace {

void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw std::runtime_error(std::string("lmdb ") + what + ": " + mdb_strerror(rc));
}

MDB_val as_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

// An open environment and its main database.
class Environment {
 public:
  Environment(const std::string& directory, std::uint64_t map_bytes, std::uint32_t max_readers) {
    check(mdb_env_create(&env_), "env_create");
    try {
      check(mdb_env_set_mapsize(env_, map_bytes), "set_mapsize");
      check(mdb_env_set_maxreaders(env_, max_readers), "set_maxreaders");
      check(mdb_env_open(env_, directory.c_str(), MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS, 0600), "env_open");
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env_, nullptr, 0, &txn), "txn_begin");
      const int rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
      if (rc != MDB_SUCCESS) mdb_txn_abort(txn);
      check(rc, "dbi_open");
      check(mdb_txn_commit(txn), "txn_commit");
    } catch (...) {
      mdb_env_close(env_);
      throw;
    }
  }
  ~Environment() { mdb_env_close(env_); }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  MDB_env* env() const { return env_; }
  MDB_dbi dbi() const { return dbi_; }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

class LmdbSession final : public StoreSession {
 public:
  LmdbSession(const std::string& directory, std::uint64_t map_bytes, std::uint32_t max_readers, std::uint32_t batch)
      : environment_(directory, map_bytes, max_readers), batch_(std::max<std::uint32_t>(batch, 1)) {}
  ~LmdbSession() override {
    try {
      flush();
    } catch (...) {
      // Destructor on a failure path: the writes are lost with the run.
    }
    if (read_txn_) mdb_txn_abort(read_txn_);
  }

  bool get(std::string_view key, std::span<char> value_out) override {
    MDB_val k = as_val(key), v{};
    int rc;
    if (write_txn_) {  // our own pending writes must be visible to us
      rc = mdb_get(write_txn_, environment_.dbi(), &k, &v);
    } else {
      // A reset/renewed read transaction keeps its reader slot: the cheap way to read.
      if (read_txn_) {
        check(mdb_txn_renew(read_txn_), "txn_renew");
      } else {
        check(mdb_txn_begin(environment_.env(), nullptr, MDB_RDONLY, &read_txn_), "txn_begin");
      }
      rc = mdb_get(read_txn_, environment_.dbi(), &k, &v);
      if (rc == MDB_SUCCESS) std::memcpy(value_out.data(), v.mv_data, std::min(v.mv_size, value_out.size()));
      mdb_txn_reset(read_txn_);
      if (rc == MDB_NOTFOUND) return false;
      check(rc, "get");
      return true;
    }
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "get");
    std::memcpy(value_out.data(), v.mv_data, std::min(v.mv_size, value_out.size()));
    return true;
  }

  bool insert(std::string_view key, std::string_view value) override {
    MDB_val k = as_val(key), v = as_val(value);
    const int rc = mdb_put(writer(), environment_.dbi(), &k, &v, MDB_NOOVERWRITE);
    if (rc != MDB_KEYEXIST) check(rc, "put");
    wrote();
    return rc == MDB_SUCCESS;
  }

  bool assign(std::string_view key, std::string_view value) override {
    MDB_val k = as_val(key), v = as_val(value);
    MDB_txn* txn = writer();
    int rc = mdb_put(txn, environment_.dbi(), &k, &v, MDB_NOOVERWRITE);
    const bool was_new = rc == MDB_SUCCESS;
    if (rc == MDB_KEYEXIST) rc = mdb_put(txn, environment_.dbi(), &k, &v, 0);
    check(rc, "put");
    wrote();
    return was_new;
  }

  bool erase(std::string_view key) override {
    MDB_val k = as_val(key);
    const int rc = mdb_del(writer(), environment_.dbi(), &k, nullptr);
    if (rc != MDB_NOTFOUND) check(rc, "del");
    wrote();
    return rc == MDB_SUCCESS;
  }

  void flush() override {
    if (!write_txn_) return;
    MDB_txn* txn = write_txn_;
    write_txn_ = nullptr;
    pending_ = 0;
    check(mdb_txn_commit(txn), "txn_commit");
  }

 private:
  MDB_txn* writer() {
    if (!write_txn_) check(mdb_txn_begin(environment_.env(), nullptr, 0, &write_txn_), "txn_begin");
    return write_txn_;
  }
  void wrote() {
    if (++pending_ >= batch_) flush();
  }

  Environment environment_;
  std::uint32_t batch_;
  std::uint32_t pending_ = 0;
  MDB_txn* write_txn_ = nullptr;
  MDB_txn* read_txn_ = nullptr;
};

class LmdbStore final : public Store {
 public:
  LmdbStore(const StoreParams& params, std::uint32_t batch) : batch_(batch) {
    if (params.backing.directory.empty()) throw std::runtime_error("lmdb needs a directory backing");
    directory_ = params.backing.directory + "/" + params.name_prefix + "lmdb";
    if (mkdir(directory_.c_str(), 0700) != 0) {
      throw std::runtime_error("creating " + directory_ + ": " + std::strerror(errno));
    }
    // B+tree pages, overflow and free pages: a generous multiple of the raw data.
    const std::uint64_t data = params.capacity * (std::uint64_t{params.key_bytes} + params.value_bytes + 64);
    map_bytes_ = std::max<std::uint64_t>(data * 6, std::uint64_t{256} << 20);
    max_readers_ = std::max<std::uint32_t>(params.processes * 2 + 8, 126);
  }
  ~LmdbStore() override { destroy(); }

  std::unique_ptr<StoreSession> attach() override {
    return std::make_unique<LmdbSession>(directory_, map_bytes_, max_readers_, batch_);
  }

  Footprint footprint() override {
    Footprint f;
    const std::string data = directory_ + "/data.mdb";
    f.location = data;
    struct stat st {};
    if (stat(data.c_str(), &st) == 0) {
      f.apparent_bytes = static_cast<std::uint64_t>(st.st_size);
      f.resident_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    try {
      Environment env(directory_, map_bytes_, max_readers_);
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env.env(), nullptr, MDB_RDONLY, &txn), "txn_begin");
      MDB_stat stat_out{};
      const int rc = mdb_stat(txn, env.dbi(), &stat_out);
      mdb_txn_abort(txn);
      if (rc == MDB_SUCCESS) f.items = stat_out.ms_entries;
    } catch (...) {
      // The item count is optional.
    }
    return f;
  }

  void destroy() noexcept override {
    if (directory_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
    directory_.clear();
  }

 private:
  std::uint32_t batch_;
  std::string directory_;
  std::uint64_t map_bytes_ = 0;
  std::uint32_t max_readers_ = 0;
};

StoreKind lmdb_kind(std::string name, std::string description, bool batched) {
  return {
      .name = std::move(name),
      .family = StoreFamily::kPeer,
      .description = std::move(description),
      .backings = {BackingKind::kTmpfs, BackingKind::kDisk},
      .process_private = false,
      .unavailable_reason = [] { return std::optional<std::string>(); },
      .create = [batched](const StoreParams& p) -> std::unique_ptr<Store> {
        return std::make_unique<LmdbStore>(p, batched ? std::max<std::uint32_t>(p.batch, 1) : 1);
      },
  };
}

const StoreRegistration kOnePutPerTransaction(
    lmdb_kind("lmdb", "LMDB, MDB_NOSYNC|MDB_WRITEMAP, one write per transaction", false));
const StoreRegistration kBatched(
    lmdb_kind("lmdb-batched", "LMDB, MDB_NOSYNC|MDB_WRITEMAP, --batch writes per transaction", true));

}  // namespace
}  // namespace shmht::harness
