"""Benchmarks that print figures (ratios against a baseline measured in the same run), run as
``posegroup benchmark decode`` and ``posegroup benchmark train``."""
from __future__ import annotations

# ---- decode benchmarks (AE section, then PersonLab section) ----------------------------------

# ---- AE decode (perfect and noisy network outputs from real COCO layouts) ----

def coco_layouts(ann_file, num_images=None):
    """Real pose layouts of a COCO keypoint json.

    Returns a list (images in file order, the first ``num_images`` if given) of dicts with
    ``image_id``, ``width``, ``height`` and ``keypoints`` (N, K, 3) float64 x, y, v of the
    non-crowd people with >= 1 labelled keypoint (image pixels, continuous convention). K is
    read from the json's category.
    """
    import numpy as np

    from ..data.coco import CocoPoseDataset

    ds = CocoPoseDataset(ann_file)
    images = ds.data["images"]
    if num_images is not None:
        images = images[:int(num_images)]
    return [{"image_id": im["id"], "width": im["width"], "height": im["height"],
             "keypoints": ds.annotations(im["id"], with_masks=False)["keypoints"].astype(np.float64)}
            for im in images]


def ae_perfect_outputs(ann_file, *, resolution=128, sigma=2.0, num_images=None):
    """Perfect AE network outputs for the real layouts of ``ann_file``.

    Per image: output maps of ``resolution`` x ``resolution`` cells for the longer image side
    (output coordinate = image coordinate x resolution / max(w, h)), heatmaps =
    ``gaussian_heatmaps`` (sigma 2, true sub-pixel positions), tags = ``tag_maps`` with person
    ids 0, 2, 4... (D = 1). Returns a list of dicts: ``image_id``, ``scale`` (image pixels per
    output cell), ``num_people``, ``heatmaps`` (K, R, R), ``tags`` (K, R, R, 1).
    """
    import numpy as np

    from ..methods.ae.targets import gaussian_heatmaps, tag_maps

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
    from ..methods.ae.decode import fill_missing, group
    from .predict import to_coco_results

    results = []
    for o in outputs:
        poses, scores = group(o["heatmaps"], o["tags"], **group_kwargs)
        poses = fill_missing(poses)
        poses[:, :, :2] *= o["scale"]
        results.extend(to_coco_results(o["image_id"], poses, scores))
    return results


def _coco_keypoint_ap(ann_file, results, image_ids):
    """COCOeval keypoint AP over ``image_ids`` (:func:`~posegroup.engine.evaluate.evaluate_results`)."""
    from .evaluate import evaluate_results

    if not results:
        return 0.0
    return evaluate_results(ann_file, results, image_ids=image_ids)["AP"]


#: People-per-image buckets of the decode benchmarks.
PEOPLE_BUCKETS = {"0": (0, 0), "1": (1, 1), "2-3": (2, 3), "4-6": (4, 6), "7+": (7, 10 ** 9)}


def _set_threads(threads) -> int:
    """One-thread (or ``threads``) torch / OpenMP / BLAS / OpenCV for timing."""
    import os

    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads!r}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:  # pragma: no cover - torch is a dependency, but the timing does not need it
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # pragma: no cover
        pass
    return threads


def _timed_runs(fns, items, repeats):
    """ms per item of each of ``fns`` {name: f(item)}: the fastest of ``repeats`` runs, in CPU
    time of this process (``time.process_time``; the decoders run on one thread, so on a shared
    machine this is robust to other jobs where wall time is not); the settings take turns on
    every item so that cache and frequency changes hit them alike."""
    import time

    import numpy as np

    times = {name: [] for name in fns}
    for item in items:
        for name, fn in fns.items():
            t = []
            for _ in range(int(repeats)):
                t0 = time.process_time()
                fn(item)
                t.append(time.process_time() - t0)
            times[name].append(1e3 * float(np.min(t)))
    return {name: np.asarray(v) for name, v in times.items()}


def _summary(times, people):
    """Median / mean ms and the medians by :data:`PEOPLE_BUCKETS`."""
    import numpy as np

    by_people = {}
    for name, (lo, hi) in PEOPLE_BUCKETS.items():
        sel = (people >= lo) & (people <= hi)
        if sel.any():
            by_people[name] = {"images": int(sel.sum()), "ms": float(np.median(times[sel]))}
    return {"ms": float(np.median(times)) if len(times) else float("nan"),
            "ms_mean": float(np.mean(times)) if len(times) else float("nan"), "by_people": by_people}


