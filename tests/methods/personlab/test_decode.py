import math

import numpy as np
import pytest

from posegroup.methods.personlab.decode import PAPER_HOUGH, decode_poses, expected_oks, instance_scores
from posegroup.methods.common import hough_scores, hough_votes, raw_votes
from posegroup.methods.personlab.hough import bilinear_sample, find_peaks, refine_mid_offsets
from posegroup.methods.personlab.targets import encode
from posegroup.skeleton import COCO17, CROWDPOSE14
from tests.helpers import STANDING_PX

def _people(offsets, base=STANDING_PX):
    kp = np.zeros((len(offsets), base.shape[0], 3), np.float32)
    for n, off in enumerate(offsets):
        kp[n, :, :2] = base + np.asarray(off, float)
        kp[n, :, 2] = 2
    return kp


def _perfect(kp, size, stride=4, kset=COCO17, **kw):
    t = encode(kp, None, None, size, stride, edges=kset.directed_edges, grid_offset=stride / 2, **kw)
    return t["heatmaps"], t["short_offsets"], t["mid_offsets"]


def _decode(maps, stride=4, kset=COCO17, **kw):
    return decode_poses(*maps, edges=kset.directed_edges, output_stride=stride, grid_offset=stride / 2,
                        sigmas=kset.sigmas, **kw)


def test_bilinear_sample_hand_values():
    field = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)  # channel c: c*6 + 3*i + j
    # cell (i, j) at (4 j + 2, 4 i + 2); (4, 4) is u = 0.5, v = 0.5
    v = bilinear_sample(field, 1, 4.0, 4.0, stride=4, grid_offset=2)
    assert v == pytest.approx(6 + (0 + 1 + 3 + 4) / 4)
    # clamped outside the grid
    assert bilinear_sample(field, 0, -100.0, -100.0, stride=4, grid_offset=2) == 0
    vec = np.stack([field, -field], -1)
    out = bilinear_sample(vec, np.array([0, 1]), np.array([2.0, 10.0]), np.array([2.0, 6.0]), stride=4,
                          grid_offset=2)
    np.testing.assert_allclose(out, [[0, 0], [11, -11]])


def test_hough_single_vote_mass_and_position():
    heat = np.zeros((1, 4, 4), np.float32)
    heat[0, 1, 1] = 1.0
    short = np.zeros((1, 4, 4, 2), np.float32)
    short[0, 1, 1] = (3.0, 1.0)  # cell (1, 1) at (6, 6) votes for (9, 7)
    h = hough_scores(heat, short, output_stride=4, grid_offset=2, radius=2.0)
    assert h.shape == (1, 16, 16)
    # weight stride^2 / (pi R^2) = 16 / (4 pi), split bilinearly around (9, 7): cell centres x.5
    assert h.sum() == pytest.approx(16 / (4 * math.pi), rel=1e-5)
    assert h[0, 6, 8] == pytest.approx(16 / (4 * math.pi) * 0.25, rel=1e-5)
    k, x, y, s = find_peaks(h, peak_threshold=0.0, blur_sigma=0.0)
    assert len(k) >= 1 and abs(x[0] - 9) <= 0.5 and abs(y[0] - 7) <= 0.5


def test_single_person_exact():
    kp = _people([(100, 40)])
    poses, scores = _decode(_perfect(kp, (64, 64)), **PAPER_HOUGH)
    assert poses.shape == (1, 17, 3)
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)
    assert scores[0] > 0.95 and poses[0, :, 2].min() > 0.9
    # defaults (Hough cells = output cells): the same positions; the expected-OKS mass sits at
    # cell centres, up to 2 px off, which lowers the small-sigma (face) keypoint scores
    fast, fast_scores = _decode(_perfect(kp, (64, 64)))
    np.testing.assert_allclose(fast[0, :, :2], kp[0, :, :2], atol=1e-3)
    assert fast_scores[0] > 0.9 and fast[0, :, 2].min() > 0.8


