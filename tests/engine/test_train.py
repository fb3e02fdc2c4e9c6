"""Training engine: exact resume, NaN detection, lr schedule, and a fast overfit that decodes."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posegroup.engine import train as train_mod
from posegroup.data.coco import read_image
from posegroup.engine.checkpoint import load_checkpoint, load_model
from posegroup.engine.config import merge_config
from posegroup.engine.train import TrainingError, lr_factor, train
from tests.helpers import assert_same_run, assert_same_state, make_dataset, rng_hungry, tiny_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth"), 5, size=64)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_resume_is_exact(tiny_data, tmp_path):
    """6 steps straight == 3 steps, stop, resume 3 (weights, optimizer, step, lr), even with
    data-loader worker processes in the interrupted run and none in the straight one."""
    straight = train(tiny_config(tiny_data, tmp_path / "a"), progress=False)
    assert straight["steps"] == 6 and straight["stopped"] == "done"
    cfg = tiny_config(tiny_data, tmp_path / "b", workers=2)
    first = train(cfg, max_steps=3, progress=False)
    assert first["steps"] == 3 and first["stopped"] == "max_steps"
    second = train(cfg, resume=True, progress=False)
    assert second["start_step"] == 3 and second["steps"] == 6
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert_same_run(a, b)
    assert straight["final_loss"] == second["final_loss"]


def test_nan_loss_names_the_step(tiny_data, tmp_path, monkeypatch):
    real = train_mod.build_method_from_config

    def with_nan_at_step_4(cfg, ks):
        method = real(cfg, ks)
        calls = {"n": 0}
        loss = method.loss

        def nan_loss(preds, targets):
            calls["n"] += 1
            total, parts = loss(preds, targets)
            return (total * float("nan") if calls["n"] == 4 else total), parts

        method.loss = nan_loss
        return method

    monkeypatch.setattr(train_mod, "build_method_from_config", with_nan_at_step_4)
    cfg = tiny_config(tiny_data, tmp_path / "nan", checkpoint_every=2)
    with pytest.raises(TrainingError, match=r"at step 4 .*last good checkpoint: .*last\.pt"):
        train(cfg, progress=False)
    state = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # resuming from the last good checkpoint redoes step 3 once in the log
    monkeypatch.undo()
    assert train(cfg, resume=True, progress=False)["steps"] == 6
    steps = [json.loads(x)["step"] for x in (tmp_path / "nan" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_outputs_and_model_rebuild(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(tiny_data, out, steps=2, eval_every=1)
    cfg["data"]["val_ann"] = str(tiny_data)
    cfg["data"]["val_max_images"] = 2
    summary = train(cfg, progress=False)
    assert Path(summary["checkpoint"]).is_file()
    ev = json.loads((out / "eval_step2.json").read_text())
    assert ev["step"] == 2 and ev["num_images"] == 2 and (out / "eval_step1.json").is_file()
    # the figures are those of the saved step-2 weights, scored again from the checkpoint alone
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.predict import checkpoint_predictor, evaluate_predictor
    predictor, _, _ = checkpoint_predictor(summary["checkpoint"], "cpu")
    again = evaluate_predictor(predictor, CocoPoseDataset(tiny_data), max_images=2)
    assert again == {k: v for k, v in ev.items() if k != "step"}
    assert summary["eval"]["step"] == 2
    assert (out / "config.yaml").is_file() and any((out / "tb").iterdir())
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    model, method, config = load_model(out / "last.pt")
    assert method.name == "ae" and not model.training
    poses, scores = method.predict(model, np.zeros((64, 64, 3), np.uint8), input_size=64)
    assert poses.ndim == 3 and poses.shape[1:] == (17, 3)


def test_resume_missing_checkpoint_is_clear(tiny_data, tmp_path):
    from posegroup.engine.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="last.pt: checkpoint file not found"):
        train(tiny_config(tiny_data, tmp_path / "none"), resume=True, progress=False)


def test_lr_schedules():
    step = {"type": "step", "milestones": [10, 20], "gamma": 0.1, "warmup_steps": 0}
    assert lr_factor(0, step, 30) == 1.0 and lr_factor(10, step, 30) == pytest.approx(0.1)
    assert lr_factor(25, step, 30) == pytest.approx(0.01)
    cos = {"type": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.0}
    assert lr_factor(0, cos, 104) == pytest.approx(0.25)
    assert lr_factor(4, cos, 104) == pytest.approx(1.0)
    assert lr_factor(54, cos, 104) == pytest.approx(0.5)
    assert lr_factor(104, cos, 104) == pytest.approx(0.0)


def test_overfit_four_images_decodes(tmp_path):
    """Real AE method + tiny hourglass (1 stack) overfit 4 synthetic scenes (posegroup.data.synthetic,
    sparse, 11 people, 128 px) in ~30 s on one CPU thread; decoding the training images then
    gives AP50 1.0 and AP ~0.75 (the stride-4 grid limits the localisation of these small people)."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.data.synthetic import generate_dataset
    from posegroup.engine.predict import checkpoint_predictor, evaluate_predictor

    ann = generate_dataset(tmp_path / "data", 4, crowding="sparse", seed=0, image_size=128, workers=1,
                           progress=False)["annotation_file"]
    cfg = merge_config({
        # as the bundled ae_tiny_synthetic config: push 10x the pull, or the tags of a small model
        # collapse to one value (with pull = push = 1 the pull gradient wins at the start).
        "method": {"name": "ae", "options": {"pull_weight": 1e-3, "push_weight": 1e-2}},
        "model": {"name": "tiny", "num_stacks": 1},
        "data": {"train_ann": str(ann), "input_size": 128,
                 "augmentation": {"enabled": False, "color_jitter": False}},
        "train": {"batch_size": 4, "lr": 3e-3, "steps": 400, "workers": 0, "log_every": 50, "seed": 0,
                  "out_dir": str(tmp_path / "run"), "lr_schedule": {"type": "cosine"}},
        "test": {"input_size": 128},
    })
    summary = train(cfg, progress=False)
    assert summary["final_loss"] < 0.01
    predictor, method, _ = checkpoint_predictor(summary["checkpoint"], device="cpu")
    stats = evaluate_predictor(predictor, CocoPoseDataset(ann))
    assert stats["AP50"] > 0.9, stats
    assert stats["AP"] > 0.6, stats


