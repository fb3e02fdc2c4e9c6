import math

import pytest
import torch

from posegroup.methods.ae.head import merge_outputs, num_channels, split_outputs
from posegroup.methods.ae.loss import ae_loss, grouping_loss, heatmap_loss

torch.set_num_threads(1)

K, H, W = 2, 2, 2


def _idx(k, y, x):
    return k * H * W + y * W + x


def _two_people():
    """Person A: joint 0 at (x=0,y=0) tag 1, joint 1 at (1,1) tag 3 (mean 2, pull 1).
    Person B: joint 0 at (1,0) tag 0, joint 1 missing (mean 0, pull 0). Slot 2 empty
    (garbage index, valid 0)."""
    tags = torch.zeros(1, K, H, W)
    tags[0, 0, 0, 0] = 1.0
    tags[0, 1, 1, 1] = 3.0
    tags[0, 0, 0, 1] = 0.0
    tags[0, 1, 0, 0] = 50.0  # unused cell
    joints = torch.tensor([[[[_idx(0, 0, 0), 1], [_idx(1, 1, 1), 1]],
                            [[_idx(0, 0, 1), 1], [_idx(1, 0, 0), 0]],
                            [[999, 0], [12345, 0]]]])
    return tags, joints


def test_head_split_and_merge():
    assert num_channels(17, 1) == 34 and num_channels(14, 2) == 42
    pred = torch.arange(2 * 6 * 2 * 3, dtype=torch.float32).reshape(2, 6, 2, 3)
    hm, tg = split_outputs(pred, 2, 2)
    assert hm.shape == (2, 2, 2, 3) and tg.shape == (2, 2, 2, 3, 2)
    # channel K + k*D + d is joint k, dim d
    assert torch.equal(tg[:, 1, :, :, 0], pred[:, 2 + 2])
    assert torch.equal(tg[:, 1, :, :, 1], pred[:, 2 + 3])
    assert torch.equal(merge_outputs(hm, tg), pred)
    with pytest.raises(ValueError, match="channels"):
        split_outputs(pred, 4, 1)


def test_heatmap_loss_masked_mean_over_all_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros_like(pred)
    mask = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    # (1 + 9 + 16) / 4: ignored pixel counts in the denominator (reference HeatmapLoss)
    assert heatmap_loss(pred, target, mask).item() == pytest.approx(6.5)
    assert heatmap_loss(pred, target).item() == pytest.approx(30 / 4)
    # two images, two joints: per image mean, then batch mean
    p2 = torch.cat([pred, 2 * pred], 0).repeat(1, 2, 1, 1)
    per = heatmap_loss(p2, torch.zeros_like(p2), mask.repeat(2, 1, 1), reduction="none")
    assert per.tolist() == pytest.approx([6.5, 26.0])
    with pytest.raises(ValueError, match="mask"):
        heatmap_loss(pred, target, mask[:, :1])


def test_two_people_missing_joint_both_push_forms():
    tags, joints = _two_people()
    pull, push = grouping_loss(tags, joints)
    assert pull.item() == pytest.approx(0.5)                       # (1 + 0) / 2
    assert push.item() == pytest.approx(2 * math.exp(-4 / 2) / 4)  # d² = 4, σ = 1, /N²
    pull_r, push_r = grouping_loss(tags, joints, push_form="reference")
    assert pull_r.item() == pytest.approx(0.5)
    assert push_r.item() == pytest.approx(0.5 * 2 * math.exp(-4) / 2)  # ½ mean over 2 ordered pairs
    # σ of the paper form
    _, push_s = grouping_loss(tags, joints, sigma=2.0)
    assert push_s.item() == pytest.approx(2 * math.exp(-4 / 8) / 4)
    # same with (B, K, H, W, D) and flattened inputs
    for t in (tags[..., None], tags.reshape(1, -1, 1)):
        p, q = grouping_loss(t, joints)
        assert (p.item(), q.item()) == pytest.approx((0.5, 2 * math.exp(-2) / 4))


