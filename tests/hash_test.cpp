// hash_test.cpp - the key hash (src/hash.hpp): XXH3-64 as its specification fixes it, and
// no collisions an outsider can craft without the table's seed.
#include <cstring>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "hash.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

// Every process, built against any xxHash >= 0.8.0, must agree: pinned outputs.
TEST(Hash, IsXxh3AsSpecified) {
  EXPECT_EQ(hash_key("", 0), 0x2D06800538D394C2ull) << "XXH3_64bits of the empty input (xxHash's test vector)";
  EXPECT_EQ(hash_key("shmht", 42), 0xC0ED65BB828826BFull);
}

// 16-byte keys whose second word is one constant: the multiply-fold hash of layout
// versions 1-3 multiplied (word ^ its constant) and so gave all of them one hash.
std::string crafted_key(std::uint64_t first_word) {
  constexpr std::uint64_t kOldConstant = 0xA0761D6478BD642Full;
  std::string key(16, '\0');
  std::memcpy(key.data(), &first_word, 8);
  std::memcpy(key.data() + 8, &kOldConstant, 8);
  return key;
}

TEST(Hash, KeysCraftedWithoutTheSeedDoNotCollide) {
  std::set<std::uint64_t> hashes;
  for (std::uint64_t i = 0; i < 1000; ++i) hashes.insert(hash_key(crafted_key(i), 0x1234567));
  EXPECT_EQ(hashes.size(), 1000u);
}

// What the collision meant for a table: all such keys in one home run, full at 255.
TEST(Hash, ATableTakesCraftedKeysUpToItsCapacity) {
  ScopedName name;
  Table t = Table::create(name, {.capacity = 1000});
  for (std::uint64_t i = 0; i < 1000; ++i) ASSERT_TRUE(t.insert(crafted_key(i), "v")) << "key " << i;
  EXPECT_EQ(t.size(), 1000u);
}

}  // namespace
}  // namespace shmht::test
