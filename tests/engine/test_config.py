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
    f.write_text(MINIMAL.replace("method: {name: ae}\n", "") + "model: {name: tiny, whatever: 3}\ntest: {flip: true}\n"
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


def test_exponent_floats_without_a_dot(tmp_path):
    """``1e-3`` is a float in a file and in ``--set`` (PyYAML's YAML 1.1 alone reads a string);
    a quoted one and non-numbers stay strings, the safe loader itself is unchanged."""
    import yaml
    assert parse_override("method.options.pull_weight=3e-4") == {"method": {"options": {"pull_weight": 3e-4}}}
    assert parse_override("a.b=-2E+3")["a"]["b"] == -2000.0 and parse_override("a.b=7")["a"]["b"] == 7
    assert parse_override("a.b=[1e-3, e5, 1e, '5e-4']")["a"]["b"] == [1e-3, "e5", "1e", "5e-4"]
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", "method: {name: ae, options: {pull_weight: 5e-4}}"))
    cfg = load_config(f)
    assert cfg["method"]["options"] == {"pull_weight": 5e-4} and cfg["train"]["lr"] == 2e-4
    assert yaml.safe_load("1e-3") == "1e-3"


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "src" / "posegroup" / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "src" / "posegroup" / "configs" / f"{name}.yaml")   # method.options, test validated too
    assert cfg["method"]["name"] == name.split("_")[0]
    assert cfg["data"]["input_size"] % cfg["data"]["stride"] == 0


def test_bundled_configs_by_name_resolve_against_cwd(tmp_path, monkeypatch):
    """`posegroup train ae_tiny_synthetic`: a bundled config by bare name (with or without .yaml),
    its relative paths in the working directory; a config of one's own keeps its own folder;
    an unknown name is one line listing the bundled ones."""
    from posegroup.engine.config import bundled_configs, find_config
    assert {"ae_tiny_synthetic", "recurrent_tiny_synthetic"} <= set(bundled_configs())
    monkeypatch.chdir(tmp_path)
    for name in ("ae_tiny_synthetic", "ae_tiny_synthetic.yaml"):
        assert find_config(name) == bundled_configs()["ae_tiny_synthetic"]
        cfg = load_config(name)
        assert cfg["data"]["train_ann"] == str(tmp_path / "runs/synth/train/annotations.json")
        assert cfg["train"]["out_dir"] == str(tmp_path / "runs/ae_tiny_synthetic")
    assert load_config("recurrent_tiny_synthetic")["model"]["init_from"] == str(tmp_path / "runs/ae_tiny_synthetic/last.pt")
    own = tmp_path / "mine" / "ae_tiny_synthetic.yaml"              # a copy one edits: its own folder
    own.parent.mkdir()
    own.write_text(bundled_configs()["ae_tiny_synthetic"].read_text())
    assert load_config(own)["data"]["train_ann"] == str(own.parent / "runs/synth/train/annotations.json")
    (tmp_path / "ae_tiny_synthetic.yaml").write_text(MINIMAL)          # a file of the same name wins
    assert find_config("ae_tiny_synthetic.yaml") == Path("ae_tiny_synthetic.yaml")
    with pytest.raises(ConfigError, match=r"^ae_tiny: no such config file, nor a bundled config .*ae_tiny_synthetic"):
        load_config("ae_tiny")


def _write(tmp_path, train_extra: str = "", data_extra: str = "") -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text("method: {name: ae}\n"
                 f"data: {{train_ann: data/train.json{', ' + data_extra if data_extra else ''}}}\n"
                 f"train: {{{'' if 'steps:' in train_extra else 'steps: 10'}"
                 f"{', ' if train_extra and 'steps:' not in train_extra else ''}{train_extra}}}\n")
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
    ("steps: fast", "", "train.steps", "must be an integer, auto or null"),
    ("epochs: -1", "", "train.epochs", "must be > 0"),
    ("ema: 1", "", "train.ema", "must be < 1"),
    ("ema: 0", "", "train.ema", "must be > 0"),
    ("ema: yes", "", "train.ema", "must be a number or null"),
    ("checkpoint_every: 0", "", "train.checkpoint_every", "must be > 0"),
    ("log_every: -2", "", "train.log_every", "must be > 0"),
    ("workers: -1", "", "train.workers", "must be >= 0"),
    ("amp: 3", "", "train.amp", "must be true or false"),
    ("max_minutes: 0", "", "train.max_minutes", "must be > 0"),
    ("lr_schedule: {type: poly}", "", "train.lr_schedule.type", "must be step, cosine or constant"),
    ("lr_schedule: {milestones: [10, -1]}", "", "train.lr_schedule.milestones", "step numbers"),
    ("device: gpu7", "", "train.device", "not a device torch knows"),
    ("", "input_size: 0", "data.input_size", "must be >= 16"),
    ("", "input_size: -64", "data.input_size", "must be >= 16"),
    ("", "input_size: 1000000", "data.input_size", "must be <= 4096"),      # bounds: posegroup.limits
    ("batch_size: 1000000000", "", "train.batch_size", "must be <= 1024"),
    ("workers: 100000", "", "train.workers", "must be <= "),
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


