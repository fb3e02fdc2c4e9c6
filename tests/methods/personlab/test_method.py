import numpy as np
import pytest
import torch

from posegroup.methods import build_method
from posegroup.methods.personlab import METHOD, PersonLabMethod
from posegroup.methods.personlab import head as head_mod
from posegroup.methods.personlab.targets import encode
from posegroup.skeleton import COCO17, CROWDPOSE14

from tests.helpers import STANDING_PX


def test_build_and_channels():
    m = build_method("personlab", COCO17)
    assert isinstance(m, PersonLabMethod) and METHOD is PersonLabMethod
    assert m.num_channels == 17 + 34 + 64 + 34 + 1
    assert PersonLabMethod(CROWDPOSE14).num_channels == 14 * 5 + 2 * 26 + 1


@pytest.mark.parametrize("options,pattern", [
    ({"raduis": 10}, r"unknown option 'raduis'.*did you mean 'radius'"),
    ({"anything": True}, r"unknown option 'anything'.*valid: decode, input_size, loss_weights, radius"),
    ({"radius": 0}, r"option 'radius'.*invalid value 0"),
    ({"radius": "wide"}, r"option 'radius' must be a number"),
    ({"input_size": 100.5}, r"option 'input_size' must be an integer"),
    ({"loss_weights": {"hetamap": 1}}, r"unknown option 'hetamap'.*did you mean 'heatmap'"),
    ({"loss_weights": {"mid": -1}}, r"option 'loss_weights.mid' must be a number >= 0"),
    ({"decode": {"nms_raduis": 4}}, r"unknown option 'nms_raduis'.*did you mean 'nms_radius'"),
    ({"decode": {"offset_sampling": "cubic"}}, r"option 'offset_sampling'.*bilinear"),
    ({"decode": {"refine_peaks": 1}}, r"option 'refine_peaks'.*true or false"),
    ({"decode": {"sigmas": [0.1] * 3}}, r"3 sigmas for 17 keypoints"),
])
def test_bad_options_are_one_line_errors_at_build(options, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        build_method("personlab", COCO17, **options)
    assert "\n" not in str(err.value)


def test_settings_object():
    import inspect
    from posegroup.methods.personlab import PersonLabSettings, decode_poses
    m = build_method("personlab", COCO17, radius=10, decode={"nms_radius": 4.0}, loss_weights={"mid": 0.5})
    assert isinstance(m.settings, PersonLabSettings) and m.radius == 10.0 and m.decode_defaults == {"nms_radius": 4.0}
    assert m.loss_weights["mid"] == 0.5 and m.loss_weights["heatmap"] == 4.0
    assert build_method("personlab", COCO17).settings == PersonLabSettings()
    names = set(inspect.signature(decode_poses).parameters) - {"heatmaps", "short_offsets", "mid_offsets", "edges",
                                                                "output_stride", "grid_offset"}
    assert names <= set(PersonLabMethod.DECODE_OPTIONS)


def test_encode_and_loss_with_hourglass():
    from posegroup.backbones.hourglass import StackedHourglass

    torch.manual_seed(0)
    m = PersonLabMethod(COCO17)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = STANDING_PX * 0.3 + [30, 10]
    kp[0, :, 2] = 2
    t = m.encode(kp, np.zeros((64, 64), bool), None, (16, 16), 4)
    batch = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    net = StackedHourglass(m.num_channels, num_stacks=2, depth=2, base_width=16, width_increase=0,
                           stem_width=8, batch_norm=True)
    preds = net(torch.zeros(1, 3, 64, 64))
    loss, logs = m.loss(preds, batch)
    assert torch.isfinite(loss) and set(logs) >= {"heatmap", "short", "mid", "long", "segmentation", "total"}
    loss.backward()


class _PerfectNet(torch.nn.Module):
    """Returns perfect PersonLab heads for people given in *image* pixels (knows the resize:
    ``input_size`` / the image's longer side, or with ``input_size`` None the padded input's
    width over it -- exact for a wide image whose resized width is a multiple of 64)."""

    input_multiple = 64

    def __init__(self, method, kp_image, image_long_side, input_size):
        super().__init__()
        self.method, self.kp, self.long_side = method, kp_image, image_long_side
        self.factor = None if input_size is None else input_size / image_long_side
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        """Image b = 1 of a batch is the mirrored input (flip test): its heads are those of the
        mirrored people (x -> padded width - x, left and right joints swapped)."""
        h, w = x.shape[-2] // 4, x.shape[-1] // 4
        kp = self.kp.copy()
        kp[..., :2] *= self.factor or x.shape[-1] / self.long_side
        outs = [self._heads(kp, h, w)]
        if len(x) > 1:
            mirrored = kp[:, self.method.keypoint_set.flip_index].copy()
            mirrored[..., 0] = 4 * w - mirrored[..., 0]
            outs.append(self._heads(mirrored, h, w))
        return [torch.from_numpy(np.concatenate(outs).astype(np.float32))]

    def _heads(self, kp, h, w):
        t = encode(kp, None, None, (h, w), 4, edges=self.method.edges, grid_offset=2.0)
        logits = np.where(t["heatmaps"] > 0, 12.0, -12.0)[None]
        mv = lambda a: np.moveaxis(a, -1, 1)[None]  # noqa: E731  (F, H, W, 2) -> (1, F, 2, H, W)
        return head_mod.merge(logits, mv(t["short_offsets"]), mv(t["mid_offsets"]), mv(t["long_offsets"]),
                              np.where(t["segmentation"] > 0, 12.0, -12.0)[None], offset_scale=self.method.radius)


def _two_people():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, :2] = STANDING_PX + [120, 40]
    kp[1, :, :2] = STANDING_PX + [330, 60]
    kp[..., 2] = 2
    return kp


