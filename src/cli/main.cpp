// shmht - command-line access to shared-memory hash tables.
//
//   shmht create NAME [--capacity N] [--max-key-bytes N] [--max-value-bytes N]
//                     [--max-bytes N] [--mode OCTAL] [--engine E]
//   shmht stat NAME [--json]          shmht check NAME
//   shmht get NAME KEY                shmht put NAME KEY VALUE
//   shmht del NAME KEY                shmht rm NAME
//   shmht load NAME  < key<TAB>value lines       shmht dump NAME  > same format
//
// NAME is a bare name (/dev/shm/NAME) or an absolute path. Every command that opens a
// table takes --engine E (global | striped | seqlock | lockfree); without it, the engine
// the table is active with is used. In load/dump lines, a tab, newline or backslash
// inside a key or value is written \t, \n or \\.
//
// Exit status: 0 success; 1 key not found (get, del) or check found problems;
// 2 usage error; 3 the table reported an error (message on stderr).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "shmht/check.hpp"
#include "shmht/table.hpp"

namespace {

using shmht::Engine;
using shmht::Error;
using shmht::ErrorCode;
using shmht::Table;

constexpr int kExitOk = 0, kExitMissing = 1, kExitUsage = 2, kExitError = 3;

const char* const kUsage =
    "usage: shmht COMMAND NAME [ARGS] [--engine global|striped|seqlock|lockfree]\n"
    "commands:\n"
    "  create NAME [--capacity N] [--max-key-bytes N] [--max-value-bytes N] [--max-bytes N] [--mode OCTAL]\n"
    "  stat NAME [--json]     sizes, load, attached processes\n"
    "  get NAME KEY           print the value (exit 1 if absent)\n"
    "  put NAME KEY VALUE     insert or overwrite\n"
    "  del NAME KEY           erase (exit 1 if absent)\n"
    "  load NAME              read key<TAB>value lines from stdin (\\t \\n \\\\ escapes)\n"
    "  dump NAME              write key<TAB>value lines to stdout\n"
    "  check NAME             verify every invariant (exit 0 only if clean)\n"
    "  rm NAME                delete the table's file\n"
    "NAME: a bare name lives in /dev/shm; an absolute path is a regular file.\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Positional arguments plus --flag value options.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  bool json = false;

  static Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--json") {
        args.json = true;
      } else if (arg == "-h" || arg == "--help") {
        throw UsageError("");
      } else if (arg.rfind("--", 0) == 0) {
        if (i + 1 >= argc) throw UsageError(arg + " needs a value");
        args.options[arg.substr(2)] = argv[++i];
      } else {
        args.positional.push_back(arg);
      }
    }
    return args;
  }

  std::optional<std::string> option(const std::string& name) {
    const auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    std::string value = it->second;
    options.erase(it);
    return value;
  }

  std::uint64_t number(const std::string& name, std::uint64_t fallback, int base = 10) {
    const auto text = option(name);
    if (!text) return fallback;
    char* end = nullptr;
    errno = 0;
    const unsigned long long value = std::strtoull(text->c_str(), &end, base);
    if (errno != 0 || end == text->c_str() || *end != '\0' || (*text)[0] == '-') {
      throw UsageError("--" + name + " needs a non-negative number, got '" + *text + "'");
    }
    return value;
  }

  void expect_positional(std::size_t count, const char* shape) {
    if (positional.size() != count) throw UsageError(std::string("usage: shmht ") + shape);
  }
  void reject_leftover_options() {
    if (!options.empty()) throw UsageError("unknown option --" + options.begin()->first);
  }
};

std::optional<Engine> engine_option(Args& args) {
  const auto name = args.option("engine");
  if (!name) return std::nullopt;
  const auto engine = shmht::parse_engine(*name);
  if (!engine) throw UsageError("unknown engine '" + *name + "'; choose global, striped, seqlock or lockfree");
  return engine;
}

Table open_table(const std::string& name, std::optional<Engine> engine) {
  return Table::open(name, {.engine = engine});
}

