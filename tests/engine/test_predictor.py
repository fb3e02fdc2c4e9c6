"""``posegroup.Predictor``: the Python API a user reaches for first, on real photos."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from posegroup import Person, Predictor
from posegroup.cli import main
from tests.conftest import shared_file


def _oks(pred: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO's object keypoint similarity of one prediction (K, 3) with one annotation (K, 3)."""
    vis = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    e = d2 / (2 * area * (2 * sigmas) ** 2 + np.spacing(1))
    return float(np.exp(-e[vis]).mean())


def _real(name: str):
    ann = shared_file("coco_images/person_keypoints_local_images.json")
    data = json.loads(ann.read_text())
    im = next(i for i in data["images"] if i["file_name"].endswith(name))
    gts = [a for a in data["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"] >= 10]
    image = cv2.imread(str(ann.parent / im["file_name"]))[:, :, ::-1].copy()
    return image, gts, ann.parent / im["file_name"]


def test_default_predictor_finds_the_people_of_a_real_photo(one_thread):
    """The shipped pretrained model, no file given: every large, well-labelled person of a real
    COCO photo (area >= 96^2, 10+ keypoints) is matched by a predicted person with OKS > 0.5,
    computed here by COCO's formula (measured 0.73-0.85); people come highest score first."""
    image, gts, _ = _real("000000217285.jpg")
    predictor = Predictor.load()
    people = predictor(image)
    assert people and all(isinstance(p, Person) for p in people)
    assert all(p.keypoints.shape == (17, 3) and p.mask is None for p in people)
    scores = [p.score for p in people]
    assert scores == sorted(scores, reverse=True)
    sigmas = np.asarray(predictor.keypoint_set.sigmas)
    large = [gt for gt in gts if gt["area"] >= 96 ** 2]
    assert len(large) == 3
    for gt in large:
        g = np.asarray(gt["keypoints"], float).reshape(17, 3)
        assert max(_oks(p.keypoints, g, gt["area"], sigmas) for p in people) > 0.5


def test_predict_files_writes_results(tmp_path, one_thread):
    _, _, path = _real("000000217285.jpg")
    results = Predictor.load(input_size=513).predict_files([path], tmp_path / "out", draw=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == json.loads(json.dumps(list(results))) and len(saved) > 0
    assert {r["image_id"] for r in saved} == {0} and all(len(r["keypoints"]) == 51 for r in saved)


def test_load_names_and_options(tmp_path, one_thread):
    """A shipped model by name; an option the model does not take, or a missing file: one line."""
    import torch
    ae = Predictor.load("ae")
    assert ae.label.startswith("ae (") and ae.keypoint_set.num_keypoints == 17
    people = ae(np.zeros((64, 80, 3), np.uint8))
    assert isinstance(people, list)
    assert isinstance(ae.model, torch.nn.Module) and ae.config["method"]["name"] == ae.method.name   # a checkpoint's
    default = Predictor.load(None)
    assert default.model is None and default.config is None
    with pytest.raises(ValueError, match="--tag-threshold is not .* pretrained posenet"):
        Predictor.load(None, tag_threshold=1.0)
    with pytest.raises(ValueError, match="input_size must be 16k\\+1"):
        Predictor.load(None, input_size=500, output_stride=16)
    with pytest.raises(Exception, match="nope.pt"):
        Predictor.load(tmp_path / "nope.pt")


def test_timings_of_the_network_and_the_decoder(one_thread):
    """Every loaded model runs as network then decoder, each timed per image (Predictor.timings)."""
    from posegroup.engine.predictor import TimedRun
    ae = Predictor.load("ae", input_size=64)
    assert isinstance(ae.run, TimedRun) and ae.timings == {"network_ms": 0.0, "decoder_ms": 0.0}
    ae(np.zeros((48, 64, 3), np.uint8))
    assert ae.timings["network_ms"] > 0 and ae.timings["decoder_ms"] > 0
    assert Predictor(lambda image: (np.zeros((0, 17, 3)), np.zeros(0)), ae.keypoint_set).timings is None


def test_cli_predict_and_evaluate_without_a_model(tmp_path, capsys, one_thread):
    """``predict IMAGE`` and ``evaluate --gt`` with neither --weights nor --onnx use the
    pretrained default and say so in the picture's label; evaluate prints the AP table."""
    _, _, path = _real("000000217285.jpg")
    assert main(["--quiet", "predict", str(path), "--out", str(tmp_path / "p"), "--input-size", "513"]) == 0
    assert len(json.loads((tmp_path / "p" / "results.json").read_text())) > 0
    gt = shared_file("fixtures/coco/test_coco.json")
    assert main(["--quiet", "evaluate", "--gt", str(gt), "--input-size", "513"]) == 0
    out = capsys.readouterr().out
    assert "AP" in out and "scored 4 of 4" in out


@pytest.mark.slow
def test_default_reaches_its_ap_on_the_real_images(one_thread):
    """The headline figure: the pretrained default on the 136 real COCO images scores COCO AP >=
    0.34 (pycocotools; measured 0.356, docs/posenet.md)."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.predict import evaluate_predictor
    ds = CocoPoseDataset(shared_file("coco_images/person_keypoints_local_images.json"))
    stats = evaluate_predictor(Predictor.load().run, ds)
    assert stats["num_images"] == 136 and stats["AP"] >= 0.34
