"""Kernel selection, and the kernel's contract with the slow path.

There is one hot-path source, ``simalloc/_kernel_py.py`` (Cython pure Python mode): imported as
is it is the ``python`` kernel; compiled by ``setup.py`` (with ``kernels/_kernel.pxd``) it is
``simalloc._kernel``, the ``cython`` kernel.  ``SIMALLOC_KERNEL`` (option ``kernel``) = ``auto``
(Cython if importable), ``cython`` (fail if not built) or ``python`` (always the plain one:
step through it in pdb).  Selection is per heap, so one process can run both (the parity tests
do).

:class:`SlowPath` lists every callback the kernel makes into the heap.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Protocol

from .errors import ConfigError

__all__ = ["SlowPath", "available_kernels", "kernel_name", "load_kernel"]


class SlowPath(Protocol):
    """What the hot path calls when it cannot proceed (the heap implements it).

    Exactly these callbacks, each entered from the kernel (``Kernel(slow, ...)``); every one may
    raise, and the error propagates out of the kernel call that triggered it.  The kernel calls
    each at a point where an exception leaves its own state whole: before the operation takes
    effect, except ``slab_empty`` after a direct free (``front_cache_cap`` 0) and
    ``write_byte_slow`` after a replayed large malloc (the op is done; ``apply`` counts it)."""

    def refill_slow(self, cls: int) -> None:
        """Class ``cls`` has no current slab with blocks left: bind one (``Kernel.bind``)."""

    def slab_empty(self, idx: int, slab: int) -> None:
        """Slab ``slab`` of superslab ``idx`` just got its last block back (``used == 0``)."""

    def slab_partial(self, idx: int, slab: int) -> None:
        """A full slab that is not current is a quarter free again."""

    def flush_queue(self) -> None:
        """The kernel's event queue is full (``counters[C_QUEUED]`` rows of ``evq``, queued
        instead of ``slab_partial`` / ``slab_empty`` calls while ``counters[C_BATCH]`` is set):
        take and deliver it, leaving ``C_QUEUED`` 0."""

    def free_slow(self, addr: int) -> None:
        """``free(addr)`` of an address outside every superslab (a large block, or an error)."""

    def free_error(self, addr: int) -> None:
        """``free(addr)`` rejected by the hot path's checks: diagnose and raise."""

    def corrupt_block(self, idx: int, off: int, where: str) -> None:
        """A block the hot path was about to use fails its checks (``where``: "free list": a
        link outside its slab's carved blocks, off a boundary or at a block not tagged free;
        "front cache": a free block's header or junk fill overwritten): raise."""

    def corrupt_meta(self, idx: int, slab: int, where: str) -> None:
        """A slab meta record (class, state, stride, data start, capacity, carved, used) or a
        superslab header count read by the hot path is impossible: raise."""

    def malloc_large(self, size: int) -> int:
        """Allocate ``size`` bytes beyond the tiny classes; returns the user address."""

    def write_byte_slow(self, addr: int, value: int) -> None:
        """Store a byte at ``addr`` outside every superslab (a large block)."""

    def apply_other(self, kind: int, cur: int, size: int) -> int:
        """Replay an operation the kernel does not handle (realloc: ``kind`` OP_REALLOC) on the
        slot's current address ``cur``; returns the slot's new address."""

    def tick(self) -> None:
        """Every ``tick_interval`` operations (at the start of the next one): the policy clock."""

    def op_boundary(self) -> None:
        """Between two operations, ``counters[C_DEFERRED]`` says signals are held: deliver
        them (their handlers may raise: a batch stops at this row boundary)."""


def _import_cython() -> ModuleType | None:
    try:
        from . import _kernel  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _kernel


def load_kernel(name: str = "auto") -> ModuleType:
    """The kernel module for ``name`` (auto | cython | python)."""
    name = name.lower()
    if name == "python":
        from . import _kernel_py

        return _kernel_py
    if name not in ("auto", "cython"):
        raise ConfigError(f"SIMALLOC_KERNEL={name!r}: expected auto, cython or python")
    mod = _import_cython()
    if mod is not None:
        return mod
    if name == "cython":
        raise ConfigError("SIMALLOC_KERNEL=cython but the Cython kernel (simalloc._kernel) is not "
                          "built; reinstall with a C compiler (pip install .)")
    warnings.warn("simalloc: the Cython kernel is not built (no C compiler at install time?); "
                  "using the pure-Python kernel, which is about 50-100x slower. Set "
                  "SIMALLOC_KERNEL=python to silence this.", RuntimeWarning, stacklevel=3)
    from . import _kernel_py

    return _kernel_py


def kernel_name(name: str | None = None) -> str:
    """Which kernel a heap gets for ``name`` (default: the ``SIMALLOC_KERNEL`` environment)."""
    if name is None:
        name = os.environ.get("SIMALLOC_KERNEL", "auto") or "auto"
    return load_kernel(name).KERNEL_NAME


def available_kernels() -> list[str]:
    """Kernels importable in this installation (``python`` always; ``cython`` if built)."""
    out = ["python"]
    if _import_cython() is not None:
        out.insert(0, "cython")
    return out

