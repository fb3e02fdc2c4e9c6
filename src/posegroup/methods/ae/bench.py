"""AE's decode benchmark (``posegroup benchmark decode``): perfect and noisy oracle outputs of
real COCO layouts, decoded by :func:`.decode.group` and scored with COCOeval, against the
reference preset measured in the same run. A benchmark plug-in: the engine finds it as
``posegroup.methods.ae.bench.benchmark_decode``, which it hands its COCO AP scorer
(``score_ap``); the timing helpers are :mod:`posegroup.evaluation`'s."""
from __future__ import annotations

from ...evaluation import PEOPLE_BUCKETS, coco_layouts, set_threads, timed_runs, timing_summary, to_coco_results

def ae_perfect_outputs(ann_file, *, resolution=128, sigma=2.0, num_images=None):
    """Perfect AE network outputs for the real layouts of ``ann_file``.

    Per image: output maps of ``resolution`` x ``resolution`` cells for the longer image side
    (output coordinate = image coordinate x resolution / max(w, h)), heatmaps =
    ``gaussian_heatmaps`` (sigma 2, true sub-pixel positions), tags = ``tag_maps`` with person
    ids 0, 2, 4... (D = 1). Returns a list of dicts: ``image_id``, ``scale`` (image pixels per
    output cell), ``num_people``, ``heatmaps`` (K, R, R), ``tags`` (K, R, R, 1).
    """
    import numpy as np

    from .targets import gaussian_heatmaps, tag_maps

    out = []
    for lay in coco_layouts(ann_file, num_images):
        scale = max(lay["width"], lay["height"]) / float(resolution)
        kp = lay["keypoints"].copy()
        kp[..., :2] /= scale
        size = (resolution, resolution)
        out.append({"image_id": lay["image_id"], "scale": scale, "num_people": kp.shape[0],
                    "heatmaps": gaussian_heatmaps(kp, size, sigma),
                    "tags": tag_maps(kp, size, 2.0 * np.arange(kp.shape[0]))})
    return out


#: Degradations of the noisy oracle (:func:`ae_noisy_outputs`), by level. Knobs: ``tag_std``
#: (per-joint tag offset, person ids 2 apart), ``amplitude_jitter`` (peak height 1 - a * U(0, 1)),
#: ``position_std`` (output cells), ``spurious_per_map`` (Poisson mean of extra peaks per joint
#: map, random positions, heights U(0.1, 0.5) and tags), ``drop_prob`` (a labelled joint's peak
#: falls below the detection threshold: height U(0.02, 0.1)).
AE_NOISE_LEVELS = {
    "clean": dict(tag_std=0.0, amplitude_jitter=0.0, position_std=0.0, spurious_per_map=0.0, drop_prob=0.0),
    "mild": dict(tag_std=0.2, amplitude_jitter=0.3, position_std=0.1, spurious_per_map=0.5, drop_prob=0.1),
    "hard": dict(tag_std=0.35, amplitude_jitter=0.6, position_std=0.2, spurious_per_map=1.5, drop_prob=0.25),
}


def ae_noise_knobs(noise="clean", **overrides) -> dict:
    """The knobs of a noise level (a name of :data:`AE_NOISE_LEVELS`) with ``overrides``, checked:
    every knob finite and >= 0, ``amplitude_jitter`` and ``drop_prob`` <= 1."""
    import math

    if noise not in AE_NOISE_LEVELS:
        raise ValueError(f"noise must be one of {sorted(AE_NOISE_LEVELS)}; got {noise!r}")
    knobs = dict(AE_NOISE_LEVELS[noise])
    for name, v in overrides.items():
        if name not in knobs:
            raise ValueError(f"unknown noise knob {name!r}; knobs: {sorted(knobs)}")
        if v is not None:
            knobs[name] = v
    for name, v in knobs.items():
        hi = 1.0 if name in ("amplitude_jitter", "drop_prob") else math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= hi) or math.isnan(v):
            raise ValueError(f"{name} must be a number in [0, {hi}]; got {v!r}")
        knobs[name] = float(v)
    return knobs


