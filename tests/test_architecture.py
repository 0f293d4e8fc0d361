"""kerastk's floors (ARCHITECTURE.md), read from the package's own import statements - every `import` and `from
... import`, at module level or inside a function: no module imports a higher floor, no import circle, the
deployment runtime never reaches keras or a backend, and no module uses another module's private name.

Pure source reading (no keras, no backend): runs once, under the first backend."""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

PACKAGE = Path(__file__).resolve().parent.parent / "kerastk"

#: The floors, lowest first: a module may import its own floor and the floors below, never one above.
#: (Mirrored in ARCHITECTURE.md; the first pattern that matches a module names its floor.)
FLOORS = [
    ("ground", ["kerastk", "kerastk.core", "kerastk.core.*"]),
    ("blocks", ["kerastk.backend", "kerastk.layers", "kerastk.layers.*", "kerastk.losses", "kerastk.metrics",
                "kerastk.data", "kerastk.data.*", "kerastk.flops", "kerastk.viz", "kerastk.viz.*"]),
    ("models", ["kerastk.models", "kerastk.models.*"]),
    ("training pieces", ["kerastk.optimizers", "kerastk.callbacks", "kerastk.diagnostics", "kerastk.distribute",
                         "kerastk.rl"]),
    ("deploy runtime", ["kerastk.deploy", "kerastk.deploy.runtime", "kerastk.deploy.metadata",
                        "kerastk.deploy.detection", "kerastk.deploy.parity", "kerastk.deploy.timing",
                        "kerastk.deploy.openvino", "kerastk.deploy.serve", "kerastk.deploy.serve.*"]),
    ("deploy build", ["kerastk.deploy.*"]),
    ("runner", ["kerastk.training"]),
    ("bench", ["kerastk.bench", "kerastk.bench.*"]),
    ("cli", ["kerastk.cli"]),
]

#: Floors whose modules a deployment imports with numpy + onnxruntime alone: nothing they import, directly or
#: through other kerastk modules, may import one of these.
KERAS_FREE = {"ground", "deploy runtime"}
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "tf2onnx", "jax2onnx", "onnxscript")


def _modules() -> dict:
    """{dotted module name: path} for every .py file of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str:
    """The kerastk module a dotted import name lands in (a name imported from a module resolves to the module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _parse(module: str):
    path = MODULES[module]
    return ast.parse(path.read_text(), filename=str(path)), path.name == "__init__.py"


def _imports(module: str):
    """(imported kerastk module, names imported from it, line) and external top-level packages, for `module`."""
    tree, is_package = _parse(module)
    package = module if is_package else module.rpartition(".")[0]
    internal, external = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kerastk":
                    internal.append((_resolve(alias.name), [], node.lineno))
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "kerastk":
                external.add(source.split(".")[0])
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:  # `from kerastk.deploy import quantize`: the submodule itself
                    internal.append((full, [], node.lineno))
                else:
                    internal.append((_resolve(source), [alias.name], node.lineno))
    return internal, external


def _floor(module: str) -> int:
    for i, (_, patterns) in enumerate(FLOORS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    raise AssertionError(f"{module} matches no floor in FLOORS: give it one (and in ARCHITECTURE.md)")


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_floor():
    floors = {m: FLOORS[_floor(m)][0] for m in MODULES}
    assert floors["kerastk.core.boxes"] == "ground" and floors["kerastk.deploy.export"] == "deploy build"
    assert len(floors) >= 85  # the whole package was read


def test_no_upward_import():
    upward = []
    for module, (internal, _) in GRAPH.items():
        for target, _, line in internal:
            if target != module and _floor(target) > _floor(module):
                upward.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} {module} "
                              f"({FLOORS[_floor(module)][0]}) imports {target} ({FLOORS[_floor(target)][0]})")
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def _cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

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

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    edges = {m: sorted({t for t, _, _ in internal if t != m}) for m, (internal, _) in GRAPH.items()}
    assert _cycles(edges) == []
    # the check itself finds a circle when there is one
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


def _parents(module: str) -> list:
    """The packages Python imports before `module` (kerastk.deploy before kerastk.deploy.runtime)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_deployment_runtime_never_reaches_keras():
    reached = {}
    for start in (m for m in MODULES if FLOORS[_floor(m)][0] in KERAS_FREE):
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo += [t for t, _, _ in GRAPH[m][0]] + _parents(m)
        for m in seen:
            frameworks = sorted(GRAPH[m][1] & set(FRAMEWORKS))
            if frameworks:
                reached.setdefault(start, []).append(f"{m} imports {', '.join(frameworks)}")
    assert not reached, "\n".join(f"{k}: {v}" for k, v in reached.items())


def _private_uses(module: str) -> list:
    tree, _ = _parse(module)
    internal, _ = GRAPH[module]
    uses = [f"{module}:{line} imports {target}.{name}" for target, names, line in internal for name in names
            if target != module and name.startswith("_") and not name.startswith("__")]
    uses += [f"{module}:{line} imports private module {target}" for target, _, line in internal
             if target != module and any(p.startswith("_") for p in target.split("."))
             and target.rpartition(".")[0] != module.rpartition(".")[0] and target.rpartition(".")[0] != module]
    # attribute access on an imported kerastk module: `quantize._unnamed`
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kerastk"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kerastk") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return uses


def test_no_private_name_used_outside_its_module():
    uses = [u for m in MODULES for u in _private_uses(m)]
    assert not uses, "private names used outside their module:\n" + "\n".join(uses)