@pytest.mark.slow
@pytest.mark.parametrize("steps", [4, "auto"])
def test_ddp_two_cpu_processes(tiny_data, tmp_path, steps):
    """torchrun --nproc_per_node=2 (gloo on CPU): both ranks finish, rank 0 writes the outputs.
    ``steps: auto``: the ranks agree on one sized length (else one rank would stop early and the
    other wait for it)."""
    import subprocess
    import sys
    import textwrap
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, json, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from tests.helpers import tiny_config
        from posegroup.engine import train as train_mod
        train_mod.AUTO_STEPS = (1, 3, 0.9)
        s = train_mod.train(tiny_config(Path({str(tiny_data)!r}), Path({str(tmp_path / 'run')!r}), steps={steps!r},
                                        max_minutes=0.05 + 0.01 * int(os.environ["RANK"])), progress=False)
        # each rank writes its own file: torchrun's children share one unbuffered stdout, where
        # their prints interleave piece by piece
        Path({str(tmp_path)!r}, "result_" + os.environ["RANK"] + ".json").write_text(
            json.dumps([os.environ["RANK"], str(s["steps"]), s["final_loss"], s["total_steps"]]))
    """))
    logs = tmp_path / "logs"           # each rank's stderr in its own file: a failing rank's traceback
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "--log-dir", str(logs), "--redirects", "2", str(script)],
                         capture_output=True, text=True, timeout=170)
    ranks = "\n".join(f"{p.parent.name}: {p.read_text()[-1500:]}" for p in sorted(logs.rglob("stderr.log")))
    assert out.returncode == 0, out.stderr[-1000:] + "\n" + ranks
    rows = sorted(json.loads(p.read_text()) for p in tmp_path.glob("result_*.json"))
    total = rows[0][3]
    assert total == rows[1][3] and (total == 4 if steps == 4 else total > 3), rows
    # both ranks stop at the same step: the schedule's end or, on a loaded machine, the clock (its
    # all-reduced flag stops every rank at once)
    assert [r[0] for r in rows] == ["0", "1"] and rows[0][1] == rows[1][1], out.stderr[-2000:]
    assert int(rows[0][1]) == total if steps == 4 else 3 < int(rows[0][1]) <= total, rows
    assert rows[0][2] == rows[1][2]                      # the logged loss is the mean over ranks
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == int(rows[0][1])


def test_fresh_start_does_not_clobber_a_run(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "r", steps=1)
    train(cfg, progress=False)
    with pytest.raises(TrainingError, match=r"last\.pt: a checkpoint is already there"):
        train(cfg, progress=False)
    assert train(cfg, progress=False, overwrite=True)["steps"] == 1


def test_resume_with_another_model_is_clear(tiny_data, tmp_path):
    from posegroup.engine.checkpoint import CheckpointError
    train(tiny_config(tiny_data, tmp_path / "r", steps=1), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "r", steps=2)
    cfg["model"]["base_width"] = 24
    with pytest.raises(TrainingError, match=r"last\.pt: the config differs from the checkpoint's in "
                                            r"model\.base_width \(16 -> 24\), train\.steps \(1 -> 2\);"):
        train(cfg, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"last\.pt: does not fit the configured model"):
        train(cfg, resume=True, progress=False, allow_changes=True)


def test_resume_refuses_outcome_changing_config(tiny_data, tmp_path):
    """A changed lr (or data, seed, ...) stops a resume with one line; keys that do not change
    the weights (workers, logging, checkpoint cadence, time limit, val split) may change."""
    cfg = tiny_config(tiny_data, tmp_path / "r", steps=4)
    train(cfg, max_steps=2, progress=False)
    changed = tiny_config(tiny_data, tmp_path / "r", steps=4, lr=2e-3, seed=4)
    with pytest.raises(TrainingError) as e:
        train(changed, resume=True, progress=False)
    msg = str(e.value)
    assert "train.lr (0.001 -> 0.002)" in msg and "train.seed (3 -> 4)" in msg and "--allow-changes" in msg
    assert "\n" not in msg
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 2           # nothing touched
    harmless = tiny_config(tiny_data, tmp_path / "r", steps=4, workers=1, log_every=3, checkpoint_every=7,
                           max_minutes=30, eval_every=5)
    harmless["data"]["val_max_images"] = 1
    assert train(harmless, resume=True, progress=False, max_steps=3)["steps"] == 3
    assert train(changed, resume=True, progress=False, allow_changes=True)["steps"] == 4


def test_stale_temp_files_removed_at_start(tiny_data, tmp_path):
    out = tmp_path / "r"
    cfg = tiny_config(tiny_data, out, steps=2)
    train(cfg, max_steps=1, progress=False)
    stale = out / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"x" * 1000)                                             # a killed checkpoint write
    train(cfg, resume=True, progress=False)
    assert not stale.exists() and not list(out.glob(".last.pt.*.tmp"))


def test_sigint_writes_a_checkpoint_at_the_current_step(tiny_data, tmp_path, monkeypatch):
    import os
    import signal
    real = train_mod.build_method_from_config

    def ctrl_c_during_step_3(cfg, ks):
        method = real(cfg, ks)
        loss, calls = method.loss, {"n": 0}

        def hit(preds, targets):
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return loss(preds, targets)

        method.loss = hit
        return method

    monkeypatch.setattr(train_mod, "build_method_from_config", ctrl_c_during_step_3)
    handler = signal.getsignal(signal.SIGINT)
    cfg = tiny_config(tiny_data, tmp_path / "r", steps=6, checkpoint_every=100)
    s = train(cfg, progress=False)
    assert s["stopped"] == "interrupted" and s["steps"] == 3
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 3              # not lost (next save: step 6)
    assert signal.getsignal(signal.SIGINT) is handler                         # handlers restored


_SIGTERM_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {repo!r})
from pathlib import Path
from posegroup.engine import train as train_mod
from tests.helpers import tiny_config
real = train_mod.build_method_from_config

def slow(cfg, ks):  # slow steps down (numerics untouched) so the signal lands mid-run
    method = real(cfg, ks)
    loss = method.loss
    def slow_loss(preds, targets):
        time.sleep(0.15)
        return loss(preds, targets)
    method.loss = slow_loss
    return method

train_mod.build_method_from_config = slow
s = train_mod.train(tiny_config(Path({ann!r}), Path({out!r}), steps={steps}, checkpoint_every=1000,
                                workers={workers}), progress=False)
print("RESULT", json.dumps({{"stopped": s["stopped"], "steps": s["steps"]}}), flush=True)
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_then_resume_is_exact(tiny_data, tmp_path, workers):
    """SIGTERM to a training process mid-run: it writes last.pt at the step reached and exits
    cleanly; resuming from it gives bit-identical weights to an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    steps = 16
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_SIGTERM_SCRIPT.format(repo=str(Path(__file__).resolve().parents[2]), ann=str(tiny_data),
                                             out=str(out), steps=steps, workers=workers))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    result = json.loads(stdout.split("RESULT", 1)[1])
    assert result["stopped"] == "interrupted" and 3 <= result["steps"] < steps, result
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == result["steps"]                                    # saved at the step reached
    assert not list(out.glob(".last.pt.*.tmp"))
    resumed = train(tiny_config(tiny_data, out, steps=steps, checkpoint_every=1000, workers=workers),
                    resume=True, progress=False)
    assert resumed["start_step"] == result["steps"] and resumed["steps"] == steps
    straight = train(tiny_config(tiny_data, tmp_path / "straight", steps=steps, checkpoint_every=1000),
                     progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(out / "last.pt")
    assert_same_run(a, b)
    assert straight["final_loss"] == resumed["final_loss"]


_KILL_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {repo!r})
from pathlib import Path
from posegroup.engine import train as train_mod
from tests.helpers import rng_hungry, tiny_config
hungry = rng_hungry(train_mod.build_method_from_config)

