"""Algorithm 1 of the recurrent method, checked on a tiny head in a few steps: where gradients
flow and where they must not, which steps are matched together (the chunks of the gradient
cut), the stop targets of the training loss, the ignore mask, LSTM2's input and the running
normalisation. Each test runs in well under a second or two on one core."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posegroup.methods import build_method
from posegroup.methods.recurrent import loss as loss_module
from posegroup.methods.recurrent.head import OMEGA, RecurrentHead, chunk_ends
from posegroup.methods.recurrent.loss import (assign_people, lstm2_sequence, match_people, recurrent_loss,
                                              seed_owners, stop_targets, stop_weights)
from posegroup.skeleton import COCO17

pytestmark = pytest.mark.usefixtures("one_thread")

BACKBONE = {"name": "tiny", "num_stacks": 1, "depth": 2, "base_width": 16, "width_increase": 8, "stem_width": 8}


def tiny_head(feedback_passes: int = 2, lstm2: bool = False) -> RecurrentHead:
    torch.manual_seed(0)
    return RecurrentHead(4, 2, hidden_width=4, lstm1_layers=2, feedback_passes=feedback_passes,
                         lstm2_hidden_width=4 if lstm2 else None)


def fix_stop(head: RecurrentHead, logit: float) -> None:
    """Every step's p_t = sigmoid(logit) (the stop FC reads nothing)."""
    with torch.no_grad():
        head.stop.weight.zero_()
        head.stop.bias.fill_(float(logit))


def bce(p: float, targets) -> float:
    return float(sum(-np.log(p) if t else -np.log(1 - p) for t in targets))


