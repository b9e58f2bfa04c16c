// engine_switch_test.cpp - one table, several engines: all attached processes must use
// the same engine; a table written under one engine reads back under every other.
#include <string>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

TEST(EngineSwitch, OpeningWithAnotherEngineWhileAttachedNamesTheEngineAndPids) {
  ScopedName name;
  Table first = Table::create(name, {.capacity = 100, .engine = Engine::kSeqlock});
  Table second = Table::open(name);  // two handles of this process: its pid is listed once
  try {
    Table::open(name, {.engine = Engine::kStripedRwLock});
    FAIL() << "a second engine was allowed while a seqlock process is attached";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kEngineMismatch);
    const std::string message = e.what();
    EXPECT_NE(message.find("'seqlock'"), std::string::npos) << message;
    EXPECT_NE(message.find("by pid " + std::to_string(getpid()) + ";"), std::string::npos) << "pid not listed once: " << message;
  }
  EXPECT_EQ(Table::active_engine(name), Engine::kSeqlock);
}

TEST(EngineSwitch, ANewEngineTakesOverWhenTheAttachedProcessIsDead) {
  ScopedName name;
  Table::create(name, {.capacity = 100, .engine = Engine::kGlobalLock}).close();
  Children children;
  children.spawn([&] {
    Table t = Table::open(name, {.engine = Engine::kGlobalLock});
    t.assign("k", "v");
    raise(SIGKILL);  // dies attached
    return 0;
  });
  children.wait_all();
  Table t = Table::open(name, {.engine = Engine::kStripedRwLock, .stripes = 8});
  EXPECT_EQ(t.engine(), Engine::kStripedRwLock);
  EXPECT_EQ(Table::active_engine(name), Engine::kStripedRwLock);
  EXPECT_EQ(t.get("k"), "v");
}

TEST(EngineSwitch, EveryEngineReadsWhatEveryOtherWrote) {
  for (Engine writer : built_engines()) {
    for (Engine reader : built_engines()) {
      ScopedName name;
      {
        Table t = Table::create(name, {.capacity = 3000, .engine = writer});
        for (int i = 0; i < 2000; ++i) t.assign(key_of(i), std::to_string(i));
        for (int i = 0; i < 2000; i += 3) t.erase(key_of(i));
      }
      Table t = Table::open(name, {.engine = reader});
      for (int i = 0; i < 2000; ++i) {
        const auto v = t.get(key_of(i));
        ASSERT_EQ(v.has_value(), i % 3 != 0) << engine_name(writer) << " -> " << engine_name(reader) << " key " << i;
        if (v) {
          ASSERT_EQ(*v, std::to_string(i));
        }
      }
      t.close();
      const CheckReport report = check_table(name);
      EXPECT_TRUE(report.clean) << engine_name(writer) << " -> " << engine_name(reader) << ": "
                                << (report.problems.empty() ? "" : report.problems.front());
    }
  }
}

TEST(EngineSwitch, OneDefaultEngineWhenNoneIsNamed) {
  ScopedName name;
  Table t = Table::create(name, {.capacity = 100});
  EXPECT_EQ(t.engine(), kDefaultEngine);
  EXPECT_EQ(kDefaultEngine, Engine::kSeqlock) << "the CLI's and Python's default too (cli_test.sh, test_mapping.py)";
}

TEST(EngineSwitch, BadStripeCountIsAnInvalidArgument) {
  ScopedName name;
  try {
    Table::create(name, {.capacity = 100, .engine = Engine::kStripedRwLock, .stripes = 65});
    FAIL() << "65 stripes accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("between 1 and 64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace shmht::test