@pytest.mark.parametrize("mid_refine", ["field", "point"])
def test_two_people_close_together(mid_refine):
    kp = _people([(100, 40), (160, 60)])
    poses, scores = _decode(_perfect(kp, (64, 80)), mid_refine=mid_refine)
    assert poses.shape[0] == 2
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=1e-3)


def test_nms_radius():
    # two people 12 px apart: found with r = 10 (paper); with r = 20 the second is suppressed
    kp = _people([(100, 40), (112, 40)])
    maps = _perfect(kp, (64, 64))
    poses, _ = _decode(maps)
    assert poses.shape[0] == 2
    np.testing.assert_allclose(np.sort(poses[..., 0], axis=0), kp[..., 0], atol=1e-3)
    poses, _ = _decode(maps, nms_radius=20.0)
    assert poses.shape[0] == 1


def test_crowdpose_tree_k14():
    base = np.array([[-20, 20], [20, 20], [-25, 50], [25, 50], [-27, 80], [27, 80], [-15, 90], [15, 90],
                     [-15, 130], [15, 130], [-15, 170], [15, 170], [0, -10], [0, 10]], float)
    kp = _people([(80, 30), (200, 50)], base=base)
    poses, scores = _decode(_perfect(kp, (64, 80), kset=CROWDPOSE14), kset=CROWDPOSE14)
    assert poses.shape == (2, 14, 3)
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=1e-3)


def test_one_direction_edges_follow_from_the_root_only():
    # chain 0 -> 1 -> 2 with forward mid offsets only; a seed at 0 reaches everyone.
    base = np.array([[0, 0], [10, 40], [0, 80]], float)
    kp = _people([(60, 20)], base=base)
    edges = [(0, 1), (1, 2)]
    t = encode(kp, None, None, (32, 32), 4, edges=edges, grid_offset=2)
    heat = t["heatmaps"].copy()
    heat[1:] *= 0.5  # keypoint 0 is the best seed
    poses, _ = decode_poses(heat, t["short_offsets"], t["mid_offsets"], edges=edges, output_stride=4,
                            grid_offset=2, nms_radius=10.0)
    np.testing.assert_allclose(poses[0, :, :2], kp[0, :, :2], atol=1e-3)
    # with the backward list only ((1, 0), (2, 1)), a seed at 0 cannot reach 1 and 2: scored 0,
    # and 1, 2 then seed their own partial people
    t2 = encode(kp, None, None, (32, 32), 4, edges=[(1, 0), (2, 1)], grid_offset=2)
    poses, scores = decode_poses(heat, t2["short_offsets"], t2["mid_offsets"], edges=[(1, 0), (2, 1)],
                                 output_stride=4, grid_offset=2)
    assert len(poses) in (2, 3)  # seeded at 0 (alone), at 2 (reaches all), maybe at 1 (reaches 0)
    alone = [p for p in poses if p[1, 2] == 0 and p[2, 2] == 0]
    assert len(alone) == 1 and np.allclose(alone[0][0, :2], kp[0, 0, :2], atol=1e-3)
    complete = [p for p in poses if p[:, 2].min() > 0]
    assert len(complete) == 1 and np.allclose(complete[0][:, :2], kp[0, :, :2], atol=1e-3)


def test_expected_oks_hand_value():
    hough = np.zeros((1, 40, 40), np.float32)
    hough[0, 20, 23] = 2.0  # all mass at (23.5, 20.5)
    y = np.array([[[20.5, 20.5]]])
    lam2 = 10.0 * 10.0  # box area of a single point is 0 -> floored at 1; use two keypoints instead
    s = expected_oks(np.array([[[20.5, 20.5], [30.5, 30.5]]]), np.concatenate([hough, hough]),
                     np.array([[0.8, 1.0]]), np.array([0.1, 0.1]), radius=8.0)
    d2 = 3.0 ** 2
    assert s[0, 0] == pytest.approx(0.8 * math.exp(-d2 / (2 * lam2 * 0.01)), rel=1e-6)
    # keypoint 1 at (30.5, 30.5): the mass at (23.5, 20.5) is outside its disk of radius 8 -> 0
    assert s[0, 1] == 0
    assert y.shape == (1, 1, 2)


