// conformance_test.cpp - the behaviour every engine must have, written once and
// instantiated for every engine that is built (see BuiltEngines below).
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

template <Engine E>
struct EngineTag {
  static constexpr Engine kEngine = E;
};

template <class Tag>
class Conformance : public ::testing::Test {
 protected:
  Table make(CreateOptions options = {}) {
    options.engine = Tag::kEngine;
    return Table::create(name_, options);
  }
  void expect_clean() {
    const CheckReport report = check_table(name_);
    EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  }
  ScopedName name_;
};

TYPED_TEST_SUITE_P(Conformance);

TYPED_TEST_P(Conformance, EmptyTableHasNothing) {
  Table t = this->make({.capacity = 100});
  EXPECT_EQ(t.size(), 0u);
  EXPECT_FALSE(t.get("absent"));
  EXPECT_FALSE(t.contains("absent"));
  EXPECT_FALSE(t.erase("absent"));
  int visited = 0;
  t.for_each([&](std::string_view, std::string_view) { ++visited; });
  EXPECT_EQ(visited, 0);
  EXPECT_EQ(t.engine(), TypeParam::kEngine);
}

TYPED_TEST_P(Conformance, InsertOnlyIfAbsentAssignOverwrites) {
  Table t = this->make({.capacity = 100});
  EXPECT_TRUE(t.insert("k", "first"));
  EXPECT_FALSE(t.insert("k", "second"));
  EXPECT_EQ(t.get("k"), "first");
  EXPECT_FALSE(t.assign("k", "third"));
  EXPECT_EQ(t.get("k"), "third");
  EXPECT_TRUE(t.assign("k2", "new"));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.erase("k"));
  EXPECT_FALSE(t.get("k"));
  EXPECT_FALSE(t.erase("k"));
  EXPECT_EQ(t.size(), 1u);
  this->expect_clean();
}

TYPED_TEST_P(Conformance, KeysAndValuesAreBytes) {
  Table t = this->make({.capacity = 100});
  const std::string binary_key("a\0b\xff", 4), binary_value("\0\0x\n", 4);
  EXPECT_TRUE(t.insert(binary_key, binary_value));
  EXPECT_TRUE(t.insert("", "empty key"));
  EXPECT_TRUE(t.insert("empty value", ""));
  EXPECT_EQ(t.get(binary_key), binary_value);
  EXPECT_FALSE(t.get(std::string("a\0b", 3))) << "a prefix of a key is another key";
  EXPECT_EQ(t.get(""), "empty key");
  EXPECT_EQ(t.get("empty value"), "");
  EXPECT_TRUE(t.contains("empty value")) << "contains() copies nothing: an empty value must not trip it";
  EXPECT_EQ(t.get("empty value", std::span<char>()), 0u);
}

TYPED_TEST_P(Conformance, GetIntoCallerBuffer) {
  Table t = this->make({.capacity = 100});
  t.assign("k", "0123456789");
  char small[4] = {'x', 'x', 'x', 'x'};
  EXPECT_EQ(t.get("k", small), 10u);
  EXPECT_EQ(std::string(small, 4), "xxxx") << "nothing copied when the buffer is too small";
  char big[16];
  ASSERT_EQ(t.get("k", big), 10u);
  EXPECT_EQ(std::string(big, 10), "0123456789");
  EXPECT_FALSE(t.get("absent", big));
}

