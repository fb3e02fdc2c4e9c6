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
