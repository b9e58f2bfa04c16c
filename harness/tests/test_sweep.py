"""Sweep files: parsing, cell expansion, and errors that name the field."""

import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HARNESS))

import sweep as sweeps  # noqa: E402

WORKLOAD = """
[workloads.small]
keys = 1000
mix = { get = 80, assign = 20 }
ops = 10000
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cartesian_product_of_every_dimension(tmp_path):
    path = write(tmp_path, """
repetitions = 2
engines = ["global", "striped"]
peers = ["lmdb"]
processes = [1, 2, 4]
backings = ["tmpfs", "disk"]
""" + WORKLOAD + """
[workloads.other]
keys = 10
duration_s = 0.1
""")
    s = sweeps.load_sweep(path)
    assert s.name == "s" and s.repetitions == 2
    assert len(s.cells) == 3 * 2 * 3 * 2  # stores x workloads x processes x backings
    assert len({c.id for c in s.cells}) == len(s.cells)
    first = s.cells[0]
    assert first.id == "global/small/tmpfs/p1/compact/first-touch"
    assert first.workload.mix == {"get": 80, "insert": 0, "assign": 20, "erase": 0}
    assert "--mix" in first.workload.driver_args()


def test_one_process_store_and_unsupported_backings_are_not_applicable(tmp_path):
    path = write(tmp_path, """
peers = ["std-unordered-map", "boost-interprocess"]
processes = [1, 2]
backings = ["tmpfs", "disk"]
""" + WORKLOAD)
    s = sweeps.load_sweep(path)
    ids = [c.id for c in s.cells]
    assert "std-unordered-map/small/none/p1/compact/first-touch" in ids
    assert not any(c.store == "std-unordered-map" and c.processes == 2 for c in s.cells)
    assert not any(c.store == "boost-interprocess" and c.backing == "disk" for c in s.cells)
    reasons = " ".join(r for _, r in s.not_applicable)
    assert "private to one process" in reasons and "does not support backing disk" in reasons


def test_matrices_are_a_union_without_duplicates(tmp_path):
    path = write(tmp_path, """
engines = ["global"]
processes = [1, 2]
[[matrix]]
[[matrix]]
backings = ["tmpfs", "memfd"]
processes = [2]
""" + WORKLOAD)
    ids = [c.id for c in sweeps.load_sweep(path).cells]
    assert ids == ["global/small/tmpfs/p1/compact/first-touch", "global/small/tmpfs/p2/compact/first-touch",
                   "global/small/memfd/p2/compact/first-touch"]


def test_filters_keep_named_stores_and_process_counts(tmp_path):
    path = write(tmp_path, 'engines = ["global", "seqlock"]\npeers = ["lmdb"]\nprocesses = [1, 2, 4]\n' + WORKLOAD)
    cells = sweeps.filter_cells(sweeps.load_sweep(path).cells, ["global", "lmdb"], [2])
    assert sorted(c.id for c in cells) == ["global/small/tmpfs/p2/compact/first-touch",
                                           "lmdb/small/tmpfs/p2/compact/first-touch"]


def test_the_shipped_sweeps_parse():
    for path in sorted((HARNESS.parent / "experiments").glob("*.toml")):
        assert sweeps.load_sweep(path).cells, path


@pytest.mark.parametrize("text, field, words", [
    ('engines = ["global", "turbo"]\n', "engines", "unknown engine 'turbo'"),
    ('peers = ["memcached"]\n', "peers", "unknown peer 'memcached'"),
    ('engines = ["lmdb"]\n', "engines", "unknown engine 'lmdb'"),
    ('engines = ["global"]\nprocesses = [1, -2]\n', "processes", "-2 is negative"),
    ('engines = ["global"]\nprocesses = [0]\n', "processes", "at least 1"),
    ('engines = ["global"]\nrepetitions = -1\n', "repetitions", "negative"),
    ('engines = ["global"]\nbackings = ["nfs"]\n', "backings", "unknown value 'nfs'"),
    ('engines = ["global"]\nplacements = ["spread"]\n', "placements", "unknown value 'spread'"),
    ('engines = ["global"]\nspeed = 3\n', "speed", "unknown field"),
    ('engines = ["global"]\n[noise]\nreruns = -1\n', "noise.reruns", "negative"),
])
def test_bad_sweep_files_name_the_field(tmp_path, text, field, words):
    with pytest.raises(sweeps.SweepError) as error:
        sweeps.load_sweep(write(tmp_path, text + WORKLOAD))
    message = str(error.value)
    assert f"field '{field}'" in message, message
    assert words in message, message


@pytest.mark.parametrize("workload, field, words", [
    ("keys = -5\nops = 10", "workloads.w.keys", "negative"),
    ("keys = 100\nops = 10\nduration_s = 1", "workloads.w.ops", "exactly one"),
    ("keys = 100\nops = 10\nmix = { get = 1, put = 2 }", "workloads.w.mix.put", "unknown operation"),
    ("keys = 100\nops = 10\nmix = { get = -1 }", "workloads.w.mix.get", "non-negative"),
    ("keys = 100\nops = 10\nprefill = 1.5", "workloads.w.prefill", "out of range"),
    ("keys = 100000\nops = 10\nkey_bytes = 4", "workloads.w.key_bytes", "too small"),
    ("keys = 100\nops = 10\ndistribution = 'pareto'", "workloads.w.distribution", "not one of"),
    ("keys = 100\nops = 10\nstop_one = '1000'", "workloads.w.stop_one", "PERIOD_MS:STOPPED_MS"),
    ("keys = 100\nops = 10\nstop_one = 1000", "workloads.w.stop_one", "PERIOD_MS:STOPPED_MS"),
    ("keys = 100\nops = 10\nstop_one = '100:-5'", "workloads.w.stop_one", "PERIOD_MS:STOPPED_MS"),
    ("keys = 100\nops = 10\nstop_one = '100:100'", "workloads.w.stop_one", "shorter than the period"),
    ("keys = 100\nops = 10\nstop_one = '100:0'", "workloads.w.stop_one", "not 0 ms"),
    ("keys = 100\nscenario = 'seed'\nstop_one = '1000:100'", "workloads.w.stop_one", "does not apply"),
])
def test_bad_workloads_name_the_field(tmp_path, workload, field, words):
    with pytest.raises(sweeps.SweepError) as error:
        sweeps.load_sweep(write(tmp_path, f'engines = ["global"]\n[workloads.w]\n{workload}\n'))
    message = str(error.value)
    assert f"field '{field}'" in message, message
    assert words in message, message


def test_not_toml_is_a_clear_error(tmp_path):
    with pytest.raises(sweeps.SweepError, match="not valid TOML"):
        sweeps.load_sweep(write(tmp_path, "engines = [global"))


def test_redis_peers_are_known_and_live_on_tmpfs_only(tmp_path):
    """Redis keeps its data in the server's heap; tmpfs holds only its socket, so other
    backings do not apply."""
    path = write(tmp_path, """
