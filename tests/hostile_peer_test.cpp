// hostile_peer_test.cpp - a peer with write access scribbles random words over the header
// page (its immutable part, which open() validated, and its mutable words: arena_end,
// file_bytes, entry_high_water, stripe_count, active_engine, state, the shared free
// lists), the slot array (control words included) and the arena while other processes
// read and write. The others must never crash or hang: each operation either works, or
// reports the damage (kCorrupt), or finds the damaged table full (kTableFull, when
// scribbled slots leave no free one near a key's home). `check` then reports the damage,
// or refuses to open the table at all (kCorrupt: its header checksum no longer matches).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "layout/header.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

constexpr int kKeys = 4000;
constexpr int kWorkers = 3;
constexpr auto kWorkerRun = std::chrono::milliseconds(1500);

// Exit codes of a worker.
constexpr int kUnexpectedError = 5;

struct Tally {
  std::atomic<std::uint64_t> ops, corrupt, full;
};

// Counts a failure a worker may meet on a damaged table: kCorrupt, or the table found
// full (kTableFull; with no_space_too also kNoSpace, a damaged table failing to grow).
// Anything else is reported and false.
bool tally_acceptable(const Error& e, Tally* tally, bool no_space_too) {
  if (e.code() == ErrorCode::kCorrupt) {
    tally->corrupt.fetch_add(1);
  } else if (e.code() == ErrorCode::kTableFull || (no_space_too && e.code() == ErrorCode::kNoSpace)) {
    tally->full.fetch_add(1);
  } else {
    fprintf(stderr, "worker: unexpected %s: %s\n", std::string(error_code_name(e.code())).c_str(), e.what());
    return false;
  }
  return true;
}

// Random operations on random keys until the deadline; only kCorrupt and kTableFull are
// acceptable failures.
// Each worker opens the table before the scribbler starts (`start`): an open that meets a
// scribbled header rightly fails, but this test is about what attached processes survive.
int run_worker(const std::string& name, unsigned seed, Tally* tally, StartLine* start) {
  std::mt19937_64 rng(seed);
  Table t = Table::open(name);
  if (!start->arrive_and_wait()) return kUnexpectedError;
  const auto deadline = std::chrono::steady_clock::now() + kWorkerRun;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string key = key_of(rng() % kKeys);
    try {
      switch (rng() % 6) {
        case 0: t.get(key); break;
        case 1: t.contains(key); break;
        case 2: t.assign(key, std::string(rng() % 100, 'v')); break;
        case 3: t.insert(key, "i"); break;
        case 4: t.erase(key); break;
        case 5:
          if (rng() % 50 == 0) t.for_each([](std::string_view, std::string_view) {});
          break;
      }
    } catch (const Error& e) {
      if (!tally_acceptable(e, tally, /*no_space_too=*/false)) return kUnexpectedError;
    }
    tally->ops.fetch_add(1);
  }
  return 0;
}

// Maps the file itself (no Table) and writes random words at random 8-aligned offsets
// of the header page, the slot array and the arena handed out so far.
int run_scribbler(const std::string& path, unsigned seed, int words, StartLine* start) {
  if (!start->arrive_and_wait()) return 3;
  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return 1;
  const off_t size = lseek(fd, 0, SEEK_END);
  auto* base = static_cast<std::byte*>(mmap(nullptr, static_cast<std::size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  if (base == MAP_FAILED) return 2;
  const auto* header = reinterpret_cast<const layout::Header*>(base);
  const std::uint64_t slots_begin = header->fixed.slot_array_offset, slots_end = header->fixed.arena_offset;
  const std::uint64_t arena_end = std::min<std::uint64_t>(header->arena_end.load(), static_cast<std::uint64_t>(size));
  std::mt19937_64 rng(seed);
  const struct {
    std::uint64_t begin, end;
  } parts[] = {{0, layout::kPageBytes}, {slots_begin, slots_end}, {slots_end, arena_end}};
  for (int i = 0; i < words; ++i) {
    const auto [begin, end] = parts[rng() % std::size(parts)];
    const std::uint64_t offset = begin + (rng() % ((end - begin) / 8)) * 8;
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + offset)).store(rng(), std::memory_order_relaxed);
    usleep(500);
  }
  munmap(base, static_cast<std::size_t>(size));
  return 0;
}

class HostilePeer : public ::testing::TestWithParam<Engine> {};

TEST_P(HostilePeer, ScribblingNeverCrashesOrHangsTheOthersAndCheckReportsIt) {
  ScopedName name;
  std::string path;
  {
    Table t = Table::create(name, {.capacity = 2 * kKeys, .engine = GetParam()});
    for (int i = 0; i < kKeys; i += 2) t.insert(key_of(i), "initial");
    path = t.path();
  }
  SharedArray<Tally> tally(1);
  StartLine start(kWorkers + 1);
  Children children;
  for (int w = 0; w < kWorkers; ++w) children.spawn([&, w] { return run_worker(name, 1000u + w, &tally[0], &start); });
  children.spawn([&] { return run_scribbler(path, 7u, 2000, &start); });
  // A hang shows as an overrun: the workers stop on their own after kWorkerRun.
  children.expect_all_succeed(std::chrono::seconds(60));
  EXPECT_GT(tally[0].ops.load(), 0u);
  std::printf("%llu operations, %llu reported corruption, %llu found the table full\n",
              static_cast<unsigned long long>(tally[0].ops.load()), static_cast<unsigned long long>(tally[0].corrupt.load()),
              static_cast<unsigned long long>(tally[0].full.load()));

  // check itself runs in a child too: it must not crash or hang on the damage either.
  Children checker;
  checker.spawn([&] {
    try {
      const CheckReport report = check_table(name);
      return report.clean ? 1 : 0;  // 2000 random words cannot leave every invariant intact
    } catch (const Error& e) {
      return e.code() == ErrorCode::kCorrupt ? 0 : 4;  // the scribbled header is refused at open
    }
  });
  checker.expect_all_succeed(std::chrono::seconds(60));
}