def test_instance_scores_claimed_keypoints():
    xy = np.array([[[0, 0], [50, 0]], [[3, 0], [90, 0]]], float)
    ks = np.array([[1.0, 1.0], [0.8, 0.6]])
    s = instance_scores(xy, ks, nms_radius=10.0)
    # person 1's keypoint 0 is within r of person 0's (higher): only 0.6 counts
    np.testing.assert_allclose(s, [1.0, 0.3])


def test_refine_mid_offsets_snaps_to_short():
    short = np.zeros((2, 4, 4, 2))
    short[1, :, :] = (1.0, -2.0)  # everywhere points 1 px right, 2 up
    mid = np.zeros((1, 4, 4, 2))
    mid[0, ..., 0] = 4.0
    out = refine_mid_offsets(mid, short, [(0, 1)], output_stride=4, grid_offset=2, steps=2)
    np.testing.assert_allclose(out[0, 0, 0], [6.0, -4.0])


def test_bad_shapes():
    with pytest.raises(ValueError, match="mid_offsets"):
        decode_poses(np.zeros((3, 4, 4)), np.zeros((3, 4, 4, 2)), np.zeros((3, 4, 4, 2)), edges=[(0, 1)],
                     output_stride=4)
    with pytest.raises(ValueError, match="edge"):
        decode_poses(np.zeros((3, 4, 4)), np.zeros((3, 4, 4, 2)), np.zeros((1, 4, 4, 2)), edges=[(0, 7)],
                     output_stride=4)


def test_empty_maps():
    poses, scores = decode_poses(np.zeros((17, 8, 8)), np.zeros((17, 8, 8, 2)), np.zeros((32, 8, 8, 2)),
                                 edges=COCO17.directed_edges, output_stride=4, grid_offset=2)
    assert poses.shape == (0, 17, 3) and scores.shape == (0,)


# ------------------------------------------------------------------ fast paths vs dense reference
from posegroup.methods.personlab.decode import expected_oks_sparse
from posegroup.methods.personlab.hough import offset_targets, sparse_peaks


@pytest.mark.parametrize("hough_stride,blur_sigma", [(1.0, 2.0), (2.0, 2.0), (1.0, 0.0), (1.0, 1.0)])
def test_sparse_peaks_and_cells_equal_dense(hough_stride, blur_sigma):
    rng = np.random.default_rng(int(hough_stride * 10 + blur_sigma))
    for _ in range(5):
        k, h, w = 3, int(rng.integers(5, 20)), int(rng.integers(5, 20))
        heat = (rng.random((k, h, w)) * (rng.random((k, h, w)) < 0.3)).astype(np.float32)
        short = (rng.normal(size=(k, h, w, 2)) * 6).astype(np.float32)
        kw = dict(output_stride=8, grid_offset=4, radius=8, hough_stride=hough_stride)
        hough = hough_scores(heat, short, **kw)
        dense = find_peaks(hough, hough_stride=hough_stride, peak_threshold=1e-3, blur_sigma=blur_sigma)
        v = hough_votes(heat, short, **kw)
        peaks, cells = sparse_peaks(*v[:4], k, v[4], hough_stride=hough_stride, peak_threshold=1e-3,
                                    blur_sigma=blur_sigma, return_cells=True)
        assert len(dense[0]) == len(peaks[0]) > 0
        for a, b in zip(dense, peaks):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        # the non-zero cells carry the dense map (each once)
        ck, cx, cy, chv = cells
        r = np.floor(cy / hough_stride).astype(int)
        c = np.floor(cx / hough_stride).astype(int)
        np.testing.assert_allclose(chv, hough[ck, r, c], rtol=1e-5)
        assert len(set(zip(ck, r, c))) == len(ck) == np.count_nonzero(hough)
        poses = rng.random((4, k, 2)) * [w * 8, h * 8]
        pres = rng.random((4, k))
        kap = np.array([0.1, 0.2, 0.3])
        np.testing.assert_allclose(expected_oks_sparse(poses, cells, pres, kap, radius=16),
                                   expected_oks(poses, hough, pres, kap, radius=16, hough_stride=hough_stride),
                                   rtol=1e-5, atol=1e-8)