def _render_peaks(joint, x, y, amp, tag, k, size, sigma):
    """Heatmaps (K, H, W): per joint the max of ``amp`` * Gaussian(sigma, cut at 3 sigma) over its
    peaks; tags (K, H, W, 1): the tag of the nearest peak of that joint (-1000 with no peak)."""
    import numpy as np

    h, w = size
    heat = np.zeros((k, h, w), np.float32)
    tags = np.full((k, h, w, 1), -1000.0, np.float32)
    cx = np.arange(w) + 0.5
    cy = np.arange(h) + 0.5
    for kk in np.unique(joint):
        s = joint == kk
        d2 = (cy[None, :, None] - y[s, None, None]) ** 2 + (cx[None, None, :] - x[s, None, None]) ** 2
        g = amp[s, None, None] * np.exp(-d2 / (2.0 * sigma * sigma))
        g[d2 > 9.0 * sigma * sigma] = 0.0
        heat[kk] = g.max(axis=0)
        tags[kk, :, :, 0] = tag[s][d2.argmin(axis=0)]
    return heat, tags


def _noisy_image(kp, knobs, rng, resolution, sigma):
    """One noisy oracle image from true output-grid keypoints (N, K, 3)."""
    import numpy as np

    n, k, _ = kp.shape
    ids = 2.0 * np.arange(n)
    inside = (kp[..., 2] > 0) & (kp[..., 0] >= 0) & (kp[..., 0] < resolution) & (kp[..., 1] >= 0) \
        & (kp[..., 1] < resolution)
    pi, ji = np.nonzero(inside)
    x = kp[pi, ji, 0] + rng.normal(0.0, knobs["position_std"], pi.size) if knobs["position_std"] else kp[pi, ji, 0]
    y = kp[pi, ji, 1] + rng.normal(0.0, knobs["position_std"], pi.size) if knobs["position_std"] else kp[pi, ji, 1]
    amp = 1.0 - knobs["amplitude_jitter"] * rng.random(pi.size)
    dropped = rng.random(pi.size) < knobs["drop_prob"]
    amp[dropped] = rng.uniform(0.02, 0.1, int(dropped.sum()))
    tag = ids[pi] + (rng.normal(0.0, knobs["tag_std"], pi.size) if knobs["tag_std"] else 0.0)
    m = rng.poisson(knobs["spurious_per_map"], k) if knobs["spurious_per_map"] else np.zeros(k, int)
    sj = np.repeat(np.arange(k), m)
    lo, hi = -1.0, 2.0 * max(n - 1, 0) + 1.0
    joint = np.concatenate([ji, sj])
    x = np.concatenate([x, rng.uniform(0, resolution, sj.size)])
    y = np.concatenate([y, rng.uniform(0, resolution, sj.size)])
    amp = np.concatenate([amp, rng.uniform(0.1, 0.5, sj.size)])
    tag = np.concatenate([tag, rng.uniform(lo, hi, sj.size)])
    return _render_peaks(joint, x, y, amp, tag, k, (resolution, resolution), sigma)


def ae_noisy_outputs(ann_file, *, noise="clean", resolution=128, sigma=2.0, num_images=None, seed=0,
                     **knobs):
    """Oracle AE outputs of the real layouts of ``ann_file``, degraded the way network outputs
    are: all of :data:`AE_NOISE_LEVELS`'s knobs at once (``noise`` names the level, ``knobs``
    override single ones). Labelled joints inside the map get a Gaussian peak (sigma 2, truncated
    at 3 sigma) at the true position plus N(0, position_std), of height 1 - amplitude_jitter *
    U(0, 1) (U(0.02, 0.1), below the detection threshold, with probability ``drop_prob``), with
    tag = person id (0, 2, 4...) + N(0, tag_std); each joint
    map gets Poisson(spurious_per_map) extra peaks (uniform position, height U(0.1, 0.5), tag
    U(-1, 2N - 1)). Tag maps carry the tag of the nearest peak of that joint. Seeded
    (``seed``); "clean" equals :func:`ae_perfect_outputs` up to the tag of cells equidistant from
    two peaks. Returns dicts like :func:`ae_perfect_outputs`, plus ``noise`` (the knobs).
    """
    import numpy as np

    kn = ae_noise_knobs(noise, **knobs)
    rng = np.random.default_rng(seed)
    out = []
    for lay in coco_layouts(ann_file, num_images):
        scale = max(lay["width"], lay["height"]) / float(resolution)
        kp = lay["keypoints"].copy()
        kp[..., :2] /= scale
        heat, tags = _noisy_image(kp, kn, rng, resolution, sigma)
        out.append({"image_id": lay["image_id"], "scale": scale, "num_people": kp.shape[0],
                    "heatmaps": heat, "tags": tags, "noise": kn})
    return out


