"""``simalloc record -- python script.py``: memray capture -> op stream -> replay, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from simalloc.cli import main
from simalloc.trace import read_trace
from simalloc.trace.record import memray_command

DATA = Path(__file__).parent / "data"


def test_record_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("memray")
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "prog.npz", tmp_path / "prog.png"
    rc = main(["record", "-o", str(out), "--png", str(png), "--keep-capture", "--",
               sys.executable, str(DATA / "trace_prog.py")])
    text = capsys.readouterr().out
    assert rc == 0, text
    stream = read_trace(out)
    assert len(stream) > 10_000 and stream.summary()["reallocs"] > 100
    assert (tmp_path / "prog.bin").exists()  # --keep-capture
    assert "fast" in text and "lean-dontneed" in text and "process RSS" in text
    assert "real process under memray" in text and png.stat().st_size > 5000
    # the capture read back through memray gives the same stream as the saved file
    again = read_trace(tmp_path / "prog.bin", strict=False)
    assert again.summary()["peak_live_payload"] == stream.summary()["peak_live_payload"]
    # second command of "program -> A/B": replay the recording under two policies
    assert main(["replay", str(out), "--policy", "fast", "--policy", "slab-purge", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["results"]) == {"fast", "slab-purge"}


def test_record_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("memray")
    out = tmp_path / "c.npz"
    rc = main(["record", "-o", str(out), "--json", "--policy", "fast", "--",
               sys.executable, "-c", "x = [str(i) * 3 for i in range(3000)]; y = sorted(x)"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["ops"] > 1000 and doc["process"]["exit_code"] == 0
    assert doc["results"]["fast"]["peak_live_payload"] == doc["trace"]["peak_live_payload"]


def test_record_json_stdout_is_only_json(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The recorded program prints: with --json its stdout goes to stderr, stdout parses whole;
    a preset name (glibc-trim) is a --policy like the built-ins."""
    pytest.importorskip("memray")
    out = tmp_path / "p.npz"
    rc = main(["record", "-o", str(out), "--json", "--policy", "glibc-trim", "--policy", "fast",
               "--samples", "8", "--", sys.executable, "-c",
               "print('hello from the child'); x = [str(i) * 3 for i in range(2000)]; print(len(x))"])
    cap = capfd.readouterr()
    assert rc == 0, cap.err
    doc = json.loads(cap.out)  # the whole of stdout is one JSON document
    assert "hello from the child" in cap.err and "2000" in cap.err
    assert "hello from the child" not in cap.out
    assert set(doc["results"]) == {"glibc-trim", "fast"}
    assert doc["results"]["glibc-trim"]["policy"].startswith("glibc-trim")
    r = doc["results"]["fast"]
    assert len(r["timeline"]) >= 9 and r["final_resident_bytes"] == r["kernel_resident_bytes"]


def test_record_without_json_keeps_the_programs_stdout(tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("memray")
    rc = main(["record", "-o", str(tmp_path / "q.npz"), "--policy", "fast", "--samples", "2", "--",
               sys.executable, "-c", "print('hello from the child')"])
    cap = capfd.readouterr()
    assert rc == 0, cap.err
    assert "hello from the child" in cap.out and "process RSS" in cap.out


def test_record_failing_program_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("memray")
    rc = main(["record", "-o", str(tmp_path / "f.npz"), "--policy", "fast", "--",
               sys.executable, "-c", "import sys; sys.exit(4)"])
    assert rc == 1
    assert "exited with 4" in capsys.readouterr().err
    assert main(["record", "--", "ls", "-l"]) == 2
    assert "record runs a Python program" in capsys.readouterr().err


def test_memray_command() -> None:
    cmd = memray_command(["python3", "s.py", "--x"], "/tmp/c.bin")
    assert cmd[:6] == ["python3", "-m", "memray", "run", "--native", "--force"]
    assert cmd[-2:] == ["s.py", "--x"] and "/tmp/c.bin" in cmd


def test_record_without_memray_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "memray":
            raise ImportError("no memray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert main(["record", "--", sys.executable, "-c", "pass"]) == 2
    assert "simalloc[trace]" in capsys.readouterr().err
