"""The package works installed, not only checked out: the wheel holds the bundled configs, and
``posegroup demo`` of a non-editable install runs in an empty folder far from the checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env, timeout=600):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.mark.slow   # ~40 s: a wheel build, a venv and a tiny demo run
def test_wheel_has_configs_and_installed_demo_needs_no_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1")
    # build from a copy of the sources, so the build leaves nothing in the (shared) checkout
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    shutil.copytree(REPO / "src" / "posegroup", tree / "src" / "posegroup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", ".", "-w", dist], tree, env)
    wheel, = dist.glob("posegroup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = sorted(p.name for p in (REPO / "src" / "posegroup" / "configs").glob("*.yaml"))
    assert "ae_tiny_synthetic.yaml" in bundled
    assert {f"posegroup/configs/{n}" for n in bundled} <= names

    venv = tmp_path / "venv"      # the test environment's packages (torch...), posegroup from the wheel
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    py = venv / "bin" / "python"
    # The running interpreter's site folders, named in a .pth (plain paths: their own .pth files,
    # such as an editable posegroup's, are not read). --system-site-packages would not do: a venv
    # made from a virtualenv's Python sees the base installation's site, not that virtualenv's.
    site_dir = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip())
    parent = [p for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    assert parent, sys.path
    (site_dir / "test_environment.pth").write_text("".join(f"{p}\n" for p in parent))
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    assert not run_dir.resolve().is_relative_to(REPO)
    where = _run([py, "-c", "import posegroup; print(posegroup.__file__)"], run_dir, env).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where     # the installed copy, not src/
    assert not Path(where).resolve().is_relative_to(REPO)

    exe = venv / "bin" / "posegroup"
    listed = _run([exe, "train", "--list"], run_dir, env)
    assert "ae_tiny_synthetic" in listed and "site-packages" in listed and str(REPO) not in listed
    # the demo on the shipped weights of every method (few images), which the wheel holds
    shipped = sorted(p.name for p in (REPO / "src" / "posegroup" / "weights").iterdir())
    assert "manifest.json" in shipped and {f"posegroup/weights/{n}" for n in shipped} <= names
    _run([exe, "--quiet", "demo", "--out", "demo", "--val-images", "4"], run_dir, env)
    out = run_dir / "demo"
    assert (out / "ap_table.md").is_file() and list(out.glob("results_*.json"))
    assert list((out / "pictures").glob("*.png"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["demo"]       # wrote nowhere else in the folder