def one_hot_people(z: int, j: int = 2, size: int = 6) -> torch.Tensor:
    """(z, j, size, size): person k has joint i's peak at cell (k // 3, 2 (k mod 3) + i), j <= 2."""
    gt = torch.zeros(z, j, size, size)
    for k in range(z):
        for i in range(j):
            gt[k, i, k // 3, 2 * (k % 3) + i] = 1.0
    return gt


def grads(loss: torch.Tensor, *modules) -> list[float]:
    """Sum of |d loss / d w| over each module's parameters (0.0 where none reaches them)."""
    params = [p for m in modules for p in m.parameters()]
    g = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    out, k = [], 0
    for m in modules:
        n = len(list(m.parameters()))
        out.append(float(sum(x.abs().sum() for x in g[k:k + n] if x is not None)))
        k += n
    return out


# ---------------------------------------------------------------------------- gradient flow
def _loss_of_tiny_unroll(head, *, heatmap_weight, stop_weight, z=2):
    feats = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    heats, logits, lengths = head.unroll(feats, max_steps=z + 1, min_steps=torch.tensor([z + 1]), bptt_steps=8)
    gt = one_hot_people(z)[None]
    loss, _, pairs = recurrent_loss(heats, logits, lengths, gt, torch.tensor([z]), config="ba'",
                                    heatmap_weight=heatmap_weight, stop_weight=stop_weight)
    assert pairs[0], "the heatmap loss has matched people"
    return loss


def test_heatmap_loss_trains_the_heatmaps_and_lstm1_not_the_stop_head():
    head = tiny_head()
    fix_stop(head, 1.0)
    loss = _loss_of_tiny_unroll(head, heatmap_weight=1.0, stop_weight=0.0)
    out1, lstm1, stop = grads(loss, head.out1, head.lstm1, head.stop)
    assert out1 > 0 and lstm1 > 0
    assert stop == 0.0


@pytest.mark.parametrize("passes, reaches_out1", [(2, True), (0, False)])
def test_stop_loss_trains_the_stop_head_lstm1_and_through_the_feedback_loop_the_heatmaps(passes, reaches_out1):
    """The heatmaps of a step's first pass are the input of its second, so the stop loss reaches
    the heatmap conv through the feedback loop; without the loop it cannot."""
    head = tiny_head(feedback_passes=passes)
    loss = _loss_of_tiny_unroll(head, heatmap_weight=0.0, stop_weight=1.0)
    out1, lstm1, stop = grads(loss, head.out1, head.lstm1, head.stop)
    assert stop > 0 and lstm1 > 0
    assert (out1 > 0) == reaches_out1


def test_feedback_heatmaps_carry_gradient_into_the_first_pass():
    """Step t's heatmaps depend on its first pass's heatmaps (fed back), not only on the state."""
    head = tiny_head(feedback_passes=2)
    feats = torch.randn(1, 4, 6, 6)
    seen = []
    hook = head.out1.register_forward_hook(lambda m, i, o: seen.append(o))
    heat = head.person(head.norm(feats), head.lstm1.zero_state(feats))[0]
    hook.remove()
    first_pass = seen[0]
    g = torch.autograd.grad(heat.sum(), first_pass)[0]
    assert g.abs().sum() > 0


# ---------------------------------------------------------------------------- chunks
def test_chunk_ends():
    hi, lo = 0.9, 0.1
    p = [hi, hi, lo, hi, hi, hi]
    assert chunk_ends(p, bptt_steps=2, cut_at_stop=True).tolist() == [False, True, True, True, False, True]
    assert chunk_ends(p, bptt_steps=2, cut_at_stop=False).tolist() == [False, True, False, True, False, True]
    assert chunk_ends(p, bptt_steps=None, cut_at_stop=True).tolist() == [False, False, True, False, False, False]


def _gradient_chunks(head, feats, length, **unroll):
    """The steps of one image grouped by the gradient: t joins t-1's group when step t's
    heatmaps back-propagate into the state left by step t-1."""
    states = []
    heats, logits, lengths = head.unroll(feats, max_steps=length, record_states=states, **unroll)
    groups = [[0]]
    for t in range(1, int(lengths[0])):
        g = torch.autograd.grad(heats[0, t].sum(), states[t - 1][0][0], allow_unused=True, retain_graph=True)[0]
        if g is not None and g.abs().sum() > 0:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups, heats, logits, lengths


def _matched_chunks(monkeypatch, heats, logits, lengths, gt, z, **kw):
    """The steps the loss hands to each call of the matching, found by their heatmaps."""
    calls = []
    real = loss_module.match_people

    def spy(pred, true, mask=None, prefer=None):
        steps = [next(t for t in range(heats.shape[1]) if torch.equal(heats[0, t].detach(), row)) for row in pred]
        calls.append(steps)
        return real(pred, true, mask, prefer)

    monkeypatch.setattr(loss_module, "match_people", spy)
    recurrent_loss(heats, logits, lengths, gt, torch.tensor([z]), **kw)
    return calls


@pytest.mark.parametrize("bptt, stop_logit, cut_at_stop, config, z, expected", [
    (3, 3.0, True, "aa'", 7, [[0, 1, 2], [3, 4, 5], [6]]),     # never stops: every T steps
    (8, -3.0, True, "ba'", 3, [[0], [1], [2], [3]]),           # stops at every step: each its own chunk
    (2, -3.0, False, "ba'", 3, [[0, 1], [2, 3]]),              # stops ignored by the cut: every T steps
])
def test_matching_chunks_are_the_gradient_chunks(monkeypatch, bptt, stop_logit, cut_at_stop, config, z, expected):
    """Algorithm 1: the steps matched together are exactly those between two gradient cuts."""
    head = tiny_head()
    fix_stop(head, stop_logit)
    feats = torch.randn(1, 4, 6, 6)
    groups, heats, logits, lengths = _gradient_chunks(head, feats, 7 if stop_logit > 0 else 99,
                                                      min_steps=torch.tensor([z + 1]), bptt_steps=bptt,
                                                      cut_at_stop=cut_at_stop)
    assert groups == expected
    calls = _matched_chunks(monkeypatch, heats, logits, lengths, one_hot_people(z)[None], z, config=config,
                            bptt_steps=bptt, cut_at_stop=cut_at_stop)
    candidates = [[t for t in g if t < z] for g in expected]
    assert calls == [c for c in candidates if c]


def test_assign_people_reports_the_step_not_its_place_among_the_candidates():
    gt = one_hot_people(3)
    heats = torch.zeros(4, 2, 6, 6)
    heats[1] = gt[1]
    heats[3] = gt[0]
    cand = np.array([False, True, False, True])
    assert assign_people(heats, gt, cand, np.array([False, True, False, True])) == [(1, 1), (3, 0)]   # 2 chunks
    assert assign_people(heats, gt, cand, np.array([False, False, False, True])) == [(1, 1), (3, 0)]  # 1 chunk


def test_assign_people_removes_matched_truth_chunk_by_chunk():
    gt = one_hot_people(3)
    heats = torch.stack([gt[2], gt[2], gt[0]])      # steps 0 and 1 both look like person 2
    one_chunk = assign_people(heats, gt, np.ones(3, bool), np.zeros(3, bool))
    assert sorted(one_chunk) == [(0, 2), (1, 1), (2, 0)]
    per_step = assign_people(heats, gt, np.ones(3, bool), np.ones(3, bool))
    assert per_step[0] == (0, 2) and all(k != 2 for _, k in per_step[1:])


# ---------------------------------------------------------------------------- ignore mask
def test_ignore_mask_enters_the_matching_cost():
    true = np.zeros((2, 1, 1, 4), np.float32)
    true[0, 0, 0, 0] = true[1, 0, 0, 3] = 1.0
    mask = np.array([[1, 1, 0, 1]], np.float32)
    pred = np.zeros((2, 1, 1, 4), np.float32)
    pred[0, 0, 0, 3], pred[0, 0, 0, 2] = 0.6, 3.0    # a little of person 1, a blob in the ignored cell
    pred[1, 0, 0, 3], pred[1, 0, 0, 0] = 1.0, 0.5
    assert match_people(pred, true)[1].tolist() == [0, 1]         # the blob decides
    assert match_people(pred, true, mask)[1].tolist() == [1, 0]   # the counted cells decide


def test_training_loss_matches_on_the_counted_cells():
    """The loss's matching reads the ignore mask (``mask_matching``), the pairs follow it."""
    gt = torch.zeros(1, 2, 1, 1, 4)
    gt[0, 0, 0, 0, 0] = gt[0, 1, 0, 0, 3] = 1.0
    heats = torch.zeros(1, 3, 1, 1, 4)
    heats[0, 0, 0, 0, 3], heats[0, 0, 0, 0, 2] = 0.6, 3.0
    heats[0, 1, 0, 0, 3], heats[0, 1, 0, 0, 0] = 1.0, 0.5
    mask = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])
    args = (heats, torch.logit(torch.tensor([[0.9, 0.9, 0.1]])), torch.tensor([3]), gt, torch.tensor([2]), mask)
    assert recurrent_loss(*args)[2] == [[(0, 1), (1, 0)]]
    assert recurrent_loss(*args, mask_matching=False)[2] == [[(0, 0), (1, 1)]]


