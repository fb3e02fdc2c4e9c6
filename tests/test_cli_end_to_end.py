"""The CLI verbs end to end on small real or synthetic inputs."""
import json

import pytest

from posegroup.cli import main
from tests.conftest import shared_file


def _subset_gt(tmp_path, ann, n):
    """The first n images with people of a COCO json, written next to tmp_path."""
    data = json.loads(ann.read_text())
    ids = sorted({a["image_id"] for a in data["annotations"]})[:n]
    data["images"] = [im for im in data["images"] if im["id"] in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(data))
    return p, data


def test_posenet_predict_and_evaluate_through_the_cli(shared_data, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = shared_file("models/posenet_mobilenetv1_dyn.onnx")
    ann = shared_file("coco_images/person_keypoints_local_images.json")
    gt, data = _subset_gt(tmp_path, ann, 3)
    images = [str(ann.parent / im["file_name"]) for im in data["images"]]
    out = tmp_path / "pred"
    assert main(["--quiet", "predict", "--onnx", str(model), "--format", "posenet", *images,
                 "--out", str(out), "--gt", str(ann)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res and {r["image_id"] for r in res} <= {im["id"] for im in data["images"]}
    assert len(list(out.glob("*.png"))) == 3
    stats = tmp_path / "stats.json"
    assert main(["--quiet", "evaluate", "--gt", str(gt), "--images", str(ann.parent), "--onnx", str(model),
                 "--format", "posenet", "--stats", str(stats)]) == 0
    s = json.loads(stats.read_text())
    assert 0.0 < s["AP"] <= 1.0  # a real trained network finds some of these people


def test_train_predict_evaluate_export_on_synthetic(tmp_path, capsys):
    from posegroup.data.synthetic import generate_dataset
    generate_dataset(tmp_path / "syn", 6, crowding="sparse", seed=3, image_size=128, progress=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
method: {{name: ae}}
model: {{name: tiny, num_stacks: 1}}
data: {{train_ann: syn/annotations.json, input_size: 128}}
train: {{batch_size: 2, steps: 3, lr: 1.0e-3, workers: 0, checkpoint_every: 2, out_dir: run, log_every: 1}}
""")
    assert main(["--quiet", "train", str(cfg)]) == 0
    ckpt = tmp_path / "run" / "last.pt"
    assert ckpt.is_file()
    # a fresh start refuses to clobber an existing run
    assert main(["--quiet", "train", str(cfg)]) == 2
    assert "last.pt" in capsys.readouterr().err
    pred = tmp_path / "pred"
    assert main(["--quiet", "predict", "--weights", str(ckpt), str(tmp_path / "syn" / "images"),
                 "--out", str(pred), "--flip", "--scales", "1", "0.5"]) == 0
    assert len(list(pred.glob("*.png"))) == 6
    stats = tmp_path / "s.json"
    gt = tmp_path / "syn" / "annotations.json"
    assert main(["--quiet", "evaluate", "--gt", str(gt), "--weights", str(ckpt), "--stats", str(stats),
                 "--out", str(tmp_path / "ev")]) == 0
    # the reported AP is pycocotools' own COCOeval of the written results (COCO-17 sigmas)
    import contextlib
    import io
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    if not results:              # a few training steps may detect nobody: AP 0, not an error
        assert json.loads(stats.read_text())["AP"] == 0.0
        results = [{"image_id": 1, "category_id": 1, "keypoints": [0.0] * 51, "score": 0.0}]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert json.loads(stats.read_text())["AP"] == pytest.approx(max(ev.stats[0], 0.0), abs=1e-9)
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(onnx_path)]) == 0
    assert onnx_path.stat().st_size > 10000
    assert "max abs difference" in capsys.readouterr().out
    # a corrupt checkpoint is one line
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["predict", "--weights", str(bad), str(tmp_path / "syn" / "images")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err and "\n" not in err