def test_hinge_push_by_hand_and_its_slope_where_tags_meet():
    """The hinge push: mean over ordered pairs of max(0, σ − |h̄_n − h̄_n'|); hand-worked on two
    people, and where their tags (nearly) coincide its gradient still separates them, while the
    paper's exp(−d²/2) has a slope near 0 there (the collapse it cannot undo)."""
    tags, joints = _two_people()                       # person means 2 and 0: d = 2
    _, push = grouping_loss(tags, joints, push_form="hinge", sigma=3.0)
    assert push.item() == pytest.approx(3.0 - 2.0)     # both ordered pairs give 1, / N(N−1) = 2
    _, push = grouping_loss(tags, joints, push_form="hinge")
    assert push.item() == 0.0                          # beyond the margin σ = 1
    near = torch.zeros(1, 1, 2, 2)
    near[0, 0, 0, 0], near[0, 0, 0, 1] = 1e-3, -1e-3   # two one-joint people, tags 2e-3 apart
    one_joint = torch.tensor([[[[0, 1]], [[1, 1]]]])   # (B=1, M=2, K=1, 2): cells 0 and 1
    grads = {}
    for form in ("hinge", "paper"):
        t = near.clone().requires_grad_(True)
        _, push = grouping_loss(t, one_joint, push_form=form)
        push.backward()
        grads[form] = t.grad[0, 0, 0, 0].item()
    assert grads["hinge"] == pytest.approx(-1.0, rel=1e-3)        # push = σ − |a − b|, a > b
    assert grads["paper"] == pytest.approx(-0.5 * 2e-3, rel=1e-3)  # ½ exp(−d²/2): slope −d/2


def test_three_people_paper_vs_reference():
    # three single-joint people with tags 0, 1, 3: d² = 1, 9, 4
    tags = torch.tensor([0.0, 1.0, 3.0, 0.0]).reshape(1, 1, 2, 2)
    joints = torch.tensor([[[[0, 1]], [[1, 1]], [[2, 1]]]])
    pull, push = grouping_loss(tags, joints)
    s_paper = 2 * (math.exp(-0.5) + math.exp(-4.5) + math.exp(-2.0))
    assert pull.item() == 0.0
    assert push.item() == pytest.approx(s_paper / 9)
    _, push_r = grouping_loss(tags, joints, push_form="reference")
    s_ref = 2 * (math.exp(-1) + math.exp(-9) + math.exp(-4))
    assert push_r.item() == pytest.approx(0.5 * s_ref / 6)


def test_tag_dim_two():
    # person A: tags (0,0), (2,0) -> mean (1,0), pull (1 + 1)/2 = 1 (paper), 0.5 (reference: / D)
    # person B: one joint (1,3): d² to A = 9
    tags = torch.zeros(1, 2, 2, 2, 2)
    tags[0, 0, 0, 0] = torch.tensor([0.0, 0.0])
    tags[0, 1, 0, 0] = torch.tensor([2.0, 0.0])
    tags[0, 0, 1, 1] = torch.tensor([1.0, 3.0])
    joints = torch.tensor([[[[0, 1], [4, 1]], [[3, 1], [0, 0]]]])
    pull, push = grouping_loss(tags, joints)
    assert pull.item() == pytest.approx(0.5)                        # (1 + 0) / N=2
    assert push.item() == pytest.approx(2 * math.exp(-4.5) / 4)
    pull_r, push_r = grouping_loss(tags, joints, pull_form="reference", push_form="reference")
    assert pull_r.item() == pytest.approx(0.25)
    assert push_r.item() == pytest.approx(0.5 * math.exp(-9))


