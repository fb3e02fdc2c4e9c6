"""PoseNet's MobileNetV1 as a PyTorch module: equal to Google's ONNX network on real images, the
shipped weights, output stride 8, flip fusion, and one-line refusals of bad weight files."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from posegroup.backbones.posenet import (BLOCKS, HEADS, SHIPPED_WEIGHTS, PoseNetMobileNet, WeightError,
                                         convert_onnx, posenet_mobilenet, read_weights)
from posegroup.methods.personlab.posenet import POSENET_EDGES, PoseNetONNX, flip_outputs
from posegroup.skeleton import COCO17
from tests.conftest import shared_file

ONNX = "models/posenet_mobilenetv1_dyn.onnx"
NAMES = ("heatmaps", "offsets", "displacement_fwd", "displacement_bwd")


def _real_images(n: int):
    ann = shared_file("coco_images/person_keypoints_local_images.json")
    images = json.loads(ann.read_text())["images"][:n]
    return [cv2.imread(str(ann.parent / im["file_name"]))[:, :, ::-1].copy() for im in images]


def test_module_equals_onnxruntime_on_real_images(one_thread):
    """Every head of the module equals onnxruntime's on real photos, within float32 rounding.

    Both evaluate the same 31 convolutions in float32, each in its own summation order; the same
    network in float64 stands for the exact result. Each float32 run lies within its rounding
    error e of it, so the two lie within e_ours + e_ort of each other (triangle inequality).
    e_ours is measured here, in the run; e_ort is of the same order (the same terms summed in
    float32 in another order): the bound allowed is 4 e_ours per head (measured: onnxruntime's
    error up to 1.9 e_ours, the difference up to 2.0 e_ours; about 1e-3 px on 100-px offsets)."""
    path = shared_file(ONNX)
    ref = PoseNetONNX(path, threads=1)
    net = posenet_mobilenet(16, weights=path)
    exact = posenet_mobilenet(16, weights=path).double()
    for image in _real_images(3):
        x, _ = ref.preprocess(image)
        outs = ref.run_graph(x)
        with torch.no_grad():
            ours = net(torch.from_numpy(x).permute(0, 3, 1, 2))
            truth = exact(torch.from_numpy(x).double().permute(0, 3, 1, 2))
        for name, r in zip(NAMES, outs):
            got = ours[name].permute(0, 2, 3, 1).numpy()
            e_ours = np.abs(got - truth[name].permute(0, 2, 3, 1).numpy()).max()
            assert got.shape == r.shape and 0 < e_ours < 1e-5 * np.abs(r).max() + 1e-4
            assert np.abs(got - r).max() <= 4 * e_ours, name


def test_shipped_weights_are_the_onnx_weights_in_float16():
    """The package's file holds Google's weights rounded to float16, tensor by tensor."""
    ref = read_weights(shared_file(ONNX))
    shipped = read_weights(SHIPPED_WEIGHTS)
    assert set(ref) == set(shipped)
    for k in ref:
        assert torch.equal(shipped[k], ref[k].half().float()), k
    assert (SHIPPED_WEIGHTS.parent / "LICENSE.posenet.txt").is_file()


def test_output_stride_8_dilates_with_the_same_weights():
    """Stride 8: grid (H - 1) / 8 + 1; block 6 is unstrided and every later 3x3 depthwise conv
    is dilated 2 with padding 2; the weights load unchanged."""
    net8 = posenet_mobilenet(8)
    x = torch.zeros(1, 3, 129, 97)
    with torch.no_grad():
        out = net8(x)
    assert out["heatmaps"].shape == (1, 17, 17, 13) and out["features"].shape[1] == 384
    strided = [i for i, b in enumerate(net8.blocks) if b.depthwise.stride == (2, 2)]
    dilated = [i for i, b in enumerate(net8.blocks) if b.depthwise.dilation == (2, 2)]
    assert strided == [1, 3] and dilated == list(range(6, len(BLOCKS)))
    assert all(net8.blocks[i].depthwise.padding == (2, 2) for i in dilated)
    net16 = posenet_mobilenet(16)
    assert all(torch.equal(a, b) for a, b in zip(net8.state_dict().values(), net16.state_dict().values()))
    with torch.no_grad():
        assert net16(x)["heatmaps"].shape == (1, 17, 9, 7)
    with pytest.raises(ValueError, match="output_stride"):
        PoseNetMobileNet(32)


def test_flip_outputs_by_hand():
    """A left-wrist peak at column j of the mirrored input's outputs is a right-wrist peak at
    column w - 1 - j; its x offset changes sign, its y offset does not; the displacement of edge
    l_elb -> l_wri becomes that of r_elb -> r_wri, x negated."""
    h, w, k, e = 3, 5, 17, len(POSENET_EDGES)
    heat, off = np.zeros((h, w, k)), np.zeros((h, w, 2 * k))
    fwd, bwd = np.zeros((h, w, 2 * e)), np.zeros((h, w, 2 * e))
    lw, rw = COCO17.names.index("l_wri"), COCO17.names.index("r_wri")
    le, re = POSENET_EDGES.index((7, 9)), POSENET_EDGES.index((8, 10))
    heat[1, 1, lw] = 5.0
    off[1, 1, lw], off[1, 1, k + lw] = 2.0, 3.0             # y, x
    fwd[1, 1, le], fwd[1, 1, e + le] = -4.0, 6.0
    h2, o2, f2, b2 = flip_outputs(heat, off, fwd, bwd, COCO17.flip_index)
    assert h2[1, 3, rw] == 5.0 and h2.sum() == 5.0
    assert o2[1, 3, rw] == 2.0 and o2[1, 3, k + rw] == -3.0 and np.abs(o2).sum() == 5.0
    assert f2[1, 3, re] == -4.0 and f2[1, 3, e + re] == -6.0 and np.abs(f2).sum() == 10.0
    assert not b2.any()


@pytest.mark.parametrize("fault", ["missing", "truncated", "foreign", "shape", "nan"])
def test_bad_weight_file_is_one_line(tmp_path, fault):
    path = tmp_path / "w.pt"
    state = {k: v.clone() for k, v in PoseNetMobileNet(16).state_dict().items()}
    if fault == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:1000])
    elif fault == "foreign":
        torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    elif fault == "shape":
        state["heads.heatmaps.weight"] = torch.zeros(16, 384, 1, 1)
        torch.save(state, path)
    elif fault == "nan":
        state["stem.bias"][0] = float("nan")
        torch.save(state, path)
    with pytest.raises(WeightError) as err:
        posenet_mobilenet(16, weights=path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    assert {"missing": "not found", "truncated": "not a readable", "foreign": "not PoseNet",
            "shape": "heads.heatmaps.weight has shape (16, 384, 1, 1)", "nan": "non-finite"}[fault] in msg


def test_truncated_onnx_is_one_line(tmp_path):
    path = tmp_path / "posenet.onnx"
    path.write_bytes(shared_file(ONNX).read_bytes()[:100000])
    with pytest.raises(WeightError, match="posenet.onnx: "):
        read_weights(path)


def test_convert_onnx_writes_the_shipped_file(tmp_path):
    out = convert_onnx(shared_file(ONNX), tmp_path / "w.pt")
    a, b = torch.load(out, weights_only=True), torch.load(SHIPPED_WEIGHTS, weights_only=True)
    assert set(a) == set(b) == set(PoseNetMobileNet(16).state_dict()) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float16 for v in a.values())
    assert set(HEADS) == {n.split(".")[1] for n in a if n.startswith("heads.")}
