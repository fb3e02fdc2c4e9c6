"""The ``posegroup`` command line: synth, train, evaluate, predict, export, benchmark, demo.

Every verb is a thin layer over a library function; errors in the user's input end the
command with one line (``posegroup: error: ...``), not a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .files import refuse_existing, write_json_atomic


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- predictors
def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .methods import ONNX_FORMATS, inference_flags
    g = p.add_argument_group("model (one of; neither: the pretrained PoseNet shipped in the package)")
    g.add_argument("--weights", help="checkpoint written by 'posegroup train', or a shipped model's name "
                                     "(ae, personlab, recurrent)")
    g.add_argument("--onnx", help="an ONNX network: one 'posegroup export' wrote (its metadata says how to "
                                  "decode it), or a foreign one with --format")
    g.add_argument("--format", default=None, choices=sorted(ONNX_FORMATS),
                   help="output layout of a foreign --onnx network (default: the model's posegroup metadata; "
                        "posenet when it has none)")
    t = p.add_argument_group("test-time options (each method owns its flags; default: the checkpoint config's)")
    for name, (spec, owners) in inference_flags().items():
        kw = {k: v for k, v in spec.items() if k != "type"}
        bound = {"input_size": " (16 to 4096)", "scales": " (each 1/16 to 4; input size x scale <= 4096)"}.get(name, "")
        kw["help"] = f"{spec.get('help', '')}{bound} [{', '.join(owners)}] (default: the model's own test setting)"
        if spec.get("type") is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = spec.get("type", str)
            kw.setdefault("metavar", None if "choices" in spec else name.upper())
        t.add_argument("--" + name.replace("_", "-"), dest=f"infer_{name}", default=None, **kw)


def _add_device_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--device", default=None,
                   help=f"{what}: cpu, cuda or cuda:N (default: cuda when there is one, else cpu)")


def _device(args) -> str | None:
    """``--device`` checked (one line naming it when that device is not there), or None."""
    device = args.device
    if device is not None:
        from .engine.config import check_device
        check_device(device, None, "--device")
    return device


def _inference_opts(args) -> dict:
    """The test-time flags given on the command line (None = not given)."""
    from .methods import inference_flags
    opts = {}
    for name in inference_flags():
        v = getattr(args, f"infer_{name}", None)
        if v is not None:
            opts[name] = tuple(v) if isinstance(v, list) else v
    return opts


def make_predictor(args):
    """(predictor, keypoint_set, label) from --weights or --onnx, or the shipped pretrained model
    when neither is given; predictor(image) -> poses, scores[, masks]; label: "method (model
    file)", the pictures' caption."""
    p = load_predictor(args)
    return p.run, p.keypoint_set, p.label


def load_predictor(args):
    """The :class:`~posegroup.engine.predictor.Predictor` of the model flags (see
    :func:`make_predictor`)."""
    from .engine.predictor import Predictor
    if args.weights and args.onnx:
        raise CliError("give one of --weights CKPT or --onnx MODEL (neither: the shipped pretrained model)")
    if args.format and not args.onnx:
        raise CliError("--format names the layout of an --onnx network; give --onnx MODEL")
    opts = _inference_opts(args)
    _check_test_sizes(opts)
    return Predictor.load(args.onnx or args.weights, device=_device(args), format=args.format,
                          **opts)


def _check_test_sizes(opts: dict) -> None:
    """``--input-size`` / ``--scales`` within :mod:`posegroup.limits`' bounds (one line)."""
    from .limits import check_test_sizes
    try:
        check_test_sizes(opts, lambda key: "--" + key.replace("_", "-"))
    except ValueError as e:
        raise CliError(str(e)) from None


def _check_number(value, flag: str, low=None, high=None, *, above=None, integer: bool = False) -> None:
    """One-line refusal of a flag's value that is not a finite number (an integer when
    ``integer``) within [``low``, ``high``] (``above``: strictly greater)."""
    import math
    if value is None:
        return
    bounds = f"in [{low:g}, {high:g}]" if low is not None and high is not None else \
        ", ".join(x for x in (f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else "",
                              f"<= {high:g}" if high is not None else "") if x)
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (not integer or float(value).is_integer())
    ok = ok and (low is None or value >= low) and (high is None or value <= high) and (above is None or value > above)
    if not ok:
        raise CliError(f"{flag} must be {'an integer' if integer else 'a number'} {bounds}, got {value!r}")


