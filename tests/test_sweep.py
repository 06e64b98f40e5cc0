"""``simalloc sweep``: the grid, the results on disk (CSV, parquet, PNG), Dask, resume, exit codes.

Every point runs in a real fresh interpreter; op counts are tiny (churn --ops 20000 with 4 MiB
bursts: one round, ~46k ops; mixed --ops 20000) so the file stays fast.  The
Dask test uses a real ``distributed.LocalCluster`` with in-process (thread) workers
(``processes=False``: faster to start; each task still starts its own point process).
"""

from __future__ import annotations

import csv
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simalloc.cli import main
from simalloc.errors import ConfigError
from simalloc.experiments.sweep import Point, PointsFile, SweepSpec, expand
from simalloc.experiments.sweep_plot import configurations, format_pareto, pareto_flags

ROOT = Path(__file__).resolve().parents[1]
CHURN = ["sweep", "--workload", "churn", "--ops", "20000", "--epochs", "2", "--param", "burst_mb=4"]
MIXED = ["sweep", "--workload", "mixed", "--ops", "20000", "--epochs", "2"]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "points.csv").open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- the grid (no runs)
def test_grid_crosses_options_and_applies_knobs_only_where_they_exist() -> None:
    spec = SweepSpec(policies=("fast", "jemalloc-decay", "slab-purge"), workloads=("mixed",), seeds=(1, 2),
                     grid=(("mem_lean_target_mb", ("0", "40")), ("dirty_decay_ms", ("0", "1000")),
                           ("slab-purge.delay_ops", ("0", "5000"))), ops=1000, epochs=1)
    points = expand(spec)
    by_policy: dict[str, list[Point]] = {}
    for p in points:
        by_policy.setdefault(p.policy, []).append(p)
    # fast: 2 targets x 2 seeds, + the FAST reference per seed (no options: a distinct key)
    assert len([p for p in by_policy["fast"] if not p.reference]) == 4
    assert len([p for p in by_policy["fast"] if p.reference]) == 2
    assert all(not p.knobs for p in by_policy["fast"])
    # jemalloc-decay: 2 targets x 2 decay times x 2 seeds; the knob goes to the constructor
    assert len(by_policy["jemalloc-decay"]) == 8
    assert {p.knobs["dirty_decay_ms"] for p in by_policy["jemalloc-decay"]} == {0, 1000}
    # the scoped axis reaches slab-purge only; dirty_decay_ms does not
    assert len(by_policy["slab-purge"]) == 8
    assert {p.knobs["delay_ops"] for p in by_policy["slab-purge"]} == {0, 5000}
    assert all("dirty_decay_ms" not in p.knobs for p in by_policy["slab-purge"])
    assert len({p.key for p in points}) == len(points) == 4 + 2 + 8 + 8
    assert all(p.options["mem_lean_target_mb"] in ("0", "40") for p in points if not p.reference)


def test_env_names_and_reserved_axes() -> None:
    spec = SweepSpec(policies=("lean",), grid=(("HAKMEM_SS_MEM_LEAN_DECOMMIT", ("FREE", "DONTNEED")),
                                               ("ws", ("400", "4000")), ("seed", ("3",))),
                     ops=1000, epochs=1, reference=False)
    points = expand(spec)
    assert len(points) == 4
    assert {p.ws for p in points} == {400, 4000} and {p.seed for p in points} == {3}
    assert {p.options["mem_lean_decommit"] for p in points} == {"FREE", "DONTNEED"}
    assert {p.axes["HAKMEM_SS_MEM_LEAN_DECOMMIT"] for p in points} == {"FREE", "DONTNEED"}