def test_ignore_mask_in_the_heatmap_loss_value_and_gradient():
    gt = one_hot_people(1, j=1, size=2)[None]                       # (1, 1, 1, 2, 2)
    heats = torch.full((1, 2, 1, 2, 2), 0.5, requires_grad=True)
    logits = torch.logit(torch.tensor([[0.9, 0.1]]))
    mask = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    loss, parts, _ = recurrent_loss(heats, logits, torch.tensor([2]), gt, torch.tensor([1]), mask,
                                    stop_weight=0.0)
    assert parts["heatmap"] == pytest.approx(0.25 * 3)               # 3 counted cells of error 0.5
    g = torch.autograd.grad(loss, heats)[0]
    assert g[0, 0, 0, 0, 1] == 0 and g[0, 0, 0, 0, 0] != 0
    assert g[0, 1].abs().sum() == 0                                  # the stop step is not a person


def test_stop_weights_leave_out_steps_in_ignored_cells():
    mask = np.ones((4, 4), np.float32)
    mask[:, 2:] = 0.0
    heats = np.zeros((4, 1, 4, 4), np.float32)
    heats[0, 0, 0, 0] = heats[1, 0, 0, 3] = heats[2, 0, 1, 3] = heats[3, 0, 2, 3] = 1.0
    targets = stop_targets(3, 1)                                       # [1, 0, 0, 0]
    w = stop_weights(targets, heats, mask)
    assert w.tolist() == [1, 0, 0, 1]          # the true person and the last (stop) step count
    assert stop_weights(targets, heats, None).tolist() == [1, 1, 1, 1]


