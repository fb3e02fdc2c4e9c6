import math

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from posegroup.backbones.hourglass import hourglass_from_config
from posegroup.methods import build_method
from posegroup.methods.ae import SEG_DECODE_OPTIONS, AEMethod, downsample_ignore_mask
from posegroup.methods.ae.head import merge_outputs
from posegroup.skeleton import COCO17, CROWDPOSE14

torch.set_num_threads(1)


def test_build_and_channels():
    m = build_method("ae", COCO17)
    assert isinstance(m, AEMethod) and m.name == "ae" and m.num_channels == 34
    assert AEMethod(CROWDPOSE14, tag_dim=2).num_channels == 14 * 3
    with pytest.raises(ValueError, match="push_form"):
        AEMethod(COCO17, push_form="nope")


@pytest.mark.parametrize("options,pattern", [
    ({"detection_treshold": 0.2}, r"unknown option 'detection_treshold'.*did you mean 'detection_threshold'"),
    ({"pull_wieght": 1e-3}, r"unknown option 'pull_wieght'.*did you mean 'pull_weight'"),
    ({"flp": True}, r"unknown option 'flp'.*did you mean 'flip'"),
    ({"anything": True}, r"unknown option 'anything'.*valid: .*detection_threshold"),
    ({"sigma": 0}, r"option 'sigma'.*invalid value 0"),
    ({"tag_dim": 1.5}, r"option 'tag_dim' must be an integer"),
    ({"segmentation": "yes"}, r"option 'segmentation' must be true or false"),
    ({"seg_samples": 0}, r"option 'seg_samples'"),
    ({"seg_decode": "mask-rcnn"}, r"option 'seg_decode'"),
    ({"subpixel": "cubic"}, r"option 'subpixel'.*quarter"),
    ({"top_k": 0}, r"option 'top_k'"),
    ({"refine": "on"}, r"option 'refine' must be true or false"),
    ({"scales": [1, -2]}, r"option 'scales'"),
    ({"joint_order": [0, 1, 2]}, r"option 'joint_order'.*permutation of range\(17\)"),
])
def test_bad_options_are_one_line_errors_at_build(options, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        build_method("ae", COCO17, **options)
    assert "\n" not in str(err.value)


def test_settings_object_and_decode_defaults():
    """Every keyword of decode.group (inspect.signature) is a valid default; the settings hold
    the typed training options and the rest are the predict defaults."""
    import inspect
    from posegroup.methods.ae import AESettings, decode
    group_kw = [n for n, p in inspect.signature(decode.group).parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert set(group_kw) <= set(AEMethod.DECODE_OPTIONS) and "detection_threshold" in group_kw
    m = build_method("ae", COCO17, sigma=3, max_people=20.0, detection_threshold=0.2, refine=True,
                     segmentation=True, seg_threshold=0.4, joint_order=list(range(17))[::-1])
    assert isinstance(m.settings, AESettings) and m.settings.sigma == 3.0 and type(m.settings.max_people) is int
    assert m.sigma == 3.0 and m.max_people == 20 and m.segmentation and m.seg_tag_dim == 1
    assert m.decode_defaults == {"detection_threshold": 0.2, "refine": True, "joint_order": list(range(17))[::-1]}
    assert m.seg_decode_defaults == {"seg_threshold": 0.4}
    assert build_method("ae", COCO17).settings == AESettings()
    AEMethod.check_options({"joint_order": [0, 1]})       # no keypoint set yet: checked at build


def test_encode_one_person():
    m = AEMethod(CROWDPOSE14)
    k = 14
    kp = np.zeros((1, k, 3), np.float32)
    kp[0, 0] = (18.0, 26.0, 2)      # output (4.5, 6.5): centre of cell row 6, column 4
    kp[0, 5] = (41.0, 10.0, 1)      # output (10.25, 2.5): cell row 2, column 10
    kp[0, 7] = (30.0, 30.0, 0)      # unlabelled
    t = m.encode(kp, np.zeros((64, 64), bool), None, (16, 16), 4)
    assert t["heatmaps"].shape == (k, 16, 16) and t["heatmaps"].dtype == np.float32
    assert t["mask"].shape == (16, 16) and t["mask"].dtype == np.float32 and t["mask"].min() == 1
    assert t["joints"].shape == (30, k, 2) and t["joints"].dtype == np.int64
    hm = t["heatmaps"]
    assert np.unravel_index(hm[0].argmax(), hm[0].shape) == (6, 4)
    assert hm[0, 6, 4] == pytest.approx(1.0)
    assert hm[0, 6, 5] == pytest.approx(math.exp(-1 / 8), rel=1e-5)          # sigma 2, 1 cell away
    assert np.unravel_index(hm[5].argmax(), hm[5].shape) == (2, 10)
    assert hm[5, 2, 10] == pytest.approx(math.exp(-0.25 ** 2 / 8), rel=1e-5)
    assert hm[7].max() == 0
    j = t["joints"]
    assert j[0, 0].tolist() == [0 * 256 + 6 * 16 + 4, 1]
    assert j[0, 5].tolist() == [5 * 256 + 2 * 16 + 10, 1]
    assert j[0, 7, 1] == 0 and j[1:, :, 1].sum() == 0
    # joints index the heatmap peaks
    flat = hm.reshape(-1)
    assert flat[j[0, 0, 0]] == hm[0].max() and flat[j[0, 5, 0]] == hm[5].max()


def test_occluded_weight_encodes_weights_and_scales_the_heatmap_loss():
    """occluded_weight w: encode adds "heatmap_weights" (w at an occluded joint's cell, 1 at a
    visible one) and the heatmap term of the loss is the weighted MSE; default 1: no key."""
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 0] = (18.0, 26.0, 2)      # visible, output cell (6, 4)
    kp[0, 5] = (42.0, 10.0, 1)      # occluded, output cell (2, 10)
    assert "heatmap_weights" not in AEMethod(COCO17).encode(kp, None, None, (16, 16), 4)
    m = AEMethod(COCO17, occluded_weight=4.0)
    t = m.encode(kp, None, None, (16, 16), 4)
    w = t["heatmap_weights"]
    assert w.shape == (17, 16, 16) and w[5, 2, 10] == pytest.approx(4.0) and np.all(w[0] == 1)
    batch = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    pred = torch.zeros(1, m.num_channels, 16, 16)          # all-zero maps: error = target²
    _, parts = m.loss([pred], batch)
    want = float((torch.from_numpy(t["heatmaps"]) ** 2 * torch.from_numpy(w)).mean())
    assert parts["heatmap"] == pytest.approx(want, rel=1e-5)
    _, plain = AEMethod(COCO17).loss([pred], {k: v for k, v in batch.items() if k != "heatmap_weights"})
    assert parts["heatmap"] > plain["heatmap"] * 1.2
    with pytest.raises(ValueError, match="occluded_weight"):
        AEMethod(COCO17, occluded_weight=-1)


def test_encode_no_people():
    m = AEMethod(COCO17)
    t = m.encode(np.zeros((0, 17, 3)), np.zeros((32, 32), bool), None, (8, 8), 4)
    assert t["heatmaps"].max() == 0 and t["joints"].sum() == 0
    with pytest.raises(ValueError, match="keypoints"):
        m.encode(np.zeros((1, 5, 3)), None, None, (8, 8), 4)


def test_ignore_mask_downsampling():
    ign = np.zeros((16, 16), bool)
    ign[0:8, 0:6] = True            # cell (0,0) 100 %, (0,1) 50 % -> counted, (1,0) 100 %
    ign[8:11, 8:12] = True          # cell (2,2) 12/16 = 75 % -> ignored
    mask = downsample_ignore_mask(ign, (4, 4), 4)
    expected = np.ones((4, 4), np.float32)
    expected[0, 0] = expected[1, 0] = expected[2, 2] = 0
    assert np.array_equal(mask, expected)
    # input smaller than output * stride: the missing part counts as not ignored
    mask2 = downsample_ignore_mask(np.ones((6, 6), bool), (2, 2), 4)
    assert mask2.tolist() == [[0, 1], [1, 1]]


def test_loss_of_perfect_predictions():
    m = AEMethod(COCO17)
    rng = np.random.default_rng(0)
    kp = np.zeros((2, 17, 3), np.float32)
    kp[..., :2] = rng.uniform(4, 124, size=(2, 17, 2))
    kp[..., 2] = 2
    kp[1, 3:6, 2] = 0
    ign = np.zeros((128, 128), bool)
    ign[:16, :16] = True
    t = m.encode(kp, ign, None, (32, 32), 4)
    tags = torch.zeros(17 * 32 * 32)
    for n in range(2):                                    # person n's tag: 10 n, far apart
        ok = t["joints"][n, :, 1] > 0
        tags[torch.from_numpy(t["joints"][n, ok, 0])] = 10.0 * n
    heat = torch.from_numpy(t["heatmaps"])[None]
    pred = merge_outputs(heat, tags.reshape(1, 17, 32, 32))
    batch = {key: torch.from_numpy(v)[None] for key, v in t.items()}
    total, parts = m.loss([pred, pred], batch)
    assert parts["heatmap"] == 0.0 and parts["pull"] == 0.0
    # ~1.9e-25: pytest.approx's default abs=1e-12 would accept anything below 1e-12, so relative only
    assert parts["push"] == pytest.approx(2 * 1e-3 * 2 * math.exp(-50) / 4, rel=1e-4, abs=0)
    assert parts["push"] > 0
    # an imperfect prediction costs more: nonzero heatmap, pull > 0
    bad = pred.clone()
    bad[0, 17 + 0] += 1.0                                 # joint 0's tag map
    bad[0, 0] += 0.5                                      # joint 0's heatmap
    total_b, parts_b = m.loss([bad], batch)
    assert parts_b["heatmap"] > 0 and parts_b["pull"] > 0 and total_b > total / 2


class BlobModel(nn.Module):
    """Fake network: every heatmap channel = 4x4 mean-pooled brightness of the input (so the
    peak sits where the image is bright), tags 0."""

    input_multiple = 16

    def __init__(self, k, stride=4):
        super().__init__()
        self.k, self.stride = k, stride
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        v = x[:, :1] - x[:, :1].amin(dim=(2, 3), keepdim=True)
        v = F.avg_pool2d(v, self.stride)
        v = v / v.amax(dim=(2, 3), keepdim=True)
        heat = v.expand(-1, self.k, -1, -1)
        return [merge_outputs(heat, torch.zeros_like(heat))]


BLOB_XY = (101.0, 74.0)                                   # blob centre (continuous coordinates)


def blob_image(half: int = 5) -> np.ndarray:
    """A black (100, 150, 3) image with a white square of side 2 * ``half`` centred on BLOB_XY."""
    img = np.zeros((100, 150, 3), np.uint8)
    x, y = int(BLOB_XY[0]), int(BLOB_XY[1])
    img[y - half:y + half, x - half:x + half] = 255
    return img


@pytest.mark.parametrize("stride", [4, 2])
@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((1.0,), True), ((1.0, 2.0, 0.5), True)])
def test_predict_maps_back_to_image_pixels(scales, flip, stride):
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    x0, y0 = BLOB_XY
    img = blob_image(5 * stride // 4)                     # about 2 output cells wide (no wide plateau)
    poses, scores = m.predict(BlobModel(k, stride), img, input_size=128, scales=scales, flip=flip)
    assert poses.shape == (1, k, 3) and scores.shape == (1,)
    cell = stride * 150 / 128                             # one output cell in image px
    assert np.abs(poses[0, :, 0] - x0).max() < 0.6 * cell
    assert np.abs(poses[0, :, 1] - y0).max() < 0.6 * cell
    assert scores[0] > 0.5


def test_predict_tiny_hourglass_random_init():
    torch.manual_seed(0)
    k = COCO17.num_keypoints
    m = AEMethod(COCO17)
    net = hourglass_from_config("tiny", m.num_channels)
    img = np.random.default_rng(0).integers(0, 256, size=(100, 150, 3), dtype=np.uint8)
    poses, scores = m.predict(net, img, input_size=128, detection_threshold=-1.0)
    assert poses.ndim == 3 and poses.shape[1:] == (k, 3) and poses.shape[0] >= 1
    assert scores.shape == (poses.shape[0],)
    assert poses.dtype == np.float32
    assert (poses[..., 0] >= 0).all() and (poses[..., 0] <= 150).all()
    assert (poses[..., 1] >= 0).all() and (poses[..., 1] <= 100).all()
    assert net.training  # mode restored
    # a threshold above every score gives no people, with the right shapes
    p0, s0 = m.predict(net, img, input_size=128, detection_threshold=1e6)
    assert p0.shape == (0, k, 3) and s0.shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        m.predict(net, img.astype(np.float32), input_size=128)


@pytest.mark.slow
def test_tiny_hourglass_overfits_two_people():
    """Training signal end to end: the tiny hourglass overfits one synthetic two-person image
    (joints drawn as coloured squares) and the decoder then separates the two people by tag
    (one-stack tiny hourglass, 500 steps: ~16 s on one CPU thread; measured max joint error
    0.15 px)."""
    from posegroup.data.transforms import normalize_image

    torch.manual_seed(0)
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    net = hourglass_from_config({"name": "tiny", "num_stacks": 1}, m.num_channels)
    rng = np.random.default_rng(0)
    img = np.zeros((128, 128, 3), np.uint8)
    kp = np.zeros((2, k, 3), np.float32)
    colours = rng.integers(60, 256, (k, 3))
    for n, (ox, oy) in enumerate([(20, 20), (70, 60)]):
        for j in range(k):
            x, y = ox + 8 * (j % 4) + 4.5, oy + 10 * (j // 4) + 4.5
            kp[n, j] = (x, y, 2)
            img[int(y) - 2:int(y) + 2, int(x) - 2:int(x) + 2] = colours[j]
    batch = {key: torch.from_numpy(v)[None] for key, v in
             m.encode(kp, np.zeros((128, 128), bool), None, (32, 32), 4).items()}
    x = torch.from_numpy(normalize_image(img))[None]
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(500):
        loss, _ = m.loss(net(x), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    poses, scores = m.predict(net, img, input_size=128)
    assert len(poses) == 2
    err = np.abs(poses[:, None, :, :2] - kp[None, :, :, :2]).max(axis=(2, 3))   # (pred, true)
    assert err.min(axis=1).max() < 1.0                      # every joint within a pixel
    assert set(err.argmin(axis=1)) == {0, 1}


def test_predict_true_ids_takes_every_test_option():
    """The true-id ceiling runs the network like predict, with any test option predict takes
    (multiscale_tags was passed on to the decoder and failed)."""
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    img = blob_image()
    truth = np.zeros((1, k, 3))
    truth[0] = [*BLOB_XY, 2.0]
    opts = {**m.INFERENCE_OPTIONS, "input_size": 128, "scales": (1.0, 2.0), "flip": True, "multiscale_tags": "scale1",
            "refine": True}
    opts.update({"detection_threshold": 0.1, **SEG_DECODE_OPTIONS})     # a decode and segmentation options
    poses, scores = m.predict_true_ids(BlobModel(k), img, truth, **opts)
    assert poses.shape == (1, k, 3) and scores.shape == (1,)
    assert np.abs(poses[0, :, :2] - BLOB_XY).max() < 0.6 * 4 * 150 / 128


def test_multiscale_tags_default_is_scale1():
    """Multi-scale: by default only scale 1's tags are kept (the measured better choice on a
    small model); "concat" (paper) stacks the tags of every scale."""
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    img = blob_image()
    assert m.INFERENCE_OPTIONS["multiscale_tags"] == "scale1"
    tags = m.network_outputs(BlobModel(k), img, input_size=128, scales=(1.0, 2.0, 0.5)).tags
    tags_c = m.network_outputs(BlobModel(k), img, input_size=128, scales=(1.0, 2.0, 0.5),
                               multiscale_tags="concat").tags
    assert tags.shape[-1] == 1 and tags_c.shape[-1] == 3


class TwoPeopleModel(nn.Module):
    """Fake network: joint j's heatmap peaks at both ``centres`` (output cells), the brighter
    peak alternating with j (so the candidates' score order differs from joint to joint), tags 0."""

    input_multiple = 16

    def __init__(self, k, centres, stride=4):
        super().__init__()
        self.k, self.centres, self.stride = k, centres, stride
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        h, w = x.shape[2] // self.stride, x.shape[3] // self.stride
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        heat = torch.zeros(x.shape[0], self.k, h, w)
        for j in range(self.k):
            for n, (cx, cy) in enumerate(self.centres):
                amp = 0.9 if (n + j) % 2 == 0 else 0.6
                heat[:, j] = torch.maximum(heat[:, j], amp * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0))
        return [merge_outputs(heat, torch.zeros_like(heat))]


class FaintJointModel(TwoPeopleModel):
    """TwoPeopleModel whose second person's joint 0 peaks at only 0.15, under the detection
    threshold 0.2: only refine can find it."""

    def forward(self, x):
        heat = TwoPeopleModel.forward(self, x)[0][:, :self.k]
        h, w = heat.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx, cy = self.centres[1]
        others = heat[:, 0] * ((xx - cx) ** 2 + (yy - cy) ** 2 > 9)
        heat[:, 0] = torch.maximum(others, 0.15 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0))
        return [merge_outputs(heat, torch.zeros_like(heat))]


def test_predict_true_ids_refines_like_predict():
    """The ceiling decodes as the prediction does, refine included: a joint whose peak is under
    the detection threshold is found with refine on (at its true place, its heatmap score) and
    missing with refine off (filled at the person's mean, score 0)."""
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    img = np.zeros((128, 128, 3), np.uint8)
    truth = np.zeros((2, k, 3))
    truth[0], truth[1] = [30.0, 42.0, 2.0], [90.0, 82.0, 2.0]
    net = FaintJointModel(k, [(7, 10), (22, 20)])
    found = {}
    for refine in (True, False):
        poses, _ = m.predict_true_ids(net, img, truth, input_size=128, flip=False, detection_threshold=0.2,
                                      refine=refine)
        assert len(poses) == 2, refine
        second = poses[np.abs(poses[:, 1, :2] - truth[1, 1, :2]).max(axis=1).argmin()]
        found[refine] = second[0]
    assert abs(found[True][2] - 0.15) < 0.02 and np.abs(found[True][:2] - truth[1, 0, :2]).max() < 4
    assert found[False][2] == 0


def test_predict_true_ids_does_not_depend_on_the_tag_threshold():
    """The ceiling's perfect tags stay further apart than any ``tag_threshold``: two people come
    back whole at 1 and at 5 (with ids 2 apart, a threshold of 3 let the matching swap their joints)."""
    k = CROWDPOSE14.num_keypoints
    m = AEMethod(CROWDPOSE14)
    img = np.zeros((128, 128, 3), np.uint8)
    truth = np.zeros((2, k, 3))
    truth[0], truth[1] = [30.0, 42.0, 2.0], [90.0, 82.0, 2.0]
    net = TwoPeopleModel(k, [(7, 10), (22, 20)])                        # the cells of those points
    for thr in (1.0, 5.0):
        poses, _ = m.predict_true_ids(net, img, truth, input_size=128, flip=False, tag_threshold=thr)
        assert len(poses) == 2, thr
        err = np.abs(poses[:, None, :, :2] - truth[None, :, :, :2]).max(axis=(2, 3))   # (pred, true)
        assert sorted(err.argmin(axis=1)) == [0, 1] and err.min(axis=1).max() < 4, thr


def _two_people_a_cell_apart(k: int, h: int = 32, w: int = 32):
    """Perfect outputs of two people whose same joints lie 1.6 cells apart (grid cells): Gaussian
    heatmaps (std 1 cell), true-id tags (:func:`targets.tag_maps`), and offsets from every cell to
    the nearer person's joint (PoseNet's short-range offsets, exact). Returns (truth (2, K, 3)
    grid cells, heat (K, H, W), tags (K, H, W, 1), offsets (K, 2, H, W))."""
    from posegroup.methods.ae.targets import tag_maps
    j = np.arange(k, dtype=np.float64)
    truth = np.zeros((2, k, 3))
    truth[0] = np.stack([3.3 + 1.5 * j, 8.6 + 0.9 * j, np.full(k, 2.0)], axis=1)
    truth[1] = truth[0] + [1.6, 0.4, 0.0]
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    d2 = (xx[None, None] - truth[:, :, 0, None, None]) ** 2 + (yy[None, None] - truth[:, :, 1, None, None]) ** 2
    heat = np.exp(-d2 / 2.0).max(axis=0).astype(np.float32)                       # (K, H, W)
    nearer = d2.argmin(axis=0)                                                     # (K, H, W)
    target = np.where(nearer[..., None] == 0, truth[0, :, None, None, :2], truth[1, :, None, None, :2])
    offsets = np.moveaxis(target - np.stack([xx, yy], axis=-1), -1, 1).astype(np.float32)   # (K, 2, H, W)
    return truth, heat, tag_maps(truth, (h, w)).astype(np.float32), offsets


def test_hough_factor_finds_joints_one_cell_apart_at_their_places():
    """Two people's joints 1.6 cells apart are one peak of the heatmaps (3x3 NMS keeps one of
    each pair): without refine, the paper's candidates lose joints. Voted by exact offsets onto a
    grid twice finer (``hough_factor`` 2) they are two peaks, and every joint of both people comes
    back within a quarter cell of its true place (the smoothing's pull toward the other peak is
    what is left; stride 4 px here, so 1 px)."""
    from posegroup.methods.ae import AEOutputs
    k = COCO17.num_keypoints
    m = AEMethod(COCO17, short_offsets=True)
    truth, heat, tags, offsets = _two_people_a_cell_apart(k)
    outs = AEOutputs(heat, tags, 1.0, 4, None, offsets)
    found = {}
    for n in (0, 2):
        poses, _ = m.decode(outs, m.inference_settings({"hough_factor": n, "refine": False}), (128, 128, 3))
        err = np.full((2, k), np.inf)                         # each true joint's distance to its nearest found one
        for p in poses:
            ok = p[:, 2] > 0
            d = np.hypot(*(p[None, :, :2] - 4 * truth[:, :, :2]).transpose(2, 0, 1))
            err = np.minimum(err, np.where(ok[None], d, np.inf))
        found[n] = err
    assert (found[0] > 4.0).sum() >= k // 2                   # half the pairs merged into one peak
    assert len(poses) == 2 and found[2].max() < 1.0
    with pytest.raises(ValueError, match="'hough_factor' needs method.options.short_offsets"):
        AEMethod(COCO17).decode(outs._replace(offsets=None), AEMethod(COCO17).inference_settings({"hough_factor": 2}),
                                (128, 128, 3))
    with pytest.raises(ValueError, match="hough_factor needs method.options.short_offsets"):
        AEMethod(COCO17, hough_factor=2)
    with pytest.raises(ValueError, match="option 'hough_factor'"):
        AEMethod(COCO17, short_offsets=True, hough_factor=-1)
