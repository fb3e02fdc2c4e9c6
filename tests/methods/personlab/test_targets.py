import numpy as np
import pytest

from posegroup.methods.personlab.targets import cell_positions, encode, impute_unlabelled
from posegroup.skeleton import COCO17


def _kp(points, k=3):
    out = np.zeros((len(points), k, 3), np.float32)
    for n, person in enumerate(points):
        for j, p in enumerate(person):
            if p is not None:
                out[n, j] = (p[0], p[1], 2)
    return out


EDGES3 = [(0, 1), (1, 2), (1, 0), (2, 1)]


def test_cell_positions_convention():
    px, py = cell_positions((2, 3), 4)
    assert px[0].tolist() == [2, 6, 10] and py[:, 0].tolist() == [2, 6]
    px, py = cell_positions((2, 3), 16, grid_offset=0)
    assert px[0].tolist() == [0, 16, 32]


def test_single_person_hand_values():
    kp = _kp([[(10, 10), (20, 10), None]])
    t = encode(kp, None, None, (6, 8), 4, edges=EDGES3, radius=5)
    # cell (2, 2) is at (10, 10): distance 0; (2, 1) at (6, 10): 4 <= 5; (1, 1) at (6, 6): 5.66 > 5
    assert t["heatmaps"][0, 2, 2] == 1 and t["heatmaps"][0, 2, 1] == 1 and t["heatmaps"][0, 1, 1] == 0
    assert t["heatmaps"][0].sum() == 5  # the centre and its 4 neighbours at distance 4
    assert t["heatmaps"][2].sum() == 0  # unlabelled keypoint: no disk
    np.testing.assert_allclose(t["short_offsets"][0, 2, 1], [4, 0])
    np.testing.assert_allclose(t["short_offsets"][0, 1, 2], [0, 4])
    assert np.all(t["short_offsets"][0, 0, 0] == 0)
    # mid (0 -> 1) on the disk of keypoint 0 points to keypoint 1 at (20, 10)
    np.testing.assert_allclose(t["mid_offsets"][0, 2, 1], [14, 0])
    np.testing.assert_allclose(t["mid_offsets"][0, 3, 2], [10, -4])
    assert t["mid_weights"][0].sum() == 5
    # edges touching the unlabelled keypoint 2 have no target
    assert t["mid_weights"][1].sum() == 0 and t["mid_weights"][3].sum() == 0
    # mid (1 -> 0) on keypoint 1's disk (cell (2, 4) is at (18, 10))
    np.testing.assert_allclose(t["mid_offsets"][2, 2, 4], [-8, 0])
    # without instance masks the person's pixels are its disks
    assert t["segmentation"].sum() == np.logical_or(t["heatmaps"][0], t["heatmaps"][1]).sum()
    np.testing.assert_allclose(t["long_offsets"][1, 2, 2], [10, 0])
    assert t["long_weights"][2].sum() == 0


def test_nearest_person_and_ignore():
    kp = _kp([[(10, 10), None, None], [(18, 10), None, None]])
    ignore = np.zeros((24, 32), bool)
    ignore[:, 24:] = True  # cells with x >= 24 are ignored
    t = encode(kp, None, ignore, (6, 8), 4, edges=EDGES3, radius=8)
    np.testing.assert_allclose(t["short_offsets"][0, 2, 2], [0, 0])  # (10, 10) is person 0's
    np.testing.assert_allclose(t["short_offsets"][0, 2, 4], [0, 0])  # (18, 10) is person 1's
    np.testing.assert_allclose(t["short_offsets"][0, 2, 5], [-4, 0])  # (22, 10) -> person 1
    np.testing.assert_allclose(t["short_offsets"][0, 2, 1], [4, 0])  # (6, 10) -> person 0
    assert t["valid_mask"][:, 6:].sum() == 0 and t["valid_mask"][:, :6].min() == 1
    assert t["short_weights"][0][:, 6:].sum() == 0
    assert t["heatmaps"][0][2, 6] == 1  # the heatmap target itself is not masked; its weight is


def test_long_offsets_follow_instance_masks():
    kp = _kp([[(6, 6), (10, 6), None], [(26, 6), (30, 6), None]])
    masks = np.zeros((2, 16, 40), np.uint8)
    masks[0, :, :20] = 1
    masks[1, :, 16:] = 1  # overlaps instance 0 on x in [16, 20); instance 0 (320 px) < 1 (384 px)
    t = encode(kp, masks, None, (4, 10), 4, edges=EDGES3, radius=4)
    assert t["segmentation"].sum() == 40
    # cell (0, 0) at (2, 2) belongs to person 0: long to keypoint 1 = (10, 6) - (2, 2)
    np.testing.assert_allclose(t["long_offsets"][1, 0, 0], [8, 4])
    # cell (1, 4) at (18, 6) is in both masks: the smaller instance 0 owns it
    np.testing.assert_allclose(t["long_offsets"][0, 1, 4], [6 - 18, 0])
    # cell (1, 5) at (22, 6) is instance 1's only
    np.testing.assert_allclose(t["long_offsets"][0, 1, 5], [26 - 22, 0])
    assert t["long_weights"][2].sum() == 0 and t["long_weights"][0].sum() == 40


def test_fixed_shapes_with_no_people():
    t = encode(np.zeros((0, 17, 3)), None, None, (8, 8), 4, edges=COCO17.directed_edges)
    assert t["heatmaps"].shape == (17, 8, 8) and t["mid_offsets"].shape == (32, 8, 8, 2)
    assert t["heatmaps"].sum() == 0 and t["valid_mask"].sum() == 64


def test_bad_input():
    with pytest.raises(ValueError, match="keypoints"):
        encode(np.zeros((2, 3)), None, None, (4, 4), 4, edges=EDGES3)
    with pytest.raises(ValueError, match="edge"):
        encode(np.zeros((1, 3, 3)), None, None, (4, 4), 4, edges=[(0, 5)])


def test_impute_unlabelled_uses_nearest_tree_neighbour():
    kp = _kp([[(0, 0), None, (20, 0)]])
    out = impute_unlabelled(kp, [(0, 1), (1, 2)])
    # keypoint 1 is adjacent to both; the first labelled source in BFS order (0) gives it
    np.testing.assert_allclose(out[0, 1], [0, 0, 1])
    chain = _kp([[(5, 5), None, None]])
    out = impute_unlabelled(chain, [(0, 1), (1, 2)])
    np.testing.assert_allclose(out[0, :, :2], [[5, 5]] * 3)
    assert kp[0, 1, 2] == 0  # input untouched
