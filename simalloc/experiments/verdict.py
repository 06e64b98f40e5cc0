"""The Phase 54 judgment: GO / NEUTRAL / NO-GO from two sides' metric tables.

Pure functions, no I/O.  A *metric table* is the per-side dict that
:func:`simalloc.experiments.ab.aggregate` produces (``ops_per_s_median``,
``peak_resident_bytes``, ``drift_pct``, ``syscalls_per_op``, ...); side A is the baseline
(FAST), side B the treatment (LEAN).  The criteria are those of
``phase54-memory-lean-results.md``, each threshold a field of :class:`Criteria`.  Every
criterion is a :class:`Check` with its measured value, its threshold and an outcome:

``PASS``  the criterion holds (for a NO-GO criterion: the NO-GO condition did not occur);
``FAIL``  it does not (or its figure is missing: a table without it cannot be judged);
``N/A``   it does not apply.  The relative resident criteria (``rss_go_reduction_pct``,
          ``rss_nogo_reduction_pct``) are N/A when side A already meets the absolute target
          ``rss_target_bytes``: the report's "70% reduction" is its way of saying "from ~33 MB
          to below 10 MB", and a baseline already below the target has nothing to reduce.

GO (production-ready) -- *every* GO criterion PASS or N/A:
    B's resident figure < ``rss_target_bytes`` and at least ``rss_go_reduction_pct`` lower
    than A's; B's throughput within ``throughput_min_delta_pct`` of A's; B's drift
    <= ``drift_tolerance_pct``; B's syscalls/op < ``syscalls_go_per_op``; B's CV <
    ``cv_max_pct``.
NO-GO (revert) -- *any* NO-GO criterion FAIL:
    resident reduction < ``rss_nogo_reduction_pct``; B's drift > ``drift_tolerance_pct``
    (a leak); B's syscalls/op > ``syscalls_nogo_per_op`` (syscalls explode); a crash or
    error on either side.
NEUTRAL (research box, keep for future) -- no NO-GO criterion failed but a GO criterion did.
    The report names three such cases and the verdict's first reason says which applies:
    the RSS target met but throughput fell more than 10 %; syscalls above the GO budget but
    below the explosion line; the variance grew while drift stayed 0.  (A resident figure
    reduced by 50-70 % or still above the target is NEUTRAL too: not GO, not NO-GO.)  With
    the default ``simalloc ab`` on Mixed WS=400 the heap of both sides stays far below
    10 MiB, LEAN never retires anything (``lean_retire=0``, as in the report), so the resident
    criteria cannot separate the sides and the verdict is decided by throughput and
    variance: NEUTRAL on a noisy shared machine, as the report judged it.

The verdict carries the label, its reasons and every check, so a report can print the
judgment-criteria list with PASS / FAIL / N/A marks, plus notes that qualify the label without
changing it: when B's ``lean_decommit`` and ``lean_retire`` are both 0 the release policy never
acted, and a GO then means "no harm on this workload", not "the memory target was reached by
LEAN" (hakmem's Phase 55 did judge such a no-op GO, for LEAN+OFF's prewarm suppression).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["FAIL", "GO", "NA", "NEUTRAL", "NO_GO", "PASS", "RESIDENT_LABELS", "Check", "Criteria",
           "Verdict", "judge", "resident_figure"]

GO = "GO"
NEUTRAL = "NEUTRAL"
NO_GO = "NO-GO"

_RESIDENT_KEYS = {
    "peak": "peak_resident_bytes",
    "mean": "mean_resident_bytes",
    "final": "final_resident_bytes",
    "virtual_mean": "mean_resident_virtual_bytes",
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


PASS = "PASS"
FAIL = "FAIL"
NA = "N/A"
OUTCOMES = (PASS, FAIL, NA)


@dataclass(frozen=True)
class Check:
    """One criterion: which verdict it gates (``GO`` or ``NO-GO``), its outcome (``PASS``,
    ``FAIL`` or ``N/A``; for a NO-GO criterion PASS means the NO-GO condition did not occur),
    the measured value and the threshold (as text, and as numbers where there are some), and
    a detail (A's figure, why N/A, what is missing)."""

    gate: str
    name: str
    outcome: str
    measured: str
    threshold: str
    detail: str = ""
    value: float | None = None
    limit: float | None = None
    metric: str = ""  # "error" | "resident" | "throughput" | "drift" | "syscalls" | "cv"

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def passed(self) -> bool:
        return self.outcome == PASS

    @property
    def failed(self) -> bool:
        return self.outcome == FAIL

    def line(self) -> str:
        text = f"{self.outcome} [{self.gate}] {self.name}: measured {self.measured}, threshold {self.threshold}"
        return text + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


@dataclass(frozen=True)
class Verdict:
    """The label, a one-line reason per deciding check, every check, and notes that qualify
    the label without changing it (e.g. that B's release policy never acted)."""

    label: str
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "reasons": list(self.reasons),
                "checks": [c.as_dict() for c in self.checks], "notes": list(self.notes)}


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


