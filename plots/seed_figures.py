"""The seed sweep's figures (issue 6), one per question, from results lines only.

    seed-kernel-time   where the CPU time goes, step by step from pyshmht to our engines:
                       user and sys seconds, and page faults per operation
    seed-lost-keys     keys missing, duplicated or torn after the run, and the item
                       counter's lost increments; by ablation step and by process count
    seed-file-size     apparent and resident size of the table file, by ablation step
    seed-wall          the scenario's wall time against processes, with the single-process
                       references (C++ private map, Python dict)

plots/plot.py calls draw() for lines whose config.workload.scenario is "seed". Medians
over repetitions; unloaded runs when a cell has any (as plot.py does).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt

# The ablation, in order: (store, backing, processes) -> label. Steps after "tmpfs" each
# change one factor from the seed emulation on tmpfs.
ABLATION_PROCESSES = 2
ABLATION = [
    ("seed-emulation", "disk", "pyshmht\n(seed, disk)"),
    ("seed-emulation", "tmpfs", "tmpfs"),
    ("seed-emulation-populate", "tmpfs", "tmpfs +\nprefault"),
    ("seed-emulation", "hugepages", "tmpfs +\nhuge pages"),
    ("seed-emulation-right-sized", "tmpfs", "tmpfs +\nright-sized\nslots"),
    ("global", "disk", "engine global\n(disk)"),
    ("global", "tmpfs", "engine\nglobal"),
    ("striped", "tmpfs", "engine\nstriped"),
    ("seqlock", "tmpfs", "engine\nseqlock"),
    ("lockfree", "tmpfs", "engine\nlockfree"),
]
MIB = 1024 * 1024


def is_seed(line: dict) -> bool:
    return ((line.get("config") or {}).get("workload") or {}).get("scenario") == "seed"


MAIN_WORKLOAD = "seed"          # pyshmht's test as it ran
LOCKSTEP_WORKLOAD = "seed-lockstep"  # the same, workers meeting at every set (stress)


def cells(lines: list[dict], workload: str = MAIN_WORKLOAD) -> dict[tuple[str, str, int], list[dict]]:
    """(store, backing, processes) -> the runs to use: ok, unloaded if the cell has any."""
    by_cell: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for line in lines:
        if "cell" in line and line.get("status") == "ok" and line["cell"]["workload"] == workload:
            c = line["cell"]
            by_cell[(c["store"], c["backing"], c["processes"])].append(line)
    return {k: ([r for r in v if not r["noise"]["loaded"]] or v) for k, v in by_cell.items()}


def skipped_reason(lines: list[dict], store: str, backing: str) -> str | None:
    for line in lines:
        c = line.get("cell") or {}
        if c.get("store") == store and c.get("backing") == backing and line.get("status") == "skipped":
            return line.get("error")
    return None


def median(runs: list[dict], pick: Callable[[dict], float | None]) -> float:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    return statistics.median(values) if values else float("nan")


def ablation_steps(lines: list[dict]) -> list[tuple[str, list[dict] | None, str | None]]:
    """[(label, runs or None, why not run)] for every step the sweep has a line for."""
    by_cell = cells(lines)
    steps = []
    for store, backing, label in ABLATION:
        runs = by_cell.get((store, backing, ABLATION_PROCESSES))
        reason = None if runs else skipped_reason(lines, store, backing)
        if runs or reason:
            steps.append((label, runs, reason))
    return steps


def mark_unavailable(ax, x: int, reason: str | None) -> None:
    ax.text(x, 0, " not available here" if reason else " not run", rotation=90, fontsize=7, va="bottom",
            ha="center", color="0.4")


def figure_kernel_time(lines, footer, save, out, written) -> None:
    steps = ablation_steps(lines)
    if not steps:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    xs = range(len(steps))
    for x, (label, runs, reason) in zip(xs, steps):
        if not runs:
            mark_unavailable(left, x, reason)
            mark_unavailable(right, x, reason)
            continue
        user = median(runs, lambda r: r["aggregate"]["cpu"]["user_s"])
        sys_ = median(runs, lambda r: r["aggregate"]["cpu"]["sys_s"])
        left.bar(x, user, color="tab:blue", label="user" if x == 0 else None)
        left.bar(x, sys_, bottom=user, color="tab:red", label="sys (kernel)" if x == 0 else None)
        left.text(x, user + sys_, f"{sys_:.2f}", ha="center", va="bottom", fontsize=7, color="tab:red")
        minor = median(runs, lambda r: r["aggregate"]["faults"]["minor"] / max(r["aggregate"]["ops"], 1))
        switches = median(runs, lambda r: r["aggregate"]["context_switches"]["per_op"])
        right.bar(x - 0.2, minor, width=0.4, color="tab:orange", label="minor faults" if x == 0 else None)
        right.bar(x + 0.2, switches, width=0.4, color="tab:gray", label="context switches" if x == 0 else None)
    for ax in (left, right):
        ax.set_xticks(list(xs))
        ax.set_xticklabels([s[0] for s in steps], fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    left.set_ylabel("CPU seconds, all processes (median)")
    left.set_title("CPU time of the scenario (set pass + 2 iteration passes); red: sys seconds", fontsize=9)
    left.legend(fontsize=8)
    right.set_ylabel("per set operation (median)")
    right.set_title("Page faults and context switches per operation", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle(f"Kernel time: ablation from pyshmht to our engines, {ABLATION_PROCESSES} processes, "
                 "333,333 items", fontsize=11)
    footer(fig, lines)
    save(fig, out, "seed-kernel-time", written)


def lost_counts(run: dict) -> dict[str, float]:
    s = run["seed"]
    items = (run.get("footprint") or {}).get("items")
    return {"missing": s["keys_missing"], "duplicated": s["keys_duplicated"],
            "torn (unexpected key or wrong value)": s["keys_unexpected"] + s["values_wrong"],
            "item counter shortfall": (s["keys_expected"] - items) if items is not None else None}


def figure_lost_keys(lines, footer, save, out, written) -> None:
    steps = ablation_steps(lines)
    if not steps:
        return
    lockstep = cells(lines, LOCKSTEP_WORKLOAD)
    fig, axes = plt.subplots(1, 3 if lockstep else 2, figsize=(20 if lockstep else 14, 5.5))
    left, right = axes[0], axes[-1]
    kinds = list(lost_counts({"seed": defaultdict(int), "footprint": {"items": 0}}))
    width = 0.8 / len(kinds)
    for x, (label, runs, reason) in enumerate(steps):
        if not runs:
            mark_unavailable(left, x, reason)
            continue
        for k, kind in enumerate(kinds):
            value = median(runs, lambda r, kind=kind: lost_counts(r)[kind])
            left.bar(x - 0.4 + width * (k + 0.5), value, width=width, color=f"C{k}",
                     label=kind if x == 0 else None)
    left.set_xticks(range(len(steps)))
    left.set_xticklabels([s[0] for s in steps], fontsize=7)
    left.set_yscale("symlog", linthresh=1)
    left.set_ylabel("count after the run (median; symlog)")
    left.set_title(f"By ablation step, {ABLATION_PROCESSES} processes", fontsize=9)
    left.legend(fontsize=7)
    left.grid(True, axis="y", alpha=0.3)

    if lockstep:
        middle = axes[1]
        keys = sorted(lockstep, key=lambda k: (not k[0].startswith("seed"), k[0], k[2]))
        for x, key in enumerate(keys):
            for k, kind in enumerate(kinds):
                value = median(lockstep[key], lambda r, kind=kind: lost_counts(r)[kind])
                middle.bar(x - 0.4 + width * (k + 0.5), value, width=width, color=f"C{k}",
                           label=kind if x == 0 else None)
        middle.set_xticks(range(len(keys)))
        middle.set_xticklabels([f"{k[0]}\n{k[1]}, p{k[2]}" for k in keys], fontsize=7)
        middle.set_yscale("symlog", linthresh=1)
        middle.set_title("Stress: workers set the same index i together (lockstep every set)", fontsize=9)
        middle.grid(True, axis="y", alpha=0.3)

    by_cell = cells(lines)
    stores = sorted({k[0] for k in by_cell if k[1] == "tmpfs"})
    top = 1.0
    for i, store in enumerate(stores):
        procs = sorted(k[2] for k in by_cell if k[0] == store and k[1] == "tmpfs")
        if len(procs) < 2:
            continue
        style = ":" if store.startswith("seed") else "-"
        missing = [median(by_cell[(store, "tmpfs", n)], lambda r: r["seed"]["keys_missing"]) for n in procs]
        short = [median(by_cell[(store, "tmpfs", n)], lambda r: lost_counts(r)["item counter shortfall"])
                 for n in procs]
        right.plot(procs, missing, marker="osD^v"[i % 5], linestyle=style, color=f"C{i}", label=f"{store}: keys missing")
        right.plot(procs, short, marker="osD^v"[i % 5], linestyle="--", color=f"C{i}", alpha=0.6,
                   label=f"{store}: counter shortfall")
        top = max(top, *[v for v in missing + short if v == v])
    right.set_ylim(-0.5, top * 3)
    right.set_xticks(sorted({k[2] for k in by_cell}))
    right.set_yscale("symlog", linthresh=1)
    right.set_xlabel("processes (2 cores: 3 and 4 oversubscribe)")
    right.set_ylabel("count after the run (median; symlog)")
    right.set_title("Against processes, pyshmht's test as it ran (tmpfs)", fontsize=9)
    right.legend(fontsize=7)
    right.grid(True, alpha=0.3)
    fig.suptitle("Lost keys: 333,333 items set by N processes, then iterated and checked exactly", fontsize=11)
    footer(fig, lines)
    save(fig, out, "seed-lost-keys", written)


def figure_file_size(lines, footer, save, out, written) -> None:
    steps = [s for s in ablation_steps(lines)]
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(11, 5))
    for x, (label, runs, reason) in enumerate(steps):
        if not runs:
            mark_unavailable(ax, x, reason)
            continue
        apparent = median(runs, lambda r: r["footprint"]["apparent_bytes"]) / MIB
        resident = median(runs, lambda r: r["footprint"]["resident_bytes"]) / MIB
        ax.bar(x - 0.2, apparent, width=0.4, color="tab:purple", alpha=0.6, label="apparent (ls -l)" if x == 0 else None)
        ax.bar(x + 0.2, resident, width=0.4, color="tab:green", label="resident (du: blocks allocated)" if x == 0 else None)
        ax.text(x - 0.2, apparent, f"{apparent:.0f}", ha="center", va="bottom", fontsize=7)
        ax.text(x + 0.2, resident, f"{resident:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels([s[0] for s in steps], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("MiB (log scale; median over runs)")
    ax.set_title(f"Table file size after 333,333 items (keys <= 7 B, values 7 B), {ABLATION_PROCESSES} processes",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    footer(fig, lines)
    save(fig, out, "seed-file-size", written)


def figure_wall(lines, footer, save, out, written) -> None:
    by_cell = cells(lines)
    fig, ax = plt.subplots(figsize=(9, 5))
    stores = sorted({k[0] for k in by_cell if k[1] == "tmpfs"})
    for i, store in enumerate(stores):
        procs = sorted(k[2] for k in by_cell if k[0] == store and k[1] == "tmpfs")
        if len(procs) < 2:
            continue
        wall = [median(by_cell[(store, "tmpfs", n)], lambda r: r["seed"]["scenario_wall_s"]) for n in procs]
        ax.plot(procs, wall, marker="osD^v"[i % 5], label=store, linestyle=":" if store.startswith("seed") else "-")
    for j, (store, color) in enumerate([("std-unordered-map", "0.3"), ("python-dict", "tab:olive")]):
        runs = by_cell.get((store, "none", 1))
        if runs:
            w = median(runs, lambda r: r["seed"]["scenario_wall_s"])
            ax.axhline(w, color=color, linestyle="--", label=f"{store}, 1 process ({w:.2f} s)")
    ax.set_yscale("log")
    ax.set_xlabel("processes sharing the 333,333 items (2 cores: 3 and 4 oversubscribe)")
    ax.set_ylabel("scenario wall time, s (set + 2 iteration passes; log)")
    ax.set_title("The seed scenario's wall time (tmpfs; median over runs)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    footer(fig, lines)
    save(fig, out, "seed-wall", written)


def draw(lines: list[dict], out: Path, written: list[Path], footer, save) -> None:
    """All seed figures; `footer` and `save` are plot.py's, so every figure looks alike."""
    for figure in (figure_kernel_time, figure_lost_keys, figure_file_size, figure_wall):
        figure(lines, footer, save, out, written)
