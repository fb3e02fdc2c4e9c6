"""Our own ONNX models: ``export`` stores what decoding needs in the metadata, and predicting
with the ONNX file (onnxruntime, no checkpoint) gives the PyTorch path's poses for AE, PersonLab
and the recurrent method (whose LSTM loop runs in PyTorch on the graph's features)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posegroup.data.coco import read_image
from posegroup.engine.predict import checkpoint_predictor
from posegroup.engine.train import train
from tests.helpers import make_dataset, tiny_config
from tests.helpers import recurrent_config

pytestmark = pytest.mark.usefixtures("one_thread")

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("onnx_own"), 3, size=64, people=(1, 3), seed=2)


def _config(kind: str, ann: Path, out: Path) -> dict:
    if kind == "recurrent":
        return recurrent_config(ann, out, steps=2, batch_size=2, options={"stop_threshold": 0.01, "joint_threshold": 0.0,
                                                                          "subpixel": "none"})
    cfg = tiny_config(ann, out, steps=2)
    # 2 training steps: low thresholds so that the decoders see people in the untrained maps; joints
    # at their peak cells (test_onnx_predicts_the_pytorch_poses says why)
    cfg["method"]["options"].update(detection_threshold=0.001, top_k=5, max_people=5, subpixel="none")
    if kind == "personlab":
        cfg["method"] = {"name": "personlab", "options": {"radius": 6.0, "decode": {"peak_threshold": 1e-4}}}
    return cfg


@pytest.fixture(scope="module", params=["ae", "personlab", "recurrent"])
def exported(request, data, tmp_path_factory):
    from posegroup.engine.export import export_onnx
    out = tmp_path_factory.mktemp(request.param)
    run = train(_config(request.param, data, out / "run"), progress=False)
    return request.param, Path(run["checkpoint"]), export_onnx(run["checkpoint"], out / "m.onnx")


def _meta(path: Path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props["posegroup"]), props["posegroup.torch_state"]


def test_metadata_says_what_decoding_needs(exported):
    kind, _, path = exported
    meta, state = _meta(path)
    assert meta["method"] == kind and meta["stride"] == 4 and meta["input_multiple"] == 16
    assert meta["keypoint_set"]["name"] == "coco17" and len(meta["keypoint_set"]["sigmas"]) == 17
    assert meta["test"]["input_size"] == 64
    # the recurrent graph ends at the features: its LSTM head's weights travel in the metadata
    assert meta["graph"] == ("export_forward" if kind == "recurrent" else "forward")
    assert bool(state) == (kind == "recurrent")
    if kind == "recurrent":
        from posegroup.engine.onnx_model import decode_state
        assert all(k.startswith("head.") for k in decode_state(state))


def test_onnx_graph_equals_the_pytorch_network_within_float32_rounding(exported):
    """The graph's output (AE / PersonLab: the last stack's maps; recurrent: the features the LSTM
    reads) equals the PyTorch network's on the same input, within float32 rounding: both sum the
    same terms in float32 in their own order, so each lies within its rounding error e of the
    exact (float64) result and the two within e_torch + e_ort. e_torch is measured here against
    the network in float64; e_ort is of the same order (the same sums, another order): allowed
    4 e_torch (and at least 1e-6, float32's resolution at these magnitudes)."""
    import copy

    import torch
    from posegroup.engine.checkpoint import load_model
    from posegroup.engine.onnx_model import load_onnx_model
    kind, ckpt, path = exported
    model, _, _ = load_model(ckpt)
    onnx_model = load_onnx_model(path)[0]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def graph(m, x):
        with torch.no_grad():
            return m.export_forward(x) if kind == "recurrent" else m(x)[-1]

    ours, ort = graph(model.eval(), x), graph(onnx_model, x)
    exact = graph(copy.deepcopy(model).double().eval(), x.double())
    e_torch = float((ours.double() - exact).abs().max())
    assert ours.shape == ort.shape and e_torch < 1e-4 * float(exact.abs().max()) + 1e-6
    assert float((ort - ours).abs().max()) <= max(4 * e_torch, 1e-6)


def test_onnx_predicts_the_pytorch_poses(exported, data):
    """End to end, the same poses: the decoders read maps that agree within float32 rounding
    (the test above: ~1e-6 here), so a pose can differ only by what the decoding makes of that,
    under the 1e-3 px allowed, unless an argmax or a threshold meets a tie within 1e-6 (then the
    test would fail, and name it). The AE and recurrent models here place joints at their peak
    cells (``subpixel: none``): their sub-cell fits read log h, whose error 1e-6 / h is ~1e-3 at
    the faint peaks (h ~ 1e-3) of these two-step models, and a flat peak turns that into more
    than 1e-3 px; the fits are the same Python on the same maps either way."""
    from posegroup.engine.onnx_model import load_onnx_model
    from posegroup.engine.predictor import Predictor
    kind, ckpt, path = exported
    torch_pred, method, _ = checkpoint_predictor(ckpt, device="cpu")
    onnx_pred, onnx_method = Predictor.load(path).run, load_onnx_model(path)[1]
    assert onnx_method.name == kind
    people = 0
    for name in ("img000.png", "img001.png", "img002.png"):
        image = read_image(data.parent / name)
        for img in (image, np.ascontiguousarray(image[:, :48])):   # square, and a narrower (padded) input
            a, b = torch_pred(img), onnx_pred(img)
            assert len(a) == len(b)
            assert a[0].shape == b[0].shape
            np.testing.assert_allclose(a[0], b[0], atol=1e-3)
            np.testing.assert_allclose(a[1], b[1], atol=1e-4)
            people += len(a[0])
    assert people > 0, "the comparison saw no person"


def test_cli_predict_and_evaluate_read_the_metadata(exported, data, tmp_path, capsys):
    from posegroup.cli import main
    kind, ckpt, path = exported
    images = [str(data.parent / "img000.png"), str(data.parent / "img001.png")]
    assert main(["--quiet", "predict", *images, "--weights", str(ckpt), "--out", str(tmp_path / "pt"), "--no-draw"]) == 0
    assert main(["--quiet", "predict", *images, "--onnx", str(path), "--out", str(tmp_path / "ox"), "--no-draw"]) == 0
    a = json.loads((tmp_path / "pt" / "results.json").read_text())
    b = json.loads((tmp_path / "ox" / "results.json").read_text())
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra["keypoints"], rb["keypoints"], atol=2e-3)   # as test_onnx_predicts_...
    # a test flag the method does not take is refused, as with --weights
    extra = ["--multiscale-tags", "concat"] if kind != "ae" else ["--stop-threshold", "0.5"]   # AE's / recurrent's
    capsys.readouterr()
    assert main(["--quiet", "predict", *images, "--onnx", str(path), "--out", str(tmp_path / "x"), *extra]) == 2
    assert "is not a test option" in capsys.readouterr().err
    if kind == "ae":
        assert main(["--quiet", "evaluate", "--gt", str(data), "--onnx", str(path),
                     "--stats", str(tmp_path / "s.json")]) == 0
        assert main(["--quiet", "evaluate", "--gt", str(data), "--weights", str(ckpt),
                     "--stats", str(tmp_path / "t.json")]) == 0
        onnx_stats = json.loads((tmp_path / "s.json").read_text())
        torch_stats = json.loads((tmp_path / "t.json").read_text())
        assert onnx_stats["AP"] == pytest.approx(torch_stats["AP"], abs=1e-3)   # same poses (above): same AP


def test_a_foreign_file_without_metadata_is_refused(tmp_path):
    from posegroup.engine.onnx_model import OnnxModelError, load_onnx_model, read_metadata
    bare = tmp_path / "bare.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(bare))
    assert read_metadata(bare) is None
    with pytest.raises(OnnxModelError, match="bare.onnx: carries no posegroup metadata"):
        load_onnx_model(bare)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match="junk.onnx: not a readable ONNX model"):
        read_metadata(tmp_path / "junk.onnx")
