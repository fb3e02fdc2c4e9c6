"""Training loss of the recurrent association method (paper eq. 1-4, Algorithm 1, Table 4).

Symbols: B images, L steps taken (one person per step), Z true people of an image, Z_hat the
people the network predicts (the steps before its first p_t < omega), J joints, (H, W) grid,
omega the stop threshold (sigmoid(-1)), T = ``bptt_steps``.

Per image (Algorithm 1): the network runs |p| = max(Z_hat, Z) + 1 steps
(:meth:`.head.RecurrentHead.unroll` with ``min_steps = Z + 1``). The steps fall into chunks
(:func:`.head.chunk_ends`: a chunk closes every T steps and, with ``cut_at_stop``, at every
p_t < omega). At the end of every chunk its candidate heatmaps are matched to the ground truth
not matched yet (:func:`match_people`, the Hungarian algorithm on
C[k, k'] = sum_j ||H_kj - H^_k'j||, ignored cells masked), and the matched ground truth leaves
the pool (line 17). Loss = heatmap_weight * the squared L2 error of the matched pairs (eq. 2;
ignored cells masked; summed, or averaged over the J * H * W cells of a person: ``reduction``)
+ stop_weight * binary cross-entropy of p against :func:`stop_targets` (eq. 3; steps beyond the
true people whose heatmaps lie in ignored cells are not counted: :func:`stop_weights`),
averaged over the B images. Which steps are candidates is the configuration of Table 4
(:func:`heatmap_candidates`).

Truncated back-propagation: the engine back-propagates the summed loss once; since the
LSTM state is detached at every chunk end, each chunk's loss reaches only its own chunk, which
gives the same gradient as back-propagating after every chunk as the paper does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .head import OMEGA, chunk_ends

#: Table 4: (a) / (b) when Z_hat < Z, (a') / (b') when Z_hat >= Z.
LOSS_CONFIGS = ("aa'", "ab'", "ba'", "bb'")

#: LSTM2 input orders of Table 3.
ORDERS = ("learned", "random", "confidence", "inverse", "canonical")

#: What LSTM2 reads in training: "predicted", the Z_hat steps before the first stop (what it
#: reads at test time) and any later matched step; "matched", the matched steps only.
LSTM2_INPUTS = ("predicted", "matched")

#: How one matched person's squared heatmap error is reduced: "sum" over its J * H * W cells
#: (eq. 2, the squared L2 norm) or "mean" over them.
REDUCTIONS = ("sum", "mean")

#: A step whose heatmap mass lies at least this much in ignored cells is "in an ignored region".
IGNORED_SHARE = 0.5

__all__ = ["stop_targets", "stop_weights", "match_people", "heatmap_candidates", "assign_people",
           "recurrent_loss", "order_people", "first_stop", "seed_owners", "lstm2_sequence", "LOSS_CONFIGS",
           "ORDERS", "REDUCTIONS", "LSTM2_INPUTS"]


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


def _masked(a: np.ndarray, mask) -> np.ndarray:
    """a (N, J, H, W) with the ignored cells (mask (H, W) == 0) zeroed; mask None: a."""
    return a if mask is None else a * _as_numpy(mask)[None, None]


def match_people(pred, true, mask=None, prefer=None) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of predicted and true people.

    Args:
        pred: (T, J, H, W) predicted heatmaps (tensor or array).
        true: (Z, J, H, W) ground-truth heatmaps.
        mask: (H, W) 1 = counted, 0 = ignored, or None: the cost reads the counted cells only.
        prefer: (T, Z) bool or None: pairs to take first (``joint_prior: seed``, a step and the
            person owning its seed): each other pair costs M = n (max(C) - min(C)) + 1 more,
            n = min(T, Z) the pairs of an assignment, so an assignment with fewer preferred pairs
            costs at least M - n (max(C) - min(C)) > 0 more; among those with the most, C decides.
    Cost C[k', k] = sum_j ||H_kj - H^_k'j||_2, the Frobenius norm of each joint map's difference
    (not squared), minimised by scipy's ``linear_sum_assignment``.
    Returns (pred_index, true_index): the min(T, Z) matched pairs, sorted by pred_index.
    """
    p, g = _as_numpy(pred), _as_numpy(true)
    if p.ndim != 4 or g.ndim != 4 or (len(p) and len(g) and p.shape[1:] != g.shape[1:]):
        raise ValueError(f"match_people: pred {p.shape} and true {g.shape} must be (T, J, H, W) and (Z, J, H, W)")
    if len(p) == 0 or len(g) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    p, g = _masked(p, mask), _masked(g, mask)
    t, j = p.shape[:2]
    pf, gf = p.reshape(t, j, -1), g.reshape(len(g), j, -1)
    # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b per joint, for every (pred, true) pair at once
    sq = (pf ** 2).sum(-1)[:, None] + (gf ** 2).sum(-1)[None] - 2 * np.einsum("tjn,zjn->tzj", pf, gf)
    cost = np.sqrt(np.maximum(sq, 0.0)).sum(-1)                                        # (T, Z)
    if prefer is not None:
        margin = min(cost.shape) * (cost.max() - cost.min()) + 1.0
        cost = cost + margin * ~np.asarray(prefer, bool).reshape(cost.shape)
    rows, cols = linear_sum_assignment(cost)
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def stop_weights(targets, heats, mask=None, *, share: float = IGNORED_SHARE) -> np.ndarray:
    """Which steps' stop targets count in eq. 3: not those that say "no person" (p_t = 0) to a
    step, other than the last, whose heatmaps lie in ignored cells (a person the annotation
    leaves out, e.g. a crowd: the network is neither told it is one nor that it is none).

    targets: (L,) eq. 1; heats: (L, J, H, W) the steps' heatmaps; mask: (H, W) 1 = counted,
    0 = ignored (None: every weight 1). A step lies in ignored cells when at least ``share`` of
    its positive heatmap mass does. Returns (L,) float32 of 0 / 1.
    """
    tgt = np.asarray(targets, np.float32).reshape(-1)
    w = np.ones(len(tgt), np.float32)
    if mask is None or len(tgt) < 2:
        return w
    mk = _as_numpy(mask)
    h = np.maximum(_as_numpy(heats).reshape(len(tgt), -1, *mk.shape), 0.0).sum(1)        # (L, H, W)
    total = h.reshape(len(tgt), -1).sum(-1)
    ignored = (h * (1.0 - mk)[None]).reshape(len(tgt), -1).sum(-1)
    in_ignored = (total > 0) & (ignored >= share * total)
    w[(tgt == 0) & in_ignored] = 0.0
    w[-1] = 1.0
    return w


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


