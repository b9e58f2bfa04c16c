"""Sweep files (experiments/*.toml): parsing, validation and expansion into cells.

A sweep is the cartesian product of its dimensions:

    stores (engines + peers + baselines) x workloads x backings x processes
        x placements x memory_policies

Top-level keys give every dimension; each optional ``[[matrix]]`` table overrides some of
them, and the sweep is the union of the matrices (so one file can hold a scaling sweep
and a small backing comparison without the full product of both). Example::

    description = "..."
    repetitions = 3
    engines = ["global", "striped", "seqlock"]
    peers = ["lmdb", "std-unordered-map"]
    processes = [1, 2, 4]
    backings = ["tmpfs"]

    [workloads.read-mostly]
    keys = 100000
    mix = { get = 95, assign = 5 }
    duration_s = 0.5

Errors are SweepError with a message naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("global", "striped", "seqlock", "lockfree")  # shmht::kAllEngines, in order
PEERS = ("lmdb", "lmdb-batched", "boost-interprocess", "std-unordered-map", "redis", "redis-pipelined")
# The seed-emulation stores (store_seed_emulation.cpp: pyshmht as it was, never an
# engine) and python-dict (harness/seed_python.py, run by run.py instead of the driver).
SEED_BASELINES = ("seed-emulation", "seed-emulation-populate", "seed-emulation-right-sized")
PYTHON_BASELINES = {"python-dict": "seed_python.py"}
BASELINES: tuple[str, ...] = (*SEED_BASELINES, *PYTHON_BASELINES)
SCENARIOS = ("mix", "seed")
BACKINGS = ("tmpfs", "disk", "memfd", "hugepages")
PLACEMENTS = ("compact", "scatter", "none")
MEMORY_POLICIES = ("first-touch", "local", "interleave")
OPS = ("get", "insert", "assign", "erase")
DISTRIBUTIONS = ("uniform", "zipf")

# Dimension -> (allowed values or None for positive integers, default).
_LIST_DIMENSIONS: dict[str, tuple[tuple[str, ...] | None, list[Any]]] = {
    "engines": (None, []),  # checked against the known stores
    "peers": (None, []),
    "baselines": (None, []),
    "processes": (None, [1]),
    "backings": (BACKINGS, ["tmpfs"]),
    "placements": (PLACEMENTS, ["compact"]),
    "memory_policies": (MEMORY_POLICIES, ["first-touch"]),
    "workloads": (None, []),  # names from [workloads.*]; default: all of them
}

WORKLOAD_DEFAULTS: dict[str, Any] = {
    "keys": 100_000,
    "key_bytes": 16,
    "value_bytes": 64,
    "mix": {"get": 90, "assign": 10},
    "distribution": "uniform",
    "zipf_theta": 0.99,
    "prefill": 1.0,
    "scenario": "mix",
    "lockstep_every": 0,
    "stop_one": None,
}

NOISE_DEFAULTS = {"max_foreign_cores": 0.3, "sample_s": 0.2, "reruns": 1}


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Workload:
    name: str
    keys: int
    key_bytes: int
    value_bytes: int
    mix: dict[str, int]
    distribution: str
    zipf_theta: float
    prefill: float
    ops: int | None
    duration_s: float | None
    scenario: str = "mix"
    lockstep_every: int = 0
    # "PERIOD_MS:STOPPED_MS": the driver SIGSTOPs worker 0 for STOPPED_MS in every PERIOD_MS
    # of the timed phase (shmht-driver --stop-one); None: never.
    stop_one: str | None = None

    def driver_args(self) -> list[str]:
        args = [
            "--workload-name", self.name,
            "--keys", str(self.keys),
            "--key-bytes", str(self.key_bytes),
            "--value-bytes", str(self.value_bytes),
            "--mix", ",".join(f"{op}={self.mix.get(op, 0)}" for op in OPS),
            "--distribution", self.distribution,
            "--zipf-theta", repr(self.zipf_theta),
            "--prefill", repr(self.prefill),
        ]
        if self.scenario == "seed":
            # It runs to completion: no ops or duration.
            return args + ["--scenario", "seed", "--lockstep", str(self.lockstep_every)]
        if self.ops is not None:
            args += ["--ops", str(self.ops)]
        else:
            args += ["--duration", repr(self.duration_s)]
        if self.stop_one is not None:
            args += ["--stop-one", self.stop_one]
        return args


@dataclass(frozen=True)
class Cell:
    store: str
    family: str  # engine | peer | baseline
    workload: Workload
    backing: str  # "none" for a process-private store
    processes: int
    placement: str
    memory_policy: str

    @property
    def id(self) -> str:
        return "/".join(
            [self.store, self.workload.name, self.backing, f"p{self.processes}", self.placement, self.memory_policy]
        )

    def describe(self) -> dict[str, Any]:
        """The cell as recorded in every result line."""
        return {
            "id": self.id,
            "store": self.store,
            "family": self.family,
            "workload": self.workload.name,
            "backing": self.backing,
            "processes": self.processes,
            "placement": self.placement,
            "memory_policy": self.memory_policy,
        }


@dataclass
class Sweep:
    name: str
    path: Path
    description: str
    repetitions: int
    timeout_s: float
    batch: int
    noise: dict[str, float]
    workloads: dict[str, Workload]
    cells: list[Cell] = field(default_factory=list)
    # Cells dropped because the combination cannot exist (e.g. a one-process store at
    # 2 processes), with the reason; --dry-run lists them.
    not_applicable: list[tuple[Cell, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StoreInfo:
    """What the driver says about a store (shmht-driver --list-stores)."""

    name: str
    family: str
    process_private: bool = False
    backings: tuple[str, ...] = BACKINGS


def default_stores() -> dict[str, StoreInfo]:
    """The stores this source tree knows, for use before a driver is built."""
    stores = {n: StoreInfo(n, "engine") for n in ENGINES}
    stores.update({n: StoreInfo(n, "peer") for n in PEERS})
    stores["std-unordered-map"] = StoreInfo("std-unordered-map", "peer", True, ())
    stores["lmdb"] = StoreInfo("lmdb", "peer", False, ("tmpfs", "disk"))
    stores["lmdb-batched"] = StoreInfo("lmdb-batched", "peer", False, ("tmpfs", "disk"))
    stores["boost-interprocess"] = StoreInfo("boost-interprocess", "peer", False, ("tmpfs",))
    # A private redis-server; tmpfs holds only its socket's directory.
    stores.update({n: StoreInfo(n, "peer", False, ("tmpfs",)) for n in ("redis", "redis-pipelined")})
    stores.update({n: StoreInfo(n, "baseline", False, ("disk", "tmpfs", "hugepages")) for n in SEED_BASELINES})
    stores.update(python_stores())
    return stores


def python_stores() -> dict[str, StoreInfo]:
    """Baselines that run as a Python script rather than in the driver (one process, no backing)."""
    return {n: StoreInfo(n, "baseline", True, ()) for n in PYTHON_BASELINES}


def stores_from_driver_listing(listing: dict[str, Any]) -> dict[str, StoreInfo]:
    return {
        s["name"]: StoreInfo(s["name"], s["family"], bool(s["process_private"]), tuple(s["backings"]))
        for s in listing["stores"]
    }


class _Fields:
    """Typed access to a TOML table; every error names `where` + the field."""

    def __init__(self, path: Path, where: str, table: dict[str, Any]):
        self.path, self.where, self.table = path, where, table

    def fail(self, name: str, problem: str) -> SweepError:
        return SweepError(f"{self.path}: field '{self.where}{name}': {problem}")

    def integer(self, name: str, default: int | None, minimum: int) -> int | None:
        value = self.table.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"{value!r} is not an integer")
        if value < minimum:
            what = "negative" if value < 0 else "too small"
            raise self.fail(name, f"{value} is {what}; it must be at least {minimum}")
        return value

    def number(self, name: str, default: float | None, minimum: float, maximum: float | None = None) -> float | None:
        value = self.table.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, f"{value!r} is not a number")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"in [{minimum}, {maximum}]" if maximum is not None else f"at least {minimum}"
            raise self.fail(name, f"{value} is out of range; it must be {bound}")
        return float(value)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.table.get(name, default)
        if value not in allowed:
            raise self.fail(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def string_list(self, name: str, default: list[Any], allowed: tuple[str, ...] | None) -> list[str]:
        value = self.table.get(name, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"{value!r} is not a list of names")
        if allowed is not None:
            for v in value:
                if v not in allowed:
                    raise self.fail(name, f"unknown value {v!r}; known: {', '.join(allowed)}")
        return value

    def int_list(self, name: str, default: list[int], minimum: int) -> list[int]:
        value = self.table.get(name, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(name, f"{value!r} is not a list of integers")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(name, f"{v!r} is not an integer")
            if v < minimum:
                what = "negative" if v < 0 else "too small"
                raise self.fail(name, f"{v} is {what}; every value must be at least {minimum}")
        return value


def _parse_workload(path: Path, name: str, table: Any) -> Workload:
    if not isinstance(table, dict):
        raise SweepError(f"{path}: field 'workloads.{name}': expected a table")
    merged = {**WORKLOAD_DEFAULTS, **table}
    f = _Fields(path, f"workloads.{name}.", merged)
    known = set(WORKLOAD_DEFAULTS) | {"ops", "duration_s"}
    # None in WORKLOAD_DEFAULTS means "absent": TOML has no null, so it cannot be written.
    for key in table:
        if key not in known:
            raise f.fail(key, f"unknown workload field; known: {', '.join(sorted(known))}")
    scenario = f.choice("scenario", "mix", SCENARIOS)
    if scenario == "seed":
        # pyshmht's multiprocess-test.py: a set pass and two iteration passes, run to the
        # end; the mix, ops and duration do not apply, and nothing is prefilled.
        for key in ("ops", "duration_s", "mix", "distribution", "zipf_theta", "stop_one"):
            if key in table:
                raise f.fail(key, "does not apply to scenario 'seed'")
        if merged.get("prefill", 0) not in (0, 0.0) and "prefill" in table:
            raise f.fail("prefill", "the seed scenario inserts its own keys: prefill must be 0")
        merged["prefill"] = 0.0
        keys = f.integer("keys", None, 1)
        return Workload(name=name, keys=keys, key_bytes=f.integer("key_bytes", None, 2),
                        value_bytes=f.integer("value_bytes", None, 1), mix=dict(merged["mix"]),
                        distribution="uniform", zipf_theta=0.99, prefill=0.0, ops=None, duration_s=None,
                        scenario="seed", lockstep_every=f.integer("lockstep_every", 0, 0))
    if merged["lockstep_every"]:
        raise f.fail("lockstep_every", "applies to scenario 'seed' only")
    mix = merged["mix"]
    if not isinstance(mix, dict) or not mix:
        raise f.fail("mix", "expected a table such as { get = 90, assign = 10 }")
    for op, weight in mix.items():
        if op not in OPS:
            raise f.fail(f"mix.{op}", f"unknown operation; known: {', '.join(OPS)}")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise f.fail(f"mix.{op}", f"{weight!r} is not a non-negative integer weight")
    if sum(mix.values()) == 0:
        raise f.fail("mix", "every weight is 0")
    ops = f.integer("ops", None, 1)
    duration = f.number("duration_s", None, 0.001)
    if (ops is None) == (duration is None):
        raise f.fail("ops", "give exactly one of 'ops' (a total op count) and 'duration_s'")
    keys = f.integer("keys", None, 1)
    key_bytes = f.integer("key_bytes", None, 2)
    needed = len(str(keys - 1)) + 1
    if key_bytes < needed:
        raise f.fail("key_bytes", f"{key_bytes} is too small for {keys} keys; it must be at least {needed}")
    theta = f.number("zipf_theta", None, 0.0, 1.0)
    if not 0 < theta < 1:
        raise f.fail("zipf_theta", f"{theta} must be strictly between 0 and 1")
    stop_one = _parse_stop_one(f, merged["stop_one"])
    return Workload(
        name=name,
        keys=keys,
        key_bytes=key_bytes,
        value_bytes=f.integer("value_bytes", None, 1),
        mix={op: int(mix.get(op, 0)) for op in OPS},
        distribution=f.choice("distribution", "uniform", DISTRIBUTIONS),
        zipf_theta=theta,
        prefill=f.number("prefill", None, 0.0, 1.0),
        ops=ops,
        duration_s=duration,
        stop_one=stop_one,
    )


def _parse_stop_one(f: _Fields, value: Any) -> str | None:
    """stop_one = "PERIOD_MS:STOPPED_MS" with 0 < STOPPED_MS < PERIOD_MS, as the driver checks it."""
    if value is None:
        return None
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise f.fail("stop_one", f"{value!r} is not \"PERIOD_MS:STOPPED_MS\", e.g. \"1000:100\"")
    period, stopped = (int(p) for p in parts)
    if not 0 < stopped < period:
        raise f.fail("stop_one", f"{value!r}: the stop must be shorter than the period and not 0 ms")
    return f"{period}:{stopped}"


def _expand_matrix(
    f: _Fields, sweep: Sweep, stores: dict[str, StoreInfo]
) -> None:
    def names(dimension: str, family: str) -> list[str]:
        listed = f.string_list(dimension, _LIST_DIMENSIONS[dimension][1], None)
        for n in listed:
            info = stores.get(n)
            if info is None or info.family != family:
                known = [s.name for s in stores.values() if s.family == family]
                raise f.fail(dimension, f"unknown {family} {n!r}; known: {', '.join(known) or 'none'}")
        return listed

    store_names = names("engines", "engine") + names("peers", "peer") + names("baselines", "baseline")
    if not store_names:
        raise f.fail("engines", "the sweep names no engine, peer or baseline")
    workload_names = f.string_list("workloads", list(sweep.workloads), tuple(sweep.workloads))
    if not workload_names:
        raise f.fail("workloads", "no workload: add a [workloads.NAME] table")
    processes = f.int_list("processes", [1], 1)
    backings = f.string_list("backings", ["tmpfs"], BACKINGS)
    placements = f.string_list("placements", ["compact"], PLACEMENTS)
    memory = f.string_list("memory_policies", ["first-touch"], MEMORY_POLICIES)

    seen = {c.id for c in sweep.cells}
    for store, workload, backing, n, placement, policy in itertools.product(
        store_names, workload_names, backings, processes, placements, memory
    ):
        info = stores[store]
        reason = None
        if info.process_private:
            backing = "none"  # its data lives in the worker's heap
            if n > 1:
                reason = f"{store} is private to one process"
        elif backing not in info.backings:
            reason = f"{store} does not support backing {backing}"
        cell = Cell(store, info.family, sweep.workloads[workload], backing, n, placement, policy)
        if cell.id in seen:
            continue
        seen.add(cell.id)
        if reason:
            sweep.not_applicable.append((cell, reason))
        else:
            sweep.cells.append(cell)


def load_sweep(path: Path | str, stores: dict[str, StoreInfo] | None = None) -> Sweep:
    """Reads and validates a sweep file and expands its cells."""
    path = Path(path)
    stores = stores if stores is not None else default_stores()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path}: not valid TOML: {error}") from None

    top = _Fields(path, "", data)
    known_top = {"description", "repetitions", "timeout_s", "batch", "noise", "workloads", "matrix"} | set(
        _LIST_DIMENSIONS
    )
    for key in data:
        if key not in known_top:
            raise top.fail(key, f"unknown field; known: {', '.join(sorted(known_top))}")
    raw_workloads = data.get("workloads", {})
    if not isinstance(raw_workloads, dict) or not raw_workloads:
        raise top.fail("workloads", "no workload: add a [workloads.NAME] table")
    noise_table = data.get("noise", {})
    noise_fields = _Fields(path, "noise.", {**NOISE_DEFAULTS, **noise_table})
    for key in noise_table:
        if key not in NOISE_DEFAULTS:
            raise noise_fields.fail(key, f"unknown field; known: {', '.join(NOISE_DEFAULTS)}")
    sweep = Sweep(
        name=path.stem,
        path=path,
        description=str(data.get("description", "")),
        repetitions=top.integer("repetitions", 3, 1),
        timeout_s=top.number("timeout_s", 120.0, 1.0),
        batch=top.integer("batch", 64, 1),
        noise={
            "max_foreign_cores": noise_fields.number("max_foreign_cores", None, 0.0),
            "sample_s": noise_fields.number("sample_s", None, 0.0),
            "reruns": noise_fields.integer("reruns", None, 0),
        },
        workloads={name: _parse_workload(path, name, table) for name, table in raw_workloads.items()},
    )
    # At the top level "workloads" holds the definitions; inside a [[matrix]] it is a
    # list of names. Either way a matrix without the list uses every workload.
    defaults = {k: v for k, v in data.items() if k in _LIST_DIMENSIONS and k != "workloads"}
    matrices = data.get("matrix")
    if matrices is None:
        _expand_matrix(_Fields(path, "", defaults), sweep, stores)
    else:
        if not isinstance(matrices, list):
            raise top.fail("matrix", "expected [[matrix]] tables")
        for i, matrix in enumerate(matrices):
            _expand_matrix(_Fields(path, f"matrix[{i}].", {**defaults, **matrix}), sweep, stores)
    return sweep


def filter_cells(cells: list[Cell], stores: list[str] | None, processes: list[int] | None) -> list[Cell]:
    """--engines / --procs: keep cells whose store / process count is listed."""
    return [
        c
        for c in cells
        if (not stores or c.store in stores) and (not processes or c.processes in processes)
    ]


def with_duration(cells: list[Cell], duration_s: float) -> list[Cell]:
    """run.py --duration: every cell runs for `duration_s` seconds instead of its
    workload's ops or duration_s. A seed-scenario cell runs to completion whatever the
    duration, so it stays as it is."""
    if not duration_s > 0:
        raise SweepError(f"--duration must be a positive number of seconds; got {duration_s}")
    return [c if c.workload.scenario == "seed" else
            dataclasses.replace(c, workload=dataclasses.replace(c.workload, ops=None, duration_s=duration_s))
            for c in cells]


def sweeps_in(directory: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.glob("*.toml"))}
