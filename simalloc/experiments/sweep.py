"""Sweeps: a grid of release policies, their knobs, workloads and seeds, one fresh process per point.

``simalloc sweep`` (:mod:`.sweep_cli`) explores a policy's knobs instead of one A/B at a time::

    policies x knob / option axes x workloads x working sets x seeds   ->  points
        |                                                                 |
        |   run_point: a fresh interpreter per point (run_once inside)    v
        +--------------------------------------------------------->  OUT/points.csv  (a row per
                                                                     finished point, flushed)
    at the end (and on Ctrl-C):  OUT/points.parquet, OUT/pareto.png, the Pareto table

**Grid keys** (``--grid KEY=V1,V2,...``, one axis each; the product of all axes is run):

* ``policy``, ``workload``, ``seed``, ``ws`` -- the reserved axes (also ``--policy`` etc.);
  a policy is a built-in of the trace commands (``fast``, ``lean``, ``lean-free``,
  ``lean-dontneed``, ``slab-purge``: ``lean`` also sets ``mem_lean=1``), a preset of
  :mod:`simalloc.presets` (``jemalloc-decay``, ...) or ``module:Class``; a workload is a name of
  :data:`simalloc.workloads.WORKLOADS` or an op-stream ``.npz`` file (workload ``trace``);
* an option name or environment name (``mem_lean_target_mb``, ``HAKMEM_SS_MEM_LEAN_DECOMMIT``):
  a config override, applied to every policy;
* a knob of a policy: a keyword argument of its constructor (a preset's knobs are its
  constructor arguments, listed by ``PresetPolicy.knobs()``; ``slab-purge`` has ``delay_ops``
  and ``advice``); applied to the policies that take it, so ``--policy fast,jemalloc-decay
  --grid dirty_decay_ms=0,1000`` runs fast once.  ``POLICY.KNOB`` (``jemalloc-decay.background``)
  scopes an axis to one policy;
* ``param.NAME``: a workload parameter (``param.burst_mb=8,24``).

Any other key is a :class:`~simalloc.errors.ConfigError` naming it, raised before anything runs
(as is a bad value: every point's config is validated and its policy constructed first).

**The FAST reference**: unless ``reference=False``, each (workload, ws, seed) also runs
``policy=fast`` with the fixed overrides only (``reference`` column True); the Pareto table and
plot measure every point against it.

**Keys and resume.**  A point's ``key`` is a hash of everything that defines it (policy, knobs,
config overrides, workload and its parameters, ws, seed, ops, epochs).  Rows are appended to
``points.csv`` as points finish; rerunning the same sweep skips every key that already has a
row without an error (failed points are retried; the final table keeps a key's latest row).

**Each point in a fresh process**, run by :mod:`.sweep_run` (local threads or Dask, a fresh
interpreter per point running :func:`~.metrics.run_once`); this module defines the points,
their rows and the results file.

**Row columns** (:func:`row_columns`): the point's parameters, one column per grid axis, then
``timed_ops`` (what the workload ran for the requested ``ops``), ``ops_per_s``;
``peak_resident_bytes``, ``mean_resident_bytes`` (averaged over operations: an idle gap, which
is no operation, weighs nothing), ``mean_resident_virtual_bytes`` (averaged over the heap's
virtual time: idle gaps weigh their length -- the mean for workloads with idle phases, see
:func:`idle_workloads`), ``final_resident_bytes`` (the heap's exact resident model over the
timed part, :mod:`.metrics`); ``process_peak_rss_bytes``
(the point's own interpreter: VmHWM incl. Python); ``syscalls_per_op`` (timed part); by kind
``mmap_per_op``, ``munmap_per_op``, ``madvise_per_op`` (the heap's whole life incl. warm-up,
divided by the timed ops); ``refaults_per_op`` and ``refault_bytes_per_op`` when the run
results carry refaults; ``drift_pct``, ``drift_settled_pct``, ``epoch_cv_pct``; ``error``,
timestamps and the wall time of the point.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..options import OPTIONS
from ..policy import BUILTIN_POLICIES  # built-in names -> overrides (one table)
from .metrics import RunResult
from .overrides import merge_overrides, option_name, parse_scalar, validate_overrides

__all__ = ["RESERVED", "Point", "PointsFile", "SweepSpec", "build_overrides", "expand",
           "idle_workloads", "make_row", "policy_class", "policy_knobs", "row_columns", "utc_now"]

#: Grid keys that are axes of the point itself rather than of the config.
RESERVED = ("policy", "workload", "seed", "ws")
_OPTION_NAMES = frozenset(o.name for o in OPTIONS) | frozenset(e for o in OPTIONS for e in o.env_names)
_METRICS = ("ops_per_s", "peak_resident_bytes", "mean_resident_bytes", "mean_resident_virtual_bytes",
            "final_resident_bytes",
            "process_peak_rss_bytes", "syscalls_per_op", "mmap_per_op", "munmap_per_op",
            "madvise_per_op")
_TAIL = ("drift_pct", "drift_settled_pct", "epoch_cv_pct", "describe", "error", "started_utc",
         "finished_utc", "wall_s")
_REFAULT_COLUMNS = ("refaults_per_op", "refault_bytes_per_op")


# ---------------------------------------------------------------------------- points
@dataclass(frozen=True)
class Point:
    """One run of the sweep.  ``options``: config overrides (option names, string values);
    ``knobs``: the policy's constructor arguments; ``axes``: the grid coordinates (table
    columns; not part of the key)."""

    policy: str
    workload: str
    seed: int
    ws: int | None
    ops: int
    epochs: int
    options: dict[str, str] = field(default_factory=dict)
    knobs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)
    reference: bool = False

    @property
    def key(self) -> str:
        """Hash of the point's parameters (12 hex digits; the resume key)."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("axes", "reference")}
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def config_text(self) -> str:
        """``k=v`` of the options and knobs, sorted (the point's config in one cell)."""
        items = sorted({**self.options, **self.knobs}.items())
        return " ".join(f"{k}={v}" for k, v in items) or "(defaults)"

    def workload_name(self) -> str:
        return "trace" if self.workload.endswith(".npz") else self.workload

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Point:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def policy_class(name: str) -> type | None:
    """The class whose constructor arguments are ``name``'s knobs (None: options only)."""
    from ..policy import PRESETS, DelayedSlabPurgePolicy

    if name == "slab-purge":
        return DelayedSlabPurgePolicy
    if name in BUILTIN_POLICIES or name == "auto":
        return None
    if ":" in name:
        import importlib

        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"policy {name!r}: cannot load ({exc})") from exc
        return obj if isinstance(obj, type) else None
    import importlib

    importlib.import_module("simalloc.presets")  # fills PRESETS
    cls = PRESETS.get(name)
    if cls is None:
        names = ", ".join([*BUILTIN_POLICIES, *PRESETS])
        raise ConfigError(f"policy {name!r}: expected {names} or module:Class")
    return cls if isinstance(cls, type) else None


