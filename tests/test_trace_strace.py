"""``simalloc strace``: the python-ptrace syscall tracer (simalloc.trace.ptracer).

The python-ptrace tests need only python-ptrace; the comparison with real ``strace -c -f`` is
skipped when strace is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ptrace")

from simalloc.cli import main  # noqa: E402
from simalloc.trace.ptracer import (  # noqa: E402
    TraceUnavailable,
    compare_with_strace,
    format_summary,
    ptrace_diagnosis,
    real_strace,
    trace_command,
)

MARK = 0x7E570000
MiB = 1 << 20

# Exact memory calls between two marks, made through libc.syscall so the interpreter allocates
# (almost) nothing in between; then a thread and a forked child with advices nobody else uses.
CHILD = textwrap.dedent(f"""
    import ctypes, os, threading
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    args = [ctypes.c_long(x) for x in range(8)]
    S = dict(mmap=9, mprotect=10, munmap=11, brk=12, mremap=25, madvise=28)
    MiB = {MiB}
    def sc(*a): return libc.syscall(*[ctypes.c_long(x) for x in a])
    def mark(k):
        try: os.lseek(-1, {MARK} + k, 0)
        except OSError: pass
    mark(0)
    maps = [sc(S['mmap'], 0, (i + 1) * MiB, 3, 0x22, -1, 0) for i in range(5)]
    for i, m in enumerate(maps):
        sc(S['madvise'], m, MiB, 4 if i % 2 else 8)     # 2 DONTNEED, 3 FREE
    sc(S['mprotect'], maps[0], 4096, 1)
    grown = sc(S['mremap'], maps[1], 2 * MiB, 3 * MiB, 1)  # MREMAP_MAYMOVE
    sc(S['munmap'], maps[0], MiB)
    sc(S['munmap'], grown, 3 * MiB)
    sc(S['brk'], 0)
    sc(S['madvise'], maps[2], 4096, 99)                  # EINVAL
    mark(1)
    def worker():
        for _ in range(3):
            sc(S['madvise'], maps[3], 4096, 20)          # COLD, from a thread
    t = threading.Thread(target=worker); t.start(); t.join()
    pid = os.fork()
    if pid == 0:
        sc(S['madvise'], maps[4], 4096, 17); sc(S['madvise'], maps[4], 4096, 17)  # DODUMP x2
        os._exit(0)
    os.waitpid(pid, 0)
""")


@pytest.fixture(scope="module")
def child_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("strace") / "child.py"
    p.write_text(CHILD)
    return p


@pytest.fixture(scope="module")
def single_thread_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The marked part only: no thread, no fork, so two runs make the same syscalls."""
    p = tmp_path_factory.mktemp("strace1") / "child1.py"
    p.write_text(CHILD.split("def worker")[0])
    return p


@pytest.fixture(scope="module")
def traced(child_script: Path):  # noqa: ANN201
    return trace_command([sys.executable, str(child_script)], marker_base=MARK, interval=0.005)


def test_exact_calls_between_marks(traced) -> None:  # noqa: ANN001
    tr = traced
    assert tr.exit_code == 0
    t0, t1 = sorted(t for t, _tid, v in tr.markers if v in (0, 1))
    ev = [e for e in tr.events if t0 < e[0] < t1 and e[2] == tr.root_pid]
    by = {}
    for e in ev:
        by.setdefault(e[4], []).append(e)
    assert [e[5][1] for e in by["mmap"]] == [(i + 1) * MiB for i in range(5)]
    maps = [e[6] for e in by["mmap"]]
    assert all(m > 0 and m % 4096 == 0 for m in maps)
    madv = [(e[5][0], e[5][1], e[5][2], e[6]) for e in by["madvise"]]
    assert madv == [(m, MiB, 4 if i % 2 else 8, 0) for i, m in enumerate(maps)] + [(maps[2], 4096, 99, -22)]
    assert [(e[5], e[6]) for e in by["mprotect"]] == [((maps[0], 4096, 1), 0)]
    (mr,) = by["mremap"]
    assert mr[5][:4] == (maps[1], 2 * MiB, 3 * MiB, 1) and mr[6] > 0
    assert [e[5][:2] for e in by["munmap"]] == [(maps[0], MiB), (mr[6], 3 * MiB)]
    assert [e[5][0] for e in by["brk"]] == [0] and by["brk"][0][6] > 0
    assert all(e[1] >= 0 for e in ev)  # entry-to-exit times