#: The ``group`` presets the AE benchmark compares; "reference" is the in-run baseline.
AE_BENCH_PRESETS = ("default", "reference", "spec")


def benchmark_decode_ae(ann_file, *, noise="clean", num_images=None, repeats=3, threads=1, resolution=128,
                        seed=0, verbose=True, **knobs):
    """AP and speed of the AE decoder (``group``) on noisy oracle outputs of real COCO layouts,
    against the reference preset (pose-ae-train's decoder) measured in the same run.

    Outputs come from :func:`ae_noisy_outputs` (``noise`` level, ``knobs`` override single
    degradations, ``seed``); every image is decoded by each of :data:`AE_BENCH_PRESETS` in turn
    (``repeats`` runs each, the fastest CPU time kept, :func:`_timed_runs`) and the results scored
    with COCOeval.

    Returns: dict ``num_images``, ``noise`` (the knobs), ``presets`` {name: {"ap", "ms",
    "ms_mean", "by_people" {bucket: {"images", "ms"}}}}, ``speed_ratio`` (reference ms /
    default ms, > 1: the defaults are faster) and ``ap_gain`` (default AP - reference AP).
    """
    import numpy as np

    from ..methods.ae.decode import group

    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats!r}")
    threads = _set_threads(threads)
    outputs = ae_noisy_outputs(ann_file, noise=noise, resolution=resolution, num_images=num_images,
                               seed=seed, **knobs)
    people = np.array([o["num_people"] for o in outputs])
    ids = [o["image_id"] for o in outputs]
    fns = {p: (lambda o, p=p: group(o["heatmaps"], o["tags"], preset=p)) for p in AE_BENCH_PRESETS}
    times = _timed_runs(fns, outputs, repeats)
    presets = {p: {"ap": _coco_keypoint_ap(ann_file, ae_coco_results(outputs, preset=p), ids),
                   **_summary(times[p], people)} for p in AE_BENCH_PRESETS}
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

# ---- end of AE decode section ----

# ---- PersonLab decode (perfect network outputs from real COCO layouts) ----

def personlab_perfect_outputs(ann_file, *, stride=8, radius=32.0, num_images=None, impute=True,
                              input_size=None):
    """Perfect PersonLab outputs for the real layouts of ``ann_file``.

    Per image: the layout is scaled so that the longer image side is ``input_size`` input px
    (None: the image itself, 1 input px = 1 image px); a grid of ``ceil(H' / stride) x
    ceil(W' / stride)`` cells of the (scaled) input, cell (i, j) at input
    ((j + 0.5) stride, (i + 0.5) stride); heatmaps = the binary disk targets (probabilities 1 / 0),
    short and mid offsets = :func:`posegroup.methods.personlab.targets.encode`'s targets
    (radius R in input px, the keypoint set's directed edges). With ``impute`` (default) the
    targets are encoded with every unlabelled joint placed at the nearest labelled joint of the
    tree (``targets.impute_unlabelled``): a network predicts mid offsets through unlabelled
    joints, the training target does not define them, so without it a person whose tree passes
    through an unlabelled joint falls apart (AP ~0.90 instead of ~0.99). COCO's OKS ignores the
    unlabelled joints, so their imputed positions do not enter the score. Returns a list of dicts
    ``image_id``, ``num_people``, ``heatmaps`` (K, H, W), ``short_offsets`` (K, H, W, 2),
    ``mid_offsets`` (E, H, W, 2), ``edges``, ``stride``, ``grid_offset``, ``sigmas`` and
    ``scale`` (image px per input px). The network setting of AE / PersonLab is
    ``input_size=512, stride=4``.
    """
    import math

    from ..methods.personlab.targets import encode, impute_unlabelled
    from ..skeleton import get_keypoint_set

    kset = get_keypoint_set(ann_file=ann_file)
    edges = kset.directed_edges
    out = []
    for lay in coco_layouts(ann_file, num_images):
        scale = 1.0 if input_size is None else max(lay["width"], lay["height"]) / float(input_size)
        size = (int(math.ceil(lay["height"] / scale / stride)), int(math.ceil(lay["width"] / scale / stride)))
        kp = impute_unlabelled(lay["keypoints"], kset.edges) if impute else lay["keypoints"].copy()
        kp[..., :2] /= scale
        t = encode(kp, None, None, size, stride, edges=edges, radius=radius, grid_offset=stride / 2.0)
        out.append({"image_id": lay["image_id"], "num_people": lay["keypoints"].shape[0],
                    "heatmaps": t["heatmaps"], "short_offsets": t["short_offsets"],
                    "mid_offsets": t["mid_offsets"], "edges": edges, "stride": stride,
                    "grid_offset": stride / 2.0, "sigmas": kset.sigmas, "scale": scale})
    return out


