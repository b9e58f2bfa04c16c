#!/usr/bin/python3
"""Python bindings benchmark (issue 5): shmht.Table against a native dict, same machine,
same run, same loops.

  PYTHONPATH=build/python harness/python_bench.py [--reps 5] [--engines seqlock ...] [--json PATH]

Two benchmarks, each for every engine this build has (or --engines):

1. single process: N items (default 300,000) with 64-byte keys and 64-byte values;
   `m[k] = v` into an empty mapping (a new table, capacity N), then `m[k]` in insertion
   order ("get") and in a random order ("get_random"), `k in m` in both orders, and
   `m[k] = v` again over the existing keys ("overwrite") and a pass over `m.items()`
   ("items", per item), timed with the *same* Python
   functions for the dict and the table. Reported as throughput ratios (dict time /
   table time; issue 13's targets: get_random >= 0.7, get >= 0.5, set >= 0.5). A table
   lookup builds a new bytes object for the value where a dict returns the one it
   stores: `k in m` does everything `m[k]` does but copy the value out and build that
   object, so get minus contains (per key) is that share.
2. the seed scenario (pyshmht's multiprocess-test): P processes (default 2) each insert
   their own 333,333 items (keys str(i) + letter, values letter * 7) into one table,
   then the parent makes two full passes over items(). The dict does the same work
   (P x 333,333 inserts, two passes) in one process. Wall time includes creating the
   table and forking the writers. Reported as table time / dict time (target <= 1.5),
   with missing keys and the file's apparent size.

Each number is the median of --reps repetitions; dict and table runs alternate so
that background load hits both alike. This machine is shared: note the load average
printed with the results. Not a test: nothing here asserts.
"""

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time

import shmht

SCHEMA = "shmht-python-bench/1"  # like the harness's shmht-harness-run/1, its own shape


# -- the loops (shared by dict and table, so both pay the same interpreter cost) --------

def set_loop(m, keys, values):
    for k, v in zip(keys, values):
        m[k] = v


def get_loop(m, keys):
    for k in keys:
        m[k]


def contains_loop(m, keys):
    for k in keys:
        k in m  # noqa: B015  (the lookup is the work)


def items_loop(m):
    for _k, _v in m.items():
        pass


def seed_insert(m, letter, items):
    value = letter * 7
    for i in range(items):
        m[str(i) + letter] = value


def seed_pass(m):
    n = 0
    for _k, _v in m.items():
        n += 1
    return n


def seed_worker(table, letter, items):
    seed_insert(table, letter, items)
    table.close()


# -- helpers ---------------------------------------------------------------------------

def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def table_name(label):
    return f"shmht-bench-{os.getpid()}-{label}"


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
    }


# -- benchmark 1 -------------------------------------------------------------------------

