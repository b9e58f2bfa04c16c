// items_test.cpp - Table::items() (iteration as a range that a loop may leave early) and
// the std::filesystem::path overloads, for every built engine.
#include <algorithm>
#include <filesystem>
#include <iterator>
#include <map>
#include <ranges>
#include <string>
#include <unordered_map>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

// A range that std::ranges algorithms and views accept.
static_assert(std::input_iterator<ItemIterator>);
static_assert(std::sentinel_for<std::default_sentinel_t, ItemIterator>);
static_assert(std::ranges::input_range<ItemRange>);

template <Engine E>
struct EngineTag {
  static constexpr Engine kEngine = E;
};

template <class Tag>
class Items : public ::testing::Test {
 protected:
  Table make(CreateOptions options = {}) {
    options.engine = Tag::kEngine;
    return Table::create(name_, options);
  }
  ScopedName name_;
};

TYPED_TEST_SUITE_P(Items);

TYPED_TEST_P(Items, EmptyTableYieldsNothing) {
  Table t = this->make({.capacity = 100});
  ItemRange range = t.items();
  EXPECT_TRUE(range.begin() == range.end());
}

// Enough items for many batches of home slots (a batch is 1024 slots).
TYPED_TEST_P(Items, YieldsEveryItemOnceWithItsValue) {
  Table t = this->make({.capacity = 10'000});
  std::map<std::string, std::string> model;
  for (int i = 0; i < 6000; ++i) {
    const std::string key = "key-" + std::to_string(i), value(static_cast<std::size_t>(i % 50), 'v');
    t.assign(key, value);
    model[key] = value;
  }
  std::map<std::string, std::string> seen;
  for (const auto& [key, value] : t.items()) {
    EXPECT_TRUE(seen.emplace(key, value).second) << "seen twice: " << key;
  }
  EXPECT_EQ(seen, model);
  // The same through std::ranges, and for_each (built on items()) agrees.
  EXPECT_EQ(std::ranges::distance(t.items()), 6000);
  std::map<std::string, std::string> by_for_each;
  t.for_each([&](std::string_view k, std::string_view v) { by_for_each.emplace(k, v); });
  EXPECT_EQ(by_for_each, model);
}

// A loop can stop at any item; each begin() walks from the start again.
TYPED_TEST_P(Items, LoopStopsEarlyAndANewWalkStartsOver) {
  Table t = this->make({.capacity = 5000});
  for (int i = 0; i < 3000; ++i) t.assign("key-" + std::to_string(i), "v");
  int visited = 0;
  std::string first;
  for (const auto& item : t.items()) {
    if (visited == 0) first = item.first;
    if (++visited == 5) break;
  }
  EXPECT_EQ(visited, 5);
  ItemRange range = t.items();
  ItemIterator it = range.begin();
  ASSERT_FALSE(it == range.end());
  EXPECT_EQ(it->first, first) << "a new walk starts from the first item again";
  EXPECT_EQ(it->second, "v");
  ItemRange all = t.items();
  const auto found = std::ranges::find_if(all, [](const Item& item) { return item.first == "key-2999"; });
  ASSERT_FALSE(found == std::default_sentinel);
  EXPECT_EQ(found->second, "v");
  EXPECT_EQ(t.size(), 3000u);
}

// for_each's guarantee: a key present for the whole walk is seen exactly once, while the
// loop body shifts the table under the iterator (inserts move runs right, erases left).
TYPED_TEST_P(Items, SeesStableKeysOnceWhileTheLoopWrites) {
  Table t = this->make({.capacity = 20'000});
  for (int i = 0; i < 5000; ++i) t.insert("stable-" + std::to_string(i), "s");
  std::unordered_map<std::string, int> seen;
  int churn = 0;
  for (const auto& [key, value] : t.items()) {
    ++seen[key];
    t.insert("churn-" + std::to_string(churn), "c");
    if (churn % 2 == 0) t.erase("churn-" + std::to_string(churn / 2));
    ++churn;
  }
  for (int i = 0; i < 5000; ++i) {
    const auto it = seen.find("stable-" + std::to_string(i));
    ASSERT_NE(it, seen.end()) << "stable key " << i << " missed";
    EXPECT_EQ(it->second, 1) << "stable key " << i << " seen " << it->second << " times";
  }
  EXPECT_TRUE(check_table(this->name_).clean);
}

// An item is a copy: erasing its key in the loop leaves the item readable.
TYPED_TEST_P(Items, ItemsAreCopiesThatOutliveErasure) {
  Table t = this->make({.capacity = 100});
  t.assign("a", "1");
  t.assign("b", "2");
  std::map<std::string, std::string> seen;
  for (const auto& [key, value] : t.items()) {
    ASSERT_TRUE(t.erase(key));
    seen.emplace(key, value);
  }
  EXPECT_EQ(seen, (std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(t.size(), 0u);
}

TYPED_TEST_P(Items, ClosedHandleThrows) {
  Table t = this->make({.capacity = 100});
  t.close();
  try {
    (void)t.items();
    FAIL() << "items() on a closed handle";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

// create, open, open_or_create, active_engine and remove take a std::filesystem::path.
TYPED_TEST_P(Items, NamesMayBeFilesystemPaths) {
  const std::filesystem::path path = std::filesystem::path("/dev/shm") / this->name_.str();
  {
    Table created = Table::create(path, {.capacity = 100, .engine = TypeParam::kEngine});
    EXPECT_EQ(created.path(), path.string());
    created.assign("k", "v");
    Table opened = Table::open(path);
    EXPECT_EQ(opened.get("k"), "v");
    Table either = Table::open_or_create(path, {.capacity = 100, .engine = TypeParam::kEngine});
    EXPECT_EQ(either.get("k"), "v");
    EXPECT_EQ(Table::active_engine(path), TypeParam::kEngine);
  }
  EXPECT_TRUE(Table::remove(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(Table::remove(path, {.force = true}));
  // A bare name as a path names /dev/shm/<name>, as the string overloads do.
  {
    Table bare = Table::open_or_create(std::filesystem::path(this->name_.str()), {.capacity = 100, .engine = TypeParam::kEngine});
    EXPECT_EQ(bare.path(), path.string());
  }
  EXPECT_TRUE(Table::remove(std::filesystem::path(this->name_.str())));
}

REGISTER_TYPED_TEST_SUITE_P(Items, EmptyTableYieldsNothing, YieldsEveryItemOnceWithItsValue, LoopStopsEarlyAndANewWalkStartsOver,
                            SeesStableKeysOnceWhileTheLoopWrites, ItemsAreCopiesThatOutliveErasure, ClosedHandleThrows,
                            NamesMayBeFilesystemPaths);

using BuiltEngines = ::testing::Types<EngineTag<Engine::kGlobalLock>, EngineTag<Engine::kStripedRwLock>,
                                      EngineTag<Engine::kSeqlock>, EngineTag<Engine::kLockFreeRobinHood>>;

struct EngineTagName {
  template <class Tag>
  static std::string GetName(int) {
    return std::string(engine_name(Tag::kEngine));
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Engines, Items, BuiltEngines, EngineTagName);

}  // namespace
}  // namespace shmht::test