@pytest.mark.parametrize(("grid", "policies", "named"), [
    (("bogus", ("1",)), ("fast",), "bogus"),
    (("lean.dirty_decay_ms", ("1",)), ("lean", "fast"), "dirty_decay_ms"),
    (("mem_lean_target_mb", ("lots",)), ("lean",), "mem_lean_target_mb"),
    (("dirty_decay_ms", ("-7",)), ("jemalloc-decay",), "dirty_decay_ms"),
])
def test_bad_grid_is_a_config_error_naming_it(grid: tuple[str, tuple[str, ...]], policies: tuple[str, ...],
                                              named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        expand(SweepSpec(policies=policies, grid=(grid,), ops=1000, epochs=1))


def test_pareto_front_and_fast_comparison() -> None:
    def row(policy: str, config: str, res: float, thr: float, seed: int, ref: bool = False) -> dict[str, object]:
        return {"key": f"{policy}{config}{seed}", "policy": policy, "config": config, "workload": "mixed",
                "ws": "400", "ops": "1000", "epochs": "1", "seed": str(seed), "reference": str(ref),
                "ops_per_s": thr, "peak_resident_bytes": res, "syscalls_per_op": 0.0,
                "drift_settled_pct": 0.0, "epoch_cv_pct": 1.0, "error": ""}

    rows = [row("fast", "(defaults)", 100e6, 10e6, s, True) for s in (1, 2)]
    rows += [row("lean", "a", 20e6, 9.5e6, s) for s in (1, 2)]      # on the front, GO
    rows += [row("lean", "b", 50e6, 9.0e6, s) for s in (1, 2)]      # dominated by a
    rows += [row("lean", "c", 10e6, 5e6, 1), {**row("lean", "c", 10e6, 5e6, 2), "error": "boom"}]
    configs = pareto_flags(configurations(rows))
    by = {c["config"]: c for c in configs}
    assert by["(defaults)"]["pareto"] and by["a"]["pareto"] and by["c"]["pareto"]
    assert not by["b"]["pareto"]
    assert by["c"]["seeds"] == 1  # the failed seed is left out
    assert math.isclose(by["a"]["resident_pct"], -80.0) and math.isclose(by["a"]["throughput_pct"], -5.0)
    assert by["a"]["go"] == "GO" and by["b"]["go"].startswith("no:")
    table = format_pareto(configs)
    assert "* lean" in table and " b " not in table.split("policy", 1)[1]


def test_resident_choices_and_the_virtual_mean_column() -> None:
    from simalloc.experiments.sweep import idle_workloads, make_row, row_columns
    from simalloc.experiments.sweep_plot import RESIDENT

    assert "mean_resident_virtual_bytes" in row_columns([])
    p = Point(policy="fast", workload="idle", seed=1, ws=None, ops=1000, epochs=1)
    row = make_row(p, {"ops": 1000, "mean_resident_bytes": 4096.0, "mean_resident_virtual_bytes": 1024.0},
                   None, "t0", 0.1)
    assert row["mean_resident_virtual_bytes"] == 1024.0 and row["mean_resident_bytes"] == 4096.0
    rows = [{**row, "reference": "True", "ops_per_s": 1e6, "syscalls_per_op": 0.0, "drift_settled_pct": 0.0,
             "epoch_cv_pct": 1.0}]
    assert RESIDENT["virtual_mean"][0] == "mean_resident_virtual_bytes"
    (c,) = configurations(rows, "virtual_mean")
    assert c["resident_bytes"] == 1024.0
    assert configurations(rows, "mean")[0]["resident_bytes"] == 4096.0
    table = format_pareto(pareto_flags([c]), "virtual_mean")
    assert "virtual_mean KiB" in table and "resident = virtual_mean: mean over virtual time" in table
    with pytest.raises(ConfigError, match="'median'"):
        configurations(rows, "median")
    # which workloads have idle phases: the idle workload (idle_s > 0), not mixed or churn
    spec = SweepSpec(policies=("fast",), workloads=("mixed", "idle", "churn"), ops=1000, epochs=1)
    assert idle_workloads(expand(spec)) == ["idle"]
    no_gap = SweepSpec(policies=("fast",), workloads=("idle",), params={"idle_s": 0.0}, ops=1000, epochs=1)
    assert idle_workloads(expand(no_gap)) == []


# ---------------------------------------------------------------------------- real sweeps
def test_sweep_of_an_idle_workload_judges_the_virtual_mean(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "idle"
    rc = main(["sweep", "--workload", "idle", "--ops", "20000", "--epochs", "1", "--param", "burst_mb=2",
               "--param", "idle_s=5", "--policy", "fast,jemalloc-decay", "--workers", "2", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    rows = _rows(out)
    assert len(rows) == 2 and not any(r["error"] for r in rows)
    for r in rows:  # the idle gaps weigh in the virtual mean and nothing in the ops mean
        assert float(r["mean_resident_virtual_bytes"]) > 0
        assert float(r["mean_resident_virtual_bytes"]) != float(r["mean_resident_bytes"])
    assert "resident = virtual_mean" in printed.out and "virtual_mean KiB" in printed.out
    assert "idle has idle phases" in printed.err
    by = {r["policy"]: r for r in rows}  # decay returns pages while idle: its virtual mean is lower
    assert float(by["jemalloc-decay"]["mean_resident_virtual_bytes"]) < float(by["fast"]["mean_resident_virtual_bytes"])


def test_local_sweep_writes_csv_parquet_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    rc = main([*CHURN, "--policy", "fast,lean", "--grid", "mem_lean_decommit=FREE,DONTNEED",
               "--workers", "2", "--out", str(out)])
    assert rc == 0
    rows = _rows(out)
    assert len(rows) == 5  # 2 policies x 2 advices + the FAST reference
    assert len({r["key"] for r in rows}) == 5 and not any(r["error"] for r in rows)
    assert sum(r["reference"] == "True" for r in rows) == 1
    assert {r["mem_lean_decommit"] for r in rows if r["reference"] != "True"} == {"FREE", "DONTNEED"}
    for r in rows:
        assert float(r["ops_per_s"]) > 0 and int(r["peak_resident_bytes"]) > 0
        assert int(r["peak_resident_bytes"]) >= int(r["final_resident_bytes"])
        assert int(r["process_peak_rss_bytes"]) > int(r["peak_resident_bytes"])  # + the interpreter
        assert float(r["syscalls_per_op"]) >= 0 and int(r["timed_ops"]) >= 20000
    import pandas as pd

    df = pd.read_parquet(out / "points.parquet")
    assert len(df) == 5 and set(df["key"]) == {r["key"] for r in rows}
    assert (df["ops_per_s"] > 0).all()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr()
    assert "Pareto front: churn" in printed.out and "[5/5]" in printed.err
    assert "resident = peak" in printed.out  # no idle phases: the default stays peak
    assert all(float(r["mean_resident_virtual_bytes"]) > 0 for r in rows)


def test_dask_local_cluster(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason='the sweep extra: pip install "simalloc[sweep]"')
    out = tmp_path / "dask"
    trace = ROOT / "tests" / "data" / "textwork.npz"  # an op-stream file is a workload too
    rc = main([*MIXED, "--policy", "fast,lean-dontneed", "--workload", f"mixed,{trace}", "--workers", "2",
               "--scheduler", "local", "--out", str(out)])
    assert rc == 0
    rows = _rows(out)
    assert sorted(r["policy"] for r in rows) == ["fast", "fast", "lean-dontneed", "lean-dontneed"]
    assert {r["workload"] for r in rows} == {"mixed", str(trace)}
    assert all(float(r["ops_per_s"]) > 0 and not r["error"] for r in rows)
    assert (out / "points.parquet").exists() and (out / "pareto.png").exists()


def test_scheduler_without_dask_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert main([*MIXED, "--scheduler", "local", "--out", str(tmp_path / "x")]) == 2
    assert 'pip install "simalloc[sweep]"' in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_grid_key_exits_2_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*MIXED, "--grid", "mem_lean_targetmb=0,10", "--out", str(tmp_path / "x")]) == 2
    assert "mem_lean_targetmb" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_failed_point_is_recorded_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "fail"
    rc = main([*MIXED, "--policy", "policies_for_tests:RaisingTick", "--set", "tick_interval_ops=1000",
               "--no-reference", "--out", str(out)])
    assert rc == 1
    (row,) = _rows(out)
    assert "policy tick exploded" in row["error"]


def test_interrupted_sweep_resumes_without_rerunning_finished_points(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    cmd = [sys.executable, "-m", "simalloc", *MIXED, "--policy", "fast,lean-dontneed",
           "--seed", "1,2,3", "--workers", "1", "--out", str(out)]
    total = 6  # 2 policies x 3 seeds (the FAST reference is the fast points)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "points.csv").exists() and len(_rows(out)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    first = {r["key"]: r for r in _rows(out)}
    assert 2 <= len(first) < total and not any(r["error"] for r in first.values())
    assert (out / "points.parquet").exists()  # written on the interrupt too

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(first)} already in" in again.stderr
    rows = _rows(out)
    assert len(rows) == total and len({r["key"] for r in rows}) == total  # nothing ran twice
    for key, r in first.items():  # the finished points kept their rows (same finish time)
        assert next(x for x in rows if x["key"] == key)["finished_utc"] == r["finished_utc"]
    import pandas as pd

    assert len(pd.read_parquet(out / "points.parquet")) == total


def test_points_file_drops_a_row_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("key,policy,error\nabc,fast,\ndef,le")  # killed in the middle of a row
    pf = PointsFile(path, ["key", "policy", "error"])
    assert pf.done_keys() == {"abc"}
    pf.append({"key": "ghi", "policy": "lean", "error": ""})
    pf.close()
    assert [r["key"] for r in _rows(tmp_path)] == ["abc", "ghi"]
