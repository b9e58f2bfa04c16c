#include "operations.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "fuzz_support.hpp"
#include "region.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"

namespace shmht::fuzz {
namespace {

constexpr std::uint32_t kMaxKeyBytes = 32;
constexpr std::uint32_t kMaxValueBytes = 1000;
constexpr unsigned kChildSeconds = 10;  // a child still running then is a hang: SIGALRM ends it

using Model = std::map<std::string, std::string>;
using Value = std::optional<std::string>;

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  bool done() const noexcept { return next_ >= bytes_.size(); }
  std::uint8_t next() noexcept { return next_ < bytes_.size() ? bytes_[next_++] : 0; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t next_ = 0;
};

struct Setup {
  Engine engine;
  std::uint64_t capacity;
  std::uint64_t chunks;
  std::uint32_t max_processes;
  std::uint32_t stripes;

  static Setup decode(std::uint8_t b) {
    static constexpr std::uint64_t kCapacities[] = {1, 8, 60, 400};
    static constexpr std::uint64_t kChunks[] = {1, 2, 4, 64};
    return {kAllEngines[b & 3], kCapacities[(b >> 2) & 3], kChunks[(b >> 4) & 3], (b & 0x40) ? 4u : 3u,
            (b & 0x80) ? 64u : 4u};
  }

  CreateOptions create_options() const {
    // max_bytes counted in arena chunks past the fixed part, so the arena fills up too.
    const RegionLayout l = RegionLayout::compute(capacity, max_processes, kMaxKeyBytes, kMaxValueBytes);
    return {.capacity = capacity,
            .max_key_bytes = kMaxKeyBytes,
            .max_value_bytes = kMaxValueBytes,
            .max_bytes = l.arena_offset + chunks * l.chunk_bytes,
            .max_processes = max_processes,
            .engine = engine,
            .stripes = stripes};
  }
};

std::string key_of(std::uint8_t b) {
  std::string key = "k";  // appended, not "k" + ...: gcc 12 warns falsely (-Wrestrict) about that
  key += std::to_string(b);
  return key.append(std::size_t{b % 9u} * 4, '+');
}

// b * 5 bytes that differ from every other operation's value (its serial number first).
std::string value_of(std::uint8_t b, std::uint64_t serial) {
  std::string value(std::size_t{b} * 5, static_cast<char>('a' + serial % 26));
  const std::string tag = std::to_string(serial) + ":";
  value.replace(0, std::min(tag.size(), value.size()), tag, 0, std::min(tag.size(), value.size()));
  return value;
}

std::string describe(const Value& v) {
  if (!v) return "absent";
  return "\"" + (v->size() > 24 ? v->substr(0, 24) + "...(" + std::to_string(v->size()) + " bytes)" : *v) + "\"";
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw ModelMismatch(what);
}

// The exit statuses of a crash child that was not killed.
constexpr int kChildFalse = 40, kChildTrue = 41, kChildDone = 42, kChildCheckFailed = 43, kChildErrorBase = 50,
              kChildOtherException = 70;

testing::FaultPoint g_fatal_point;
void die_at_fatal_point(testing::FaultPoint reached) {
  if (reached == g_fatal_point) raise(SIGKILL);
}

struct ChildEnd {
  bool killed;  // by SIGKILL at its fault point
  int status;   // its exit status otherwise
};

// Forks a child that runs `body` and exits with its result; waits for it. A child ended
// any other way than by exiting or by SIGKILL (a crash, a sanitizer abort, a hang that
// its alarm ended) is a finding.
ChildEnd run_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    signal(SIGALRM, SIG_DFL);  // not libFuzzer's timeout handler, which may return
    alarm(kChildSeconds);
    int status = kChildOtherException;
    try {
      status = body();
    } catch (const Error& e) {
      status = kChildErrorBase + static_cast<int>(e.code());
    } catch (...) {
    }
    _exit(status);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return {true, 0};
  if (WIFEXITED(status)) return {false, WEXITSTATUS(status)};
  throw ModelMismatch("crash child died of signal " + std::to_string(WTERMSIG(status)) +
                      (WTERMSIG(status) == SIGALRM ? " (it hung)" : ""));
}

class Session {
 public:
  explicit Session(const Setup& setup) : setup_(setup), file_("ops") {
    handles_[0].emplace(Table::create(file_.path(), setup.create_options()));
  }

  void run(ByteReader& in) {
    while (!in.done()) step(in);
    for_each();
    check();
    size();
  }

