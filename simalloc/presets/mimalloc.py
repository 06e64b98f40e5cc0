"""mimalloc's delayed purge (v2 segments, v3 arena), page retirement and ``mi_collect``:
:class:`MimallocPurgePolicy`.  The overview is :mod:`simalloc.presets`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..policy import PolicyContext, Release, SlabEvent, SuperslabEvent
from .base import MS, Key, PresetPolicy, _cached, _has_cached_api, _ms


class MimallocPurgePolicy(PresetPolicy):
    """mimalloc's delayed purge (``purge_delay``), v2 and v3, with page retirement and collect.

    Rule (v2, ``version=2``, segment.c ``mi_segment_schedule_purge``): the first free of a page
    in a segment sets the segment's deadline to ``now + purge_delay``; a later free before the
    deadline pushes it out by ``purge_extend_delay``; a free shortly after it (within
    ``purge_extend_delay``) sets it to ``now + purge_extend_delay``, a later one purges at once.
    At the deadline every page scheduled in the segment is purged together.  Rule (v3,
    ``version=3``, arena.c ``mi_arena_schedule_purge``): scheduled pages go into one arena
    bitmap whose deadline ``now + purge_delay * arena_purge_mult`` is set once and never
    extended; at the deadline all of them are purged.  ``purge_delay=0`` purges at once, < 0
    never.  Both versions: an empty page that is the only page of its size class is *retired*
    (kept) for ``retire_cycles`` allocation cycles before it is freed (``MI_RETIRE_CYCLES``,
    page.c ``_mi_page_retire``), so ping-pong workloads do not thrash.  A freed segment / the
    pages of an emptied superslab go to the arena, purged after ``purge_delay *
    arena_purge_mult`` in both versions.  :meth:`collect` is ``mi_collect(true)``: purge
    everything now (mimalloc #537).  ``purge_decommits`` chooses MADV_DONTNEED (decommit) over
    MADV_FREE (reset).

    Clock: activity-driven; mimalloc has no timer thread and checks deadlines when the program
    calls it (page free in that segment, page allocation, collect): here every slab-empty event
    (its superslab = segment; the whole arena in v3) and every tick that saw operations;
    ``Heap.idle`` does not tick it, so a deadline reached while idle is acted on at the next
    call into the heap.

    Approximations (simalloc's hooks): a simalloc superslab is a mimalloc segment (v2), the
    heap is one arena (v3); an *allocation cycle* is a tick that saw operations (ticks come
    with slow-path refills, mimalloc's ``_mi_malloc_generic``, and every ``tick_interval_ops``);
    the current slab of a class is never announced empty, so "the only page of its class" is
    read as "the only EMPTY slab of its class" (the literal test would need
    ``ctx.class_slab_count(cls)``).  Empty superslabs: decommitted at once with
    ``purge_delay=0``; otherwise kept, and purged at their deadline only if the context offers
    ``decommit_cached`` (module docstring).

    Defaults (mimalloc options.c): ``purge_delay=10`` ms, ``purge_extend_delay=1`` ms,
    ``version=2``, ``arena_purge_mult=10``, ``purge_decommits=True``, ``retire_cycles=16``.

    Source: microsoft/mimalloc v2 ``src/segment.c`` (schedule / try purge), v3 ``src/arena.c``
    (``mi_arena_schedule_purge``, ``mi_arena_purge_delay``), ``src/page.c`` (retire),
    ``src/options.c`` (defaults), ``src/heap.c`` (``mi_collect``)."""

    name = "mimalloc-purge"
    source = ("microsoft/mimalloc: v2 src/segment.c, v3 src/arena.c, src/page.c, src/options.c, "
              "src/heap.c")
    clock_kind = "activity"

    def __init__(self, purge_delay: int = 10, purge_extend_delay: int = 1, version: int = 2, *,
                 arena_purge_mult: int = 10, purge_decommits: bool = True, retire_cycles: int = 16,
                 time_source: Callable[[], int] | None = None) -> None:
        super().__init__(time_source=time_source)
        if version not in (2, 3):
            raise ValueError(f"version must be 2 or 3, not {version!r}")
        if retire_cycles < 0 or purge_extend_delay < 0 or arena_purge_mult < 0:
            raise ValueError("retire_cycles, purge_extend_delay and arena_purge_mult must be >= 0")
        self.purge_delay = purge_delay
        self.purge_extend_delay = purge_extend_delay
        self.version = version
        self.arena_purge_mult = arena_purge_mult
        self.purge_decommits = purge_decommits
        self.retire_cycles = retire_cycles
        self.advice = "DONTNEED" if purge_decommits else "FREE"
        self._seg_expire: dict[int, int] = {}  # v2: superslab -> deadline (ns)
        self._seg_mask: dict[int, set[int]] = {}  # v2: superslab -> slabs scheduled
        self._arena_expire = 0  # v3 (and cached superslabs in both): 0 = no deadline
        self._arena_mask: set[Key] = set()
        self._retired: dict[Key, int] = {}  # slab -> allocation cycles left
        self._cls: dict[Key, int] = {}  # size class of each slab that emptied

    def knobs(self) -> dict[str, Any]:
        return {"purge_delay": self.purge_delay, "purge_extend_delay": self.purge_extend_delay,
                "version": self.version, "arena_purge_mult": self.arena_purge_mult,
                "purge_decommits": self.purge_decommits, "retire_cycles": self.retire_cycles}

    def scheduled(self, ctx: PolicyContext) -> set[tuple[int, int | None]]:
        """Pages marked for purge: each segment's (v2) and the arena's (v3; cached superslabs)."""
        out: set[tuple[int, int | None]] = {(ss, s) for ss, slabs in self._seg_mask.items() for s in slabs}
        return out | {(i, None if s < 0 else s) for i, s in self._arena_mask}

    def arena_delay_ms(self) -> int:
        """``mi_arena_purge_delay``: purge_delay * arena_purge_mult (< 0: never; 0: at once)."""
        if self.purge_delay < 0:
            return -1
        return self.purge_delay * self.arena_purge_mult

    # ------------------------------------------------------------------ hooks
    def on_slab_empty(self, ctx: PolicyContext, ev: SlabEvent) -> None:
        now = self.now_ns(ctx)
        key = (ev.ss, ev.slab)
        self._cls[key] = ev.cls
        self._retired.pop(key, None)
        if self.retire_cycles > 0 and self._only_of_class(ctx, key, ev.cls):
            self._retired[key] = self.retire_cycles
            self._count("retired")
            self.last_reason = (f"slab {key[0]}.{key[1]}: the only empty C{ev.cls} slab: retired for "
                                f"{self.retire_cycles} allocation cycles")
        else:
            self._schedule(ctx, key, now)
        self._try_purge(ctx, now, segment=ev.ss)

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        now = self.now_ns(ctx)
        self._seg_expire.pop(ev.ss, None)
        self._seg_mask.pop(ev.ss, None)
        self._arena_mask = {k for k in self._arena_mask if k[0] != ev.ss}
        for d in (self._retired, self._cls):
            for k in [k for k in d if k[0] == ev.ss]:
                del d[k]
        delay = self.arena_delay_ms()
        if delay < 0:
            return Release.keep(why="purge_delay < 0: never purge")
        if delay == 0:
            return Release.decommit(self.advice, why=f"segment freed to the arena, arena purge delay 0: "
                                                     f"purged at once (MADV_{self.advice})")
        if not _has_cached_api(ctx):
            self._count("superslabs_kept_unreachable")
            return Release.keep(why=f"segment freed to the arena (purge due in {delay} ms) but kept warm: "
                                    "a delayed purge of a cached superslab needs PolicyContext.decommit_cached")
        self._arena_mask.add((ev.ss, -1))
        if self._arena_expire == 0:
            self._arena_expire = now + delay * MS
        return Release.keep(why=f"segment freed to the arena: purge scheduled at the arena deadline "
                                f"({_ms(self._arena_expire - now)} from now)")

    def tick(self, ctx: PolicyContext) -> None:
        if not self._active(ctx):
            return  # idle: mimalloc has no timer thread
        now = self.now_ns(ctx)
        if self._retired:  # one allocation cycle (_mi_heap_collect_retired)
            for key in list(self._retired):
                if not ctx.is_empty_slab(*key):  # used again: no longer retired
                    del self._retired[key]
                    continue
                self._retired[key] -= 1
                if self._retired[key] <= 0:
                    del self._retired[key]
                    self._schedule(ctx, key, now, why=f"retired {self.retire_cycles} cycles, now freed")
        self._try_purge(ctx, now)

    def collect(self, ctx: PolicyContext) -> int:
        """``mi_collect(force=true)``: free retired slabs and purge every empty slab and (if the
        context allows) every warm cached superslab now, deadlines or not.  Returns the number
        of purges made."""
        before = self.counts.get("slab_purges", 0) + self.counts.get("superslab_purges", 0)
        self._retired.clear()
        self._seg_expire.clear()
        self._seg_mask.clear()
        self._arena_expire = 0
        self._arena_mask.clear()
        for key in ctx.empty_slabs():
            self._purge_slab(ctx, key, self.advice, "mi_collect(force): purge now")
        for idx, _t, dec in _cached(ctx):
            if not dec:
                self._purge_cached(ctx, idx, self.advice, "mi_collect(force): purge now")
        return self.counts.get("slab_purges", 0) + self.counts.get("superslab_purges", 0) - before

    # ------------------------------------------------------------------ machinery
    def _only_of_class(self, ctx: PolicyContext, key: Key, cls: int) -> bool:
        return not any(k != key and self._cls.get(k) == cls for k in ctx.iter_empty_slabs(cls))

    def _schedule(self, ctx: PolicyContext, key: Key, now: int, why: str = "freed") -> None:
        """A page was freed: purge it now, or mark it and set / extend the deadline."""
        ss, slab = key
        if self.purge_delay < 0:
            self.last_reason = f"slab {ss}.{slab} {why}: purge_delay < 0: never purged"
            return
        if self.purge_delay == 0:
            self._purge_slab(ctx, key, self.advice, f"{why}: purge_delay=0: purged at once")
            return
        if self.version == 3:
            self._arena_mask.add(key)
            if self._arena_expire == 0:
                self._arena_expire = now + self.arena_delay_ms() * MS
            self.last_reason = (f"slab {ss}.{slab} {why}: marked; arena deadline (not extended) in "
                                f"{_ms(self._arena_expire - now)}")
            return
        self._seg_mask.setdefault(ss, set()).add(slab)
        expire = self._seg_expire.get(ss, 0)
        extend = self.purge_extend_delay * MS
        if expire == 0:
            self._seg_expire[ss] = now + self.purge_delay * MS
            what = f"deadline set to now + {self.purge_delay} ms"
        elif expire <= now:
            if expire + extend <= now:
                self._purge_segment(ctx, ss, f"{why}: deadline long passed: purge the segment now")
                return
            self._seg_expire[ss] = now + extend
            what = f"deadline just passed: set to now + {self.purge_extend_delay} ms"
        else:
            self._seg_expire[ss] = expire + extend
            what = f"deadline extended by {self.purge_extend_delay} ms"
        self.last_reason = f"slab {ss}.{slab} {why}: marked; {what}"

    def _try_purge(self, ctx: PolicyContext, now: int, segment: int | None = None) -> None:
        """Purge whatever is due: v2 segments (one, or all), the arena (v3, cached superslabs)."""
        if segment is not None:
            due = [segment] if 0 < self._seg_expire.get(segment, 0) <= now else []
        else:
            due = [ss for ss, t in self._seg_expire.items() if t <= now]
        for ss in due:
            self._purge_segment(ctx, ss, "segment purge deadline reached")
        if self._arena_expire and now >= self._arena_expire:
            self._arena_expire = 0
            marked, self._arena_mask = sorted(self._arena_mask), set()
            for key in marked:
                if key[1] < 0:
                    self._purge_cached(ctx, key[0], self.advice, "arena purge deadline reached")
                else:
                    self._purge_slab(ctx, key, self.advice, "arena purge deadline reached")

    def _purge_segment(self, ctx: PolicyContext, ss: int, why: str) -> None:
        self._seg_expire.pop(ss, None)
        for slab in sorted(self._seg_mask.pop(ss, ())):
            self._purge_slab(ctx, (ss, slab), self.advice, why)  # no-op if reused meanwhile
