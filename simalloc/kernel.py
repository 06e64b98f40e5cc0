"""Kernel selection: the Cython hot path if it was built, else its pure-Python twin.

``SIMALLOC_KERNEL`` (option ``kernel``) = ``auto`` (Cython if importable), ``cython`` (fail if
not built) or ``python`` (always the twin: step through it in pdb).  Selection is per heap, so
one process can run both (the parity tests do).
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

from .errors import ConfigError

__all__ = ["available_kernels", "kernel_name", "load_kernel"]


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
    """Kernels importable in this installation (``python`` always)."""
    out = ["python"]
    if _import_cython() is not None:
        out.insert(0, "cython")
    return out

