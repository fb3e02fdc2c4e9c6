"""``model.backbone: posenet_mobilenet`` under every method: the bundled configs train (two steps
each on a tiny dataset), the backbone's grid and input conventions, PersonLab's view of PoseNet's
own heads, one-line refusals of bad ``model`` keys, exact resume, and export -> predict --onnx."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posegroup.backbones.posenet import PoseNetBackbone, posenet_mobilenet
from posegroup.data.coco import read_image
from posegroup.engine.checkpoint import load_checkpoint, load_model
from posegroup.engine.config import ConfigError, load_config
from posegroup.engine.train import TrainingError, train
from posegroup.methods import build_method
from posegroup.skeleton import COCO17
from tests.helpers import assert_same_run, make_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = ("ae_posenet", "personlab_posenet", "recurrent_posenet")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("posenet_data"), 3, size=64, people=(1, 2), seed=4)


def small(name: str, ann: Path, out: Path, *, steps: int = 2, **model) -> dict:
    """The bundled config ``name`` on the tiny dataset: 64-px inputs, batch 2, ``steps`` steps."""
    over = {"data": {"train_ann": str(ann), "val_ann": None, "input_size": 64},
            "train": {"steps": steps, "batch_size": 2, "workers": 0, "amp": False, "checkpoint_every": 100,
                      "eval_every": 0, "log_every": 1, "out_dir": str(out)},
            "test": {"input_size": 64, "flip": False}}    # few people to find in maps two steps old
    if model:
        over["model"] = model
    return load_config(name, over)


@pytest.mark.parametrize("name", CONFIGS)
def test_two_steps_of_each_bundled_posenet_config(name, data, tmp_path):
    """Two steps train, the trained parts move (a frozen body does not), and the model rebuilt
    from the checkpoint predicts poses inside the image."""
    cfg = small(name, data, tmp_path / "run")
    run = train(cfg, progress=False)
    assert run["steps"] == 2 and np.isfinite(run["final_loss"])
    model, method, _ = load_model(tmp_path / "run" / "last.pt")
    pretrained = posenet_mobilenet(cfg["model"]["output_stride"]).state_dict()
    body = model.backbone.net.state_dict()
    moved = {k: not torch.equal(body[k], pretrained[k]) for k in body}
    frozen = cfg["model"]["freeze_backbone"]
    assert any(moved[k] for k in moved if k.startswith("blocks.")) != frozen
    if name != "recurrent_posenet":      # PoseNet's own heads fine-tune unless model.freeze_heads
        assert moved["heads.heatmaps.weight"] != cfg["model"].get("freeze_heads", False)
    img = read_image(data.parent / "img000.png")
    out = method.predict(model, img, input_size=64)
    poses = out[0]
    assert poses.ndim == 3 and poses.shape[1:] == (17, 3)
    assert (poses[..., 0] >= 0).all() and (poses[..., 0] <= img.shape[1]).all()


def test_backbone_puts_posenet_cells_on_the_project_centres():
    """The wrapper = PoseNet on the [-1, 1] image padded by s/2 before and s/2 + 1 after (s k + 1
    px, PoseNet's sizes), first and last row and column dropped: cell (i, j) at input
    ((j + 1/2) s, (i + 1/2) s), grid S/s."""
    from posegroup.data.transforms import normalize_image
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for s in (16, 8):
        wrap = PoseNetBackbone(s).eval()
        x = torch.from_numpy(normalize_image(image))[None]
        raw = torch.nn.functional.pad(wrap.net.prepare(image), (s // 2, s // 2 + 1) * 2)
        with torch.no_grad():
            got, want = wrap(x), wrap.net(raw)
        assert got["features"].shape[-2:] == (64 // s, 96 // s) and wrap.stride == wrap.input_multiple == s
        for key in want:
            torch.testing.assert_close(got[key], want[key][:, :, 1:-1, 1:-1], atol=2e-4, rtol=1e-4)


def test_personlab_reads_posenet_heads_in_its_layout():
    """The PersonLab network's heatmap / short / mid channels are PoseNet's, reordered into
    (x, y) per field, directed edges forward then backward, and divided by R."""
    from posegroup.methods.personlab import head
    method = build_method("personlab", COCO17, radius=32.0)
    net = method.build_model({"backbone": "posenet_mobilenet"}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw = net.backbone(x)
        heads = head.split(net(x)[0], 17, 32, offset_scale=32.0)
    torch.testing.assert_close(heads["heatmaps"], raw["heatmaps"])
    off, fwd, bwd = raw["offsets"], raw["displacement_fwd"], raw["displacement_bwd"]
    torch.testing.assert_close(heads["short_offsets"][:, 3, 0], off[:, 17 + 3])     # joint 3: x, then y
    torch.testing.assert_close(heads["short_offsets"][:, 3, 1], off[:, 3])
    torch.testing.assert_close(heads["mid_offsets"][:, 5, 0], fwd[:, 16 + 5])       # forward edge 5
    torch.testing.assert_close(heads["mid_offsets"][:, 16 + 2, 1], bwd[:, 2])       # backward edge 2: y
    assert list(method.edges[16 + 2]) == [COCO17.edges[2][1], COCO17.edges[2][0]]


@pytest.mark.parametrize("model,message", [
    ({"output_stride": 4}, r"model\.output_stride must be one of \[8, 16\]"),
    ({"freeze_backbone": "yes"}, r"model\.freeze_backbone must be true or false"),
    ({"freeze_heads": 1}, r"model\.freeze_heads must be true or false"),
    ({"backbone": "resnet50"}, r"model\.backbone must be 'posenet_mobilenet'"),
    ({"depth": 3}, r"unknown key\(s\) \['depth'\] in model"),
])
def test_bad_model_keys_are_one_config_line(model, message, data, tmp_path):
    cfg = small("ae_posenet", data, tmp_path / "run", **model)
    with pytest.raises(ConfigError, match=message) as err:
        train(cfg, progress=False)
    assert "\n" not in str(err.value) and "ae_posenet.yaml" in str(err.value)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_stride_mismatch_and_keypoint_set_are_refused(data, tmp_path):
    cfg = small("personlab_posenet", data, tmp_path / "run", output_stride=8)
    with pytest.raises(TrainingError, match=r"data\.stride is 16 but the network predicts at stride 8"):
        train(cfg, progress=False)
    from posegroup.skeleton import CROWDPOSE14
    crowd = build_method("ae", CROWDPOSE14)
    with pytest.raises(ValueError, match="predicts COCO-17 keypoints"):
        crowd.build_model({"backbone": "posenet_mobilenet"})


def test_posenet_resume_is_exact(data, tmp_path):
    """4 steps straight == 2 steps, stop, resume 2 (weights, optimizer, RNG), PersonLab on PoseNet."""
    straight = train(small("personlab_posenet", data, tmp_path / "a", steps=4), progress=False)
    cfg = small("personlab_posenet", data, tmp_path / "b", steps=4)
    assert train(cfg, max_steps=2, progress=False)["steps"] == 2
    second = train(cfg, resume=True, progress=False)
    assert second["start_step"] == 2 and second["steps"] == 4
    assert_same_run(load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt"))
    assert straight["final_loss"] == second["final_loss"]


#: Low thresholds, so that the decoders see people in maps two steps old.
_FEW_STEPS = {"ae_posenet": {"detection_threshold": 0.001, "top_k": 5, "max_people": 5},
              "personlab_posenet": {"decode": {"peak_threshold": 1e-4}},
              "recurrent_posenet": {"stop_threshold": 0.01, "joint_threshold": 0.0}}


@pytest.mark.parametrize("name", CONFIGS)
def test_export_then_predict_onnx_gives_the_pytorch_poses(name, data, tmp_path):
    """A PoseNet-backed model exports; ``predict --onnx`` reads its metadata (the stride) and
    gives the checkpoint's poses (AE with short offsets; recurrent: the graph ends at the
    features, the LSTM runs in PyTorch)."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from posegroup.cli import main
    from posegroup.engine.export import export_onnx
    cfg = small(name, data, tmp_path / "run")
    cfg["method"]["options"].update(_FEW_STEPS[name])
    ckpt = train(cfg, progress=False)["checkpoint"]
    path = export_onnx(ckpt, tmp_path / "m.onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["posegroup"])
    stride = cfg["model"]["output_stride"]
    assert meta["stride"] == meta["input_multiple"] == stride
    images = [str(data.parent / "img000.png"), str(data.parent / "img001.png")]
    assert main(["--quiet", "predict", *images, "--weights", str(ckpt), "--out", str(tmp_path / "pt"), "--no-draw"]) == 0
    assert main(["--quiet", "predict", *images, "--onnx", str(path), "--out", str(tmp_path / "ox"), "--no-draw"]) == 0
    a = json.loads((tmp_path / "pt" / "results.json").read_text())
    b = json.loads((tmp_path / "ox" / "results.json").read_text())
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra["keypoints"], rb["keypoints"], atol=2e-3)


