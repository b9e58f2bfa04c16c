// lockfree_hardening_test.cpp - the lock-free engine's defects of issue 19 §1, each
// reproduced: descriptor sequences past 43 bits, an exception escaping a multi-word CAS,
// erases and inserts near capacity, item counters that straddle their 2^40 wrap.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <new>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "layout/engine_area.hpp"
#include "layout/header.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using layout::ImmutableHeader;
using testing::FaultPoint;

std::string path_of(const std::string& name) { return "/dev/shm/" + name; }

// The table file mapped shared, to edit the engine area under live handles (which see the
// edit at once: they map the same file).
class MappedFile {
 public:
  explicit MappedFile(const std::string& name) {
    const int fd = ::open(path_of(name).c_str(), O_RDWR);
    EXPECT_GE(fd, 0);
    struct stat st {};
    ::fstat(fd, &st);
    bytes_ = static_cast<std::size_t>(st.st_size);
    base_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(base_, MAP_FAILED);
  }
  ~MappedFile() { ::munmap(base_, bytes_); }
  const ImmutableHeader& header() const { return *static_cast<const ImmutableHeader*>(base_); }
  layout::KcasDescriptor& descriptor(std::uint32_t entry) {
    const std::uint64_t offset = header().engine_area_offset + layout::descriptors_offset(header().max_processes) +
                                 sizeof(layout::KcasDescriptor) * entry;
    return *reinterpret_cast<layout::KcasDescriptor*>(static_cast<std::byte*>(base_) + offset);
  }

 private:
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
};

