// lockfree_pending_shift_test.cpp - the lock-free engine's pending shifts (long shifts made
// in several KCAS steps, lockfree_robin_hood.cpp) against what an adversarial review found:
// two erases of one long run, each killed between its steps, or exceptions at random KCAS
// fault points, used to leave one word in THREE adjacent slots (a step cut at a word that
// was already doubled), which neither check's sweep (finish_all_pending_shifts) nor cold
// start's repair (robin_hood::repair_interrupted_shifts) completed: a wrong size, a slot
// naming a freed record after an engine switch, check reporting a healthy table corrupt.
// The slot view below reads the file directly, with the layout's constants.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <map>
#include <vector>
#include <new>
#include <cstdio>
#include <chrono>
#include <optional>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using layout::Slot;
using testing::FaultPoint;

constexpr std::uint64_t kMaxShiftSlots = 1280;  // lockfree_robin_hood.cpp's step size

// Read-only view of a table file's slots and records.
class Slots {
 public:
  explicit Slots(const std::string& name) {
    const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    struct stat st {};
    ::fstat(fd, &st);
    bytes_ = static_cast<std::size_t>(st.st_size);
    base_ = static_cast<const std::byte*>(::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0));
    ::close(fd);
  }
  ~Slots() { ::munmap(const_cast<std::byte*>(base_), bytes_); }
  const layout::ImmutableHeader& header() const { return *reinterpret_cast<const layout::ImmutableHeader*>(base_); }
  std::uint64_t count() const { return header().bucket_count * layout::kSlotsPerBucket; }
  std::uint64_t word(std::uint64_t s) const {
    const std::uint64_t off = header().slot_array_offset + (s / layout::kSlotsPerBucket) * 64 + 8 * (1 + s % layout::kSlotsPerBucket);
    return reinterpret_cast<const std::atomic<std::uint64_t>*>(base_ + off)->load();
  }
  std::string key_at(std::uint64_t s) const {
    const std::byte* rec = base_ + Slot::offset_of(word(s));
    layout::RecordHeader h;
    std::memcpy(&h, rec, sizeof h);
    return std::string(reinterpret_cast<const char*>(rec + sizeof h), h.key_bytes);
  }
  bool same(std::uint64_t a, std::uint64_t b) const {
    return word(a) != layout::kEmptySlot && Slot::offset_of(word(a)) == Slot::offset_of(word(b));
  }
  // First slot of the first run of >= `copies` adjacent copies of one word.
  std::int64_t find_copies(int copies) const {
    for (std::uint64_t s = 0; s + copies <= count(); ++s) {
      int k = 1;
      while (k < copies && same(s, s + k)) ++k;
      if (k == copies) return static_cast<std::int64_t>(s);
    }
    return -1;
  }
  std::uint64_t occupied() const {
    std::uint64_t n = 0;
    for (std::uint64_t s = 0; s < count(); ++s) n += word(s) != layout::kEmptySlot;
    return n;
  }

 private:
  const std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
};

std::string value_of_key(std::uint64_t i) { return "v" + std::to_string(i % 1000000); }

int g_published = 0;

// Erases `key` in a child that dies at its second published KCAS (the second step of a
// long shift): at its first KCAS's phase 2, so helpers finish that step and nobody
// publishes the next. Returns true if it died and left a pending shift.
bool erase_and_die_between_steps(const std::string& name, const std::string& key) {
  Children child;
  child.spawn([&] {
    Table mine = Table::open(name);
    testing::set_fault_hook([](FaultPoint reached) {
      if (reached == FaultPoint::kKcasMidCleanup && ++g_published == 1) raise(SIGKILL);
    });
    g_published = 0;
    mine.erase(key);
    return 1;
  });
  const auto outcomes = child.wait_all(std::chrono::seconds(60));
  return outcomes.size() == 1 && !outcomes[0].exited;
}

class PendingShift : public ::testing::Test {
 protected:
  void SetUp() override { alarm(120); }
  void TearDown() override { alarm(0); }
  // interrupt_two_erases_of_one_run on this test's table; keeper_ stays attached.
  void interrupt_two_erases();
  ScopedName name_;
  std::optional<Table> keeper_;  // destroyed before name_ removes the file
  std::uint64_t n_ = 0;          // keys inserted
};

