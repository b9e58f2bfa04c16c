"""A tiny sweep end to end: 2 processes, 10k ops, through run.py and plot.py.

Needs the built driver ($SHMHT_DRIVER, set by meson test). Every step has a timeout, and
the test checks that no driver process and no /dev/shm or /tmp file is left behind.
"""

import json
import os
import subprocess
import sys

import pytest

from harness_support import DRIVER, HARNESS, PYTHON, RUN, left_behind, run_sweep

pytestmark = pytest.mark.skipif(not DRIVER, reason="SHMHT_DRIVER is not set (run through meson test)")

TINY = """
repetitions = 1
engines = ["global", "striped"]
peers = ["lmdb", "std-unordered-map"]
processes = [1, 2]
timeout_s = 30
[noise]
sample_s = 0.05
reruns = 0
[workloads.tiny]
keys = 2000
mix = { get = 70, insert = 10, assign = 10, erase = 10 }
ops = 10000
"""

RUN_KEYS = {"schema", "status", "error", "date", "config", "machine", "topology", "backing", "placement",
            "workers", "aggregate", "footprint", "timing", "sweep", "cell", "repetition", "attempt", "noise",
            "driver_command", "driver_exit", "server"}
AGGREGATE_KEYS = {"ops", "ops_by_type", "misses_by_type", "errors", "elapsed_s", "throughput_ops_s",
                  "latency_ns", "cpu", "faults", "context_switches"}



def our_drivers():
    """shmht-driver processes that are children of this test's process tree."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], stdout=subprocess.PIPE, text=True).stdout
    return [line for line in out.splitlines() if "shmht-driver" in line and str(os.getpid()) in line.split()[1:2]]


def test_tiny_sweep_writes_the_schema_and_a_plot(tmp_path):
    before = left_behind()
    done, results, plots = run_sweep(tmp_path, "tiny", TINY, DRIVER)
    assert done.returncode == 0, done.stderr
    assert "cell 1/" in done.stderr and "eta" in done.stderr  # the progress line

    files = list((results / "tiny").glob("*.jsonl"))
    assert len(files) == 1
    lines = [json.loads(t) for t in files[0].read_text().splitlines()]
    ok = [l for l in lines if l["status"] == "ok"]
    skipped = [l for l in lines if l["status"] == "skipped"]
    assert {l["cell"]["store"] for l in ok} >= {"global", "lmdb", "std-unordered-map"}
    for line in lines:
        assert RUN_KEYS <= set(line), RUN_KEYS - set(line)
        assert line["schema"] == "shmht-harness-run/1"
    for line in ok:
        assert AGGREGATE_KEYS <= set(line["aggregate"])
        assert line["aggregate"]["ops"] == 10000
        assert line["aggregate"]["errors"] == 0
        assert len(line["workers"]) == line["cell"]["processes"]
        assert line["aggregate"]["latency_ns"]["p50"] > 0
        assert {"loaded", "foreign_cores_before"} <= set(line["noise"])
    table = [l for l in ok if l["cell"]["store"] == "global" and l["cell"]["processes"] == 2][0]
    assert table["footprint"]["items"] > 0 and table["footprint"]["resident_bytes_per_item"] > 0
    assert len(table["placement"]["workers"]) == 2
    # An engine this build lacks is reported, not silently dropped.
    if not any(l["cell"]["store"] == "striped" and l["status"] == "ok" for l in lines):
        assert any(l["cell"]["store"] == "striped" and "not built" in l["error"] for l in skipped)

    assert (plots / "throughput-tiny.png").stat().st_size > 0
    assert (plots / "bytes-per-item.png").stat().st_size > 0
    assert left_behind() <= before, "a run left files behind"
    assert not our_drivers()


def test_plots_regenerate_from_results_alone(tmp_path):
    line = {"schema": "shmht-harness-run/1", "status": "skipped", "cell": {"workload": "w"}}
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(line) + "\n")
    done = subprocess.run([PYTHON, str(HARNESS.parent / "plots" / "plot.py"), str(results), "--out",
                           str(tmp_path / "p")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode != 0 and "no successful run" in done.stderr


def test_driver_kills_overrunning_workers_and_cleans_up():
    before = left_behind()
    done = subprocess.run([DRIVER, "--store", "global", "--processes", "2", "--keys", "1000", "--duration", "30",
                           "--timeout", "1", "--name-prefix", f"shmht-bench-test-{os.getpid()}-"],
                          stdout=subprocess.PIPE, text=True, timeout=20)
    result = json.loads(done.stdout)
    assert done.returncode == 1
    assert result["status"] == "failed" and "timeout" in result["error"]
    assert [w["status"] for w in result["workers"]] == ["killed", "killed"]
    assert left_behind() <= before


def test_bad_sweep_file_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('engines = ["global", "warp-drive"]\n[workloads.w]\nkeys = 10\nops = 10\n')
    done = subprocess.run([PYTHON, str(RUN), "--sweep", str(bad), "--driver", DRIVER, "--dry-run"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode != 0
    assert "field 'engines'" in done.stderr and "warp-drive" in done.stderr


def test_driver_json_escapes_any_string_and_stays_utf8():
    """Strings from the command line (like worker errors) reach the JSON as given: quotes,
    backslashes and control characters escaped, and bytes that are not UTF-8 replaced by
    U+FFFD, so that run.py, which decodes the driver's stdout as strict UTF-8, can always
    read the result."""
    label = b'q"uote\\back\nline\ttab\x01ctl\x7f\xffend'
    done = subprocess.run([os.fsencode(DRIVER), b"--store", b"std-unordered-map", b"--keys", b"100", b"--ops",
                           b"100", b"--workload-name", label,
                           b"--name-prefix", f"shmht-bench-test-{os.getpid()}-".encode()],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.decode("utf-8"))  # strict, as run.py reads it
    assert result["config"]["workload"]["name"] == 'q"uote\\back\nline\ttab\x01ctl\x7f\ufffdend'


def test_driver_help_and_usage_errors():
    """--help goes to stdout with exit 0; a bad flag or value exits 2 with a line naming it
    and a pointer to --help on stderr (not the whole usage), and no JSON."""
    done = subprocess.run([DRIVER, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert done.returncode == 0 and "--processes" in done.stdout and done.stderr == ""
    for args, named in [(["--processes", "-1"], "--processes"), (["--bogus", "1"], "--bogus"),
                        (["--mix", "get=x"], "--mix"), (["--distribution", "normal"], "--distribution")]:
        done = subprocess.run([DRIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert done.returncode == 2 and done.stdout == "", (args, done.returncode, done.stdout)
        assert named in done.stderr and "--help" in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr
