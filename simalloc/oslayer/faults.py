"""A fault-injecting OS layer: the real one, except that chosen calls fail.

For tests of the heap's error paths (``Heap(os=FaultInjectingOSLayer(...))``): the Nth
``mmap`` fails with ENOMEM, the Nth ``madvise`` (optionally only of one advice) fails with
EINVAL or EAGAIN -- exactly as the kernel would refuse them, as :class:`OSLayerError`.  Every
call that is not failed is real and counted as usual.

    os = FaultInjectingOSLayer(fail_mmap_at=3)           # the 3rd mmap from now fails
    os = FaultInjectingOSLayer(fail_madvise_at=1, advice="DONTNEED", errno_=errno.EAGAIN)
    os.arm(fail_mmap_at=1)                               # re-arm later; os.disarm() stops
"""

from __future__ import annotations

import errno
import mmap
import os as _os

from ..errors import OSLayerError
from . import Mapping, OSLayer

__all__ = ["FaultInjectingOSLayer"]


class FaultInjectingOSLayer(OSLayer):
    """:class:`OSLayer` whose Nth mmap / madvise call fails (see the module docstring)."""

    def __init__(self, nohugepage: bool = True, *, fail_mmap_at: int | None = None,
                 fail_madvise_at: int | None = None, advice: str | None = None,
                 errno_: int = errno.EINVAL, repeat: bool = False) -> None:
        super().__init__(nohugepage)
        self.injected = 0  # faults injected so far
        self.arm(fail_mmap_at=fail_mmap_at, fail_madvise_at=fail_madvise_at, advice=advice,
                 errno_=errno_, repeat=repeat)

    def arm(self, *, fail_mmap_at: int | None = None, fail_madvise_at: int | None = None,
            advice: str | None = None, errno_: int = errno.EINVAL, repeat: bool = False) -> None:
        """Fail the ``fail_mmap_at``-th mmap and/or the ``fail_madvise_at``-th madvise (of
        ``advice``, if given) counted from now (1 = the next one); with ``repeat`` every call
        from then on fails."""
        for n in (fail_mmap_at, fail_madvise_at):
            if n is not None and n < 1:
                raise ValueError(f"fault position {n} must be >= 1")
        self._mmap_left = fail_mmap_at
        self._madvise_left = fail_madvise_at
        self._advice = advice
        self._errno = errno_
        self._repeat = repeat

    def disarm(self) -> None:
        self._mmap_left = self._madvise_left = None

    @staticmethod
    def _due(left: int | None) -> tuple[bool, int | None]:
        if left is None:
            return False, None
        return left <= 1, left - 1

    def _fail(self, what: str, code: int) -> OSLayerError:
        self.injected += 1
        exc = OSError(code, _os.strerror(code))
        return OSLayerError(f"{what} failed: {exc} (injected fault)")

    def _map(self, size: int) -> mmap.mmap:
        due, left = self._due(self._mmap_left)
        self._mmap_left = 1 if (due and self._repeat) else left
        if due:
            if not self._repeat:
                self._mmap_left = None
            raise self._fail(f"mmap({size})", errno.ENOMEM)
        return super()._map(size)

    def _advise(self, m: Mapping, name: str, offset: int, length: int) -> None:
        if self._advice is None or name == self._advice:
            due, left = self._due(self._madvise_left)
            self._madvise_left = 1 if (due and self._repeat) else left
            if due:
                if not self._repeat:
                    self._madvise_left = None
                raise self._fail(f"madvise({name}, +{offset}, {length})", self._errno)
        super()._advise(m, name, offset, length)
