"""``simalloc grade``: policy resolution, the correctness check, the score, the exercises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import simalloc
from simalloc.cli import main
from simalloc.errors import ConfigError
from simalloc.experiments import grade as G

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "tests" / "exercise_solutions.py"


class RaisingPolicy(simalloc.ReleasePolicy):
    """Raises at the first empty superslab (a student's bug)."""

    name = "raising"

    def on_superslab_empty(self, ctx, ev):
        raise RuntimeError("student bug")


class BrokenConstructor(simalloc.ReleasePolicy):
    def __init__(self):
        raise ValueError("forgot an argument")


# ---------------------------------------------------------------------------- resolution
def test_resolve_builtin_names_presets_files_and_modules(tmp_path: Path) -> None:
    assert G.resolve_policy("lean-dontneed").overrides["mem_lean_decommit"] == "DONTNEED"
    assert G.resolve_policy("glibc-trim").overrides == {"policy": "glibc-trim"}
    one = tmp_path / "mine.py"
    one.write_text("import simalloc\nclass Mine(simalloc.FastPolicy):\n    name = 'mine'\n")
    spec = G.resolve_policy(str(one))
    assert spec.factory is not None and spec.factory().name == "mine"
    spec = G.resolve_policy(f"{SOLUTIONS}:KeepWarmReserve")
    assert spec.factory is not None and spec.factory().name == "keep-warm-reserve"
    spec = G.resolve_policy("test_grade:RaisingPolicy")  # module:Class (tests/ is on sys.path)
    assert spec.factory is RaisingPolicy


@pytest.mark.parametrize("spec, message", [
    ("nope", "expected fast"),
    ("missing_file.py", "no such file"),
    (f"{SOLUTIONS}", "defines 2 ReleasePolicy classes"),
    (f"{SOLUTIONS}:Nothing", "defines no 'Nothing'"),
    ("simalloc.options:Config", "not a ReleasePolicy subclass"),
    ("no_such_module_xyz:Class", "cannot load"),
])
def test_resolve_rejects_what_names_no_policy(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        G.resolve_policy(spec)


# ---------------------------------------------------------------------------- correctness
def test_a_changed_live_byte_is_found() -> None:
    with simalloc.Heap(simalloc.Config.defaults()) as heap:
        slots = np.zeros(4, dtype=np.uint64)
        rows = np.array([[0, 0, 100], [0, 1, 1000], [0, 2, 7]], dtype=np.int64)
        heap.replay(rows, slots)
        stamped = np.zeros(4, dtype=bool)
        assert G._verify_and_stamp(heap, slots, stamped, np.array([0, 1, 2])) == []
        assert stamped[:3].all()
        assert G._verify_and_stamp(heap, slots, stamped, np.zeros(0, dtype=np.int64)) == []
        v = heap.view(int(slots[1]))
        v[len(v) - 1] ^= 0xFF  # the last usable byte of the 1000-byte block (2047 usable)
        heap.view(int(slots[2]))[0] ^= 0xFF
        bad = G._verify_and_stamp(heap, slots, stamped, np.zeros(0, dtype=np.int64))
        assert [b.split()[1] for b in bad] == ["1", "2"]
        # a touched slot is not checked (its block may be a new one) and is stamped again
        assert G._verify_and_stamp(heap, slots, stamped, np.array([1, 2])) == []
        heap.drain_slots(slots)


def test_a_policy_that_raises_is_not_correct_and_scores_zero() -> None:
    spec = G.PolicySpec("raising", {}, RaisingPolicy)
    res = G.grade(spec, cases=(G.CASES["churn"],))
    row = res["cases"][0]["policy"]
    assert not row["correct"] and "RuntimeError: student bug" in row["errors"][0]
    assert res["score"] == 0.0 and not res["correct"]
    assert res["cases"][0]["fast"]["correct"]
    assert "failed: RuntimeError: student bug" in G.format_grade(res)
    broken = G.grade(G.PolicySpec("broken", {}, BrokenConstructor), cases=(G.CASES["trace"],))
    assert broken["score"] == 0.0
    assert "ValueError: forgot an argument" in broken["cases"][0]["policy"]["errors"][0]


# ---------------------------------------------------------------------------- the score
def test_fast_scores_100_and_the_score_follows_its_formula() -> None:
    cases = (G.CASES["churn"], G.CASES["trace"])
    fast = G.grade("fast", cases=cases)
    # exactly 100 but for a few page faults of noise (faults are the process's ru_minflt)
    assert fast["correct"] and fast["score"] == pytest.approx(100.0, abs=0.2)
    res = G.grade("lean-dontneed", cases=cases)
    assert res["correct"]
    us, ts = [], []
    for e in res["cases"]:
        p, f = e["policy"], e["fast"]
        assert p["peak_bytes"] >= p["mean_bytes"] > 0
        us.append((f["peak_bytes"] + f["mean_bytes"]) / (p["peak_bytes"] + p["mean_bytes"]))
        ts.append(1 / (1 + 100 * max(0.0, p["syscalls_per_op"] - f["syscalls_per_op"])
                       + 50 * max(0.0, p["faults_per_op"] - f["faults_per_op"])))
    assert res["score"] == pytest.approx(100 * (0.6 * sum(us) / 2 + 0.4 * sum(ts) / 2))
    churn = res["cases"][0]
    assert churn["policy"]["mean_bytes"] < 0.5 * churn["fast"]["mean_bytes"]  # LEAN releases
    assert churn["policy"]["refaults"] > 0 == churn["fast"]["refaults"]  # and pays in refaults
    # the kernel saw those refaults as minor faults (a few more or less: interpreter noise)
    extra = churn["policy"]["faults"] - churn["fast"]["faults"]
    assert abs(extra - churn["policy"]["refaults"]) <= 0.01 * churn["policy"]["refaults"] + 20
    assert churn["u"] > 1.3 and churn["t"] < 0.7  # less memory, more time, by the model
    text = G.format_grade(res)
    assert G.SCORE_FORMULA in text and f"SCORE {res['score']:.1f}" in text


@pytest.mark.skipif(simalloc.available_kernels() != ["cython", "python"] and
                    simalloc.available_kernels() != ["python", "cython"], reason="one kernel only")
def test_grade_figures_are_the_same_on_both_kernels() -> None:
    case = G.CASES["churn"]
    rows = [G.run_case(case, G.resolve_policy("lean-dontneed"), kernel=k) for k in ("cython", "python")]
    keys = ("ops", "peak_bytes", "mean_bytes", "final_bytes", "syscalls", "refaults")
    assert [r["kernel"] for r in rows] == ["cython", "python"]
    assert {k: rows[0][k] for k in keys} == {k: rows[1][k] for k in keys}
    assert abs(rows[0]["faults"] - rows[1]["faults"]) <= 50


# ---------------------------------------------------------------------------- exercises
@pytest.mark.parametrize("number, cls", [(1, "DecommitEveryEmpty"), (2, "KeepWarmReserve")])
def test_reference_solutions_pass_and_fast_fails(number: int, cls: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "--exercise", str(number), f"{SOLUTIONS}:{cls}"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("PASS") and "MISSED" not in out
    assert main(["grade", "--exercise", str(number), "fast"]) == 3
    out = capsys.readouterr().out
    assert out.rstrip().endswith("FAIL") and "mean resident MiB" in out and "MISSED" in out


def test_exercises_are_not_met_by_the_builtin_policies() -> None:
    """Each exercise asks for something no built-in policy gives (else it teaches nothing)."""
    for number in G.EXERCISES:
        for name in ("fast", "lean-dontneed", "slab-purge"):
            res = G.check_exercise(number, name)
            assert res["correct"] and not res["passed"], (number, name)


# ---------------------------------------------------------------------------- the command
def test_cli_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "fast", "--case", "trace", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "fast" and [e["case"] for e in doc["cases"]] == ["trace"]
    assert doc["score"] == pytest.approx(100.0, abs=0.5)
    assert main(["grade", "nope"]) == 2
    assert main(["grade", "fast", "--case", "nope"]) == 2
    assert main(["grade", "--exercise", "9", "fast"]) == 2
    assert main(["grade", "fast", "--case", "trace", "--trace", "/nonexistent.npz"]) == 2
    assert main(["grade", "test_grade:RaisingPolicy", "--case", "churn"]) == 1
    err = capsys.readouterr().err
    assert "POLICY 'nope'" in err and "unknown case 'nope'" in err and "--exercise 9" in err


def test_unmapping_pays_its_faults_like_decommitting() -> None:
    """An unmapped superslab has no refaults when mapped again, but the kernel zero-fills its
    pages all the same: the score charges faults, so unmapping is not a free lunch."""
    import exercise_solutions

    class UnmapEvery(simalloc.ReleasePolicy):
        def on_superslab_empty(self, ctx, ev):
            return simalloc.Release.unmap()

    case = (G.CASES["churn"],)
    unmap = G.grade(G.PolicySpec("unmap", {}, UnmapEvery), cases=case)["cases"][0]
    decommit = G.grade(G.PolicySpec("decommit", {}, exercise_solutions.DecommitEveryEmpty),
                       cases=case)["cases"][0]
    assert unmap["policy"]["refaults"] == 0 < decommit["policy"]["refaults"]
    assert unmap["policy"]["faults"] == pytest.approx(decommit["policy"]["faults"], rel=0.01)
    assert unmap["u"] == pytest.approx(decommit["u"], rel=0.01)  # same memory,
    assert unmap["t"] < decommit["t"]  # same faults, more syscalls


def test_the_exercise_statements_in_the_docs_match_the_grader() -> None:
    doc = " ".join((ROOT / "docs" / "exercises.md").read_text().replace(">", " ").split())
    for number, ex in G.EXERCISES.items():
        assert f"## Exercise {number}" in doc
        part = doc.split(f"## Exercise {number}")[1].split("## ")[0]
        assert ex.case in part
        for _metric, limit in ex.targets:
            assert f"{limit:,.0f}" in part, (number, limit)
    for case in G.SUITE:
        assert f"`{case.label}`" in doc


# ---------------------------------------------------------------------------- the idle case
def test_the_idle_case_judges_time_driven_presets_on_virtual_time() -> None:
    """The ``idle`` case (bursts, then 10 s idle gaps) is scored on the resident mean over
    virtual time: presets that release on a clock are no longer graded as FAST there, and
    the extra syscalls and faults are spread over the gaps (T_w ~ 1)."""
    case = G.CASES["idle"]
    assert case.workload == "idle" and case.mean == "virtual"
    res = {name: G.grade(name, cases=(case,)) for name in ("jemalloc-decay", "mimalloc-purge",
                                                           "tcmalloc-release")}
    for r in res.values():
        e = r["cases"][0]
        p, f = e["policy"], e["fast"]
        assert r["correct"] and p["mean_bytes"] == p["mean_virtual_bytes"] != p["mean_ops_bytes"]
        assert p["idle_ns"] == f["idle_ns"] == 4 * 10 * 10 ** 9
        busy = p["ops"] / p["span_ops"]
        assert 0 < busy < 1e-3  # 40 s of gaps against ~2 ms of operations
        cost = 1 + (100 * max(0.0, p["syscalls_per_op"] - f["syscalls_per_op"])
                    + 50 * max(0.0, p["faults_per_op"] - f["faults_per_op"])) * busy
        assert e["cost"] == pytest.approx(cost) and e["t"] > 0.99
    for name in ("jemalloc-decay", "mimalloc-purge"):  # purge after their decay / delay
        e = res[name]["cases"][0]
        assert e["policy"]["syscalls"] > 5 * e["fast"]["syscalls"], name
        assert e["u"] > 1.05 and res[name]["score"] > 102, name
    # tcmalloc's default release_rate is 0: no background release, FAST's figures exactly
    e = res["tcmalloc-release"]["cases"][0]
    assert e["policy"]["mean_bytes"] == e["fast"]["mean_bytes"] and e["u"] == 1.0


def test_other_cases_are_judged_per_operation() -> None:
    assert [c.label for c in G.SUITE if c.mean == "virtual"] == ["idle"]
    row = G.run_case(G.CASES["trace"], G.FAST)
    assert row["mean_bytes"] == row["mean_ops_bytes"] and row["span_ops"] == row["ops"]
    with pytest.raises(ConfigError, match="mean='wall'"):
        G.GradeCase("x", "mixed", 10, "about", mean="wall")