def assign_people(heats, gt, candidates: np.ndarray, ends, mask=None, prefer=None) -> list[tuple[int, int]]:
    """Algorithm 1's matching, chunk by chunk: (step, true person) pairs of one image.

    heats: (L, J, H, W) the image's steps; gt: (Z, J, H, W); candidates: (L,) bool;
    ends: (L,) bool, the steps that close a chunk (:func:`.head.chunk_ends`; the last step
    closes one anyway); mask: (H, W) or None, and prefer: (L, Z) bool or None, passed to
    :func:`match_people`. The ground truth matched in a chunk leaves the pool of the later
    chunks. Returns pairs sorted by step.
    """
    cand = np.asarray(candidates, bool).reshape(-1)
    closes = np.asarray(ends, bool).reshape(-1)
    if len(closes) != len(cand):
        raise ValueError(f"assign_people: {len(cand)} candidates but {len(closes)} chunk ends")
    pool = list(range(len(gt)))
    pairs: list[tuple[int, int]] = []
    start = 0
    for stop in [t + 1 for t in range(len(cand)) if closes[t] or t == len(cand) - 1]:
        steps = [t for t in range(start, stop) if cand[t]]
        start = stop
        if not steps or not pool:
            continue
        pi, ti = match_people(heats[steps], gt[pool], mask,
                              None if prefer is None else np.asarray(prefer, bool)[np.ix_(steps, pool)])
        matched = [pool[k] for k in ti]
        pairs.extend((steps[a], m) for a, m in zip(pi, matched))
        pool = [k for k in pool if k not in matched]
    return pairs


def seed_owners(gt, seeds) -> np.ndarray:
    """gt (Z, J, H, W) one image's targets, seeds (L,) flat cell indices -> (L, Z) bool: step
    t's seed is owned by the person whose target is largest there over the joints (none when
    every target is 0 there)."""
    g = _as_numpy(gt)
    z = len(g)
    idx = np.asarray(seeds.detach().cpu() if isinstance(seeds, torch.Tensor) else seeds, np.int64).reshape(-1)
    owned = np.zeros((len(idx), z), bool)
    if z == 0 or len(idx) == 0:
        return owned
    at = g.reshape(z, g.shape[1], -1).max(1)[:, idx]                       # (Z, L)
    best = at.argmax(0)
    hit = at[best, np.arange(len(idx))] > 0
    owned[np.arange(len(idx))[hit], best[hit]] = True
    return owned


def first_stop(probs: np.ndarray, stop_threshold: float) -> int:
    """Z_hat: the steps before the first p_t < stop_threshold (all of them if none is)."""
    below = ~(np.asarray(probs, np.float64) >= stop_threshold)
    return int(np.argmax(below)) if below.any() else len(below)


def _heatmap_term(heats, gt, pairs, mask, reduction: str) -> torch.Tensor | None:
    """Eq. 2 of one image: heats (L, J, H, W), gt (Z, J, H, W), mask (H, W) or None -> scalar
    (None without pairs)."""
    if not pairs:
        return None
    t_idx = torch.tensor([p[0] for p in pairs], device=heats.device)
    k_idx = torch.tensor([p[1] for p in pairs], device=heats.device)
    err = (heats[t_idx] - gt[k_idx]) ** 2                                  # (R, J, H, W)
    if mask is not None:
        err = err * mask[None, None]
    per_person = err.flatten(1).sum(1) if reduction == "sum" else err.flatten(1).mean(1)
    return per_person.sum()


