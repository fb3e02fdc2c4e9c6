"""A user's first hour: predict -> evaluate just works, pictures a person can read,
help with defaults, a missing optional package or device is one line."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from posegroup import cli
from posegroup.cli import build_parser, main
from posegroup.skeleton import COCO17


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """A 12-image synthetic split (96 px): its annotations.json."""
    from posegroup.data.synthetic import generate_dataset
    out = tmp_path_factory.mktemp("split")
    generate_dataset(out, 12, crowding="sparse", seed=3, image_size=96, workers=1, progress=False)
    return out / "annotations.json"


@pytest.fixture
def oracle(split, monkeypatch):
    """``make_predictor`` replaced by a noisy oracle: each image's true people, joints jittered by
    ~1.5 px, a random score, plus one junk person scored 0.1 -- the same answer for the same image."""
    from posegroup.data.coco import CocoPoseDataset
    ds = CocoPoseDataset(split)
    truth = {}
    for i in range(len(ds)):
        s = ds[i]
        truth[hashlib.md5(s["image"].tobytes()).hexdigest()] = (i, s["keypoints"])

    def predict(image):
        i, kp = truth[hashlib.md5(image.tobytes()).hexdigest()]
        rng = np.random.default_rng(i)
        poses = kp.astype(np.float64).copy()
        poses[..., :2] += rng.normal(0, 1.5, poses[..., :2].shape)
        poses[..., 2] = np.where(kp[..., 2] > 0, 0.9, 0.0)
        junk = np.concatenate([rng.uniform(10, 80, (1, 17, 2)), np.full((1, 17, 1), 0.9)], -1)
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(poses)), [0.1]])
        return np.concatenate([poses, junk]), scores

    monkeypatch.setattr(cli, "make_predictor", lambda args: (predict, COCO17, "oracle (test)"))
    return predict


def _images(split) -> list[str]:
    return sorted(str(p) for p in (split.parent / "images").glob("*.jpg"))


def _evaluate(capsys, *argv) -> tuple[dict, str]:
    capsys.readouterr()
    stats = Path(argv[argv.index("--stats") + 1])
    assert main(["evaluate", *argv]) == 0
    return json.loads(stats.read_text()), capsys.readouterr().out


# ---- predict -> evaluate --------------------------------------------------------------------

def test_predict_without_gt_then_evaluate_equals_predict_with_gt(split, oracle, tmp_path, capsys):
    images = _images(split)
    assert main(["--quiet", "predict", *images[::-1], "--weights", "w.pt", "--out", str(tmp_path / "a"),
                 "--no-draw"]) == 0                                     # ids 0, 1, ... in command-line order
    assert main(["--quiet", "predict", *images, "--weights", "w.pt", "--gt", str(split), "--out",
                 str(tmp_path / "b"), "--no-draw"]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert all(r["file_name"].endswith(".jpg") and "/" not in r["file_name"] for r in a + b)
    gt_ids = {im["file_name"].split("/")[-1]: im["id"] for im in json.loads(split.read_text())["images"]}
    assert any(r["image_id"] != gt_ids[r["file_name"]] for r in a)     # the ids alone would not match
    sa, out_a = _evaluate(capsys, "--gt", str(split), "--results", str(tmp_path / "a" / "results.json"),
                          "--stats", str(tmp_path / "sa.json"))
    sb, _ = _evaluate(capsys, "--gt", str(split), "--results", str(tmp_path / "b" / "results.json"),
                      "--stats", str(tmp_path / "sb.json"))
    assert sa["AP"] == pytest.approx(sb["AP"], abs=1e-12) and sa["AP"] > 0.3
    assert f"scored 12 of 12 ground-truth images" in out_a


def test_evaluate_scores_the_images_with_results_and_says_how_many(split, oracle, tmp_path, capsys):
    from posegroup.engine.evaluate import evaluate_results
    five = _images(split)[2:7]
    assert main(["--quiet", "predict", *five, "--weights", "w.pt", "--out", str(tmp_path / "p"), "--no-draw"]) == 0
    res = tmp_path / "p" / "results.json"
    sub, out = _evaluate(capsys, "--gt", str(split), "--results", str(res), "--stats", str(tmp_path / "s.json"))
    assert "scored 5 of 12 ground-truth images" in out and "--all-images" in out
    assert (sub["images_scored"], sub["images_total"]) == (5, 12)
    gt = json.loads(split.read_text())
    ids = [im["id"] for im in gt["images"] if Path(im["file_name"]).name in {Path(f).name for f in five}]
    mapped = [dict(r, image_id=ids[[Path(f).name for f in five].index(r["file_name"])]) for r in json.loads(res.read_text())]
    assert sub["AP"] == pytest.approx(evaluate_results(split, mapped, image_ids=ids)["AP"], abs=1e-12)
    full, out = _evaluate(capsys, "--gt", str(split), "--results", str(res), "--stats", str(tmp_path / "f.json"),
                          "--all-images")
    assert "scored 12 of 12" in out and full["AP"] < sub["AP"] - 0.1   # the 7 other images' people missed


def test_evaluate_errors_name_the_files(split, tmp_path, capsys):
    res = tmp_path / "r.json"
    res.write_text(json.dumps([{"image_id": 0, "category_id": 1, "keypoints": [1.0] * 51, "score": 1.0,
                                "file_name": "nowhere.jpg"}]))
    assert main(["evaluate", "--gt", str(split), "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(res) in err and str(split) in err and "nowhere.jpg" in err
    assert "<ground truth>" not in err


# ---- pictures ---------------------------------------------------------------------------------

def _png(path: Path) -> np.ndarray:
    return cv2.imread(str(path))


def test_pictures_enlarged_captioned_min_score_and_gt_panel(split, oracle, tmp_path):
    image = _images(split)[0]
    name = Path(image).stem
    base = ["--quiet", "predict", image, "--weights", "w.pt"]
    assert main(base + ["--out", str(tmp_path / "d")]) == 0                       # default --min-score 0.2
    assert main(base + ["--out", str(tmp_path / "all"), "--min-score", "0"]) == 0
    assert main(base + ["--out", str(tmp_path / "gt"), "--gt", str(split)]) == 0
    d, every, with_gt = (_png(tmp_path / o / f"{name}.png") for o in ("d", "all", "gt"))
    assert d.shape[1] == 384 and d.shape[0] > 384                      # 96 px drawn at 384, a caption above
    assert (tmp_path / "d" / "results.json").read_bytes() == (tmp_path / "all" / "results.json").read_bytes()
    assert d.shape == every.shape and (d != every).any()              # the junk person (0.1) drawn only at 0
    assert with_gt.shape[0] == d.shape[0] and with_gt.shape[1] == 2 * 384 + 6   # the ground truth beside it
    assert (with_gt[:, :384] == d).all()


def test_prediction_picture_caption_counts_people():
    from posegroup.viz import prediction_picture
    img = np.zeros((50, 80, 3), np.uint8)
    poses = np.zeros((3, 17, 3))
    poses[..., :2], poses[..., 2] = 20, 1
    lo = prediction_picture(img, poses, [0.9, 0.5, 0.05], COCO17, title="t", min_score=0.2)
    hi = prediction_picture(img, poses, [0.9, 0.5, 0.05], COCO17, title="t", min_score=0.6)
    assert min(lo.shape[:2]) >= 384 and lo.shape == hi.shape and (lo != hi).any()


# ---- help, optional packages, devices ---------------------------------------------------------

def _parsers(parser, name="posegroup"):
    yield name, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for verb, sub in a.choices.items():
                yield from _parsers(sub, f"{name} {verb}")


def test_every_option_has_help_that_shows_its_default():
    checked = 0
    for name, parser in _parsers(build_parser()):
        fmt = parser._get_formatter()
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(a.option_strings) or a.dest}"
            assert a.help and a.help.strip(), f"{label}: no help text"
            shown = fmt._get_help_string(a)
            switch = a.nargs == 0 and a.default in (False, None)
            if a.option_strings and not a.required and not switch:
                assert "default" in shown, f"{label}: help does not show its default"
            checked += 1
    assert checked > 50
    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    assert "(default: 0.2)" in text and "(default: predictions)" in text


@pytest.mark.parametrize("module,argv,fix", [
    ("onnx", ["export", "--weights", "w.pt", "--out", "m.onnx"], "posegroup[onnx]"),
    ("onnx", ["predict", "a.jpg", "--onnx", "m.onnx"], "posegroup[onnx]"),
    ("onnxruntime", ["predict", "a.jpg", "--onnx", "m.onnx", "--format", "posenet"], "posegroup[onnx]"),
])
def test_a_missing_optional_package_is_one_line(module, argv, fix, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("m.onnx").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, module, None)                      # import fails as if not installed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posegroup: error:") and "\n" not in err, err
    assert f"needs {module}" in err and fix in err and 'pip install -e ".[' in err


def test_missing_ray_is_one_line(monkeypatch, capsys):
    from posegroup.engine.ray_predict import _ray
    from posegroup.extras import MissingDependency
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match=r"predict --ray needs ray, .*posegroup\[ray\].*pip install -e \"\.\[ray\]\""):
        _ray()


@pytest.mark.parametrize("argv", [
    ["predict", "a.jpg", "--weights", "w.pt"], ["evaluate", "--gt", "g.json", "--weights", "w.pt"],
    ["export", "--weights", "w.pt", "--out", "m.onnx"], ["train", "ae_tiny_synthetic"],
])
def test_a_device_that_is_not_there_is_one_line(argv, tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.chdir(tmp_path)
    bad = f"cuda:{torch.cuda.device_count() + 3}"
    for device in (bad, "gpu"):
        assert main(["--quiet", *argv, "--device", device]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("posegroup: error: --device") and "\n" not in err and device in err, err
