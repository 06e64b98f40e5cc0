"""The superslab life cycle: acquire, empty, release (THE conversion point), unmap, purge.

State machine (``superslab.py``)::

   fresh mmap / LRU pop             all slabs empty (release guard)      evict (count/bytes/TTL)
  ---------------------> ACTIVE ----------------------------------> CACHED ------------------> unmapped
                           ^     policy: keep (warm) or decommit (cold)  |
                           +------------------ LRU pop (reformat) -------+
                                  policy: unmap --------------------------------------------> unmapped

:meth:`SuperslabLife.release_superslab` is the single place where a policy's decision becomes
OS calls (hakmem's ``ss_maybe_decommit_superslab``); :meth:`~SuperslabLife.decommit_slab` and
:meth:`~SuperslabLife.decommit_cached` are the policies' two other actions (slab-granular purge,
and purging a superslab that was cached warm).  Every page given back or touched here is also
told to the resident-page model (``HeapState.pages``), and every acquisition, decision, unmap
and eviction to the decision log when it is on (``HeapState.log``, ``events.py``).

Exceptions (a policy that raises, an OS call that fails, KeyboardInterrupt) never leave a
superslab half-released: a failed decision falls back to *keep*, then the error propagates.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import numpy as np

from . import constants as K
from .errors import HeapExhaustedError, OSLayerError
from .pages import HOW_TOUCH
from .policy import PolicyContext, Release, SuperslabEvent
from .superslab import Superslab

if TYPE_CHECKING:
    from .state import HeapState

__all__ = ["SuperslabLife"]


class SuperslabLife:
    """Acquire, release and purge superslabs of one heap (the slow path owns one)."""

    ctx: PolicyContext  # set by the slow path once the context exists (it wraps this object)

    def __init__(self, state: HeapState) -> None:
        self.st = state
        self._advice_refused = False  # the kernel refused a per-acquisition madvise once

    def acquire_superslab(self) -> int:
        """Stage 5: pop the LRU cache, else map a fresh superslab.  Returns its index."""
        st = self.st
        e = st.lru.pop()
        if e is not None:
            ss = st.superslab(e.idx)
            st.counters["ss_from_lru"] += 1
            if st.config.ss_acquire_advice == "every":
                self._acquire_advice(ss)
        else:
            ss = self.map_superslab()
            st.counters["ss_fresh"] += 1
        if st.log is not None:
            st.log.emit("acquire_lru" if e is not None else "acquire_mmap", ss.idx, nbytes=ss.size, why=(
                "no free slab: no cached superslab, so a fresh mmap" if e is None else
                f"no free slab: the LRU cache's most recent superslab ({'cold' if e.decommitted else 'warm'})"))
        st.counters["ss_acquired"] += 1
        ss.activate()
        self._formatted(ss)
        st.n_active += 1
        st.has_unused.add(ss.idx)
        return ss.idx

    def map_superslab(self) -> Superslab:
        """mmap a superslab and make it known (table, registry, kernel); it starts CACHED."""
        st = self.st
        if not st.free_idx:
            raise HeapExhaustedError(f"all {st.config.max_superslabs} superslab slots in use "
                                     "(raise SIMALLOC_MAX_SUPERSLABS)")
        idx = heapq.heappop(st.free_idx)
        os = st.os
        mmaps, retries = os.mmap_total, os.align_retries
        try:
            m = os.reserve(st.ss_bytes, align=st.ss_bytes)
        except BaseException:
            heapq.heappush(st.free_idx, idx)
            raise
        finally:  # hakmem's mmap_total / fallback_mmap count superslab mmaps only
            st.counters["ss_mmap_calls"] += os.mmap_total - mmaps
            st.counters["ss_fallback_mmap"] += os.align_retries - retries
        ss = Superslab(idx, m, st.lg)
        st.superslabs[idx] = ss
        assert m.view is not None
        st.kernel.attach(idx, m.addr, m.view)
        st.registry.insert(m.addr, idx)
        st.pages.register(m.addr, idx)
        st.ever_superslabs += 1
        self._acquire_advice(ss)
        return ss

    def _acquire_advice(self, ss: Superslab) -> None:
        """hakmem's per-acquisition madvise on the aligned superslab (ss_prefault_box / OS box):
        MADV_WILLNEED, or MADV_POPULATE_WRITE with ``ss_prefault=1``; with ``ss_prefault=2``
        (TOUCH) every page is also written once.  Advice switched off
        (``ss_acquire_advice=off``) or refused by the kernel is a hint lost, not an error: it is
        counted (``madvise_disabled``), and after a refusal no more advice is tried."""
        st = self.st
        if self._advice_refused or st.config.ss_acquire_advice == "off":
            st.counters["madvise_disabled"] += 1
        else:
            advice = "POPULATE_WRITE" if st.config.ss_prefault == 1 else "WILLNEED"
            try:
                st.os._advise(ss.mapping, advice, 0, ss.size)  # the OS layer counts it
                st.counters["ss_advise_calls"] += 1
            except OSLayerError:
                self._advice_refused = True
                st.counters["madvise_disabled"] += 1
        if st.config.ss_prefault == 2:  # TOUCH: one plain store per page, one fault (a read
            # first would map the zero page: two).  Contents need not survive: activate()
            # reformats the header and makes every slab UNUSED (carved afresh).
            pages = np.frombuffer(ss.w8, dtype=np.uint8)[::K.PAGE_SIZE]
            pages.fill(0)
            del pages
            st.pages.superslab(ss.idx, 0, ss.size, HOW_TOUCH)
            st.counters["prefault_pages"] += ss.size // K.PAGE_SIZE

    def _formatted(self, ss: Superslab) -> None:
        """The header and slab records were (re)written: the header page is resident."""
        self.st.pages.superslab(ss.idx, 0, K.header_bytes(self.st.lg), HOW_TOUCH)

    def superslab_empty(self, ss: Superslab) -> None:
        """Release guard passed: every slab of ``ss`` is empty.  Ask the policy, then act."""
        st = self.st
        assert ss.h(K.H_TOTAL_ACTIVE) == 0 and ss.h(K.H_ACTIVE_SLABS) == 0, "release guard"
        kern = st.kernel
        for cls in range(K.NUM_CLASSES):
            if kern.cur_ss[cls] == ss.idx:
                st.bind(cls, -1, -1)
        for s, state in enumerate(ss.slab_states(st.nslabs)):
            if state != K.SLAB_UNUSED:  # a listed slab sits in its own class's sets only
                cls = ss.slab_class(s)
                st.empty[cls].discard((ss.idx, s))
                st.partial[cls].discard((ss.idx, s))
                ss.set_meta(s, K.M_STATE, K.SLAB_EMPTY)
        st.has_unused.discard(ss.idx)
        st.warm.discard_superslab(ss.idx)  # it leaves ACTIVE: no warm pool may hand it out
        st.n_active -= 1
        st.counters["ss_empty_events"] += 1
        if st.log is not None:
            st.log.emit("superslab_empty", ss.idx, nbytes=ss.size,
                        why=f"every slab is empty; {st.policy.describe()} decides")
        c = st.clock()
        decision: Release = Release.keep()
        try:
            decision = st.policy.on_superslab_empty(self.ctx, SuperslabEvent(ss.idx, c.ops, c.seconds))
            if not isinstance(decision, Release):
                raise TypeError(f"{type(st.policy).__name__}.on_superslab_empty must return a "
                                f"Release, not {type(decision).__name__}")
        except BaseException:
            self.release_superslab(ss, Release.keep())  # never leave it half released
            raise
        self.release_superslab(ss, decision)

    def release_superslab(self, ss: Superslab, decision: Release) -> None:
        """THE conversion point (hakmem's ``ss_maybe_decommit_superslab``): carry out a
        policy's decision on an empty superslab through the OS layer, and count it.  If the OS
        refuses, the superslab is kept (cached warm) and the error propagates."""
        st = self.st
        if decision.retire:
            st.counters["lean_retire"] += 1
        if decision.action == "unmap":
            self.unmap_superslab(ss.idx, why=decision.why)
            return
        decommitted, lo = False, 0
        try:
            if decision.action == "decommit":
                lo = 0 if st.config.lean_range == "all" else K.header_bytes(st.lg)
                st.os.decommit(ss.mapping, lo, ss.size - lo, decision.advice)
                st.counters["lean_decommit"] += 1
                decommitted = True
        finally:
            now = st.seconds()
            ss.to_cached(decommitted)
            st.counters["ss_cached"] += 1
            if st.log is not None:
                failed = " [decommit failed: kept warm]" if decision.action == "decommit" and not decommitted else ""
                st.log.emit("decommit_superslab" if decommitted else "keep", ss.idx, stage="empty" if
                            decommitted else "", advice=decision.advice if decommitted else "",
                            nbytes=ss.size - lo, why=decision.why + failed)
            st.lru.push(ss.idx, now, decommitted)
            for idx in st.lru.evict_over_limits(now):
                st.counters["lru_evictions"] += 1
                self.unmap_superslab(idx, evicted=True)

    def unmap_superslab(self, idx: int, evicted: bool = False, why: str = "") -> None:
        """Unmap superslab ``idx``: a policy's decision (``why`` its reason) or an LRU eviction."""
        st = self.st
        ss = st.superslab(idx)
        if st.log is not None:
            st.log.emit("evict" if evicted else "unmap", idx, nbytes=ss.size, why=why if not evicted else (
                f"over the LRU cache's limits ({st.lru.max_cached} superslabs, {st.lru.max_bytes >> 20} MiB, "
                f"TTL {st.lru.ttl:g} s)"))
        st.registry.delete(ss.base)
        st.kernel.detach(idx)
        ss.release_views()
        st.superslabs[idx] = None
        heapq.heappush(st.free_idx, idx)
        st.counters["ss_unmapped"] += 1
        st.os.release(ss.mapping)

    def decommit_slab(self, idx: int, slab: int, advice: str, why: str = "") -> bool:
        """Give an EMPTY, unbound slab's pages back (a policy's slab-granular purge).  ``why``
        is the policy's reason (kept for the decision log)."""
        st = self.st
        ss = st.superslabs[idx] if 0 <= idx < len(st.superslabs) else None
        if (ss is None or ss.state != K.SS_ACTIVE or not 0 <= slab < st.nslabs
                or ss.slab_state(slab) != K.SLAB_EMPTY):
            return False
        if st.is_current(ss.slab_class(slab), idx, slab):
            return False
        start = K.slab_data_start(st.lg, slab)
        st.os.decommit(ss.mapping, start, (slab + 1) * K.SLAB_SIZE - start, advice)
        ss.set_meta(slab, K.M_FREELIST, 0)
        ss.set_meta(slab, K.M_CARVED, 0)
        ss.set_meta(slab, K.M_STATE, K.SLAB_DECOMMITTED)
        st.counters["slab_decommits"] += 1
        if st.log is not None:
            st.log.emit("decommit_slab", idx, slab, ss.slab_class(slab), advice=advice,
                        nbytes=(slab + 1) * K.SLAB_SIZE - start, why=why or getattr(st.policy, "last_reason", ""))
        return True

    def cached_superslabs(self) -> list[tuple[int, float, bool]]:
        """(index, seconds when cached, decommitted) of every cached superslab, oldest first."""
        return [(e.idx, e.since, e.decommitted) for e in self.st.lru.entries()]

    def decommit_cached(self, idx: int, advice: str = "DONTNEED", why: str = "") -> bool:
        """Purge a superslab that sits in the LRU cache: warm -> cold (or FREE'd -> DONTNEED'd).
        Its place in the LRU order is kept.  Returns False (and does nothing) if ``idx`` is not
        cached, or is already cold and the advice would not change that."""
        st = self.st
        ss = st.superslabs[idx] if 0 <= idx < len(st.superslabs) else None
        if ss is None or ss.state != K.SS_CACHED or idx not in st.lru:
            return False
        if advice not in ("DONTNEED", "FREE"):
            raise ValueError(f"unknown advice {advice!r}")
        if ss.decommitted and advice == "FREE":
            return False
        lo = 0 if st.config.lean_range == "all" else K.header_bytes(st.lg)
        st.os.decommit(ss.mapping, lo, ss.size - lo, advice)
        ss.to_cached(True)
        st.lru.mark_decommitted(idx)
        st.counters["cached_decommits"] += 1
        if st.log is not None:
            st.log.emit("decommit_superslab", idx, stage="cached", advice=advice, nbytes=ss.size - lo,
                        why=why or getattr(st.policy, "last_reason", ""))
        return True

    def prewarm(self) -> None:
        """hakmem's prewarm boxes (suppressed when the policy says so, e.g. LEAN)."""
        st = self.st
        if not st.policy.allow_prewarm():
            return
        n = st.config.prewarm_superslabs
        if n:
            st.lru.grow_to_fit(n)
            fresh = [self.map_superslab() for _ in range(n)]
            now = st.seconds()
            for ss in fresh:
                ss.format()
                self._formatted(ss)
                st.lru.push(ss.idx, now, False)
            st.counters["prewarm_superslabs"] += n
        if st.config.tiny_prewarm:
            kern = st.kernel
            for cls, count in st.config.prewarm_counts().items():
                if cls > st.config.tiny_max_class:
                    continue
                ptrs = [kern.alloc_fast(cls) for _ in range(count)]
                for p in reversed(ptrs):
                    kern.free_fast(p)
                st.counters["prewarm_blocks"] += count

    def close(self) -> None:
        """Unmap everything (the heap is closing)."""
        st = self.st
        st.kernel.release()
        for ss in st.mapped():
            ss.release_views()
            st.os.release(ss.mapping)
        st.superslabs = []
        st.large.release_all()
        st.mid.release_all()
        st.os.close()