def _ok(cond: bool) -> str:
    return PASS if cond else FAIL


#: How the report names the judged resident figure, per ``Criteria.resident_metric``.
RESIDENT_LABELS = {
    "peak": "peak resident (heap)",
    "mean": "mean resident (heap)",
    "final": "final resident (heap)",
    "virtual_mean": "mean resident over virtual time (heap)",
    "process_peak": "process peak RSS (VmHWM, incl. the Python interpreter)",
}


def judge(a: Mapping[str, Any], b: Mapping[str, Any], criteria: Criteria | None = None) -> Verdict:
    """GO / NEUTRAL / NO-GO for treatment ``b`` against baseline ``a`` (module docstring).

    Missing figures fail their check (a table without throughput cannot be GO).  Errors:
    a non-empty ``errors`` list or an ``error`` string in either table is NO-GO."""
    c = criteria or Criteria()
    checks: list[Check] = []

    def missing(gate: str, name: str, threshold: str, what: str, metric: str) -> None:
        checks.append(Check(gate, name, FAIL, "missing", threshold, f"{what} missing", metric=metric))

    # -- crash / error ---------------------------------------------------------------
    errs = [f"{side}: {e}" for side, t in (("A", a), ("B", b))
            for e in ([t["error"]] if t.get("error") else []) + list(t.get("errors") or [])]
    checks.append(Check(NO_GO, "no crash or error", _ok(not errs),
                        f"{len(errs)} failed run(s)" if errs else "every run completed",
                        "0 failed runs", "; ".join(errs), float(len(errs)), 0.0, metric="error"))

    # -- resident memory ---------------------------------------------------------------
    ra, rb = resident_figure(a, c), resident_figure(b, c)
    label = RESIDENT_LABELS[c.resident_metric]
    target = f"< {_mib(c.rss_target_bytes)}"
    go_red = f">= {c.rss_go_reduction_pct:g}%"
    nogo_red = f">= {c.rss_nogo_reduction_pct:g}%"
    tname = f"{label} < {c.rss_target_bytes / (1 << 20):g} MiB"
    gname = f"{label} reduction >= {c.rss_go_reduction_pct:g}%"
    nname = f"{label} reduction >= {c.rss_nogo_reduction_pct:g}%"
    if ra is None or rb is None:
        missing(GO, tname, target, "resident figure", "resident")
        missing(GO, gname, go_red, "resident figure", "resident")
        missing(NO_GO, nname, nogo_red, "resident figure", "resident")
    else:
        checks.append(Check(GO, tname, _ok(rb < c.rss_target_bytes), f"B {_mib(rb)}", target,
                            f"A {_mib(ra)}", rb, float(c.rss_target_bytes), metric="resident"))
        red = 100.0 * (ra - rb) / ra if ra > 0 else 0.0
        measured = f"{red:.1f}% lower (A {_mib(ra)} -> B {_mib(rb)})"
        if ra < c.rss_target_bytes:
            why = (f"A already meets the {_mib(c.rss_target_bytes)} target ({_mib(ra)}): "
                   "nothing to reduce")
            checks.append(Check(GO, gname, NA, measured, go_red, why, red, c.rss_go_reduction_pct, metric="resident"))
            checks.append(Check(NO_GO, nname, NA, measured, nogo_red, why, red,
                                c.rss_nogo_reduction_pct, metric="resident"))
        else:
            checks.append(Check(GO, gname, _ok(red >= c.rss_go_reduction_pct), measured, go_red,
                                "", red, c.rss_go_reduction_pct, metric="resident"))
            checks.append(Check(NO_GO, nname, _ok(red >= c.rss_nogo_reduction_pct), measured,
                                nogo_red, "", red, c.rss_nogo_reduction_pct, metric="resident"))

    # -- throughput ----------------------------------------------------------------------
    ta, tb = _num(a, c.throughput_key), _num(b, c.throughput_key)
    name = f"throughput ({c.throughput_metric}) >= {c.throughput_min_delta_pct:+g}%"
    tthr = f">= {c.throughput_min_delta_pct:+g}% vs A"
    if ta is None or tb is None or ta <= 0:
        missing(GO, name, tthr, "throughput", "throughput")
    else:
        dt = 100.0 * (tb - ta) / ta
        checks.append(Check(GO, name, _ok(dt >= c.throughput_min_delta_pct), f"{dt:+.1f}%", tthr,
                            f"A {ta:,.0f} -> B {tb:,.0f} ops/s", dt, c.throughput_min_delta_pct, metric="throughput"))

    # -- drift -----------------------------------------------------------------------------
    drift = _num(b, c.drift_key)
    dname = f"drift ({c.drift_metric}) <= {c.drift_tolerance_pct:g}%"
    dthr = f"<= {c.drift_tolerance_pct:g}%"
    if drift is None:
        missing(GO, dname, dthr, "drift", "drift")
        missing(NO_GO, f"no leak ({dname})", dthr, "drift", "drift")
    else:
        ok = drift <= c.drift_tolerance_pct
        other = _num(b, _DRIFT_KEYS["first_last" if c.drift_metric == "settled" else "settled"])
        detail = "B's heap resident bytes, " + (
            "second half of the epochs" if c.drift_metric == "settled" else "first epoch -> last epoch")
        if other is not None:
            detail += ("; first -> last epoch " if c.drift_metric == "settled" else "; settled ") + \
                f"{other:+.2f}%"
        checks.append(Check(GO, dname, _ok(ok), f"B {drift:+.2f}%", dthr, detail, drift,
                            c.drift_tolerance_pct, metric="drift"))
        checks.append(Check(NO_GO, f"no leak ({dname})", _ok(ok), f"B {drift:+.2f}%", dthr, detail,
                            drift, c.drift_tolerance_pct, metric="drift"))

    # -- syscalls ----------------------------------------------------------------------------
    sc = _num(b, "syscalls_per_op")
    sgo, snogo = f"< {c.syscalls_go_per_op:g}/op", f"<= {c.syscalls_nogo_per_op:g}/op"
    if sc is None:
        missing(GO, f"syscalls {sgo}", sgo, "syscalls", "syscalls")
        missing(NO_GO, f"syscalls {snogo}", snogo, "syscalls", "syscalls")
    else:
        checks.append(Check(GO, f"syscalls {sgo}", _ok(sc < c.syscalls_go_per_op), f"B {sc:.3g}/op",
                            sgo, "", sc, c.syscalls_go_per_op, metric="syscalls"))
        checks.append(Check(NO_GO, f"syscalls {snogo}", _ok(sc <= c.syscalls_nogo_per_op),
                            f"B {sc:.3g}/op", snogo, "", sc, c.syscalls_nogo_per_op, metric="syscalls"))

    # -- stability ---------------------------------------------------------------------------
    cv = _num(b, c.cv_key)
    cname = f"CV ({c.cv_metric}) < {c.cv_max_pct:g}%"
    cthr = f"< {c.cv_max_pct:g}%"
    if cv is None:
        missing(GO, cname, cthr, "CV", "cv")
    else:
        ca = _num(a, c.cv_key)
        checks.append(Check(GO, cname, _ok(cv < c.cv_max_pct), f"B {cv:.2f}%", cthr,
                            f"A {ca:.2f}%" if ca is not None else "", cv, c.cv_max_pct, metric="cv"))

    notes = []
    if _num(b, "lean_decommit") == 0 and _num(b, "lean_retire") == 0:
        notes.append("B never decommitted or retired a superslab (lean_decommit=0, lean_retire=0): "
                     "this workload does not exercise its release policy, so the verdict says "
                     "nothing about the policy's memory effect (the Phase 54 report, seeing the "
                     "same, kept LEAN as a research box)")
    return replace(_decide(checks), notes=notes)


