"""The first-party import graph: no cycles, and the layers import only downwards.

Every `import` counts, also those inside functions: an import moved into a
function to dodge a cycle still makes two modules that cannot be understood
(or tested) one without the other. The layering rules are DESIGN.md's:
`app` may use `ui` and `server`; `ui` never imports `server` (it talks HTTP);
`server` never imports `app` or `ui`. The one exception is a shared leaf: a
module of `server` that imports nothing first-party (DESIGN.md lets `ui` use
the server's shared pieces, not its internals), such as `server.atomicfile`,
which every layer uses to replace a file whole.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "server", "ui")
#: Modules every layer may import: each imports no first-party module, so using one pulls in nothing else.
SHARED_LEAVES = frozenset({"server.atomicfile"})
#: Their packages, whose `__init__` runs on the import too (`from server import atomicfile` names `server`).
SHARED_PACKAGES = frozenset(leaf.rpartition(".")[0] for leaf in SHARED_LEAVES)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """The first-party modules `path` imports (a `from package import module` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for target in targets:
            # the longest known module the name starts with (`a.b.c` → module `a.b` if `c` is a name in it)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    known = set(modules)
    return {name: set(imported(path, name, known)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path `a → … → a`, or None (iterative DFS, colours white/grey/black)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(child) == 1:
                # a package's __init__ importing its own submodules is not a cycle between modules
                return path[path.index(child) :] + [child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_the_graph_is_read_from_real_imports() -> None:
    graph = import_graph()
    assert "app.session" in graph["app.repl"]
    assert "app.repl" in graph["app.commands.run"]
    assert any(m.startswith("server.") for m in graph["app.cli"])


def test_no_import_cycle_among_first_party_modules() -> None:
    graph = import_graph()
    # a package's __init__ re-exporting its submodules is one module in two files, not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and t in graph)}
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


@pytest.mark.parametrize(("layer", "forbidden"), [("server", ("app", "ui")), ("ui", ("app", "server"))])
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...]) -> None:
    graph = import_graph()
    wrong = sorted(
        f"{name} → {target}"
        for name, targets in graph.items()
        if name.split(".")[0] == layer
        for target in targets
        if target.split(".")[0] in forbidden and target not in SHARED_LEAVES | SHARED_PACKAGES
    )
    assert not wrong


@pytest.mark.parametrize("leaf", sorted(SHARED_LEAVES))
def test_shared_leaves_import_nothing_first_party(leaf: str) -> None:
    graph = import_graph()
    assert leaf in graph
    assert graph[leaf] == set()
    # the package's own `__init__` runs on import too: it must stay free of imports as well
    assert graph[leaf.rpartition(".")[0]] == set()


def test_ui_uses_the_shared_atomic_writer() -> None:
    """The exception is used, not only allowed: the desktop's settings go through it."""
    assert "server.atomicfile" in import_graph()["ui.settings_store"]
