"""Odd input and hostile files: each refused in one line naming the file, flag or key, or handled
and said; ``--overwrite`` replaces only what the verb itself wrote; writes that fail (read-only
folder, full disk) end in one line with the earlier outputs intact; sizes have bounds."""
from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from posegroup.cli import main

from tests.helpers import one_line_error, one_step_checkpoint, stick_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return stick_dataset(tmp_path_factory, "robust_data")


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory) -> Path:
    return one_step_checkpoint(data, tmp_path_factory, "robust_run")


def _predict(*args) -> list[str]:
    return ["--quiet", "predict", *map(str, args)]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels (its data cut short)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


# ---- --overwrite replaces only what predict wrote ------------------------------------------

def test_predict_overwrite_never_writes_through_a_link_nor_over_another_kind(data, ckpt, tmp_path, capsys):
    out = tmp_path / "pred"
    argv = _predict(data.parent / "img000.png", "--weights", ckpt, "--out", out)
    assert main(argv) == 0
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"precious")
    (out / "img000.png").unlink()
    (out / "img000.png").symlink_to(elsewhere)
    capsys.readouterr()
    assert main(argv + ["--overwrite"]) == 2
    one_line_error(capsys, "img000.png: is a symbolic link")
    assert elsewhere.read_bytes() == b"precious"
    (out / "img000.png").unlink()
    (out / "results.json").write_text('{"a": "json of another kind"}')
    assert main(argv + ["--overwrite"]) == 2
    one_line_error(capsys, "results.json: exists and is not a results list")
    assert json.loads((out / "results.json").read_text()) == {"a": "json of another kind"}


# ---- which images ----------------------------------------------------------------------------

def test_predict_finds_images_in_sub_folders_and_names_what_it_cannot_read(data, ckpt, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "2024" / "june").mkdir(parents=True)
    image = cv2.imread(str(data.parent / "img000.png"))
    cv2.imwrite(str(photos / "2024" / "june" / "a.png"), image)
    (photos / "folder.jpg").mkdir()                           # a folder named like an image
    (photos / "gone.png").symlink_to(tmp_path / "missing.png")  # a dangling link
    (photos / "loop.png").symlink_to(photos / "loop.png")      # a link to itself
    os.mkfifo(photos / "pipe.png")                            # would block a reader
    (photos / "bomb.png").write_bytes(_png_header(100000, 100000))
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    assert main(_predict(photos, "--weights", ckpt, "--out", out)) == 0
    err = capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} <= {"a.png"} and (out / "a.png").is_file()
    for name, why in (("folder.jpg", "not a regular file"), ("gone.png", "symbolic link"),
                      ("loop.png", "symbolic link"), ("pipe.png", "not a regular file"),
                      ("bomb.png", "100000 x 100000 pixels")):
        line = next((x for x in err.splitlines() if name in x), "")
        assert line.startswith("posegroup: skipped") and why in line, (name, err)
    assert "notes.txt" not in err
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    assert main(_predict(empty, "--weights", ckpt, "--out", tmp_path / "p2")) == 2
    one_line_error(capsys, "empty: no image files", "sub-folders")


def test_predict_output_folder_inside_the_input_folder_is_not_read_back(data, ckpt, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), cv2.imread(str(data.parent / "img000.png")))
    argv = _predict(photos, "--weights", ckpt, "--out", photos / "pred")
    assert main(argv) == 0 and main(argv + ["--overwrite"]) == 0
    assert sorted(p.name for p in (photos / "pred").glob("*.png")) == ["a.png"]


def test_predict_gt_of_another_keypoint_set_is_one_line(data, ckpt, tmp_path, capsys):
    gt = json.loads(data.read_text())
    for a in gt["annotations"]:
        a["keypoints"] = a["keypoints"][:42]                  # 14 keypoints, the model has 17
    other = tmp_path / "crowdpose14.json"
    other.write_text(json.dumps(gt))
    assert main(_predict(data.parent, "--weights", ckpt, "--out", tmp_path / "p", "--gt", other)) == 2
    one_line_error(capsys, "crowdpose14.json: a ground-truth person has 42 keypoint values, expected 51")


# ---- export and checkpoints --------------------------------------------------------------

def _tampered(ckpt, tmp_path, name, change) -> Path:
    import torch
    state = torch.load(ckpt, weights_only=True)
    change(state)
    out = tmp_path / name
    torch.save(state, out)
    return out


