"""``predict --ray``: a local Ray (2 CPUs) over a folder of synthetic images gives, merged, the
single-process ``predict`` results; a rerun recomputes only the missing shards."""
from __future__ import annotations

import json

import pytest

from tests.engine.test_train import _one_thread, make_dataset, tiny_config  # noqa: F401

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


def test_ray_predict_equals_predict_and_resumes(tmp_path):
    from posegroup.cli import main
    from posegroup.engine.ray_predict import predict_ray
    from posegroup.engine.train import train
    ann = make_dataset(tmp_path / "data", 5, size=64, people=(1, 3), seed=4)
    cfg = tiny_config(ann, tmp_path / "run", steps=2)
    cfg["method"]["options"].update(detection_threshold=0.001, top_k=5, max_people=5)
    ckpt = train(cfg, progress=False)["checkpoint"]
    folder = str(ann.parent)
    assert main(["--quiet", "predict", folder, "--weights", str(ckpt), "--out", str(tmp_path / "one"), "--no-draw"]) == 0
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    assert single
    spec = {"weights": str(ckpt), "onnx": None, "format": None, "trust_checkpoint": False}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["--quiet", "predict", folder, "--weights", str(ckpt), "--ray", "--num-workers", "2",
                     "--shard-size", "2", "--out", str(tmp_path / "ray")]) == 0
        assert sorted(p.name for p in (tmp_path / "ray" / "shards").glob("shard_*.json")) == \
            ["shard_00000.json", "shard_00001.json", "shard_00002.json"]
        merged = json.loads((tmp_path / "ray" / "results.json").read_text())
        assert merged == single
        (tmp_path / "ray" / "shards" / "shard_00001.json").unlink()
        s = predict_ray(spec, folder, out_dir=tmp_path / "ray", num_workers=2, shard_size=2, progress=False)
        assert s["computed"] == [1]                                   # finished shards are not recomputed
        assert json.loads((tmp_path / "ray" / "results.json").read_text()) == single
        from posegroup.engine.predict import PredictError
        with pytest.raises(PredictError, match="shards of another run"):
            predict_ray(spec, folder, out_dir=tmp_path / "ray", num_workers=2, shard_size=3, progress=False)
    finally:
        ray.shutdown()
