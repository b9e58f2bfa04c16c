#!/usr/bin/python3
"""Runs a benchmark sweep of shmht and its peers, then draws the plots.

    harness/run.py                     the `quick` sweep, then plots, in a new run directory
    harness/run.py --sweep scaling     another sweep from experiments/<name>.toml
    harness/run.py --list              the sweeps there
    harness/run.py --dry-run           print the cells, run nothing
    harness/run.py --engines global,lmdb --procs 1,2    run only those stores / process counts
    harness/run.py --reps 1 --duration 0.5              fewer repetitions, shorter cells
    harness/run.py --publish           write where the README's figures come from (below)

It builds what is missing (scripts/bootstrap.sh build, ninja -C build), runs every cell
`repetitions` times (repetitions interleaved, so a burst of foreign load hits one copy of
a cell rather than all of them), prints a progress line per run, and appends one JSON
object per run to a results file: the driver's result (schema "shmht-harness-run/1") plus
the sweep, cell, repetition and noise records.

Where it writes (output_paths): by default a new run directory,
experiments/runs/<UTC timestamp>-<sweep>/ (git ignores it), holding results.jsonl and
plots/; its path is printed at the end. The committed results and figures that README.md
and paper/ cite (experiments/results/<sweep>/<timestamp>.jsonl, plots/<sweep>/*.png) are
written only with --publish, so a default run never overwrites a figure the README shows.
--results DIR (results in DIR/<sweep>/<timestamp>.jsonl) and --plots DIR override either.

Noise guard: before each run, /proc/stat is sampled while nothing of ours runs; during the
run, the machine's busy time minus the driver's own CPU time is the foreign load. A run
where either exceeds noise.max_foreign_cores is marked "loaded" and re-run (noise.reruns
times); medians use the unloaded runs when there are any.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parent
ROOT = HARNESS.parent
sys.path.insert(0, str(HARNESS))

import sweep as sweeps  # noqa: E402  (after the path tweak above)

EXPERIMENTS = ROOT / "experiments"
RESULTS = EXPERIMENTS / "results"  # committed: what the docs cite (--publish)
RUNS = EXPERIMENTS / "runs"        # one directory per default run; in .gitignore
PLOTS = ROOT / "plots"             # committed figures, plots/<sweep>/ (--publish)
BUILD = ROOT / "build"
PLOT_SCRIPT = ROOT / "plots" / "plot.py"
SHM = Path("/dev/shm")
DISK_TMP = Path("/tmp")
MIN_WALL_FOR_DURING_S = 0.25


# ---------------------------------------------------------------------------------------
# Building and asking the driver


def ensure_driver(explicit: str | None) -> Path:
    """The driver to use: --driver, $SHMHT_DRIVER, or build/ (built or brought up to date)."""
    given = explicit or os.environ.get("SHMHT_DRIVER")
    if given:
        path = Path(given)
        if not path.is_file():
            sys.exit(f"run.py: driver {path} does not exist")
        return path
    if not (BUILD / "build.ninja").is_file():
        log("run.py: configuring build/ (scripts/bootstrap.sh build)")
        subprocess.run([str(ROOT / "scripts" / "bootstrap.sh"), "build"], cwd=ROOT, check=True)
    # ninja is a no-op when everything is up to date; otherwise this builds what is missing.
    build = subprocess.run(["ninja", "-C", str(BUILD), "harness/shmht-driver"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if build.returncode != 0:
        sys.exit(f"run.py: building the driver failed:\n{build.stdout}")
    if "no work to do" not in build.stdout:
        log("run.py: built harness/shmht-driver")
    return BUILD / "harness" / "shmht-driver"


def driver_listing(driver: Path) -> dict[str, Any]:
    out = subprocess.run([str(driver), "--list-stores"], check=True, stdout=subprocess.PIPE, text=True, timeout=30)
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------
# Noise guard


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total * os.cpu_count() if total > 0 else 0.0


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def foreign_load_now(sample_s: float) -> float:
    """Cores busy while we sleep: all of it is someone else's."""
    if sample_s <= 0:
        return 0.0
    before = cpu_jiffies()
    time.sleep(sample_s)
    return busy_cores(before, cpu_jiffies())


# ---------------------------------------------------------------------------------------
# Running one cell


