"""benchmark methods: the plumbing on a tiny step budget (all three methods, three splits, the
table written and parsed back, a rerun resumes without training again)."""
from __future__ import annotations

import json

import pytest
import torch

from posegroup.cli import main
from posegroup.engine.compare import format_table


def parse_table(text: str) -> list[dict]:
    """Rows of a :func:`format_table` table back as dicts (row, split, AP, ...)."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 10 or cells[0] in ("method", "---") or set(cells[0]) <= {"-"}:
            continue
        num = [None if c == "-" else float(c) for c in cells[2:]]
        out.append(dict(zip(["row", "split", "AP", "AP50", "AP75", "AR", "network_ms", "decoder_ms", "count_error",
                             "true_ids_AP"], cells[:2] + num)))
    return out


def test_benchmark_methods_plumbing(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "cmp"
    args = ["--quiet", "benchmark", "methods", "--out", str(out), "--max-steps", "4", "--train-images", "6",
            "--images", "2", "--seed", "3"]
    assert main(args) == 0
    table = (out / "methods.md").read_text()
    rows = parse_table(table)
    assert {(r["row"], r["split"]) for r in rows} == {(m, s) for m in ("ae", "personlab", "recurrent")
                                                      for s in ("sparse", "medium", "heavy")}
    for r in rows:
        assert r["network_ms"] > 0 and r["decoder_ms"] >= 0
        assert (r["true_ids_AP"] is not None) == (r["row"] != "personlab")     # AE and recurrent have a ceiling
    # the table's AP is COCOeval of the stage's checkpoint on that split's first images
    from posegroup.data.coco import CocoPoseDataset
    from posegroup.engine.predict import checkpoint_predictor, evaluate_predictor
    for method in ("ae", "recurrent"):
        predictor, m, _ = checkpoint_predictor(out / "runs" / method / "last.pt", input_size=128)
        ds = CocoPoseDataset(out / "data" / "heavy" / "annotations.json", keypoint_set=m.keypoint_set)
        ap = evaluate_predictor(predictor, ds, max_images=2)["AP"]
        row = next(r for r in rows if r["row"] == method and r["split"] == "heavy")
        assert row["AP"] == pytest.approx(max(ap, 0.0), abs=6e-4)
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["ae"]["steps"] == 4 and state["stages"]["recurrent"]["steps"] == 2
    assert (out / "runs" / "ae" / "snapshot_0.5.pt").is_file()
    # the recurrent backbone is the AE snapshot at half the budget
    ck = torch.load(out / "runs" / "recurrent" / "last.pt", weights_only=False)
    snap = torch.load(out / "runs" / "ae" / "snapshot_0.5.pt", weights_only=False)
    k = next(iter(snap["model"]))
    assert torch.equal(ck["model"]["backbone." + k], snap["model"][k])
    # a rerun resumes: nothing is trained again, the same table comes out
    stamp = (out / "runs" / "ae" / "last.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "runs" / "ae" / "last.pt").stat().st_mtime_ns == stamp
    assert parse_table((out / "methods.md").read_text()) == rows
    # other settings in the same folder: one clear error
    assert main(args[:-1] + ["4"]) == 2


def test_table_round_trip():
    rows = [{"row": "ae", "splits": {"heavy": {"AP": 0.25, "AP50": 0.5, "AP75": 0.2, "AR": 0.3, "network_ms": 3.2,
                                               "decoder_ms": 1.1, "count_error": 0.75, "true_ids_AP": 0.4}}}]
    back = parse_table(format_table(rows, "header line"))
    assert back == [{"row": "ae", "split": "heavy", "AP": 0.25, "AP50": 0.5, "AP75": 0.2, "AR": 0.3,
                     "network_ms": 3.2, "decoder_ms": 1.1, "count_error": 0.75, "true_ids_AP": 0.4}]


def test_a_stage_in_minutes_sizes_one_schedule_to_its_whole_budget(tmp_path, monkeypatch):
    """Minutes mode: the stage trains in chunks (and a snapshot at half its minutes), and its
    ``train.steps: auto`` schedule is sized once, in the first chunk, to the stage's budget --
    not to that chunk (which would end the cosine with the first chunk)."""
    from posegroup.engine import compare
    from posegroup.engine import train as train_mod
    from posegroup.engine.checkpoint import load_checkpoint
    from tests.helpers import make_dataset, tiny_config
    torch.set_num_threads(1)
    monkeypatch.setattr(train_mod, "AUTO_STEPS", (2, 8, 0.9))
    cfg = tiny_config(make_dataset(tmp_path / "d", 4, size=64), tmp_path / "runs" / "ae")
    state, seen = {"stages": {}}, []
    st = compare.train_stage({"name": "ae", "share": 1.0, "snapshots": [0.5]}, cfg, state, tmp_path,
                             minutes=0.16, max_steps=None, chunk_minutes=0.04, progress=False,
                             save=lambda: seen.append(dict(state["stages"]["ae"])))
    assert st["done"] and len(seen) >= 3, seen
    assert seen[0]["total_steps"] == st["total_steps"]          # sized in the first chunk, then kept
    assert st["total_steps"] >= 1.5 * seen[0]["steps"], seen    # to the stage's minutes, not the chunk's
    assert (tmp_path / "runs" / "ae" / "snapshot_0.5.pt").is_file()
    assert load_checkpoint(tmp_path / "runs" / "ae" / "last.pt")["total_steps"] == st["total_steps"]


def test_claims_table_sets_each_ablation_beside_the_paper():
    """Ours = AP(with) - AP(without) per split and seed, in AP points, their mean, the paper's
    difference and whether the signs agree; a missing row is "-" (hand-worked)."""
    from posegroup.engine.compare import claims_table

    def rows(**ap):
        return [{"row": name, "splits": {"heavy": {"AP": v}}} for name, v in ap.items()]

    claims = [{"claim": "loop", "with": "a", "without": "b", "paper_delta": 4.1, "paper": "Table 5"},
              {"claim": "order", "with": "a", "without": "c", "paper_delta": 18.0, "paper": "Table 3"},
              {"claim": "dir", "with": "b", "without": "a", "paper_delta": None, "paper": "words only"}]
    runs = {0: rows(a=0.30, b=0.25, c=0.32), 1: rows(a=0.20, b=0.21)}
    lines = [line for line in claims_table(claims, runs).splitlines() if line.startswith("| loop")
             or line.startswith("| order") or line.startswith("| dir")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["loop", "heavy", "+5.0", "-1.0", "+2.0", "+4.1", "yes", "Table 5"]
    assert cells[1] == ["order", "heavy", "-2.0", "-", "-2.0", "+18.0", "no", "Table 3"]
    assert cells[2] == ["dir", "heavy", "-5.0", "+1.0", "-2.0", "-", "-", "words only"]


def test_seeds_write_each_seed_and_the_claims(tmp_path, monkeypatch):
    """``benchmark methods --seeds 3 4 --ablations``: one run per seed in OUT/seed_N, then
    OUT/claims.md over both (the runs themselves replaced by fixed rows)."""
    from posegroup.engine import compare
    seen = []

    def fake(out_dir, *, seed, **kw):
        seen.append((str(out_dir), seed, kw["ablations"], kw["backbone"]))
        return [{"row": r, "splits": {"heavy": {"AP": 0.1 * seed + (0.05 if r == "recurrent" else 0)}}}
                for r in ("recurrent", "recurrent feedback 0")]

    monkeypatch.setattr(compare, "benchmark_methods", fake)
    assert main(["--quiet", "benchmark", "methods", "--out", str(tmp_path), "--seeds", "3", "4", "--ablations",
                 "--backbone", "posenet_mobilenet"]) == 0
    assert seen == [(str(tmp_path / "seed_3"), 3, True, "posenet_mobilenet"),
                    (str(tmp_path / "seed_4"), 4, True, "posenet_mobilenet")]
    text = (tmp_path / "claims.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| feedback passes 2 vs 0 | heavy"))
    assert [c.strip() for c in line.strip("|").split("|")][2:7] == ["+5.0", "+5.0", "+5.0", "+4.1", "yes"]
