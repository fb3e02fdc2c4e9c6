"""Benchmarks that print figures (ratios against a baseline measured in the same run), run as
``posegroup benchmark decode`` and ``posegroup benchmark train``."""
from __future__ import annotations

from ..files import write_json_atomic


# ---- decode benchmarks: each method's plug-in is ``<method package>.bench``; the engine hands it
# its COCO AP scorer (the method-free timing helpers are in ``posegroup.evaluation``) ----

def _coco_keypoint_ap(ann_file, results, image_ids):
    """COCOeval keypoint AP over ``image_ids`` (:func:`~posegroup.engine.evaluate.score_results`);
    the ``score_ap`` the decode plug-ins are given."""
    from .evaluate import score_results
    return score_results(ann_file, results, image_ids)["AP"]


# ---- timed prediction over a held-out split, scored with COCOeval (benchmark train, predict, methods) ----

class TimedPredictor:
    """``image -> (poses, scores, network_s, total_s)`` of ``run`` (a
    :class:`~posegroup.engine.timed.TimedRun`, kept as ``run``): the seconds of its network
    and of the whole prediction of that image."""

    def __init__(self, run):
        self.run = run

    def __call__(self, image) -> tuple:
        poses, scores = self.run(image)[:2]
        return poses, scores, self.run.network_s, self.run.network_s + self.run.decoder_s


def timed_predictor(model, method, inference_opts) -> TimedPredictor:
    """The method's network and decoder as :func:`~posegroup.engine.timed.method_run` splits
    and times them (:class:`TimedPredictor`): the network is ``method.network_outputs``
    (resizing, the forward passes and their fusion; a recurrent method's LSTM steps; a foreign
    network's graph with its pre- and post-processing), the decoder ``method.decode`` (grouping,
    decoding, masks)."""
    from .timed import method_run
    return TimedPredictor(method_run(model, method, **inference_opts))


def true_id_predictor(method, model, inference_opts):
    """``(image, keypoints) -> (poses, scores, ...)`` with true person ids, or None when the
    method has no ceiling.

    A method offers its ceiling by overriding ``Method.predict_true_ids(model, image, keypoints,
    **inference_opts)`` (AE: true tags; recurrent: each true person selected from the joints the
    network finds; PersonLab could follow true mid-range offsets)."""
    from ..methods.base import Method
    if type(method).predict_true_ids is Method.predict_true_ids:
        return None
    return lambda image, kp: method.predict_true_ids(model, image, kp, **inference_opts)


def open_split(ann_file, keypoint_set, max_images, image_root=None):
    """(dataset, image ids) of a held-out split: the COCO json ``ann_file`` (images under
    ``image_root``, default its folder) read with ``keypoint_set``, its first ``max_images``
    images (all when None or 0)."""
    from ..data.coco import CocoPoseDataset

    ds = CocoPoseDataset(ann_file, image_root, keypoint_set=keypoint_set)
    return ds, (list(ds.image_ids)[:max_images] if max_images else list(ds.image_ids))


def predict_split(run: TimedPredictor, dataset, image_ids, *, images=None, oracle=None) -> dict:
    """``run`` (a :func:`timed_predictor`) on the images ``image_ids`` of ``dataset`` (or on
    ``images``, the same images already loaded, in that order), through
    :func:`~posegroup.engine.predict.predict_over` (timed, plain results).

    ``oracle``: a :func:`true_id_predictor`, run (outside the timings) on each image with its
    true people. Returns {"results": COCO results (poses and scores), "network_s",
    "decoder_s": per-image seconds, "people": poses predicted, "true_results": the oracle's COCO
    results, None without one}."""
    from .predict import predict_over
    out = predict_over(run.run, dataset, image_ids, images=images, oracle=oracle, timed=True, plain=True)
    return {"results": out.results, "network_s": out.network_s, "decoder_s": out.decoder_s, "people": out.people,
            "true_results": out.true_results}


def coco_scores(ann_file, results, image_ids, *, keypoint_set=None, keys=("AP",)) -> dict[str, float]:
    """COCOeval keypoint figures ``keys`` of ``results`` on ``image_ids``
    (:func:`~posegroup.engine.evaluate.score_results`); all 0.0 without results."""
    from .evaluate import score_results
    return score_results(ann_file, results, image_ids, keypoint_set=keypoint_set, keys=keys)