def remove_leftovers(prefix: str) -> list[str]:
    """Removes files a killed driver could not: everything named <prefix>* in /dev/shm and /tmp."""
    removed = []
    for directory in (SHM, DISK_TMP):
        for path in directory.glob(prefix + "*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def run_driver(driver: Path, cell: sweeps.Cell, sweep: sweeps.Sweep, seed: int,
               prefix: str) -> tuple[dict, list[str], float | None, float]:
    """Runs the driver once; returns (result, command, foreign cores during, wall seconds)."""
    script = sweeps.PYTHON_BASELINES.get(cell.store)
    # A Python baseline takes the driver's flags (ignoring those that do not apply).
    program = ["/usr/bin/python3", str(HARNESS / script)] if script else [str(driver)]
    command = [
        *program,
        "--store", cell.store,
        "--processes", str(cell.processes),
        "--backing", cell.backing,
        "--placement", cell.placement,
        "--memory", cell.memory_policy,
        "--batch", str(sweep.batch),
        "--timeout", repr(sweep.timeout_s),
        "--seed", str(seed),
        "--name-prefix", prefix,
        *cell.workload.driver_args(),
    ]
    jiffies_before, cpu_before, started = cpu_jiffies(), children_cpu_s(), time.monotonic()
    try:
        # The driver bounds its workers by --timeout; this bounds the driver itself.
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=sweep.timeout_s + 30)
        stdout, stderr, returncode = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        stdout, stderr, returncode = "", f"driver overran {sweep.timeout_s + 30:.0f} s and was killed", -9
        del expired
    wall = time.monotonic() - started
    # /proc/stat counts in jiffies (10 ms): below MIN_WALL_FOR_DURING_S the difference
    # is mostly rounding, so only the load before the run counts.
    foreign = None
    if wall >= MIN_WALL_FOR_DURING_S:
        foreign = max(busy_cores(jiffies_before, cpu_jiffies()) - (children_cpu_s() - cpu_before) / wall, 0.0)
    leftovers = remove_leftovers(prefix)
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError:
        result = {"schema": "shmht-harness-run/1", "status": "failed",
                  "error": f"driver exit {returncode}, no JSON result: {stderr.strip()[-500:]}"}
    result["driver_exit"] = returncode
    if leftovers:
        result["leftovers_removed"] = leftovers
    return result, command, foreign, wall


# ---------------------------------------------------------------------------------------
# Reporting


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def throughput(result: dict) -> float | None:
    aggregate = result.get("aggregate") or {}
    return aggregate.get("throughput_ops_s") if result.get("status") == "ok" else None


def summarize(lines: list[dict]) -> list[dict]:
    """Median and spread of throughput per cell, from unloaded runs where there are any."""
    by_cell: dict[str, list[dict]] = {}
    for line in lines:
        by_cell.setdefault(line["cell"]["id"], []).append(line)
    rows = []
    for cell_id, runs in by_cell.items():
        ok = [r for r in runs if throughput(r) is not None]
        quiet = [r for r in ok if not r["noise"]["loaded"]]
        used = quiet or ok
        values = [throughput(r) for r in used]
        row = {"cell": cell_id, "status": runs[0]["status"], "runs": len(runs), "used": len(values),
               "loaded_only": bool(ok) and not quiet, "error": runs[-1].get("error")}
        if values:
            median = statistics.median(values)
            row.update(median=median, low=min(values), high=max(values),
                       spread_pct=(max(values) - min(values)) / median * 100 if median else 0.0)
        rows.append(row)
    return rows


def print_summary(rows: list[dict]) -> None:
    print(f"\n{'cell':58} {'median ops/s':>13} {'min..max':>23} {'spread':>7} {'n':>3}")
    for row in rows:
        if "median" in row:
            flag = "  (loaded runs only)" if row["loaded_only"] else ""
            print(f"{row['cell']:58} {row['median']:13,.0f} {row['low']:11,.0f}..{row['high']:<11,.0f}"
                  f" {row['spread_pct']:6.1f}% {row['used']:3}{flag}")
        else:
            print(f"{row['cell']:58} {row['status']:>13}: {row['error']}")


def git_describe() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


# ---------------------------------------------------------------------------------------
# The sweep