def test_export_overwrite_replaces_only_an_onnx_file_and_never_through_a_link(ckpt, tmp_path, capsys):
    pytest.importorskip("onnx")
    other = tmp_path / "other.onnx"
    other.write_bytes(ckpt.read_bytes())                      # a checkpoint under an .onnx name
    assert main(["export", "--weights", str(ckpt), "--out", str(other), "--overwrite"]) == 2
    one_line_error(capsys, "other.onnx: exists and is not an ONNX model")
    assert other.read_bytes() == ckpt.read_bytes()
    link = tmp_path / "link.onnx"
    link.symlink_to(tmp_path / "target.onnx")
    assert main(["export", "--weights", str(ckpt), "--out", str(link), "--overwrite"]) == 2
    one_line_error(capsys, "link.onnx: is a symbolic link")
    assert not (tmp_path / "target.onnx").exists()


def test_export_and_checkpoints_respect_the_umask(ckpt, tmp_path, capsys):
    pytest.importorskip("onnx")
    from posegroup.engine.checkpoint import save_checkpoint
    old = os.umask(0o022)
    try:
        out = tmp_path / "m.onnx"
        assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(out)]) == 0
        assert main(["--quiet", "export", "--weights", str(ckpt), "--out", str(out), "--overwrite"]) == 0
        saved = save_checkpoint(tmp_path / "c.pt", {"step": 1})
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644 and saved.stat().st_mode & 0o777 == 0o644


def test_export_refuses_non_finite_weights_and_a_config_that_is_no_mapping(ckpt, tmp_path, capsys):
    pytest.importorskip("onnx")

    def nan(state):
        for v in state["model"].values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    bad = _tampered(ckpt, tmp_path, "nan.pt", nan)
    assert main(["export", "--weights", str(bad), "--out", str(tmp_path / "nan.onnx")]) == 2
    one_line_error(capsys, "nan.pt: weight", "NaN")
    assert not (tmp_path / "nan.onnx").exists()
    odd = _tampered(ckpt, tmp_path, "odd.pt", lambda s: s.update(config="a string"))
    assert main(["export", "--weights", str(odd), "--out", str(tmp_path / "odd.onnx")]) == 2
    one_line_error(capsys, "odd.pt: checkpoint 'config' is not a config mapping")
    assert main(["predict", str(ckpt), "--weights", str(odd), "--out", str(tmp_path / "p")]) == 2
    one_line_error(capsys, "odd.pt: checkpoint 'config'")


# ---- annotation file names stay inside the image folder -----------------------------------

@pytest.mark.parametrize("name", ["../outside/secret.png", "/etc/passwd", "sub/../../x.png", ""])
def test_an_annotation_file_name_outside_the_image_root_is_refused(data, ckpt, tmp_path, capsys, name):
    from posegroup.data.coco import CocoPoseDataset, DatasetError
    gt = json.loads(data.read_text())
    gt["images"][1]["file_name"] = name
    bad = data.parent / f"escape{abs(hash(name))}.json"
    bad.write_text(json.dumps(gt))
    with pytest.raises(DatasetError, match=rf"image {gt['images'][1]['id']}: file_name .* is not a file inside"):
        CocoPoseDataset(bad)
    assert main(["--quiet", "evaluate", "--gt", str(bad), "--weights", str(ckpt)]) == 2
    one_line_error(capsys, bad.name, "is not a file inside the image folder")


# ---- a full disk or a read-only folder: one line naming the file, earlier outputs intact ----

def test_a_failed_write_is_one_line_naming_the_file_and_keeps_the_earlier_outputs(data, ckpt, tmp_path, capsys,
                                                                                     monkeypatch):
    pytest.importorskip("onnx")
    pred, onnx_file, stats = tmp_path / "pred", tmp_path / "m.onnx", tmp_path / "stats.json"
    verbs = {
        "predict": (["predict", str(data.parent), "--weights", str(ckpt), "--out", str(pred)], pred / "img000.png"),
        "predict --no-draw": (["predict", str(data.parent), "--weights", str(ckpt), "--out", str(pred), "--no-draw"],
                              pred / "results.json"),
        "export": (["export", "--weights", str(ckpt), "--out", str(onnx_file)], onnx_file),
        "evaluate --stats": (["evaluate", "--gt", str(data), "--weights", str(ckpt), "--stats", str(stats)], stats),
    }
    for argv, _ in verbs.values():          # the earlier outputs
        assert main(["--quiet", *argv, "--overwrite"]) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real_replace = os.replace

    capsys.readouterr()
    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES):
        def failing(src, dst, *a, **k):     # the data written, its move into place fails like the disk
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "replace", failing)
        for verb, (argv, target) in verbs.items():
            assert main(["--quiet", *argv, "--overwrite"]) == 1, verb      # the job could not be done
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("posegroup: error:"), (verb, err)
            assert str(target) in err[0] and os.strerror(code) in err[0], (verb, err)
    monkeypatch.setattr(os, "replace", real_replace)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before                  # earlier outputs intact, no temporary file left