# ---- train benchmark -------------------------------------------------------------------------

def _ap_on_split(run, oracle, method, ann_file, max_images):
    """(AP, true-id AP or None without ``oracle``) of ``run`` on a split (:func:`predict_split`)."""
    from .evaluate import score_results
    ds, ids = open_split(ann_file, method.keypoint_set, max_images)
    out = predict_split(run, ds, ids, oracle=oracle)

    def ap(results):
        return score_results(str(ds.ann_file), results, ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]

    return ap(out["results"]), (ap(out["true_results"]) if oracle is not None else None)


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
    from pathlib import Path

    import torch

    from .checkpoint import load_model
    from .predict import inference_options
    from .train import train

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
                  overwrite=first, schedule_minutes=minutes - trained)   # train.steps auto: the whole budget
        first = False
        trained += s["minutes"]
        model, method, _ = load_model(s["checkpoint"])
        opts = inference_options(cfg, method)
        row = {"minutes": round(trained, 3), "step": s["steps"], "loss": s["final_loss"]}
        run, oracle = timed_predictor(model, method, opts), true_id_predictor(method, model, opts)
        for name, ann in splits.items():
            ap, ap_true = _ap_on_split(run, oracle, method, ann, max_images)
            row[f"{name}_AP"] = ap
            row[f"{name}_true_ids_AP"] = ap_true
        rows.append(row)
        cells = "  ".join(f"{n}: AP {row[f'{n}_AP']:.3f}" + (f" (true ids {row[f'{n}_true_ids_AP']:.3f})"
                                                               if row[f"{n}_true_ids_AP"] is not None else "")
                          for n in splits)
        print(f"  {row['minutes']:6.2f} min  step {row['step']:6d}  loss {row['loss']:.4g}  {cells}", flush=True)
        write_json_atomic(out / "benchmark_train.json", {"rows": rows, "splits": splits, "minutes": minutes},
                          indent=1)
        if s["stopped"] == "done":
            break
    return {"rows": rows, "splits": dict(splits), "config": cfg.get("_source"), "out_dir": str(out)}


# ---- training-step time: memory formats ------------------------------------------------------

def benchmark_step(config: dict, *, repeats: int = 5, steps: int = 3, threads: int | None = 1) -> dict:
    """Time of one training step (forward, loss, backward, Adam) of ``config``'s network on one
    batch of its training data, in the default (NCHW) memory format -- the in-run baseline --
    and with ``train.channels_last`` (NHWC), alternating: ``repeats`` rounds, each format one
    warm-up step then ``steps`` timed steps (median) per round. Nothing is written.

    Returns {"rows": [{"memory_format", "ms_per_step" (median over rounds), "speedup" (baseline
    ms / this ms)}], "batch_size", "input_size", "device"}; also prints the table.
    """
    import copy
    import statistics
    import time

    import torch

    from ..data.training import collate
    from .train import to_device, forward_loss, single_process_run, update_ema

    if threads:
        torch.set_num_threads(int(threads))
    cfg = copy.deepcopy(config)
    r = single_process_run(cfg)
    batch = to_device(collate([r.train_set[i % len(r.train_set)] for i in range(r.batch_size)]), r.device)
    sync = torch.cuda.synchronize if r.device.type == "cuda" else (lambda: None)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        loss, _ = forward_loss(r, dict(batch))
        r.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        r.optimizer.step()
        if r.ema_net is not None:                      # train.ema: the average's update is part of a step
            update_ema(r.ema_net, r.net, float(r.tc["ema"]), 1000)
        sync()
        return time.perf_counter() - t0

    formats = {"contiguous (NCHW)": False, "channels_last (NHWC)": True}
    times: dict[str, list[float]] = {name: [] for name in formats}
    for _ in range(max(1, int(repeats))):
        for name, on in formats.items():
            r.tc["channels_last"] = on
            r.net.to(memory_format=torch.channels_last if on else torch.contiguous_format)
            step()
            times[name].append(statistics.median(step() for _ in range(max(1, int(steps)))))
    base = statistics.median(times["contiguous (NCHW)"])
    rows = [{"memory_format": name, "ms_per_step": 1000 * statistics.median(t),
             "speedup": base / statistics.median(t)} for name, t in times.items()]
    print(f"benchmark step: {cfg.get('_source', 'config')}, batch {r.batch_size}, input "
          f"{cfg['data']['input_size']} px, {r.device}, {torch.get_num_threads()} thread(s), "
          f"{repeats} rounds x {steps} steps")
    print("| memory format | ms / step | speed-up |\n|---|---|---|")
    for row in rows:
        print(f"| {row['memory_format']} | {row['ms_per_step']:.1f} | {row['speedup']:.2f}x |")
    return {"rows": rows, "batch_size": r.batch_size, "input_size": int(cfg["data"]["input_size"]),
            "device": str(r.device)}


