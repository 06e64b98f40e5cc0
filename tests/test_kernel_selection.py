"""Kernel selection (SIMALLOC_KERNEL) and the build: the Cython kernel is there when it should be."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import simalloc

ROOT = Path(__file__).resolve().parents[1]


def test_cython_kernel_built_when_required() -> None:
    if os.environ.get("SIMALLOC_REQUIRE_CYTHON") == "1":
        assert "cython" in simalloc.available_kernels(), "CI expects the compiled kernel"
    assert "python" in simalloc.available_kernels()


@pytest.mark.parametrize("want", ["python", "auto"])
def test_selection_by_environment(want: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMALLOC_KERNEL", want)
    expected = "python" if want == "python" else simalloc.available_kernels()[0]
    assert simalloc.kernel_name() == expected
    with simalloc.Heap() as heap:
        assert heap.kernel_name == expected
        assert heap.stats()["kernel"] == expected


def test_bad_kernel_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMALLOC_KERNEL", "fortran")
    with pytest.raises(simalloc.ConfigError, match="SIMALLOC_KERNEL"):
        simalloc.Heap()


def test_same_names_in_both_kernels() -> None:
    """The twin and the C kernel expose the same public methods and tables."""
    if "cython" not in simalloc.available_kernels():
        pytest.skip("the Cython kernel is not built")
    from simalloc import _kernel, _kernel_py

    names = {n for n in dir(_kernel_py.Kernel) if not n.startswith("_")}
    assert names <= set(dir(_kernel.Kernel))
    with simalloc.Heap(kernel="cython") as h:
        for attr in ("ss_base", "reg_key", "reg_val", "fc", "fc_count", "cur_ss", "cur_slab",
                     "counters", "lut", "strides"):
            assert hasattr(h.kernel, attr)


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    proc = subprocess.run([ruff, "check", "simalloc", "tests", "examples", "benchmarks"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pdb_breakpoint_in_policy_decision(tmp_path: Path) -> None:
    """README recipe: under the Python kernel, pdb stops inside a release-policy decision."""
    script = (
        "import simalloc\n"
        "h = simalloc.Heap(kernel='python', mem_lean=True, mem_lean_decommit='DONTNEED', mem_lean_target_mb=0)\n"
        "ps = [h.malloc(1000) for _ in range(2000)]\n"
        "for p in ps: h.free(p)\n"
        "h.trim()\n"
    )
    policy_file = Path(simalloc.policy.__file__)
    line = next(i for i, t in enumerate(policy_file.read_text().splitlines(), 1)
                if "if self.should_keep(ctx):" in t)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAKMEM_", "SIMALLOC_"))}
    prog = tmp_path / "lean_demo.py"
    prog.write_text(script)
    proc = subprocess.run(
        [sys.executable, "-m", "pdb", "-c", f"b {policy_file}:{line}", "-c", "c",
         "-c", "p type(self).__name__, ev.ss", "-c", "bt", "-c", "q", str(prog)],
        capture_output=True, text=True, timeout=120, env=env)
    assert "'LeanPolicy'" in proc.stdout, proc.stdout[-2000:]
    assert "_kernel_py.py" in proc.stdout  # stepped in from the pure-Python hot path


def test_slowpath_protocol_is_exactly_what_the_kernel_calls() -> None:
    """``SlowPath`` lists every ``self.slow.<callback>`` of the (single) kernel source, no more,
    and the object a heap hands its kernel implements all of them."""
    from simalloc import _kernel_py
    from simalloc.kernel import SlowPath

    called = set(re.findall(r"self\.slow\.(\w+)\(", Path(_kernel_py.__file__).read_text()))
    declared = {n for n, v in vars(SlowPath).items() if callable(v) and not n.startswith("_")}
    assert called == declared
    with simalloc.Heap(kernel="python") as h:
        assert all(callable(getattr(h.kernel.slow, n, None)) for n in declared)


def test_plain_python_without_cython_or_compiled_modules() -> None:
    """No Cython at run time and no compiled modules (a compiler-less install): the kernel and
    the Mixed generator run as plain Python (the ``try: import cython`` shim)."""
    script = (
        "import sys\n"
        "for name in ('cython', 'Cython', 'simalloc._kernel', 'simalloc.workloads._mixedgen'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "import warnings, numpy as np, simalloc\n"
        "from simalloc import _kernel_py\n"
        "from simalloc.workloads import mixed\n"
        "assert _kernel_py.KERNEL_NAME == 'python' and not _kernel_py.cython.compiled\n"
        "assert mixed.MixedGen.__module__ == 'simalloc.workloads._mixedgen_py'\n"
        "assert simalloc.available_kernels() == ['python']\n"
        "with warnings.catch_warnings(record=True) as w, simalloc.Heap(kernel='auto') as h:\n"
        "    warnings.simplefilter('always')\n"
        "    sl = np.zeros(64, np.uint64)\n"
        "    state = mixed.run_mixed(h, 3000, 64, 1, sl)\n"
        "    h.drain_slots(sl)\n"
        "    h.check()\n"
        "    assert h.kernel_name == 'python'\n"
        "print('ok', state)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAKMEM_", "SIMALLOC_"))}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok ")


def test_kernel_sources_layout() -> None:
    """One hot-path source: the .pyx twin is gone; the C types live in kernels/*.pxd."""
    assert not (ROOT / "kernels" / "_kernel.pyx").exists()
    assert (ROOT / "kernels" / "_kernel.pxd").exists()
    assert (ROOT / "kernels" / "_mixedgen.pxd").exists()