def run_sweep(sweep: sweeps.Sweep, cells: list[sweeps.Cell], driver: Path, out_path: Path,
              started_at: datetime.datetime, overrides: dict[str, Any]) -> Path:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sweep_record = {"name": sweep.name, "file": str(sweep.path.relative_to(ROOT)) if sweep.path.is_relative_to(ROOT)
                    else str(sweep.path), "started": started_at.isoformat(timespec="seconds"),
                    "repetitions": sweep.repetitions, "overrides": overrides, **git_describe()}
    threshold = sweep.noise["max_foreign_cores"]
    planned = len(cells) * sweep.repetitions
    skipped_cells: set[str] = set()
    lines: list[dict] = []
    run_number, clock = 0, time.monotonic()
    log(f"run.py: sweep '{sweep.name}': {len(cells)} cells x {sweep.repetitions} repetitions -> {out_path}")
    with open(out_path, "a") as out:
        for repetition in range(sweep.repetitions):
            for index, cell in enumerate(cells):
                run_number += 1
                if cell.id in skipped_cells:
                    continue
                for attempt in range(int(sweep.noise["reruns"]) + 1):
                    before = foreign_load_now(sweep.noise["sample_s"])
                    prefix = f"shmht-bench-{os.getpid()}-{run_number}-{attempt}-"
                    seed = 1 + repetition
                    result, command, during, wall = run_driver(driver, cell, sweep, seed, prefix)
                    loaded = before > threshold or (during is not None and during > threshold)
                    result.update(sweep=sweep_record, cell=cell.describe(), repetition=repetition, attempt=attempt,
                                  noise={"foreign_cores_before": round(before, 3),
                                         "foreign_cores_during": None if during is None else round(during, 3),
                                         "max_foreign_cores": threshold, "loaded": loaded},
                                  driver_command=command)
                    out.write(json.dumps(result, separators=(",", ":")) + "\n")
                    out.flush()
                    lines.append(result)
                    elapsed = time.monotonic() - clock
                    eta = elapsed / run_number * (planned - run_number)
                    status = result["status"]
                    figure = (f"{throughput(result):>12,.0f} ops/s" if status == "ok"
                              else f"{status.upper()}: {result.get('error')}")
                    log(f"[run {run_number}/{planned} cell {index + 1}/{len(cells)} rep {repetition + 1}] "
                        f"{cell.id}: {figure}  load {before:.2f}/{'-' if during is None else f'{during:.2f}'}"
                        f"{' LOADED' if loaded else ''}  "
                        f"elapsed {format_duration(elapsed)} eta {format_duration(eta)}")
                    if status == "skipped":
                        skipped_cells.add(cell.id)  # the reason will not change on a re-run
                        break
                    if not loaded or status != "ok":
                        break
    print_summary(summarize(lines))
    log(f"run.py: {len(lines)} results in {out_path} ({format_duration(time.monotonic() - clock)})")
    return out_path


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="quick", help="experiments/NAME.toml or a path to a .toml (default: quick)")
    parser.add_argument("--list", action="store_true", help="list the sweeps and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the cells and exit")
    parser.add_argument("--engines", help="comma-separated stores to keep (engines, peers or baselines)")
    parser.add_argument("--procs", help="comma-separated process counts to keep")
    parser.add_argument("--driver", help="shmht-driver to use (default: build it in build/)")
    parser.add_argument("--reps", type=int, help="repetitions of each cell (default: the sweep file's)")
    parser.add_argument("--duration", type=float,
                        help="seconds each cell runs, instead of its workload's ops or duration (seed cells run to the end)")
    parser.add_argument("--out", type=Path,
                        help="run directory for results.jsonl and plots/ (default: experiments/runs/<timestamp>-<sweep>)")
    parser.add_argument("--publish", action="store_true",
                        help="write the committed files the docs cite: experiments/results/<sweep>/<timestamp>.jsonl "
                             "and plots/<sweep>/")
    parser.add_argument("--results", type=Path, help="results directory: the file goes to DIR/<sweep>/<timestamp>.jsonl")
    parser.add_argument("--plots", type=Path, help="plot directory")
    parser.add_argument("--no-plots", action="store_true", help="do not draw plots after the sweep")
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be at least 1; got {args.reps}")
    if args.duration is not None and not args.duration > 0:
        parser.error(f"--duration must be a positive number of seconds; got {args.duration}")
    if args.publish and args.out:
        parser.error("--publish writes to the committed places; --out names a run directory: give one of them")
    return args