# ---- speed of trained models: network ms vs decoder ms, per image and per person ----------------

class _AdapterMethod:
    """A foreign or pretrained network's adapter (:data:`posegroup.methods.ONNX_FORMATS`,
    :data:`posegroup.methods.PRETRAINED`) seen as a method by :func:`benchmark_speed`: its
    inference settings are its decode options, its ``network_outputs`` and ``decode`` the
    adapter's own."""

    def __init__(self, name, net):
        self.name, self.keypoint_set, self.net = name, net.keypoint_set, net

    @staticmethod
    def inference_settings(options=None) -> dict:
        return dict(options or {})

    def network_outputs(self, net, image, settings):
        return net.network_outputs(image)

    def decode(self, outputs, settings, image_shape):
        return self.net.decode(outputs, image_shape, **settings)

    def predict(self, net, image, **opts):
        return net.predict(image, **opts)


def _speed_model(path, onnx_format=None, threads=1):
    """(model, method, test options, runtime) of one ``benchmark predict`` entry: the name of a
    pretrained network shipped in the package (``posenet``: its default options, PyTorch) or of a
    shipped model (``ae``...); a training checkpoint (PyTorch); an ``.onnx`` that ``posegroup export`` wrote (onnxruntime network, the
    method's decoding in Python); or a foreign ``.onnx`` without posegroup metadata, read by its
    adapter of format ``onnx_format`` (default :data:`~posegroup.methods.DEFAULT_ONNX_FORMAT`,
    as ``predict --onnx``; it applies to foreign files only), with ``threads`` onnxruntime threads."""
    from ..methods import PRETRAINED, pretrained_model
    from .checkpoint import load_model
    from .predict import inference_options
    from .shipped import shipped_model

    if str(path) in PRETRAINED:             # a pretrained network shipped in the package
        net = pretrained_model(str(path), threads=threads)
        return net, _AdapterMethod(f"{path} (pretrained)", net), {}, "pytorch"
    path = shipped_model(str(path)) or path
    if not str(path).endswith(".onnx"):
        model, method, config = load_model(path)
        return model, method, inference_options(config, method), "pytorch"
    from .onnx_model import load_onnx_model, read_metadata
    if read_metadata(path) is not None:    # our own export: its metadata says how to decode it
        model, method, meta = load_onnx_model(path)
        opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (meta.get("test") or {}).items()}
        return model, method, opts, "onnxruntime"
    from ..methods import DEFAULT_ONNX_FORMAT, onnx_adapter
    fmt = onnx_format or DEFAULT_ONNX_FORMAT
    net = onnx_adapter(fmt, path, threads=threads)
    return net, _AdapterMethod(fmt, net), {}, "onnxruntime"


def _speed_row(run, method, ann, max_images, repeats) -> dict:
    """AP, median network / decoder ms, images/s and people of ``run`` (a :func:`timed_predictor`)
    on the first ``max_images`` images of the COCO json ``ann`` (:func:`predict_split`
    ``repeats`` times; AP and people of the last)."""
    import numpy as np

    from .evaluate import score_results
    ds, ids = open_split(ann, method.keypoint_set, max_images)
    images = [ds.load_image(i) for i in ids]
    run(images[0])                                         # warm-up
    net, dec = [], []
    for _ in range(max(1, int(repeats))):
        out = predict_split(run, ds, ids, images=images)
        net += out["network_s"]
        dec += out["decoder_s"]
    people = out["people"]
    ap = score_results(str(ds.ann_file), out["results"], ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]
    net_ms, dec_ms = 1e3 * float(np.median(net)), 1e3 * float(np.median(dec))
    return {"images": len(ids), "AP": ap, "images_per_s": 1e3 / max(1e-9, net_ms + dec_ms),
            "network_ms": net_ms, "decoder_ms": dec_ms,
            "decoder_ms_per_person": 1e3 * float(np.sum(dec)) / max(1, people * max(1, int(repeats))),
            "people_per_image": people / max(1, len(ids))}


