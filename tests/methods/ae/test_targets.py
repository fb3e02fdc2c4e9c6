"""AE targets: hand-computed Gaussian values, max over people, skipped joints, flat indices."""
from __future__ import annotations

import math

import numpy as np
import pytest

from posegroup.methods.ae.targets import gaussian_heatmaps, joint_indices, reference_sigma, tag_maps


def _kp(rows):
    """rows: list of people, each a list of (x, y, v) -> (N, K, 3) float."""
    return np.asarray(rows, dtype=np.float64)


def test_single_subpixel_keypoint_hand_values():
    # one person, one joint at (3.3, 2.7) in a 6x8 (H x W) map, sigma 1
    hm = gaussian_heatmaps(_kp([[(3.3, 2.7, 2)]]), (6, 8), sigma=1.0)
    assert hm.shape == (1, 6, 8) and hm.dtype == np.float32
    # cell (row 2, col 3): centre (3.5, 2.5), d^2 = 0.2^2 + 0.2^2 = 0.08
    assert hm[0, 2, 3] == pytest.approx(math.exp(-0.08 / 2), abs=1e-6)
    # cell (row 2, col 1): centre (1.5, 2.5), d^2 = 1.8^2 + 0.2^2 = 3.28
    assert hm[0, 2, 1] == pytest.approx(math.exp(-3.28 / 2), abs=1e-6)
    # cell (row 5, col 5): centre (5.5, 5.5), d^2 = 2.2^2 + 2.8^2 = 12.68 > 9 (3 sigma) -> 0
    assert hm[0, 5, 5] == 0.0
    # cell (row 0, col 1): centre (1.5, 0.5), d^2 = 1.8^2 + 2.2^2 = 8.08 <= 9 -> kept
    assert hm[0, 0, 1] == pytest.approx(math.exp(-8.08 / 2), abs=1e-6)
    # the peak is the cell holding the keypoint
    assert np.unravel_index(hm[0].argmax(), (6, 8)) == (2, 3)


def test_paper_sigma_default_and_reference_sigma():
    hm = gaussian_heatmaps(_kp([[(10.0, 10.0, 2)]]), (20, 20))
    # default sigma 2: cell (9, 9) centre (9.5, 9.5), d^2 = 0.5
    assert hm[0, 9, 9] == pytest.approx(math.exp(-0.5 / 8), abs=1e-6)
    assert reference_sigma(128) == 2.0 and reference_sigma((256, 128)) == 4.0


def test_max_over_two_people_and_skipped_joints():
    people = _kp([
        [(2.5, 2.5, 2), (1.0, 1.0, 0)],        # joint 1 unlabelled: skipped
        [(4.5, 2.5, 1), (-0.1, 3.0, 2)],       # joint 1 outside the map: skipped
    ])
    hm = gaussian_heatmaps(people, (5, 7), sigma=1.0)
    assert hm.shape == (2, 5, 7)
    assert not hm[1].any()
    # cell (2, 3) centre (3.5, 2.5): 1 from both people -> max = exp(-1/2), not the sum
    assert hm[0, 2, 3] == pytest.approx(math.exp(-0.5), abs=1e-6)
    # cell (2, 5) centre (5.5, 2.5): d^2 = 9 to person 0 (kept, <= 3 sigma), 1 to person 1
    assert hm[0, 2, 5] == pytest.approx(math.exp(-0.5), abs=1e-6)
    assert hm[0, 2, 2] == pytest.approx(1.0) and hm[0, 2, 4] == pytest.approx(1.0)
    # x == W is outside [0, W)
    assert not gaussian_heatmaps(_kp([[(7.0, 2.0, 2)]]), (5, 7), sigma=1.0).any()


def test_vectorised_matches_direct_formula():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(-2, 34, size=(6, 14, 2)), rng.integers(0, 3, size=(6, 14, 1))], axis=2)
    hm = gaussian_heatmaps(kp, (24, 32), sigma=1.5)
    ys, xs = np.mgrid[0:24, 0:32] + 0.5
    for k in range(14):
        ref = np.zeros((24, 32))
        for n in range(6):
            x, y, v = kp[n, k]
            if v > 0 and 0 <= x < 32 and 0 <= y < 24:
                d2 = (xs - x) ** 2 + (ys - y) ** 2
                ref = np.maximum(ref, np.where(d2 <= 9 * 1.5 ** 2, np.exp(-d2 / (2 * 1.5 ** 2)), 0))
        np.testing.assert_allclose(hm[k], ref, atol=1e-6)


def test_joint_indices_by_hand():
    h, w = 4, 5
    people = _kp([
        [(1.9, 2.2, 2), (4.99, 3.5, 1)],   # -> 0*20 + 2*5 + 1 = 11 ; 1*20 + 3*5 + 4 = 39
        [(3.0, 1.0, 0), (5.0, 0.0, 2)],    # unlabelled ; outside (x == W)
        [(0.0, 0.0, 2), (0.5, 0.5, 2)],    # dropped: beyond max_people = 2
    ])
    idx = joint_indices(people, (h, w), max_people=2)
    assert idx.shape == (2, 2, 2) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[0], [[11, 1], [39, 1]])
    np.testing.assert_array_equal(idx[1], [[0, 0], [0, 0]])
    idx = joint_indices(people, (h, w), max_people=4)
    np.testing.assert_array_equal(idx[2], [[0, 1], [20, 1]])
    assert not idx[3].any()
    # default 30 rows
    assert joint_indices(people, (h, w)).shape == (30, 2, 2)