def output_paths(args: argparse.Namespace, sweep_name: str, started_at: datetime.datetime) -> tuple[Path, Path]:
    """(results file, plot directory) for this run: a new run directory by default, the
    committed places with --publish, and --results / --plots over either."""
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    if args.publish:
        results_file, plot_dir = RESULTS / sweep_name / f"{stamp}.jsonl", PLOTS / sweep_name
    else:
        run_dir = args.out or RUNS / f"{stamp}-{sweep_name}"
        results_file, plot_dir = run_dir / "results.jsonl", run_dir / "plots"
    if args.results:
        results_file = args.results / sweep_name / f"{stamp}.jsonl"
    return results_file, args.plots or plot_dir


def sweep_path(name: str) -> Path:
    if name.endswith(".toml"):
        return Path(name).resolve()
    available = sweeps.sweeps_in(EXPERIMENTS)
    if name not in available:
        sys.exit(f"run.py: no sweep '{name}'; available: {', '.join(available) or 'none'} (in {EXPERIMENTS})")
    return available[name]


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    if args.list:
        available = sweeps.sweeps_in(EXPERIMENTS)
        width = max((len(name) for name in available), default=12)
        for name, path in available.items():
            try:
                s = sweeps.load_sweep(path)
                print(f"{name:{width}} {len(s.cells):4} cells x {s.repetitions} reps  {s.description}")
            except sweeps.SweepError as error:
                print(f"{name:{width}} INVALID: {error}")
        return 0

    path = sweep_path(args.sweep)
    try:
        stores_filter = [s for s in (args.engines or "").split(",") if s]
        procs_filter = [int(p) for p in (args.procs or "").split(",") if p]
    except ValueError:
        sys.exit("run.py: --procs expects comma-separated integers")
    try:
        sweeps.load_sweep(path)  # validate before building anything
        driver = ensure_driver(args.driver)
        stores = sweeps.stores_from_driver_listing(driver_listing(driver))
        stores.update(sweeps.python_stores())
        sweep = sweeps.load_sweep(path, stores)
    except sweeps.SweepError as error:
        sys.exit(f"run.py: {error}")
    unknown = [s for s in stores_filter if s not in stores]
    if unknown:
        sys.exit(f"run.py: --engines: unknown store(s) {', '.join(unknown)}; known: {', '.join(stores)}")
    cells = sweeps.filter_cells(sweep.cells, stores_filter, procs_filter)
    overrides: dict[str, Any] = {}
    if args.reps is not None:
        sweep.repetitions = overrides["repetitions"] = args.reps
    if args.duration is not None:
        cells = sweeps.with_duration(cells, args.duration)
        overrides["duration_s"] = args.duration
    if not cells:
        # --dry-run too: an empty plan is a mistake in the filters, not a plan.
        filters = " ".join(f"{flag} {value}" for flag, value in (("--engines", args.engines), ("--procs", args.procs))
                           if value)
        log(f"run.py: no cell of sweep '{sweep.name}' ({len(sweep.cells)} cells) matches {filters or 'the filters'}")
        return 1

    if args.dry_run:
        for i, cell in enumerate(cells, 1):
            print(f"{i:4} {cell.id}  ({describe_length(cell.workload)})")
        for cell, reason in sweep.not_applicable:
            print(f"   - {cell.id}  (not applicable: {reason})")
        print(f"{len(cells)} cells x {sweep.repetitions} repetitions")
        return 0

    started_at = datetime.datetime.now(datetime.timezone.utc)
    results_file, plot_dir = output_paths(args, sweep.name, started_at)
    run_sweep(sweep, cells, driver, results_file, started_at, overrides)
    if not args.no_plots:
        plotted = subprocess.run(["/usr/bin/python3", str(PLOT_SCRIPT), str(results_file), "--out", str(plot_dir)])
        if plotted.returncode != 0:
            log("run.py: plotting failed (the results are written; re-run plots/plot.py on them)")
            return 1
    print(f"\nresults: {display_path(results_file)}")
    if not args.no_plots:
        print(f"plots:   {display_path(plot_dir)}/")
    if not args.publish:
        print("(committed figures unchanged; --publish writes experiments/results/ and plots/)")
    return 0


def describe_length(workload: sweeps.Workload) -> str:
    if workload.scenario == "seed":
        return "runs to completion"
    return f"{workload.ops} ops" if workload.ops is not None else f"{workload.duration_s:g} s"


def display_path(path: Path) -> str:
    """Relative to the repository when inside it: what a user pastes into the next command."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
