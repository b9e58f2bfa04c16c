#!/usr/bin/python3
"""Summarises a harness/ab_bench.sh directory: per measurement, the median over rounds of
base and new, and new's speed relative to base (base time / new time); then, for
batch_bench, each side's batched speed relative to its own single lookups."""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


BATCH_PREFIX, BATCH_SUFFIX = "C++ batch ", " (per key)"


def batch_name(run_name):
    return BATCH_PREFIX + run_name + BATCH_SUFFIX


def collect(directory):
    ns = defaultdict(lambda: defaultdict(list))  # name -> side -> [ns per op]
    for f in sorted(directory.glob("table_bench-*.json")):
        side = f.stem.split("-")[1]
        for b in json.loads(f.read_text())["benchmarks"]:
            if b.get("aggregate_name") == "median":
                ns[f"C++ {b['run_name']}"][side].append(b["real_time"])
    for f in sorted(directory.glob("batch_bench-*.json")):
        side = f.stem.split("-")[1]
        for b in json.loads(f.read_text())["benchmarks"]:
            if b.get("aggregate_name") == "median":
                ns[batch_name(b["run_name"])][side].append(1e9 / b["items_per_second"])
    for f in sorted(directory.glob("python-*.json")):
        side = f.stem.split("-")[1]
        for r in json.loads(f.read_text())["results"]:
            ns[f"Python {r['engine']} {r['benchmark']}"][side].append(r["table_ns_per_op"])
            ns[f"Python {r['engine']} {r['benchmark']} (dict)"][side].append(r["dict_ns_per_op"])
    for f in sorted(directory.glob("get-many-*.json")):
        side = f.stem.split("-")[2]
        for r in json.loads(f.read_text())["rows"]:
            ns[f"Python {r['engine']} t[k] loop, 1M random"][side].append(r["loop_ns_per_key"])
            ns[f"Python {r['engine']} get_many(256), 1M random"][side].append(r["get_many_ns_per_key"])
    return ns


def main():
    directory = Path(sys.argv[1])
    ns = collect(directory)
    print(f"{'measurement':58} {'base ns':>9} {'new ns':>9} {'new speed':>10}")
    for name in sorted(ns):
        sides = ns[name]
        if "base" not in sides or "new" not in sides:
            continue
        base, new = statistics.median(sides["base"]), statistics.median(sides["new"])
        print(f"{name:58} {base:9.0f} {new:9.0f} {base / new:9.2f}x")
    print_batch_ratios(ns)


# Pairs of batch_bench measurements: (single, batched), per key.
BATCH_PAIRS = (("get_into/{}", "get_many_into/{}/256"), ("contains/{}", "contains_many/{}/256"))


def print_batch_ratios(ns):
    single_get = BATCH_PREFIX + "get_into/"
    engines = sorted(name[len(single_get):-len(BATCH_SUFFIX)] for name in ns if name.startswith(single_get))
    if not engines:
        return
    print(f"\n{'batched per-key speed / single (same side, same run)':58} {'base':>9} {'new':>9}")
    for engine in engines:
        for single, batched in BATCH_PAIRS:
            s, b = ns.get(batch_name(single.format(engine))), ns.get(batch_name(batched.format(engine)))
            if not s or not b:
                continue
            cells = [f"{statistics.median(s[side]) / statistics.median(b[side]):8.2f}x" if side in s and side in b else f"{'-':>9}"
                     for side in ("base", "new")]
            print(f"{batched.format(engine) + ' vs ' + single.format(engine):58} {cells[0]} {cells[1]}")


if __name__ == "__main__":
    main()
