"""Structure rules that can fail: methods/ never import the engine; methods never import each
other; no module uses another's private name; no function over 80 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "posegroup"

#: Longest function allowed (lines from ``def`` to its last line, docstring included).
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    """posegroup.methods.ae.bench for src/posegroup/methods/ae/bench.py (package for __init__)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (the text of ``module``),
    relative ones resolved, at any depth (imports inside functions too); ``from X import y``
    yields X and X.y."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [(node.lineno, mod)] + [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def is_engine(module: str) -> bool:
    return module == "posegroup.engine" or module.startswith("posegroup.engine.")


@pytest.mark.parametrize("source, engine", [
    ("from ...engine.predict import x", True), ("from ... import engine", True),
    ("import posegroup.engine.train", True), ("from posegroup.engine import benchmark", True),
    ("def f():\n    from ...engine import predict\n", True), ("from ...evaluation import to_coco_results", False),
    ("from .decode import group", False), ("from ..base import Method", False), ("import posegroup.evaluation", False),
])
def test_the_import_check_sees_every_spelling(source, engine):
    mods = [m for _, m in imported_modules(source, "posegroup.methods.ae.bench")]
    assert any(is_engine(m) for m in mods) == engine, mods


def test_methods_never_import_the_engine():
    """methods/ (core modules, settings, benchmark plug-ins, adapters) depend on data, skeleton
    and the neutral ``posegroup.evaluation``, never on ``posegroup.engine``."""
    bad = []
    for path in sorted((PACKAGE / "methods").rglob("*.py")):
        for line, mod in imported_modules(path.read_text(), _module_name(path), path.name == "__init__.py"):
            if is_engine(mod):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def method_of(module: str) -> str | None:
    """The method package a module belongs to (``ae`` for posegroup.methods.ae.decode), or None
    (the registry, ``common``, ``base``, ``settings`` and everything outside methods/)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["posegroup", "methods"] and (PACKAGE / "methods" / parts[2]).is_dir():
        return parts[2]
    return None


def test_methods_never_import_each_other():
    """A method's modules import only its own package and the shared ``methods.common`` /
    ``base`` / ``settings`` (what two methods share lives in ``methods/common.py``)."""
    bad = []
    for path in sorted((PACKAGE / "methods").rglob("*.py")):
        mine = method_of(_module_name(path))
        for line, mod in imported_modules(path.read_text(), _module_name(path), path.name == "__init__.py"):
            other = method_of(mod)
            if mine is not None and other is not None and other != mine:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def private_uses(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, ``module._name``) of every private name of another posegroup module that ``source``
    (the text of ``module``) uses: ``from M import _name`` or ``M._name`` with M imported as a
    module (relative imports resolved, at any depth)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    tree, modules, out = ast.parse(source), {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if not mod.startswith("posegroup"):
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and mod != module:
                    out.append((node.lineno, f"{mod}.{a.name}"))
                modules[a.asname or a.name] = f"{mod}.{a.name}"
        elif isinstance(node, ast.Import):
            modules.update((a.asname or a.name, a.name) for a in node.names if a.name.startswith("posegroup"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and modules[node.value.id] != module):
            out.append((node.lineno, f"{modules[node.value.id]}.{node.attr}"))
    return out


@pytest.mark.parametrize("source, found", [
    ("from .predict import _write", ["posegroup.engine.predict._write"]),
    ("def f():\n    from ..data.synthetic import _hw\n", ["posegroup.data.synthetic._hw"]),
    ("from . import train as t\nt._to_device(1)\n", ["posegroup.engine.train._to_device"]),
    ("from .predict import write\nfrom . import train as _train\nimport os\nos._exit(0)\n", []),
    ("from __future__ import annotations\n", []),
])
def test_the_private_name_check_sees_every_spelling(source, found):
    assert [n for _, n in private_uses(source, "posegroup.engine.benchmark")] == found


def test_no_private_name_used_across_modules():
    """A module uses only the public names of another (engine, CLI, methods, data...): what
    two modules share is public and documented where it is defined."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, name in private_uses(path.read_text(), _module_name(path), path.name == "__init__.py"):
            bad.append(f"{path.relative_to(PACKAGE)}:{line} uses {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module, method", [
    ("posegroup.methods.ae.decode", "ae"), ("posegroup.methods.personlab", "personlab"),
    ("posegroup.methods.common", None), ("posegroup.methods", None), ("posegroup.engine.train", None),
])
def test_method_of(module, method):
    assert method_of(module) == method


