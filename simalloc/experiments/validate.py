"""The full validation Phase 54 asked for and never ran: nine soak-like cells, one scorecard.

Phase 54's "Next Steps" ask for extended soaks of FAST against LEAN on three workloads and for
MADV_FREE against MADV_DONTNEED.  :func:`run_validate` runs those nine cells::

    workloads  mixed-400   Mixed (bench_random_mixed) WS=400, the scorecard benchmark
               mixed-4000  Mixed WS=4000 ("larger working set, more memory pressure")
               churn       heavy churn (simalloc's ``churn``: 48 MiB bursts freed whole)
    policies   fast           FAST:          HAKMEM_SS_MEM_LEAN=0 (hakmem's defaults)
               lean-free      LEAN+FREE:     HAKMEM_SS_MEM_LEAN=1 HAKMEM_SS_MEM_LEAN_DECOMMIT=FREE
               lean-dontneed  LEAN+DONTNEED: HAKMEM_SS_MEM_LEAN=1 HAKMEM_SS_MEM_LEAN_DECOMMIT=DONTNEED

Cells are named ``WORKLOAD/POLICY`` (``churn/lean-dontneed``).  Each cell is ``runs`` measured
runs on a fresh heap; the runs of a workload are interleaved across its policies
(FAST, LEAN+FREE, LEAN+DONTNEED, FAST, ...), as ``simalloc ab`` interleaves A and B.  A run
(:mod:`.validate_measure`) goes **by operations** by default -- :func:`~.metrics.run_once`, with
per-workload, per-kernel defaults (:data:`DEFAULT_OPS`) that keep the nine cells within a few
minutes on a shared 2-core machine -- or **by time** with ``duration`` (seconds per run, for the
30-60 minute soaks the report recommends): the workload pass after pass on one heap
(:data:`DEFAULT_PASS_OPS` per pass), epochs of ``epoch`` seconds (default
``min(5, duration / 10)``; hakmem's soaks use 1-5 s), as ``simalloc soak`` runs it.

Either way a run is a :class:`~.metrics.RunResult` with the exact figures of the heap's
resident-page model (peak, ops- and seconds-weighted mean, final, LazyFree), per-epoch
throughput, both drifts, syscalls/op and the lean counters; a cell's runs are aggregated by
:func:`~.ab.aggregate` and every LEAN cell is judged against its workload's FAST cell by
:func:`~.verdict.judge` (one implementation of the Phase 54 criteria).  :func:`default_criteria`
judges CV over epochs (a soak's CV: std/mean of per-epoch throughput), since a single run has no
CV over runs.  Selecting a LEAN cell selects its workload's FAST cell too (the baseline).

Every finished run is appended at once to a JSON-lines file (``out``; a ``header`` line, then
one ``run`` line per run with its settings ``key`` and its result), flushed and fsynced, so an
interrupted validation keeps what it measured; ``resume`` reads such a file and skips the runs
it already holds (their settings must equal the current ones, else :class:`ConfigError`).  An
interruption raises :class:`Interrupted` (a ``KeyboardInterrupt``) naming the file.

Output: :meth:`ValidateResult.as_json` (the whole scorecard); the terminal scorecard, report.md
and the plots are :mod:`.validate_report`'s; the command line is :mod:`.validate_cli`'s.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError
from .ab import DESCRIPTIONS, _machine, aggregate
from .metrics import RunResult
from .overrides import merge_overrides, validate_overrides
from .validate_measure import Job, measure
from .verdict import GO, NEUTRAL, NO_GO, Criteria, Verdict, judge

__all__ = [
    "BASELINE", "CELLS", "DEFAULT_OPS", "DEFAULT_PASS_OPS", "POLICIES", "WORKLOADS",
    "Interrupted", "Job", "ValidateResult", "ValidateSpec", "cell_title", "default_criteria",
    "default_out", "load_runs", "measure", "run_validate", "select_cells", "split_cell",
    "worst_verdict",
]

#: Workload key -> (workload name, working set, title).
WORKLOADS: dict[str, tuple[str, int | None, str]] = {
    "mixed-400": ("mixed", 400, "Mixed WS=400"),
    "mixed-4000": ("mixed", 4000, "Mixed WS=4000"),
    "churn": ("churn", None, "heavy churn"),
}

#: Policy key -> (title, config overrides).  FAST states LEAN=0 explicitly, so a
#: ``HAKMEM_SS_MEM_LEAN=1`` left in the environment cannot turn the baseline lean.
POLICIES: dict[str, tuple[str, dict[str, str]]] = {
    "fast": ("FAST", {"HAKMEM_SS_MEM_LEAN": "0"}),
    "lean-free": ("LEAN+FREE", {"HAKMEM_SS_MEM_LEAN": "1", "HAKMEM_SS_MEM_LEAN_DECOMMIT": "FREE"}),
    "lean-dontneed": ("LEAN+DONTNEED", {"HAKMEM_SS_MEM_LEAN": "1",
                                        "HAKMEM_SS_MEM_LEAN_DECOMMIT": "DONTNEED"}),
}
BASELINE = "fast"

#: The nine cells, in run and print order.
CELLS: tuple[str, ...] = tuple(f"{w}/{p}" for w in WORKLOADS for p in POLICIES)

#: Timed operations of a run by operations, per kernel and workload.  Cython: Mixed 100M
#: (half the 200M of hakmem's [SS_OS_STATS] scorecard line; ~3-5 s here), churn 11M (20
#: bursts: two per epoch at the default 10 epochs); the pure-Python kernel is ~70x slower.
DEFAULT_OPS: dict[str, dict[str, int]] = {
    "cython": {"mixed-400": 100_000_000, "mixed-4000": 100_000_000, "churn": 11_000_000},
    "python": {"mixed-400": 1_500_000, "mixed-4000": 1_500_000, "churn": 1_100_000},
}

#: Timed operations of one pass of a run by time (hakmem's scorecard runs are 20M ops).
DEFAULT_PASS_OPS: dict[str, dict[str, int]] = {
    "cython": {"mixed-400": 20_000_000, "mixed-4000": 20_000_000, "churn": 2_200_000},
    "python": {"mixed-400": 400_000, "mixed-4000": 400_000, "churn": 551_000},
}

#: Order of the verdicts, best first (``--gate`` reports the worst LEAN cell).
_RANK = {GO: 0, NEUTRAL: 1, NO_GO: 2}

#: What the scorecard's figures cover (the ``descriptions`` of the JSON), beyond :data:`~.ab.DESCRIPTIONS`.
VALIDATE_DESCRIPTIONS: dict[str, str] = {
    **DESCRIPTIONS,
    "ops_per_s_mean": "mean over the cell's runs of each run's timed ops / timed seconds",
    "epoch_cv_pct": "throughput CV over a run's epochs (std/mean, ddof=1), median over the cell's runs",
    "ops_per_s_cv_pct": "throughput CV over the cell's runs (0 with one run)",
    "lean_decommit": "superslabs LEAN decommitted (madvise) during the run, max over runs",
    "lean_retire": "superslabs LEAN retired during the run, max over runs",
    "judgment": "GO / NEUTRAL / NO-GO of a LEAN cell against its workload's FAST cell "
                "(simalloc.experiments.verdict.judge; A = FAST, B = the LEAN cell)",
}


def default_criteria(**kw: Any) -> Criteria:
    """The report's criteria with the soak's CV (over epochs) unless ``cv_metric`` is given."""
    kw.setdefault("cv_metric", "epochs")
    return Criteria(**kw)


def split_cell(cell: str) -> tuple[str, str]:
    """``"churn/lean-free"`` -> ``("churn", "lean-free")``."""
    w, _, p = cell.partition("/")
    return w, p


def cell_title(cell: str) -> str:
    """``"churn/lean-free"`` -> ``"heavy churn LEAN+FREE"``."""
    w, p = split_cell(cell)
    return f"{WORKLOADS[w][2]} {POLICIES[p][0]}"


def select_cells(patterns: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """The cells ``patterns`` select (comma-separated tokens: a cell name, a glob such as
    ``churn/*`` or ``*/lean-*``, a workload key or a policy key), in :data:`CELLS` order, plus
    the FAST baselines added for selected LEAN cells.  ConfigError for a token that selects
    nothing.  None or empty: all nine."""
    tokens = [t.strip().lower() for text in (patterns or []) for t in text.split(",") if t.strip()]
    if not tokens:
        return list(CELLS), []
    chosen: set[str] = set()
    for tok in tokens:
        hit = {c for c in CELLS if fnmatch.fnmatchcase(c, tok) or tok in split_cell(c)}
        if not hit:
            raise ConfigError(f"--cells {tok!r} selects no cell: cells are {', '.join(CELLS)} "
                              f"(or a workload {', '.join(WORKLOADS)}, a policy "
                              f"{', '.join(POLICIES)}, or a glob such as churn/*)")
        chosen |= hit
    added = {f"{split_cell(c)[0]}/{BASELINE}" for c in chosen} - chosen
    chosen |= added
    return [c for c in CELLS if c in chosen], [c for c in CELLS if c in added]


# ---------------------------------------------------------------------------- spec and jobs
@dataclass(frozen=True)
class ValidateSpec:
    """What to validate.

    ``ops``: timed operations per run (by operations) or per pass (by time), per workload key;
    missing keys take :data:`DEFAULT_OPS` / :data:`DEFAULT_PASS_OPS` for the kernel in use.
    ``duration`` (seconds per run) switches to runs by time, with epochs of ``epoch`` seconds.
    ``overrides`` are applied to every cell (``kernel`` included), under the cell's policy keys;
    ``params`` are workload parameters per workload key (``{"churn": {"burst_mb": 8}}``)."""

    cells: tuple[str, ...] = CELLS
    ops: dict[str, int] = field(default_factory=dict)
    duration: float | None = None
    epoch: float | None = None
    epochs: int = 10
    samples_per_epoch: int = 20
    runs: int = 1
    seed: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    isolate: bool = False
    criteria: Criteria = field(default_factory=default_criteria)

    def __post_init__(self) -> None:
        bad = [c for c in self.cells if c not in CELLS]
        if bad:
            raise ConfigError(f"unknown cell(s) {', '.join(bad)}: cells are {', '.join(CELLS)}")
        if not self.cells:
            raise ConfigError("no cell to run")
        if self.runs < 1 or self.epochs < 1 or self.samples_per_epoch < 1:
            raise ConfigError("runs, epochs and samples per epoch must be >= 1")
        for k, n in self.ops.items():
            if k not in WORKLOADS:
                raise ConfigError(f"ops for {k!r}: workloads are {', '.join(WORKLOADS)}")
            if int(n) < 1:
                raise ConfigError(f"ops for {k} must be >= 1, got {n}")
        for k in self.params:
            if k not in WORKLOADS:
                raise ConfigError(f"parameters for {k!r}: workloads are {', '.join(WORKLOADS)}")
        if self.duration is not None:
            if not (math.isfinite(self.duration) and self.duration > 0):
                raise ConfigError(f"duration must be > 0 seconds, got {self.duration}")
            if self.epoch is not None and not (math.isfinite(self.epoch) and 0 < self.epoch <= self.duration):
                raise ConfigError(f"epoch ({self.epoch} s) must be > 0 and at most the duration "
                                  f"({self.duration:g} s)")

    @property
    def by_time(self) -> bool:
        return self.duration is not None

    @property
    def epoch_seconds(self) -> float | None:
        """The epoch length of runs by time (None for runs by operations)."""
        if self.duration is None:
            return None
        return float(self.epoch) if self.epoch is not None else min(5.0, self.duration / 10)

    def kernel(self) -> str:
        """The kernel the heaps will run (validates the common overrides: ConfigError)."""
        from ..kernel import kernel_name

        return kernel_name(validate_overrides(self.overrides).kernel)

    def workloads(self) -> list[str]:
        seen: list[str] = []
        for c in self.cells:
            w = split_cell(c)[0]
            if w not in seen:
                seen.append(w)
        return seen

    def ops_for(self, wkey: str, kernel: str) -> int:
        if wkey in self.ops:
            return int(self.ops[wkey])
        table = DEFAULT_PASS_OPS if self.by_time else DEFAULT_OPS
        return table["python" if kernel == "python" else "cython"][wkey]

    def cell_overrides(self, cell: str) -> dict[str, Any]:
        return merge_overrides(self.overrides, POLICIES[split_cell(cell)[1]][1])

    def jobs(self) -> list[Job]:
        """Every run, in order: per workload, run ``i`` of each of its cells in turn."""
        kernel = self.kernel()
        out = []
        for wkey in self.workloads():
            name, ws, _title = WORKLOADS[wkey]
            cells = [c for c in self.cells if split_cell(c)[0] == wkey]
            for i in range(self.runs):
                for cell in cells:
                    out.append(Job(cell=cell, run=i, workload=name, ws=ws,
                                   params=dict(self.params.get(wkey, {})),
                                   ops=self.ops_for(wkey, kernel), overrides=self.cell_overrides(cell),
                                   seed=self.seed, epochs=self.epochs,
                                   samples_per_epoch=self.samples_per_epoch, duration=self.duration,
                                   epoch=self.epoch_seconds, kernel=kernel))
        return out

    def check(self) -> dict[str, str]:
        """Validate every cell's config and workload before anything runs (ConfigError);
        returns each workload key's description."""
        from ..workloads import get_workload

        kernel = self.kernel()
        for cell in self.cells:
            try:
                validate_overrides(self.cell_overrides(cell))
            except ConfigError as exc:
                raise ConfigError(f"cell {cell}: {exc}") from exc
        out = {}
        for wkey in self.workloads():
            name, ws, _title = WORKLOADS[wkey]
            try:
                out[wkey] = get_workload(name, ops=self.ops_for(wkey, kernel), ws=ws, seed=self.seed,
                                         **self.params.get(wkey, {})).describe()
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"workload {wkey}: {exc}") from exc
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells"] = list(self.cells)
        d["criteria"] = self.criteria.as_dict()
        d["mode"] = "duration" if self.by_time else "ops"
        d["epoch"] = self.epoch_seconds
        return d