# ----------------------------------------------------------------------------- verbs
def _same_file(a, b) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _refuse_other_kind(path, kind: type, what: str) -> None:
    """``--overwrite`` replaces only a file of the kind the verb writes: a json ``kind`` (dict or
    list), never a link or a file of another kind (a checkpoint, an image ...)."""
    if path is None:
        return
    path = Path(path)
    if path.is_symlink():
        raise CliError(f"{path}: is a symbolic link; never written through (remove it, or choose another file)")
    if not path.exists():
        return
    try:
        ok = isinstance(json.loads(path.read_text()), kind)
    except (OSError, ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise CliError(f"{path}: exists and is not {what}; --overwrite replaces only such a file "
                       "(choose another file)")


def cmd_synth(args) -> int:
    from .limits import MAX_SYNTH_SIZE, MIN_SYNTH_SIZE, max_workers
    _check_number(args.size, "--size", MIN_SYNTH_SIZE, MAX_SYNTH_SIZE, integer=True)
    _check_number(args.workers, "--workers", 1, max_workers(), integer=True)
    _check_number(args.images, "--images", 1, 10 ** 7, integer=True)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: exists and is not a folder")
    bank = _people_bank(args)  # every source read and checked before anything is written
    if out.is_dir() and any(out.iterdir()):
        refuse_existing(out, args.overwrite, error=CliError, found="folder is not empty", to="replace the dataset there",
                        exists=True)
        own = [out / "annotations.json"] + sorted((out / "images").glob("[0-9][0-9][0-9][0-9][0-9][0-9].jpg"))
        for flag, given in (("--poses", args.poses), ("--people-from", args.people_from)):
            if given and any(_same_file(given, f) for f in own):
                raise CliError(f"{given}: {flag} is a file of the dataset --overwrite would replace")
        aside = out / ".replaced_dataset"  # the earlier dataset as a whole (nothing else in the folder)
        try:
            _set_aside(out, own, aside)
            code = _synth(args, bank)
        except BaseException:          # a full disk, an interrupt ...: the earlier dataset back in place
            _put_back(out, aside)
            raise
        import shutil
        shutil.rmtree(aside, ignore_errors=True)
        return code
    return _synth(args, bank)


def _set_aside(out: Path, own: list, aside: Path) -> None:
    """Move the earlier dataset's files (``own``) into ``aside`` (renames: no space needed), to
    be put back if the new one cannot be written."""
    if aside.exists():                 # a previous run interrupted after setting aside: its files first
        _put_back(out, aside)
    for f in own:
        if f.is_file() or f.is_symlink():
            target = aside / f.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)


def _put_back(out: Path, aside: Path) -> None:
    """Undo :func:`_set_aside`: the new run's partial files replaced by the earlier ones."""
    import shutil
    if not aside.is_dir():
        return
    new_images = out / "images"
    for f in sorted(new_images.glob("[0-9][0-9][0-9][0-9][0-9][0-9].jpg")) if new_images.is_dir() else []:
        f.unlink()
    for f in sorted(p for p in aside.rglob("*") if p.is_file() or p.is_symlink()):
        target = out / f.relative_to(aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, target)
    shutil.rmtree(aside, ignore_errors=True)


def _synth(args, bank) -> int:
    """Write the dataset of ``synth`` (the people bank's, or stick figures) into ``args.out``."""
    from .data.synthetic import generate_dataset
    crowding = args.crowding
    if bank is not None:
        return _synth_people(args, bank)
    stats = generate_dataset(args.out, args.images, crowding=crowding, seed=args.seed,
                             poses_file=args.poses, image_size=256 if args.size is None else args.size, workers=args.workers,
                             progress=not args.quiet)
    print(f"wrote {stats['images']} images, {stats['people']} people to {args.out} "
          f"({stats['mean_people_per_image']:.1f} per image; mean max box IoU between people "
          f"{stats['mean_max_iou']:.3f} -- OCHuman 0.67, CrowdPose val 0.31, COCO val 0.14; {stats['seconds']:.1f} s)")
    return 0


def _people_bank(args):
    """The people bank of ``synth --people-from`` (None without it); its flags checked."""
    paste_flags = {"--images-root": args.images_root, "--source-split": args.source_split,
                   "--heldout-fraction": args.heldout_fraction, "--max-covered": args.max_covered,
                   "--allow-shared-sources": args.allow_shared_sources or None, "--background": args.background,
                   "--heldout-folder": args.heldout_folder}
    if not args.people_from:
        given = [k for k, v in paste_flags.items() if v is not None]
        if given:
            raise CliError(f"{given[0]} goes with --people-from ANN.json")
        return None
    if args.poses:
        raise CliError("give --poses (drawn figures in real poses) or --people-from (real people pasted), not both")
    if args.heldout_folder is not None and args.heldout_fraction is not None:
        raise CliError("give --heldout-fraction (a hash of the image id) or --heldout-folder, not both")
    from .data.paste import check_request, load_people_bank
    bank = load_people_bank(args.people_from, args.images_root, source_split=args.source_split,
                            heldout_fraction=0.3 if args.heldout_fraction is None else args.heldout_fraction,
                            heldout_folder=args.heldout_folder,
                            allow_shared_sources=args.allow_shared_sources, background=args.background or "free")
    check_request(bank, args.crowding, 512 if args.size is None else args.size,
                  0.8 if args.max_covered is None else args.max_covered)
    return bank