def _speed_table(rows) -> str:
    lines = ["| method | runtime | split | AP | network ms | decoder ms | decoder ms / person | people / image | "
             "images / s | total vs first |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['runtime']} | {r['split']} | {r['AP']:.3f} | {r['network_ms']:.1f} | "
                     f"{r['decoder_ms']:.1f} | {r['decoder_ms_per_person']:.2f} | {r['people_per_image']:.1f} | "
                     f"{r['images_per_s']:.1f} | {r['total_vs_baseline']:.2f}x |")
    return "\n".join(lines)


def benchmark_speed(checkpoints, splits: dict, *, max_images: int | None = 50, threads: int | None = 1,
                    repeats: int = 1, out_file=None, onnx_format: str | None = None) -> list[dict]:
    """Per model and split: AP, network ms and decoder ms per image and per decoded person,
    images per second. ``checkpoints``: training checkpoints (PyTorch), ``.onnx`` files written
    by ``posegroup export`` (onnxruntime for the network, the method's decoding in Python) and
    foreign ``.onnx`` networks without posegroup metadata (e.g. Google's PoseNet, through its
    adapter of format ``onnx_format``; see :func:`_speed_model`).

    The first model is the baseline: every row also gives its total time as a ratio to the
    baseline's on the same split, measured in the same run. ``splits``: name -> COCO json.
    Prints a Markdown table; returns its rows (written to ``out_file`` as json when given).
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    rows, base = [], {}
    for ck in checkpoints:
        model, method, opts, runtime = _speed_model(ck, onnx_format, threads=threads)
        run = timed_predictor(model, method, opts)
        for split, ann in splits.items():
            row = {"checkpoint": str(ck), "method": method.name, "runtime": runtime, "split": split,
                   **_speed_row(run, method, ann, max_images, repeats)}
            total = row["network_ms"] + row["decoder_ms"]
            base.setdefault(split, total)
            row["total_vs_baseline"] = total / base[split]
            rows.append(row)
    print(_speed_table(rows), flush=True)
    if out_file is not None:
        write_json_atomic(out_file, rows, indent=1)
    return rows


#: ``benchmark decode``'s degradation levels of the oracle outputs, each plug-in's own knobs per level.
NOISE_LEVELS = ("clean", "mild", "hard")
#: ``benchmark decode``'s default layouts: COCO val2017 people, under the real-data folder.
DECODE_LAYOUTS = "coco_val2017_kp/person_keypoints_val2017_gtcomplete511.json"


def default_decode_layouts():
    """:data:`DECODE_LAYOUTS` under the real-data folder (:func:`~posegroup.engine.demo.find_shared_data`),
    or None when it is not there."""
    from .demo import find_shared_data
    return find_shared_data(DECODE_LAYOUTS)


def benchmark_decode(ann_file, *, num_images=None, noise="clean") -> dict:
    """``posegroup benchmark decode``: every method's decode benchmark plug-in
    (``posegroup.methods.<name>.bench.benchmark_decode(ann_file, num_images=, noise=, score_ap=)``,
    ``score_ap`` the engine's COCO AP :func:`_coco_keypoint_ap`), in the order of
    :data:`posegroup.methods.METHODS`. Returns {method: its result}."""
    import importlib

    from ..methods import METHODS

    out = {}
    for name, module in METHODS.items():
        try:
            bench = importlib.import_module(module + ".bench")
        except ModuleNotFoundError as e:
            if e.name != module + ".bench":
                raise
            continue
        out[name] = bench.benchmark_decode(ann_file, num_images=num_images, noise=noise, score_ap=_coco_keypoint_ap)
    return out