def ae_coco_results(outputs, **group_kwargs):
    """Decode outputs (from :func:`ae_perfect_outputs` / :func:`ae_noisy_outputs`) with
    ``methods.ae.decode.group`` and return COCO keypoint results (image coordinates, missing
    joints filled at the person's mean position, score = person score)."""
    from .decode import fill_missing, group

    results = []
    for o in outputs:
        poses, scores = group(o["heatmaps"], o["tags"], **group_kwargs)
        poses = fill_missing(poses)
        poses[:, :, :2] *= o["scale"]
        results.extend(to_coco_results(o["image_id"], poses, scores))
    return results


#: The ``group`` presets the AE benchmark compares; "reference" is the in-run baseline.
AE_BENCH_PRESETS = ("default", "reference", "spec")


def benchmark_decode_ae(ann_file, *, noise="clean", num_images=None, repeats=3, threads=1, resolution=128,
                        seed=0, verbose=True, score_ap, **knobs):
    """AP and speed of the AE decoder (``group``) on noisy oracle outputs of real COCO layouts,
    against the reference preset (pose-ae-train's decoder) measured in the same run.

    Outputs come from :func:`ae_noisy_outputs` (``noise`` level, ``knobs`` override single
    degradations, ``seed``); every image is decoded by each of :data:`AE_BENCH_PRESETS` in turn
    (``repeats`` runs each, the fastest CPU time kept, :func:`~posegroup.evaluation.timed_runs`)
    and the results scored with ``score_ap(ann_file, results, image_ids) -> AP`` (the engine's
    COCOeval, ``posegroup.engine.benchmark._coco_keypoint_ap``).

    Returns: dict ``num_images``, ``noise`` (the knobs), ``presets`` {name: {"ap", "ms",
    "ms_mean", "by_people" {bucket: {"images", "ms"}}}}, ``speed_ratio`` (reference ms /
    default ms, > 1: the defaults are faster) and ``ap_gain`` (default AP - reference AP).
    """
    import numpy as np

    from .decode import group

    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats!r}")
    threads = set_threads(threads)
    outputs = ae_noisy_outputs(ann_file, noise=noise, resolution=resolution, num_images=num_images,
                               seed=seed, **knobs)
    people = np.array([o["num_people"] for o in outputs])
    ids = [o["image_id"] for o in outputs]
    fns = {p: (lambda o, p=p: group(o["heatmaps"], o["tags"], preset=p)) for p in AE_BENCH_PRESETS}
    times = timed_runs(fns, outputs, repeats)
    presets = {p: {"ap": score_ap(ann_file, ae_coco_results(outputs, preset=p), ids),
                   **timing_summary(times[p], people)} for p in AE_BENCH_PRESETS}
    ref, ours = presets["reference"], presets["default"]
    res = {"num_images": len(outputs), "noise": outputs[0]["noise"] if outputs else ae_noise_knobs(noise, **knobs),
           "presets": presets, "speed_ratio": ref["ms"] / ours["ms"] if ours["ms"] > 0 else float("nan"),
           "ap_gain": ours["ap"] - ref["ap"]}
    if verbose:
        _print_ae(res, noise, resolution, threads, repeats)
    return res


def _print_ae(res, noise, resolution, threads, repeats):
    presets = res["presets"]
    print(f"AE decode (group), {res['num_images']} images, {resolution}x{resolution} maps, noise {noise!r} "
          f"{res['noise']}, {threads} thread(s), CPU ms: fastest of {repeats} runs per image, median over images")
    print(f"{'people':>8} {'images':>7} " + " ".join(f"{p + ' ms':>14}" for p in presets))
    for bucket in PEOPLE_BUCKETS:
        cells = [presets[p]["by_people"].get(bucket) for p in presets]
        if cells[0]:
            print(f"{bucket:>8} {cells[0]['images']:>7} " + " ".join(f"{c['ms']:>14.3f}" for c in cells))
    print(f"{'all':>8} {res['num_images']:>7} " + " ".join(f"{presets[p]['ms']:>14.3f}" for p in presets))
    print("COCO AP: " + ", ".join(f"{p} {presets[p]['ap']:.4f}" for p in presets))
    print(f"default vs reference (in-run baseline): AP {res['ap_gain']:+.4f}, "
          f"speed ratio {res['speed_ratio']:.2f}x (reference ms / default ms)")


def benchmark_decode(ann_file, *, num_images=None, noise="clean", score_ap, **kw):
    """Entry point of ``posegroup benchmark decode`` for AE (``score_ap``: the engine's COCO AP)."""
    return benchmark_decode_ae(ann_file, noise=noise, num_images=num_images, score_ap=score_ap, **kw)
