"""Replaying real traces through Heap.replay (simalloc.trace.replay) and ``simalloc replay``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_trace_readers import peak_live_ltrace, peak_live_mtrace, peak_live_rep

import simalloc
from simalloc import Config, TraceError
from simalloc.cli import main
from simalloc.constants import OP_FREE, OP_MALLOC
from simalloc.policy import BUILTIN_POLICIES, PRESETS, policy_overrides
from simalloc.trace import read_trace
from simalloc.trace.replay import replay_stream

DATA = Path(__file__).parent / "data"
REAL = ["tiny.rep", "binary.rep", "realloc.rep", "short2.rep", "sort.mtrace", "wordfreq.ltrace",
        "textwork.npz"]


def independent_peak(name: str) -> int:
    p = DATA / name
    if name.endswith(".rep"):
        return peak_live_rep(p)
    if name.endswith(".mtrace"):
        return peak_live_mtrace(p)
    if name.endswith(".ltrace"):
        return peak_live_ltrace(p)
    # textwork.npz: memray's own high-water mark, stored when the data was built
    return int(read_trace(p).meta["memray_peak_memory"])


@pytest.mark.parametrize("name", REAL)
def test_replay_real_traces(name: str, kernel: str) -> None:
    stream = read_trace(DATA / name)
    r = replay_stream(stream, {**policy_overrides("fast"), "kernel": kernel}, samples=8)
    assert r["ops"] == len(stream) and r["kernel"] == kernel
    assert r["peak_live_payload"] == independent_peak(name)
    assert r["peak_resident_bytes"] > 0 and 0 < r["util"] <= 1.5
    assert r["resident_at_peak_payload"] is not None
    assert r["syscalls"] == r["mmap_total"] + r["munmap_total"] + sum(r["madvise_by_advice"].values())
    assert r["ops_per_s"] > 0


def test_replay_leaves_exactly_the_traces_live_blocks(kernel: str) -> None:
    stream = read_trace(DATA / "textwork.npz")
    # live slots = slots whose last op is not a free
    last = np.full(stream.n_slots, -1)
    last[stream.ops[:, 1]] = stream.ops[:, 0]
    expected_live = int(np.count_nonzero((last != OP_FREE) & (last != -1)))
    with simalloc.Heap(Config.defaults(kernel=kernel)) as heap:
        slots = stream.new_slots()
        heap.replay(stream.ops, slots)
        assert int(np.count_nonzero(slots)) == expected_live
        assert heap.stats()["live_blocks"] == expected_live
        heap.check()


def test_every_policy_preset_replays() -> None:
    stream = read_trace(DATA / "binary.rep")
    for name in BUILTIN_POLICIES:
        r = replay_stream(stream, policy_overrides(name), samples=4)
        assert r["peak_live_payload"] == 172800, name


def test_policy_names() -> None:
    assert policy_overrides("lean-dontneed")["mem_lean_decommit"] == "DONTNEED"
    assert policy_overrides("pkg.mod:Cls") == {"policy": "pkg.mod:Cls"}
    assert policy_overrides("auto") == {}
    with pytest.raises(simalloc.ConfigError, match="policy 'banana'.*glibc-trim"):
        policy_overrides("banana")


def test_every_name_make_policy_accepts_is_a_policy_name() -> None:
    """Built-ins, presets and module:Class: the overrides build the policy the name says."""
    from simalloc.policy import make_policy

    assert "glibc-trim" in PRESETS and "jemalloc-decay" in PRESETS
    for name in [*BUILTIN_POLICIES, *PRESETS, "simalloc.policy:FastPolicy"]:
        pol = make_policy(Config.defaults(**policy_overrides(name)))
        want = name if name in PRESETS else {"lean-free": "lean", "lean-dontneed": "lean",
                                             "simalloc.policy:FastPolicy": "fast"}.get(name, name)
        assert pol.name == want, name
    with simalloc.Heap(**policy_overrides("glibc-trim")) as heap:  # as Heap(policy=...) does
        assert heap.stats()["policy"].startswith("glibc-trim")


def test_samples_read_the_page_model_and_the_kernel_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 samples cost no /proc read: residency() runs once, at the end, and agrees."""
    calls: list[int] = []
    real = simalloc.Heap.residency

    def counted(self: simalloc.Heap) -> dict[str, int]:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(simalloc.Heap, "residency", counted)
    stream = read_trace(DATA / "textwork.npz")
    r = replay_stream(stream, policy_overrides("fast"), samples=64, timeline=True)
    assert len(calls) == 1
    assert len(r["timeline"]) >= 65 and all(t[3] > 0 for t in r["timeline"][1:])
    assert r["final_resident_bytes"] == r["kernel_resident_bytes"] > 0  # the model is exact
    assert r["peak_resident_bytes"] >= max(t[1] for t in r["timeline"])
    assert r["resident_at_peak_payload"] <= r["peak_resident_bytes"]
    assert r["mean_resident_virtual_bytes"] > 0


