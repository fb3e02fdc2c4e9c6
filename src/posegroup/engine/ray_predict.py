"""``posegroup predict --ray``: the same predictor over many images on a Ray cluster (or a local
Ray), through Ray Data.

The images (files and folders, as :func:`~posegroup.engine.predict.collect_images` lists them;
``image_id`` = the index in that list, as ``predict`` gives) are cut into shards of
``shard_size``. A Ray Data ``map_batches`` with a stateful predictor class (:class:`ShardPredictor`:
one model load per worker, ``num_workers`` workers, ``num_cpus`` / ``num_gpus`` each) predicts
the shards; the driver writes each finished shard to ``OUT/shards/shard_NNNNN.json`` as it
arrives and at the end merges them into ``OUT/results.json`` (one COCO results list, sorted by
image id). A rerun over the same inputs with the same model resumes: shards already written are
not recomputed (``OUT/shards/manifest.json`` records the inputs and the model; a different run
in the same ``OUT`` is refused unless ``overwrite``).

Workers read the images by path: on a cluster the paths must be readable on every node (shared
storage). Ray is an optional dependency: ``pip install posegroup[ray]``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..files import refuse_existing, write_json_atomic
from .predict import PredictError, collect_images


def _ray():
    from ..extras import require
    ray = require("ray", "predict --ray")
    require("ray.data", "predict --ray")
    return ray


class ShardPredictor:
    """Ray Data stateful callable: loads the model once (``model_spec``: the keyword arguments of
    :meth:`~posegroup.engine.predictor.Predictor.load`, ``path`` and ``trust_checkpoint``
    besides) and predicts each shard of a batch -> rows ``{"shard", "results" (json text),
    "skipped" (json text)}``."""

    def __init__(self, model_spec: dict, threads: int = 1):
        import torch
        from .checkpoint import trusting
        from .predictor import Predictor
        torch.set_num_threads(max(1, int(threads)))
        spec = dict(model_spec)
        trust, path, fmt = bool(spec.pop("trust_checkpoint", False)), spec.pop("path", None), spec.pop("format", None)
        with trusting(trust):
            self.predictor = Predictor.load(path, format=fmt, **spec).run

    def __call__(self, batch: dict) -> dict:
        from .predict import predict_paths
        out = {"shard": [], "results": [], "skipped": []}
        for shard, paths, ids in zip(batch["shard"], batch["paths"], batch["ids"]):
            skipped: list = []
            results = [r for *_, found in predict_paths(self.predictor, json.loads(paths), json.loads(ids), skipped)
                       for r in found.results]
            out["shard"].append(int(shard))
            out["results"].append(json.dumps(results))
            out["skipped"].append(json.dumps(skipped))
        return out


def predict_ray(model_spec: dict, paths, *, out_dir: str | Path, address: str | None = None,
                num_workers: int = 2, num_cpus: float = 1.0, num_gpus: float = 0.0, shard_size: int = 64,
                overwrite: bool = False, progress: bool = True) -> dict:
    """Predict ``paths`` on Ray; returns ``{"results", "shards", "computed" (shard indices
    predicted in this call), "skipped"}``. ``address``: an existing cluster (``"auto"``, or
    ``"ray://HEAD:10001"``); None starts a local Ray with ``num_workers * num_cpus`` CPUs."""
    ray = _ray()
    files = [os.path.realpath(p) for p in collect_images(paths, exclude=out_dir)]
    if not files:
        raise PredictError("no image to predict")
    if shard_size < 1 or num_workers < 1:
        raise PredictError("--shard-size and --num-workers must be >= 1")
    out_dir = Path(out_dir)
    shard_dir = out_dir / "shards"
    manifest = {"files": files, "shard_size": int(shard_size),
                "model": {k: v for k, v in sorted(model_spec.items()) if isinstance(v, (str, int, float, bool, list))
                          or v is None}}
    if not (shard_dir / "manifest.json").exists():
        refuse_existing(out_dir / "results.json", overwrite, error=PredictError)
    elif json.loads((shard_dir / "manifest.json").read_text()) != json.loads(json.dumps(manifest)):
        refuse_existing(shard_dir, overwrite, error=PredictError, exists=True, to="start afresh",
                        found="holds shards of another run (other images or model)")
        for f in shard_dir.glob("shard_*.json"):
            f.unlink()
    shard_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(shard_dir / "manifest.json", manifest)
    shards = [(k, list(range(s, min(s + shard_size, len(files))))) for k, s in enumerate(range(0, len(files), shard_size))]
    name = lambda k: shard_dir / f"shard_{k:05d}.json"   # noqa: E731
    todo = [(k, ids) for k, ids in shards if not name(k).is_file()]
    computed = []
    if todo:
        started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(round(num_workers * num_cpus))), num_gpus=num_gpus * num_workers or None,
                         include_dashboard=False, log_to_driver=False)
            started = True
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = bool(progress)
            items = [{"shard": k, "paths": json.dumps([files[i] for i in ids]), "ids": json.dumps(ids)}
                     for k, ids in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardPredictor, fn_constructor_kwargs={"model_spec": model_spec, "threads": max(1, int(num_cpus))},
                batch_size=1, concurrency=int(num_workers), num_cpus=num_cpus, num_gpus=num_gpus or None)
            for row in ds.iter_rows():   # each shard written as it arrives: a killed run resumes
                k = int(row["shard"])
                write_json_atomic(name(k), {"results": json.loads(row["results"]), "skipped": json.loads(row["skipped"])})
                computed.append(k)
        finally:
            if started:
                ray.shutdown()
    results, skipped = [], []
    for k, _ in shards:
        part = json.loads(name(k).read_text())
        results.extend(part["results"])
        skipped.extend(part["skipped"])
    results.sort(key=lambda r: r["image_id"])   # stable: each image's people keep their order
    write_json_atomic(out_dir / "results.json", results)
    return {"results": results, "shards": len(shards), "computed": sorted(computed), "skipped": skipped}


def model_spec_from_args(args: Any) -> dict:
    """The picklable model options of a parsed ``predict`` command line (for the workers): the
    model's ``path`` (absolute; None: the shipped pretrained model), ``format``,
    ``trust_checkpoint`` and the test-time options given."""
    path = args.onnx or args.weights
    if path is not None and Path(path).exists():
        path = os.path.abspath(path)
    spec = {"path": path, "format": args.format, "trust_checkpoint": bool(args.trust_checkpoint)}
    for k, v in vars(args).items():
        if k.startswith("infer_") and v is not None:
            spec[k[len("infer_"):]] = tuple(v) if isinstance(v, list) else v
    return spec