def test_one_person_and_no_people_batch():
    tags = torch.zeros(3, K, H, W)
    tags[0, 0, 0, 0], tags[0, 1, 0, 0] = 1.0, 2.0   # one person, tags 1 and 2: pull 0.25
    joints = torch.zeros(3, 4, K, 2, dtype=torch.long)
    joints[0, 0] = torch.tensor([[_idx(0, 0, 0), 1], [_idx(1, 0, 0), 1]])
    tags[2] = 7.0
    pull, push = grouping_loss(tags, joints, reduction="none")
    assert pull.tolist() == pytest.approx([0.25, 0.0, 0.0])
    assert push.tolist() == [0.0, 0.0, 0.0]
    pull_m, push_m = grouping_loss(tags, joints)
    assert pull_m.item() == pytest.approx(0.25 / 3) and push_m.item() == 0.0
    # the reference push also 0 for one person
    assert grouping_loss(tags, joints, push_form="reference", reduction="none")[1].tolist() == [0.0] * 3


def test_bad_inputs():
    tags, joints = _two_people()
    with pytest.raises(ValueError, match="push_form"):
        grouping_loss(tags, joints, push_form="x")
    bad = joints.clone()
    bad[0, 0, 0, 0] = 100
    with pytest.raises(ValueError, match="out of range"):
        grouping_loss(tags, bad)
    with pytest.raises(ValueError, match="joints"):
        grouping_loss(tags, joints[0])


def test_gradient_step_pull_shrinks_spread():
    tags, joints = _two_people()
    t = tags.clone().requires_grad_(True)
    pull, _ = grouping_loss(t, joints)
    pull.backward()
    # d pull / d h = (1/N)(1/|K_n|) 2 (h - mean) (the mean's own terms cancel): A's tags 1 and 3
    assert t.grad[0, 0, 0, 0].item() == pytest.approx(0.5 * 0.5 * 2 * (1 - 2))
    assert t.grad[0, 1, 1, 1].item() == pytest.approx(0.5 * 0.5 * 2 * (3 - 2))
    with torch.no_grad():
        t2 = t - 0.5 * t.grad
    assert abs(t2[0, 1, 1, 1] - t2[0, 0, 0, 0]).item() < 2.0


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_gradient_step_push_separates_means(form):
    tags, joints = _two_people()
    t = tags.clone().requires_grad_(True)
    _, push = grouping_loss(t, joints, push_form=form)
    push.backward()
    with torch.no_grad():
        t2 = t - 10.0 * t.grad
    mean_a = lambda x: (x[0, 0, 0, 0] + x[0, 1, 1, 1]) / 2
    mean_b = lambda x: x[0, 0, 0, 1]
    assert (mean_a(t2) - mean_b(t2)).item() > (mean_a(tags) - mean_b(tags)).item()
    # A's mean goes up, B's down
    assert t.grad[0, 0, 0, 0] < 0 and t.grad[0, 0, 0, 1] > 0
    # unused cells get no gradient
    assert t.grad[0, 1, 0, 0] == 0


def test_ae_loss_sums_stacks_with_weights():
    tags, joints = _two_people()
    gt = torch.zeros(1, K, H, W)
    heat = torch.zeros(1, K, H, W)
    heat[0, 0, 0, 0] = 2.0                                  # heatmap MSE = 4 / 8 = 0.5
    pred = merge_outputs(heat, tags)
    targets = {"heatmaps": gt, "mask": torch.ones(1, H, W), "joints": joints}
    total, parts = ae_loss([pred, pred], targets, K, pull_weight=0.1, push_weight=0.2)
    exp_push = 2 * math.exp(-2) / 4
    assert parts["heatmap"] == pytest.approx(2 * 0.5)
    assert parts["pull"] == pytest.approx(2 * 0.1 * 0.5)
    assert parts["push"] == pytest.approx(2 * 0.2 * exp_push)
    assert total.item() == pytest.approx(sum(parts.values()))


