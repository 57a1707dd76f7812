"""The import graph keeps its layers (docs/architecture.md): the application (app, ui, the CLI, batch, the
benchmarks, the training tools) above the engine (attribution) and the model zoo, which meet only in two
leaf modules (attribution.errors, attribution.common); no import cycle between modules.

Read from the source with ``ast`` (imports inside functions count too), so a new crossing fails here at once.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attribution", "model_zoo", "ui")
LEAVES = {"attribution.errors", "attribution.common"}
# The application layer: what starts a program or a request. Nothing below imports it.
APPLICATION = {"app", "attribution.cli", "attribution.batch", "attribution.__main__", "attribution.cache",
               "attribution.sanity"}
APPLICATION_PREFIXES = ("ui", "benchmarks")
# Tools that train the verification models and write their example clips: they use the engine to check what they
# trained (blur, metrics) and the video writer, so they sit with the application.
TOOLS = {"model_zoo.groundtruth", "model_zoo.toy_train"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [ROOT / "app.py", *sorted((ROOT / "benchmarks").glob("*.py"))]
    for pkg in PACKAGES:
        files += sorted((ROOT / pkg).rglob("*.py"))
    return {_module_name(f): f for f in files}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (the longest known prefix), or None for a third-party one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    """Every project module ``module`` imports, anywhere in its source."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            target = _resolve(n)
            if target and target != module:
                out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def layer(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    if module in APPLICATION or module in TOOLS or module.split(".")[0] in APPLICATION_PREFIXES:
        return "application"
    return "engine" if module.split(".")[0] == "attribution" else "model_zoo"


def test_the_graph_is_read():
    assert {"app", "attribution.step", "attribution.pipeline", "model_zoo.classifier", "ui.callbacks"} <= set(MODULES)
    assert "attribution.pipeline" in GRAPH["ui.callbacks"] and "attribution.common" in GRAPH["model_zoo"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_goes_back_up(module):
    """The engine imports neither the model zoo nor the application; the model zoo imports only the leaves of
    the engine; the leaves import nothing of the project but each other."""
    mine = layer(module)
    allowed = {"leaf": {"leaf"}, "engine": {"leaf", "engine"}, "model_zoo": {"leaf", "model_zoo"},
               "application": {"leaf", "engine", "model_zoo", "application"}}[mine]
    wrong = sorted(t for t in GRAPH[module] if layer(t) not in allowed)
    assert not wrong, f"{module} ({mine}) imports {wrong}"


def test_no_import_cycle():
    """No module reaches itself through the imports of others (a package's __init__ importing its own modules
    is the package, not a cycle, and is left out)."""
    def edges(m):
        return {t for t in GRAPH[m] if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2
    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_no_private_name_is_used_across_modules():
    """``from x import _name`` and ``x._name`` of another project module: a private name is its module's own."""
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and _resolve(node.module):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        offenders.append(f"{module}: from {node.module} import {a.name}")
                    elif _resolve(f"{node.module}.{a.name}"):
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if _resolve(a.name):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                offenders.append(f"{module}: {aliases[node.value.id]}.{node.attr}")
    assert not offenders, offenders