def _synth_people(args, bank) -> int:
    """``synth --people-from``: real-people scenes from ``bank``; one summary line."""
    from .data.paste import generate_paste_dataset
    stats = generate_paste_dataset(args.out, args.images, bank=bank, crowding=args.crowding, seed=args.seed,
                                   image_size=512 if args.size is None else args.size, workers=args.workers, progress=not args.quiet,
                                   max_covered=0.8 if args.max_covered is None else args.max_covered)
    by_level = stats["mean_max_iou_by_level"]
    ious = ", ".join(f"{lv:g}: {v:.3f}" for lv, v in by_level.items()) if len(by_level) > 1 else f"{stats['mean_max_iou']:.3f}"
    skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats["skipped_sources"].items() if v) or "none"
    print(f"wrote {stats['images']} real-people scenes, {stats['people']} people to {args.out} "
          f"({stats['mean_people_per_image']:.1f} per image, {stats['dropped_people']} dropped as covered; mean max box "
          f"IoU between people {ious} -- OCHuman 0.67, CrowdPose val 0.31, COCO val 0.14; sources: {bank.source_split} "
          f"split, {stats['source_people']} people, {stats['source_backgrounds']} "
          f"{'photos with their people kept' if stats['background'] == 'kept' else 'backgrounds'}, skipped: {skipped}; "
          f"{stats['seconds']:.1f} s, {60 * stats['images_per_second']:.0f} scenes/min)")
    return 0


def cmd_train(args) -> int:
    from .engine.config import load_config
    from .engine.train import RunRefused, train
    if args.list:
        from .engine.config import bundled_configs
        for name, path in bundled_configs().items():
            print(f"{name:<28} {path}")
        return 0
    if not args.config:
        raise CliError("give a CONFIG (a YAML file, or a bundled config's name: posegroup train --list)")
    if args.resume and args.overwrite:
        raise CliError("give --resume or --overwrite, not both")
    if args.allow_changes and not args.resume:
        raise CliError("--allow-changes goes with --resume")
    _check_number(args.max_steps, "--max-steps", above=0, integer=True)
    _check_number(args.max_minutes, "--max-minutes", above=0)
    config = load_config(args.config)
    if _device(args) is not None:
        config["train"]["device"] = args.device
    _missing_data_hint(config)
    resume = args.resume if args.resume else False
    try:
        summary = train(config, out_dir=args.out, resume=resume, max_steps=args.max_steps,
                        max_minutes=args.max_minutes, progress=not args.quiet, overwrite=args.overwrite,
                        allow_changes=args.allow_changes, trust=args.trust_checkpoint)
    except RunRefused as e:  # a refusal, not a failure: exit 2 like every other refusal
        raise CliError(str(e)) from None
    import math    # valid json: a loss never computed (no step run) is null, not NaN
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                      for k, v in summary.items() if isinstance(v, (int, float, str))}, indent=1))
    if summary.get("stopped") == "interrupted":
        print(f"posegroup: interrupted at step {summary['steps']}; checkpoint {summary['checkpoint']} written, "
              "continue with --resume", file=sys.stderr)
        return 130
    return 0


def _missing_data_hint(config: dict) -> None:
    """A config whose training json is missing: one line naming it and, when the config's file
    says how to make it (a ``posegroup synth`` line in its comments), that command."""
    import re
    ann = (config.get("data") or {}).get("train_ann")
    if not ann or Path(ann).exists() or not config.get("_source"):
        return
    try:
        text = Path(config["_source"]).read_text()
    except OSError:
        return
    made = re.findall(r"posegroup synth[^\n#]*", text)
    if made:
        raise CliError(f"{ann}: annotation file not found; this config trains on a synthetic dataset: make it "
                       f"first with '{made[0].strip()}'")


def cmd_evaluate(args) -> int:
    from .engine.checkpoint import trusting
    from .engine.evaluate import evaluate_all, format_table
    inputs = [args.gt, args.results, args.weights, args.onnx]
    out_results = Path(args.out) / "results.json" if args.out and not args.results else None
    for target in (args.stats, out_results):
        if target is not None and any(_same_file(target, i) for i in inputs):
            raise CliError(f"{target}: is an input of this evaluation and would be overwritten; choose another file")
    if args.stats and Path(args.stats).is_dir():
        raise CliError(f"{args.stats}: is a folder; --stats names the json file to write")
    refuse_existing(args.stats, args.overwrite, error=CliError, what="--stats")
    refuse_existing(out_results, args.overwrite, error=CliError)
    _refuse_other_kind(args.stats, dict, "an evaluate --stats json")
    _refuse_other_kind(out_results, list, "a results list")
    method = None
    if args.results:
        results = args.results
    else:
        from .data.coco import CocoPoseDataset
        from .engine.predict import predict_dataset
        with trusting(args.trust_checkpoint):
            predictor = load_predictor(args)
        method = predictor.method
        ds = CocoPoseDataset(args.gt, args.images, keypoint_set=predictor.keypoint_set)
        results = predict_dataset(predictor.run, ds, progress=not args.quiet)
        if out_results is not None:
            write_json_atomic(out_results, results)
    subset = bool(args.results) and not args.all_images   # a model predicts every image of --gt
    stats = evaluate_all(args.gt, results, protocol=args.protocol, only_with_results=subset, method=method)
    for note in stats.get("notes", []):
        print(f"posegroup: note: {note}", file=sys.stderr)
    print(format_table(stats))
    print(f"scored {stats['images_scored']} of {stats['images_total']} ground-truth images"
          + (" (those with results; --all-images scores all)" if stats["images_scored"] < stats["images_total"] else ""))
    if args.stats:
        write_json_atomic(args.stats, stats, indent=1)
        print(f"stats written to {args.stats}")
    return 0


