// linearizability.hpp - decides whether the history of one key of a map is linearizable.
//
// A map is a set of independent objects, one per key, and linearizability is
// compositional (Herlihy & Wing): a map history is linearizable exactly when each key's
// sub-history is. So the checker looks at one key at a time, whose object is a register
// that may be empty:
//
//   state   0 = the key is absent, v > 0 = the key holds value v
//   get     -> found and the value (state unchanged)
//   insert  v: only if absent -> true (state v); else false (state unchanged)
//   assign  v: insert or overwrite -> true iff the key was absent (state v)
//   erase   -> true iff the key was present (state 0)
//   take    -> found and the value it erased (state 0)
//   compare_and_set e -> v: if state == e (0: absent), true and state v (0: erased);
//           otherwise false, state unchanged, and the value it reports is the state
//
// Values are small integers; every write writes a value no other write writes, so a
// read names the write it saw.
//
// The search is Wing & Gong's, with Lowe's memoization (G. Lowe, "Testing for
// linearizability", 2017; also what Porcupine does). The history becomes one
// doubly linked list of 2n events in time order: each op's call and its return (at
// equal times, calls first, so ops whose times touch count as overlapping). A
// linearization is built from the front. The ops that may come next are those whose call
// event lies before the first return event still in the list: none of the ops not yet
// linearized returned before they were called. The search tries them in list order: if
// the op's recorded result is what the sequential map returns in the current state, the
// op is linearized (its two events are unlinked, the choice and the state before it are
// pushed on a stack) and the scan restarts at the head. Reaching a return event means
// the op it belongs to had to come before everything after it and no choice managed
// that: the last choice is undone (events relinked, state restored) and the next
// candidate after it is tried. The list emptying means linearizable; the stack emptying
// with nothing left to try means not.
//
// Memoization: the future of the search depends only on which ops are linearized and
// on the state, so each (bitset of linearized ops, state) is explored at most once.
// This makes the search polynomial for a bounded number of processes (each has at most
// one pending op; for P processes the linearized sets are "cuts" of the history), and a
// step budget bounds it anyway: a search that runs out gives up rather than run forever.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

namespace shmht::test::lin {

enum class OpKind : std::uint8_t { kGet, kInsert, kAssign, kErase, kTake, kCompareAndSet };
inline constexpr int kOpKinds = 6;

inline const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kGet: return "get";
    case OpKind::kInsert: return "insert";
    case OpKind::kAssign: return "assign";
    case OpKind::kErase: return "erase";
    case OpKind::kTake: return "take";
    case OpKind::kCompareAndSet: return "compare_and_set";
  }
  return "?";
}

// One completed operation on one key.
struct Op {
  int process = 0;
  OpKind kind = OpKind::kGet;
  std::uint32_t value = 0;  // insert/assign: the value written; get/take: the value read (0: not found);
                            // compare_and_set: the value desired (0: erase)
  bool result = false;      // insert/assign/erase/compare_and_set: the bool returned; get/take: found
  std::int64_t call = 0;    // invocation and response times, one clock for all ops
  std::int64_t ret = 0;
  std::uint32_t expected = 0;  // compare_and_set: the value compared with (0: absent)
  std::uint32_t seen = 0;      // compare_and_set that returned false: the value it reported (0: absent)
};

// The sequential specification. Returns whether `op`, applied to `state`, returns what
// was recorded; `next` receives the state after it.
inline bool apply(std::uint32_t state, const Op& op, std::uint32_t& next) {
  switch (op.kind) {
    case OpKind::kGet:
      next = state;
      return op.result == (state != 0) && op.value == state;
    case OpKind::kInsert:
      next = state == 0 ? op.value : state;
      return op.result == (state == 0);
    case OpKind::kAssign:
      next = op.value;
      return op.result == (state == 0);
    case OpKind::kErase:
      next = 0;
      return op.result == (state != 0);
    case OpKind::kTake:
      next = 0;
      return op.result == (state != 0) && op.value == state;
    case OpKind::kCompareAndSet:
      if (state == op.expected) {
        next = op.value;
        return op.result;
      }
      next = state;
      return !op.result && op.seen == state;
  }
  return false;
}

struct Verdict {
  enum Kind { kLinearizable, kNotLinearizable, kGaveUp };
  Kind kind = kGaveUp;
  std::uint64_t steps = 0;        // list events visited
  std::size_t explored = 0;       // (linearized set, state) pairs memoized
  // Where the search got furthest: `deepest` ops linearized, state `stuck_state`, and
  // the op whose return it could not get past (index into the history; n if none).
  std::size_t deepest = 0;
  std::size_t stuck_op = 0;
  std::uint32_t stuck_state = 0;
};

class Checker {
 public:
  explicit Checker(std::vector<Op> ops) : ops_(std::move(ops)) {}

  const std::vector<Op>& ops() const { return ops_; }