def test_predict_maps_back_to_image_pixels():
    m = PersonLabMethod(COCO17)
    kp = _two_people()
    image = np.zeros((260, 480, 3), np.uint8)
    net = _PerfectNet(m, kp, 480, 256)
    poses, scores, masks = m.predict(net, image, input_size=256)
    assert poses.shape == (2, 17, 3) and masks.shape == (2, 260, 480)
    order = np.argsort(poses[:, 0, 0])
    # factor 256/480: 1 net px = 1.9 image px; perfect maps give exact positions
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=0.05)
    assert scores.min() > 0.5
    # masks: each person's disks (no instance masks given); disjoint, around its own keypoints
    assert masks[order[0]][40, 120] and masks[order[1]][60, 330] and not (masks[0] & masks[1]).any()


@pytest.mark.parametrize("image", [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8),
                                   np.zeros((32, 32, 4), np.uint8)])
def test_predict_rejects_a_non_rgb_uint8_image(image):
    m = PersonLabMethod(COCO17)
    with pytest.raises(ValueError, match=r"image must be uint8 \(H, W, 3\) RGB"):
        m.predict(_PerfectNet(m, _two_people(), 32, 32), image, input_size=32)


def test_mirror_maps_mirrored_targets_onto_the_targets():
    """Targets of the mirrored layout (x -> W stride - x, left/right labels swapped), flipped back
    along W and their sides swapped (:func:`head.swap_sides`), are the targets: channels, edges,
    directions and cells (grid_offset stride / 2)."""
    m = PersonLabMethod(COCO17)
    kp = _two_people() * [0.5, 0.5, 1]
    h, w, stride = 40, 64, 4
    mirrored = kp[:, COCO17.flip_index].copy()
    mirrored[..., 0] = w * stride - mirrored[..., 0]
    keys = ("heatmaps", "short_offsets", "mid_offsets", "long_offsets", "segmentation")
    t, tm = (encode(k, None, None, (h, w), stride, edges=m.edges, grid_offset=stride / 2) for k in (kp, mirrored))
    flipped = {k: (tm[k][..., ::-1, :] if tm[k].ndim == 4 else tm[k][..., ::-1]) for k in keys}   # along W
    back = head_mod.swap_sides(flipped, COCO17.flip_index, m.edges)
    assert t["mid_offsets"].any() and not np.allclose(tm["short_offsets"], t["short_offsets"])
    for key in keys:
        assert back[key].shape == t[key].shape
        np.testing.assert_allclose(back[key], t[key], atol=1e-4, err_msg=key)


