// shmht - command-line access to shared-memory hash tables.
//
//   shmht create NAME [--capacity N] [--max-key-bytes N] [--max-value-bytes N]
//                     [--max-bytes N] [--max-processes N] [--mode OCTAL] [--engine E]
//   shmht stat NAME [--json]          shmht check NAME (also: how far items sit from home)
//   shmht get NAME KEY                shmht put NAME KEY VALUE
//   shmht del NAME KEY                shmht rm NAME
//   shmht load NAME  < key<TAB>value lines       shmht dump NAME  > same format
//   shmht --help | --version          shmht COMMAND --help
//
// NAME is a bare name (/dev/shm/NAME) or an absolute path. Every command that opens a
// table takes --engine E (global | striped | seqlock | lockfree); without it, the engine
// the table is active with is used. A KEY or VALUE that starts with '-' goes after `--`.
// In load/dump lines, a tab, newline, carriage return or backslash inside a key or value
// is written \t, \n, \r or \\, and any other control byte (below 0x20, and 0x7f) and
// every byte from 0x80 up as \xNN (two hex digits), so that dumping a table never sends
// its bytes to a terminal as escape sequences (C1 controls, U+0080..U+009F, are c2 80..
// c2 9f in UTF-8: CSI and OSC among them); dump's output is ASCII. load reads all of
// these back and drops one \r at the end of each line (CRLF files). get prints a value,
// when its output is a terminal, escaped the same way except that a valid UTF-8 sequence
// of a printable code point (not C0, DEL or C1) shows as itself, so "é" prints; every
// other byte is \xNN. A pipe or file gets the exact bytes.
//
// A table that another user owns is refused when it could be a plant (OpenOptions::
// trust_foreign_owner says when); --trust-owner opens it anyway.
//
// Options are parsed by CLI11: --help prints to stdout; a bad flag or argument gets one
// line saying what is wrong and where to find help, on stderr.
//
// Exit status: 0 success (--help and --version too); 1 key not found (get, del), no such
// table (rm) or check found problems; 2 usage error, or a malformed line in load's input;
// 3 the table reported an error (message on stderr).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/number_option.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"

#ifndef SHMHT_VERSION
#error "meson passes SHMHT_VERSION (the project version)"
#endif

namespace {

using shmht::Engine;
using shmht::Error;
using shmht::Table;

constexpr int kExitOk = 0, kExitMissing = 1, kExitUsage = 2, kExitError = 3;

// "1 item", "2 items"; `plural` for a noun that does not just take an "s".
std::string count_of(std::uint64_t n, std::string_view noun, std::string_view plural = {}) {
  std::string text = std::to_string(n) + " ";
  if (n == 1) return text.append(noun);
  return plural.empty() ? text.append(noun).append("s") : text.append(plural);
}

// What the command line gave; each command reads what its subcommand declared.
struct Arguments {
  std::string table, key, value;
  std::optional<Engine> engine;
  shmht::CreateOptions create;
  bool json = false;
  bool read_only = false;  // --read-only
  bool repair = false;     // check --repair
  bool force = false;      // rm --force
  bool trust_owner = false;  // --trust-owner (OpenOptions::trust_foreign_owner)
  std::string delta = "1";                        // add's DELTA
  std::optional<std::string> expected, desired;   // cas --expected / --desired
  bool absent = false, erase = false;             // cas --absent / --erase
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

const char* const kOpenEngineHelp = "open with engine E (global, striped, seqlock, lockfree); default: the table's";

Table open_table(const Arguments& a) {
  return Table::open(a.table, {.engine = a.engine, .trust_foreign_owner = a.trust_owner});
}

// For the commands that only read (stat, get, dump): read-only if asked, or if this user
// may not write the file (a 0644 table of another user, a read-only filesystem).
Table open_for_reading(const Arguments& a) {
  shmht::OpenOptions read_only;
  read_only.engine = a.engine;
  read_only.read_only = true;
  read_only.trust_foreign_owner = a.trust_owner;
  if (a.read_only) return Table::open(a.table, read_only);
  try {
    return open_table(a);
  } catch (const Error& e) {
    if (e.code() != shmht::ErrorCode::kPermissionDenied) throw;
    try {
      return Table::open(a.table, read_only);
    } catch (const Error& read_only_error) {
      // Not a seqlock table: why read-write was refused (no write access, or a table that
      // needs --trust-owner) is the news, not why read-only is no way round it.
      if (read_only_error.code() == shmht::ErrorCode::kInvalidArgument) throw e;
      throw;
    }
  }
}

// --- load / dump ----------------------------------------------------------------------

// A byte that a terminal may act on rather than show (C0 controls and DEL).
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == '\x7f'; }

// Writes `s` with \t \n \r \\ for those bytes, and \xNN for each byte that is not in a
// run keep(s, i) says to show as it is (it returns that run's length at i; 0: escape the
// byte at i).
template <class Keep>
std::string escape_with(std::string_view s, Keep&& keep) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    switch (s[i]) {
      case '\t': out += "\\t"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      default: break;
    }
    if (const std::size_t n = keep(s, i); n != 0) {
      out += s.substr(i, n);
      i += n;
    } else {
      const auto byte = static_cast<unsigned char>(s[i++]);
      out += {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]};
    }
  }
  return out;
}

