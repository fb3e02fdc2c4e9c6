"""AE decode benchmark: layouts read right, figures consistent, AP matching COCOeval."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from posegroup.methods.ae.bench import (AE_NOISE_LEVELS, ae_coco_results, ae_noise_knobs, ae_noisy_outputs,
                                        ae_perfect_outputs, benchmark_decode_ae)
from posegroup.engine.benchmark import _coco_keypoint_ap
from posegroup.evaluation import coco_layouts


def test_coco_layouts_match_pycocotools(coco_val_gt):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_val_gt))
    lays = coco_layouts(coco_val_gt)
    assert len(lays) == 511
    for lay in lays[:60]:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=lay["image_id"], iscrowd=False))
        want = [a for a in anns if a["num_keypoints"] > 0]
        assert lay["keypoints"].shape == (len(want), 17, 3)
        for kp, a in zip(lay["keypoints"], want):
            np.testing.assert_array_equal(kp.reshape(-1), a["keypoints"])


def test_perfect_outputs_scale_and_results(coco_val_gt):
    outs = ae_perfect_outputs(coco_val_gt, num_images=3)
    with open(coco_val_gt) as f:
        im = json.load(f)["images"][0]
    assert outs[0]["scale"] == pytest.approx(max(im["width"], im["height"]) / 128)
    assert outs[0]["heatmaps"].shape == (17, 128, 128) and outs[0]["tags"].shape == (17, 128, 128, 1)
    res = ae_coco_results(outs, subpixel="quadratic", nms_ties="first", gated_matching=True)
    assert {r["image_id"] for r in res} <= {o["image_id"] for o in outs}
    assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in res)
    # each ground-truth keypoint is reproduced in image pixels by some result
    lay = coco_layouts(coco_val_gt, 1)[0]
    pts = np.array([r["keypoints"] for r in res if r["image_id"] == lay["image_id"]]).reshape(-1, 17, 3)
    for person in lay["keypoints"]:
        lab = person[:, 2] > 0
        err = np.abs(pts[:, lab, :2] - person[None, lab, :2]).max(axis=(1, 2)).min()
        assert err < 0.1


def test_benchmark_decode_ae_figures(coco_val_gt, capsys):
    res = benchmark_decode_ae(coco_val_gt, noise="mild", num_images=30, repeats=1, threads=1, score_ap=_coco_keypoint_ap)
    out = capsys.readouterr().out
    assert "speed ratio" in out and "COCO AP" in out and "reference" in out
    assert res["num_images"] == 30 and res["noise"] == AE_NOISE_LEVELS["mild"]
    for name in ("default", "reference", "spec"):
        r = res["presets"][name]
        assert sum(b["images"] for b in r["by_people"].values()) == 30
        assert set(r["by_people"]) <= {"1", "2-3", "4-6", "7+"} and r["ms"] > 0
        assert 0.3 <= r["ap"] <= 1.0
    assert res["speed_ratio"] == pytest.approx(res["presets"]["reference"]["ms"] / res["presets"]["default"]["ms"])
    assert res["ap_gain"] == pytest.approx(res["presets"]["default"]["ap"] - res["presets"]["reference"]["ap"])
    with pytest.raises(ValueError, match="repeats"):
        benchmark_decode_ae(coco_val_gt, num_images=1, repeats=0, score_ap=_coco_keypoint_ap)


def test_noise_knobs_validated_by_name():
    assert ae_noise_knobs("hard") == AE_NOISE_LEVELS["hard"]
    assert ae_noise_knobs("clean", tag_std=0.3)["tag_std"] == 0.3
    for knob, bad in (("tag_std", -0.1), ("drop_prob", 1.5), ("amplitude_jitter", float("nan")),
                      ("spurious_per_map", "2")):
        with pytest.raises(ValueError, match=knob):
            ae_noise_knobs("mild", **{knob: bad})
    with pytest.raises(ValueError, match="noise"):
        ae_noise_knobs("extreme")


def test_noisy_outputs_follow_their_knobs(coco_val_gt):
    from posegroup.methods.ae.decode import top_candidates

    lay = coco_layouts(coco_val_gt, 5)
    clean = ae_noisy_outputs(coco_val_gt, noise="clean", num_images=5)
    perfect = ae_perfect_outputs(coco_val_gt, num_images=5)
    for c, p in zip(clean, perfect):        # clean = perfect heatmaps
        np.testing.assert_allclose(c["heatmaps"], p["heatmaps"], atol=1e-6)
    a = ae_noisy_outputs(coco_val_gt, noise="hard", num_images=5, seed=3)
    b = ae_noisy_outputs(coco_val_gt, noise="hard", num_images=5, seed=3)
    np.testing.assert_array_equal(a[2]["tags"], b[2]["tags"])                        # seeded
    # every joint dropped: no peak reaches the detection threshold
    dropped = ae_noisy_outputs(coco_val_gt, noise="clean", num_images=5, drop_prob=1.0)
    assert all(o["heatmaps"].max() <= 0.1 for o in dropped)
    # spurious peaks only: about spurious_per_map extra local maxima per joint map
    extra = ae_noisy_outputs(coco_val_gt, noise="clean", num_images=5, spurious_per_map=3.0, seed=1)
    n_true = sum(int((lay_["keypoints"][..., 2] > 0).sum()) for lay_ in lay)
    n_peaks = sum(top_candidates(o["heatmaps"], top_k=1000, detection_threshold=0.05)[0].size for o in extra)
    assert 0.6 * 3 * 17 * 5 <= n_peaks - n_true <= 1.4 * 3 * 17 * 5
    # tag noise: the tag at each true peak is the person id plus N(0, tag_std)
    noisy = ae_noisy_outputs(coco_val_gt, noise="clean", num_images=5, tag_std=0.5, seed=2)
    dev = []
    for o, l in zip(noisy, lay):
        kp = l["keypoints"].copy()
        kp[..., :2] /= o["scale"]
        for n, person in enumerate(kp):
            for k, (x, y, v) in enumerate(person):
                if v > 0 and 0 <= x < 128 and 0 <= y < 128:
                    dev.append(o["tags"][k, int(y), int(x), 0] - 2.0 * n)
    dev = np.asarray(dev)
    assert dev.size > 100
    assert abs(np.median(dev)) < 0.1 and 0.4 < 1.4826 * np.median(np.abs(dev - np.median(dev))) < 0.6


def test_benchmark_decode_personlab_against_the_paper_path(coco_val_gt, capsys):
    from posegroup.methods.personlab.bench import benchmark_decode_personlab
    from posegroup.methods.personlab.decode import PAPER_HOUGH

    res = benchmark_decode_personlab(coco_val_gt, num_images=6, repeats=1, posenet=None, score_ap=_coco_keypoint_ap)
    out = capsys.readouterr().out
    assert "speed ratio" in out and "in-run baseline" in out
    rows = res["settings"]
    assert set(rows) == {"default", "paper", "exact", "exact paper"}
    assert rows["paper"]["options"] == PAPER_HOUGH and rows["default"]["options"] == {}
    for r in rows.values():
        assert sum(b["images"] for b in r["by_people"].values()) == 6
        assert r["ap"] >= 0.9 and r["ms"] > 0
    assert res["speed_ratio"] == pytest.approx(rows["paper"]["ms"] / rows["default"]["ms"])
    assert res["posenet"] is None
    with pytest.raises(ValueError, match="repeats"):
        benchmark_decode_personlab(coco_val_gt, num_images=1, repeats=0, posenet=None, score_ap=_coco_keypoint_ap)


def test_benchmark_decode_posenet_few_images(shared_data, capsys):
    pytest.importorskip("onnxruntime")
    from posegroup.methods.personlab.bench import benchmark_decode_posenet

    ann = shared_data / "coco_images" / "person_keypoints_local_images.json"
    model = shared_data / "models" / "posenet_mobilenetv1_dyn.onnx"
    if not (ann.is_file() and model.is_file()):
        pytest.skip("PoseNet model or images absent")
    res = benchmark_decode_posenet(ann, model, num_images=8, repeats=1, score_ap=_coco_keypoint_ap)
    assert res["num_images"] == 8 and set(res["settings"]) == {"default", "paper"}
    assert "PoseNet outputs" in capsys.readouterr().out
    # the same network's outputs: both decoder paths find the people (AP well above 0) and agree
    aps = [r["ap"] for r in res["settings"].values()]
    assert min(aps) > 0.1 and max(aps) - min(aps) < 0.1


def test_defaults_beat_the_reference_preset_under_noise(coco_val_gt):
    """The claim of the AE table in docs/decoders.md on a seeded subset (80 images)."""

    aps = {}
    for noise in ("clean", "mild", "hard"):
        outs = ae_noisy_outputs(coco_val_gt, noise=noise, num_images=80)
        ids = [o["image_id"] for o in outs]
        aps[noise] = {p: _coco_keypoint_ap(str(coco_val_gt), ae_coco_results(outs, preset=p), ids)
                      for p in ("default", "reference")}
    print(aps)
    assert aps["clean"]["default"] >= 0.99 and aps["clean"]["default"] >= aps["clean"]["reference"]
    assert aps["mild"]["default"] >= aps["mild"]["reference"] + 0.005
    assert aps["hard"]["default"] >= aps["hard"]["reference"] + 0.03
    assert aps["hard"]["default"] < aps["mild"]["default"] < aps["clean"]["default"]   # noise hurts
