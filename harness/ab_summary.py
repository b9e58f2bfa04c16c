#!/usr/bin/python3
"""Summarises a harness/ab_bench.sh directory: per measurement, the median over rounds of
base and new, and new's speed relative to base (base time / new time)."""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def collect(directory):
    ns = defaultdict(lambda: defaultdict(list))  # name -> side -> [ns per op]
    for f in sorted(directory.glob("table_bench-*.json")):
        side = f.stem.split("-")[1]
        for b in json.loads(f.read_text())["benchmarks"]:
            if b.get("aggregate_name") == "median":
                ns[f"C++ {b['run_name']}"][side].append(b["real_time"])
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


if __name__ == "__main__":
    main()
