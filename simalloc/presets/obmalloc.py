"""CPython obmalloc's arena release (keep the last empty arena) and most-full-first refill:
:class:`ObmallocPolicy`.  The overview is :mod:`simalloc.presets`."""

from __future__ import annotations

from ..policy import PolicyContext, Release, SuperslabEvent
from .base import PresetPolicy


class ObmallocPolicy(PresetPolicy):
    """CPython's obmalloc arena release, and its most-full-first allocation order.

    Rule (Objects/obmalloc.c ``insert_to_freepool``): when a pool free leaves an arena
    entirely free, the arena is returned to the system (munmap) at once, unless it is the last
    arena of the usable list, which is kept "to avoid thrashing" (bpo-37257).  The usable list
    is sorted by free pools, so an entirely free arena is kept only while no other arena is as
    empty: here, unmap an empty superslab unless no other empty superslab is cached (it is
    then the last one; in particular the only superslab left is kept).  Pools are never
    released individually.  Allocation prefers the most full arena (the head of the sorted
    list), so nearly empty arenas drain: ``refill_order = "most-full"``, which the heap's
    partial stage honours (the partial slab with the fewest free blocks first;
    simalloc/refillorder.py).  obmalloc does not prewarm.

    Clock: none; driven by frees only; ``Heap.idle`` does not tick it.

    Defaults: none (the rule has no knobs).

    Source: python/cpython ``Objects/obmalloc.c`` (``insert_to_freepool``,
    ``allocate_from_new_pool``, ``usable_arenas``, ``nfp2lasta``)."""

    name = "obmalloc"
    source = "python/cpython: Objects/obmalloc.c"
    clock_kind = "free-driven"
    refill_order = "most-full"

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        others = ctx.cached_count()
        if others == 0:
            self._count("kept_last")
            return Release.keep(why="entirely free, but the last one: kept to avoid thrashing (bpo-37257)")
        self._count("unmapped")
        return Release.unmap(why=f"entirely free and not the last ({others} other empty cached): "
                                 "returned to the system")

    def allow_prewarm(self) -> bool:
        return False
