"""The structure figures of issue 11: lines of ``VGM`` and of the largest module, the longest
private parameter list, and the import cycles (lazy and ``TYPE_CHECKING`` imports counted, as
import-linter counts them).

    python bench/structure.py            # this tree
    python bench/structure.py /path/to/another/checkout

Needs grimp (installed with import-linter, the ``dev`` extra). Not collected by pytest.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _n_params(node: ast.FunctionDef) -> int:
    a = node.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    return n - (1 if a.args and a.args[0].arg in ("self", "cls") else 0)


def measure(root: Path) -> dict:
    package = root / "gpuvgm"
    sizes = {p: len(p.read_text().splitlines()) for p in sorted(package.rglob("*.py"))}
    vgm, longest = 0, (0, "")
    for path in sizes:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "VGM":
                vgm = (node.end_lineno or node.lineno) - node.lineno + 1
            private = isinstance(node, ast.FunctionDef) and node.name.startswith("_")
            if private and not node.name.startswith("__"):
                # Compiled kernels (Numba) take their arrays as arguments: their signature.
                compiled = any("jit" in ast.unparse(d) for d in node.decorator_list)
                if not compiled and _n_params(node) > longest[0]:
                    where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                    longest = (_n_params(node), where)
    sys.path.insert(0, str(root))
    import grimp

    graph = grimp.build_graph("gpuvgm", include_external_packages=False)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    largest = max(sizes, key=sizes.__getitem__)
    return {
        "python_lines": sum(sizes.values()),
        "vgm_class_lines": vgm,
        "largest_module": [str(largest.relative_to(root)), sizes[largest]],
        "longest_private_parameter_list": list(longest),
        "import_cycles": [sorted(c) for c in _strongly_connected(edges)],
    }


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print(json.dumps(measure(here.resolve()), indent=1))
