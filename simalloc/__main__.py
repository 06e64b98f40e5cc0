"""``python -m simalloc``: the command line (see :mod:`simalloc.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":  # guarded: multiprocessing's spawn re-imports the main module
    raise SystemExit(main())
