"""Tests of simalloc.native: the C Mixed driver builds, parses, counts the same operations as
MixedWorkload and runs the identical op sequence (trace checksum).  Skipped without a C compiler."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import simalloc
from simalloc.native import (
    NativeUnavailable,
    compile_driver,
    find_allocators,
    find_compiler,
    parse_line,
    run_native,
    run_trace,
    stream_checksum,
)
from simalloc.workloads import MixedWorkload, get_workload

HAVE_CC = find_compiler() is not None and any(map(shutil.which, ("cc", "gcc", "clang")))
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc / gcc / clang)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The compiled driver, built into a private cache dir kept for the whole module."""
    if not HAVE_CC:
        pytest.skip("no C compiler")
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMALLOC_CACHE_DIR", str(tmp_path_factory.mktemp("native-cache")))
    try:
        yield compile_driver()
    finally:
        mp.undo()


def test_native_unavailable_is_an_allocator_error() -> None:
    assert issubclass(NativeUnavailable, simalloc.AllocatorError)


def test_no_compiler_raises_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIMALLOC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(NativeUnavailable, match="no C compiler"):
        compile_driver(force=True)


def test_find_allocators_lists_installed_only() -> None:
    found = find_allocators()
    assert next(iter(found)) == "glibc" and found["glibc"] is None
    for name, path in found.items():
        assert name in ("glibc", "jemalloc", "mimalloc", "tcmalloc")
        if name != "glibc":
            assert path is not None and Path(path).is_file()


def test_unknown_allocator_and_bad_arguments() -> None:
    with pytest.raises(NativeUnavailable, match="unknown allocator"):
        run_native("hoard-3000", 10)
    with pytest.raises(simalloc.ConfigError):
        run_native("glibc", 10, ws=0)
    with pytest.raises(simalloc.ConfigError):
        run_native("glibc", 10, seed=0)


def test_parse_line() -> None:
    d = parse_line("ops=12 cycles=10 drain=2 prefault=1 seconds=0.5 ops_per_s=24.0 "
                   "max_rss_kb=100 ru_maxrss_kb=200 fnv1a=0x00000000000000ff")
    assert d["ops"] == 12 and d["seconds"] == 0.5 and d["max_rss_kb"] == 100 and d["fnv1a"] == 255
    with pytest.raises(NativeUnavailable):
        parse_line("hello")


@needs_cc
def test_driver_is_cached(driver: Path) -> None:
    assert driver.is_file() and compile_driver() == driver


@needs_cc
def test_glibc_row(driver: Path) -> None:
    w = get_workload("mixed", ops=50_000, ws=400, seed=1)
    (row,) = run_native("glibc", 50_000, 400, 1)
    assert row["allocator"] == "glibc" and row["library"] is None
    assert row["ops"] == w.total_ops and row["cycles"] == 50_000
    assert row["drain"] == w.drain_ops and row["prefault"] == 5_000
    assert row["seconds"] > 0 and row["ops_per_s"] > 0
    assert 0 < row["max_rss_bytes"] < 1 << 30
    assert set(row) >= {"allocator", "ops", "seconds", "ops_per_s", "max_rss_bytes"}


@needs_cc
def test_runs_and_preloaded_allocators(driver: Path) -> None:
    found = find_allocators()
    assert len(run_native("glibc", 2000, 64, 3, runs=2)) == 2
    for name in found:
        if name == "glibc":
            continue
        (row,) = run_native(name, 2000, 64, 3)
        assert row["allocator"] == name and row["ops"] == get_workload(
            "mixed", ops=2000, ws=64, seed=3).total_ops


@needs_cc
@pytest.mark.parametrize(("cycles", "ws", "seed", "max_ops"), [
    (20_000, 400, 1, None), (30_000, 4000, 1234567, None), (50_000, 400, 7, 3000), (0, 5, 2, None)])
def test_trace_matches_python_stream(driver: Path, cycles: int, ws: int, seed: int,
                                     max_ops: int | None) -> None:
    w = MixedWorkload(ops=cycles, ws=ws, seed=seed)
    got = run_trace(cycles, ws, seed, max_ops=max_ops)
    rows = w.op_stream(max_ops)
    assert got["trace_ops"] == len(rows)
    assert got["fnv1a"] == stream_checksum(rows)
    assert got["ops"] == w.total_ops


def test_stream_checksum_is_order_sensitive() -> None:
    rows = np.array([[0, 1, 20], [1, 1, 0]], dtype=np.int64)
    assert stream_checksum(rows) != stream_checksum(rows[::-1])
    assert stream_checksum(np.zeros((0, 3), dtype=np.int64)) == 0xCBF29CE484222325
