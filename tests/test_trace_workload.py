"""The ``trace`` workload (a recorded op stream from an ``.npz``) and ``simalloc ab --trace``
on the real traces of tests/data (memray ``.npz``, CS:APP ``.rep``, glibc mtrace, ltrace)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import simalloc
from simalloc.cli import main
from simalloc.constants import OP_FREE
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