def slow(cfg, ks):  # slow steps down (numerics untouched) so the kill lands between checkpoints
    method = hungry(cfg, ks)
    loss = method.loss
    def slow_loss(preds, targets):
        time.sleep(0.3)
        return loss(preds, targets)
    method.loss = slow_loss
    return method

train_mod.build_method_from_config = slow
train_mod.train(tiny_config(Path({ann!r}), Path({out!r}), steps={steps}, checkpoint_every={every}),
                progress=False)
"""


def test_kill_between_checkpoints_then_resume_is_exact_with_global_rngs(tiny_data, tmp_path, monkeypatch):
    """SIGKILL (no chance to save) two steps after the step-4 checkpoint of a run whose loss
    draws from the torch, numpy and python global RNGs every step (dropout, random factors;
    random augmentation on): resuming from step 4 ends with every tensor of the checkpoint --
    weights, optimizer moments, scheduler, RNG states -- equal to an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time
    steps, every = 12, 4
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(Path(__file__).resolve().parents[2]), ann=str(tiny_data),
                                          out=str(out), steps=steps, every=every))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= every + 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    logged = len(log.read_text().splitlines())
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == every < logged < 2 * every, (state["step"], logged)   # killed between checkpoints
    assert augmentation_enabled(state["config"])
    other = tmp_path / "no_rng"
    shutil.copytree(out, other)

    monkeypatch.setattr(train_mod, "build_method_from_config", rng_hungry(train_mod.build_method_from_config))
    resumed = train(tiny_config(tiny_data, out, steps=steps, checkpoint_every=every), resume=True, progress=False)
    assert resumed["start_step"] == every and resumed["steps"] == steps
    straight = train(tiny_config(tiny_data, tmp_path / "straight", steps=steps, checkpoint_every=every),
                     progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(out / "last.pt")
    assert_same_run(a, b)
    assert straight["final_loss"] == resumed["final_loss"]
    # the test can fail: the same resume with the global RNGs left as they are differs
    monkeypatch.setattr(train_mod, "set_rng_state", lambda st: None)
    train(tiny_config(tiny_data, other, steps=steps, checkpoint_every=every), resume=True, progress=False)
    c = load_checkpoint(other / "last.pt")
    assert not all(torch.equal(v, c["model"][k]) for k, v in a["model"].items())


def augmentation_enabled(cfg: dict) -> bool:
    aug = cfg["data"]["augmentation"]
    return bool(aug["enabled"]) and aug["scale_range"][0] < aug["scale_range"][1] and aug["max_rotation"] > 0


def test_overwrite_replaces_the_run_as_a_whole(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "r"
    cfg = tiny_config(tiny_data, out, steps=2, eval_every=1)
    cfg["data"]["val_ann"] = str(tiny_data)
    cfg["data"]["val_max_images"] = 1
    train(cfg, progress=False)
    old_ckpt = (out / "last.pt").read_bytes()
    assert (out / "eval_step1.json").is_file()
    # a replacement that fails before its first checkpoint: the old run waits aside, no mix
    real = train_mod.build_method_from_config

    def nan_at_once(c, ks):
        method = real(c, ks)
        loss = method.loss
        method.loss = lambda p, t: (lambda tot, parts: (tot * float("nan"), parts))(*loss(p, t))
        return method

    monkeypatch.setattr(train_mod, "build_method_from_config", nan_at_once)
    new_cfg = tiny_config(tiny_data, out, steps=3)
    with pytest.raises(TrainingError, match="no checkpoint written yet"):
        train(new_cfg, progress=False, overwrite=True)
    aside = out / train_mod.REPLACED_DIR
    assert (aside / "last.pt").read_bytes() == old_ckpt and (aside / "eval_step2.json").is_file()
    assert not (out / "last.pt").exists() and not list(out.glob("eval_step*.json"))
    monkeypatch.undo()
    train(new_cfg, progress=False, overwrite=True)
    assert not aside.exists()                                                  # gone after the new checkpoint
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last.pt", "log.jsonl", "tb"]
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert "steps: 3" in (out / "config.yaml").read_text()
    assert load_checkpoint(out / "last.pt")["step"] == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_is_one_line_with_workers(tmp_path, workers):
    from posegroup.data.coco import DatasetError
    ann = make_dataset(tmp_path / "data", 3, size=64)
    (tmp_path / "data" / "img001.png").write_bytes(b"not a png")
    cfg = tiny_config(ann, tmp_path / "r", steps=4, workers=workers, batch_size=3)
    with pytest.raises(DatasetError) as e:
        train(cfg, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "img001.png" in msg and "DataLoader" not in msg, msg


def test_output_stride_2_trains_and_a_mismatch_is_refused(tiny_data, tmp_path):
    """model.output_stride 2 needs data.stride 2 (targets on the network's grid): a mismatch is one
    error naming both keys, before anything is written; matched, it trains, and the model loaded
    from its checkpoint predicts people inside the image."""
    out = tmp_path / "run"
    cfg = tiny_config(tiny_data, out, steps=2)
    cfg["model"]["output_stride"] = 2
    with pytest.raises(TrainingError, match=r"data\.stride is 4 but the network predicts at stride 2 "
                                            r"\(model\.output_stride\); set data\.stride: 2"):
        train(cfg, progress=False)
    assert not (out / "last.pt").exists()
    cfg["data"]["stride"] = 2
    assert train(cfg, progress=False)["steps"] == 2
    model, method, _ = load_model(out / "last.pt")
    assert model.stride == 2
    img = read_image(tiny_data.parent / json.loads(tiny_data.read_text())["images"][0]["file_name"])
    poses, _ = method.predict(model, img, input_size=64, detection_threshold=-1.0)
    assert poses.shape[0] >= 1 and (poses[..., :2] >= 0).all() and (poses[..., 0] <= img.shape[1]).all()


def _adam_bound(lrs, betas=(0.9, 0.999)) -> float:
    """Largest change Adam (torch's, weight decay or not) can make to one weight in the steps of
    learning rates ``lrs``, whatever the gradients: step t moves it by lr_t * |m_t'| / (sqrt(v_t') + eps)
    with the bias-corrected moments m_t' = (1-b1) sum_i b1^(t-i) g_i / (1-b1^t) and v_t' = (1-b2)
    sum_i b2^(t-i) g_i^2 / (1-b2^t); Cauchy-Schwarz on m_t gives |m_t'| / sqrt(v_t') <= c_t =
    (1-b1)/(1-b1^t) * sqrt((1-b2^t)/(1-b2) * sum_{j<t} (b1^2/b2)^j) (c_1 = 1: the first step is
    lr * sign(g)). Two runs whose gradients differ (even in sign) are apart by at most 2 sum lr_t c_t."""
    b1, b2 = betas
    total = 0.0
    for t, lr in enumerate(lrs, start=1):
        c = (1 - b1) / (1 - b1 ** t) * math.sqrt((1 - b2 ** t) / (1 - b2) * sum((b1 * b1 / b2) ** j for j in range(t)))
        total += lr * c
    return 2 * total


def test_channels_last_resume_is_exact_and_matches_nchw(tiny_data, tmp_path):
    """``train.channels_last``: weights and images NHWC. 6 steps straight == 3 + resume 3 bit for
    bit (at the machine's training precision: float32, or bfloat16 autocast on a CPU with AMX);
    against NCHW only float32 summation order differs (the kernels do), so the two agree within
    bounds derived from that and from Adam's step size; the checkpoint loads into a plain (NCHW)
    model that predicts the same as the NHWC one."""
    train(tiny_config(tiny_data, tmp_path / "nchw"), progress=False)
    straight = train(tiny_config(tiny_data, tmp_path / "a", channels_last=True), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", channels_last=True)
    train(cfg, max_steps=3, progress=False)
    resumed = train(cfg, resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert_same_run(a, b)
    assert straight["final_loss"] == resumed["final_loss"]
    conv = next(v for k, v in a["model"].items() if v.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    # After 6 steps the two layouts' gradients differ by rounding, which can flip a tiny one's
    # sign; Adam moves a weight by about lr whatever its gradient's size, so the weights are only
    # bounded by Adam's largest possible steps (_adam_bound: 0.0100 for these lrs; the BN
    # running statistics, averages of activations, have no such bound and are compared below).
    ref = load_checkpoint(tmp_path / "nchw" / "last.pt")["model"]
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    bound = _adam_bound(lrs)
    model, method, _ = load_model(tmp_path / "a" / "last.pt")
    params = [k for k, _ in model.named_parameters()]
    for key in params:          # rtol: one float32 rounding of the weight per step
        torch.testing.assert_close(a["model"][key], ref[key], rtol=len(lrs) * 2.0 ** -24, atol=bound, msg=key)

    # One float32 step from the same weights on the same batch: the forward sums differ only in
    # order. Any order of a float32 sum of k terms is within k*u (u = 2^-24) of the summed
    # magnitudes; an activation has passed through at most every convolution (sum of fan-ins F)
    # and a BN statistic sums n = batch * H * W <= 2 * 32 * 32 of them, so the step-1 loss (a
    # sum of non-negative terms) is within (F + n) * u relatively and the running statistics
    # (0.1 x the batch mean / variance, whose summands are below 4 here) within 0.1 * 4 * (F + n) * u.
    fp32 = {}
    for fmt in (False, True):
        out = tmp_path / f"fp32_{fmt}"
        train(tiny_config(tiny_data, out, channels_last=fmt, amp=False), max_steps=1, progress=False)
        fp32[fmt] = (load_checkpoint(out / "last.pt")["model"], json.loads((out / "log.jsonl").read_text())["loss"])
    (m0, loss0), (m1, loss1) = fp32[False], fp32[True]
    fan_in = sum(v[0].numel() for v in m0.values() if v.ndim == 4)
    order = (fan_in + 2 * 32 * 32) * 2.0 ** -24                       # 2.6e-4 for the tiny net
    assert loss1 == pytest.approx(loss0, rel=order)
    for key in (k for k in m0 if k.endswith(("running_mean", "running_var"))):
        torch.testing.assert_close(m1[key], m0[key], rtol=0, atol=0.1 * 4 * order, msg=key)
    for key in params:
        torch.testing.assert_close(m1[key], m0[key], rtol=2.0 ** -24, atol=_adam_bound(lrs[:1]), msg=key)

    assert all(p.is_contiguous() for p in model.parameters())
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    plain = method.predict(model, image, input_size=64)
    model.to(memory_format=torch.channels_last)   # float32, same weights: within F * u of maps below 8 (< 1e-3)
    np.testing.assert_allclose(method.predict(model, image, input_size=64)[0], plain[0], atol=1e-3)


def test_channels_last_must_be_a_switch(tiny_data, tmp_path):
    from posegroup.engine.config import ConfigError
    with pytest.raises(ConfigError, match=r"'train.channels_last' must be true or false"):
        tiny_config(tiny_data, tmp_path, channels_last="yes")


def test_head_split_trains_and_a_bad_split_is_one_config_line(tiny_data, tmp_path):
    """model.head_split: a split that does not cover the method's channels is one ConfigError naming
    the file and the model section, before anything is written; ``outputs`` (AE: K heatmaps, K
    tags) trains and its checkpoint rebuilds the split network."""
    from posegroup.engine.config import ConfigError
    out = tmp_path / "run"
    cfg = tiny_config(tiny_data, out, steps=2)
    cfg["model"]["head_split"] = [3, 3]
    with pytest.raises(ConfigError, match=r"model: head_split \[3, 3\] must be channel counts"):
        train(cfg, progress=False)
    assert not (out / "last.pt").exists()
    k = len(json.loads(tiny_data.read_text())["categories"][0]["keypoints"])
    cfg["model"]["head_split"] = "outputs"                  # AE's [K heatmaps, K tags], at training and at load
    assert train(cfg, progress=False)["steps"] == 2
    model, _, _ = load_model(out / "last.pt")
    assert model.head_split == [k, k] and model.branches is not None


def _slowed(real, seconds: float):
    """``build_method_from_config`` whose loss sleeps ``seconds`` (numerics untouched): steps of a
    known, steady pace."""
    import time

    def build(cfg, ks):
        method = real(cfg, ks)
        loss = method.loss

        def slow_loss(preds, targets):
            time.sleep(seconds)
            return loss(preds, targets)

        method.loss = slow_loss
        return method

    return build


def test_steps_auto_ends_the_cosine_within_the_minutes(tiny_data, tmp_path, monkeypatch, capsys):
    """``train.steps: auto``: the run times its first steps and sizes the cosine so that it ends,
    at its floor, inside ``max_minutes`` (without the sizing it would run until the clock stops
    it, with the lr still at its peak). The progress bar has no total until the sizing, then
    the sized one."""
    monkeypatch.setattr(train_mod, "AUTO_STEPS", (1, 4, 0.85))
    monkeypatch.setattr(train_mod, "build_method_from_config", _slowed(train_mod.build_method_from_config, 0.1))
    cfg = tiny_config(tiny_data, tmp_path / "auto", steps="auto", max_minutes=0.1, log_every=1,
                      lr_schedule={"type": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.1})
    s = train(cfg, progress=True)
    assert s["stopped"] == "done" and s["steps"] == s["total_steps"]
    assert s["minutes"] < 0.1
    bar = capsys.readouterr().err
    assert str(sys.maxsize) not in bar and f"{s['total_steps']}/{s['total_steps']}" in bar
    # each step takes > 0.1 s, so at most 60 fit into 6 s; a sizing that ignored the pace would not stop "done"
    assert 15 <= s["total_steps"] <= 60, s["total_steps"]
    lines = [json.loads(x) for x in (tmp_path / "auto" / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == s["total_steps"]
    assert lines[-1]["lr"] == pytest.approx(1e-4)               # the cosine's floor: lr 1e-3 x 0.1
    assert lines[len(lines) // 2]["lr"] > 3e-4                     # and it got there gradually
    assert load_checkpoint(tmp_path / "auto" / "last.pt")["total_steps"] == s["total_steps"]


def test_steps_auto_resume_keeps_the_sized_schedule(tiny_data, tmp_path, monkeypatch):
    """A resumed ``steps: auto`` run continues the length sized when it began (whatever its own
    minutes), and gives the weights of a run configured with that length from the start."""
    monkeypatch.setattr(train_mod, "AUTO_STEPS", (1, 3, 0.9))
    sched = {"type": "cosine", "warmup_steps": 3, "min_lr_ratio": 0.05}   # warm-up covers the timed steps
    cfg = tiny_config(tiny_data, tmp_path / "auto", steps="auto", max_minutes=0.04, lr_schedule=sched)
    first = train(cfg, max_steps=5, progress=False)
    total = first["total_steps"]
    assert first["stopped"] == "max_steps" and first["steps"] == 5 and total is not None and total > 5
    second = train(cfg, resume=True, max_minutes=5.0, progress=False)    # more minutes: same schedule
    assert second["total_steps"] == total and second["steps"] == total and second["stopped"] == "done"
    train(tiny_config(tiny_data, tmp_path / "fixed", steps=total, lr_schedule=sched), progress=False)
    assert_same_run(load_checkpoint(tmp_path / "auto" / "last.pt"), load_checkpoint(tmp_path / "fixed" / "last.pt"))


def test_steps_auto_needs_minutes(tiny_data, tmp_path):
    from posegroup.engine.config import ConfigError
    with pytest.raises(ConfigError, match=r"'train\.steps' is auto, .*no max_minutes is set"):
        train(tiny_config(tiny_data, tmp_path / "a", steps="auto"), progress=False)
    assert not (tmp_path / "a").exists()


def test_steps_auto_sizes_when_the_call_ends_before_its_timing_window(tiny_data, tmp_path, monkeypatch):
    """A call whose clock runs out before the timing window closes (a slow stage trained in short
    chunks) still sizes the schedule, from the steps it has: the next call continues it."""
    monkeypatch.setattr(train_mod, "AUTO_STEPS", (1, 10 ** 6, 0.9))
    monkeypatch.setattr(train_mod, "build_method_from_config", _slowed(train_mod.build_method_from_config, 0.05))
    cfg = tiny_config(tiny_data, tmp_path / "a", steps="auto", lr_schedule={"type": "cosine", "warmup_steps": 1})
    s = train(cfg, max_minutes=0.02, schedule_minutes=0.08, progress=False)
    assert s["stopped"] == "max_minutes" and s["total_steps"] is not None, s
    assert s["total_steps"] >= 2 * s["steps"], s                   # the rest of 0.08 min, not of 0.02
    assert load_checkpoint(tmp_path / "a" / "last.pt")["total_steps"] == s["total_steps"]


def test_ema_averages_the_trained_weights_and_is_what_evaluates(tiny_data, tmp_path, monkeypatch):
    """``train.ema``: training itself is unchanged (``train_model`` equals a run without it, bit
    for bit); ``model`` is the running average, recomputed here by hand from the plain run's
    weights after each step (read back step by step through exact resumes), with the warm-up
    d = min(decay, (1 + n) / (10 + n)); the evaluation scores the average."""
    plain_cfg = tiny_config(tiny_data, tmp_path / "plain", steps=4)
    seen = [load_checkpoint(Path(train(plain_cfg, max_steps=0, progress=False)["checkpoint"]))["model"]]
    for n in range(1, 5):
        train(plain_cfg, resume=True, max_steps=n, progress=False)
        seen.append(load_checkpoint(tmp_path / "plain" / "last.pt")["model"])
    evaluated = {}
    monkeypatch.setattr(train_mod._Evaluator, "__call__",
                        lambda self, net, step: evaluated.update({k: v.clone() for k, v in net.state_dict().items()})
                        or {"AP": 0.0, "step": step})
    cfg = tiny_config(tiny_data, tmp_path / "ema", steps=4, ema=0.2)
    cfg["data"]["val_ann"] = str(tiny_data)
    train(cfg, progress=False)
    state = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert_same_state(state["train_model"], seen[4], "train_model")
    expected = {k: v.double() if v.is_floating_point() else v for k, v in seen[0].items()}
    for n in range(1, 5):
        d = min(0.2, (1 + n) / (10 + n))
        for k, w in seen[n].items():
            expected[k] = d * expected[k] + (1 - d) * w.double() if w.is_floating_point() else w
    for k, v in state["model"].items():   # float32 EMA vs float64: 4 updates of 2 roundings each, <= 8 * 2^-24 = 5e-7
        assert torch.allclose(v.double(), expected[k], rtol=1e-5, atol=1e-6) if v.is_floating_point() \
            else torch.equal(v, expected[k]), k
    differs = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.equal(v, seen[4][k])]
    assert differs                                                  # the average is not the last weights
    assert_same_state(evaluated, state["model"], "evaluated")


def test_ema_resume_is_exact(tiny_data, tmp_path):
    straight = tiny_config(tiny_data, tmp_path / "a", ema=0.9)
    train(straight, progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", ema=0.9)
    train(cfg, max_steps=3, progress=False)
    train(cfg, resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert "train_model" in a and a["step"] == 6
    assert_same_run(a, b)
    model, _, _ = load_model(tmp_path / "b" / "last.pt")           # inference loads the average
    assert_same_state({k: v for k, v in model.state_dict().items()}, b["model"], "loaded")


def test_validation_reports_the_method_figures(tiny_data):
    """With its method, the training-time validation carries the figures ``evaluate`` prints for
    it: a predictor that always returns three people is off by |3 - true people| per image."""
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.predict import evaluate_predictor
    from posegroup.methods import build_method
    from posegroup.skeleton import COCO17
    people = np.zeros((3, 17, 3), np.float32)
    people[:, :, :2], people[:, :, 2] = 20.0, 0.9
    run = lambda image: (people, np.full(3, 0.9, np.float32))        # noqa: E731
    ds = CocoPoseDataset(tiny_data)
    gt = json.loads(Path(tiny_data).read_text())
    true = [sum(a["image_id"] == im["id"] for a in gt["annotations"]) for im in gt["images"][:4]]
    stats = evaluate_predictor(run, ds, max_images=4, method=build_method("recurrent", COCO17))
    assert stats["count_error"] == pytest.approx(np.mean([abs(3 - t) for t in true]))
    assert stats["people_returned"] == 12 and stats["people_true"] == sum(true)
    assert "count_error" not in evaluate_predictor(run, ds, max_images=4)
