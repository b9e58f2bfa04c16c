// shmht - command-line access to shared-memory hash tables.
//
//   shmht create NAME [--capacity N] [--max-key-bytes N] [--max-value-bytes N]
//                     [--max-bytes N] [--max-processes N] [--mode OCTAL] [--engine E]
//   shmht stat NAME [--json]          shmht check NAME [--json] [--repair]
//   shmht get NAME KEY [--json]       shmht put NAME KEY VALUE   (VALUE "-": read stdin)
//   shmht del NAME KEY                shmht rm NAME [--force]
//   shmht add | take | cas NAME KEY ...   shmht take NAME   (no KEY: some item, a queue's pop)
//   shmht load NAME  < key<TAB>value lines       shmht dump NAME  > same format
//   shmht ls [DIR] [--json]           the tables in DIR (default /dev/shm), attaching to none
//   shmht switch-engine NAME E        the only command that changes a table's engine
//   shmht --help | --version          shmht COMMAND --help
//
// NAME is a bare name (/dev/shm/NAME) or an absolute path. A command that opens a table
// uses the engine the table is active with. `--engine E` on such a command only states
// what the caller expects: if the table is active with another engine the command
// refuses (exit 2), naming both engines and `shmht switch-engine`, and changes nothing;
// a read (get, stat, check, dump) never switches an engine. A KEY or VALUE that starts
// with '-' goes after `--`. load and dump escape bytes as cli/escape.hpp says (\t \n
// \r \\ \xNN): dump's output is ASCII, and load reads back exactly what dump writes. get
// prints a value, when its output is a terminal, escaped the same way except that a valid
// UTF-8 sequence of a printable code point shows as itself, so "é" prints; a pipe or file
// gets the exact bytes, then a newline (as on a terminal).
//
// A table that another user owns is refused when it could be a plant (OpenOptions::
// trust_foreign_owner says when); --trust-owner opens it anyway.
//
// Options are parsed by CLI11: --help prints to stdout; a bad flag or argument gets one
// line saying what is wrong and where to find help, on stderr.
//
// Exit status (one table for every command; --help's footer and README.md say the same):
//   0  done (--help and --version too)
//   1  not found: the key (get, del, take; take without KEY: an empty table), the table
//      (any command; ls: the directory), or cas's condition did not hold
//   2  usage: a bad command line, a malformed line in load's input, or an --engine other
//      than the table's
//   3  the table refused or failed the operation (full, too large, in use, permission,
//      not a counter, ...): the message and the error's code name on stderr; or stdin
//      could not be read, or stdout not written (cli/stdio.hpp: /dev/full, a closed
//      stdout), or memory ran out
//   4  corrupt: the file is not a valid table of this build (damaged, another layout
//      version; rm of such a file too), or check found problems
//
// A command started with fd 0, 1 or 2 closed opens /dev/null there first, and reads
// stdin and writes stdout through cli/stdio.hpp, which reports every error (exit 3).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstring>
#include <exception>
#include <new>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/escape.hpp"
#include "cli/ls.hpp"
#include "cli/number_option.hpp"
#include "cli/readable.hpp"
#include "cli/stdio.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"

#ifndef SHMHT_VERSION
#error "meson passes SHMHT_VERSION (the project version)"
#endif