def cmd_predict(args) -> int:
    from .engine.checkpoint import trusting
    from .engine.predict import predict_images
    from .engine.video import is_video, predict_videos
    from .limits import max_workers
    _check_number(args.min_score, "--min-score", 0, 1)
    _check_number(args.track_min_score, "--track-min-score", 0, 1)
    _check_number(args.track_oks, "--track-oks", 0, 1)
    _check_number(args.track_max_gap, "--track-max-gap", 0, 10 ** 6, integer=True)
    _check_number(args.num_workers, "--num-workers", 1, max_workers(), integer=True)
    _check_number(args.shard_size, "--shard-size", 1, 10 ** 6, integer=True)
    _check_number(args.cpus_per_worker, "--cpus-per-worker", above=0)
    _check_number(args.gpus_per_worker, "--gpus-per-worker", 0)
    videos = [p for p in args.images if is_video(p)]
    if videos and len(videos) != len(args.images):
        raise CliError("give videos or images, not both (one predict per kind)")
    if not videos and args.track:
        raise CliError("--track follows people through a video; give a video file (.mp4 ...)")
    if videos and args.gt:
        raise CliError("--gt names image ids; a video's json uses frame indices")
    if args.ray and videos:
        raise CliError(f"{videos[0]}: is a video; --ray predicts images only (predict a video without --ray)")
    if args.ray and args.gt:
        raise CliError("--ray does not take --gt (score its results.json with 'posegroup evaluate --results')")
    with trusting(args.trust_checkpoint):
        predictor, kps, label = make_predictor(args)   # also checks the model and flags before any worker starts
    if args.ray:
        from .engine.ray_predict import model_spec_from_args, predict_ray
        s = predict_ray(model_spec_from_args(args), args.images, out_dir=args.out, address=args.ray_address,
                        num_workers=args.num_workers, num_cpus=args.cpus_per_worker, num_gpus=args.gpus_per_worker,
                        shard_size=args.shard_size, overwrite=args.overwrite, progress=not args.quiet)
        print(f"{len(s['results'])} people in {args.out}/results.json ({s['shards']} shards, "
              f"{len(s['computed'])} computed now)"
              + (f"; skipped {len(s['skipped'])} unreadable: {', '.join(p for p, _ in s['skipped'])}" if s["skipped"] else ""))
        return 0
    if videos:
        predict_videos(predictor, videos, out_dir=args.out, keypoint_set=kps, quiet=args.quiet,
                       draw=not args.no_draw, overwrite=args.overwrite, track=args.track,
                       track_max_gap=args.track_max_gap, track_oks=args.track_oks,
                       track_min_score=args.track_min_score)
        return 0
    results = predict_images(predictor, args.images, out_dir=args.out, keypoint_set=kps,
                             draw=not args.no_draw, progress=not args.quiet, gt_file=args.gt,
                             overwrite=args.overwrite, min_score=args.min_score, label=label)
    skipped = results.skipped
    print(f"{len(results)} people in {args.out}/results.json"
          + (f"; skipped {len(skipped)} unreadable: {', '.join(p for p, _ in skipped)}" if skipped else ""))
    return 0


def cmd_export(args) -> int:
    from .engine.export import export_onnx
    path = export_onnx(args.weights, args.out, input_size=args.input_size, overwrite=args.overwrite,
                       trust=args.trust_checkpoint, device=_device(args))
    print(f"exported {path}")
    return 0


