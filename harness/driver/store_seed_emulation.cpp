// store_seed_emulation.cpp - a BASELINE, not an engine: pyshmht's table as it was, so the
// harness can reproduce its slowness, its lost keys and its file size, and the ablation
// can remove one cause at a time. Never use it to store anything.
//
// What is reproduced (layout in seed_layout.hpp; facts from pyshmht's hashtable.c/shmht.c):
//   * one file sized for its full capacity at create, extended sparsely with a seek and a
//     one-byte write (pyshmht's lseek64 + write), and mapped MAP_SHARED whole;
//   * fixed 1,280-byte buckets and a flag byte per slot; slot count from pyshmht's prime
//     table; inserts fail above 0.65 load; no resize;
//   * djb2 and triangular quadratic probing; key compare = equal lengths, then strncmp;
//   * set = probe for the key (overwrite its value if found), else probe again for an
//     empty or removed slot, check the load, `size += 1`, set the flag to used, copy the
//     key, copy the value. No lock, no atomic read-modify-write anywhere.
//
// Why relaxed atomics instead of plain loads and stores: two processes racing plain
// accesses on the same bytes is a data race, which C++ makes undefined behaviour - a
// compiler may assume it never happens (keep a flag in a register, merge or tear stores
// differently from pyshmht's C compiler). Each shared byte and word is therefore
// accessed through std::atomic_ref with memory_order_relaxed: that is well defined, it
// compiles to the same plain x86 loads and stores pyshmht's C did, and it keeps exactly
// the same NON-atomic protocol - the counter is a load then a store (increments are lost),
// the empty-slot check and the flag store are separate (two writers claim one slot and
// the second key overwrites the first: a lost key), key and value are copied byte by
// byte with no ordering against the flag (a reader can see a used flag over a half-copied
// key: a torn or unexpected key). The effects are the seed's; the code is not UB.
//
// Knobs, each a store name so sweeps can put them side by side (the ablation):
//   seed-emulation              as pyshmht: sparse file, lazily faulted
//   seed-emulation-populate     prefaulted: the creator write-populates every page
//                               (MADV_POPULATE_WRITE) and every attach maps with
//                               MAP_POPULATE, so the timed phase takes no first-touch faults
//   seed-emulation-right-sized  buckets sized to the workload's longest key and value
//                               instead of 1,280 bytes; everything else as pyshmht
// The backing (disk, tmpfs, hugepages) is the harness's --backing; hugepages is skipped
// with its reason where the machine has none. Compact layout and synchronisation are the
// ablation's later steps: those are our engines (store_shmht.cpp).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "seed_layout.hpp"
#include "store.hpp"

namespace shmht::harness {
namespace {

using seed::Flag;
using seed::Geometry;

// pyshmht's ht_magic.
constexpr std::uint32_t kSeedMagic = 0xBFBF;

// The header's fields, at the offsets of pyshmht's `struct __hashtable` on x86-64.
struct SeedHeader {
  std::uint32_t magic;
  std::uint64_t ref_cnt, orig_capacity, capacity, size, flag_offset, bucket_offset;
};
static_assert(sizeof(SeedHeader) <= seed::kHeaderBytes, "the header must fit pyshmht's 1,024 reserved bytes");
static_assert(offsetof(SeedHeader, size) % alignof(std::uint64_t) == 0, "atomic_ref needs the counter aligned");

enum class Variant { kAsSeed, kPopulate, kRightSized };

struct SeedConfig {
  Variant variant = Variant::kAsSeed;
  Geometry geometry;
  std::string path;
  bool hugetlbfs = false;
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

// Relaxed single accesses: see the file comment for why not plain ones.
template <class T>
T load(T& where) {
  return std::atomic_ref<T>(where).load(std::memory_order_relaxed);
}
template <class T>
void store(T& where, T value) {
  std::atomic_ref<T>(where).store(value, std::memory_order_relaxed);
}

// One process's mapping of the seed file.
class SeedMapping {
 public:
  SeedMapping(const SeedConfig& config, bool populate) : config_(config) {
    fd_ = ::open(config.path.c_str(), O_RDWR);
    if (fd_ < 0) fail("open " + config.path);
    bytes_ = config.geometry.file_bytes();
    const int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    void* base = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, flags, fd_, 0);
    if (base == MAP_FAILED) {
      ::close(fd_);
      fail("mmap " + config.path);
    }
    base_ = static_cast<char*>(base);
  }
  ~SeedMapping() {
    munmap(base_, bytes_);
    ::close(fd_);
  }
  SeedMapping(const SeedMapping&) = delete;
  SeedMapping& operator=(const SeedMapping&) = delete;

  SeedHeader& header() { return *reinterpret_cast<SeedHeader*>(base_); }
  std::uint8_t& flag(std::uint64_t slot) {
    return reinterpret_cast<std::uint8_t&>(base_[config_.geometry.flag_offset() + slot]);
  }
  char* key_region(std::uint64_t slot) {
    return base_ + config_.geometry.bucket_offset() + slot * config_.geometry.bucket_bytes();
  }
  char* value_region(std::uint64_t slot) { return key_region(slot) + config_.geometry.key_region; }
  char* base() { return base_; }
  std::uint64_t bytes() const { return bytes_; }
  const Geometry& geometry() const { return config_.geometry; }

