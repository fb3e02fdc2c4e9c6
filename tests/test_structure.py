"""Structure rules that can fail: methods/ never import the engine; no function over 80 lines."""
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