// Interrupts two erases of one long run (A, then the key that moved to A's slot, B), each
// killed between its KCAS steps: returns n (keys inserted) and the erased keys.
// `keeper` stays attached throughout, so no cold start repairs A's shift before B runs.
void interrupt_two_erases_of_one_run(const std::string& name, std::optional<Table>* keeper, std::uint64_t* n, std::set<std::string>* erased,
                 std::int64_t* triple) {
  CreateOptions options{.capacity = 20000, .max_key_bytes = 16, .max_value_bytes = 8, .engine = Engine::kLockFreeRobinHood};
  options.max_bytes = max_bytes_without_growth(options, 3);  // full at the probe-distance limit, not grown
  keeper->emplace(Table::create(name, options));
  try {
    while ((*keeper)->insert(key_of(*n), "v")) ++*n;
  } catch (const Error& e) {
    ASSERT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
  }
  ASSERT_EQ((*keeper)->stats().growths, 0u);
  Slots slots(name);
  // A: the key at the start of the longest run's first long stretch: find a slot f with
  // a run of > 2 * kMaxShiftSlots words with dist >= 2 after it.
  std::int64_t f = -1;
  for (std::uint64_t s = 0, len = 0; s < slots.count(); ++s) {
    const std::uint64_t w = slots.word(s);
    len = (w != layout::kEmptySlot && Slot::dist_of(w) >= 2) ? len + 1 : 0;
    if (len > 2 * kMaxShiftSlots + 2) { f = static_cast<std::int64_t>(s - len + 1); break; }
  }
  ASSERT_GE(f, 0) << "no run long enough";
  const std::string a = slots.key_at(f);
  ASSERT_TRUE(erase_and_die_between_steps(name, a)) << "A's erase took one step";
  erased->insert(a);
  (*keeper)->for_each([](std::string_view, std::string_view) {});  // finishes A's first step (helping)
  const std::int64_t q = slots.find_copies(2);
  ASSERT_EQ(q, f + static_cast<std::int64_t>(kMaxShiftSlots) - 1) << "A's pending shift";
  // B: the key now at f: its first step keeps the word at f + kMaxShiftSlots = q + 1, the
  // second copy of A's pending shift, and copies it into q: three copies.
  const std::string b = slots.key_at(f);
  ASSERT_TRUE(erase_and_die_between_steps(name, b)) << "B's erase took one step";
  erased->insert(b);
  (*keeper)->for_each([](std::string_view, std::string_view) {});  // finishes B's first step
  // B's first step used to keep the second copy of A's pending shift and copy it once
  // more: one word in three adjacent slots. It now cuts before A's pair.
  *triple = slots.find_copies(3);
  EXPECT_EQ(*triple, -1) << "one word in three adjacent slots";
}

void PendingShift::interrupt_two_erases() {
  std::set<std::string> erased;
  std::int64_t triple = -1;
  interrupt_two_erases_of_one_run(name_, &keeper_, &n_, &erased, &triple);
}

TEST_F(PendingShift, CheckCompletesTwoInterruptedErasesOfOneRun) {
  interrupt_two_erases();
  if (HasFatalFailure()) return;
  const std::uint64_t n = n_;
  Table& t = *keeper_;
  EXPECT_EQ(t.size(), n - 2);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  Slots slots(name_);
  EXPECT_EQ(slots.find_copies(2), -1) << "check completed every pending shift";
  EXPECT_EQ(slots.occupied(), n - 2);
}

TEST_F(PendingShift, ColdStartCompletesTwoInterruptedErasesAndCountsEachKeyOnce) {
  interrupt_two_erases();
  if (HasFatalFailure()) return;
  const std::uint64_t n = n_;
  keeper_.reset();
  Table t = Table::open(name_);  // the only attachment; A and B died attached: cold start
  Slots slots(name_);
  EXPECT_EQ(slots.find_copies(2), -1) << "cold start's repair completed every pending shift";
  EXPECT_EQ(t.size(), n - 2) << "items counted after cold start";
  std::uint64_t visited = 0;
  t.for_each([&](std::string_view, std::string_view) { ++visited; });
  EXPECT_EQ(visited, n - 2);
  for (std::uint64_t i = 0; i < n; ++i) t.erase(key_of(i));
  EXPECT_EQ(t.size(), 0u) << "every key erased";
}

