"""``posegroup benchmark methods``: the grouping methods on one backbone, one data set and one
training budget, scored on held-out sparse / medium / heavy splits (docs/benchmarks.md).

What is compared is data, not code: a profile of the recipes file
(:func:`~posegroup.engine.recipes.benchmark_profiles`, one per ``--backbone``) lists the training
runs (a bundled config, its share of the budget, the options it overrides, and which run's
checkpoint initialises it) and the scored rows (a run and test-time overrides). On the tiny
hourglass a run may start from another's checkpoint at half the budget and train for the other
half (the recurrent head on the AE backbone), so the two cost the budget of one.

Budget: ``minutes`` of training per full share. Each run's schedule length (steps) is sized to
its share by ``train.steps: auto`` (the run times its first steps; the length is kept in its
checkpoint, so the chunks and a killed run's resume continue one schedule), and ``max_minutes``
stops it at its share; a run whose machine got faster ends with its schedule, before its minutes
(the table gives the steps and minutes each run got). ``max_steps`` replaces minutes by a step budget
(tests). Everything is resumable: ``state.json`` records finished chunks and rows; a killed run
resumes from its last checkpoint; a finished one is not repeated.

Outputs in ``out_dir``: ``data/`` (synthetic splits), ``runs/<stage>/``, ``state.json``,
``methods.md`` (the table docs/benchmarks.md shows) and ``methods.json``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..files import write_json_atomic, write_text_atomic

#: Held-out splits: name -> (crowding, seed offset).
SPLITS = {"sparse": ("sparse", 1001), "medium": ("medium", 2002), "heavy": ("heavy", 3003)}

#: Real images of the PoseNet profile: name -> file under the real-data folder
#: (:func:`~posegroup.engine.demo.find_shared_data`): the default people source (its val2017
#: photos are also scored) and the OCHuman images (scored).
REAL_SETS = {"people": "coco_images/person_keypoints_local_images.json",
             "ochuman": "fixtures/ochuman/test_ochuman.json"}


def make_data(out: Path, *, images: int, val_images: int, size: int, seed: int, progress: bool) -> dict:
    """Training split mixing sparse, medium and heavy scenes, and the three held-out splits."""
    from ..data.synthetic import generate_dataset
    plan = {"train": ("sparse,medium,heavy", images, seed)}
    plan.update({name: (crowd, val_images, seed + off) for name, (crowd, off) in SPLITS.items()})
    anns = {}
    for name, (crowding, n, s) in plan.items():
        ann = out / "data" / name / "annotations.json"
        if not ann.is_file():
            generate_dataset(ann.parent, n, crowding=crowding, seed=s, image_size=size, workers=1, progress=progress)
        anns[name] = str(ann)
    return anns


def make_people_data(out: Path, people_from, *, images: int, val_images: int, size: int, seed: int,
                     progress: bool) -> dict:
    """Real-people scenes (:func:`~posegroup.data.paste.generate_paste_dataset`): a training
    split mixing sparse, medium and heavy scenes from the people of ``people_from``'s
    non-val2017 images, held-out splits from its val2017 images (a ``val2017`` folder beside it;
    else its id-hash split); then those real val2017 photos and the OCHuman images
    (:data:`REAL_SETS`) when present: name -> annotation file, or (file, image folder)."""
    from ..data.paste import generate_paste_dataset, load_people_bank
    from .demo import find_shared_data
    people_from = Path(people_from)
    heldout = "val2017" if (people_from.parent / "val2017").is_dir() else None
    anns, banks = {}, {}
    for split, (crowd, n, s) in {"train": ("sparse,medium,heavy", images, seed),
                                 **{k: (c, val_images, seed + off) for k, (c, off) in SPLITS.items()}}.items():
        ann = out / "data" / split / "annotations.json"
        if not ann.is_file():
            role = "train" if split == "train" else "heldout"    # the held-out bank read once for 3 splits
            if role not in banks:
                banks[role] = load_people_bank(people_from, source_split=role, heldout_folder=heldout)
            generate_paste_dataset(ann.parent, n, bank=banks[role], crowding=crowd, seed=s, image_size=size,
                                   workers=1, progress=progress)
        anns[split] = str(ann)
    if heldout:     # the real photos whose people the held-out scenes use
        real = _only_folder(people_from, heldout, out / "data" / f"real_{heldout}" / "annotations.json")
        anns[f"real_{heldout}"] = (str(real), str(people_from.parent))
    ochuman = find_shared_data(REAL_SETS["ochuman"])
    if ochuman is not None:
        anns["ochuman"] = str(ochuman)
    return anns


def _only_folder(ann_file: Path, folder: str, dst: Path) -> Path:
    """A copy of COCO json ``ann_file`` keeping the images under ``folder/`` (their people only)."""
    doc = json.loads(Path(ann_file).read_text())
    keep = {im["id"] for im in doc["images"] if im["file_name"].startswith(folder + "/")}
    doc["images"] = [im for im in doc["images"] if im["id"] in keep]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(dst, doc, indent=1)
    return dst


def stage_config(stage: dict, anns: dict, out: Path, *, seed: int, size: int, init: str | None,
                 model: dict | None = None) -> dict:
    """The stage's bundled config with the comparison's data, seed and output folder. ``model``
    (a profile's, e.g. the tiny hourglass): the network every config gets instead of its own --
    a config that reads another run's backbone (``model.backbone`` / ``init_from``) gets it as
    that backbone, initialised from ``init`` -- and training at ``size``; without it each config
    keeps its network and training size. Every stage predicts at ``size``."""
    from .config import load_config
    cfg = load_config(stage["config"], require_training=False)
    cfg["method"]["options"] = {**cfg["method"]["options"], **stage.get("options", {})}
    if model:
        own = cfg["model"]
        if "backbone" in own or "init_from" in own:    # a method reading another's backbone
            own["backbone"] = dict(model)
            own["init_from"] = init
        else:
            cfg["model"] = dict(model)
        cfg["data"]["input_size"] = size
    cfg["data"].update(train_ann=anns["train"], train_images=None, val_ann=None, val_images=None)
    cfg["train"].update(seed=seed, out_dir=str(out / "runs" / stage["name"]), eval_every=0, workers=0)
    cfg["test"]["input_size"] = size
    return cfg


def train_stage(stage: dict, cfg: dict, state: dict, out: Path, *, minutes: float, max_steps: int | None,
                chunk_minutes: float, progress: bool, save) -> dict:
    """Train one stage to its budget in resumable chunks, copying ``snapshot_<f>.pt`` when it has
    trained the fraction f of its budget (steps with ``max_steps``, else minutes)."""
    from .train import train
    st = state["stages"].setdefault(stage["name"], {"minutes": 0.0, "steps": 0, "done": False})
    if st["done"]:
        return st
    run = Path(cfg["train"]["out_dir"])
    budget = stage["share"] * minutes
    total = max(1, int(stage["share"] * max_steps)) if max_steps else None
    # minutes: train.steps auto sizes the schedule to the stage's budget at its first steps
    cfg["train"].update(steps=total or "auto", checkpoint_every=max(1, total // 20) if total else 10 ** 9)

    def reached(f: float) -> bool:
        return st["steps"] >= max(1, int(f * total)) if max_steps else st["minutes"] >= f * budget - 1e-6

    for f in sorted(stage.get("snapshots", [])) + [1.0]:
        snap = run / f"snapshot_{f:g}.pt"
        if f < 1.0 and snap.is_file():
            continue
        while not reached(f) and not st.get("schedule_done"):     # a finished schedule trains no further
            resume = (run / "last.pt").is_file()
            s = train(cfg, resume=resume, overwrite=not resume,
                      max_steps=max(1, int(f * total)) if max_steps else None,
                      max_minutes=None if max_steps else max(0.05, min(chunk_minutes, f * budget - st["minutes"])),
                      schedule_minutes=None if max_steps else budget - st["minutes"], progress=progress)
            st["minutes"] += s["minutes"]
            st.update(steps=s["steps"], total_steps=s["total_steps"], schedule_done=s["stopped"] == "done")
            save()
        if f < 1.0:
            shutil.copyfile(run / "last.pt", snap)
    st["done"] = True
    save()
    return st


def evaluate_row(name: str, stage: str, test: dict, anns: dict, out: Path, *, max_images: int | None) -> dict:
    """COCO AP, AP50, AP75, AR, network / decoder ms per split, and the true-id ceiling (methods
    with ``predict_true_ids``) of one stage's final checkpoint with test overrides, on the first
    ``max_images`` images of each split (None: all; recorded in the row)."""
    from .checkpoint import load_model
    model, method, config = load_model(out / "runs" / stage / "last.pt")
    return {"row": name, "method": method.name, "stage": stage, "test": test, "max_images": max_images,
            "splits": score_splits(model, method, config, test, {k: v for k, v in anns.items() if k != "train"},
                                   max_images=max_images)}


def score_splits(model, method, config: dict, test: dict, anns: dict, *, max_images: int | None) -> dict:
    """``{split: {AP, AP50, AP75, AR, network_ms, decoder_ms, count_error, true_ids_AP}}`` of a
    loaded model (:func:`~posegroup.engine.checkpoint.load_model`) with test overrides, on every
    split of ``anns`` (split name -> annotation file, or (file, image folder)). ``count_error``:
    the mean over images of |people predicted with score >= ``predict.MIN_SCORE`` - people
    annotated with a keypoint|."""
    import numpy as np

    from .benchmark import timed_predictor, true_id_predictor, open_split, predict_split
    from .evaluate import score_results
    from .predict import inference_options

    opts = {**inference_options(config, method), **test}
    run, oracle = timed_predictor(model, method, opts), true_id_predictor(method, model, opts)
    cells = {}
    for split, ann in anns.items():
        ann, root = ann if isinstance(ann, (tuple, list)) else (ann, None)
        ds, ids = open_split(ann, method.keypoint_set, max_images, root)
        res = predict_split(run, ds, ids, oracle=oracle)

        def score(results):
            return score_results(str(ds.ann_file), results, ids, keypoint_set=ds.keypoint_set,
                                 keys=("AP", "AP50", "AP75", "AR"))

        cell = score(res["results"])
        cell.update(network_ms=1e3 * float(np.median(res["network_s"])),
                    decoder_ms=1e3 * float(np.median(res["decoder_s"])),
                    count_error=count_error(res["results"], ds, ids),
                    true_ids_AP=score(res["true_results"])["AP"] if oracle is not None else None)
        cells[split] = cell
    return cells


def count_error(results: list[dict], dataset, image_ids) -> float:
    """Mean over ``image_ids`` of |people in ``results`` scored >= ``predict.MIN_SCORE`` - the
    image's annotated people with at least one keypoint|: the ``count_error`` of
    :func:`~posegroup.evaluation.count_figures` on the dataset's ground truth (``dataset.data``)."""
    from ..evaluation import count_figures
    from .predict import MIN_SCORE
    shown = [r for r in results if r["score"] >= MIN_SCORE]
    return count_figures(shown, dataset.data, image_ids)["count_error"]


def format_table(rows: list[dict], header: str = "") -> str:
    """The Markdown table of :func:`benchmark_methods` rows."""
    lines = [header] if header else []
    lines += ["| method | split | AP | AP50 | AP75 | AR | network ms | decoder ms | count error | true-id AP |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for split, c in r["splits"].items():
            true = "-" if c.get("true_ids_AP") is None else f"{c['true_ids_AP']:.3f}"
            count = "-" if c.get("count_error") is None else f"{c['count_error']:.2f}"
            lines.append(f"| {r['row']} | {split} | {c['AP']:.3f} | {c['AP50']:.3f} | {c['AP75']:.3f} | "
                         f"{c['AR']:.3f} | {c['network_ms']:.1f} | {c['decoder_ms']:.1f} | {count} | {true} |")
    return "\n".join(lines) + "\n"


def claims_table(claims: list[dict], runs: dict) -> str:
    """The papers' ablations beside ours, as Markdown: one line per claim and split, ours the AP
    difference between the claim's rows ``with`` and ``without`` for each seed of ``runs``
    ({seed: :func:`benchmark_methods` rows}) and their mean, the paper's difference (AP points)
    and whether the signs agree (mean of ours against the paper's; "-" where the paper gives no
    figure or a row is missing)."""
    seeds = sorted(runs)
    lines = ["| claim | split | " + " | ".join(f"ours, seed {s}" for s in seeds) + " | ours, mean | paper | "
             "same sign | paper's source |", "|---|---|" + "---|" * (len(seeds) + 4)]
    for c in claims:
        by_seed = {s: {r["row"]: r["splits"] for r in rows} for s, rows in runs.items()}
        splits = next((list(t[c["with"]]) for t in by_seed.values() if c["with"] in t), [])
        for split in splits:
            diffs = [by_seed[s][c["with"]][split]["AP"] - by_seed[s][c["without"]][split]["AP"]
                     if c["with"] in by_seed[s] and c["without"] in by_seed[s] else None for s in seeds]
            got = [d for d in diffs if d is not None]
            mean = sum(got) / len(got) if got else None
            paper = c.get("paper_delta")
            agree = "-" if mean is None or paper is None else ("yes" if mean * paper > 0 else "no")
            cells = ["-" if d is None else f"{100 * d:+.1f}" for d in diffs + [mean]]
            lines.append(f"| {c['claim']} | {split} | " + " | ".join(cells) + " | "
                         f"{'-' if paper is None else f'{paper:+.1f}'} | {agree} | {c['paper']} |")
    return "\n".join(lines) + "\n"


def benchmark_seeds(out_dir, seeds, *, backbone: str = "tiny", ablations: bool = False, **kw) -> dict:
    """:func:`benchmark_methods` once per seed, each in ``out_dir/seed_<s>`` (resumable as it is),
    then, with ``ablations``, ``out_dir/claims.md``: :func:`claims_table` of the profile's claims
    over the seeds. Returns {seed: rows}."""
    from .recipes import benchmark_profiles
    out = Path(out_dir)
    runs = {int(s): benchmark_methods(out / f"seed_{int(s)}", seed=int(s), backbone=backbone, ablations=ablations,
                                      **kw) for s in seeds}
    if ablations:
        text = claims_table(benchmark_profiles()[backbone].get("claims", []), runs)
        write_text_atomic(out / "claims.md", f"Our AP differences in points (100 x AP), seeds {list(runs)}.\n\n" + text)
        if kw.get("progress", True):
            print(text)
    return runs


def _profile(backbone: str, people_from) -> tuple[dict, Path | None]:
    """The recipes' profile of ``backbone`` and, for real-people scenes, the people's COCO
    json (``people_from``, default the real COCO images of the real-data folder; one-line
    ValueError when absent)."""
    from .recipes import benchmark_profiles
    profiles = benchmark_profiles()
    if backbone not in profiles:
        raise ValueError(f"--backbone {backbone!r}: choose one of {sorted(profiles)}")
    profile = profiles[backbone]
    if profile["data"] != "people":
        return profile, None
    from .demo import find_shared_data
    people_from = people_from or find_shared_data(REAL_SETS["people"])
    if people_from is None or not Path(people_from).is_file():
        raise ValueError(f"{people_from or 'shared/data/' + REAL_SETS['people']}: the real people's "
                         "COCO json is not found; give --people-from ANN.json")
    return profile, Path(people_from)


def benchmark_methods(out_dir="runs/benchmark_methods", *, minutes: float = 20.0, seed: int = 0,
                      images: int = 2000, val_images: int = 100, size: int | None = None, ablations: bool = False,
                      max_steps: int | None = None, max_images: int | None = None, chunk_minutes: float = 2.0,
                      threads: int | None = 1, progress: bool = True, backbone: str = "tiny",
                      people_from=None) -> list[dict]:
    """Train every stage under one budget, evaluate every row, write ``methods.md``/``.json``.

    Args:
        minutes: training minutes of a full share (tiny: AE, PersonLab; AE half + recurrent half).
        seed: data and training seed. images / val_images / size: the scenes (size default: the
            profile's, 128 px synthetic / 512 px real-people).
        backbone: a profile of the recipes file: ``tiny`` (hourglass from scratch on synthetic figures) or
            ``posenet_mobilenet`` (the pretrained PoseNet under every method, real-people scenes
            cut from ``people_from``, default the real COCO images of the real-data folder).
        ablations: also the papers' ablations (the profile's ``ablation_stages`` and ``ablation_rows``).
        max_steps: a step budget per full share instead of minutes (tests).
        max_images: score the first n images of each split (default all).
    Returns the rows (also in ``methods.json``).
    """
    import torch
    profile, people_from = _profile(backbone, people_from)
    size = int(size or profile["size"])
    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    wanted = {"minutes": minutes, "seed": seed, "images": images, "val_images": val_images, "size": size,
              "max_steps": max_steps, "backbone": backbone}
    if state and state.get("settings") != wanted:
        raise ValueError(f"{state_path}: made with other settings {state.get('settings')}; "
                         "use another output folder (or remove it) to change them")
    state.setdefault("settings", wanted)
    state.setdefault("stages", {})
    state.setdefault("rows", {})

    def save():
        write_json_atomic(state_path, state, indent=1)

    say = print if progress else (lambda *a, **k: None)
    if profile["data"] == "people":
        anns = make_people_data(out, people_from, images=images, val_images=val_images, size=size, seed=seed,
                                progress=progress)
    else:
        anns = make_data(out, images=images, val_images=val_images, size=size, seed=seed, progress=progress)
    stages = profile["stages"] + (profile["ablation_stages"] if ablations else [])
    for stage in stages:
        init = None
        if stage.get("init"):
            src, frac = stage["init"].split("@")
            init = str(out / "runs" / src / f"snapshot_{float(frac):g}.pt")
        cfg = stage_config(stage, anns, out, seed=seed, size=size, init=init, model=profile.get("model"))
        say(f"[benchmark methods] training {stage['name']}")
        train_stage(stage, cfg, state, out, minutes=minutes, max_steps=max_steps, chunk_minutes=chunk_minutes,
                    progress=progress, save=save)
    rows = []
    for name, stage, test in profile["rows"] + (profile["ablation_rows"] if ablations else []):
        row = state["rows"].get(name)
        if row is None or "max_images" not in row or row["max_images"] != max_images:   # another --images: rescored
            say(f"[benchmark methods] scoring {name}")
            state["rows"][name] = evaluate_row(name, stage, test, anns, out, max_images=max_images)
            save()
        rows.append(state["rows"][name])
    budget = f"{max_steps} steps" if max_steps else f"{minutes:g} min"
    what = profile["about"] + (f"; real-people scenes from {people_from}" if profile["data"] == "people" else "")
    header = (f"Budget {budget} per method ({what}), seed {seed}, "
              f"{images} training images (sparse, medium, heavy mixed), {size} px, held-out splits of "
              f"{val_images} images, scored on {f'the first {max_images}' if max_images else 'all'} images of "
              f"each split; trained steps: "
              + ", ".join(f"{k} {v['steps']} ({v['minutes']:.1f} min)" for k, v in state["stages"].items()) + ".\n")
    text = format_table(rows, header)
    write_text_atomic(out / "methods.md", text)
    write_json_atomic(out / "methods.json", rows, indent=1)
    say(text)
    return rows
