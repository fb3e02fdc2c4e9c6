"""The recipes of ``posegroup demo`` and ``posegroup benchmark methods``, read from the package's
``configs/recipes/methods.yaml``: which bundled config trains each method, its budget, which run
initialises which, and the rows scored. The engine takes every method name from there."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "configs" / "recipes" / "methods.yaml"


class RecipeError(ValueError):
    """A fault in the recipes file: one line naming the file and the key."""


@lru_cache(maxsize=None)
def recipes(path: str | Path = RECIPES) -> dict:
    """The recipes file, checked (:func:`check_recipes`)."""
    import yaml
    doc = yaml.safe_load(Path(path).read_text())
    check_recipes(doc, str(path))
    return doc


def demo_crowding(entry: dict) -> str:
    """The crowding of a demo method's synthetic training scenes (``demo.methods.<name>.crowding``,
    default ``sparse``; a comma list mixes levels)."""
    return str(entry.get("crowding", "sparse"))


def check_recipes(doc, source: str) -> None:
    """Every demo method and every stage names a known method and a bundled config; every row
    names a stage of its profile; a fault is a one-line :class:`RecipeError`."""
    from ..methods import METHODS
    from .config import bundled_configs
    configs = bundled_configs()
    if not isinstance(doc, dict) or not isinstance(doc.get("demo", {}).get("methods"), dict):
        raise RecipeError(f"{source}: needs demo.methods, a mapping of method -> {{config, steps}}")
    for name, entry in doc["demo"]["methods"].items():
        if name not in METHODS or entry.get("config") not in configs or not int(entry.get("steps", 0)) > 0:
            raise RecipeError(f"{source}: demo.methods.{name}: a method ({sorted(METHODS)}) with a bundled "
                              f"config and steps > 0, got {entry!r}")
        levels = demo_crowding(entry).split(",")
        if not set(levels) <= {"sparse", "medium", "heavy"}:
            raise RecipeError(f"{source}: demo.methods.{name}.crowding: a comma list of sparse, medium, heavy, "
                              f"got {entry.get('crowding')!r}")
    for backbone, profile in (doc.get("benchmark_methods") or {}).items():
        where = f"{source}: benchmark_methods.{backbone}"
        stages = profile.get("stages", []) + profile.get("ablation_stages", [])
        for stage in stages:
            if stage.get("config") not in configs or not 0 < float(stage.get("share", 0)) <= 1:
                raise RecipeError(f"{where}: stage {stage.get('name')!r} needs a bundled config and a share "
                                  f"in (0, 1], got {stage!r}")
        names = {s["name"] for s in stages}
        rows = profile.get("rows", []) + profile.get("ablation_rows", [])
        for row in rows:
            if len(row) != 3 or row[1] not in names:
                raise RecipeError(f"{where}: row {row!r} must be [name, stage, test overrides] of a stage "
                                  f"of the profile ({sorted(names)})")
        for claim in profile.get("claims", []):
            if not {claim.get("with"), claim.get("without")} <= {r[0] for r in rows} or "paper" not in claim:
                raise RecipeError(f"{where}: claim {claim.get('claim')!r} needs rows 'with' and 'without' of the "
                                  f"profile and the paper's words, got {claim!r}")


def demo_methods() -> dict[str, dict]:
    """``{method: {config, steps}}`` of ``posegroup demo``, in training order."""
    return dict(recipes()["demo"]["methods"])


def benchmark_profiles() -> dict[str, dict]:
    """``{backbone: profile}`` of ``posegroup benchmark methods`` (see the recipes file)."""
    return dict(recipes()["benchmark_methods"])