void expect_clean(const std::string& name) {
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

class LockFreeHardening : public ::testing::Test {
 protected:
  void SetUp() override { alarm(120); }  // a hang fails the test instead of the run
  void TearDown() override {
    alarm(0);
    testing::set_fault_hook(nullptr);
  }
  ScopedName name_;
};

// --- 1. Sequence numbers past the 43 bits a reference carries ---------------------------

// Every entry's KCAS and RDCSS descriptors a few uses before sequence 2^43, as after
// 2^43 operations of one attachment entry (sequences survive detach and re-attach).
// The status word: sequence << 2 | status (2: succeeded), written as the file stores it.
void fast_forward_sequences(MappedFile& file, std::uint32_t entries) {
  const std::uint64_t seq = (std::uint64_t{1} << 43) - 3;
  for (std::uint32_t e = 0; e < entries; ++e) {
    file.descriptor(e).kcas_state.store(seq << 2 | 2);
    file.descriptor(e).rdcss_state.store(seq << 2 | 2);
  }
}

// "v7" for ('v', 7).
std::string value_of(char prefix, int i) {
  std::string value(1, prefix);
  value += std::to_string(i);
  return value;
}

TEST_F(LockFreeHardening, WritesStayCorrectWhenSequencesPassFortyThreeBits) {
  Table t = Table::create(name_, {.capacity = 1000, .max_processes = 2, .engine = Engine::kLockFreeRobinHood});
  {
    MappedFile file(name_);
    fast_forward_sequences(file, 2);  // entry 1: check_table's own attachment
  }
  // Each write is one KCAS and one RDCSS per word: these cross 2^43 within the first few.
  constexpr int kKeys = 40;
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(t.insert(key_of(i), value_of('v', i))) << i;
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(t.get(key_of(i)), value_of('v', i)) << i;
  for (int i = 0; i < kKeys; i += 2) EXPECT_FALSE(t.assign(key_of(i), value_of('w', i))) << i;
  for (int i = 1; i < kKeys; i += 4) EXPECT_TRUE(t.erase(key_of(i))) << i;
  for (int i = 0; i < kKeys; ++i) {
    const std::optional<std::string> expected =
        i % 4 == 1 ? std::nullopt : std::optional<std::string>(value_of(i % 2 == 0 ? 'w' : 'v', i));
    EXPECT_EQ(t.get(key_of(i)), expected) << i;
  }
  EXPECT_EQ(t.size(), kKeys - kKeys / 4);
  expect_clean(name_);
}

// --- 2. An exception escaping a multi-word CAS ------------------------------------------

// Throws std::bad_alloc (what copying a descriptor may throw, like kCorrupt from a
// resolve or the depth guard) the first time the KCAS reaches `g_throw_at`.
FaultPoint g_throw_at;
bool g_throw_armed = false;
void throw_once_at(FaultPoint point) {
  g_throw_at = point;
  g_throw_armed = true;
  testing::set_fault_hook([](FaultPoint reached) {
    if (reached == g_throw_at && g_throw_armed) {
      g_throw_armed = false;
      throw std::bad_alloc();
    }
  });
}

struct EscapeCase {
  FaultPoint point;
  bool reopen;  // the next write comes from a fresh handle (the same entry, closed cleanly)
};

class ExceptionEscapesKcas : public LockFreeHardening, public ::testing::WithParamInterface<EscapeCase> {};

// An insert's KCAS is left published with its references in place (the counter first:
// the engine area lies below the slot array). The next write of the same entry is an
// erase, which names the other counter: nothing reads the insert's words before its
// KCAS reuses the descriptor.
TEST_P(ExceptionEscapesKcas, WordsAreFinishedAndTheTableStaysUsable) {
  std::optional<Table> t(Table::create(name_, {.capacity = 1000, .max_processes = 2, .engine = Engine::kLockFreeRobinHood}));
  for (int i = 0; i < 20; ++i) t->insert(key_of(i), "v");
  throw_once_at(GetParam().point);
  EXPECT_THROW(t->insert("interrupted", "v"), std::bad_alloc);
  testing::set_fault_hook(nullptr);
  if (GetParam().reopen) {
    t->close();
    t.emplace(Table::open(name_));
  }
  EXPECT_TRUE(t->erase(key_of(3)));
  EXPECT_TRUE(t->insert("after", "v"));
  // The interrupted insert may have been completed by whoever finished it: either way the
  // count agrees with the keys present.
  const bool interrupted_present = t->contains("interrupted");
  EXPECT_EQ(t->size(), 20u + interrupted_present);
  std::uint64_t seen = 0;
  t->for_each([&](std::string_view, std::string_view) { ++seen; });
  EXPECT_EQ(seen, 20u + interrupted_present);
  expect_clean(name_);
}

std::string escape_case_name(const ::testing::TestParamInfo<EscapeCase>& param) {
  return std::string(param.param.point == FaultPoint::kKcasMidInstall ? "MidInstall" : "Decided") +
         (param.param.reopen ? "ThenFreshHandle" : "ThenSameHandle");
}

INSTANTIATE_TEST_SUITE_P(Points, ExceptionEscapesKcas,
                         ::testing::Values(EscapeCase{FaultPoint::kKcasMidInstall, false},
                                           EscapeCase{FaultPoint::kKcasMidInstall, true},
                                           EscapeCase{FaultPoint::kKcasDecided, false},
                                           EscapeCase{FaultPoint::kKcasDecided, true}),
                         escape_case_name);

// --- 3. Near capacity: erases never fail, inserts fill as far as seqlock's --------------

// One table file, copied, so both engines see the same hash seed: the same keys in the
// same order then take the same slots under both, until one of them refuses an insert.
TEST_F(LockFreeHardening, NearCapacityLockFreeFillsAsFarAsSeqlockAndErasesNeverFail) {
  ScopedName copy;
  // At a max_bytes that leaves no room to grow: both engines meet the probe-distance limit.
  CreateOptions options{.capacity = 20000, .max_key_bytes = 16, .max_value_bytes = 8, .engine = Engine::kSeqlock};
  options.max_bytes = max_bytes_without_growth(options, 3);
  Table::create(name_, options).close();
  std::filesystem::copy_file(path_of(name_), path_of(copy));
  Table seqlock = Table::open(name_);
  Table lockfree = Table::open(copy, {.engine = Engine::kLockFreeRobinHood});

  auto fill = [](Table& t) {
    std::uint64_t n = 0;
    try {
      while (t.insert(key_of(n), "v")) ++n;
      ADD_FAILURE() << "insert of a new key returned false";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
    }
    return n;
  };
  const std::uint64_t seqlock_items = fill(seqlock);
  const std::uint64_t lockfree_items = fill(lockfree);
  EXPECT_EQ(seqlock.stats().growths, 0u);
  EXPECT_EQ(lockfree.stats().growths, 0u);
  EXPECT_GT(seqlock_items, 20000u);
  EXPECT_EQ(lockfree_items, seqlock_items) << "the same keys in the same order fill both engines' slots alike";

  auto erase_all = [](Table& t, std::uint64_t n) {
    std::uint64_t failed = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      try {
        if (!t.erase(key_of(i))) ADD_FAILURE() << "key " << i << " was missing";
      } catch (const Error& e) {
        if (failed++ == 0) ADD_FAILURE() << "erase of key " << i << ": " << e.what();
      }
    }
    return failed;
  };
  EXPECT_EQ(erase_all(lockfree, lockfree_items), 0u);
  EXPECT_EQ(erase_all(seqlock, seqlock_items), 0u);
  EXPECT_EQ(lockfree.size(), 0u);
  lockfree.close();
  expect_clean(copy);
}

