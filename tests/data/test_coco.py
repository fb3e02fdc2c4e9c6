import json

import cv2
import numpy as np
import pytest

from posegroup.data.coco import CocoPoseDataset, DatasetError
from posegroup.skeleton import COCO17, CROWDPOSE14
from tests.conftest import shared_file


def _write_dataset(tmp_path, k=17, anns=None, size=(40, 60)):
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = 200  # red in RGB
    (tmp_path / "images").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    kp = [0.0] * (3 * k)
    kp[0:3] = [10.5, 12.5, 2]
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": w, "height": h}],
            "annotations": anns if anns is not None else [
                {"id": 1, "image_id": 7, "category_id": 1, "keypoints": kp, "num_keypoints": 1,
                 "iscrowd": 0, "bbox": [5, 5, 20, 20], "area": 400,
                 "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]},
                {"id": 2, "image_id": 7, "category_id": 1, "keypoints": [0.0] * (3 * k),
                 "num_keypoints": 0, "iscrowd": 0, "bbox": [40, 0, 10, 10], "area": 100,
                 "segmentation": [[40, 0, 50, 0, 50, 10, 40, 10]]}],
            "categories": [COCO17.coco_category() if k == 17 else CROWDPOSE14.coco_category()]}
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    return p


def test_sample_layout_and_ignore_mask(tmp_path):
    ds = CocoPoseDataset(_write_dataset(tmp_path))
    assert len(ds) == 1 and ds.keypoint_set is COCO17
    s = ds[0]
    assert s["image"].shape == (40, 60, 3) and s["image"][..., 0].mean() > 150  # RGB order
    assert s["keypoints"].shape == (1, 17, 3)
    assert s["keypoints"][0, 0].tolist() == [10.5, 12.5, 2]
    assert s["instance_masks"].shape == (1, 40, 60) and s["instance_masks"][0, 15, 15] == 1
    # the person without labelled keypoints is ignored, nothing else
    assert s["ignore_mask"][5, 45] and not s["ignore_mask"][15, 15]
    assert s["image_id"] == 7


@pytest.mark.parametrize("fault,match", [
    ("missing_image", "image file not found"),
    ("corrupt_image", "unreadable or corrupt image"),
    ("bad_json", "malformed json"),
    ("wrong_length", "expected 51"),
    ("bad_image_id", "not in 'images'"),
    ("wrong_size", "says 60x40"),
])
def test_bad_input_one_line_errors(tmp_path, fault, match):
    p = _write_dataset(tmp_path)
    data = json.loads(p.read_text())
    if fault == "missing_image":
        (tmp_path / "images" / "a.jpg").unlink()
    elif fault == "corrupt_image":
        (tmp_path / "images" / "a.jpg").write_bytes(b"not a jpeg")
    elif fault == "bad_json":
        p.write_text(p.read_text()[:-5])
    elif fault == "wrong_length":
        data["annotations"][0]["keypoints"] = [1.0] * 48
    elif fault == "bad_image_id":
        data["annotations"][0]["image_id"] = 99
    elif fault == "wrong_size":
        cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((10, 10, 3), np.uint8))
    if fault in ("wrong_length", "bad_image_id"):
        p.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=match) as e:
        CocoPoseDataset(p)[0]
    msg = str(e.value)
    assert "\n" not in msg and ("ann.json" in msg or "a.jpg" in msg)


def test_crowd_region_is_ignored(tmp_path):
    kp = [0.0] * 51
    kp[:3] = [3.5, 3.5, 2]
    anns = [{"id": 1, "image_id": 7, "keypoints": kp, "num_keypoints": 1, "iscrowd": 0,
             "bbox": [0, 0, 8, 8], "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]]},
            {"id": 2, "image_id": 7, "iscrowd": 1, "bbox": [30, 20, 20, 20], "num_keypoints": 0,
             "keypoints": [0.0] * 51,
             "segmentation": {"size": [40, 60], "counts": [20 * 40 + 20 + 30 * 40 - 1200, 0]}}]
    # build the crowd RLE from a real mask instead of by hand
    from pycocotools import mask as mu
    m = np.zeros((40, 60), np.uint8, order="F")
    m[20:40, 30:50] = 1
    rle = mu.encode(m)
    anns[1]["segmentation"] = {"size": [40, 60], "counts": rle["counts"].decode()}
    s = CocoPoseDataset(_write_dataset(tmp_path, anns=anns))[0]
    assert s["ignore_mask"][25:40, 30:50].all() and s["ignore_mask"].sum() == 400
    assert len(s["keypoints"]) == 1


def test_real_fixtures_load(shared_data):
    coco = CocoPoseDataset(shared_file("fixtures/coco/test_coco.json"))
    s = coco[0]
    assert s["image"].ndim == 3 and s["keypoints"].shape[1:] == (17, 3)
    cp = CocoPoseDataset(shared_file("fixtures/crowdpose/test_crowdpose.json"))
    assert cp.keypoint_set is CROWDPOSE14 and cp[0]["keypoints"].shape[1:] == (14, 3)
    oc = CocoPoseDataset(shared_file("fixtures/ochuman/test_ochuman.json"))
    assert oc[0]["keypoints"].shape[1:] == (17, 3) and max(len(oc[i]["keypoints"]) for i in range(len(oc))) >= 2
