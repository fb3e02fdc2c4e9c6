"""Training loss of the recurrent association method (paper eq. 1-4, Algorithm 1, Table 4).

Symbols: B images, T steps taken (one person per step), Z true people of an image, Z_hat the
people the network predicts (the steps before its first p_t < omega), J joints, (H, W) grid,
omega the stop threshold (sigmoid(-1)), chunk = the ``bptt_steps`` steps between two cuts.

Per image (Algorithm 1): the network runs |p| = max(Z_hat, Z) + 1 steps
(:meth:`.head.RecurrentHead.unroll` with ``min_steps = Z + 1``). At the end of every chunk its
candidate heatmaps are matched to the ground truth not matched yet (:func:`match_people`, the
Hungarian algorithm on C[k, k'] = sum_j ||H_kj - H^_k'j||), and the matched ground truth leaves
the pool (line 17). Loss = heatmap_weight * sum over matched pairs of the squared L2 error
(eq. 2; ignored cells masked) + stop_weight * binary cross-entropy of p against
:func:`stop_targets` (eq. 3), averaged over the B images. Which steps are candidates is the
configuration of Table 4 (:func:`heatmap_candidates`).

Truncated back-propagation: the engine back-propagates the summed loss once; since the
LSTM state is detached at every chunk end, each chunk's loss reaches only its own chunk, which
gives the same gradient as back-propagating after every chunk as the paper does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .head import OMEGA

#: Table 4: (a) / (b) when Z_hat < Z, (a') / (b') when Z_hat >= Z.
LOSS_CONFIGS = ("aa'", "ab'", "ba'", "bb'")

#: LSTM2 input orders of Table 3.
ORDERS = ("learned", "random", "confidence", "inverse", "canonical")

__all__ = ["stop_targets", "match_people", "heatmap_candidates", "assign_people", "recurrent_loss",
           "order_people", "LOSS_CONFIGS", "ORDERS"]


def stop_targets(num_predicted: int, num_true: int) -> np.ndarray:
    """Eq. 1: the stop targets p, float32 of length max(Z_hat, Z) + 1: Z ones, then zeros."""
    zh, z = int(num_predicted), int(num_true)
    if zh < 0 or z < 0:
        raise ValueError(f"person counts must be >= 0, got num_predicted={zh}, num_true={z}")
    p = np.zeros(max(zh, z) + 1, np.float32)
    p[:z] = 1.0
    return p


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().float().cpu().numpy()
    return np.asarray(a, np.float32)


def match_people(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of predicted and true people.

    Args:
        pred: (T, J, H, W) predicted heatmaps (tensor or array).
        true: (Z, J, H, W) ground-truth heatmaps.
    Cost C[k', k] = sum_j ||H_kj - H^_k'j||_2, the Frobenius norm of each joint map's difference
    (not squared), minimised by scipy's ``linear_sum_assignment``.
    Returns (pred_index, true_index): the min(T, Z) matched pairs, sorted by pred_index.
    """
    p, g = _as_numpy(pred), _as_numpy(true)
    if p.ndim != 4 or g.ndim != 4 or (len(p) and len(g) and p.shape[1:] != g.shape[1:]):
        raise ValueError(f"match_people: pred {p.shape} and true {g.shape} must be (T, J, H, W) and (Z, J, H, W)")
    if len(p) == 0 or len(g) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t, j = p.shape[:2]
    pf, gf = p.reshape(t, j, -1), g.reshape(len(g), j, -1)
    # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b per joint, for every (pred, true) pair at once
    sq = (pf ** 2).sum(-1)[:, None] + (gf ** 2).sum(-1)[None] - 2 * np.einsum("tjn,zjn->tzj", pf, gf)
    cost = np.sqrt(np.maximum(sq, 0.0)).sum(-1)                                        # (T, Z)
    rows, cols = linear_sum_assignment(cost)
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def heatmap_candidates(stop_probs, num_true: int, *, config: str = "aa'", stop_threshold: float = OMEGA
                       ) -> np.ndarray:
    """Which steps' heatmaps enter the heatmap loss (Table 4).

    Args:
        stop_probs: (L,) p_t of the L steps taken. Z_hat = the steps before the first
            p_t < stop_threshold.
        num_true: Z.
        config: "aa'" (paper's best, default), "ab'", "ba'" or "bb'".
    Returns (L,) bool. When Z_hat < Z: (a) the steps t <= Z with p_t >= omega, (b) every step
    t <= Z. When Z_hat >= Z: (a') the first Z steps, (b') all Z_hat predicted steps.
    """
    if config not in LOSS_CONFIGS:
        raise ValueError(f"unknown loss config {config!r}; choose one of {LOSS_CONFIGS}")
    p = np.asarray(stop_probs, np.float64).reshape(-1)
    z = int(num_true)
    below = p < stop_threshold
    z_hat = int(np.argmax(below)) if below.any() else len(p)
    t = np.arange(1, len(p) + 1)
    if z_hat < z:
        keep = t <= z
        if config[0] == "a":
            keep &= ~below
    else:
        keep = t <= (z if config[1] == "a" else z_hat)
    return keep