# -- instance segmentation: pixel pull / push and the foreground BCE by hand --------------------
def _pixel_case():
    """One 2 x 2 map, tags (row-major cells 0..3) 0, 1, 3, 3. Person A sampled at cells {0, 1},
    person B at {2, 3}; slot 2 holds an invalid entry pointing at cell 3."""
    tags = torch.tensor([[[0.0, 1.0], [3.0, 3.0]]])[..., None]              # (1, 2, 2, 1)
    pixels = torch.tensor([[[[0, 1], [1, 1]], [[2, 1], [3, 1]], [[3, 0], [0, 0]]]])  # (1, 3, 2, 2)
    return tags, pixels


def test_pixel_pull_push_by_hand():
    from posegroup.methods.ae.loss import pixel_grouping_loss

    tags, pixels = _pixel_case()
    pull, push = pixel_grouping_loss(tags, pixels)
    # pull: A's ordered pairs (0,1) and (1,0) give 1 + 1, the diagonal 0; B's tags are equal: 2
    assert float(pull) == pytest.approx(2.0)
    # push: A x B distances 3, 3, 2, 2, both orders: 2 (2 e^{-9/2} + 2 e^{-4/2})
    assert float(push) == pytest.approx(4 * (math.exp(-4.5) + math.exp(-2.0)), rel=1e-6)   # 0.585777
    _, push2 = pixel_grouping_loss(tags, pixels, sigma=2.0)                  # exp(-d^2 / 8)
    assert float(push2) == pytest.approx(4 * (math.exp(-9 / 8) + math.exp(-0.5)), rel=1e-6)  # 3.724732


def test_pixel_pull_push_two_dims_and_batch_mean():
    from posegroup.methods.ae.loss import pixel_grouping_loss

    tags, pixels = _pixel_case()
    two = torch.cat([tags, torch.zeros_like(tags)], -1)                    # D = 2, second dim 0
    two[0, 0, 1, 1] = 2.0                                                   # cell 1 = (1, 2)
    # second image: only person A (push 0), pull 2 * 2 * (0.25 + 0.25) = 2 -> batch (2 + 2) / 2
    both = torch.cat([tags, tags])
    only_a = pixels.clone()
    only_a[:, 1:] = 0                                                       # slots B and 2 empty
    pix = torch.cat([pixels, only_a])
    pull, push = pixel_grouping_loss(both, pix, reduction="none")
    assert pull.tolist() == pytest.approx([2.0, 2.0]) and push.tolist() == pytest.approx([0.5857770, 0.0], abs=1e-6)
    pull2, push2 = pixel_grouping_loss(two, pixels)
    # A: cells 0 (0, 0) and 1 (1, 2): squared distance 5, two orders -> 10; B: 0
    assert float(pull2) == pytest.approx(10.0)
    # A x B: cell 0 to (3, 0) twice: d^2 9; cell 1 to (3, 0): d^2 4 + 4 = 8 -> 2 (2 e^-4.5 + 2 e^-4)
    assert float(push2) == pytest.approx(4 * (math.exp(-4.5) + math.exp(-4.0)), rel=1e-6)
    zero_pull, zero_push = pixel_grouping_loss(tags, torch.zeros_like(pixels))
    assert float(zero_pull) == 0.0 and float(zero_push) == 0.0


def test_pixel_pull_gradient_shrinks_spread():
    from posegroup.methods.ae.loss import pixel_grouping_loss

    tags, pixels = _pixel_case()
    tags.requires_grad_(True)
    pull, _ = pixel_grouping_loss(tags, pixels)
    pull.backward()
    # d/dh0 of 2 (h0 - h1)^2 = 4 (h0 - h1) = -4; d/dh1 = +4; cells of B: 0
    assert tags.grad[0, :, :, 0].flatten().tolist() == pytest.approx([-4.0, 4.0, 0.0, 0.0])