def cmd_benchmark(args) -> int:
    from .engine import benchmark
    if args.what == "decode":
        ann = args.ann[0] if args.ann else benchmark.default_decode_layouts()
        if ann is None:
            raise CliError(f"no --ann given and shared/data/{benchmark.DECODE_LAYOUTS} is not found "
                           "(set POSEGROUP_SHARED_DATA)")
        benchmark.benchmark_decode(str(ann), num_images=args.images, noise=args.noise)
        return 0
    if args.what == "methods":
        from .engine.compare import benchmark_methods, benchmark_seeds
        kw = dict(minutes=args.minutes, images=args.train_images, ablations=args.ablations, max_steps=args.max_steps,
                  max_images=args.images, progress=not args.quiet, backbone=args.backbone, people_from=args.people_from)
        if args.seeds:
            benchmark_seeds(args.out or "runs/benchmark_methods", args.seeds, **kw)
        else:
            benchmark_methods(args.out or "runs/benchmark_methods", seed=args.seed, **kw)
        return 0
    if args.what in ("speed", "predict"):
        if not args.weights or not args.ann:
            raise CliError(f"benchmark {args.what} needs --weights CKPT|M.onnx [...] and --ann SPLIT.json [...]")
        splits = {Path(a).parent.name or Path(a).stem: a for a in args.ann}
        benchmark.benchmark_speed(args.weights, splits, max_images=args.images or 50, out_file=args.stats,
                                  onnx_format=args.format)
        return 0
    from .engine.config import load_config
    if not args.config:
        raise CliError(f"benchmark {args.what} needs a CONFIG.yaml")
    if args.what == "step":
        benchmark.benchmark_step(load_config(args.config), repeats=args.repeats)
        return 0
    benchmark.benchmark_train(load_config(args.config), minutes=args.minutes, out_dir=args.out or "runs/benchmark_train")
    return 0


def cmd_demo(args) -> int:
    from .engine.demo import run_demo
    run_demo(args.out, train=args.train, methods=args.methods, steps=args.steps, images=args.images,
             val_images=args.val_images, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    return 0


def _demo_steps(text: str) -> dict:
    """``demo --steps``: ``N`` (every method) or ``METHOD=N,...``."""
    from .engine.demo import METHODS
    try:
        pairs = dict(item.split("=", 1) for item in text.split(",")) if "=" in text else dict.fromkeys(METHODS, text)
        steps = {m.strip(): int(n) for m, n in pairs.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or METHOD=N,... (methods: {', '.join(METHODS)})")
    bad = [m for m, n in steps.items() if m not in METHODS or n <= 0]
    if bad or not steps:
        raise argparse.ArgumentTypeError(f"{text!r}: methods must be among {list(METHODS)} with positive step counts")
    return steps


def _demo_methods(text: str) -> tuple:
    from .engine.demo import METHODS
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    if not methods or any(m not in METHODS for m in methods):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of {list(METHODS)}")
    return methods


# ----------------------------------------------------------------------------- parser
class _SubParser(argparse.ArgumentParser):
    """A verb's parser: help with defaults (:class:`_Help`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the text already says it (or the
    option is an on/off switch, off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.required or (action.nargs == 0 and action.default in (False, None)):
            return text
        if action.default is None and (action.option_strings or action.nargs == "?"):
            return text + " (default: not given)"
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegroup", description=__doc__.splitlines()[0], formatter_class=_Help)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_SubParser)
    _add_synth_parser(sub)
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_predict_parser(sub)
    _add_export_parser(sub)
    _add_benchmark_parser(sub)
    _add_demo_parser(sub)
    return p


def _add_synth_parser(sub) -> None:
    """The ``synth`` verb's arguments."""
    s = sub.add_parser("synth", help="write a synthetic crowded-scene COCO dataset")
    s.add_argument("--out", required=True, help="folder to write annotations.json and images/ into")
    s.add_argument("--images", type=int, default=200, help="number of images (1 to 10^7)")
    s.add_argument("--crowding", default="sparse",
                   help="sparse | medium | heavy | a number in [0, 1], or a comma list to mix them "
                        "(e.g. sparse,medium,heavy) (default: sparse)")
    s.add_argument("--seed", type=int, default=0, help="random seed (the same seed writes the same dataset)")
    s.add_argument("--poses", default=None, help="COCO keypoint json to take real poses from")
    s.add_argument("--size", type=int, default=None, help="image side in pixels, 32 to 4096 (default: 256; 512 with --people-from)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes, 1 to 4 per CPU core (at least 8 allowed) (default: up to the CPU count)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the synthetic dataset in a non-empty --out (its annotations.json and images/NNNNNN.jpg)")
    r = s.add_argument_group("real people (cut out by their masks and pasted onto real backgrounds)")
    r.add_argument("--people-from", metavar="ANN.json", default=None,
                   help="COCO keypoint json with segmentations whose people (and person-free regions) make the scenes")
    r.add_argument("--images-root", metavar="DIR", default=None,
                   help="folder its file_names are relative to (default: the json's folder, then its images/)")
    r.add_argument("--source-split", choices=("train", "heldout"), default=None,
                   help="take people and backgrounds from this split of the source images (by image id hash, or "
                        "--heldout-folder), so training and held-out scenes share no source image")
    r.add_argument("--heldout-fraction", type=float, default=None,
                   help="share of the source images held out, by a hash of the image id (default: 0.3)")
    r.add_argument("--heldout-folder", metavar="DIR", default=None,
                   help="instead: the images whose file_name lies under DIR (e.g. val2017) are the held-out sources, "
                        "the others the training sources")
    r.add_argument("--allow-shared-sources", action="store_true",
                   help="take every source image (no split): such scenes share sources with any other")
    r.add_argument("--background", choices=("free", "kept"), default=None,
                   help="free: person-free windows of the source images (default); kept: whole source photos with "
                        "their people kept and labelled, the pasted people in front")
    r.add_argument("--max-covered", type=float, default=None,
                   help="a pasted person whose mask nearer people cover beyond this share is placed again (twice), "
                        "then dropped (default: 0.8)")
    s.set_defaults(func=cmd_synth)


def _add_train_parser(sub) -> None:
    """The ``train`` verb's arguments."""
    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config", nargs="?",
                   help="a YAML config file, or the name of a bundled one (e.g. ae_tiny_synthetic; see --list); "
                        "relative paths in a bundled config resolve against the working directory, in your own "
                        "file against its folder")
    t.add_argument("--list", action="store_true", help="list the bundled configs and exit")
    t.add_argument("--device", default=None,
                   help="train on cpu, cuda or cuda:N (default: the config's train.device; unset there: cuda when "
                        "there is one, else cpu)")
    t.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue from the last checkpoint in the output folder (or the one given)")
    t.add_argument("--out", default=None, help="output folder (default: the config's)")
    t.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps (> 0), with a checkpoint (default: the config's train.steps)")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (> 0), with a checkpoint (default: the config's train.max_minutes)")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh in an output folder that has a run: replaces it as a whole (the old files are "
                        "set aside in .replaced_run/ until the new run's first checkpoint)")
    t.add_argument("--allow-changes", action="store_true",
                   help="--resume even though the config changes the outcome (lr, data, model ...)")
    t.add_argument("--trust-checkpoint", action="store_true",
                   help="also read an old-format/foreign (pickled) checkpoint -- it can run code: only for trusted files")
    t.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub) -> None:
    """The ``evaluate`` verb's arguments."""
    e = sub.add_parser("evaluate", help="COCO AP of a results json, or of a model on a COCO split")
    e.add_argument("--gt", required=True, help="COCO ground-truth json")
    e.add_argument("--results", help="COCO results json (e.g. predict's results.json: its results are matched to "
                                     "--gt images by file_name where they carry one, else by image_id)")
    e.add_argument("--all-images", action="store_true",
                   help="--results: score against every --gt image (images without results count their people as "
                        "missed); default: only the images that have results")
    e.add_argument("--images", default=None, help="image folder of --gt (default: next to it)")
    e.add_argument("--stats", help="write the figures to this json")
    e.add_argument("--out", help="also keep the predictions here (results.json)")
    e.add_argument("--protocol", choices=["coco", "crowdpose"], default=None,
                   help="scoring rules (default: crowdpose for CrowdPose-14 ground truth, else coco)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --stats file / --out results.json")
    e.add_argument("--trust-checkpoint", action="store_true",
                   help="also read an old-format/foreign (pickled) checkpoint -- it can run code: only for trusted files")
    _add_model_args(e)
    _add_device_arg(e, "run a --weights model on")
    e.set_defaults(func=cmd_evaluate)


