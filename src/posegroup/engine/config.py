"""Training / inference configuration: YAML files merged over documented defaults.

A config is a nested dict with five sections. Keys marked *strict* are checked: an unknown key
(a typo) is an error naming the file and the dotted key. Sections marked *open* are passed on
unchanged to the component that owns them (method, backbone, decoder), which validates them.

``method`` (strict)
    ``name`` (required): "ae", "personlab" or "recurrent" (see :func:`posegroup.methods.build_method`).
    ``options`` (open, default ``{}``): keyword arguments of the method (loss weights, sigma...).
``model`` (open)
    Keyword arguments of :func:`posegroup.backbones.hourglass.hourglass_from_config`
    (``num_stacks``, ``depth``, ``base_width``, ``width_increase``, ``output_stride``,
    ``head_split`` ...; ``head_split: outputs`` gives each kind of output the method predicts
    its own read-out, e.g. AE's heatmaps and tags). Default ``{}``.
``data`` (strict)
    ``train_ann`` (required for training): COCO keypoint json of the training split.
    ``train_images``: image folder (default None: the dataset's default, file names as given
    in / relative to the json). ``val_ann``, ``val_images``: the evaluation split (default None:
    no periodic evaluation). ``val_max_images`` (default None = all): evaluate on the first n.
    ``keypoint_set`` (default None: read from the training json's categories; or a built-in
    name "coco17" / "crowdpose14"). ``input_size`` (default 512; 16 to 4096): square network input in px.
    ``stride`` (default 4): input pixels per output cell.
    ``augmentation`` (strict): ``enabled`` (True), ``scale_range`` ([0.75, 1.25]),
    ``max_rotation`` (30 degrees), ``max_translate`` (0.08, fraction of the input size),
    ``flip_prob`` (0.5), ``color_jitter`` (True).
``train`` (strict)
    ``batch_size`` (32, per process; at most 1024), ``lr`` (2e-4; at most 10), ``weight_decay`` (0.0), ``optimizer``
    ("adam"), ``lr_schedule`` (strict): ``type`` ("step" | "cosine" | "constant", default
    "step"), ``milestones`` ([]: steps at which the lr is multiplied by ``gamma`` (0.1)),
    ``warmup_steps`` (0: linear warm-up from 0), ``min_lr_ratio`` (0.0: cosine floor).
    ``steps`` (None) or ``epochs`` (None): the length of training (one of them is required;
    ``steps`` wins). ``max_minutes`` (None: no wall-clock limit; training stops cleanly, with a
    checkpoint, when reached). ``steps: auto`` sizes the schedule to ``max_minutes`` on the
    machine it runs on: a fresh run times its first steps and fixes its length there (kept in
    the checkpoint, so a resume continues the same schedule; see :data:`posegroup.engine.train.AUTO_STEPS`). ``workers`` (2: data loader processes; at most 4 per CPU core, 8 on any machine), ``amp`` (True: mixed
    precision: float16 on CUDA, bfloat16 on CPUs with AMX/AVX512-BF16, else float32), ``grad_clip`` (0.0 = off: max gradient norm),
    ``ema`` (None = off; a decay in (0, 1): the checkpoint's ``model`` and the evaluations hold an
    exponential moving average of the weights, :func:`posegroup.engine.train.update_ema`),
    ``channels_last`` (False: the network's weights and input images in the NHWC memory format;
    ``posegroup benchmark step CONFIG`` times a training step both ways on your machine),
    ``checkpoint_every`` (1000 steps; a checkpoint is also written at the end), ``eval_every``
    (0 = only at the end when a val split is set; N = every N steps), ``seed`` (0),
    ``out_dir`` ("runs/train"), ``log_every`` (20 steps), ``device`` (None: cuda if available).
``test`` or ``inference`` (one section, two names; checked against the method)
    The inference options, keyword arguments of ``method.predict(model, image, **test)``
    (stored as ``test``): e.g. ``flip`` (bool),
    ``scales`` (list), ``refine`` (bool), ``input_size`` (int) -- the fields of the method's
    inference settings (:func:`posegroup.methods.inference_option_names`); an unknown name or a
    bad value is an error naming the file, ``test.<key>`` and the value (values checked by
    ``Method.check_inference_options``, over the defaults ``method.options`` set).
    ``method.options`` are validated by the method's settings object
    (:func:`posegroup.methods.check_options`) when the config is read, each fault naming the
    file and ``method.options.<key>``.

Values are checked when the config is read (:func:`validate_values`): sizes, strides, batch
size and step counts are positive integers, ``lr`` a positive number (``true`` is not a number),
probabilities in [0, 1], ``device`` one that is there -- each fault a one-line
:class:`ConfigError` naming the file and the dotted key.

Paths (``data.*_ann``, ``data.*_images``, ``train.out_dir``, ``model.init_from``) that are
relative resolve **relative to the folder of the config file** (not the current working
directory), so a config of your own can be run from anywhere. Two exceptions resolve against
the CWD: a config given as a dict (no file), and a *bundled* config -- the YAML files shipped
inside the package (``posegroup/configs/``, :func:`bundled_configs`), which
:func:`find_config` / :func:`load_config` also find by bare name (``ae_tiny_synthetic``), so
their ``runs/...`` paths land in the folder you run from, not in site-packages.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from ..limits import MAX_BATCH_SIZE, MAX_INPUT_SIZE, MIN_INPUT_SIZE, check_test_sizes, max_workers

#: Sections whose keys are not checked here (owned by the method / backbone / decoder).
OPEN_SECTIONS = ("method.options", "model", "test")

#: Keys that must be present (not None) after merging, for training.
REQUIRED_FOR_TRAINING = ("method.name", "data.train_ann")

#: The configs shipped inside the package (package data, found by bare name).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "configs"

#: Keys holding file-system paths, resolved relative to the config file.
PATH_KEYS = ("data.train_ann", "data.train_images", "data.val_ann", "data.val_images", "train.out_dir",
             "model.init_from")

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
        "ema": None,
        "channels_last": False,
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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` / ``3E5`` as floats the way YAML 1.2 and Python do
    (YAML 1.1 needs a dot, ``1.0e-3``: without this ``lr: 1e-3`` or ``--set ...=3e-4`` stayed
    a string, and a method's options or a saved config.yaml kept it so)."""


