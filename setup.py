"""Build the optional Cython kernel (simalloc._kernel); metadata lives in setup.cfg.

If Cython or a C compiler is missing the install still succeeds and simalloc uses
its pure-Python kernel (simalloc/_kernel_py.py) with a warning.
"""
import os

from setuptools import setup

ext_modules = []
if os.path.exists("kernels/_kernel.pyx"):
    try:
        from Cython.Build import cythonize
        from setuptools import Extension

        ext_modules = cythonize(
            [Extension("simalloc._kernel", ["kernels/_kernel.pyx"], extra_compile_args=["-O2"])],
            compiler_directives={
                "language_level": 3,
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": False,
            },
        )
        for ext in ext_modules:
            ext.optional = True  # no compiler -> warning, pure-Python install
    except Exception as exc:  # pragma: no cover - depends on the build machine
        print(f"warning: simalloc Cython kernel not built ({exc}); using the pure-Python kernel")
        ext_modules = []

setup(ext_modules=ext_modules)
