"""Every example and notebook runs as written (using only the public API) inside the suite.

Examples are checked against their output, as SimPy checks its documentation's examples: each
``examples/X.py`` has ``examples/X.out``, the stdout it must print.  Figures that depend on the
machine (the kernel picked, timings, the process's RSS) are printed inside ``[~ ... ]``, and both
texts have every such span replaced by ``[~]`` before they are compared; nothing else is masked,
so an example prints no other timing.  Regenerate one with ``python examples/X.py > examples/X.out``
(from the repository root, without ``SIMALLOC_*``/``HAKMEM_*`` variables)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAKMEM_", "SIMALLOC_"))}
    env["MPLBACKEND"] = "Agg"
    return env


#: A machine-dependent figure in an example's output: ``[~ ...]`` (module docstring).
MASK = re.compile(r"\[~[^\]\n]*\]")
#: A timing or rate outside a mask (what the masking rule exists to keep out of ``.out`` files).
UNMASKED_TIMING = re.compile(r"\d(?:\.\d+)?\s*(?:s|ms|us|ns|ops/s|M ops/s)\b")
#: Modules whose ``__all__`` an example may use: the package and its documented subpackages.
PUBLIC_MODULES = ("simalloc", "simalloc.trace", "simalloc.workloads")


def masked(text: str) -> str:
    """``text`` with every ``[~ ...]`` span replaced by ``[~]``."""
    return MASK.sub("[~]", text)


def _kernels() -> list[str]:
    import simalloc

    return simalloc.available_kernels()


@pytest.mark.parametrize("kernel", _kernels())
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_output(path: Path, kernel: str) -> None:
    """The same saved output on every kernel (the kernel's name itself is masked)."""
    expected = path.with_suffix(".out")
    assert expected.exists(), f"{expected.name} missing: python examples/{path.name} > examples/{expected.name}"
    env = {**_clean_env(), "SIMALLOC_KERNEL": kernel}
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    want = expected.read_text()
    assert want.strip(), "an example must print what it shows"
    assert masked(proc.stdout).splitlines() == masked(want).splitlines()


def test_example_outputs_mask_their_timings() -> None:
    outs = sorted((ROOT / "examples").glob("*.out"))
    assert {p.stem for p in outs} == {p.stem for p in EXAMPLES}, "every .out needs its .py and back"
    for out in outs:
        for n, line in enumerate(masked(out.read_text()).splitlines(), 1):
            assert not UNMASKED_TIMING.search(line), f"{out.name}:{n}: timing outside [~ ]: {line}"
    assert masked("a [~ 1.5 s] b [~kernel cython]") == "a [~] b [~]"


def _public_names(module: str) -> set[str]:
    return set(importlib.import_module(module).__all__)


def test_examples_use_public_api_only() -> None:
    public = {m: _public_names(m) for m in PUBLIC_MODULES}
    for path in EXAMPLES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simalloc"):
                assert node.module in PUBLIC_MODULES, f"{path.name} imports a private module {node.module}"
                for alias in node.names:
                    assert alias.name in public[node.module], \
                        f"{path.name} imports {alias.name}, not in {node.module}.__all__"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("simalloc"):
                        assert alias.name in PUBLIC_MODULES, f"{path.name} imports {alias.name}"
            if isinstance(node, ast.Attribute):
                dotted = _dotted(node.value)
                if dotted in PUBLIC_MODULES and not (dotted == "simalloc" and node.attr in
                                                     ("trace", "workloads", "__version__")):
                    assert node.attr in public[dotted], \
                        f"{path.name} uses {dotted}.{node.attr}, which is not public"


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


# ---------------------------------------------------------------------------- notebooks
# The series (issue 12): each notebook asks a question in its title, shows pictures, ends with a
# conclusion that quotes its numbers, and is committed WITH its outputs (rebuild them with
# ``python notebooks/build.py``; the test runs them the same way, through that script).
NOTEBOOK_SERIES = 6


def _build() -> Any:
    """``notebooks/build.py`` as a module: one definition of how a notebook is run and checked."""
    spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_notebook(path: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(path, as_version=4)


def test_notebook_series_is_complete() -> None:
    assert len(NOTEBOOKS) == NOTEBOOK_SERIES, [p.name for p in NOTEBOOKS]
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}_" for i in range(1, NOTEBOOK_SERIES + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_saved_with_outputs(path: Path) -> None:
    nb = _read_notebook(path)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and first.source.startswith("# ") \
        and "?" in first.source.splitlines()[0], "the title asks the notebook's question"
    assert last.cell_type == "markdown" and last.source.startswith("## Conclusion"), \
        "the notebook ends with its conclusion"
    assert re.search(r"\d", last.source), "the conclusion quotes the numbers the notebook computed"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), \
        "saved without outputs: python notebooks/build.py " + path.name
    assert _build().figure_problems(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    pytest.importorskip("nbclient")
    build = _build()
    # as build.py runs it: no HAKMEM_*/SIMALLOC_* variable, except the kernel CI selects
    nb, _seconds = build.execute(path, kernel=os.environ.get("SIMALLOC_KERNEL"), timeout=300)
    assert build.figure_problems(nb) == []  # the re-executed run draws every figure again
    assert build.png_count(nb) >= build.png_count(_read_notebook(path))


#: What a notebook may import: the examples' public modules, plus the documented modules the
#: series teaches with (the occupancy map's timeline, the presets' classes), each with ``__all__``.
NOTEBOOK_MODULES = (*PUBLIC_MODULES, "simalloc.occupancy", "simalloc.presets")


def test_notebooks_use_public_api_only() -> None:
    public = {m: _public_names(m) for m in NOTEBOOK_MODULES}
    for path in NOTEBOOKS:
        code = "\n".join(line for c in _read_notebook(path).cells if c.cell_type == "code"
                         for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simalloc"):
                assert node.module in NOTEBOOK_MODULES, f"{path.name} imports a private module {node.module}"
                assert {a.name for a in node.names} <= public[node.module], \
                    f"{path.name} imports from {node.module} a name not in its __all__"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("simalloc"):
                        assert alias.name in NOTEBOOK_MODULES, f"{path.name} imports {alias.name}"
            if isinstance(node, ast.Attribute) and _dotted(node.value) in NOTEBOOK_MODULES:
                dotted = _dotted(node.value)
                assert node.attr in public[dotted] or (dotted == "simalloc" and node.attr in
                                                       ("trace", "workloads", "__version__")), \
                    f"{path.name} uses {dotted}.{node.attr}, which is not public"
