"""hakmem's per-class warm pool of superslabs, and where a class finds a slab inside a superslab.

hakmem (hakmem-design.md s3, "Refill on a miss"): when a class's current TLS slab is exhausted,
``unified_cache_refill`` takes a superslab from the class's **warm pool**
(``HAKMEM_WARM_POOL_SIZE``, the preset uses 16) before it asks the shared pool; when the pool is
empty it prefills ``WARM_POOL_PREFILL_BUDGET`` (2) extra superslabs.  simalloc models it so::

    current slab exhausted
      -> Stage W   warm pool of the class: pop superslabs (most recent first) until one has a
                   slab for the class (find_slab below); that superslab goes back on top.
                   A popped superslab with no room is dropped.
      -> shared pool (Stages 0.5 / 1 / 2 / 3, slowpath.py) picks the slab; its superslab is
         pushed on the pool, and -- the pool was empty, a miss -- ``warm_pool_prefill`` more:
           shared  existing ACTIVE superslabs with room for the class, lowest index first
                   (what hakmem's repeated superslab_refill through the shared pool reaches);
                   a prefill never maps memory                                     [default]
           fresh   new superslabs (Stage 3: the LRU cache, then mmap): the literal reading
                   of "prefills 2 extra SuperSlabs"

Decisions the design brief leaves open ([I], documented in docs/hakmem-model.md): the pool
holds superslab *indices* (a superslab may sit in several classes' pools); an entry stays while
the superslab is ACTIVE (a superslab that empties and goes to the LRU leaves every pool); the
pool is LIFO and drops its oldest entry when full.  ``warm_pool_size=0`` switches the stage off
and gives simalloc's refill without a warm pool exactly.

Inside one superslab a class takes (:func:`find_slab`), in slab order: with
``superslab_reuse=1`` the first EMPTY slab of any class (Stage 0.5's rule), else the first EMPTY
slab of its own class (Stage 1's); then its first partial slab; then the first UNUSED slab
(Stage 2's); then, last, the first EMPTY slab of another class (Stage 2's last resort).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import constants as K
from .errors import HeapExhaustedError, OSLayerError

if TYPE_CHECKING:
    from .state import HeapState
    from .superslab import Superslab

__all__ = ["HOW_EMPTY", "HOW_PARTIAL", "HOW_REUSE", "HOW_UNUSED", "WarmPools", "find_slab",
           "pop_with_room", "prefill", "superslabs_with_room"]

HOW_EMPTY = "empty"  # an EMPTY (or DECOMMITTED) slab of the class itself: on empty[cls]
HOW_REUSE = "reuse"  # an EMPTY slab of another class, reformatted (superslab_reuse=1)
HOW_PARTIAL = "partial"  # a partial slab of the class: on partial[cls]
HOW_UNUSED = "unused"  # an UNUSED slab


class WarmPools:
    """One bounded LIFO of superslab indices per size class (top = end of the list)."""

    __slots__ = ("size", "_pools")

    def __init__(self, nclasses: int, size: int) -> None:
        self.size = size
        self._pools: list[list[int]] = [[] for _ in range(nclasses)]

    def __bool__(self) -> bool:
        return self.size > 0

    def count(self, cls: int) -> int:
        return len(self._pools[cls])

    def total(self) -> int:
        """Entries over every class (a superslab in two pools counts twice)."""
        return sum(len(p) for p in self._pools)

    def entries(self, cls: int) -> list[int]:
        """The pool of ``cls``, bottom (oldest) first."""
        return list(self._pools[cls])

    def top(self, cls: int) -> int:
        """The most recent entry of ``cls``'s pool (-1 if empty), left in place."""
        pool = self._pools[cls]
        return pool[-1] if pool else -1

    def pop(self, cls: int) -> int:
        """The most recent entry of ``cls``'s pool, removed (-1 if empty)."""
        pool = self._pools[cls]
        return pool.pop() if pool else -1

    def push(self, cls: int, idx: int) -> None:
        """Put ``idx`` on top of ``cls``'s pool (moving it if present); drop the oldest entry
        when the pool is over its size."""
        pool = self._pools[cls]
        if idx in pool:
            pool.remove(idx)
        pool.append(idx)
        if len(pool) > self.size:
            del pool[0]

    def discard_superslab(self, idx: int) -> None:
        """Forget superslab ``idx`` in every pool (it emptied and left ACTIVE)."""
        for pool in self._pools:
            if idx in pool:
                pool.remove(idx)

    def check(self, st: HeapState) -> None:
        for cls, pool in enumerate(self._pools):
            assert len(pool) <= self.size, f"warm pool C{cls} over its size"
            assert len(set(pool)) == len(pool), f"warm pool C{cls}: duplicate entry"
            for idx in pool:
                ss = st.superslabs[idx] if 0 <= idx < len(st.superslabs) else None
                assert ss is not None and ss.state == K.SS_ACTIVE, \
                    f"warm pool C{cls}: superslab {idx} is not ACTIVE"


