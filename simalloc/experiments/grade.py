"""The policy grader: ``simalloc grade POLICY``, in the spirit of CS:APP malloclab's driver.

A release policy is run on a fixed suite of workloads and one real trace, each beside FAST on
the same operation stream, and scored against FAST::

    POLICY --> resolve (built-in name, preset, path.py[:Class], module:Class)
      for each case of SUITE (mixed-400, churn, mstress, idle, trace):
        stream = warm-up rows + timed rows (deterministic, seeded)
        FAST run, POLICY run: fresh heap each, Config.defaults() (the environment is ignored)
          replay the timed rows in CHUNKS pieces; between pieces (untimed):
            verify the stamps of every live block the piece did not touch  (no live byte changed)
            stamp the blocks it allocated (first and last 8 bytes)         (a program's writes)
            heap.check()                                                   (every invariant)
        row: peak / mean resident vs FAST, throughput ratio, syscalls/op, refaults/op,
             page faults/op, correct
    score = 100 x (0.6 U + 0.4 T)      malloclab's P = w U + (1 - w) T, w = 0.6; 0 if not correct
      U = mean over cases of U_w,  U_w = (peak_FAST + mean_FAST) / (peak + mean)   (FAST: 1)
          mean: resident mean per operation; the idle case's over virtual time
      T = mean over cases of T_w,  T_w = 1 / cost_w                               (FAST: 1)
      cost_w = 1 + 100 x max(0, syscalls/op - FAST's) + 50 x max(0, faults/op - FAST's)
          per op: per operation; the idle case's per op of virtual time (ops + idle ns / ns_per_op)

As in malloclab, utilisation weighs 60% and speed 40%; FAST scores 100.  U_w is resident
memory against FAST's (peak plus per-op mean: a policy cannot lower the peak a burst needs, it
can lower what stays between bursts); T_w is a *modelled* speed, the time FAST would take over
the time with the policy's extra syscalls and page faults.

The cost weights are a convention stated in op-equivalents: on the compiled kernel an operation
takes ~30 ns, a madvise / mmap / munmap some microseconds (~100 operations), and a page fault
(a minor fault that zero-fills a page) ~1.5 us (~50 operations).  Faults, not refaults, are
charged: a policy that unmaps instead of decommitting has no refaults (a new mapping's first
touches are not refaults) but pays the same faults.  They are the process's minor faults
(``ru_minflt``) during the timed ``Heap.replay`` calls only; they agree with the page model's
refaults to a few pages and are the same on both kernels (measured: churn, 16,788 +- 5).
Resident figures are the heap's exact page model (``Heap.resident()``: the true peak and the
mean per operation, since the warm-up) and syscalls exact counts, so the score repeats to its
printed digit on every run and both kernels.  The throughput ratio (ops/s over FAST's, timed
``Heap.replay`` calls only; FAST runs first) is shown but not scored: it is noise on a shared
machine, and on the pure-Python kernel the costs of real syscalls and page faults are hidden
under the interpreter's.

One case is idle (:mod:`simalloc.workloads.idle`): bursts, each freed and followed by 10 s of
idle time (``OP_IDLE`` rows: the heap's virtual clock jumps, background policies tick at their
wake-ups, nothing sleeps).  Elsewhere the virtual clock (operations x ``ns_per_op``) never
reaches a decay of seconds, so there clock-driven presets act as FAST.  The idle case is judged
on the resident mean over *virtual* time (``resident_mean_virtual_bytes``: each op lasts
``ns_per_op``, an idle gap its own length; :attr:`GradeCase.mean`), the memory a program idle
most of the time really holds; per operation, the gaps would weigh nothing.  Its cost_w is
spread over virtual time too: the extra syscalls and faults over the run's length in ops
(operations plus the idle time at ``ns_per_op`` each), so releasing what an idle program does
not use costs little, as it does (40 s idle, ~0.1 s of work).  Background and
delayed releases now count (``jemalloc-decay`` purges when activity resumes after a gap longer
than its decay, ``mimalloc-purge`` after its delay, ``JemallocDecayPolicy(background=True)``
while idle); ``tcmalloc-release`` keeps its default ``release_rate=0`` (tcmalloc's: no
background release) and stays FAST.

The grader writes into every block it sees allocated (8 bytes at each end), as a program
would, so resident figures include those pages for every policy alike.

Exercises (:data:`EXERCISES`, ``simalloc grade --exercise N POLICY``; statements in
``docs/exercises.md``): targets on one case's absolute figures.  Exit codes are the command's
(:mod:`simalloc.experiments.grade_cli`).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_IDLE
from ..errors import ConfigError
from ..heap import Heap
from ..options import Config
from ..policy import BUILTIN_POLICIES as POLICY_PRESETS  # the one table of built-in names
from ..policy import PRESETS, ReleasePolicy
from ..workloads import get_workload

__all__ = ["CASES", "CHUNKS", "COST_FAULT", "COST_SYSCALL", "EXERCISES", "METRICS", "POLICY_PRESETS",
           "SCORE_FORMULA", "SUITE", "WEIGHT_MEM", "Exercise", "GradeCase", "PolicySpec",
           "check_exercise", "default_trace", "format_exercise", "format_grade", "grade",
           "resolve_policy", "run_case"]

#: Op-equivalents charged per extra syscall and per extra page fault (module docstring).
COST_SYSCALL = 100.0
COST_FAULT = 50.0
#: Pieces the timed stream is replayed in (a verification point after each).
CHUNKS = 8

#: malloclab's weight of utilisation (``P = w U + (1 - w) T``).
WEIGHT_MEM = 0.6

SCORE_FORMULA = (
    f"score = 100 x ({WEIGHT_MEM:g} x U + {1 - WEIGHT_MEM:g} x T)  (malloclab's P = wU + (1-w)T), "
    "0 if any workload is not correct\n"
    "  U = mean_w U_w,  U_w = (peak_FAST + mean_FAST) / (peak + mean)   [resident; > 1: less than FAST]\n"
    "      mean: resident mean per operation; the idle case's over virtual time (gaps weigh their length)\n"
    "  T = mean_w T_w,  T_w = 1 / cost_w                                [modelled speed; FAST = 1]\n"
    f"  cost_w = 1 + {COST_SYSCALL:g} x max(0, syscalls/op - FAST's) "
    f"+ {COST_FAULT:g} x max(0, faults/op - FAST's)\n"
    "      /op: per operation; the idle case's per op of virtual time (ops + idle ns / ns_per_op)\n"
    "  FAST scores 100; measured throughput is shown but not scored")


@dataclass(frozen=True)
class GradeCase:
    """One workload of the suite: a workload name of :mod:`simalloc.workloads` and its
    parameters (``trace``: the ``path`` is filled in at run time).  ``mean``: the resident
    mean scored, ``"ops"`` (per operation: ``resident_mean_ops_bytes``) or ``"virtual"`` (over
    virtual time, idle gaps at their length: ``resident_mean_virtual_bytes``)."""

    label: str
    workload: str
    ops: int
    about: str
    ws: int | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    mean: str = "ops"

    def __post_init__(self) -> None:
        if self.mean not in _MEANS:
            raise ConfigError(f"case {self.label}: mean={self.mean!r}, expected {' or '.join(_MEANS)}")


#: ``GradeCase.mean`` -> the key of ``Heap.resident()``.
_MEANS = MappingProxyType({"ops": "resident_mean_ops_bytes", "virtual": "resident_mean_virtual_bytes"})


#: The fixed suite (seed 1 throughout).  About 1.08M timed operations per policy.
SUITE: tuple[GradeCase, ...] = (
    GradeCase("mixed-400", "mixed", 200_000,
              "hakmem's bench_random_mixed, WS=400: steady state, nothing ever empties", ws=400),
    GradeCase("churn", "churn", 0,
              "16 MiB bursts freed whole over a steady set, 3 rounds: superslabs empty and refill",
              ws=400, params=MappingProxyType({"burst_mb": 16, "rounds": 3})),
    GradeCase("mstress", "mstress", 0,
              "allocate 10k, free 90%, survivors live 4 phases (8 phases): emptied slabs in "
              "pinned superslabs", params=MappingProxyType({"phases": 8})),
    GradeCase("idle", "idle", 0,
              "bursts of up to 8 MiB freed, each followed by 10 s idle, 4 rounds: judged on "
              "the resident mean over virtual time", ws=400,
              params=MappingProxyType({"rounds": 4, "burst_mb": 8, "idle_s": 10.0}), mean="virtual"),
    GradeCase("trace", "trace", 1 << 40,
              "tests/data/textwork.npz: memray capture of a small real Python program "
              "(55k ops + drain of its leftovers)"),
)
#: The cases by label.
CASES: MappingProxyType[str, GradeCase] = MappingProxyType({c.label: c for c in SUITE})


#: Exercise metrics: name -> (label, function of a run_case row).
METRICS: MappingProxyType[str, tuple[str, Callable[[dict[str, Any]], float]]] = MappingProxyType({
    "mean_mib": ("mean resident MiB", lambda r: r["mean_bytes"] / 2**20),
    "peak_mib": ("peak resident MiB", lambda r: r["peak_bytes"] / 2**20),
    "syscalls_per_mop": ("syscalls per million ops", lambda r: r["syscalls_per_op"] * 1e6),
    "refaults_per_mop": ("refaults per million ops", lambda r: (r["refaults_per_op"] or 0.0) * 1e6),
    "faults_per_mop": ("page faults per million ops", lambda r: r["faults_per_op"] * 1e6),
})


@dataclass(frozen=True)
class Exercise:
    """Targets on one case's figures (each ``metric < limit``; metric names: :data:`METRICS`),
    plus correctness."""

    number: int
    case: str
    targets: tuple[tuple[str, float], ...]
    statement: str


EXERCISES: MappingProxyType[int, Exercise] = MappingProxyType({
    1: Exercise(1, "churn", (("mean_mib", 8.0), ("syscalls_per_mop", 150.0)),
                "churn: keep the mean resident under 8 MiB with fewer than 150 syscalls per "
                "million operations"),
    2: Exercise(2, "churn", (("mean_mib", 16.0), ("syscalls_per_mop", 150.0),
                             ("faults_per_mop", 24000.0)),
                "churn: keep the mean resident under 16 MiB with fewer than 150 syscalls and "
                "fewer than 24,000 page faults per million operations"),
})


def default_trace() -> Path:
    """The suite's trace: ``tests/data/textwork.npz`` of the source tree."""
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "textwork.npz"