def test_video_track_and_benchmark_speed_take_a_posenet_checkpoint(data, tmp_path, capsys):
    """``predict VIDEO --track`` and ``benchmark speed`` run a PoseNet-backed checkpoint."""
    import cv2
    from posegroup.cli import main
    cfg = small("personlab_posenet", data, tmp_path / "run")
    cfg["method"]["options"].update(_FEW_STEPS["personlab_posenet"])
    ckpt = train(cfg, progress=False)["checkpoint"]
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for i in (0, 1, 2, 1, 0):
        writer.write(cv2.imread(str(data.parent / f"img00{i}.png")))
    writer.release()
    assert main(["--quiet", "predict", str(clip), "--weights", str(ckpt), "--out", str(tmp_path / "v"), "--track"]) == 0
    people = json.loads((tmp_path / "v" / "clip.json").read_text())
    assert people and {p["frame"] for p in people} <= set(range(5)) and all("track_id" in p for p in people)
    capsys.readouterr()
    assert main(["--quiet", "benchmark", "speed", "--ann", str(data), "--weights", str(ckpt)]) == 0
    assert "| personlab | pytorch |" in capsys.readouterr().out


def test_ddp_two_cpu_processes_train_a_posenet_model(data, tmp_path):
    """torchrun --nproc_per_node=2 (gloo on CPU) trains ae_posenet: every parameter that requires
    a gradient gets one (PoseNet's heads AE does not read are left out), the ranks agree."""
    import subprocess
    import sys
    import textwrap
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, json, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from tests.engine.test_posenet_models import small
        from posegroup.engine.train import train
        s = train(small("ae_posenet", Path({str(data)!r}), Path({str(tmp_path / 'run')!r})), progress=False)
        Path({str(tmp_path)!r}, "result_" + os.environ["RANK"] + ".json").write_text(
            json.dumps([s["steps"], s["final_loss"]]))
    """))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script)], capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result_*.json"))]
    assert len(rows) == 2 and rows[0] == rows[1] and rows[0][0] == 2
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def test_ae_short_offsets_are_posenets_frozen_head(data, tmp_path):
    """``short_offsets``: PoseNet's offset head as the last 2K channels ((x, y) per joint, input
    px), untouched by training (no loss) while the heatmap head trains; predict (flip, two
    scales) places joints by them; with an hourglass it is one line."""
    method = build_method("ae", COCO17, short_offsets=True)
    net = method.build_model({"backbone": "posenet_mobilenet"}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, raw = net(x)[0], net.backbone(x)
    assert out.shape[1] == method.num_channels == 17 + 17 + 34
    torch.testing.assert_close(out[:, 34 + 2 * 5], raw["offsets"][:, 17 + 5])       # joint 5: x, then y
    torch.testing.assert_close(out[:, 34 + 2 * 5 + 1], raw["offsets"][:, 5])
    with pytest.raises(ValueError, match="short_offsets needs model.backbone: posenet_mobilenet"):
        method.build_model({"name": "tiny"})
    cfg = small("ae_posenet", data, tmp_path / "run", freeze_heads=False)    # the heatmap head trains
    assert cfg["method"]["options"]["short_offsets"] is True
    train(cfg, progress=False)
    model, method, _ = load_model(tmp_path / "run" / "last.pt")
    heads, pretrained = model.backbone.net.heads.state_dict(), posenet_mobilenet(16).heads.state_dict()
    assert torch.equal(heads["offsets.weight"], pretrained["offsets.weight"])
    assert not torch.equal(heads["heatmaps.weight"], pretrained["heatmaps.weight"])
    img = read_image(data.parent / "img001.png")
    poses, _ = method.predict(model, img, input_size=64, flip=True, scales=(1.0, 0.5), detection_threshold=0.0)
    assert len(poses) and np.isfinite(poses).all()


@pytest.mark.parametrize("name", ["ae_posenet", "personlab_posenet"])
def test_freeze_heads_trains_only_the_new_heads(name, data, tmp_path):
    """``model.freeze_heads``: two steps leave the MobileNet and PoseNet's pretrained heads exactly
    as shipped (without it the heads move: test_two_steps_of_each_bundled_posenet_config); the
    method's new head (AE tags, PersonLab long offsets / segmentation) is what trains."""
    from posegroup.backbones.posenet import SHIPPED_WEIGHTS, read_weights
    cfg = small(name, data, tmp_path / "run", freeze_backbone=True, freeze_heads=True)
    assert train(cfg, progress=False)["steps"] == 2
    model, _, _ = load_model(tmp_path / "run" / "last.pt")
    shipped = read_weights(SHIPPED_WEIGHTS)
    kept = {k.split("backbone.net.", 1)[1]: v for k, v in model.state_dict().items() if "backbone.net." in k}
    assert kept and all(torch.equal(v.float(), shipped[k]) for k, v in kept.items())
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and not any("backbone." in n for n in trained)


