"""``predict --ray``: a local Ray (2 CPUs) over a folder of synthetic images gives, merged, the
single-process ``predict`` results; a rerun recomputes only the missing shards; a video is
refused (videos go through the normal predict path)."""
from __future__ import annotations

import json

import pytest

from posegroup.cli import main
from tests.helpers import make_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ray_refuses_a_video(tmp_path, capsys):
    """One line naming the clip, exit 2, before any model or Ray is loaded (the weights do not exist)."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 16)
    out = tmp_path / "out"
    assert main(["predict", str(clip), "--weights", str(tmp_path / "absent.pt"), "--ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(clip) in err[0] and "video" in err[0] and "without --ray" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_ray_predict_equals_predict_and_resumes(tmp_path):
    """One Ray init; the first run on 2 workers (2 shards of 2 images), the resume on 1 worker.
    ~35 s on the loaded 2-core CPU (was 44-101 s): Ray's start and each worker's imports dominate."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from posegroup.engine.predict import PredictError
    from posegroup.engine.ray_predict import predict_ray
    from posegroup.engine.train import train
    ann = make_dataset(tmp_path / "data", 4, size=64, people=(1, 3), seed=4)
    cfg = tiny_config(ann, tmp_path / "run", steps=1)
    cfg["model"].update(base_width=8, width_increase=4)
    cfg["method"]["options"].update(detection_threshold=0.001, top_k=5, max_people=5)
    ckpt = train(cfg, progress=False)["checkpoint"]
    folder = str(ann.parent)
    assert main(["--quiet", "predict", folder, "--weights", str(ckpt), "--out", str(tmp_path / "one"), "--no-draw"]) == 0
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    assert {r["image_id"] for r in single} == {0, 1, 2, 3}          # every image has people (both shards)
    spec = {"path": str(ckpt), "format": None, "trust_checkpoint": False}      # what the CLI's flags give
    shards = tmp_path / "ray" / "shards"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["--quiet", "predict", folder, "--weights", str(ckpt), "--ray", "--num-workers", "2",
                     "--shard-size", "2", "--out", str(tmp_path / "ray")]) == 0
        assert sorted(p.name for p in shards.glob("shard_*.json")) == ["shard_00000.json", "shard_00001.json"]
        assert json.loads((tmp_path / "ray" / "results.json").read_text()) == single
        (shards / "shard_00001.json").unlink()
        kept = (shards / "shard_00000.json").stat().st_mtime_ns
        s = predict_ray(spec, folder, out_dir=tmp_path / "ray", num_workers=1, shard_size=2, progress=False)
        assert s["computed"] == [1]                                   # finished shards are not recomputed
        assert (shards / "shard_00000.json").stat().st_mtime_ns == kept
        assert json.loads((tmp_path / "ray" / "results.json").read_text()) == single
        with pytest.raises(PredictError, match="shards of another run"):
            predict_ray(spec, folder, out_dir=tmp_path / "ray", num_workers=2, shard_size=3, progress=False)
        posenet = _posenet_checkpoint(ann, tmp_path / "posenet")          # a model on the real backbone
        for out, extra in (("pn_one", []), ("pn_ray", ["--ray", "--num-workers", "2", "--shard-size", "2"])):
            assert main(["--quiet", "predict", folder, "--weights", str(posenet), "--out", str(tmp_path / out),
                         "--no-draw", *extra]) == 0
        alone = json.loads((tmp_path / "pn_one" / "results.json").read_text())
        assert alone and json.loads((tmp_path / "pn_ray" / "results.json").read_text()) == alone
    finally:
        ray.shutdown()


def test_model_spec_of_the_command_line(tmp_path):
    """The workers' model spec: the model's absolute path (None: the shipped default), format,
    trust and the test-time flags given (without the parser's prefix)."""
    import argparse
    from posegroup.engine.ray_predict import model_spec_from_args
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    args = argparse.Namespace(weights="m.pt", onnx=None, format=None, trust_checkpoint=False,
                              infer_input_size=256, infer_scales=[1.0, 0.5], infer_flip=None)
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        spec = model_spec_from_args(args)
    finally:
        os.chdir(cwd)
    assert spec == {"path": str(ckpt), "format": None, "trust_checkpoint": False, "input_size": 256,
                    "scales": (1.0, 0.5)}
    none = argparse.Namespace(weights=None, onnx=None, format=None, trust_checkpoint=False)
    assert model_spec_from_args(none) == {"path": None, "format": None, "trust_checkpoint": False}


def _posenet_checkpoint(ann, out):
    """One training step of the bundled ``personlab_posenet`` (PoseNet's pretrained heads) on 64-px
    images, decoding every peak: a model on the real backbone that finds people in any image."""
    from posegroup.engine.config import load_config
    from posegroup.engine.train import train
    cfg = load_config("personlab_posenet", {
        "data": {"train_ann": str(ann), "val_ann": None, "input_size": 64},
        "train": {"steps": 1, "batch_size": 2, "workers": 0, "amp": False, "eval_every": 0, "out_dir": str(out)},
        "test": {"input_size": 64}})
    cfg["method"]["options"]["decode"] = {"peak_threshold": 1e-4}
    return train(cfg, progress=False)["checkpoint"]
