"""The occupancy map (simalloc/occupancy.py, ``Heap.occupancy()`` / ``Heap.show()``,
``simalloc show``): its characters match the heap's own state on hand-built situations, on
both kernels; the legend is printed; the PNG map and the timeline are real PNG files.

The hand-built heaps have no front cache (``front_cache_cap=0``) and no hot prewarm, so a
slab's ``used`` is exactly the blocks the test holds.  1000-byte requests land in the 2048-byte
class: slab 0 holds 31 blocks (the header takes its first 2 KiB), every other slab 32."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from simalloc import constants as K
from simalloc.cli import EXIT_OK, EXIT_USAGE, main
from simalloc.errors import HeapClosedError
from simalloc.occupancy import (
    LEGEND,
    PLOT_HINT,
    SLAB_CHARS,
    Occupancy,
    Timeline,
    codes,
    plot_map,
    plot_timeline,
    render_map,
)
from simalloc.policy import DelayedSlabPurgePolicy
from simalloc.presets import JemallocDecayPolicy, MimallocPurgePolicy
from simalloc.workloads import get_workload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BARE = {"front_cache_cap": 0, "tiny_prewarm": False}
SIZE = 1000  # class 7, stride 2048
PAGES_PER_SLAB = K.SLAB_SIZE // K.PAGE_SIZE


def _three_slabs(heap: Any) -> list[int]:
    """Fill slab 0 (31) and slab 1 (32), and 8 of slab 2's 32 blocks: map ``m442...``."""
    return [heap.malloc(SIZE) for _ in range(31 + 32 + 8)]