def policy_knobs(name: str) -> tuple[str, ...]:
    """Keyword arguments of the policy's constructor (``time_source`` excluded)."""
    cls = policy_class(name)
    if cls is None:
        return ()
    params = inspect.signature(cls).parameters.values()
    return tuple(p.name for p in params if p.name not in ("self", "time_source")
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep (see the module docstring).  ``grid``: ``(key, values)`` axes as given;
    ``overrides``: fixed config overrides (``--set``); ``params``: fixed workload parameters;
    ``ops`` None: each workload's default (a trace: its whole stream)."""

    policies: tuple[str, ...] = ("fast", "lean")
    workloads: tuple[str, ...] = ("mixed",)
    seeds: tuple[int, ...] = (1,)
    ws: tuple[int | None, ...] = (None,)
    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()
    overrides: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    ops: int = 200_000
    epochs: int = 5
    reference: bool = True


def _int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--grid {key}={text!r}: expected an integer") from None


def _axes(spec: SweepSpec) -> tuple[SweepSpec, list[tuple[str, tuple[str, ...]]]]:
    """Fold the reserved grid keys into ``spec``; the rest are the config/knob axes."""
    reserved: dict[str, tuple[str, ...]] = {}
    rest: list[tuple[str, tuple[str, ...]]] = []
    for key, values in spec.grid:
        if not values or any(v == "" for v in values):
            raise ConfigError(f"--grid {key}: expected KEY=V1,V2,... with no empty value")
        (reserved.__setitem__(key, values) if key in RESERVED else rest.append((key, values)))
    pols = reserved.get("policy", spec.policies)
    wls = reserved.get("workload", spec.workloads)
    seeds = tuple(_int("seed", s) for s in reserved["seed"]) if "seed" in reserved else spec.seeds
    ws = (tuple(None if s.lower() == "none" else _int("ws", s) for s in reserved["ws"])
          if "ws" in reserved else spec.ws)
    if not pols or not wls or not seeds or not ws:
        raise ConfigError("a sweep needs at least one policy, workload, seed and ws")
    out = SweepSpec(policies=tuple(pols), workloads=tuple(wls), seeds=seeds, ws=ws, grid=spec.grid,
                    overrides=spec.overrides, params=spec.params, ops=spec.ops, epochs=spec.epochs,
                    reference=spec.reference)
    return out, rest


def _classify(key: str, policies: Sequence[str], knobs: Mapping[str, tuple[str, ...]]) -> tuple[str, str | None]:
    """(kind, scope) of a grid key: kind ``option``, ``knob`` or ``param``; scope the one
    policy a ``POLICY.KNOB`` key names.  Raises ConfigError naming an unknown key."""
    if key.startswith("param.") and len(key) > 6:
        return "param", None
    if key in _OPTION_NAMES:
        return "option", None
    if any(key in k for k in knobs.values()):
        return "knob", None
    scope, dot, knob = key.rpartition(".")
    if dot and scope in knobs:
        if knob in _OPTION_NAMES or knob in knobs[scope]:
            return ("option" if knob in _OPTION_NAMES else "knob"), scope
        raise ConfigError(f"--grid {key}: {knob!r} is not an option or a knob of {scope} "
                          f"(its knobs: {', '.join(knobs[scope]) or 'none'})")
    listed = "; ".join(f"{p}: {', '.join(k)}" for p, k in knobs.items() if k) or "none"
    raise ConfigError(f"--grid {key}: not a grid key -- expected policy, workload, seed, ws, an option "
                      f"(simalloc options), param.NAME or a knob of a policy in the sweep ({listed})")


def _workload_point(workload: str) -> tuple[str, dict[str, Any]]:
    """(workload as keyed, its parameters): an ``.npz`` path becomes an absolute path."""
    if workload.endswith(".npz"):
        path = os.path.abspath(workload)
        if not os.path.isfile(path):
            raise ConfigError(f"workload {workload!r}: no such op-stream file")
        return path, {"path": path}
    if "." in os.path.basename(workload) or os.sep in workload:
        raise ConfigError(f"workload {workload!r}: a trace must be an op-stream .npz (convert it with "
                          f"'simalloc replay TRACE --save OUT.npz')")
    return workload, {}


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep, validated (config, policy construction, workload); raises
    ConfigError naming the first bad key or value.  Duplicates (a knob axis over a policy
    without that knob) are merged; the FAST references come last."""
    from ..workloads import get_workload

    spec, axes = _axes(spec)
    knobs = {p: policy_knobs(p) for p in spec.policies}
    kinds = [(key, *_classify(key, spec.policies, knobs), values) for key, values in axes]
    fixed = {option_name(k): v for k, v in spec.overrides.items()}
    points: dict[str, Point] = {}
    checked: set[str] = set()
    base_axes = [(w, ws, s) for w in spec.workloads for ws in spec.ws for s in spec.seeds]
    for pol in spec.policies:
        mine = [(key, kind, scope, vals) for key, kind, scope, vals in kinds
                if (scope in (None, pol)) and (kind != "knob" or key.rpartition(".")[2] in knobs[pol])]
        for combo in itertools.product(*[vals for *_, vals in mine]):
            opts, kn, prm, ax = dict(fixed), {}, dict(spec.params), {}
            for (key, kind, _scope, _vals), val in zip(mine, combo, strict=True):
                name = key.rpartition(".")[2]
                ax[key] = val
                if kind == "option":
                    opts[option_name(name)] = val
                elif kind == "knob":
                    kn[name] = parse_scalar(val)
                else:
                    prm[name] = parse_scalar(val)
            for wl, ws, seed in base_axes:
                wkey, wparams = _workload_point(wl)
                p = Point(policy=pol, workload=wkey, seed=seed, ws=ws, ops=spec.ops, epochs=spec.epochs,
                          options=opts, knobs=kn, params={**prm, **wparams}, axes=ax)
                points.setdefault(p.key, p)
    if spec.reference:
        for wl, ws, seed in base_axes:
            wkey, wparams = _workload_point(wl)
            p = Point(policy="fast", workload=wkey, seed=seed, ws=ws, ops=spec.ops, epochs=spec.epochs,
                      options=dict(fixed), params={**spec.params, **wparams}, reference=True)
            if p.key in points:
                points[p.key] = Point(**{**p.as_dict(), "axes": points[p.key].axes})
            else:
                points[p.key] = p
    for p in points.values():
        ck = json.dumps([p.policy, p.options, p.knobs], sort_keys=True, default=str)
        if ck not in checked:
            checked.add(ck)
            build_overrides(p, validate=True)
        wk = json.dumps([p.workload_name(), p.ws, p.params], sort_keys=True, default=str)
        if wk not in checked:
            checked.add(wk)
            get_workload(p.workload_name(), ops=p.ops, ws=p.ws, seed=p.seed, **p.params)
    return list(points.values())


def idle_workloads(points: Sequence[Point]) -> list[str]:
    """The workloads of ``points`` that have idle phases (``OP_IDLE`` rows in the timed part:
    the ``idle`` workload with ``idle_s > 0``, a trace whose times give idle rows), in order.
    For them a mean over operations ignores the idle gaps; ``mean_resident_virtual_bytes``
    weighs them (``simalloc sweep`` then defaults to ``--resident virtual_mean``)."""
    from ..workloads import get_workload

    out: list[str] = []
    seen: set[str] = set()
    for p in points:
        wk = json.dumps([p.workload, p.ws, p.ops, p.params], sort_keys=True, default=str)
        if wk in seen:
            continue
        seen.add(wk)
        w = get_workload(p.workload_name(), ops=p.ops, ws=p.ws, seed=p.seed, **p.params)
        rounds = w.params.get("rounds")
        idle = (w.name == "idle" and float(w.params.get("idle_s") or 0) > 0 and rounds != 0) \
            or int(w.params.get("idle_rows") or 0) > 0
        if idle and p.workload not in out:
            out.append(p.workload)
    return out


def build_overrides(p: Point, validate: bool = False) -> dict[str, Any]:
    """The ``Heap(**overrides)`` of a point: the policy's overrides, the options, and a policy
    instance built with the knobs (if any).  ConfigError for a bad value."""
    base = dict(BUILTIN_POLICIES.get(p.policy, {"policy": p.policy}))
    out: dict[str, Any] = merge_overrides(base, p.options)
    cfg = validate_overrides(out) if validate else None
    if cfg is not None:
        from ..policy import make_policy

        make_policy(cfg)
    if p.knobs:
        cls = policy_class(p.policy)
        if cls is None:
            raise ConfigError(f"policy {p.policy} takes no knobs (got {p.config_text()})")
        try:
            out["policy"] = cls(**p.knobs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"policy {p.policy} with {p.config_text()}: {exc}") from exc
    return out


# ---------------------------------------------------------------------------- one point
def row_columns(grid_keys: Sequence[str]) -> list[str]:
    """The columns of ``points.csv`` for a sweep with these grid axes."""
    refaults = {"refaults", "refaults_per_op"} & {f.name for f in fields(RunResult)}
    return (["key", "policy", "workload", "ws", "seed", "ops", "timed_ops", "epochs", "config", "reference", "kernel",
             *grid_keys, *_METRICS, *(_REFAULT_COLUMNS if refaults else ()), *_TAIL])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_row(point: Point, result: Mapping[str, Any] | None, error: str | None, started: str,
             wall_s: float) -> dict[str, Any]:
    """A ``points.csv`` row from a point and its RunResult dict (None if the process died)."""
    r = dict(result or {})
    ops = int(r.get("ops") or 0)
    row: dict[str, Any] = {
        "key": point.key, "policy": point.policy, "workload": point.workload, "ws": r.get("ws", point.ws),
        "seed": point.seed, "ops": point.ops, "timed_ops": ops, "epochs": point.epochs, "config": point.config_text(),
        "reference": point.reference, "kernel": r.get("kernel", ""), **point.axes}
    for k in ("ops_per_s", "peak_resident_bytes", "mean_resident_bytes", "mean_resident_virtual_bytes",
              "final_resident_bytes", "process_peak_rss_bytes", "syscalls_per_op", "drift_pct", "drift_settled_pct",
              "epoch_cv_pct"):
        row[k] = r.get(k, "")
    for col, k in (("mmap_per_op", "mmap_total"), ("munmap_per_op", "munmap_total"),
                   ("madvise_per_op", "madvise_calls")):
        row[col] = int(r.get(k) or 0) / ops if ops else ""
    if "refaults_per_op" in r or "refaults" in r:
        row["refaults_per_op"] = r.get("refaults_per_op", int(r.get("refaults") or 0) / ops if ops else "")
        rb = r.get("refault_bytes_per_op", int(r.get("refault_bytes") or 0) / ops if ops else "")
        row["refault_bytes_per_op"] = rb
    row["describe"] = r.get("policy", "")
    row["error"] = error or r.get("error") or ""
    row.update(started_utc=started, finished_utc=utc_now(), wall_s=round(wall_s, 3))
    return row


# ---------------------------------------------------------------------------- the results file
class PointsFile:
    """``points.csv``: rows appended (and flushed) as points finish.  An existing file is read
    first (the resume); if its header differs from ``columns`` it is rewritten with the union
    (and without a last row cut short by a kill)."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                old = list(reader.fieldnames or [])
                rows = [dict(r) for r in reader]
            # a row cut short (the sweep killed mid-write) has missing fields: dropped, rerun
            self.rows = [r for r in rows if None not in r.values() and None not in r]
            self.columns += [c for c in old if c not in self.columns]
            if old != self.columns or len(self.rows) != len(rows):
                self._rewrite()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rewrite()
        self._f = self.path.open("a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, self.columns, extrasaction="ignore")

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)

    def done_keys(self) -> set[str]:
        """Keys with a row that has no error (the points a resume skips)."""
        return {r["key"] for r in self.rows if not r.get("error")}

    def append(self, row: Mapping[str, Any]) -> None:
        self._w.writerow(dict(row))
        self._f.flush()
        self.rows.append({k: ("" if row.get(k) is None else str(row.get(k, ""))) for k in self.columns})

    def latest(self) -> list[dict[str, str]]:
        """One row per key, the latest."""
        by_key: dict[str, dict[str, str]] = {}
        for r in self.rows:
            by_key.pop(r["key"], None)
            by_key[r["key"]] = r
        return list(by_key.values())

    def close(self) -> None:
        self._f.close()