def recurrent_loss(heats: torch.Tensor, stop_logits: torch.Tensor, lengths: torch.Tensor, gt: torch.Tensor,
                   num_true: torch.Tensor, mask: torch.Tensor | None = None, *, config: str = "aa'",
                   bptt_steps: int | None = 8, cut_at_stop: bool = True, stop_threshold: float = OMEGA,
                   heatmap_weight: float = 1.0, stop_weight: float = 1.0, reduction: str = "sum",
                   mask_matching: bool = True, mask_stop: bool = True, seeds: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, float], list[list[tuple[int, int]]]]:
    """The LSTM1 loss of a batch.

    Args:
        heats: (B, L, J, H, W) from :meth:`.head.RecurrentHead.unroll`; stop_logits (B, L);
            lengths (B,) steps taken per image.
        gt: (B, P, J, H, W) per-person targets, num_true (B,) Z per image; mask (B, H, W) 1 =
            counted, 0 = ignored (None: all counted). The heatmap error is always masked;
            ``mask_matching`` masks the matching cost, ``mask_stop`` the stop targets
            (:func:`stop_weights`).
        bptt_steps, cut_at_stop: the chunks (:func:`.head.chunk_ends`), as in the unroll.
        reduction: one matched person's squared error, "sum" (eq. 2) or "mean" over its cells.
        seeds: (B, L) int64 flat cell indices of each step's seed (``joint_prior: seed``), or
            None. With seeds the matching takes each step's :func:`seed_owners` pair first.
    Returns (loss, {"heatmap", "stop", "people", "count_error"}, pairs per image).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"heatmap_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    b = heats.shape[0]
    heat_terms, stop_terms, all_pairs, count_err = [], [], [], 0.0
    probs = torch.sigmoid(stop_logits.detach().float()).cpu().numpy()
    for i in range(b):
        length, z = int(lengths[i]), int(num_true[i])
        m = None if mask is None else mask[i]
        steps = heats[i, :length]
        cand = heatmap_candidates(probs[i, :length], z, config=config, stop_threshold=stop_threshold)
        ends = chunk_ends(probs[i, :length], bptt_steps=bptt_steps, stop_threshold=stop_threshold,
                          cut_at_stop=cut_at_stop).numpy()
        prefer = None if seeds is None else seed_owners(gt[i, :z].detach(), seeds[i, :length])
        pairs = assign_people(steps.detach(), gt[i, :z].detach(), cand, ends,
                              m.detach() if (m is not None and mask_matching) else None, prefer)
        all_pairs.append(pairs)
        term = _heatmap_term(steps, gt[i], pairs, m, reduction)
        if term is not None:
            heat_terms.append(term)
        z_hat = first_stop(probs[i, :length], stop_threshold)
        target = stop_targets(z_hat, z)[:length]
        weight = stop_weights(target, steps.detach(), m.detach() if (m is not None and mask_stop) else None)
        bce = F.binary_cross_entropy_with_logits(stop_logits[i, :length], torch.from_numpy(target).to(stop_logits),
                                                 weight=torch.from_numpy(weight).to(stop_logits), reduction="sum")
        stop_terms.append(bce)
        count_err += abs(z_hat - z)
    heat = torch.stack(heat_terms).sum() / b if heat_terms else heats.sum() * 0.0
    stop = torch.stack(stop_terms).sum() / b
    loss = heatmap_weight * heat + stop_weight * stop
    parts = {"heatmap": float(heat.detach()), "stop": float(stop.detach()),
             "people": float(num_true.float().mean()), "count_error": count_err / b}
    return loss, parts, all_pairs


def lstm2_sequence(pairs, num_predicted: int, inputs: str = "predicted") -> tuple[np.ndarray, np.ndarray]:
    """The steps LSTM2 reads for one image (in LSTM1's order) and the true person of each.

    pairs: (step, true person) of the image; num_predicted: Z_hat; inputs: "predicted" (the
    steps < Z_hat, and any later matched step) or "matched" (the matched steps only).
    Returns steps (N,) int64 ascending and people (N,) int64 (-1: no true person; eq. 4 scores
    only the matched ones).
    """
    if inputs not in LSTM2_INPUTS:
        raise ValueError(f"lstm2_inputs must be one of {LSTM2_INPUTS}, got {inputs!r}")
    person = {int(t): int(k) for t, k in pairs}
    steps = set(person) | (set(range(int(num_predicted))) if inputs == "predicted" else set())
    order = np.array(sorted(steps), np.int64)
    return order, np.array([person.get(int(t), -1) for t in order], np.int64)


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
