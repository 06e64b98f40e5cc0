"""Diagnosis: what is wrong with a pointer or a block the hot path rejected.

The kernel checks every value it reads from heap memory and, when one fails, calls the slow
path, which lands here to say *what* is wrong -- in words, as the matching documented error
(``simalloc.errors``)::

    free(p) rejected --> locate_live(p) --> InvalidPointerError   not a block start, metadata,
                                                                 never handed out, large/Mid
                                            DoubleFreeError       already free / slab empty
                                            HeapCorruptionError   magic, meta record or header
                                                                 byte overwritten
    free-list / front-cache block fails --> corrupt_block --> HeapCorruptionError (use after free?)
    impossible slab record or counts    --> corrupt_meta  --> HeapCorruptionError

:func:`locate_live` is also the single validation of a live tiny block (``usable_size``,
``view``, ``realloc``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import constants as K
from .errors import DoubleFreeError, HeapCorruptionError, InvalidPointerError

if TYPE_CHECKING:
    from .state import HeapState
    from .superslab import Superslab

__all__ = ["corrupt_block", "corrupt_meta", "locate_live"]


def corrupt_block(st: HeapState, idx: int, off: int, where: str) -> None:
    """A block the hot path was about to use fails its checks: a free-list link outside its
    slab's carved blocks, off a block boundary or at a block not tagged free; or a free
    block whose header or (secure mode) junk fill was overwritten."""
    ss = st.superslabs[idx] if 0 <= idx < len(st.superslabs) else None
    got = ss.w8[off] if ss is not None and 0 <= off < ss.size else -1
    if where == "free list":
        raise HeapCorruptionError(
            f"free list of superslab {idx} slab {off >> K.SLAB_LG} names offset {off:#x} (header "
            f"{got:#x}), not a free block of that slab: a free-list link was overwritten (use after free?)")
    what = "header" if got & K.TAG_MASK != K.FREE_TAG else "free-block junk fill"
    raise HeapCorruptionError(
        f"block at superslab {idx} offset {off:#x} ({where}) has header {got:#x}: its {what} was "
        "overwritten after it was freed (use after free?)")


def corrupt_meta(st: HeapState, idx: int, slab: int, where: str) -> None:
    """A slab meta record or a superslab header count read by the hot path is impossible."""
    ss = st.superslabs[idx] if 0 <= idx < len(st.superslabs) else None
    if ss is None:
        raise HeapCorruptionError(f"superslab {idx} ({where}): not mapped")
    names = ("freelist", "used", "carved", "capacity", "class", "state", "stride", "data")
    rec = ", ".join(f"{n}={ss.meta(slab, f):#x}" for f, n in enumerate(names))
    raise HeapCorruptionError(
        f"superslab {idx} slab {slab} ({where}): impossible meta record [{rec}] or header counts "
        f"[active_slabs={ss.h(K.H_ACTIVE_SLABS)}, total_active={ss.h(K.H_TOTAL_ACTIVE)}]: "
        "allocator metadata was overwritten")


def locate_live(st: HeapState, addr: int) -> tuple[Superslab, int, int, int]:
    """(superslab, slab, block offset, class) of the live block at ``addr``, or raise the
    error that says what is wrong with it.  The single diagnosis of bad pointers."""
    if type(addr) is not int:
        raise InvalidPointerError(f"pointer must be an int, not {type(addr).__name__}")
    if addr in st.large:
        raise InvalidPointerError(f"{addr:#x} is a large block")  # callers check large first
    if st.mid.owns(addr):
        st.mid.locate(addr)  # raises if it is not a live Mid block
        raise InvalidPointerError(f"{addr:#x} is a Mid block")  # callers check Mid first
    idx = st.kernel.lookup(addr) if 0 < addr < 1 << 64 else -1
    if idx < 0:
        if st.mid.was_freed(addr):
            raise DoubleFreeError(f"{addr:#x}: Mid block already freed (its region is gone)")
        st.large.diagnose(addr)
    ss = st.superslab(idx)
    off = (addr - ss.base) - K.BLOCK_HEADER
    if ss.state == K.SS_CACHED:
        raise DoubleFreeError(f"{addr:#x} points into an empty, cached superslab "
                              "(already freed, or a dangling pointer)")
    if ss.h(K.H_MAGIC) != K.SS_MAGIC:
        raise HeapCorruptionError(f"superslab {idx} at {ss.base:#x}: magic {ss.h(K.H_MAGIC):#x} "
                                  f"!= SSPL ({K.SS_MAGIC:#x}); header overwritten")
    if off < K.header_bytes(st.lg):
        raise InvalidPointerError(f"{addr:#x} points into superslab metadata")
    slab = off >> K.SLAB_LG
    state = ss.slab_state(slab)
    if state == K.SLAB_UNUSED:
        raise InvalidPointerError(f"{addr:#x} points into an unused slab (never allocated)")
    cls, stride, data = ss.meta(slab, K.M_CLASS), ss.meta(slab, K.M_STRIDE), ss.meta(slab, K.M_DATA)
    if (cls >= K.NUM_CLASSES or stride != K.CLASS_STRIDES[cls] or data != K.slab_data_start(st.lg, slab)
            or ss.meta(slab, K.M_CAPACITY) != K.slab_capacity(st.lg, slab, cls)
            or ss.meta(slab, K.M_CARVED) > ss.meta(slab, K.M_CAPACITY) or state > K.SLAB_DECOMMITTED):
        raise HeapCorruptionError(f"slab {idx}.{slab}: meta record says class {cls}, stride {stride}, "
                                  f"data start {data:#x}, state {state}, carved {ss.meta(slab, K.M_CARVED)} "
                                  f"of {ss.meta(slab, K.M_CAPACITY)}; the slab metadata was overwritten")
    rel = off - data
    if rel < 0 or rel % stride:
        raise InvalidPointerError(f"{addr:#x} is an interior pointer (C{cls} blocks are "
                                  f"{stride} bytes; block starts are 1 byte past a multiple)")
    if rel // stride >= ss.meta(slab, K.M_CARVED) or rel // stride >= ss.meta(slab, K.M_CAPACITY):
        if state in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
            raise DoubleFreeError(f"{addr:#x}: block already freed (its slab is empty)")
        if ss.w8[off] == K.ALLOC_TAG | cls:
            raise HeapCorruptionError(f"{addr:#x}: an allocated block beyond slab {idx}.{slab}'s carved "
                                      f"count {ss.meta(slab, K.M_CARVED)}; the slab metadata was overwritten")
        raise InvalidPointerError(f"{addr:#x} points at a block never handed out")
    tag = ss.w8[off]
    if tag == K.ALLOC_TAG | cls and state == K.SLAB_ACTIVE:
        return ss, slab, off, cls
    if tag == K.FREE_TAG | cls or (state in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED) and tag != K.ALLOC_TAG | cls):
        raise DoubleFreeError(f"{addr:#x}: block already freed (double free)")
    if tag == K.ALLOC_TAG | cls:
        raise HeapCorruptionError(f"{addr:#x}: an allocated block in slab {idx}.{slab}, whose record says "
                                  f"state {state}: the slab metadata was overwritten")
    raise HeapCorruptionError(f"{addr:#x}: block header {tag:#x} is neither allocated "
                              f"({K.ALLOC_TAG | cls:#x}) nor free ({K.FREE_TAG | cls:#x}); "
                              "the header byte was overwritten")
