// home_slots.hpp - tests that need keys with chosen home slots: generation 0's home slot of
// a key, computed from the table file's header (its hash seed and home slot count), and the
// first key of a name pattern that lands on a given slot.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "hash.hpp"
#include "layout/header.hpp"
#include "layout/slot.hpp"

namespace shmht::test {

class HomeSlots {
 public:
  explicit HomeSlots(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    void* base = mmap(nullptr, layout::kPageBytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) return;
    const auto& fixed = static_cast<const layout::Header*>(base)->fixed;
    seed_ = fixed.hash_seed;
    home_slots_ = fixed.home_slots;
    munmap(base, layout::kPageBytes);
  }
  bool ok() const { return home_slots_ != 0; }
  std::uint64_t home(const std::string& key) const {
    return static_cast<std::uint64_t>((static_cast<layout::Uint128>(hash_key(key, seed_)) * home_slots_) >> 64);
  }
  // The first key named prefix-<n> whose home slot is `slot`.
  std::string key_at(const std::string& prefix, std::uint64_t slot) const {
    for (std::uint64_t n = 0;; ++n) {
      std::string key = prefix + "-" + std::to_string(n);
      if (home(key) == slot) return key;
    }
  }

 private:
  std::uint64_t seed_ = 0;
  std::uint64_t home_slots_ = 0;
};

}  // namespace shmht::test