// Growth (issue 20): workers keep inserting new keys into a table started small, so it
// grows while the scribbler writes the words that describe its slot arrays
// (Header::growth, migration_cursor, reclaimed_below, array_offsets), sets MOVED bits in
// the current array's control words, and writes random words there. Nobody may crash or
// hang; operations work or report kCorrupt (or kTableFull / kNoSpace: a damaged table may
// look full or fail to grow).
int run_growing_worker(const std::string& name, unsigned seed, Tally* tally, StartLine* start) {
  std::mt19937_64 rng(seed);
  Table t = Table::open(name);
  if (!start->arrive_and_wait()) return kUnexpectedError;
  const auto deadline = std::chrono::steady_clock::now() + kWorkerRun;
  for (std::uint64_t n = 0; std::chrono::steady_clock::now() < deadline; ++n) {
    const std::string key = key_of(seed * 1'000'000 + n);
    try {
      switch (rng() % 4) {
        case 0: t.get(key_of(rng() % kKeys)); break;
        case 1: t.insert(key, "grow"); break;
        case 2: t.erase(key_of(seed * 1'000'000 + rng() % (n + 1))); break;
        case 3:
          if (rng() % 100 == 0) t.for_each([](std::string_view, std::string_view) {});
          break;
      }
    } catch (const Error& e) {
      if (!tally_acceptable(e, tally, /*no_space_too=*/true)) return kUnexpectedError;
    }
    tally->ops.fetch_add(1);
  }
  return 0;
}

int run_growth_scribbler(const std::string& path, unsigned seed, int words, StartLine* start) {
  if (!start->arrive_and_wait()) return 3;
  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return 1;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < words; ++i) {
    // The file grows as the table does: map what is there now.
    const off_t size = lseek(fd, 0, SEEK_END);
    auto* base = static_cast<std::byte*>(mmap(nullptr, static_cast<std::size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (base == MAP_FAILED) return 2;
    auto* header = reinterpret_cast<layout::Header*>(base);
    auto word_at = [&](std::uint64_t offset) { return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + offset)); };
    const std::uint32_t generation = static_cast<std::uint32_t>(header->growth.load() >> 1) % layout::kMaxGenerations;
    const std::uint64_t array = generation == 0 ? header->fixed.slot_array_offset : header->array_offsets[generation].load();
    const bool array_mapped = array % 64 == 0 && array >= layout::kPageBytes && array + 64 * 64 <= static_cast<std::uint64_t>(size);
    switch (rng() % 4) {
      case 0: word_at(offsetof(layout::Header, growth) + 8 * (rng() % 3)).store(rng() % 2 ? rng() : rng() % 64); break;
      case 1: header->array_offsets[rng() % layout::kMaxGenerations].store(rng() % 2 ? rng() : rng() % static_cast<std::uint64_t>(size)); break;
      case 2:
        if (array_mapped) word_at(array + 64 * (rng() % 64)).fetch_or(layout::kMovedBit);  // a control word
        break;
      case 3:
        if (array_mapped) word_at(array + 8 * (rng() % (64 * 8))).store(rng());
        break;
    }
    munmap(base, static_cast<std::size_t>(size));
    usleep(2000);
  }
  ::close(fd);
  return 0;
}

TEST_P(HostilePeer, ScribblingOnTheGrowthWordsNeverCrashesOrHangsTheOthers) {
  ScopedName name;
  std::string path;
  {
    Table t = Table::create(name, {.capacity = 100, .max_bytes = std::uint64_t{256} << 20, .engine = GetParam()});
    for (int i = 0; i < kKeys; i += 2) t.insert(key_of(i), "initial");  // a few growths already
    path = t.path();
  }
  SharedArray<Tally> tally(1);
  StartLine start(kWorkers + 1);
  Children children;
  for (int w = 0; w < kWorkers; ++w) children.spawn([&, w] { return run_growing_worker(name, 1u + w, &tally[0], &start); });
  children.spawn([&] { return run_growth_scribbler(path, 11u, 400, &start); });
  children.expect_all_succeed(std::chrono::seconds(60));
  EXPECT_GT(tally[0].ops.load(), 0u);
  std::printf("%llu operations, %llu reported corruption, %llu found the table full\n",
              static_cast<unsigned long long>(tally[0].ops.load()), static_cast<unsigned long long>(tally[0].corrupt.load()),
              static_cast<unsigned long long>(tally[0].full.load()));
  Children checker;
  checker.spawn([&] {
    try {
      check_table(name);
      return 0;  // clean or not: what matters is that it answered
    } catch (const Error& e) {
      return e.code() == ErrorCode::kCorrupt ? 0 : 4;
    }
  });
  checker.expect_all_succeed(std::chrono::seconds(60));
}

INSTANTIATE_TEST_SUITE_P(AllEngines, HostilePeer, ::testing::ValuesIn(built_engines()), engine_param_name);

}  // namespace
}  // namespace shmht::test
