"""Experiments on simalloc heaps: measured runs, A/B with the Phase 54 verdict, bench, soak.

Modules::

    metrics.py    one run: fresh heap, warm-up, timed epochs, residency per epoch -> RunResult
    verdict.py    GO / NEUTRAL / NO-GO from two metric tables (Criteria: every threshold)
    ab.py         A/B interleaved (A B A B ...), side tables, delta, report.md + PNG plots
    bench.py      N runs of one config; native allocator rows (simalloc.native)
    soak.py       one heap for a duration, per-epoch CSV, drift / CV / p1 tail
    validate.py   Phase 54's full validation: 3 workloads x FAST / LEAN+FREE / LEAN+DONTNEED
                  (validate_measure.py one run by ops or by time, validate_report.py the
                  scorecard / report.md / plots, validate_cli.py the subcommand)
    explain.py    why LEAN did (not) retire anything (Phase 54's question)
    overrides.py  KEY=VALUE[,KEY=VALUE] overrides and config files, as the CLI takes them

The command line (``simalloc run|bench|soak|ab|validate|native|options``) is :mod:`simalloc.cli`.
"""

from __future__ import annotations

from .ab import AbResult, AbSpec, aggregate, delta, format_table, run_ab, write_report
from .bench import BenchResult, collect_native, format_bench, run_bench
from .explain import explain_lean
from .metrics import RunResult, RunSpec, cv_pct, drift_pct, run_once
from .soak import SoakResult, SoakSpec, format_soak, run_soak, write_csv
from .validate import ValidateResult, ValidateSpec, run_validate
from .validate_report import format_scorecard
from .verdict import GO, NEUTRAL, NO_GO, Check, Criteria, Verdict, judge

__all__ = [
    "GO", "NEUTRAL", "NO_GO", "AbResult", "AbSpec", "BenchResult", "Check", "Criteria",
    "RunResult", "RunSpec", "SoakResult", "SoakSpec", "Verdict", "aggregate", "collect_native",
    "cv_pct", "delta", "drift_pct", "explain_lean", "format_bench", "format_soak", "format_table", "judge",
    "run_ab", "run_bench", "run_once", "run_soak", "write_csv", "write_report",
    "ValidateResult", "ValidateSpec", "format_scorecard", "run_validate",
]
