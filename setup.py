"""Build the optional compiled modules; metadata lives in setup.cfg.

Each compiled module is an ordinary Python module of the package compiled with Cython's "pure
Python mode": the package keeps the .py (it runs as plain Python, e.g. under pdb), and a copy of
it beside its augmenting .pxd in ``kernels/`` is cythonized under the compiled module's name.

    simalloc/_kernel_py.py             -> kernels/_kernel.py   + kernels/_kernel.pxd   -> simalloc._kernel
    simalloc/workloads/_mixedgen_py.py -> kernels/_mixedgen.py + kernels/_mixedgen.pxd -> simalloc.workloads._mixedgen

The copies are generated (read-only, git-ignored, left out of the sdist): edit the package's .py.
Generated inputs of the build live in ``build/cython-pxd/`` (on Cython's include path):

* each .pxd, staged in a package layout (``simalloc/_kernel.pxd``): Cython looks a module's
  augmenting .pxd up by the module's qualified name;
* ``simalloc_layout.pxi``, which the .pxd files include: every integer constant of
  ``simalloc/constants.py`` as a C compile-time constant (statically evaluated from the file,
  so the build needs neither numpy nor the package).  The plain-Python modules import the same
  names from ``simalloc.constants``; constants.py stays the only place any value is written.

If Cython or a C compiler is missing the install still succeeds and simalloc uses the plain
Python modules (with a warning).
"""
import ast
import os
import stat

from setuptools import setup

# (source in the package, generated copy beside its .pxd, compiled module name)
PURE_PYTHON_MODULES = [
    ("simalloc/_kernel_py.py", "kernels/_kernel.py", "simalloc._kernel"),
    ("simalloc/workloads/_mixedgen_py.py", "kernels/_mixedgen.py", "simalloc.workloads._mixedgen"),
]
CONSTANTS = "simalloc/constants.py"
PXD_STAGING = os.path.join("build", "cython-pxd")
LAYOUT_PXI = "simalloc_layout.pxi"

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "annotation_typing": False,  # C types come from the .pxd only; annotations stay Python's
}

# The kernel's batch loop calls its per-operation workers (``cdef inline``: _alloc, _free_fast);
# GCC's -O2 budgets (an inline function's size, the growth of a large function) leave them out
# of line, and the calls cost ~10% of the instructions of a Mixed operation (saved registers).
EXTRA_CFLAGS = {"simalloc._kernel": ["--param", "max-inline-insns-single=2000",
                                     "--param", "large-function-growth=2000",
                                     "--param", "inline-unit-growth=2000"]}


def _write_if_changed(dst: str, data: bytes, readonly: bool = False) -> None:
    """Write ``data`` to ``dst`` unless it already holds exactly that, so an unchanged input
    keeps its timestamp and cythonize does not rebuild."""
    if os.path.exists(dst):
        with open(dst, "rb") as f:
            if f.read() == data:
                return
        os.chmod(dst, stat.S_IWUSR | stat.S_IRUSR)
        os.remove(dst)
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    with open(dst, "wb") as f:
        f.write(data)
    if readonly:
        os.chmod(dst, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b,
           ast.Mod: lambda a, b: a % b, ast.LShift: lambda a, b: a << b,
           ast.RShift: lambda a, b: a >> b, ast.BitOr: lambda a, b: a | b,
           ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b}


def _static_value(node: ast.AST, env: dict) -> object:
    """Evaluate a constant expression: int literals, names already evaluated, tuples,
    indexing, ``len()`` and integer arithmetic.  Anything else raises ValueError."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Tuple):
        return tuple(_static_value(e, env) for e in node.elts)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _static_value(node.left, env), _static_value(node.right, env)
        if type(a) is int and type(b) is int:
            return _BINOPS[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
        v = _static_value(node.operand, env)
        if type(v) is int:
            return -v if isinstance(node.op, ast.USub) else ~v
    if isinstance(node, ast.Subscript):
        seq, i = _static_value(node.value, env), _static_value(node.slice, env)
        if isinstance(seq, tuple) and type(i) is int:
            return seq[i]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
            and len(node.args) == 1 and not node.keywords):
        return len(_static_value(node.args[0], env))
    raise ValueError(ast.dump(node))


def layout_constants(path: str = CONSTANTS) -> dict:
    """Every public module-level integer of ``constants.py`` computable without running it
    (values the running system decides, e.g. PAGE_SIZE, are left out)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    env: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                env[target.id] = _static_value(value, env)
            except (ValueError, ZeroDivisionError, IndexError, TypeError):
                env.pop(target.id, None)
    return {k: v for k, v in env.items() if type(v) is int and not k.startswith("_")}


def layout_pxi(consts: dict) -> str:
    """``consts`` as C compile-time constants for Cython (``long long``)."""
    lines = [f"# Generated by setup.py from {CONSTANTS}: do not edit.", "cdef extern from *:", '    """']
    lines += [f"    #define SIMALLOC_K_{k} ({v}LL)" for k, v in consts.items()]
    lines += ['    """']
    lines += [f'    const long long {k} "SIMALLOC_K_{k}"' for k in consts]
    return "\n".join(lines) + "\n"


def _extensions() -> list:
    todo = [(src, dst, mod) for src, dst, mod in PURE_PYTHON_MODULES
            if os.path.exists(src) and os.path.exists(os.path.splitext(dst)[0] + ".pxd")]
    if not todo:
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension

        _write_if_changed(os.path.join(PXD_STAGING, LAYOUT_PXI),
                          layout_pxi(layout_constants()).encode())
        for src, dst, mod in todo:
            with open(src, "rb") as f:
                _write_if_changed(dst, f.read(), readonly=True)
            with open(os.path.splitext(dst)[0] + ".pxd", "rb") as f:
                _write_if_changed(os.path.join(PXD_STAGING, *mod.split(".")) + ".pxd", f.read())
        ext_modules = cythonize(
            [Extension(mod, [dst], extra_compile_args=["-O2"] + EXTRA_CFLAGS.get(mod, []))
             for _src, dst, mod in todo],
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
