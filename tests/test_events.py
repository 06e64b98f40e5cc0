"""The decision log (simalloc/events.py): its counts equal the heap's counters on both kernels,
every decision carries a reason, it loads as dicts, a numpy array and JSON lines, it costs
nothing when off, and ``--break KIND`` stops in pdb at the first record of that kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simalloc import Config, Heap
from simalloc.errors import ConfigError
from simalloc.events import FIELDS, KINDS, STAGES, BreakOn, JsonLines, Tee, break_on
from simalloc.policy import PRESETS, PolicyContext, Release, SlabEvent, SuperslabEvent
from simalloc.presets import JemallocDecayPolicy, MimallocPurgePolicy, TcmallocReleasePolicy  # fills PRESETS
from simalloc.workloads import get_workload

ROOT = Path(__file__).resolve().parents[1]
DECISIONS = ("keep", "decommit_slab", "decommit_superslab", "unmap")


def _heap(kernel: str, policy: Any = None, events: Any = True, **overrides: Any) -> Heap:
    inst = policy if policy is not None and not isinstance(policy, str) else None
    if isinstance(policy, str):
        overrides["policy"] = policy
    return Heap(Config.defaults(kernel=kernel, **overrides), policy=inst, events=events)


def _run(heap: Heap, workload: str = "churn", ops: int = 3000, ws: int | None = None, **params: Any) -> None:
    w = get_workload(workload, ops=ops, ws=ws, seed=1, **params)
    slots = np.zeros(w.nslots, dtype=np.uint64)
    w.warmup(heap, slots)
    for _ in w.run_chunks(heap, slots, 4):
        pass
    heap.trim()


def assert_counts_match(heap: Heap) -> Counter[str]:
    """Every equality of the events module's kinds table, on this heap's log and counters."""
    ev, st = heap.events(), heap.stats()
    n = Counter(e["kind"] for e in ev)
    assert set(n) <= set(KINDS)
    assert n["slab_empty"] == st["slab_empty_events"]
    assert n["superslab_empty"] == st["ss_empty_events"]
    assert n["refill"] == st["slow_refills"]
    stages = Counter(e["stage"] for e in ev if e["kind"] == "refill")
    for stage, counters in STAGES.items():
        assert stages[stage] == sum(st[c] for c in counters), stage
    assert n["acquire_lru"] == st["ss_from_lru"]
    assert n["acquire_mmap"] == st["ss_fresh"]
    assert n["keep"] == st["ss_cached"] - st["lean_decommit"]
    assert n["decommit_slab"] == st["slab_decommits"]
    dss = Counter(e["stage"] for e in ev if e["kind"] == "decommit_superslab")
    assert dss["empty"] == st["lean_decommit"] and dss["cached"] == st["cached_decommits"]
    assert n["unmap"] == st["ss_unmapped"] - st["lru_evictions"]
    assert n["evict"] == st["lru_evictions"]
    for e in ev:
        if e["kind"] in DECISIONS:
            assert e["why"], f"decision without a reason: {e}"
        if e["kind"] in ("decommit_slab", "decommit_superslab"):
            assert e["advice"] in ("FREE", "DONTNEED") and e["bytes"] > 0
    ops = [e["ops"] for e in ev]
    assert ops == sorted(ops)
    return n


# ---------------------------------------------------------------------------- counts == counters
CASES = {
    "fast, small LRU (evictions)": dict(policy="fast", ss_max_cached=4),
    "lean FREE": dict(policy="lean", mem_lean_decommit="FREE"),
    "lean DONTNEED": dict(policy="lean", mem_lean_decommit="DONTNEED"),
    "lean unmap": dict(policy="lean", lean_retire="unmap"),
    "slab-purge": dict(policy="slab-purge"),
    "obmalloc": dict(policy="obmalloc"),
    "glibc-trim, superslab_reuse=1": dict(policy="glibc-trim", superslab_reuse=1),
    "gperftools-scavenge": dict(policy="gperftools-scavenge"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_churn_counts_equal_counters(kernel: str, case: str) -> None:
    with _heap(kernel, **CASES[case]) as heap:  # type: ignore[arg-type]
        _run(heap, "churn", 3000, burst_mb=12, rounds=2)
        n = assert_counts_match(heap)
    assert n["superslab_empty"] > 0 and n["refill"] > 0
    expect = {"fast, small LRU (evictions)": "evict", "lean FREE": "decommit_superslab",
              "lean DONTNEED": "decommit_superslab", "lean unmap": "unmap", "slab-purge": "decommit_slab",
              "obmalloc": "unmap", "glibc-trim, superslab_reuse=1": "decommit_slab",
              "gperftools-scavenge": "decommit_slab"}[case]
    assert n[expect] > 0, f"{case}: no {expect} record"


@pytest.mark.parametrize("policy", ["fast", "slab-purge", "lean"])
def test_mixed_counts_equal_counters(kernel: str, policy: str) -> None:
    with _heap(kernel, policy) as heap:
        _run(heap, "mixed", 60_000, ws=400)
        n = assert_counts_match(heap)
    assert n["refill"] > 0 and n["tick"] > 0


def test_preset_instances_and_cached_purges(kernel: str) -> None:
    """jemalloc-decay with no delay decommits as superslabs empty; mimalloc's collect() purges
    cached superslabs (``decommit_superslab``, stage ``cached``); the counts still match."""
    with _heap(kernel, JemallocDecayPolicy(dirty_decay_ms=0)) as heap:
        _run(heap, "churn", 3000, burst_mb=12)
        n = assert_counts_match(heap)
        assert n["decommit_superslab"] > 0
        assert all("dirty_decay_ms=0" in e["why"] for e in heap.events() if e["kind"] == "decommit_superslab")
    mi = MimallocPurgePolicy()
    with _heap(kernel, mi) as heap:
        _run(heap, "churn", 3000, burst_mb=12)
        assert mi.collect(heap.ctx) > 0
        cached = [e for e in heap.events() if e["kind"] == "decommit_superslab" and e["stage"] == "cached"]
        assert cached and all("mi_collect" in e["why"] for e in cached)
        assert_counts_match(heap)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_a_reason_for_each_decision(kernel: str, name: str) -> None:
    with _heap(kernel, name) as heap:
        _run(heap, "churn", 3000, burst_mb=12, rounds=2)
        n = assert_counts_match(heap)  # checks every decision's why
    assert sum(n[k] for k in DECISIONS) > 0


def test_idle_ticks_carry_virtual_time(kernel: str) -> None:
    """A background preset releases while the heap idles: the ticks and the purges it makes then
    are logged with the virtual clock (ops do not move, virtual_ns does)."""
    with _heap(kernel, TcmallocReleasePolicy(release_rate=64 << 20)) as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        before = len(heap.events())
        heap.idle(2.0)
        during = heap.events()[before:]
        assert_counts_match(heap)
    ticks = [e for e in during if e["kind"] == "tick"]
    purges = [e for e in during if e["kind"] in ("decommit_slab", "decommit_superslab")]
    assert len(ticks) >= 2 and purges
    assert len({e["ops"] for e in during}) == 1
    assert [e["virtual_ns"] for e in ticks] == sorted(e["virtual_ns"] for e in ticks)
    assert ticks[-1]["virtual_ns"] - ticks[0]["virtual_ns"] >= 10**9
    assert all("background release" in e["why"] for e in purges)


def test_slab_purge_reason_is_the_policys(kernel: str) -> None:
    with _heap(kernel, "slab-purge") as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        purges = [e for e in heap.events() if e["kind"] == "decommit_slab"]
    assert purges
    e = purges[0]
    assert e["why"] == f"slab {e['ss']}.{e['slab']} (C{e['cls']}) empty: decommit at once (DONTNEED, delay_ops=0)"


# ---------------------------------------------------------------------------- forms of the log
def test_records_dicts_and_array_agree(kernel: str) -> None:
    with _heap(kernel, "lean") as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        ev, arr = heap.events(), heap.events(as_array=True)
    assert ev and all(tuple(e) == FIELDS for e in ev)
    assert arr.dtype.names == FIELDS and len(arr) == len(ev)
    assert arr["kind"].tolist() == [e["kind"] for e in ev]
    assert arr["ops"].tolist() == [e["ops"] for e in ev]
    assert arr["why"].tolist() == [e["why"] for e in ev]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(arr)
    assert list(df.columns) == list(FIELDS)
    assert df.groupby("kind").size().to_dict() == dict(Counter(e["kind"] for e in ev))


def test_sink_receives_what_the_log_would_keep(kernel: str) -> None:
    got: list[dict[str, Any]] = []
    with _heap(kernel, "lean", events=got.append) as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        assert heap.events() == [] and len(heap.events(as_array=True)) == 0
    with _heap(kernel, "lean") as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        kept = heap.events()
    key = ("ops", "kind", "ss", "slab", "cls", "stage", "advice", "bytes")
    assert [tuple(e[k] for k in key) for e in got] == [tuple(e[k] for k in key) for e in kept]


def test_off_by_default_and_bad_values(kernel: str) -> None:
    with _heap(kernel, "lean", events=None) as heap:
        _run(heap, "churn", 1000, burst_mb=4)
        assert heap._st.log is None
        assert heap.events() == []
        assert heap.events(as_array=True).dtype.names == FIELDS
    for bad in (42, "yes"):
        with pytest.raises(ConfigError):
            _heap(kernel, events=bad)
    with pytest.raises(ConfigError, match="unknown event kind"):
        BreakOn("nope")


def test_json_lines_sink(tmp_path: Path, kernel: str) -> None:
    path = tmp_path / "ev.jsonl"
    sink = JsonLines(str(path))
    with _heap(kernel, "lean", events=sink) as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        st = heap.stats()
    sink.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == sink.count > 0 and all(tuple(r) == FIELDS for r in rows)
    assert sum(r["kind"] == "refill" for r in rows) == st["slow_refills"]


# ---------------------------------------------------------------------------- the CLI
def _cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONBREAKPOINT"}
    e.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "simalloc", *args], input=stdin, capture_output=True,
                          text=True, timeout=300, env=e, cwd=ROOT)


CHURN = ("--workload", "churn", "--ops", "2000", "--param", "burst_mb=8", "--epochs", "2")


def test_run_events_file_matches_the_run(tmp_path: Path, kernel: str) -> None:
    path = tmp_path / "events.jsonl"
    r = _cli("run", "--kernel", kernel, *CHURN, "--set", "HAKMEM_SS_MEM_LEAN=1", "--json",
             "--events", str(path))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {tuple(x) for x in rows} == {FIELDS}
    dss = [x for x in rows if x["kind"] == "decommit_superslab"]
    assert len(dss) == res["lean_decommit"] > 0
    assert all("over budget" in x["why"] for x in dss)


def test_break_stops_in_pdb_with_the_record_and_the_policy() -> None:
    cmds = 'p record["kind"]\np type(policy).__name__\np type(ctx).__name__\nwhere\nc\n'
    r = _cli("run", *CHURN, "--set", "SIMALLOC_POLICY=slab-purge", "--break", "decommit_slab", stdin=cmds)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("simalloc: stopped at decommit_slab") == 1  # the first one only
    assert "(Pdb) 'decommit_slab'" in out
    assert "'DelayedSlabPurgePolicy'" in out and "'PolicyContext'" in out
    assert "on_slab_empty()" in out  # the policy's own frame is on the stack: 'up' reaches it
    assert "policy: slab-purge" in out  # the run went on after 'c'


def test_break_on_a_superslab_decision_honours_pythonbreakpoint() -> None:
    """PYTHONBREAKPOINT=0 turns breakpoint() off: the run passes the stop without pdb."""
    r = _cli("run", *CHURN, "--break", "keep", env={"PYTHONBREAKPOINT": "0"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("simalloc: stopped at keep") == 1 and "(Pdb)" not in r.stdout


@pytest.mark.parametrize("extra", [("--break", "nope"), ("--break", "unmap", "--isolate"),
                                   ("--break", "unmap", "--kernel", "cython")])
def test_break_usage_errors_exit_2(extra: tuple[str, ...]) -> None:
    r = _cli("run", *CHURN, *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)


# ---------------------------------------------------------------------------- the helper, in process
def test_break_on_frame_shows_record_ctx_policy_and_event(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """``breakpoint()`` goes through ``sys.breakpointhook``: capture the frame it stops in and
    replay the policy's decision there, as ``debug policy.on_superslab_empty(ctx, ev)`` would."""
    frames: list[dict[str, Any]] = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: frames.append(dict(sys._getframe(1).f_locals)))
    seen: list[dict[str, Any]] = []
    with _heap(kernel, "lean", events=break_on("decommit_superslab", then=seen.append)) as heap:
        _run(heap, "churn", 2000, burst_mb=8)
        assert len(frames) == 1
        loc = frames[0]
        assert loc["record"]["kind"] == "decommit_superslab" and loc["record"] in seen
        assert isinstance(loc["ctx"], PolicyContext) and loc["policy"] is heap.policy
        assert isinstance(loc["ev"], SuperslabEvent) and loc["ev"].ss == loc["record"]["ss"]
        again = loc["policy"].on_superslab_empty(loc["ctx"], loc["ev"])
        assert isinstance(again, Release) and again.why


def test_break_every_and_tee(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    hits: list[Any] = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: hits.append(sys._getframe(1).f_locals["ev"]))
    brk = BreakOn("slab_empty", every=True)
    kept: list[dict[str, Any]] = []
    with _heap(kernel, "fast", events=Tee(kept.append, brk)) as heap:
        _run(heap, "churn", 1000, burst_mb=4)
        st = heap.stats()
    assert brk.hits == len(hits) == st["slab_empty_events"] > 0
    assert all(isinstance(ev, SlabEvent) for ev in hits)
    assert sum(e["kind"] == "slab_empty" for e in kept) == brk.hits
