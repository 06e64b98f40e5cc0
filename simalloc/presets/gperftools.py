"""gperftools tcmalloc's incremental scavenging (``TCMALLOC_RELEASE_RATE``):
:class:`GperftoolsScavengePolicy`.  (Google tcmalloc's background release is :mod:`.tcmalloc`.)
The overview is :mod:`simalloc.presets`."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import constants as K
from ..policy import PolicyContext, Release, SlabEvent, SuperslabEvent
from .base import Key, PresetPolicy, _cached, _slab_bytes


class GperftoolsScavengePolicy(PresetPolicy):
    """gperftools tcmalloc's incremental scavenging (``TCMALLOC_RELEASE_RATE``).

    Rule (page_heap.cc ``IncrementalScavenge``): every span freed to the page heap subtracts
    its length (8 KiB pages) from a scavenge counter; when the counter goes negative, one span
    is released (``ReleaseAtLeastNPages(1)``), round-robin over the free lists, and the counter
    is reset to ``1000 / release_rate`` pages per page released (at most ``max_release_delay``);
    if nothing could be released, to ``default_release_delay``.  ``release_rate <= 1e-6``
    disables releasing.  With the default rate 1.0, one page is released per 1000 freed.

    Clock: none; driven by frees only.  An idle program never releases (gperftools #1382);
    ``Heap.idle`` does not tick it.

    In simalloc: a freed span is an emptied slab (64 KiB = 8 pages) or superslab; the free lists
    visited round-robin are the size classes' EMPTY slabs (oldest first, as gperftools takes
    the list's tail) and, as the "large" list, the superslab emptying right now (decommitted
    through ``Release``) or a warm cached superslab if the context offers ``decommit_cached``.

    Defaults: ``release_rate=1.0``, ``page_size=8192`` (kPageShift 13),
    ``max_release_delay=1 << 20`` and ``default_release_delay=1 << 18`` pages (page_heap.h).

    Source: gperftools/gperftools ``src/page_heap.cc`` (``IncrementalScavenge``,
    ``ReleaseAtLeastNPages``), ``src/page_heap.h``."""

    name = "gperftools-scavenge"
    source = "gperftools/gperftools: src/page_heap.cc, src/page_heap.h"
    clock_kind = "free-driven"

    def __init__(self, release_rate: float = 1.0, *, page_size: int = 8192,
                 max_release_delay: int = 1 << 20, default_release_delay: int = 1 << 18) -> None:
        super().__init__()
        self.release_rate = release_rate
        self.page_size = page_size
        self.max_release_delay = max_release_delay
        self.default_release_delay = default_release_delay
        self.scavenge_counter = 0
        self.release_index = K.NUM_CLASSES  # gperftools starts at the large list (kMaxPages)
        self._empty: dict[int, OrderedDict[Key, None]] = {c: OrderedDict() for c in range(K.NUM_CLASSES)}

    def knobs(self) -> dict[str, Any]:
        return {"release_rate": self.release_rate, "page_size": self.page_size}

    def on_slab_empty(self, ctx: PolicyContext, ev: SlabEvent) -> None:
        key = (ev.ss, ev.slab)
        for lst in self._empty.values():
            lst.pop(key, None)
        self._empty[ev.cls][key] = None  # newest at the end
        self._incremental_scavenge(ctx, _slab_bytes(ctx, ev.slab) // self.page_size, None)

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        for lst in self._empty.values():
            for k in [k for k in lst if k[0] == ev.ss]:
                del lst[k]
        n = ctx.superslab_bytes() // self.page_size
        released = self._incremental_scavenge(ctx, n, ev.ss)
        if released == ev.ss:
            return Release.decommit("DONTNEED", why=f"scavenge counter crossed zero; the round robin "
                                                    f"reached the large list: release this span ({n} pages)")
        return Release.keep(why=f"freed {n} pages; scavenge counter now {self.scavenge_counter}")

    def _incremental_scavenge(self, ctx: PolicyContext, n: int, freeing_ss: int | None) -> int | None:
        """``IncrementalScavenge(n)``.  Returns ``freeing_ss`` if that superslab is the span
        released (the caller decommits it), else None."""
        self.scavenge_counter -= n
        if self.scavenge_counter >= 0:
            return None
        if self.release_rate <= 1e-6:
            self.scavenge_counter = self.default_release_delay
            return None
        self._count("scavenges")
        pages, which = self._release_one(ctx, freeing_ss)
        if pages == 0:
            self.scavenge_counter = self.default_release_delay
        else:
            wait = min(1000.0 / self.release_rate * pages, float(self.max_release_delay))
            self.scavenge_counter = int(wait)
        return which

    def _release_one(self, ctx: PolicyContext, freeing_ss: int | None) -> tuple[int, int | None]:
        """``ReleaseAtLeastNPages(1)``: round robin over the lists, release one span."""
        empties = set(ctx.empty_slabs())
        nlists = K.NUM_CLASSES + 1
        why = f"scavenge (rate {self.release_rate}): round-robin release"
        for _ in range(nlists):
            if self.release_index > K.NUM_CLASSES:
                self.release_index = 0
            i = self.release_index
            self.release_index += 1
            if i == K.NUM_CLASSES:  # the large list
                if freeing_ss is not None:
                    self._count("superslab_purges")
                    return ctx.superslab_bytes() // self.page_size, freeing_ss
                for idx, _t, dec in _cached(ctx):
                    if not dec and self._purge_cached(ctx, idx, "DONTNEED", why):
                        return ctx.superslab_bytes() // self.page_size, None
                continue
            lst = self._empty[i]
            for key in [k for k in lst if k not in empties]:
                del lst[key]  # reused (or gone) meanwhile
            if lst:
                key = next(iter(lst))  # the oldest (gperftools takes the list's tail)
                del lst[key]
                if self._purge_slab(ctx, key, "DONTNEED", f"{why} from the C{i} list"):
                    return max(_slab_bytes(ctx, key[1]) // self.page_size, 1), None
        return 0, None
