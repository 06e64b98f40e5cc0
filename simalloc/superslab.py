"""One superslab: a size-aligned private anonymous mapping carved into 64 KiB slabs.

The superslab header and slab records live in its own first page (layout: :mod:`simalloc.constants`),
so the hot path (both kernels) and this slow-path object read and write the same bytes.

Slab state machine (``M_STATE`` in the slab's meta record; the list holding it in brackets)::

      claim (Stage 2/3, W)         used -> 0 (not current)          claim (Stage 1/0.5/2, W)
  UNUSED --------------> ACTIVE ----------------------> EMPTY -----------------------> ACTIVE
  [has_unused]          [current | partial | full]     [empty[cls]]      |
                                ^  used -> 3/4 cap: partial[cls]        | policy decommit_slab
                                |                                        v
                                +----------- claim (reformat) ------ DECOMMITTED [empty[cls]]

* UNUSED: never claimed since the superslab was (re)activated; its pages were never touched.
* ACTIVE: tagged with a class; ``used`` blocks are out (user or front cache).  It is the
  class's current slab; or, once exhausted and unbound, full until a quarter of it is free
  again, when it joins ``partial[cls]`` (one slow-path event per slab per cycle).
* EMPTY: ``used == 0``, not current; free list intact, reusable at once for its class.
* DECOMMITTED: EMPTY whose pages a policy gave back; the free list is gone (pages may read
  zero), so claiming it reformats it.

Superslab state machine::

   fresh mmap / LRU pop             all slabs empty (release guard)      evict (count/bytes/TTL)
  ---------------------> ACTIVE ----------------------------------> CACHED ------------------> unmapped
                           ^     policy: keep (warm) or decommit (cold)  |
                           +------------------ LRU pop (reformat) -------+
                                  policy: unmap --------------------------------------------> unmapped

Release guard (hakmem): a superslab leaves ACTIVE only when ``total_active_blocks == 0``, i.e.
every slab's ``used`` is 0 (front-cache blocks count as used).
"""

from __future__ import annotations

import numpy as np

from .constants import (
    ALLOC_TAG,
    CLASS_STRIDES,
    FREE_TAG,
    H_ACTIVE_SLABS,
    H_GENERATION,
    H_INDEX,
    H_LG,
    H_MAGIC,
    H_NSLABS,
    H_STATE,
    H_TOTAL_ACTIVE,
    M_CAPACITY,
    M_CARVED,
    M_CLASS,
    M_DATA,
    M_FREELIST,
    M_STATE,
    M_STRIDE,
    M_USED,
    NEXT_LINK_OFFSET,
    NUM_CLASSES,
    SECURE_LINK_SHIFT,
    SLAB_ACTIVE,
    SLAB_DECOMMITTED,
    SLAB_EMPTY,
    SLAB_META_WORDS,
    SLAB_SIZE,
    SLAB_UNUSED,
    SS_ACTIVE,
    SS_CACHED,
    SS_MAGIC,
    SS_META_OFFSET,
    header_bytes,
    nslabs,
    slab_capacity,
    slab_data_start,
)
from .errors import HeapCorruptionError
from .oslayer import Mapping

__all__ = ["Superslab"]

_META0 = SS_META_OFFSET // 4