  Verdict check(std::uint64_t step_budget) {
    const std::size_t n = ops_.size();
    Verdict verdict;
    verdict.stuck_op = n;
    if (n == 0) return verdict.kind = Verdict::kLinearizable, verdict;

    // Events 0..2n-1 in time order, then the head and tail sentinels.
    struct Event {
      std::int64_t time;
      bool is_return;
      std::size_t op;
    };
    std::vector<Event> events;
    events.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
      events.push_back({ops_[i].call, false, i});
      events.push_back({ops_[i].ret, true, i});
    }
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      return a.time != b.time ? a.time < b.time : (!a.is_return && b.is_return);
    });
    const std::size_t head = 2 * n, tail = 2 * n + 1;
    std::vector<std::size_t> prev(2 * n + 2), next(2 * n + 2), match(2 * n), call_of(n);
    for (std::size_t e = 0; e < 2 * n; ++e) {
      prev[e] = e == 0 ? head : e - 1;
      next[e] = e + 1 == 2 * n ? tail : e + 1;
      if (!events[e].is_return) call_of[events[e].op] = e;
    }
    for (std::size_t e = 0; e < 2 * n; ++e) {
      if (events[e].is_return) match[call_of[events[e].op]] = e;
    }
    next[head] = 0;
    prev[tail] = 2 * n - 1;
    auto unlink = [&](std::size_t e) {
      next[prev[e]] = next[e];
      prev[next[e]] = prev[e];
    };
    auto relink = [&](std::size_t e) {
      next[prev[e]] = e;
      prev[next[e]] = e;
    };

    struct Memo {
      std::vector<std::uint64_t> linearized;
      std::uint32_t state;
      bool operator==(const Memo&) const = default;
    };
    struct MemoHash {
      std::size_t operator()(const Memo& m) const {
        std::uint64_t h = m.state * 0x9E3779B97F4A7C15ull;
        for (std::uint64_t w : m.linearized) h = (h ^ w) * 0x100000001B3ull + (h >> 29);
        return static_cast<std::size_t>(h);
      }
    };
    std::unordered_set<Memo, MemoHash> explored;
    Memo current{std::vector<std::uint64_t>((n + 63) / 64), 0};
    auto flip = [&](std::size_t op) { current.linearized[op / 64] ^= std::uint64_t{1} << (op % 64); };

    struct Choice {
      std::size_t call_event;
      std::uint32_t state_before;
    };
    std::vector<Choice> stack;
    std::size_t e = next[head];
    while (next[head] != tail) {
      if (++verdict.steps > step_budget) {
        verdict.kind = Verdict::kGaveUp;
        verdict.explored = explored.size();
        return verdict;
      }
      if (!events[e].is_return) {
        const std::size_t op = events[e].op;
        std::uint32_t after = 0;
        if (apply(current.state, ops_[op], after)) {
          const std::uint32_t before = current.state;
          flip(op);
          current.state = after;
          if (explored.insert(current).second) {
            stack.push_back({e, before});
            unlink(e);
            unlink(match[e]);
            e = next[head];
            continue;
          }
          flip(op);
          current.state = before;
        }
        e = next[e];
      } else {
        if (stack.size() > verdict.deepest || verdict.stuck_op == n) {
          verdict.deepest = stack.size();
          verdict.stuck_op = events[e].op;
          verdict.stuck_state = current.state;
        }
        if (stack.empty()) {
          verdict.kind = Verdict::kNotLinearizable;
          verdict.explored = explored.size();
          return verdict;
        }
        const Choice choice = stack.back();
        stack.pop_back();
        relink(match[choice.call_event]);
        relink(choice.call_event);
        flip(events[choice.call_event].op);
        current.state = choice.state_before;
        e = next[choice.call_event];
      }
    }
    verdict.kind = Verdict::kLinearizable;
    verdict.deepest = n;
    verdict.explored = explored.size();
    return verdict;
  }

 private:
  std::vector<Op> ops_;
};

// A few lines on where a search got stuck: the ops around the one it could not
// linearize, in call order, times in microseconds from `t0`; `name` renders a value.
inline std::string describe_stuck(const std::vector<Op>& ops, const Verdict& v, std::int64_t t0,
                                  const std::function<std::string(std::uint32_t)>& name, int before = 10,
                                  int after = 4) {
  std::ostringstream out;
  auto value = [&](std::uint32_t x) { return x == 0 ? std::string("absent") : name(x); };
  out << "longest linearizable prefix: " << v.deepest << " of " << ops.size() << " ops, then the key was "
      << value(v.stuck_state) << "; no order gets past the op marked >>\n";
  if (v.stuck_op >= ops.size()) return out.str();
  std::vector<std::size_t> order(ops.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ops[a].call < ops[b].call; });
  const auto at = static_cast<long>(std::find(order.begin(), order.end(), v.stuck_op) - order.begin());
  const long first = std::max(0L, at - before), last = std::min(static_cast<long>(order.size()) - 1, at + after);
  for (long i = first; i <= last; ++i) {
    const Op& op = ops[order[static_cast<std::size_t>(i)]];
    char times[64];
    std::snprintf(times, sizeof times, "[%10.3f, %10.3f] us", static_cast<double>(op.call - t0) / 1e3,
                  static_cast<double>(op.ret - t0) / 1e3);
    out << (i == at ? ">> " : "   ") << times << "  p" << op.process << " " << op_kind_name(op.kind);
    switch (op.kind) {
      case OpKind::kGet: out << "() -> " << (op.result ? value(op.value) : std::string("not found")); break;
      case OpKind::kInsert:
      case OpKind::kAssign: out << "(" << value(op.value) << ") -> " << (op.result ? "true" : "false"); break;
      case OpKind::kErase: out << "() -> " << (op.result ? "true" : "false"); break;
      case OpKind::kTake: out << "() -> " << (op.result ? value(op.value) : std::string("not found")); break;
      case OpKind::kCompareAndSet:
        out << "(" << value(op.expected) << " -> " << value(op.value) << ") -> "
            << (op.result ? std::string("true") : "false, saw " + value(op.seen));
        break;
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace shmht::test::lin