def test_offset_targets_bilinear_and_nearest_hand_values():
    f = np.zeros((1, 2, 2, 2))
    f[0, 0, 0] = (1.0, 0.0)   # cell (0, 0) at (2, 2)
    f[0, 0, 1] = (-3.0, 0.0)  # cell (0, 1) at (6, 2)
    # bilinear at (3, 2): 3/4 of cell (0,0), 1/4 of cell (0,1): (3, 2) + (0.75 - 0.75, 0)
    np.testing.assert_allclose(offset_targets(f, 0, 3.0, 2.0, stride=4, grid_offset=2), [3.0, 2.0])
    # nearest at (3, 2) is cell (0, 0): its vote (2, 2) + (1, 0); at (4.5, 2.2) cell (0, 1): (6 - 3, 2)
    np.testing.assert_allclose(offset_targets(f, 0, 3.0, 2.0, stride=4, grid_offset=2, sampling="nearest"),
                               [3.0, 2.0])
    np.testing.assert_allclose(offset_targets(f, 0, np.array([4.5]), np.array([2.2]), stride=4, grid_offset=2,
                                              sampling="nearest"), [[3.0, 2.0]])
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 5, 7, 2))
    ch, x, y = rng.integers(0, 3, 40), rng.uniform(-10, 70, 40), rng.uniform(-10, 50, 40)
    np.testing.assert_allclose(offset_targets(g, ch, x, y, stride=8, grid_offset=4),
                               np.stack([x, y], -1) + bilinear_sample(g, ch, x, y, stride=8, grid_offset=4))


