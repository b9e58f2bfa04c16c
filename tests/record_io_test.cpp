// record_io_test.cpp - the atomic word-wise record copy and compare (src/record_io.hpp)
// against plain memcpy/memcmp, at every alignment and length a record can present.
#include <array>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "record_io.hpp"

namespace shmht::test {
namespace {

// A record-like buffer of distinct bytes, 8-aligned as arena records are.
struct Words {
  alignas(8) std::array<char, 128> bytes;
  Words() {
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 37 + 11);
  }
  const std::byte* record() const { return reinterpret_cast<const std::byte*>(bytes.data()); }
};

TEST(RecordIo, LoadMatchesMemcpyAtEveryOffsetAndLength) {
  const Words w;
  for (std::size_t offset = 0; offset < 24; ++offset) {
    for (std::size_t n = 0; n <= 80; ++n) {
      std::string got(n + 2, '#'), want(n + 2, '#');  // the guard bytes must survive
      load_record_bytes(w.record(), offset, got.data(), n);
      std::memcpy(want.data(), w.bytes.data() + offset, n);
      ASSERT_EQ(got, want) << "offset " << offset << ", " << n << " bytes";
    }
  }
}

TEST(RecordIo, EqualMatchesMemcmpAtEveryOffsetLengthAndDifference) {
  const Words w;
  for (std::size_t offset = 0; offset < 24; ++offset) {
    for (std::size_t n = 0; n <= 80; ++n) {
      std::string same(w.bytes.data() + offset, n);
      ASSERT_TRUE(record_bytes_equal(w.record(), offset, same)) << "offset " << offset << ", " << n << " bytes";
      for (std::size_t at = 0; at < n; ++at) {  // one byte off anywhere, the last included
        std::string differs = same;
        differs[at] = static_cast<char>(differs[at] ^ 0x40);
        ASSERT_FALSE(record_bytes_equal(w.record(), offset, differs)) << "offset " << offset << ", byte " << at << " of " << n;
      }
    }
  }
}

// Bytes past the compared length (the value after a key) must not take part.
TEST(RecordIo, EqualIgnoresTheBytesAfterTheKey) {
  Words w;
  const std::string key(w.bytes.data() + 8, 5);
  w.bytes[8 + 5] = static_cast<char>(w.bytes[8 + 5] ^ 0x7F);
  EXPECT_TRUE(record_bytes_equal(w.record(), 8, key));
}

}  // namespace
}  // namespace shmht::test
