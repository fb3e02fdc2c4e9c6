import numpy as np

from posegroup.methods.personlab.segment import embedding_distances, refine_long_offsets, segment
from posegroup.methods.personlab.targets import encode
from posegroup.skeleton import COCO17



def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_embedding_distance_hand_value():
    # one cell, K = 2; long offsets point exactly at instance 0's keypoints
    long_ = np.zeros((2, 1, 1, 2))
    long_[0, 0, 0] = (8, 0)  # cell at (2, 2) -> (10, 2)
    long_[1, 0, 0] = (8, 30)  # -> (10, 32)
    poses = np.array([[[10, 2, 1.0], [10, 32, 1.0]], [[40, 2, 1.0], [40, 42, 0.5]]])
    d = embedding_distances(long_, poses, output_stride=4, grid_offset=2)
    assert d[0, 0, 0] == 0
    # instance 1: lambda = sqrt(0 * 40) floored to 1 -> sqrt(1); distances 30 and sqrt(30^2 + 10^2)
    expected = (1.0 * 30 + 0.5 * np.hypot(30, 10)) / 1.5 / 1.0
    assert abs(d[1, 0, 0] - expected) < 1e-9


def test_refine_long_offsets_self_then_short():
    long_ = np.zeros((1, 3, 3, 2))
    long_[0, ..., 0] = 4.0  # everywhere: 4 px right
    short = np.zeros((1, 3, 3, 2))
    short[0, ..., 1] = 1.0  # everywhere: 1 px down
    out = refine_long_offsets(long_, short, output_stride=4, grid_offset=2, self_steps=2, short_steps=2)
    # self steps sample the *current* field: L <- 4 + 4 = 8, then 8 + 8 = 16 (sampling is
    # clamped at the grid border, so the constant field stays constant); short: +1 down, twice
    np.testing.assert_allclose(out[0, 1, 1], [16.0, 2.0])


def test_perfect_long_offsets_two_rectangles():
    kp = np.zeros((2, 3, 3), np.float32)
    kp[0] = [[10, 10, 2], [20, 40, 2], [12, 70, 2]]
    kp[1] = [[50, 12, 2], [58, 40, 2], [50, 72, 2]]
    masks = np.zeros((2, 80, 72), np.uint8)
    masks[0, 2:78, 2:32] = 1
    masks[1, 4:78, 38:70] = 1
    edges = [(0, 1), (1, 2), (1, 0), (2, 1)]
    t = encode(kp, masks, None, (20, 18), 4, edges=edges, grid_offset=2)
    poses = np.concatenate([kp[..., :2], np.ones((2, 3, 1))], -1)
    m = segment(t["segmentation"], t["long_offsets"], t["short_offsets"], poses, output_stride=4, grid_offset=2)
    assert m.shape == (2, 20, 18)
    cell = masks[:, 2::4, 2::4].astype(bool)
    assert _iou(m[0], cell[0]) > 0.95 and _iou(m[1], cell[1]) > 0.95
    up = segment(t["segmentation"], t["long_offsets"], t["short_offsets"], poses, output_stride=4,
                 grid_offset=2, output_size=(80, 72))
    assert up.shape == (2, 80, 72)
    # at input resolution the stride-4 boundary costs up to half a cell on each side of these
    # 30 px wide rectangles
    assert _iou(up[0], masks[0] > 0) > 0.8 and _iou(up[1], masks[1] > 0) > 0.8
    assert not (up[0] & up[1]).any()


def test_perfect_long_offsets_real_coco_masks(coco_val_gt):
    from pycocotools.coco import COCO
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_val_gt))
    ious = []
    # images with 2-4 people that all have a polygon segmentation
    picked = 0
    for iid in sorted(gt.getImgIds()):
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=iid, iscrowd=False)) if a["num_keypoints"] > 0]
        if not 2 <= len(anns) <= 4 or not all(isinstance(a["segmentation"], list) for a in anns):
            continue
        info = gt.loadImgs(iid)[0]
        masks = np.stack([gt.annToMask(a) for a in anns])
        kp = np.stack([np.asarray(a["keypoints"], np.float32).reshape(-1, 3) for a in anns])
        size = (int(np.ceil(info["height"] / 4)), int(np.ceil(info["width"] / 4)))
        t = encode(kp, masks, None, size, 4, edges=COCO17.directed_edges, grid_offset=2)
        poses = kp.copy()
        poses[..., 2] = (kp[..., 2] > 0)  # p_k = 1 on the labelled keypoints only
        m = segment(t["segmentation"], t["long_offsets"], t["short_offsets"], poses, output_stride=4,
                    grid_offset=2, output_size=(info["height"], info["width"]))
        ious += [_iou(m[j], masks[j] > 0) for j in range(len(anns))]
        picked += 1
        if picked == 4:
            break
    assert picked == 4
    # nearest-cell sampled targets and unlabelled keypoints cost a little at the boundaries
    assert np.mean(ious) > 0.8, ious
