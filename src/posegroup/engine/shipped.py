"""The models shipped inside the package (``posegroup/weights/``): their manifest and files by name."""
from __future__ import annotations

import json
from pathlib import Path

#: The shipped weights and the figures recorded when they were made.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def shipped_manifest() -> dict:
    """The shipped weights' manifest: ``{method: {file, steps, seed, AP: {split: AP}, ...}}``
    ({} when the package ships none)."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def shipped_model(name: str) -> Path | None:
    """The file of the model shipped in the package under ``name`` (a method of the demo:
    ``ae``, ``personlab``, ``recurrent``), or None when ``name`` names none."""
    entry = shipped_manifest().get(name) if "/" not in name and "." not in name else None
    return None if entry is None else WEIGHTS_DIR / entry["file"]
