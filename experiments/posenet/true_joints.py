"""python experiments/posenet/true_joints.py CKPT SPLIT_JSON [N] [IMAGE_ROOT] [KEY=VALUE ...]: a method's grouping
with the joints given, on a PoseNet-backed checkpoint of any of the three methods. The network
runs as trained; where the method reads where the joints are, the true joints (every labelled
joint, v > 0) replace the network's, each placed exactly; what groups them stays the network's:

* AE: a heatmap of 1 at each true joint's cell, its exact place as that cell's offset
  (``hough_factor`` 0: nothing to vote); the network's tags.
* PersonLab: its heatmap and short-range offset targets (disks of radius R, each cell pointing
  at the nearest true joint of its type, ``targets.encode``); the network's mid-range offsets.
* recurrent (``joint_prior: gate | seed``): the prior the LSTM reads and selects from is a
  Gaussian of std 1 cell and peak 1 at each true joint (the maximum over people), each true
  joint's cell offset exact; the head's own steps.

Printed beside AP and the method's ceiling (AE: true ids on the network's joints; recurrent: the
selection ceiling): ``true joints`` (the network's grouping) and ``both`` (the grouping made
true too: AE the true ids, PersonLab the mid-range offset targets, recurrent each true person
selected by its training target), which loses only what the grid itself loses. First N images
(default 30); KEY=VALUE: test options over the checkpoint's (``nms_radius=5``, VALUE read as YAML).

    K joints, E directed edges, H x W grid cells, N true people, D tag dims."""
import dataclasses
import sys

import numpy as np
import torch
import yaml

from posegroup.engine.benchmark import open_split, predict_split, timed_predictor, true_id_predictor
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import score_results
from posegroup.engine.predict import inference_options
from posegroup.methods.common import grid_to_image

PRIOR_SIGMA = 1.0       # cells: the recurrent true prior's spread (PoseNet's joint probabilities span ~1-2)


def exact_cells(kp: np.ndarray, hw: tuple[int, int]):
    """kp: (N, K, 3) people on the grid (x, y, v); hw: (H, W). Yields (person, joint, cell x,
    cell y, offset x, offset y from the cell's centre) of every labelled joint."""
    h, w = hw
    for p, j in zip(*np.nonzero(kp[..., 2] > 0)):
        x, y = kp[p, j, :2]
        cx, cy = int(np.clip(np.floor(x), 0, w - 1)), int(np.clip(np.floor(y), 0, h - 1))
        yield p, j, cx, cy, x - cx - 0.5, y - cy - 0.5


