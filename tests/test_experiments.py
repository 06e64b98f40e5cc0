"""Tests of the experiments layer and the CLI: the Phase 54 verdict on hand-built metric tables,
drift / CV definitions, override parsing, and the ``simalloc`` commands run in-process (plus one
subprocess).  Tiny workloads only; no assertion depends on timing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simalloc.cli import main
from simalloc.errors import ConfigError
from simalloc.experiments import ab as ab_mod
from simalloc.experiments.metrics import RunSpec, cv_pct, drift_pct, drift_settled_pct, run_once
from simalloc.experiments.overrides import (
    merge_overrides,
    parse_assignments,
    read_config_file,
)
from simalloc.experiments.soak import CSV_COLUMNS
from simalloc.experiments.verdict import GO, NEUTRAL, NO_GO, Check, Criteria, judge

#: Every test runs without stray HAKMEM_* / SIMALLOC_* variables (the CLI reads the environment).
pytestmark = pytest.mark.usefixtures("clean_env")

MiB = 1 << 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- verdict
def side(**kw: Any) -> dict[str, Any]:
    """A metric table; defaults are a clean GO treatment against :func:`baseline`."""
    t: dict[str, Any] = {
        "ops_per_s_mean": 1_000_000.0, "ops_per_s_median": 1_000_000.0,
        "ops_per_s_cv_pct": 1.0, "epoch_cv_pct": 1.0,
        "peak_resident_bytes": 4 * MiB, "mean_resident_bytes": 4 * MiB,
        "final_resident_bytes": 4 * MiB, "process_peak_rss_bytes": 40 * MiB,
        "drift_pct": 0.0, "drift_settled_pct": 0.0, "syscalls_per_op": 1e-8,
        "lean_decommit": 3, "lean_retire": 3, "madvise_calls": 3, "errors": [],
    }
    t.update(kw)
    return t


def baseline(**kw: Any) -> dict[str, Any]:
    return side(peak_resident_bytes=33 * MiB, mean_resident_bytes=33 * MiB,
                final_resident_bytes=33 * MiB, lean_decommit=0, lean_retire=0, **kw)


def failed(v: Any) -> set[str]:
    return {c.name for c in v.checks if c.failed}


def outcomes(v: Any) -> dict[str, str]:
    return {f"[{c.gate}] {c.name}": c.outcome for c in v.checks}


def test_verdict_go() -> None:
    v = judge(baseline(), side())
    assert v.label == GO
    assert all(c.passed for c in v.checks)
    assert v.reasons == ["every GO criterion passed"]
    for c in v.checks:  # every criterion shows its measured value, threshold and outcome
        assert c.outcome == "PASS" and c.measured and c.threshold
        assert c.line().startswith("PASS [") and "measured" in c.line() and "threshold" in c.line()


def test_verdict_neutral_throughput() -> None:
    # the report's first NEUTRAL case: RSS reduction achieved but throughput degradation > 10%
    v = judge(baseline(), side(ops_per_s_median=850_000.0, ops_per_s_mean=850_000.0))
    assert v.label == NEUTRAL
    assert any(n.startswith("throughput") for n in failed(v))
    assert any("-15.0%" in r for r in v.reasons)
    assert v.reasons[0] == ("NEUTRAL (research box): RSS target met but throughput fell beyond "
                            "the tolerance")


def test_verdict_neutral_syscalls() -> None:
    v = judge(baseline(), side(syscalls_per_op=5e-6))  # above the GO budget, below explosion
    assert v.label == NEUTRAL
    assert failed(v) == {"syscalls < 1e-06/op"}
    assert "syscall overhead above the GO budget" in v.reasons[0]


def test_verdict_neutral_variance() -> None:
    v = judge(baseline(), side(ops_per_s_cv_pct=6.0))
    assert v.label == NEUTRAL
    assert failed(v) == {"CV (runs) < 2%"}
    assert "throughput variance (CV) above the GO bound while drift stayed within tolerance" in v.reasons[0]


def test_verdict_neutral_partial_rss_reduction() -> None:
    v = judge(baseline(), side(peak_resident_bytes=15 * MiB))  # 55% lower: not GO, not NO-GO
    assert v.label == NEUTRAL


def test_verdict_nogo_rss() -> None:
    v = judge(baseline(), side(peak_resident_bytes=30 * MiB))  # 9% lower
    assert v.label == NO_GO
    assert "peak resident (heap) reduction >= 50%" in failed(v)
    assert any("[NO-GO]" in r for r in v.reasons)


def test_verdict_nogo_drift() -> None:
    v = judge(baseline(), side(drift_settled_pct=0.5))
    assert v.label == NO_GO
    assert any(n.startswith("no leak") for n in failed(v))


def test_verdict_nogo_syscalls_explode() -> None:
    v = judge(baseline(), side(syscalls_per_op=2e-5))
    assert v.label == NO_GO
    assert "syscalls <= 1e-05/op" in failed(v)


def test_verdict_nogo_error() -> None:
    v = judge(baseline(), side(errors=["run 2: HeapCorruptionError: boom"]))
    assert v.label == NO_GO
    assert any("boom" in r for r in v.reasons)
    v = judge(baseline(error="process died"), side())
    assert v.label == NO_GO


def test_verdict_missing_figures_are_not_go() -> None:
    b = side()
    del b["syscalls_per_op"]
    assert judge(baseline(), b).label == NO_GO  # the explosion check cannot be cleared


def test_criteria_resident_metric_switch() -> None:
    # peak unchanged (bursts reach the same high-water), mean 80% lower
    a = baseline()
    b = side(peak_resident_bytes=33 * MiB, mean_resident_bytes=int(6.6 * MiB))
    assert judge(a, b).label == NO_GO
    assert judge(a, b, Criteria(resident_metric="peak")).label == NO_GO
    v = judge(a, b, Criteria(resident_metric="mean"))
    assert v.label == GO
    assert any(c.name.startswith("mean resident (heap)") for c in v.checks)
    b2 = side(final_resident_bytes=33 * MiB)
    assert judge(a, b2, Criteria(resident_metric="final")).label == NO_GO
    assert judge(a, b2, Criteria(resident_metric="peak")).label == GO


def test_criteria_thresholds_and_drift_metric() -> None:
    a, b = baseline(), side(drift_pct=9.0, drift_settled_pct=0.0, ops_per_s_median=920_000.0)
    assert judge(a, b).label == GO  # settled drift is judged by default
    assert judge(a, b, Criteria(drift_metric="first_last")).label == NO_GO
    assert judge(a, b, Criteria(drift_metric="first_last", drift_tolerance_pct=10)).label == GO
    assert judge(a, b, Criteria(throughput_min_delta_pct=-5)).label == NEUTRAL
    assert judge(a, b, Criteria(rss_target_bytes=2 * MiB)).label == NEUTRAL
    assert judge(a, side(epoch_cv_pct=9.0), Criteria(cv_metric="epochs")).label == NEUTRAL
    assert judge(a, side(epoch_cv_pct=9.0)).label == GO


def tiny(**kw: Any) -> dict[str, Any]:
    """A side whose heap is far below the 10 MiB target (Mixed WS=400: ~0.4 MiB)."""
    return side(**{"peak_resident_bytes": 400 << 10, "mean_resident_bytes": 400 << 10,
                   "final_resident_bytes": 400 << 10, **kw})


def test_relative_resident_criteria_are_na_when_a_meets_the_target() -> None:
    a, b = tiny(lean_decommit=0, lean_retire=0), tiny(peak_resident_bytes=396 << 10,
                                                       lean_decommit=0, lean_retire=0)
    v = judge(a, b)
    got = outcomes(v)
    assert got["[GO] peak resident (heap) < 10 MiB"] == "PASS"
    assert got["[GO] peak resident (heap) reduction >= 70%"] == "N/A"
    assert got["[NO-GO] peak resident (heap) reduction >= 50%"] == "N/A"  # not failed
    na = [c for c in v.checks if c.outcome == "N/A"]
    assert all("A already meets" in c.detail and "1.0% lower" in c.measured for c in na)
    assert all(c.threshold in (">= 70%", ">= 50%") for c in na)
    assert v.label == GO  # N/A counts as met; everything else passed
    assert "2 not applicable" in v.reasons[0]
    assert [c["outcome"] for c in v.as_dict()["checks"]].count("N/A") == 2
    # still judged when A is above the target, even if B is below it
    assert outcomes(judge(baseline(), side(peak_resident_bytes=30 * MiB)))[
        "[NO-GO] peak resident (heap) reduction >= 50%"] == "FAIL"


def test_report_neutral_mixed_ws400() -> None:
    """The Phase 54 report's own judgment: both heaps small, lean_retire=0, throughput and
    variance worse under LEAN, drift 0 -> NEUTRAL (research box), not NO-GO."""
    a = tiny(ops_per_s_median=51e6, ops_per_s_mean=51e6, ops_per_s_cv_pct=6.3, lean_decommit=0,
             lean_retire=0)
    b = tiny(peak_resident_bytes=396 << 10, ops_per_s_median=39e6, ops_per_s_mean=41e6,
             ops_per_s_cv_pct=19.3, lean_decommit=0, lean_retire=0, drift_pct=3.1)
    v = judge(a, b)
    assert v.label == NEUTRAL
    assert failed(v) == {"throughput (median) >= -10%", "CV (runs) < 2%"}
    assert v.reasons[0].startswith("NEUTRAL (research box): RSS target met but throughput fell")
    assert "throughput variance (CV) above the GO bound while drift stayed within tolerance" in v.reasons[0]
    assert all(r.startswith("FAIL [GO]") for r in v.reasons[1:])
    # the same tables with steady throughput: GO, qualified by a note that LEAN never acted
    v = judge(a, tiny(peak_resident_bytes=396 << 10, ops_per_s_median=50e6, ops_per_s_mean=50e6,
                      ops_per_s_cv_pct=1.0, lean_decommit=0, lean_retire=0))
    assert v.label == GO
    assert len(v.notes) == 1 and "lean_decommit=0, lean_retire=0" in v.notes[0]
    assert v.as_dict()["notes"] == v.notes
    assert not judge(baseline(), side()).notes  # B's policy acted: nothing to qualify


def test_process_peak_criterion_is_labelled_as_including_the_interpreter() -> None:
    v = judge(baseline(), side(), Criteria(resident_metric="process_peak"))
    names = [c.name for c in v.checks if c.metric == "resident"]
    assert names and all("incl. the Python interpreter" in n for n in names)


def test_check_rejects_unknown_outcomes() -> None:
    with pytest.raises(ValueError):
        Check(GO, "x", "MAYBE", "1", "< 2")


@pytest.mark.parametrize("kw", [{"resident_metric": "median"}, {"drift_metric": "x"},
                                {"cv_metric": "x"}, {"throughput_metric": "p99"},
                                {"rss_nogo_reduction_pct": 80.0},
                                {"syscalls_go_per_op": 1e-3}])
def test_criteria_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Criteria(**kw)


# ---------------------------------------------------------------------------- metrics
def test_drift_definitions() -> None:
    assert drift_pct([100, 100, 100]) == 0.0
    assert drift_pct([100, 110]) == pytest.approx(10.0)
    assert drift_pct([100, 50]) == pytest.approx(-50.0)
    assert drift_pct([0, 0, 0]) == 0.0
    assert drift_pct([0, 50, 100]) == pytest.approx(100.0)  # from nothing: relative to the peak
    assert drift_pct([0, 100, 50]) == pytest.approx(50.0)
    assert drift_pct([]) == 0.0
    # settled: from the end of the first half of the samples
    assert drift_settled_pct([88, 96, 96, 96, 96, 96, 96, 96, 96, 96]) == 0.0
    assert drift_settled_pct([10, 20, 30, 40]) == pytest.approx(100.0)  # 20 -> 40
    assert drift_settled_pct([5]) == 0.0


def test_cv() -> None:
    assert cv_pct([1.0]) == 0.0
    assert cv_pct([2.0, 2.0, 2.0]) == 0.0
    assert cv_pct([0.0, 0.0]) == 0.0
    assert cv_pct([1.0, 3.0]) == pytest.approx(100 * 2 ** 0.5 / 2)


def test_run_once_fast_mixed_has_zero_settled_drift() -> None:
    # the ab defaults (200k ops, 10 epochs); residency depends only on the op stream
    r = run_once(RunSpec(ops=200_000, epochs=10, overrides={"HAKMEM_SS_MEM_LEAN": "0"}))
    assert r.error is None
    assert r.ops >= 200_000 and len(r.epoch_resident_bytes) == 10
    assert r.drift_settled_pct == 0.0
    assert r.lean_retire == 0 and r.syscalls == 0
    assert r.peak_resident_bytes >= r.final_resident_bytes > 0
    assert r.stats_line.startswith("[SS_OS_STATS]")
    assert "lean_retire=0" in r.explain_lean


def test_run_once_records_a_crash_as_an_error() -> None:
    spec = RunSpec(workload="churn", ops=2_000, epochs=2, params={"burst_mb": 12},
                   overrides={"max_superslabs": 4})
    r = run_once(spec)
    assert r.error is not None and "HeapExhausted" in r.error
    table = ab_mod.aggregate([r])
    assert table["errors"] and judge(table, table).label == NO_GO


def test_run_once_isolated() -> None:
    r = run_once(RunSpec(ops=5_000, epochs=2), isolate=True)
    assert r.error is None and r.isolated
    assert r.process_peak_rss_bytes > 0 and r.ops >= 5_000


# ---------------------------------------------------------------------------- overrides
def test_parse_and_merge_overrides(tmp_path: Path) -> None:
    got = parse_assignments(["HAKMEM_SS_MEM_LEAN=1,HAKMEM_SS_MEM_LEAN_DECOMMIT=DONTNEED", "debug=1"])
    assert got == {"HAKMEM_SS_MEM_LEAN": "1", "HAKMEM_SS_MEM_LEAN_DECOMMIT": "DONTNEED", "debug": "1"}
    with pytest.raises(ConfigError):
        parse_assignments(["HAKMEM_SS_MEM_LEAN"])
    # a key replaces every key naming the same option
    assert merge_overrides({"HAKMEM_SS_MEM_LEAN": "1", "kernel": "python"}, {"mem_lean": "0"}) == \
        {"kernel": "python", "mem_lean": "0"}
    f = tmp_path / "b.env"
    f.write_text("# side B\nexport HAKMEM_SS_MEM_LEAN=1\n\nHAKMEM_SS_MEM_LEAN_TARGET_MB='4'  # budget\n")
    assert read_config_file(f) == {"HAKMEM_SS_MEM_LEAN": "1", "HAKMEM_SS_MEM_LEAN_TARGET_MB": "4"}
    f.write_text("nonsense\n")
    with pytest.raises(ConfigError, match=":1:"):
        read_config_file(f)


# ---------------------------------------------------------------------------- CLI
TINY_AB = ["ab", "--ops", "3000", "--runs", "1", "--epochs", "3"]


def test_cli_ab_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY_AB, "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert {"verdict", "a", "b", "delta"} <= set(doc)
    assert doc["verdict"] in (GO, NEUTRAL, NO_GO)
    for s in ("a", "b"):
        assert set(ab_mod.SIDE_KEYS) <= set(doc[s]), set(ab_mod.SIDE_KEYS) - set(doc[s])
        assert doc[s]["lean_retire"] == 0  # Mixed never empties a superslab
    assert doc["b"]["policy"].startswith("lean") and doc["a"]["policy"] == "fast"
    for k in ("peak_resident_bytes", "ops_per_s_median"):
        assert {"abs", "pct"} <= set(doc["delta"][k])
    assert doc["criteria"]["resident_metric"] == "peak"
    assert isinstance(doc["reasons"], list) and doc["reasons"]
    assert "kernel:" in cap.err and "lean_retire=0 because" in cap.err  # context on stderr
    assert "[ab] run 2/2: B" in cap.err
    assert doc["failed_runs"] == []
    assert "interpreter" in doc["descriptions"]["process_peak_rss_bytes"]
    assert doc["descriptions"]["peak_resident_bytes"].startswith("heap only")
    for c in doc["checks"]:
        assert {"gate", "name", "outcome", "measured", "threshold", "passed"} <= set(c)
        assert c["outcome"] in ("PASS", "FAIL", "N/A")


def test_cli_ab_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")  # the plot extra (in the test extra)
    out = tmp_path / "rep"
    assert main([*TINY_AB, "--report", str(out), "--resident-metric", "mean"]) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text and "peak resident (heap)" in text
    assert "process peak RSS (VmHWM, incl. Python)" in text
    # the tiny heap is far below 10 MiB: the relative criteria are N/A, with value and threshold
    assert "N/A [GO] mean resident (heap) reduction >= 70%: measured" in text
    md = (out / "report.md").read_text()
    assert "➖ N/A" in md and "threshold >= 70%" in md
    assert "process peak RSS (VmHWM, incl. Python)" in md and "includes the Python interpreter" in md
    for needle in ("## Summary", "## Configuration", "## Results", "## Judgment Criteria",
                   "## Verdict:", "lean_retire=0 because", "shared 2-core machine; medians and "
                   "ratios quoted", "HAKMEM_SS_MEM_LEAN=1", "mean resident"):
        assert needle in md, needle
    for png in ("resident.png", "throughput.png"):
        data = (out / png).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_cli_ab_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "b.env"
    f.write_text("HAKMEM_SS_MEM_LEAN=1\nHAKMEM_SS_MEM_LEAN_DECOMMIT=DONTNEED\n")
    assert main([*TINY_AB, "--b-config", str(f), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "decommit=DONTNEED" in doc["b"]["policy"]


def test_cli_bad_override_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ab", "--b", "HAKMEM_SS_MEM_LEAN=banana"]) == 2
    err = capsys.readouterr().err.strip()
    assert "HAKMEM_SS_MEM_LEAN" in err and "banana" in err
    assert len(err.splitlines()) == 1
    assert main(["run", "--set", "NO_SUCH_OPTION=1"]) == 2
    assert "NO_SUCH_OPTION" in capsys.readouterr().err
    assert main(["ab", "--a", "justakey"]) == 2
    assert main(["run", "--workload", "nope"]) == 2
    assert main(["ab", "--bogus-flag"]) == 2
    assert main(["ab", "--a-config", "/nonexistent/file.env"]) == 2


def test_cli_run_prints_stats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--ops", "3000", "--epochs", "2", "--set", "HAKMEM_SS_MEM_LEAN=1"]) == 0
    out = capsys.readouterr().out
    assert "[SS_OS_STATS]" in out and "lean_decommit=0" in out
    assert "kernel:" in out and "throughput:" in out and "residency:" in out
    assert "whole process incl. the Python interpreter: VmRSS" in out
    assert "lean_retire=0 because" in out


def test_cli_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--ops", "3000", "--runs", "2", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "[SS_OS_STATS]" in out and "kernel:" in out
    assert "process peak RSS (VmHWM, incl. the Python interpreter)" in out


def test_cli_soak_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "soak.csv"
    assert main(["soak", "--duration", "0.6", "--epoch", "0.2", "--csv", str(p),
                 "--pass-ops", "5000", "--chunk-ops", "500"]) == 0
    out = capsys.readouterr().out
    assert "drift" in out and "p1" in out and "CV" in out
    assert "process VmRSS (incl. the Python interpreter) drift" in out
    assert main(["soak", "--duration", "0.2", "--epoch", "0.1", "--csv", "-", "--pass-ops", "5000",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "interpreter" in doc["descriptions"]["vm_rss_bytes"]
    with p.open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    for col in ("epoch", "t_s", "ops", "ops_per_s", "resident_bytes", "lazyfree_bytes",
                "vm_rss_bytes", "syscalls"):
        assert col in CSV_COLUMNS and col in rows[0]
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(int(r["ops"]) > 0 and int(r["resident_bytes"]) > 0 for r in rows)


def test_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["options", "--set", "HAKMEM_SS_MEM_LEAN=1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("option")
    assert "HAKMEM_SS_MEM_LEAN" in out and "mem_lean" in out
    assert "mem_lean            *True" in out


def test_python_m_simalloc_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "simalloc", "options"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HAKMEM_SS_MEM_LEAN_DECOMMIT" in proc.stdout and "kernel:" in proc.stdout
