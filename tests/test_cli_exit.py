"""The command line's exit codes (README, ``simalloc COMMAND --help``): 0 the command completed
(for ``ab``: whatever the verdict), 1 a run failed (a release policy that raises included),
2 usage or configuration error before anything ran, and ``ab --gate``: 3 NEUTRAL, 4 NO-GO.
Tiny workloads only; verdict-dependent codes are forced by patching the judge, except NO-GO,
which a zero resident target makes certain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simalloc.cli import EXIT_FAILED, EXIT_NEUTRAL, EXIT_NO_GO, EXIT_OK, EXIT_USAGE, main
from simalloc.experiments import ab as ab_mod
from simalloc.experiments.verdict import GO, NEUTRAL, NO_GO, Verdict

pytestmark = pytest.mark.usefixtures("clean_env")

ROOT = Path(__file__).resolve().parents[1]
TINY_AB = ["ab", "--ops", "3000", "--runs", "1", "--epochs", "3"]
#: Side B with a release policy whose tick() raises mid-run (tests/policies_for_tests.py).
RAISING_B = ["--b", "SIMALLOC_POLICY=policies_for_tests:RaisingTick,tick_interval_ops=1000"]


def test_exit_code_constants() -> None:
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NEUTRAL, EXIT_NO_GO) == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("label", [GO, NEUTRAL, NO_GO])
def test_ab_exits_0_for_any_verdict_without_gate(label: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ab_mod, "judge", lambda a, b, c: Verdict(label, [f"forced {label}"]))
    assert main(TINY_AB) == EXIT_OK
    assert f"verdict: {label}" in capsys.readouterr().out


@pytest.mark.parametrize(("label", "code"), [(GO, 0), (NEUTRAL, 3), (NO_GO, 4)])
def test_ab_gate(label: str, code: int, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ab_mod, "judge", lambda a, b, c: Verdict(label, [f"forced {label}"]))
    assert main([*TINY_AB, "--gate", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["verdict"] == label


def test_ab_gate_real_nogo(capsys: pytest.CaptureFixture[str]) -> None:
    # no heap is below 0 MiB and A is not below it either: the reduction criteria apply, and
    # LEAN reduces nothing on Mixed -> NO-GO (residency depends only on the op stream)
    assert main([*TINY_AB, "--gate", "--rss-target-mb", "0"]) == EXIT_NO_GO
    out = capsys.readouterr().out
    assert "verdict: NO-GO" in out and "FAIL [NO-GO] peak resident (heap) reduction >= 50%" in out


def test_ab_raising_policy_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the run's exception became "FAIL no crash" and ``ab`` exited 0."""
    assert main([*TINY_AB, "--ops", "6000", *RAISING_B]) == EXIT_FAILED
    cap = capsys.readouterr()
    assert "verdict: NO-GO" in cap.out and "FAILED RUNS (1)" in cap.out  # the table is still printed
    err = cap.err.splitlines()
    assert ("simalloc ab: error: 1 of 2 run(s) failed; the verdict printed is not a judgment of a "
            "completed experiment") in err
    assert "  B run 1: RuntimeError: policy tick exploded (test policy)" in err


def test_ab_failed_run_outranks_the_gate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY_AB, "--ops", "6000", "--gate", "--json", *RAISING_B]) == EXIT_FAILED
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == NO_GO
    assert doc["failed_runs"] == ["B run 1: RuntimeError: policy tick exploded (test policy)"]


def test_ab_policy_raising_while_the_heap_is_built_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY_AB, "--a", "SIMALLOC_POLICY=policies_for_tests:RaisingPrewarm"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "A run 1: heap construction failed: RuntimeError: policy exploded" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", [
    ["run", "--ops", "6000", "--epochs", "2"],
    ["bench", "--ops", "6000", "--epochs", "2", "--runs", "2"],
    ["soak", "--duration", "0.3", "--epoch", "0.1", "--pass-ops", "6000", "--csv", "-"],
])
def test_run_bench_soak_exit_1_when_the_policy_raises(cmd: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*cmd, "--set", "SIMALLOC_POLICY=policies_for_tests:RaisingTick,tick_interval_ops=1000"]) \
        == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"simalloc {cmd[0]}: error:" in err and "policy tick exploded" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", [
    ["run", "--ops", "3000", "--epochs", "2"],
    ["bench", "--ops", "3000", "--epochs", "2", "--runs", "1"],
    ["soak", "--duration", "0.2", "--epoch", "0.1", "--pass-ops", "5000", "--csv", "-"],
])
def test_run_bench_soak_exit_0(cmd: list[str]) -> None:
    assert main(cmd) == EXIT_OK


@pytest.mark.parametrize("argv", [
    ["ab", "--b", "HAKMEM_SS_MEM_LEAN=banana"],
    ["ab", "--rss-target-mb", "nan"],
    ["ab", "--rss-target-mb", "inf"],
    ["ab", "--drift-tolerance", "-1"],
    ["ab", "--bogus-flag"],
    ["run", "--set", "HAKMEM_SUPERSLAB_TTL_SEC=nan"],
    ["bench", "--set", "HAKMEM_TINY_PREWARM_C2=1G"],
    ["soak", "--duration", "inf"],
    ["soak", "--set", "SIMALLOC_TICK_INTERVAL_OPS=0x8000000000000000"],
    ["options", "--set", "SIMALLOC_POLICY=nonsense"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[ab] run" not in err  # nothing ran


def test_report_without_matplotlib_exits_2_before_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main([*TINY_AB, "--report", str(tmp_path / "rep")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.splitlines() == ['simalloc: plotting needs matplotlib: pip install "simalloc[plot]"']
    assert not (tmp_path / "rep").exists()
    with pytest.raises(ImportError, match=r'pip install "simalloc\[plot\]"'):
        ab_mod.write_report(None, tmp_path / "rep2")  # type: ignore[arg-type]
    assert not (tmp_path / "rep2").exists()


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ab", "--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0  the experiment completed, whatever the verdict", "1  a run failed",
                 "2  usage or configuration error", "3  with --gate: the verdict is NEUTRAL",
                 "4  with --gate: the verdict is NO-GO"):
        assert line in out, line
    for cmd in ("run", "bench", "soak"):
        assert main([cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert "exit status:" in out and "1  " in out and "2  usage or configuration error" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import simalloc

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"simalloc {simalloc.__version__}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAKMEM_", "SIMALLOC_"))}
    if os.environ.get("SIMALLOC_KERNEL"):
        env["SIMALLOC_KERNEL"] = os.environ["SIMALLOC_KERNEL"]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def test_process_exit_codes() -> None:
    """The codes reach the shell (``python -m simalloc``), not only ``main``'s return value."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "simalloc", *argv], capture_output=True, text=True,
                              timeout=300, env=_env(), cwd=ROOT)

    proc = run(*TINY_AB, "--ops", "6000", *RAISING_B)
    assert proc.returncode == 1, proc.stderr
    assert "policy tick exploded" in proc.stderr and "Traceback" not in proc.stderr
    assert run("ab", "--b", "HAKMEM_SS_MEM_LEAN=banana").returncode == 2
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("simalloc ")
