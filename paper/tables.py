#!/usr/bin/python3
"""Prints the paper's tables (Markdown) from results files, so every number in
paper/README.md can be checked against the file it cites.

    paper/tables.py seed experiments/results/seed/<timestamp>.jsonl
    paper/tables.py compare experiments/results/compare/<timestamp>.jsonl

Medians over the repetitions of a cell, from unloaded runs when the cell has any (as the
plots do); n = runs used, L = runs of the cell marked loaded by the noise guard.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

MIB = 1024 * 1024


def load(path: Path) -> list[dict]:
    return [json.loads(t) for t in path.read_text().splitlines() if t.strip()]


def grouped(lines: list[dict]) -> dict[str, tuple[list[dict], int]]:
    by_cell: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_cell[line["cell"]["id"]].append(line)
    out = {}
    for cell, runs in by_cell.items():
        ok = [r for r in runs if r["status"] == "ok"]
        quiet = [r for r in ok if not r["noise"]["loaded"]]
        out[cell] = (quiet or ok, sum(1 for r in runs if r["noise"]["loaded"]))
    return out


def med(runs: list[dict], pick) -> float | None:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def seed_table(lines: list[dict]) -> None:
    print("| cell | n | L | wall s | set s | iterate s | user s | sys s | minor faults/op | ctx sw/op | "
          "missing | dup | torn | counter short | apparent MiB | resident MiB | peak RSS MiB (max) | attach s |")
    print("|" + "---|" * 18)
    for cell, (runs, loaded) in grouped(lines).items():
        if not runs:
            status = next(l for l in lines if l["cell"]["id"] == cell)
            print(f"| {cell} | 0 | {loaded} | {status['status']}: {status.get('error')} |")
            continue
        a = lambda r: r["aggregate"]  # noqa: E731
        s = lambda r: r["seed"]  # noqa: E731
        fp = lambda r: r["footprint"]  # noqa: E731
        row = [
            fmt(med(runs, lambda r: s(r)["scenario_wall_s"]), ".3f"),
            fmt(med(runs, lambda r: s(r)["set_phase_s"]), ".3f"),
            fmt(med(runs, lambda r: s(r)["iterate_phase_s"]), ".3f"),
            fmt(med(runs, lambda r: a(r)["cpu"]["user_s"]), ".3f"),
            fmt(med(runs, lambda r: a(r)["cpu"]["sys_s"]), ".3f"),
            fmt(med(runs, lambda r: a(r)["faults"]["minor"] / a(r)["ops"]), ".3f"),
            fmt(med(runs, lambda r: a(r)["context_switches"]["per_op"]), ".4f"),
            fmt(med(runs, lambda r: s(r)["keys_missing"]), "g"),
            fmt(med(runs, lambda r: s(r)["keys_duplicated"]), "g"),
            fmt(med(runs, lambda r: s(r)["keys_unexpected"] + s(r)["values_wrong"]), "g"),
            fmt(med(runs, lambda r: (s(r)["keys_expected"] - fp(r)["items"]) if fp(r)["items"] is not None else None),
                "g"),
            fmt(med(runs, lambda r: fp(r)["apparent_bytes"] / MIB if fp(r)["apparent_bytes"] else None), ".1f"),
            fmt(med(runs, lambda r: fp(r)["resident_bytes"] / MIB if fp(r)["resident_bytes"] else None), ".1f"),
            fmt(med(runs, lambda r: r["memory"]["peak_rss_kb_max"] / 1024), ".1f"),
            fmt(med(runs, lambda r: r["timing"]["attach_s_max"]), ".3f"),
        ]
        print(f"| {cell.rsplit('/', 2)[0]} | {len(runs)} | {loaded} | " + " | ".join(row) + " |")


def compare_table(lines: list[dict]) -> None:
    print("| cell | n | L | median Mops/s | min..max | sys share % | faults/op |")
    print("|---|---|---|---|---|---|---|")
    for cell, (runs, loaded) in grouped(lines).items():
        if not runs:
            continue
        t = [r["aggregate"]["throughput_ops_s"] / 1e6 for r in runs]
        print(f"| {cell.rsplit('/', 2)[0]} | {len(runs)} | {loaded} | {statistics.median(t):.3f} | "
              f"{min(t):.3f}..{max(t):.3f} | "
              f"{fmt(med(runs, lambda r: 100 * r['aggregate']['cpu']['sys_share']), '.1f')} | "
              f"{fmt(med(runs, lambda r: r['aggregate']['faults']['per_op']), '.4f')} |")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("seed", "compare"):
        sys.exit(__doc__)
    lines = load(Path(argv[1]))
    loaded = sum(1 for l in lines if l["noise"]["loaded"])
    print(f"{argv[1]}: {len(lines)} runs, {loaded} marked loaded, "
          f"{sum(1 for l in lines if l['status'] == 'skipped')} skipped, "
          f"{sum(1 for l in lines if l['status'] == 'failed')} failed; commit {lines[0]['sweep']['commit']}, "
          f"dirty {lines[0]['sweep']['dirty']}; {lines[0]['date']} .. {lines[-1]['date']}\n")
    (seed_table if argv[0] == "seed" else compare_table)(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
