// multiprocess_test.cpp - invariants that must hold when forked processes share a table.
// Parameterised over every built engine.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

class MultiProcess : public ::testing::TestWithParam<Engine> {
 protected:
  Table make(std::uint64_t capacity) { return Table::create(name_, {.capacity = capacity, .engine = GetParam()}); }
  Table open_in_child() { return Table::open(name_, {.engine = GetParam()}); }
  ScopedName name_;
  Children children_;
};

TEST_P(MultiProcess, DisjointInsertsAreAllFound) {
  constexpr int kChildren = 4, kPerChild = 20'000;
  Table parent = make(kChildren * kPerChild);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      for (int i = 0; i < kPerChild; ++i) {
        if (!t.insert(key_of(c * kPerChild + i), std::to_string(c))) return 1;
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  ASSERT_EQ(parent.size(), std::uint64_t{kChildren * kPerChild});
  for (int c = 0; c < kChildren; ++c) {
    for (int i = 0; i < kPerChild; ++i) ASSERT_EQ(parent.get(key_of(c * kPerChild + i)), std::to_string(c));
  }
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// size() read while others write must stay a plausible count: under lockfree a counter
// word can hold a running operation's descriptor reference, which size() must finish
// rather than add up (it once read as about 2^40 items).
TEST_P(MultiProcess, SizeStaysInRangeWhileOthersWrite) {
  constexpr int kChildren = 2, kKeys = 2000;
  Table parent = make(kChildren * kKeys);
  SharedArray<std::atomic<int>> stop(1);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      for (std::uint64_t i = 0; stop[0].load() == 0; ++i) {
        const std::string key = key_of(c * kKeys + i % kKeys);
        if (i % 3 == 2) {
          t.erase(key);
        } else {
          t.assign(key, "v");
        }
      }
      return 0;
    });
  }
  for (int poll = 0; poll < 20'000; ++poll) {
    const std::uint64_t size = parent.size();
    if (size > std::uint64_t{kChildren * kKeys}) {
      stop[0].store(1);
      FAIL() << "size() read " << size << " with at most " << kChildren * kKeys << " keys possible";
    }
  }
  stop[0].store(1);
  children_.expect_all_succeed();
}

// Issue 11's producer/consumer: one process inserts, another erases everything, both
// attached throughout. Memory the consumer frees must feed the producer (through the
// shared free lists), so the file stops growing: after 20 rounds it is at most twice its
// size after round 2 (it grew by one round's records every round before).
TEST_P(MultiProcess, MemoryFreedByOneProcessIsReusedByAnother) {
  constexpr int kRounds = 20, kItems = 20'000;
  Table parent = make(kItems * 2);
  SharedArray<std::atomic<int>> phase(1);  // 2r: producer's turn in round r; 2r + 1: consumer's
  SharedArray<std::uint64_t> file_bytes(kRounds);
  auto wait_for = [&](int wanted) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (phase[0].load() != wanted) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  };
  children_.spawn([&] {
    Table t = open_in_child();
    const std::string value(100, 'p');
    for (int round = 0; round < kRounds; ++round) {
      if (!wait_for(2 * round)) return 1;
      for (int i = 0; i < kItems; ++i) t.insert(key_of(round * kItems + i), value);
      phase[0].store(2 * round + 1);
    }
    return 0;
  });
  children_.spawn([&] {
    Table t = open_in_child();
    for (int round = 0; round < kRounds; ++round) {
      if (!wait_for(2 * round + 1)) return 1;
      for (int i = 0; i < kItems; ++i) {
        if (!t.erase(key_of(round * kItems + i))) return 2;
      }
      file_bytes[round] = t.stats().apparent_bytes;
      phase[0].store(2 * round + 2);
    }
    return 0;
  });
  children_.expect_all_succeed(std::chrono::seconds(120));
  EXPECT_EQ(parent.size(), 0u);
  std::printf("[ %s ] file after round 2: %llu bytes, after round %d: %llu bytes\n", std::string(engine_name(GetParam())).c_str(),
              static_cast<unsigned long long>(file_bytes[1]), kRounds, static_cast<unsigned long long>(file_bytes[kRounds - 1]));
  EXPECT_LE(file_bytes[kRounds - 1], 2 * file_bytes[1])
      << "the file grew from " << file_bytes[1] << " bytes after round 2 to " << file_bytes[kRounds - 1] << " after round "
      << kRounds;
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.unaccounted_bytes, 0u);
}

