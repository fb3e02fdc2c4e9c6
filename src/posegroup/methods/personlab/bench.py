"""PersonLab's decode benchmark (``posegroup benchmark decode``): perfect outputs of real COCO
layouts and Google PoseNet's real outputs, decoded by :func:`.decode.decode_poses` against the
paper's Hough-map path measured in the same run. A benchmark plug-in: the engine finds it as
``posegroup.methods.personlab.bench.benchmark_decode``, which it hands its COCO AP scorer
(``score_ap``); the timing helpers are :mod:`posegroup.evaluation`'s."""
from __future__ import annotations

from ...evaluation import PEOPLE_BUCKETS, coco_layouts, set_threads, timed_runs, timing_summary, to_coco_results

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

    from .targets import encode, impute_unlabelled
    from ...skeleton import get_keypoint_set

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

    from .decode import decode_poses

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
    from .decode import decode_poses

    def fn(opts):
        return lambda o: decode_poses(o["heatmaps"], o["short_offsets"], o["mid_offsets"], edges=o["edges"],
                                      output_stride=o["stride"], grid_offset=o["grid_offset"],
                                      **{"sigmas": o["sigmas"], **opts})

    times = timed_runs({name: fn(opts) for name, opts in settings.items()}, outputs, repeats)
    return {name: {"options": opts, "ap": score(opts), **timing_summary(times[name], people)}
            for name, opts in settings.items()}


def benchmark_decode_personlab(ann_file, *, num_images=None, threads=1, repeats=3, stride=4, input_size=512,
                               exact=True, posenet="auto", verbose=True, score_ap, **decode_opts):
    """Speed and AP of PersonLab's ``decode_poses`` against its paper settings
    (:data:`~posegroup.methods.personlab.decode.PAPER_HOUGH`: the paper's input-resolution
    Hough map) measured in the same run.

    Perfect outputs of the real layouts of ``ann_file`` (:func:`personlab_perfect_outputs`:
    longer side ``input_size`` = 512 input px, ``stride`` 4, R = 32; ``input_size=None`` encodes
    on the image itself), decoded with ``decode_opts`` on the defaults ("default") and with
    PAPER_HOUGH on top ("paper"), and with ``exact`` both again under
    :data:`PERSONLAB_EXACT_OPTIONS`; each image ``repeats`` times in turns (fastest CPU time
    kept, :func:`~posegroup.evaluation.timed_runs`), scored by ``score_ap(ann_file, results,
    image_ids) -> AP`` (the engine's COCOeval).
    With ``posenet`` (a dict ``ann``, ``model``; "auto": ../shared/data's 136 local COCO images
    and PoseNet model next to ``ann_file``'s folder, skipped when absent or without onnxruntime):
    the same on PoseNet's real outputs (:func:`benchmark_decode_posenet`).

    Returns: dict ``num_images``, ``settings`` {name: {"options", "ap", "ms", "ms_mean",
    "by_people" {bucket: {"images", "ms"}}}}, ``speed_ratio`` (paper ms / default ms), with
    ``exact`` ``speed_ratio_exact``, and ``posenet`` (or None).
    """
    import numpy as np

    from .decode import PAPER_HOUGH

    threads = set_threads(threads)
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
                               lambda opts: score_ap(ann_file, personlab_coco_results(outputs, **opts), ids))
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
                                              repeats=repeats, threads=threads, verbose=verbose, score_ap=score_ap) \
        if posenet == "auto" else (benchmark_decode_posenet(**posenet, num_images=num_images, repeats=repeats,
                                                            threads=threads, verbose=verbose, score_ap=score_ap)
                                   if posenet else None)
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
    from ...data.coco import CocoPoseDataset
    from .posenet import PoseNetONNX
    from ...skeleton import COCO17

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
                             input_size=513, verbose=True, score_ap):
    """``decode_poses`` on Google PoseNet's real outputs with ``PoseNetONNX``'s settings
    ("default": ``DECODE_DEFAULTS``) against the paper's settings ("paper":
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
    from .posenet import PoseNetONNX

    outputs = posenet_outputs(str(ann_file), str(model), num_images=num_images, input_size=input_size,
                              threads=set_threads(threads))
    people = np.array([o["num_people"] for o in outputs])
    ids = [o["image_id"] for o in outputs]
    settings = {"default": dict(PoseNetONNX.DECODE_DEFAULTS), "paper": dict(PoseNetONNX.PAPER_DECODE)}
    rows = _personlab_settings(outputs, people, repeats, settings,
                               lambda opts: score_ap(str(ann_file), personlab_coco_results(outputs, **opts), ids))
    res = {"num_images": len(outputs), "settings": rows, "speed_ratio": rows["paper"]["ms"] / rows["default"]["ms"]}
    if verbose:
        _print_settings(f"PoseNet outputs (decode only), {len(outputs)} images, input {input_size}, "
                        f"{threads} thread(s), CPU ms: fastest of {repeats} runs per image, median over images",
                        rows, [("default", "paper")])
    return res

# ---- end of PersonLab decode section ----

def benchmark_decode(ann_file, *, num_images=None, noise="clean", score_ap, **kw):
    """Entry point of ``posegroup benchmark decode`` for PersonLab (``noise`` is AE's oracle knob:
    PersonLab's oracle is perfect outputs and PoseNet's real ones)."""
    return benchmark_decode_personlab(ann_file, num_images=num_images, score_ap=score_ap, **kw)
