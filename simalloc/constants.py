"""Geometry, size classes and on-mapping layout of simalloc's superslabs (the tunables, fenced).

Every number the allocator's layout depends on lives here, each with a line of rationale,
followed by import-time checks of the invariants between them (like obmalloc's ``#error``s).

Superslab layout (2 MiB, aligned to its own size; 1 MiB with ``HAKMEM_TINY_SS_FORCE_LG=20``)::

    base (= ptr & ~(SS_SIZE-1))
    |<------------------------------- SS_SIZE --------------------------------->|
    +-----------+----------------+------------------+-----+------------------+
    | SS header | slab 0 data    | slab 1           | ... | slab N-1         |
    | (in page 0)| (64K - header)| 64 KiB           |     | 64 KiB           |
    +-----------+----------------+------------------+-----+------------------+
    ^ u32 words: magic 'SSPL', lg, index, nslabs, active_slabs, total_active_blocks,
      state, generation ...; then SLAB_META_WORDS u32 per slab at SS_META_OFFSET.

Block layout inside a slab (stride = class size, header included)::

    block start                      user pointer = block start + 1
    |                                |
    +--------------------------------+--------------------------------------+
    | 1-byte header                  | user bytes (stride - 1)              |
    |  0xA0|class  allocated         |                                      |
    |  0xF0|class  free              | free blocks: next-link (u32 offset   |
    |                                | in the superslab) at block start + 4 |
    +--------------------------------+--------------------------------------+

Glossary: an *OS page* is the kernel's 4 KiB unit of residency; a *slab* is simalloc's 64 KiB
carving unit (one size class per slab); a *superslab* is one mapping of 32 (or 16) slabs.
"""

from __future__ import annotations

import mmap

import numpy as np

# ---- Main tunable settings --------------------------------------------------------------

#: OS page size: madvise works in whole pages, so decommit ranges are rounded *inwards* to it.
PAGE_SIZE: int = mmap.PAGESIZE
#: Default superslab size exponent (hakmem: 2 MiB superslabs, lg_size=21).
SS_LG_DEFAULT: int = 21
#: Superslab size exponents hakmem supports (HAKMEM_TINY_SS_FORCE_LG=20/21).
SS_LG_CHOICES: tuple[int, ...] = (20, 21)
#: Slab size: 64 KiB, the unit carved for one size class (32 slabs per 2 MiB superslab).
SLAB_LG: int = 16
SLAB_SIZE: int = 1 << SLAB_LG
#: Superslab header magic, 'SSPL', written into the mapping and checked on every lookup.
SS_MAGIC: int = 0x5353504C
#: Tiny class strides (block sizes including the 1-byte header): C0..C7.  C7 was raised to 2048.
CLASS_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 2048)
NUM_CLASSES: int = len(CLASS_STRIDES)
#: Bytes of block header in front of every tiny user pointer (hakmem's 1-byte header).
BLOCK_HEADER: int = 1
#: Header byte of an allocated block is ALLOC_TAG|class; of a free block FREE_TAG|class.
ALLOC_TAG: int = 0xA0
FREE_TAG: int = 0xF0
TAG_MASK: int = 0xF0
#: Offset inside a free block where its next-link (u32 superslab offset, 0 = end) lives.
NEXT_LINK_OFFSET: int = 4
#: Largest user size served by the tiny classes (C7 stride minus header).
TINY_MAX_SIZE: int = CLASS_STRIDES[-1] - BLOCK_HEADER
#: Large (direct-mapped) blocks: a 64-byte header in front of the user pointer.
LARGE_HEADER: int = 64
LARGE_MAGIC: int = 0x4C415247  # 'LARG'
#: Upper bound on one request (guards against absurd sizes before asking the kernel).
MAX_REQUEST: int = 1 << 40

# ---- Superslab header layout (u32 word indices) -----------------------------------------

H_MAGIC = 0  # SS_MAGIC
H_LG = 1  # lg of the superslab size
H_INDEX = 2  # slot index of this superslab in the heap's tables
H_NSLABS = 3  # slabs in this superslab
H_ACTIVE_SLABS = 4  # slabs with used > 0
H_TOTAL_ACTIVE = 5  # sum of `used` over the slabs (release guard: must be 0)
H_STATE = 6  # reserved (0): the superslab's state lives in its Superslab object
H_GENERATION = 7  # bumped every time the superslab is (re)activated
SS_META_OFFSET = 64  # byte offset of the slab meta array
SLAB_META_WORDS = 8  # u32 words per slab meta record (32 bytes)

# Slab meta record (u32 word offsets inside the record).
M_FREELIST = 0  # superslab offset of the first free block (0 = empty list)
M_USED = 1  # blocks handed out (to the user or to the front cache)
M_CARVED = 2  # blocks carved so far (lazy carving; never-carved memory is never touched)
M_CAPACITY = 3  # blocks that fit in the slab
M_CLASS = 4  # size class (0..7)
M_STATE = 5  # SLAB_* below
M_STRIDE = 6  # bytes per block
M_DATA = 7  # superslab offset of the slab's first block