def test_threads_and_children_are_followed(traced) -> None:  # noqa: ANN001
    tr = traced
    adv = tr.advice_counts()
    assert adv["COLD"]["calls"] == 3  # from the thread
    assert adv["DODUMP"]["calls"] == 2  # from the forked child
    assert len(tr.pids) == 2
    cold = [e for e in tr.events if e[4] == "madvise" and e[5][2] == 20]
    assert {e[2] for e in cold} == {tr.root_pid} and {e[3] for e in cold} != {tr.root_pid}
    dodump = [e for e in tr.events if e[4] == "madvise" and e[5][2] == 17]
    assert {e[2] for e in dodump} == {tr.pids[1]}
    assert adv["DONTNEED"]["bytes"] >= 2 * MiB and adv["FREE"]["calls"] >= 3
    assert tr.errors["madvise"] >= 1
    assert tr.rss and tr.rss_summary()["peak_vm_rss"] > 0
    s = format_summary(tr)
    for word in ("% time", "madvise", "mremap", "mprotect", "DONTNEED", "COLD", "bytes: mapped", "VmRSS"):
        assert word in s


def test_cli_writes_json_csv_png(tmp_path: Path, child_script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    j, c, p = tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "t.png"
    rc = main(["strace", "--json", str(j), "--csv", str(c), "--png", str(p), "--",
               sys.executable, str(child_script)])
    assert rc == 0
    doc = json.loads(j.read_text())
    assert doc["exit_code"] == 0 and doc["madvise_by_advice"]["COLD"]["calls"] == 3
    kinds = {e["syscall"] for e in doc["events"]}
    assert {"mmap", "munmap", "mremap", "madvise", "brk", "mprotect"} <= kinds
    assert any(e.get("advice") == "FREE" for e in doc["events"]) and doc["rss"]
    lines = c.read_text().splitlines()
    assert lines[0].startswith("t,kind,pid,tid,syscall,addr,length,advice")
    assert any(",syscall," in ln and ",madvise," in ln and ",COLD," in ln for ln in lines)
    assert any(",rss," in ln for ln in lines)
    assert p.stat().st_size > 5000
    assert "% time" in capsys.readouterr().out


def test_cli_failing_command_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strace", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 1
    assert "exited with 3" in capsys.readouterr().err
    assert main(["strace"]) == 2
    assert "no command given" in capsys.readouterr().err
    assert main(["strace", "--", "/nonexistent/program"]) == 2
    assert "cannot run" in capsys.readouterr().err


def test_ptrace_refused_gives_one_clear_error() -> None:
    """Under another tracer PTRACE_TRACEME is refused: one line saying why and how to allow it."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace not installed")
    r = subprocess.run([strace, "-f", "-o", os.devnull, sys.executable, "-m", "simalloc", "strace", "--",
                        "true"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("simalloc strace: error: ptrace is not permitted here")
    assert "already being traced" in lines[0]


def test_diagnosis_mentions_how_to_allow() -> None:
    msg = ptrace_diagnosis(1)
    assert msg.startswith("ptrace is not permitted here (Operation not permitted)")
    assert any(w in msg for w in ("SYS_PTRACE", "ptrace_scope", "already being traced"))


def test_missing_python_ptrace_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name.startswith("ptrace"):
            raise ImportError("no ptrace")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(TraceUnavailable, match=r"simalloc\[trace\].*GPL-2.0"):
        trace_command(["true"])


# ---------------------------------------------------------------------------- real strace
def _native_cmd() -> tuple[list[str], dict[str, str]]:
    from simalloc.native import NativeUnavailable, compile_driver, find_allocators

    try:
        exe = compile_driver()
        found = find_allocators()
    except NativeUnavailable as exc:
        pytest.skip(str(exc))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    lib = found.get("jemalloc")
    if lib:
        env["LD_PRELOAD"] = str(lib)
    return [str(exe), "300000", "400", "1"], env


@pytest.mark.parametrize("what", ["python", "native"])
def test_same_counts_as_strace_c_f(what: str, single_thread_script: Path) -> None:
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    if what == "python":
        argv, env = [sys.executable, str(single_thread_script)], dict(os.environ, PYTHONHASHSEED="0")
    else:
        argv, env = _native_cmd()
    ours = trace_command(argv, env=env)
    ref = real_strace(argv, env=env)
    rows = compare_with_strace(ours, ref)
    bad = [r for r in rows if not r[3]]
    assert not bad, rows
    assert any(r[0] == "madvise" and r[1] > 0 for r in rows)