peers = ["redis", "redis-pipelined"]
processes = [1, 2]
backings = ["tmpfs", "disk"]
""" + WORKLOAD)
    s = sweeps.load_sweep(path)
    assert {(c.store, c.family, c.backing, c.processes) for c in s.cells} == {
        (store, "peer", "tmpfs", n) for store in ("redis", "redis-pipelined") for n in (1, 2)}
    assert {c.backing for c, _ in s.not_applicable} == {"disk"}


def test_the_quick_and_compare_sweeps_run_both_redis_peers_at_every_process_count():
    for name in ("quick", "compare"):
        s = sweeps.load_sweep(HARNESS.parent / "experiments" / f"{name}.toml")
        engine_procs = {c.processes for c in s.cells if c.store == "global" and c.backing == "tmpfs"}
        for store in ("redis", "redis-pipelined"):
            assert {c.processes for c in s.cells if c.store == store} == engine_procs, (name, store)


def test_stop_one_is_a_workload_key_passed_to_the_driver(tmp_path):
    path = write(tmp_path, """
engines = ["global"]
processes = [2]
[workloads.plain]
keys = 100
duration_s = 0.5
[workloads.stopped]
keys = 100
duration_s = 0.5
stop_one = "1000:100"
""")
    cells = {c.workload.name: c for c in sweeps.load_sweep(path).cells}
    assert cells["plain"].workload.stop_one is None
    assert "--stop-one" not in cells["plain"].workload.driver_args()
    args = cells["stopped"].workload.driver_args()
    assert args[args.index("--stop-one") + 1] == "1000:100"
    # run.py --duration keeps the stops (it replaces the length only).
    shorter = sweeps.with_duration([cells["stopped"]], 0.2)[0]
    assert shorter.workload.stop_one == "1000:100" and shorter.workload.duration_s == 0.2


def oversubscribed(name):
    return sweeps.load_sweep(HARNESS.parent / "experiments" / f"{name}.toml")


def test_the_oversubscribed_sweep_is_issue_22s_matrix():
    s = oversubscribed("oversubscribed")
    assert s.repetitions == 5
    engines = {"global", "striped", "seqlock", "lockfree"}
    plain = [c for c in s.cells if c.workload.stop_one is None]
    stopped = [c for c in s.cells if c.workload.stop_one is not None]
    assert {(c.store, c.processes) for c in plain} == {(e, n) for e in engines for n in (2, 4, 8, 16)}
    assert {(c.store, c.processes) for c in stopped} == {(e, n) for e in engines for n in (2, 4)}
    assert {c.workload.stop_one for c in stopped} == {"1000:100"}
    for c in s.cells:
        w = c.workload
        # 1 s runs; the stop cells 5 s, so that five stops fall in each run
        assert (w.keys, w.key_bytes, w.value_bytes, w.prefill) == (1_000_000, 16, 32, 1.0)
        assert w.duration_s == (5.0 if w.stop_one else 1.0)
        assert w.mix == {"get": 50, "insert": 0, "assign": 50, "erase": 0}
        assert (w.distribution, w.zipf_theta) == ("zipf", 0.99)


def test_the_16_core_sweep_runs_the_same_workloads_at_1_to_16_processes():
    small, large = oversubscribed("oversubscribed"), oversubscribed("oversubscribed-16core")
    assert small.workloads == large.workloads  # the two machines' results stay comparable
    assert large.repetitions == small.repetitions
    plain = {c.processes for c in large.cells if c.workload.stop_one is None}
    assert plain == set(range(1, 17))
    assert {c.store for c in large.cells} == {c.store for c in small.cells}
