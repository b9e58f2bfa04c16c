"""Decides whether the history of one key of a dict is linearizable: the Python twin of
tests/linearizability.hpp (read its essay). Wing & Gong's search with Lowe's memoization
over a doubly linked list of call and return events; each (set of linearized ops, state)
is explored at most once.

An op is a History.Op: its kind ("get", "set", "insert", "pop"), the value it wrote
(set, insert), what it returned, and its call and return times (one clock for every
process: time.monotonic_ns()). The key's state is its value, or None when absent.
"""

from dataclasses import dataclass


@dataclass
class Op:
    process: int
    kind: str
    value: object  # set/insert: the value written
    result: object  # get/pop: the value returned (None: absent); insert: bool; set: None
    call: int
    ret: int


def apply(state, op):
    """The sequential specification: (whether op, applied to state, returns what was
    recorded; the state after it)."""
    if op.kind == "get":
        return op.result == state, state
    if op.kind == "set":
        return True, op.value
    if op.kind == "insert":
        return op.result == (state is None), op.value if state is None else state
    if op.kind == "pop":
        return op.result == state, None
    raise ValueError(f"unknown op kind {op.kind!r}")


class GaveUp(Exception):
    """The search ran out of its step budget."""


def is_linearizable(ops, step_budget=20_000_000):
    """True if some order of `ops` that respects real time (an op that returned before
    another was called comes first) explains every recorded result."""
    n = len(ops)
    if n == 0:
        return True
    # Events in time order; at equal times calls first, so ops whose times touch overlap.
    events = sorted([(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)])
    head, tail = 2 * n, 2 * n + 1
    prev = [e - 1 for e in range(2 * n)] + [None, 2 * n - 1]
    nxt = [e + 1 for e in range(2 * n)] + [0, None]
    prev[0], nxt[2 * n - 1] = head, tail
    call_event = {}
    match = [None] * (2 * n)
    for e, (_, is_return, i) in enumerate(events):
        if is_return:
            match[call_event[i]] = e
        else:
            call_event[i] = e

    def unlink(e):
        nxt[prev[e]] = nxt[e]
        prev[nxt[e]] = prev[e]

    def relink(e):
        nxt[prev[e]] = e
        prev[nxt[e]] = e

    linearized, state = 0, None
    explored = set()
    stack = []  # (call event, state before, linearized before)
    e = nxt[head]
    steps = 0
    while nxt[head] != tail:
        steps += 1
        if steps > step_budget:
            raise GaveUp(f"no verdict after {steps} steps")
        _, is_return, i = events[e]
        if not is_return:
            ok, after = apply(state, ops[i])
            if ok and (linearized | (1 << i), after) not in explored:
                explored.add((linearized | (1 << i), after))
                stack.append((e, state, linearized))
                linearized, state = linearized | (1 << i), after
                unlink(e)
                unlink(match[e])
                e = nxt[head]
                continue
            e = nxt[e]
        else:
            # The op returning here could not be placed before what follows: undo the
            # last choice and try the next candidate after it.
            if not stack:
                return False
            e_call, state, linearized = stack.pop()
            relink(match[e_call])
            relink(e_call)
            e = nxt[e_call]
    return True
