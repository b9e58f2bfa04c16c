"""A tiny sweep end to end: 2 processes, 10k ops, through run.py and plot.py.

Needs the built driver ($SHMHT_DRIVER, set by meson test). Every step has a timeout, and
the test checks that no driver process and no /dev/shm or /tmp file is left behind.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    assert (plots / "tail-tiny.png").stat().st_size > 0
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
                        (["--mix", "get=x"], "--mix"), (["--distribution", "normal"], "--distribution"),
                        (["--stop-one", "100:100"], "--stop-one"), (["--stop-one", "100"], "--stop-one"),
                        (["--stop-one", "100:0"], "--stop-one"), (["--latency", "some"], "--latency")]:
        done = subprocess.run([DRIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert done.returncode == 2 and done.stdout == "", (args, done.returncode, done.stdout)
        assert named in done.stderr and "--help" in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr


# Issue 22: every operation timed into a histogram per worker, p99.99 and the exact
# maximum, and --stop-one. No assertion depends on how fast anything ran.

def run_driver(*args, timeout=60):
    done = subprocess.run([DRIVER, "--name-prefix", f"shmht-bench-test-{os.getpid()}-", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return done, json.loads(done.stdout) if done.stdout else None


def check_latency(latency, ops, timed):
    """One latency_ns object: ordered percentiles, a max at least every kept sample."""
    assert latency["method"] == "histogram" and latency["timed"] == timed
    assert 0 < latency["relative_error"] < 0.05
    assert latency["clock_read_ns"] > 0
    assert latency["p50"] <= latency["p99"] <= latency["p999"] <= latency["p9999"] <= latency["max"], latency
    sampled = latency["sampled"]
    assert sampled["samples"] > 0
    # The kept samples are some of the timed operations: none above the histogram's max.
    assert sampled["max"] <= latency["max"]
    assert sampled["p999"] <= latency["max"]
    if timed == "every":
        assert latency["samples"] == ops  # every operation is in the histogram
    else:
        assert sampled["samples"] <= latency["samples"] < ops


@pytest.mark.parametrize("timing", ["every", "sampled"])
def test_driver_latency_histogram_counts_the_timed_operations(timing):
    # One process, a fixed op count: the sampler keeps every 8th of 20,000 ops (2,500,
    # below its buffer), so every count here is exact.
    done, result = run_driver("--store", "global", "--keys", "1000", "--ops", "20000", "--latency", timing)
    assert done.returncode == 0, done.stderr
    assert result["config"]["latency_timing"] == timing
    assert result["config"]["stop_one"] is None and result["stop_one"] is None
    latency = result["aggregate"]["latency_ns"]
    check_latency(latency, 20000, timing)
    assert latency["sampled"]["samples"] == 2500
    assert latency["samples"] == (20000 if timing == "every" else 2500)
    assert result["workers"][0]["latency_ns"] == latency  # one worker: the aggregate is its own


def test_driver_stop_one_stops_worker_0_and_still_reports():
    # Windows of 100 ms centred in each 200 ms of a 1 s phase: 5 of them; the parent
    # would have to wake more than 100 ms late for every one to make no stop.
    done, result = run_driver("--store", "seqlock", "--processes", "2", "--keys", "2000", "--mix",
                              "get=50,assign=50", "--duration", "1", "--stop-one", "200:100")
    assert done.returncode == 0, done.stderr
    assert result["status"] == "ok"
    assert result["config"]["stop_one"] == {"period_ms": 200, "stopped_ms": 100, "worker": 0}
    stops = result["stop_one"]
    assert stops["worker"] == 0 and stops["pid"] == result["workers"][0]["pid"]
    assert 1 <= stops["stops"] <= 5 and stops["stopped_s"] > 0
    for worker in result["workers"]:
        assert worker["status"] == "done" and worker["ops"] > 0
        check_latency(worker["latency_ns"], worker["ops"], "every")
    aggregate = result["aggregate"]
    check_latency(aggregate["latency_ns"], aggregate["ops"], "every")
    assert aggregate["ops"] == sum(w["ops"] for w in result["workers"])
    assert aggregate["latency_ns"]["max"] == max(w["latency_ns"]["max"] for w in result["workers"])
    # The survivors: every worker but the stopped one, merged the same way.
    survivors = stops["survivors"]
    others = result["workers"][1:]
    assert survivors["ops"] == sum(w["ops"] for w in others)
    check_latency(survivors["latency_ns"], survivors["ops"], "every")
    assert survivors["latency_ns"]["max"] == max(w["latency_ns"]["max"] for w in others)


def test_driver_kills_a_worker_it_left_stopped_at_the_timeout():
    before = left_behind()
    # Worker 0 is stopped from 0.5 s to 9.5 s of a 30 s phase; the run times out at 1 s
    # while it is stopped (or, on a very late parent, before its stop: then no stop).
    done, result = run_driver("--store", "global", "--processes", "2", "--keys", "1000", "--duration", "30",
                              "--timeout", "1", "--stop-one", "10000:9000", timeout=20)
    assert done.returncode == 1
    assert result["status"] == "failed" and "timeout" in result["error"]
    assert [w["status"] for w in result["workers"]] == ["killed", "killed"]
    assert result["stop_one"]["stops"] in (0, 1)
    for worker in result["workers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)  # reaped: gone, not stopped
    assert left_behind() <= before
    assert not our_drivers()


def synthetic_run(store, workload, processes, repetition, stop_one=None):
    """A result line with the fields plot.py reads, numbers made up."""
    base = 1000 * (1 + processes) * (2 if stop_one else 1)
    return {
        "schema": "shmht-harness-run/1", "status": "ok", "date": "2026-12-07T00:00:00Z",
        "machine": {"cpu_model": "test", "logical_cpus": 2, "kernel": "test"},
        "sweep": {"name": "synthetic", "commit": None}, "noise": {"loaded": False},
        "cell": {"id": f"{store}/{workload}/tmpfs/p{processes}/compact/first-touch", "store": store,
                 "family": "engine", "workload": workload, "backing": "tmpfs", "processes": processes,
                 "placement": "compact", "memory_policy": "first-touch"},
        "config": {"pipeline_depth": 1, "stop_one": stop_one,
                   "workload": {"keys": 100, "key_bytes": 16, "value_bytes": 32, "mix": {"get": 50, "assign": 50},
                                "distribution": "zipf", "zipf_theta": 0.99, "prefill": 1.0, "duration_s": 1.0}},
        "stop_one": dict(stop_one, stops=1, stopped_s=0.1) if stop_one else None,
        "aggregate": {"throughput_ops_s": 1e6 / processes + repetition,
                      "latency_ns": {"p50": 100, "p99": 200, "p999": 400 + repetition, "p9999": base,
                                     "max": 10 * base, "timed": "every"},
                      "cpu": {"sys_share": 0.1}, "faults": {"per_op": 0.0}},
    }


def test_plots_draw_the_tail_and_the_stop_cell_from_results_alone(tmp_path):
    stop = {"period_ms": 1000, "stopped_ms": 100, "worker": 0}
    lines = [synthetic_run(store, "mixed", n, rep) for store in ("seqlock", "lockfree") for n in (2, 4)
             for rep in range(2)]
    lines += [synthetic_run(store, "mixed-stop-one", 4, rep, stop) for store in ("seqlock", "lockfree")
              for rep in range(2)]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(l) + "\n" for l in lines))
    done = subprocess.run([PYTHON, str(HARNESS.parent / "plots" / "plot.py"), str(results), "--out",
                           str(tmp_path / "p")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("throughput-mixed", "tail-mixed", "tail-mixed-stop-one", "stop-one-mixed-stop-one"):
        assert (tmp_path / "p" / f"{name}.png").stat().st_size > 0, name
    # A workload without stops has no stop figure.
    assert not (tmp_path / "p" / "stop-one-mixed.png").exists()


def children_of(pid):
    """{child pid: state letter} from /proc (R running, S sleeping, T stopped, Z zombie)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found[int(entry.name)] = fields[0]
    return found


def test_driver_interrupted_while_a_worker_is_stopped_continues_and_kills_it():
    before = left_behind()
    driver = subprocess.Popen([DRIVER, "--store", "global", "--processes", "2", "--keys", "1000", "--duration", "30",
                               "--timeout", "60", "--stop-one", "10000:9000",
                               "--name-prefix", f"shmht-bench-test-{os.getpid()}-"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait (by state, not by time) until a worker is stopped: from 0.5 s to 9.5 s.
        deadline = time.monotonic() + 20
        while "T" not in children_of(driver.pid).values():
            assert driver.poll() is None and time.monotonic() < deadline, "no worker was ever stopped"
            time.sleep(0.02)
        driver.send_signal(signal.SIGINT)
        stdout, _ = driver.communicate(timeout=20)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    result = json.loads(stdout)
    assert driver.returncode == 1
    assert result["status"] == "failed" and "interrupted" in result["error"]
    assert result["stop_one"]["stops"] == 1
    assert [w["status"] for w in result["workers"]] == ["killed", "killed"]
    for worker in result["workers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)
    assert left_behind() <= before