def assign_people(heats, gt, candidates: np.ndarray, bptt_steps: int | None) -> list[tuple[int, int]]:
    """Algorithm 1's matching, chunk by chunk: (step, true person) pairs of one image.

    heats: (L, J, H, W) the image's steps; gt: (Z, J, H, W); candidates: (L,) bool;
    bptt_steps: chunk length T (None: one chunk). The ground truth matched in a chunk leaves
    the pool of the later chunks.
    """
    length = len(candidates)
    chunk = int(bptt_steps) if bptt_steps else max(1, length)
    pool = list(range(len(gt)))
    pairs: list[tuple[int, int]] = []
    for start in range(0, length, chunk):
        steps = [t for t in range(start, min(length, start + chunk)) if candidates[t]]
        if not steps or not pool:
            continue
        pi, ti = match_people(heats[steps], gt[pool])
        matched = [pool[k] for k in ti]
        pairs.extend((steps[a], m) for a, m in zip(pi, matched))
        pool = [k for k in pool if k not in matched]
    return pairs


def recurrent_loss(heats: torch.Tensor, stop_logits: torch.Tensor, lengths: torch.Tensor, gt: torch.Tensor,
                   num_true: torch.Tensor, mask: torch.Tensor | None = None, *, config: str = "aa'",
                   bptt_steps: int | None = 8, stop_threshold: float = OMEGA, heatmap_weight: float = 1.0,
                   stop_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float], list[list[tuple[int, int]]]]:
    """The LSTM1 loss of a batch.

    Args:
        heats: (B, T, J, H, W) from :meth:`.head.RecurrentHead.unroll`; stop_logits (B, T);
            lengths (B,) steps taken per image.
        gt: (B, P, J, H, W) per-person targets, num_true (B,) Z per image; mask (B, H, W) 1 =
            counted, 0 = ignored (None: all counted).
    Returns (loss, {"heatmap", "stop", "people", "count_error"}, pairs per image).
    """
    b = heats.shape[0]
    heat_terms, stop_terms, all_pairs, count_err = [], [], [], 0.0
    probs = torch.sigmoid(stop_logits.detach().float()).cpu().numpy()
    for i in range(b):
        length, z = int(lengths[i]), int(num_true[i])
        cand = heatmap_candidates(probs[i, :length], z, config=config, stop_threshold=stop_threshold)
        pairs = assign_people(heats[i, :length].detach(), gt[i, :z].detach(), cand, bptt_steps)
        all_pairs.append(pairs)
        if pairs:
            t_idx = torch.tensor([p[0] for p in pairs], device=heats.device)
            k_idx = torch.tensor([p[1] for p in pairs], device=heats.device)
            err = (heats[i, t_idx] - gt[i, k_idx]) ** 2
            if mask is not None:
                err = err * mask[i][None, None]
            heat_terms.append(err.sum())
        below = probs[i, :length] < stop_threshold
        z_hat = int(np.argmax(below)) if below.any() else length
        target = torch.from_numpy(stop_targets(z_hat, z)[:length]).to(stop_logits)
        stop_terms.append(F.binary_cross_entropy_with_logits(stop_logits[i, :length], target, reduction="sum"))
        count_err += abs(z_hat - z)
    heat = torch.stack(heat_terms).sum() / b if heat_terms else heats.sum() * 0.0
    stop = torch.stack(stop_terms).sum() / b
    loss = heatmap_weight * heat + stop_weight * stop
    parts = {"heatmap": float(heat.detach()), "stop": float(stop.detach()),
             "people": float(num_true.float().mean()), "count_error": count_err / b}
    return loss, parts, all_pairs


def order_people(order: str, heats: np.ndarray, stop_probs: np.ndarray, rng: np.random.Generator | None = None
                 ) -> np.ndarray:
    """The permutation in which LSTM2 reads N people (Table 3).

    heats: (N, J, H, W) LSTM1 heatmaps in LSTM1's order; stop_probs: (N,).
    "learned": LSTM1's order; "random": a random permutation (``rng``); "confidence": p_t
    descending; "inverse": LSTM1's order reversed; "canonical": ascending row-major position of
    the person's strongest joint peak (the maximum activation over its J maps).
    Returns (N,) int64 indices into the N people.
    """
    n = len(heats)
    if order not in ORDERS:
        raise ValueError(f"unknown lstm2_order {order!r}; choose one of {ORDERS}")
    if order == "learned" or n == 0:
        return np.arange(n, dtype=np.int64)
    if order == "inverse":
        return np.arange(n - 1, -1, -1, dtype=np.int64)
    if order == "random":
        return (rng or np.random.default_rng()).permutation(n).astype(np.int64)
    if order == "confidence":
        return np.argsort(-np.asarray(stop_probs, np.float64), kind="stable").astype(np.int64)
    flat = np.asarray(heats).reshape(n, heats.shape[1], -1)
    joint_best = flat.max(-1).argmax(-1)                                   # (N,) strongest joint
    pos = flat[np.arange(n), joint_best].argmax(-1)                        # its raster index
    return np.argsort(pos, kind="stable").astype(np.int64)