def personlab_coco_results(outputs, **decode_opts):
    """Decode :func:`personlab_perfect_outputs` with ``decode_poses``; COCO keypoint results
    (image px)."""
    import numpy as np

    from ..methods.personlab.decode import decode_poses
    from .predict import to_coco_results

    results = []
    for o in outputs:
        poses, scores = decode_poses(o["heatmaps"], o["short_offsets"], o["mid_offsets"], edges=o["edges"],
                                     output_stride=o["stride"], grid_offset=o["grid_offset"],
                                     **{"sigmas": o["sigmas"], **decode_opts})
        poses = poses.astype(np.float64)
        poses[..., :2] *= o.get("scale", 1.0)
        results.extend(to_coco_results(o["image_id"], poses, scores))
    return results


#: ``decode_poses`` options beyond the paper under which perfect outputs decode (nearly)
#: exactly: offsets read at the nearest cell (no mixing of two people's vectors where their
#: disks meet) and the expected-OKS mass at the exact vote positions. On the 511 COCO val
#: layouts (stride 4, input 512): AP 0.9900 vs 0.9873 with the paper's settings.
PERSONLAB_EXACT_OPTIONS = {"offset_sampling": "nearest", "oks_mass": "votes"}


def _personlab_settings(outputs, people, repeats, settings, score):
    """{name: {"options", "ap", "ms", "ms_mean", "by_people"}} for ``settings`` {name: decode
    options}, timed in turns on every output; ``score(options)`` -> AP."""
    from ..methods.personlab.decode import decode_poses

    def fn(opts):
        return lambda o: decode_poses(o["heatmaps"], o["short_offsets"], o["mid_offsets"], edges=o["edges"],
                                      output_stride=o["stride"], grid_offset=o["grid_offset"],
                                      **{"sigmas": o["sigmas"], **opts})

    times = _timed_runs({name: fn(opts) for name, opts in settings.items()}, outputs, repeats)
    return {name: {"options": opts, "ap": score(opts), **_summary(times[name], people)}
            for name, opts in settings.items()}