@pytest.mark.parametrize("whole", [True, False])
@pytest.mark.parametrize("hough_stride,blur_sigma", [(4.0, 2.0), (8.0, 2.0), (4.0, 0.0), (2.0, 3.0)])
def test_packed_peaks_equal_dense_map(monkeypatch, whole, hough_stride, blur_sigma):
    """The decoder's cropped canvas (boxes around the votes, or the whole map when small) finds
    exactly find_peaks' peaks on the dense map, and its cells are the map's non-zero cells;
    votes at and beyond the map border included."""
    from posegroup.methods.personlab import hough as dec

    monkeypatch.setattr(dec, "_WHOLE_MAP_CELLS", 1 << 30 if whole else 0)
    rng = np.random.default_rng(int(hough_stride * 10 + blur_sigma))
    found = 0
    for _ in range(6):
        k, h, w = 4, int(rng.integers(4, 24)), int(rng.integers(4, 24))
        heat = (rng.random((k, h, w)) * (rng.random((k, h, w)) < rng.uniform(0.02, 0.4))).astype(np.float32)
        heat[1] = 0                                         # a channel without votes
        short = (rng.normal(size=(k, h, w, 2)) * 10).astype(np.float32)
        short[:, :2] -= 30                                  # votes off the top / left border
        kw = dict(output_stride=8, grid_offset=4.0, radius=8.0, hough_stride=hough_stride)
        size = dec.hough_size((h, w), 8, 4.0, hough_stride)
        hough = dec._dense_hough(heat, short, size_hw=size, min_p=0.01, **kw)
        dense = find_peaks(hough, hough_stride=hough_stride, peak_threshold=1e-4, blur_sigma=blur_sigma)
        short_c = short.view(np.complex64).reshape(-1)
        peaks, cells, votes = dec.packed_peaks(heat, short_c, size_hw=size, min_p=0.01, peak_threshold=1e-4,
                                               blur_sigma=blur_sigma, **kw)
        assert len(dense[0]) == len(peaks[0])
        found += len(peaks[0])
        for a, b in zip(dense[:3], peaks[:3]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(dense[3], peaks[3], rtol=1e-6)   # OpenCV's blur: 1 ulp by image width
        ck, cx, cy, chv = cells
        r, c = np.floor(cy / hough_stride).astype(int), np.floor(cx / hough_stride).astype(int)
        np.testing.assert_array_equal(chv, hough[ck, r, c])
        assert len(set(zip(ck, r, c))) == len(ck) == np.count_nonzero(hough)
        for a, b in zip(votes, raw_votes(heat, short, output_stride=8, grid_offset=4.0, radius=8.0, min_p=0.01)):
            np.testing.assert_array_equal(a, b)
    assert found > 10


def _reference_decode(heat, short, mid, edges, stride, go, sigmas, nms_radius=10.0, hough_stride=1.0,
                      vote_threshold=0.0):
    """Independent one-seed-at-a-time greedy decoder on the dense maps (paper's loop, point
    refinement twice, bilinear sampling)."""
    k = heat.shape[0]
    hough = hough_scores(np.where(heat > vote_threshold, heat, 0), short, output_stride=stride, grid_offset=go,
                         hough_stride=hough_stride)
    ck, cx, cy, _ = find_peaks(hough, peak_threshold=0.01, blur_sigma=2.0, hough_stride=hough_stride)
    so = bilinear_sample(short, ck, cx, cy, stride=stride, grid_offset=go)
    cx, cy = cx + so[:, 0], cy + so[:, 1]
    people, reached = [], []
    for t, x, y in zip(ck, cx, cy):
        if any(np.hypot(*(p[t] - (x, y))) <= nms_radius for p in people):
            continue
        pos = {int(t): np.array([x, y])}
        frontier = [int(t)]
        while frontier:
            a = frontier.pop(0)
            for e, (s, b) in enumerate(edges):
                if s == a and b not in pos:
                    p = pos[a] + bilinear_sample(mid, e, *pos[a], stride=stride, grid_offset=go)
                    for _ in range(2):
                        p = p + bilinear_sample(short, b, *p, stride=stride, grid_offset=go)
                    pos[b] = p
                    frontier.append(b)
        people.append(np.array([pos.get(i, (x, y)) for i in range(k)]))
        reached.append(np.array([i in pos for i in range(k)]))
    xy = np.array(people)
    pres = bilinear_sample(heat, np.arange(k)[None], xy[..., 0], xy[..., 1], stride=stride, grid_offset=go)
    ks = np.where(reached, expected_oks(xy, hough, pres, 2 * np.asarray(sigmas), hough_stride=hough_stride), 0.0)
    inst = instance_scores(xy, ks)
    order = np.argsort(-inst, kind="stable")
    return xy[order], ks[order], inst[order]


@pytest.mark.parametrize("hough", [PAPER_HOUGH, {}])
def test_batched_greedy_equals_one_at_a_time_reference(hough):
    rng = np.random.default_rng(3)
    kp = _people([(60 + 50 * i + rng.uniform(-20, 20), 30 + rng.uniform(-20, 20)) for i in range(6)])
    kp[..., :2] += rng.normal(size=kp[..., :2].shape) * 4
    kp[2, 3:5, 2] = 0  # a few unlabelled joints: trees fall apart, more seeds
    heat, short, mid = _perfect(kp, (64, 96), stride=4)
    heat = heat * rng.uniform(0.6, 1.0, heat.shape).astype(np.float32)
    heat[:, ::7] *= 0.005                                   # some cells below the vote threshold
    ref = dict(hough_stride=1.0, vote_threshold=0.0) if hough else dict(hough_stride=4.0, vote_threshold=0.01)
    xy, ks, inst = _reference_decode(heat, short, mid, COCO17.directed_edges, 4, 2, COCO17.sigmas, **ref)
    poses, scores = _decode((heat, short, mid), mid_refine="point", **hough)
    assert len(poses) == len(xy) >= 6
    np.testing.assert_allclose(poses[..., :2], xy, atol=1e-3)
    np.testing.assert_allclose(poses[..., 2], ks, atol=1e-5)
    np.testing.assert_allclose(scores, inst, atol=1e-5)


@pytest.mark.parametrize("shift", [(12, 5), (11, 0)])
def test_nearest_sampling_separates_touching_people(shift):
    # two people ~12 px apart in different poses: at stride 8 bilinear sampling mixes their
    # offsets (measured: (12, 5) misplaces keypoints by ~0.7 px, (11, 0) decodes 3 people)
    kp = _people([(100, 40), (100 + shift[0], 40 + shift[1])])
    kp[1, :, 1] += np.linspace(0, 30, 17)  # different poses
    maps = _perfect(kp, (40, 40), stride=8)
    bad = 0
    for mode in ("bilinear", "nearest"):
        for refine in ("field", "point"):
            poses, _ = _decode(maps, stride=8, offset_sampling=mode, mid_refine=refine)
            if mode == "nearest":
                assert len(poses) == 2
                order = np.argsort(poses[:, 0, 0])
                np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=1e-3)
            else:
                bad += len(poses) != 2 or np.abs(poses[np.argsort(poses[:, 0, 0])][..., :2] - kp[..., :2]).max() > 0.3
    assert bad == 2  # the case nearest sampling is for