class Superslab:
    """Slow-path handle of one superslab (the hot path works on the same bytes)."""

    def __init__(self, idx: int, mapping: Mapping, lg: int) -> None:
        self.idx = idx
        self.mapping = mapping
        self.lg = lg
        self.nslabs = nslabs(lg)
        self._state = SS_CACHED  # owned here only (the header may be decommitted while cached)
        self._decommitted = False  # whole-superslab decommit (cold in the LRU)
        self.generation = 0
        assert mapping.view is not None
        self.w32 = mapping.view.cast("I")
        self.w8 = mapping.view

    @property
    def state(self) -> int:
        """SS_ACTIVE or SS_CACHED (see the state machine above)."""
        return self._state

    @property
    def decommitted(self) -> bool:
        """True while cached with its pages given back (cold)."""
        return self._decommitted

    @property
    def base(self) -> int:
        return self.mapping.addr

    @property
    def size(self) -> int:
        return self.mapping.size

    # ------------------------------------------------------------------ header access
    def h(self, word: int) -> int:
        return self.w32[word]

    def meta(self, slab: int, field: int) -> int:
        return self.w32[_META0 + slab * SLAB_META_WORDS + field]

    def set_meta(self, slab: int, field: int, value: int) -> None:
        self.w32[_META0 + slab * SLAB_META_WORDS + field] = value

    def slab_state(self, slab: int) -> int:
        return self.meta(slab, M_STATE)

    def slab_states(self, n: int) -> list[int]:
        """The states of slabs ``0..n-1`` in one strided read (the refill stages' scan)."""
        return self.slab_column(M_STATE, n)

    def slab_column(self, field: int, n: int) -> list[int]:
        """Field ``field`` (``M_*``) of slabs ``0..n-1``, in one strided read."""
        return self.w32[_META0 + field:_META0 + n * SLAB_META_WORDS:SLAB_META_WORDS].tolist()

    def slab_class(self, slab: int) -> int:
        """The slab's class (HeapCorruptionError if its record holds no valid class)."""
        cls = self.meta(slab, M_CLASS)
        if cls >= NUM_CLASSES:
            raise HeapCorruptionError(f"superslab {self.idx} slab {slab}: meta record says class {cls} "
                                      f"(there are {NUM_CLASSES}); the slab metadata was overwritten")
        return cls

    def check_record(self, slab: int, where: str) -> None:
        """HeapCorruptionError unless slab ``slab``'s record has the exact geometry of its class
        (stride, data start, capacity) and ``used <= carved <= capacity``: the slow path's check
        of a slab it is about to act on (the hot path checks what it reads itself)."""
        b = _META0 + slab * SLAB_META_WORDS
        _fl, used, carved, cap, cls, _st, stride, data = self.w32[b:b + SLAB_META_WORDS].tolist()
        if cls >= NUM_CLASSES:
            self.slab_class(slab)  # raises, saying which class it read
        if (stride != CLASS_STRIDES[cls] or data != slab_data_start(self.lg, slab)
                or cap != slab_capacity(self.lg, slab, cls) or not used <= carved <= cap):
            rec = [self.meta(slab, f) for f in range(SLAB_META_WORDS)]
            raise HeapCorruptionError(f"superslab {self.idx} slab {slab} ({where}): impossible meta record {rec} "
                                      "(freelist, used, carved, capacity, class, state, stride, data): "
                                      "the slab metadata was overwritten")

    def slab_data_len(self, slab: int) -> int:
        return (slab + 1) * SLAB_SIZE - slab_data_start(self.lg, slab)

    # ------------------------------------------------------------------ transitions
    def activate(self) -> None:
        """CACHED (fresh mmap or LRU pop) -> ACTIVE: reformat the header, every slab UNUSED."""
        assert self._state == SS_CACHED, f"superslab {self.idx}: activate from {self._state}"
        self._state = SS_ACTIVE
        self._decommitted = False
        self.format()

    def to_cached(self, decommitted: bool) -> None:
        """ACTIVE (all slabs empty) -> CACHED, warm or cold (``decommitted``); or CACHED warm ->
        CACHED cold (a policy purged it while cached)."""
        assert self._state == SS_ACTIVE or (self._state == SS_CACHED and decommitted), \
            f"superslab {self.idx}: cache from {self._state}"
        self._state = SS_CACHED
        self._decommitted = decommitted

    def format(self) -> None:
        """(Re)write the header: magic, geometry, every slab UNUSED (prewarm and activation)."""
        w = self.w32
        self.generation += 1
        w[H_MAGIC] = SS_MAGIC
        w[H_LG] = self.lg
        w[H_INDEX] = self.idx
        w[H_NSLABS] = self.nslabs
        w[H_ACTIVE_SLABS] = 0
        w[H_TOTAL_ACTIVE] = 0
        w[H_STATE] = 0  # reserved: the state lives in the Superslab object only
        w[H_GENERATION] = self.generation & 0xFFFFFFFF
        n = self.nslabs  # the slab records as one (n, 8) numpy view: three vector stores
        meta = np.asarray(w)[_META0:_META0 + n * SLAB_META_WORDS].reshape(n, SLAB_META_WORDS)
        meta[:] = 0
        meta[:, M_STATE] = SLAB_UNUSED
        meta[:, M_DATA] = [slab_data_start(self.lg, s) for s in range(n)]
        del meta  # (no buffer export may outlive the call: the view is released at unmap)

    def claim(self, slab: int, cls: int) -> None:
        """Tag ``slab`` with ``cls`` and make it an empty ACTIVE slab (lazy carving from 0)."""
        if self.meta(slab, M_USED):
            raise HeapCorruptionError(f"superslab {self.idx} slab {slab}: listed empty but its record counts "
                                      f"{self.meta(slab, M_USED)} blocks in use; the slab metadata was overwritten")
        w, b = self.w32, _META0 + slab * SLAB_META_WORDS
        w[b + M_CLASS] = cls
        w[b + M_STRIDE] = CLASS_STRIDES[cls]
        w[b + M_CAPACITY] = slab_capacity(self.lg, slab, cls)
        w[b + M_CARVED] = w[b + M_FREELIST] = 0
        w[b + M_STATE] = SLAB_ACTIVE

    def first_unused(self) -> int:
        """The lowest UNUSED slab, or -1."""
        states = self.slab_states(self.nslabs)
        return states.index(SLAB_UNUSED) if SLAB_UNUSED in states else -1

    def release_views(self) -> None:
        self.w32.release()

    # ------------------------------------------------------------------ invariants
    def check(self, fc_counts: dict[int, int], live_check: bool = True, link_key: int = 0,
              link_mix: int = 0) -> tuple[int, int]:
        """Walk every invariant of an ACTIVE superslab; returns (live blocks, used blocks).

        ``fc_counts`` maps slab index -> blocks of that slab held in front caches; ``link_key``
        and ``link_mix`` decode free-list links (the kernel's, secure mode)."""
        w, w8 = self.w32, self.w8
        assert w[H_MAGIC] == SS_MAGIC, f"superslab {self.idx}: bad magic {w[H_MAGIC]:#x}"
        assert w[H_INDEX] == self.idx and w[H_LG] == self.lg and w[H_NSLABS] == self.nslabs
        total = active = live = 0
        for s in range(self.nslabs):
            st, used = self.meta(s, M_STATE), self.meta(s, M_USED)
            carved, cap = self.meta(s, M_CARVED), self.meta(s, M_CAPACITY)
            assert self.meta(s, M_DATA) == slab_data_start(self.lg, s)
            if st == SLAB_UNUSED:
                assert used == 0 and carved == 0, f"slab {self.idx}.{s}: UNUSED with blocks"
                continue
            cls, stride = self.slab_class(s), self.meta(s, M_STRIDE)
            assert stride == CLASS_STRIDES[cls] and cap == slab_capacity(self.lg, s, cls)
            assert 0 <= used <= carved <= cap, f"slab {self.idx}.{s}: used/carved/cap {used}/{carved}/{cap}"
            if st in (SLAB_EMPTY, SLAB_DECOMMITTED):
                assert used == 0, f"slab {self.idx}.{s}: {st} with used={used}"
            if st == SLAB_DECOMMITTED:
                assert carved == 0 and self.meta(s, M_FREELIST) == 0
            total += used
            active += used > 0
            # free list: unique, in this slab, on block boundaries, tagged free
            data = self.meta(s, M_DATA)
            seen: set[int] = set()
            off = self.meta(s, M_FREELIST)
            while off:
                assert off not in seen, f"slab {self.idx}.{s}: free-list cycle at {off}"
                seen.add(off)
                rel = off - data
                assert 0 <= rel and rel % stride == 0 and rel // stride < carved, \
                    f"slab {self.idx}.{s}: free-list link {off} outside the carved blocks"
                assert w8[off] == FREE_TAG | cls, f"slab {self.idx}.{s}: free block {off} header {w8[off]:#x}"
                off = w[(off + NEXT_LINK_OFFSET) >> 2] ^ link_key ^ ((off << SECURE_LINK_SHIFT) & link_mix)
            assert len(seen) == carved - used, \
                f"slab {self.idx}.{s}: free list has {len(seen)} blocks, expected {carved - used}"
            if live_check and carved:
                tags = bytes(w8[data:data + carved * stride:stride])
                n_alloc = tags.count(ALLOC_TAG | cls)
                n_free = tags.count(FREE_TAG | cls)
                assert n_alloc + n_free == carved, f"slab {self.idx}.{s}: corrupted block header"
                assert n_alloc == used - fc_counts.get(s, 0), \
                    f"slab {self.idx}.{s}: {n_alloc} allocated headers, used {used} - cached {fc_counts.get(s, 0)}"
                live += n_alloc
        assert total == w[H_TOTAL_ACTIVE], f"superslab {self.idx}: total_active {w[H_TOTAL_ACTIVE]} != {total}"
        assert active == w[H_ACTIVE_SLABS], f"superslab {self.idx}: active_slabs {w[H_ACTIVE_SLABS]} != {active}"
        assert header_bytes(self.lg) <= SLAB_SIZE
        return live, total