// dump's escaping: only printable ASCII as itself, so no terminal acts on a dump.
std::string escape(std::string_view s) {
  return escape_with(s, [](std::string_view t, std::size_t i) -> std::size_t {
    return static_cast<unsigned char>(t[i]) < 0x80 && !is_control(t[i]) ? 1 : 0;
  });
}

// The length of the valid UTF-8 sequence at s[i] if it encodes a printable code point
// (not C0, DEL or C1 U+0080..U+009F; not overlong, a surrogate or past U+10FFFF), else 0.
std::size_t printable_utf8_at(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return is_control(s[i]) ? 0 : 1;
  std::size_t length = 0;
  char32_t code = 0, smallest = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, code = lead & 0x1F, smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code = lead & 0x0F, smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code = lead & 0x07, smallest = 0x10000;
  } else {
    return 0;  // a continuation byte, or 0xf8..0xff: never a lead
  }
  if (s.size() - i < length) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xC0) != 0x80) return 0;
    code = (code << 6) | (next & 0x3F);
  }
  if (code < smallest || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return code <= 0x9F ? 0 : length;  // C1 controls
}

// get's escaping on a terminal: printable UTF-8 as itself, every other byte escaped.
std::string escape_for_terminal(std::string_view s) { return escape_with(s, printable_utf8_at); }

// A line of load's input that cannot be read as KEY<TAB>VALUE; what() says why.
struct MalformedLine : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The byte that two hex digits (\xNN's NN) name.
char hex_byte(std::string_view digits) {
  unsigned value = 0;
  const auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), value, 16);
  if (digits.size() != 2 || parsed.ec != std::errc() || parsed.ptr != digits.data() + 2) {
    throw MalformedLine("\\x needs two hex digits");
  }
  return static_cast<char>(value);
}

std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) throw MalformedLine("dangling backslash");
    switch (s[i]) {
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case 'x': out += hex_byte(s.substr(i + 1, 2)); i += 2; break;
      default: throw MalformedLine(std::string("unknown escape \\") + s[i] + " (known: \\t \\n \\r \\\\ \\xNN)");
    }
  }
  return out;
}

std::pair<std::string, std::string> parse_line(std::string_view line) {
  const auto tab = line.find('\t');
  if (tab == std::string_view::npos) throw MalformedLine("no tab between key and value");
  return {unescape(line.substr(0, tab)), unescape(line.substr(tab + 1))};
}