def single_process(engine, items, reps):
    keys = [b"%064d" % i for i in range(items)]
    values = [b"v%063d" % i for i in range(items)]
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    ops = ("set", "get", "get_random", "contains", "contains_random", "overwrite", "items")
    samples = {(kind, op): [] for kind in ("dict", "table") for op in ops}
    name = table_name(f"single-{engine}")
    for _ in range(reps):
        d = {}
        samples["dict", "set"].append(timed(set_loop, d, keys, values)[0])
        samples["dict", "get"].append(timed(get_loop, d, keys)[0])
        samples["dict", "get_random"].append(timed(get_loop, d, shuffled)[0])
        samples["dict", "contains"].append(timed(contains_loop, d, keys)[0])
        samples["dict", "contains_random"].append(timed(contains_loop, d, shuffled)[0])
        samples["dict", "overwrite"].append(timed(set_loop, d, keys, values)[0])
        samples["dict", "items"].append(timed(items_loop, d)[0])
        del d
        shmht.unlink(name)
        with shmht.Table(name, capacity=items, engine=engine, max_key_bytes=64, max_value_bytes=64) as t:
            try:
                samples["table", "set"].append(timed(set_loop, t, keys, values)[0])
                samples["table", "get"].append(timed(get_loop, t, keys)[0])
                samples["table", "get_random"].append(timed(get_loop, t, shuffled)[0])
                samples["table", "contains"].append(timed(contains_loop, t, keys)[0])
                samples["table", "contains_random"].append(timed(contains_loop, t, shuffled)[0])
                samples["table", "overwrite"].append(timed(set_loop, t, keys, values)[0])
                samples["table", "items"].append(timed(items_loop, t)[0])
                assert len(t) == items
            finally:
                t.unlink()
    rows = []
    # "set" inserts into an empty mapping (the target); "overwrite" sets the same
    # keys again once they exist (no allocation growth, no first-touch page faults).
    for op, target in (("set", 0.5), ("get", 0.5), ("get_random", 0.7), ("contains", None), ("contains_random", None),
                       ("overwrite", None), ("items", None)):
        dict_s = statistics.median(samples["dict", op])
        table_s = statistics.median(samples["table", op])
        rows.append({
            "benchmark": f"single_{op}",
            "engine": engine,
            "items": items,
            "key_bytes": 64,
            "value_bytes": 64,
            "reps": reps,
            "dict_seconds": dict_s,
            "table_seconds": table_s,
            "dict_ns_per_op": dict_s / items * 1e9,
            "table_ns_per_op": table_s / items * 1e9,
            "throughput_ratio": dict_s / table_s,  # table ops/s divided by dict ops/s
            "target_min_ratio": target,
            "dict_samples": samples["dict", op],
            "table_samples": samples["table", op],
        })
    return rows


# -- benchmark 2 -------------------------------------------------------------------------

LETTERS = "abcdefghijklmnop"


def seed_dict(processes, items):
    d = {}
    for p in range(processes):
        seed_insert(d, LETTERS[p], items)
    passes = [seed_pass(d), seed_pass(d)]
    return passes, set(d)


def seed_table(name, engine, processes, items):
    """The timed part: create, fork writers, join, two passes."""
    ctx = multiprocessing.get_context("fork")
    t = shmht.Table(name, capacity=processes * items, engine=engine, max_key_bytes=64, max_value_bytes=64)
    procs = [ctx.Process(target=seed_worker, args=(t, LETTERS[p], items)) for p in range(processes)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"writer exit codes {[p.exitcode for p in procs]}")
        passes = [seed_pass(t), seed_pass(t)]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    return t, passes


def seed_scenario(engine, processes, items, reps):
    expected_total = processes * items
    dict_samples, table_samples, missing, duplicated, file_bytes = [], [], [], [], []
    name = table_name(f"seed-{engine}")
    expected_keys = None
    for _ in range(reps):
        dict_s, (dict_passes, dict_keys) = timed(seed_dict, processes, items)
        assert dict_passes == [expected_total] * 2
        expected_keys = expected_keys or {k.encode() for k in dict_keys}
        dict_samples.append(dict_s)
        del dict_keys
        shmht.unlink(name)
        table_s, (t, passes) = timed(seed_table, name, engine, processes, items)
        try:
            table_samples.append(table_s)
            seen = list(t)  # untimed check
            missing.append(len(expected_keys - set(seen)))
            duplicated.append(len(seen) - len(set(seen)) + sum(abs(p - expected_total) for p in passes))
            file_bytes.append(t.stats()["apparent_bytes"])
        finally:
            t.unlink()
            t.close()
    dict_s = statistics.median(dict_samples)
    table_s = statistics.median(table_samples)
    return [{
        "benchmark": "seed_scenario",
        "engine": engine,
        "processes": processes,
        "items_per_process": items,
        "items_total": expected_total,
        "reps": reps,
        "dict_seconds": dict_s,
        "table_seconds": table_s,
        "time_ratio": table_s / dict_s,  # table wall time / dict wall time
        "target_max_time_ratio": 1.5,
        "missing_keys_max": max(missing),
        "duplicate_or_miscounted_max": max(duplicated),
        "file_bytes": max(file_bytes),
        "file_bytes_per_item": max(file_bytes) / expected_total,
        "dict_samples": dict_samples,
        "table_samples": table_samples,
    }]