def test_oks_mass_votes_scores_a_one_keypoint_person():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = (50.3, 40.6)  # every joint imputed at the one labelled point: box area 0
    kp[0, :, 2] = 1
    maps = _perfect(kp, (32, 32))
    p_map, s_map = _decode(maps)
    p_votes, s_votes = _decode(maps, oks_mass="votes")
    np.testing.assert_allclose(p_votes[0, :, :2], kp[0, :, :2], atol=1e-3)
    assert s_votes[0] > 0.99  # exact position, all Hough mass on it
    assert s_map[0] < 0.5  # Hough cell centres ~0.5 px off, λ floored at 1 px


def test_bad_options():
    maps = _perfect(_people([(100, 40)]), (64, 64))
    for bad in ({"offset_sampling": "cubic"}, {"mid_refine": "both"}, {"oks_mass": "x"}):
        with pytest.raises(ValueError):
            _decode(maps, **bad)


@pytest.mark.parametrize("whole_field", [True, False])
def test_non_finite_offsets_read_as_zero(monkeypatch, whole_field):
    """Non-finite offsets are neutralised where they are read (the whole field once when small,
    else the values gathered): the same poses as with those offsets set to 0 beforehand."""
    from posegroup.methods.personlab import hough as dec

    monkeypatch.setattr(dec, "_CHECK_WHOLE_FIELD", 1 << 30 if whole_field else 0)
    rng = np.random.default_rng(5)
    heat, short, mid = _perfect(_people([(60, 30), (120, 40)]), (64, 64), stride=4)
    bad_s, bad_m = short.copy(), mid.copy()
    bad_s[rng.random(short.shape) < 0.05] = np.nan
    bad_m[rng.random(mid.shape) < 0.05] = np.inf
    bad_m[rng.random(mid.shape) < 0.05] = -np.inf
    for opts in ({}, {"offset_sampling": "nearest"}, {"mid_refine": "field"}, PAPER_HOUGH):
        want = _decode((heat, np.nan_to_num(bad_s, nan=0.0, posinf=0.0, neginf=0.0),
                        np.nan_to_num(bad_m, nan=0.0, posinf=0.0, neginf=0.0)), **opts)
        got = _decode((heat, bad_s, bad_m), **opts)
        assert len(got[0]) == len(want[0]) > 0
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
