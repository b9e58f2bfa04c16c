// private_open_addressing.hpp - the baseline shmht's single-process speed is judged by:
// a plain, private (one process, no locks, no shared memory) linear-probing table with
// the same data model as shmht (variable-length byte keys and values, each entry one
// heap record holding key and value contiguously, found through a slot array of hash +
// pointer). It therefore costs the same cache misses as shmht's slot + record, and the
// ratio between the two isolates what sharing and synchronisation cost.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "hash.hpp"

namespace shmht::bench {

class PrivateOpenAddressing {
 public:
  explicit PrivateOpenAddressing(std::size_t capacity) {
    std::size_t slots = 16;
    while (slots * 85 / 100 < capacity) slots *= 2;
    slots_.assign(slots, Slot{});
    mask_ = slots - 1;
  }
  ~PrivateOpenAddressing() {
    for (Slot& s : slots_) std::free(s.record);
  }
  PrivateOpenAddressing(const PrivateOpenAddressing&) = delete;
  PrivateOpenAddressing& operator=(const PrivateOpenAddressing&) = delete;

  // Value length if present (copied into out when it fits), -1 if absent.
  long get(std::string_view key, char* out, std::size_t out_size) const {
    const std::uint64_t h = hash_key(key, kSeed);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.record == nullptr) return -1;
      if (s.hash == h && matches(s, key)) {
        const std::size_t n = s.record->value_bytes;
        if (n <= out_size) std::memcpy(out, s.record->bytes() + s.record->key_bytes, n);
        return static_cast<long>(n);
      }
    }
  }

  // Insert or overwrite; true if new.
  bool assign(std::string_view key, std::string_view value) {
    const std::uint64_t h = hash_key(key, kSeed);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.record == nullptr) {
        s = {h, make_record(key, value)};
        return true;
      }
      if (s.hash == h && matches(s, key)) {
        Record* old = s.record;
        s.record = make_record(key, value);
        std::free(old);
        return false;
      }
    }
  }

  bool erase(std::string_view key) {
    const std::uint64_t h = hash_key(key, kSeed);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].record == nullptr) return false;
      if (slots_[i].hash == h && matches(slots_[i], key)) {
        std::free(slots_[i].record);
        // Backward-shift deletion, as shmht does.
        std::size_t hole = i;
        for (std::size_t j = (i + 1) & mask_; slots_[j].record != nullptr; j = (j + 1) & mask_) {
          const std::size_t home = slots_[j].hash & mask_;
          if (((j - home) & mask_) >= ((j - hole) & mask_)) {
            slots_[hole] = slots_[j];
            hole = j;
          }
        }
        slots_[hole] = Slot{};
        return true;
      }
    }
  }

 private:
  static constexpr std::uint64_t kSeed = 0x5eed;
  struct Record {  // followed in the same allocation by key bytes, then value bytes
    std::uint32_t key_bytes, value_bytes;
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  };
  struct Slot {
    std::uint64_t hash = 0;
    Record* record = nullptr;
  };
  static Record* make_record(std::string_view key, std::string_view value) {
    auto* r = static_cast<Record*>(std::malloc(sizeof(Record) + key.size() + value.size()));
    r->key_bytes = static_cast<std::uint32_t>(key.size());
    r->value_bytes = static_cast<std::uint32_t>(value.size());
    std::memcpy(r->bytes(), key.data(), key.size());
    std::memcpy(r->bytes() + key.size(), value.data(), value.size());
    return r;
  }
  static bool matches(const Slot& s, std::string_view key) {
    return s.record->key_bytes == key.size() && std::memcmp(s.record->bytes(), key.data(), key.size()) == 0;
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

}  // namespace shmht::bench