def benchmark_decode_personlab(ann_file, *, num_images=None, threads=1, repeats=3, stride=4, input_size=512,
                               exact=True, posenet="auto", verbose=True, **decode_opts):
    """Speed and AP of PersonLab's ``decode_poses`` against the earlier decoder path
    (:data:`~posegroup.methods.personlab.decode.PAPER_HOUGH`: the paper's input-resolution
    Hough map) measured in the same run.

    Perfect outputs of the real layouts of ``ann_file`` (:func:`personlab_perfect_outputs`:
    longer side ``input_size`` = 512 input px, ``stride`` 4, R = 32; ``input_size=None`` encodes
    on the image itself), decoded with ``decode_opts`` on the defaults ("default") and with
    PAPER_HOUGH on top ("paper"), and with ``exact`` both again under
    :data:`PERSONLAB_EXACT_OPTIONS`; each image ``repeats`` times in turns (fastest CPU time
    kept, :func:`_timed_runs`), COCOeval.
    With ``posenet`` (a dict ``ann``, ``model``; "auto": ../shared/data's 136 local COCO images
    and PoseNet model next to ``ann_file``'s folder, skipped when absent or without onnxruntime):
    the same on PoseNet's real outputs (:func:`benchmark_decode_posenet`).

    Returns: dict ``num_images``, ``settings`` {name: {"options", "ap", "ms", "ms_mean",
    "by_people" {bucket: {"images", "ms"}}}}, ``speed_ratio`` (paper ms / default ms), with
    ``exact`` ``speed_ratio_exact``, and ``posenet`` (or None).
    """
    import numpy as np

    from ..methods.personlab.decode import PAPER_HOUGH

    threads = _set_threads(threads)
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats!r}")
    outputs = personlab_perfect_outputs(ann_file, stride=stride, num_images=num_images, input_size=input_size)
    people = np.array([o["num_people"] for o in outputs])
    ids = [o["image_id"] for o in outputs]
    settings = {"default": dict(decode_opts), "paper": {**decode_opts, **PAPER_HOUGH}}
    if exact:
        settings.update({"exact": {**decode_opts, **PERSONLAB_EXACT_OPTIONS},
                         "exact paper": {**decode_opts, **PERSONLAB_EXACT_OPTIONS, **PAPER_HOUGH}})
    rows = _personlab_settings(outputs, people, repeats, settings,
                               lambda opts: _coco_keypoint_ap(ann_file, personlab_coco_results(outputs, **opts), ids))
    res = {"num_images": len(outputs), "settings": rows,
           "speed_ratio": rows["paper"]["ms"] / rows["default"]["ms"] if rows["default"]["ms"] > 0 else float("nan")}
    if exact:
        res["speed_ratio_exact"] = rows["exact paper"]["ms"] / rows["exact"]["ms"] if rows["exact"]["ms"] > 0 else float("nan")
    if verbose:
        where = f"input {input_size} px" if input_size else "on the image"
        _print_settings(f"PersonLab decode (decode_poses), perfect outputs, {res['num_images']} images, stride "
                        f"{stride} ({where}), {threads} thread(s), CPU ms: fastest of {repeats} runs per image, "
                        f"median over images",
                        rows, [("default", "paper")] + ([("exact", "exact paper")] if exact else []))
    res["posenet"] = benchmark_decode_posenet(ann_file=None, auto_from=ann_file, num_images=num_images,
                                              repeats=repeats, threads=threads, verbose=verbose) \
        if posenet == "auto" else (benchmark_decode_posenet(**posenet, num_images=num_images, repeats=repeats,
                                                            threads=threads, verbose=verbose) if posenet else None)
    return res


def _print_settings(title, rows, pairs):
    names = list(rows)
    print(title)
    print(f"{'people':>8} {'images':>7} " + " ".join(f"{n + ' ms':>16}" for n in names))
    for bucket in PEOPLE_BUCKETS:
        cells = [rows[n]["by_people"].get(bucket) for n in names]
        if cells[0]:
            print(f"{bucket:>8} {cells[0]['images']:>7} " + " ".join(f"{c['ms']:>16.3f}" for c in cells))
    n_img = sum(b["images"] for b in rows[names[0]]["by_people"].values())
    print(f"{'all':>8} {n_img:>7} " + " ".join(f"{rows[n]['ms']:>16.3f}" for n in names))
    print(f"{'mean':>8} {'':>7} " + " ".join(f"{rows[n]['ms_mean']:>16.3f}" for n in names))
    print("COCO AP: " + ", ".join(f"{n} {rows[n]['ap']:.4f}" for n in names))
    for new, old in pairs:
        print(f"{new} vs {old} (in-run baseline): AP {rows[new]['ap'] - rows[old]['ap']:+.4f}, speed ratio "
              f"{rows[old]['ms'] / rows[new]['ms']:.1f}x ({old} ms / {new} ms)")


