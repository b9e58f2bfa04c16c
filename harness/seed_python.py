#!/usr/bin/python3
"""The seed scenario in Python on a native dict, one process: the README's reference run.

    harness/seed_python.py --keys 333333 [--processes 1] [--workload-name seed] ...

This is the "python-dict" baseline of the seed sweep, and the ablation's "Python call
overhead" step: the same work as `shmht-driver --store std-unordered-map --scenario seed`
(set int(W/N) items str(i)+letter -> letter*7, then two full iteration passes: a count
and a collect, then an exact check), done by the Python interpreter. The gap between the
two is what a Python caller pays per operation before any shared memory is involved.
(Python bindings for shmht itself are issue 5; once harness/python_bench.py exists it
measures the binding calls.)

Prints ONE JSON object in the driver's schema (shmht-harness-run/1) on stdout, with the
fields this script can fill and the same names; run.py records it like a driver result.
Driver flags that do not apply here (--backing, --placement, ...) are accepted and ignored.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time

LETTERS = "abcdefghijklnmo"  # as in pyshmht's multiprocess-test.py
SCHEMA = "shmht-harness-run/1"


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "?")
    except OSError:
        pass
    return {"hostname": platform.node(), "kernel": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(), "cpu_model": model, "logical_cpus": os.cpu_count(),
            "python": platform.python_version()}


def usage_now() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_SELF)


def charge(figures: dict, before: resource.struct_rusage) -> None:
    now = usage_now()
    figures["user_s"] += now.ru_utime - before.ru_utime
    figures["sys_s"] += now.ru_stime - before.ru_stime
    figures["minor"] += now.ru_minflt - before.ru_minflt
    figures["major"] += now.ru_majflt - before.ru_majflt
    figures["voluntary"] += now.ru_nvcsw - before.ru_nvcsw
    figures["involuntary"] += now.ru_nivcsw - before.ru_nivcsw


def verify(entries: list[tuple[str, str]], processes: int, per_worker: int) -> dict:
    """Same rules as seed_scenario::verify in the driver."""
    seen: dict[str, int] = {}
    unexpected = values_wrong = 0
    expected_keys = {f"{i}{LETTERS[w]}": LETTERS[w] * 7 for w in range(processes) for i in range(per_worker)}
    for key, value in entries:
        if key not in expected_keys:
            unexpected += 1
            continue
        seen[key] = seen.get(key, 0) + 1
        if value != expected_keys[key]:
            values_wrong += 1
    return {"keys_expected": len(expected_keys), "keys_missing": len(expected_keys) - len(seen),
            "keys_duplicated": sum(c - 1 for c in seen.values()), "keys_unexpected": unexpected,
            "values_wrong": values_wrong}


def run(keys: int, processes: int) -> dict:
    per_worker = keys // processes
    figures = dict(user_s=0.0, sys_s=0.0, minor=0, major=0, voluntary=0, involuntary=0)
    d: dict[str, str] = {}
    start = time.monotonic()
    before = usage_now()
    for w in range(processes):  # one process does every letter's share, in turn
        mark = LETTERS[w] * 7
        letter = LETTERS[w]
        for i in range(per_worker):
            d[str(i) + letter] = mark
    charge(figures, before)
    set_end = time.monotonic()
    before = usage_now()
    counted = 0
    for _ in d.items():  # len(d) as the test computes it: a pass that counts
        counted += 1
    entries = list(d.items())  # d.keys(), with values for the check
    charge(figures, before)
    end = time.monotonic()
    return {"start": start, "set_end": set_end, "end": end, "figures": figures, "counted": counted,
            "entries": entries, "per_worker": per_worker}


def result(args: argparse.Namespace) -> dict:
    config = {"store": "python-dict", "store_family": "baseline", "processes": args.processes, "backing": "none",
              "placement": "none", "memory_policy": "none", "batch": 1, "timeout_s": None,
              "workload": {"name": args.workload_name, "keys": args.keys, "key_bytes": args.key_bytes,
                           "value_bytes": args.value_bytes, "mix": {}, "distribution": None, "zipf_theta": None,
                           "prefill": 0.0, "ops": None, "duration_s": None, "seed": args.seed,
                           "scenario": args.scenario}}
    out = {"schema": SCHEMA, "status": "ok", "error": None,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "config": config, "machine": machine(), "topology": None, "backing": None,
           "placement": {"policy": "none", "memory_policy": "none", "workers": []}, "workers": [],
           "aggregate": None, "footprint": {"location": "python heap", "apparent_bytes": None,
                                            "resident_bytes": None, "items": None,
                                            "resident_bytes_per_item": None},
           "memory": None, "seed": None, "timing": None}
    if args.scenario != "seed":
        out.update(status="skipped", error="python-dict runs the seed scenario only")
        return out
    if args.processes > len(LETTERS):
        out.update(status="failed", error=f"at most {len(LETTERS)} processes (letters)")
        return out
    r = run(args.keys, args.processes)
    f = r["figures"]
    ops = r["per_worker"] * args.processes
    elapsed = r["end"] - r["start"]
    cpu = f["user_s"] + f["sys_s"]
    aggregate = {"ops": ops, "ops_by_type": {"get": 0, "insert": 0, "assign": ops, "erase": 0},
                 "misses_by_type": {"get": 0, "insert": 0, "assign": 0, "erase": 0}, "errors": 0,
                 "elapsed_s": elapsed, "throughput_ops_s": ops / elapsed if elapsed > 0 else 0.0,
                 "latency_ns": {"p50": None, "p99": None, "p999": None, "samples": 0},
                 "cpu": {"user_s": f["user_s"], "sys_s": f["sys_s"], "sys_share": f["sys_s"] / cpu if cpu else 0.0,
                         "cpu_s_per_mop": cpu / ops * 1e6 if ops else 0.0},
                 "faults": {"minor": f["minor"], "major": f["major"], "per_op": (f["minor"] + f["major"]) / ops},
                 "context_switches": {"voluntary": f["voluntary"], "involuntary": f["involuntary"],
                                      "per_op": (f["voluntary"] + f["involuntary"]) / ops}}
    peak_kb = usage_now().ru_maxrss
    worker = {"worker": 0, "pid": os.getpid(), "status": "done", "first_error": None, "attach_s": 0.0,
              "peak_rss_kb": peak_kb, **aggregate}
    out.update(workers=[worker], aggregate=aggregate,
               memory={"peak_rss_kb_max": peak_kb, "peak_rss_kb_sum": peak_kb},
               seed={"items": args.keys, "items_per_process": r["per_worker"],
                     "set_phase_s": r["set_end"] - r["start"], "iterate_phase_s": r["end"] - r["set_end"],
                     "scenario_wall_s": elapsed, "verified": True, "pass1_entries": r["counted"],
                     "pass2_entries": len(r["entries"]), **verify(r["entries"], args.processes, r["per_worker"])},
               timing={"create_s": 0.0, "attach_s_max": 0.0, "prefill_s": 0.0, "wall_s": elapsed})
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=333333)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--key-bytes", type=int, default=8)
    p.add_argument("--value-bytes", type=int, default=8)
    p.add_argument("--workload-name", default="seed")
    p.add_argument("--scenario", default="seed")
    p.add_argument("--seed", type=int, default=1)
    args, _ignored = p.parse_known_args(argv)  # the driver's other flags do not apply
    return args


if __name__ == "__main__":
    print(json.dumps(result(parse(sys.argv[1:])), separators=(",", ":")))
