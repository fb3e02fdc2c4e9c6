"""Shared test fixtures. Real data lives in ../shared/data (never committed); tests that need it
skip cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("POSEGROUP_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    """Path to one file under ../shared/data, skipping when missing."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def coco_val_gt(shared_data) -> Path:
    """The 511 complete COCO val2017 images' keypoint annotations (official-equivalent AP)."""
    return shared_file("coco_val2017_kp/person_keypoints_val2017_gtcomplete511.json")


@pytest.fixture
def one_thread():
    """torch on one thread during the test (CI has 2 cores; results do not depend on the
    machine's thread count), the previous count restored after it."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
