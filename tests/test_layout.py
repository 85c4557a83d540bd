"""The package's shape: which modules import which, and who touches private names.

Every module of trioraft/ is parsed with `ast`; an import counts wherever it stands (at the
top, inside a function, under `if TYPE_CHECKING:`), and importing `a.b.c` counts as
importing the package `a.b` too (Python runs its __init__ first).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "trioraft"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
TREES: dict[str, ast.Module] = {name: ast.parse(p.read_text()) for name, p in MODULES.items()}


def imported_names(module: str, tree: ast.Module) -> Iterator[str]:
    """The absolute names every import statement of `module` asks for."""
    is_package = MODULES[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def known_module(name: str) -> str | None:
    """The trioraft module `name` is (or lies in: `pkg.mod.attr` is `pkg.mod`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, tree in TREES.items():
        for name in imported_names(module, tree):
            target = known_module(name)
            if target is None or target == module:
                continue
            graph[module].add(target)
            parts = target.split(".")
            for k in range(1, len(parts)):
                package = ".".join(parts[:k])
                # a module's own packages are already imported when it runs
                if package in MODULES and not module.startswith(package + "."):
                    graph[module].add(package)
    return graph


GRAPH = import_graph()


def find_cycle(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """One cycle through the strongly connected `members`, as a path back to its start."""
    start = min(members)
    path, seen = [start], {start}
    while True:
        step = min(t for t in graph[path[-1]] if t in members)
        if step in seen:
            return [*path[path.index(step) :], step]
        path.append(step)
        seen.add(step)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The sets of modules that import each other round a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(members)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from trioraft.core.raft import Raft\n"
        "def f():\n    from trioraft.storage import wal\n"
    )
    names = set(imported_names("trioraft.closing", tree))
    assert {"trioraft.core.raft.Raft", "trioraft.storage.wal"} <= names


def test_a_cycle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    [members] = strongly_connected(graph)
    assert members == {"a", "b", "c"}
    assert find_cycle(graph, members) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    graph = GRAPH
    cycles = [" -> ".join(find_cycle(graph, members)) for members in strongly_connected(graph)]
    assert not cycles, "modules import each other round a loop:\n" + "\n".join(cycles)


#: the layers from the bottom up, and what each may import besides itself and trioraft/'s
#: top-level helpers (closing, wakeup, logs): layers below it, and the one allowance
#: above, commented (a prefix names a package or one module)
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (),
    "storage": ("core",),
    "transport": ("core",),
    "runtime": ("core", "storage", "transport"),
    # The commands are Redis's: a command's result is a Redis reply, and one forwarded to
    # the follower that sent the command travels RESP-encoded, as its client reads it.
    # Both modules belong with the protocol they define; moving them below the state
    # machine would only split the protocol in two.
    "kvstore": ("core", "runtime", "redis.replies", "redis.resp"),
    "redis": ("core", "storage", "transport", "runtime", "kvstore"),
    "ops": ("core", "storage", "transport", "runtime", "kvstore", "redis"),
}


def layer_of(module: str) -> str | None:
    """The package (layer) of a module, None for trioraft/'s top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module.endswith(tuple(LAYERS)) else None


def test_the_table_allows_whole_layers_only_below() -> None:
    order = list(LAYERS)
    above = [
        f"{layer} may import {prefix}"
        for layer, allowed in LAYERS.items()
        for prefix in allowed
        if "." not in prefix and order.index(prefix) >= order.index(layer)
    ]
    assert not above


def test_every_package_is_a_known_layer() -> None:
    packages = {p.parent.name for p in MODULES.values() if p.parent != ROOT}
    assert packages == set(LAYERS)


def test_the_top_level_helpers_import_no_layer() -> None:
    """closing, wakeup and logs lie below every layer, so that any layer may use them."""
    helpers = [m for m in MODULES if layer_of(m) is None and m.count(".") == 1]
    helpers.remove("trioraft.__main__")  # the entry point: it runs the command line
    wrong = sorted(f"{m} imports {t}" for m in helpers for t in GRAPH[m] if layer_of(t))
    assert "trioraft.logs" in helpers
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    allowed = tuple(f"trioraft.{prefix}" for prefix in (layer, *LAYERS[layer]))
    graph = GRAPH
    wrong = sorted(
        f"{module} imports {target}"
        for module in graph
        if layer_of(module) == layer
        for target in graph[module]
        if layer_of(target) is not None
        and MODULES[target].name != "__init__.py"  # a package: its modules are checked
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    )
    assert not wrong, "\n".join(wrong)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_defined(tree: ast.AST) -> set[str]:
    """The private names a module or class defines: functions, classes, variables,
    attributes it assigns, and `__slots__` entries."""
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            defined.add(node.value)
    return {name for name in defined if private(name)}


def private_reaches(module: str, tree: ast.Module) -> list[str]:
    """`x._name` outside the class that defines `_name`: a reach into the insides of
    another object. A class's private names are its own: its code may use them on itself
    and on another instance of it (a factory, a peer of the same kind), and its module
    may name them on the class (`Class._method` in a table of handlers)."""
    classes = {
        node.name: private_names_defined(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    reaches: list[str] = []

    def visit(node: ast.AST, own: set[str]) -> None:
        if isinstance(node, ast.ClassDef):
            own = own | classes[node.name]
        if isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own:
            receiver = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr not in classes.get(receiver, set()):
                where = f"{MODULES[module].relative_to(ROOT.parent)}:{node.lineno}"
                reaches.append(f"{where}: {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, own)

    visit(tree, set())
    return reaches


REACHES = """
class Node:
    def __init__(self):
        self._wake = None

    def copy(self, other):
        other._wake = self._wake  # another instance of its own class: fine

class Guard:
    def check(self, node):
        return node._wake  # into a Node: a reach

class Child(Node):
    def poke(self):
        return self._nudge  # a private name its own class does not define: a reach

HANDLERS = {"copy": Node._wake, "poke": Guard._wake}  # Node's own: fine; Guard has none
HELPER = kv._parse  # another module's private function: a reach
"""


def test_a_reach_into_another_objects_private_name_is_found() -> None:
    reaches = private_reaches("trioraft.closing", ast.parse(REACHES))
    assert [line.rpartition(": ")[2] for line in reaches] == [
        "node._wake",
        "self._nudge",
        "Guard._wake",
        "kv._parse",
    ]


def test_no_module_reaches_into_another_objects_private_names() -> None:
    reaches = [line for module, tree in TREES.items() for line in private_reaches(module, tree)]
    assert not reaches, "\n".join(reaches)
