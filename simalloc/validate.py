"""Argument checks shared by the public API and the slow path (one place each)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .constants import MAX_REQUEST
from .errors import InvalidPointerError, InvalidSizeError, TraceError

__all__ = ["check_ops", "check_pointer", "check_size", "check_slots"]


def check_size(size: Any, what: str = "size") -> int:
    """``size`` as an int in 0..MAX_REQUEST, or InvalidSizeError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InvalidSizeError(f"{what} must be an int, not {type(size).__name__}")
    size = int(size)
    if size < 0:
        raise InvalidSizeError(f"{what} must be >= 0, got {size}")
    if size > MAX_REQUEST:
        raise InvalidSizeError(f"{what}={size} exceeds the request limit {MAX_REQUEST}")
    return size


def check_pointer(ptr: Any) -> int:
    """``ptr`` as an int address (0 = NULL), or InvalidPointerError.  Ints and numpy integers
    (what slot arrays hold) are pointers; ``None`` is NULL; anything else is refused."""
    if ptr is None:
        return 0
    if isinstance(ptr, bool) or not isinstance(ptr, (int, np.integer)):
        raise InvalidPointerError(f"pointer must be an int, not {type(ptr).__name__}")
    ptr = int(ptr)
    if ptr and not 0 < ptr < 1 << 64:
        raise InvalidPointerError(f"{ptr:#x} is not an address (foreign pointer)")
    return ptr


def check_slots(slots: Any) -> np.ndarray:
    """A slots array for the batch API: writable, C-contiguous, 1-D uint64."""
    if (not isinstance(slots, np.ndarray) or slots.dtype != np.uint64 or slots.ndim != 1
            or not slots.flags.c_contiguous or not slots.flags.writeable):
        raise TraceError("slots must be a writable, C-contiguous, 1-D numpy uint64 array")
    return slots


def check_ops(ops: Any) -> np.ndarray:
    """An operation stream for the batch API: integer rows ``(kind, slot, size)`` as a
    C-contiguous int64 ``(n, 3)`` array.  Float, bool and object arrays are refused (TraceError),
    never truncated; so are unsigned values beyond int64."""
    arr = ops if isinstance(ops, np.ndarray) else np.asarray(ops)
    if arr.dtype.kind not in "iu":
        raise TraceError(f"ops must be an integer array (int64 rows kind, slot, size), not dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise TraceError(f"ops must have shape (n, 3), got {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise TraceError("ops hold values beyond int64")
    return np.ascontiguousarray(arr, dtype=np.int64)
