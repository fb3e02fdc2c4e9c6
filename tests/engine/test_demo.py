import json

import pytest

from posegroup.cli import main
from posegroup.engine.demo import METHODS, MANIFEST, SPLITS, run_demo, shipped_manifest


def test_demo_trains_every_method_on_a_tiny_budget(tmp_path):
    out = tmp_path / "demo"
    table = run_demo(out, train=True, steps=dict.fromkeys(METHODS, 2), images=12, val_images=3, progress=False)
    assert set(table["methods"]) == set(METHODS) and set(table["splits"]) == set(SPLITS)
    from posegroup.engine.checkpoint import load_checkpoint, load_model
    from posegroup.engine.evaluate import evaluate_all
    for m in METHODS:
        row = table["methods"][m]
        assert row["steps"] == 2 and row["source"] == "trained"
        # the slim weights: no optimizer / RNG state, float16, and they rebuild the model
        state = load_checkpoint(out / "weights" / f"{m}.pt")
        assert "optimizer" not in state and "rng" not in state
        assert state["model"][next(k for k, v in state["model"].items() if v.is_floating_point())].dtype.itemsize == 2
        assert load_model(out / "weights" / f"{m}.pt")[2]["method"]["name"] == m
        # the table reports the written predictions: scored again from the results file
        results = json.loads((out / f"results_{m}_val_sparse.json").read_text())
        again = evaluate_all(out / "data" / "val_sparse" / "annotations.json", results)
        assert row["val_sparse"]["AP"] == again["AP"] and row["val_sparse"]["AR"] == again["AR"]
    # the recurrent head started from the AE backbone trained in this run
    rec_cfg = load_checkpoint(out / "weights" / "recurrent.pt")["config"]
    assert rec_cfg["model"]["init_from"] == str(out / "weights" / "ae.pt")
    # the splits grow more crowded, and the saved config names the folder the run is in
    ious = [table["splits"][s]["mean_max_iou"] for s in ("val_sparse", "val_medium", "val_heavy")]
    assert ious[0] < ious[1] < ious[2]
    saved = (out / "train" / "ae" / "config.yaml").read_text()
    assert str(out / "train" / "ae") in saved
    text = (out / "ap_table.md").read_text()
    assert "good" in text and text.count("\n| ") >= 1 + len(METHODS)
    pics = {p.name for p in (out / "pictures").glob("*.png")}
    assert {"ae_val_sparse_0_poses.png", "personlab_val_heavy_0_poses.png", "recurrent_val_medium_0_poses.png"} <= pics


def test_demo_refuses_a_non_empty_folder_and_missing_shipped_weights(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="--overwrite"):
        run_demo(tmp_path / "full", progress=False)
    import posegroup.engine.shipped as shipped
    monkeypatch.setattr(shipped, "MANIFEST", tmp_path / "none.json")
    with pytest.raises(FileNotFoundError, match="demo --train"):
        run_demo(tmp_path / "d", val_images=2, progress=False)


@pytest.mark.parametrize("bad", ["ae=0", "foo=3", "x", "-1"])
def test_demo_steps_flag_is_checked(bad, capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--train", "--steps", bad])
    assert "--steps" in capsys.readouterr().err


@pytest.mark.skipif(not MANIFEST.is_file(), reason="no shipped weights in this checkout")
def test_shipped_weights_score_their_recorded_ap(tmp_path):
    """Each shipped model loads and scores the AP recorded when it was made (within 0.01) on the
    demo's held-out splits, regenerated from the recorded seed."""
    manifest = shipped_manifest()
    assert set(manifest) == set(METHODS)
    one = next(iter(manifest.values()))
    table = run_demo(tmp_path / "d", val_images=one["val_images"], seed=one["seed"], progress=False)
    for m, entry in manifest.items():
        assert (MANIFEST.parent / entry["file"]).stat().st_size < 5e6   # a few MB at most
        for split, ap in entry["AP"].items():
            assert table["methods"][m][split]["AP"] == pytest.approx(ap, abs=0.01), (m, split)