# ---------------------------------------------------------------------------- runs file
def _clean(x: Any) -> Any:
    """``x`` with non-finite floats as None (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def load_runs(path: str | Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The ``run`` records of a runs file: ``(cell, run) -> {"key": ..., "result": ...}``
    (a later record of the same run wins; a torn last line is skipped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--resume {str(p)!r}: {exc.strerror or exc}") from exc
    out: dict[tuple[str, int], dict[str, Any]] = {}
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # the line being written when the run was killed
                continue
            raise ConfigError(f"--resume {p}:{n}: not a JSON line") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"--resume {p}:{n}: not a runs record")
        if rec.get("kind") == "run":
            out[(str(rec["cell"]), int(rec["run"]))] = rec
    return out


class _RunsFile:
    """The JSON-lines file every finished run is appended to."""

    def __init__(self, path: Path, header: dict[str, Any], append: bool) -> None:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = path.open("a" if append else "x", encoding="utf-8")
        self.write({"kind": "header", **header})

    def write(self, rec: dict[str, Any]) -> None:
        self.f.write(json.dumps(_clean(rec), allow_nan=False, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def default_out(json_path: str | None = None, report_dir: str | None = None,
                resume: str | None = None, now: float | None = None) -> Path:
    """Where the runs file goes when ``--out`` is not given: the ``--resume`` file; else next
    to ``--json`` (``X.json`` -> ``X.runs.jsonl``); else ``DIR/runs.jsonl`` of ``--report``;
    else ``validate-<YYYYmmdd-HHMMSS>/runs.jsonl``.  A derived path that exists gets a
    ``-2``, ``-3``, ... suffix (an earlier validation is never overwritten)."""
    if resume:
        return Path(resume)
    if json_path and json_path != "-":
        j = Path(json_path)
        p = j.with_name((j.stem if j.suffix == ".json" else j.name) + ".runs.jsonl")
    elif report_dir:
        p = Path(report_dir) / "runs.jsonl"
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        p = Path(f"validate-{stamp}") / "runs.jsonl"
    base, k = p, 1
    while p.exists():
        k += 1
        p = base.with_name(f"{base.stem}-{k}{base.suffix}")
    return p


class Interrupted(KeyboardInterrupt):
    """The validation was interrupted; ``done`` of ``total`` runs are kept in ``out``."""

    def __init__(self, out: Path, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total} runs; finished runs kept in {out}")
        self.out, self.done, self.total = out, done, total


# ---------------------------------------------------------------------------- the validation
@dataclass
class ValidateResult:
    """What :func:`run_validate` measured: every cell's runs, its aggregate table, and every
    LEAN cell's judgment against its workload's FAST cell."""

    spec: ValidateSpec
    kernel: str
    describe: dict[str, str]
    runs: dict[str, list[RunResult]]
    tables: dict[str, dict[str, Any]]
    judgments: dict[str, Verdict]
    seconds: float = 0.0
    out: Path | None = None
    measured: int = 0
    reused: int = 0
    added_baselines: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[str]:
        return list(self.spec.cells)

    @property
    def failed_runs(self) -> list[str]:
        """``"churn/lean-free run 1: Error: ..."`` for every run that raised or died."""
        return [f"{c} run {i}: {r.error}" for c in self.cells for i, r in enumerate(self.runs[c], 1)
                if r.error]

    @property
    def worst(self) -> str | None:
        """The worst verdict of the LEAN cells (None when no LEAN cell ran)."""
        return worst_verdict(v.label for v in self.judgments.values())

    def as_json(self) -> dict[str, Any]:
        """The whole scorecard: settings, criteria, per cell its table, runs and judgment."""
        cells = []
        for c in self.cells:
            w, p = split_cell(c)
            table = {k: v for k, v in self.tables[c].items() if k != "per_run"}
            v = self.judgments.get(c)
            cells.append({
                "cell": c, "title": cell_title(c), "workload": w, "policy": p,
                "policy_title": POLICIES[p][0], "overrides": self.spec.cell_overrides(c),
                "baseline": None if p == BASELINE else f"{w}/{BASELINE}",
                "verdict": v.label if v else None,
                "judgment": v.as_dict() if v else None,
                "table": table,
                "runs": [r.as_dict() for r in self.runs[c]],
            })
        return _clean({
            "simalloc": __version__,
            "verdict": self.worst,
            "verdicts": {c: v.label for c, v in self.judgments.items()},
            "cells": cells,
            "failed_runs": self.failed_runs,
            "settings": self.spec.as_dict(),
            "criteria": self.spec.criteria.as_dict(),
            "workloads": {k: {"name": WORKLOADS[k][0], "ws": WORKLOADS[k][1], "title": WORKLOADS[k][2],
                              "describe": d} for k, d in self.describe.items()},
            "kernel": self.kernel,
            "seconds": self.seconds,
            "runs_file": str(self.out) if self.out else None,
            "measured_runs": self.measured,
            "reused_runs": self.reused,
            "added_baselines": self.added_baselines,
            "descriptions": dict(VALIDATE_DESCRIPTIONS),
            "machine": _machine(),
        })


def worst_verdict(labels: Iterable[str]) -> str | None:
    """The worst of ``labels`` (NO-GO > NEUTRAL > GO), None for none."""
    labels = list(labels)
    return max(labels, key=lambda lab: _RANK[lab]) if labels else None


def run_validate(spec: ValidateSpec, out: str | Path | None = None, resume: str | Path | None = None,
                 log: Callable[[str], None] | None = None, progress: bool = True,
                 added_baselines: list[str] | None = None) -> ValidateResult:
    """Run every cell of ``spec`` (module docstring), append each finished run to ``out``
    (default: :func:`default_out`), skip the runs ``resume`` already holds, aggregate, judge.

    ``log`` gets one line per run.  ``progress``: a tqdm bar over the runs on stderr
    (``disable=None``: only on a terminal).  Raises ConfigError before running anything for a
    bad config or a ``resume`` file made with other settings, :class:`Interrupted` on
    Ctrl-C (the runs file keeps every finished run)."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    t_start = time.perf_counter()
    describe = spec.check()
    kernel = spec.kernel()
    jobs = spec.jobs()
    prior = load_runs(resume) if resume else {}
    results: dict[tuple[str, int], RunResult] = {}
    for job in jobs:
        rec = prior.get((job.cell, job.run))
        if rec is None:
            continue
        if rec.get("key") != job.key():
            diff = sorted(k for k in set(job.key()) | set(rec.get("key") or {})
                          if (rec.get("key") or {}).get(k) != job.key().get(k))
            raise ConfigError(f"--resume {resume}: {job.cell} run {job.run + 1} was measured with "
                              f"other settings ({', '.join(diff)} differ); rerun with the options "
                              "it was made with, or without --resume")
        results[(job.cell, job.run)] = RunResult.from_dict(rec["result"])
    reused = len(results)
    out_path = Path(out) if out else default_out(resume=str(resume) if resume else None)
    same_file = resume is not None and out_path.resolve() == Path(resume).resolve()
    if out_path.exists() and not same_file:
        raise ConfigError(f"--out {str(out_path)!r} exists: continue it with --resume {out_path}, "
                          "or choose another path")
    header = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "simalloc": __version__,
              "kernel": kernel, "settings": _clean(spec.as_dict()),
              "resumed_from": str(resume) if resume else None}
    runs_file = _RunsFile(out_path, header, append=same_file)
    todo = [j for j in jobs if (j.cell, j.run) not in results]

    def say(line: str) -> None:
        if log:
            with tqdm.external_write_mode(file=sys.stderr):
                log(line)

    if reused:
        say(f"[validate] {reused} run(s) reused from {resume}; {len(todo)} to run")
    for (cell, i), r in sorted(results.items()):
        if not same_file:  # the new file holds every run of this validation
            runs_file.write({"kind": "run", "cell": cell, "run": i,
                             "key": next(j.key() for j in jobs if (j.cell, j.run) == (cell, i)),
                             "result": r.as_dict(), "reused": True})
    bar = tqdm(total=len(todo), unit="run", desc="validate", disable=None if progress else True)
    done = 0
    try:
        for k, job in enumerate(todo, 1):
            bar.set_postfix_str(job.cell + (f" run {job.run + 1}" if spec.runs > 1 else ""))
            what = (f"{job.duration:g} s in {job.epoch:g} s epochs" if job.duration is not None
                    else f"{job.ops:,} ops")
            say(f"[validate] {k}/{len(todo)}: {job.cell} run {job.run + 1}/{spec.runs} ({what}) ...")
            r = measure(job, isolate=spec.isolate, progress=progress)
            runs_file.write({"kind": "run", "cell": job.cell, "run": job.run, "key": job.key(),
                             "result": r.as_dict()})
            results[(job.cell, job.run)] = r
            done += 1
            bar.update(1)
            say(f"[validate]   {job.cell}: {r.summary()}")
    except KeyboardInterrupt as exc:
        raise Interrupted(out_path, reused + done, len(jobs)) from exc
    finally:
        bar.close()
        runs_file.close()
    runs = {c: [results[(c, i)] for i in range(spec.runs)] for c in spec.cells}
    tables = {c: aggregate(runs[c], spec.cell_overrides(c)) for c in spec.cells}
    judgments = {}
    for c in spec.cells:
        w, p = split_cell(c)
        if p != BASELINE:
            judgments[c] = judge(tables[f"{w}/{BASELINE}"], tables[c], spec.criteria)
    return ValidateResult(spec=spec, kernel=kernel, describe=describe, runs=runs, tables=tables,
                          judgments=judgments, seconds=time.perf_counter() - t_start, out=out_path,
                          measured=done, reused=reused, added_baselines=list(added_baselines or []))
