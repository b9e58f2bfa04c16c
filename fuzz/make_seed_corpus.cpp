// make_seed_corpus.cpp - writes the fuzzers' seed corpus: real tables of every engine for
// table_file, and operation programs for operations.
//
//   build/fuzz/make_seed_corpus fuzz/corpus
//
// Run it again whenever the layout version changes (tests/fuzz_replay_test.cpp fails
// until then: stale seeds only exercise the version check). Every table is as small as
// the layout allows (capacity 8, 2 processes: one 256 KiB arena chunk, about 350 KB).
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "operations.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"

namespace {

using shmht::CreateOptions;
using shmht::Engine;
using shmht::Table;
using shmht::fuzz::CrashAction;
using shmht::fuzz::Op;
using shmht::fuzz::ProgramWriter;
using shmht::testing::FaultPoint;

std::string g_out;
const std::string kScratch = "/dev/shm/shmht-seed-" + std::to_string(getpid());

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("writing " + path);
}

// Copies the scratch table into the corpus as table_file/<name>.
void keep_table(const std::string& name) {
  std::ifstream in(kScratch, std::ios::binary);
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(g_out + "/table_file/" + name, bytes);
}

std::string key_of(int i) { return "key-" + std::to_string(i); }

CreateOptions small(Engine engine) {
  return {.capacity = 8,
          .max_key_bytes = 32,
          .max_value_bytes = 64,
          .max_bytes = 1 << 20,
          .max_processes = 2,
          .engine = engine,
          .stripes = 4};
}

void fill(Table& t, int from, int to) {
  for (int i = from; i < to; ++i) t.assign(key_of(i), "value-" + std::to_string(i));
}

FaultPoint g_point;

// A child that opens the table, dies at `point` while running `body`, and is reaped.
void die_in_child(Engine engine, FaultPoint point, const std::function<void(Table&)>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(10);
    Table t = Table::open(kScratch, {.engine = engine});
    g_point = point;
    shmht::testing::set_fault_hook([](FaultPoint reached) {
      if (reached == g_point) raise(SIGKILL);
    });
    body(t);
    _exit(3);  // the fault point never fired: the seed is still a valid table
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
    throw std::runtime_error("a seed's child was not killed at fault point " + std::to_string(static_cast<int>(point)));
  }
}

// The lock engines' fault points and the lock-free engine's moments of a multi-word CAS.
FaultPoint mid_shift(Engine e) {
  return e == Engine::kLockFreeRobinHood ? FaultPoint::kKcasMidInstall : FaultPoint::kMidShift;
}
FaultPoint before_unlock(Engine e) {
  return e == Engine::kLockFreeRobinHood ? FaultPoint::kKcasDecided : FaultPoint::kBeforeUnlock;
}

void table_seeds(Engine e) {
  const std::string name(shmht::engine_name(e));
  Table::remove(kScratch);
  Table::create(kScratch, small(e)).close();
  keep_table(name + "-empty");

  {
    Table t = Table::open(kScratch);
    fill(t, 0, 12);
    for (int i = 0; i < 12; i += 3) t.assign(key_of(i), "overwritten, with a longer value than before");
    for (int i = 1; i < 12; i += 4) t.erase(key_of(i));
  }
  keep_table(name + "-used");

  die_in_child(e, mid_shift(e), [](Table& t) { fill(t, 12, 40); });
  keep_table(name + "-killed-mid-insert-shift");

  die_in_child(e, before_unlock(e), [](Table& t) {
    for (int i = 0; i < 40; ++i) t.erase(key_of(i));
  });
  keep_table(name + "-killed-erasing");

  // Growth (src/growth.hpp): a table that has grown past its starting capacity of 8, with
  // a writer killed right after moving a home group, so the file holds two slot arrays,
  // MOVED bits and (lock engines) the dead writer's locks.
  die_in_child(e, FaultPoint::kGroupMoved, [](Table& t) { fill(t, 100, 400); });
  keep_table(name + "-killed-mid-migration");
  Table::remove(kScratch);
}

// A table whose shared free lists hold records: an attachment freed more than a chunk.
void shared_free_list_seed() {
  Table::remove(kScratch);
  {
    Table t = Table::create(
        kScratch,
        {.capacity = 100, .max_key_bytes = 32, .max_value_bytes = 4000, .max_bytes = 4 << 20, .max_processes = 2});
    const std::string big(3000, 'v');
    for (int i = 0; i < 90; ++i) t.assign(key_of(i), big);
    for (int i = 0; i < 90; ++i) t.erase(key_of(i));
    t.assign("survivor", "v");
  }
  keep_table("seqlock-shared-free-lists");
  Table::remove(kScratch);
}

void keep_program(const std::string& name, const ProgramWriter& p) {
  write_file(g_out + "/operations/" + name, p.bytes());
}

std::uint8_t setup(unsigned engine_index, unsigned capacity_index, unsigned chunks_index) {
  return static_cast<std::uint8_t>(engine_index | (capacity_index << 2) | (chunks_index << 4));
}

