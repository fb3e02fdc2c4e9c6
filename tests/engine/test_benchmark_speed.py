"""benchmark speed / predict: network and decoder times split correctly, PyTorch against
onnxruntime on the same model, a foreign ONNX network (PoseNet) beside them, ratios against the
first model of the run."""
from __future__ import annotations

import json

import pytest
import torch

from posegroup.cli import main
from posegroup.engine.benchmark import benchmark_speed
from posegroup.engine.train import train
from tests.conftest import shared_file
from tests.helpers import make_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


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
    predict = B.timed_predictor(model, method, {"input_size": 64})
    image = torch.zeros(64, 64, 3, dtype=torch.uint8).numpy()
    _, _, net_s, total_s = predict(image)
    assert 0.05 <= net_s <= total_s


POSENET = "models/posenet_mobilenetv1_dyn.onnx"
COCO_IMAGES = "coco_images/person_keypoints_local_images.json"


def test_posenet_row_beside_a_checkpoint(tmp_path):
    """A foreign .onnx (no posegroup metadata) among --weights is read through its adapter
    (default format posenet): a 'posenet' onnxruntime row on the real COCO images, with the AP
    that COCOeval gives to PoseNet's own predictions of the same images, beside a checkpoint's."""
    pytest.importorskip("onnxruntime")
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.evaluate import evaluate_results
    from posegroup.engine.predict import to_coco_results
    from posegroup.methods.personlab.posenet import PoseNetONNX
    model, ann = shared_file(POSENET), shared_file(COCO_IMAGES)
    tiny = make_dataset(tmp_path / "d", 2, size=64, people=(1, 2))
    run = train(tiny_config(tiny, tmp_path / "run", steps=1), progress=False)
    assert main(["--quiet", "benchmark", "predict", "--weights", run["checkpoint"], str(model), "--ann", str(ann),
                 "--images", "3", "--stats", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["method"], r["runtime"], r["split"]) for r in rows] == \
        [("ae", "pytorch", "coco_images"), ("posenet", "onnxruntime", "coco_images")]
    pn = rows[1]
    assert pn["images"] == 3 and pn["network_ms"] > 0 and pn["decoder_ms"] > 0
    assert pn["total_vs_baseline"] == pytest.approx(
        (pn["network_ms"] + pn["decoder_ms"]) / (rows[0]["network_ms"] + rows[0]["decoder_ms"]))
    ds = CocoPoseDataset(str(ann))
    ids = list(ds.image_ids)[:3]
    net = PoseNetONNX(model, threads=1)
    results = [r for i in ids for r in to_coco_results(i, *net.predict(ds.load_image(i)))]
    assert pn["AP"] == pytest.approx(evaluate_results(str(ann), results, image_ids=ids)["AP"], abs=1e-9)
    assert pn["AP"] > 0.2                                   # a real network on real images


def test_foreign_onnx_network_time_is_its_graph_run(tmp_path):
    """The adapter's run_graph (onnxruntime) is the network column; preprocessing and decoding the rest."""
    import time

    pytest.importorskip("onnxruntime")
    from posegroup.engine import benchmark as B
    net, method, opts, runtime = B._speed_model(shared_file(POSENET), threads=1)
    assert (method.name, runtime, opts) == ("posenet", "onnxruntime", {})
    original = net.run_graph

    def slow(x):
        time.sleep(0.05)
        return original(x)

    net.run_graph = slow
    image = torch.zeros(96, 128, 3, dtype=torch.uint8).numpy()
    _, _, net_s, total_s = B.timed_predictor(net, method, opts)(image)
    assert 0.05 <= net_s < total_s
