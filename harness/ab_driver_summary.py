#!/usr/bin/env python3
"""Summarises a harness/ab_driver.sh run: median throughput per engine and cell, both sides.

Usage: ab_driver_summary.py RESULT_DIR   (files ENGINE-CELL-SIDE-ROUND.json)
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main() -> int:
    directory = Path(sys.argv[1])
    runs = defaultdict(list)  # (engine, cell, side) -> throughputs
    failed = []
    for path in sorted(directory.glob("*-*-*-*.json")):
        engine, cell, side, _round = path.stem.split("-")
        try:
            result = json.loads(path.read_text())
        except ValueError:
            failed.append(path.name)
            continue
        if result.get("status") != "ok":
            failed.append(path.name)
            continue
        runs[(engine, cell, side)].append(result["aggregate"]["throughput_ops_s"])
    print(f"{'engine':<10} {'cell':<6} {'base Mops/s':>12} {'new Mops/s':>11} {'new/base':>9}  runs")
    for engine, cell in sorted({(e, c) for e, c, _ in runs}):
        base, new = runs[(engine, cell, "base")], runs[(engine, cell, "new")]
        if not base or not new:
            continue
        b, n = statistics.median(base), statistics.median(new)
        print(f"{engine:<10} {cell:<6} {b / 1e6:12.3f} {n / 1e6:11.3f} {n / b:9.3f}  {len(base)}+{len(new)}")
    if failed:
        print("failed runs:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