# Slab states (the state machine is written down in simalloc/superslab.py).
SLAB_UNUSED = 0
SLAB_ACTIVE = 1
SLAB_EMPTY = 2
SLAB_DECOMMITTED = 3
SLAB_STATE_NAMES = ("UNUSED", "ACTIVE", "EMPTY", "DECOMMITTED")

# Superslab states.
SS_ACTIVE = 1
SS_CACHED = 2
SS_STATE_NAMES = {SS_ACTIVE: "ACTIVE", SS_CACHED: "CACHED"}

# Kernel counter slots (the kernel's shared int64 ``counters`` array; named here, once).
C_OPS = 0  # operations applied (malloc + free + realloc)
C_LIVE = 1  # live tiny blocks (handed to the user)
C_REFILLS = 2  # front-cache refills from the current slab
C_DRAINS = 3  # front-cache drains back to slabs
C_SLOW = 4  # calls into the slow path (refill_slow)
C_NEXT_TICK = 5  # operation count at which the kernel stops for the slow path (tick due, signals held)
# The resident-page model (simalloc/pages.py): the heap's own resident pages, kept exactly.
C_RES = 6  # resident pages of the heap's own mappings (superslabs, Mid regions, large blocks)
C_LAZY = 7  # of those, pages given back with MADV_FREE and not written since (LazyFree)
C_RES_PEAK = 8  # most resident pages since the last reset (exact: every change is seen)
C_RES_OPS_AREA = 9  # sum of resident pages x operations, since the last reset
C_RES_NS_AREA = 10  # sum of resident pages x nanoseconds, since the last reset
C_RES_LAST_OPS = 11  # operation count at the last change (or reset)
C_RES_LAST_NS = 12  # monotonic ns at the last change (or reset)
C_RES_SINCE_OPS = 13  # operation count at the last reset
C_RES_SINCE_NS = 14  # monotonic ns at the last reset
C_DEFERRED = 15  # 1 while signals are held (oslayer/signals.py); C_NEXT_TICK is 0 meanwhile
C_TICK_DUE = 16  # operation count at which the policy clock is due (C_NEXT_TICK when nothing is held)
# Refaults (simalloc/pages.py): pages written again after the heap gave them back, all time.
C_REFAULTS = 17  # writes to PAGE_RELEASED pages: each one a page fault the release caused
C_RESCUES = 18  # writes to PAGE_LAZY pages before the kernel reclaimed them (MADV_FREE: no fault)
# The slow-path event queue of a batch (HeapSlowPath.replay; the kernel's ``evq``).
C_BATCH = 19  # 0: every event is a callback; 1: queue slab-partial events; 2: also slab-empty ones
C_QUEUED = 20  # events in the queue, not yet delivered to the slow path
N_COUNTERS = 24  # slots reserved (unused ones stay 0)
KERNEL_COUNTER_NAMES = ("ops", "live", "refills", "drains", "slow_refills", "next_tick", "resident_pages",
                        "lazy_pages", "resident_peak_pages", "resident_ops_area", "resident_ns_area",
                        "resident_last_ops", "resident_last_ns", "resident_since_ops", "resident_since_ns",
                        "signals_deferred", "tick_due", "refaults", "rescues", "batch_queue_mode",
                        "events_queued")
#: Queued slow-path events (rows ``kind, superslab, slab, ops`` of the kernel's ``evq``): a slab
#: became partial; a slab of a superslab still in use became empty while unbound / while bound.
EV_PARTIAL = 0
EV_EMPTY = 1
EV_EMPTY_CURRENT = 2
EVQ_CAP = 256  # queue rows; a full queue is delivered at once

# Hardened ("secure") mode, modelled on mimalloc's secure mode and jemalloc's junk filling.
#: A free-list link is stored as ``next ^ key ^ (block_offset << SECURE_LINK_SHIFT)`` (u32; the
#: shift puts a superslab offset, < 2**21, in the high bits), so a stray write decodes to garbage.
SECURE_LINK_SHIFT = 11
#: Byte written over a freed block's user bytes and checked when the block is handed out again.
FREE_JUNK = 0x5A

# Page states of the resident-page model (one byte per OS page of each superslab).
PAGE_UNTOUCHED = 0  # never written since mapped or given back (not resident)
PAGE_RESIDENT = 1  # written: resident
PAGE_LAZY = 2  # resident, but given back with MADV_FREE and not written since (LazyFree)
PAGE_RELEASED = 3  # written once, then given back (DONTNEED; PAGEOUT of a lazy page): a write refaults
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

# Operation kinds of a replayable operation stream (rows of an int64 array: kind, slot, size).
OP_MALLOC = 0
OP_FREE = 1
OP_REALLOC = 2
#: Virtual time passes with no operation (``Heap.idle``): the size column holds nanoseconds
#: idle, the slot column is ignored (0).  Not an operation: the op counter does not move.
OP_IDLE = 3


def ss_size(lg: int) -> int:
    """Bytes in a superslab of size exponent ``lg``."""
    return 1 << lg


def nslabs(lg: int) -> int:
    """Slabs per superslab (32 for 2 MiB, 16 for 1 MiB)."""
    return (1 << lg) >> SLAB_LG