def test_mirror_needs_mirrored_edges():
    maps = {"heatmaps": np.zeros((3, 2, 2)), "short_offsets": np.zeros((3, 2, 2, 2)),
            "mid_offsets": np.zeros((1, 2, 2, 2)), "long_offsets": np.zeros((3, 2, 2, 2)),
            "segmentation": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"mirror of edge \(0, 1\) is not among"):
        head_mod.swap_sides(maps, [0, 2, 1], [(0, 1)])


def test_predict_flip_test_matches_single_pass():
    """With ``flip`` the mirrored image's heads (the mirrored people's) are mapped back and
    averaged: perfect heads give the same exact poses as one pass."""
    m = PersonLabMethod(COCO17)
    kp = _two_people()
    net = _PerfectNet(m, kp, 480, 256)
    image = np.zeros((260, 480, 3), np.uint8)
    one, _, _ = m.predict(net, image, input_size=256, with_masks=False)
    both, scores, _ = m.predict(net, image, input_size=256, flip=True, with_masks=False)
    assert both.shape == (2, 17, 3) and scores.min() > 0.5
    order, order1 = np.argsort(both[:, 0, 0]), np.argsort(one[:, 0, 0])
    np.testing.assert_allclose(both[order][..., :2], kp[..., :2], atol=0.05)
    np.testing.assert_allclose(both[order][..., :2], one[order1][..., :2], atol=0.05)
    assert "flip" in PersonLabMethod.INFERENCE_FLAGS


@pytest.mark.parametrize("scales,flip", [((1.0, 2.0, 0.5), False), ((1.0, 2.0, 0.5), True), ((2.0,), False),
                                         ((0.5,), True)])
def test_predict_multi_scale_gives_the_exact_poses(scales, flip):
    """Every pass (its own input size, its own disks and offsets in its own input px) is
    resampled onto the grid of scale 1 with its offsets rescaled: perfect heads at each scale
    give the people's exact positions, alone or averaged over scales and mirrored passes. (Their
    scores fall when scales are mixed, 0.9 -> 0.4: each pass's disks have radius R in its own
    input px, so the averaged maps hold disks of three sizes.)"""
    m = PersonLabMethod(COCO17)
    kp = _two_people()
    image = np.zeros((260, 512, 3), np.uint8)
    net = _PerfectNet(m, kp, 512, None)
    poses, scores, masks = m.predict(net, image, input_size=256, scales=scales, flip=flip)
    assert poses.shape == (2, 17, 3) and scores.min() > 0.3 and masks.shape == (2, 260, 512)
    order = np.argsort(poses[:, 0, 0])
    np.testing.assert_allclose(poses[order][..., :2], kp[..., :2], atol=0.05)
    assert masks[order[0]][40, 120] and masks[order[1]][60, 330]


def test_network_maps_rescale_offsets_of_other_scales():
    """At scale 2 the network's offsets (its input px) are twice those of scale 1; on the
    common grid they must agree with scale 1's, and so must the grid, stride and factor."""
    m = PersonLabMethod(COCO17)
    net = _PerfectNet(m, _two_people(), 512, None)
    image = np.zeros((260, 512, 3), np.uint8)
    one, stride1, shape1, f1 = m.network_maps(net, image, input_size=256)
    two, stride2, shape2, f2 = m.network_maps(net, image, input_size=256, scales=(2.0,))
    assert (stride1, shape1, f1) == (stride2, shape2, f2) == (4.0, (132, 256), 0.5)
    inside = (one["heatmaps"] > 0.9999) & (two["heatmaps"] > 0.9999)   # all source cells in the disks
    assert inside.sum() > 100
    np.testing.assert_allclose(two["short_offsets"][inside], one["short_offsets"][inside], atol=1e-3)