def _construct_mapping(loader, node, deep=False):
    """A mapping whose key appears twice is an error (YAML keeps the last one silently)."""
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:   # an unhashable key: the base loader says so
            continue
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (lines {first.start_mark.line + 1} and "
                f"{key_node.start_mark.line + 1})", key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def _read_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_Loader`; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


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


def inference_section(user: Any, source: str) -> Any:
    """``user`` with an ``inference:`` section under its other name ``test:`` (the section of the
    model's inference options, stored as ``test``); a config giving both is one
    :class:`ConfigError`. Anything that is not a mapping is returned unchanged."""
    if not isinstance(user, dict) or "inference" not in user:
        return user
    if "test" in user:
        raise ConfigError(f"{source}: 'inference' and 'test' are two names of one section (the inference "
                          f"options); give one")
    out = {k: v for k, v in user.items() if k != "inference"}
    out["test"] = user["inference"]
    return out


def merge_config(user: dict, *, source: str = "<dict>", base_dir: str | Path | None = None,
                 require_training: bool = True) -> dict:
    """Merge a user config dict over :data:`DEFAULTS`, check it and resolve its paths.

    Args:
        user: nested dict as read from YAML (``inference:`` is read as ``test:``,
            :func:`inference_section`).
        source: name used in error messages (the file path).
        base_dir: folder that relative paths resolve against (default: the CWD).
        require_training: also require the keys in :data:`REQUIRED_FOR_TRAINING`.
    Returns: the full config (every default filled in), paths absolute, with an extra
    ``"_source"`` key holding ``source``.
    """
    cfg = _merge(DEFAULTS, inference_section(user or {}, source), "root", source)
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
    validate_values(cfg, source)
    check_method_sections(cfg, source)
    if require_training and cfg["train"]["steps"] is None and cfg["train"]["epochs"] is None:
        raise ConfigError(f"{source}: missing required key 'train.steps' (or 'train.epochs')")
    cfg["_source"] = source
    return cfg


# ---- method sections -----------------------------------------------------------------------

def option_error(e: Exception, source: str, section: str = "method.options") -> ConfigError:
    """A method's one-line ValueError about option ``key`` as a :class:`ConfigError` naming the
    file and ``<section>.<key>``."""
    import re
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__

    def dotted(m) -> str:
        where = m.group(2) if m.group(2) and m.group(2).startswith(section) else section
        return f"option '{where}.{m.group(1)}'"
    msg = re.sub(r"option '([\w.]+)'(?: in ([\w.]+))?", dotted, msg, count=1)
    msg = re.sub(rf" in {re.escape(section)}[\w.]*$", "", msg)     # the section, already in the dotted key
    return ConfigError(f"{source}: {msg}")


def check_method_sections(cfg: dict, source: str) -> None:
    """``method.options`` validated by the method's settings, the ``test`` keys against its
    inference options (:func:`posegroup.methods.inference_option_names`) and their values by its
    inference settings (``Method.check_inference_options``, over the defaults ``method.options``
    set); each fault a one-line :class:`ConfigError` naming the file, the dotted key and the
    value."""
    import difflib
    from ..methods import check_options, method_class, inference_option_names
    name = _get(cfg, "method.name")
    if name in (None, ""):
        return
    try:
        method_class(name)
    except ValueError as e:
        raise ConfigError(f"{source}: 'method.name': {e}") from None
    try:
        check_options(name, _get(cfg, "method.options"))
    except (TypeError, ValueError) as e:
        raise option_error(e, source) from None
    valid = inference_option_names(name)
    for key in cfg.get("test") or {}:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean 'test.{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key 'test.{key}' for method {name!r}{hint}; "
                              f"valid: {', '.join(valid)}")
    try:
        check_test_sizes(cfg.get("test") or {}, lambda key: f"'test.{key}'")
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    try:
        method_class(name).check_inference_options(cfg.get("test"), _get(cfg, "method.options"), what="test")
    except (TypeError, ValueError) as e:
        raise option_error(e, source, "test") from None


# ---- value checks --------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_number(cfg: dict, dotted: str, source: str, *, integer: bool = False, minimum: float | None = None,
                  above: float | None = None, maximum: float | None = None, below: float | None = None,
                  optional: bool = False, words: tuple[str, ...] = ()) -> None:
    """Check ``cfg[dotted]`` is a finite number (an int when ``integer``; an integral float is
    turned into an int) within the bounds, or one of ``words`` (e.g. "auto"); one-line
    :class:`ConfigError` naming file and key."""
    import math
    v = _get(cfg, dotted)
    if (v is None and optional) or (isinstance(v, str) and v in words):
        return
    kind = ", ".join(["an integer" if integer else "a number", *words])
    if integer and isinstance(v, str):  # YAML reads 1e3 as a string
        try:
            v = float(v)
        except ValueError:
            pass
    if integer and isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if not _is_number(v) or (integer and not isinstance(v, int)) or not math.isfinite(v):
        raise ConfigError(f"{source}: '{dotted}' must be {kind}"
                          + (" or null" if optional else "") + f", got {v!r}")
    if above is not None and not v > above:
        raise ConfigError(f"{source}: '{dotted}' must be > {above:g}, got {v!r}")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{source}: '{dotted}' must be >= {minimum:g}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ConfigError(f"{source}: '{dotted}' must be <= {maximum:g}, got {v!r}")
    if below is not None and not v < below:
        raise ConfigError(f"{source}: '{dotted}' must be < {below:g}, got {v!r}")
    _set(cfg, dotted, v)


def _check_bool(cfg: dict, dotted: str, source: str) -> None:
    v = _get(cfg, dotted)
    if not isinstance(v, bool):
        raise ConfigError(f"{source}: '{dotted}' must be true or false, got {v!r}")


def check_device(device: Any, source: str | None, dotted: str = "train.device") -> None:
    """A device name torch understands and that is there (``cuda`` needs CUDA, ``cuda:N`` N GPUs);
    else a one-line :class:`ConfigError` naming ``source`` (the config file) and ``dotted`` (the
    key), or only ``dotted`` when ``source`` is None (a command-line flag: ``--device``)."""
    import torch
    if device is None:
        return
    what = f"{source}: '{dotted}'" if source else dotted
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"{what} must be a device name such as cpu or cuda, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{what} is not a device torch knows, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} is {device!r} but CUDA is not available here "
                              "(use cpu, or leave it unset: cuda when there is one)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} is {device!r} but there are only "
                              f"{torch.cuda.device_count()} CUDA devices")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{what} is {device!r} but MPS is not available here")
    elif dev.type != "cpu":
        raise ConfigError(f"{what} must be cpu, cuda[:N] or mps, got {device!r}")


def validate_values(cfg: dict, source: str) -> None:
    """Check the types and ranges of the strict sections' values (in place: integral floats
    become ints). Raises a one-line :class:`ConfigError` naming the file and the dotted key."""
    n = _check_number
    n(cfg, "data.input_size", source, integer=True, minimum=MIN_INPUT_SIZE, maximum=MAX_INPUT_SIZE)
    n(cfg, "data.stride", source, integer=True, above=0)
    n(cfg, "data.val_max_images", source, integer=True, above=0, optional=True)
    for key in ("enabled", "color_jitter"):
        _check_bool(cfg, f"data.augmentation.{key}", source)
    sr = _get(cfg, "data.augmentation.scale_range")
    if (not isinstance(sr, (list, tuple)) or len(sr) != 2 or not all(_is_number(v) for v in sr)
            or not 0 < sr[0] <= sr[1] or not sr[1] < float("inf")):
        raise ConfigError(f"{source}: 'data.augmentation.scale_range' must be [low, high] with 0 < low <= high, got {sr!r}")
    n(cfg, "data.augmentation.max_rotation", source, minimum=0)
    n(cfg, "data.augmentation.max_translate", source, minimum=0, maximum=1)
    n(cfg, "data.augmentation.flip_prob", source, minimum=0, maximum=1)

    n(cfg, "train.batch_size", source, integer=True, above=0, maximum=MAX_BATCH_SIZE)
    n(cfg, "train.lr", source, above=0, maximum=10)          # Adam's step is ~lr: above 10 diverges at once
    n(cfg, "train.weight_decay", source, minimum=0)
    opt = _get(cfg, "train.optimizer")
    if opt != "adam":
        raise ConfigError(f"{source}: 'train.optimizer' must be adam, got {opt!r}")
    sched = _get(cfg, "train.lr_schedule.type")
    if sched not in ("step", "cosine", "constant"):
        raise ConfigError(f"{source}: 'train.lr_schedule.type' must be step, cosine or constant, got {sched!r}")
    ms = _get(cfg, "train.lr_schedule.milestones")
    if ms is None:
        ms = []
        _set(cfg, "train.lr_schedule.milestones", ms)
    if not isinstance(ms, (list, tuple)):
        raise ConfigError(f"{source}: 'train.lr_schedule.milestones' must be a list of step numbers, got {ms!r}")
    for i in range(len(ms)):
        v = ms[i]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{source}: 'train.lr_schedule.milestones' must be a list of step numbers >= 0, got {ms!r}")
        ms[i] = v
    n(cfg, "train.lr_schedule.gamma", source, above=0)
    n(cfg, "train.lr_schedule.warmup_steps", source, integer=True, minimum=0)
    n(cfg, "train.lr_schedule.min_lr_ratio", source, minimum=0, maximum=1)
    n(cfg, "train.steps", source, integer=True, above=0, optional=True, words=("auto",))
    n(cfg, "train.epochs", source, integer=True, above=0, optional=True)
    n(cfg, "train.max_minutes", source, above=0, optional=True)
    n(cfg, "train.workers", source, integer=True, minimum=0, maximum=max_workers())   # 4 per CPU core
    _check_bool(cfg, "train.amp", source)
    n(cfg, "train.grad_clip", source, minimum=0)
    n(cfg, "train.ema", source, above=0, below=1, optional=True)
    _check_bool(cfg, "train.channels_last", source)
    n(cfg, "train.checkpoint_every", source, integer=True, above=0)
    n(cfg, "train.eval_every", source, integer=True, minimum=0)
    n(cfg, "train.seed", source, integer=True, minimum=0)
    n(cfg, "train.log_every", source, integer=True, above=0)
    check_device(_get(cfg, "train.device"), source)


def bundled_configs() -> dict[str, Path]:
    """The configs shipped with the package: ``{name (no .yaml): path}``, sorted by name."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.yaml"))}


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` itself when it is a file, else the bundled config of that name
    (with or without ``.yaml``); a name that is neither: a one-line :class:`ConfigError` listing
    the bundled ones. A file of yours wins over a bundled config of the same name."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = bundled_configs()
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent != Path("."):          # a path, not a name: reading it says what is wrong
        return path
    if stem in bundled:
        return bundled[stem]
    raise ConfigError(f"{name}: no such config file, nor a bundled config of that name "
                      f"(bundled: {', '.join(bundled) or 'none'}; posegroup train --list)")


def is_bundled(path: str | Path) -> bool:
    """Whether ``path`` is one of the package's bundled configs."""
    return Path(path).resolve().parent == BUNDLED_DIR


def load_config(path: str | Path, overrides: dict | None = None, *, require_training: bool = True) -> dict:
    """Read a YAML config file, merge it over the defaults and check it.

    Args:
        path: the YAML file, or the bare name of a bundled config (:func:`find_config`).
            Relative paths inside resolve against its folder -- for a bundled config, the CWD.
        overrides: nested dict merged over the file's content (e.g. from the command line).
        require_training: require ``data.train_ann`` and a length of training.
    Raises: :class:`ConfigError` naming the file for a missing/unreadable file, bad YAML, an
    unknown key or a missing required key.
    """
    path = find_config(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        user = _read_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if overrides:
        user = deep_update(inference_section(user, str(path)), inference_section(overrides, "override"))
    base = Path.cwd() if is_bundled(path) else path.resolve().parent
    return merge_config(user, source=str(path), base_dir=base, require_training=require_training)


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
    _set(out, key.strip(), _read_yaml(value))
    return out


def dump_config(cfg: dict) -> str:
    """YAML text of a config (the ``_source`` key left out)."""
    return yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False)
