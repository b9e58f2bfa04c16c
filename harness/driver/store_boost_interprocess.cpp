// store_boost_interprocess.cpp - Boost.Interprocess as a peer: a boost::unordered_map of
// interprocess strings in a managed_shared_memory segment (/dev/shm), every operation
// under one interprocess_sharable_mutex (shared for get, exclusive for writes). This is
// what a C++ user reaches for first when asked for "a hash map in shared memory".
//
// Lookups use unordered_map's compatible-key find(key, hash, equal) with a string_view,
// so a get allocates nothing in the segment; only inserts construct shared strings.
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <boost/interprocess/sync/interprocess_sharable_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/interprocess/sync/sharable_lock.hpp>
#include <boost/unordered_map.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "store.hpp"

namespace shmht::harness {
namespace {

namespace bip = boost::interprocess;

using Segment = bip::managed_shared_memory;
using CharAllocator = bip::allocator<char, Segment::segment_manager>;
using SharedString = bip::basic_string<char, std::char_traits<char>, CharAllocator>;

// One hash for shared strings and string_views, so compatible-key lookups agree.
struct BytesHash {
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const SharedString& s) const noexcept { return (*this)(std::string_view(s.data(), s.size())); }
};
struct BytesEqual {
  static std::string_view view(const SharedString& s) { return {s.data(), s.size()}; }
  bool operator()(const SharedString& a, const SharedString& b) const noexcept { return view(a) == view(b); }
  bool operator()(std::string_view a, const SharedString& b) const noexcept { return a == view(b); }
  bool operator()(const SharedString& a, std::string_view b) const noexcept { return view(a) == b; }
};

using Entry = std::pair<const SharedString, SharedString>;
using EntryAllocator = bip::allocator<Entry, Segment::segment_manager>;
using SharedMap = boost::unordered_map<SharedString, SharedString, BytesHash, BytesEqual, EntryAllocator>;

constexpr const char* kMapName = "map";
constexpr const char* kMutexName = "map_mutex";

class BoostSession final : public StoreSession {
 public:
  explicit BoostSession(const std::string& segment_name)
      : segment_(bip::open_only, segment_name.c_str()),
        map_(segment_.find<SharedMap>(kMapName).first),
        mutex_(segment_.find<bip::interprocess_sharable_mutex>(kMutexName).first) {
    if (!map_ || !mutex_) throw std::runtime_error("segment " + segment_name + " has no map");
  }

  bool get(std::string_view key, std::span<char> value_out) override {
    bip::sharable_lock<bip::interprocess_sharable_mutex> lock(*mutex_);
    auto it = map_->find(key, BytesHash{}, BytesEqual{});
    if (it == map_->end()) return false;
    std::memcpy(value_out.data(), it->second.data(), std::min(it->second.size(), value_out.size()));
    return true;
  }

  bool insert(std::string_view key, std::string_view value) override {
    bip::scoped_lock<bip::interprocess_sharable_mutex> lock(*mutex_);
    if (map_->find(key, BytesHash{}, BytesEqual{}) != map_->end()) return false;
    emplace(key, value);
    return true;
  }

  bool assign(std::string_view key, std::string_view value) override {
    bip::scoped_lock<bip::interprocess_sharable_mutex> lock(*mutex_);
    auto it = map_->find(key, BytesHash{}, BytesEqual{});
    if (it != map_->end()) {
      it->second.assign(value.data(), value.size());
      return false;
    }
    emplace(key, value);
    return true;
  }

  bool erase(std::string_view key) override {
    bip::scoped_lock<bip::interprocess_sharable_mutex> lock(*mutex_);
    auto it = map_->find(key, BytesHash{}, BytesEqual{});
    if (it == map_->end()) return false;
    map_->erase(it);
    return true;
  }

 private:
  void emplace(std::string_view key, std::string_view value) {
    CharAllocator chars(segment_.get_segment_manager());
    map_->emplace(SharedString(key.data(), key.size(), chars), SharedString(value.data(), value.size(), chars));
  }

  Segment segment_;
  SharedMap* map_;
  bip::interprocess_sharable_mutex* mutex_;
};

class BoostStore final : public Store {
 public:
  explicit BoostStore(const StoreParams& params) : segment_name_(params.name_prefix + "boost") {
    // Node, bucket and two strings per entry, plus allocator headers: a generous bound.
    const std::uint64_t data = params.capacity * (std::uint64_t{params.key_bytes} + params.value_bytes + 160);
    const std::uint64_t bytes = std::max<std::uint64_t>(data * 3, std::uint64_t{64} << 20);
    bip::shared_memory_object::remove(segment_name_.c_str());
    Segment segment(bip::create_only, segment_name_.c_str(), bytes);
    segment.construct<bip::interprocess_sharable_mutex>(kMutexName)();
    segment.construct<SharedMap>(kMapName)(params.capacity, BytesHash{}, BytesEqual{},
                                           EntryAllocator(segment.get_segment_manager()));
  }
  ~BoostStore() override { destroy(); }

  std::unique_ptr<StoreSession> attach() override { return std::make_unique<BoostSession>(segment_name_); }

  Footprint footprint() override {
    Footprint f;
    f.location = "/dev/shm/" + segment_name_;
    struct stat st {};
    if (stat(f.location.c_str(), &st) == 0) {
      f.apparent_bytes = static_cast<std::uint64_t>(st.st_size);
      f.resident_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    try {
      Segment segment(bip::open_only, segment_name_.c_str());
      if (SharedMap* map = segment.find<SharedMap>(kMapName).first) f.items = map->size();
    } catch (...) {
      // The item count is optional.
    }
    return f;
  }

  void destroy() noexcept override {
    if (segment_name_.empty()) return;
    bip::shared_memory_object::remove(segment_name_.c_str());
    segment_name_.clear();
  }

 private:
  std::string segment_name_;
};

const StoreRegistration kRegistered({
    .name = "boost-interprocess",
    .family = StoreFamily::kPeer,
    .description = "boost::unordered_map in managed_shared_memory behind an interprocess_sharable_mutex",
    .backings = {BackingKind::kTmpfs},
    .process_private = false,
    .unavailable_reason = [] { return std::optional<std::string>(); },
    .create = [](const StoreParams& p) -> std::unique_ptr<Store> { return std::make_unique<BoostStore>(p); },
});

}  // namespace
}  // namespace shmht::harness
