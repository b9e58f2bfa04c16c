"""run.py's output places and run-size options: a default run writes a new run directory
and never the committed results and figures the README shows (those only with
--publish); --reps and --duration change what runs; --dry-run with no matching cell
fails and says so.

The end-to-end cases need the built driver ($SHMHT_DRIVER, set by meson test) and run
one-process cells for 0.05 s, so the file takes seconds.
"""

import argparse
import datetime
import json
import subprocess
import sys

import pytest

from harness_support import DRIVER, HARNESS, PYTHON, RUN, left_behind

sys.path.insert(0, str(HARNESS))
import run  # noqa: E402  (after the path tweak above)

needs_driver = pytest.mark.skipif(not DRIVER, reason="SHMHT_DRIVER is not set (run through meson test)")

SMALL = """
repetitions = 3
engines = ["global"]
peers = ["std-unordered-map"]
processes = [1]
timeout_s = 30
[noise]
sample_s = 0.01
reruns = 0
[workloads.small]
keys = 1000
mix = { get = 90, assign = 10 }
ops = 1000000000
"""

STARTED = datetime.datetime(2026, 12, 6, 23, 0, 0, tzinfo=datetime.timezone.utc)


def paths(*argv):
    return run.output_paths(run.parse_arguments(list(argv)), "quick", STARTED)


def test_default_run_goes_to_a_new_run_directory_not_the_committed_files():
    results, plots = paths()
    run_dir = run.RUNS / "20261206T230000Z-quick"
    assert (results, plots) == (run_dir / "results.jsonl", run_dir / "plots")
    assert not results.is_relative_to(run.RESULTS) and not plots.is_relative_to(run.PLOTS)
    # The run directories are ignored by git, so a default run is never committed by accident.
    ignored = subprocess.run(["git", "-C", str(run.ROOT), "check-ignore", "-q", str(results)], timeout=30)
    if ignored.returncode != 128:  # 128: not a git checkout (an unpacked tarball)
        assert ignored.returncode == 0, f"{results} is not git-ignored"


def test_publish_writes_the_committed_results_and_figures():
    assert paths("--publish") == (run.RESULTS / "quick" / "20261206T230000Z.jsonl", run.PLOTS / "quick")


def test_out_results_and_plots_name_the_places(tmp_path):
    assert paths("--out", str(tmp_path)) == (tmp_path / "results.jsonl", tmp_path / "plots")
    assert paths("--results", str(tmp_path / "r"), "--plots", str(tmp_path / "p")) == (
        tmp_path / "r" / "quick" / "20261206T230000Z.jsonl", tmp_path / "p")


@pytest.mark.parametrize("argv, complaint", [
    (["--reps", "0"], "--reps must be at least 1"),
    (["--duration", "-1"], "--duration must be a positive"),
    (["--publish", "--out", "x"], "give one of them"),
])
def test_bad_options_are_usage_errors(argv, complaint):
    done = subprocess.run([PYTHON, str(RUN), *argv, "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)
    assert done.returncode == 2 and complaint in done.stderr, done.stderr


@needs_driver
def test_dry_run_with_no_matching_cell_says_so_and_fails(tmp_path):
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL)
    done = subprocess.run([PYTHON, str(RUN), "--sweep", str(sweep), "--driver", DRIVER, "--dry-run", "--procs", "7"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1, done.stdout
    assert "no cell of sweep 'small' (2 cells) matches --procs 7" in done.stderr, done.stderr
    # and one that matches lists its cells with the overrides applied
    done = subprocess.run([PYTHON, str(RUN), "--sweep", str(sweep), "--driver", DRIVER, "--dry-run", "--reps", "2",
                           "--duration", "0.25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "global/small/tmpfs/p1/compact/first-touch  (0.25 s)" in done.stdout
    assert done.stdout.rstrip().endswith("2 cells x 2 repetitions"), done.stdout


@needs_driver
def test_reps_and_duration_and_the_run_directory(tmp_path):
    """--reps 2 --duration 0.05 on a sweep of 3 repetitions of 10^9 ops: two short runs per
    cell (the sweep's own length would not finish in the test's timeout), results and
    plots in the run directory, the committed figures untouched."""
    committed = {p: p.stat().st_mtime_ns for p in run.PLOTS.glob("*/*.png")}
    before = left_behind()
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL)
    out = tmp_path / "run"
    done = subprocess.run([PYTHON, str(RUN), "--sweep", str(sweep), "--driver", DRIVER, "--reps", "2", "--duration",
                           "0.05", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(t) for t in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((l["cell"]["store"], l["repetition"]) for l in lines) == [
        ("global", 0), ("global", 1), ("std-unordered-map", 0), ("std-unordered-map", 1)]
    for line in lines:
        assert line["status"] == "ok", line.get("error")
        assert line["config"]["workload"]["duration_s"] == 0.05 and line["config"]["workload"]["ops"] is None
        assert line["sweep"]["repetitions"] == 2
        assert line["sweep"]["overrides"] == {"repetitions": 2, "duration_s": 0.05}
        assert line["timing"]["wall_s"] < 10, line["timing"]  # not 10^9 ops
    assert (out / "plots" / "throughput-small.png").stat().st_size > 0
    assert f"results: {out / 'results.jsonl'}" in done.stdout and f"plots:   {out / 'plots'}/" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in run.PLOTS.glob("*/*.png")} == committed, "a committed figure changed"
    assert left_behind() <= before, "a run left files behind"