def find_slab(st: HeapState, ss: Superslab, cls: int) -> tuple[int, str] | None:
    """The slab class ``cls`` would take in superslab ``ss``, and how (``HOW_*``), or None if
    ``ss`` has no room for it (see the module docstring for the order)."""
    reuse = st.config.superslab_reuse
    states = ss.slab_states(st.nslabs)  # one strided read; then list methods, C speed
    first_other = -1
    if K.SLAB_EMPTY in states or K.SLAB_DECOMMITTED in states:
        for s, state in enumerate(states):
            if state == K.SLAB_EMPTY or state == K.SLAB_DECOMMITTED:
                if ss.slab_class(s) == cls:  # own class (Stage 1's rule)
                    return s, HOW_EMPTY
                if reuse:  # any class, Stage 0.5's rule
                    return s, HOW_REUSE
                if first_other < 0:
                    first_other = s
    partial = st.partial[cls]
    if partial:
        idx = ss.idx
        for s, state in enumerate(states):
            if state == K.SLAB_ACTIVE and (idx, s) in partial:
                return s, HOW_PARTIAL
    if K.SLAB_UNUSED in states:
        return states.index(K.SLAB_UNUSED), HOW_UNUSED
    if first_other >= 0:  # Stage 2's last resort: another class's EMPTY slab, reformatted
        return first_other, HOW_REUSE
    return None


def superslabs_with_room(st: HeapState, cls: int) -> list[int]:
    """ACTIVE superslabs in which ``cls`` finds a slab (:func:`find_slab` is not None), lowest
    index first; read from the slab lists, not by walking every superslab."""
    out = set(st.has_unused)
    for d in (*st.empty, st.partial[cls]):
        out.update(idx for idx, _s in d)
    return sorted(out)


def pop_with_room(st: HeapState, cls: int) -> tuple[int, int, str] | None:
    """Stage W: pop ``cls``'s warm pool until a superslab has a slab for it; that superslab
    goes back on top, the ones without room are dropped.  Returns (superslab, slab, how)."""
    warm = st.warm
    while True:
        idx = warm.top(cls)
        if idx < 0:
            return None
        found = find_slab(st, st.superslab(idx), cls)
        if found is not None:  # it stays on top
            return idx, found[0], found[1]
        warm.pop(cls)


def prefill(st: HeapState, cls: int, idx: int, acquire: Callable[[], int]) -> int:
    """A warm-pool miss was served from superslab ``idx``: park it, then up to
    ``warm_pool_prefill`` more (``shared``: existing superslabs with room, lowest index first;
    ``fresh``: ``acquire()`` = Stage 3, stopping quietly if memory runs out -- the refill itself
    is already served).  hakmem's prefill loop parks the superslab in use first and refills
    from the next, so the prefilled ones end on top.  Returns how many were added."""
    n = st.config.warm_pool_prefill
    extra: list[int] = []
    if st.config.warm_pool_prefill_source == "fresh":
        for _ in range(n):
            try:
                extra.append(acquire())
            except (HeapExhaustedError, OSLayerError):
                break
    else:
        extra = [i for i in superslabs_with_room(st, cls) if i != idx][:n]
    st.warm.push(cls, idx)
    for i in reversed(extra):
        st.warm.push(cls, i)
    return len(extra)
