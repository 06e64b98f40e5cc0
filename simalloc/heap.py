"""The heap: simalloc's public API, a thin facade over the heap's state and slow path.

Layers, each with one job (only the bottom one makes syscalls)::

    Heap.malloc/free/realloc/...     public API, argument checks, life cycle   heap.py
      kernel (hot path)              front cache, carving, free lists          _kernel_py.py | _kernel
      slow path                      refill stages, slab/superslab events      slowpath.py
        policy                       keep / decommit / unmap decisions         policy.py
        LRU cache                    empty superslabs, count/bytes/TTL         lru.py
      state                          what the heap holds                       state.py
      reports, check()               what the heap says about itself           reports.py, checker.py
    OSLayer                          mmap / madvise / munmap, counted          oslayer/

Threading contract: a heap serves one call at a time.  Every public method takes the heap's
gate without waiting; a second call that arrives while one is inside (another thread, or a
signal handler that interrupted a call) raises :class:`~simalloc.errors.ConcurrentUseError`
before it changes anything.  ``close()`` arriving that way is deferred: the running call
closes the heap when it returns.  Share a heap between threads behind your own lock.
Asynchronous signals (``KeyboardInterrupt``) are held while the heap changes state in Python
and delivered at the next operation boundary (``guard.py``, ``oslayer/signals.py``).
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

import numpy as np

from . import constants as K
from . import reports
from .checker import check_state
from .errors import HeapClosedError, HeapCorruptionError, InvalidPointerError, InvalidSizeError
from .events import Sink, make_log, records_of
from .guard import busy, held, open_call
from .kernel import load_kernel
from .large import LargeBlocks
from .occupancy import Occupancy, render_map, snapshot
from .options import Config
from .oslayer import OSLayer
from .oslayer.signals import SignalDeferral
from .pages import PageModel
from .policy import Clock, PolicyContext, ReleasePolicy, make_policy
from .registry import Registry
from .slowpath import HeapSlowPath
from .state import HeapState, KernelLike
from .validate import check_pointer, check_size

__all__ = ["Clock", "Heap", "PolicyContext"]


class Heap:
    """A superslab heap with real memory behind it.

    ``Heap()`` reads options from the environment (hakmem's names or ``SIMALLOC_*``);
    ``Heap(mem_lean=True)`` or ``Heap(config, **overrides)`` sets them in code.  A custom
    :class:`~simalloc.policy.ReleasePolicy` instance may be passed as ``policy=``, and an OS
    layer as ``os=`` (default: a new :class:`~simalloc.oslayer.OSLayer`; tests pass a
    fault-injecting one).  ``events=True`` or a sink turns the decision log on (:meth:`events`,
    :mod:`simalloc.events`).  Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: Config | None = None, *, policy: ReleasePolicy | str | None = None,
                 os: OSLayer | None = None, events: bool | Sink | None = None, **overrides: Any) -> None:
        self._closed = True  # until fully built: a failed __init__ leaves nothing to close
        self._gate = [None]  # one token: the heap serves one call at a time (guard.py)
        self._close_pending = False
        if isinstance(policy, str):  # Heap(policy="lean") names the option, not an instance
            overrides["policy"], policy = policy, None
        elif policy is not None and not isinstance(policy, ReleasePolicy):
            raise TypeError(f"policy must be a ReleasePolicy or an option string, not "
                            f"{type(policy).__name__}")
        if os is not None and not isinstance(os, OSLayer):
            raise TypeError(f"os must be an OSLayer, not {type(os).__name__}")
        if config is None:
            config = Config.from_env(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        self._check_every_op = config.debug >= 3  # read once: malloc/free consult it per call
        self.os = os if os is not None else OSLayer(nohugepage=config.nohugepage)
        self.policy: ReleasePolicy = policy if policy is not None else make_policy(config)
        st = HeapState(config, self.os, self.policy)
        self._slow = HeapSlowPath(st)
        st.log = make_log(events, st, self._slow.ctx)  # decision log (events.py): None = off
        kmod = load_kernel(config.kernel)
        lut = K.build_size_lut(config.tiny_max_class)[:config.tiny_max_size + 1]  # tiny limit
        self.kernel: KernelLike = kmod.Kernel(
            self._slow, st.lg, config.max_superslabs, config.front_cache_cap,
            config.front_refill_batch, config.front_drain_batch, lut, K.CLASS_STRIDES,
            config.tick_interval_ops, config.secure, secrets.randbits(32))
        st.kernel = self.kernel
        st.sig = self._sig = SignalDeferral(self.kernel.counters, always=kmod.KERNEL_NAME == "python")
        st.registry = Registry(self.kernel, st.lg)
        st.pages = PageModel(self.kernel)
        st.pages.ns_per_op = st.ns_per_op
        self.os.observer = st.pages.observe
        st.large = LargeBlocks(self.os, st.pages)
        st.mid.pages = st.pages
        self._st = st
        self.kernel_name: str = kmod.KERNEL_NAME
        self.lg, self.ss_bytes, self.nslabs = st.lg, st.ss_bytes, st.nslabs
        self.tiny_max = len(lut) - 1
        self._closed = False
        try:
            self._slow.prewarm()
        except BaseException:
            self.close()
            raise

    @property
    def ctx(self) -> PolicyContext:
        """The policy's view of this heap (what ``ReleasePolicy`` hooks receive)."""
        return self._slow.ctx

    # ================================================================== public API
    def malloc(self, size: int) -> int:
        """Allocate ``size`` bytes; returns the block's address (a real address in a mapping)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if type(size) is not int or size < 0 or size > K.MAX_REQUEST:
            size = check_size(size)
        try:  # guard.open_call's steps, inlined (the per-call hot path)
            del self._gate[0]
        except IndexError:
            raise busy() from None
        sig = self._sig
        try:
            if sig.always:
                sig.hold()
            p: int = self.kernel.malloc(size)
            if self._check_every_op:
                self._check()
        finally:
            try:
                if sig.held:
                    sig.release()
            finally:
                self._gate.append(None)
                if self._close_pending:
                    self.close()
        return p

    def free(self, ptr: int) -> None:
        """Free the block at ``ptr`` (``0`` and ``None`` are ignored, like free(NULL))."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if type(ptr) is not int or not 0 < ptr < 1 << 64:
            ptr = check_pointer(ptr)
            if not ptr:
                return
        try:
            del self._gate[0]
        except IndexError:
            raise busy() from None
        sig = self._sig
        try:
            if sig.always:
                sig.hold()
            self.kernel.free_fast(ptr)
            if self._check_every_op:
                self._check()
        finally:
            try:
                if sig.held:
                    sig.release()
            finally:
                self._gate.append(None)
                if self._close_pending:
                    self.close()

    @held
    def calloc(self, n: int, size: int) -> int:
        """Allocate ``n * size`` zeroed bytes (overflow of the product raises InvalidSizeError)."""
        n, size = check_size(n, "n"), check_size(size)
        total = n * size
        if total > K.MAX_REQUEST:
            raise InvalidSizeError(f"calloc({n}, {size}): {total} bytes overflows the request limit")
        return self._slow.calloc(total)

    @held
    def realloc(self, ptr: int, size: int) -> int:
        """Resize the block at ``ptr``: same block if the size still fits its class, else a new
        block with the old bytes copied.  ``realloc(0, n)`` = malloc; ``realloc(p, 0)`` frees
        and returns 0 (glibc's behaviour).  An exception leaves ``ptr`` live and takes no new
        block -- unless an event callback raised after the move: then ``ptr`` is freed and the
        exception's ``realloc_result`` is the new block."""
        size = check_size(size)
        ptr = check_pointer(ptr)
        new = self._slow.realloc(ptr, size) if ptr else self.kernel.malloc(size)
        if self._check_every_op:
            self._check()
        return new

    @open_call
    def usable_size(self, ptr: int) -> int:
        """Bytes usable at ``ptr`` (class stride minus header; the mapped size for large)."""
        return self._slow.usable_size(self._nonnull(ptr))

    @open_call
    def view(self, ptr: int) -> memoryview:
        """A writable memoryview of the live block's bytes (``usable_size(ptr)`` long).

        The view pins the mapping: if a policy releases the superslab while the view is alive,
        the unmap is deferred (the pages are still dropped).  Release views when done."""
        return self._slow.view(self._nonnull(ptr))

    @staticmethod
    def _nonnull(ptr: Any) -> int:
        p = check_pointer(ptr)
        if not p:
            raise InvalidPointerError("NULL pointer")
        return p

    @held
    def trim(self) -> None:
        """Flush the front caches back to their slabs (malloc_trim-like): lets slabs and
        superslabs that only front-cache blocks kept alive become empty and meet the policy."""
        self._slow.flush()

    @held
    def force_reclaim(self) -> int:
        """Make the kernel reclaim lazily freed pages now (MADV_PAGEOUT on cached superslabs
        and decommitted slabs), as memory pressure eventually would.  Shows what MADV_FREE
        really saves; live blocks are never in these ranges.  Returns the madvise calls made."""
        return self._slow.force_reclaim()

    def clock(self) -> Clock:
        """Operations applied, seconds since the heap opened, and virtual ns (ops x
        ``ns_per_op`` + time idle)."""
        return self._st.clock()

    @held
    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass with no operation (nothing sleeps): a background
        policy ticks at each wake-up of its thread, others see nothing.  InvalidSizeError if
        ``seconds`` is not a finite number >= 0."""
        self._slow.idle(self._slow.idle_ns_of(seconds))

    @held
    def tick(self) -> None:
        """Advance the policy clock by hand (the hot path does this every tick_interval ops)."""
        self._slow.maintain()

    # ------------------------------------------------------------------ batch API
    @open_call
    def replay(self, ops: np.ndarray, slots: np.ndarray) -> int:
        """Apply an operation stream (integer rows ``kind, slot, size``, shape ``(n, 3)``; a
        float or object array raises TraceError; see :mod:`simalloc.workloads`) with ``slots``
        (uint64 addresses, updated in place); returns the rows applied.  Each row is atomic and
        a batch stops at a row boundary: if anything raises (a policy, the OS, a corrupted
        heap, ``KeyboardInterrupt``), the exception's ``ops_applied`` counts the rows that took
        effect and the slots say exactly which blocks are live (``heap.check()`` passes)."""
        return self._slow.replay(ops, slots)

    @open_call
    def drain_slots(self, slots: np.ndarray) -> int:
        """Free every occupied slot in index order; returns how many were freed.  A slot is
        cleared when its block is freed, so after an exception the slots are still true."""
        return self._slow.drain_slots(slots)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unmap everything.  Further use raises HeapClosedError.  Idempotent.  Called while
        another call is inside the heap (a signal handler, another thread), it is deferred
        until that call returns."""
        if self._closed:
            return
        try:
            del self._gate[0]
        except IndexError:
            self._close_pending = True
            return
        try:
            self._sig.hold()
            self._close_pending = False
            self._closed = True
            self._slow.close()
        finally:
            try:
                self._sig.release()
            finally:
                self._gate.append(None)
        if self.config.os_stats:  # hakmem prints it once, at exit, after everything is unmapped
            print(reports.os_stats_line(self._st), file=sys.stderr)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Heap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; never raise from a finaliser
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        else:
            state = f"{self._st.n_active} active, {len(self._st.lru)} cached"
        return f"<simalloc.Heap kernel={self.kernel_name} policy={self.policy.describe()} {state}>"

    # ================================================================== observation
    @open_call
    def stats(self) -> dict[str, Any]:
        """Counters and gauges (see ``simalloc.reports.STAT_FIELDS`` for every key)."""
        return reports.stats(self._st)

    def os_stats_line(self) -> str:
        """hakmem's one-shot ``[SS_OS_STATS]`` line (plus simalloc's lean counters)."""
        return reports.os_stats_line(self._st)

    @open_call
    def residency(self) -> dict[str, int]:
        """Resident bytes of the heap's own mappings (pagemap), LazyFree (smaps), and the
        process's VmRSS/VmHWM (which include the interpreter)."""
        return reports.residency(self._st)

    @open_call
    def resident(self) -> dict[str, float]:
        """The resident-page model (cheap, exact; simalloc/pages.py): the heap's own resident
        and LazyFree bytes now, the exact peak and the ops- and seconds-weighted means since
        :meth:`reset_resident_stats` (or since the heap opened)."""
        return self._st.pages.figures()

    @held
    def reset_resident_stats(self) -> None:
        """Start a new measurement phase: peak = now, means from now (e.g. after a warm-up)."""
        self._st.pages.reset()

    @open_call
    def memory_report(self) -> dict[str, int]:
        """The mapped bytes split into parts that add up exactly to ``mapped_bytes``."""
        return reports.memory_report(self._st)

    def events(self, as_array: bool = False) -> list[dict[str, Any]] | np.ndarray:
        """The decision log kept by ``Heap(events=True)`` (:mod:`simalloc.events`): a list of
        dicts, or a numpy structured array; empty when off or sent to a sink."""
        return records_of(self._st.log, as_array)

    @open_call
    def occupancy(self) -> Occupancy:
        """Every mapped superslab and slab: state, fill, resident pages, scheduled purges."""
        return snapshot(self._st, self._slow.ctx)

    def show(self, color: bool = False) -> str:
        """The occupancy map as text, one character per slab, with its legend (occupancy.py)."""
        return render_map(self.occupancy(), color=color)

    @open_call
    def empty_report(self) -> dict[str, int]:
        """Why a superslab was (not) released (see ``simalloc.reports.empty_report``)."""
        return reports.empty_report(self._st)

    @open_call
    def check(self) -> None:
        """Walk every invariant (slab and superslab state machines, free lists, front caches,
        LRU, registry, accounting).  Raises HeapCorruptionError on the first violation."""
        self._check()

    def _check(self) -> None:
        try:
            check_state(self._st)
        except AssertionError as exc:
            raise HeapCorruptionError(f"check() failed: {exc}") from exc