def test_stop_loss_skips_a_person_the_annotation_left_out():
    """z = 1; step 2 finds someone in an ignored region: no stop target for it."""
    gt = torch.zeros(1, 1, 1, 4, 4)
    gt[0, 0, 0, 0, 0] = 1.0
    heats = torch.zeros(1, 3, 1, 4, 4)
    heats[0, 0] = gt[0, 0]
    heats[0, 1, 0, 0, 3] = 1.0                                       # step 2: in the ignored cells
    mask = torch.ones(1, 4, 4)
    mask[0, :, 2:] = 0.0
    logits = torch.logit(torch.tensor([[0.9, 0.8, 0.1]]))
    args = (heats, logits, torch.tensor([3]), gt, torch.tensor([1]), mask)
    _, with_mask, _ = recurrent_loss(*args)
    _, without, _ = recurrent_loss(*args, mask_stop=False)
    assert with_mask["stop"] == pytest.approx(bce(0.9, [1]) + bce(0.1, [0]), rel=1e-5)
    assert without["stop"] == pytest.approx(bce(0.9, [1]) + bce(0.8, [0]) + bce(0.1, [0]), rel=1e-5)


# ---------------------------------------------------------------------------- reduction
def test_heatmap_reduction_sum_or_mean_over_a_persons_cells():
    gt = one_hot_people(1, j=1, size=2)[None]
    heats = torch.zeros(1, 2, 1, 2, 2)
    logits = torch.logit(torch.tensor([[0.9, 0.1]]))
    args = (heats, logits, torch.tensor([2]), gt, torch.tensor([1]))
    assert recurrent_loss(*args, reduction="sum")[1]["heatmap"] == pytest.approx(1.0)
    assert recurrent_loss(*args, reduction="mean")[1]["heatmap"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="heatmap_reduction"):
        recurrent_loss(*args, reduction="max")


# ---------------------------------------------------------------------------- the method's loss
def tiny_method(**options):
    opts = {"hidden_width": 8, "lstm1_layers": 2, "max_people": 3, "sigma": 1.0, **options}
    method = build_method("recurrent", COCO17, **opts)
    torch.manual_seed(0)
    net = method.build_model({"backbone": BACKBONE, "freeze_backbone": False})
    return method, net


def tiny_batch(method, people: int, mask=None):
    """One 64 px image with ``people`` people standing apart (output grid 16 x 16)."""
    kp = np.zeros((people, 17, 3))
    for n in range(people):
        kp[n, :, 0] = 8 + 20 * n + np.arange(17) % 4
        kp[n, :, 1] = 8 + 2.5 * np.arange(17)
        kp[n, :, 2] = 2
    ignore = np.zeros((64, 64), bool) if mask is None else mask
    t = method.encode(kp, ignore, None, (16, 16), 4)
    batch = {k: torch.from_numpy(np.asarray(v))[None] for k, v in t.items()}
    batch["image"] = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert int(batch["num_people"]) == people
    return batch


@pytest.mark.parametrize("stop_logit, people, targets", [
    (-3.0, 2, [1, 1, 0]),          # under-count (Z_hat = 0): the loop still runs Z + 1 steps
    (3.0, 1, [1, 0, 0, 0]),        # over-count: runs to the step limit (max_people + 1 = 4)
])
def test_training_loss_stop_targets(stop_logit, people, targets):
    """Eq. 1 inside the method's training loss: |p| = max(Z_hat, Z) + 1 steps, Z ones then zeros."""
    method, net = tiny_method()
    fix_stop(net.head, stop_logit)
    net.train()
    _, parts = method.training_loss(net, tiny_batch(method, people))
    p = 1.0 / (1.0 + np.exp(-stop_logit))
    assert parts["stop"] == pytest.approx(bce(p, targets), rel=1e-4)
    assert parts["count_error"] == abs((0 if stop_logit < 0 else 4) - people)


def test_training_loss_reads_the_ignore_mask():
    method, net = tiny_method()
    fix_stop(net.head, 3.0)
    net.train()
    batch = tiny_batch(method, 2)
    _, counted = method.training_loss(net, batch)
    batch["mask"] = torch.zeros_like(batch["mask"])
    _, ignored = method.training_loss(net, batch)
    assert counted["heatmap"] > 0 and ignored["heatmap"] == 0.0


def test_training_updates_the_running_normalisation_once_per_batch_with_lstm2():
    method, net = tiny_method(lstm2=True)
    fix_stop(net.head, 3.0)
    net.train()
    before = int(net.head.norm.num_batches)
    _, parts = method.training_loss(net, tiny_batch(method, 2))
    assert parts["lstm2"] > 0                                        # LSTM2 ran
    assert int(net.head.norm.num_batches) == before + 1