def _add_predict_parser(sub) -> None:
    """The ``predict`` verb's arguments."""
    from .engine.predict import MIN_SCORE
    pr = sub.add_parser("predict", help="poses for images or folders -> results.json + PNGs; "
                                        "or videos -> annotated video + json per clip")
    pr.add_argument("images", nargs="+",
                    help="images, folders of images (their sub-folders too), or video files (.mp4 ...); an image above "
                         "2^27 pixels is skipped like an unreadable one")
    pr.add_argument("--track", action="store_true",
                    help="video: keep person ids from frame to frame (Hungarian match of OKS)")
    pr.add_argument("--track-max-gap", type=int, default=5,
                    help="video --track: frames a person may be missed and keep its id (default: 5)")
    pr.add_argument("--track-oks", type=float, default=0.3,
                    help="video --track: least OKS to continue a track (default: 0.3)")
    pr.add_argument("--track-min-score", type=float, default=MIN_SCORE,
                    help="video --track: people scored below it join no track (track_id null): low-scored people "
                         "are mostly fragments that would start a new track every frame (default: %(default)s)")
    pr.add_argument("--ray", action="store_true",
                    help="images on Ray Data (pip install 'posegroup[ray]'): sharded results in --out/shards, merged "
                         "into --out/results.json; a rerun resumes (no pictures)")
    pr.add_argument("--ray-address", default=None,
                    help="--ray: an existing cluster ('auto', 'ray://HEAD:10001'; default: a local Ray)")
    pr.add_argument("--num-workers", type=int, default=2, help="--ray: predictor workers, one model load each (default: 2)")
    pr.add_argument("--cpus-per-worker", type=float, default=1.0, help="--ray: CPUs per worker (default: 1)")
    pr.add_argument("--gpus-per-worker", type=float, default=0.0, help="--ray: GPUs per worker (default: 0)")
    pr.add_argument("--shard-size", type=int, default=64, help="--ray: images per shard (default: 64)")
    pr.add_argument("--out", default="predictions", help="output folder: results.json and one PNG per image")
    pr.add_argument("--gt", default=None, help="COCO json whose image ids to use in results.json")
    pr.add_argument("--no-draw", action="store_true", help="no PNGs")
    pr.add_argument("--min-score", type=float, default=MIN_SCORE,
                    help="draw only the people scored at least this, in [0, 1] (results.json keeps them all); low-scored "
                         "people are mostly fragments and duplicates that bury a crowded picture")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace an earlier prediction in --out (results.json and its pictures)")
    pr.add_argument("--trust-checkpoint", action="store_true",
                   help="also read an old-format/foreign (pickled) checkpoint -- it can run code: only for trusted files")
    _add_model_args(pr)
    _add_device_arg(pr, "run a --weights model on (--onnx: onnxruntime picks CUDA when it has it)")
    pr.set_defaults(func=cmd_predict)


