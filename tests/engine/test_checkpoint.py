"""Checkpoints: atomic write, clear errors for missing/corrupt files, RNG round trip, rebuild."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from posegroup.engine import checkpoint as ck
from posegroup.engine.checkpoint import (CheckpointError, keypoint_set_from_dict, keypoint_set_to_dict,
                                         load_checkpoint, load_model, rng_state, save_checkpoint, set_rng_state)
from posegroup.skeleton import COCO17, CROWDPOSE14


def test_roundtrip_and_atomic(tmp_path):
    p = tmp_path / "deep" / "a.pt"
    save_checkpoint(p, {"model": {"w": torch.arange(3.0)}, "step": 7})
    st = load_checkpoint(p)
    assert st["step"] == 7 and torch.equal(st["model"]["w"], torch.arange(3.0))
    assert st["format"] == ck.FORMAT
    assert sorted(os.listdir(p.parent)) == ["a.pt"]          # no temp file left behind


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    p = tmp_path / "bad.pt"
    save_checkpoint(p, {"model": {"w": torch.zeros(1000)}})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])                     # truncated
    with pytest.raises(CheckpointError, match=r"bad\.pt: corrupt or unreadable checkpoint") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)
    p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"bad\.pt: corrupt"):
        load_checkpoint(p)
    torch.save({"weights": 1}, p)
    with pytest.raises(CheckpointError, match=r"bad\.pt: not a posegroup checkpoint"):
        load_checkpoint(p)
    torch.save({"model": {}}, p)
    with pytest.raises(CheckpointError, match=r"bad\.pt: checkpoint lacks 'config'"):
        load_model(p)


def test_rng_state_roundtrip():
    s = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(s)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


@pytest.mark.parametrize("ks", [COCO17, CROWDPOSE14])
def test_keypoint_set_roundtrip(ks):
    assert keypoint_set_from_dict(keypoint_set_to_dict(ks)) == ks


def test_load_model_rejects_wrong_weights(tmp_path):
    from posegroup.engine.config import merge_config
    cfg = merge_config({"method": {"name": "ae"}, "model": {"name": "tiny", "num_stacks": 1, "depth": 2}},
                       require_training=False)
    p = tmp_path / "m.pt"
    save_checkpoint(p, {"model": {"stem.0.conv.weight": torch.zeros(1)}, "config": cfg,
                        "keypoint_set": keypoint_set_to_dict(COCO17), "method": "ae"})
    with pytest.raises(CheckpointError, match=r"m\.pt: weights do not fit the configured model"):
        load_model(p)


class _Payload:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_payload_checkpoint_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, p)
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the file holds pickled Python objects") as e:
            load(p)
        assert "\n" not in str(e.value) and "--trust-checkpoint" in str(e.value)
    assert not marker.exists()                                 # the payload never ran
    # the documented escape hatch really is the unsafe path (here with a harmless payload)
    with ck.trusting():
        load_checkpoint(p)
    assert marker.exists()


def test_own_checkpoints_are_plain_data(tmp_path):
    np.random.randn()                                          # numpy holds a cached gaussian now
    random.random()
    s = rng_state()
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"model": {"w": torch.ones(2)}, "rng": s, "step": 3,
                        "config": {"a": (1, 2), "p": tmp_path, "n": np.float32(0.5), "_source": "x.yaml"}})
    torch.load(p, weights_only=True)                           # readable without any unpickling of code
    st = load_checkpoint(p)
    assert st["config"] == {"a": [1, 2], "p": str(tmp_path), "n": 0.5, "_source": "x.yaml"}
    expected = (random.random(), np.random.randn(), np.random.rand(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(5)
    set_rng_state(st["rng"])
    assert (random.random(), np.random.randn(), np.random.rand(), torch.rand(1).item()) == expected
    assert st["rng"]["numpy"]["keys"].dtype == torch.uint32
    with pytest.raises(TypeError, match="cannot store a object"):
        save_checkpoint(p, {"model": {}, "config": {"x": object()}})
    assert load_checkpoint(p)["step"] == 3                     # the failed save left the old file


def test_old_pickled_checkpoint_needs_trust(tmp_path):
    """A v1 checkpoint (NumPy's RNG state pickled as a tuple) is refused, read with trust=True."""
    p = tmp_path / "old.pt"
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"model": {"w": torch.ones(1)}, "rng": old_rng, "step": 4, "format": "posegroup-checkpoint-v1"}, p)
    with pytest.raises(CheckpointError, match=r"old\.pt: refused"):
        load_checkpoint(p)
    st = load_checkpoint(p, trust=True)
    a = (random.random(), np.random.rand())
    set_rng_state(st["rng"])
    assert (random.random(), np.random.rand()) == a


def test_stale_temp_files_are_found_and_removed(tmp_path):
    p = tmp_path / "last.pt"
    save_checkpoint(p, {"model": {}})
    stale = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".last.pt.x.tmp"]
    for q in stale:
        q.write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.zz.tmp").write_bytes(b"not ours")
    assert ck.stale_temp_files(p) == sorted(stale)
    assert sorted(ck.remove_stale_temp_files(p)) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == [".other.pt.zz.tmp", "last.pt"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")])
def test_a_failed_write_is_one_line_naming_the_file_and_cause(tmp_path, monkeypatch, error):
    """Disk full (or any write error): one CheckpointError line naming the file and the cause;
    the previous checkpoint stays and no temp file is left."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "step": 1})

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "step": 2})
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    assert ("No space left on device" in msg) if isinstance(error, OSError) else ("file write failed" in msg)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("name,kps,options,groups", [
    ("ae", COCO17, {}, [17, 17]),                                            # K heatmaps, K tags
    ("ae", CROWDPOSE14, {"tag_dim": 2, "segmentation": True, "seg_tag_dim": 3}, [14, 28, 4]),  # + fg, E
    ("personlab", COCO17, {}, [17, 34, 64, 34, 1]),                          # K, 2K, 2E, 2K, 1
])
def test_head_split_outputs_is_the_methods_output_groups(name, kps, options, groups):
    """``model.head_split: outputs`` builds one read-out per kind of output, hand-counted here;
    the network's prediction keeps the method's channel count."""
    from posegroup.methods import build_method
    method = build_method(name, kps, **options)
    assert method.output_groups == groups and sum(groups) == method.num_channels
    net = ck.build_model({"model": {"name": "tiny", "head_split": "outputs"}}, method)
    assert net.head_split == groups and len(net.branches[0]) == len(groups) - 1
    assert net(torch.zeros(1, 3, 64, 64))[-1].shape[1] == method.num_channels
    with pytest.raises(ValueError, match="head_split 'output' must be channel counts.*'outputs'"):
        ck.build_model({"model": {"name": "tiny", "head_split": "output"}}, method)