def posenet_outputs(ann_file, model_path, *, num_images=None, input_size=513, threads=1):
    """PoseNet's network outputs for the images of a COCO json (file names relative to its
    folder), in the decoder layout: dicts like :func:`personlab_perfect_outputs`' plus
    ``factor`` (network px per image px) and ``num_people`` (annotated people)."""
    from ..data.coco import CocoPoseDataset
    from ..methods.personlab.posenet import PoseNetONNX
    from ..skeleton import COCO17

    model = PoseNetONNX(model_path, input_size=input_size, threads=threads)
    ds = CocoPoseDataset(ann_file, str(__import__("pathlib").Path(ann_file).parent), keypoint_set=COCO17)
    ids = list(ds.image_ids)[:num_images] if num_images else list(ds.image_ids)
    out = []
    for image_id in ids:
        maps, factor = model.run(ds.load_image(image_id))
        out.append({"image_id": image_id, "num_people": len(ds.annotations(image_id, with_masks=False)["keypoints"]),
                    "heatmaps": maps["heatmaps"], "short_offsets": maps["short_offsets"],
                    "mid_offsets": maps["mid_offsets"], "edges": maps["edges"], "stride": model.output_stride,
                    "grid_offset": 0.0, "sigmas": COCO17.sigmas, "scale": 1.0 / factor})
    return out


def benchmark_decode_posenet(ann_file=None, model=None, *, auto_from=None, num_images=None, repeats=3, threads=1,
                             input_size=513, verbose=True):
    """``decode_poses`` on Google PoseNet's real outputs with ``PoseNetONNX``'s settings
    ("default": ``DECODE_DEFAULTS``) against its earlier settings ("paper":
    ``PAPER_DECODE``, input-resolution Hough map) in the same run: median ms per image (the
    network is run once beforehand and not timed), by annotated people, COCOeval AP. With
    ``auto_from`` (a json in ../shared/data/<folder>/) the 136 local COCO images and the model of
    ../shared/data are used; returns None when they or onnxruntime are absent."""
    from pathlib import Path

    import numpy as np

    if auto_from is not None:
        data = Path(auto_from).resolve().parent.parent
        ann_file = data / "coco_images" / "person_keypoints_local_images.json"
        model = data / "models" / "posenet_mobilenetv1_dyn.onnx"
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
        if not (ann_file.is_file() and model.is_file()):
            return None
    from ..methods.personlab.posenet import PoseNetONNX

    outputs = posenet_outputs(str(ann_file), str(model), num_images=num_images, input_size=input_size,
                              threads=_set_threads(threads))
    people = np.array([o["num_people"] for o in outputs])
    ids = [o["image_id"] for o in outputs]
    settings = {"default": dict(PoseNetONNX.DECODE_DEFAULTS), "paper": dict(PoseNetONNX.PAPER_DECODE)}
    rows = _personlab_settings(outputs, people, repeats, settings,
                               lambda opts: _coco_keypoint_ap(str(ann_file), personlab_coco_results(outputs, **opts), ids))
    res = {"num_images": len(outputs), "settings": rows, "speed_ratio": rows["paper"]["ms"] / rows["default"]["ms"]}
    if verbose:
        _print_settings(f"PoseNet outputs (decode only), {len(outputs)} images, input {input_size}, "
                        f"{threads} thread(s), CPU ms: fastest of {repeats} runs per image, median over images",
                        rows, [("default", "paper")])
    return res

# ---- end of PersonLab decode section ----

# ---- train benchmark -------------------------------------------------------------------------

def _true_id_predictor(method, model, dataset, test_opts):
    """(image_id -> results) with true person ids, or None when the method has no ceiling.

    A method offers its ceiling through a ``predict_true_ids(model, image, keypoints,
    **test_opts)`` method (AE: true tags; PersonLab could follow true mid-range offsets)."""
    hook = getattr(method, "predict_true_ids", None)
    if callable(hook):
        return lambda model_, image, kp: hook(model_, image, kp, **test_opts)
    return None


def _ap_on_split(model, method, ann_file, test_opts, max_images, true_ids: bool):
    import torch
    from ..data.coco import CocoPoseDataset
    from .evaluate import evaluate_results
    from .predict import make_predictor, to_coco_results

    ds = CocoPoseDataset(ann_file, keypoint_set=method.keypoint_set)
    ids = list(ds.image_ids)[:max_images] if max_images else list(ds.image_ids)
    predictor = make_predictor(model, method, None, **test_opts)
    oracle = _true_id_predictor(method, model, ds, test_opts) if true_ids else None
    res, res_true = [], []
    for image_id in ids:
        image = ds.load_image(image_id)
        out = predictor(image)
        res.extend(to_coco_results(image_id, out[0], out[1], out[2] if len(out) > 2 else None))
        if oracle is not None:
            with torch.inference_mode():
                p, s = oracle(model, image, ds.annotations(image_id)["keypoints"])[:2]
            res_true.extend(to_coco_results(image_id, p, s))

    def ap(results):
        if not results:
            return 0.0
        return float(evaluate_results(str(ds.ann_file), results, keypoint_set=ds.keypoint_set,
                                      image_ids=ids)["AP"])

    return ap(res), (ap(res_true) if oracle is not None else None)


