// errors_test.cpp - every error path of issue 2: each gives its typed error with a
// message a user can act on, and none crashes or loses data.
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "layout/engine_area.hpp"
#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using layout::ImmutableHeader;

std::string path_of(const std::string& name) { return "/dev/shm/" + name; }

// Reads, edits and writes back the immutable header, optionally re-sealing its checksum
// (FNV-1a-64 over the bytes before the checksum, as the layout documents).
void edit_header(const std::string& name, const std::function<void(ImmutableHeader&)>& edit, bool reseal) {
  const int fd = ::open(path_of(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ImmutableHeader h{};
  ASSERT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  edit(h);
  if (reseal) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
    for (std::size_t i = 0; i < offsetof(ImmutableHeader, checksum); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
    h.checksum = hash;
  }
  ASSERT_EQ(pwrite(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ::close(fd);
}

class Errors : public ::testing::Test {
 protected:
  void make_table() {
    Table t = Table::create(name_, {.capacity = 1000});
    t.assign("k", "v");
  }
  ScopedName name_;
};

TEST_F(Errors, OpenMissingTableIsNotFound) {
  expect_error(ErrorCode::kNotFound, "create it first", [&] { Table::open(name_); });
}

// A path whose directory is missing says so, for create and open alike; it is not a
// table that could be created.
TEST_F(Errors, MissingDirectoryIsNamedNotCalledAMissingTable) {
  const std::string directory = "/tmp/shmht-test-no-such-dir-" + std::to_string(getpid());
  const std::string path = directory + "/t";
  for (auto attempt : {+[](const std::string& p) { Table::create(p); }, +[](const std::string& p) { Table::open(p); },
                       +[](const std::string& p) { Table::open_or_create(p); }}) {
    expect_error(ErrorCode::kNotFound, "directory " + directory + " does not exist", [&] { attempt(path); });
  }
}

TEST_F(Errors, CreateExistingTableIsAlreadyExistsAndKeepsIt) {
  make_table();
  expect_error(ErrorCode::kAlreadyExists, "File exists", [&] { Table::create(name_); });
  EXPECT_EQ(Table::open(name_).get("k"), "v") << "the failed create must not touch the existing table";
}

TEST_F(Errors, BadNamesAndOptionsAreInvalidArguments) {
  expect_error(ErrorCode::kInvalidArgument, "contains '/'", [] { Table::open("a/b"); });
  expect_error(ErrorCode::kInvalidArgument, "empty", [] { Table::open(""); });
  expect_error(ErrorCode::kInvalidArgument, "capacity", [&] { Table::create(name_, {.capacity = 0}); });
  expect_error(ErrorCode::kInvalidArgument, "max_bytes", [&] { Table::create(name_, {.capacity = 1'000'000, .max_bytes = 1 << 20}); });
  EXPECT_FALSE(std::ifstream(path_of(name_)).good()) << "a failed create leaves no file";
}

// Every number of CreateOptions is checked against its range, and the error names the
// field and the range; nothing is created.
TEST_F(Errors, EveryCreateOptionOutOfRangeIsNamedWithItsRange) {
  struct Case {
    CreateOptions options;
    std::string message;
  };
  const Case cases[] = {
      {{.capacity = 0}, "capacity must be between 1 and 68719476736; got 0"},
      {{.capacity = (std::uint64_t{1} << 36) + 1}, "capacity must be between 1 and 68719476736; got 68719476737"},
      {{.max_key_bytes = 0}, "max_key_bytes must be between 1 and 67108856; got 0"},
      {{.max_key_bytes = 4'000'000'000u}, "max_key_bytes must be between 1 and 67108856; got 4000000000"},
      {{.max_value_bytes = 4'000'000'000u}, "max_value_bytes must be between 0 and 67108855; got 4000000000"},
      {{.max_key_bytes = 60 << 20, .max_value_bytes = 10 << 20}, "max_key_bytes + max_value_bytes is 73400320; the limit is 67108856"},
      {{.max_bytes = std::uint64_t{1} << 47}, "max_bytes must be between 1 and 8796093022208; got 140737488355328"},
      {{.max_processes = 0}, "max_processes must be between 1 and 4096; got 0"},
      {{.max_processes = 5000}, "max_processes must be between 1 and 4096; got 5000"},
      {{.mode = 07777}, "mode must be between 0 and 0777; got 07777"},
      {{.mode = 04600}, "mode must be between 0 and 0777; got 04600"},
      {{.stripes = 0}, "stripes must be between 1 and 64; got 0"},
  };
  for (const Case& c : cases) {
    CreateOptions options = c.options;
    if (options.capacity == CreateOptions{}.capacity) options.capacity = 100;  // keep the table small
    expect_error(ErrorCode::kInvalidArgument, c.message, [&] { Table::create(name_, options); });
    EXPECT_FALSE(std::ifstream(path_of(name_)).good()) << c.message << ": a failed create leaves no file";
  }
}

TEST_F(Errors, ForeignFileIsCorruptBadMagic) {
  std::ofstream(path_of(name_)) << std::string(8192, 'x');
  expect_error(ErrorCode::kCorrupt, "bad magic", [&] { Table::open(name_); });
}

TEST_F(Errors, ShortFileIsCorrupt) {
  std::ofstream(path_of(name_)) << "shmht";
  expect_error(ErrorCode::kCorrupt, "at least 4096", [&] { Table::open(name_); });
}

TEST_F(Errors, TruncatedTableIsCorrupt) {
  make_table();
  ASSERT_EQ(truncate(path_of(name_).c_str(), 64 * 1024), 0);
  expect_error(ErrorCode::kCorrupt, "truncated", [&] { Table::open(name_); });
}

// Truncated by another process while this one still has it open and mapped: a new
// open (which shares this process's mapping) re-reads the file's size and refuses.
TEST_F(Errors, TableTruncatedWhileMappedIsCorruptOnTheNextOpen) {
  Table held = Table::create(name_, {.capacity = 1000});
  for (int i = 0; i < 500; ++i) held.assign("key-" + std::to_string(i), std::string(200, 'v'));
  ASSERT_EQ(truncate(path_of(name_).c_str(), 64 * 1024), 0);
  expect_error(ErrorCode::kCorrupt, "truncated", [&] { Table::open(name_); });
}

// An anonymous (memfd) table is sealed against shrinking, so nobody can truncate it.
TEST_F(Errors, AnonymousTableCannotBeTruncated) {
  Table t = Table::create_anonymous({.capacity = 1000});
  t.assign("k", "v");
  errno = 0;
  EXPECT_NE(truncate(t.path().c_str(), 4096), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(t.get("k"), "v");
}

// remove() deletes only shmht tables, and not one in use unless forced.
TEST_F(Errors, RemoveRefusesAFileThatIsNotATable) {
  std::ofstream(path_of(name_)) << "#!/bin/sh\necho a script, not a table\n";
  expect_error(ErrorCode::kInvalidArgument, "not a shmht table", [&] { Table::remove(name_); });
  expect_error(ErrorCode::kInvalidArgument, "not a shmht table", [&] { Table::remove(name_, {.force = true}); });
  EXPECT_EQ(access(path_of(name_).c_str(), F_OK), 0) << "the file must stay";
}

TEST_F(Errors, RemoveRefusesATableInUseUnlessForced) {
  Table held = Table::create(name_, {.capacity = 1000});
  // The caller's own handle is labelled as its own; the message names the flag to force.
  expect_error(ErrorCode::kInUse, std::to_string(getpid()) + " (this process)", [&] { Table::remove(name_); });
  expect_error(ErrorCode::kInUse, "shmht rm --force", [&] { Table::remove(name_); });
  EXPECT_EQ(access(path_of(name_).c_str(), F_OK), 0);
  held.close();
  EXPECT_TRUE(Table::remove(name_)) << "nobody attached: removed";
  EXPECT_FALSE(Table::remove(name_)) << "already gone";
  Table again = Table::create(name_, {.capacity = 1000});
  EXPECT_TRUE(Table::remove(name_, {.force = true}));
}

TEST_F(Errors, RemoveOfADamagedTableNeedsForce) {
  make_table();
  edit_header(name_, [](ImmutableHeader& h) { h.capacity = 0; }, /*reseal=*/true);
  expect_error(ErrorCode::kCorrupt, "force", [&] { Table::remove(name_); });
  EXPECT_TRUE(Table::remove(name_, {.force = true}));
}

// A handle's unlink() removes its own file, never another table that took its name.
TEST_F(Errors, HandleUnlinkRemovesOnlyItsOwnFile) {
  Table old_table = Table::create(name_, {.capacity = 1000});
  ASSERT_TRUE(Table::remove(name_, {.force = true}));
  Table new_table = Table::create(name_, {.capacity = 1000});
  new_table.assign("k", "new");
  EXPECT_FALSE(old_table.unlink()) << "the name now names another table";
  EXPECT_EQ(access(path_of(name_).c_str(), F_OK), 0);
  EXPECT_TRUE(new_table.unlink());
  EXPECT_EQ(access(path_of(name_).c_str(), F_OK), -1);
  EXPECT_FALSE(new_table.unlink()) << "already gone";
}

TEST_F(Errors, OtherLayoutVersionIsVersionMismatch) {
  make_table();
  edit_header(name_, [](ImmutableHeader& h) { h.layout_version = 99; }, true);
  expect_error(ErrorCode::kVersionMismatch, "layout version 99", [&] { Table::open(name_); });
}

TEST_F(Errors, OtherAbiIsVersionMismatch) {
  make_table();
  edit_header(name_, [](ImmutableHeader& h) { h.abi_tag ^= 1; }, true);
  expect_error(ErrorCode::kVersionMismatch, "struct sizes", [&] { Table::open(name_); });
}

TEST_F(Errors, OverwrittenFixedFieldFailsTheChecksum) {
  make_table();
  edit_header(name_, [](ImmutableHeader& h) { h.bucket_count += 1; }, false);
  expect_error(ErrorCode::kCorrupt, "checksum", [&] { Table::open(name_); });
}

// A field with a valid checksum but an impossible value (a peer's bug that also
// rewrote the checksum) is still caught, and named.
struct FieldCase {
  const char* field;
  void (*edit)(ImmutableHeader&);
};
class CorruptField : public Errors, public ::testing::WithParamInterface<FieldCase> {};

TEST_P(CorruptField, IsReportedByName) {
  make_table();
  edit_header(name_, GetParam().edit, true);
  expect_error(ErrorCode::kCorrupt, std::string("header field ") + GetParam().field, [&] { Table::open(name_); });
}

INSTANTIATE_TEST_SUITE_P(
    Fields, CorruptField,
    ::testing::Values(FieldCase{"capacity", [](ImmutableHeader& h) { h.capacity = 0; }},
                      FieldCase{"max_key_bytes", [](ImmutableHeader& h) { h.max_key_bytes = 0; }},
                      FieldCase{"max_key_bytes + max_value_bytes", [](ImmutableHeader& h) { h.max_value_bytes = 0xFFFFFFFF; }},
                      FieldCase{"max_processes", [](ImmutableHeader& h) { h.max_processes = 0; }},
                      FieldCase{"home_slots", [](ImmutableHeader& h) { h.home_slots *= 4; }},
                      FieldCase{"bucket_count", [](ImmutableHeader& h) { h.bucket_count = 1ull << 40; }},
                      FieldCase{"chunk_bytes", [](ImmutableHeader& h) { h.chunk_bytes = 3; }},
                      FieldCase{"process_table_offset", [](ImmutableHeader& h) { h.process_table_offset = 0; }},
                      FieldCase{"engine_area_offset", [](ImmutableHeader& h) { h.engine_area_offset += 64; }},
                      FieldCase{"engine_area_bytes", [](ImmutableHeader& h) { h.engine_area_bytes = 1ull << 50; }},
                      FieldCase{"slot_array_offset", [](ImmutableHeader& h) { h.slot_array_offset = ~0ull; }},
                      FieldCase{"arena_offset", [](ImmutableHeader& h) { h.arena_offset = 8; }},
                      FieldCase{"max_bytes", [](ImmutableHeader& h) { h.max_bytes = 4096; }}),
    [](const auto& param_info) {
      std::string n = param_info.param.field;
      for (char& ch : n) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return n;
    });

TEST_F(Errors, MutableFieldsOutOfRangeAreCorrupt) {
  make_table();
  {
    Table t = Table::open(name_);
    const int fd = ::open(path_of(name_).c_str(), O_RDWR);
    const std::uint64_t past_end = 1ull << 40;
    ASSERT_EQ(pwrite(fd, &past_end, 8, offsetof(layout::Header, arena_end)), 8);
    ::close(fd);
  }
  expect_error(ErrorCode::kCorrupt, "arena_end", [&] { Table::open(name_); });
}

TEST_F(Errors, UnknownActiveEngineIsCorrupt) {
  make_table();
  const int fd = ::open(path_of(name_).c_str(), O_RDWR);
  const std::uint32_t bogus = 77;
  ASSERT_EQ(pwrite(fd, &bogus, 4, offsetof(layout::Header, active_engine)), 4);
  ::close(fd);
  expect_error(ErrorCode::kCorrupt, "active_engine", [&] { Table::open(name_); });
}

TEST_F(Errors, SlotPointingOutsideTheArenaIsCorruptNotACrash) {
  Table t = Table::create(name_, {.capacity = 100});
  t.assign("k", "v");
  // Overwrite every occupied slot's offset with one far past the file.
  const int fd = ::open(path_of(name_).c_str(), O_RDWR);
  ImmutableHeader h{};
  ASSERT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  for (std::uint64_t b = 0; b < h.bucket_count; ++b) {
    for (unsigned lane = 0; lane < layout::kSlotsPerBucket; ++lane) {
      const off_t at = static_cast<off_t>(h.slot_array_offset + b * 64 + 8 + lane * 8);
      std::uint64_t word = 0;
      ASSERT_EQ(pread(fd, &word, 8, at), 8);
      if (word == 0) continue;
      word = layout::Slot::encode(layout::Slot::tag_of(word), layout::Slot::dist_of(word), 1ull << 38);
      ASSERT_EQ(pwrite(fd, &word, 8, at), 8);
    }
  }
  ::close(fd);
  expect_error(ErrorCode::kCorrupt, "invalid record", [&] { t.get("k"); });
  const CheckReport report = check_table(name_);
  EXPECT_FALSE(report.clean);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_NE(report.problems[0].find("outside the arena"), std::string::npos) << report.problems[0];
}

TEST_F(Errors, RecordWithImpossibleLengthsIsCorrupt) {
  Table t = Table::create(name_, {.capacity = 100, .max_key_bytes = 16, .max_value_bytes = 16});
  t.assign("k", "v");
  const int fd = ::open(path_of(name_).c_str(), O_RDWR);
  ImmutableHeader h{};
  ASSERT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  const layout::RecordHeader huge{1, 1u << 30};
  // The first record, right after the first chunk's header.
  ASSERT_EQ(pwrite(fd, &huge, 8, static_cast<off_t>(h.arena_offset + sizeof(layout::ChunkHeader))), 8);
  ::close(fd);
  expect_error(ErrorCode::kCorrupt, "invalid record", [&] { t.get("k"); });
}

TEST_F(Errors, ArenaLimitIsTableFull) {
  Table t = Table::create(name_, {.capacity = 1000, .max_value_bytes = 60'000, .max_bytes = 8 << 20});
  const std::string big(60'000, 'x');
  bool full = false;
  int stored = 0;
  for (; stored < 1000 && !full; ++stored) {
    try {
      t.assign(key_of(stored), big);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kTableFull) << e.what();
      EXPECT_NE(std::string(e.what()).find("created with max_bytes 8388608; erase items, or create the table with a "
                                           "larger max_bytes (Python max_bytes=, shmht create --max-bytes"),
                std::string::npos)
          << e.what();
      full = true;
    }
  }
  ASSERT_TRUE(full);
  for (int i = 0; i < stored - 1; ++i) ASSERT_EQ(t.get(key_of(i)), big) << "stored value " << i << " lost";
  EXPECT_TRUE(t.assign("small", "fits in a free corner")) << "a full arena is not a broken table";
}

TEST_F(Errors, UnknownEngineIsUnavailable) {
  make_table();
  const auto bogus = static_cast<Engine>(99);  // every named engine is built: ask for one that is not
  expect_error(ErrorCode::kEngineUnavailable, "available: global, striped, seqlock, lockfree",
               [&] { Table::open(name_, {.engine = bogus}); });
  expect_error(ErrorCode::kEngineUnavailable, "not built", [&] { Table::create(name_.str() + "-x", {.engine = bogus}); });
  EXPECT_FALSE(std::ifstream(path_of(name_.str() + "-x")).good()) << "a failed create leaves no file";
}

// A chunk cursor that is not 16-aligned (records are) would make the next record's
// atomics misaligned: a hostile or damaged entry is reported, not followed.
TEST_F(Errors, MisalignedChunkCursorIsCorrupt) {
  make_table();  // entry 0 took a chunk, then detached cleanly
  ImmutableHeader h{};
  const int fd = ::open(path_of(name_).c_str(), O_RDWR);
  ASSERT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  const off_t cursor_at = static_cast<off_t>(h.process_table_offset + offsetof(layout::ProcessEntry, chunk_cursor));
  std::uint64_t cursor = 0;
  ASSERT_EQ(pread(fd, &cursor, 8, cursor_at), 8);
  cursor += 8;
  ASSERT_EQ(pwrite(fd, &cursor, 8, cursor_at), 8);
  ::close(fd);
  Table t = Table::open(name_);  // takes entry 0 again
  expect_error(ErrorCode::kCorrupt, "misaligned chunk cursor", [&] { t.assign("other", "v"); });
  EXPECT_EQ(t.get("k"), "v") << "the table is still readable";
}

// A slot word that refers to a lock-free operation which is over (a hostile file, or a
// bug elsewhere) must be reported, not helped forever: lookups get kCorrupt and check
// names it.
TEST_F(Errors, StaleLockFreeReferenceIsCorrupt) {
  Table::create(name_, {.capacity = 100, .engine = Engine::kLockFreeRobinHood}).close();
  ImmutableHeader h{};
  const int fd = ::open(path_of(name_).c_str(), O_RDWR);
  ASSERT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  // Entry 0's descriptor is at sequence 0 (it never ran an operation); refer to sequence 5.
  const std::uint64_t value = (std::uint64_t{5} << 13) | 0;
  const std::uint64_t stale = ((value >> 40) << 48) | (std::uint64_t{layout::kDescriptorDist} << 40) | (value & ((std::uint64_t{1} << 40) - 1));
  for (std::uint64_t b = 0; b < h.bucket_count; ++b) {
    for (unsigned lane = 0; lane < layout::kSlotsPerBucket; ++lane) {
      const off_t at = static_cast<off_t>(h.slot_array_offset + b * sizeof(layout::Bucket) + 8 * (1 + lane));
      ASSERT_EQ(pwrite(fd, &stale, 8, at), 8);
    }
  }
  ::close(fd);
  {
    Table t = Table::open(name_);
    expect_error(ErrorCode::kCorrupt, "lock-free operation that is over", [&] { t.get("k"); });
  }
  const CheckReport report = check_table(name_);
  EXPECT_FALSE(report.clean);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_NE(report.problems.front().find("lock-free operation"), std::string::npos) << report.problems.front();
}

// --- Found by fuzzing (fuzz/README.md); the fuzzer's own inputs are under
// fuzz/regressions/table_file/ and replayed by fuzz_replay_test. ---

// Writes `value` at byte `offset` of the named table's file.
template <class T>
void poke(const std::string& name, std::uint64_t offset, T value) {
  const int fd = ::open(path_of(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, &value, sizeof value, static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof value));
  ::close(fd);
}

ImmutableHeader header_of(const std::string& name) {
  ImmutableHeader h{};
  const int fd = ::open(path_of(name).c_str(), O_RDONLY);
  EXPECT_EQ(pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  ::close(fd);
  return h;
}

class ErrorsPerEngine : public Errors, public ::testing::WithParamInterface<Engine> {};

// A record whose lengths exceed the table's limits is kCorrupt for every way of reading
// it. The lock-free engine's for_each used to take it for a read torn by a writer and
// retry forever (fuzz/regressions/table_file/lockfree-for-each-invalid-record-hang).
TEST_P(ErrorsPerEngine, InvalidRecordIsCorruptForEveryReader) {
  {
    Table t = Table::create(name_, {.capacity = 100, .max_key_bytes = 16, .max_value_bytes = 16, .engine = GetParam()});
    t.assign("k", "v");
  }
  const layout::RecordHeader huge{1, 1u << 30};
  poke(name_, header_of(name_).arena_offset + sizeof(layout::ChunkHeader), huge);  // the first record
  Children children;
  children.spawn([&] {
    Table t = Table::open(name_);
    int refused = 0;
    auto corrupt = [&](auto&& fn) {
      try {
        fn();
      } catch (const Error& e) {
        refused += e.code() == ErrorCode::kCorrupt;
      }
    };
    corrupt([&] { t.get("k"); });
    corrupt([&] { t.contains("k"); });
    corrupt([&] { t.for_each([](std::string_view, std::string_view) {}); });
    return refused == 3 ? 0 : 1;
  });
  children.expect_all_succeed(std::chrono::seconds(20));
}

INSTANTIATE_TEST_SUITE_P(Engines, ErrorsPerEngine, ::testing::ValuesIn(built_engines()), engine_param_name);

// Counters read from the file are summed and updated with wrapping arithmetic: extreme
// values are a corruption for check to report, not signed overflow (undefined behaviour,
// which the UBSan suite turns into an abort) in stats(), size() or a write
// (fuzz/regressions/table_file/stats-live-bytes-overflow).
TEST_F(Errors, ExtremeCountersWrapInsteadOfOverflowing) {
  {
    Table a = Table::create(name_, {.capacity = 100, .max_processes = 2});
    Table b = Table::open(name_);  // two entries below the high-water mark
    a.assign("k", "v");
  }
  const ImmutableHeader h = header_of(name_);
  for (std::uint64_t e = 0; e < 2; ++e) {
    const std::uint64_t entry = h.process_table_offset + e * sizeof(layout::ProcessEntry);
    poke(name_, entry + offsetof(layout::ProcessEntry, item_delta), std::numeric_limits<std::int64_t>::max());
    poke(name_, entry + offsetof(layout::ProcessEntry, live_bytes), std::numeric_limits<std::int64_t>::max());
  }
  Table t = Table::open(name_);
  EXPECT_NO_THROW(t.stats());
  EXPECT_NO_THROW(t.size());
  EXPECT_TRUE(t.assign("other", "v"));  // +1 on an item counter at INT64_MAX, + record bytes on live_bytes
  EXPECT_EQ(t.get("k"), "v");
  const CheckReport report = check_table(name_);
  EXPECT_FALSE(report.clean);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_NE(report.problems.front().find("item counters sum to"), std::string::npos) << report.problems.front();
}

// A lock-free reference in an item counter that names a descriptor never published
// (sequence 0 of a fresh entry) is kCorrupt; size() used to help it forever
// (fuzz/regressions/table_file/lockfree-counter-reference-hang).
TEST_F(Errors, LockFreeReferenceToAnUnpublishedOperationIsCorrupt) {
  Table::create(name_, {.capacity = 100, .max_processes = 2, .engine = Engine::kLockFreeRobinHood}).close();
  const ImmutableHeader h = header_of(name_);
  // Reference words (engines/lockfree/kcas.hpp): dist bits all ones; value = seq << 13 | entry.
  const std::uint64_t to_entry_0_seq_0 = std::uint64_t{layout::kDescriptorDist} << layout::kOffsetBits;
  poke(name_, h.engine_area_offset + layout::descriptors_offset(h.max_processes) + offsetof(layout::KcasDescriptor, items_added),
       to_entry_0_seq_0);
  Children children;
  children.spawn([&] {
    Table t = Table::open(name_);
    try {
      t.size();
    } catch (const Error& e) {
      return e.code() == ErrorCode::kCorrupt && std::string(e.what()).find("lock-free operation") != std::string::npos ? 0 : 1;
    }
    return 2;
  });
  children.expect_all_succeed(std::chrono::seconds(20));
}

// The global engine's mutex in a file nobody is attached to cannot be held, whatever its
// bytes say: the first attacher initialises it afresh. A lock word naming some thread
// used to make every operation wait forever
// (fuzz/regressions/table_file/global-mutex-held-by-nobody-hang).
TEST_F(Errors, GlobalMutexClaimedWhileNobodyIsAttachedIsReset) {
  Table::create(name_, {.capacity = 100, .engine = Engine::kGlobalLock}).assign("k", "v");
  const std::uint32_t some_thread = 12345;  // glibc: the mutex's first word is its owner's tid
  poke(name_, header_of(name_).engine_area_offset, some_thread);
  Children children;
  children.spawn([&] {
    Table t = Table::open(name_);
    return t.get("k") == "v" && t.assign("k", "w") == false ? 0 : 1;
  });
  children.expect_all_succeed(std::chrono::seconds(20));
}

TEST_F(Errors, TooManyAttachments) {
  Table a = Table::create(name_, {.capacity = 100, .max_processes = 2});
  Table b = Table::open(name_);
  expect_error(ErrorCode::kTooManyProcesses, "all 2 attachment entries", [&] { Table::open(name_); });
  expect_error(ErrorCode::kTooManyProcesses, "created with max_processes 2); close some handles, or create the table with a "
               "larger max_processes (Python max_processes=, shmht create --max-processes; at most 4096)",
               [&] { Table::open(name_); });
  b.close();
  EXPECT_NO_THROW(Table::open(name_)) << "a closed handle frees its entry";
}

TEST_F(Errors, ClosedHandleRefusesWork) {
  Table t = Table::create(name_, {.capacity = 100});
  t.close();
  expect_error(ErrorCode::kInvalidArgument, "closed", [&] { t.get("k"); });
}

TEST_F(Errors, SymlinkIsNotFollowed) {
  make_table();
  const std::string link = "/dev/shm/" + name_.str() + "-link";
  ASSERT_EQ(symlink(path_of(name_).c_str(), link.c_str()), 0);
  expect_error(ErrorCode::kInvalidArgument, "symbolic link", [&] { Table::open(link); });
  unlink(link.c_str());
}

TEST_F(Errors, NoPermissionIsPermissionDenied) {
  make_table();  // mode 0600, owned by us
  Children children;
  children.spawn([&] {
    // Root bypasses file modes: drop to an unprivileged user first.
    if (getuid() == 0) {
      const passwd* nobody = getpwnam("nobody");
      if (nobody == nullptr || setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0) return 2;
    } else if (chmod(path_of(name_).c_str(), 0) != 0) {
      return 2;
    }
    try {
      Table::open(name_);
      return 1;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kPermissionDenied ? 0 : 3;
    }
  });
  children.expect_all_succeed();
}

TEST_F(Errors, CreateModeIsApplied) {
  Table t = Table::create(name_, {.capacity = 100, .mode = 0640});
  struct stat st{};
  ASSERT_EQ(stat(path_of(name_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

// As open(2) does: the file gets mode & ~umask.
TEST_F(Errors, CreateModeIsNarrowedByTheUmask) {
  const mode_t previous = umask(027);
  struct RestoreUmask {
    mode_t previous;
    ~RestoreUmask() { umask(previous); }
  } restore{previous};
  Table t = Table::create(name_, {.capacity = 100, .mode = 0666});
  struct stat st{};
  ASSERT_EQ(stat(path_of(name_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

}  // namespace
}  // namespace shmht::test