def header_bytes(lg: int) -> int:
    """Bytes at the start of slab 0 reserved for the superslab header (rounded to 2048 so the
    first block of every class is 8-aligned and slab 0 still holds C7 blocks)."""
    raw = SS_META_OFFSET + nslabs(lg) * SLAB_META_WORDS * 4
    return (raw + 2047) & ~2047


def slab_data_start(lg: int, slab: int) -> int:
    """Superslab offset of slab ``slab``'s first block."""
    return header_bytes(lg) if slab == 0 else slab * SLAB_SIZE


def slab_capacity(lg: int, slab: int, cls: int) -> int:
    """Blocks of class ``cls`` that fit in slab ``slab``."""
    return ((slab + 1) * SLAB_SIZE - slab_data_start(lg, slab)) // CLASS_STRIDES[cls]


def build_size_lut(max_class: int = NUM_CLASSES - 1) -> np.ndarray:
    """``lut[size] -> class`` for user sizes 0..stride(max_class)-1; sizes beyond go large.

    Size-to-class adds the 1-byte header first (hakmem's rule), so a 16-byte request
    (17 bytes with header) lands in C2 (stride 32)."""
    top = CLASS_STRIDES[max_class] - BLOCK_HEADER
    lut = np.empty(top + 1, dtype=np.int8)
    cls = 0
    for size in range(top + 1):
        while CLASS_STRIDES[cls] < size + BLOCK_HEADER:
            cls += 1
        lut[size] = cls
    return lut


# ---- Invariants (checked at import, like obmalloc's #error lines) -----------------------

assert PAGE_SIZE & (PAGE_SIZE - 1) == 0, "page size must be a power of two"
assert SLAB_SIZE % PAGE_SIZE == 0, "slabs must be whole OS pages (slab-granular decommit)"
for _lg in SS_LG_CHOICES:
    assert (1 << _lg) % SLAB_SIZE == 0, "superslab must be a whole number of slabs"
    assert nslabs(_lg) <= 32, "slab bitmaps are 32 bits"
    assert header_bytes(_lg) + CLASS_STRIDES[-1] <= SLAB_SIZE, "slab 0 must hold a C7 block"
assert all(s % 8 == 0 for s in CLASS_STRIDES), "strides keep blocks 8-aligned"
assert all(s & (s - 1) == 0 for s in CLASS_STRIDES), "strides are powers of two (the hot path masks)"
assert list(CLASS_STRIDES) == sorted(CLASS_STRIDES), "strides ascend"
assert CLASS_STRIDES[0] >= NEXT_LINK_OFFSET + 4, "a free block must hold its next-link"
assert SLAB_SIZE // CLASS_STRIDES[0] < 1 << 16, "block counts fit u16 (hakmem's meta)"
assert NUM_CLASSES <= 16 and ALLOC_TAG & 0x0F == 0 and FREE_TAG & 0x0F == 0
assert max(SS_LG_CHOICES) + SECURE_LINK_SHIFT <= 32, "an encoded link's offset term fits u32"

# ---- Pool/Mid tier (simalloc/mid.py; hakmem-design.md s2: 8/16/32 KB classes) ---------------
#: Mid block sizes (headerless: the user pointer is the block start; the class lives in the
#: region's page table).  A request above the tiny limit goes to the smallest that holds it.
MID_CLASSES: tuple[int, ...] = (8192, 16384, 32768)
#: Largest request the Mid tier serves; above it the large (direct mmap) path.
MID_MAX_SIZE: int = MID_CLASSES[-1]
#: A Mid region: one mapping aligned to its own size, carved into MID_PAGE pages.
MID_REGION_LG: int = 21
MID_REGION_SIZE: int = 1 << MID_REGION_LG
#: Mid page: the unit assigned to one Mid class (64 KiB, like a slab: 8, 4 or 2 blocks).
MID_PAGE_SIZE: int = SLAB_SIZE
MID_PAGES: int = MID_REGION_SIZE // MID_PAGE_SIZE
#: Page 0 of a region is its header page ('MIDR' magic, index); blocks live in pages 1..N-1.
MID_MAGIC: int = 0x5244494D  # 'MIDR' little-endian
MID_HEADER_PAGES: int = 1

#: Largest user size the tiny classes serve in hakmem (HAKMEM_TINY_MAX_CLASS=7): 1023 B.
HAKMEM_TINY_MAX_SIZE: int = 1023

assert all(c % 8 == 0 and MID_PAGE_SIZE % c == 0 for c in MID_CLASSES), "Mid blocks tile a page"
assert MID_CLASSES[0] > TINY_MAX_SIZE, "Mid classes start above every tiny class"
assert MID_REGION_SIZE % MID_PAGE_SIZE == 0 and MID_PAGES > MID_HEADER_PAGES
assert MID_PAGE_SIZE // MID_CLASSES[0] <= 8, "a page's allocation bits fit one byte"

# ---- Derived layout words of the hot path (simalloc/_kernel_py.py) ----------------------
#: u32 word index of slab 0's meta record in the superslab header.
SS_META_WORD: int = SS_META_OFFSET // 4