 private:
  void step(ByteReader& in) {
    ++serial_;
    const auto op = static_cast<Op>(in.next() % static_cast<std::uint8_t>(Op::kCount));
    switch (op) {
      case Op::kInsert:
      case Op::kAssign: {
        const std::string key = key_of(in.next());
        const std::string value = value_of(in.next(), serial_);
        write(op, key, value);
        break;
      }
      case Op::kErase: erase(key_of(in.next())); break;
      case Op::kGet: get(key_of(in.next())); break;
      case Op::kGetInto: {
        const std::string key = key_of(in.next());
        get_into(key, in.next());
        break;
      }
      case Op::kContains: contains(key_of(in.next())); break;
      case Op::kSize: size(); break;
      case Op::kForEach: for_each(); break;
      case Op::kSwitchEngine: open(kAllEngines[in.next() % std::size(kAllEngines)]); break;
      case Op::kReopen: open(std::nullopt); break;
      case Op::kCheck: check(); break;
      case Op::kFill: fill(in.next() + 1u); break;
      case Op::kChurn: {
        const unsigned count = in.next() + 1u;
        churn(count, in.next());
        break;
      }
      case Op::kOtherHandle: current_ = 1 - current_; break;
      case Op::kCrash: {
        const auto action = static_cast<CrashAction>(in.next() % static_cast<std::uint8_t>(CrashAction::kCount));
        const std::string key = key_of(in.next());
        const std::string value = value_of(in.next(), serial_);
        const auto point =
            static_cast<testing::FaultPoint>(in.next() % (static_cast<int>(testing::FaultPoint::kKcasMidCleanup) + 1));
        const bool keep_handle = (in.next() & 1) != 0;
        if (crashes_ < kMaxCrashes) crash(action, key, value, point, keep_handle);
        break;
      }
      case Op::kCount: break;
    }
  }

  // The current handle, opened (with the active engine) when first used.
  Table& table() {
    if (!handles_[current_]) handles_[current_].emplace(Table::open(file_.path()));
    return *handles_[current_];
  }
  void close_handles(bool keep_current) {
    handles_[1 - current_].reset();
    if (!keep_current) handles_[current_].reset();
  }
  Value modelled(const std::string& key) const {
    const auto it = model_.find(key);
    return it == model_.end() ? Value() : Value(it->second);
  }
  void set_model(const std::string& key, const Value& v) {
    if (v) {
      model_[key] = *v;
    } else {
      model_.erase(key);
    }
  }
  bool key_fits(const std::string& key) const { return key.size() <= kMaxKeyBytes; }

  // What an insert, assign or erase of `key` leaves, if it runs.
  static Value after(Op op, const Value& before, const std::string& value) {
    if (op == Op::kInsert) return before ? before : Value(value);
    if (op == Op::kAssign) return value;
    return std::nullopt;
  }
  // What it returns then.
  static bool result_of(Op op, const Value& before) { return op == Op::kErase ? before.has_value() : !before; }

  // A refusal `code` of an operation on `key` (writing `value` if set): the right one,
  // and the key is as it was.
  void judge_refusal(ErrorCode code, const std::string& what, const std::string& key, const Value& value) {
    const std::string context = what + " refused with " + std::string(error_code_name(code));
    if (!key_fits(key)) {
      expect(code == ErrorCode::kKeyTooLarge, context + " (expected key_too_large)");
      return;
    }
    if (value && value->size() > kMaxValueBytes) {
      expect(code == ErrorCode::kValueTooLarge, context + " (expected value_too_large)");
    } else {
      // Only a write allocates a record, and only allocating can find the table full.
      expect(value && (code == ErrorCode::kTableFull || code == ErrorCode::kNoSpace), context);
    }
    const Value now = table().get(key);
    expect(now == modelled(key),
           context + " but changed the key to " + describe(now) + " from " + describe(modelled(key)));
  }

  // An acknowledged insert, assign or erase that returned `result`.
  void acknowledge(Op op, const std::string& key, const std::string& value, bool result, const std::string& what) {
    const Value before = modelled(key);
    // Only stores refuse oversize arguments; an erase of an oversize key finds it absent.
    expect(op == Op::kErase || (key_fits(key) && value.size() <= kMaxValueBytes),
           what + " accepted an oversize argument");
    expect(result == result_of(op, before),
           what + " returned " + (result ? "true" : "false") + " with the key " + describe(before));
    set_model(key, after(op, before, value));
  }

  void write(Op op, const std::string& key, const std::string& value) {
    const std::string what = std::string(op == Op::kInsert ? "insert(" : "assign(") + key + ")";
    try {
      const bool result = op == Op::kInsert ? table().insert(key, value) : table().assign(key, value);
      acknowledge(op, key, value, result, what);
    } catch (const Error& e) {
      judge_refusal(e.code(), what, key, value);
    }
  }

  void erase(const std::string& key) {
    try {
      acknowledge(Op::kErase, key, "", table().erase(key), "erase(" + key + ")");
    } catch (const Error& e) {
      judge_refusal(e.code(), "erase(" + key + ")", key, std::nullopt);
    }
  }

