// batch_answers_test.cpp - BatchAnswers (src/engines/engine.hpp), the buffer a batched
// lookup (Table::get_many) answers into: values copied in place, long ones looked up
// again into room that fits them, and an answer given again replacing the first.
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include <gtest/gtest.h>

#include "engines/engine.hpp"

namespace shmht::test {
namespace {

// A get(key, span) over one stored value (or none): copies it only if it fits, returns
// its length either way, and counts its calls.
struct FakeLookup {
  std::optional<std::string> stored;
  int calls = 0;
  ValueLength operator()(std::span<char> room) {
    ++calls;
    if (!stored) return ValueLength::absent();
    if (stored->size() <= room.size()) std::memcpy(room.data(), stored->data(), stored->size());
    return ValueLength(stored->size());
  }
};

TEST(BatchAnswers, KeepsEachFoundValueAndEachAbsence) {
  BatchAnswers answers;
  answers.reset(3);
  FakeLookup a{std::string("alpha")}, absent{std::nullopt}, empty{std::string()};
  answers.answer(0, true, [&](std::span<char> room) { return a(room); });
  answers.answer(1, true, [&](std::span<char> room) { return absent(room); });
  answers.answer(2, true, [&](std::span<char> room) { return empty(room); });
  EXPECT_TRUE(answers.found(0));
  EXPECT_EQ(answers.value(0), "alpha");
  EXPECT_FALSE(answers.found(1));
  EXPECT_TRUE(answers.found(2)) << "an empty value is present";
  EXPECT_EQ(answers.value(2), "");
}

TEST(BatchAnswers, LooksALongValueUpAgainIntoRoomThatFitsIt) {
  BatchAnswers answers;
  answers.reset(2);
  FakeLookup small{std::string("s")}, long_value{std::string(100'000, 'L')};
  answers.answer(0, true, [&](std::span<char> room) { return small(room); });
  answers.answer(1, true, [&](std::span<char> room) { return long_value(room); });
  EXPECT_EQ(long_value.calls, 2) << "the first room was too small; the second fits";
  EXPECT_EQ(answers.value(1), *long_value.stored);
  EXPECT_EQ(answers.value(0), "s") << "growing the buffer keeps earlier values";
}

// ProtocolEngine::lookup_batch answers a batch again from its first key after repairing
// a dead writer's lock: a key found the first time and absent the second must end absent.
TEST(BatchAnswers, AnAnswerGivenAgainReplacesTheFirst) {
  for (const bool with_values : {true, false}) {
    BatchAnswers answers;
    answers.reset(1);
    FakeLookup key{std::string("first")};
    answers.answer(0, with_values, [&](std::span<char> room) { return key(room); });
    ASSERT_TRUE(answers.found(0));
    key.stored.reset();
    answers.answer(0, with_values, [&](std::span<char> room) { return key(room); });
    EXPECT_FALSE(answers.found(0)) << (with_values ? "with values" : "presence only");
    key.stored = "second";
    answers.answer(0, with_values, [&](std::span<char> room) { return key(room); });
    ASSERT_TRUE(answers.found(0));
    EXPECT_EQ(answers.value(0), with_values ? "second" : "");
  }
}

}  // namespace
}  // namespace shmht::test