// The prologue of every command that opens one table: check the arguments, then open
// positional[1] with --engine (default: the table's active engine).
Table open_from_args(Args& args, std::size_t positional, const char* shape) {
  args.expect_positional(positional, shape);
  const auto engine = engine_option(args);
  args.reject_leftover_options();
  return open_table(args.positional[1], engine);
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out;
}

std::string unescape(std::string_view s, std::size_t line) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) throw UsageError("line " + std::to_string(line) + ": dangling backslash");
    switch (s[i]) {
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case '\\': out += '\\'; break;
      default: throw UsageError("line " + std::to_string(line) + ": unknown escape \\" + std::string(1, s[i]));
    }
  }
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

int cmd_create(Args& args) {
  args.expect_positional(2, "create NAME [--capacity N] ...");
  shmht::CreateOptions o;
  o.engine = engine_option(args).value_or(shmht::kDefaultEngine);
  o.capacity = args.number("capacity", o.capacity);
  o.max_key_bytes = static_cast<std::uint32_t>(args.number("max-key-bytes", o.max_key_bytes));
  o.max_value_bytes = static_cast<std::uint32_t>(args.number("max-value-bytes", o.max_value_bytes));
  o.max_bytes = args.number("max-bytes", o.max_bytes);
  o.mode = static_cast<mode_t>(args.number("mode", o.mode, 8));
  args.reject_leftover_options();
  Table table = Table::create(args.positional[1], o);
  std::cout << "created " << table.path() << " (capacity " << o.capacity << ", engine "
            << shmht::engine_name(o.engine) << ")\n";
  return kExitOk;
}

int cmd_stat(Args& args) {
  Table table = open_from_args(args, 2, "stat NAME [--json]");
  const shmht::Stats s = table.stats();
  std::vector<pid_t> others;
  for (pid_t p : s.attached_pids) {
    if (p != getpid()) others.push_back(p);  // this command's own attachment is not news
  }
  const double per_item = s.items ? static_cast<double>(s.apparent_bytes) / static_cast<double>(s.items) : 0.0;
  if (args.json) {
    std::cout << "{\"path\": " << json_string(s.path) << ", \"engine\": " << json_string(shmht::engine_name(s.engine))
              << ", \"capacity\": " << s.capacity << ", \"slots\": " << s.slots << ", \"items\": " << s.items
              << ", \"load_factor\": " << s.load_factor << ", \"max_key_bytes\": " << s.max_key_bytes
              << ", \"max_value_bytes\": " << s.max_value_bytes << ", \"apparent_bytes\": " << s.apparent_bytes
              << ", \"resident_bytes\": " << s.resident_bytes << ", \"bytes_per_item\": " << per_item
              << ", \"arena_bytes\": " << s.arena_bytes << ", \"live_record_bytes\": " << s.live_record_bytes
              << ", \"free_record_bytes\": " << s.free_record_bytes << ", \"attached_pids\": [";
    for (std::size_t i = 0; i < others.size(); ++i) std::cout << (i ? ", " : "") << others[i];
    std::cout << "]}\n";
    return kExitOk;
  }
  std::cout << "table           " << s.path << "\n"
            << "engine          " << shmht::engine_name(s.engine) << "\n"
            << "items           " << s.items << " of capacity " << s.capacity << " (" << s.slots
            << " slots, load factor " << s.load_factor << ")\n"
            << "limits          key " << s.max_key_bytes << " B, value " << s.max_value_bytes << " B\n"
            << "file            " << s.apparent_bytes << " B apparent, " << s.resident_bytes << " B resident, "
            << per_item << " B/item\n"
            << "arena           " << s.arena_bytes << " B in chunks: " << s.live_record_bytes << " B live records, "
            << s.free_record_bytes << " B free for reuse\n"
            << "attached pids   ";
  for (std::size_t i = 0; i < others.size(); ++i) std::cout << (i ? " " : "") << others[i];
  std::cout << (others.empty() ? "(none)\n" : "\n");
  return kExitOk;
}

