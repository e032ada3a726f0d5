"""Import hygiene of the gpugrad package: no import cycle, and no import inside
a function unless a comment says why.

    python scripts/check_imports.py            # exit 1 on a cycle or an unexplained local import
    python scripts/check_imports.py --report   # counts only (cycles, local imports), exit 0

The import graph has one edge per explicit ``import`` at module level (a
``from package import module`` counts as an edge to that module).  A local
import is explained when the ``import`` line, or the line above it, carries a
comment.
"""

import argparse
import ast
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
                edges[name].update(t for t in _resolve(node, name, is_package, known) if t != name)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        line = lines[inner.lineno - 1]
                        above = lines[inner.lineno - 2].strip() if inner.lineno > 1 else ""
                        explained = "#" in line or above.startswith("#")
                        local.append((f"{path.relative_to(ROOT)}:{inner.lineno}", explained))
                        runtime[name].update(t for t in _resolve(inner, name, is_package, known) if t != name)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print counts, never fail")
    args = parser.parse_args(argv)
    edges, runtime, local = analyse()
    found = cycles(edges)
    hidden = cycles(runtime)
    unexplained = [where for where, explained in local if not explained]
    print(f"{len(edges)} modules; {len(found)} import cycle(s)"
          + "".join(f"\n  cycle of {len(c)}: {', '.join(c)}" for c in found))
    print(f"counting function-local imports as edges: {len(hidden)} cycle(s)"
          + "".join(f" (of {len(c)})" for c in hidden))
    print(f"{len(local)} function-local import(s), {len(unexplained)} without a comment saying why"
          + "".join(f"\n  {where}" for where in unexplained))
    if args.report:
        return 0
    return 1 if found or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
