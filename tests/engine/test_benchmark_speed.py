"""benchmark speed / predict: network and decoder times split correctly, PyTorch against
onnxruntime on the same model, ratios against the first model of the run."""
from __future__ import annotations

import json

import pytest
import torch

from posegroup.cli import main
from posegroup.engine.benchmark import benchmark_speed
from posegroup.engine.train import train
from tests.engine.test_train import _one_thread, make_dataset, tiny_config  # noqa: F401 (autouse fixture)


def test_speed_rows_pytorch_and_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    ann = make_dataset(tmp_path / "d", 3, size=64, people=(1, 2))
    run = train(tiny_config(ann, tmp_path / "run", steps=2), progress=False)
    onnx = tmp_path / "m.onnx"
    assert main(["--quiet", "export", "--weights", run["checkpoint"], "--out", str(onnx)]) == 0
    rows = benchmark_speed([run["checkpoint"], str(onnx)], {"tiny": str(ann)}, max_images=3,
                           out_file=tmp_path / "rows.json")
    assert [r["runtime"] for r in rows] == ["pytorch", "onnxruntime"]
    for r in rows:
        assert r["network_ms"] > 0 and r["decoder_ms"] > 0        # both parts were timed
        assert r["images_per_s"] == pytest.approx(1e3 / (r["network_ms"] + r["decoder_ms"]))
    assert rows[0]["total_vs_baseline"] == 1.0
    assert rows[1]["total_vs_baseline"] == pytest.approx(
        (rows[1]["network_ms"] + rows[1]["decoder_ms"]) / (rows[0]["network_ms"] + rows[0]["decoder_ms"]))
    assert rows[0]["AP"] == pytest.approx(rows[1]["AP"], abs=1e-3)   # same model, same poses
    assert json.loads((tmp_path / "rows.json").read_text()) == rows


def test_network_time_is_the_backbone_forward(tmp_path, monkeypatch):
    """A model whose forward sleeps 50 ms: the network column gets the sleep, not the decoder."""
    import time

    from posegroup.engine import benchmark as B
    from posegroup.engine.checkpoint import load_model
    ann = make_dataset(tmp_path / "d", 2, size=64, people=(1, 1))
    run = train(tiny_config(ann, tmp_path / "run", steps=1), progress=False)
    model, method, config = load_model(run["checkpoint"])
    original = model.forward

    def slow(x):
        time.sleep(0.05)
        return original(x)

    model.forward = slow
    predict = B._timed_predictor(model, method, {"input_size": 64})
    image = torch.zeros(64, 64, 3, dtype=torch.uint8).numpy()
    _, _, net_s, total_s = predict(image)
    assert 0.05 <= net_s <= total_s