# ---- flags out of range: one line naming the flag, before any work -------------------------

@pytest.mark.parametrize("argv,needle", [
    (["predict", "x.png", "--min-score", "2"], "--min-score must be a number in [0, 1], got 2.0"),
    (["predict", "x.png", "--min-score", "-1"], "--min-score must be a number in [0, 1]"),
    (["predict", "x.png", "--min-score", "nan"], "--min-score must be a number in [0, 1], got nan"),
    (["predict", "x.png", "--track-min-score", "inf"], "--track-min-score must be a number in [0, 1]"),
    (["predict", "x.png", "--track-max-gap", "-1"], "--track-max-gap must be an integer in [0,"),
    (["predict", "x.png", "--input-size", "1000000"], "--input-size must be in [16, 4096], got 1000000"),
    (["predict", "x.png", "--scales", "1e6"], "--scales must be numbers in [0.0625, 4]"),
    (["train", "ae_tiny_synthetic", "--max-steps", "0"], "--max-steps must be an integer > 0, got 0"),
    (["train", "ae_tiny_synthetic", "--max-steps", "-3"], "--max-steps must be an integer > 0, got -3"),
    (["train", "ae_tiny_synthetic", "--max-minutes", "nan"], "--max-minutes must be a number > 0, got nan"),
    (["train", "ae_tiny_synthetic", "--max-minutes", "-1"], "--max-minutes must be a number > 0, got -1.0"),
    (["synth", "--out", "S", "--workers", "-2"], "--workers must be an integer in [1, "),
    (["synth", "--out", "S", "--workers", "100000"], "--workers must be an integer in [1, "),
    (["synth", "--out", "S", "--size", "100000"], "--size must be an integer in [32, 4096], got 100000"),
    (["synth", "--out", "S", "--images", "0"], "--images must be an integer in [1, "),
    (["export", "--weights", "w.pt", "--out", "m.onnx", "--input-size", "1000000"], "--input-size must be in [16, 4096]"),
])
def test_flags_out_of_range_are_one_line_before_any_work(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", *argv]) == 2
    one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []                    # nothing written


def test_train_before_synth_names_the_synth_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "train", "ae_tiny_synthetic", "--max-steps", "1"]) == 2
    one_line_error(capsys, "annotations.json: annotation file not found", "make it first with 'posegroup synth --out")


def test_track_defaults_give_one_id_per_person_on_a_still_clip(tmp_path, capsys):
    """30 frames of one still photo (13 people): every person keeps one id; low-scored fragments,
    which vary from frame to frame, start no track by default."""
    from tests.conftest import shared_file
    photo = cv2.imread(str(shared_file("coco_images/val2017/000000217285.jpg")))
    weights = Path(__file__).resolve().parents[1] / "src" / "posegroup" / "weights" / "ae.pt"
    clip = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (photo.shape[1], photo.shape[0]))
    for _ in range(30):
        writer.write(photo)
    writer.release()
    assert main(["--quiet", "predict", str(clip), "--track", "--weights", str(weights), "--out", str(tmp_path / "o"),
                 "--no-draw"]) == 0
    results = json.loads((tmp_path / "o" / "still.json").read_text())
    tracked = [r for r in results if r["track_id"] is not None]
    per_frame = max(sum(1 for r in tracked if r["frame"] == f) for f in range(30))
    assert per_frame > 0 and len({r["track_id"] for r in tracked}) <= per_frame


# ---- evaluate ----------------------------------------------------------------------------------

def test_evaluate_ground_truth_without_segmentation_scores_masks_of_the_others(data, tmp_path, capsys):
    """COCO keypoint files hold people with ``"segmentation": []``: mask AP leaves them out (and
    says how many); keypoint AP is printed."""
    from posegroup.engine.evaluate import gt_as_results
    results = gt_as_results(data, with_masks=True)
    gt = json.loads(data.read_text())
    gt["annotations"][0]["segmentation"] = []
    res, bare = tmp_path / "res.json", tmp_path / "gt.json"
    res.write_text(json.dumps(results))
    bare.write_text(json.dumps(gt))
    assert main(["--quiet", "evaluate", "--gt", str(bare), "--results", str(res)]) == 0
    out = capsys.readouterr().out
    assert "keypoints" in out and "segm" in out
    assert "segm: 1 ground-truth annotations have no segmentation and are left out of the mask figures" in out