def _decide(checks: list[Check]) -> Verdict:
    """The label from the checks (module docstring), with the report's NEUTRAL case named."""
    nogo = [ch for ch in checks if ch.gate == NO_GO and ch.failed]
    if nogo:
        return Verdict(NO_GO, [ch.line() for ch in nogo], checks)
    go_fail = [ch for ch in checks if ch.gate == GO and ch.failed]
    na = [ch for ch in checks if ch.outcome == NA]
    if not go_fail:
        reasons = ["every GO criterion passed"
                   + (f" ({len(na)} not applicable: {'; '.join(ch.name for ch in na)})" if na else "")]
        return Verdict(GO, reasons, checks)
    kinds = {ch.metric for ch in go_fail}
    cases = []
    if "throughput" in kinds and "resident" not in kinds:
        cases.append("RSS target met but throughput fell beyond the tolerance")
    if "syscalls" in kinds:
        cases.append("syscall overhead above the GO budget but below the explosion line")
    if "cv" in kinds:
        cases.append("throughput variance (CV) above the GO bound while drift stayed within tolerance")
    if "resident" in kinds:
        cases.append("resident memory not reduced to the GO target, but not a NO-GO either")
    head = "NEUTRAL (research box): " + "; ".join(cases)
    return Verdict(NEUTRAL, [head, *[ch.line() for ch in go_fail]], checks)