# ---- method.options and test: validated against the method when the config is read ---------

@pytest.mark.parametrize("method,options,test,key,choice", [
    ("personlab", "{raduis: 10}", "{}", "method.options.raduis", "radius"),
    ("ae", "{detection_treshold: 0.2}", "{}", "method.options.detection_treshold", "detection_threshold"),
    ("ae", "{pull_wieght: 1.0e-3}", "{}", "method.options.pull_wieght", "pull_weight"),
    ("personlab", "{decode: {nms_raduis: 4}}", "{}", "method.options.decode.nms_raduis", "nms_radius"),
    ("recurrent", "{hiden_width: 8}", "{}", "method.options.hiden_width", "hidden_width"),
    ("ae", "{}", "{flp: true}", "test.flp", "test.flip"),
    ("personlab", "{}", "{refine: true}", "test.refine", None),
])
def test_misspelt_method_and_test_keys_name_file_key_and_choice(tmp_path, method, options, test, key, choice):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", f"method: {{name: {method}, options: {options}}}")
                 + f"test: {test}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ")
    assert f"'{key}'" in msg
    assert "valid: " in msg
    if choice:
        assert f"did you mean '{choice}'" in msg


@pytest.mark.parametrize("method,options,key", [
    ("ae", "{sigma: -1}", "method.options.sigma"),
    ("ae", "{tag_dim: two}", "method.options.tag_dim"),
    ("ae", "{push_form: nope}", "method.options.push_form"),
    ("ae", "{segmentation: 1}", "method.options.segmentation"),
    ("ae", "{subpixel: cubic}", "method.options.subpixel"),
    ("ae", "{flip: yes_please}", "method.options.flip"),
    ("personlab", "{radius: 0}", "method.options.radius"),
    ("personlab", "{radius: wide}", "method.options.radius"),
    ("personlab", "{loss_weights: {mid: -1}}", "method.options.loss_weights.mid"),
    ("personlab", "{loss_weights: {midd: 1}}", "method.options.loss_weights.midd"),
    ("personlab", "{decode: {nms_radius: -4}}", "method.options.decode.nms_radius"),
    ("personlab", "{decode: {refine_peaks: 3}}", "method.options.decode.refine_peaks"),
])
def test_bad_method_option_values_name_file_and_key(tmp_path, method, options, key):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", f"method: {{name: {method}, options: {options}}}"))
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and f"'{key}'" in msg, msg


