import numpy as np

from posegroup.skeleton import COCO17
from posegroup.viz import draw_heatmaps, draw_poses, draw_tags, person_colors, save_png


def test_draw_poses_colours_limbs_per_person(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    poses = np.zeros((2, 17, 3))
    poses[0, 5] = [20.5, 20.5, 1]
    poses[0, 7] = [20.5, 60.5, 1]  # left shoulder -> left elbow: a vertical limb
    poses[1, 6] = [80.5, 10.5, 1]
    poses[1, 8] = [80.5, 90.5, 0.05]  # below threshold: not drawn
    out = draw_poses(img, poses, COCO17, thickness=3)
    cols = person_colors(2)
    assert np.array_equal(out[40, 20], cols[0])  # midway along person 0's limb
    assert not out[50, 80].any()  # person 1's limb is not drawn (elbow under threshold)
    assert img.sum() == 0  # input untouched
    p = save_png(tmp_path / "a" / "x.png", out)
    assert p.is_file() and p.stat().st_size > 0


def test_masks_heatmaps_tags_render():
    img = np.full((32, 32, 3), 100, np.uint8)
    masks = np.zeros((1, 32, 32), bool)
    masks[0, :16] = True
    out = draw_poses(img, np.zeros((1, 17, 3)), COCO17, masks=masks)
    assert (out[:16] != 100).any() and (out[16:] == 100).all()
    hm = np.zeros((17, 8, 8), np.float32)
    hm[0, 2, 2] = 1
    assert draw_heatmaps(img, hm).shape == (32, 32, 3)
    tags = np.random.default_rng(0).normal(size=(17, 8, 8, 1))
    t = draw_tags(img, hm, tags)
    assert t.shape == (32, 32, 3) and (t[9, 9] != t[0, 0]).any() and (t[0, 0] == 40).all()