// An eraser killed between two steps of a long shift leaves a pending shift (one word in
// two adjacent slots). Nobody waits for it: iteration reports its key once, writers
// complete it, check finds the table clean. The child erases keys one by one and dies at
// the second KCAS one erase publishes (alone, none of its KCASes fails: a second one is
// the next step of a long shift).
int g_published = 0;
TEST_F(LockFreeHardening, PendingShiftOfAKilledEraserIsCompletedByOthers) {
  std::uint64_t n = 0;
  {
    CreateOptions options{.capacity = 20000, .max_key_bytes = 16, .max_value_bytes = 8, .engine = Engine::kLockFreeRobinHood};
    options.max_bytes = max_bytes_without_growth(options, 3);  // full at the probe-distance limit, not grown
    Table t = Table::create(name_, options);
    try {
      while (t.insert(key_of(n), "v")) ++n;
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
    }
    ASSERT_EQ(t.stats().growths, 0u);
  }
  Table t = Table::open(name_);  // attached throughout: no cold start (whose repair would complete the shift)
  SharedArray<std::uint64_t> erasing(1);
  Children child;
  child.spawn([&] {
    Table mine = Table::open(name_);
    testing::set_fault_hook([](FaultPoint reached) {
      if (reached == FaultPoint::kKcasPublished && ++g_published == 2) raise(SIGKILL);
    });
    for (std::uint64_t i = 0; i < n; ++i) {
      erasing[0] = i;
      g_published = 0;
      mine.erase(key_of(i));
    }
    return 1;  // no erase took two steps
  });
  const auto outcomes = child.wait_all(std::chrono::seconds(60));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "no erase needed a second KCAS step: the test proves nothing";
  const std::uint64_t erased = erasing[0] + 1;  // the dying erase's first step unlinked its key

  EXPECT_EQ(t.size(), n - erased);
  std::set<std::string> keys;
  std::uint64_t visited = 0;
  t.for_each([&](std::string_view key, std::string_view) {
    ++visited;
    keys.emplace(key);
  });
  EXPECT_EQ(visited, n - erased) << "a doubled word is one key";
  EXPECT_EQ(keys.size(), n - erased);
  for (std::uint64_t i = 0; i < n; ++i) EXPECT_EQ(t.contains(key_of(i)), i >= erased) << i;
  for (std::uint64_t i = erased; i < n; i += 7) EXPECT_TRUE(t.assign(key_of(i), "w") == false) << i;
  expect_clean(name_);
  for (std::uint64_t i = erased; i < n; ++i) EXPECT_TRUE(t.erase(key_of(i))) << i;
  EXPECT_EQ(t.size(), 0u);
  expect_clean(name_);
}