def test_good_method_options_and_test_keys_load(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", "method: {name: ae, options: {sigma: 3, refine: true, "
                                 "detection_threshold: 0.2, segmentation: true, seg_threshold: 0.4}}")
                 + "test: {flip: true, scales: [1, 0.5], subpixel: quadratic, seg_decode: pose}\n")
    cfg = load_config(f)
    assert cfg["method"]["options"]["sigma"] == 3 and cfg["test"]["seg_decode"] == "pose"


def test_inference_is_the_other_name_of_the_test_section(tmp_path):
    """``inference:`` reads as ``test:`` (file and overrides); a config giving both is one line."""
    f, g = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f.write_text(MINIMAL + "test: {flip: true, input_size: 256}\n")
    g.write_text(MINIMAL + "inference: {flip: true, input_size: 256}\n")
    a, b = load_config(f), load_config(g)
    assert a["test"] == b["test"] == {"flip": True, "input_size": 256} and "inference" not in b
    assert load_config(f, overrides=parse_override("inference.input_size=128"))["test"] == {"flip": True,
                                                                                         "input_size": 128}
    (tmp_path / "both.yaml").write_text(MINIMAL + "test: {flip: true}\ninference: {input_size: 256}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "both.yaml")
    msg = str(err.value)
    assert "\n" not in msg and "'inference' and 'test'" in msg and "both.yaml" in msg, msg


def test_unknown_method_name_names_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("name: ae", "name: openpose"))
    with pytest.raises(ConfigError, match=r"c\.yaml: 'method\.name'.*openpose"):
        load_config(f)


def test_training_stops_before_any_step_on_an_option_the_keypoint_set_refuses(tmp_path):
    """joint_order can only be checked against the data's keypoint set: the error comes when the
    method is built, still before any step, still naming the file and the key."""
    from posegroup.engine.train import train
    from tests.helpers import make_dataset, tiny_config
    ann = make_dataset(tmp_path / "data", num_images=2)
    cfg = tiny_config(ann, tmp_path / "run", steps=2)
    cfg["method"]["options"] = {"joint_order": [0, 1, 2]}
    f = tmp_path / "c.yaml"
    import yaml
    cfg.pop("_source")
    f.write_text(yaml.safe_dump(cfg))
    loaded = load_config(f)                   # loads: no keypoint set yet
    with pytest.raises(ConfigError, match=r"c\.yaml: option 'method\.options\.joint_order'.*permutation"):
        train(loaded)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("*.pt"))


def test_a_key_given_twice_is_an_error(tmp_path):
    f = tmp_path / "twice.yaml"
    f.write_text(MINIMAL.replace("train: {steps: 10, lr: 2e-4}", "train:\n  lr: 1e-3\n  steps: 10\n  lr: 5.0"))
    with pytest.raises(ConfigError, match=r"twice.yaml: invalid YAML \(key 'lr' given twice \(lines 5 and 7\)\)"):
        load_config(f)
    f.write_text(MINIMAL + "base: &b {x: 1}\n")                  # merge keys (<<) may repeat a key
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(f)


@pytest.mark.parametrize("test,fault", [
    ("{scales: big}", "'test.scales' must be numbers in"),
    ("{scales: [1, 1000000]}", "'test.scales' must be numbers in"),
    ("{input_size: 1000000}", "'test.input_size' must be in [16, 4096]"),
    ("{input_size: 2048, scales: [1, 4]}", "'test.scales': input size 2048 x scale 4 is above"),
])
def test_test_sizes_are_bounded(tmp_path, test, fault):
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL + f"test: {test}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value).startswith(f"{f}: ") and fault in str(e.value), str(e.value)


@pytest.mark.parametrize("method,options,test,key,value", [
    ("ae", "{}", "{tag_threshold: -1}", "test.tag_threshold", "-1"),
    ("ae", "{}", "{detection_threshold: high}", "test.detection_threshold", "'high'"),
    ("ae", "{}", "{flip: 'yes'}", "test.flip", "'yes'"),
    ("ae", "{subpixel: quadratic}", "{preset: reference}", "test.subpixel", "'quadratic'"),
    ("personlab", "{}", "{nms_radius: -1}", "test.nms_radius", "-1"),
    ("recurrent", "{}", "{subpixel: foo}", "test.subpixel", "'foo'"),
    ("recurrent", "{}", "{subpixel: offsets}", "test.subpixel", "'offsets'"),
    ("recurrent", "{}", "{subpixel_blur: -1}", "test.subpixel_blur", "-1"),
])
def test_bad_test_values_name_file_key_and_value(tmp_path, method, options, test, key, value):
    """``test:`` values are checked by the method's inference settings when the config is read,
    over the defaults its ``method.options`` set: one line naming the file, the key and the value."""
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", f"method: {{name: {method}, options: {options}}}")
                 + f"test: {test}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and f"'{key}'" in msg and value in msg, msg


def test_good_test_values_load_and_method_options_defaults_reach_the_settings(tmp_path):
    from posegroup.methods import method_class
    f = tmp_path / "c.yaml"
    f.write_text(MINIMAL.replace("method: {name: ae}", "method: {name: personlab, options: {decode: {nms_radius: 4}}}")
                 + "test: {flip: true, scales: [1, 0.5], peak_threshold: 0.05, with_masks: false}\n")
    cfg = load_config(f)
    s = method_class("personlab").check_inference_options(cfg["test"], cfg["method"]["options"])
    assert (s.flip, s.scales, s.peak_threshold, s.with_masks, s.nms_radius) == (True, (1.0, 0.5), 0.05, False, 4.0)
