"""The slow path: everything the hot path cannot do alone, and the superslab life cycle.

The kernel (hot path) calls exactly the callbacks of :class:`simalloc.kernel.SlowPath`; this
module implements them over a :class:`~simalloc.state.HeapState`:

================  ===========================================================================
callback          when the kernel calls it
================  ===========================================================================
refill_slow       a class has no current slab (or it is exhausted): bind a new one (stages)
slab_empty        a slab's ``used`` fell to 0: list it EMPTY, tell the policy; maybe the
                  whole superslab emptied (release guard) -> :meth:`superslab_empty`
slab_partial      a full, unbound slab got a quarter of its blocks back: list it partial
free_slow         a pointer outside every superslab: a large or Mid block, or an error
free_error        a pointer the hot path rejected: diagnose and raise
corrupt_block     a free-list or front-cache block fails its checks (tag, link bounds, junk)
corrupt_meta      a slab record or superslab count read by the hot path is impossible: raise
op_boundary       between two operations while signals are held: deliver them (oslayer/signals)
malloc_large      a request above the tiny limit: the Mid tier (mid.py, up to 32 KiB, option
                  mid_tier) or a large block (large.py, its own mmap)
write_byte_slow   a replayed first-byte write to a large or Mid block
apply_other       a replayed op the kernel leaves to Python (realloc; ``OP_IDLE``: virtual time
                  passes, background policies tick at their wake-ups -- :meth:`idle`)
tick              every ``tick_interval_ops`` operations: LRU TTL and the policy's clock
flush_queue       a batch's event queue is full (below)
================  ===========================================================================

In a batch (``Heap.replay``: :meth:`_batch`) the kernel does not call ``slab_partial`` -- nor
``slab_empty`` for a slab whose superslab still holds blocks, while the policy's
``on_slab_empty`` is the base no-op (FAST, LEAN, obmalloc, tcmalloc-release) -- but queues the
event (``Kernel.evq``).  Every callback takes the queue first (:meth:`flush_queue`, oldest
first, exactly what the callbacks would have done), and so does the batch's end, also when it
raises: no Python code ever sees a slab list behind the slab records, and the decisions, the
counters and the log equal those of per-call operations (tests/test_batch_queue.py).  On churn
this spares ~2,400 of ~3,700 trips into Python per round.

Refill stages when a class's current slab is exhausted, in hakmem's order and with hakmem's
names (hakmem-design.md s3; stats keys ``stage_*``; within a shared-pool stage the lowest
superslab index wins, so young superslabs can drain -- see ``slabset.py``; the partial stage
follows the policy's ``refill_order`` -- see ``refillorder.py``):

W.   the class's warm pool of superslabs (``warm_pool_size``, HAKMEM_WARM_POOL_SIZE; off at 0;
     warmpool.py), then the shared pool:
0.5  only with ``superslab_reuse=1`` (HAKMEM_SUPERSLAB_REUSE): the lowest EMPTY slab of any
     class (reformatted if of another class);
1.   pop the class's free-slot list: an EMPTY slab of the same class (free list reused as is);
     -    a partial slab of the same class (simalloc's partial list: hakmem reaches such slabs
          through the warm pool and its per-superslab masks, not through a shared-pool stage);
2.   claim an UNUSED slab of an active superslab (lowest superslab index first); failing that
     (simalloc's [I] rule, ``stage_2_empty_other``) the lowest EMPTY slab of another class,
     reformatted, rather than map memory while free slabs sit idle;
3.   a new superslab: the LRU cache first, then a fresh mmap (with hakmem's per-acquisition
     madvise, WILLNEED or POPULATE_WRITE, and the ``ss_prefault`` touch).

With ``superslab_reuse=0`` (hakmem's default) an EMPTY slab serves another class only when no
UNUSED slab is left.  A warm-pool miss prefills the pool (``warm_pool_prefill``, ``_source``).

Superslab life cycle (state machine in ``superslab.py``): :meth:`acquire_superslab` (LRU pop
or mmap) -> ACTIVE -> release guard -> :meth:`superslab_empty` asks the policy ->
:meth:`release_superslab`, THE single conversion point of a decision into OS calls
(hakmem's ``ss_maybe_decommit_superslab``) -> CACHED (warm or cold) or unmapped.

Decision log (``events.py``): when ``st.log`` is set, each refill (with its stage), slab-empty
and tick here -- and each life-cycle event in ``lifecycle.py`` -- is also recorded; one ``if``
per site, nothing in the kernel.

Exceptions (a policy that raises, an OS call that fails, KeyboardInterrupt) never leave a
superslab half-released: a failed decision falls back to *keep*, then the error propagates.
Each state-changing callback holds asynchronous signals on entry (``st.sig.hold()``), so a
``KeyboardInterrupt`` can only land at its first bytecode (nothing changed yet) or at the
operation boundary where the kernel or the heap releases them; the kernel calls every callback
at a point where an exception leaves its own state whole (see ``_kernel_py.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import constants as K
from .checker import check_state
from .diagnose import corrupt_block, corrupt_meta, locate_live
from .errors import (
    HeapCorruptionError,
    InvalidSizeError,
    TraceError,
)
from .lifecycle import SuperslabLife
from .mid import mid_class
from .policy import PolicyContext, ReleasePolicy, SlabEvent
from .superslab import Superslab
from .validate import check_ops, check_size, check_slots
from .warmpool import HOW_EMPTY, HOW_PARTIAL, HOW_REUSE, HOW_UNUSED, pop_with_room, prefill

if TYPE_CHECKING:
    from collections.abc import Callable

    from .state import HeapState

__all__ = ["HeapSlowPath"]

#: Decision-log entries of the refill stages: internal name -> (stage, why) (events.py).
_STAGE_LOG = {
    "W": ("W", "Stage W: a superslab of the class's warm pool has a slab for it"),
    "0.5": ("0.5", "Stage 0.5 (superslab_reuse=1): the lowest EMPTY slab of any class"),
    "1": ("1", "Stage 1: an EMPTY slab of the class's own free-slot list"),
    "partial": ("partial", "a partial slab of the class (simalloc's partial list)"),
    "2": ("2", "Stage 2: an UNUSED slab of an active superslab"),
    "2e": ("2", "Stage 2, last resort: no UNUSED slab left, an EMPTY slab of another class reformatted"),
    "3": ("3", "Stage 3: no free slab anywhere: a new superslab (see the acquire record)"),
}


class HeapSlowPath:
    """The kernel's slow path over one heap's state (implements ``kernel.SlowPath``)."""

    def __init__(self, state: HeapState) -> None:
        self.st = state
        self.life = SuperslabLife(state)
        self.ctx = PolicyContext(state, self.life)
        self.life.ctx = self.ctx
        self._debug_checks = state.config.debug >= 2
        self._stage = ""  # the refill stage just taken (for the decision log)

    def _debug_check(self) -> None:
        if self._debug_checks:
            check_state(self.st)

    # ================================================================== kernel callbacks
    def refill_slow(self, cls: int) -> None:
        """Bind a new current slab for ``cls``: Stage W, then the shared pool's stages 0.5 / 1 /
        partial / 2 / 3 (module docstring); a warm-pool miss prefills the pool."""
        st = self.st
        self._enter()
        self.maintain()
        key = self._from_warm_pool(cls) if st.warm else None
        miss = key is None and bool(st.warm)
        if key is None:
            key = self._from_shared_pool(cls)
        st.bind(cls, key[0], key[1])
        if st.log is not None:
            stage, why = _STAGE_LOG[self._stage]
            st.log.emit("refill", key[0], key[1], cls, stage, why=why)
        if miss:  # after binding: a prefill that cannot map more leaves a consistent heap
            st.counters["warm_pool_misses"] += 1
            self._prefill(cls, key[0])
        self._debug_check()

    def _from_warm_pool(self, cls: int) -> tuple[int, int] | None:
        """Stage W (warmpool.pop_with_room); None when the class's pool runs dry."""
        found = pop_with_room(self.st, cls)
        if found is None:
            return None
        self.st.counters["stage_warm_pool"] += 1
        self._stage = "W"
        return self._take(cls, *found)

    def _from_shared_pool(self, cls: int) -> tuple[int, int]:
        """hakmem's shared pool (``shared_pool_acquire_slab``): Stages 0.5, 1, partial, 2, 3."""
        st = self.st
        ctr = st.counters
        if st.config.superslab_reuse:  # Stage 0.5: the lowest EMPTY slab of any class
            key = self._lowest_empty()
            if key is not None:
                ctr["stage_0_5_reuse"] += 1
                self._stage = "0.5"
                how = HOW_EMPTY if st.superslab(key[0]).slab_class(key[1]) == cls else HOW_REUSE
                return self._take(cls, key[0], key[1], how)
        if st.empty[cls]:  # Stage 1: the class's free-slot list (EMPTY slabs of this class)
            ctr["stage_1_free_slot"] += 1
            self._stage = "1"
            return self._take(cls, *st.empty[cls].pop_lowest(), HOW_EMPTY)
        if st.partial[cls]:  # simalloc's partial list, in the refill order (refillorder.py)
            ctr["stage_partial"] += 1
            self._stage = "partial"
            return self._take(cls, *st.partial[cls].pop_next(), HOW_PARTIAL)
        if st.has_unused:  # Stage 2: an UNUSED slot of an active superslab
            idx = min(st.has_unused)
            ctr["stage_2_unused"] += 1
            self._stage = "2"
        elif (key := self._lowest_empty()) is not None:
            # Stage 2, last resort [I]: an EMPTY slab of another class, before mapping memory
            ctr["stage_2_empty_other"] += 1
            self._stage = "2e"
            return self._take(cls, key[0], key[1], HOW_REUSE)
        else:  # Stage 3: a new superslab (LRU, then mmap)
            idx = self.life.acquire_superslab()
            ctr["stage_3_new_ss"] += 1
            self._stage = "3"
        return self._take(cls, idx, st.superslab(idx).first_unused(), HOW_UNUSED)

    def _lowest_empty(self) -> tuple[int, int] | None:
        """The lowest (superslab, slab) over every class's EMPTY list (left in its list)."""
        heads = [d.pop_lowest() for d in self.st.empty if d]
        for k in heads:
            self.st.empty[self.st.superslab(k[0]).slab_class(k[1])].add(k)
        return min(heads) if heads else None

    def _take(self, cls: int, idx: int, slab: int, how: str) -> tuple[int, int]:
        """Make slab ``(idx, slab)``, found as ``how`` (warmpool.HOW_*), an ACTIVE slab of
        ``cls`` taken off its list; returns the key."""
        st = self.st
        ss = st.superslab(idx)
        key = (idx, slab)
        if how == HOW_EMPTY:  # own class: the free list is reused as is (unless decommitted)
            st.empty[cls].discard(key)
            if ss.slab_state(slab) == K.SLAB_DECOMMITTED:
                ss.claim(slab, cls)
            else:
                ss.set_meta(slab, K.M_STATE, K.SLAB_ACTIVE)
        elif how == HOW_REUSE:  # another class's EMPTY slab, reformatted
            st.empty[ss.slab_class(slab)].discard(key)
            ss.claim(slab, cls)
        elif how == HOW_PARTIAL:
            st.partial[cls].discard(key)
        else:
            assert how == HOW_UNUSED and ss.slab_state(slab) == K.SLAB_UNUSED
            ss.claim(slab, cls)
            if ss.first_unused() < 0:
                st.has_unused.discard(idx)
        return key

    def _prefill(self, cls: int, idx: int) -> None:
        """A warm-pool miss: park superslab ``idx`` and up to ``warm_pool_prefill`` more."""
        self.st.counters["warm_pool_prefilled"] += prefill(self.st, cls, idx, self.life.acquire_superslab)

    def slab_empty(self, idx: int, slab: int) -> None:
        """The hot path saw a slab's ``used`` drop to 0."""
        self._enter()
        self._slab_empty(idx, slab)
        self._debug_check()

    def _slab_empty(self, idx: int, slab: int, current: bool | None = None, ops: int | None = None) -> None:
        """A slab emptied: called now (``ops`` None), or queued by the kernel at ``ops``
        operations, ``current`` saying if it was bound then (never the superslab's last slab,
        and only while the policy's ``on_slab_empty`` is the base no-op)."""
        st = self.st
        ss = st.superslab(idx)
        ss.check_record(slab, "slab empty")
        cls = ss.slab_class(slab)
        if current is None:
            current = st.is_current(cls, idx, slab)
        last = ops is None and ss.h(K.H_TOTAL_ACTIVE) == 0
        st.counters["slab_empty_events"] += 1
        if st.log is not None:
            st.log.emit("slab_empty", idx, slab, cls, ops=ops, why="the superslab's last used slab" if last
                        else "current slab: stays bound" if current else
                        "listed EMPTY; the policy's on_slab_empty is asked")
        if not current:
            st.partial[cls].discard((idx, slab))
            ss.set_meta(slab, K.M_STATE, K.SLAB_EMPTY)
            st.empty[cls].add((idx, slab))
        if last:
            self._release_guard(ss)
            self.life.superslab_empty(ss)
        elif not current and ops is None:
            c = st.clock()
            st.policy.on_slab_empty(self.ctx, SlabEvent(idx, slab, cls, c.ops, c.seconds))

    def flush_queue(self) -> None:
        """Deliver the events the kernel queued in a batch (``C_BATCH``; ``_kernel_py.py``'s
        ``_enqueue``), oldest first, as the callbacks would have: every slow-path callback
        takes the queue first, so nothing here ever sees a stale slab list.  Decision-log
        records keep their event's operation count (and virtual time); their wall seconds are
        the delivery's."""
        st = self.st
        kern = st.kernel
        n = kern.counters.item(K.C_QUEUED)
        if not n:
            return
        st.sig.hold()
        rows = kern.evq[:n].tolist()
        kern.counters[K.C_QUEUED] = 0
        for i, (kind, idx, slab, ops) in enumerate(rows):
            try:
                if kind == K.EV_PARTIAL:
                    self._slab_partial(idx, slab)
                else:
                    self._slab_empty(idx, slab, kind == K.EV_EMPTY_CURRENT, ops)
            except BaseException:  # the rest stays queued (delivered at the next callback)
                rest = rows[i + 1:]
                kern.evq[:len(rest)] = rest
                kern.counters[K.C_QUEUED] = len(rest)
                raise
        self._debug_check()

    def deliver_queued(self) -> None:
        """Take the kernel's event queue, if anything is queued (first step of every callback,
        and of every public heap call: guard.py)."""
        if self.st.kernel.counters.item(K.C_QUEUED):
            self.flush_queue()

    def _enter(self) -> None:
        """A state-changing callback's first step: hold signals, then take the event queue."""
        self.st.sig.hold()
        self.deliver_queued()

    def _release_guard(self, ss: Superslab) -> None:
        """The header says no block of ``ss`` is in use: confirm it from the slab records and
        the front caches before the superslab may be released (a header count that was
        overwritten must not release live blocks)."""
        kern = self.st.kernel
        for s, state in enumerate(ss.slab_states(self.st.nslabs)):
            if state != K.SLAB_UNUSED:
                ss.check_record(s, "superslab empty")
        used = sum(ss.slab_column(K.M_USED, self.st.nslabs))
        held = np.arange(kern.fc.shape[1]) < kern.fc_count[:, None]  # the caches' occupied entries
        cached = int(np.count_nonzero(held & (kern.fc >> 32 == ss.idx)))
        if used or cached or ss.h(K.H_ACTIVE_SLABS):
            raise HeapCorruptionError(
                f"superslab {ss.idx}: header says no block is in use, but its slabs count {used}, the "
                f"front caches hold {cached} and active_slabs is {ss.h(K.H_ACTIVE_SLABS)}: header overwritten")

    def slab_partial(self, idx: int, slab: int) -> None:
        """A full, non-current slab got a quarter of its blocks back."""
        self._enter()
        self._slab_partial(idx, slab)

    def _slab_partial(self, idx: int, slab: int) -> None:
        st = self.st
        ss = st.superslab(idx)
        ss.check_record(slab, "slab partial")
        st.partial[ss.slab_class(slab)].add((idx, slab))

    def free_slow(self, addr: int) -> None:
        """A pointer outside every superslab: a large or Mid block, or an error."""
        st = self.st
        self._enter()
        if addr in st.large:
            st.large.free(addr)
            st.counters["large_frees"] += 1
        elif st.mid.owns(addr):
            st.mid.free(addr)  # raises (changing nothing) on a bad Mid pointer
        else:
            self.free_error(addr)
            return
        st.kernel.counters[K.C_OPS] += 1

    def free_error(self, addr: int) -> None:
        """Diagnose a pointer the hot path rejected and raise the matching error."""
        self.deliver_queued()  # the diagnosis reads slab states
        self.locate_live(addr)
        raise HeapCorruptionError(f"free({addr:#x}): rejected by the hot path but looks valid")

    def corrupt_block(self, idx: int, off: int, where: str) -> None:
        """A free-list or front-cache block fails its checks: raise (diagnose.py)."""
        corrupt_block(self.st, idx, off, where)

    def corrupt_meta(self, idx: int, slab: int, where: str) -> None:
        """An impossible slab record or superslab count: raise (diagnose.py)."""
        corrupt_meta(self.st, idx, slab, where)

    def op_boundary(self) -> None:
        """Between two operations while signals are held: deliver them (may raise)."""
        self.st.sig.op_boundary()

    def malloc_large(self, size: int) -> int:
        """A request above the tiny limit: the Mid tier (up to 32 KiB, option ``mid_tier``),
        else a direct-mapped large block (own mapping, counted)."""
        st = self.st
        size = check_size(size)
        self._enter()
        if st.mid.serves(size):
            addr = st.mid.malloc(size)
        else:
            addr = st.large.malloc(size)
            st.counters["large_allocs"] += 1
        st.kernel.counters[K.C_OPS] += 1
        return addr

    def write_byte_slow(self, addr: int, value: int) -> None:
        self._enter()
        if addr not in self.st.large and self.st.mid.owns(addr):
            self.st.mid.write_byte(addr, value)
        else:
            self.st.large.write_byte(addr, value)

    def apply_other(self, kind: int, cur: int, size: int) -> int:
        """Replay operations the kernel leaves to Python (realloc; ``OP_IDLE``: ``size`` ns of
        virtual time pass, the slot is left as it is)."""
        self._enter()
        if kind == K.OP_REALLOC:
            if not cur:
                raise TraceError("realloc of an empty slot")
            return self.realloc(cur, check_size(size))
        if kind == K.OP_IDLE:
            if size < 0:
                raise TraceError(f"idle row with negative time {size} ns")
            self.idle(size)
            return cur
        raise TraceError(f"unknown op kind {kind}")

    @staticmethod
    def idle_ns_of(seconds: object) -> int:
        """``Heap.idle``'s argument in ns (InvalidSizeError unless a finite number >= 0)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
                or not 0 <= seconds < 1e9:
            raise InvalidSizeError(f"idle time must be a number of seconds in [0, 1e9), not {seconds!r}")
        return int(round(float(seconds) * 1e9))

    def idle(self, ns: int) -> None:
        """``ns`` of virtual time pass with no operation (``Heap.idle``).  A ``background``
        policy's thread wakes at each ``next_wake_ns`` inside the span (the clock stands at the
        wake-up while it ticks); activity-driven and free-driven policies see nothing."""
        st = self.st
        st.sig.hold()
        end = st.virtual_ns() + ns
        pol = st.policy
        while pol.clock_kind == "background":
            wake = pol.next_wake_ns(self.ctx)
            if wake is None or wake > end:
                break
            step = max(wake - st.virtual_ns(), 0)
            st.pages.idled(step)  # resident over virtual time (pages.py)
            st.idle_ns += step
            self.maintain()
            if pol.next_wake_ns(self.ctx) == wake:
                break  # the thread did not move its wake-up (a fake time source): stop
        st.pages.idled(end - st.virtual_ns())
        st.idle_ns += end - st.virtual_ns()

    def tick(self) -> None:
        self._enter()
        self.maintain()

    # ================================================================== batches (Heap.replay)
    def replay(self, ops: np.ndarray, slots: np.ndarray) -> int:
        """Check the arrays, run the kernel's ``apply``; an exception leaving it carries
        ``ops_applied``, the rows that took effect."""
        ops, slots = check_ops(ops), check_slots(slots)
        kern = self.st.kernel
        try:
            done = self._batch(kern.apply, ops, slots)
            self.st.sig.release()  # held signals are delivered here, still counted
            return done
        except BaseException as exc:
            exc.ops_applied = int(kern.applied)  # type: ignore[attr-defined]
            raise

    def drain_slots(self, slots: np.ndarray) -> int:
        """Free every non-empty slot in index order (the benchmark's final drain) as ``apply``
        rows: a slot is cleared exactly when its free takes effect."""
        slots = check_slots(slots)
        nz = np.flatnonzero(slots)
        ops = np.zeros((len(nz), 3), dtype=np.int64)
        ops[:, 0] = K.OP_FREE
        ops[:, 1] = nz
        return self._batch(self.st.kernel.apply, ops, slots)

    def _batch(self, fn: Callable[..., int], *args: np.ndarray) -> int:
        """Run a kernel batch: signal holds inside it keep their recorders (oslayer/signals.py)
        and the kernel queues slab-partial events -- and slab-empty ones too while the policy's
        ``on_slab_empty`` is the base no-op -- instead of calling back (``flush_queue``)."""
        st = self.st
        ctr = st.kernel.counters
        with st.sig.batch():
            ctr[K.C_BATCH] = 2 if type(st.policy).on_slab_empty is ReleasePolicy.on_slab_empty else 1
            try:
                return int(fn(*args))
            finally:
                ctr[K.C_BATCH] = 0
                self.deliver_queued()

    # ================================================================== operations below the API
    def realloc(self, ptr: int, size: int) -> int:
        """Resize the live block at ``ptr`` (both already validated as values)."""
        st = self.st
        old = self.usable_size(ptr)  # validates ptr (raises on bad pointers)
        kern = st.kernel
        if size == 0:
            kern.free_fast(ptr)
            return 0
        large_size = size > kern.tiny_max and not st.mid.serves(size)
        if ptr in st.large:
            if large_size and size <= old:
                st.large.resize_in_place(ptr, size)
                return ptr
        elif st.mid.owns(ptr):
            if size > kern.tiny_max and not large_size and mid_class(size) == mid_class(old):
                return ptr  # still the same Mid class
        elif size <= kern.tiny_max and kern.lut[size] == self.locate_live(ptr)[3]:
            return ptr  # still the same tiny class
        new = kern.malloc(size)
        src, dst = self.view(ptr), self.view(new)
        n = min(old, size)
        dst[:n] = src[:n]
        src.release()
        dst.release()
        ops = int(kern.counters[K.C_OPS])
        try:  # no policy tick between the halves; a callback raising must not lose a block:
            kern.free_now(ptr)
        except BaseException as exc:
            if int(kern.counters[K.C_OPS]) == ops:  # the old block is still live: drop the new one
                kern.free_now(new)
            else:  # done, then an event callback raised: the exception says where the bytes are
                exc.realloc_result = new  # type: ignore[attr-defined]
            raise
        return new

    def calloc(self, total: int) -> int:
        """A zeroed block of ``total`` bytes, zeroed in place: a large block is a fresh private
        mapping (the kernel hands out zero pages; nothing is touched), any other block is
        cleared through its view (at most a few KiB, no temporary of the block's size)."""
        st = self.st
        p = st.kernel.malloc(total)
        if total and p not in st.large:
            v = self.view(p)
            v[:total] = bytes(total)
            v.release()
        return p

    def usable_size(self, ptr: int) -> int:
        if ptr in self.st.large:
            return self.st.large.usable_size(ptr)
        if self.st.mid.owns(ptr):
            return self.st.mid.usable_size(ptr)
        _ss, _slab, _off, cls = self.locate_live(ptr)
        return K.CLASS_STRIDES[cls] - K.BLOCK_HEADER

    def view(self, ptr: int) -> memoryview:
        if ptr in self.st.large:
            return self.st.large.view(ptr)
        if self.st.mid.owns(ptr):
            return self.st.mid.view(ptr)
        ss, _slab, off, cls = self.locate_live(ptr)
        return ss.w8[off + 1: off + K.CLASS_STRIDES[cls]]

    def maintain(self) -> None:
        """Clock-driven work: LRU TTL eviction and the policy's tick()."""
        st = self.st
        if st.log is not None:
            st.log.emit("tick", why=f"the policy's clock ({type(st.policy).__name__}.tick)")
        for idx in st.lru.evict_over_limits(st.seconds()):
            st.counters["lru_evictions"] += 1
            self.life.unmap_superslab(idx, evicted=True)
        st.policy.tick(self.ctx)

    def flush(self) -> None:
        """Drain every front cache back to its slabs, then run the clock (``Heap.trim``)."""
        self.st.kernel.flush()
        self.maintain()

    def force_reclaim(self) -> int:
        """MADV_PAGEOUT cached superslabs and decommitted slabs; returns the calls made."""
        st = self.st
        calls = 0
        for ss in st.mapped():
            if ss.state == K.SS_CACHED:
                st.os.reclaim(ss.mapping, 0, ss.size)
                calls += 1
                continue
            for s in range(st.nslabs):
                if ss.slab_state(s) == K.SLAB_DECOMMITTED:
                    start = K.slab_data_start(st.lg, s)
                    st.os.reclaim(ss.mapping, start, (s + 1) * K.SLAB_SIZE - start)
                    calls += 1
        return calls

    def locate_live(self, addr: int) -> tuple[Superslab, int, int, int]:
        """(superslab, slab, offset, class) of the live block at ``addr``, or raise (diagnose.py)."""
        return locate_live(self.st, addr)

    # ================================================================== delegated to lifecycle.py
    def prewarm(self) -> None:
        sig = self.st.sig  # the heap is being built: no operation boundary until it is done
        sig.hold()
        sig.pinned += 1
        try:
            self.life.prewarm()
        finally:
            sig.pinned -= 1
            sig.release()

    def close(self) -> None:
        self.life.close()
