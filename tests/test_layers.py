"""The package's layers (docs/concepts.md): no module imports a higher layer, and the modules'
top-level imports form no circle. Read from the source with ``ast``, so nothing is imported."""

from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ebmjax"

# Layer of each module, by the longest matching prefix of its dotted name.
LAYERS = {
    "ebmjax.errors": 1, "ebmjax.keys": 1, "ebmjax.losses": 1, "ebmjax.samplers": 1, "ebmjax.schedules": 1,
    "ebmjax.ops": 1,
    "ebmjax.io": 2, "ebmjax.visualize": 2, "ebmjax.memory": 2, "ebmjax.optim": 2, "ebmjax.parallel": 2,
    "ebmjax.models": 2, "ebmjax.data": 2,
    "ebmjax.config": 3, "ebmjax.methods": 3, "ebmjax.train": 3, "ebmjax.chains": 3, "ebmjax.restoration": 3, "ebmjax.evaluation": 3,
    "ebmjax.apps": 4, "ebmjax.main": 4, "ebmjax.compare": 4, "ebmjax.bench": 4,
}


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer(name: str) -> int:
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len, default=None)
    assert best is not None, f"{name} has no layer: add it to LAYERS (and to docs/concepts.md)"
    return LAYERS[best]


def resolve(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(name: str, top_level_only: bool) -> set[str]:
    """The ebmjax modules ``name`` imports (those under ``if TYPE_CHECKING:`` left out)."""
    tree = ast.parse(MODULES[name].read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(resolve(a.name) for a in node.names if a.name.startswith("ebmjax"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ebmjax"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else resolve(node.module))
    out.discard(name)
    out.discard("ebmjax")
    return out


def test_every_module_has_a_layer_and_imports_none_above_it():
    upward = [f"{m} (layer {layer(m)}) imports {i} (layer {layer(i)})"
              for m in MODULES if m != "ebmjax" for i in imports(m, top_level_only=False) if layer(i) > layer(m)]
    assert not upward, "\n".join(upward)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports in ``graph`` (module -> the modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            # A package importing its own submodules (its __init__) is how packages are built.
            if n.startswith(m + "."):
                continue
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if state.get(n) is None and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if state.get(m) is None and (circle := visit(m)):
            return circle
    return None


def test_no_import_circles():
    circle = find_circle({m: imports(m, top_level_only=True) for m in MODULES if m != "ebmjax"})
    assert circle is None, " -> ".join(circle)


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A layer-1 module importing the command line is caught, and so is a circle."""
    fake = tmp_path / "ebmjax"
    (fake / "apps").mkdir(parents=True)
    (fake / "losses.py").write_text("from ebmjax.apps import main\n")
    (fake / "apps" / "__init__.py").write_text("")
    (fake / "apps" / "main.py").write_text("def f():\n    import ebmjax.losses\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {module_name(p, fake): p for p in fake.rglob("*.py")})
    assert imports("ebmjax.losses", top_level_only=False) == {"ebmjax.apps.main"}
    assert layer("ebmjax.losses") < layer("ebmjax.apps.main")
    assert imports("ebmjax.apps.main", top_level_only=True) == set()  # a lazy import is no circle
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"p": {"p.q"}, "p.q": {"p"}}) is None  # a package and its submodule