# -- report ------------------------------------------------------------------------------

def value_share(rows):
    """Per engine and key order: what building the value costs a lookup (get - contains)."""
    by = {(r["engine"], r["benchmark"]): r for r in rows}
    shares = []
    for engine in dict.fromkeys(r["engine"] for r in rows):
        for order in ("", "_random"):
            get, contains = by.get((engine, "single_get" + order)), by.get((engine, "single_contains" + order))
            if get and contains:
                value_ns = get["table_ns_per_op"] - contains["table_ns_per_op"]
                shares.append({"engine": engine, "order": "random" if order else "insertion",
                               "table_get_ns": get["table_ns_per_op"], "value_ns": value_ns,
                               "value_share": value_ns / get["table_ns_per_op"],
                               "dict_get_minus_contains_ns": get["dict_ns_per_op"] - contains["dict_ns_per_op"]})
    return shares


def print_table(rows):
    print(f"{'engine':8} {'benchmark':22} {'dict':>12} {'shmht':>12} {'result':>22}  target")
    for r in rows:
        if r["benchmark"] == "seed_scenario":
            print(f"{r['engine']:8} {'seed ' + str(r['processes']) + 'x' + format(r['items_per_process'], ','):16} "
                  f"{r['dict_seconds']:>10.3f} s {r['table_seconds']:>10.3f} s "
                  f"{'time ' + format(r['time_ratio'], '.2f') + 'x dict':>22}  <= 1.5x")
            print(f"{'':8} {'':16} missing keys {r['missing_keys_max']}, duplicates {r['duplicate_or_miscounted_max']}, "
                  f"file {r['file_bytes'] / 2**20:.1f} MiB ({r['file_bytes_per_item']:.1f} B/item)")
        else:
            target = f">= {r['target_min_ratio']}x" if r["target_min_ratio"] else "-"
            print(f"{r['engine']:8} {r['benchmark']:22} {r['dict_ns_per_op']:>9.0f} ns {r['table_ns_per_op']:>9.0f} ns "
                  f"{'speed ' + format(r['throughput_ratio'], '.2f') + 'x dict':>22}  {target}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300_000, help="items of the single-process benchmark")
    parser.add_argument("--seed-items", type=int, default=333_333, help="items per process in the seed scenario")
    parser.add_argument("--seed-processes", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5, help="repetitions; medians are reported")
    parser.add_argument("--engines", nargs="*", default=None, help="default: every built engine")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed scenario (benchmark 2)")
    parser.add_argument("--json", default=None,
                        help="result file (default: experiments/results/python/<UTC time>.json)")
    args = parser.parse_args()
    engines = args.engines or shmht.built_engines()
    if args.json is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        args.json = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments", "results", "python",
                                 stamp + ".json")

    info = machine_info()
    rows = []
    for engine in engines:
        rows += single_process(engine, args.items, args.reps)
        if not args.no_seed:
            rows += seed_scenario(engine, args.seed_processes, args.seed_items, args.reps)
    info["load_average_end"] = os.getloadavg()

    print(f"{info['cpu_model']} ({info['cpus']} cpus), Python {info['python']}, "
          f"load average {info['load_average_start'][0]:.2f} -> {info['load_average_end'][0]:.2f}; "
          f"median of {args.reps}")
    print_table(rows)
    shares = value_share(rows)
    for v in shares:
        print(f"{v['engine']:8} t[k] in {v['order']} order: copying the value out and building its bytes "
              f"{v['value_ns']:.0f} of {v['table_get_ns']:.0f} ns ({v['value_share']:.0%}); "
              f"a dict's m[k] - (k in m): {v['dict_get_minus_contains_ns']:.0f} ns")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"schema": SCHEMA, "command": " ".join(sys.argv), "machine": info,
                   "built_engines": shmht.built_engines(), "results": rows,
                   "value_share": shares}, f, indent=1)
    print(f"wrote {os.path.abspath(args.json)}")


if __name__ == "__main__":
    main()
