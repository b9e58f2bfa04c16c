// store_private_map.cpp - the single-process reference: a std::unordered_map in the
// worker's own heap. It shares nothing, so it runs with one process only and its one
// worker prefills it itself (prefilling in the parent would hand the child copy-on-write
// pages and charge their faults to the measured phase).
#include <algorithm>
#include <cstring>
#include <string>
#include <functional>
#include <unordered_map>

#include "store.hpp"

namespace shmht::harness {
namespace {

// Transparent hash and equality: lookups by string_view build no std::string.
struct BytesHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class PrivateMapSession final : public StoreSession {
 public:
  explicit PrivateMapSession(std::uint64_t capacity) { map_.reserve(capacity); }

  bool get(std::string_view key, std::span<char> value_out) override {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    std::memcpy(value_out.data(), it->second.data(), std::min(it->second.size(), value_out.size()));
    return true;
  }
  bool insert(std::string_view key, std::string_view value) override {
    return map_.try_emplace(std::string(key), value).second;
  }
  bool assign(std::string_view key, std::string_view value) override {
    return map_.insert_or_assign(std::string(key), std::string(value)).second;
  }
  bool erase(std::string_view key) override {
    auto it = map_.find(key);  // heterogeneous erase(key) is C++23
    if (it == map_.end()) return false;
    map_.erase(it);
    return true;
  }

 private:
  std::unordered_map<std::string, std::string, BytesHash, std::equal_to<>> map_;
};

class PrivateMapStore final : public Store {
 public:
  explicit PrivateMapStore(const StoreParams& params) : capacity_(params.capacity) {}
  std::unique_ptr<StoreSession> attach() override { return std::make_unique<PrivateMapSession>(capacity_); }
  Footprint footprint() override {
    Footprint f;
    f.location = "process heap";
    return f;
  }
  void destroy() noexcept override {}

 private:
  std::uint64_t capacity_;
};

const StoreRegistration kRegistered({
    .name = "std-unordered-map",
    .family = StoreFamily::kPeer,
    .description = "std::unordered_map private to one process (no sharing, no locks)",
    .backings = {},  // lives in the heap: the backing dimension does not apply
    .process_private = true,
    .unavailable_reason = [] { return std::optional<std::string>(); },
    .create = [](const StoreParams& p) -> std::unique_ptr<Store> { return std::make_unique<PrivateMapStore>(p); },
});

}  // namespace
}  // namespace shmht::harness
