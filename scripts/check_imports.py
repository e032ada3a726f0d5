"""Import hygiene of the gpugrad package: no import cycle, every module
imports first, and no import inside a function unless a comment says why.

    python scripts/check_imports.py            # exit 1 on a cycle, a module that fails to import first,
                                               # or an unexplained local import
    python scripts/check_imports.py --report   # counts only, exit 0

The import graph has one edge per explicit ``import`` at module level (a
``from package import module`` counts as an edge to that module), and an
edge to each package whose ``__init__`` such an import runs first (``import
gpugrad.autograd.engine`` runs ``gpugrad/autograd/__init__.py``): a cycle
through a package's ``__init__`` is a cycle too.  gpugrad's own
``__init__``, which imports everything, is left out of these package edges.

Then each module is imported first, in a process of its own (forked from one
that has imported only the outside modules, NumPy and the like; package
``__init__``s included), with gpugrad's own ``__init__`` left out: a module
must import everything it needs itself, whatever order gpugrad/__init__.py
imports things in.

A local import is explained when the ``import`` line, or the line above it,
carries a comment.
"""

import argparse
import ast
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "gpugrad"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _resolve(node, current, is_package, known):
    """The gpugrad modules an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    base = node.module or ""
    if node.level:
        anchor = current.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        if candidate in known:
            found.append(candidate)
        elif base in known:
            found.append(base)
    return found


def _with_packages(targets, known):
    """The modules imported and the packages whose __init__ runs first (gpugrad's own left out)."""
    out = set()
    for target in targets:
        out.add(target)
        parts = target.split(".")
        out.update(p for p in (".".join(parts[:i]) for i in range(2, len(parts))) if p in known)
    return out


def analyse():
    known = modules()
    edges = {name: set() for name in known}
    runtime = {name: set() for name in known}   # with the function-local imports too
    local = []
    for name, path in known.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        is_package = path.name == "__init__.py"
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[name].update(t for t in _with_packages(_resolve(node, name, is_package, known), known)
                                   if t != name and not name.startswith(t + "."))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        line = lines[inner.lineno - 1]
                        above = lines[inner.lineno - 2].strip() if inner.lineno > 1 else ""
                        explained = "#" in line or above.startswith("#")
                        local.append((f"{path.relative_to(ROOT)}:{inner.lineno}", explained))
                        runtime[name].update(t for t in _with_packages(_resolve(inner, name, is_package, known),
                                                                       known)
                                             if t != name and not name.startswith(t + "."))
        runtime[name] |= edges[name]
    return edges, runtime, local


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def _third_party(known):
    """The outside modules gpugrad's modules import at their top (NumPy, ml_dtypes, ...)."""
    names = set()
    for path in known.values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] != PACKAGE)


def _import_first(name):
    """In a forked child: import ``name`` with gpugrad's own __init__ left out; exit 0, or 1 with the error."""
    import importlib
    import traceback
    import types
    for loaded in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[loaded]
    if name != PACKAGE:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ROOT / PACKAGE)]
        sys.modules[PACKAGE] = package
    try:
        importlib.import_module(name)
    except BaseException:
        return traceback.format_exc().strip().splitlines()[-1]
    return None


def import_each_first(names, known):
    """{module: error} of the modules that fail to import first.  Each is imported in a
    process of its own, forked from one that has imported only the outside modules
    (their import takes most of an interpreter's start; gpugrad is never loaded there)."""
    import multiprocessing
    sys.path.insert(0, str(ROOT))
    for outside in _third_party(known):
        try:
            __import__(outside)
        except ImportError:            # an optional dependency: the module needing it will say so
            pass
    with multiprocessing.get_context("fork").Pool(max(2, os.cpu_count() or 1), maxtasksperchild=1) as pool:
        errors = dict(zip(names, pool.map(_import_first, names, chunksize=1)))
    return {name: error for name, error in errors.items() if error is not None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print counts, never fail")
    args = parser.parse_args(argv)
    edges, runtime, local = analyse()
    found = cycles(edges)
    hidden = cycles(runtime)
    unexplained = [where for where, explained in local if not explained]
    packages = sum(1 for path in modules().values() if path.name == "__init__.py")
    print(f"{len(edges)} modules ({packages} package __init__s); {len(found)} import cycle(s), package __init__s "
          "counted" + "".join(f"\n  cycle of {len(c)}: {', '.join(c)}" for c in found))
    failed = import_each_first(sorted(edges), modules())
    print(f"{len(edges) - len(failed)} of {len(edges)} modules import first, each in a process of its own"
          + "".join(f"\n  {name}: {error}" for name, error in sorted(failed.items())))
    print(f"counting function-local imports as edges: {len(hidden)} cycle(s)"
          + "".join(f"\n  of {len(c)} (at call time, not at import): {', '.join(c)}" for c in hidden))
    print(f"{len(local)} function-local import(s), {len(unexplained)} without a comment saying why"
          + "".join(f"\n  {where}" for where in unexplained))
    if args.report:
        return 0
    return 1 if found or failed or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