def benchmark_train(config: dict, *, minutes: float = 15.0, eval_every_minutes: float | None = None,
                    splits: dict | None = None, out_dir="runs/benchmark_train", max_images: int | None = 100,
                    threads: int | None = None, progress: bool = True) -> dict:
    """Keypoint AP against wall-clock training minutes, next to the grouping ceiling.

    Trains ``config`` (:func:`posegroup.engine.train.train`, resuming exactly between chunks)
    for ``minutes`` of training time; every ``eval_every_minutes`` (default ``minutes / 5``,
    at least 0.5) it scores the current weights on each held-out split: the COCO keypoint AP of
    ``method.predict`` and the AP when predicted tags are replaced by the true person ids
    (``true_ids``; AE only, or methods with a ``predict_true_ids`` hook; None otherwise).
    Evaluation time is not counted as training time.

    Args:
        config: merged config (``load_config``); its ``test`` section gives the test options.
        splits: {name: COCO json}. Default: ``{"sparse": data.val_ann}`` plus ``"heavy"`` when
            a ``val_heavy`` folder sits next to a ``val_sparse`` one (the synthetic layout).
        out_dir: the training run goes to ``out_dir/train`` (a previous one there is replaced); the table to
            ``out_dir/benchmark_train.json``.
        max_images: images per split (default 100; None = all).
        threads: torch CPU threads (default: leave as is).
    Returns: {"rows": [{"minutes", "step", "loss", "<split>_AP", "<split>_true_ids_AP"}...],
    "splits", "config", "out_dir"}.
    """
    import copy
    import json
    from pathlib import Path

    import torch

    from .checkpoint import load_model
    from .train import test_options, train

    if threads:
        torch.set_num_threads(int(threads))
    cfg = copy.deepcopy(config)
    if splits is None:
        val = cfg["data"].get("val_ann")
        if not val:
            raise ValueError(f"{cfg.get('_source', 'config')}: benchmark train needs data.val_ann or splits")
        splits = {"sparse": val}
        heavy = Path(str(val).replace("val_sparse", "val_heavy"))
        if "val_sparse" in str(val) and heavy.is_file():
            splits["heavy"] = str(heavy)
    for name, ann in splits.items():
        if not Path(ann).is_file():
            raise ValueError(f"{ann}: split {name!r} annotation file not found")
    cfg["data"]["val_ann"] = None                      # evaluation happens here, between chunks
    cfg["train"]["eval_every"] = 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    every = eval_every_minutes if eval_every_minutes is not None else max(0.5, minutes / 5)
    rows, trained, first = [], 0.0, True
    print(f"benchmark train: {cfg['method']['name']}, {minutes:g} min, eval every {every:g} min, "
          f"splits {sorted(splits)}")
    while trained < minutes - 1e-6:
        chunk = min(every, minutes - trained)
        s = train(cfg, out_dir=out / "train", resume=not first, max_minutes=chunk, progress=progress,
                  overwrite=first)
        first = False
        trained += s["minutes"]
        model, method, _ = load_model(s["checkpoint"])
        opts = test_options(cfg, method)
        row = {"minutes": round(trained, 3), "step": s["steps"], "loss": s["final_loss"]}
        for name, ann in splits.items():
            ap, ap_true = _ap_on_split(model, method, ann, opts, max_images, true_ids=True)
            row[f"{name}_AP"] = ap
            row[f"{name}_true_ids_AP"] = ap_true
        rows.append(row)
        cells = "  ".join(f"{n}: AP {row[f'{n}_AP']:.3f}" + (f" (true ids {row[f'{n}_true_ids_AP']:.3f})"
                                                               if row[f"{n}_true_ids_AP"] is not None else "")
                          for n in splits)
        print(f"  {row['minutes']:6.2f} min  step {row['step']:6d}  loss {row['loss']:.4g}  {cells}", flush=True)
        (out / "benchmark_train.json").write_text(json.dumps(
            {"rows": rows, "splits": splits, "minutes": minutes}, indent=1))
        if s["stopped"] == "done":
            break
    return {"rows": rows, "splits": dict(splits), "config": cfg.get("_source"), "out_dir": str(out)}


