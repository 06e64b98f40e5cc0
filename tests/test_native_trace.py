"""``simalloc native --trace``: the op-stream file both the C driver and ``Heap.replay`` read,
the driver's file mode, and the side-by-side table of real allocators and their models.

The driver tests need a C compiler; the traced ones python-ptrace as well."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import simalloc
from simalloc.cli import main
from simalloc.constants import OP_FREE, OP_MALLOC
from simalloc.native import NativeUnavailable, compile_driver, find_compiler, run_file
from simalloc.native.opfile import build_stream, read_opfile, write_opfile
from simalloc.trace import OpStream
from simalloc.trace.native_trace import make_stream
from simalloc.workloads import get_workload

DATA = Path(__file__).parent / "data"
HAVE_CC = find_compiler() is not None and any(map(shutil.which, ("cc", "gcc", "clang")))
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc / gcc / clang)")
try:
    import ptrace  # noqa: F401

    HAVE_PTRACE = True
except ImportError:
    HAVE_PTRACE = False
needs_ptrace = pytest.mark.skipif(not HAVE_PTRACE, reason="python-ptrace not installed (trace extra)")
MiB = 1 << 20


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not HAVE_CC:
        pytest.skip("no C compiler")
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMALLOC_CACHE_DIR", str(tmp_path_factory.mktemp("native-cache")))
    try:
        yield compile_driver()
    finally:
        mp.undo()


def test_opfile_is_the_workload_stream(tmp_path: Path) -> None:
    sf = build_stream("mixed", tmp_path, ops=5_000, ws=400, seed=3)
    w = get_workload("mixed", ops=5_000, ws=400, seed=3)
    rows = read_opfile(sf.path)
    assert sf.path.stat().st_size == 24 * len(rows)
    assert np.array_equal(rows[:sf.warmup_ops], w.warmup_stream())
    assert np.array_equal(rows[sf.warmup_ops:], w.op_stream())
    assert sf.ops == w.total_ops and sf.n_slots == w.nslots
    assert np.array_equal(read_opfile(write_opfile(rows[:7], tmp_path / "x.ops")), rows[:7])
    (tmp_path / "bad.ops").write_bytes(b"\0" * 25)
    with pytest.raises(simalloc.TraceError, match="24-byte rows"):
        read_opfile(tmp_path / "bad.ops")
    with pytest.raises(simalloc.ConfigError, match="unknown workload"):
        build_stream("no-such-thing", tmp_path, ops=10)
    with pytest.raises(simalloc.ConfigError, match="neither a workload"):
        make_stream("no-such-thing", tmp_path, ops=10)
    rep = make_stream(str(DATA / "realloc.rep"), tmp_path, ops=0)
    assert rep.warmup_ops == 0 and rep.name == "realloc.rep"
    assert np.array_equal(read_opfile(rep.path), simalloc.trace.read_trace(DATA / "realloc.rep").ops)


@needs_cc
def test_driver_file_mode_replays_a_trace(driver: Path, tmp_path: Path) -> None:
    sf = make_stream(str(DATA / "realloc.rep"), tmp_path, ops=0)
    (row,) = run_file("glibc", sf.path, sf.warmup_ops)
    assert row["ops"] == sf.ops and row["warmup_ops"] == 0 and row["n_slots"] <= sf.n_slots
    assert row["max_rss_kb"] >= row["rss_kb"] > 0 and row["base_rss_kb"] > 0
    mixed = build_stream("mixed", tmp_path, ops=20_000)
    (row,) = run_file("glibc", mixed.path, mixed.warmup_ops)
    assert (row["ops"], row["warmup_ops"]) == (mixed.ops, mixed.warmup_ops)
    (tmp_path / "cut.ops").write_bytes(mixed.path.read_bytes()[:100])  # a truncated row
    with pytest.raises(NativeUnavailable, match="truncated"):
        run_file("glibc", tmp_path / "cut.ops")
    with pytest.raises(NativeUnavailable, match="TIMED_FROM"):
        run_file("glibc", mixed.path, 10 ** 9)


def _big_blocks(path: Path, n: int = 3, size: int = 40 * MiB) -> Path:
    """Two small warm-up-free rounds of ``n`` blocks above glibc's largest mmap threshold
    (32 MiB): each is mmap'ed and munmap'ed, by glibc and by simalloc's large path."""
    rows = []
    for _ in range(n):
        rows += [(OP_MALLOC, 0, size), (OP_FREE, 0, 0)]
    OpStream(np.array(rows, dtype=np.int64), 1, source="big", fmt="npz").save(path)
    return path


@needs_cc
@needs_ptrace
def test_native_trace_glibc_table(driver: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    big = _big_blocks(tmp_path / "big.npz")
    args = ["native", "--trace", "--allocator", "glibc", "--ops", "20000",
            "--stream", "mixed", "--stream", str(big)]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in doc["streams"]] == ["mixed", "big.npz"]
    rows = {(r["stream"], r["label"]): r for r in doc["rows"]}
    assert set(rows) == {("mixed", "glibc"), ("mixed", "glibc-trim"),
                         ("big.npz", "glibc"), ("big.npz", "glibc-trim")}
    for (_stream, label), r in rows.items():
        assert r["error"] is None
        assert r["kind"] == ("native" if label == "glibc" else "model")
        assert r["ops_per_s"] > 0 and r["ops"] > 0
        assert r["peak_resident_bytes"] >= r["final_resident_bytes"] >= 0
        assert r["release_bytes"] >= 0 and r["memory_syscalls"] >= 0
        assert set(r["release_calls_per_op"]) == set(r["release_calls"])
    native = rows[("mixed", "glibc")]
    assert native["base_resident_bytes"] > 0 and native["peak_resident_bytes"] > 0
    assert native["ops"] == get_workload("mixed", ops=20_000).total_ops
    assert set(native["release_calls"]) <= {"munmap", "madvise:DONTNEED", "madvise:FREE",
                                            "brk-shrink"}  # a trim after the drain, at most
    assert native["extra"]["traced_line"]["ops"] == native["ops"]
    # 3 blocks of 40 MiB: exactly 3 munmaps of >= 40 MiB each, by glibc and by the model
    b = rows[("big.npz", "glibc")]
    assert b["release_calls"] == {"munmap": 3} and b["release_bytes"] >= 3 * 40 * MiB
    assert b["release_calls_per_op"]["munmap"] == pytest.approx(3 / 6)
    assert rows[("big.npz", "glibc-trim")]["release_calls"] == {"munmap": 3}
    # the text table carries the same fields
    assert main(args) == 0
    text = capsys.readouterr().out
    for head in ("ops/s", "peak KiB", "final KiB", "base KiB", "munmap/op", "DONTNEED/op",
                 "FREE/op", "brk-shrink/op", "released", "memsys/op"):
        assert head in text
    assert "stream mixed:" in text and "stream big.npz:" in text
    assert "~ glibc-trim" in text and "5.00e-01" in text


def test_stream_without_trace_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["native", "--stream", "mixed"]) == 2
    assert "--trace" in capsys.readouterr().err
