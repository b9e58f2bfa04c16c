#include "table_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "layout/header.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"

namespace shmht::fuzz {
namespace {

// Region::open waits up to 2 s for a creator that has not published kStateReady yet
// (region.cpp). That wait is by design, and 2 s per input would stall the fuzzer, so
// such inputs stop here: only the state word decides it, so nothing else is lost.
bool creator_unfinished(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < offsetof(layout::Header, state) + sizeof(std::uint32_t)) return false;
  std::uint32_t state = 0;
  std::memcpy(&state, bytes.data() + offsetof(layout::Header, state), sizeof state);
  return state != layout::kStateReady;
}

// Keys a seed table may hold (fuzz/make_seed_corpus.cpp writes key-<i>) and keys no
// table holds: lookups walk both present and absent probe paths.
std::vector<std::string> keys_to_look_up(const std::vector<std::string>& seen) {
  std::vector<std::string> keys = seen;
  for (const char* k : {"key-0", "key-1", "key-7", "absent", ""}) keys.emplace_back(k);
  return keys;
}

// Every read and write a handle offers, each on its own (one failing does not skip the rest).
void use(Table& t) {
  errors_only([&] { (void)t.stats(); });
  errors_only([&] { (void)t.size(); });
  errors_only([&] { (void)t.counters(); });
  std::vector<std::string> seen;
  errors_only([&] {
    t.for_each([&](std::string_view key, std::string_view) {
      if (seen.size() < 3) seen.emplace_back(key);
    });
  });
  for (const std::string& key : keys_to_look_up(seen)) {
    errors_only([&] { (void)t.get(key); });
    errors_only([&] { (void)t.contains(key); });
    errors_only([&] {
      char small[4];
      (void)t.get(key, std::span<char>(small));
    });
  }
  errors_only([&] { (void)t.insert("fuzz-new", "value"); });
  errors_only([&] { (void)t.assign(seen.empty() ? "key-0" : seen.front(), "overwritten"); });
  errors_only([&] { (void)t.erase(seen.size() > 1 ? seen[1] : "key-1"); });
  errors_only([&] { (void)t.size(); });
}

// What a peer writes into the header after our open validated it: the header XOR the
// mask (table_file.hpp), through a descriptor of its own, so the shared pages every
// mapping sees change. The mask stays where it is: each open gets it again. True if it
// wrote anything.
bool scribble_header_after_open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  bool any = false;
  std::uint8_t header[kPostOpenMaskBytes], mask[kPostOpenMaskBytes];
  if (pread(fd, mask, sizeof mask, kPostOpenMaskOffset) == static_cast<ssize_t>(sizeof mask) &&
      pread(fd, header, sizeof header, 0) == static_cast<ssize_t>(sizeof header)) {
    for (std::size_t i = 0; i < sizeof header; ++i) {
      header[i] ^= mask[i];
      any |= mask[i] != 0;
    }
    if (any) (void)!pwrite(fd, header, sizeof header, 0);
  }
  ::close(fd);
  return any;
}

// The peer then marks the table ready again: every later open would otherwise wait 2 s
// for a creator (see creator_unfinished), which is by design and would stall the fuzzer.
void mark_ready(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;
  const std::uint32_t ready = layout::kStateReady;
  (void)!pwrite(fd, &ready, sizeof ready, offsetof(layout::Header, state));
  ::close(fd);
}

void open_and_use(const std::string& path, std::optional<Engine> engine) {
  bool scribbled = false;
  errors_only([&] {
    Table t = Table::open(path, {.engine = engine, .stripes = 4});
    scribbled = scribble_header_after_open(path);
    use(t);
  });
  if (scribbled) mark_ready(path);
}

// With no handle of ours open: check attaches alone, so it may run cold start too.
void check(const std::string& path) {
  errors_only([&] { (void)check_table(path); });
}

}  // namespace

void exercise_table_file(std::span<const std::uint8_t> bytes) {
  if (creator_unfinished(bytes)) return;
  const ScratchFile file("table");
  file.write(bytes);
  errors_only([&] { (void)Table::active_engine(file.path()); });
  // The same file throughout: each open sees what the previous one left (recovered,
  // switched, written), as a real table would.
  // check twice (a third of the time it would take after every open): with the engine
  // the bytes name, and at the end with the last engine switched to.
  open_and_use(file.path(), std::nullopt);
  check(file.path());
  for (Engine engine : kAllEngines) open_and_use(file.path(), engine);
  check(file.path());
}

}  // namespace shmht::fuzz