TEST_P(MultiProcess, CountersIncrementedByAssignSumToWhatChildrenReport) {
  constexpr int kChildren = 4, kCountersPerChild = 8, kRounds = 3000;
  Table parent = make(1000);
  SharedArray<std::uint64_t> reported(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      std::uint64_t increments = 0;
      for (int round = 0; round < kRounds; ++round) {
        const std::string key = "counter-" + std::to_string(c) + "-" + std::to_string(round % kCountersPerChild);
        const auto current = t.get(key);
        const std::uint64_t next = (current ? std::stoull(*current) : 0) + 1;
        t.assign(key, std::to_string(next));
        // Churn other keys so increments interleave with inserts, erases and shifts.
        t.assign("noise-" + std::to_string(c) + "-" + std::to_string(round % 97), std::string(round % 50, 'n'));
        if (round % 3 == 0) t.erase("noise-" + std::to_string(c) + "-" + std::to_string((round + 13) % 97));
        ++increments;
      }
      reported[c] = increments;
      return 0;
    });
  }
  children_.expect_all_succeed();
  std::uint64_t table_sum = 0, reported_sum = 0;
  for (int c = 0; c < kChildren; ++c) {
    reported_sum += reported[c];
    for (int k = 0; k < kCountersPerChild; ++k) {
      table_sum += std::stoull(parent.get("counter-" + std::to_string(c) + "-" + std::to_string(k)).value_or("0"));
    }
  }
  EXPECT_EQ(reported_sum, std::uint64_t{kChildren * kRounds});
  EXPECT_EQ(table_sum, reported_sum);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// Issue 12: four processes each doing 2,000 increments of one counter ended at