 private:
  const SeedConfig& config_;
  int fd_ = -1;
  char* base_ = nullptr;
  std::uint64_t bytes_ = 0;
};

// A region is { u32 length; char bytes[] }, written and read a byte at a time.
void write_region(char* region, std::string_view bytes) {
  store(*reinterpret_cast<std::uint32_t*>(region), static_cast<std::uint32_t>(bytes.size()));
  for (std::size_t i = 0; i < bytes.size(); ++i) store(region[4 + i], bytes[i]);
}

std::uint32_t region_length(char* region) { return load(*reinterpret_cast<std::uint32_t*>(region)); }

// Reads at most `limit` bytes: a torn length must not run past the region.
void read_region(char* region, std::uint64_t limit, std::string& out) {
  const std::uint64_t n = std::min<std::uint64_t>(region_length(region), limit);
  out.resize(n);
  for (std::uint64_t i = 0; i < n; ++i) out[i] = load(region[4 + i]);
}

// pyshmht's is_equal: equal lengths, then strncmp over that length (which stops at a NUL).
bool key_equals(char* region, std::string_view key) {
  if (region_length(region) != key.size()) return false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    const char c = load(region[4 + i]);
    if (c != key[i]) return false;
    if (c == '\0') return true;
  }
  return true;
}

class SeedSession final : public StoreSession {
 public:
  SeedSession(const SeedConfig& config) : map_(config, config.variant == Variant::kPopulate) {}

  bool get(std::string_view key, std::span<char> value_out) override {
    const std::uint64_t slot = position(key, false);
    if (static_cast<Flag>(load(map_.flag(slot))) != Flag::kUsed) return false;
    char* value = map_.value_region(slot);
    const std::uint64_t n = std::min<std::uint64_t>({region_length(value), value_out.size(), limit_value()});
    for (std::uint64_t i = 0; i < n; ++i) value_out[i] = load(value[4 + i]);
    return true;
  }

  // pyshmht has only set (insert or overwrite); insert is get-then-set, as a caller of
  // pyshmht would write it.
  bool insert(std::string_view key, std::string_view value) override {
    char scratch[1];
    if (get(key, scratch)) return false;
    return assign(key, value);
  }

  bool assign(std::string_view key, std::string_view value) override {
    check_sizes(key, value);
    // 1. Present: overwrite the value in place.
    const std::uint64_t found = position(key, false);
    if (static_cast<Flag>(load(map_.flag(found))) == Flag::kUsed) {
      write_region(map_.value_region(found), value);
      return false;
    }
    // 2. Absent: a second probe for an empty or removed slot.
    const std::uint64_t slot = position(key, true);
    SeedHeader& h = map_.header();
    const std::uint64_t size = load(h.size);
    if (map_.geometry().over_loaded(size)) {
      throw std::runtime_error("seed table over loaded: " + std::to_string(size) + " items in " +
                               std::to_string(map_.geometry().slots) + " slots (pyshmht stops at 0.65 load)");
    }
    store(h.size, size + 1);  // a load and a store: concurrent increments are lost
    store(map_.flag(slot), static_cast<std::uint8_t>(Flag::kUsed));
    write_region(map_.key_region(slot), key);
    write_region(map_.value_region(slot), value);
    return true;
  }

  bool erase(std::string_view key) override {
    const std::uint64_t slot = position(key, false);
    if (static_cast<Flag>(load(map_.flag(slot))) != Flag::kUsed) return false;
    store(map_.flag(slot), static_cast<std::uint8_t>(Flag::kRemoved));
    SeedHeader& h = map_.header();
    store(h.size, load(h.size) - 1);
    return true;
  }

  // pyshmht's ht_iter_next: scan the flags, yield every used slot.
  void for_each(const std::function<void(std::string_view, std::string_view)>& fn) override {
    std::string key, value;
    const Geometry& g = map_.geometry();
    for (std::uint64_t slot = 0; slot < g.slots; ++slot) {
      if (static_cast<Flag>(load(map_.flag(slot))) != Flag::kUsed) continue;
      read_region(map_.key_region(slot), g.max_key_bytes(), key);
      read_region(map_.value_region(slot), g.max_value_bytes(), value);
      fn(key, value);
    }
  }

 private:
  std::uint64_t limit_value() const { return map_.geometry().max_value_bytes(); }

  void check_sizes(std::string_view key, std::string_view value) const {
    // pyshmht refuses 4 + size >= region size.
    const Geometry& g = map_.geometry();
    if (key.size() >= g.max_key_bytes() || value.size() >= g.max_value_bytes()) {
      throw std::invalid_argument("seed table: key of " + std::to_string(key.size()) + " or value of " +
                                  std::to_string(value.size()) + " bytes is too large (limits " +
                                  std::to_string(g.max_key_bytes() - 1) + " and " +
                                  std::to_string(g.max_value_bytes() - 1) + ")");
    }
  }