def on_grid(keypoints, num_keypoints: int, scale: float) -> np.ndarray:
    """(N, K, 3) image px -> the same on a grid of ``scale`` cells per px (a float64 copy)."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, num_keypoints, 3).copy()
    kp[..., :2] *= scale
    return kp


def ae_oracle(method, model, opts: dict, both: bool):
    """AE on a 1 at each true joint's cell (exact offsets) with the network's tags (or the true ids)."""
    from posegroup.methods.ae import true_tags
    settings = dataclasses.replace(method.inference_settings(opts), hough_factor=0)

    def run(image, keypoints):
        outs = method.network_outputs(model, image, settings=settings)
        kp = on_grid(keypoints, method.num_keypoints, outs.factor / outs.stride)
        hw = outs.heatmaps.shape[-2:]
        heat = np.zeros(outs.heatmaps.shape, np.float32)
        offsets = np.zeros((heat.shape[0], 2) + hw, np.float32)
        for _, j, cx, cy, ox, oy in exact_cells(kp, hw):
            if not heat[j, cy, cx]:                      # two people's same joint in one cell: the first
                heat[j, cy, cx], offsets[j, :, cy, cx] = 1.0, (ox, oy)
        tags = true_tags(kp, hw, settings) if both else outs.tags
        poses, scores = method._group(heat, tags, settings, offsets)
        return grid_to_image(poses, scores, outs.stride, outs.factor, np.asarray(image).shape)
    return run


def personlab_oracle(method, model, opts: dict, both: bool):
    """PersonLab on its heatmap and short-offset targets with the network's mid-range offsets
    (or their targets too, where defined)."""
    from posegroup.methods.personlab.targets import encode
    settings = method.inference_settings(opts)

    def run(image, keypoints):
        outs = method.network_outputs(model, image, settings)
        maps = dict(outs.maps)
        kp = on_grid(keypoints, method.num_keypoints, outs.factor)        # image px -> scale-1 input px
        t = encode(kp, None, None, maps["heatmaps"].shape[-2:], outs.stride, edges=method.edges,
                   radius=method.radius, grid_offset=outs.stride / 2.0)
        maps["heatmaps"], maps["short_offsets"] = t["heatmaps"], t["short_offsets"]
        if both:
            known = np.any(t["mid_offsets"] != 0, axis=-1, keepdims=True)
            maps["mid_offsets"] = np.where(known, t["mid_offsets"], maps["mid_offsets"])
        return method.decode(outs._replace(maps=maps), settings, np.shape(image))[:2]
    return run


class PriorSwap(torch.nn.Module):
    """The recurrent head's feature norm with its last K channels (the prior) replaced."""

    def __init__(self, norm: torch.nn.Module, prior: torch.Tensor):
        super().__init__()
        self.inner, self.prior, self.passthrough = norm, prior, norm.passthrough

    def forward(self, x):
        y = self.inner(x).clone()
        y[:, -self.prior.shape[0]:] = self.prior.to(y.dtype)
        return y


def recurrent_oracle(method, model, opts: dict, both: bool):
    """The recurrent head's steps on a true prior (Gaussians of :data:`PRIOR_SIGMA` cells, exact
    offsets), or each true person selected from it by its training target."""
    from posegroup.methods.recurrent.targets import person_heatmaps
    settings = method.inference_settings(opts)
    head = getattr(model, "module", model).head

    def run(image, keypoints):
        plain = method.network_outputs(model, image, settings)
        kp = on_grid(keypoints, method.num_keypoints, plain.factor / plain.stride)
        hw = plain.prior.shape[-2:]
        maps, n = person_heatmaps(kp, hw, sigma=PRIOR_SIGMA, max_people=max(1, len(kp)))
        prior = maps[:n].max(0) if n else np.zeros(plain.prior.shape, np.float32)
        offsets = plain.offsets.copy()
        for _, j, cx, cy, ox, oy in exact_cells(kp, hw):
            offsets[j, :, cy, cx] = (ox, oy)
        if both:
            outs = method.true_selection(plain, prior, kp)
        else:
            norm = head.norm
            head.norm = PriorSwap(norm, torch.from_numpy(prior))
            try:
                outs = method.network_outputs(model, image, settings)
            finally:
                head.norm = norm
        return method.decode(outs._replace(offsets=offsets), settings, np.shape(image))
    return run


ORACLES = {"ae": ae_oracle, "personlab": personlab_oracle, "recurrent": recurrent_oracle}


def main(ckpt, ann, n=30, root=None, **test):
    model, method, config = load_model(ckpt)[:3]
    opts = {**inference_options(config, method), **test}
    ds, ids = open_split(ann, method.keypoint_set, n, root)

    def ap(results):
        return score_results(str(ds.ann_file), results, ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]

    run, ceiling = timed_predictor(model, method, opts), true_id_predictor(method, model, opts)
    plain = predict_split(run, ds, ids, oracle=ceiling)
    line = [f"AP {ap(plain['results']):.3f}"]
    if ceiling is not None:
        line.append(f"ceiling {ap(plain['true_results']):.3f}")
    for both in (False, True):
        out = predict_split(run, ds, ids, oracle=ORACLES[method.name](method, model, opts, both))
        line.append(f"{'both' if both else 'true joints'} AP {ap(out['true_results']):.3f}")
    print(", ".join(line), flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if "=" not in a]
    test = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in sys.argv[1:] if "=" in a)}
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 30, args[3] if len(args) > 3 else None, **test)
