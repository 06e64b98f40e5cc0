"""The ``trace`` workload (a recorded op stream from an ``.npz``) and ``simalloc ab --trace``
on the real traces of tests/data (memray ``.npz``, CS:APP ``.rep``, glibc mtrace, ltrace)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import simalloc
from simalloc.cli import main
from simalloc.constants import OP_FREE, OP_IDLE
from simalloc.errors import ConfigError
from simalloc.trace import read_trace
from simalloc.workloads import TraceWorkload, get_workload, load_npz
from simalloc.workloads.trace import live_after

DATA = Path(__file__).parent / "data"
NPZ = DATA / "textwork.npz"


def test_whole_trace_then_drain() -> None:
    stream = load_npz(NPZ)
    w = get_workload("trace", ops=10 ** 9, path=str(NPZ))
    assert isinstance(w, TraceWorkload) and w.nslots == stream.n_slots
    rows = w.op_stream()
    assert np.array_equal(rows[:len(stream)], stream.ops)
    assert len(w.warmup_stream()) == 0 and w.params["ops"] == len(stream)
    live = live_after(stream.ops, stream.n_slots)
    assert w.drain_ops == int(live.sum()) > 0  # the program left blocks live
    drain = rows[len(stream):]
    assert (drain[:, 0] == OP_FREE).all() and drain[:, 1].tolist() == np.flatnonzero(live).tolist()
    assert not live_after(rows, stream.n_slots).any()
    assert "format=memray" in w.describe() and w.describe().startswith("trace [")


def test_warmup_and_cut_on_a_heap() -> None:
    w = get_workload("trace", ops=2_000, path=str(NPZ), warmup_ops=500)
    assert len(w.warmup_stream()) == 500 and w.main_ops == 2_000
    assert np.array_equal(w.op_stream()[:2_000], load_npz(NPZ).ops[500:2_500])
    with simalloc.Heap() as heap:
        slots = w.new_slots()
        assert w.warmup(heap, slots) == 500
        assert sum(w.run_chunks(heap, slots, 4)) == w.total_ops
        assert heap.stats()["live_blocks"] == 0 and not slots.any()
        heap.check()


def test_bad_parameters_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs path"):
        get_workload("trace", ops=10)
    with pytest.raises(ConfigError, match="simalloc ab --trace"):
        get_workload("trace", ops=10, path=str(DATA / "tiny.rep"))
    with pytest.raises(ConfigError, match="warmup_ops"):
        get_workload("trace", ops=10, path=str(NPZ), warmup_ops=10 ** 9)
    bad = tmp_path / "bad.npz"
    np.savez(bad, kind=np.array([1], np.uint8), slot=np.array([0], np.uint32),
             size=np.array([0], np.uint32), n_slots=np.array(1))
    with pytest.raises(ConfigError, match="op 1: free of empty slot 0"):
        get_workload("trace", ops=10, path=str(bad))


@pytest.mark.parametrize("name", ["tiny.rep", "sort.mtrace", "wordfreq.ltrace", "textwork.npz"])
def test_ab_on_a_trace(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / name
    n = len(read_trace(path))
    assert main(["ab", "--trace", str(path), "--runs", "1", "--epochs", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    wl = doc["workload"]
    assert wl["name"] == "trace" and wl["ops"] == n
    assert Path(wl["params"]["path"]).suffix == ".npz"
    assert not doc["failed_runs"]
    for side in ("a", "b"):
        assert doc[side]["ops"] >= n and doc[side]["peak_resident_bytes"] > 0


def test_ab_trace_isolated_and_cut(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ab", "--trace", str(DATA / "binary.rep"), "--ops", "600", "--runs", "1",
                 "--epochs", "2", "--isolate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workload"]["ops"] == 600 and not doc["failed_runs"]
    assert doc["a"]["isolated"] and doc["b"]["ops"] >= 600


def test_ab_bad_trace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.rep"
    bad.write_text("x\n")
    assert main(["ab", "--trace", str(bad), "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--trace" in err and "bad.rep: line 1" in err


def test_run_takes_the_trace_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--workload", "trace", "--param", f"path={NPZ}", "--ops", "5000",
                 "--epochs", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workload"] == "trace" and doc["ops"] > 5000 and doc["error"] is None


# ---------------------------------------------------------------------------- trace times
LTRACE = DATA / "wordfreq.ltrace"  # the one trace of tests/data with times (0.25 s)


@pytest.fixture(scope="module")
def timed_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stream = read_trace(LTRACE)
    assert stream.times is not None
    return stream.save(tmp_path_factory.mktemp("timed") / "wordfreq.npz")


def test_times_become_idle_rows_as_in_replay(timed_npz: Path) -> None:
    """Default ``use_times``: on, because the stream has times; the rows are exactly those
    ``OpStream.with_idle`` gives at the option's ``ns_per_op`` (what ``simalloc replay`` runs)."""
    stream = load_npz(timed_npz)
    w = get_workload("trace", ops=10 ** 9, path=str(timed_npz))
    want = stream.with_idle(simalloc.Config.from_env().ns_per_op).ops
    idle = want[:, 0] == OP_IDLE
    assert idle.sum() > 10
    assert w.params["use_times"] is True and w.params["idle_rows"] == int(idle.sum())
    assert w.params["idle_ns"] == int(want[idle, 2].sum()) > 0.2e9  # most of the 0.25 s
    assert np.array_equal(w.op_stream()[:len(want)], want)
    assert w.params["ops"] == len(stream) and w.main_ops == len(want)  # ops: operations; rows: + idle
    off = get_workload("trace", ops=10 ** 9, path=str(timed_npz), use_times=False)
    assert np.array_equal(off.op_stream()[:len(stream)], stream.ops) and off.params["idle_rows"] == 0


