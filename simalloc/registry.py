"""The address registry: superslab base address -> superslab index, in O(1).

Every pointer the hot path sees is resolved here first: ``base = ptr & ~(SS_SIZE - 1)``, then
the base is looked up in an open-addressing hash table (linear probing).  The table is two numpy
arrays owned by the kernel (``reg_key``: the base, 0 = empty, 1 = tombstone; ``reg_val``: the
index) so the compiled kernel probes it at C speed (``Kernel.lookup``, the one lookup); this
module is the one writer (insert, delete, rebuild)::

    slot = (base >> lg) & mask           mask + 1 = the power of two >= 2 * max_superslabs
    +------+------+------+------+------+
    | 0    | base | 1    | base | 0    |    reg_key   (0 empty, 1 tombstone)
    | -1   | 3    | -1   | 0    | -1   |    reg_val   (superslab index)
    +------+------+------+------+------+

Deletion leaves a tombstone so probe chains stay intact; when tombstones pass a quarter of the
table it is rebuilt from the live entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import KernelLike

__all__ = ["Registry"]

EMPTY = 0
TOMBSTONE = 1


class Registry:
    """Insert/delete superslab bases in the kernel's registry table."""

    def __init__(self, kernel: KernelLike, lg: int) -> None:
        self.kernel = kernel
        self.lg = lg
        self.tombstones = 0

    def insert(self, base: int, idx: int) -> None:
        kern = self.kernel
        mask = kern.reg_mask
        k = (base >> self.lg) & mask
        while kern.reg_key[k] > TOMBSTONE:
            k = (k + 1) & mask
        if kern.reg_key[k] == TOMBSTONE:
            self.tombstones -= 1
        kern.reg_key[k] = base
        kern.reg_val[k] = idx

    def delete(self, base: int) -> None:
        kern = self.kernel
        mask = kern.reg_mask
        k = (base >> self.lg) & mask
        while int(kern.reg_key[k]) != base:
            if kern.reg_key[k] == EMPTY:
                raise KeyError(f"registry: base {base:#x} is not registered")
            k = (k + 1) & mask
        kern.reg_key[k] = TOMBSTONE
        kern.reg_val[k] = -1
        self.tombstones += 1
        if self.tombstones > (mask + 1) // 4:
            self._rebuild()

    def _rebuild(self) -> None:
        kern = self.kernel
        live = [(int(b), int(v)) for b, v in zip(kern.reg_key, kern.reg_val, strict=True)
                if b > TOMBSTONE]
        kern.reg_key[:] = EMPTY
        kern.reg_val[:] = -1
        self.tombstones = 0
        for b, v in live:
            self.insert(b, v)

    def entries(self) -> dict[int, int]:
        """base -> index of every live entry."""
        kern = self.kernel
        return {int(b): int(v) for b, v in zip(kern.reg_key, kern.reg_val, strict=True)
                if b > TOMBSTONE}

    def check(self, expected: dict[int, int]) -> None:
        """The table holds exactly ``expected`` (base -> index), each reachable by lookup."""
        got = self.entries()
        assert got == expected, f"registry holds {len(got)} entries, expected {len(expected)}"
        for base, idx in expected.items():
            assert self.kernel.lookup(base) == idx, f"registry: lookup({base:#x}) != {idx}"
        n_tomb = int((self.kernel.reg_key == TOMBSTONE).sum())
        assert n_tomb == self.tombstones, f"registry: {n_tomb} tombstones, counted {self.tombstones}"