# ---------------------------------------------------------------------------- CLI
def test_cli_replay_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DATA / "realloc.rep"), "--policy", "fast", "--policy", "lean-dontneed"]) == 0
    out = capsys.readouterr().out
    assert "604 ops = 202 malloc, 202 free, 200 realloc" in out
    assert "peak live payload 26,368 B" in out
    assert out.count(" yes ") == 2 and "syscalls/op" in out


def test_cli_replay_accepts_preset_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DATA / "binary.rep"), "--policy", "glibc-trim", "--policy",
                 "jemalloc-decay", "--json", "--samples", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["results"]) == {"glibc-trim", "jemalloc-decay"}
    assert doc["results"]["glibc-trim"]["policy"].startswith("glibc-trim")
    assert main(["replay", str(DATA / "tiny.rep"), "--policy", "banana"]) == 2
    assert "simalloc replay: error: policy 'banana'" in capsys.readouterr().err


def test_cli_replay_json_and_save(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_npz = tmp_path / "s.npz"
    assert main(["replay", str(DATA / "sort.mtrace"), "--json", "--save", str(out_npz)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["format"] == "mtrace"
    assert doc["results"]["fast"]["peak_live_payload"] == peak_live_mtrace(DATA / "sort.mtrace")
    assert read_trace(out_npz).summary() == {**read_trace(DATA / "sort.mtrace").summary()}


def test_cli_replay_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    assert main(["replay", str(DATA / "binary.rep"), "--png", str(png), "--samples", "8"]) == 0
    assert png.stat().st_size > 1000


def test_cli_bad_trace_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.rep"
    p.write_text("100\n2\n2\n1\na 0 16\nf 1\n")
    assert main(["replay", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"simalloc replay: error: {p}: line 6: free of unknown id 1 (never allocated, " \
                          f"or already freed) (strict=False / --lenient repairs this)"
    assert main(["replay", str(p), "--lenient"]) == 0


def test_bad_trace_touches_no_heap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file is checked before a heap exists: a bad last line means no heap at all."""
    built: list[object] = []
    real = simalloc.Heap

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object, **k: object) -> None:
            built.append(self)
            super().__init__(*a, **k)

    monkeypatch.setattr(simalloc, "Heap", Spy)
    monkeypatch.setattr("simalloc.heap.Heap", Spy)
    p = tmp_path / "bad.mtrace"
    p.write_text("= Start\n" + "".join(f"+ {0x1000 + 16 * i:#x} 0x10\n" for i in range(50)) + "- 0x9999\n")
    assert main(["replay", str(p)]) == 2
    assert built == []
    with pytest.raises(TraceError, match="line 52"):
        read_trace(p)


def test_python_m_simalloc_replay_runs() -> None:
    r = subprocess.run([sys.executable, "-m", "simalloc", "replay", str(DATA / "tiny.rep")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "12 ops = 6 malloc, 6 free, 0 realloc" in r.stdout


def test_replay_of_a_workload_stream_matches_heap_replay() -> None:
    """An OpStream made from a workload's rows replays exactly like Heap.replay of the rows."""
    from simalloc.trace import OpStream
    from simalloc.workloads import get_workload

    w = get_workload("mixed", ops=5000, ws=64, seed=3)
    ops = np.concatenate([w.warmup_stream(), w.op_stream()])
    s = OpStream(ops, w.nslots)
    assert s.summary()["mallocs"] == int(np.count_nonzero(ops[:, 0] == OP_MALLOC))
    r = replay_stream(s, policy_overrides("fast"), samples=2)
    assert r["ops"] == len(ops) and r["final_live_payload"] == 0
