"""Large blocks: requests above the tiny classes, each in its own mapping.

A large block is one page-rounded private anonymous mapping with a 64-byte header in front of
the user pointer (magic ``'LARG'`` and the requested size)::

    mapping (page multiple)
    +----------------------+------------------------------------------+-------+
    | header (64 B)        | user bytes (size)                        | slack |
    | 'LARG' .. size (u64) |                                          |       |
    +----------------------+------------------------------------------+-------+
    ^ m.addr               ^ user pointer = m.addr + 64

Freed large blocks are unmapped at once; their addresses are remembered (the last 4096) so a
second free is reported as a double free rather than a foreign pointer.
"""

from __future__ import annotations

from collections import OrderedDict

from . import constants as K
from .errors import DoubleFreeError, HeapCorruptionError, InvalidPointerError
from .oslayer import Mapping, OSLayer
from .pages import PageModel

__all__ = ["LargeBlocks"]

_FREED_MEMORY = 4096


class LargeBlocks:
    """The heap's large blocks: user address -> (mapping, requested size)."""

    def __init__(self, os: OSLayer, pages: PageModel) -> None:
        self.os = os
        self.pages = pages  # the resident-page model: the pages this module writes or exposes
        self.blocks: dict[int, tuple[Mapping, int]] = {}
        self._freed: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, addr: object) -> bool:
        return addr in self.blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def live_bytes(self) -> int:
        return sum(size for _m, size in self.blocks.values())

    def spans(self) -> list[tuple[int, int]]:
        """(address, length) of every large mapping's window."""
        return [(m.addr, m.size) for m, _s in self.blocks.values()]

    def malloc(self, size: int) -> int:
        """Map a block for ``size`` user bytes; returns the user address."""
        n = (size + K.LARGE_HEADER + K.PAGE_SIZE - 1) & ~(K.PAGE_SIZE - 1)
        m = self.os.reserve(n, kind="large")
        assert m.view is not None
        m.view[0:4] = K.LARGE_MAGIC.to_bytes(4, "little")
        m.view[8:16] = size.to_bytes(8, "little")
        self.pages.touch(m.addr, 16)
        addr = m.addr + K.LARGE_HEADER
        self.blocks[addr] = (m, size)
        self._freed.pop(addr, None)
        return addr

    def free(self, addr: int) -> None:
        """Unmap the block at ``addr`` (which must be in the table)."""
        m, _size = self.blocks[addr]
        assert m.view is not None
        if int.from_bytes(m.view[0:4], "little") != K.LARGE_MAGIC:
            raise HeapCorruptionError(f"large block {addr:#x}: header magic overwritten")
        del self.blocks[addr]
        self._freed[addr] = None
        if len(self._freed) > _FREED_MEMORY:
            self._freed.popitem(last=False)
        self.os.release(m)

    def usable_size(self, addr: int) -> int:
        m, _size = self.blocks[addr]
        return m.size - K.LARGE_HEADER

    def resize_in_place(self, addr: int, size: int) -> None:
        m, _old = self.blocks[addr]
        self.blocks[addr] = (m, size)

    def view(self, addr: int) -> memoryview:
        m, _size = self.blocks[addr]
        assert m.view is not None
        self.pages.touch(addr, m.size - K.LARGE_HEADER)  # exposed: counted as written
        return m.view[K.LARGE_HEADER:]

    def write_byte(self, addr: int, value: int) -> None:
        entry = self.blocks.get(addr)
        if entry is None:
            raise InvalidPointerError(f"write to {addr:#x}: not in this heap")
        assert entry[0].view is not None
        entry[0].view[K.LARGE_HEADER] = value & 0xFF
        self.pages.touch(addr, 1)

    def diagnose(self, addr: int) -> None:
        """Raise the error that says why ``addr`` (outside every superslab) is not a block."""
        if addr in self._freed:
            raise DoubleFreeError(f"{addr:#x}: large block already freed")
        for m, _s in self.blocks.values():
            if m.addr <= addr < m.addr + m.size:
                raise InvalidPointerError(f"{addr:#x} is inside a large block, not its start")
        raise InvalidPointerError(f"{addr:#x} is not a pointer of this heap (foreign pointer)")

    def release_all(self) -> None:
        for m, _size in self.blocks.values():
            self.os.release(m)
        self.blocks.clear()