@pytest.mark.parametrize("detach, reaches_lstm1", [(False, True), (True, False)])
def test_lstm2_loss_reaches_lstm1_unless_detached(detach, reaches_lstm1):
    method, net = tiny_method(lstm2=True, lstm2_detach_input=detach, heatmap_weight=0.0, stop_weight=0.0)
    fix_stop(net.head, 3.0)
    net.train()
    loss, parts = method.training_loss(net, tiny_batch(method, 2))
    assert parts["lstm2"] > 0
    lstm2, lstm1 = grads(loss, net.head.lstm2, net.head.lstm1)
    assert lstm2 > 0
    assert (lstm1 > 0) == reaches_lstm1


def test_lstm2_reads_the_predicted_people_scored_on_the_matched():
    pairs = [(0, 1), (1, 0)]
    steps, people = lstm2_sequence(pairs, 4, "predicted")           # over-count: 4 predicted, 2 true
    assert steps.tolist() == [0, 1, 2, 3] and people.tolist() == [1, 0, -1, -1]
    steps, people = lstm2_sequence(pairs, 4, "matched")
    assert steps.tolist() == [0, 1] and people.tolist() == [1, 0]
    steps, people = lstm2_sequence([(0, 0), (2, 1)], 1, "predicted")  # under-count, step 2 matched
    assert steps.tolist() == [0, 2] and people.tolist() == [0, 1]
    with pytest.raises(ValueError, match="lstm2_inputs"):
        lstm2_sequence(pairs, 2, "all")


def test_new_settings_are_validated():
    for key, bad in [("cut_at_stop", "yes"), ("heatmap_reduction", "max"), ("lstm2_inputs", "all"),
                     ("mask_matching", 1), ("mask_stop", "no"), ("lstm2_detach_input", "x")]:
        with pytest.raises(ValueError, match=key):
            build_method("recurrent", COCO17, **{key: bad})
    s = build_method("recurrent", COCO17).settings
    assert (s.cut_at_stop, s.mask_matching, s.mask_stop, s.heatmap_reduction, s.lstm2_inputs,
            s.lstm2_detach_input, s.stop_weight) == (True, False, False, "sum", "predicted", False, 3.0)   # measured
    assert OMEGA == pytest.approx(1 / (1 + np.e))


@pytest.mark.parametrize("prior", ["none", "gate"])
def test_feature_width_reduces_the_features_and_keeps_the_prior(prior):
    """``feature_width`` F: the LSTMs read a 1x1 convolution of the normalised features (F
    channels), the joint prior's J channels after them as they came; LSTM1 and LSTM2 are sized
    for F (+ J); 0 reads the features themselves."""
    torch.manual_seed(1)
    j = 2
    head = RecurrentHead(6, j, hidden_width=4, lstm1_layers=1, feature_width=3,
                         lstm2_hidden_width=4, joint_prior=prior)
    x = torch.rand(2, head.norm.weight.numel() + head.norm.passthrough, 5, 5)
    feats = x[:, :6]
    want = torch.einsum("oc,bchw->bohw", head.reduce.weight[:, :, 0, 0], feats) + head.reduce.bias[None, :, None, None]
    out = head.project(x)
    assert out.shape == (2, 3 + (j if prior != "none" else 0), 5, 5)
    torch.testing.assert_close(out[:, :3], want)
    if prior != "none":
        torch.testing.assert_close(out[:, 3:], x[:, 6:])
    assert head.lstm1.cells[0].gates.in_channels == out.shape[1] + j + 4     # + feedback heatmaps + hidden
    heats, _, _ = head.unroll(x, max_steps=2, min_steps=torch.full((2,), 2), normalized=True)
    assert heats.shape == (2, 2, j, 5, 5)
    assert head.refine(x, heats, normalized=True).shape == heats.shape
    plain = RecurrentHead(6, j, hidden_width=4, lstm1_layers=1)
    assert plain.reduce is None and torch.equal(plain.project(x[:, :6]), x[:, :6])