void operation_seeds(unsigned e) {
  const std::string name(shmht::engine_name(shmht::kAllEngines[e]));
  ProgramWriter basic(setup(e, 1, 0));
  for (std::uint8_t k = 0; k < 12; ++k) basic.add(Op::kInsert, {k, static_cast<std::uint8_t>(k * 7)});
  basic.add(Op::kInsert, {3, 1})
      .add(Op::kAssign, {3, 9})
      .add(Op::kAssign, {40, 2})
      .add(Op::kGet, {3})
      .add(Op::kGet, {99});
  basic.add(Op::kGetInto, {3, 4}).add(Op::kGetInto, {3, 200}).add(Op::kContains, {5}).add(Op::kErase, {5});
  basic.add(Op::kErase, {5}).add(Op::kInsert, {8, 1}).add(Op::kAssign, {1, 250}).add(Op::kSize);
  basic.add(Op::kForEach).add(Op::kCheck);
  keep_program(name + "-basic", basic);

  ProgramWriter switching(setup(e, 0, 0));
  for (std::uint8_t k = 0; k < 20; ++k) switching.add(Op::kAssign, {k, 3});
  for (std::uint8_t other = 0; other < 4; ++other)
    switching.add(Op::kSwitchEngine, {other}).add(Op::kErase, {static_cast<std::uint8_t>(other * 2)}).add(Op::kForEach);
  switching.add(Op::kReopen).add(Op::kSize).add(Op::kCheck);
  keep_program(name + "-switch-engines", switching);

  ProgramWriter full(setup(e, 0, 0));  // capacity 1: about 255 keys fit
  full.add(Op::kFill, {255}).add(Op::kFill, {10}).add(Op::kErase, {0}).add(Op::kFill, {3}).add(Op::kCheck);
  keep_program(name + "-slots-full", full);

  ProgramWriter arena(setup(e, 3, 0));  // one arena chunk of 1000-byte values
  for (unsigned k = 0; k < 255; ++k) arena.add(Op::kAssign, {static_cast<std::uint8_t>(k), 200});
  arena.add(Op::kForEach).add(Op::kCheck);
  keep_program(name + "-arena-full", arena);

  // 256 records of class 1024 and a retired chunk tail: past a chunk's worth when freed,
  // so the free lists go to the shared ones; the other handle's attachment takes from them.
  ProgramWriter churn(setup(e, 3, 3));
  churn.add(Op::kChurn, {255, 200}).add(Op::kOtherHandle).add(Op::kChurn, {40, 200}).add(Op::kAssign, {1, 100});
  churn.add(Op::kOtherHandle).add(Op::kGet, {1}).add(Op::kForEach).add(Op::kCheck);
  keep_program(name + "-churn-two-handles", churn);

  const bool lockfree = shmht::kAllEngines[e] == Engine::kLockFreeRobinHood;
  const auto point = [&](FaultPoint lock, FaultPoint kcas) {
    return static_cast<std::uint8_t>(lockfree ? kcas : lock);
  };
  ProgramWriter crashes(setup(e, 1, 0));
  for (std::uint8_t k = 0; k < 9; ++k) crashes.add(Op::kInsert, {k, 4});
  crashes.add(Op::kCrash, {static_cast<std::uint8_t>(CrashAction::kInsert), 20, 3,
                           point(FaultPoint::kMidShift, FaultPoint::kKcasMidInstall), 0});
  crashes.add(Op::kGet, {20}).add(Op::kInsert, {21, 5});
  crashes.add(Op::kCrash, {static_cast<std::uint8_t>(CrashAction::kErase), 2, 0,
                           point(FaultPoint::kBeforeUnlock, FaultPoint::kKcasDecided), 1});
  crashes.add(Op::kForEach).add(Op::kCheck);
  keep_program(name + "-crashes", crashes);
}

void crash_action_seeds() {
  const std::pair<CrashAction, FaultPoint> cases[] = {{CrashAction::kAssign, FaultPoint::kAfterSlotWrite},
                                                      {CrashAction::kGet, FaultPoint::kReadLocked},
                                                      {CrashAction::kCheck, FaultPoint::kExclusiveHeld},
                                                      {CrashAction::kOpenOtherEngine, FaultPoint::kColdStartMidway},
                                                      {CrashAction::kInsert, FaultPoint::kAfterChunkClaim},
                                                      {CrashAction::kInsert, FaultPoint::kKcasPublished}};
  int n = 0;
  for (const auto& [action, point] : cases) {
    ProgramWriter p(setup(n % 4, 1, 0));
    for (std::uint8_t k = 0; k < 6; ++k) p.add(Op::kAssign, {k, 6});
    p.add(Op::kCrash, {static_cast<std::uint8_t>(action), 3, 7, static_cast<std::uint8_t>(point), 0});
    p.add(Op::kForEach).add(Op::kCheck);
    keep_program("crash-" + std::to_string(n++), p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR   (writes CORPUS_DIR/table_file/* and CORPUS_DIR/operations/*)\n",
                 argv[0]);
    return 2;
  }
  g_out = argv[1];
  for (const char* sub : {"", "/table_file", "/operations"}) mkdir((g_out + sub).c_str(), 0755);
  try {
    for (Engine e : shmht::kAllEngines) table_seeds(e);
    shared_free_list_seed();
    for (unsigned e = 0; e < std::size(shmht::kAllEngines); ++e) operation_seeds(e);
    crash_action_seeds();
  } catch (const std::exception& e) {
    Table::remove(kScratch);
    std::fprintf(stderr, "make_seed_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