# ---------------------------------------------------------------------------- policies
@dataclass(frozen=True)
class PolicySpec:
    """A resolved POLICY argument: config overrides, or a class built fresh for every heap."""

    label: str
    overrides: Mapping[str, Any]
    factory: Callable[[], ReleasePolicy] | None = None

    def heap(self, kernel: str) -> Heap:
        """A fresh heap running this policy (options: ``Config.defaults()``)."""
        cfg = Config.defaults(kernel=kernel, **self.overrides)
        if self.factory is None:
            return Heap(cfg)
        pol = self.factory()
        if not isinstance(pol, ReleasePolicy):
            raise ConfigError(f"{self.label}: the class built a {type(pol).__name__}, "
                              f"not a ReleasePolicy")
        return Heap(cfg, policy=pol)


FAST = PolicySpec("fast", MappingProxyType({"policy": "fast", "mem_lean": False}))


def _policy_class(obj: Any, where: str) -> Callable[[], ReleasePolicy]:
    if not (isinstance(obj, type) and issubclass(obj, ReleasePolicy)):
        raise ConfigError(f"{where} is not a ReleasePolicy subclass")
    return obj


def _load_file(path: Path, cls: str | None, spec: str) -> Callable[[], ReleasePolicy]:
    if not path.is_file():
        raise ConfigError(f"POLICY {spec!r}: no such file {str(path)!r}")
    name = f"_simalloc_grade_{abs(hash(str(path.resolve())))}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise ConfigError(f"POLICY {spec!r}: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        mspec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"POLICY {spec!r}: {path.name} raised {type(exc).__name__}: {exc}") from exc
    if cls is not None:
        if not hasattr(module, cls):
            raise ConfigError(f"POLICY {spec!r}: {path.name} defines no {cls!r}")
        return _policy_class(getattr(module, cls), f"POLICY {spec!r}")
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, ReleasePolicy)
             and v.__module__ == name]
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise ConfigError(f"POLICY {spec!r}: {path.name} defines {len(found)} ReleasePolicy "
                          f"classes ({names}); name one: {path.name}:Class")
    return found[0]