def long_functions(paths, root: Path = PACKAGE) -> list[str]:
    """``file:line name (N lines)`` of every function or method over :data:`MAX_FUNCTION_LINES`."""
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_the_length_check_counts_lines(tmp_path):
    f = tmp_path / "f.py"
    f.write_text("def short():\n    pass\n\n\ndef long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert long_functions([f], tmp_path) == [f"f.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_function_over_80_lines_anywhere():
    """Every function of the package (engine, decoders, targets, data, CLI...)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 30 and not long_functions(paths), "\n".join(long_functions(paths))


def method_names_in(source: str, names) -> list[tuple[int, str]]:
    """(line, text) of every string constant of ``source`` that is a method's name or starts with
    one followed by ``_``, ``.``, ``:`` or ``@`` (a config or run named by method: ``ae_posenet``)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if any(v == n or (v.startswith(n) and v[len(n):len(n) + 1] in ("_", ".", ":", "@")) for n in names):
                out.append((node.lineno, v))
    return out


@pytest.mark.parametrize("source, found", [
    ('x = "ae"', ["ae"]), ('f("personlab_posenet.yaml")', ["personlab_posenet.yaml"]), ('s = "ae@0.5"', ["ae@0.5"]),
    ('x = "aerial"', []), ('x = "the recurrent head"', []), ('# "ae"\nx = 1', []),
])
def test_the_method_name_check_sees_every_spelling(source, found):
    assert [v for _, v in method_names_in(source, ("ae", "personlab", "recurrent"))] == found


def test_engine_and_cli_name_no_method():
    """The engine and the CLI take every method from the registry, the methods' classes and the
    recipes file (``configs/recipes/methods.yaml``), never from a literal of their own."""
    from posegroup.methods import METHODS
    files = sorted((PACKAGE / "engine").glob("*.py")) + [PACKAGE / "cli.py"]
    faults = [f"{p.relative_to(PACKAGE)}:{line}: {text!r}" for p in files
              for line, text in method_names_in(p.read_text(), METHODS)]
    assert not faults, "\n".join(faults)


def test_a_bad_recipe_is_one_line_naming_the_key(tmp_path):
    import yaml

    from posegroup.engine.recipes import RECIPES, RecipeError, recipes
    doc = yaml.safe_load(RECIPES.read_text())
    assert recipes()["demo"]["methods"] == doc["demo"]["methods"]
    doc["benchmark_methods"]["tiny"]["rows"].append(["x", "no_such_stage", {}])
    bad = tmp_path / "methods.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(RecipeError, match=r"benchmark_methods\.tiny: row .*no_such_stage") as err:
        recipes(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    doc = yaml.safe_load(RECIPES.read_text())
    doc["demo"]["methods"]["pose_transformer"] = {"config": "ae_tiny_synthetic", "steps": 10}
    bad.write_text(yaml.safe_dump(doc))
    recipes.cache_clear()
    with pytest.raises(RecipeError, match=r"demo\.methods\.pose_transformer"):
        recipes(bad)


def names_called(source: str) -> set[str]:
    """The names of every function ``source`` calls (``f(...)`` and ``x.f(...)``)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return out


def test_one_overwrite_refusal_and_one_per_image_step():
    """The "pass --overwrite" refusal is worded in ``posegroup.files.refuse_existing`` alone; in
    the engine and the CLI only ``engine/predict.py`` (its per-image step ``predict_image`` and
    dataset loop ``predict_over``) turns poses into COCO results."""
    refusals = [f"{p.relative_to(PACKAGE)}:{node.lineno}" for p in sorted(PACKAGE.rglob("*.py")) if p.name != "files.py"
                for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and "pass --overwrite" in node.value]
    assert not refusals, refusals
    files = sorted((PACKAGE / "engine").glob("*.py")) + [PACKAGE / "cli.py"]
    converting = [p.name for p in files if "to_coco_results" in names_called(p.read_text())]
    assert converting == ["predict.py"], converting


def test_a_demo_recipe_names_its_training_crowding(tmp_path):
    """``demo.methods.<m>.crowding`` picks the method's training split (``train`` for sparse, one
    per other level list); a level that is not sparse / medium / heavy is one line naming the key."""
    import yaml

    from posegroup.engine.demo import train_split
    from posegroup.engine.recipes import RECIPES, RecipeError, recipes
    assert train_split({"config": "x"}) == "train"
    assert train_split({"crowding": "sparse,medium,heavy"}) == "train_sparse_medium_heavy"
    doc = yaml.safe_load(RECIPES.read_text())
    doc["demo"]["methods"]["recurrent"]["crowding"] = "sparse,crowded"
    bad = tmp_path / "crowding.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(RecipeError, match=r"demo\.methods\.recurrent\.crowding: .*'sparse,crowded'"):
        recipes(bad)


def test_the_engine_probes_no_model_hook():
    """The engine asks the method (``Method.EXPORT_GRAPH``, ``Method.load_init_state``) and reads
    the attributes every network has (``stride``, ``input_multiple``): no getattr / hasattr of a
    model hook in engine/ or cli.py."""
    hooks = ("export_forward", "load_init_state", "stride", "input_multiple", "backbone", "predict_true_ids")
    faults = []
    for p in sorted((PACKAGE / "engine").glob("*.py")) + [PACKAGE / "cli.py"]:
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in hooks):
                faults.append(f"{p.relative_to(PACKAGE)}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    assert not faults, "\n".join(faults)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a module import graph (module -> modules it imports), a package and its own
    modules apart (``posegroup.methods`` importing ``posegroup.methods.ae`` is no cycle)."""
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if related(u, v):
                continue
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    return cycles


def test_the_cycle_check_sees_a_cycle():
    assert import_cycles({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == [["p.a", "p.b", "p.c", "p.a"]]
    assert import_cycles({"p": {"p.a"}, "p.a": {"p"}, "p.b": {"p.a"}}) == []


def test_no_import_cycle():
    """No module imports, at any depth of its code, a module that imports it back."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for _, mod in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            while mod and mod not in modules:
                mod = mod.rsplit(".", 1)[0] if "." in mod else ""
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    assert import_cycles(graph) == []
