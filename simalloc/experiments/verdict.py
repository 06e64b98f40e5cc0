"""The Phase 54 judgment: GO / NEUTRAL / NO-GO from two sides' metric tables.

Pure functions, no I/O.  A *metric table* is the per-side dict that
:func:`simalloc.experiments.ab.aggregate` produces (``ops_per_s_median``,
``peak_resident_bytes``, ``drift_pct``, ``syscalls_per_op``, ...); side A is the baseline
(FAST), side B the treatment (LEAN).  The criteria are those of
``phase54-memory-lean-results.md``, each threshold a field of :class:`Criteria`:

GO (production-ready) -- *all* of
    B's resident figure < ``rss_target_bytes`` and at least ``rss_go_reduction_pct`` lower
    than A's; B's throughput within ``throughput_min_delta_pct`` of A's; B's drift
    <= ``drift_tolerance_pct``; B's syscalls/op < ``syscalls_go_per_op``; B's CV <
    ``cv_max_pct``.
NO-GO (revert) -- *any* of
    resident reduction < ``rss_nogo_reduction_pct``; B's drift > ``drift_tolerance_pct``
    (a leak); B's syscalls/op > ``syscalls_nogo_per_op`` (syscalls explode); a crash or
    error on either side.
NEUTRAL (research box) -- everything else: e.g. the RSS reduction is there but throughput
    fell more than 10 %, syscalls are above the GO budget but below the explosion line, or
    the variance grew while drift stayed 0.

The verdict carries the label *and* every check (passed or not) with the numbers behind it,
so a report can print the judgment-criteria list with pass/fail marks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GO", "NEUTRAL", "NO_GO", "Check", "Criteria", "Verdict", "judge", "resident_figure"]

GO = "GO"
NEUTRAL = "NEUTRAL"
NO_GO = "NO-GO"

_RESIDENT_KEYS = {
    "peak": "peak_resident_bytes",
    "mean": "mean_resident_bytes",
    "final": "final_resident_bytes",
    "process_peak": "process_peak_rss_bytes",
}
_THROUGHPUT_KEYS = {"median": "ops_per_s_median", "mean": "ops_per_s_mean"}
_CV_KEYS = {"runs": "ops_per_s_cv_pct", "epochs": "epoch_cv_pct"}
_DRIFT_KEYS = {"settled": "drift_settled_pct", "first_last": "drift_pct"}


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the Phase 54 judgment (defaults = the report's numbers).

    Attributes:
        rss_target_bytes: GO needs B's resident figure below this (report: "Peak RSS < 10MB").
        rss_go_reduction_pct: GO needs B's resident figure at least this much lower than A's
            (report: "70% reduction").
        rss_nogo_reduction_pct: NO-GO when the reduction is below this
            (report: "RSS does not reduce significantly (<50%)").
        resident_metric: which resident figure is judged: ``"peak"`` (report's "Peak RSS"),
            ``"mean"``, ``"final"`` (of the heap's own mappings, from pagemap) or
            ``"process_peak"`` (process VmHWM; only meaningful with isolated runs).
        throughput_metric: ``"median"`` (default; quoted on a shared machine) or ``"mean"``.
        throughput_min_delta_pct: GO needs B's throughput >= A's * (1 + this/100)
            (report: "-5% to -10% (acceptable degradation)").
        drift_tolerance_pct: drift above this fails (report: "Drift = 0%"; "Drift >0%" is
            NO-GO).  Drift is B's resident change in % (``drift_metric``).
        drift_metric: ``"settled"`` (default: from the end of the first half of the epochs to
            the last, which ignores the first-touch creep of a short run) or ``"first_last"``
            (first epoch -> last epoch, hakmem's soak definition); see
            :mod:`simalloc.experiments.metrics`.
        syscalls_go_per_op: GO needs B's syscalls/op below this (report: "< 1e-6/op").
        syscalls_nogo_per_op: NO-GO when B's syscalls/op exceed this ("explode (>1e-5/op)").
        cv_max_pct: GO needs B's throughput CV below this (report: "CV < 2%").
        cv_metric: ``"runs"`` (std/mean of per-run throughput, default) or ``"epochs"``
            (per-epoch throughput CV, median over runs).
    """

    rss_target_bytes: int = 10 << 20
    rss_go_reduction_pct: float = 70.0
    rss_nogo_reduction_pct: float = 50.0
    resident_metric: str = "peak"
    throughput_metric: str = "median"
    throughput_min_delta_pct: float = -10.0
    drift_tolerance_pct: float = 0.0
    drift_metric: str = "settled"
    syscalls_go_per_op: float = 1e-6
    syscalls_nogo_per_op: float = 1e-5
    cv_max_pct: float = 2.0
    cv_metric: str = "runs"

    def __post_init__(self) -> None:
        if self.resident_metric not in _RESIDENT_KEYS:
            raise ValueError(f"resident_metric={self.resident_metric!r}: expected one of "
                             f"{', '.join(_RESIDENT_KEYS)}")
        if self.throughput_metric not in _THROUGHPUT_KEYS:
            raise ValueError(f"throughput_metric={self.throughput_metric!r}: expected median or mean")
        if self.drift_metric not in _DRIFT_KEYS:
            raise ValueError(f"drift_metric={self.drift_metric!r}: expected settled or first_last")
        if self.cv_metric not in _CV_KEYS:
            raise ValueError(f"cv_metric={self.cv_metric!r}: expected runs or epochs")
        if self.rss_nogo_reduction_pct > self.rss_go_reduction_pct:
            raise ValueError("rss_nogo_reduction_pct must not exceed rss_go_reduction_pct")
        if self.syscalls_go_per_op > self.syscalls_nogo_per_op:
            raise ValueError("syscalls_go_per_op must not exceed syscalls_nogo_per_op")

    @property
    def resident_key(self) -> str:
        """The metric-table key of the judged resident figure."""
        return _RESIDENT_KEYS[self.resident_metric]

    @property
    def throughput_key(self) -> str:
        return _THROUGHPUT_KEYS[self.throughput_metric]

    @property
    def drift_key(self) -> str:
        return _DRIFT_KEYS[self.drift_metric]

    @property
    def cv_key(self) -> str:
        return _CV_KEYS[self.cv_metric]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One criterion: which verdict it gates (``GO`` or ``NO-GO``), whether it passed (for a
    NO-GO check, *passed* means the NO-GO condition did not occur) and the numbers."""

    gate: str
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} [{self.gate}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    """The label, a one-line reason per deciding check, and every check."""

    label: str
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "reasons": list(self.reasons),
                "checks": [asdict(c) for c in self.checks]}


def _num(table: Mapping[str, Any], key: str) -> float | None:
    v = table.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def resident_figure(table: Mapping[str, Any], criteria: Criteria) -> float | None:
    """The resident figure ``criteria`` judges (bytes), or None if the table lacks it."""
    return _num(table, criteria.resident_key)


def _mib(x: float) -> str:
    return f"{x / (1 << 20):.3f} MiB"


def judge(a: Mapping[str, Any], b: Mapping[str, Any], criteria: Criteria | None = None) -> Verdict:
    """GO / NEUTRAL / NO-GO for treatment ``b`` against baseline ``a`` (module docstring).

    Missing figures fail their check (a table without throughput cannot be GO).  Errors:
    a non-empty ``errors`` list or an ``error`` string in either table is NO-GO."""
    c = criteria or Criteria()
    checks: list[Check] = []

    # -- crash / error ---------------------------------------------------------------
    errs = [f"{side}: {e}" for side, t in (("A", a), ("B", b))
            for e in ([t["error"]] if t.get("error") else []) + list(t.get("errors") or [])]
    checks.append(Check(NO_GO, "no crash or error", not errs,
                        "; ".join(errs) if errs else "every run completed"))

    # -- resident memory ---------------------------------------------------------------
    ra, rb = resident_figure(a, c), resident_figure(b, c)
    label = f"{c.resident_metric} resident"
    if ra is None or rb is None:
        red = None
        checks.append(Check(GO, f"{label} < target", False, "resident figure missing"))
        checks.append(Check(GO, f"{label} reduction >= {c.rss_go_reduction_pct:g}%", False,
                            "resident figure missing"))
        checks.append(Check(NO_GO, f"{label} reduction >= {c.rss_nogo_reduction_pct:g}%", False,
                            "resident figure missing"))
    else:
        red = 100.0 * (ra - rb) / ra if ra > 0 else 0.0
        checks.append(Check(GO, f"{label} < {_mib(c.rss_target_bytes)}", rb < c.rss_target_bytes,
                            f"B {_mib(rb)}"))
        detail = f"A {_mib(ra)} -> B {_mib(rb)}: {red:.1f}% lower" if ra > 0 else \
            f"A {_mib(ra)}: nothing to reduce"
        checks.append(Check(GO, f"{label} reduction >= {c.rss_go_reduction_pct:g}%",
                            red >= c.rss_go_reduction_pct, detail))
        checks.append(Check(NO_GO, f"{label} reduction >= {c.rss_nogo_reduction_pct:g}%",
                            red >= c.rss_nogo_reduction_pct, detail))

    # -- throughput ----------------------------------------------------------------------
    ta, tb = _num(a, c.throughput_key), _num(b, c.throughput_key)
    name = f"throughput ({c.throughput_metric}) >= {c.throughput_min_delta_pct:+g}%"
    if ta is None or tb is None or ta <= 0:
        checks.append(Check(GO, name, False, "throughput missing"))
    else:
        dt = 100.0 * (tb - ta) / ta
        checks.append(Check(GO, name, dt >= c.throughput_min_delta_pct,
                            f"A {ta:,.0f} -> B {tb:,.0f} ops/s ({dt:+.1f}%)"))

    # -- drift -----------------------------------------------------------------------------
    drift = _num(b, c.drift_key)
    dname = f"drift ({c.drift_metric}) <= {c.drift_tolerance_pct:g}%"
    if drift is None:
        checks.append(Check(GO, dname, False, "drift missing"))
        checks.append(Check(NO_GO, f"no leak ({dname})", False, "drift missing"))
    else:
        ok = drift <= c.drift_tolerance_pct
        other = _num(b, _DRIFT_KEYS["first_last" if c.drift_metric == "settled" else "settled"])
        detail = f"B {drift:+.2f}% (heap resident, " + (
            "second half of the epochs" if c.drift_metric == "settled" else "first epoch -> last epoch")
        if other is not None:
            detail += ("; first -> last epoch " if c.drift_metric == "settled" else "; settled ") + \
                f"{other:+.2f}%"
        detail += ")"
        checks.append(Check(GO, dname, ok, detail))
        checks.append(Check(NO_GO, f"no leak ({dname})", ok, detail))

    # -- syscalls ----------------------------------------------------------------------------
    sc = _num(b, "syscalls_per_op")
    if sc is None:
        checks.append(Check(GO, f"syscalls < {c.syscalls_go_per_op:g}/op", False, "syscalls missing"))
        checks.append(Check(NO_GO, f"syscalls <= {c.syscalls_nogo_per_op:g}/op", False,
                            "syscalls missing"))
    else:
        checks.append(Check(GO, f"syscalls < {c.syscalls_go_per_op:g}/op",
                            sc < c.syscalls_go_per_op, f"B {sc:.3g}/op"))
        checks.append(Check(NO_GO, f"syscalls <= {c.syscalls_nogo_per_op:g}/op",
                            sc <= c.syscalls_nogo_per_op, f"B {sc:.3g}/op"))

    # -- stability ---------------------------------------------------------------------------
    cv = _num(b, c.cv_key)
    cname = f"CV ({c.cv_metric}) < {c.cv_max_pct:g}%"
    if cv is None:
        checks.append(Check(GO, cname, False, "CV missing"))
    else:
        checks.append(Check(GO, cname, cv < c.cv_max_pct, f"B {cv:.2f}%"))

    nogo = [ch for ch in checks if ch.gate == NO_GO and not ch.passed]
    go_fail = [ch for ch in checks if ch.gate == GO and not ch.passed]
    if nogo:
        return Verdict(NO_GO, [ch.line() for ch in nogo], checks)
    if not go_fail:
        return Verdict(GO, ["every GO criterion passed"], checks)
    return Verdict(NEUTRAL, [ch.line() for ch in go_fail], checks)
