"""Google tcmalloc's background release at a constant rate: :class:`TcmallocReleasePolicy`.
(gperftools' incremental scavenging is :mod:`.gperftools`.)  The overview is
:mod:`simalloc.presets`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..policy import PolicyContext, Release, SuperslabEvent
from .base import SEC, PresetPolicy, _cached, _has_cached_api, _slab_bytes


class TcmallocReleasePolicy(PresetPolicy):
    """tcmalloc's background release at a constant rate (``background_release_rate``).

    Rule: a background thread wakes every second and releases ``release_rate x elapsed``
    bytes (``MallocExtension::ReleaseMemoryToSystem``); a release that overshoots (whole spans)
    is credited against the next requests (``extra_bytes_released``).  Order: whole cached
    hugepages first (here: warm cached superslabs, if the context offers ``decommit_cached``),
    then free pages in partially used hugepages (here: EMPTY slabs, emptiest superslab first,
    like the filler's subrelease of the sparsest hugepages).

    Clock: background, every ``wake_interval_s`` (1 s) of the heap clock, ops or not: it
    releases while the program is idle (``Heap.idle`` ticks it at each wake-up,
    :meth:`next_wake_ns`).

    Not modelled: the demand-based hugepage subrelease and the adaptive hugepage-cache limit
    (they run even at rate 0).  Empty superslabs are kept warm (the hugepage cache).

    Defaults: ``release_rate=0`` bytes/s (tcmalloc's default; pass e.g. ``1 << 20`` for 1 MiB/s),
    ``wake_interval_s=1.0``.

    Source: google/tcmalloc ``tcmalloc/background.cc``
    (``MallocExtension_Internal_ProcessBackgroundActions``), ``tcmalloc/parameters.cc`` (the
    default rate), ``tcmalloc/tcmalloc.cc`` (``MallocExtension_Internal_ReleaseMemoryToSystem``)."""

    name = "tcmalloc-release"
    source = "google/tcmalloc: tcmalloc/background.cc, tcmalloc/parameters.cc, tcmalloc/tcmalloc.cc"
    clock_kind = "background"

    def __init__(self, release_rate: int = 0, *, wake_interval_s: float = 1.0,
                 time_source: Callable[[], int] | None = None) -> None:
        super().__init__(time_source=time_source)
        if release_rate < 0 or wake_interval_s <= 0:
            raise ValueError("release_rate must be >= 0 and wake_interval_s > 0")
        self.release_rate = release_rate
        self.wake_interval_s = wake_interval_s
        self.extra_bytes_released = 0
        self._prev: int | None = None
        self._next_wake = 0

    def knobs(self) -> dict[str, Any]:
        return {"release_rate": self.release_rate, "wake_interval_s": self.wake_interval_s}

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        reach = ("the background release takes it first" if _has_cached_api(ctx) else
                 "releasing a cached superslab later needs PolicyContext.decommit_cached")
        return Release.keep(why=f"kept in the hugepage cache (warm); {reach}")

    def next_wake_ns(self, ctx: PolicyContext) -> int | None:
        """When the background thread next wakes (now if it has not started; None under a
        fake ``time_source``, which ``Heap.idle`` does not move)."""
        if self.time_source is not None:
            return None
        return self._next_wake if self._prev is not None else self.now_ns(ctx)

    def tick(self, ctx: PolicyContext) -> None:
        now = self.now_ns(ctx)
        if self._prev is None:  # the thread starts
            self._prev, self._next_wake = now, now + int(self.wake_interval_s * SEC)
            return
        if now < self._next_wake:
            return
        nbytes = int(self.release_rate * max(now - self._prev, 0) / SEC)
        self._prev, self._next_wake = now, now + int(self.wake_interval_s * SEC)
        self._count("wakeups")
        if nbytes > 0:
            self.release_memory_to_system(ctx, nbytes)

    def release_memory_to_system(self, ctx: PolicyContext, nbytes: int) -> int:
        """``MallocExtension::ReleaseMemoryToSystem(nbytes)``: release at least ``nbytes``
        (minus the credit of earlier overshoots); returns the bytes released now."""
        if nbytes <= self.extra_bytes_released:
            self.extra_bytes_released -= nbytes
            return 0
        nbytes -= self.extra_bytes_released
        released = 0
        why = f"background release of {nbytes} bytes (rate {self.release_rate} B/s)"
        for idx, _t, dec in _cached(ctx):
            if released >= nbytes:
                break
            if not dec and self._purge_cached(ctx, idx, "DONTNEED", why):
                released += ctx.superslab_bytes()
        if released < nbytes:
            by_ss: dict[int, list[int]] = {}
            for ss, slab in ctx.empty_slabs():
                by_ss.setdefault(ss, []).append(slab)
            for ss in sorted(by_ss, key=lambda s: (-len(by_ss[s]), s)):  # emptiest first
                for slab in sorted(by_ss[ss]):
                    if released >= nbytes:
                        break
                    if self._purge_slab(ctx, (ss, slab), "DONTNEED", why):
                        released += _slab_bytes(ctx, slab)
        self.extra_bytes_released = released - nbytes if released > nbytes else 0
        self._count("released_bytes", released)
        return released
