"""Config loading: defaults merge, unknown/missing keys named with the file, path resolution."""
from __future__ import annotations

from pathlib import Path

import pytest

from posegroup.engine.config import ConfigError, DEFAULTS, load_config, merge_config, parse_override

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
method: {name: ae}
data: {train_ann: data/train.json}
train: {steps: 10, lr: 2e-4}
"""


def test_defaults_merge_and_relative_paths(tmp_path):
    f = tmp_path / "sub" / "c.yaml"
    f.parent.mkdir()
    f.write_text(MINIMAL)
    cfg = load_config(f)
    assert cfg["train"]["lr"] == pytest.approx(2e-4)          # YAML's "2e-4" string made a float
    assert cfg["train"]["batch_size"] == DEFAULTS["train"]["batch_size"]
    assert cfg["data"]["augmentation"]["flip_prob"] == 0.5
    assert cfg["data"]["train_ann"] == str((tmp_path / "sub" / "data" / "train.json").resolve())
    assert cfg["train"]["out_dir"] == str((tmp_path / "sub" / "runs" / "train").resolve())
    assert cfg["method"]["options"] == {} and cfg["test"] == {}


def test_unknown_key_names_file_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("train: {steps: 10, lr: 2e-4}", "train: {steps: 10, batch_szie: 3}"))
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'train\.batch_szie'"):
        load_config(f)
    f.write_text(MINIMAL + "data_x: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'data_x'"):
        load_config(f)


def test_open_sections_pass_through(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL + "model: {name: tiny, whatever: 3}\ntest: {flip: true}\n"
                 + "method: {name: ae, options: {pull_weight: 0.5}}\n")
    cfg = load_config(f)
    assert cfg["model"] == {"name": "tiny", "whatever": 3}
    assert cfg["method"]["options"] == {"pull_weight": 0.5} and cfg["test"] == {"flip": True}


def test_missing_keys_and_bad_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("method: {name: ae}\ntrain: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: missing required key 'data\.train_ann'"):
        load_config(f)
    f.write_text("method: {name: ae}\ndata: {train_ann: a.json}\n")
    with pytest.raises(ConfigError, match=r"missing required key 'train\.steps'"):
        load_config(f)
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config"):
        load_config(tmp_path / "nope.yaml")
    f.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="lr_schedule.type"):
        merge_config({"method": {"name": "ae"}, "data": {"train_ann": "a"},
                      "train": {"steps": 1, "lr_schedule": {"type": "poly"}}})


def test_overrides(tmp_path):
    assert parse_override("train.batch_size=3") == {"train": {"batch_size": 3}}
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL)
    cfg = load_config(f, overrides=parse_override("train.batch_size=3"))
    assert cfg["train"]["batch_size"] == 3 and cfg["train"]["steps"] == 10
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("train.batch_size")


@pytest.mark.parametrize("name", ["ae_hourglass_coco", "ae_tiny_synthetic", "personlab_tiny_synthetic"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg["method"]["name"] in ("ae", "personlab")
    assert cfg["data"]["input_size"] % cfg["data"]["stride"] == 0


def _write(tmp_path, train_extra: str = "", data_extra: str = "") -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text("method: {name: ae}\n"
                 f"data: {{train_ann: data/train.json{', ' + data_extra if data_extra else ''}}}\n"
                 f"train: {{steps: 10{', ' + train_extra if train_extra else ''}}}\n")
    return f


@pytest.mark.parametrize("train_extra,data_extra,key,fault", [
    ("batch_size: 0", "", "train.batch_size", "must be > 0"),
    ("batch_size: 2.5", "", "train.batch_size", "must be an integer"),
    ("lr: true", "", "train.lr", "must be a number"),
    ("lr: [0.1, 0.2]", "", "train.lr", "must be a number"),
    ("lr: -1e-3", "", "train.lr", "must be > 0"),
    ("lr: .nan", "", "train.lr", "must be a number"),
    ("steps: -5", "", "train.steps", "must be > 0"),
    ("steps: 0", "", "train.steps", "must be > 0"),
    ("epochs: -1", "", "train.epochs", "must be > 0"),
    ("checkpoint_every: 0", "", "train.checkpoint_every", "must be > 0"),
    ("log_every: -2", "", "train.log_every", "must be > 0"),
    ("workers: -1", "", "train.workers", "must be >= 0"),
    ("amp: 3", "", "train.amp", "must be true or false"),
    ("max_minutes: 0", "", "train.max_minutes", "must be > 0"),
    ("lr_schedule: {type: poly}", "", "train.lr_schedule.type", "must be step, cosine or constant"),
    ("lr_schedule: {milestones: [10, -1]}", "", "train.lr_schedule.milestones", "step numbers"),
    ("device: gpu7", "", "train.device", "not a device torch knows"),
    ("", "input_size: 0", "data.input_size", "must be > 0"),
    ("", "input_size: -64", "data.input_size", "must be > 0"),
    ("", "stride: 0", "data.stride", "must be > 0"),
    ("", "stride: four", "data.stride", "must be an integer"),
    ("", "augmentation: {flip_prob: 2}", "data.augmentation.flip_prob", "must be <= 1"),
    ("", "augmentation: {scale_range: [1.2, 0.8]}", "data.augmentation.scale_range", "0 < low <= high"),
])
def test_bad_values_name_file_and_key(tmp_path, train_extra, data_extra, key, fault):
    f = _write(tmp_path, train_extra, data_extra)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: '{key}' ") and fault in msg and "\n" not in msg, msg


def test_cuda_device_without_cuda_is_refused(tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    f = _write(tmp_path, "device: cuda")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'train\.device' is 'cuda' but CUDA is not available"):
        load_config(f)
    f = _write(tmp_path, "device: 'cuda:1'")
    with pytest.raises(ConfigError, match=r"'train\.device' is 'cuda:1' but CUDA is not available"):
        load_config(f)
    assert load_config(_write(tmp_path, "device: cpu"))["train"]["device"] == "cpu"


def test_good_values_pass_and_integral_floats_become_ints(tmp_path):
    cfg = load_config(_write(tmp_path, "steps: 1e3, batch_size: 8.0, lr: 1, checkpoint_every: 50"))
    assert cfg["train"]["steps"] == 1000 and isinstance(cfg["train"]["steps"], int)
    assert cfg["train"]["batch_size"] == 8 and isinstance(cfg["train"]["batch_size"], int)
    assert cfg["train"]["lr"] == 1 and cfg["train"]["checkpoint_every"] == 50
    # the same check applies to a config given as a dict and to command-line overrides
    with pytest.raises(ConfigError, match=r"<dict>: 'train\.batch_size' must be > 0"):
        merge_config({"method": {"name": "ae"}, "data": {"train_ann": "a"}, "train": {"steps": 1, "batch_size": 0}})
    with pytest.raises(ConfigError, match=r"'train\.lr' must be a number"):
        load_config(_write(tmp_path), overrides=parse_override("train.lr=true"))
