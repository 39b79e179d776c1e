"""The package's layers (DESIGN.md section 1, docs/architecture.md): every module imports only from its own layer
or those below it, the module import graph has no cycle, and no onnxprune module imports inside a function to
dodge one. Checked on the source files, so the mapped folders (op_handlers/, models/) are seen as the
``onnxprune.op_handlers`` / ``onnxprune.models`` packages they install as."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"onnxprune": "onnxprune", "op_handlers": "onnxprune.op_handlers", "models": "onnxprune.models"}
# Bottom to top; a module may import from its own layer and any layer below it.
LAYERS = [
    ("onnxprune.errors", "onnxprune.axes", "onnxprune.progress"),
    ("onnxprune.ir",),
    ("onnxprune.runtime",),
    ("onnxprune.data",),
    ("onnxprune.handlers",),
    ("onnxprune.op_handlers",),
    ("onnxprune.analysis",),
    ("onnxprune.scoring",),
    ("onnxprune.selection",),
    ("onnxprune.apply",),
    ("onnxprune.reconstruct",),
    ("onnxprune.validation",),
    ("onnxprune.genai",),
    ("onnxprune.search",),
    ("onnxprune.report",),
    ("onnxprune.pipeline",),
    ("onnxprune.cli", "onnxprune.models", "onnxprune.torch"),
    ("onnxprune",),  # the package's __init__: the public API over everything
]
# Function-level imports of our own modules that are not about layers: optional dependencies (torch for models/).
ALLOWED_LOCAL_IMPORTS = {("onnxprune.cli", "onnxprune.models"), ("onnxprune.cli", "onnxprune.models.trained"),
                         ("onnxprune.cli", "onnxprune.torch")}


def modules() -> dict[str, Path]:
    """{dotted module name: file} for every module the wheel installs."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported onnxprune module, imported inside a function?) for every import in the module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append((target, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def layer_of(name: str) -> int:
    """Index in LAYERS of the deepest layer prefix that holds ``name``."""
    best, depth = None, -1
    for k, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = k, len(prefix)
    assert best is not None, f"module {name} is in no layer: add it to LAYERS"
    return best


def graph() -> dict[str, list[tuple[str, bool]]]:
    """{module: [(imported module, inside a function?)]} over every module (``if TYPE_CHECKING:`` imports count)."""
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_imports_only_its_own_layer_or_below():
    wrong = [f"{name} (layer {LAYERS[layer_of(name)][0]}) imports {target} (layer {LAYERS[layer_of(target)][0]})"
             for name, targets in graph().items() for target, _ in targets if layer_of(target) > layer_of(name)]
    assert not wrong, "\n".join(wrong)


def test_no_function_level_imports_of_our_own_modules():
    wrong = [f"{name} imports {target} inside a function" for name, targets in graph().items()
             for target, local in targets if local and (name, target) not in ALLOWED_LOCAL_IMPORTS]
    assert not wrong, "\n".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the directed graph ``edges`` as a list of nodes (first == last), or [] when there is none."""
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt])
                return True
            if state.get(nxt) is None and visit(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(edges):
        if state.get(start) is None and visit(start, [start]):
            break
    return cycle


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle({name: {t for t, _ in targets} for name, targets in graph().items()})
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_layer_checker_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The check can fail: a handler family importing the analysis is reported."""
    fake = tmp_path / "op_handlers"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("from onnxprune.analysis import DependencyGraph\n")
    known = set(modules()) | {"onnxprune.op_handlers.bad"}
    found = imports("onnxprune.op_handlers.bad", fake / "bad.py", known)
    assert found == [("onnxprune.analysis", False)]
    assert layer_of("onnxprune.analysis") > layer_of("onnxprune.op_handlers.bad")