def _assert_matches_heap(heap: Any, occ: Occupancy) -> None:
    """Every row and character agrees with the heap's own records (superslab.py, pstate)."""
    st = heap._st
    mapped = list(st.mapped())
    assert [s.index for s in occ.superslabs] == [ss.idx for ss in mapped]
    pstate = heap.kernel.pstate
    pps = K.ss_size(st.lg) // K.PAGE_SIZE
    for row, ss in zip(occ.superslabs, mapped, strict=True):
        assert row.state == K.SS_STATE_NAMES[ss.state] and row.decommitted == ss.decommitted
        pages = pstate[ss.idx * pps:(ss.idx + 1) * pps]
        assert row.resident_pages == int(((pages == K.PAGE_RESIDENT) | (pages == K.PAGE_LAZY)).sum())
        assert len(row.chars) == 1 + st.nslabs and row.chars[0] == "m"
        for s, cell in enumerate(row.slabs):
            if ss.state == K.SS_CACHED and ss.decommitted:
                assert cell.char in "-~"
                continue
            state, used = ss.slab_state(s), ss.meta(s, K.M_USED)
            want = {K.SLAB_UNUSED: ".", K.SLAB_EMPTY: "_", K.SLAB_DECOMMITTED: "-"}.get(state)
            if state == K.SLAB_ACTIVE:
                cap = ss.meta(s, K.M_CAPACITY)
                want = "0" if used == 0 else "1234"[min(3, 4 * used // cap)]
                assert (cell.used, cell.capacity) == (used, cap)
            if cell.scheduled:
                want = "~"
            assert cell.char == want, f"slab {ss.idx}.{s}: {cell.char!r}, heap says {want!r}"


# ---------------------------------------------------------------------------- characters
def test_fill_and_free_slabs(make_heap: Any) -> None:
    heap = make_heap(policy="fast", **BARE)
    ptrs = _three_slabs(heap)
    occ = heap.occupancy()
    row = occ.superslabs[0]
    assert row.chars == "m442" + "." * 29
    assert [(s.used, s.capacity, s.resident_pages) for s in row.slabs[:3]] == [
        (31, 31, PAGES_PER_SLAB), (32, 32, PAGES_PER_SLAB), (8, 32, 8 * 2048 // K.PAGE_SIZE)]
    assert row.slabs[2].current and not row.slabs[1].current and row.slabs[0].cls == 7
    assert row.slabs[3].cls is None and row.slabs[3].resident_pages == 0
    _assert_matches_heap(heap, occ)

    for p in ptrs[31:63]:  # slab 1 empties: committed, not current -> "_"
        heap.free(p)
    occ = heap.occupancy()
    assert occ.superslabs[0].chars == "m4_2" + "." * 29
    assert occ.superslabs[0].slabs[1].resident_pages == PAGES_PER_SLAB  # FAST keeps its pages
    _assert_matches_heap(heap, occ)
    assert occ.counts() == {**dict.fromkeys("._01234-~", 0), ".": 29, "4": 1, "_": 1, "2": 1}

    for p in ptrs[:31] + ptrs[63:]:  # the whole superslab empties: FAST caches it warm
        heap.free(p)
    occ = heap.occupancy()
    assert occ.superslabs[0].label == "CACHED warm"
    assert occ.superslabs[0].chars == "m___" + "." * 29
    _assert_matches_heap(heap, occ)


def test_slab_purge_decommits_at_once(make_heap: Any) -> None:
    heap = make_heap(policy=DelayedSlabPurgePolicy(delay_ops=0), **BARE)
    ptrs = _three_slabs(heap)
    for p in ptrs[31:63]:
        heap.free(p)
    occ = heap.occupancy()
    assert occ.superslabs[0].chars == "m4-2" + "." * 29
    slab = occ.superslabs[0].slabs[1]
    assert slab.decommitted and slab.resident_pages == 0 and not slab.scheduled
    _assert_matches_heap(heap, occ)


def test_slab_purge_delay_shows_scheduled_then_decommitted(make_heap: Any) -> None:
    policy = DelayedSlabPurgePolicy(delay_ops=50)
    heap = make_heap(policy=policy, **BARE)
    ptrs = _three_slabs(heap)
    for p in ptrs[31:63]:
        heap.free(p)
    assert policy.scheduled(heap.ctx) == {(0, 1)}
    occ = heap.occupancy()
    assert occ.superslabs[0].chars == "m4~2" + "." * 29
    assert occ.superslabs[0].slabs[1].resident_pages == PAGES_PER_SLAB  # still committed
    _assert_matches_heap(heap, occ)
    for _ in range(30):  # 60 more operations, then the clock moves: the purge is due
        heap.free(heap.malloc(16))
    heap.tick()
    occ = heap.occupancy()
    assert occ.superslabs[0].chars == "m4-20" + "." * 28  # slab 3: C2's current slab, no block out
    assert policy.scheduled(heap.ctx) == set()
    _assert_matches_heap(heap, occ)


def test_scheduled_entry_of_a_reused_slab_is_not_drawn(make_heap: Any) -> None:
    policy = DelayedSlabPurgePolicy(delay_ops=10**9)
    heap = make_heap(policy=policy, **BARE)
    ptrs = _three_slabs(heap)
    for p in ptrs[31:63]:
        heap.free(p)
    ptrs[31:63] = [heap.malloc(SIZE) for _ in range(32)]  # slab 2 fills first, then slab 1 reused
    assert (0, 1) in policy.scheduled(heap.ctx)  # the policy's stale entry (its purge is a no-op)
    occ = heap.occupancy()
    assert "~" not in occ.superslabs[0].chars
    _assert_matches_heap(heap, occ)


@pytest.mark.parametrize("target_mb", [0, 10])
def test_lean_caches_the_empty_superslab(make_heap: Any, target_mb: int) -> None:
    heap = make_heap(mem_lean=True, mem_lean_target_mb=target_mb, **BARE)
    for p in _three_slabs(heap):
        heap.free(p)
    occ = heap.occupancy()
    row = occ.superslabs[0]
    assert row.state == "CACHED"
    if target_mb == 0:  # over budget: retired, decommitted with MADV_FREE (lazy pages)
        assert row.label == "CACHED cold" and row.decommitted
        assert row.chars == "m" + "-" * 32
        assert row.lazy_pages > 0 and all(s.state == "decommitted" for s in row.slabs)
    else:  # within budget: kept warm, slabs as they were cached
        assert row.label == "CACHED warm" and row.chars == "m___" + "." * 29
        assert row.lazy_pages == 0
    _assert_matches_heap(heap, occ)
    text = heap.show()
    assert f"  0  {row.label:<12}" in text


@pytest.mark.parametrize("preset", ["jemalloc", "mimalloc"])
def test_presets_report_pending_purges(make_heap: Any, preset: str) -> None:
    now = [0]
    policy = (JemallocDecayPolicy(time_source=lambda: now[0]) if preset == "jemalloc"
              else MimallocPurgePolicy(retire_cycles=0, time_source=lambda: now[0]))
    heap = make_heap(policy=policy, **BARE)
    ptrs = _three_slabs(heap)
    for p in ptrs[31:63]:
        heap.free(p)
    assert (0, 1) in policy.scheduled(heap.ctx)
    occ = heap.occupancy()
    assert occ.superslabs[0].chars == "m4~2" + "." * 29
    _assert_matches_heap(heap, occ)
    for p in ptrs[:31] + ptrs[63:]:  # the superslab empties: cached warm, its purge scheduled
        heap.free(p)
    assert (0, None) in policy.scheduled(heap.ctx)
    row = heap.occupancy().superslabs[0]
    assert row.label == "CACHED warm" and row.scheduled
    assert row.chars == "m~~~" + "." * 29  # never-touched slabs have nothing to purge


def test_mixed_run_matches_heap_state(make_heap: Any) -> None:
    heap = make_heap(policy=DelayedSlabPurgePolicy(delay_ops=500), tick_interval_ops=256)
    w = get_workload("churn", ops=3000, seed=3, burst_mb=2)
    slots = w.new_slots()
    w.warmup(heap, slots)
    tl = Timeline(heap, every_ops=997)
    for _ in w.run_chunks(heap, slots, 4):
        _assert_matches_heap(heap, tl.snap())
    assert len(tl.frames) == 4 and tl.frames[-1].ops > tl.frames[0].ops


# ---------------------------------------------------------------------------- text
def test_render_map_has_rows_and_legend(make_heap: Any) -> None:
    heap = make_heap(policy="fast", **BARE)
    _three_slabs(heap)
    text = heap.show()
    assert text.endswith(LEGEND)
    assert "m 442..... ........ ........ ........" in text
    assert "1 superslab mapped (1 active, 0 cached)" in text
    assert "\x1b[" not in text
    colored = heap.show(color=True)
    assert "\x1b[32m4" in colored  # >= 75% full: green, as mimalloc draws it
    assert re.sub("\x1b\\[[0-9;]*m", "", colored) == text  # colour adds nothing else
    for ch in SLAB_CHARS:
        assert f" {ch} " in LEGEND or LEGEND.startswith(f"legend: {ch}")
    empty = render_map(Occupancy(0, 0.0, None, "fast", "python", 32, K.PAGE_SIZE, ()))
    assert "(no superslab mapped)" in empty and LEGEND in empty
    heap.close()
    with pytest.raises(HeapClosedError):
        heap.show()


# ---------------------------------------------------------------------------- images
def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plot_map_and_timeline(make_heap: Any, tmp_path: Path) -> None:
    heap = make_heap(policy=DelayedSlabPurgePolicy(delay_ops=200), **BARE)
    w = get_workload("churn", ops=2000, seed=1, burst_mb=2)
    slots = w.new_slots()
    w.warmup(heap, slots)
    tl = Timeline(heap, every_ops=2000)
    n = tl.replay(w.op_stream(), slots)
    assert n == w.total_ops and len(tl.frames) == -(-n // 2000)
    grid = codes(tl.frames[-1])
    assert grid.shape == (max(s.index for s in tl.frames[-1].superslabs) + 1, 33)
    assert (grid[:, 0][[s.index for s in tl.frames[-1].superslabs]] == 1).all()  # header column
    _assert_png(plot_map(tl.frames[-1], tmp_path / "map.png"))
    _assert_png(tl.plot(tmp_path / "timeline.png"))
    with pytest.raises(ValueError):
        plot_timeline([], tmp_path / "none.png")
    with pytest.raises(ValueError):
        Timeline(heap, every_ops=0)


def test_missing_matplotlib_gives_the_hint(make_heap: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    heap = make_heap(**BARE)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(ImportError, match="simalloc\\[plot\\]") as info:
        plot_map(heap.occupancy(), tmp_path / "x.png")
    assert str(info.value) == PLOT_HINT and info.value.name == "matplotlib"
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------- CLI
@pytest.mark.usefixtures("clean_env")
def test_cli_show(kernel: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, tl = tmp_path / "map.png", tmp_path / "tl.png"
    code = main(["show", "--kernel", kernel, "--workload", "churn", "--ops", "2000", "--param", "burst_mb=2",
                 "--set", "policy=slab-purge", "--png", str(png), "--timeline", str(tl), "--every", "2000"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert f"kernel: {kernel}" in out and "policy: slab-purge" in out and LEGEND in out
    assert "occupancy at op" in out and "\x1b[" not in out  # not a terminal: no colour
    _assert_png(png)
    _assert_png(tl)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("argv", [["--bogus"], ["--every", "10"], ["--workload", "nope"],
                                  ["--set", "policy=no-such-policy"], ["--ops", "-1"]])
def test_cli_show_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--ops", "100", *argv]) == EXIT_USAGE
    assert "occupancy at op" not in capsys.readouterr().out


@pytest.mark.usefixtures("clean_env")
def test_cli_show_png_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main(["show", "--ops", "100", "--png", str(tmp_path / "m.png")]) == EXIT_USAGE
    cap = capsys.readouterr()
    assert PLOT_HINT in cap.err and "occupancy at op" not in cap.out


@pytest.mark.usefixtures("clean_env")
def test_cli_show_raising_policy_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["show", "--ops", "6000", "--set", "SIMALLOC_POLICY=policies_for_tests:RaisingTick,tick_interval_ops=1000"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    assert "the run failed" in cap.err and "occupancy at op" not in cap.out