int cmd_load(const Arguments& a) {
  Table table = open_table(a);
  std::string line;
  std::uint64_t number = 0, loaded = 0;
  // Every line before the failing one is stored; it and the rest are not.
  auto stop = [&](const std::string& why, int status) {
    std::cerr << "shmht: line " << number << ": " << why << "\nshmht: load stopped at line " << number << ": "
              << count_of(loaded, "item") << " stored from the lines before it, none from it on\n";
    return status;
  };
  while (std::getline(std::cin, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF input
    if (line.empty()) continue;
    try {
      const auto [key, value] = parse_line(line);
      table.assign(key, value);
    } catch (const MalformedLine& e) {
      return stop(e.what(), kExitUsage);
    } catch (const Error& e) {
      return stop(std::string(e.what()) + " [" + std::string(shmht::error_code_name(e.code())) + "]", kExitError);
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
  std::ostringstream text;
  text << "load factor " << s.load_factor;
  if (s.load_factor > 1) {
    text << " = items / home slots; above 1 because the " << shmht::kOverflowSlots
         << " overflow slots after the last home slot hold the excess";
  }
  return text.str();
}

// Free records per size class ("3 x 64 B, 1 x 1024 B"): how fragmented the free space is.
std::string free_classes_text(const shmht::Stats& s) {
  if (s.free_by_class.empty()) return "(none)";
  std::string text;
  for (const shmht::FreeClass& c : s.free_by_class) {
    text += (text.empty() ? "" : ", ") + std::to_string(c.records) + " x " + std::to_string(c.record_bytes) + " B";
  }
  return text;
}

nlohmann::ordered_json free_classes_json(const shmht::Stats& s) {
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const shmht::FreeClass& c : s.free_by_class) classes.push_back({{"record_bytes", c.record_bytes}, {"records", c.records}});
  return classes;
}

int cmd_stat(const Arguments& a) {
  Table table = open_for_reading(a);
  const shmht::Stats s = table.stats();
  std::vector<pid_t> others;
  for (pid_t p : s.attached_pids) {
    if (p != getpid()) others.push_back(p);  // this command's own attachment is not news
  }
  const double per_item = s.items ? static_cast<double>(s.apparent_bytes) / static_cast<double>(s.items) : 0.0;
  if (a.json) {
    const nlohmann::ordered_json j = {
        {"path", s.path},
        {"engine", shmht::engine_name(s.engine)},
        {"capacity", s.capacity},
        {"slots", s.slots},
        {"overflow_slots", shmht::kOverflowSlots},
        {"items", s.items},
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
        {"attached_pids", others},
    };
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  std::cout << "table           " << s.path << "\n"
            << "engine          " << shmht::engine_name(s.engine) << "\n"
            << "items           " << s.items << " of capacity " << s.capacity << " (" << count_of(s.slots, "home slot")
            << ", " << load_factor_text(s) << ")\n"
            << "limits          key " << s.max_key_bytes << " B, value " << s.max_value_bytes << " B, file "
            << s.max_bytes << " B, " << count_of(s.max_processes, "handle") << " at once\n"
            << "file            " << s.apparent_bytes << " B apparent, " << s.resident_bytes << " B resident, "
            << per_item << " B/item\n"
            << "arena           " << s.arena_bytes << " B in chunks: " << s.live_record_bytes << " B live records, "
            << s.free_record_bytes << " B free for reuse\n"
            << "free records    " << free_classes_text(s) << "\n"
            << "attached pids   ";
  for (std::size_t i = 0; i < others.size(); ++i) std::cout << (i ? " " : "") << others[i];
  std::cout << (others.empty() ? "(none)\n" : "\n");
  return kExitOk;
}

int key_not_found() {
  std::cerr << "shmht: key not found\n";
  return kExitMissing;
}

// get and take: print the value, or say the key was not there.
int print_value(const std::optional<std::string>& value) {
  if (!value) return key_not_found();
  // On a terminal a stored escape sequence would act (retitle it, move the cursor, fake
  // output): show control bytes (C0, DEL, C1) and stray bytes escaped, printable UTF-8 as
  // itself. A pipe or a file gets the exact bytes.
  std::cout << (isatty(STDOUT_FILENO) ? escape_for_terminal(*value) : *value) << "\n";
  return kExitOk;
}

int cmd_get(const Arguments& a) { return print_value(open_for_reading(a).get(a.key)); }

int cmd_put(const Arguments& a) {
  Table table = open_table(a);
  table.assign(a.key, a.value);
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

int cmd_take(const Arguments& a) { return print_value(open_table(a).take(a.key)); }

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
  return kExitMissing;
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

int cmd_check(const Arguments& a) {
  if (a.engine && *a.engine != Table::active_engine(a.table)) {
    open_table(a);  // switches the engine, or reports who uses the other one
  }
  const shmht::CheckReport r =
      shmht::check_table(a.table, {.reclaim_leaked = a.repair, .trust_foreign_owner = a.trust_owner});
  for (const auto& p : r.problems) std::cout << "problem: " << p << "\n";
  std::cout << (r.clean ? "clean" : "NOT CLEAN") << ": " << count_of(r.items, "item") << ", "
            << count_of(r.free_records, "free record") << " (" << r.free_record_bytes << " B), " << r.live_record_bytes
            << " B live, " << r.unaccounted_bytes << " B allocated but not linked";
  if (r.unaccounted_bytes) std::cout << " (" << unlinked_bytes_cause(r) << ")";
  if (r.repaired_shifts) std::cout << ", " << count_of(r.repaired_shifts, "interrupted operation") << " repaired";
  if (r.reclaimed_bytes) std::cout << ", " << r.reclaimed_bytes << " B leaked by crashed writers put back on the free lists";
  std::cout << "\n";
  if (r.items > 0) std::cout << displacement_summary(r) << "\n";
  if (!r.not_reclaimed_because.empty()) std::cout << "not repaired: " << r.not_reclaimed_because << "\n";
  return r.clean ? kExitOk : kExitMissing;
}

int cmd_rm(const Arguments& a) {
  if (Table::remove(a.table, {.force = a.force})) return kExitOk;
  std::cerr << "shmht: no such table\n";
  return kExitMissing;
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
  add_create_option(create, "--capacity", a.create.capacity, "items the table must hold (it never resizes)",
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
  CLI::App& stat = opening("stat", "sizes, load, free records per size class and attached processes", cmd_stat);
  stat.add_flag("--json", a.json, "one JSON object instead of text");
  read_only(stat);

  CLI::App& get = keyed("get", "print the value of KEY (exit 1 if absent)", cmd_get);
  read_only(get);

  CLI::App& put = keyed("put", "insert or overwrite KEY", cmd_put);
  put.add_option("VALUE", a.value, "the value (after -- if it starts with '-')")->required();

  keyed("del", "erase KEY (exit 1 if absent)", cmd_del);

  CLI::App& add = keyed("add", "add DELTA (default 1) to KEY's counter (decimal text, as Redis INCR) atomically; print the new value", cmd_add);
  add.add_option("DELTA", a.delta, "a signed 64-bit integer (after -- if negative)");

  keyed("take", "erase KEY and print the value erased, in one atomic step (exit 1 if absent)", cmd_take);

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
  check.add_flag("--repair", a.repair,
                 "also put bytes leaked by crashed writers back on the free lists (only when no other process is "
                 "attached; new ones wait meanwhile)");

  CLI::App& rm = command("rm", "delete the table's file: only a shmht table, and not while processes are attached", cmd_rm);
  rm.add_flag("--force", a.force, "remove it even while processes are attached (they keep using the removed file)");
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("shmht - a hash table in shared memory, used by many processes at once", "shmht");
  app.footer(
      "NAME: a bare name lives in /dev/shm; an absolute path is a regular file.\n"
      "Exit status: 0 ok; 1 key not found, no such table, or check found problems; 2 usage error or a\n"
      "malformed load line; 3 the table reported an error.\n"
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
  } catch (const Error& e) {
    std::cerr << "shmht: " << e.what() << " [" << shmht::error_code_name(e.code()) << "]\n";
    return kExitError;
  }
}