  void get(const std::string& key) {
    try {
      const Value v = table().get(key);
      expect(v == modelled(key), "get(" + key + ") = " + describe(v) + ", model " + describe(modelled(key)));
    } catch (const Error& e) {
      judge_refusal(e.code(), "get(" + key + ")", key, std::nullopt);
    }
  }

  void get_into(const std::string& key, std::size_t room) {
    std::string buffer(room, '\0');
    try {
      const std::optional<std::size_t> n = table().get(key, std::span<char>(buffer.data(), buffer.size()));
      const Value want = modelled(key);
      expect(n.has_value() == want.has_value() && (!n || *n == want->size()),
             "get(" + key + ", " + std::to_string(room) + " bytes) = " + (n ? std::to_string(*n) : "absent") +
                 ", model " + describe(want));
      if (n && *n <= room) expect(buffer.compare(0, *n, *want) == 0, "get(" + key + ", span) copied other bytes");
    } catch (const Error& e) {
      judge_refusal(e.code(), "get(" + key + ", span)", key, std::nullopt);
    }
  }

  void contains(const std::string& key) {
    try {
      expect(table().contains(key) == modelled(key).has_value(),
             "contains(" + key + ") disagrees with " + describe(modelled(key)));
    } catch (const Error& e) {
      judge_refusal(e.code(), "contains(" + key + ")", key, std::nullopt);
    }
  }

  void size() {
    expect(table().size() == model_.size(),
           "size() " + std::to_string(table().size()) + ", model " + std::to_string(model_.size()));
    const Stats s = table().stats();
    expect(s.items == model_.size(),
           "stats().items " + std::to_string(s.items) + ", model " + std::to_string(model_.size()));
  }

  void for_each() {
    Model seen;
    table().for_each([&](std::string_view k, std::string_view v) {
      expect(seen.emplace(k, v).second, "for_each saw " + std::string(k) + " twice");
    });
    for (const auto& [k, v] : model_) {
      expect(seen.count(k) != 0 && seen[k] == v,
             "for_each: " + k + " = " + describe(seen.count(k) ? Value(seen[k]) : Value()) + ", model " + describe(v));
    }
    expect(seen.size() == model_.size(),
           "for_each saw " + std::to_string(seen.size()) + " keys, model " + std::to_string(model_.size()));
  }

  // check_table must be clean; `items_known` false while a killed child's key is undecided.
  CheckReport check(bool items_known = true) {
    const CheckReport r = check_table(file_.path());
    expect(r.clean, "check: " + (r.problems.empty() ? std::string("not clean") : r.problems.front()));
    if (items_known) {
      expect(r.items == model_.size() && r.counted_items == model_.size(),
             "check: " + std::to_string(r.items) + " occupied slots, counters " + std::to_string(r.counted_items) +
                 ", model " + std::to_string(model_.size()));
    }
    // Records are leaked only by a process killed between allocating and linking them
    // (or unlinking and freeing).
    expect(r.unaccounted_bytes == 0 || killed_,
           "check: " + std::to_string(r.unaccounted_bytes) + " bytes unaccounted without a crash");
    return r;
  }

  void open(std::optional<Engine> engine) {
    const Engine was = table().engine();
    close_handles(false);
    handles_[current_].emplace(Table::open(file_.path(), {.engine = engine, .stripes = setup_.stripes}));
    expect(table().engine() == engine.value_or(was),
           "reopened with engine " + std::string(engine_name(table().engine())));
  }

  void fill(unsigned count) {
    for (unsigned i = 0; i < count; ++i) {
      const std::string key = "fill-" + std::to_string(fill_serial_++);
      try {
        expect(table().insert(key, "filler"), "insert(" + key + ") of a new key returned false");
        model_[key] = "filler";
      } catch (const Error& e) {
        judge_refusal(e.code(), "insert(" + key + ")", key, std::string("filler"));
        return;  // full
      }
    }
  }

  // Many records allocated, then freed by this attachment: past a chunk's worth it hands
  // its free lists over to the shared ones (arena.hpp).
  void churn(unsigned count, std::uint8_t value_byte) {
    std::vector<std::string> added;
    for (unsigned i = 0; i < count; ++i) {
      const std::string key = "churn-" + std::to_string(i);
      const std::size_t before = model_.size();
      write(Op::kAssign, key, value_of(value_byte, serial_));
      if (model_.size() == before) break;  // refused: full, or an oversize value
      added.push_back(key);
    }
    for (const std::string& key : added) erase(key);
  }