def test_tag_maps_nearest_person():
    people = _kp([[(1.5, 1.5, 2), (0, 0, 0)], [(6.5, 1.5, 2), (3.5, 3.5, 2)]])
    tg = tag_maps(people, (4, 8))
    assert tg.shape == (2, 4, 8, 1)
    assert (tg[0, :, :4, 0] == 0).all() and (tg[0, :, 4:, 0] == 2).all()
    assert (tg[1, ..., 0] == 2).all()
    tg2 = tag_maps(people, (4, 8), person_tags=[[1, 5], [3, 7]])
    np.testing.assert_array_equal(tg2[0, 0, 0], [1, 5])


def test_bad_input_raises():
    with pytest.raises(ValueError):
        gaussian_heatmaps(np.zeros((2, 17)), (8, 8))
    with pytest.raises(ValueError):
        gaussian_heatmaps(np.zeros((1, 17, 3)), (8, 8), sigma=0)
    with pytest.raises(ValueError):
        joint_indices(np.zeros((1, 17, 2)), (8, 8))
    with pytest.raises(ValueError):
        gaussian_heatmaps(np.zeros((1, 17, 3)), (8,))


# -- instance segmentation targets --------------------------------------------------------------
def test_instance_cells_by_hand():
    from posegroup.methods.ae.targets import instance_cells

    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 0:4, 0:6] = 1          # A (area 24): cell (0,0) full, cell (0,1) half
    masks[1, 0:8, 6:8] = 1          # B (area 16): cells (0,1) and (1,1) half each
    owner, fg = instance_cells(masks, None, (2, 2), 4)
    np.testing.assert_allclose(fg, [[1.0, 1.0], [0.0, 0.5]])
    # cell (0,1): A and B cover half each -> the smaller mask (B) owns it
    np.testing.assert_array_equal(owner, [[0, 1], [-1, 1]])
    ignore = np.zeros((8, 8), bool)
    ignore[4:8, 4:8] = True         # cell (1,1) fully ignored: nobody's (fg stays, the loss mask drops it)
    owner, fg = instance_cells(masks, ignore, (2, 2), 4)
    np.testing.assert_array_equal(owner, [[0, 1], [-1, -1]])
    owner, fg = instance_cells(np.zeros((0, 8, 8), np.uint8), None, (2, 2), 4)
    assert (owner == -1).all() and (fg == 0).all()


def test_sample_instance_pixels_and_content_seed():
    from posegroup.methods.ae.targets import content_rng, sample_instance_pixels

    owner = np.array([[0, 0, -1], [0, 1, -1]])
    out = sample_instance_pixels(owner, 3, 2, content_rng(owner))
    assert out.shape == (3, 2, 2)
    assert out[0, :, 1].tolist() == [1, 1] and set(out[0, :, 0]) < {0, 1, 3} and out[0, 0, 0] != out[0, 1, 0]
    assert out[1].tolist() == [[4, 1], [0, 0]]              # person 1 has one cell (flat 4): one valid
    assert (out[2] == 0).all()                              # empty slot
    again = sample_instance_pixels(owner, 3, 2, content_rng(owner))
    np.testing.assert_array_equal(out, again)               # the same content draws the same pixels
    draws = {tuple(sample_instance_pixels(np.zeros((4, 4), int), 1, 3, content_rng(np.array([s])))[0, :, 0])
             for s in range(10)}
    assert len(draws) > 1                                   # other content, other draws
    with pytest.raises(ValueError):
        sample_instance_pixels(owner, 3, 0, content_rng(owner))


def test_occlusion_weights_hand_values():
    from posegroup.methods.ae.targets import occlusion_weights
    # joint 0 occluded (v = 1) at the centre of cell (row 4, col 4); joint 1 visible (v = 2)
    kp = _kp([[(4.5, 4.5, 1), (2.5, 2.5, 2)]])
    w = occlusion_weights(kp, (9, 9), sigma=1.0, weight=3.0)
    assert w.shape == (2, 9, 9) and w.dtype == np.float32
    assert w[0, 4, 4] == pytest.approx(3.0)
    assert w[0, 4, 5] == pytest.approx(1 + 2 * math.exp(-0.5), abs=1e-6)      # one cell away
    assert w[0, 0, 0] == pytest.approx(1.0)                                   # beyond 3 sigma
    assert np.all(w[1] == 1.0)                                                # visible joints: 1
    assert np.all(occlusion_weights(kp, (9, 9), sigma=1.0, weight=1.0) == 1.0)
    assert occlusion_weights(kp, (9, 9), sigma=1.0, weight=0.0)[0, 4, 4] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="weight"):
        occlusion_weights(kp, (9, 9), weight=-1.0)
