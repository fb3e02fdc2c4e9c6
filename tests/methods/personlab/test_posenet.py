import json

import numpy as np
import pytest

from posegroup.methods.personlab.posenet import POSENET_EDGES, PoseNetONNX, convert_outputs
from posegroup.skeleton import COCO17

from ...conftest import shared_file

MODEL = "models/posenet_mobilenetv1_dyn.onnx"
ANN = "coco_images/person_keypoints_local_images.json"


def evaluate_posenet(ann_file, model_path, *, max_images=None) -> dict:
    """COCO keypoint AP of PoseNet (input 513, one thread) + PersonLab decoding on the images of
    ``ann_file`` (file names relative to its folder)."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.predict import evaluate_predictor
    model = PoseNetONNX(model_path, input_size=513, threads=1)
    dataset = CocoPoseDataset(ann_file, ann_file.parent, keypoint_set=COCO17)
    return evaluate_predictor(model.predict, dataset, max_images=max_images)


def test_edges_match_coco17_tree():
    assert list(POSENET_EDGES) == list(COCO17.edges)


def test_convert_outputs_layout():
    h, w = 3, 4
    heat = np.zeros((h, w, 17), np.float32)
    offsets = np.zeros((h, w, 34), np.float32)
    offsets[..., 5] = 7.0  # keypoint 5's y
    offsets[..., 17 + 5] = -3.0  # keypoint 5's x
    fwd = np.zeros((h, w, 32), np.float32)
    fwd[..., 2] = 1.5  # edge 2's y
    fwd[..., 16 + 2] = 2.5  # edge 2's x
    bwd = np.zeros((h, w, 32), np.float32)
    bwd[..., 16] = 9.0  # edge 0's x (backward)
    out = convert_outputs(heat, offsets, fwd, bwd)
    assert out["heatmaps"].shape == (17, h, w) and np.allclose(out["heatmaps"], 0.5)
    np.testing.assert_allclose(out["short_offsets"][5, 0, 0], [-3.0, 7.0])
    np.testing.assert_allclose(out["mid_offsets"][2, 1, 1], [2.5, 1.5])
    np.testing.assert_allclose(out["mid_offsets"][16, 2, 3], [9.0, 0.0])
    assert out["edges"][2] == (0, 2) and out["edges"][16] == (1, 0) and len(out["edges"]) == 32


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="nope.onnx"):
        PoseNetONNX(tmp_path / "nope.onnx")


def test_posenet_on_three_real_images(shared_data):
    pytest.importorskip("onnxruntime")
    import cv2

    model_path = shared_file(MODEL)
    ann = shared_file(ANN)
    model = PoseNetONNX(model_path, threads=1)
    with open(ann) as f:
        images = json.load(f)["images"][:3]
    found = 0
    for info in images:
        bgr = cv2.imread(str(ann.parent / info["file_name"]))
        poses, scores = model.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert poses.shape[1:] == (17, 3) and scores.shape == (poses.shape[0],)
        assert np.all(np.diff(scores) <= 1e-6)
        good = poses[scores > 0.2]
        if len(good):
            found += 1
            # confident people lie (within a few px) inside the image
            assert good[..., 0].min() > -20 and good[..., 0].max() < info["width"] + 20
            assert good[..., 1].min() > -20 and good[..., 1].max() < info["height"] + 20
    assert found >= 1
    stats = evaluate_posenet(ann, model_path, max_images=3)
    # measured: AP 0.585, AP50 0.891 on these three images (onnxruntime, CPU)
    assert stats["num_images"] == 3 and stats["AP"] == pytest.approx(0.585, abs=0.02)


@pytest.mark.slow
def test_posenet_coco_ap_136_images(shared_data):
    pytest.importorskip("onnxruntime")
    ann = shared_file(ANN)
    stats = evaluate_posenet(ann, shared_file(MODEL))
    print(stats)
    assert stats["num_images"] == 136
    assert stats["AP"] > 0.2  # measured 0.262 (AP50 0.533, AR 0.325), PoseNet MobileNetV1 at 513
