"""The dependency rule of docs/ARCHITECTURE.md, checked on the import graph of the package.

Every ``import``/``from ... import`` of a ``her2mri`` module (at module level or inside a function: a lazy
import is still a dependency) is an edge. The rule is ``data, models, stats <- training <- runs <- cli``,
with ``radiomics`` beside ``training``, ``viz`` beside ``runs`` and ``report`` above ``runs`` (it reads run
directories with ``runs.rundir``); the graph of modules has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "her2mri"
ROOT = "her2mri"  # modules directly in her2mri/ (__init__, shared helpers): importable by every package

#: package -> the her2mri packages it may import (besides itself and the root modules)
ALLOWED: dict[str, frozenset[str]] = {
    "data": frozenset(),
    "models": frozenset(),
    "stats": frozenset(),
    "training": frozenset({"data", "models", "stats"}),
    "report": frozenset({"data", "stats", "runs"}),  # runs.rundir: the one run-directory reader
    "radiomics": frozenset({"data", "models", "stats"}),
    "viz": frozenset({"data", "models", "training"}),
    "runs": frozenset({"data", "models", "stats", "training"}),
    "cli": frozenset({"data", "models", "stats", "training", "report", "radiomics", "viz", "runs"}),
    ROOT: frozenset(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """The her2mri modules imported by the module ``name`` at ``path`` (relative imports resolved)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports never run: annotations only
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            found.add(target)
            # `from her2mri.runs import train` imports the module her2mri.runs.train
            for alias in node.names:
                sub = PACKAGE_DIR.parent.joinpath(*target.split("."), alias.name)
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    found.add(f"{target}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = _module_name(path)
        graph[name] = _imports(path, name) - {name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT
    sub = PACKAGE_DIR / parts[1]
    return parts[1] if sub.is_dir() else ROOT


GRAPH = _graph()


def test_graph_is_read():
    assert len(GRAPH) > 50
    assert "her2mri.runs.train" in GRAPH
    assert "her2mri.training.module" in GRAPH["her2mri.cli.gradcam"]  # an import inside a function counts


def test_every_imported_her2mri_module_exists():
    """An import of a moved or deleted module (e.g. ``her2mri.experiments.*``) fails here, not at run time."""
    missing = sorted(
        f"{module} imports {dep}"
        for module, deps in GRAPH.items()
        for dep in deps
        if dep not in GRAPH and not _is_name_in_module(dep)
    )
    assert not missing, "imports of her2mri modules that do not exist:\n" + "\n".join(missing)


def _is_name_in_module(dotted: str) -> bool:
    """``her2mri.a.b.name``: ``name`` imported from the existing module ``her2mri.a.b``."""
    parent = dotted.rsplit(".", 1)[0]
    return parent in GRAPH


def test_every_package_is_placed():
    packages = {_package(m) for m in GRAPH}
    assert packages <= set(ALLOWED), f"not placed in the rule: {packages - set(ALLOWED)}"


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        pkg = _package(module)
        for dep in sorted(deps):
            dep_pkg = _package(dep)
            if dep_pkg == pkg or (dep_pkg == ROOT and pkg != ROOT):
                continue
            if dep_pkg not in ALLOWED[pkg]:
                bad.append(f"{module} ({pkg}) imports {dep} ({dep_pkg})")
    return bad


def test_imports_follow_the_dependency_rule():
    bad = _violations(GRAPH)
    assert not bad, "imports against the dependency rule:\n" + "\n".join(bad)


def test_rule_checker_finds_violations():
    upward = {"her2mri.training.module": {"her2mri.runs.train"}, "her2mri.data.io": {"her2mri.stats.auc"}}
    assert len(_violations(upward)) == 2
    assert _violations({"her2mri.runs.train": {"her2mri.training.module", "her2mri.data.build"}}) == []


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of modules, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in graph:  # a package or a name that is not a module of its own
                    continue
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(sorted(graph[child]))))
                    break
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def test_no_import_cycle():
    """No cycle at all, lazy imports included (module -> checkpoint_io, never back: issue 12 item 5)."""
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_cycle():
    pkg_graph: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        pkg_graph.setdefault(_package(module), set()).update(_package(d) for d in deps)
    for pkg, deps in pkg_graph.items():
        deps.discard(pkg)
    cycle = _find_cycle(pkg_graph)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("gone", ["experiments", "training/run.py", "training/data_setup.py"])
def test_old_locations_are_gone(gone):
    assert not (PACKAGE_DIR / gone).exists(), f"her2mri/{gone} was moved (CHANGELOG.md)"
