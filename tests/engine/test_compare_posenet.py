"""``benchmark methods --backbone posenet_mobilenet``: the three methods on the pretrained PoseNet,
trained on real-people scenes and scored on held-out scenes, the real val2017 photos and OCHuman."""
from __future__ import annotations

import json

import pytest

from posegroup.cli import main
from posegroup.engine.compare import benchmark_methods, count_error
from tests.conftest import shared_file


def test_posenet_profile_trains_and_scores_every_method(tmp_path, one_thread):
    """Two steps of each method; every row is scored on the three held-out scene splits, the
    real val2017 photos (their people are the held-out scenes' sources, none of the training
    scenes') and OCHuman; a second call resumes (nothing retrained); other settings refused."""
    people = shared_file("coco_images/person_keypoints_local_images.json")
    shared_file("fixtures/ochuman/test_ochuman.json")
    kw = dict(backbone="posenet_mobilenet", max_steps=2, images=6, val_images=2, size=256, max_images=2,
              progress=False)
    rows = benchmark_methods(tmp_path / "bm", **kw)
    assert [r["method"] for r in rows] == ["ae", "personlab", "recurrent"]
    for r in rows:
        assert list(r["splits"]) == ["sparse", "medium", "heavy", "real_val2017", "ochuman"]
        assert all(c["count_error"] >= 0 and 0 <= c["AP"] <= 1 for c in r["splits"].values())
    train = json.loads((tmp_path / "bm" / "data" / "train" / "annotations.json").read_text())
    held = json.loads((tmp_path / "bm" / "data" / "sparse" / "annotations.json").read_text())
    sources = json.loads(people.read_text())
    folder = {im["id"]: im["file_name"].split("/")[0] for im in sources["images"]}
    assert {folder[a["source_image_id"]] for a in train["annotations"] if "source_image_id" in a} == {"train2017"}
    assert {folder[a["source_image_id"]] for a in held["annotations"] if "source_image_id" in a} == {"val2017"}
    real = json.loads((tmp_path / "bm" / "data" / "real_val2017" / "annotations.json").read_text())
    assert len(real["images"]) == sum(1 for f in folder.values() if f == "val2017")
    state = (tmp_path / "bm" / "state.json").read_text()
    assert benchmark_methods(tmp_path / "bm", **kw) == rows and (tmp_path / "bm" / "state.json").read_text() == state
    with pytest.raises(ValueError, match="other settings"):
        benchmark_methods(tmp_path / "bm", **{**kw, "backbone": "tiny"})
    assert "scored on the first 2 images of each split" in (tmp_path / "bm" / "methods.md").read_text()
    # another --images rescores the rows (nothing retrained), and says so
    steps = json.loads(state)["stages"]
    again = benchmark_methods(tmp_path / "bm", **{**kw, "max_images": 1})
    assert [r["max_images"] for r in again] == [1, 1, 1] and [r["max_images"] for r in rows] == [2, 2, 2]
    assert json.loads((tmp_path / "bm" / "state.json").read_text())["stages"] == steps
    assert "scored on the first 1 images of each split" in (tmp_path / "bm" / "methods.md").read_text()


def test_count_error_by_hand():
    class Ds:     # image 1: two annotated people (and a crowd and an unlabelled one, not people); image 2: none
        person = {"image_id": 1, "keypoints": [5, 5, 2] + [0, 0, 0] * 16}
        data = {"images": [{"id": 1}, {"id": 2}],
                "annotations": [person, person, dict(person, iscrowd=1), dict(person, keypoints=[0, 0, 0] * 17)]}
    results = [{"image_id": 1, "score": 0.9}, {"image_id": 1, "score": 0.1}, {"image_id": 2, "score": 0.5},
               {"image_id": 2, "score": 0.3}]
    assert count_error(results, Ds(), [1, 2]) == pytest.approx((1 + 2) / 2)   # |1-2| and |2-0|


def test_missing_people_source_is_one_line(tmp_path, capsys):
    assert main(["benchmark", "methods", "--backbone", "posenet_mobilenet", "--people-from",
                 str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.json" in err and "\n" not in err
