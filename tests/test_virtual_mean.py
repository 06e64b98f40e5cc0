"""Resident memory averaged over virtual time: idle spans weigh their length (pages.py)."""

from __future__ import annotations

import pytest

from simalloc import Heap


def test_idle_spans_weigh_their_length(kernel):
    with Heap(policy="slab-purge", kernel=kernel) as h:
        ptrs = [h.malloc(2000) for _ in range(4000)]
        h.reset_resident_stats()
        r1 = h.resident()["resident_bytes"]
        h.idle(1.0)  # a second at r1
        for p in ptrs:
            h.free(p)  # slab-purge gives every emptied slab back at once
        r2 = h.resident()["resident_bytes"]
        assert r2 < r1 / 4
        h.idle(3.0)  # three seconds at r2
        fig = h.resident()
        # 4000 ops x ns_per_op (~66 us) are nothing next to 4 s of idle time
        assert fig["resident_mean_virtual_bytes"] == pytest.approx((r1 + 3 * r2) / 4, rel=1e-3)
        # the ops mean gives idle no weight: it sits between r1 and r2 by op count only
        assert fig["resident_mean_ops_bytes"] > fig["resident_mean_virtual_bytes"]


def test_without_idle_the_virtual_mean_is_the_ops_mean(kernel):
    with Heap(kernel=kernel) as h:
        h.reset_resident_stats()
        ptrs = [h.malloc(1000) for _ in range(3000)]
        for p in ptrs[::2]:
            h.free(p)
        fig = h.resident()
        assert fig["resident_mean_virtual_bytes"] == pytest.approx(fig["resident_mean_ops_bytes"])
