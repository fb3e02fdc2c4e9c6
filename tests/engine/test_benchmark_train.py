"""Train benchmark: the AE grouping ceiling decodes true heatmaps perfectly; a tiny smoke run."""
from __future__ import annotations

import json

import pytest
import torch

from posegroup.data.coco import CocoPoseDataset
from posegroup.engine.benchmark import benchmark_train
from posegroup.engine.evaluate import evaluate_results
from posegroup.engine.predict import to_coco_results
from posegroup.methods import build_method
from posegroup.methods.ae import AEOutputs, targets
from posegroup.skeleton import COCO17
from tests.helpers import make_dataset, tiny_config


def test_true_id_ceiling_on_perfect_heatmaps(tmp_path, monkeypatch):
    ann = make_dataset(tmp_path / "d", 3, size=128, people=(2, 3))
    ds = CocoPoseDataset(ann)
    method = build_method("ae", COCO17)
    stride = 4

    def perfect(model, image, settings=None, **kw):   # true Gaussian heatmaps on the stride-4 grid; tags useless
        kp = current["kp"].copy()
        kp[..., :2] /= stride
        heat = targets.gaussian_heatmaps(kp, (32, 32), sigma=2.0)
        return AEOutputs(torch.from_numpy(heat), torch.zeros(17, 32, 32, 1), 1.0, stride)

    monkeypatch.setattr(method, "network_outputs", perfect)
    current, results = {}, []
    for image_id in ds.image_ids:
        current["kp"] = ds.annotations(image_id)["keypoints"]
        poses, scores = method.predict_true_ids(None, ds.load_image(image_id), current["kp"])
        assert len(poses) >= len(current["kp"])
        results.extend(to_coco_results(image_id, poses, scores))
    ap = evaluate_results(str(ann), results)["AP"]
    print("ceiling AP", ap)
    assert ap > 0.9


def test_benchmark_train_smoke(tmp_path):
    torch.set_num_threads(1)
    ann = make_dataset(tmp_path / "d", 4, size=64)
    cfg = tiny_config(ann, tmp_path / "unused", steps=4)
    out = tmp_path / "bench"
    r = benchmark_train(cfg, minutes=0.05, eval_every_minutes=0.02, splits={"sparse": str(ann)}, out_dir=out,
                        max_images=2, progress=False)
    assert r["rows"] and set(r["rows"][0]) == {"minutes", "step", "loss", "sparse_AP", "sparse_true_ids_AP"}
    assert r["rows"][-1]["step"] <= 4
    saved = json.loads((out / "benchmark_train.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(r["rows"]))
    with pytest.raises(ValueError, match="missing.json: split 'x' annotation file not found"):
        benchmark_train(cfg, minutes=0.01, splits={"x": str(tmp_path / "missing.json")}, out_dir=out)


def test_benchmark_step_times_both_memory_formats(tmp_path, capsys):
    """Both formats timed on the config's own batch, NCHW the baseline (speed-up 1 by
    definition, the other its ms ratio); the table is printed; nothing is written."""
    from posegroup.engine.benchmark import benchmark_step
    ann = make_dataset(tmp_path / "d", 2, size=64)
    cfg = tiny_config(ann, tmp_path / "never_written")
    r = benchmark_step(cfg, repeats=2, steps=1)
    assert [row["memory_format"] for row in r["rows"]] == ["contiguous (NCHW)", "channels_last (NHWC)"]
    base, other = r["rows"]
    assert base["speedup"] == 1.0 and base["ms_per_step"] > 0 and other["ms_per_step"] > 0
    assert other["speedup"] == pytest.approx(base["ms_per_step"] / other["ms_per_step"])
    assert r["batch_size"] == 2 and r["input_size"] == 64
    out = capsys.readouterr().out
    assert "| channels_last (NHWC) |" in out and "batch 2, input 64 px" in out
    assert not (tmp_path / "never_written").exists()


def test_benchmark_step_times_the_ema_update(tmp_path, monkeypatch):
    """With ``train.ema`` every timed step (and each warm-up one) also updates the average."""
    from posegroup.engine import train as train_mod
    from posegroup.engine.benchmark import benchmark_step
    calls = []
    real = train_mod.update_ema
    monkeypatch.setattr(train_mod, "update_ema", lambda *a: calls.append(a[2]) or real(*a))
    ann = make_dataset(tmp_path / "d", 2, size=64)
    benchmark_step(tiny_config(ann, tmp_path / "never_written", ema=0.99), repeats=2, steps=1)
    assert calls == [0.99] * 8                                    # 2 rounds x 2 formats x (1 warm-up + 1)
    calls.clear()
    benchmark_step(tiny_config(ann, tmp_path / "never_written"), repeats=1, steps=1)
    assert calls == []


def test_benchmark_train_sizes_an_auto_schedule_to_its_whole_budget(tmp_path, monkeypatch):
    """``train.steps: auto`` under benchmark train: the schedule fills all ``minutes``, not the
    first evaluation chunk (which would end the cosine, and the benchmark, after one chunk)."""
    from posegroup.engine import train as train_mod
    from posegroup.engine.checkpoint import load_checkpoint
    torch.set_num_threads(1)
    monkeypatch.setattr(train_mod, "AUTO_STEPS", (1, 3, 0.9))
    ann = make_dataset(tmp_path / "d", 4, size=64)
    cfg = tiny_config(ann, tmp_path / "unused", steps="auto")
    out = tmp_path / "bench"
    r = benchmark_train(cfg, minutes=0.12, eval_every_minutes=0.03, splits={"sparse": str(ann)}, out_dir=out,
                        max_images=1, progress=False)
    total = load_checkpoint(out / "train" / "last.pt")["total_steps"]
    assert len(r["rows"]) >= 3, r["rows"]
    assert total > 2 * r["rows"][0]["step"], (total, r["rows"])