def test_benchmark_mode_help_shows_only_that_modes_options(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "decode", "--help"])
    decode = capsys.readouterr().out
    assert "--noise" in decode and "--ann" in decode
    for other in ("--repeats", "--train-images", "--ablations", "--weights", "--minutes", "methods:", "step:"):
        assert other not in decode, other
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    every = capsys.readouterr().out
    assert all(flag in every for flag in ("--noise", "--repeats", "--train-images", "--weights"))


@pytest.mark.parametrize("change,needle", [
    (lambda gt: gt["annotations"][0].update(area=-5), "annotation 1 (image 1): area -5 is negative"),
    (lambda gt: gt["annotations"][0].update(area=0), "area 0 of a person with labelled keypoints must be > 0"),
    (lambda gt: gt["annotations"][0].update(image_id=999), "annotation 1 names image id 999, which is not in 'images'"),
])
def test_evaluate_refuses_ground_truth_that_would_be_scored_wrongly(data, tmp_path, capsys, change, needle):
    from posegroup.engine.evaluate import gt_as_results
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(data)))
    gt = json.loads(data.read_text())
    change(gt)
    bad = tmp_path / "gt.json"
    bad.write_text(json.dumps(gt))
    assert main(["--quiet", "evaluate", "--gt", str(bad), "--results", str(res)]) == 2
    one_line_error(capsys, "gt.json: ", needle)


def test_evaluate_says_what_it_assumed(data, tmp_path, capsys):
    """No keypoint category (scored as COCO-17) and an empty results list: scored, and said."""
    gt = json.loads(data.read_text())
    gt["categories"] = []
    bare, empty = tmp_path / "gt.json", tmp_path / "none.json"
    bare.write_text(json.dumps(gt))
    empty.write_text("[]")
    assert main(["--quiet", "evaluate", "--gt", str(bare), "--results", str(empty), "--all-images"]) == 0
    err = capsys.readouterr().err
    assert "posegroup: note: " in err and "gt.json: no category names its keypoints; scored as coco17" in err
    assert "none.json: holds no results; every ground-truth person counts as missed" in err


# ---- training ------------------------------------------------------------------------------

def test_resume_from_a_diverged_checkpoint_names_the_weight_not_a_missing_last_good(data, ckpt, tmp_path):
    from posegroup.engine.train import TrainingError, train

    def nan(state):
        for key in ("model", "train_model"):
            for v in (state.get(key) or {}).values():
                if v.is_floating_point():
                    v.fill_(float("nan"))
    bad = _tampered(ckpt, tmp_path, "diverged.pt", nan)
    with pytest.raises(TrainingError, match=r"diverged\.pt: weight '.*' holds NaN or infinite values"):
        train(tiny_config(data, tmp_path / "run", steps=2), resume=str(bad), allow_changes=True, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_learning_rate_that_diverges_at_once_is_refused_by_name(data, tmp_path):
    from posegroup.engine.config import ConfigError
    with pytest.raises(ConfigError, match=r"'train\.lr' must be <= 10, got 1e\+308"):
        tiny_config(data, tmp_path, lr=1e308)


def test_a_checkpoint_asking_for_an_absurd_input_size_is_one_line(data, ckpt, tmp_path, capsys):
    big = _tampered(ckpt, tmp_path, "big.pt", lambda s: s["config"].setdefault("test", {}).update(input_size=10 ** 6))
    assert main(["--quiet", "predict", str(data.parent), "--weights", str(big), "--out", str(tmp_path / "p")]) == 2
    one_line_error(capsys, "big.pt: the checkpoint's test.input_size must be in [16, 4096], got 1000000")
    assert not (tmp_path / "p").exists()


def test_train_summary_is_valid_json_when_no_step_runs(data, tmp_path, capsys):
    import yaml
    cfg = tiny_config(data, tmp_path / "run", steps=1)
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}))
    assert main(["--quiet", "train", str(f)]) == 0
    capsys.readouterr()
    assert main(["--quiet", "train", str(f), "--resume"]) == 0          # already done: no step runs
    summary = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not json: {c}"))
    assert summary["steps"] == 1 and summary["final_loss"] is None