def test_recurrent_short_offsets_are_posenets_frozen_head(data, tmp_path):
    """Recurrent ``short_offsets``: the network keeps PoseNet's offset head (frozen) and exports
    its 2J channels after the features ((x, y) per joint, input px); ``network_outputs`` gives
    them in grid cells, a flip pass's made the image's (equal to the mirrored image's own, mapped
    back); training leaves the head as shipped; bad combinations are one line."""
    method = build_method("recurrent", COCO17, short_offsets=True, subpixel="offsets", hidden_width=8,
                          lstm1_layers=1)
    net = method.build_model({"backbone": "posenet_mobilenet"}).eval()
    from posegroup.data.transforms import normalize_image
    img = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(normalize_image(img))[None]
    with torch.no_grad():
        out, raw = net.export_forward(x), net.backbone(x)
    assert out.shape[1] == 384 + 34
    torch.testing.assert_close(out[:, 384 + 2 * 5], raw["offsets"][:, 17 + 5])       # joint 5: x, then y
    torch.testing.assert_close(out[:, 384 + 2 * 5 + 1], raw["offsets"][:, 5])
    plain = method.network_outputs(net, img, input_size=64, return_offsets=True)[4]
    np.testing.assert_allclose(plain, out[0, 384:].reshape(17, 2, 4, 4).numpy() / 16, atol=1e-4)
    both = method.network_outputs(net, img, input_size=64, flip=True, return_offsets=True)[4]
    mirrored = method.network_outputs(net, img[:, ::-1].copy(), input_size=64, return_offsets=True)[4]
    back = mirrored[np.asarray(COCO17.flip_index)][..., ::-1] * np.array([-1.0, 1.0]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(both, (plain + back) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="short_offsets needs model.backbone: posenet_mobilenet"):
        method.build_model({"backbone": "tiny"})
    with pytest.raises(ValueError, match="'subpixel' .* 'offsets', which needs method.options.short_offsets"):
        build_method("recurrent", COCO17, subpixel="offsets")
    cfg = small("recurrent_posenet", data, tmp_path / "run", freeze_backbone=False)
    cfg["method"]["options"].update(short_offsets=True, subpixel="offsets")
    train(cfg, progress=False)
    model, method, _ = load_model(tmp_path / "run" / "last.pt")
    heads = model.backbone.net.heads.state_dict()
    assert torch.equal(heads["offsets.weight"], posenet_mobilenet(8).heads.state_dict()["offsets.weight"])
    poses, _ = method.predict(model, read_image(data.parent / "img001.png"), input_size=64, stop_threshold=0.0)
    assert len(poses) and np.isfinite(poses).all()


def test_recurrent_joint_prior_is_posenets_heatmaps(data, tmp_path):
    """``joint_prior``: the features the LSTM reads end with PoseNet's J joint probabilities
    (sigmoid of its frozen heatmap head), unnormalised; ``gate`` makes each step's heatmaps the
    prior times sigmoid of LSTM1's output (hand-set output: 0.75 x prior), with a flip pass's
    prior swapped left/right back to the image's joints; training leaves the head as shipped;
    an hourglass or a bad value is one line."""
    from posegroup.data.transforms import normalize_image
    from posegroup.methods.recurrent.head import RecurrentHead
    method = build_method("recurrent", COCO17, joint_prior="gate", hidden_width=8, lstm1_layers=1)
    net = method.build_model({"backbone": "posenet_mobilenet", "output_stride": 8}).eval()
    img = (np.random.default_rng(5).random((64, 64, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(normalize_image(img))[None]
    with torch.no_grad():
        out, raw = net.export_forward(x), net.backbone(x)
        mirrored = torch.sigmoid(net.backbone(x.flip(3))["heatmaps"][0]).flip(2)[list(COCO17.flip_index)]
        net.head.norm.running_mean.fill_(0.5)                            # the features' statistics only
        normed = net.head.norm(out)
    prior = torch.sigmoid(raw["heatmaps"])[0]
    assert out.shape[1] == 384 + 17
    torch.testing.assert_close(out[0, 384:], prior)
    torch.testing.assert_close(normed[:, 384:], out[:, 384:])            # left as probabilities
    torch.testing.assert_close(normed[:, :384], out[:, :384] - 0.5, atol=1e-4, rtol=1e-4)
    with torch.no_grad():                                                # sigmoid(log 3) = 0.75
        net.head.out1.weight.zero_()
        net.head.out1.bias.fill_(float(np.log(3.0)))
    plain = method.network_outputs(net, img, input_size=64).heatmaps[0]
    np.testing.assert_allclose(plain, 0.75 * prior.numpy(), atol=1e-5)
    both = method.network_outputs(net, img, input_size=64, flip=True).heatmaps[0]
    np.testing.assert_allclose(both, 0.75 * (prior + mirrored).numpy() / 2, atol=1e-5)
    assert not np.allclose(both, 0.75 * (prior + mirrored.flip(0)).numpy() / 2, atol=1e-3)   # swap matters
    with pytest.raises(ValueError, match="joint_prior needs model.backbone: posenet_mobilenet"):
        method.build_model({"backbone": "tiny"})
    with pytest.raises(ValueError, match="joint_prior"):
        build_method("recurrent", COCO17, joint_prior="sum")
    with pytest.raises(ValueError, match="joint_prior must be one of"):
        RecurrentHead(8, 2, joint_prior="sum")
    cfg = small("recurrent_posenet", data, tmp_path / "run")
    cfg["method"]["options"].update(joint_prior="input", seed_context=False, feature_width=16)
    train(cfg, progress=False)
    model, method, _ = load_model(tmp_path / "run" / "last.pt")
    shipped = posenet_mobilenet(8).heads.state_dict()["heatmaps.weight"]
    assert torch.equal(model.backbone.net.heads.state_dict()["heatmaps.weight"], shipped)
    poses, _ = method.predict(model, read_image(data.parent / "img001.png"), input_size=64, stop_threshold=0.0)
    assert len(poses) and np.isfinite(poses).all()


def test_recurrent_seed_prior_trains_resumes_and_predicts(data, tmp_path):
    """``joint_prior: seed`` with ``seed_matching``, ``seed_context``, ``seed_type`` and ``lstm1_dilation``
    through the engine: 4 steps straight == 2 steps, stop, resume 2; then predict with omega 0,
    a test-time option: every step is unrolled."""
    def config(out):
        cfg = small("recurrent_posenet", data, tmp_path / out, steps=4)
        cfg["method"]["options"].update(joint_prior="seed", seed_matching=True, feature_width=16,
                                        seed_context=True, seed_type=True, lstm1_dilation=2)
        return cfg
    straight = train(config("a"), progress=False)
    cfg = config("b")
    assert train(cfg, max_steps=2, progress=False)["steps"] == 2
    second = train(cfg, resume=True, progress=False)
    assert_same_run(load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt"))
    assert straight["final_loss"] == second["final_loss"]
    model, method, _ = load_model(tmp_path / "b" / "last.pt")
    assert model.head.joint_prior == "seed" and model.head.seed_context and model.head.seed_type
    assert model.head.lstm1.cells[-1].gates.dilation == (2, 2)
    poses, _ = method.predict(model, read_image(data.parent / "img001.png"), input_size=64, stop_threshold=0.0)
    assert len(poses) == method.settings.step_limit and np.isfinite(poses).all()


def test_ae_tag_coords_add_each_cells_position_to_the_tags(data, tmp_path):
    """``tag_coords``: each joint's tag dimensions 0 and 1 are the head's output plus the cell's
    (x, y) in cells, the other dimensions and channels the head's alone; it trains and predicts
    (flip, two scales); tag_dim 1 or an hourglass is one line."""
    method = build_method("ae", COCO17, tag_dim=3, tag_coords=True, short_offsets=True)
    net = method.build_model({"backbone": "posenet_mobilenet"}).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        out = net(x)[0]
        head = net.tag_head(net.backbone(x)["features"])
    h, w = out.shape[-2:]
    assert (h, w) == (4, 5) and out.shape[1] == method.num_channels == 17 + 17 * 3 + 34
    xs, ys = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")[::-1]
    for k in (0, 16):
        c = 17 + 3 * k
        torch.testing.assert_close(out[0, c], head[0, 3 * k] + xs)
        torch.testing.assert_close(out[0, c + 1], head[0, 3 * k + 1] + ys)
        torch.testing.assert_close(out[0, c + 2], head[0, 3 * k + 2])
    with pytest.raises(ValueError, match="tag_coords needs tag_dim >= 2"):
        build_method("ae", COCO17, tag_coords=True)
    with pytest.raises(ValueError, match="tag_coords needs model.backbone: posenet_mobilenet"):
        build_method("ae", COCO17, tag_dim=2, tag_coords=True).build_model({"name": "tiny"})
    cfg = small("ae_posenet", data, tmp_path / "run")
    cfg["method"]["options"].update(tag_dim=2, tag_coords=True)
    train(cfg, progress=False)
    model, method, _ = load_model(tmp_path / "run" / "last.pt")
    assert model.tag_coords == (17, 2)
    poses, _ = method.predict(model, read_image(data.parent / "img001.png"), input_size=64, flip=True,
                              scales=(1.0, 0.5), detection_threshold=0.0)
    assert len(poses) and np.isfinite(poses).all()
