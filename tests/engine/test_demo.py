import json

from posegroup.engine.demo import run_demo


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path):
    table = run_demo(tmp_path / "demo", minutes=0.05, images=16, val_images=4, progress=False)
    assert set(table) >= {"val_sparse", "val_heavy"}
    # the table reports the written predictions: scored again from results_val_sparse.json
    from posegroup.engine.evaluate import evaluate_all
    results = json.loads((tmp_path / "demo" / "results_val_sparse.json").read_text())
    gt = tmp_path / "demo" / "data" / "val_sparse" / "annotations.json"
    again = evaluate_all(gt, results)
    assert table["val_sparse"]["AP"] == again["AP"] and table["val_sparse"]["AR"] == again["AR"]
    # the heavy split is more crowded than the sparse one
    assert table["val_heavy"]["mean_max_iou"] > table["val_sparse"]["mean_max_iou"]
    assert (tmp_path / "demo" / "ap_table.md").read_text().count("|") > 10
    pics = sorted(p.name for p in (tmp_path / "demo" / "pictures").glob("*.png"))
    assert "val_sparse_0_poses.png" in pics and "val_sparse_0_maps.png" in pics
    assert json.loads((tmp_path / "demo" / "ap_table.json").read_text())["train_steps"] >= 1
