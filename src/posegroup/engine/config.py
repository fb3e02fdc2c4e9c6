"""Training / test configuration: YAML files merged over documented defaults.

A config is a nested dict with five sections. Keys marked *strict* are checked: an unknown key
(a typo) is an error naming the file and the dotted key. Sections marked *open* are passed on
unchanged to the component that owns them (method, backbone, decoder), which validates them.

``method`` (strict)
    ``name`` (required): "ae", "personlab" or "recurrent" (see :func:`posegroup.methods.build_method`).
    ``options`` (open, default ``{}``): keyword arguments of the method (loss weights, sigma...).
``model`` (open)
    Keyword arguments of :func:`posegroup.backbones.hourglass.hourglass_from_config`
    (``num_stacks``, ``depth``, ``base_width``, ``width_increase`` ...). Default ``{}``.
``data`` (strict)
    ``train_ann`` (required for training): COCO keypoint json of the training split.
    ``train_images``: image folder (default None: the dataset's default, file names as given
    in / relative to the json). ``val_ann``, ``val_images``: the evaluation split (default None:
    no periodic evaluation). ``val_max_images`` (default None = all): evaluate on the first n.
    ``keypoint_set`` (default None: read from the training json's categories; or a built-in
    name "coco17" / "crowdpose14"). ``input_size`` (default 512): square network input in px.
    ``stride`` (default 4): input pixels per output cell.
    ``augmentation`` (strict): ``enabled`` (True), ``scale_range`` ([0.75, 1.25]),
    ``max_rotation`` (30 degrees), ``max_translate`` (0.08, fraction of the input size),
    ``flip_prob`` (0.5), ``color_jitter`` (True).
``train`` (strict)
    ``batch_size`` (32, per process), ``lr`` (2e-4), ``weight_decay`` (0.0), ``optimizer``
    ("adam"), ``lr_schedule`` (strict): ``type`` ("step" | "cosine" | "constant", default
    "step"), ``milestones`` ([]: steps at which the lr is multiplied by ``gamma`` (0.1)),
    ``warmup_steps`` (0: linear warm-up from 0), ``min_lr_ratio`` (0.0: cosine floor).
    ``steps`` (None) or ``epochs`` (None): the length of training (one of them is required;
    ``steps`` wins). ``max_minutes`` (None: no wall-clock limit; training stops cleanly, with a
    checkpoint, when reached). ``workers`` (2: data loader processes), ``amp`` (True: mixed
    precision, used only when CUDA is there), ``grad_clip`` (0.0 = off: max gradient norm),
    ``checkpoint_every`` (1000 steps; a checkpoint is also written at the end), ``eval_every``
    (0 = only at the end when a val split is set; N = every N steps), ``seed`` (0),
    ``out_dir`` ("runs/train"), ``log_every`` (20 steps), ``device`` (None: cuda if available).
``test`` (open)
    Keyword arguments of ``method.predict(model, image, **test)``: e.g. ``flip`` (bool),
    ``scales`` (list), ``refine`` (bool), ``long_side`` (int) -- names defined by the method.

Paths (``data.*_ann``, ``data.*_images``, ``train.out_dir``) that are relative resolve
**relative to the folder of the config file** (not the current working directory), so a config
can be run from anywhere. A config given as a dict (no file) resolves against the CWD.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

#: Sections whose keys are not checked here (owned by the method / backbone / decoder).
OPEN_SECTIONS = ("method.options", "model", "test")

#: Keys that must be present (not None) after merging, for training.
REQUIRED_FOR_TRAINING = ("method.name", "data.train_ann")

#: Keys holding file-system paths, resolved relative to the config file.
PATH_KEYS = ("data.train_ann", "data.train_images", "data.val_ann", "data.val_images", "train.out_dir")

DEFAULTS: dict[str, Any] = {
    "method": {"name": None, "options": {}},
    "model": {},
    "data": {
        "train_ann": None,
        "train_images": None,
        "val_ann": None,
        "val_images": None,
        "val_max_images": None,
        "keypoint_set": None,
        "input_size": 512,
        "stride": 4,
        "augmentation": {
            "enabled": True,
            "scale_range": [0.75, 1.25],
            "max_rotation": 30.0,
            "max_translate": 0.08,
            "flip_prob": 0.5,
            "color_jitter": True,
        },
    },
    "train": {
        "batch_size": 32,
        "lr": 2e-4,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "lr_schedule": {"type": "step", "milestones": [], "gamma": 0.1, "warmup_steps": 0,
                        "min_lr_ratio": 0.0},
        "steps": None,
        "epochs": None,
        "max_minutes": None,
        "workers": 2,
        "amp": True,
        "grad_clip": 0.0,
        "checkpoint_every": 1000,
        "eval_every": 0,
        "seed": 0,
        "out_dir": "runs/train",
        "log_every": 20,
        "device": None,
    },
    "test": {},
}


class ConfigError(ValueError):
    """A bad configuration: the message names the file and the dotted key."""


def _merge(defaults: dict, user: dict, where: str, source: str, prefix: str = "") -> dict:
    """Recursively merge ``user`` over ``defaults``; unknown keys in strict sections raise."""
    out = copy.deepcopy(defaults)
    if not isinstance(user, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(user).__name__}")
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if dotted in OPEN_SECTIONS:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping, got {type(value).__name__}")
            out[key] = copy.deepcopy(value or {})
            continue
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ConfigError(f"{source}: unknown key '{dotted}' (known keys here: {known})")
        default = defaults[key]
        if isinstance(default, dict) and dotted not in OPEN_SECTIONS:
            out[key] = _merge(default, value if value is not None else {}, where, source, dotted + ".")
        else:
            out[key] = _coerce(value, default, dotted, source)
    return out


def _coerce(value: Any, default: Any, dotted: str, source: str) -> Any:
    """YAML reads ``2e-4`` as a string; turn numeric strings into floats where a float is due."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{source}: '{dotted}' must be a number, got {value!r}") from None
    return value


