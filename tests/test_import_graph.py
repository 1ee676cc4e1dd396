"""The import graph of fastgan has no cycle, counting imports inside functions too.

A cycle that Python happens to tolerate today (because one side imports inside a function, or only reads the
other's attributes late) still breaks as soon as someone moves an import to the top of a file or imports a name
one step earlier; and it means neither module can be understood, tested or reused without the other. So the
graph is read from the source with ``ast`` (nothing is imported): every ``import`` / ``from ... import``
statement anywhere in a file (module level, functions, methods, conditionals, ``try`` blocks) is an edge.

Edges: ``import a.b.c`` and ``from a.b.c import x`` go to ``a.b.c``; ``from pkg import name`` goes to
``pkg.name`` when that is a module or package of fastgan, else to ``pkg`` (its ``__init__``). No implicit
edges to the parent packages' ``__init__`` are added (Python runs them first, but they are not what a module
depends on). A string constant that is exactly a fastgan module's dotted name is an edge too (a module imported
by name at run time: ``importlib.import_module``, an op's ``Launchers``). Relative imports are resolved;
imports of anything outside fastgan are ignored. fastgan's compiled extension ``fastgan._C`` counts as a module
(``from fastgan import _C`` imports it, not a name of ``fastgan/__init__.py``), one that imports nothing of
fastgan, built or not.
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fastgan"
EXTENSIONS = ("fastgan._C",)  # setup.py's ext_modules: a module whether or not this checkout has built it


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def extension_names(root: Path = ROOT, package: str = PACKAGE) -> set[str]:
    """Compiled modules of the package (``name.cpython-311-x86_64-linux-gnu.so`` is module ``name``), and
    those that setup.py builds."""
    found = {".".join(p.relative_to(root).parts[:-1] + (p.name.split(".")[0],))
             for suffix in ("*.so", "*.pyd") for p in (root / package).rglob(suffix)}
    return found | {name for name in EXTENSIONS if name.split(".")[0] == package}


def _base_package(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots in ``module`` starts from."""
    parts = module.split(".")
    if path.name != "__init__.py":
        parts.pop()  # a plain module's first dot is its own package
    if level - 1 > len(parts) - 1:
        raise ValueError(f"{path}: relative import beyond the top-level package")
    return ".".join(parts[:len(parts) - (level - 1)])


def _targets(node: ast.AST, module: str, path: Path, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = _base_package(module, path, node.level)
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if alias.name != "*" and sub in modules else target)
    return out


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the fastgan modules it imports, anywhere in its source."""
    modules = module_names(root, package)
    known = set(modules) | extension_names(root, package)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, path, known):
                    if target in known and target != module:
                        graph[module].add(target)
            elif isinstance(node, ast.Constant) and node.value in known and node.value != module:
                graph[module].add(node.value)  # a module named by a string: importlib.import_module, Launchers
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative), those with more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(component)
    return out


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    prev = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = []
            while node is not None:
                path.append(node)
                node = prev[node]
            return path[::-1]
        for child in sorted(graph.get(node, ())):
            if child in within and child not in prev:
                prev[child] = node
                queue.append(child)
    raise AssertionError(f"{goal} is not reachable from {start} inside its component")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles that together use every edge that lies on a cycle: for each such edge u -> v, the shortest way
    back from v to u. Each cycle is a list of modules that starts and ends with the same one, rotated to start at
    its smallest name; duplicates are dropped. Empty for an acyclic graph."""
    cycles: dict[tuple[str, ...], list[str]] = {}
    for component in _strongly_connected(graph):
        for u in sorted(component):
            for v in sorted(graph[u] & component):
                loop = [u] + _shortest_path(graph, v, u, component)[:-1]
                i = loop.index(min(loop))
                loop = loop[i:] + loop[:i]
                cycles.setdefault(tuple(loop), loop + [loop[0]])
    return [cycles[k] for k in sorted(cycles)]


def format_cycles(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_on_a_synthetic_graph():
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set(), "g": {"a"}}
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert format_cycles(find_cycles(graph)) == "a -> b -> a\nc -> d -> e -> c"
    # two cycles through one node, and an edge (x -> z) that lies on a longer cycle only
    graph = {"x": {"y", "z"}, "y": {"x"}, "z": {"w"}, "w": {"x"}}
    assert find_cycles(graph) == [["w", "x", "z", "w"], ["x", "y", "x"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_import_resolution_on_a_synthetic_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from . import sub\nfrom .sub import thing\n",
        "a.py": "import os\nfrom . import b, CONSTANT\n\ndef f():\n    from .sub.c import name\n",
        "b.py": "if True:\n    import pkg.sub.c\nfrom pkg import a as _a\n",
        "sub/__init__.py": "from .c import *\n",
        "sub/c.py": "class K:\n    def m(self):\n        from ..a import f\n        from .. import a\n",
        "d.py": "try:\n    from pkg import _ext\nexcept ImportError:\n    from .sub import _ext2\n",
        "_ext.cpython-311-x86_64-linux-gnu.so": "",
        "e.py": "import importlib\n\ndef load():\n    return importlib.import_module('pkg.d'), 'pkg.d is not a name'\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    assert import_graph(tmp_path, "pkg") == {
        "pkg": {"pkg.sub"}, "pkg.a": {"pkg", "pkg.b", "pkg.sub.c"}, "pkg.b": {"pkg.a", "pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}, "pkg.d": {"pkg._ext", "pkg.sub"}, "pkg._ext": set(),
        "pkg.e": {"pkg.d"}}
    assert format_cycles(find_cycles(import_graph(tmp_path, "pkg"))) == (
        "pkg -> pkg.sub -> pkg.sub.c -> pkg.a -> pkg\npkg.a -> pkg.b -> pkg.a\npkg.a -> pkg.b -> pkg.sub.c -> pkg.a\n"
        "pkg.a -> pkg.sub.c -> pkg.a")


def test_fastgan_imports_have_no_cycle():
    graph = import_graph()
    assert "fastgan.metrics.frechet" in graph and graph["fastgan.metrics"]  # the parse found the package
    cycles = find_cycles(graph)
    assert not cycles, (f"{len(cycles)} import cycle(s) in fastgan (imports inside functions count; cut one edge "
                        f"of each):\n" + format_cycles(cycles))
