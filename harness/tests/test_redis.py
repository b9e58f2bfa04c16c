"""The redis peers (store_redis.cpp): tiny cells through the driver and through run.py, the
same answers as a table, a missing redis-server reported as a skip, and no redis-server,
socket or directory left behind, even when the driver is interrupted or killed mid-run.

Needs the built driver ($SHMHT_DRIVER, set by meson test). Tests that run Redis are
skipped where the driver reports the redis stores unavailable (no redis-server, no
hiredis); the skip path itself is tested everywhere.
"""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness_support import (DRIVER, HARNESS, left_behind, redis_servers, redis_servers_left_behind,
                             run_sweep)

sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(HARNESS.parent / "plots"))

import run as harness_run  # noqa: E402  (for the leftover sweep-up run.py does after a killed driver)

pytestmark = pytest.mark.skipif(not DRIVER, reason="SHMHT_DRIVER is not set (run through meson test)")

REDIS_STORES = ("redis", "redis-pipelined")
MIX = "get=40,insert=20,assign=20,erase=20"


@functools.cache
def redis_unavailable_reason():
    listing = json.loads(subprocess.run([DRIVER, "--list-stores"], stdout=subprocess.PIPE, text=True, timeout=30,
                                        check=True).stdout)
    reasons = {s["name"]: s["unavailable_reason"] for s in listing["stores"] if s["name"] in REDIS_STORES}
    assert set(reasons) == set(REDIS_STORES), "the driver does not list the redis stores"
    return reasons["redis"]


needs_redis = pytest.mark.skipif(bool(DRIVER) and redis_unavailable_reason() is not None,
                                 reason=f"redis stores unavailable: {DRIVER and redis_unavailable_reason()}")


def prefix(tag):
    return f"shmht-bench-test-{os.getpid()}-{tag}-"