def test_personlab_without_masks_writes_no_segmentation(data, tmp_path):
    weights = Path(__file__).resolve().parents[1] / "src" / "posegroup" / "weights" / "personlab.pt"
    out = tmp_path / "p"
    assert main(["--quiet", "predict", str(data.parent / "img000.png"), "--weights", str(weights),
                 "--no-with-masks", "--no-draw", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and not any("segmentation" in r for r in results)


def test_evaluate_overwrite_replaces_only_its_own_kind_of_json(data, ckpt, tmp_path, capsys):
    from posegroup.engine.evaluate import gt_as_results
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(data)))
    stats = tmp_path / "stats.pt"
    stats.write_bytes(ckpt.read_bytes())                       # a checkpoint where --stats points
    assert main(["--quiet", "evaluate", "--gt", str(data), "--results", str(res), "--stats", str(stats),
                 "--overwrite"]) == 2
    one_line_error(capsys, "stats.pt: exists and is not an evaluate --stats json")
    assert stats.read_bytes() == ckpt.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    assert main(["--quiet", "evaluate", "--gt", str(data), "--results", str(res), "--stats", str(link)]) == 2
    one_line_error(capsys, "link.json: is a symbolic link")
    assert not (tmp_path / "elsewhere.json").exists()


def test_synth_overwrite_that_fails_keeps_the_earlier_dataset(tmp_path, capsys, monkeypatch):
    import posegroup.data.synthetic as synthetic
    out = tmp_path / "s"
    assert main(["--quiet", "synth", "--out", str(out), "--images", "3", "--size", "64"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full_disk(folder, *args, **kwargs):     # writes part of the new dataset, then the disk is full
        (Path(folder) / "images").mkdir(parents=True, exist_ok=True)
        (Path(folder) / "images" / "000000.jpg").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synthetic, "generate_dataset", full_disk)
    capsys.readouterr()
    assert main(["--quiet", "synth", "--out", str(out), "--images", "5", "--size", "64", "--overwrite"]) == 1
    one_line_error(capsys, f"{out}: No space left on device")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (out / ".replaced_dataset").exists()
    monkeypatch.undo()
    assert main(["--quiet", "synth", "--out", str(out), "--images", "2", "--size", "64", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert not (out / ".replaced_dataset").exists()


def test_predict_names_a_given_path_that_is_no_file(ckpt, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    for name in ("pipe.png", "gone.png"):
        assert main(_predict(tmp_path / name, "--weights", ckpt, "--out", tmp_path / "p")) == 2
        one_line_error(capsys, f"{name}: not an image file")


def test_an_image_above_opencvs_pixel_limit_is_one_line_and_the_cli_sets_that_limit(tmp_path, monkeypatch, capsys):
    """Formats whose header is not read (TIFF, WebP) meet OpenCV's own limit, which the CLI sets
    to posegroup.limits.MAX_IMAGE_PIXELS (read when cv2 loads: checked in a fresh process)."""
    import subprocess
    import sys
    from posegroup.limits import MAX_IMAGE_PIXELS
    tif = tmp_path / "a.tif"
    cv2.imwrite(str(tif), np.zeros((64, 64, 3), np.uint8))
    code = ("import os; os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'] = '1000'\n"
            "from posegroup.data.coco import DatasetError, read_image\n"
            f"try:\n    read_image({str(tif)!r})\nexcept DatasetError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"{tif}: unreadable image (above the limit of {MAX_IMAGE_PIXELS} pixels; not decoded)", out
    monkeypatch.delenv("OPENCV_IO_MAX_IMAGE_PIXELS", raising=False)
    assert main(["--quiet", "train"]) == 2                   # any command, even one refused at once
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(MAX_IMAGE_PIXELS)


def test_evaluate_ground_truth_whose_categories_disagree_with_its_keypoints(data, tmp_path, capsys):
    from posegroup.engine.evaluate import gt_as_results
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(data)))
    gt = json.loads(data.read_text())
    gt["categories"][0]["keypoints"] = gt["categories"][0]["keypoints"][:14]     # 14 names, 17 keypoints each
    gt["categories"][0].pop("skeleton", None)
    bad = tmp_path / "gt.json"
    bad.write_text(json.dumps(gt))
    assert main(["--quiet", "evaluate", "--gt", str(bad), "--results", str(res)]) == 2
    one_line_error(capsys, "gt.json: annotation 1 has 51 keypoint values, but the keypoint set", "needs 42")