def _add_export_parser(sub) -> None:
    """The ``export`` verb's arguments."""
    x = sub.add_parser("export", help="export a checkpoint's network to ONNX")
    x.add_argument("--weights", required=True, help="checkpoint written by 'posegroup train'")
    x.add_argument("--out", required=True, help="the .onnx file to write")
    x.add_argument("--input-size", type=int, default=None,
                   help="side of the example input traced, 16 to 4096 (the graph takes any size) "
                        "(default: the config's data.input_size)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never a checkpoint)")
    x.add_argument("--trust-checkpoint", action="store_true",
                   help="also read an old-format/foreign (pickled) checkpoint -- it can run code: only for trusted files")
    _add_device_arg(x, "trace the network on")
    x.set_defaults(func=cmd_export)


class _ModeHelp(argparse._HelpAction):
    """``benchmark MODE --help``: only the options whose help names MODE (a help text starts
    "decode: ...", "speed / predict: ...", with "; " between modes), and the options that name
    no mode; ``benchmark --help``: all of them."""

    def __call__(self, parser, namespace, values, option_string=None):
        mode = getattr(namespace, "what", None)
        if mode:
            for action in parser._actions:
                parts = _mode_parts(action.help) if action is not self else None
                if parts is not None:
                    keep = [text for modes, text in parts if mode in modes]
                    action.help = "; ".join(keep) if keep else argparse.SUPPRESS
        parser.print_help()
        parser.exit()


def _mode_parts(text) -> list | None:
    """[(modes, segment)] of a benchmark option's help ("speed (= predict): ..." -> {speed, predict});
    None when it names no mode."""
    import re
    if not isinstance(text, str) or text == argparse.SUPPRESS:
        return None
    head = re.compile(r"^([a-z]+(?: \(= [a-z]+\))?(?: / [a-z]+)*): ")
    parts = []
    for seg in text.split("; "):
        m = head.match(seg)
        if m:
            parts.append((set(re.findall(r"[a-z]+", m.group(1))) - {"="}, seg))
        elif parts:
            parts[-1] = (parts[-1][0], parts[-1][1] + "; " + seg)
        else:
            return None
    return parts


def _add_benchmark_parser(sub) -> None:
    """The ``benchmark`` verb's arguments."""
    b = sub.add_parser("benchmark", help="decode speed, or AP against training time", add_help=False)
    b.add_argument("-h", "--help", action=_ModeHelp,
                   help="show this help and exit (benchmark MODE --help: that mode's options only)")
    b.add_argument("what", choices=["decode", "train", "step", "speed", "predict", "methods"],
                   help="decode: decoders on oracle maps; train: AP against training minutes; step: a "
                        "training step's time in the NCHW and channels_last memory formats (train.channels_last); "
                        "speed (= predict): AP, network / decoder ms, images/s of checkpoints, exported "
                        ".onnx models and foreign ONNX networks (--format) (the first is the baseline); "
                        "methods: AE, PersonLab and recurrent on one backbone and budget, sparse to heavy")
    b.add_argument("config", nargs="?", help="train / step: the YAML config (or a bundled config's name)")
    b.add_argument("--ann", nargs="+", help="decode: COCO keypoint json of layouts (default ../shared/data); "
                                            "speed: one json per split (named by its folder)")
    b.add_argument("--weights", nargs="+",
                   help="speed / predict: checkpoints, exported .onnx models, foreign .onnx networks (no posegroup "
                        "metadata: read as --format), shipped models by name (posenet: the pretrained default; ae, "
                        "personlab, recurrent) to time (first = baseline)")
    from .methods import DEFAULT_ONNX_FORMAT, ONNX_FORMATS
    b.add_argument("--format", default=None, choices=sorted(ONNX_FORMATS),
                   help=f"speed / predict: layout of the foreign .onnx files among --weights (default: {DEFAULT_ONNX_FORMAT})")
    b.add_argument("--stats", help="speed: also write the rows to this json")
    b.add_argument("--images", type=int, default=None,
                   help="decode: use the first N images; speed: the first N images per split (default: 50); "
                        "methods: held-out images per split")
    from .engine.benchmark import NOISE_LEVELS
    b.add_argument("--noise", default="clean", choices=list(NOISE_LEVELS),
                   help="decode: how far the oracle outputs are degraded (each method's decode benchmark reads it)")
    b.add_argument("--minutes", type=float, default=15.0,
                   help="train / methods: training minutes (methods: per method) (default: 15)")
    b.add_argument("--repeats", type=int, default=5,
                   help="step: alternating rounds of 3 timed steps per memory format (default: 5)")
    b.add_argument("--seed", type=int, default=0, help="methods: data and training seed (default: 0)")
    b.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="methods: several seeds, each in OUT/seed_N; with --ablations also OUT/claims.md, the "
                        "papers' ablations beside ours over the seeds (default: --seed alone)")
    b.add_argument("--train-images", type=int, default=2000, help="methods: synthetic training images (default: 2000)")
    b.add_argument("--max-steps", type=int, default=None, help="methods: a step budget instead of minutes")
    b.add_argument("--ablations", action="store_true", help="methods: also the papers' ablations")
    from .engine.recipes import benchmark_profiles
    b.add_argument("--backbone", default="tiny", choices=sorted(benchmark_profiles()),
                   help="methods: tiny (hourglasses from scratch on synthetic figures) or posenet_mobilenet (the "
                        "pretrained PoseNet under every method, real-people scenes) (default: tiny)")
    b.add_argument("--people-from", default=None,
                   help="methods --backbone posenet_mobilenet: COCO keypoint json with masks whose people the scenes "
                        "are cut from (default: shared/data/coco_images)")
    b.add_argument("--out", default=None,
                   help="train / methods: output folder (default: runs/benchmark_train or runs/benchmark_methods)")
    b.set_defaults(func=cmd_benchmark)


