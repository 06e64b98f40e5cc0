"""glibc malloc's trimming (``trim_threshold`` on free, ``malloc_trim``): :class:`GlibcTrimPolicy`.
The overview is :mod:`simalloc.presets`."""

from __future__ import annotations

from typing import Any

from ..policy import PolicyContext, Release, SlabEvent, SuperslabEvent
from .base import PresetPolicy, _cached, _slab_bytes


class GlibcTrimPolicy(PresetPolicy):
    """glibc malloc's trimming: a threshold checked on free, and ``malloc_trim``.

    Rule (malloc.c ``_int_free``): when a free leaves a coalesced chunk of at least 64 KiB
    (FASTBIN_CONSOLIDATION_THRESHOLD; a 64 KiB slab always is) and the free memory at the top
    of the heap is at least ``trim_threshold``, the top is trimmed down to ``top_pad``
    (``systrim`` / ``heap_trim``).  ``malloc_trim(0)`` (:meth:`trim`) walks every arena and
    MADV_DONTNEEDs every free page it can reach.  No timer.

    Clock: none; driven by frees only (and explicit :meth:`trim`); ``Heap.idle`` does not
    tick it.

    In simalloc: the heap of the free is the superslab holding the emptied slab, and its "top"
    is its EMPTY (committed) slabs (glibc trims only a contiguous top; the context cannot show
    which slabs are UNUSED beyond them, so the top is approximated by all of them; an exact
    top would need ``ctx.slab_state(ss, slab)``).  When they reach ``trim_threshold``, the
    highest ones are decommitted until ``top_pad`` remains (slab granularity: MINSIZE and page
    rounding are ignored).  An empty superslab is a heap freed entirely: decommitted
    (MADV_DONTNEED, like ``shrink_heap``).  The dynamic threshold (raised with the mmap
    threshold when large mmapped chunks are freed) is not modelled: large blocks bypass the
    policy.

    Defaults: ``trim_threshold=128 KiB`` (DEFAULT_TRIM_THRESHOLD), ``top_pad=128 KiB``
    (DEFAULT_TOP_PAD in glibc's malloc-machine.h; mallopt(3) M_TOP_PAD).

    Source: bminor/glibc ``malloc/malloc.c`` (``_int_free``, ``systrim``, ``mtrim``,
    ``__malloc_trim``), ``malloc/arena.c`` (``heap_trim``, ``shrink_heap``)."""

    name = "glibc-trim"
    source = "bminor/glibc: malloc/malloc.c, malloc/arena.c"
    clock_kind = "free-driven"

    def __init__(self, trim_threshold: int = 128 * 1024, top_pad: int = 128 * 1024) -> None:
        super().__init__()
        if trim_threshold < 0 or top_pad < 0:
            raise ValueError("trim_threshold and top_pad must be >= 0")
        self.trim_threshold = trim_threshold
        self.top_pad = top_pad

    def knobs(self) -> dict[str, Any]:
        return {"trim_threshold": self.trim_threshold, "top_pad": self.top_pad}

    def on_slab_empty(self, ctx: PolicyContext, ev: SlabEvent) -> None:
        top = [k[1] for k in ctx.empty_slabs(ev.ss)]  # slab order
        size = sum(_slab_bytes(ctx, s) for s in top)
        if size < self.trim_threshold:
            self.last_reason = (f"slab {ev.ss}.{ev.slab} freed: top of superslab {ev.ss} is {size} bytes "
                                f"< trim_threshold {self.trim_threshold}: no trim")
            return
        self._count("trims")
        why = f"free-driven trim: top {size} bytes >= trim_threshold {self.trim_threshold}, keep top_pad " \
              f"{self.top_pad}"
        for slab in reversed(top):  # the highest first: the pad stays at the bottom
            b = _slab_bytes(ctx, slab)
            if size - b < self.top_pad:
                break
            if self._purge_slab(ctx, (ev.ss, slab), "DONTNEED", why):
                size -= b

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        return Release.decommit("DONTNEED", why=f"the whole heap is free ({ctx.superslab_bytes()} bytes "
                                                f">= trim_threshold {self.trim_threshold}): trimmed")

    def trim(self, ctx: PolicyContext) -> int:
        """``malloc_trim(0)``: give back every empty slab (and, if the context allows, every warm
        cached superslab) now.  Returns the bytes released."""
        released = 0
        for key in ctx.empty_slabs():
            if self._purge_slab(ctx, key, "DONTNEED", "malloc_trim(0)"):
                released += _slab_bytes(ctx, key[1])
        for idx, _t, dec in _cached(ctx):
            if not dec and self._purge_cached(ctx, idx, "DONTNEED", "malloc_trim(0)"):
                released += ctx.superslab_bytes()
        self._count("trim_calls")
        return released