// 6,534-6,833 with get-then-assign. With add they end at exactly 8,000, and since each add
// is one atomic step, the values the 8,000 calls return are 1..8,000, each exactly once.
TEST_P(MultiProcess, FourProcessesAddingToOneCounterCountEveryIncrement) {
  constexpr int kChildren = 4, kRounds = 2000, kTotal = kChildren * kRounds;
  Table parent = make(1000);
  SharedArray<std::atomic<int>> returned(kTotal + 1);  // how often each value was returned
  StartLine start(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      if (!start.arrive_and_wait()) return 2;
      for (int round = 0; round < kRounds; ++round) {
        const std::int64_t now = t.add("cnt", 1);
        if (now < 1 || now > kTotal) return 1;
        returned[static_cast<std::size_t>(now)].fetch_add(1);
        // Churn other keys so the counter's record moves among shifts and reused memory.
        t.assign("noise-" + std::to_string(c) + "-" + std::to_string(round % 53), std::string(round % 40, 'n'));
        if (round % 3 == 0) t.erase("noise-" + std::to_string(c) + "-" + std::to_string((round + 7) % 53));
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  const auto value = parent.get("cnt");
  ASSERT_TRUE(value);
  EXPECT_EQ(decode_counter(*value), kTotal);
  int duplicates = 0, missing = 0;
  for (int v = 1; v <= kTotal; ++v) {
    duplicates += returned[static_cast<std::size_t>(v)].load() > 1;
    missing += returned[static_cast<std::size_t>(v)].load() == 0;
  }
  EXPECT_EQ(duplicates, 0) << "two adds returned the same value";
  EXPECT_EQ(missing, 0);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// The "claim this job" pattern: processes claim jobs with compare_and_set("pending" ->
// itself), do the work, and hand the job back with compare_and_set(itself -> "pending"),
// over and over. A claim must be exclusive: a shared tally of current holders never
// exceeds one, and handing back (which succeeds only if nobody changed the claim
// meanwhile) always succeeds. At the end, erase-if-equal removes every job.
TEST_P(MultiProcess, JobsClaimedWithCompareAndSetAreNeverClaimedTwice) {
  constexpr int kChildren = 4, kJobs = 8, kPasses = 5000;  // few jobs: processes meet on them all the time
  Table parent = make(kJobs * 2);
  for (int j = 0; j < kJobs; ++j) parent.insert("job-" + std::to_string(j), "pending");
  SharedArray<std::atomic<int>> holders(kJobs);
  SharedArray<std::atomic<int>> claims(1);
  StartLine start(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      if (!start.arrive_and_wait()) return 2;
      const std::string me = "claimed-by-" + std::to_string(c);
      for (int pass = 0; pass < kPasses; ++pass) {
        for (int j = 0; j < kJobs; ++j) {  // all in the same order: they meet on every job
          const std::string job = "job-" + std::to_string(j);
          if (!t.compare_and_set(job, "pending", me)) continue;
          claims[0].fetch_add(1);
          if (holders[static_cast<std::size_t>(j)].fetch_add(1) != 0) return 3;  // claimed twice at once
          holders[static_cast<std::size_t>(j)].fetch_sub(1);
          if (!t.compare_and_set(job, me, "pending")) return 4;  // someone changed our claim
        }
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  EXPECT_GE(claims[0].load(), kJobs * kPasses) << "every pass of the first process to reach a job claims it";
  for (int j = 0; j < kJobs; ++j) ASSERT_TRUE(parent.compare_and_set("job-" + std::to_string(j), "pending", std::nullopt)) << j;
  EXPECT_EQ(parent.size(), 0u);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// take_any as the claim: four processes drain a queue without naming the jobs; every
// job reaches exactly one of them, with the value it was stored with.
TEST_P(MultiProcess, TakeAnyByManyProcessesHandsEachJobToExactlyOne) {
  constexpr int kChildren = 4, kJobs = 3000;
  Table parent = make(kJobs);
  for (int j = 0; j < kJobs; ++j) parent.insert("job-" + std::to_string(j), encode_counter(j));
  SharedArray<std::atomic<int>> taken(kJobs);
  StartLine start(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&] {
      Table t = open_in_child();
      if (!start.arrive_and_wait()) return 2;
      while (const auto job = t.take_any()) {
        const int j = std::stoi(job->first.substr(4));
        if (j < 0 || j >= kJobs || decode_counter(job->second) != j) return 1;
        taken[static_cast<std::size_t>(j)].fetch_add(1);
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  int lost = 0, twice = 0;
  for (int j = 0; j < kJobs; ++j) {
    lost += taken[static_cast<std::size_t>(j)].load() == 0;
    twice += taken[static_cast<std::size_t>(j)].load() > 1;
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(parent.size(), 0u);
}

// The same with take as the claim: a queue of jobs drained by four processes at once.
// Each job's value reaches exactly one process.
TEST_P(MultiProcess, JobsTakenByManyProcessesReachExactlyOne) {
  constexpr int kChildren = 4, kJobs = 3000;
  Table parent = make(kJobs);
  for (int j = 0; j < kJobs; ++j) parent.insert("job-" + std::to_string(j), encode_counter(j));
  SharedArray<std::atomic<int>> taken(kJobs);
  StartLine start(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&] {
      Table t = open_in_child();
      if (!start.arrive_and_wait()) return 2;
      for (int j = 0; j < kJobs; ++j) {  // all in the same order: they meet on every job
        const std::optional<std::string> value = t.take("job-" + std::to_string(j));
        if (!value) continue;
        if (decode_counter(*value) != j) return 1;
        taken[static_cast<std::size_t>(j)].fetch_add(1);
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  for (int j = 0; j < kJobs; ++j) ASSERT_EQ(taken[static_cast<std::size_t>(j)].load(), 1) << "job " << j;
  EXPECT_EQ(parent.size(), 0u);
}

TEST_P(MultiProcess, IterationDuringInsertsNeverMissesAStableKey) {
  constexpr int kStable = 20'000, kWriters = 2, kPasses = 5;
  Table parent = make(200'000);
  for (int i = 0; i < kStable; ++i) parent.insert("stable-" + std::to_string(i), "s");
  SharedArray<std::atomic<int>> stop(1);
  for (int w = 0; w < kWriters; ++w) {
    children_.spawn([&, w] {
      Table t = open_in_child();
      // Inserts and erases of other keys shift runs in both directions under the iterator.
      for (std::uint64_t i = 0; stop[0].load() == 0; ++i) {
        t.insert("churn-" + std::to_string(w) + "-" + std::to_string(i % 50'000), "c");
        if (i % 2 == 1) t.erase("churn-" + std::to_string(w) + "-" + std::to_string((i * 7) % 50'000));
      }
      return 0;
    });
  }
  for (int pass = 0; pass < kPasses; ++pass) {
    std::unordered_map<std::string, int> seen;
    parent.for_each([&](std::string_view k, std::string_view) {
      if (k.rfind("stable-", 0) == 0) ++seen[std::string(k)];
    });
    for (int i = 0; i < kStable; ++i) {
      const auto it = seen.find("stable-" + std::to_string(i));
      ASSERT_NE(it, seen.end()) << "pass " << pass << ": stable key " << i << " missed";
      ASSERT_EQ(it->second, 1) << "pass " << pass << ": stable key " << i << " seen " << it->second << " times";
    }
  }
  stop[0].store(1);
  children_.expect_all_succeed();
}

TEST_P(MultiProcess, AttachedPidsListLiveProcessesOnlyAndDeadEntriesAreReused) {
  Table parent = make(1000);
  SharedArray<std::atomic<int>> ready(1);
  const pid_t child = children_.spawn([&] {
    Table t = open_in_child();
    t.assign("from-child", "x");
    ready[0].store(1);
    pause();  // killed by the parent while attached
    return 0;
  });
  while (ready[0].load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto pids = parent.stats().attached_pids;
  EXPECT_NE(std::find(pids.begin(), pids.end(), child), pids.end()) << "live child not listed";
  kill(child, SIGKILL);
  children_.wait_all();
  pids = parent.stats().attached_pids;
  EXPECT_EQ(std::find(pids.begin(), pids.end(), child), pids.end()) << "dead child still listed";
  EXPECT_EQ(parent.get("from-child"), "x");
  // Its entry (with its chunk and free lists) is inherited, not leaked: max_processes
  // attachments still fit after a death.
  std::vector<Table> handles;
  for (int i = 0; i < 3; ++i) handles.push_back(Table::open(name_, {.engine = GetParam()}));
  EXPECT_EQ(parent.stats().attached_pids.size(), 4u);
}

TEST_P(MultiProcess, InheritedHandleRefusesToWorkInTheChild) {
  Table parent = make(1000);
  parent.assign("k", "v");
  children_.spawn([&] {
    try {
      parent.get("k");
      return 1;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kInvalidArgument ? 0 : 2;
    }
  });
  children_.expect_all_succeed();
  EXPECT_EQ(parent.get("k"), "v") << "the child's exit must not detach the parent";
  EXPECT_EQ(parent.stats().attached_pids.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Engines, MultiProcess, ::testing::ValuesIn(built_engines()), engine_param_name);

}  // namespace
}  // namespace shmht::test