def drive(store, *args, env=None, tag="cell"):
    done = subprocess.run([DRIVER, "--store", store, "--name-prefix", prefix(tag), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    return done, json.loads(done.stdout) if done.stdout else None


def wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@needs_redis
@pytest.mark.parametrize("store", REDIS_STORES)
def test_a_tiny_cell_reports_its_rows_and_its_server(store):
    before = left_behind()
    done, result = drive(store, "--processes", "2", "--keys", "2000", "--mix", MIX, "--ops", "10000", "--batch", "16",
                         "--prefill", "0.5")
    assert done.returncode == 0, (done.stderr, result and result["error"])
    assert result["status"] == "ok" and result["config"]["store_family"] == "peer"
    assert result["config"]["pipeline_depth"] == (16 if store == "redis-pipelined" else 1)
    aggregate = result["aggregate"]
    assert aggregate["ops"] == 10000 and aggregate["errors"] == 0
    assert all(aggregate["ops_by_type"][op] > 0 for op in ("get", "insert", "assign", "erase"))
    assert [w["status"] for w in result["workers"]] == ["done", "done"]
    assert aggregate["latency_ns"]["p50"] > 0
    server = result["server"]
    assert server["program"] == "redis-server" and server["version"] and server["pid"] > 0
    assert server["user_s"] >= 0 and server["sys_s"] >= 0
    footprint = result["footprint"]
    assert footprint["items"] > 0 and footprint["resident_bytes"] > 0
    assert "redis-server heap" in footprint["location"]
    assert result["timing"]["prefill_s"] > 0
    assert not redis_servers(prefix("cell")), "the server outlived its run"
    assert left_behind() <= before, "the run left its socket directory behind"


@needs_redis
def test_redis_gives_the_same_answers_as_a_table():
    """One process and a fixed op count replay the same operations on every store, so a
    correct store counts exactly the same misses per operation, and ends with the same
    number of items, as the global engine (std-unordered-map when global is not built)."""
    args = ["--processes", "1", "--keys", "2000", "--mix", MIX, "--ops", "20000", "--prefill", "0.5", "--batch", "32"]
    _, reference = drive("global", *args)
    if reference["status"] != "ok":
        _, reference = drive("std-unordered-map", *args)
    assert reference["status"] == "ok", reference["error"]
    for store in REDIS_STORES:
        _, result = drive(store, *args)
        assert result["status"] == "ok", result["error"]
        assert result["aggregate"]["misses_by_type"] == reference["aggregate"]["misses_by_type"], store
        if reference["footprint"]["items"] is not None:
            assert result["footprint"]["items"] == reference["footprint"]["items"], store


def test_a_missing_redis_server_is_a_skip_with_its_reason(tmp_path):
    """No redis-server on PATH: the driver skips the cell (exit 3) and says why, and a sweep
    skips the store with a line that says why, rather than failing."""
    no_redis = {**os.environ, "PATH": str(tmp_path)}
    for store in REDIS_STORES:
        done, result = drive(store, "--keys", "100", "--ops", "100", env=no_redis)
        assert done.returncode == 3, done.stderr
        assert result["status"] == "skipped"
        assert result["error"] in ("redis-server is not on PATH (install the Debian package redis-server)",
                                   redis_unavailable_reason())  # a driver built without hiredis says that first

    sweep = """
repetitions = 2
peers = ["std-unordered-map", "redis", "redis-pipelined"]
[noise]
sample_s = 0.0
reruns = 0
[workloads.tiny]
keys = 100
ops = 1000
"""
    path = tmp_path / "noredis.toml"
    path.write_text(sweep)
    done = subprocess.run(["/usr/bin/python3", str(HARNESS / "run.py"), "--sweep", str(path), "--driver", DRIVER,
                           "--results", str(tmp_path / "results"), "--no-plots"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120, env=no_redis)
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if "SKIPPED:" in line]
    assert len(skipped) == 2, done.stderr  # once per store: the reason does not change on a re-run
    assert all("redis" in line and "install" in line for line in skipped), skipped


@needs_redis
def test_an_interrupted_driver_stops_its_server_and_cleans_up():
    before = left_behind()
    driver = subprocess.Popen([DRIVER, "--store", "redis", "--processes", "2", "--keys", "1000", "--duration", "30",
                               "--name-prefix", prefix("interrupt")], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: redis_servers(prefix("interrupt")), 10, "the server")
        time.sleep(0.3)  # into the timed phase
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=20)
    finally:
        driver.kill()
        driver.wait()
    result = json.loads(out)
    assert result["status"] == "failed" and "interrupted by signal" in result["error"]
    assert not redis_servers(prefix("interrupt"))
    assert left_behind() <= before


@needs_redis
def test_a_killed_driver_takes_its_server_with_it():
    """SIGKILL gives the driver no chance to clean up: the kernel kills the server
    (PR_SET_PDEATHSIG), and the socket directory is what run.py sweeps up after it."""
    driver = subprocess.Popen([DRIVER, "--store", "redis-pipelined", "--processes", "2", "--keys", "1000",
                               "--duration", "30", "--name-prefix", prefix("kill")], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_servers(prefix("kill")), 10, "the server")
        time.sleep(0.3)
        driver.kill()
        driver.wait(timeout=10)
        wait_for(lambda: not redis_servers(prefix("kill")), 10, "the server to die with its driver")
    finally:
        driver.kill()
        driver.wait()
    removed = harness_run.remove_leftovers(prefix("kill"))
    assert removed == [f"/dev/shm/{prefix('kill')}redis"]


@needs_redis
def test_a_sweep_runs_both_redis_stores_and_labels_them(tmp_path):
    before = left_behind()
    done, results, plots = run_sweep(tmp_path, "tiny", """
repetitions = 1
batch = 8
peers = ["redis", "redis-pipelined"]
processes = [1, 2]
timeout_s = 30
[noise]
sample_s = 0.05
reruns = 0
[workloads.tiny]
keys = 2000
mix = { get = 70, insert = 10, assign = 10, erase = 10 }
ops = 4000
""", DRIVER)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(t) for t in next((results / "tiny").glob("*.jsonl")).read_text().splitlines()]
    assert {(l["cell"]["store"], l["cell"]["processes"], l["status"]) for l in lines} == {
        (s, n, "ok") for s in REDIS_STORES for n in (1, 2)}
    for line in lines:
        assert line["aggregate"]["ops"] == 4000 and line["aggregate"]["errors"] == 0
        assert line["server"]["program"] == "redis-server"
        assert line["config"]["pipeline_depth"] == (8 if line["cell"]["store"] == "redis-pipelined" else 1)
    assert (plots / "throughput-tiny.png").stat().st_size > 0
    assert (plots / "bytes-per-item.png").stat().st_size > 0

    import plot  # plots/plot.py: the legend says what is pipelined, and how deeply
    series = plot.group_series(lines, "tiny")
    assert set(series) == {"redis", "redis-pipelined, 8 ops per round trip"}
    assert {entry["family"] for entry in series.values()} == {"peer"}

    assert not redis_servers_left_behind()
    assert left_behind() <= before