# ---- speed of trained models: network ms vs decoder ms, per image and per person ----------------

def _timed_predictor(model, method, test_opts):
    """``image -> (poses, scores, network_s, total_s)``: the network time is the model's forward
    on the prepared input (timed by a forward hook on the model), the rest of ``method.predict``
    (resizing, the recurrent LSTM loop, grouping, decoding) is the decoder's."""
    import time

    import torch

    stamps = {"network": 0.0}

    def pre(_module, _inp):
        stamps["t"] = time.perf_counter()

    def post(_module, _inp, _out):
        stamps["network"] += time.perf_counter() - stamps["t"]

    timed = getattr(model, "backbone", model)   # a model that wraps a backbone (recurrent) times that
    timed.register_forward_pre_hook(pre)
    timed.register_forward_hook(post)

    def run(image):
        stamps["network"] = 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = method.predict(model, image, **test_opts)
        return out[0], out[1], stamps["network"], time.perf_counter() - t0

    return run


def benchmark_speed(checkpoints, splits: dict, *, max_images: int | None = 50, threads: int | None = 1,
                    repeats: int = 1, out_file=None) -> list[dict]:
    """Per checkpoint and split: AP, network ms and decoder ms per image and per decoded person.

    The first checkpoint is the baseline: every row also gives its total time as a ratio to the
    baseline's on the same split, measured in the same run. ``splits``: name -> COCO json.
    Prints a Markdown table; returns its rows (written to ``out_file`` as json when given).
    """
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from ..data.coco import CocoPoseDataset
    from .checkpoint import load_model
    from .evaluate import evaluate_results
    from .predict import test_options, to_coco_results

    if threads:
        torch.set_num_threads(int(threads))
    rows, base = [], {}
    for ck in checkpoints:
        model, method, config = load_model(ck)
        run = _timed_predictor(model, method, test_options(config, method))
        for split, ann in splits.items():
            ds = CocoPoseDataset(ann, keypoint_set=method.keypoint_set)
            ids = list(ds.image_ids)[:max_images] if max_images else list(ds.image_ids)
            images = [ds.load_image(i) for i in ids]
            run(images[0])                                         # warm-up
            net, dec, people, results = [], [], 0, []
            for _ in range(max(1, int(repeats))):
                results, people = [], 0
                for image_id, image in zip(ids, images):
                    poses, scores, n_s, t_s = run(image)
                    net.append(n_s)
                    dec.append(t_s - n_s)
                    people += len(poses)
                    results += to_coco_results(image_id, poses, scores)
            ap = float(evaluate_results(str(ds.ann_file), results, keypoint_set=ds.keypoint_set,
                                        image_ids=ids)["AP"]) if results else 0.0
            net_ms, dec_ms = 1e3 * float(np.median(net)), 1e3 * float(np.median(dec))
            row = {"checkpoint": str(ck), "method": method.name, "split": split, "images": len(ids), "AP": ap,
                   "network_ms": net_ms, "decoder_ms": dec_ms,
                   "decoder_ms_per_person": 1e3 * float(np.sum(dec)) / max(1, people * max(1, int(repeats))),
                   "people_per_image": people / max(1, len(ids))}
            base.setdefault(split, net_ms + dec_ms)
            row["total_vs_baseline"] = (net_ms + dec_ms) / base[split]
            rows.append(row)
    lines = ["| method | split | AP | network ms | decoder ms | decoder ms / person | people / image | "
             "total vs first |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['split']} | {r['AP']:.3f} | {r['network_ms']:.1f} | {r['decoder_ms']:.1f} | "
                     f"{r['decoder_ms_per_person']:.2f} | {r['people_per_image']:.1f} | {r['total_vs_baseline']:.2f}x |")
    print("\n".join(lines), flush=True)
    if out_file is not None:
        Path(out_file).write_text(json.dumps(rows, indent=1))
    return rows
