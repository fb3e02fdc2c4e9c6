"""Recurrent association loss: eq. 1 stop targets, Hungarian matching, Table 4 configurations,
chunked matching (Algorithm 1) and the truncated-BPTT cut."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from posegroup.methods.recurrent.head import RecurrentHead
from posegroup.methods.recurrent.loss import (heatmap_candidates, match_people, order_people,
                                              recurrent_loss, stop_targets)


# ---------------------------------------------------------------------------- eq. 1
@pytest.mark.parametrize("zh, z, expected", [
    (1, 3, [1, 1, 1, 0]),            # under-estimate: length z + 1
    (3, 3, [1, 1, 1, 0]),            # exact
    (5, 2, [1, 1, 0, 0, 0, 0]),      # over-estimate: z ones, (zh - z) + 1 zeros
    (0, 0, [0]),                     # no people: stop at once
    (2, 0, [0, 0, 0]),
])
def test_stop_targets(zh, z, expected):
    p = stop_targets(zh, z)
    assert p.dtype == np.float32
    assert p.tolist() == expected
    assert len(p) == max(zh, z) + 1


def test_stop_targets_rejects_negative():
    with pytest.raises(ValueError):
        stop_targets(-1, 2)


# ---------------------------------------------------------------------------- matching
def _people(rng, n, j=3, h=8, w=8):
    maps = np.zeros((n, j, h, w), np.float32)
    for i in range(n):
        for k in range(j):
            maps[i, k, rng.integers(h), rng.integers(w)] = 1.0
    return maps


@pytest.mark.parametrize("t, z", [(5, 3), (3, 5), (4, 4)])
def test_match_people_recovers_a_permutation(t, z):
    rng = np.random.default_rng(t * 10 + z)
    true = _people(rng, z)
    perm = rng.permutation(max(t, z))
    # prediction k' is the (noisy) copy of true person perm[k'] (or an empty map if none)
    pred = np.zeros((t,) + true.shape[1:], np.float32)
    for kp in range(t):
        if perm[kp] < z:
            pred[kp] = true[perm[kp]] * 0.9 + 0.01
    pi, ti = match_people(torch.from_numpy(pred), true)
    assert len(pi) == min(t, z)
    assert list(pi) == sorted(pi)
    for a, b in zip(pi, ti):
        if perm[a] < z:
            assert b == perm[a]


def test_match_people_cost_is_sum_of_frobenius_norms():
    # true 0 is near pred 0 by squared error but not by the sum of (unsquared) per-joint norms
    true = np.zeros((2, 2, 1, 4), np.float32)
    true[0, 0, 0, 0] = 3.0                       # person 0: one big error joint
    true[1, 0, 0, 1] = 2.0
    true[1, 1, 0, 1] = 2.0                       # person 1: two medium error joints
    pred = np.zeros((2, 2, 1, 4), np.float32)
    pred[1] = true[0] + true[1]                  # pred 1 overlaps both
    # costs: C[0,0] = 3, C[0,1] = 2 + 2 = 4; C[1,0] = 2 + 2 = 4, C[1,1] = 3
    # sum of norms: (0->0, 1->1) = 6 = (0->1, 1->0) 8: pick identity.
    pi, ti = match_people(pred, true)
    assert pi.tolist() == [0, 1] and ti.tolist() == [0, 1]
    # the squared cost would prefer the other assignment: 9 + 9 = 18 vs 8 + 8 = 16
    sq = ((pred[:, None] - true[None]) ** 2).reshape(2, 2, 2, -1).sum(-1).sum(-1)
    assert sq[0, 1] + sq[1, 0] < sq[0, 0] + sq[1, 1]


def test_match_people_empty():
    pi, ti = match_people(np.zeros((0, 2, 3, 3)), np.zeros((2, 2, 3, 3)))
    assert len(pi) == len(ti) == 0


# ---------------------------------------------------------------------------- Table 4
def test_configurations_select_the_papers_terms():
    hi, lo = 0.9, 0.1
    # under-estimate: z = 3, first stop at step 2 (z_hat = 1), step 3 confident again, step 4 stops
    p_under = [hi, lo, hi, lo]
    assert heatmap_candidates(p_under, 3, config="aa'").tolist() == [True, False, True, False]
    assert heatmap_candidates(p_under, 3, config="ab'").tolist() == [True, False, True, False]
    assert heatmap_candidates(p_under, 3, config="ba'").tolist() == [True, True, True, False]
    assert heatmap_candidates(p_under, 3, config="bb'").tolist() == [True, True, True, False]
    # over-estimate: z = 2, z_hat = 4, then the stop step
    p_over = [hi, hi, hi, hi, lo]
    assert heatmap_candidates(p_over, 2, config="aa'").tolist() == [True, True, False, False, False]
    assert heatmap_candidates(p_over, 2, config="ba'").tolist() == [True, True, False, False, False]
    assert heatmap_candidates(p_over, 2, config="ab'").tolist() == [True, True, True, True, False]
    assert heatmap_candidates(p_over, 2, config="bb'").tolist() == [True, True, True, True, False]
    with pytest.raises(ValueError):
        heatmap_candidates(p_over, 2, config="cc'")


def test_recurrent_loss_hand_values():
    # one image, z = 1, two steps: step 1 predicts zeros (p = 0.9), step 2 stops (p = 0.1)
    gt = torch.zeros(1, 2, 1, 2, 2)
    gt[0, 0, 0, 0, 0] = 1.0
    heats = torch.zeros(1, 2, 1, 2, 2, requires_grad=True)
    logit = torch.logit(torch.tensor([[0.9, 0.1]]))
    loss, parts, pairs = recurrent_loss(heats, logit, torch.tensor([2]), gt, torch.tensor([1]))
    assert pairs == [[(0, 0)]]
    assert parts["heatmap"] == pytest.approx(1.0)                    # (0 - 1)^2
    assert parts["stop"] == pytest.approx(-np.log(0.9) - np.log(0.9), rel=1e-5)   # targets [1, 0]
    assert float(loss.detach()) == pytest.approx(1.0 - 2 * np.log(0.9), rel=1e-5)


# ---------------------------------------------------------------------------- BPTT cut
def _head():
    torch.manual_seed(0)
    return RecurrentHead(4, 2, hidden_width=4, lstm1_layers=2, feedback_passes=2)


@pytest.mark.parametrize("bptt, reaches", [(8, False), (16, True)])
def test_truncation_cuts_gradient_between_person_1_and_person_9(bptt, reaches):
    head = _head()
    feats = torch.randn(1, 4, 5, 5)
    states = []
    heats, logits, lengths = head.unroll(feats, max_steps=9, min_steps=torch.tensor([99]), bptt_steps=bptt,
                                         record_states=states)
    assert heats.shape[1] == 9
    h1 = states[0][0][0]                 # LSTM1 layer-1 hidden state after person 1
    loss9 = (heats[:, 8] ** 2).sum() + logits[:, 8].sum()
    g = torch.autograd.grad(loss9, h1, allow_unused=True)[0]
    assert (g is not None and g.abs().sum() > 0) == reaches


def test_unroll_lengths_follow_min_steps_and_first_stop():
    head = _head()
    with torch.no_grad():
        head.stop.weight.zero_()
        head.stop.bias.fill_(-5.0)       # p = sigmoid(-5) < omega at every step
    feats = torch.randn(3, 4, 5, 5)
    _, _, lengths = head.unroll(feats, max_steps=6, min_steps=torch.tensor([1, 3, 9]))
    assert lengths.tolist() == [1, 3, 6]          # first stop / z + 1 / step limit
    with torch.no_grad():
        head.stop.bias.fill_(5.0)        # never stops
    _, _, lengths = head.unroll(feats, max_steps=4)
    assert lengths.tolist() == [4, 4, 4]


def test_order_people():
    heats = np.zeros((3, 2, 4, 4), np.float32)
    heats[0, 1, 3, 3] = 1.0               # strongest peak at raster 15
    heats[1, 0, 0, 1] = 1.0               # raster 1
    heats[2, 0, 2, 0] = 1.0               # raster 8
    probs = np.array([0.5, 0.9, 0.7])
    assert order_people("learned", heats, probs).tolist() == [0, 1, 2]
    assert order_people("inverse", heats, probs).tolist() == [2, 1, 0]
    assert order_people("confidence", heats, probs).tolist() == [1, 2, 0]
    assert order_people("canonical", heats, probs).tolist() == [1, 2, 0]
    r = order_people("random", heats, probs, np.random.default_rng(0))
    assert sorted(r.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError):
        order_people("sideways", heats, probs)