  void crash(CrashAction action, const std::string& key, const std::string& value, testing::FaultPoint point,
             bool keep_handle) {
    ++crashes_;
    const Engine engine = table().engine();
    close_handles(keep_handle);
    g_fatal_point = point;
    const ChildEnd end = run_child([&] { return crash_child(action, key, value, engine); });
    // From here table() reopens a closed handle with whatever engine the child left active.
    const std::string what = "crash child (action " + std::to_string(static_cast<int>(action)) + ", fault point " +
                             std::to_string(static_cast<int>(point)) + ", key " + key + ")";
    if (end.killed) {
      settle_killed(write_op(action), key, value, what);
    } else {
      judge_child(action, key, value, keep_handle, end.status, what);
    }
  }

  static std::optional<Op> write_op(CrashAction action) {
    switch (action) {
      case CrashAction::kInsert: return Op::kInsert;
      case CrashAction::kAssign: return Op::kAssign;
      case CrashAction::kErase: return Op::kErase;
      default: return std::nullopt;
    }
  }

  // In the child: opens the table, arms the fault hook, runs `action`; the exit status says how it ended.
  int crash_child(CrashAction action, const std::string& key, const std::string& value, Engine engine) {
    const std::string& path = file_.path();
    if (action == CrashAction::kOpenOtherEngine) {
      testing::set_fault_hook(die_at_fatal_point);  // cold start happens inside open
      const Engine other = kAllEngines[static_cast<std::size_t>(engine) % std::size(kAllEngines)];  // the next one
      Table::open(path, {.engine = other, .stripes = setup_.stripes});
      return kChildDone;
    }
    if (action == CrashAction::kCheck) {
      testing::set_fault_hook(die_at_fatal_point);
      return check_table(path).clean ? kChildDone : kChildCheckFailed;
    }
    Table t = Table::open(path, {.engine = engine});
    testing::set_fault_hook(die_at_fatal_point);
    switch (action) {
      case CrashAction::kInsert: return t.insert(key, value) ? kChildTrue : kChildFalse;
      case CrashAction::kAssign: return t.assign(key, value) ? kChildTrue : kChildFalse;
      case CrashAction::kErase: return t.erase(key) ? kChildTrue : kChildFalse;
      default: (void)t.get(key); return kChildDone;
    }
  }

  // A child that was not killed: its operation was acknowledged (or refused).
  void judge_child(CrashAction action, const std::string& key, const std::string& value, bool keep_handle, int status,
                   const std::string& what) {
    const std::optional<Op> op = write_op(action);
    if (status == kChildTrue || status == kChildFalse) {
      expect(op.has_value(), what + " exited " + std::to_string(status));
      acknowledge(*op, key, value, status == kChildTrue, what);
    } else if (status >= kChildErrorBase && status <= kChildErrorBase + static_cast<int>(ErrorCode::kSystem)) {
      const auto code = static_cast<ErrorCode>(status - kChildErrorBase);
      if (action == CrashAction::kOpenOtherEngine && keep_handle) {
        expect(code == ErrorCode::kEngineMismatch,
               what + ": another engine while we are attached: " + std::string(error_code_name(code)));
      } else {
        judge_refusal(code, what, key, op && *op != Op::kErase ? Value(value) : Value());
      }
    } else {
      expect(status == kChildDone && !op, what + " exited " + std::to_string(status));
    }
  }

  // A killed child's operation was never acknowledged. Settle the table first (check
  // takes every lock, so it repairs what the child left, and finishes a lock-free
  // operation it published), then the key tells which outcome happened; from here on
  // everything must match exactly.
  void settle_killed(const std::optional<Op>& op, const std::string& key, const std::string& value,
                     const std::string& what) {
    killed_ = true;
    const Value before = modelled(key);
    check(/*items_known=*/!op);
    if (!op || !key_fits(key)) return;
    const Value now = table().get(key);
    const Value done = after(*op, before, value);
    expect(now == before || now == done, what + " was killed: the key is " + describe(now) + ", neither " +
                                             describe(before) + " nor " + describe(done));
    set_model(key, now);
  }

  Setup setup_;
  ScratchFile file_;
  std::optional<Table> handles_[2];  // two attachments of this process; one is current
  int current_ = 0;
  Model model_;
  std::uint64_t serial_ = 0;
  std::uint64_t fill_serial_ = 0;
  int crashes_ = 0;
  bool killed_ = false;
};

}  // namespace

void run_operations(std::span<const std::uint8_t> program) {
  if (program.empty()) return;
  ByteReader in(program.subspan(1));
  try {
    Session session(Setup::decode(program[0]));
    session.run(in);
  } catch (const Error& e) {
    throw ModelMismatch(std::string("unexpected error ") + std::string(error_code_name(e.code())) + ": " + e.what());
  }
}

}  // namespace shmht::fuzz
