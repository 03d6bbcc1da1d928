"""Imports run one way: arguments / layers -> weights -> models -> commands -> the package's ``__init__``.

Parses every module of ``mindcv_halonet`` (``ast``: imports inside functions count as much as top-level
ones), resolves each import to the package's modules, and fails on

* an upward import (a module importing a module of a higher layer),
* an import of MindCV (whose registry builds networks by name) from below the models,
* any cycle between modules, and
* a module that belongs to no layer (a new top-level module must be given one here).

The checker runs on a throw-away package too, with an injected upward import and a cycle, so that it
is seen to fail (:func:`test_the_checker_finds_an_injected_upward_import_and_a_cycle`).
"""
import ast
import pathlib
from typing import Dict, List, Set, Tuple

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1] / "mindcv_halonet"

#: layer of each top-level part of the package, bottom first; a module may import its own layer or lower
LAYERS = {
    "arguments": 0,  # argument checks: plain Python, no package imports
    "layers": 1,     # HaloAttention and friends
    "weights": 2,    # read, rename, strict match, Hub, caches, atomic files
    "models": 3,     # the family and its registration into MindCV
    "commands": 4,   # convert, check, export, complexity
    "": 5,           # mindcv_halonet/__init__.py
}
#: below this layer no module may import MindCV (its registry builds networks by name)
NO_MINDCV_BELOW = LAYERS["models"]


def modules_of(package_dir: pathlib.Path) -> Dict[str, pathlib.Path]:
    """``{dotted module name: file}``; a package is named by its ``__init__``."""
    name = package_dir.name
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([name] + parts)] = path
    return found


def _imported(module: str, path: pathlib.Path, known: Set[str]) -> List[Tuple[str, int]]:
    """``(imported module, line)`` of every import in ``path`` (any depth), resolved to ``known`` modules
    where they are the package's own; external modules are kept as written (their top name)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
            if len(submodules) < len(node.names):  # `from pkg import name`: pkg's own namespace is used
                out.append((target, node.lineno))
            out += [(name, node.lineno) for name in submodules]  # `from pkg import submodule`
    return out


def layer_of(module: str, root: str) -> int:
    rest = module[len(root) + 1:] if module != root else ""
    top = rest.split(".")[0]
    if top not in LAYERS:
        raise KeyError(module)
    return LAYERS[top]


def check_package(package_dir: pathlib.Path) -> List[str]:
    """Every violation, one line each (empty when the imports run one way)."""
    root = package_dir.name
    modules = modules_of(package_dir)
    problems, graph = [], {}
    for module, path in modules.items():
        try:
            own = layer_of(module, root)
        except KeyError:
            problems.append(f"{module}: belongs to no layer (add its top-level name to LAYERS)")
            continue
        edges = set()
        for target, line in _imported(module, path, set(modules)):
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if target.split(".")[0] == "mindcv" and own < NO_MINDCV_BELOW:
                problems.append(f"{where}: {module} (layer {own}) imports {target}: MindCV is above the weights")
            if target != root and not target.startswith(root + "."):
                continue
            # importing a.b.c runs the __init__ of a.b too, unless a.b is a package the importer is in (its
            # __init__ is running already, like the root's)
            parts = target.split(".")
            new = {target} if target in modules and target != module else set()
            for i in range(2, len(parts)):
                name = ".".join(parts[:i])
                if name in modules and name != module and not module.startswith(name + "."):
                    new.add(name)
            edges |= new
            for name in sorted(new):
                try:
                    theirs = layer_of(name, root)
                except KeyError:
                    continue
                if theirs > own:
                    problems.append(f"{where}: {module} (layer {own}) imports {name} (layer {theirs}): upward")
        graph[module] = edges
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return sorted(set(problems))


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component with more than one module (or a self-import)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_imports_run_one_way_without_cycles():
    problems = check_package(PACKAGE_DIR)
    assert problems == [], "\n".join(problems)


def test_every_layer_exists():
    tops = {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tops |= {p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"}
    assert tops == set(LAYERS) - {""}


def _write(root: pathlib.Path, files: Dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_an_injected_upward_import_and_a_cycle(tmp_path):
    clean = {
        "pkg/__init__.py": "from . import models\n",
        "pkg/arguments.py": "",
        "pkg/layers/__init__.py": "from pkg.arguments import *\n",
        "pkg/weights/__init__.py": "from . import cache\n",
        "pkg/weights/cache.py": "from ..layers import x\n",
        "pkg/models/__init__.py": "from pkg.weights.cache import y\nimport mindcv.models\n",
        "pkg/commands/__init__.py": "from pkg import models\n",
    }
    assert check_package(_write(tmp_path / "clean", clean) / "pkg") == []

    upward = dict(clean)
    upward["pkg/weights/cache.py"] = "def f():\n    from pkg.models import spec  # function-level\n"
    problems = check_package(_write(tmp_path / "upward", upward) / "pkg")
    assert any("pkg/weights/cache.py:2: pkg.weights.cache (layer 2) imports pkg.models (layer 3): upward" in p
               for p in problems), problems
    assert any(p.startswith("import cycle: ") and "pkg.models" in p and "pkg.weights.cache" in p for p in problems)

    registry = dict(clean)
    registry["pkg/weights/cache.py"] = "def f():\n    from mindcv.models import create_model\n"
    problems = check_package(_write(tmp_path / "registry", registry) / "pkg")
    assert problems == ["pkg/weights/cache.py:2: pkg.weights.cache (layer 2) imports mindcv.models: "
                        "MindCV is above the weights"], problems

    sideways = dict(clean)
    sideways["pkg/weights/a.py"] = "from . import b\n"
    sideways["pkg/weights/b.py"] = "def g():\n    from .a import h\n"
    problems = check_package(_write(tmp_path / "sideways", sideways) / "pkg")
    assert problems == ["import cycle: pkg.weights.a -> pkg.weights.b -> pkg.weights.a"], problems

    stray = dict(clean, **{"pkg/extra.py": ""})
    assert check_package(_write(tmp_path / "stray", stray) / "pkg") == [
        "pkg.extra: belongs to no layer (add its top-level name to LAYERS)"]
