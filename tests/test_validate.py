"""``simalloc validate`` (issue 8, item 6): the nine cells of Phase 54's full validation, the
scorecard, the JSON and the report, runs kept as they finish (interrupt + ``--resume``), exit
codes.  Tiny runs only: a few thousand operations and 1 MiB churn bursts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from simalloc.cli import EXIT_FAILED, EXIT_NEUTRAL, EXIT_NO_GO, EXIT_OK, EXIT_USAGE, main
from simalloc.errors import ConfigError
from simalloc.experiments import validate as val
from simalloc.experiments.metrics import RunResult
from simalloc.experiments.validate import (
    CELLS,
    ValidateSpec,
    default_out,
    load_runs,
    run_validate,
    select_cells,
)
from simalloc.experiments.validate_report import format_scorecard, write_report
from simalloc.experiments.verdict import GO, NA, NEUTRAL, NO_GO, OUTCOMES, Verdict, judge

pytestmark = pytest.mark.usefixtures("clean_env")

TINY = ["validate", "--ops", "2000", "--epochs", "2", "--param", "churn:burst_mb=1"]

#: Every figure the scorecard shows, per cell (the aggregate table's keys).
SCORECARD_KEYS = (
    "peak_resident_bytes", "mean_resident_bytes", "mean_resident_seconds_bytes",
    "final_resident_bytes", "final_lazyfree_bytes", "peak_lazyfree_bytes", "ops_per_s_mean",
    "ops_per_s_median", "epoch_cv_pct", "ops_per_s_cv_pct", "drift_pct", "drift_settled_pct",
    "syscalls_per_op", "lean_decommit", "lean_retire", "madvise_calls", "process_peak_rss_bytes",
    "stats_line", "errors",
)
#: Every row title of the terminal scorecard.
ROW_TITLES = (
    "peak resident (heap, exact), KiB", "mean resident (heap, per op), KiB",
    "final resident (heap), KiB", "LazyFree final (heap), KiB", "throughput mean, ops/s",
    "throughput CV, epochs", "resident drift, first->last", "resident drift, settled",
    "syscalls/op", "lean_decommit", "lean_retire",
    "process VmHWM incl. Python interpreter, KiB", "verdict vs FAST",
)


def _run_lines(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "run"]


# ---------------------------------------------------------------------------- cells
def test_cell_selection() -> None:
    assert len(CELLS) == 9 and CELLS[0] == "mixed-400/fast" and CELLS[-1] == "churn/lean-dontneed"
    assert select_cells(None) == (list(CELLS), [])
    assert select_cells(["churn"]) == (["churn/fast", "churn/lean-free", "churn/lean-dontneed"], [])
    cells, added = select_cells(["*/lean-dontneed,mixed-400/lean-free"])
    assert added == ["mixed-400/fast", "mixed-4000/fast", "churn/fast"]  # the baselines come along
    assert cells == ["mixed-400/fast", "mixed-400/lean-free", "mixed-400/lean-dontneed",
                     "mixed-4000/fast", "mixed-4000/lean-dontneed", "churn/fast", "churn/lean-dontneed"]
    assert select_cells(["FAST"]) == (["mixed-400/fast", "mixed-4000/fast", "churn/fast"], [])
    with pytest.raises(ConfigError, match="selects no cell"):
        select_cells(["mixed-40"])


# ---------------------------------------------------------------------------- the whole thing
def test_cli_all_nine_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "score.json"
    assert main([*TINY, "--json", str(js)]) == EXIT_OK
    out = capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert [c["cell"] for c in doc["cells"]] == list(CELLS)
    for c in doc["cells"]:
        assert set(SCORECARD_KEYS) <= set(c["table"]), c["cell"]
        assert c["table"]["errors"] == [] and len(c["runs"]) == 1
        run = c["runs"][0]
        # dense samples, and the exact peak is never below a sampled figure
        samples = run["sample_resident_bytes"]
        assert len(samples) >= 4 and run["peak_resident_bytes"] >= max(samples)
        if c["policy"] == "fast":
            assert c["judgment"] is None and c["baseline"] is None
            continue
        assert c["baseline"] == f"{c['workload']}/fast" and c["verdict"] in (GO, NEUTRAL, NO_GO)
        checks = c["judgment"]["checks"]
        assert {ch["metric"] for ch in checks} == {"error", "resident", "throughput", "drift", "syscalls", "cv"}
        for ch in checks:
            assert ch["outcome"] in OUTCOMES and ch["measured"] and ch["threshold"]
    assert doc["verdict"] == val.worst_verdict(doc["verdicts"].values()) and len(doc["verdicts"]) == 6
    assert doc["criteria"]["cv_metric"] == "epochs"  # a soak's CV: one run has no CV over runs
    assert doc["settings"]["mode"] == "ops" and doc["settings"]["ops"]["churn"] == 2000
    assert "including the Python interpreter" in doc["descriptions"]["process_peak_rss_bytes"]
    # the runs file, next to --json, one line per finished run
    runs_file = tmp_path / "score.runs.jsonl"
    assert doc["runs_file"] == str(runs_file) and len(_run_lines(runs_file)) == 9
    # the terminal scorecard: every row, every judgment with its criteria
    for title in ROW_TITLES:
        assert title in out
    for wl in ("Mixed WS=400", "Mixed WS=4000", "heavy churn"):
        assert f"== {wl}" in out
    assert out.count("(B) vs FAST (A): ") == 6 and out.count("[NO-GO] no crash or error") == 6
    assert "worst verdict: " in out and "[SS_OS_STATS]" in out


def test_module_api_and_judgment_is_verdict_judge(tmp_path: Path) -> None:
    spec = ValidateSpec(cells=("churn/fast", "churn/lean-dontneed"), ops={"churn": 2000},
                        params={"churn": {"burst_mb": 8}}, epochs=2)  # beyond LEAN's 1 MiB-ish budget
    res = run_validate(spec, out=tmp_path / "runs.jsonl", progress=False)
    assert res.failed_runs == [] and res.measured == 2 and res.reused == 0
    lean = res.tables["churn/lean-dontneed"]
    assert res.judgments["churn/lean-dontneed"] == judge(res.tables["churn/fast"], lean, spec.criteria)
    assert lean["lean_decommit"] > 0 and lean["lean_retire"] > 0  # churn empties superslabs
    r = res.runs["churn/lean-dontneed"][0]
    assert r.peak_resident_bytes >= max(r.sample_resident_bytes) and r.final_resident_bytes < r.peak_resident_bytes
    doc = res.as_json()
    json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["verdicts"] == {"churn/lean-dontneed": res.judgments["churn/lean-dontneed"].label}
    text = format_scorecard(res)
    assert "LEAN+DONTNEED (B) vs FAST (A)" in text and "Mixed WS=400" not in text


def test_runs_by_time(tmp_path: Path) -> None:
    spec = ValidateSpec(cells=("mixed-400/fast", "mixed-400/lean-free"), ops={"mixed-400": 5000},
                        duration=0.3, epoch=0.1)
    res = run_validate(spec, out=tmp_path / "runs.jsonl", progress=False)
    assert res.failed_runs == []
    for runs in res.runs.values():
        r = runs[0]
        assert len(r.epoch_ops_per_s) >= 2 and all(s >= 0.1 for s in r.epoch_seconds)
        assert r.ops > 5000  # pass after pass
        assert r.sample_ops == sorted(r.sample_ops) and len(r.sample_ops) > len(r.epoch_ops)
        assert r.peak_resident_bytes >= max(r.sample_resident_bytes) > 0
    assert res.as_json()["settings"]["mode"] == "duration"
    assert "0.3 s per run in 0.1 s epochs" in format_scorecard(res)


def test_isolated_run(tmp_path: Path) -> None:
    spec = ValidateSpec(cells=("mixed-400/fast",), ops={"mixed-400": 2000}, epochs=2, isolate=True)
    res = run_validate(spec, out=tmp_path / "runs.jsonl", progress=False)
    r = res.runs["mixed-400/fast"][0]
    assert r.isolated and r.error is None and r.peak_resident_bytes > 0


def test_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")  # the plot extra (in the test extra)
    rep = tmp_path / "rep"
    assert main([*TINY, "--cells", "mixed-400,churn", "--report", str(rep)]) == EXIT_OK
    md = (rep / "report.md").read_text()
    assert "# Phase 54 full validation" in md and "| heavy churn LEAN+FREE |" in md
    assert "GO (every one; N/A counts as met):" in md and "VmHWM incl. Python interpreter" in md
    for png in ("resident.png", "throughput.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_run_lines(rep / "runs.jsonl")) == 6  # the runs file defaults into the report dir
    assert "report: " in capsys.readouterr().out


def test_report_without_matplotlib_exits_2_before_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([*TINY, "--report", str(tmp_path / "rep")]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        'simalloc: plotting needs matplotlib: pip install "simalloc[plot]"']
    assert not (tmp_path / "rep").exists()
    with pytest.raises(ImportError, match="simalloc"):
        write_report(None, tmp_path / "rep2")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- interrupt, resume
def test_interrupted_run_keeps_finished_cells_and_resume_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = val.measure
    calls: list[str] = []

    def interrupt_after_first(job: Any, **kw: Any) -> RunResult:
        calls.append(job.cell)
        if calls == ["mixed-400/fast", "mixed-400/lean-free"]:  # Ctrl-C during the second cell
            raise KeyboardInterrupt
        return real(job, **kw)

    monkeypatch.setattr(val, "measure", interrupt_after_first)
    out = tmp_path / "runs.jsonl"
    argv = [*TINY, "--cells", "mixed-400", "--out", str(out)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"interrupted after 1 of 3 runs; finished runs kept in {out}" in err
    assert f"--resume {out}" in err
    assert [r["cell"] for r in _run_lines(out)] == ["mixed-400/fast"]
    # an existing runs file is never overwritten
    assert main(argv) == EXIT_USAGE
    assert "exists: continue it with --resume" in capsys.readouterr().err
    # other settings: refused, nothing runs
    calls.clear()
    assert main([*argv[:2], "3000", *argv[3:], "--resume", str(out)]) == EXIT_USAGE
    assert "other settings (ops differ)" in capsys.readouterr().err and calls == []
    # resume: the finished cell is reused, the other two run and are appended
    js = tmp_path / "s.json"
    assert main([*TINY, "--cells", "mixed-400", "--resume", str(out), "--json", str(js)]) == EXIT_OK
    assert calls == ["mixed-400/lean-free", "mixed-400/lean-dontneed"]
    assert [r["cell"] for r in _run_lines(out)] == ["mixed-400/fast", "mixed-400/lean-free",
                                                    "mixed-400/lean-dontneed"]
    doc = json.loads(js.read_text())
    assert doc["reused_runs"] == 1 and doc["measured_runs"] == 2 and len(doc["verdicts"]) == 2
    assert set(load_runs(out)) == {(c, 0) for c in CELLS[:3]}


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('{"kind": "header"}\n{"kind": "run", "cell": "churn/fast", "run": 0, "key": {}, '
                 '"result": {}}\n{"kind": "run", "ce')
    assert list(load_runs(f)) == [("churn/fast", 0)]


def test_default_runs_file_paths(tmp_path: Path) -> None:
    assert default_out(resume="x.jsonl") == Path("x.jsonl")
    assert default_out(str(tmp_path / "a.json")) == tmp_path / "a.runs.jsonl"
    (tmp_path / "a.runs.jsonl").write_text("")
    assert default_out(str(tmp_path / "a.json")) == tmp_path / "a.runs-2.jsonl"  # never overwritten
    assert default_out(None, str(tmp_path / "rep")) == tmp_path / "rep" / "runs.jsonl"
    assert default_out(now=0).parts[0].startswith("validate-")


# ---------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(("label", "gate", "code"), [
    (GO, False, EXIT_OK), (NEUTRAL, False, EXIT_OK), (NO_GO, False, EXIT_OK),
    (GO, True, EXIT_OK), (NEUTRAL, True, EXIT_NEUTRAL), (NO_GO, True, EXIT_NO_GO),
])
def test_exit_codes_and_gate(label: str, gate: bool, code: int, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(val, "judge", lambda a, b, c: Verdict(label, [f"forced {label}"]))
    argv = [*TINY, "--cells", "mixed-400/lean-free", "--out", str(tmp_path / "r.jsonl")]
    assert main([*argv, *(["--gate"] if gate else [])]) == code
    assert f"worst verdict: {label}" in capsys.readouterr().out


def test_gate_reports_the_worst_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    labels = iter([GO, NEUTRAL])
    monkeypatch.setattr(val, "judge", lambda a, b, c: Verdict(next(labels), ["forced"]))
    assert main([*TINY, "--cells", "mixed-400", "--gate", "--out", str(tmp_path / "r.jsonl")]) == EXIT_NEUTRAL
    assert "Mixed WS=400   LEAN+FREE GO, LEAN+DONTNEED NEUTRAL" in capsys.readouterr().out


def test_failed_run_exits_1_and_outranks_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raising = ["--set", "SIMALLOC_POLICY=policies_for_tests:RaisingTick,tick_interval_ops=1000"]
    assert main(["validate", "--ops", "6000", "--epochs", "2", "--cells", "mixed-400/fast", "--gate",
                 "--json", "-", "--out", str(tmp_path / "r.jsonl"), *raising]) == EXIT_FAILED
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["failed_runs"] == ["mixed-400/fast run 1: RuntimeError: policy tick exploded (test policy)"]
    assert "simalloc validate: error: 1 of 1 run(s) failed" in cap.err
    assert "FAILED RUNS (1)" in cap.err  # the scorecard (on stderr with --json -) says so too


@pytest.mark.parametrize("extra", [
    ["--cells", "nonsense"],
    ["--ops", "churn=x"],
    ["--ops", "nochurn=5"],
    ["--param", "burst_mb=2"],
    ["--param", "churn:no_such_param=2"],
    ["--runs", "0"],
    ["--duration", "1", "--epoch", "2"],
    ["--set", "HAKMEM_SS_MEM_LEAN_TARGET_MB=banana"],
    ["--resume", "/nonexistent/runs.jsonl"],
])
def test_usage_errors_exit_2_before_running(extra: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--out", str(tmp_path / "r.jsonl"), *extra]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "simalloc validate: error:" in err and "Traceback" not in err and "[validate]" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0    every cell completed", "1    a run failed", "2    usage or configuration error",
                 "3    with --gate: the worst LEAN cell's verdict is NEUTRAL",
                 "4    with --gate: the worst LEAN cell's verdict is NO-GO", "130  interrupted"):
        assert line in out
    assert NA == "N/A"
