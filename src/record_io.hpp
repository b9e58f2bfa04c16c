// record_io.hpp - moving key and value bytes in and out of arena records.
//
// Record layout (8-byte aligned; size rounded up to its size class, size_classes.hpp):
//   +------------+--------------+-----------------+------------------+---------+
//   | key_bytes  | value_bytes  | key ...         | value ...        | padding |
//   | u32        | u32          | key_bytes bytes | value_bytes bytes |         |
//   +------------+--------------+-----------------+------------------+---------+
//
// Writers store records with relaxed 8-byte atomic stores and optimistic readers load
// them with relaxed 8-byte atomic loads (std::atomic_ref): a reader that races with the
// reuse of a freed record reads stale or mixed words, which is not undefined behaviour,
// and its version check then discards them. Readers that hold a lock (global, striped)
// may use plain memcpy/memcmp: no write to a linked record can race with them.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string_view>

#include "layout/header.hpp"

namespace shmht {

inline std::uint64_t record_bytes_for(std::uint64_t key_bytes, std::uint64_t value_bytes) noexcept {
  return sizeof(layout::RecordHeader) + key_bytes + value_bytes;
}

namespace record_detail {
inline std::uint64_t atomic_load_word(const std::uint64_t* p) noexcept {
  return std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(p)).load(std::memory_order_relaxed);
}
inline void atomic_store_word(std::uint64_t* p, std::uint64_t w) noexcept {
  std::atomic_ref<std::uint64_t>(*p).store(w, std::memory_order_relaxed);
}
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free, "record words are shared across processes");
static_assert(std::endian::native == std::endian::little, "records are streamed into words low byte first");
}  // namespace record_detail

// Writes the whole record at `record` (8-aligned, owned by the caller) with atomic stores.
inline void store_record(std::byte* record, std::string_view key, std::string_view value) noexcept {
  using record_detail::atomic_store_word;
  auto* words = reinterpret_cast<std::uint64_t*>(record);
  atomic_store_word(words++, std::uint64_t{static_cast<std::uint32_t>(key.size())} |
                                 (std::uint64_t{static_cast<std::uint32_t>(value.size())} << 32));
  // Stream key then value into whole words: `pending` holds the bytes not yet stored.
  std::uint64_t pending = 0;
  unsigned pending_bytes = 0;
  auto put = [&](const char* p, std::size_t n) {
    if (pending_bytes == 0) {
      for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        atomic_store_word(words++, w);
      }
    } else {
      const unsigned shift = pending_bytes * 8;
      for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        atomic_store_word(words++, pending | (w << shift));
        pending = w >> (64 - shift);
      }
    }
    for (; n > 0; --n, ++p) {
      pending |= std::uint64_t{static_cast<unsigned char>(*p)} << (pending_bytes * 8);
      if (++pending_bytes == 8) {
        atomic_store_word(words++, pending);
        pending = 0;
        pending_bytes = 0;
      }
    }
  };
  put(key.data(), key.size());
  put(value.data(), value.size());
  if (pending_bytes != 0) atomic_store_word(words, pending);
}

// The low `n` bytes (n < 8) of a little-endian word, stored at `out` in memory order.
inline void store_low_bytes(char* out, std::uint64_t w, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i, w >>= 8) out[i] = static_cast<char>(w & 0xFF);
}

// Copies `n` bytes starting `byte_offset` bytes into the record with atomic word loads.
// Whole words go out as one 8-byte store each (no call to memcpy per word: this is the
// optimistic read path); only a first unaligned word and a last partial one go bytewise.
inline void load_record_bytes(const std::byte* record, std::size_t byte_offset, char* out, std::size_t n) noexcept {
  if (n == 0) return;
  const auto* words = reinterpret_cast<const std::uint64_t*>(record) + byte_offset / 8;
  if (const unsigned skip = static_cast<unsigned>(byte_offset % 8); skip != 0) {
    const std::size_t take = std::min<std::size_t>(8 - skip, n);
    store_low_bytes(out, record_detail::atomic_load_word(words++) >> (skip * 8), take);
    out += take;
    n -= take;
  }
  for (; n >= 8; n -= 8, out += 8) {
    const std::uint64_t w = record_detail::atomic_load_word(words++);
    std::memcpy(out, &w, 8);
  }
  if (n > 0) store_low_bytes(out, record_detail::atomic_load_word(words), n);
}

// Compares `expected` with the record's bytes at `byte_offset`, loading them atomically.
// A key starts right after the 8-byte header, so its words are aligned: compared a word
// at a time against the caller's bytes, the last word masked to the bytes that count.
inline bool record_bytes_equal(const std::byte* record, std::size_t byte_offset, std::string_view expected) noexcept {
  if (byte_offset % 8 != 0) {
    char chunk[64];
    for (std::size_t done = 0; done < expected.size(); done += sizeof chunk) {
      const std::size_t n = std::min(sizeof chunk, expected.size() - done);
      load_record_bytes(record, byte_offset + done, chunk, n);
      if (std::memcmp(chunk, expected.data() + done, n) != 0) return false;
    }
    return true;
  }
  const auto* words = reinterpret_cast<const std::uint64_t*>(record) + byte_offset / 8;
  const char* p = expected.data();
  std::size_t n = expected.size();
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t want;
    std::memcpy(&want, p, 8);
    if (record_detail::atomic_load_word(words++) != want) return false;
  }
  if (n == 0) return true;
  std::uint64_t want = 0;
  for (std::size_t i = n; i-- > 0;) want = (want << 8) | static_cast<unsigned char>(p[i]);
  const std::uint64_t mask = (std::uint64_t{1} << (n * 8)) - 1;
  return (record_detail::atomic_load_word(words) & mask) == want;
}

inline layout::RecordHeader load_record_header(const std::byte* record) noexcept {
  const std::uint64_t w = record_detail::atomic_load_word(reinterpret_cast<const std::uint64_t*>(record));
  return {static_cast<std::uint32_t>(w), static_cast<std::uint32_t>(w >> 32)};
}

// Plain accessors for lock holders.
inline std::string_view record_key(const std::byte* record, const layout::RecordHeader& h) noexcept {
  return {reinterpret_cast<const char*>(record) + sizeof(layout::RecordHeader), h.key_bytes};
}
inline std::string_view record_value(const std::byte* record, const layout::RecordHeader& h) noexcept {
  return {reinterpret_cast<const char*>(record) + sizeof(layout::RecordHeader) + h.key_bytes, h.value_bytes};
}

}  // namespace shmht
