"""``simalloc verify``: the OS layer's counters equal the syscalls the kernel saw, under FAST,
LEAN+FREE, LEAN+DONTNEED and slab purge on churn (simalloc.trace.verify)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ptrace")

from simalloc.cli import main  # noqa: E402
from simalloc.trace.ptracer import SyscallTrace  # noqa: E402
from simalloc.trace.verify import VerifyResult, _rows, classify, format_verify, run_verify  # noqa: E402

MiB = 1 << 20


def test_verify_four_policies_on_churn(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", "--json"])
    doc = json.loads(capsys.readouterr().out)
    labels = [r["label"] for r in doc["results"]]
    assert labels == ["fast", "lean-free", "lean-dontneed", "slab-purge"]
    for r in doc["results"]:
        assert r["error"] is None, r
        bad = [row for row in r["rows"] if not row["match"]]
        assert not bad, (r["label"], bad)
        counters = {row["counter"]: row for row in r["rows"]}
        assert counters["mmap_total"]["heap"] > 0
        assert counters["close(): live mappings unmapped"]["kernel"] == "all"
    by = {r["label"]: {row["counter"]: row["kernel"] for row in r["rows"]} for r in doc["results"]}
    assert by["lean-free"]["madvise FREE"] > 0 and by["lean-free"]["madvise DONTNEED"] == 0
    assert by["lean-dontneed"]["madvise DONTNEED"] > 0 and by["lean-dontneed"]["madvise FREE"] == 0
    assert by["slab-purge"]["madvise DONTNEED"] > by["lean-dontneed"]["madvise DONTNEED"]
    assert by["fast"]["decommitted_bytes"] == 0
    assert rc == 0 and doc["ok"] is True


def test_verify_custom_run_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", "--policy", "lean-dontneed", "--workload", "mixed", "--ops", "20000",
               "--set", "mem_lean_target_mb=0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "MATCH" in out and "MISMATCH" not in out.replace("-- MISMATCH", "")
    assert "1/1 policies MATCH" in out


def test_verify_refuses_without_the_mark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--policy", "fast", "--set", "nohugepage=0"]) == 2
    assert "NOHUGEPAGE" in capsys.readouterr().err


def _trace(events: list[tuple[str, tuple[int, ...], int]], tid_of: dict[int, int] | None = None) -> SyscallTrace:
    tr = SyscallTrace(["x"], root_pid=100)
    tr.markers = [(0.5, 100, 0), (1000.5, 100, 1), (2000.5, 100, 2)]
    for i, (name, args, res) in enumerate(events):
        t = 1.0 + i if i < 1000 else 0
        tid = (tid_of or {}).get(i, 100)
        tr.events.append((t, 0.0, 100, tid, name, args, res))
    return tr


def test_classify_heap_versus_interpreter() -> None:
    S = 2 * MiB
    ev = [
        ("mmap", (0, S, 3, 0x22, -1, 0), 0x10_0000_0000),  # heap superslab, aligned
        ("madvise", (0x10_0000_0000, S, 15), 0),  # NOHUGEPAGE mark
        ("mmap", (0, 1 * MiB, 3, 0x22, -1, 0), 0x20_0000_0000),  # pymalloc arena: no mark
        ("madvise", (0x20_0000_0000, 4096, 4), 0),  # interpreter's DONTNEED: not the heap's
        ("mmap", (0, S, 3, 0x22, -1, 0), 0x30_0010_0000),  # misaligned ...
        ("munmap", (0x30_0010_0000, S), 0),  # ... unmapped
        ("mmap", (0, 2 * S, 3, 0x22, -1, 0), 0x30_0010_0000),  # remapped at 2x
        ("madvise", (0x30_0020_0000, S, 15), 0),  # window marked
        ("madvise", (0x10_0000_0000 + 65536, 65536, 8), 0),  # heap FREE
        ("madvise", (0x30_0020_0000, 65536, 4), 0),  # heap DONTNEED
        ("munmap", (0x20_0000_0000, MiB), 0),  # interpreter
        ("munmap", (0x10_0000_0000, S), 0),  # heap
    ]
    c = classify(_trace(ev))
    run = c["run"]
    assert run["mmap"] == 3 and run["munmap"] == 2
    assert dict(run["madvise"]) == {"NOHUGEPAGE": 2, "FREE": 1, "DONTNEED": 1}
    assert run["decommitted_bytes"] == 2 * 65536
    assert c["mapped_at_stats"] == 2 * S  # the 4 MiB retry mapping is live
    assert dict(run["other"]) == {"mmap": 1, "madvise": 1, "munmap": 1}
    stats = {"mmap_total": 3, "munmap_total": 2, "madvise_by_advice": {"NOHUGEPAGE": 2, "FREE": 1,
             "DONTNEED": 1}, "decommitted_bytes": 131072, "mapped_bytes": 2 * S, "syscalls": 9}
    rows = _rows(stats, c)
    assert all(ok for *_x, ok in rows if not _x[0].startswith("close")), rows
    stats["madvise_by_advice"]["FREE"] = 2
    res = VerifyResult("x", {}, rows=_rows(stats, c))
    assert not res.ok
    assert "MISMATCH" in format_verify([res])


def test_classify_needs_the_marks() -> None:
    tr = SyscallTrace(["x"], root_pid=1)
    with pytest.raises(RuntimeError, match="phase marks"):
        classify(tr)


def test_run_verify_reports_a_dead_child(monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_verify([("fast", {"policy": "fast"})], workload="churn", ops=1,
                     params={"burst_mb": 1, "rounds": 1, "idle_ratio": 0.0, "no_such_param": 1})
    assert res[0].error is not None and not res[0].ok


def test_classify_finds_the_mark_past_an_interpreter_mapping() -> None:
    """The interpreter may map memory of its own (a new pymalloc arena) between the heap's
    mmap and its NOHUGEPAGE mark, even inside an alignment retry: matched by address."""
    S = 2 * MiB
    ev = [
        ("mmap", (0, S, 3, 0x22, -1, 0), 0x10_0000_0000),  # heap superslab
        ("mmap", (0, 1 * MiB, 3, 0x22, -1, 0), 0x20_0000_0000),  # pymalloc arena in between
        ("madvise", (0x10_0000_0000, S, 15), 0),  # the heap's mark
        ("mmap", (0, S, 3, 0x22, -1, 0), 0x30_0010_0000),  # misaligned ...
        ("munmap", (0x30_0010_0000, S), 0),  # ... unmapped
        ("mmap", (0, 256 * 1024, 3, 0x22, -1, 0), 0x40_0000_0000),  # interpreter again
        ("mmap", (0, 2 * S, 3, 0x22, -1, 0), 0x30_0010_0000),  # remapped at 2x
        ("madvise", (0x30_0020_0000, S, 15), 0),  # window marked
    ]
    run = classify(_trace(ev))["run"]
    assert run["mmap"] == 3 and run["munmap"] == 1
    assert dict(run["madvise"]) == {"NOHUGEPAGE": 2}
    assert dict(run["other"]) == {"mmap": 2}
