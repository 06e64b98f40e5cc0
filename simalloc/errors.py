"""The exceptions simalloc raises: every misuse of a heap maps to one of them.

All derive from :class:`AllocatorError`, so ``except simalloc.AllocatorError`` catches any of
them.  After any of these is raised the heap is unchanged and stays usable (fail fast, nothing
lost): the checks run before any state is touched.

=========================  ===============================================================
exception                  raised when
=========================  ===============================================================
``DoubleFreeError``        a block is freed (or realloc'd) that is already free
``InvalidPointerError``    a pointer is foreign (not in this heap), interior (not a block
                           start), or points at memory never handed out
``HeapCorruptionError``    a magic number, block header, slab record, free-list link or
                           superslab count in the mapping is not what the allocator wrote
                           (the user scribbled over allocator bytes; in secure mode also a
                           freed block's junk fill); the message says what and where
``InvalidSizeError``       a size is negative, not an integer, too large, or n*size
                           overflows in ``calloc``
``HeapClosedError``        the heap is used after ``close()``
``ConfigError``            an option (or environment variable) has an invalid value; the
                           message names the variable
``OSLayerError``           the kernel refused mmap/madvise/munmap (e.g. ENOMEM)
``HeapExhaustedError``     the heap's superslab table is full (``max_superslabs``)
``TraceError``             a replayed operation stream is malformed
``ConcurrentUseError``     a heap is entered while another call is still inside it (a second
                           thread, or a signal handler re-entering); nothing was changed
=========================  ===============================================================

One warning category (never an error; issued with :func:`warnings.warn`):

===========================  =============================================================
warning                      issued when
===========================  =============================================================
``UnmodelledOptionWarning``  ``Config.from_env`` finds ``HAKMEM_*`` variables that are not
                             in simalloc's option table (e.g. ``HAKMEM_PROFILE``): one
                             warning per call, naming all of them; they are ignored.
                             A ``UserWarning`` (and an ``AllocatorError``, for ``-W error``)
===========================  =============================================================
"""

from __future__ import annotations

__all__ = [
    "AllocatorError",
    "ConcurrentUseError",
    "ConfigError",
    "DoubleFreeError",
    "HeapClosedError",
    "HeapCorruptionError",
    "HeapExhaustedError",
    "InvalidPointerError",
    "InvalidSizeError",
    "OSLayerError",
    "TraceError",
    "UnmodelledOptionWarning",
]


class AllocatorError(Exception):
    """Base class of every error simalloc raises."""


class DoubleFreeError(AllocatorError):
    """The block was already free."""


class InvalidPointerError(AllocatorError, ValueError):
    """The pointer is not the start of a live block of this heap."""


class HeapCorruptionError(AllocatorError):
    """Allocator bytes inside the mapping (magic, block header, free-list link) are wrong."""


class InvalidSizeError(AllocatorError, ValueError):
    """A requested size is not a valid allocation size."""


class HeapClosedError(AllocatorError):
    """The heap was closed; its memory is gone."""


class ConfigError(AllocatorError, ValueError):
    """An option value is invalid (the message names the option and its variable)."""


class OSLayerError(AllocatorError, OSError):
    """The kernel refused a memory syscall."""


class HeapExhaustedError(AllocatorError, MemoryError):
    """No free slot in the heap's superslab table (raise ``max_superslabs``)."""


class TraceError(AllocatorError, ValueError):
    """A replayed operation stream is malformed (free of an empty slot, malloc into a full one,
    unknown op kind, slot out of range, a slots array of the wrong type)."""


class ConcurrentUseError(AllocatorError, RuntimeError):
    """The heap is busy: another call (another thread, or a signal handler that interrupted a
    call) is inside it.  A heap serves one call at a time; share it with a lock."""


class UnmodelledOptionWarning(UserWarning, AllocatorError):
    """``HAKMEM_*`` variables in the environment that simalloc does not model (they are ignored;
    ``simalloc options`` lists the variables it reads).  A warning, never raised by simalloc;
    it also derives from :class:`AllocatorError` so that, with warnings turned into errors
    (``-W error``), ``except simalloc.AllocatorError`` still catches everything simalloc raises."""