def test_warmup_and_cut_count_operations_not_idle_rows(timed_npz: Path) -> None:
    stream = load_npz(timed_npz)
    w = get_workload("trace", ops=500, path=str(timed_npz), warmup_ops=300)
    warm, timed = w.warmup_stream(), w.op_stream()[:w.main_ops]
    assert np.count_nonzero(warm[:, 0] != OP_IDLE) == 300 and w.params["ops"] == 500
    assert np.count_nonzero(timed[:, 0] != OP_IDLE) == 500 and timed[-1, 0] != OP_IDLE
    assert np.array_equal(np.concatenate([warm, timed])[
        np.concatenate([warm, timed])[:, 0] != OP_IDLE], stream.ops[:800])
    assert w.params["idle_rows"] == int(np.count_nonzero(timed[:, 0] == OP_IDLE)) > 0


def test_idle_gaps_drive_the_heap_clock(timed_npz: Path) -> None:
    """The heap's virtual clock = ops x ns_per_op + the trace's idle time (without times:
    ops x ns_per_op alone)."""
    clocks = {}
    for use in (True, False):
        w = get_workload("trace", ops=10 ** 9, path=str(timed_npz), use_times=use, ns_per_op=20)
        with simalloc.Heap(ns_per_op=20) as heap:
            slots = w.new_slots()
            w.warmup(heap, slots)
            for _ in w.run_chunks(heap, slots, 3):
                pass
            c = heap.clock()
            assert heap.stats()["live_blocks"] == 0
            heap.check()
        assert c.virtual_ns == c.ops * 20 + w.params["idle_ns"]
        clocks[use] = c
    assert clocks[True].ops == clocks[False].ops
    assert clocks[True].virtual_ns - clocks[False].virtual_ns > 0.2e9


def test_use_times_on_a_stream_without_times_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no times"):
        get_workload("trace", ops=10, path=str(NPZ), use_times=True)
    with pytest.raises(ConfigError, match="use_times"):
        get_workload("trace", ops=10, path=str(NPZ), use_times="sometimes")
    with pytest.raises(ConfigError, match="ns_per_op"):
        get_workload("trace", ops=10, path=str(NPZ), use_times=False, ns_per_op=-1)
    assert get_workload("trace", ops=10, path=str(NPZ)).params["use_times"] is False


def test_ab_and_run_see_the_idle_gaps(timed_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``simalloc ab --trace`` on a trace with times (ltrace) and ``run --workload trace``:
    idle rows in the stream, so the virtual-time mean weighs the gaps."""
    assert main(["ab", "--trace", str(LTRACE), "--runs", "1", "--epochs", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "use_times=True" in doc["workload"]["describe"] and "idle_rows=0" not in doc["workload"]["describe"]
    assert not doc["failed_runs"]
    assert main(["run", "--workload", "trace", "--param", f"path={timed_npz}", "--ops", "5000",
                 "--epochs", "2", "--json"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert main(["run", "--workload", "trace", "--param", f"path={timed_npz}", "--param",
                 "use_times=false", "--ops", "5000", "--epochs", "2", "--json"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert on["error"] is None and off["error"] is None
    assert "use_times=True" in on["describe"] and "use_times=False" in off["describe"]
    assert on["mean_resident_virtual_bytes"] != off["mean_resident_virtual_bytes"]
