"""Safe by default: no verb overwrites a user's file without --overwrite, none writes
over its own inputs, checkpoints that carry code are refused, and errors stay one line."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from posegroup.cli import main
from tests.helpers import make_dataset, one_line_error, one_step_checkpoint, stick_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return stick_dataset(tmp_path_factory, "safety_data")


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory) -> Path:
    return one_step_checkpoint(data, tmp_path_factory, "safety_run")


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---- predict -----------------------------------------------------------------------------

def test_predict_refuses_an_earlier_prediction_and_overwrite_replaces_it(data, ckpt, tmp_path, capsys):
    out = tmp_path / "pred"
    argv = ["--quiet", "predict", str(data.parent), "--weights", str(ckpt), "--out", str(out)]
    assert main(argv) == 0
    first = _snapshot(out)
    assert "results.json" in first and "img000.png" in first
    capsys.readouterr()
    assert main(argv) == 2
    one_line_error(capsys, "results.json: already exists", "--overwrite")
    assert _snapshot(out) == first                                            # nothing touched
    (out / "zz_stale.png").write_bytes(first["img000.png"])                   # a picture of an older run,
    listed = json.loads((out / ".posegroup_pictures.json").read_text())       # which it listed
    (out / ".posegroup_pictures.json").write_text(json.dumps(listed + ["zz_stale.png"]))
    (out / "holiday.png").write_bytes(first["img000.png"])                    # the user's own picture
    assert main(argv + ["--overwrite"]) == 0
    assert sorted(_snapshot(out)) == sorted([*first, "holiday.png"])          # replaced as a whole, and
    assert (out / "holiday.png").read_bytes() == first["img000.png"]          # only what predict wrote


def test_predict_refuses_a_picture_over_an_existing_file(data, ckpt, tmp_path, capsys):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "img001.png").write_bytes(b"the user's own picture")
    assert main(["--quiet", "predict", str(data.parent), "--weights", str(ckpt), "--out", str(out)]) == 2
    one_line_error(capsys, "img001.png: already exists")
    assert (out / "img001.png").read_bytes() == b"the user's own picture"
    assert not (out / "results.json").exists()


def test_predict_never_writes_over_its_input_images(data, ckpt, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in data.parent.glob("*.png"):
        (folder / p.name).write_bytes(p.read_bytes())
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"]):
        assert main(["--quiet", "predict", str(folder), "--weights", str(ckpt), "--out", str(folder)] + extra) == 2
        one_line_error(capsys, "is an input folder")
        # an input file inside --out: its picture would land on it
        assert main(["--quiet", "predict", str(folder / "img000.png"), "--weights", str(ckpt),
                     "--out", str(folder)] + extra) == 2
        one_line_error(capsys, "img000.png: is an input of this prediction")
    assert _snapshot(folder) == before


def test_predict_skips_unreadable_files_and_reports_them(data, ckpt, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted(data.parent.glob("*.png"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "pred"
    assert main(["--quiet", "predict", str(folder), "--weights", str(ckpt), "--out", str(out), "--no-draw"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable" in captured.out and "broken.png" in captured.out
    assert "broken.png: unreadable or corrupt image" in captured.err
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} <= {0, 2}                          # broken.png is index 0
    # every file unreadable: an error, one line
    only_bad = tmp_path / "bad_only"
    only_bad.mkdir()
    (only_bad / "a.png").write_bytes(b"x")
    assert main(["--quiet", "predict", str(only_bad), "--weights", str(ckpt), "--out", str(tmp_path / "p2")]) == 2
    one_line_error(capsys, "a.png: unreadable or corrupt image", "no image could be read")


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_checkpoint_with_code_is_refused_by_every_reader(data, ckpt, tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pt"
    state = torch.load(ckpt, weights_only=True)
    state["extra"] = _Payload(marker)
    torch.save(state, evil)
    img = str(sorted(data.parent.glob("*.png"))[0])
    cfg_file = tmp_path / "c.yaml"
    cfg = tiny_config(data, tmp_path / "run", steps=2)
    cfg_file.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}))
    for argv in (["predict", img, "--weights", str(evil), "--out", str(tmp_path / "p")],
                 ["evaluate", "--gt", str(data), "--weights", str(evil)],
                 ["export", "--weights", str(evil), "--out", str(tmp_path / "m.onnx")],
                 ["train", str(cfg_file), "--resume", str(evil)]):
        assert main(["--quiet"] + argv) == 2, argv
        one_line_error(capsys, "evil.pt: refused", "--trust-checkpoint")
    assert not marker.exists()


# ---- export ------------------------------------------------------------------------------

def test_export_never_overwrites_without_overwrite_and_never_a_checkpoint(ckpt, tmp_path, capsys):
    before = ckpt.read_bytes()
    for out, extra, needle in ((ckpt, ["--overwrite"], "is the checkpoint being exported"),
                               (tmp_path / "other.pt", [], "must not be named like a checkpoint"),
                               (tmp_path, ["--overwrite"], "is a folder")):
        assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(out)] + extra) == 2
        one_line_error(capsys, needle)
    assert ckpt.read_bytes() == before
    target = tmp_path / "model.onnx"
    target.write_bytes(b"someone's model")
    assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(target)]) == 2
    one_line_error(capsys, "model.onnx: already exists", "--overwrite")
    assert target.read_bytes() == b"someone's model"
    assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(target), "--overwrite"]) == 2
    one_line_error(capsys, "model.onnx: exists and is not an ONNX model")   # --overwrite replaces an ONNX file only
    assert target.read_bytes() == b"someone's model"
    target.unlink()
    assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(target)]) == 0
    assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(target), "--overwrite"]) == 0
    import onnx
    onnx.checker.check_model(onnx.load(str(target)))
    assert not list(tmp_path.glob(".model.onnx.*.tmp"))


# ---- evaluate --stats --------------------------------------------------------------------

def test_evaluate_stats_refuses_an_existing_file(data, tmp_path, capsys):
    from posegroup.engine.evaluate import gt_as_results
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(data)))
    res_before = res.read_bytes()
    stats = tmp_path / "stats.json"
    stats.write_text("my notes")
    base = ["--quiet", "evaluate", "--gt", str(data), "--results", str(res)]
    assert main(base + ["--stats", str(stats)]) == 2
    one_line_error(capsys, "stats.json: already exists", "--overwrite")
    assert stats.read_text() == "my notes"
    for target in (res, data):                                                # its own inputs: never
        assert main(base + ["--stats", str(target), "--overwrite"]) == 2
        one_line_error(capsys, "is an input of this evaluation")
    assert res.read_bytes() == res_before
    assert main(base + ["--stats", str(stats), "--overwrite"]) == 2                 # not a stats json
    one_line_error(capsys, "stats.json: exists and is not an evaluate --stats json")
    stats.write_text('{"AP": 0.5}')                                                # an earlier evaluation's
    assert main(base + ["--stats", str(stats), "--overwrite"]) == 0
    assert json.loads(stats.read_text())["AP"] == pytest.approx(1.0)
    fresh = tmp_path / "sub" / "new.json"
    assert main(base + ["--stats", str(fresh)]) == 0 and fresh.is_file()


# ---- synth -------------------------------------------------------------------------------

def test_synth_refuses_a_non_empty_folder_and_overwrite_replaces_the_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["--quiet", "synth", "--out", str(out), "--size", "64", "--workers", "1"]
    assert main(argv + ["--images", "5"]) == 0
    (out / "README.txt").write_text("mine")
    capsys.readouterr()
    assert main(argv + ["--images", "3"]) == 2
    one_line_error(capsys, "folder is not empty", "--overwrite")
    assert len(list((out / "images").glob("*.jpg"))) == 5
    # --poses pointing at the dataset that would be replaced is refused
    assert main(argv + ["--images", "3", "--overwrite", "--poses", str(out / "annotations.json")]) == 2
    one_line_error(capsys, "--poses is a file of the dataset")
    assert main(argv + ["--images", "3", "--overwrite"]) == 0
    assert len(list((out / "images").glob("*.jpg"))) == 3                     # no stale images
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 3
    assert (out / "README.txt").read_text() == "mine"                         # not ours: kept


# ---- demo --------------------------------------------------------------------------------

def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["--quiet", "demo", "--out", str(out), "--train", "--steps", "1", "--images", "4"]) == 2
    one_line_error(capsys, "already exists and is not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


# ---- train -------------------------------------------------------------------------------

def _config_file(data: Path, folder: Path, **train_over) -> Path:
    cfg = tiny_config(data, folder / "run", **train_over)
    f = folder / "c.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}))
    return f


def test_train_refusals_and_overwrite(data, tmp_path, capsys):
    cfg = _config_file(data, tmp_path, steps=2)
    assert main(["--quiet", "train", str(cfg)]) == 0
    run = tmp_path / "run"
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["--quiet", "train", str(cfg)]) == 2
    one_line_error(capsys, "last.pt: a checkpoint is already there")
    assert _snapshot(run) == before
    assert main(["--quiet", "train", str(cfg), "--resume", "--overwrite"]) == 2
    one_line_error(capsys, "not both")
    assert main(["--quiet", "train", str(cfg), "--overwrite", "--max-steps", "1"]) == 0
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1]
    assert not (run / ".replaced_run").exists()


def test_train_resume_with_changed_config_stops(data, tmp_path, capsys):
    cfg = _config_file(data, tmp_path, steps=3)
    assert main(["--quiet", "train", str(cfg), "--max-steps", "1"]) == 0
    _config_file(data, tmp_path, steps=3, lr=5e-3)
    capsys.readouterr()
    assert main(["--quiet", "train", str(cfg), "--resume"]) == 2
    one_line_error(capsys, "train.lr (0.001 -> 0.005)", "--allow-changes")
    assert main(["--quiet", "train", str(cfg), "--resume", "--allow-changes"]) == 0


def test_train_worker_error_is_one_line(tmp_path, capsys):
    ann = make_dataset(tmp_path / "d", 3, size=64)
    (tmp_path / "d" / "img002.png").write_bytes(b"\x89PNG broken")
    cfg = _config_file(ann, tmp_path, steps=3, workers=2, batch_size=3)
    assert main(["--quiet", "train", str(cfg)]) == 2
    one_line_error(capsys, "img002.png: unreadable or corrupt image")


def test_train_interrupted_writes_checkpoint_and_exits_130(data, tmp_path, capsys, monkeypatch):
    import signal

    from posegroup.engine import train as train_mod
    from posegroup.engine.checkpoint import load_checkpoint
    real = train_mod.build_method_from_config

    def ctrl_c_in_step_2(cfg, ks):
        method = real(cfg, ks)
        loss, calls = method.loss, {"n": 0}

        def hit(preds, targets):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return loss(preds, targets)

        method.loss = hit
        return method

    monkeypatch.setattr(train_mod, "build_method_from_config", ctrl_c_in_step_2)
    cfg = _config_file(data, tmp_path, steps=5, checkpoint_every=100)
    assert main(["--quiet", "train", str(cfg)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("posegroup: interrupted at step 2") and "--resume" in err and "\n" not in err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    monkeypatch.undo()
    assert main(["--quiet", "train", str(cfg), "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 5