def resolve_policy(spec: str) -> PolicySpec:
    """``spec``: a built-in name (``fast``, ``lean``, ``lean-free``, ``lean-dontneed``,
    ``slab-purge``), a preset (``jemalloc-decay``, ...), ``path.py[:Class]`` or
    ``module:Class``.  Raises :class:`~simalloc.errors.ConfigError` if it names nothing."""
    spec = spec.strip()
    if spec in POLICY_PRESETS:
        return PolicySpec(spec, MappingProxyType(dict(POLICY_PRESETS[spec])))
    importlib.import_module("simalloc.presets")  # registers the presets
    if spec in PRESETS:
        return PolicySpec(spec, MappingProxyType({"policy": spec}))
    head, sep, tail = spec.rpartition(":")
    if spec.endswith(".py") or (sep and head.endswith(".py")):
        path, cls = (Path(head), tail) if sep and head.endswith(".py") else (Path(spec), None)
        return PolicySpec(spec, MappingProxyType({}), _load_file(path, cls or None, spec))
    if sep and head and tail:
        try:
            obj = getattr(importlib.import_module(head), tail)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"POLICY {spec!r}: cannot load ({exc})") from exc
        return PolicySpec(spec, MappingProxyType({}), _policy_class(obj, f"POLICY {spec!r}"))
    names = ", ".join([*POLICY_PRESETS, *PRESETS])
    raise ConfigError(f"POLICY {spec!r}: expected {names}, path.py[:Class] or module:Class")