def test_seed_maps_mark_the_strongest_unclaimed_joint_by_hand():
    """:func:`seed_maps`: the seed is the cell of the largest value over every joint (joint 1,
    row 2, column 3: 0.9 beats joint 0's 0.5); channel 0 is a Gaussian of std SEED_SIGMA there,
    channels 1-2 each cell's (x, y) from it over SEED_SCALE."""
    from posegroup.methods.recurrent.head import SEED_SCALE, SEED_SIGMA, seed_maps
    r = torch.zeros(1, 2, 4, 5)
    r[0, 0, 0, 0], r[0, 1, 2, 3] = 0.5, 0.9
    m = seed_maps(r)
    assert m.shape == (1, 3, 4, 5)
    assert float(m[0, 0, 2, 3]) == 1.0
    torch.testing.assert_close(m[0, 0, 2, 4], torch.tensor(math.exp(-1 / (2 * SEED_SIGMA ** 2))))
    torch.testing.assert_close(m[0, 0, 0, 0], torch.tensor(math.exp(-(9 + 4) / (2 * SEED_SIGMA ** 2))))
    assert float(m[0, 1, 0, 0]) == -3 / SEED_SCALE and float(m[0, 2, 0, 0]) == -2 / SEED_SCALE
    assert float(m[0, 1, 3, 4]) == 1 / SEED_SCALE and float(m[0, 2, 3, 4]) == 1 / SEED_SCALE


def test_seed_context_is_each_cells_features_times_the_seeds_by_hand():
    """:func:`seed_context`: channel c of every cell is its value times channel c at the seed
    cell (image 0's seed at row 1, column 2 = flat 6; image 1's at flat 0); LSTM1 reads it as
    many channels more as it reads; without ``joint_prior: seed`` it is one line."""
    from posegroup.methods.recurrent.head import seed_context
    f = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 4)
    out = seed_context(f, torch.tensor([6, 0]))
    for b, (y, x) in enumerate([(1, 2), (0, 0)]):
        for c in range(2):
            torch.testing.assert_close(out[b, c], f[b, c] * f[b, c, y, x])
    assert float(out[0, 1, 0, 0]) == 12.0 * 18.0
    j, c = 3, 5
    plain = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="seed")
    ctx = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="seed", seed_context=True)
    assert ctx.lstm1.cells[0].gates.in_channels == plain.lstm1.cells[0].gates.in_channels + c + j
    heats, _, _ = ctx.unroll(torch.rand(2, c + j, 6, 7), max_steps=2, stop_threshold=0.0)
    assert heats.shape == (2, 2, j, 6, 7) and torch.isfinite(heats).all()
    with pytest.raises(ValueError, match="seed_context needs method.options.joint_prior: seed"):
        RecurrentHead(c, j, joint_prior="gate", seed_context=True)
    for prior in ("none", "input", "gate"):     # refused with the options, before any model is built
        with pytest.raises(ValueError, match=f"'seed_context' needs joint_prior: seed, got '{prior}'"):
            build_method("recurrent", COCO17, joint_prior=prior, seed_context=True)


def test_seed_type_maps_name_the_seeds_joint_and_place_the_coordinates_by_hand():
    """:func:`seed_type_maps`: image 0's seed cell (row 1, column 3) holds joints 0 and 2 at 0.5
    and 0.9, so it is joint 2: channel 2 is 1 everywhere, channels 3 + 2*2 and 3 + 2*2 + 1 are the
    cell's (x, y) from the seed, every other channel 0. Image 1's seed (row 3, column 0) is joint
    1. LSTM1 reads 3J channels more; without ``joint_prior: seed`` it is one line."""
    from posegroup.methods.recurrent.head import SEED_SCALE, seed_cells, seed_maps, seed_type_maps
    j = 3
    r = torch.zeros(2, j, 4, 5)
    r[0, 2, 1, 3], r[0, 0, 1, 3], r[1, 1, 3, 0] = 0.9, 0.5, 0.7
    best = seed_cells(r)
    assert best.tolist() == [1 * 5 + 3, 3 * 5 + 0]
    m = seed_type_maps(r, best, seed_maps(r, best)[:, 1:])
    assert m.shape == (2, 3 * j, 4, 5)
    for b, (k, (sy, sx)) in enumerate([(2, (1, 3)), (1, (3, 0))]):
        assert torch.equal(m[b, :j], torch.eye(j)[k][:, None, None].expand(j, 4, 5))
        for y in range(4):
            for x in range(5):
                assert float(m[b, j + 2 * k, y, x]) == (x - sx) / SEED_SCALE
                assert float(m[b, j + 2 * k + 1, y, x]) == (y - sy) / SEED_SCALE
        others = [c for c in range(j, 3 * j) if c not in (j + 2 * k, j + 2 * k + 1)]
        assert float(m[b, others].abs().sum()) == 0.0
    c = 5
    plain = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="seed")
    typed = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="seed", seed_type=True)
    assert typed.lstm1.cells[0].gates.in_channels == plain.lstm1.cells[0].gates.in_channels + 3 * j
    heats, _, _ = typed.unroll(torch.rand(2, c + j, 6, 7), max_steps=2, stop_threshold=0.0)
    assert heats.shape == (2, 2, j, 6, 7) and torch.isfinite(heats).all()
    with pytest.raises(ValueError, match="seed_type needs method.options.joint_prior: seed"):
        RecurrentHead(c, j, joint_prior="gate", seed_type=True)
    with pytest.raises(ValueError, match="'seed_type' needs joint_prior: seed, got 'input'"):
        build_method("recurrent", COCO17, joint_prior="input", seed_type=True)