// Processes inserting and erasing at once in a full table, where most shifts take several
// KCAS steps and meet each other's pending shifts. Each process owns its keys, so what it
// last did to one is what the table must say at the end.
TEST_F(LockFreeHardening, ConcurrentLongShiftsNearCapacityKeepEveryKey) {
  constexpr int kProcesses = 3;
  constexpr std::uint64_t kRounds = 3000;
  std::uint64_t n = 0;
  CreateOptions options{.capacity = 5000, .max_key_bytes = 16, .max_value_bytes = 8, .engine = Engine::kLockFreeRobinHood};
  options.max_bytes = max_bytes_without_growth(options, 1);  // full at the probe-distance limit, not grown
  Table t = Table::create(name_, options);
  try {
    while (t.insert(key_of(n), "v")) ++n;
  } catch (const Error& e) {
    ASSERT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
  }
  ASSERT_EQ(t.stats().growths, 0u);
  // present[i]: key i is in the table at the end (keys n + ... are the processes' new ones).
  const std::uint64_t keys = n + kProcesses * kRounds;
  SharedArray<std::uint8_t> present(keys);
  for (std::uint64_t i = 0; i < n; ++i) present[i] = 1;
  StartLine start(kProcesses);
  Children children;
  for (int p = 0; p < kProcesses; ++p) {
    children.spawn([&, p] {
      Table mine = Table::open(name_);
      if (!start.arrive_and_wait()) return 2;
      for (std::uint64_t r = 0; r < kRounds; ++r) {
        const std::uint64_t old_key = (r * kProcesses + p) % n;  // owned by p: ≡ p mod kProcesses below n...
        if (old_key % kProcesses == static_cast<std::uint64_t>(p) && present[old_key]) {
          if (!mine.erase(key_of(old_key))) return 3;
          present[old_key] = 0;
        }
        const std::uint64_t new_key = n + r * kProcesses + p;
        try {
          if (!mine.insert(key_of(new_key), "n")) return 4;
          present[new_key] = 1;
        } catch (const Error& e) {
          if (e.code() != ErrorCode::kTableFull) throw;
        }
      }
      return 0;
    });
  }
  children.expect_all_succeed(std::chrono::seconds(90));
  std::uint64_t expected = 0;
  for (std::uint64_t i = 0; i < keys; ++i) {
    expected += present[i];
    EXPECT_EQ(t.contains(key_of(i)), present[i] != 0) << i;
  }
  EXPECT_EQ(t.size(), expected);
  std::set<std::string> seen;
  t.for_each([&](std::string_view key, std::string_view) { EXPECT_TRUE(seen.emplace(key).second) << key; });
  EXPECT_EQ(seen.size(), expected);
  expect_clean(name_);
}

// --- 4. Item counters that straddle the 2^40 wrap ---------------------------------------

// Entry 0 has added 2^39 + 5 items, entry 1 removed 2^39: each difference alone, read as a
// signed 40-bit number, is about -2^39; their sum is 5.
TEST_F(LockFreeHardening, ItemCountersAreSummedBeforeTheyAreSignExtended) {
  Table a = Table::create(name_, {.capacity = 1000, .max_processes = 3, .engine = Engine::kLockFreeRobinHood});
  Table b = Table::open(name_);  // entry 1
  for (int i = 0; i < 5; ++i) a.insert(key_of(i), "v");
  {
    MappedFile file(name_);
    const std::uint64_t half = std::uint64_t{1} << 39;
    layout::KcasDescriptor& first = file.descriptor(0);
    layout::KcasDescriptor& second = file.descriptor(1);
    ASSERT_EQ(first.items_added.load() - first.items_removed.load(), 5u) << "entry 0 did the inserts";
    first.items_added.store(first.items_added.load() + half);
    second.items_removed.store(second.items_removed.load() + half);
  }
  EXPECT_EQ(a.size(), 5u);
  EXPECT_EQ(b.size(), 5u);
  expect_clean(name_);
}

}  // namespace
}  // namespace shmht::test