# ---------------------------------------------------------------------------- one run
def _stream(case: GradeCase, trace: Path | None) -> tuple[np.ndarray, np.ndarray, int]:
    params = dict(case.params)
    if case.workload == "trace":
        path = trace or default_trace()
        if not path.is_file():
            raise ConfigError(f"trace {str(path)!r} not found (pass --trace FILE)")
        params["path"] = str(path)
    w = get_workload(case.workload, ops=case.ops, ws=case.ws, seed=1, **params)
    return w.warmup_stream(), w.op_stream(), w.nslots


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _stamp(slot: int) -> bytes:
    return ((slot * 0x9E3779B97F4A7C15 + 0x5A5A5A5A5A5A5A5A) & (2**64 - 1) | 1).to_bytes(8, "little")


def _verify_and_stamp(heap: Heap, slots: np.ndarray, stamped: np.ndarray,
                      touched: np.ndarray) -> list[str]:
    """Check the stamps of live blocks the last piece did not touch; stamp the touched ones
    that are live.  Returns what was found changed (at most 5 lines)."""
    bad: list[str] = []
    stamped[touched] = False
    for s in np.flatnonzero(stamped):
        p = int(slots[s])
        want = _stamp(int(s))
        v = heap.view(p)
        try:
            n = len(v)
            k = min(n, 8)
            head, tail = bytes(v[:k]), (bytes(v[n - 8:n]) if n >= 16 else want)
        finally:
            v.release()
        if head != want[:k] or tail != want:
            if len(bad) < 5:
                bad.append(f"slot {s} (block {p:#x}): expected {want[:k].hex()} at its ends, "
                           f"found {head.hex()} / {tail.hex()}")
            stamped[s] = False
    for s in touched[slots[touched] != 0]:
        p, want = int(slots[s]), _stamp(int(s))
        v = heap.view(p)
        try:
            n = len(v)
            k = min(n, 8)
            v[:k] = want[:k]
            if n >= 16:  # a second stamp on the block's last bytes (another page, for big blocks)
                v[n - 8:n] = want
            stamped[s] = True
        finally:
            v.release()
    return bad


