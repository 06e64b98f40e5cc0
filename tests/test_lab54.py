"""The Phase 54 lab (simalloc.experiments.lab54): the live-data bound is a true lower bound of
every policy's exact resident figures, the candidates are judged, rows stream to the CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from simalloc.cli import main
from simalloc.experiments.lab54 import CANDIDATES, live_bound, run_lab
from simalloc.experiments.metrics import RunSpec, run_once
from simalloc.workloads import get_workload


def _naive_bound(workload: str, ops: int, ws: int | None, params: dict) -> tuple[int, float]:
    """The same bound computed the slow, obvious way (a dict of live blocks per slot)."""
    from simalloc import constants as K

    w = get_workload(workload, ops=ops, ws=ws, seed=1, **params)
    warm, timed = w.warmup_stream(), w.op_stream()
    lut = K.build_size_lut()
    live: dict[int, int] = {}
    counts = [0] * K.NUM_CLASSES
    best, total = 0, 0.0

    def pages() -> int:
        n = sum(-(-c * s // 4096) for c, s in zip(counts, K.CLASS_STRIDES, strict=True))
        return (n + (1 if any(counts) else 0)) * 4096

    for i, (kind, slot, size) in enumerate(np.concatenate([warm, timed]).tolist()):
        if kind in (K.OP_FREE, K.OP_REALLOC) and slot in live:
            c = live.pop(slot)
            if c < K.NUM_CLASSES:
                counts[c] -= 1
        if kind in (K.OP_MALLOC, K.OP_REALLOC):
            c = int(lut[size]) if size < len(lut) else K.NUM_CLASSES
            live[slot] = c
            if c < K.NUM_CLASSES:
                counts[c] += 1
        if i >= len(warm):
            p = pages()
            best = max(best, p)
            total += p
    return best, total / len(timed)


@pytest.mark.parametrize("workload,ws,params", [("mixed", 400, {}), ("churn", None, {"rounds": 1,
                                                                                      "burst_mb": 4})])
def test_vectorised_bound_equals_the_obvious_one(workload, ws, params):
    b = live_bound(workload, 20_000, ws, 1, params)
    peak, mean = _naive_bound(workload, 20_000, ws, params)
    assert b.peak_bound_bytes == peak
    assert b.mean_bound_bytes == pytest.approx(mean)
    assert b.peak_payload_bytes > 0


@pytest.mark.parametrize("overrides", [{}, CANDIDATES["lean-dontneed-0mb"], CANDIDATES["slab-purge"],
                                       CANDIDATES["obmalloc"]])
@pytest.mark.parametrize("workload,ws,params", [("mixed", 400, {}), ("churn", None, {"rounds": 1, "burst_mb": 4}),
                                               ("idle", None, {})])
def test_no_policy_goes_below_the_bound(workload, ws, params, overrides):
    b = live_bound(workload, 30_000, ws, 1, params)
    r = run_once(RunSpec(workload=workload, ops=30_000, ws=ws, params=params, overrides=overrides, epochs=2))
    assert r.error is None
    assert r.peak_resident_bytes >= b.peak_bound_bytes
    assert r.mean_resident_virtual_bytes >= b.mean_bound_bytes * 0.999  # rounding of the mean only
    # and the heap really held the live data: the bound is not vacuous
    assert b.peak_bound_bytes >= b.peak_payload_bytes > 0


def test_run_lab_judges_and_streams(tmp_path):
    seen = []
    bounds, fast, rows = run_lab(["churn"], ["lean-dontneed-0mb"], runs=1, ops=30_000, epochs=2,
                                 on_row=seen.append)
    assert [r.candidate for r in rows] == ["lean-dontneed-0mb"] and seen == rows
    r = rows[0]
    assert r.fast_peak_bytes == fast["churn"]["peak_resident_bytes"]
    assert r.verdict_peak in ("GO", "NEUTRAL", "NO-GO") and r.verdict_mean in ("GO", "NEUTRAL", "NO-GO")
    assert r.mean_reduction_pct > 0  # LEAN with no budget gives burst superslabs back
    # the peak target is under the burst's live data: it cannot be GO on peak
    assert 0.3 * r.fast_peak_bytes < bounds["churn"].peak_bound_bytes
    assert r.verdict_peak != "GO"


def test_cli_streams_rows_and_rejects_unknown_names(tmp_path, capsys):
    out = tmp_path / "lab.csv"
    rc = main(["lab54", "--workload", "churn", "--candidate", "slab-purge", "--runs", "1", "--ops", "20000",
               "--epochs", "2", "--csv", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "live-data bound" in text and "slab-purge" in text and "answer:" in text
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["candidate"] == "slab-purge"
    assert main(["lab54", "--candidate", "nope"]) == 2
    assert main(["lab54", "--workload", "nope"]) == 2
