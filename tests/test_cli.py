import json
import subprocess
import sys

import pytest

from posegroup.cli import build_parser, main
from posegroup.engine.evaluate import gt_as_results


def test_every_verb_is_there():
    p = build_parser()
    for argv in (["synth", "--out", "x"], ["train", "c.yaml"], ["evaluate", "--gt", "g.json"],
                 ["predict", "a.jpg", "--weights", "w.pt"], ["export", "--weights", "w", "--out", "o"],
                 ["benchmark", "decode"], ["demo"]):
        assert p.parse_args(argv).func is not None


def test_evaluate_verb_writes_stats(coco_val_gt, tmp_path, capsys):
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(coco_val_gt)))
    stats = tmp_path / "stats.json"
    assert main(["evaluate", "--gt", str(coco_val_gt), "--results", str(res), "--stats", str(stats)]) == 0
    s = json.loads(stats.read_text())
    assert {"AP", "AP50", "AP75", "APm", "APl", "AR"} <= set(s) and s["AP"] == pytest.approx(1.0)
    assert "1.000" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text("{not json")
    assert main(["evaluate", "--gt", str(gt), "--results", str(gt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posegroup: error:") and "gt.json" in err and "\n" not in err
    assert main(["predict", "a.jpg", "--weights", "w.pt", "--onnx", "m.onnx"]) == 2
    assert "give one of --weights CKPT or --onnx MODEL" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "posegroup.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "benchmark" in out.stdout


def test_benchmark_step_needs_a_config_and_its_data(tmp_path, capsys, monkeypatch):
    assert main(["benchmark", "step"]) == 2
    assert "benchmark step needs a CONFIG.yaml" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)                   # a bundled config's data resolve against the cwd
    assert main(["benchmark", "step", "ae_crowd_synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "runs/synth/train_mixed/annotations.json: annotation file not found" in err


def test_evaluate_prints_the_methods_own_figures(tmp_path, capsys):
    """``evaluate --weights`` hands the model's method to the scorer: the recurrent method's person
    count is printed beside AP (people returned = the results' people, counted here); AE has none."""
    from tests.helpers import make_dataset
    ann = make_dataset(tmp_path / "d", 3, size=128, people=(1, 3))
    out = tmp_path / "o"
    assert main(["--quiet", "evaluate", "--gt", str(ann), "--weights", "recurrent", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "count_error" in text and "people_true" in text
    row = text.splitlines()[text.splitlines().index(next(l for l in text.splitlines() if "count_error" in l)) + 1]
    returned, true = float(row.split()[-2]), float(row.split()[-1])
    assert returned == len(json.loads((out / "results.json").read_text()))
    assert true == sum(1 for a in json.loads(ann.read_text())["annotations"] if a.get("num_keypoints", 0) > 0)
    assert main(["--quiet", "evaluate", "--gt", str(ann), "--weights", "ae"]) == 0
    assert "count_error" not in capsys.readouterr().out