int cmd_get(Args& args) {
  Table table = open_from_args(args, 3, "get NAME KEY");
  const auto value = table.get(args.positional[2]);
  if (!value) {
    std::cerr << "shmht: key not found\n";
    return kExitMissing;
  }
  std::cout << *value << "\n";
  return kExitOk;
}

int cmd_put(Args& args) {
  Table table = open_from_args(args, 4, "put NAME KEY VALUE");
  table.assign(args.positional[2], args.positional[3]);
  return kExitOk;
}

int cmd_del(Args& args) {
  Table table = open_from_args(args, 3, "del NAME KEY");
  if (table.erase(args.positional[2])) return kExitOk;
  std::cerr << "shmht: key not found\n";
  return kExitMissing;
}

int cmd_load(Args& args) {
  Table table = open_from_args(args, 2, "load NAME < key<TAB>value lines");
  std::string line;
  std::size_t number = 0, loaded = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (line.empty()) continue;
    const auto tab = line.find('\t');
    if (tab == std::string::npos) throw UsageError("line " + std::to_string(number) + ": no tab between key and value");
    try {
      table.assign(unescape(std::string_view(line).substr(0, tab), number),
                   unescape(std::string_view(line).substr(tab + 1), number));
    } catch (const Error& e) {
      // Say how far it got: every line before this one is stored, this one and the rest not.
      throw Error(e.code(), std::string(e.what()) + "\nload stopped at line " + std::to_string(number) + ": " +
                                std::to_string(loaded) + " items stored from the lines before it, none after");
    }
    ++loaded;
  }
  std::cerr << "loaded " << loaded << " items\n";
  return kExitOk;
}

int cmd_dump(Args& args) {
  Table table = open_from_args(args, 2, "dump NAME");
  table.for_each([](std::string_view k, std::string_view v) { std::cout << escape(k) << '\t' << escape(v) << '\n'; });
  return kExitOk;
}

int cmd_check(Args& args) {
  args.expect_positional(2, "check NAME");
  const auto engine = engine_option(args);
  args.reject_leftover_options();
  if (engine && *engine != Table::active_engine(args.positional[1])) {
    open_table(args.positional[1], engine);  // switches the engine, or reports who uses the other one
  }
  const shmht::CheckReport r = shmht::check_table(args.positional[1]);
  for (const auto& p : r.problems) std::cout << "problem: " << p << "\n";
  std::cout << (r.clean ? "clean" : "NOT CLEAN") << ": " << r.items << " items, " << r.free_records
            << " free records (" << r.free_record_bytes << " B), " << r.live_record_bytes << " B live, "
            << r.unaccounted_bytes << " B unaccounted (leaked by crashed writers)";
  if (r.repaired_shifts) std::cout << ", " << r.repaired_shifts << " interrupted operations repaired";
  std::cout << "\n";
  return r.clean ? kExitOk : kExitMissing;
}

int cmd_rm(Args& args) {
  args.expect_positional(2, "rm NAME");
  args.reject_leftover_options();
  if (Table::remove(args.positional[1])) return kExitOk;
  std::cerr << "shmht: no such table\n";
  return kExitMissing;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args args = Args::parse(argc, argv);
    if (args.positional.empty()) throw UsageError("");
    const std::string command = args.positional[0];
    const std::map<std::string, int (*)(Args&)> commands = {
        {"create", cmd_create}, {"stat", cmd_stat}, {"get", cmd_get},     {"put", cmd_put}, {"del", cmd_del},
        {"load", cmd_load},     {"dump", cmd_dump}, {"check", cmd_check}, {"rm", cmd_rm}};
    const auto it = commands.find(command);
    if (it == commands.end()) throw UsageError("unknown command '" + command + "'");
    return it->second(args);
  } catch (const UsageError& e) {
    if (*e.what()) std::cerr << "shmht: " << e.what() << "\n";
    std::cerr << kUsage;
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "shmht: " << e.what() << " [" << shmht::error_code_name(e.code()) << "]\n";
    return kExitError;
  }
}
