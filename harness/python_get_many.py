#!/usr/bin/python3
"""Python lookups one at a time against get_many (issue 13's target: get_many over batches
of 256 keys at least 3x cheaper per key than a `t[k]` loop), 1M random 16-byte keys with
32-byte values, for the default engine and global, measured side by side in one run.

    PYTHONPATH=build/python /usr/bin/python3 harness/python_get_many.py [--keys N] [--reps R]

Prints ns per key (median of R) and writes a JSON file under experiments/results/python/.
"""
import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import shmht

BATCH = 256


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=None, help="result file (default: experiments/results/python/get-many-<UTC time>.json)")
    args = parser.parse_args()
    rng = random.Random(1)
    keys = [rng.randbytes(16) for _ in range(args.keys)]
    order = keys[:]
    rng.shuffle(order)
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    value = b"v" * 32
    rows = []
    for engine in (shmht.default_engine(), "global"):
        name = f"shmht-get-many-bench-{os.getpid()}-{engine}"
        with shmht.Table(name, engine=engine, capacity=args.keys, max_key_bytes=64, max_value_bytes=64) as t:
            try:
                t.update((k, value) for k in keys)

                def loop():
                    for k in order:
                        t[k]

                def many():
                    for b in batches:
                        t.get_many(b)

                samples = {"loop": [], "get_many": []}
                for _ in range(args.reps):  # alternate, so both see the same machine
                    samples["loop"].append(timed(loop))
                    samples["get_many"].append(timed(many))
            finally:
                t.unlink()
        per_key = {k: statistics.median(v) / args.keys * 1e9 for k, v in samples.items()}
        row = {"engine": engine, "keys": args.keys, "batch": BATCH, "reps": args.reps,
               "loop_ns_per_key": per_key["loop"], "get_many_ns_per_key": per_key["get_many"],
               "ratio": per_key["loop"] / per_key["get_many"]}
        rows.append(row)
        print(f"{engine:8s} t[k] loop {per_key['loop']:7.1f} ns/key   get_many({BATCH}) "
              f"{per_key['get_many']:7.1f} ns/key   {row['ratio']:.2f}x", flush=True)
    out = Path(__file__).resolve().parents[1] / "experiments/results/python"
    path = Path(args.json) if args.json else out / f"get-many-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
