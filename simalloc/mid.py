"""The Pool/Mid tier: 8, 16 and 32 KiB classes above the tiny classes, in shared regions.

hakmem (hakmem-design.md s2): tiny covers up to 1023 B (``HAKMEM_TINY_MAX_CLASS=7``); above it
come Pool/Mid (8/16/32 KB classes) and Large (mmap).  Without this tier every request above the
tiny limit costs one mmap and one munmap.  simalloc's Mid tier is a documented approximation
(docs/hakmem-model.md): hakmem's Pool internals (its headers, its page size, its own caches) are
not published, so the tier is built like a superslab, but simpler::

    Mid region (2 MiB, aligned to its own size; option mid_tier)
    +-------------+--------------------+--------------------+-----+--------------------+
    | page 0      | page 1 (64 KiB)    | page 2             | ... | page 31            |
    | 'MIDR' idx  | class 8K: 8 blocks | class 32K: 2 blocks|     | UNUSED             |
    +-------------+--------------------+--------------------+-----+--------------------+

* A request of ``n`` bytes (tiny limit < n <= 32 KiB) takes the smallest class that holds it.
  Blocks are headerless: the user pointer is the block start, 8 KiB..32 KiB aligned inside the
  region, and the class is read from the region's page table.
* A page is UNUSED until a class claims it; its blocks are carved lazily (bump ``carved``) and
  freed blocks are reused LIFO.  A page whose last block is freed returns to UNUSED (any class
  may claim it again).  Pages with room for their class are taken lowest (region, page) first.
* The bookkeeping (page class, used / carved counts, free stacks, one allocation bit per block)
  lives in Python, not in the mapping; only the header page is written by the allocator, so a
  region's residency is its header page plus the blocks the user touched.
* A region whose pages are all UNUSED is kept if no other empty region is kept (obmalloc's "keep
  one free arena"), otherwise unmapped.  Release policies (FAST / LEAN) do not act on Mid
  regions: hakmem's Memory-Lean boxes act on superslabs only.
* Bad pointers raise the errors tiny blocks raise: an interior pointer or one into the header
  page, an UNUSED page or a block never handed out -> InvalidPointerError; a second free ->
  DoubleFreeError.

Mid regions are never registered in the superslab registry, so the hot path sends their
pointers to the slow path (``free_slow``), which asks :meth:`MidTier.owns` first.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import constants as K
from .errors import DoubleFreeError, InvalidPointerError
from .oslayer import Mapping, OSLayer
from .slabset import SlabSet

if TYPE_CHECKING:
    from .pages import PageModel

__all__ = ["MidRegion", "MidTier", "mid_class"]

_FREED_MEMORY = 4096  # freed Mid addresses remembered, to call a second free a double free
_REGION_MASK = ~(K.MID_REGION_SIZE - 1)
_FIRST_PAGE = K.MID_HEADER_PAGES


def mid_class(size: int) -> int:
    """Index into ``MID_CLASSES`` of the smallest class holding ``size`` bytes (-1 if none)."""
    for i, c in enumerate(K.MID_CLASSES):
        if size <= c:
            return i
    return -1


def _capacity(cls: int) -> int:
    return K.MID_PAGE_SIZE // K.MID_CLASSES[cls]


@dataclass(eq=False)
class MidRegion:
    """One Mid region: its mapping and its page table (see the module docstring)."""

    idx: int
    mapping: Mapping
    page_cls: list[int] = field(default_factory=lambda: [-1] * K.MID_PAGES)
    used: list[int] = field(default_factory=lambda: [0] * K.MID_PAGES)
    carved: list[int] = field(default_factory=lambda: [0] * K.MID_PAGES)
    free: list[list[int]] = field(default_factory=lambda: [[] for _ in range(K.MID_PAGES)])
    bits: bytearray = field(default_factory=lambda: bytearray(K.MID_PAGES))
    n_unused: int = K.MID_PAGES - _FIRST_PAGE

    @property
    def base(self) -> int:
        return self.mapping.addr

    def empty(self) -> bool:
        return self.n_unused == K.MID_PAGES - _FIRST_PAGE

    def first_unused(self) -> int:
        for p in range(_FIRST_PAGE, K.MID_PAGES):
            if self.page_cls[p] < 0:
                return p
        return -1


class MidTier:
    """The heap's Mid regions and their per-class page lists."""

    def __init__(self, os: OSLayer, enabled: bool) -> None:
        self.os = os
        self.enabled = enabled
        self.regions: dict[int, MidRegion] = {}  # base -> region
        self._by_idx: dict[int, MidRegion] = {}
        self._free_idx: list[int] = []  # reusable region indices (a heap)
        self._next_idx = 0
        self.avail = [SlabSet() for _ in K.MID_CLASSES]  # (region, page) with room for the class
        self.has_unused: set[int] = set()  # regions with an UNUSED page
        self._freed: OrderedDict[int, None] = OrderedDict()
        self.allocs: int = 0  # blocks handed out, all time
        self.frees: int = 0
        self.regions_mapped: int = 0
        self.regions_unmapped: int = 0
        self.live: int = 0  # blocks held by the user
        self.live_bytes: int = 0  # their usable bytes (class sizes)
        self.pages: PageModel | None = None  # the heap's resident-page model, set by the heap

    # ------------------------------------------------------------------ queries
    def serves(self, size: int) -> bool:
        """Whether a request of ``size`` bytes (above the tiny limit) goes to this tier."""
        return self.enabled and size <= K.MID_MAX_SIZE

    def owns(self, addr: int) -> bool:
        """``addr`` lies in one of the tier's regions (any byte of it)."""
        return bool(self.regions) and (addr & _REGION_MASK) in self.regions

    def __len__(self) -> int:
        return len(self.regions)

    def spans(self) -> list[tuple[int, int]]:
        """(address, length) of every region's window."""
        return [(r.mapping.addr, r.mapping.size) for r in self.regions.values()]

    def locate(self, addr: int) -> tuple[MidRegion, int, int, int]:
        """(region, page, block, class) of the live Mid block at ``addr`` (which :meth:`owns`),
        or raise the error that says what is wrong with it."""
        r = self.regions[addr & _REGION_MASK]
        off = addr - r.base
        page = off // K.MID_PAGE_SIZE
        if page < _FIRST_PAGE:
            raise InvalidPointerError(f"{addr:#x} points into a Mid region's header page")
        cls = r.page_cls[page]
        if cls < 0:
            if addr in self._freed:
                raise DoubleFreeError(f"{addr:#x}: Mid block already freed (its page is unused)")
            raise InvalidPointerError(f"{addr:#x} points into an unused Mid page (never allocated)")
        stride = K.MID_CLASSES[cls]
        rel = off - page * K.MID_PAGE_SIZE
        if rel % stride:
            raise InvalidPointerError(f"{addr:#x} is an interior pointer (Mid blocks of this page "
                                      f"are {stride} bytes)")
        b = rel // stride
        if b >= r.carved[page]:
            raise InvalidPointerError(f"{addr:#x} points at a Mid block never handed out")
        if not r.bits[page] >> b & 1:
            raise DoubleFreeError(f"{addr:#x}: Mid block already freed (double free)")
        return r, page, b, cls

    def was_freed(self, addr: int) -> bool:
        """``addr`` is a recently freed Mid block (its region may be gone since)."""
        return addr in self._freed

    def usable_size(self, addr: int) -> int:
        return K.MID_CLASSES[self.locate(addr)[3]]

    def view(self, addr: int) -> memoryview:
        r, _page, _b, cls = self.locate(addr)
        assert r.mapping.view is not None
        off = addr - r.base
        if self.pages is not None:
            self.pages.touch(addr, K.MID_CLASSES[cls])  # exposed: counted as written
        return r.mapping.view[off:off + K.MID_CLASSES[cls]]

    def write_byte(self, addr: int, value: int) -> None:
        r = self.locate(addr)[0]
        assert r.mapping.view is not None
        r.mapping.view[addr - r.base] = value & 0xFF
        if self.pages is not None:
            self.pages.touch(addr, 1)

    # ------------------------------------------------------------------ malloc / free
    def malloc(self, size: int) -> int:
        """A block of the smallest Mid class holding ``size`` bytes; returns its address."""
        cls = mid_class(size)
        assert self.enabled and cls >= 0, f"malloc({size}) is not a Mid request"
        d = self.avail[cls]
        if d:
            ridx, page = d.pop_lowest()
            r = self._by_idx[ridx]
        else:
            r = self._by_idx[min(self.has_unused)] if self.has_unused else self._map_region()
            page = r.first_unused()
            r.page_cls[page] = cls
            r.n_unused -= 1
            if r.n_unused == 0:
                self.has_unused.discard(r.idx)
        fl = r.free[page]
        if fl:
            b = fl.pop()
        else:
            b = r.carved[page]
            r.carved[page] = b + 1
        r.used[page] += 1
        r.bits[page] |= 1 << b
        if r.used[page] < _capacity(cls):
            d.add((r.idx, page))
        self.allocs += 1
        self.live += 1
        self.live_bytes += K.MID_CLASSES[cls]
        addr = r.base + page * K.MID_PAGE_SIZE + b * K.MID_CLASSES[cls]
        self._freed.pop(addr, None)
        return addr

    def free(self, addr: int) -> None:
        """Free the live Mid block at ``addr`` (raises on a bad pointer, changing nothing)."""
        r, page, b, cls = self.locate(addr)
        r.bits[page] &= ~(1 << b) & 0xFF
        r.used[page] -= 1
        self.frees += 1
        self.live -= 1
        self.live_bytes -= K.MID_CLASSES[cls]
        self._freed[addr] = None
        if len(self._freed) > _FREED_MEMORY:
            self._freed.popitem(last=False)
        if r.used[page]:
            r.free[page].append(b)
            self.avail[cls].add((r.idx, page))
            return
        # the page's last block: the page returns to UNUSED (any class may claim it again)
        self.avail[cls].discard((r.idx, page))
        r.page_cls[page] = -1
        r.carved[page] = 0
        r.free[page] = []
        r.n_unused += 1
        self.has_unused.add(r.idx)
        if r.empty() and any(o.empty() for o in self.regions.values() if o is not r):
            self._unmap_region(r)  # keep one empty region, as obmalloc keeps one free arena

    # ------------------------------------------------------------------ regions
    def _map_region(self) -> MidRegion:
        m = self.os.reserve(K.MID_REGION_SIZE, align=K.MID_REGION_SIZE, kind="mid")
        idx = heapq.heappop(self._free_idx) if self._free_idx else self._next_idx
        self._next_idx = max(self._next_idx, idx + 1)
        assert m.view is not None
        m.view[0:4] = K.MID_MAGIC.to_bytes(4, "little")
        m.view[4:8] = idx.to_bytes(4, "little")
        if self.pages is not None:
            self.pages.touch(m.addr, 8)
        r = MidRegion(idx, m)
        self.regions[m.addr] = r
        self._by_idx[idx] = r
        self.has_unused.add(idx)
        self.regions_mapped += 1
        return r

    def _unmap_region(self, r: MidRegion) -> None:
        del self.regions[r.base]
        del self._by_idx[r.idx]
        self.has_unused.discard(r.idx)
        heapq.heappush(self._free_idx, r.idx)
        self.regions_unmapped += 1
        self.os.release(r.mapping)

    def release_all(self) -> None:
        """Unmap every region (the heap is closing)."""
        for r in list(self.regions.values()):
            self.os.release(r.mapping)
        self.regions.clear()
        self._by_idx.clear()

    # ------------------------------------------------------------------ reports and checks
    def parts(self) -> dict[str, int]:
        """The regions' mapped bytes split into parts (they add up to the regions' windows)."""
        out = dict.fromkeys(("mid_live", "mid_free", "mid_uncarved", "mid_unused_pages",
                             "mid_metadata"), 0)
        for r in self.regions.values():
            out["mid_metadata"] += _FIRST_PAGE * K.MID_PAGE_SIZE
            for p in range(_FIRST_PAGE, K.MID_PAGES):
                cls = r.page_cls[p]
                if cls < 0:
                    out["mid_unused_pages"] += K.MID_PAGE_SIZE
                    continue
                stride = K.MID_CLASSES[cls]
                out["mid_live"] += r.used[p] * stride
                out["mid_free"] += (r.carved[p] - r.used[p]) * stride
                out["mid_uncarved"] += (_capacity(cls) - r.carved[p]) * stride
        return out

    def check(self) -> None:
        """Every region's page table against its counts, lists and allocation bits."""
        live = live_bytes = 0
        for base, r in self.regions.items():
            assert r.base == base and self._by_idx[r.idx] is r, f"Mid region {r.idx}: table"
            assert r.mapping.view is not None, f"Mid region {r.idx}: mapping released"
            assert int.from_bytes(r.mapping.view[0:4], "little") == K.MID_MAGIC, \
                f"Mid region {r.idx}: header magic overwritten"
            unused = 0
            for p in range(_FIRST_PAGE, K.MID_PAGES):
                cls, used, carved = r.page_cls[p], r.used[p], r.carved[p]
                key = (r.idx, p)
                if cls < 0:
                    unused += 1
                    assert used == carved == r.bits[p] == 0 and not r.free[p], \
                        f"Mid page {key}: UNUSED with blocks"
                    assert all(key not in d for d in self.avail), f"Mid page {key}: UNUSED but listed"
                    continue
                cap = _capacity(cls)
                assert 0 < used <= carved <= cap, f"Mid page {key}: used/carved/cap {used}/{carved}/{cap}"
                assert bin(r.bits[p]).count("1") == used and r.bits[p] >> carved == 0, \
                    f"Mid page {key}: allocation bits {r.bits[p]:#x} vs used {used}"
                fl = r.free[p]
                assert len(fl) == carved - used == len(set(fl)), f"Mid page {key}: free stack"
                assert all(0 <= b < carved and not r.bits[p] >> b & 1 for b in fl), \
                    f"Mid page {key}: a free-stack block is allocated"
                assert (key in self.avail[cls]) == (used < cap), f"Mid page {key}: avail list"
                assert all(key not in d for c, d in enumerate(self.avail) if c != cls)
                live += used
                live_bytes += used * K.MID_CLASSES[cls]
            assert unused == r.n_unused, f"Mid region {r.idx}: {unused} unused pages, counted {r.n_unused}"
            assert (r.idx in self.has_unused) == (unused > 0), f"Mid region {r.idx}: has_unused"
        assert live == self.live and live_bytes == self.live_bytes, "Mid live count"
        assert self.has_unused <= set(self._by_idx), "Mid has_unused names an unmapped region"
        for d in self.avail:
            d.check()
            assert all(idx in self._by_idx for idx, _p in d), "Mid avail names an unmapped region"
        assert sum(r.empty() for r in self.regions.values()) <= 1, "more than one empty Mid region kept"
