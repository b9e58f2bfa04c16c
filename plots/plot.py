#!/usr/bin/python3
"""Draws the harness plots from results files only (no re-run needed).

    plots/plot.py experiments/results/quick/20260101T120000Z.jsonl [--out plots/quick]
    plots/plot.py experiments/results/quick          (the newest .jsonl in that directory)

For each workload in the results:
    throughput-<workload>    throughput against processes, one line per store (median,
                             bars from min to max over repetitions)
    speedup-<workload>       throughput relative to the same store at 1 process
    kernel-<workload>        sys share of CPU time, and page faults per operation
    latency-<workload>       p50, p99 and p99.9 latency of one operation
    tail-<workload>          p99.9, p99.99 and the maximum latency of one operation (log y;
                             results of drivers that time every operation, issue 22)
    stop-one-<workload>      for a workload run with shmht-driver --stop-one: throughput and
                             tail per store beside the same workload without stops, at the
                             stopped cells' process counts
and once:
    bytes-per-item           the table file's resident bytes per item, per store and backing
                             (Redis: the server's resident set and live heap bytes)

PNG and SVG; every figure names the machine and the date of the runs. Reads the schema
"shmht-harness-run/1" lines that harness/run.py writes; skips lines whose status is not "ok".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_figures  # noqa: E402  (the seed scenario's figures, issue 6)

SCHEMA = "shmht-harness-run/1"
STYLE = {"engine": "-", "peer": "--", "baseline": ":"}
MARKERS = "osD^vP*Xh<>"


def load_results(paths: list[Path]) -> list[dict]:
    lines = []
    for path in paths:
        if path.is_dir():
            candidates = sorted(path.glob("*.jsonl"))
            if not candidates:
                sys.exit(f"plot.py: no .jsonl file in {path}")
            path = candidates[-1]
        with open(path) as handle:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                line = json.loads(text)
                if line.get("schema") != SCHEMA:
                    sys.exit(f"plot.py: {path}:{number}: schema {line.get('schema')!r}, expected {SCHEMA}")
                line["_file"] = path
                lines.append(line)
    return lines


def usable(line: dict) -> bool:
    """Runs that count: succeeded, and not loaded unless the cell has only loaded runs."""
    return line.get("status") == "ok" and "cell" in line


def series_label(cell: dict, config: dict, vary_backing: bool, vary_placement: bool) -> str:
    label = cell["store"]
    depth = config.get("pipeline_depth", 1)
    if depth > 1:  # redis-pipelined: say how many operations share a round trip
        label += f", {depth} ops per round trip"
    if vary_backing and cell["backing"] not in ("tmpfs", "none"):
        label += f" ({cell['backing']})"
    if vary_placement:
        label += f" [{cell['placement']}/{cell['memory_policy']}]"
    return label


def group_series(lines: list[dict], workload: str) -> dict[str, dict]:
    """label -> {"family", "by_procs": {n: [lines]}} for one workload, unloaded runs preferred."""
    chosen = [l for l in lines if usable(l) and l["cell"]["workload"] == workload]
    vary_placement = len({(l["cell"]["placement"], l["cell"]["memory_policy"]) for l in chosen}) > 1
    # Backing variants that were run at a single process count are a comparison of their
    # own (bytes-per-item); here they would be single points, so keep the main backing.
    by_cell: dict[str, list[dict]] = defaultdict(list)
    for line in chosen:
        by_cell[line["cell"]["id"]].append(line)
    series: dict[str, dict] = {}
    for runs in by_cell.values():
        quiet = [r for r in runs if not r["noise"]["loaded"]]
        cell = runs[0]["cell"]
        config = runs[0].get("config", {})
        label = series_label(cell, config, True, vary_placement)
        variant = label != series_label(cell, config, False, False)  # another backing or placement
        entry = series.setdefault(label, {"family": cell["family"], "by_procs": {}, "variant": variant})
        entry["by_procs"][cell["processes"]] = quiet or runs
    return {k: v for k, v in series.items() if len(v["by_procs"]) > 1 or not v["variant"]}


def stat(runs: list[dict], pick) -> tuple[float, float, float]:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    if not values:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(values), min(values), max(values)


def footer(fig, lines: list[dict]) -> None:
    machine = lines[0].get("machine", {})
    dates = sorted(l["date"] for l in lines if "date" in l)
    when = dates[0][:10] if dates else "?"
    sweep = lines[0].get("sweep", {}).get("name", "?")
    commit = (lines[0].get("sweep", {}).get("commit") or "?")[:10]
    text = (f"{machine.get('cpu_model', '?')}, {machine.get('logical_cpus', '?')} CPUs, "
            f"{machine.get('kernel', '?')} · sweep '{sweep}' · {when} · commit {commit} · "
            f"{lines[0]['_file'].name}")
    fig.text(0.01, 0.005, text, fontsize=7, color="0.35", ha="left", va="bottom")


def plot_lines(ax, series: dict[str, dict], pick, relative_to_one: bool = False) -> None:
    for i, (label, entry) in enumerate(sorted(series.items(), key=lambda kv: (kv[1]["family"], kv[0]))):
        procs = sorted(entry["by_procs"])
        medians, lows, highs = [], [], []
        for n in procs:
            m, lo, hi = stat(entry["by_procs"][n], pick)
            medians.append(m)
            lows.append(lo)
            highs.append(hi)
        if relative_to_one:
            if 1 not in entry["by_procs"]:
                continue
            base = medians[procs.index(1)]
            medians = [m / base for m in medians]
            lows = [v / base for v in lows]
            highs = [v / base for v in highs]
        err = [[m - lo for m, lo in zip(medians, lows)], [hi - m for m, hi in zip(medians, highs)]]
        ax.errorbar(procs, medians, yerr=err, label=f"{label} ({entry['family']})", capsize=3,
                    linestyle=STYLE.get(entry["family"], "-"), marker=MARKERS[i % len(MARKERS)])
    ax.grid(True, alpha=0.3)


def process_axis(ax, lines: list[dict]) -> None:
    procs = sorted({l["cell"]["processes"] for l in lines if "cell" in l})
    ax.set_xticks(procs)
    ax.set_xlabel("worker processes")


def save(fig, out: Path, name: str, written: list[Path]) -> None:
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / f"{name}.png"  # one format: what the README and paper/ show
    fig.savefig(path, dpi=120)
    written.append(path)
    plt.close(fig)


def throughput(r):
    return r["aggregate"]["throughput_ops_s"]


def plot_workload(lines: list[dict], workload: str, out: Path, written: list[Path]) -> None:
    series = group_series(lines, workload)
    if not series:
        return
    described = next(l for l in lines if usable(l) and l["cell"]["workload"] == workload)["config"]["workload"]
    mix = ", ".join(f"{op} {w}%" for op, w in described["mix"].items() if w)
    subtitle = (f"{described['keys']:,} keys, {described['key_bytes']} B keys, {described['value_bytes']} B values, "
                f"{mix}, {described['distribution']}")

    fig, ax = plt.subplots(figsize=(8, 5))
    plot_lines(ax, series, lambda r: throughput(r) / 1e6)
    ax.set_title(f"Throughput vs processes — workload '{workload}'\n{subtitle}", fontsize=10)
    ax.set_ylabel("throughput (million ops/s, all processes)")
    ax.set_ylim(bottom=0)
    process_axis(ax, lines)
    ax.legend(fontsize=8, title="store (family)", title_fontsize=8)
    footer(fig, lines)
    save(fig, out, f"throughput-{workload}", written)

    fig, ax = plt.subplots(figsize=(8, 5))
    plot_lines(ax, series, throughput, relative_to_one=True)
    procs = sorted({n for e in series.values() for n in e["by_procs"]})
    ax.plot(procs, procs, color="0.6", linestyle=":", label="linear")
    ax.set_title(f"Speed-up vs one process — workload '{workload}'", fontsize=10)
    ax.set_ylabel("throughput / throughput at 1 process (×)")
    process_axis(ax, lines)
    ax.legend(fontsize=8, title="store (family)", title_fontsize=8)
    footer(fig, lines)
    save(fig, out, f"speedup-{workload}", written)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    plot_lines(left, series, lambda r: 100 * r["aggregate"]["cpu"]["sys_share"])
    left.set_title("Kernel share of CPU time", fontsize=10)
    left.set_ylabel("sys time / (user + sys) (%)")
    left.set_ylim(bottom=0)
    plot_lines(right, series, lambda r: r["aggregate"]["faults"]["per_op"] * 1000)
    right.set_title("Page faults (minor + major)", fontsize=10)
    right.set_ylabel("faults per 1,000 operations")
    for ax in (left, right):
        process_axis(ax, lines)
    right.legend(fontsize=7, title="store (family)", title_fontsize=7)
    fig.suptitle(f"Where the kernel time goes — workload '{workload}'", fontsize=11)
    footer(fig, lines)
    save(fig, out, f"kernel-{workload}", written)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), sharey=True)
    for ax, (key, name) in zip(axes, [("p50", "median (p50)"), ("p99", "p99"), ("p999", "p99.9")]):
        plot_lines(ax, series, lambda r, key=key: r["aggregate"]["latency_ns"][key])
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        process_axis(ax, lines)
    axes[0].set_ylabel("latency of one operation (ns, log scale)")
    axes[-1].legend(fontsize=7, title="store (family)", title_fontsize=7)
    chosen = [l for l in lines if usable(l) and l["cell"]["workload"] == workload]
    fig.suptitle(f"Latency of {timed_operations(chosen)} — workload '{workload}'", fontsize=11)
    footer(fig, lines)
    save(fig, out, f"latency-{workload}", written)

    plot_tail(lines, workload, series, out, written)


def timed_operations(lines: list[dict]) -> str:
    """What the latency figures show: every operation, or sampled ones (older drivers,
    or shmht-driver --latency sampled)."""
    timed = {l["aggregate"]["latency_ns"].get("timed", "sampled") for l in lines if usable(l)}
    return "every operation" if timed == {"every"} else "sampled operations"


def has_tail(lines: list[dict]) -> bool:
    return any(usable(l) and "p9999" in l["aggregate"]["latency_ns"] for l in lines)


TAIL = [("p999", "p99.9"), ("p9999", "p99.99"), ("max", "maximum")]


def plot_tail(lines: list[dict], workload: str, series: dict[str, dict], out: Path, written: list[Path]) -> None:
    chosen = [l for l in lines if usable(l) and l["cell"]["workload"] == workload]
    if not has_tail(chosen):
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), sharey=True)
    for ax, (key, name) in zip(axes, TAIL):
        plot_lines(ax, series, lambda r, key=key: r["aggregate"]["latency_ns"].get(key))
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        process_axis(ax, chosen)
    axes[0].set_ylabel("latency of one operation (ns, log scale)")
    axes[-1].legend(fontsize=7, title="store (family)", title_fontsize=7)
    fig.suptitle(f"Tail latency of {timed_operations(chosen)}, all workers — workload '{workload}'\n"
                 "median over repetitions, bars from min to max", fontsize=11)
    footer(fig, lines)
    save(fig, out, f"tail-{workload}", written)


def stop_one_of(line: dict) -> dict | None:
    return (line.get("config") or {}).get("stop_one")


def same_workload(a: dict, b: dict) -> bool:
    """Two results ran the same workload (its name and run length aside: a stop cell runs
    longer, so that several stops fall in each run)."""
    keys = ("keys", "key_bytes", "value_bytes", "mix", "distribution", "zipf_theta", "prefill")
    wa, wb = a["config"]["workload"], b["config"]["workload"]
    return all(wa.get(k) == wb.get(k) for k in keys)


def survivors_latency(line: dict) -> dict:
    """With stops: the latency of every worker but the stopped one (the driver's
    stop_one.survivors), where a stop shows as what it cost the others (the stopped worker's
    own operation lasts the whole stop). Without stops, or from a driver that did not report
    survivors: all workers (alike when nobody is stopped)."""
    survivors = (line.get("stop_one") or {}).get("survivors")
    return survivors["latency_ns"] if survivors and survivors.get("latency_ns") else line["aggregate"]["latency_ns"]


def plot_stop_one(lines: list[dict], out: Path, written: list[Path]) -> None:
    """Per stopped workload: each store's throughput and tail with worker 0 stopped, beside
    the same workload without stops at the same process counts (grouped bars, median over
    repetitions, whiskers from min to max)."""
    stopped_lines = [l for l in lines if usable(l) and stop_one_of(l)]
    for workload in sorted({l["cell"]["workload"] for l in stopped_lines}):
        stopped = [l for l in stopped_lines if l["cell"]["workload"] == workload]
        plan = stop_one_of(stopped[0])
        procs = sorted({l["cell"]["processes"] for l in stopped})
        plain = [l for l in lines if usable(l) and not stop_one_of(l) and l["cell"]["processes"] in procs
                 and same_workload(l, stopped[0])]
        stores = sorted({l["cell"]["store"] for l in stopped}, key=lambda s: (s not in ("global", "striped", "seqlock",
                                                                                         "lockfree"), s))
        variants = [(n, False) for n in procs if any(l["cell"]["processes"] == n for l in plain)]
        variants += [(n, True) for n in procs]
        variants.sort()
        picks = [("throughput (million ops/s, all processes)", lambda r: throughput(r) / 1e6, False)]
        picks += [(f"{name} latency of the other workers (ns, log scale)", lambda r, k=key: survivors_latency(r).get(k), True)
                  for key, name in TAIL]
        fig, axes = plt.subplots(1, len(picks), figsize=(4.4 * len(picks) + 1.5, 4.8))
        width = 0.8 / len(variants)
        for ax, (ylabel, pick, log) in zip(axes, picks):
            for v, (n, is_stopped) in enumerate(variants):
                source = stopped if is_stopped else plain
                medians, errs = [], [[], []]
                for store in stores:
                    runs = [l for l in source if l["cell"]["store"] == store and l["cell"]["processes"] == n]
                    quiet = [r for r in runs if not r["noise"]["loaded"]] or runs
                    m, lo, hi = stat(quiet, pick)
                    medians.append(m)
                    errs[0].append(m - lo)
                    errs[1].append(hi - m)
                if is_stopped:  # the stops made, as recorded (a cell shorter than half a period makes none)
                    made = [(r.get("stop_one") or {}).get("stops", 0) for r in source if r["cell"]["processes"] == n]
                    label = (f"{n} processes, worker 0 stopped\n{plan['stopped_ms']} ms every {plan['period_ms']} ms"
                             f" ({statistics.median(made):g} stops per run)")
                else:
                    label = f"{n} processes, no stops"
                xs = [i - 0.4 + width * (v + 0.5) for i in range(len(stores))]
                ax.bar(xs, medians, width=width, yerr=errs, capsize=2, label=label,
                       hatch="//" if is_stopped else None, alpha=0.85)
            ax.set_xticks(list(range(len(stores))))
            ax.set_xticklabels(stores, fontsize=8)
            ax.set_xlabel("store")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            ax.grid(True, axis="y", alpha=0.3)
        axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.suptitle(f"One worker stopped (SIGSTOP) {plan['stopped_ms']} ms in every {plan['period_ms']} ms — "
                     f"workload '{workload}' against the same workload without stops\n"
                     f"latency of {timed_operations(stopped)}: with stops, every worker but the stopped one; "
                     "median over repetitions, "
                     "whiskers from min to max", fontsize=10)
        footer(fig, lines)
        save(fig, out, f"stop-one-{workload}", written)


def plot_bytes_per_item(lines: list[dict], out: Path, written: list[Path]) -> None:
    per_label: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        if usable(line) and line.get("footprint", {}).get("resident_bytes_per_item"):
            # A store with a server (Redis) keeps its data in that process's heap.
            where = "server heap" if line.get("server") else line["cell"]["backing"]
            per_label[f"{line['cell']['store']}\n{where}"].append(line)
    if not per_label:
        return
    labels = sorted(per_label)
    resident = [statistics.median(l["footprint"]["resident_bytes_per_item"] for l in per_label[k]) for k in labels]
    apparent = [statistics.median(l["footprint"]["apparent_bytes"] / l["footprint"]["items"] for l in per_label[k])
                for k in labels]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) + 2), 5))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], resident, width=0.4, label="resident (allocated blocks)")
    ax.bar([i + 0.2 for i in x], apparent, width=0.4, label="apparent (file size; a server: its live heap bytes)",
           alpha=0.6)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per stored item (log scale)")
    ax.set_xlabel("store and backing")
    ax.set_title("Table file size per item after the run (median over runs)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    footer(fig, lines)
    save(fig, out, "bytes-per-item", written)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help=".jsonl files or directories (newest file used)")
    parser.add_argument("--out", type=Path, help="output directory (default: plots/<sweep name>)")
    args = parser.parse_args(argv)
    lines = load_results(args.results)
    if not any(usable(l) for l in lines):
        sys.exit("plot.py: no successful run in the results")
    sweep = lines[0].get("sweep", {}).get("name", "results")
    out = args.out or Path(__file__).resolve().parent / sweep
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # The seed scenario (pyshmht's test) has figures of its own; the rest are per workload.
    seed_lines = [l for l in lines if seed_figures.is_seed(l)]
    if seed_lines:
        seed_figures.draw(seed_lines, out, written, footer, save)
    lines = [l for l in lines if not seed_figures.is_seed(l)]
    workloads = sorted({l["cell"]["workload"] for l in lines if usable(l)})
    for workload in workloads:
        plot_workload(lines, workload, out, written)
    plot_stop_one(lines, out, written)
    plot_bytes_per_item(lines, out, written)
    print(f"plot.py: {len(written)} files in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