  // pyshmht's ht_position: the slot holding `key`, or the first empty slot (or removed
  // slot, when `removed_is_empty`) on its probe sequence. pyshmht, after a full cycle,
  // zeroes every flag; this emulation throws instead (the seed scenario never gets there).
  std::uint64_t position(std::string_view key, bool removed_is_empty) {
    const std::uint64_t slots = map_.geometry().slots;
    seed::ProbeSequence probe(seed::djb2(key) % slots, slots);
    for (std::uint64_t steps = 0; steps < slots; ++steps, probe.next()) {
      const std::uint64_t i = probe.slot();
      const auto flag = static_cast<Flag>(load(map_.flag(i)));
      if (flag == Flag::kEmpty) return i;
      if (flag == Flag::kRemoved && removed_is_empty) return i;
      if (flag == Flag::kUsed && key_equals(map_.key_region(i), key)) return i;
    }
    throw std::runtime_error("seed table: probe sequence exhausted without an empty slot");
  }

  SeedMapping map_;
};

class SeedStore final : public Store {
 public:
  SeedStore(Variant variant, const StoreParams& params) {
    config_.variant = variant;
    config_.geometry = variant == Variant::kRightSized
                           ? seed::right_sized_geometry(params.capacity, params.key_bytes + 1, params.value_bytes + 1)
                           : seed::fixed_geometry(params.capacity);
    if (config_.geometry.slots == 0) throw std::invalid_argument("seed table: capacity beyond pyshmht's prime table");
    config_.path = params.backing.directory + "/" + params.name_prefix + "seed-table";
    config_.hugetlbfs = params.backing.huge_pages == "hugetlbfs";
    create_file();
    try {
      initialise();
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~SeedStore() override { destroy(); }

  std::unique_ptr<StoreSession> attach() override { return std::make_unique<SeedSession>(config_); }

  Footprint footprint() override {
    Footprint f;
    f.location = config_.path;
    struct stat st {};
    if (::stat(config_.path.c_str(), &st) == 0) {
      f.apparent_bytes = static_cast<std::uint64_t>(st.st_size);
      f.resident_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
      SeedMapping map(config_, false);
      f.items = load(map.header().size);  // the shared counter, lost increments and all
    }
    return f;
  }

  void destroy() noexcept override {
    if (!config_.path.empty()) ::unlink(config_.path.c_str());
  }

 private:
  // pyshmht's shmht_open: extend the file sparsely to its full size. hugetlbfs takes
  // no write(), only ftruncate.
  void create_file() {
    const int fd = ::open(config_.path.c_str(), O_RDWR | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR);
    if (fd < 0) fail("create " + config_.path);
    const auto bytes = static_cast<off_t>(config_.geometry.file_bytes());
    bool ok;
    if (config_.hugetlbfs) {
      ok = ftruncate(fd, bytes) == 0;
    } else {
      const char zero = 0;
      ok = lseek(fd, bytes - 1, SEEK_SET) == bytes - 1 && ::write(fd, &zero, 1) == 1;
    }
    const int saved = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(config_.path.c_str());
      errno = saved;
      fail("size " + config_.path);
    }
  }

  // pyshmht's ht_init with force_init: header, then the flags zeroed (bzero).
  void initialise() {
    SeedMapping map(config_, false);
    if (config_.variant == Variant::kPopulate && madvise(map.base(), map.bytes(), MADV_POPULATE_WRITE) != 0) {
      fail("madvise(MADV_POPULATE_WRITE) " + config_.path);
    }
    SeedHeader& h = map.header();
    const Geometry& g = config_.geometry;
    h.magic = kSeedMagic;
    h.ref_cnt = 0;
    h.orig_capacity = g.slots;  // unused by the emulation; pyshmht keeps the requested capacity
    h.capacity = g.slots;
    h.size = 0;
    h.flag_offset = g.flag_offset();
    h.bucket_offset = g.bucket_offset();
    std::memset(&map.flag(0), 0, g.slots);
  }

  SeedConfig config_;
};

void register_variant(const char* name, Variant variant, const char* description) {
  StoreRegistration({
      .name = name,
      .family = StoreFamily::kBaseline,
      .description = description,
      .backings = {BackingKind::kDisk, BackingKind::kTmpfs, BackingKind::kHugePages},
      .process_private = false,
      .unavailable_reason = [] { return std::optional<std::string>(); },
      .create = [variant](const StoreParams& p) -> std::unique_ptr<Store> {
        return std::make_unique<SeedStore>(variant, p);
      },
  });
}

const bool kRegistered = [] {
  register_variant("seed-emulation", Variant::kAsSeed,
                   "BASELINE, unsafe: pyshmht's layout and unsynchronised set (1,280-byte slots, sparse file)");
  register_variant("seed-emulation-populate", Variant::kPopulate,
                   "BASELINE, unsafe: seed-emulation with the file write-populated at create, MAP_POPULATE at attach");
  register_variant("seed-emulation-right-sized", Variant::kRightSized,
                   "BASELINE, unsafe: seed-emulation with slots sized to the longest key and value");
  return true;
}();

}  // namespace
}  // namespace shmht::harness
