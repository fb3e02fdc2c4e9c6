"""Ground-truth annotation files are validated when read (load_coco_json, CocoPoseDataset)."""
import json
import math

import pytest

from posegroup.data.coco import CocoPoseDataset, DatasetError, load_coco_json, validate_coco
from posegroup.skeleton import COCO17


def _data():
    kp = [0.0] * 51
    kp[0:3] = [10.5, 12.5, 2]
    return {"images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40, "crowdIndex": 0.3},
                       {"id": 8, "file_name": "b.jpg", "width": 60, "height": 40, "crowdIndex": 0.9}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": kp, "num_keypoints": 1,
                             "iscrowd": 0, "bbox": [5, 5, 20, 20], "area": 400},
                            {"id": 2, "image_id": 8, "category_id": 1, "keypoints": list(kp),
                             "num_keypoints": 1, "iscrowd": 0, "bbox": [5, 5, 20, 20], "area": 400}],
            "categories": [COCO17.coco_category()]}


def _set(path, value):
    def spoil(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return spoil


FAULTS = [
    ("nan_keypoint", _set(["annotations", 1, "keypoints", 1], math.nan), r"annotation 2 \(image 8\): keypoint 0 y is nan"),
    ("inf_keypoint", _set(["annotations", 0, "keypoints", 0], -math.inf), r"annotation 1 \(image 7\): keypoint 0 x is -inf"),
    ("string_keypoint", _set(["annotations", 0, "keypoints", 2], "2"), r"annotation 1 \(image 7\): keypoint 0 v is '2'"),
    ("keypoints_not_list", _set(["annotations", 0, "keypoints"], "1 2 3"), r"annotation 1 \(image 7\): keypoints is a str"),
    ("keypoints_not_triples", _set(["annotations", 0, "keypoints"], [1.0] * 50), r"annotation 1 \(image 7\): 50 keypoint values, not whole"),
    ("nan_bbox", _set(["annotations", 1, "bbox", 0], math.nan), r"annotation 2 \(image 8\): bbox x is nan"),
    ("inf_bbox", _set(["annotations", 0, "bbox", 3], math.inf), r"annotation 1 \(image 7\): bbox h is inf"),
    ("short_bbox", _set(["annotations", 0, "bbox"], [1, 2, 3]), r"annotation 1 \(image 7\): bbox \[1, 2, 3\] is not \[x, y, width, height\]"),
    ("negative_bbox", _set(["annotations", 0, "bbox", 2], -4), r"annotation 1 \(image 7\): bbox has negative width or height"),
    ("nan_area", _set(["annotations", 0, "area"], math.nan), r"annotation 1 \(image 7\): area nan is not a finite number"),
    ("duplicate_annotation", _set(["annotations", 1, "id"], 1), r"annotation 1 \(image 8\): duplicate annotation id \(entry #1\)"),
    ("duplicate_image", _set(["images", 1, "id"], 7), r"image 7: duplicate image id \(entry #1\)"),
    ("zero_width", _set(["images", 1, "width"], 0), r"image 8: width 0 is not a positive number"),
    ("negative_height", _set(["images", 0, "height"], -40), r"image 7: height -40 is not a positive number"),
    ("string_height", _set(["images", 0, "height"], "40"), r"image 7: height '40' is not a positive number"),
    ("image_without_id", lambda d: d["images"][1].pop("id"), r"image entry #1 is not an object with an 'id'"),
    ("nan_crowd_index", _set(["images", 0, "crowdIndex"], math.nan), r"image 7: crowdIndex nan is not a finite number"),
    # a labelled keypoint more than one image width (60) / height (40) outside its image
    ("huge_keypoint", _set(["annotations", 1, "keypoints", 0], 1e9),
     r"annotation 2 \(image 8\): keypoint 0 at \(1e\+09, 12\.5\) lies more than one image width/height "
     r"outside the 60x40 image"),
    ("negative_keypoint", _set(["annotations", 0, "keypoints", 1], -40.5),
     r"annotation 1 \(image 7\): keypoint 0 at \(10\.5, -40\.5\) lies more than one image width/height outside"),
    ("bad_rle_counts", _set(["annotations", 1, "segmentation"], {"size": [40, 60], "counts": [10, 20]}),
     r"annotation 2 \(image 8\): RLE segmentation counts sum to 30, not 40 x 60"),
    ("rle_of_other_size", _set(["annotations", 0, "segmentation"], {"size": [64, 64], "counts": "PPP"}),
     r"annotation 1 \(image 7\): RLE segmentation size \[64, 64\] is not the image's \[40, 60\]"),
    ("rle_negative_counts", _set(["annotations", 0, "segmentation"], {"size": [40, 60], "counts": [-5, 2405]}),
     r"annotation 1 \(image 7\): RLE segmentation counts are not a string or a list of integers >= 0"),
    ("rle_without_size", _set(["annotations", 0, "segmentation"], {"counts": "PPP"}),
     r"annotation 1 \(image 7\): RLE segmentation size None is not \[height, width\]"),
    ("nan_polygon", _set(["annotations", 0, "segmentation"], [[1, 2, 3, math.nan, 5, 6]]),
     r"annotation 1 \(image 7\): segmentation polygon 0 is not a list of finite numbers"),
    ("string_segmentation", _set(["annotations", 0, "segmentation"], "mask.png"),
     r"annotation 1 \(image 7\): segmentation is a str, not polygons or an RLE dict"),
]


@pytest.mark.parametrize("fault,spoil,match", FAULTS, ids=[f[0] for f in FAULTS])
def test_bad_ground_truth_is_one_line_naming_file_record_fault(tmp_path, fault, spoil, match):
    data = _data()
    spoil(data)
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    for read in (load_coco_json, CocoPoseDataset):
        with pytest.raises(DatasetError, match=f"^{p}: {match}") as e:
            read(p)
        assert "\n" not in str(e.value)


def test_good_file_passes_and_validation_is_callable_on_dicts(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(_data()))
    ds = CocoPoseDataset(p, image_root=tmp_path)
    assert ds.image_ids == [7, 8]
    assert ds.annotations(8, with_masks=False)["keypoints"][0, 0].tolist() == [10.5, 12.5, 2]
    validate_coco(_data(), "<mine>")
    bad = _data()
    bad["annotations"][0]["bbox"][1] = math.nan
    with pytest.raises(DatasetError, match=r"^<mine>: annotation 1 \(image 7\): bbox y is nan, not a finite number$"):
        validate_coco(bad, "<mine>")


def test_pose_bank_without_images_is_still_checked(tmp_path):
    # require_images=False (a pose bank): annotations alone, validated all the same
    bank = {"annotations": _data()["annotations"]}
    bank["annotations"][0]["keypoints"][4] = math.inf
    p = tmp_path / "bank.json"
    p.write_text(json.dumps(bank))
    with pytest.raises(DatasetError, match=r"annotation 1 \(image 7\): keypoint 1 y is inf"):
        load_coco_json(p, require_images=False)


def test_keypoints_near_or_unlabelled_outside_the_image_pass(tmp_path):
    """The keypoint range rule refuses only labelled keypoints beyond one image size: a labelled
    keypoint just inside the margin (x = -59, y = 79 for a 60x40 image) and an unlabelled one at
    1e9 pass."""
    data = _data()
    data["annotations"][0]["keypoints"][3:6] = [-59.0, 79.0, 1]
    data["annotations"][0]["keypoints"][6:9] = [1e9, -1e9, 0]
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    assert len(CocoPoseDataset(p)) == 2


def test_corrupt_compressed_rle_is_one_line_when_decoded(tmp_path):
    """A compressed RLE string of the right size that pycocotools cannot decode: one line naming
    the file and the annotation id when the image's masks are built."""
    import cv2
    import numpy as np
    data = _data()
    data["annotations"][1]["segmentation"] = {"size": [40, 60], "counts": "abc!!"}
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((40, 60, 3), np.uint8))
    ds = CocoPoseDataset(p)
    ds[0]
    with pytest.raises(DatasetError, match=rf"^{p}: annotation 2 \(image 8\): segmentation cannot be decoded") as e:
        ds[1]
    assert "\n" not in str(e.value)