// The same, reopened (cold start) under the seqlock engine, for which a word left in a
// third slot was no pending shift: erasing its key left a copy naming a freed record.
TEST_F(PendingShift, ColdStartIntoSeqlockAfterTwoInterruptedErasesLeavesNoDuplicate) {
  interrupt_two_erases();
  if (HasFatalFailure()) return;
  const std::uint64_t n = n_;
  keeper_.reset();
  Table t = Table::open(name_, {.engine = Engine::kSeqlock});
  std::uint64_t still = 0, errors = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    try {
      t.erase(key_of(i));
      if (t.contains(key_of(i))) {
        if (still++ == 0) ADD_FAILURE() << key_of(i) << " is still present after its erase";
      }
    } catch (const Error& e) {
      if (errors++ == 0) ADD_FAILURE() << key_of(i) << ": " << e.what();
    }
  }
  EXPECT_EQ(still, 0u);
  EXPECT_EQ(errors, 0u);
  EXPECT_EQ(t.size(), 0u);
}

// Readers during long multi-step shifts: two writers erase and re-insert their own keys
// in a full table (most shifts take several steps and meet each other's pending shifts),
// while a reader checks that every stable key (never erased; re-assigned the same value)
// is always found with its value, and that iteration sees each stable key exactly once.
TEST_F(PendingShift, ReadersDuringPendingShiftsSeeEveryStableKeyOnce) {
  constexpr int kWriters = 2;
  std::uint64_t n = 0;
  CreateOptions options{.capacity = 5000, .max_key_bytes = 16, .max_value_bytes = 8, .engine = Engine::kLockFreeRobinHood};
  options.max_bytes = max_bytes_without_growth(options, 1);  // full at the probe-distance limit, not grown
  Table t = Table::create(name_, options);
  try {
    while (t.insert(key_of(n), value_of_key(n))) ++n;
  } catch (const Error& e) {
    ASSERT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
  }
  ASSERT_EQ(t.stats().growths, 0u);
  SharedArray<std::atomic<int>> stop(1);
  SharedArray<char> failure(256);
  StartLine start(kWriters + 1);
  Children children;
  for (int p = 0; p < kWriters; ++p) {
    children.spawn([&, p] {
      Table mine = Table::open(name_);
      if (!start.arrive_and_wait()) return 2;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(6);
      for (std::uint64_t r = 0; std::chrono::steady_clock::now() < until; ++r) {
        const std::uint64_t k = (r * 8 + 1 + 2 * p) % n;  // odd keys: 1, 3 mod 4 by writer
        if (k % 2 == 0) continue;
        if (mine.erase(key_of(k))) {
          try {
            mine.insert(key_of(k), value_of_key(k));
          } catch (const Error& e) {
            if (e.code() != ErrorCode::kTableFull) throw;
          }
        }
        const std::uint64_t s = (r * 2 + 2 * p) % n & ~std::uint64_t{1};  // stable: even keys
        try {
          mine.assign(key_of(s), value_of_key(s));
        } catch (const Error& e) {
          // No record to spare yet (max_bytes keeps the table from growing, and this
          // process's erases have not freed one): nothing changed, the key keeps its value.
          if (e.code() != ErrorCode::kTableFull) throw;
        }
      }
      return 0;
    });
  }
  children.spawn([&] {
    Table mine = Table::open(name_);
    if (!start.arrive_and_wait()) return 2;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(6);
    std::string v;
    for (int round = 0; std::chrono::steady_clock::now() < until; ++round) {
      for (std::uint64_t i = 0; i < n; i += 2) {
        const std::optional<std::string> got = mine.get(key_of(i));
        v = got.value_or("<absent>");
        if (!got || v != value_of_key(i)) {
          std::snprintf(&failure[0], 256, "stable key %llu missing or wrong value '%s'", (unsigned long long)i, v.c_str());
          return 3;
        }
      }
      std::set<std::string> seen;
      bool dup = false;
      std::string dup_key;
      mine.for_each([&](std::string_view key, std::string_view) {
        if (!seen.emplace(key).second) { dup = true; dup_key = key; }
      });
      if (dup) {
        std::snprintf(&failure[0], 256, "iteration saw %s twice", dup_key.c_str());
        return 4;
      }
      for (std::uint64_t i = 0; i < n; i += 2) {
        if (!seen.count(key_of(i))) {
          std::snprintf(&failure[0], 256, "iteration missed stable key %llu", (unsigned long long)i);
          return 5;
        }
      }
    }
    return 0;
  });
  const auto outcomes = children.wait_all(std::chrono::seconds(60));
  for (const auto& o : outcomes) EXPECT_TRUE(o.exited && o.code_or_signal == 0) << o.code_or_signal << ": " << &failure[0];
  std::uint64_t present = 0;
  for (std::uint64_t i = 0; i < n; ++i) present += t.contains(key_of(i));
  EXPECT_EQ(t.size(), present);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// Exceptions (bad_alloc from the fault hook) at random KCAS fault points during erases
// and inserts near capacity, where most shifts take several steps. Whatever each
// interrupted write did, the table must stay consistent: size() equals the keys present,
// iteration sees each once, check is clean.
std::uint64_t g_rng = 88172645463325252ull;
int g_throws = 0;
TEST_F(PendingShift, ExceptionsAtRandomFaultPointsDuringLongShiftsKeepTheTableConsistent) {
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
  testing::set_fault_hook([](FaultPoint reached) {
    if (reached != FaultPoint::kKcasPublished && reached != FaultPoint::kKcasMidInstall &&
        reached != FaultPoint::kKcasDecided && reached != FaultPoint::kKcasMidCleanup && reached != FaultPoint::kKcasMidRdcss) {
      return;
    }
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    if (g_rng % 97 == 0) { ++g_throws; throw std::bad_alloc(); }
  });
  const std::uint64_t universe = n + n / 4;
  for (std::uint64_t r = 0; r < 20000; ++r) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    const std::uint64_t k = g_rng % universe;
    try {
      if (g_rng & 1) {
        t.erase(key_of(k));
      } else if (g_rng & 2) {
        t.insert(key_of(k), "i");
      } else {
        t.assign(key_of(k), "a");
      }
    } catch (const std::bad_alloc&) {
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kTableFull) ADD_FAILURE() << e.what();
    }
  }
  testing::set_fault_hook(nullptr);
  EXPECT_GT(g_throws, 10);
  // A write runs the own descriptor's unfinished use, if any. The arena is at max_bytes
  // (records the thrown writes leaked included): an erase frees a record of the size the
  // insert after it needs ("key-last" is as long as the keys here).
  for (std::uint64_t i = 1000; i < universe; ++i) {  // "key-1000" on: 8 bytes
    if (t.erase(key_of(i))) break;
  }
  t.insert("key-last", "v");
  std::uint64_t present = 0;
  for (std::uint64_t i = 0; i < universe; ++i) present += t.contains(key_of(i));
  present += t.contains("key-last");
  EXPECT_EQ(t.size(), present);
  std::set<std::string> seen;
  std::uint64_t visited = 0;
  t.for_each([&](std::string_view key, std::string_view) { ++visited; seen.emplace(key); });
  EXPECT_EQ(visited, present);
  EXPECT_EQ(seen.size(), present);
  {
    Slots slots(name_);
    std::map<std::uint64_t, std::vector<std::uint64_t>> at;
    for (std::uint64_t s = 0; s < slots.count(); ++s) {
      if (slots.word(s) != layout::kEmptySlot) at[Slot::offset_of(slots.word(s))].push_back(s);
    }
    for (const auto& [record, where] : at) {
      if (where.size() < 2) continue;
      std::string list;
      for (std::uint64_t s : where) list += " " + std::to_string(s) + "(d" + std::to_string(Slot::dist_of(slots.word(s))) + ")";
      if (std::getenv("REVIEW2_VERBOSE")) std::printf("before check: record %llu in slots%s\n", (unsigned long long)record, list.c_str());
    }
  }
  // check in a child, bounded: with kMaxShiftSlots shrunk to 4, one word ends up in more
  // than kMaxShiftSlots + 1 adjacent slots, and finish_pending_shift's step maps that chain
  // onto itself forever (check, and any writer of that key, hang).
  SharedArray<char> problem(256);
  Children child;
  child.spawn([&] {
    const CheckReport report = check_table(name_);
    if (!report.problems.empty()) std::snprintf(&problem[0], 256, "%s", report.problems.front().c_str());
    return report.clean ? 0 : 1;
  });
  const auto outcomes = child.wait_all(std::chrono::seconds(30));
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].exited) << "check hung (killed after 30 s)";
  EXPECT_TRUE(outcomes[0].exited && outcomes[0].code_or_signal == 0) << "check not clean: " << &problem[0];
}

}  // namespace
}  // namespace shmht::test
