"""(Re)execute the notebooks and save them with their outputs (figures included).

The notebooks are committed *with* their outputs, so a reader on a code host sees the
pictures and the numbers the conclusions quote.  After editing a notebook, rebuild it::

    python notebooks/build.py                            # every notebook, in place
    python notebooks/build.py 02_giving_memory_back      # one (name, file name or path)
    python notebooks/build.py --check                    # execute and report, write nothing

Each notebook runs in a fresh Jupyter kernel (``nbclient``, in the ``test`` extra) with
``notebooks/`` as its working directory and without any ``HAKMEM_*`` / ``SIMALLOC_*``
variable in its environment, so the default options and the default hot-path kernel apply
(Cython when it is built; pass ``--kernel python`` to run them on the pure-Python twin, as CI
does).  Figures come from matplotlib's inline backend (each notebook starts with
``%matplotlib inline``), saved as ``image/png`` outputs.  ``PYTHONHASHSEED=0`` makes the
programs the notebooks record repeatable.  Per notebook the script prints its wall time and
the number of figures; it exits 1 if a notebook raised (the traceback is printed; nothing is
written for that notebook).  ``tests/test_examples_notebooks.py`` re-executes every notebook
the same way and checks that its saved outputs hold its figures.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: A code cell that draws a picture: it makes a matplotlib figure or displays an image.
PLOTTING_CELL = re.compile(r"\bplt\.(?:subplots|figure|subplot_mosaic)\(|\bdisplay\(\s*Image\(")


def notebook_env(kernel: str | None = None) -> dict[str, str]:
    """The environment a notebook's kernel starts with: no allocator variables, inline figures."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HAKMEM_", "SIMALLOC_")) and k != "MPLBACKEND"}
    if kernel:
        env["SIMALLOC_KERNEL"] = kernel
    env["PYTHONHASHSEED"] = "0"
    return env


def png_count(nb: Any) -> int:
    """How many ``image/png`` outputs a notebook holds."""
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def figure_problems(nb: Any) -> list[str]:
    """What is wrong with a notebook's pictures (empty list: nothing): a plotting cell
    (:data:`PLOTTING_CELL`) without an ``image/png`` output, no plotting cell at all, or a cell
    that saved an error."""
    problems = []
    cells = [c for c in nb.cells if c.cell_type == "code"]
    plotting = [i for i, c in enumerate(cells) if PLOTTING_CELL.search(c.source)]
    if not plotting:
        problems.append("no plotting cell: every notebook of the series shows pictures")
    for i in plotting:
        if not any("image/png" in o.get("data", {}) for o in cells[i].get("outputs", [])):
            problems.append(f"code cell {i + 1} draws but holds no image/png output")
    if png_count(nb) < len(plotting):
        problems.append(f"{png_count(nb)} PNG outputs for {len(plotting)} plotting cells")
    for i, c in enumerate(cells):
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            problems.append(f"code cell {i + 1} holds an error output")
    return problems


def execute(path: Path, kernel: str | None = None, timeout: int = 600) -> tuple[Any, float]:
    """Execute the notebook at ``path`` in a fresh kernel; returns (notebook, seconds)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(notebook_env(kernel))  # the kernel process inherits this environment
    try:
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        return nb, time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _resolve(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p.resolve()
    hits = sorted(HERE.glob(f"{p.stem}*.ipynb"))
    if len(hits) != 1:
        raise SystemExit(f"build.py: {name!r} names {len(hits)} notebooks in {HERE}")
    return hits[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="names or paths (default: all in notebooks/)")
    ap.add_argument("--check", action="store_true", help="execute only; do not write")
    ap.add_argument("--kernel", choices=("python", "cython", "auto"),
                    help="SIMALLOC_KERNEL for the notebooks (default: unset = auto)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    args = ap.parse_args(argv)
    import nbclient
    import nbformat

    paths = [_resolve(n) for n in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    failed = 0
    for path in paths:
        try:
            nb, secs = execute(path, args.kernel, args.timeout)
        except nbclient.exceptions.CellExecutionError as exc:
            print(f"{path.name}: FAILED\n{exc}", file=sys.stderr)
            failed += 1
            continue
        problems = figure_problems(nb)
        print(f"{path.name}: {secs:5.1f} s, {png_count(nb)} figures"
              + "".join(f"\n  PROBLEM: {p}" for p in problems) + ("" if args.check else ", saved"))
        failed += bool(problems)
        if not args.check:
            nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