@pytest.mark.parametrize("prior", ["gate", "seed"])
def test_select_power_raises_the_selection_to_a_power_and_changes_nothing_else(prior):
    """``select_power`` p: a step's heatmaps are the prior times sigmoid(output)^p, so with
    p = 1/2 each heatmap squared is the prior times the p = 1 heatmap (the first step's prior is
    the whole prior, for ``seed`` too); the stop logits and the steps taken do not move (the
    feedback passes and the prior left use the selection itself). Without a gated prior the
    option is refused in one line."""
    j, c = 3, 5
    torch.manual_seed(0)
    head = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior=prior)
    with torch.no_grad():
        head.out1.weight.normal_(std=0.5)     # a selection far from sigmoid(0) everywhere
    x = torch.rand(2, c + j, 6, 7)

    def run(p):
        return head.unroll(x, max_steps=3, stop_threshold=0.0, normalized=True,
                           generator=torch.Generator().manual_seed(1), select_power=p)
    (h1, l1, n1), (h2, l2, n2), (h0, _, _) = run(1.0), run(0.5), run(0.0)
    torch.testing.assert_close(l2, l1)
    assert torch.equal(n2, n1)
    prior_maps = head.project(x)[:, -j:]
    torch.testing.assert_close(h2[:, 0] ** 2, prior_maps * h1[:, 0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(h0[:, 0], prior_maps)                       # p = 0: the prior itself
    assert not torch.allclose(h2[:, 0], h1[:, 0])
    if prior == "gate":                                                     # every step reads the whole prior
        torch.testing.assert_close(h2 ** 2, prior_maps[:, None] * h1, rtol=1e-5, atol=1e-7)
    method = build_method("recurrent", COCO17, joint_prior=prior)
    assert method.inference_settings({"select_power": 0.5}).select_power == 0.5
    with pytest.raises(ValueError, match="'select_power' in test is 0.5, which needs method.options.joint_prior"):
        build_method("recurrent", COCO17, joint_prior="input").inference_settings({"select_power": 0.5})
    with pytest.raises(ValueError, match="select_power"):
        method.inference_settings({"select_power": -1.0})


@pytest.mark.parametrize("dilation,reach", [(1, 2), (2, 3), (3, 4)])
def test_lstm1_dilation_widens_what_one_call_sees(dilation, reach):
    """Two 3x3 layers, the second dilated by d, see 1 + d cells either side in one call: the
    output at the centre has a gradient from an input cell ``reach`` = 1 + d columns away and
    none from reach + 1."""
    from posegroup.methods.recurrent.head import ConvLSTM
    torch.manual_seed(0)
    lstm = ConvLSTM(2, [4, 4], 3, dilation)
    assert [cell.gates.dilation for cell in lstm.cells] == [(1, 1), (dilation, dilation)]
    x = torch.rand(1, 2, 15, 15, requires_grad=True)
    h = lstm(x, lstm.zero_state(x))[-1][0]
    h[0, :, 7, 7].sum().backward()
    seen = x.grad[0].abs().sum(0)[7]
    assert float(seen[7 + reach]) > 0 and float(seen[7 - reach]) > 0
    assert float(seen[7 + reach + 1]) == 0 and float(seen[7 - reach - 1]) == 0


@pytest.mark.parametrize("bias,shares", [(0.0, [0.5, 0.25, 0.125]), (20.0, [1.0, 0.0, 0.0])])
def test_seed_prior_each_step_takes_its_share_of_what_is_left(bias, shares):
    """``joint_prior: seed``: a step's heatmaps are the prior left by the earlier steps times
    sigmoid(LSTM1's output), and what it selects is taken away: with a hand-set output of 0
    (sigmoid 1/2) the steps give 1/2, 1/4, 1/8 of the prior; with a saturated one the first step
    takes it all and nothing is left. LSTM1 reads 3 seed channels more than ``gate``; the stop
    head reads each joint's strongest unclaimed probability."""
    torch.manual_seed(2)
    j, c = 3, 5
    head = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="seed")
    gate = RecurrentHead(c, j, hidden_width=4, lstm1_layers=1, joint_prior="gate")
    assert head.lstm1.cells[0].gates.in_channels == gate.lstm1.cells[0].gates.in_channels + 3
    assert head.stop.in_features == gate.stop.in_features + j
    with torch.no_grad():
        head.out1.weight.zero_()
        head.out1.bias.fill_(bias)
    x = torch.rand(2, c + j, 6, 7)
    heats, _, lengths = head.unroll(x, max_steps=3, stop_threshold=0.0, normalized=True)
    assert heats.shape == (2, 3, j, 6, 7) and lengths.tolist() == [3, 3]
    for t, share in enumerate(shares):
        torch.testing.assert_close(heats[:, t], share * x[:, c:], atol=1e-6, rtol=1e-5)


def test_match_people_takes_the_preferred_pairs_first():
    """``prefer``: every other pair costs n (max(C) - min(C)) + 1 more, so the assignment with
    the most preferred pairs wins whatever C says, and C decides among the rest. Step 0 is the image of
    true person 0 and step 1 of true person 1 (C picks the identity); preferring (0, 1) forces
    the swap; preferring nothing (all False) changes nothing."""
    true = np.zeros((2, 1, 4, 4), np.float32)
    true[0, 0, 0, 0], true[1, 0, 3, 3] = 1.0, 1.0
    pred = true.copy()
    assert [list(a) for a in match_people(pred, true)] == [[0, 1], [0, 1]]
    prefer = np.array([[False, True], [False, False]])
    assert [list(a) for a in match_people(pred, true, prefer=prefer)] == [[0, 1], [1, 0]]
    assert [list(a) for a in match_people(pred, true, prefer=np.zeros((2, 2), bool))] == [[0, 1], [0, 1]]


def test_seed_owners_by_hand():
    """A step's seed cell is owned by the person whose target is largest there over the joints;
    a cell no target reaches has no owner. Cell 0: person 0 (0.9 against 0.5); cell 4: person 1
    (its joint 1 at 0.8); cell 8: nobody."""
    gt = np.zeros((2, 2, 3, 3), np.float32)
    gt[0, 0, 0, 0], gt[1, 0, 0, 0], gt[1, 1, 1, 1] = 0.9, 0.5, 0.8
    owned = seed_owners(gt, torch.tensor([0, 4, 8]))
    assert owned.tolist() == [[True, False], [False, True], [False, False]]


def test_training_loss_matches_each_step_to_its_seeds_owner():
    """``seeds``: step 0 looks like person 0 but its seed is person 1's cell (3), step 1 the
    other way round: the pairs follow the seeds; without seeds the heatmaps decide."""
    gt = torch.zeros(1, 2, 1, 1, 4)
    gt[0, 0, 0, 0, 0] = gt[0, 1, 0, 0, 3] = 1.0
    heats = torch.zeros(1, 3, 1, 1, 4)
    heats[0, 0, 0, 0, 0], heats[0, 1, 0, 0, 3] = 0.8, 0.8
    args = (heats, torch.logit(torch.tensor([[0.9, 0.9, 0.1]])), torch.tensor([3]), gt, torch.tensor([2]))
    assert recurrent_loss(*args)[2] == [[(0, 0), (1, 1)]]
    assert recurrent_loss(*args, seeds=torch.tensor([[3, 0, 1]]))[2] == [[(0, 1), (1, 0)]]