TYPED_TEST_P(Conformance, OversizeKeyOrValueIsRejectedAndChangesNothing) {
  Table t = this->make({.capacity = 100, .max_key_bytes = 8, .max_value_bytes = 16});
  EXPECT_TRUE(t.insert(std::string(8, 'k'), std::string(16, 'v'))) << "the limits themselves fit";
  try {
    t.insert(std::string(9, 'k'), "v");
    FAIL() << "a 9-byte key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kKeyTooLarge);
    EXPECT_NE(std::string(e.what()).find("9 bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("maximum is 8"), std::string::npos) << e.what();
  }
  try {
    t.assign("k", std::string(17, 'v'));
    FAIL() << "a 17-byte value was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kValueTooLarge);
    EXPECT_NE(std::string(e.what()).find("17 bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("maximum is 16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.get(std::string(9, 'k')), Error);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_FALSE(t.get("k"));
  this->expect_clean();
}

TYPED_TEST_P(Conformance, RandomOperationsMatchAModel) {
  Table t = this->make({.capacity = 4000});
  std::unordered_map<std::string, std::string> model;
  std::mt19937_64 rng(42);
  for (int op = 0; op < 100'000; ++op) {
    const std::string key = key_of(rng() % 3000);
    const std::string value(rng() % 100, static_cast<char>('a' + rng() % 26));
    switch (rng() % 5) {
      case 0: {
        const bool inserted = t.insert(key, value);
        ASSERT_EQ(inserted, model.emplace(key, value).second) << "op " << op;
        break;
      }
      case 1: {
        const bool is_new = t.assign(key, value);
        ASSERT_EQ(is_new, !model.contains(key)) << "op " << op;
        model[key] = value;
        break;
      }
      case 2:
        ASSERT_EQ(t.erase(key), model.erase(key) == 1) << "op " << op;
        break;
      default: {
        const auto got = t.get(key);
        const auto it = model.find(key);
        ASSERT_EQ(got.has_value(), it != model.end()) << "op " << op << " key " << key;
        if (got) {
          ASSERT_EQ(*got, it->second) << "op " << op;
        }
      }
    }
  }
  ASSERT_EQ(t.size(), model.size());
  std::map<std::string, std::string> seen;
  t.for_each([&](std::string_view k, std::string_view v) {
    EXPECT_TRUE(seen.emplace(std::string(k), std::string(v)).second) << "key seen twice: " << k;
  });
  const std::map<std::string, std::string> expected(model.begin(), model.end());
  EXPECT_EQ(seen, expected);
  this->expect_clean();
}

TYPED_TEST_P(Conformance, HoldsItsCapacityThenReportsFull) {
  constexpr std::uint64_t kCapacity = 5000;
  Table t = this->make({.capacity = kCapacity, .max_key_bytes = 32, .max_value_bytes = 32});
  for (std::uint64_t i = 0; i < kCapacity; ++i) ASSERT_TRUE(t.insert(key_of(i), "v")) << i;
  std::uint64_t extra = 0;
  bool full = false;
  for (; extra < kCapacity; ++extra) {
    try {
      t.insert(key_of(kCapacity + extra), "v");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
      EXPECT_NE(std::string(e.what()).find("capacity"), std::string::npos) << e.what();
      full = true;
      break;
    }
  }
  EXPECT_TRUE(full) << "twice the capacity fitted: the slot array is larger than documented";
  EXPECT_EQ(t.size(), kCapacity + extra);
  for (std::uint64_t i = 0; i < kCapacity; ++i) ASSERT_EQ(t.get(key_of(i)), "v") << "lost key " << i;
  this->expect_clean();
}

TYPED_TEST_P(Conformance, ForEachSeesStableKeysOnceWhileTheCallbackWrites) {
  Table t = this->make({.capacity = 20'000});
  for (int i = 0; i < 5000; ++i) t.insert("stable-" + std::to_string(i), "s");
  std::unordered_map<std::string, int> seen;
  int churn = 0;
  t.for_each([&](std::string_view k, std::string_view) {
    ++seen[std::string(k)];
    // Shift the table under the iterator: inserts move runs right, erases left.
    t.insert("churn-" + std::to_string(churn), "c");
    if (churn % 2 == 0) t.erase("churn-" + std::to_string(churn / 2));
    ++churn;
  });
  for (int i = 0; i < 5000; ++i) {
    const auto it = seen.find("stable-" + std::to_string(i));
    ASSERT_NE(it, seen.end()) << "stable key " << i << " missed";
    EXPECT_EQ(it->second, 1) << "stable key " << i << " seen " << it->second << " times";
  }
}

TYPED_TEST_P(Conformance, OverwritesReuseRecordsInsteadOfGrowingTheFile) {
  // Issue 2: after 100,000 inserts, 10 million overwrites of those keys with values of
  // the same sizes leave the file within 10% of its size after the inserts.
  const char* env = std::getenv("SHMHT_TEST_OVERWRITES");
  const std::uint64_t overwrites = env ? std::strtoull(env, nullptr, 10) : 10'000'000;
  constexpr std::uint64_t kKeys = 100'000;
  Table t = this->make({.capacity = kKeys, .max_key_bytes = 32, .max_value_bytes = 64});
  std::string value(32, 'v');
  for (std::uint64_t i = 0; i < kKeys; ++i) t.insert(key_of(i), value);
  const std::uint64_t after_inserts = t.stats().apparent_bytes;
  std::mt19937_64 rng(7);
  for (std::uint64_t n = 0; n < overwrites; ++n) {
    value[n % 32] = static_cast<char>('a' + n % 26);
    t.assign(key_of(rng() % kKeys), value);
  }
  const Stats s = t.stats();
  EXPECT_LE(s.apparent_bytes, after_inserts + after_inserts / 10)
      << "file grew from " << after_inserts << " to " << s.apparent_bytes << " bytes over " << overwrites << " overwrites";
  EXPECT_EQ(s.items, kKeys);
  this->expect_clean();
}

TYPED_TEST_P(Conformance, SeedSizedTableTakesAtMost64BytesPerItem) {
  // pyshmht's test: 333,333 items, keys like "123a" and values "aaaaaaa"; its file was
  // about 2,900 bytes per item. Issue 2's bound for ours: 64 apparent bytes per item.
  constexpr std::uint64_t kItems = 333'333;
  Table t = this->make({.capacity = kItems});
  for (std::uint64_t i = 0; i < kItems; ++i) ASSERT_TRUE(t.insert(std::to_string(i) + "a", "aaaaaaa"));
  const Stats s = t.stats();
  ASSERT_EQ(s.items, kItems);
  EXPECT_LE(static_cast<double>(s.apparent_bytes) / static_cast<double>(kItems), 64.0)
      << s.apparent_bytes << " apparent bytes for " << kItems << " items";
  EXPECT_LE(s.resident_bytes, s.apparent_bytes) << "on tmpfs, resident bytes are at most the file size";
}

TYPED_TEST_P(Conformance, ASmallTableTakesLittleMemory) {
  // The engine area reserves 36 KiB of lock-free descriptors per attachment entry (4.7 MB
  // for the default 128): sparse in the file, and never touched for entries never used.
  // A read fault allocates a tmpfs page, so nothing may even read them needlessly.
  Table t = this->make({.capacity = 1000});
  t.assign("k", "v");
  EXPECT_EQ(t.size(), 1u);
  t.erase("k");
  t.close();
  this->expect_clean();
  Table again = Table::open(this->name_);
  again.assign("k", "v");
  EXPECT_LT(again.stats().resident_bytes, std::uint64_t{1} << 20) << "resident bytes of a 1,000-item table";
}

REGISTER_TYPED_TEST_SUITE_P(Conformance, EmptyTableHasNothing, ASmallTableTakesLittleMemory, InsertOnlyIfAbsentAssignOverwrites,
                            KeysAndValuesAreBytes, GetIntoCallerBuffer, OversizeKeyOrValueIsRejectedAndChangesNothing,
                            RandomOperationsMatchAModel, HoldsItsCapacityThenReportsFull,
                            ForEachSeesStableKeysOnceWhileTheCallbackWrites, OverwritesReuseRecordsInsteadOfGrowingTheFile,
                            SeedSizedTableTakesAtMost64BytesPerItem);

// Every engine that is built. A new engine adds its tag here and passes this suite.
using BuiltEngines = ::testing::Types<EngineTag<Engine::kGlobalLock>, EngineTag<Engine::kStripedRwLock>,
                                      EngineTag<Engine::kSeqlock>, EngineTag<Engine::kLockFreeRobinHood>>;

struct EngineTagName {
  template <class Tag>
  static std::string GetName(int) {
    return std::string(engine_name(Tag::kEngine));
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Engines, Conformance, BuiltEngines, EngineTagName);

}  // namespace
}  // namespace shmht::test