def _get(cfg: dict, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(cfg: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def merge_config(user: dict, *, source: str = "<dict>", base_dir: str | Path | None = None,
                 require_training: bool = True) -> dict:
    """Merge a user config dict over :data:`DEFAULTS`, check it and resolve its paths.

    Args:
        user: nested dict as read from YAML.
        source: name used in error messages (the file path).
        base_dir: folder that relative paths resolve against (default: the CWD).
        require_training: also require the keys in :data:`REQUIRED_FOR_TRAINING`.
    Returns: the full config (every default filled in), paths absolute, with an extra
    ``"_source"`` key holding ``source``.
    """
    cfg = _merge(DEFAULTS, user or {}, "root", source)
    required = REQUIRED_FOR_TRAINING if require_training else ("method.name",)
    for dotted in required:
        if _get(cfg, dotted) in (None, ""):
            raise ConfigError(f"{source}: missing required key '{dotted}'")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for dotted in PATH_KEYS:
        value = _get(cfg, dotted)
        if value:
            p = Path(str(value)).expanduser()
            _set(cfg, dotted, str(p if p.is_absolute() else (base / p).resolve()))
    sched = cfg["train"]["lr_schedule"]["type"]
    if sched not in ("step", "cosine", "constant"):
        raise ConfigError(f"{source}: 'train.lr_schedule.type' must be step, cosine or constant, got {sched!r}")
    if require_training and cfg["train"]["steps"] is None and cfg["train"]["epochs"] is None:
        raise ConfigError(f"{source}: missing required key 'train.steps' (or 'train.epochs')")
    cfg["_source"] = source
    return cfg


def load_config(path: str | Path, overrides: dict | None = None, *, require_training: bool = True) -> dict:
    """Read a YAML config file, merge it over the defaults and check it.

    Args:
        path: the YAML file. Relative paths inside resolve against its folder.
        overrides: nested dict merged over the file's content (e.g. from the command line).
        require_training: require ``data.train_ann`` and a length of training.
    Raises: :class:`ConfigError` naming the file for a missing/unreadable file, bad YAML, an
    unknown key or a missing required key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        user = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if overrides:
        user = deep_update(user, overrides)
    return merge_config(user, source=str(path), base_dir=path.resolve().parent,
                        require_training=require_training)


def deep_update(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` merged in recursively (dicts merge, others replace)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """``"train.lr=1e-3"`` -> ``{"train": {"lr": 0.001}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    out: dict = {}
    _set(out, key.strip(), yaml.safe_load(value))
    return out


def dump_config(cfg: dict) -> str:
    """YAML text of a config (the ``_source`` key left out)."""
    return yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False)