def run_case(case: GradeCase, policy: PolicySpec, *, kernel: str = "auto",
             trace: Path | None = None, stream: tuple[np.ndarray, np.ndarray, int] | None = None
             ) -> dict[str, Any]:
    """One policy on one case (fresh heap): the figures of a table row, ``correct`` and
    ``errors`` (what failed: a changed live byte, ``check()``, an exception)."""
    warm, ops, nslots = stream if stream is not None else _stream(case, trace)
    out: dict[str, Any] = {"case": case.label, "policy": policy.label, "ops": len(ops),
                           "errors": []}
    try:
        heap = policy.heap(kernel)
    except Exception as exc:  # the policy's constructor (or its prewarm decisions) raised
        out["errors"].append(f"building the heap: {type(exc).__name__}: {exc}")
        out["correct"] = False
        return out
    out["kernel"] = heap.kernel_name
    try:
        slots = np.zeros(max(nslots, 1), dtype=np.uint64)
        stamped = np.zeros(len(slots), dtype=bool)
        heap.replay(warm, slots)
        _verify_and_stamp(heap, slots, stamped, np.unique(warm[:, 1]) if len(warm) else
                          np.zeros(0, dtype=np.int64))
        heap.reset_resident_stats()
        st0 = heap.stats()
        seconds, faults, chunk_s = 0.0, 0, []
        bounds = [len(ops) * i // CHUNKS for i in range(CHUNKS + 1)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            rows = ops[a:b]
            f0, t0 = _minflt(), time.perf_counter()
            heap.replay(rows, slots)
            chunk_s.append(time.perf_counter() - t0)
            seconds += chunk_s[-1]
            faults += _minflt() - f0
            out["errors"] += _verify_and_stamp(heap, slots, stamped, np.unique(rows[:, 1]))
            heap.check()
        st, res = heap.stats(), heap.resident()
        n = max(len(ops), 1)
        idle_ns = int(ops[ops[:, 0] == OP_IDLE, 2].sum()) if len(ops) else 0
        # the run's length in ops: the idle case's counts its idle time at ns_per_op per op
        span = n + (idle_ns / max(float(heap.config.ns_per_op), 1e-9) if case.mean == "virtual" else 0.0)
        out.update({
            "seconds": seconds,
            "chunk_seconds": chunk_s,
            "ops_per_s": len(ops) / seconds if seconds > 0 else math.inf,
            "peak_bytes": int(res["resident_peak_bytes"]),
            "mean_bytes": float(res[_MEANS[case.mean]]),
            "mean_ops_bytes": float(res["resident_mean_ops_bytes"]),
            "mean_virtual_bytes": float(res["resident_mean_virtual_bytes"]),
            "final_bytes": int(res["resident_bytes"]),
            "syscalls": int(st["syscalls"] - st0["syscalls"]),
            "syscalls_per_op": (st["syscalls"] - st0["syscalls"]) / n,
            "refaults": (int(st["refaults"] - st0["refaults"]) if "refaults" in st else None),
            "faults": faults,
            "faults_per_op": faults / n,
            "idle_ns": idle_ns,
            "span_ops": span,
        })
        out["refaults_per_op"] = None if out["refaults"] is None else out["refaults"] / n
    except Exception as exc:  # a student's policy may raise anything: that is a failed run
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        heap.close()
    out["correct"] = not out["errors"]
    return out


# ---------------------------------------------------------------------------- grading
def _case_score(row: dict[str, Any], base: dict[str, Any]) -> tuple[float, float, float]:
    """``(U_w, cost_w, T_w)`` of one case (:data:`SCORE_FORMULA`)."""
    mem = (base["peak_bytes"] + base["mean_bytes"]) / max(row["peak_bytes"] + row["mean_bytes"], 1.0)
    d_sys = max(0.0, row["syscalls_per_op"] - base["syscalls_per_op"])
    d_flt = max(0.0, row["faults_per_op"] - base["faults_per_op"])
    busy = row["ops"] / max(row.get("span_ops", row["ops"]), 1.0)  # 1 but for the idle case
    cost = 1.0 + (COST_SYSCALL * d_sys + COST_FAULT * d_flt) * busy
    return mem, cost, 1.0 / cost


def grade(spec: str | PolicySpec, *, kernel: str = "auto", trace: Path | None = None,
          cases: tuple[GradeCase, ...] = SUITE,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Grade a policy on ``cases`` (default: the whole :data:`SUITE`); returns a dict with
    ``policy``, ``kernel``, ``cases`` (per case: ``policy`` and ``fast`` rows, ``u``,
    ``cost``, ``t``), ``correct``, ``u``, ``t``, ``score`` and ``formula``."""
    pol = spec if isinstance(spec, PolicySpec) else resolve_policy(spec)
    streams = {c.label: _stream(c, trace) for c in cases}  # bad input fails before any run
    out: dict[str, Any] = {"policy": pol.label, "formula": SCORE_FORMULA, "cases": []}
    for c in cases:
        if progress:
            progress(f"grading {c.label} ...")
        base = run_case(c, FAST, kernel=kernel, stream=streams[c.label])
        row = run_case(c, pol, kernel=kernel, stream=streams[c.label])
        entry: dict[str, Any] = {"case": c.label, "about": c.about, "policy": row, "fast": base}
        if row["correct"] and base["correct"]:
            entry["u"], entry["cost"], entry["t"] = _case_score(row, base)
            entry["throughput_ratio"] = row["ops_per_s"] / base["ops_per_s"]
        out["cases"].append(entry)
        out["kernel"] = row.get("kernel", base.get("kernel"))
    out["correct"] = all(e["policy"]["correct"] for e in out["cases"])
    fast_ok = all(e["fast"]["correct"] for e in out["cases"])
    if out["correct"] and fast_ok:
        out["u"] = sum(e["u"] for e in out["cases"]) / len(out["cases"])
        out["t"] = sum(e["t"] for e in out["cases"]) / len(out["cases"])
        out["score"] = 100.0 * (WEIGHT_MEM * out["u"] + (1.0 - WEIGHT_MEM) * out["t"])
    else:
        out["score"] = 0.0
    return out


def _mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def _rate(x: float | None, scale: float = 1e6) -> str:
    return "n/a" if x is None else f"{x * scale:.1f}"


def format_grade(result: dict[str, Any]) -> str:
    """The grader's report: one table per case, then the score and its formula."""
    lines = [f"simalloc grade: policy {result['policy']} against FAST (kernel: {result.get('kernel')})"]
    for e in result["cases"]:
        lines += ["", f"== {e['case']}: {e['about']}"]
        lines.append(f"   {'':<10} {'peak MiB':>9} {'mean MiB':>9} {'ops/s':>11} {'sys/Mop':>9} "
                     f"{'refault/Mop':>12} {'fault/Mop':>10} {'correct':>8}")
        for who in ("fast", "policy"):
            r = e[who]
            name = "FAST" if who == "fast" else "POLICY"
            if r["errors"] and "peak_bytes" not in r:
                lines.append(f"   {name:<10} failed: {r['errors'][0]}")
                continue
            lines.append(f"   {name:<10} {_mib(r['peak_bytes']):>9} {_mib(r['mean_bytes']):>9} "
                         f"{r['ops_per_s']:11.3g} {_rate(r['syscalls_per_op']):>9} "
                         f"{_rate(r['refaults_per_op']):>12} {_rate(r['faults_per_op']):>10} "
                         f"{'yes' if r['correct'] else 'NO':>8}")
            lines += [f"     ! {err}" for err in r["errors"]]
        if "u" in e:
            p, f = e["policy"], e["fast"]
            lines.append(f"   vs FAST: peak {p['peak_bytes'] / max(f['peak_bytes'], 1):.2f}x, "
                         f"mean {p['mean_bytes'] / max(f['mean_bytes'], 1):.2f}x, throughput "
                         f"{e['throughput_ratio']:.2f}x (not scored);  cost "
                         f"{e['cost']:.3f}:  U_w {e['u']:.3f}  T_w {e['t']:.3f}")
    ut = (f"U {result['u']:.3f}   T {result['t']:.3f}    " if "u" in result else "")
    lines += ["", SCORE_FORMULA, "",
              f"correct: {'yes' if result['correct'] else 'NO'}    {ut}SCORE {result['score']:.1f}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- exercises
def check_exercise(number: int, spec: str | PolicySpec, *, kernel: str = "auto",
                   trace: Path | None = None) -> dict[str, Any]:
    """Run exercise ``number``'s case under the policy; ``passed`` and the measured values."""
    ex = EXERCISES.get(number)
    if ex is None:
        raise ConfigError(f"--exercise {number}: expected one of {', '.join(map(str, EXERCISES))}")
    pol = spec if isinstance(spec, PolicySpec) else resolve_policy(spec)
    row = run_case(CASES[ex.case], pol, kernel=kernel, trace=trace)
    checks: list[tuple[str, float, float, bool]] = []
    if row["correct"]:
        for metric, limit in ex.targets:
            label, fn = METRICS[metric]
            value = fn(row)
            checks.append((label, value, limit, value < limit))
    return {"exercise": ex.number, "statement": ex.statement, "policy": pol.label, "row": row,
            "checks": checks, "correct": row["correct"],
            "passed": row["correct"] and all(c[3] for c in checks)}


def format_exercise(result: dict[str, Any]) -> str:
    """PASS / FAIL with each target's measured value."""
    lines = [f"exercise {result['exercise']}: {result['statement']}", f"policy: {result['policy']}"]
    if not result["correct"]:
        lines += [f"  not correct: {err}" for err in result["row"]["errors"]]
    for name, value, limit, ok in result["checks"]:
        lines.append(f"  {name:<26} {value:10.1f}  (target < {limit:g})  {'ok' if ok else 'MISSED'}")
    lines.append("PASS" if result["passed"] else "FAIL")
    return "\n".join(lines)