def test_foreground_bce_by_hand():
    from posegroup.methods.ae.loss import foreground_loss

    logits = torch.tensor([[[0.0, math.log(3.0)]]])                        # p = 0.5, 0.75
    target = torch.tensor([[[1.0, 0.5]]])
    # BCE(0.5, 1) = ln 2 = 0.693147; BCE(0.75, 0.5) = -(ln .75 + ln .25) / 2 = 0.836988
    assert float(foreground_loss(logits, target)) == pytest.approx((math.log(2) + 0.8369882) / 2, rel=1e-6)
    assert float(foreground_loss(logits, target, torch.tensor([[[1.0, 0.0]]]))) == pytest.approx(math.log(2))


def test_ae_loss_with_segmentation_adds_weighted_terms():
    from posegroup.methods.ae.head import merge_outputs as merge

    tags, pixels = _pixel_case()
    k = 2
    pred = merge(torch.zeros(1, k, 2, 2), torch.zeros(1, k, 2, 2), torch.zeros(1, 2, 2), tags)
    targets = {"heatmaps": torch.zeros(1, k, 2, 2), "joints": torch.zeros(1, 1, k, 2, dtype=torch.long),
               "foreground": torch.full((1, 2, 2), 0.5), "seg_pixels": pixels}
    total, parts = ae_loss([pred, pred], targets, k, seg_tag_dim=1,
                           segmentation_weights={"foreground": 2.0, "pull": 0.1, "push": 0.01})
    # two stacks; foreground BCE(0.5, 0.5) = ln 2 on every pixel
    assert parts["foreground"] == pytest.approx(2 * 2 * math.log(2))
    assert parts["seg_pull"] == pytest.approx(2 * 0.1 * 2.0)
    assert parts["seg_push"] == pytest.approx(2 * 0.01 * 0.5857770, rel=1e-6)
    assert float(total) == pytest.approx(sum(parts.values()), rel=1e-6)
    assert set(ae_loss(pred[:, :2 * k], targets, k)[1]) == {"heatmap", "pull", "push"}   # off: as before


def test_heatmap_loss_per_cell_weights():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    weight = torch.rand(2, 3, 4, 5, generator=g) * 4
    mask = torch.ones(2, 4, 5)
    mask[1, 0, :] = 0
    want = ((pred - target) ** 2 * weight * mask[:, None]).flatten(1).mean(1).mean()
    assert float(heatmap_loss(pred, target, mask, weight=weight)) == pytest.approx(float(want), rel=1e-6)
    assert float(heatmap_loss(pred, target, mask, weight=torch.ones_like(pred))) == pytest.approx(
        float(heatmap_loss(pred, target, mask)), rel=1e-6)
    with pytest.raises(ValueError, match="weight"):
        heatmap_loss(pred, target, mask, weight=weight[:, :2])


def test_tag_window_pull_by_hand():
    """window 1 on a 3x3 grid: a joint at the centre reads all 9 cells, one in a corner the 4 on
    the grid; each joint's pull term is the mean squared distance of those cells' tags to h̄_n
    (h̄_n and the push still from the joints' own cells)."""
    tags = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 2, 3, 3) / 4.0
    # person 0: joint 0 at the centre (1, 1), joint 1 at the corner (0, 0)
    centre, corner = 0 * 9 + 1 * 3 + 1, 1 * 9 + 0
    joints = torch.tensor([[[[centre, 1], [corner, 1]]]])
    t = tags[0].numpy()
    mean = (t[0, 1, 1] + t[1, 0, 0]) / 2
    term0 = ((t[0] - mean) ** 2).mean()                   # all 9 cells
    term1 = ((t[1, :2, :2] - mean) ** 2).mean()           # the 4 cells on the grid
    pull, push = grouping_loss(tags, joints, window=1)
    assert pull.item() == pytest.approx((term0 + term1) / 2, rel=1e-6)
    pull0, push0 = grouping_loss(tags, joints)
    assert pull0.item() == pytest.approx(((t[0, 1, 1] - mean) ** 2 + (t[1, 0, 0] - mean) ** 2) / 2, rel=1e-6)
    assert push.item() == push0.item()
    # window 0 is the paper's loss, and a larger window only adds cells
    assert grouping_loss(*_two_people(), window=0)[0].item() == grouping_loss(*_two_people())[0].item()
    with pytest.raises(ValueError, match="window"):
        grouping_loss(tags.reshape(1, 18, 1), joints, window=1)