def _add_demo_parser(sub) -> None:
    """The ``demo`` verb's arguments."""
    from .engine.demo import DEMO_STEPS, METHODS
    d = sub.add_parser("demo", help="the whole pipeline on an embedded synthetic default: shipped models of every "
                       "method (or --train) predict held-out sparse/medium/heavy scenes, scored and drawn")
    d.add_argument("--out", default="posegroup_demo", help="output folder (default: %(default)s)")
    d.add_argument("--train", action="store_true",
                   help="train each method first (a fixed step budget, --steps) instead of using the shipped weights; "
                        "OUT/weights/ then holds what the package ships")
    d.add_argument("--methods", type=_demo_methods, default=METHODS,
                   help="comma list of methods (default: %s)" % ",".join(METHODS))
    d.add_argument("--steps", type=_demo_steps, default=None,
                   help="--train steps: N for every method or METHOD=N,... (default: %s)"
                        % ",".join(f"{m}={n}" for m, n in DEMO_STEPS.items()))
    d.add_argument("--images", type=int, default=2000, help="synthetic training images with --train (default: %(default)s)")
    d.add_argument("--val-images", type=int, default=40, help="held-out images per split (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="data and training seed (default: %(default)s)")
    d.add_argument("--overwrite", action="store_true", help="run in a non-empty --out, replacing the demo's files")
    d.set_defaults(func=cmd_demo)


def main(argv=None) -> int:
    from .limits import MAX_IMAGE_PIXELS    # OpenCV's decoders (any format) refuse larger images
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))   # read when cv2 loads
    code = _main(argv)
    if code:
        _leave_distributed(code)
    return code


def _leave_distributed(code: int) -> None:
    """A DDP process that stops on an error leaves its process group open (the other ranks wait
    for its exit, engine.distributed); the group's C++ teardown at interpreter exit can then
    abort ("terminate called without an active exception", SIGABRT instead of ``code``). Such a
    process ends its child processes (:func:`_end_children`), flushes its output and leaves with
    ``os._exit(code)``."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        _end_children()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _end_children(grace_s: float = 2.0) -> None:
    """End this process's multiprocessing children (data-loader workers): ``os._exit`` skips
    the exit handler that would, and a worker whose parent is gone can block for ever on its
    result queue, keeping the launcher's output pipes open. SIGTERM, ``grace_s`` seconds, then
    SIGKILL; each is reaped."""
    import multiprocessing
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace_s)
        if child.is_alive():
            child.kill()
            child.join()


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data.coco import DatasetError
    from .extras import MissingDependency
    try:
        return args.func(args)
    except (CliError, DatasetError, FileNotFoundError, MissingDependency) as e:
        print(f"posegroup: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # library input checks raise ValueError with a one-line message
        print(f"posegroup: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .engine.distributed import peer_gone
        from .engine.train import TrainingError
        if peer_gone(e):  # another DDP rank failed and prints the one line; this rank ends quietly
            return 1
        if not isinstance(e, TrainingError):
            raise
        print(f"posegroup: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("posegroup: interrupted", file=sys.stderr)
        return 130
    except OSError as e:   # a read-only folder, a full disk, no permission ...: the file and the cause
        where = e.filename or getattr(args, "out", None) or getattr(args, "stats", None)
        what = f"{where}: {e.strerror or e}" if where else str(e).splitlines()[0]
        print(f"posegroup: error: {what}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
