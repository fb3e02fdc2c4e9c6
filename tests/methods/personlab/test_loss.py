import math

import numpy as np
import pytest
import torch

from posegroup.methods.personlab import head
from posegroup.methods.personlab.loss import LOSS_WEIGHTS, logistic_loss, offset_l1_loss, personlab_loss


def test_head_layout_roundtrip():
    k, e = 3, 4
    assert head.num_channels(k, e) == 3 + 6 + 8 + 6 + 1
    pred = torch.arange(2 * head.num_channels(k, e) * 2 * 5, dtype=torch.float32).reshape(2, -1, 2, 5)
    parts = head.split(pred, k, e, offset_scale=32.0)
    assert parts["heatmaps"].shape == (2, 3, 2, 5) and parts["short_offsets"].shape == (2, 3, 2, 2, 5)
    assert parts["mid_offsets"].shape == (2, 4, 2, 2, 5) and parts["segmentation"].shape == (2, 2, 5)
    # channel 3 is keypoint 0's short x, channel 4 its y (scaled by R)
    assert torch.equal(parts["short_offsets"][:, 0, 0], pred[:, 3] * 32)
    assert torch.equal(parts["short_offsets"][:, 0, 1], pred[:, 4] * 32)
    assert torch.equal(parts["segmentation"], pred[:, -1])
    back = head.merge(parts["heatmaps"], parts["short_offsets"], parts["mid_offsets"], parts["long_offsets"],
                      parts["segmentation"], offset_scale=32.0)
    assert torch.allclose(back, pred)
    with pytest.raises(ValueError, match="channels"):
        head.split(pred[:, :-1], k, e)
    dec = head.to_decoder_layout(parts, 1)
    assert dec["short_offsets"].shape == (3, 2, 5, 2)
    np.testing.assert_allclose(dec["short_offsets"][0, ..., 1], pred[1, 4].numpy() * 32)
    np.testing.assert_allclose(dec["heatmaps"], 1 / (1 + np.exp(-pred[1, :3].numpy())), rtol=1e-6)


def test_logistic_loss_hand_values():
    logits = torch.tensor([0.0, 2.0, -1.0])
    target = torch.tensor([1.0, 0.0, 0.0])
    w = torch.tensor([1.0, 1.0, 0.0])
    expected = (math.log(2) + math.log(1 + math.e ** 2)) / 2
    assert logistic_loss(logits, target, w).item() == pytest.approx(expected, rel=1e-6)


def test_offset_l1_hand_values():
    pred = torch.tensor([[[[[3.0, 4.0]], [[1.0, 1.0]]]]])  # (1, 1, 2, 1, 2)
    tgt = torch.zeros_like(pred)
    w = torch.tensor([[[[1.0], [0.0]]]])
    assert offset_l1_loss(pred, tgt, w, radius=2.0).item() == pytest.approx(7 / 2)
    w = torch.ones(1, 1, 2, 1)
    assert offset_l1_loss(pred, tgt, w, radius=2.0).item() == pytest.approx((7 + 2) / 2 / 2)


def test_personlab_loss_hand_values_two_stacks():
    k, e, r = 2, 2, 4.0
    h, w = 1, 2
    c = head.num_channels(k, e)
    preds = [torch.zeros(1, c, h, w, requires_grad=True) for _ in range(2)]
    t = {
        "heatmaps": torch.zeros(1, k, h, w), "segmentation": torch.ones(1, h, w),
        "valid_mask": torch.tensor([[[1.0, 0.0]]]),
        "short_offsets": torch.zeros(1, k, h, w, 2), "short_weights": torch.zeros(1, k, h, w),
        "mid_offsets": torch.zeros(1, e, h, w, 2), "mid_weights": torch.zeros(1, e, h, w),
        "long_offsets": torch.zeros(1, k, h, w, 2), "long_weights": torch.zeros(1, k, h, w),
    }
    t["short_offsets"][0, 1, 0, 0] = torch.tensor([r, 0.0])  # L1 / R = 1
    t["short_weights"][0, 1, 0, 0] = 1
    t["long_offsets"][0, 0, 0, 1] = torch.tensor([-2 * r, r])  # L1 / R = 3
    t["long_weights"][0, 0, 0, 1] = 1
    total, logs = personlab_loss(preds, t, num_keypoints=k, num_edges=e, radius=r)
    per_stack = 4 * math.log(2) + 2 * math.log(2) + 1 * 1 + 0.25 * 0 + 0.125 * 3
    assert total.item() == pytest.approx(2 * per_stack, rel=1e-6)
    assert logs["long"] == pytest.approx(6.0) and logs["mid"] == 0.0
    assert logs["heatmap"] == pytest.approx(2 * math.log(2), rel=1e-6)
    total.backward()
    assert preds[0].grad is not None and torch.isfinite(preds[0].grad).all()
    assert LOSS_WEIGHTS == {"heatmap": 4.0, "segmentation": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}


def test_perfect_prediction_has_zero_offset_loss():
    k, e, r = 2, 2, 8.0
    rng = np.random.default_rng(0)
    short = torch.tensor(rng.normal(size=(1, k, 3, 3, 2)), dtype=torch.float32)
    mid = torch.tensor(rng.normal(size=(1, e, 3, 3, 2)), dtype=torch.float32)
    long_ = torch.tensor(rng.normal(size=(1, k, 3, 3, 2)), dtype=torch.float32)
    heat = torch.zeros(1, k, 3, 3)
    seg = torch.zeros(1, 3, 3)
    pred = head.merge(heat * 0, short.permute(0, 1, 4, 2, 3), mid.permute(0, 1, 4, 2, 3),
                      long_.permute(0, 1, 4, 2, 3), seg, offset_scale=r)
    ones = torch.ones(1, k, 3, 3)
    t = {"heatmaps": heat, "segmentation": seg, "valid_mask": torch.ones(1, 3, 3),
         "short_offsets": short, "short_weights": ones, "mid_offsets": mid, "mid_weights": torch.ones(1, e, 3, 3),
         "long_offsets": long_, "long_weights": ones}
    _, logs = personlab_loss([pred], t, num_keypoints=k, num_edges=e, radius=r)
    assert logs["short"] < 1e-6 and logs["mid"] < 1e-6 and logs["long"] < 1e-6
