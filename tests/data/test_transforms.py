import numpy as np
import pytest

from posegroup.data.transforms import (ColorJitter, RandomAffine, affine_matrix, apply_affine_points,
                                       center_affine, invert_affine_points, normalize_image,
                                       resize_for_inference, to_cv2)
from posegroup.skeleton import COCO17


def _sample(h=60, w=80):
    img = np.zeros((h, w, 3), np.uint8)
    img[10, 20, 2] = 255  # one bright blue pixel with centre (20.5, 10.5)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5] = [20.5, 10.5, 2]   # left shoulder on the bright pixel
    kp[0, 6] = [60.5, 40.5, 1]
    masks = np.zeros((1, h, w), np.uint8)
    masks[0, 10, 20] = 1
    return {"image": img, "keypoints": kp, "instance_masks": masks, "ignore_mask": np.zeros((h, w), bool)}


def test_affine_inverse_is_exact():
    m = affine_matrix((40, 30), 1.7, 23.0, (64, 64), flip_width=128)
    pts = np.random.default_rng(0).uniform(0, 100, (5, 2))
    assert np.allclose(invert_affine_points(apply_affine_points(pts, m), m), pts)


def test_image_and_keypoints_move_together_with_flip():
    s = _sample()
    m = affine_matrix((40, 30), 2.0, 0.0, (64, 64), flip_width=128)
    from posegroup.data.transforms import warp_sample
    w = warp_sample(s, m, 128, flip_index=COCO17.flip_index)
    # x: (20.5-40)*2+64 = 25 -> flipped 128-25 = 103; y: (10.5-30)*2+64 = 25
    x, y, v = w["keypoints"][0, 6]  # after the swap, the left shoulder is in the right-shoulder slot
    assert (x, y, v) == pytest.approx((103.0, 25.0, 2.0))
    # the bright pixel (2x2 after scaling) sits around that continuous point
    ys, xs = np.nonzero(w["image"][..., 2] > 130)
    assert xs.mean() + 0.5 == pytest.approx(103.0, abs=0.6) and ys.mean() + 0.5 == pytest.approx(25.0, abs=0.6)
    assert w["instance_masks"][0, int(y), int(x)] == 1


def test_random_affine_is_deterministic_and_drops_outside_joints():
    s = _sample()
    aug = RandomAffine(64, max_rotation=30, flip_index=COCO17.flip_index)
    a = aug(s, np.random.default_rng(3))
    b = aug(s, np.random.default_rng(3))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
    far = dict(s)
    far["keypoints"] = s["keypoints"].copy()
    far["keypoints"][0, 0] = [1e4, 1e4, 2]
    c = aug(far, np.random.default_rng(3))
    assert c["keypoints"][0, 0].tolist() == [0, 0, 0]


def test_center_affine_and_inference_resize():
    s = _sample(60, 80)
    c = center_affine(s, 160)
    assert c["image"].shape == (160, 160, 3)
    # longer side 80 -> 160 (x2); centred vertically: y offset (160 - 120) / 2 = 20
    assert c["keypoints"][0, 5, :2] == pytest.approx([41.0, 41.0])
    img, f = resize_for_inference(s["image"], 100, multiple=64)
    assert img.shape == (128, 128, 3) and f == pytest.approx(1.25)


def test_to_cv2_matches_continuous_convention():
    m = affine_matrix((0, 0), 2.0, 0.0, (0, 0))
    # continuous x' = 2x; pixel centre 0.5 -> 1.0 (continuous) -> cv2 coordinate 0.5
    mc = to_cv2(m)
    assert mc[0] @ [0.0, 0.0, 1.0] == pytest.approx(0.5)


def test_normalize_and_jitter():
    img = np.full((4, 4, 3), 128, np.uint8)
    x = normalize_image(img)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((128 / 255 - 0.485) / 0.229, rel=1e-5)
    j = ColorJitter()(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8),
                      np.random.default_rng(1))
    assert j.dtype == np.uint8 and j.shape == (8, 8, 3)