def test_tag_window_gradient_reaches_neighbours():
    tags = torch.zeros(1, 1, 5, 5, requires_grad=True)
    joints = torch.tensor([[[[2 * 5 + 2, 1]], [[0, 1]]]])
    with torch.no_grad():
        tags[0, 0, 2, 3] = 1.0                             # a neighbour off the person's tag
    pull, _ = grouping_loss(tags, joints, window=1)
    pull.backward()
    g = tags.grad[0, 0]
    assert g[2, 3] > 0 and g[4, 4] == 0                    # inside the window / outside it
    assert grouping_loss(tags.detach(), joints)[0].item() == 0.0


def test_ae_method_tag_window_option():
    from posegroup.methods.ae import AEMethod
    from posegroup.skeleton import get_keypoint_set
    ks = get_keypoint_set("coco17")
    assert AEMethod(ks, tag_window=1).tag_window == 1 and AEMethod(ks).tag_window == 0
    with pytest.raises(ValueError, match="tag_window"):
        AEMethod(ks, tag_window=-1)
    with pytest.raises(ValueError, match="tag_window"):
        AEMethod(ks, tag_window=1.5)


def test_weight_adaptive_heatmap_loss_by_hand():
    """SWAHR's weights: w = |1 - p| g^0.01 + |p| (1 - g^0.01), the loss the mean of w (p - g)^2."""
    from posegroup.methods.ae.loss import adaptive_weights
    pred = torch.tensor([0.2, 0.9, -0.1, 0.3]).reshape(1, 1, 2, 2)
    gt = torch.tensor([1.0, 0.5, 0.0, 0.0]).reshape(1, 1, 2, 2)
    g = [1.0, 0.5 ** 0.01, 0.0, 0.0]
    p = [0.2, 0.9, -0.1, 0.3]
    w = [abs(1 - pi) * gi + abs(pi) * (1 - gi) for pi, gi in zip(p, g)]
    assert torch.allclose(adaptive_weights(pred, gt).flatten(), torch.tensor(w), atol=1e-7)
    expected = sum(wi * (pi - ti) ** 2 for wi, pi, ti in zip(w, p, [1.0, 0.5, 0.0, 0.0])) / 4
    preds = torch.cat([pred, torch.zeros(1, 1, 2, 2)], 1)            # K = 1 heatmap + 1 tag map
    targets = {"heatmaps": gt, "joints": torch.zeros(1, 1, 1, 2, dtype=torch.long)}
    _, parts = ae_loss([preds], targets, 1, heatmap_form="weight_adaptive")
    assert parts["heatmap"] == pytest.approx(expected, rel=1e-6)
    _, plain = ae_loss([preds], targets, 1)
    assert plain["heatmap"] == pytest.approx(sum((pi - ti) ** 2 for pi, ti in zip(p, [1.0, 0.5, 0.0, 0.0])) / 4,
                                             rel=1e-6)
    with pytest.raises(ValueError, match="heatmap_form"):
        ae_loss([preds], targets, 1, heatmap_form="focal")


def test_ae_method_heatmap_form_option():
    from posegroup.methods.ae import AEMethod
    from posegroup.skeleton import get_keypoint_set
    ks = get_keypoint_set("coco17")
    assert AEMethod(ks, heatmap_form="weight_adaptive").heatmap_form == "weight_adaptive"
    with pytest.raises(ValueError, match="heatmap_form"):
        AEMethod(ks, heatmap_form="focal")
