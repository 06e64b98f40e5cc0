"""Build the optional compiled modules; metadata lives in setup.cfg.

Each compiled module is an ordinary Python module of the package compiled with Cython's "pure
Python mode": the package keeps the .py (it runs as plain Python, e.g. under pdb), and a copy of
it beside its augmenting .pxd in ``kernels/`` is cythonized under the compiled module's name.

    simalloc/_kernel_py.py             -> kernels/_kernel.py   + kernels/_kernel.pxd   -> simalloc._kernel
    simalloc/workloads/_mixedgen_py.py -> kernels/_mixedgen.py + kernels/_mixedgen.pxd -> simalloc.workloads._mixedgen

The copies are generated (read-only, git-ignored, left out of the sdist): edit the package's .py.
Cython finds a module's augmenting .pxd by the module's *qualified* name, so each .pxd is also
staged in a package layout on the include path (``build/cython-pxd/simalloc/_kernel.pxd``).
If Cython or a C compiler is missing the install still succeeds and simalloc uses the plain
Python modules (with a warning).
"""
import os
import stat

from setuptools import setup

# (source in the package, generated copy beside its .pxd, compiled module name)
PURE_PYTHON_MODULES = [
    ("simalloc/_kernel_py.py", "kernels/_kernel.py", "simalloc._kernel"),
    ("simalloc/workloads/_mixedgen_py.py", "kernels/_mixedgen.py", "simalloc.workloads._mixedgen"),
]

PXD_STAGING = os.path.join("build", "cython-pxd")

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "annotation_typing": False,  # C types come from the .pxd only; annotations stay Python's
}


def _copy_if_changed(src: str, dst: str) -> None:
    """Write ``src`` to ``dst`` (read-only) unless it is already identical, so an unchanged
    source keeps its timestamp and cythonize does not rebuild it."""
    with open(src, "rb") as f:
        data = f.read()
    if os.path.exists(dst):
        with open(dst, "rb") as f:
            if f.read() == data:
                return
        os.chmod(dst, stat.S_IWUSR | stat.S_IRUSR)
        os.remove(dst)
    with open(dst, "wb") as f:
        f.write(data)
    os.chmod(dst, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _extensions() -> list:
    todo = [(src, dst, mod) for src, dst, mod in PURE_PYTHON_MODULES
            if os.path.exists(src) and os.path.exists(os.path.splitext(dst)[0] + ".pxd")]
    if not todo:
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension

        for src, dst, mod in todo:
            _copy_if_changed(src, dst)
            staged = os.path.join(PXD_STAGING, *mod.split(".")) + ".pxd"
            os.makedirs(os.path.dirname(staged), exist_ok=True)
            _copy_if_changed(os.path.splitext(dst)[0] + ".pxd", staged)
        ext_modules = cythonize(
            [Extension(mod, [dst], extra_compile_args=["-O2"]) for _src, dst, mod in todo],
            include_path=[PXD_STAGING],
            compiler_directives=COMPILER_DIRECTIVES,
        )
    except Exception as exc:  # pragma: no cover - depends on the build machine
        print(f"warning: simalloc's compiled modules not built ({exc}); using plain Python")
        return []
    for ext in ext_modules:
        ext.optional = True  # no compiler -> warning, pure-Python install
    return ext_modules


setup(ext_modules=_extensions())