namespace {

using shmht::Engine;
using shmht::Error;
using shmht::Table;

using shmht::cli::bytes_text;
using shmht::cli::count_of;
using shmht::cli::escape;
using shmht::cli::escape_for_terminal;
using shmht::cli::MalformedLine;
using shmht::cli::parse_line;
using shmht::cli::StdinReader;
using shmht::cli::StdoutWriter;

// The exit status table (top of this file).
constexpr int kExitOk = 0, kExitNotFound = 1, kExitUsage = 2, kExitError = 3, kExitCorrupt = 4;

// The exit status for an error the table reported.
int exit_status_of(const Error& e) {
  switch (e.code()) {
    case shmht::ErrorCode::kNotFound: return kExitNotFound;
    case shmht::ErrorCode::kCorrupt:
    case shmht::ErrorCode::kVersionMismatch: return kExitCorrupt;
    default: return kExitError;
  }
}

// Which of fd 0, 1, 2 were closed at start (main opens /dev/null onto them first).
shmht::cli::ClosedAtStart closed_at_start;

// std::cout writes through this (main installs it), so a failed write is known. Never
// destroyed: std::cout is flushed by the iostreams' own exit handler, which runs after
// every static constructed in main is gone, and must still find its buffer alive
// (ASan: a SEGV in ostream::flush at exit).
StdoutWriter& stdout_writer() {
  static StdoutWriter* const writer = new StdoutWriter(STDOUT_FILENO, closed_at_start.out);
  return *writer;
}

StdinReader& stdin_reader() {
  static StdinReader reader(STDIN_FILENO, closed_at_start.in);
  return reader;
}

// Flushes std::cout; true if everything written so far reached stdout.
bool stdout_written() {
  std::cout.flush();
  return stdout_writer().error() == 0;
}

bool stdout_error_reported = false;  // take reports its own

std::string stdout_error_text() {
  stdout_error_reported = true;
  const int err = stdout_writer().error();
  return std::string("writing to stdout failed: ") + std::strerror(err) +
         (err == EBADF && closed_at_start.out ? " (stdout was closed)" : "");
}

// What the command line gave; each command reads what its subcommand declared.
struct Arguments {
  std::string table, key, value;
  std::optional<Engine> engine;
  shmht::CreateOptions create;
  bool json = false;
  std::string directory = "/dev/shm";  // ls's DIR
  std::optional<Engine> switch_to;     // switch-engine's ENGINE
  bool read_only = false;  // --read-only
  bool repair = false;     // check --repair
  bool force = false;      // rm --force
  bool trust_owner = false;  // --trust-owner (OpenOptions::trust_foreign_owner)
  std::string delta = "1";                        // add's DELTA
  std::optional<std::string> expected, desired;   // cas --expected / --desired
  bool absent = false, erase = false;             // cas --absent / --erase
  bool any_key = false;  // take without KEY: some item (Table::take_any)
};

// "global, striped, seqlock or lockfree"
std::string engine_choices() {
  std::string text;
  for (std::size_t i = 0; i < std::size(shmht::kAllEngines); ++i) {
    if (i > 0) text += i + 1 == std::size(shmht::kAllEngines) ? " or " : ", ";
    text += shmht::engine_name(shmht::kAllEngines[i]);
  }
  return text;
}

void add_table_argument(CLI::App& command, Arguments& a) {
  command.add_option("NAME", a.table, "the table: a bare name (/dev/shm/NAME) or an absolute path")->required();
}

void add_engine_option(CLI::App& command, Arguments& a, const std::string& description) {
  command
      .add_option_function<std::string>(
          "--engine",
          [&a](const std::string& name) {
            a.engine = shmht::parse_engine(name);
            if (!a.engine) throw CLI::ValidationError("--engine", "unknown engine '" + name + "'; choose " + engine_choices());
          },
          description)
      ->type_name("E");
}

const char* const kOpenEngineHelp =
    "the engine you expect the table to be active with (global, striped, seqlock, lockfree): if it is active with "
    "another, refuse (exit 2) and change nothing; `shmht switch-engine` switches";

// --engine given to a command other than create and switch-engine, naming an engine the
// table is not active with: the command refuses and changes nothing. (Before, such an
// --engine switched the table for good, even for get or stat.)
struct EngineRefused {
  std::string message;
};

[[noreturn]] void refuse_engine(const Arguments& a, Engine active) {
  const std::string wanted(shmht::engine_name(*a.engine)), has(shmht::engine_name(active));
  throw EngineRefused{a.table + " is active with engine '" + has + "', not '" + wanted +
                      "' (--engine); nothing was changed. To switch it (only while no other process is attached): "
                      "shmht switch-engine " + a.table + " " + wanted};
}

// Refuses unless --engine is unset or names the table's active engine.
void require_expected_engine(const Arguments& a) {
  if (!a.engine) return;
  if (const Engine active = Table::active_engine(a.table); active != *a.engine) refuse_engine(a, active);
}

// The engine a handle got: another process may have switched the table between
// require_expected_engine and the open.
Table expect_engine(const Arguments& a, Table table) {
  if (a.engine && table.engine() != *a.engine) refuse_engine(a, table.engine());
  return table;
}

// Opens with the table's active engine, never another (OpenOptions::engine unset).
Table open_table(const Arguments& a) {
  require_expected_engine(a);
  return expect_engine(a, Table::open(a.table, {.engine = std::nullopt, .trust_foreign_owner = a.trust_owner}));
}

// For the commands that only read (stat, get, dump): read-only if asked, or if this user
// may not write the file (a 0644 table of another user, a read-only filesystem).
Table open_for_reading(const Arguments& a) {
  require_expected_engine(a);
  shmht::OpenOptions read_only;
  read_only.read_only = true;
  read_only.trust_foreign_owner = a.trust_owner;
  if (a.read_only) return expect_engine(a, Table::open(a.table, read_only));
  try {
    return expect_engine(a, Table::open(a.table, {.engine = std::nullopt, .trust_foreign_owner = a.trust_owner}));
  } catch (const Error& e) {
    if (e.code() != shmht::ErrorCode::kPermissionDenied) throw;
    try {
      return expect_engine(a, Table::open(a.table, read_only));
    } catch (const Error& read_only_error) {
      // Not a seqlock table: why read-write was refused (no write access, or a table that
      // needs --trust-owner) is the news, not why read-only is no way round it.
      if (read_only_error.code() == shmht::ErrorCode::kInvalidArgument) throw e;
      throw;
    }
  }
}

// --- load / dump ----------------------------------------------------------------------

// The table's fixed limits, read from its validated header without attaching.
shmht::layout::ImmutableHeader table_limits(const Arguments& a) {
  // trust_foreign_owner: only the limits are read; the command's own open applies the rules.
  return shmht::Region::open(shmht::resolve_table_path(a.table), /*read_only=*/true, /*trust_foreign_owner=*/true).fixed();
}

int cmd_load(const Arguments& a) {
  Table table = open_table(a);
  // The longest line a storable item can take: every byte escaped as \xNN, a tab, a CR.
  // A longer one is refused when it gets that long, not read to its end (it may not end).
  const shmht::layout::ImmutableHeader limits = table_limits(a);
  const std::size_t longest = 4 * (std::size_t{limits.max_key_bytes} + limits.max_value_bytes) + 2;
  StdinReader& in = stdin_reader();
  std::string line;
  std::uint64_t number = 0, loaded = 0;
  // Every line before the failing one is stored; it and the rest are not.
  auto stop = [&](const std::string& why, int status) {
    std::cerr << "shmht: line " << number << ": " << why << "\nshmht: load stopped at line " << number << ": "
              << count_of(loaded, "item") << " stored from the lines before it, none from it on\n";
    return status;
  };
  auto error_text = [](const Error& e) { return std::string(e.what()) + " [" + std::string(shmht::error_code_name(e.code())) + "]"; };
  for (;;) {
    try {
      ++number;
      if (!in.next_line(line, longest)) break;
    } catch (const Error& e) {  // a read error is not the end of the input
      return stop(error_text(e), exit_status_of(e));
    } catch (const std::bad_alloc&) {
      return stop("out of memory reading it", kExitError);
    }
    if (line.size() > longest) {
      return stop("longer than " + bytes_text(longest) + ", the longest line an item of this table can take (max_key_bytes " +
                      std::to_string(limits.max_key_bytes) + ", max_value_bytes " + std::to_string(limits.max_value_bytes) +
                      ", every byte escaped) [value_too_large]",
                  kExitError);
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF input
    if (line.empty()) continue;
    try {
      const auto [key, value] = parse_line(line);
      table.assign(key, value);
    } catch (const MalformedLine& e) {
      return stop(e.what(), kExitUsage);
    } catch (const Error& e) {
      return stop(error_text(e), exit_status_of(e));
    }
    ++loaded;
  }
  std::cerr << "loaded " << count_of(loaded, "item") << "\n";
  return kExitOk;
}

int cmd_dump(const Arguments& a) {
  Table table = open_for_reading(a);
  table.for_each([](std::string_view k, std::string_view v) { std::cout << escape(k) << '\t' << escape(v) << '\n'; });
  return kExitOk;
}

// --- the other commands ---------------------------------------------------------------

int cmd_create(const Arguments& a) {
  shmht::CreateOptions o = a.create;
  o.engine = a.engine.value_or(shmht::kDefaultEngine);
  Table table = Table::create(a.table, o);
  std::cout << "created " << table.path() << " (capacity " << o.capacity << ", engine "
            << shmht::engine_name(o.engine) << ")\n";
  return kExitOk;
}

// The load factor is items / home slots. Probes never wrap: shmht::kOverflowSlots slots
// follow the last home slot, so more items than home slots fit and the factor can pass 1.
std::string load_factor_text(const shmht::Stats& s) {
  std::string text = "load factor " + shmht::cli::ratio_text(s.load_factor);
  if (s.load_factor > 1) {
    text += " = items / home slots; above 1 because the " + std::to_string(shmht::kOverflowSlots) +
            " overflow slots after the last home slot hold the excess";
  }
  return text;
}

// Free records per size class ("3 x 64 B, 1 x 1.0 KiB"): how fragmented the free space is.
std::string free_classes_text(const shmht::Stats& s) {
  if (s.free_by_class.empty()) return "(none)";
  std::string text;
  for (const shmht::FreeClass& c : s.free_by_class) {
    text += (text.empty() ? "" : ", ") + std::to_string(c.records) + " x " + bytes_text(c.record_bytes);
  }
  return text;
}

nlohmann::ordered_json free_classes_json(const shmht::Stats& s) {
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const shmht::FreeClass& c : s.free_by_class) classes.push_back({{"record_bytes", c.record_bytes}, {"records", c.records}});
  return classes;
}

// Pids as "123 456", or "(none)".
std::string pid_list_text(const std::vector<pid_t>& pids) {
  std::string text;
  for (pid_t p : pids) text += (text.empty() ? "" : " ") + std::to_string(p);
  return text.empty() ? "(none)" : text;
}

int cmd_stat(const Arguments& a) {
  Table table = open_for_reading(a);
  const shmht::Stats s = table.stats();
  // This command's own attachment is not news: it is gone when the command exits.
  std::vector<pid_t> others;
  for (pid_t p : s.attached_pids) {
    if (p != getpid()) others.push_back(p);
  }
  // Resident, not apparent: a grown table's file keeps the length of the slot arrays it
  // punched out after their migrations (holes), which take no memory.
  const double per_item = s.items ? static_cast<double>(s.resident_bytes) / static_cast<double>(s.items) : 0.0;
  // The item counters live in the shared file: anyone who may write it may damage them.
  const bool items_impossible = s.items > s.slots + shmht::kOverflowSlots;
  if (a.json) {
    const nlohmann::ordered_json j = {
        {"path", s.path},
        {"engine", shmht::engine_name(s.engine)},
        {"capacity", s.capacity},
        {"slots", s.slots},
        {"overflow_slots", shmht::kOverflowSlots},
        {"items", s.items},
        {"items_impossible", items_impossible},
        {"load_factor", s.load_factor},
        {"max_key_bytes", s.max_key_bytes},
        {"max_value_bytes", s.max_value_bytes},
        {"max_bytes", s.max_bytes},
        {"max_processes", s.max_processes},
        {"apparent_bytes", s.apparent_bytes},
        {"resident_bytes", s.resident_bytes},
        {"bytes_per_item", per_item},
        {"arena_bytes", s.arena_bytes},
        {"live_record_bytes", s.live_record_bytes},
        {"free_record_bytes", s.free_record_bytes},
        {"free_by_class", free_classes_json(s)},
        {"slot_array_bytes", s.slot_array_bytes},
        {"growths", s.growths},
        {"migrating", s.migrating},
        {"migration_groups", s.migration_groups},
        {"migration_groups_moved", s.migration_groups_moved},
        {"attached_pids", others},
    };
    std::cout << j.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  std::cout << "table           " << s.path << "\n"
            << "engine          " << shmht::engine_name(s.engine) << "\n"
            << "items           " << s.items << " ("
            << (items_impossible ? "IMPOSSIBLE: more than the table's " + std::to_string(s.slots + shmht::kOverflowSlots) +
                                       " slots; its item counters are damaged (shmht check counts the slots)"
                                 : count_of(s.slots, "home slot") + ", " + load_factor_text(s))
            << ")\n"
            << "slot array      " << bytes_text(s.slot_array_bytes) << ", started at capacity " << s.capacity << ", "
            << (s.growths == 0 ? std::string("never grown") : "grown " + count_of(s.growths, "time"))
            << (s.migrating ? "; migrating: " + std::to_string(s.migration_groups_moved) + " of " +
                                  count_of(s.migration_groups, "group") + " moved"
                            : std::string())
            << "\n"
            << "limits          key " << bytes_text(s.max_key_bytes) << ", value " << bytes_text(s.max_value_bytes)
            << ", file " << bytes_text(s.max_bytes) << ", " << count_of(s.max_processes, "handle") << " at once\n"
            << "file            " << bytes_text(s.apparent_bytes) << " apparent, " << bytes_text(s.resident_bytes)
            << " resident" << (s.items ? ", " + bytes_text(per_item) + " per item" : std::string()) << "\n"
            << "arena           " << bytes_text(s.arena_bytes) << " in chunks: " << bytes_text(s.live_record_bytes)
            << " live records, " << bytes_text(s.free_record_bytes) << " free for reuse\n"
            << "free records    " << free_classes_text(s) << "\n"
            << "attached pids   " << (others.empty() ? "none besides this command" : pid_list_text(others)) << "\n";
  return kExitOk;
}

int key_not_found() {
  std::cerr << "shmht: key not found\n";
  return kExitNotFound;
}

// get and take: print the value, or say the key was not there.
int print_value(const std::optional<std::string>& value) {
  if (!value) return key_not_found();
  // On a terminal a stored escape sequence would act (retitle it, move the cursor, fake
  // output): show control bytes (C0, DEL, C1) and stray bytes escaped, printable UTF-8 as
  // itself. A pipe or a file gets the exact bytes. Either way a newline follows.
  std::cout << (isatty(STDOUT_FILENO) ? escape_for_terminal(*value) : *value) << "\n";
  return kExitOk;
}

// Bytes in a JSON document: a string when they are UTF-8, else null (the "_escaped"
// field beside it always has them, lossless, as dump writes them).
nlohmann::ordered_json utf8_or_null(std::string_view bytes) {
  return shmht::cli::is_valid_utf8(bytes) ? nlohmann::ordered_json(std::string(bytes)) : nlohmann::ordered_json(nullptr);
}

// get --json: one object, the same fields found or not (README "Command line"):
//   {"table", "key", "key_escaped", "found", "value", "value_escaped", "value_bytes"}
// "key"/"value": the bytes as a JSON string if they are UTF-8, else null; "*_escaped":
// always, in dump's escapes (ASCII; load reads them); value fields are null when absent.
int print_value_json(const Arguments& a, const std::string& path, const std::optional<std::string>& value) {
  nlohmann::ordered_json j = {
      {"table", path},
      {"key", utf8_or_null(a.key)},
      {"key_escaped", escape(a.key)},
      {"found", value.has_value()},
      {"value", value ? utf8_or_null(*value) : nullptr},
      {"value_escaped", value ? nlohmann::ordered_json(escape(*value)) : nullptr},
      {"value_bytes", value ? nlohmann::ordered_json(value->size()) : nullptr},
  };
  std::cout << j.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  return value ? kExitOk : kExitNotFound;
}

int cmd_get(const Arguments& a) {
  Table table = open_for_reading(a);
  const std::optional<std::string> value = table.get(a.key);
  return a.json ? print_value_json(a, table.path(), value) : print_value(value);
}

// put's VALUE "-": the value is all of stdin, byte for byte (a trailing newline too), so a
// value larger than the argument list allows (a 1 MB one) or with any bytes can be stored.
// Read before attaching (a slow writer on the pipe holds no attachment), and at most one
// byte more than the table's max_value_bytes: a larger value is refused once that byte
// arrives, without reading (or holding in memory) the rest. A read error is an error,
// never an empty or shortened value.
std::string read_value_from_stdin(const Arguments& a) {
  const std::uint32_t max_value_bytes = table_limits(a).max_value_bytes;
  std::string value;
  stdin_reader().read_up_to(value, std::size_t{max_value_bytes} + 1);
  if (value.size() > max_value_bytes) {
    throw Error(shmht::ErrorCode::kValueTooLarge,
                "the value on stdin is longer than " + count_of(max_value_bytes, "byte") +
                    ", this table's max_value_bytes (read no further; nothing was stored)");
  }
  return value;
}

int cmd_put(const Arguments& a) {
  const std::string value = a.value == "-" ? read_value_from_stdin(a) : a.value;
  open_table(a).assign(a.key, value);
  return kExitOk;
}

int cmd_del(const Arguments& a) {
  Table table = open_table(a);
  return table.erase(a.key) ? kExitOk : key_not_found();
}

int cmd_add(const Arguments& a) {
  std::int64_t delta = 0;
  const char* end = a.delta.data() + a.delta.size();
  const auto parsed = std::from_chars(a.delta.data(), end, delta);
  if (a.delta.empty() || parsed.ec != std::errc() || parsed.ptr != end) {
    std::cerr << "shmht: DELTA '" << a.delta << "' is not a signed 64-bit integer (a negative one goes after --)\n";
    return kExitUsage;
  }
  Table table = open_table(a);
  std::cout << table.add(a.key, delta) << "\n";
  return kExitOk;
}

// After take's output could not be written: stores `value` at `key` again unless the key
// was stored meanwhile, saying which on stderr, and otherwise shows `shown` (the value or
// the item, escaped as dump writes them) there, so what was taken is never lost unseen.
// take writes what it erased: a reader that went away (SIGPIPE) or a file-size limit
// (SIGXFSZ) must not kill it between the erase and the put-back. Ignored, they make the
// write fail with EPIPE or EFBIG instead, which put_back_what_was_taken handles.
void let_take_survive_its_write() {
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
}

int put_back_what_was_taken(Table& table, std::string_view key, std::string_view value, const std::string& what,
                            const std::string& shown) {
  std::cerr << "shmht: " << stdout_error_text() << "; " << what;
  std::string why_not;
  try {
    if (table.compare_and_set(key, std::nullopt, value)) {
      std::cerr << " was put back\n";
      return kExitError;
    }
    why_not = "the key was stored again meanwhile";
  } catch (const Error& e) {  // the table full, say: what was taken must still not be lost
    why_not = e.what();
  }
  std::cerr << " could not be put back (" << why_not << "); it was, escaped as dump writes it:\n" << shown << "\n";
  return kExitError;
}

int cmd_take_any(const Arguments& a);

// take erases the key and prints what it held, in one atomic step, so of two processes
// taking one key exactly one gets the value. Erasing cannot wait for the output to be
// written, so a value that could not be written (stdout full or closed) is put back
// (compare_and_set from absent): the key holds it again unless another process stored
// the key in between; then the value goes to stderr, escaped as dump writes it. Either
// way take exits 3.
int cmd_take(const Arguments& a) {
  if (a.any_key) return cmd_take_any(a);
  let_take_survive_its_write();
  Table table = open_table(a);
  const std::optional<std::string> value = table.take(a.key);
  const int status = print_value(value);
  if (!value || stdout_written()) return status;
  return put_back_what_was_taken(table, a.key, *value, "the value taken from " + escape_for_terminal(a.key), escape(*value));
}

// take without KEY erases some item (Table::take_any: a work queue's pop) and prints it as
// one line, KEY<TAB>VALUE escaped as dump writes them (load reads it back); exit 1 if the
// table is empty. An item that could not be written is put back as take's value is.
int cmd_take_any(const Arguments& a) {
  let_take_survive_its_write();
  Table table = open_table(a);
  const std::optional<shmht::Item> item = table.take_any();
  if (!item) {
    std::cerr << "shmht: the table is empty\n";
    return kExitNotFound;
  }
  const std::string line = escape(item->first) + '\t' + escape(item->second);
  std::cout << line << "\n";
  if (stdout_written()) return kExitOk;
  return put_back_what_was_taken(table, item->first, item->second, "the item taken", line);
}

int cmd_cas(const Arguments& a) {
  if (a.expected.has_value() == a.absent || a.desired.has_value() == a.erase) {
    std::cerr << "shmht: cas needs one of --expected V / --absent and one of --desired V / --erase\n";
    return kExitUsage;
  }
  Table table = open_table(a);
  std::optional<std::string> current;
  const auto view = [](const std::optional<std::string>& v) { return v ? std::optional<std::string_view>(*v) : std::nullopt; };
  if (table.compare_and_set(a.key, view(a.expected), view(a.desired), &current)) return kExitOk;
  std::cerr << "shmht: not applied: the key " << (current ? "holds '" + escape_for_terminal(*current) + "'" : std::string("is absent")) << "\n";
  return kExitNotFound;
}

// Bytes allocated but linked from no slot: a live writer's record on its way in (or out),
// or one a killed writer left behind. Only with no other attachment is it surely a leak.
std::string unlinked_bytes_cause(const shmht::CheckReport& r) {
  if (r.other_attachments > 0) {
    return "in flight in the writers of " + count_of(r.other_attachments, "other live attachment") +
           ", or leaked by crashed ones";
  }
  return "leaked by crashed writers: no other process is attached";
}

// How far items sit from their home slots (the probe lengths of lookups of present keys).
std::string displacement_summary(const shmht::CheckReport& r) {
  std::uint64_t total = 0, within_three = 0, seven_or_more = 0;
  for (std::size_t d = 0; d < r.displacements.size(); ++d) {
    const std::uint64_t items = r.displacements[d];
    total += d * items;
    if (d <= 3) within_three += items;
    if (d >= 7) seven_or_more += items;
  }
  auto percent = [&](std::uint64_t n) { return std::to_string((n * 1000 / r.items + 5) / 10) + " %"; };
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.2f", static_cast<double>(total) / static_cast<double>(r.items));
  return std::string("displacement from home: mean ") + mean + " slots, max " + std::to_string(r.displacements.size() - 1) +
         "; 0-3 slots: " + percent(within_three) + ", 7 or more: " + percent(seven_or_more) +
         "; past their home bucket: " + percent(r.past_home_bucket);
}

// check --json: one object (README "Command line"): {"table", "clean", "problems",
// "items", "counted_items", "free_records", "free_record_bytes", "live_record_bytes",
// "unaccounted_bytes", "other_attachments", "repaired_shifts", "reclaimed_bytes",
// "not_reclaimed_because" (null unless --repair was refused), "displacements" (items per
// distance from home, index = slots), "past_home_bucket"}.
nlohmann::ordered_json check_json(const std::string& table, const shmht::CheckReport& r) {
  return {
      {"table", table},
      {"clean", r.clean},
      {"problems", r.problems},
      {"items", r.items},
      {"counted_items", r.counted_items},
      {"free_records", r.free_records},
      {"free_record_bytes", r.free_record_bytes},
      {"live_record_bytes", r.live_record_bytes},
      {"unaccounted_bytes", r.unaccounted_bytes},
      {"other_attachments", r.other_attachments},
      {"repaired_shifts", r.repaired_shifts},
      {"reclaimed_bytes", r.reclaimed_bytes},
      {"not_reclaimed_because", r.not_reclaimed_because.empty() ? nlohmann::ordered_json(nullptr)
                                                                : nlohmann::ordered_json(r.not_reclaimed_because)},
      {"displacements", r.displacements},
      {"past_home_bucket", r.past_home_bucket},
  };
}

int cmd_check(const Arguments& a) {
  require_expected_engine(a);  // check uses the active engine; a different --engine is refused
  const shmht::CheckReport r =
      shmht::check_table(a.table, {.reclaim_leaked = a.repair, .trust_foreign_owner = a.trust_owner});
  // The engine check_table opened with is the one active while it was attached (nobody
  // can switch an attached table): asked again now, as the other commands ask their
  // handle, a switch between require_expected_engine and the open is refused too.
  require_expected_engine(a);
  const int status = r.clean ? kExitOk : kExitCorrupt;
  if (a.json) {
    std::cout << check_json(shmht::resolve_table_path(a.table), r).dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return status;
  }
  for (const auto& p : r.problems) std::cout << "problem: " << p << "\n";
  std::cout << (r.clean ? "clean" : "NOT CLEAN") << ": " << count_of(r.items, "item") << ", "
            << count_of(r.free_records, "free record") << " (" << bytes_text(r.free_record_bytes) << "), "
            << bytes_text(r.live_record_bytes) << " live, " << bytes_text(r.unaccounted_bytes)
            << " allocated but not linked";
  if (r.unaccounted_bytes) std::cout << " (" << unlinked_bytes_cause(r) << ")";
  if (r.repaired_shifts) std::cout << ", " << count_of(r.repaired_shifts, "interrupted operation") << " repaired";
  if (r.reclaimed_bytes) {
    std::cout << ", " << bytes_text(r.reclaimed_bytes) << " leaked by crashed writers put back on the free lists";
  }
  std::cout << "\n";
  if (r.items > 0) std::cout << displacement_summary(r) << "\n";
  if (!r.not_reclaimed_because.empty()) std::cout << "not repaired: " << r.not_reclaimed_because << "\n";
  return status;
}

// ls: one row per table; what the columns mean is in cli/ls.hpp.
nlohmann::ordered_json listing_json(const shmht::cli::TableListing& t) {
  const auto or_null = [](const auto& optional) {
    return optional ? nlohmann::ordered_json(*optional) : nlohmann::ordered_json(nullptr);
  };
  // name and path: a JSON string when they are UTF-8, else null; *_escaped always (dump's
  // escapes), so two names that differ in a byte that is not UTF-8 stay apart.
  return {
      {"name", utf8_or_null(t.name)},
      {"name_escaped", escape(t.name)},
      {"path", utf8_or_null(t.path)},
      {"path_escaped", escape(t.path)},
      {"state", t.state},
      {"problem", t.problem.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(t.problem)},
      {"engine", t.engine ? nlohmann::ordered_json(shmht::engine_name(*t.engine)) : nlohmann::ordered_json(nullptr)},
      {"items", or_null(t.items)},
      {"apparent_bytes", t.state == "ok" ? nlohmann::ordered_json(t.apparent_bytes) : nlohmann::ordered_json(nullptr)},
      {"resident_bytes", t.state == "ok" ? nlohmann::ordered_json(t.resident_bytes) : nlohmann::ordered_json(nullptr)},
      {"attached_pids", or_null(t.attached_pids)},
  };
}

int cmd_ls(const Arguments& a) {
  std::vector<shmht::cli::TableListing> tables;
  try {
    // Absolute: a listed path is one every command takes (a relative one is refused, or
    // read as a bare name in /dev/shm).
    tables = shmht::cli::list_tables(std::filesystem::absolute(a.directory).lexically_normal());
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "shmht: cannot list " << a.directory << ": " << e.code().message() << "\n";
    return e.code() == std::errc::no_such_file_or_directory ? kExitNotFound : kExitError;
  }
  if (a.json) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& t : tables) rows.push_back(listing_json(t));
    std::cout << rows.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  if (tables.empty()) {
    std::cout << "no shmht tables in " << a.directory << "\n";
    return kExitOk;
  }
  std::size_t width = 4;
  for (const auto& t : tables) width = std::max(width, escape_for_terminal(t.name).size());
  const auto column = [](std::string text, std::size_t w) { return text.size() < w ? text.append(w - text.size(), ' ') : text; };
  std::cout << column("NAME", width) << "  " << column("ENGINE", 8) << "  " << column("ITEMS", 10) << "  "
            << column("SIZE", 10) << "  " << column("RESIDENT", 10) << "  ATTACHED PIDS\n";
  for (const auto& t : tables) {
    std::cout << column(escape_for_terminal(t.name), width) << "  ";
    if (t.state != "ok") {
      std::cout << t.state << ": " << escape_for_terminal(t.problem) << "\n";  // it names the file
      continue;
    }
    std::cout << column(std::string(shmht::engine_name(*t.engine)), 8) << "  "
              << column(t.items ? std::to_string(*t.items) : t.problem.empty() ? "? (writing)" : "? (damaged)", 10) << "  " << column(bytes_text(t.apparent_bytes), 10)
              << "  " << column(bytes_text(t.resident_bytes), 10) << "  "
              << (t.attached_pids ? pid_list_text(*t.attached_pids) : "? (lock file not trusted)") << "\n";
  }
  return kExitOk;
}

// The one command that changes a table's engine (OpenOptions::engine): allowed only while
// no other process is attached; the library refuses otherwise (engine_mismatch, exit 3).
int cmd_switch_engine(const Arguments& a) {
  const Engine before = Table::active_engine(a.table);
  Table table = Table::open(a.table, {.engine = a.switch_to, .trust_foreign_owner = a.trust_owner});
  if (before == *a.switch_to) {
    std::cout << table.path() << " is already active with engine " << shmht::engine_name(before) << "\n";
  } else {
    std::cout << "switched " << table.path() << " from engine " << shmht::engine_name(before) << " to "
              << shmht::engine_name(table.engine()) << "\n";
  }
  return kExitOk;
}

int cmd_rm(const Arguments& a) {
  bool removed = false;
  try {
    removed = Table::remove(a.table, {.force = a.force});
  } catch (const Error& e) {
    // A file that is not a table exits 4, as get, put and check say of it (the library
    // refuses it as an invalid argument: removing it is what is refused).
    if (e.code() != shmht::ErrorCode::kInvalidArgument || std::string_view(e.what()).find("is not a shmht table") == std::string_view::npos) {
      throw;
    }
    std::cerr << "shmht: " << e.what() << " [" << shmht::error_code_name(shmht::ErrorCode::kCorrupt) << "]\n";
    return kExitCorrupt;
  }
  if (removed) return kExitOk;
  std::cerr << "shmht: no such table\n";
  return kExitNotFound;
}

// --- the command line -----------------------------------------------------------------

using Command = int (*)(const Arguments&);

struct Subcommand {
  CLI::App* app;
  Command run;
};

// Declares every subcommand and its options on `app`, writing into `a`.
std::vector<Subcommand> declare_commands(CLI::App& app, Arguments& a) {
  std::vector<Subcommand> commands;
  auto command = [&](const char* name, const char* description, Command run) -> CLI::App& {
    CLI::App* sub = app.add_subcommand(name, description);
    add_table_argument(*sub, a);
    commands.push_back({sub, run});
    return *sub;
  };
  // A command on an existing table, which takes --engine; `keyed`: and a KEY.
  auto opening = [&](const char* name, const char* description, Command run) -> CLI::App& {
    CLI::App& sub = command(name, description, run);
    add_engine_option(sub, a, kOpenEngineHelp);
    sub.add_flag("--trust-owner", a.trust_owner,
                 "open the table although another user owns it and it could be a plant (world-writable, or you are "
                 "root writing to it): its owner can read what you store");
    return sub;
  };
  auto keyed = [&](const char* name, const char* description, Command run) -> CLI::App& {
    CLI::App& sub = opening(name, description, run);
    sub.add_option("KEY", a.key, "the key (after -- if it starts with '-')")->required();
    return sub;
  };

  CLI::App& create = command("create", "create a table", cmd_create);
  using shmht::cli::add_create_option;
  add_create_option(create, "--capacity", a.create.capacity, "starting size in items (the table grows past it on its own)",
                    shmht::kCapacityRange);
  add_create_option(create, "--max-key-bytes", a.create.max_key_bytes, "longest key", shmht::kMaxKeyBytesRange);
  add_create_option(create, "--max-value-bytes", a.create.max_value_bytes, "longest value", shmht::kMaxValueBytesRange);
  add_create_option(create, "--max-bytes", a.create.max_bytes, "largest the file may grow", shmht::kMaxBytesRange);
  add_create_option(create, "--max-processes", a.create.max_processes,
                    "read-write handles open at once, over all processes",
                    shmht::kMaxProcessesRange);
  add_create_option(create, "--mode", a.create.mode, "permission bits of a file-backed table, less the umask",
                    shmht::kModeRange);
  add_engine_option(create, a,
                    "the engine (" + engine_choices() + "); default " +
                        std::string(shmht::engine_name(shmht::kDefaultEngine)));

  auto read_only = [&](CLI::App& sub) {
    sub.add_flag("--read-only", a.read_only,
                 "open the file read-only (seqlock tables); done anyway when it may not be written");
  };
  CLI::App& stat = opening("stat", "sizes, load, free records per size class and attached processes (besides itself)", cmd_stat);
  stat.add_flag("--json", a.json, "one JSON object instead of text");
  read_only(stat);

  CLI::App& get = keyed("get", "print the value of KEY (exit 1 if absent)", cmd_get);
  get.add_flag("--json", a.json,
               "one JSON object: table, key, key_escaped, found, value (null unless UTF-8), value_escaped, value_bytes");
  read_only(get);

  CLI::App& put = keyed("put", "insert or overwrite KEY", cmd_put);
  put.add_option("VALUE", a.value,
                 "the value; - reads it from stdin, every byte (a value that starts with '-' goes after --)")
      ->required();

  keyed("del", "erase KEY (exit 1 if absent)", cmd_del);

  CLI::App& add = keyed("add", "add DELTA (default 1) to KEY's counter (decimal text, as Redis INCR) atomically; print the new value", cmd_add);
  add.add_option("DELTA", a.delta, "a signed 64-bit integer (after -- if negative)");

  CLI::App& take = opening(
      "take",
      "erase KEY and print the value erased, in one atomic step (exit 1 if absent). Without KEY: erase some item "
      "and print it as KEY<TAB>VALUE, escaped as dump writes them (exit 1 if the table is empty), a work queue's "
      "pop. If the output cannot be written to stdout (full, closed), what was taken is put back unless the key "
      "was stored again meanwhile, and take exits 3: check take's exit status before relying on its output",
      cmd_take);
  CLI::Option* take_key = take.add_option("KEY", a.key, "the key (after -- if it starts with '-'); none: some item");
  take.final_callback([&a, take_key] { a.any_key = take_key->count() == 0; });

  CLI::App& cas = keyed("cas", "compare and set, atomically: exit 0 if applied, 1 (saying what it held) if not", cmd_cas);
  cas.add_option("--expected", a.expected, "apply only if KEY holds this value");
  cas.add_flag("--absent", a.absent, "apply only if KEY is absent");
  cas.add_option("--desired", a.desired, "the value to store");
  cas.add_flag("--erase", a.erase, "erase KEY instead of storing");

  opening("load",
          "read KEY<TAB>VALUE lines from stdin (\\t \\n \\r \\\\ \\xNN escapes; a CR before each "
          "newline is dropped); stops at the first bad line, saying how many items it stored",
          cmd_load);

  CLI::App& dump = opening("dump", "write KEY<TAB>VALUE lines to stdout, escaped as load reads them", cmd_dump);
  read_only(dump);

  CLI::App& check = opening("check", "verify every invariant (exit 0 only if clean; needs write access)", cmd_check);
  check.add_flag("--json", a.json, "one JSON object (clean, problems, items, bytes, displacements...) instead of text");
  check.add_flag("--repair", a.repair,
                 "also put bytes leaked by crashed writers back on the free lists (only when no other process is "
                 "attached; new ones wait meanwhile)");

  CLI::App& rm = command("rm", "delete the table's file: only a shmht table, and not while processes are attached", cmd_rm);
  rm.add_flag("--force", a.force, "remove it even while processes are attached (they keep using the removed file)");

  CLI::App& switch_engine = command(
      "switch-engine", "switch the table to engine E for every process that opens it (only while no other is attached)",
      cmd_switch_engine);
  switch_engine
      .add_option_function<std::string>(
          "ENGINE",
          [&a](const std::string& name) {
            a.switch_to = shmht::parse_engine(name);
            if (!a.switch_to) throw CLI::ValidationError("ENGINE", "unknown engine '" + name + "'; choose " + engine_choices());
          },
          "the engine: " + engine_choices())
      ->required();
  switch_engine.add_flag("--trust-owner", a.trust_owner, "open the table although another user owns it (see put --help)");

  // ls names no table: declared apart from the commands above.
  CLI::App* ls = app.add_subcommand(
      "ls", "list the shmht tables in DIR with engine, items, bytes and attached pids, attaching to none of them");
  ls->add_option("DIR", a.directory, "the directory (default /dev/shm)");
  ls->add_flag("--json", a.json,
               "one JSON array: name, name_escaped, path (absolute), path_escaped, state (ok, busy, initialising, "
               "corrupt, other-version, unreadable, removed, error), problem, engine, items, apparent_bytes, "
               "resident_bytes, attached_pids");
  commands.push_back({ls, cmd_ls});
  return commands;
}

// One line on stderr for a bad command line, pointing at the help of what was used.
// CLI11 checks required arguments before it reports the ones it did not expect, so
// `shmht frobnicate x` would say "A subcommand is required": name the stray ones first.
int usage_error(const CLI::App& app, const CLI::ParseError& e) {
  std::string where = "shmht";
  const CLI::App* innermost = &app;
  for (const CLI::App* sub : app.get_subcommands()) {
    where += " " + sub->get_name();
    innermost = sub;
  }
  std::string why = e.what();
  if (const std::vector<std::string> stray = innermost->remaining(); !stray.empty()) {
    const std::string& first = stray.front();
    if (first.starts_with('-')) {
      why = "unknown option '" + first + "'" + (innermost == &app ? "" : "; an argument that starts with '-' goes after --");
    } else {
      why = (innermost == &app ? "unknown command '" : "unexpected argument '") + first + "'";
    }
  }
  std::cerr << "shmht: " << why << "\nRun '" << where << " --help' for usage.\n";
  return kExitUsage;
}

// The command line, parsed and run: main's status unless stdout could not be written.
int run(int argc, char** argv) {
  CLI::App app("shmht - a hash table in shared memory, used by many processes at once", "shmht");
  app.footer(
      "NAME: a bare name lives in /dev/shm; an absolute path is a regular file.\n"
      "Exit status: 0 ok; 1 not found (the key, the table, ls's directory; take without KEY: nothing to take) or cas not applied; 2 usage error,\n"
      "a malformed load line, or an --engine other than the table's (switch-engine switches); 3 the table\n"
      "refused or failed the operation, or stdin could not be read or stdout not written; 4 corrupt table (rm\n"
      "of a file that is not a table too), or check found problems.\n"
      "Run 'shmht COMMAND --help' for a command's arguments and options.");
  app.set_version_flag("--version", "shmht " SHMHT_VERSION);
  app.require_subcommand(1);
  Arguments arguments;
  const std::vector<Subcommand> commands = declare_commands(app, arguments);
  if (argc < 2) {
    std::cerr << app.help();
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    return usage_error(app, e);
  }
  try {
    for (const Subcommand& c : commands) {
      if (c.app->parsed()) return c.run(arguments);
    }
    return kExitUsage;  // unreachable: require_subcommand(1)
  } catch (const EngineRefused& refused) {
    std::cerr << "shmht: " << refused.message << "\n";
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "shmht: " << e.what() << " [" << shmht::error_code_name(e.code()) << "]\n";
    return exit_status_of(e);
  } catch (const std::bad_alloc&) {
    std::cerr << "shmht: out of memory\n";
    return kExitError;
  } catch (const std::exception& e) {  // none is expected; a message, never std::terminate
    std::cerr << "shmht: " << e.what() << "\n";
    return kExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything is opened: a closed fd 0-2 would be the next file's number.
  if (!shmht::cli::occupy_closed_stdio(closed_at_start)) return kExitError;
  std::cout.rdbuf(&stdout_writer());
  if (isatty(STDOUT_FILENO)) std::cout.setf(std::ios::unitbuf);  // a person sees each line as it comes
  const int status = run(argc, argv);
  if (stdout_written() || stdout_error_reported) return status;
  std::cerr << "shmht: " << stdout_error_text() << "\n";
  return kExitError;
}
