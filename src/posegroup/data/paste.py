"""Real-people scenes: people cut out of real photos by their masks and pasted into crowds.

Sources. Any COCO keypoint json with instance segmentations (polygons or RLE) and its images
(e.g. ``../shared/data/coco_images``). A *usable* person is a non-crowd annotation with a
non-empty segmentation, at least ``min_keypoints`` labelled (v > 0) keypoints and an estimated
standing height of at least ``min_height`` pixels; the others are skipped and counted by reason
(``no_segmentation``, ``no_visible_joint`` -- no labelled keypoint at all --, ``few_keypoints``,
``too_small``). Each usable person is cut out once: its mask's bounding box, the RGB pixels,
the mask and its keypoints moved into the crop.

Source split. Image ``i`` of the json belongs to the held-out sources when the first 8 hex
digits of ``sha256(str(image id))`` read as a fraction of 2**32 are below ``heldout_fraction``
(default 0.3), else to the training sources; or, with ``heldout_folder`` (e.g. "val2017"), the
images whose ``file_name`` lies under that folder are held out and the others are the training
sources. Either rule depends on the image entry only, so scenes written for training and
held-out scenes never share a source image (people or background). A dataset records its source image ids (``info.source_images``);
:func:`shared_source_images` compares two datasets.

Backgrounds ("free", the default). The largest window of each source image whose aspect
ratio is the scene's and that no annotation box (any person, crowd regions and people without
keypoints included, grown by ``BACKGROUND_MARGIN`` pixels) touches, when its shorter side is
at least ``min_background`` pixels. Images marked ``gt_complete: false`` (annotations of
keypoint people only, unlabelled people may be anywhere) give no background. A scene takes a
random sub-window (side U(0.6, 1) of the window), resized to the scene, randomly mirrored,
colour-jittered.

Whole photos ("kept"). A random window (side U(0.6, 1) of the largest with the scene's aspect)
of a whole source photo whose every person has a segmentation (not ``gt_complete: false``),
resized, mirrored (flip pairs swapped), colour-jittered, its labelled people kept with their
keypoints and masks: they are the farthest layer, count towards the scene's number of people
and the placement's IoU, and are marked ``num_keypoints = 0`` when the pasted people cover
them beyond ``max_covered``; its crowd regions and people without labelled joints become one
``iscrowd`` region. No person of the photo is pasted into it again.

Scene model. The number of people, their standing heights and their placement follow the
synthetic scenes exactly (:func:`~posegroup.data.synthetic.num_people`,
:func:`~posegroup.data.synthetic.people_heights`, :func:`~posegroup.data.synthetic.place_box`:
the ``--crowding sparse|medium|heavy`` calibration). Each slot takes a distinct source person,
drawn uniformly from those its drawn height enlarges at most ``max_upscale`` (default 2) times
when there is one (else the tallest), so few pasted people are blurred by upscaling; it is
scaled to its height (COCO-17: standing height from the labelled segments, else the
mask's height), mirrored with probability 1/2 (x -> w - x, left/right keypoints swapped with the
keypoint set's flip pairs), rotated by N(0, 8) degrees clipped to +-25, colour-jittered
(brightness, saturation, per-channel gains) and pasted with a hard mask edge (Ghiasi et al.,
*Simple Copy-Paste*, CVPR 2021: blending the edges does not matter). Order far to near as in the
synthetic scenes (lower box bottom = nearer). Working from the nearest person back, a person
whose pasted mask is covered by the nearer people kept beyond ``max_covered`` of its area is
placed again (the calibration's placement against the people kept, up to ``replace_tries``
times, default 2), then dropped (not pasted at all). Visible masks are the pixels each person
owns at the end; a joint whose pixel a nearer person owns becomes v = 1 (a joint hidden in its
source photo stays 1); small people get ``num_keypoints = 0`` as in the synthetic scenes.

Determinism: scene ``i`` is a function of ``np.random.default_rng([seed, i])`` and the people
bank (people in annotation order) only, whatever the worker count.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..files import write_json_atomic
from ..skeleton import COCO17, KeypointSet
from .coco import DatasetError, decode_segmentation, load_coco_json, read_image
from .synthetic import (clipped_normal, collect_results, crowding_figures, crowding_levels, image_hw, num_people,
                        people_heights, people_range, place_box, run_jobs, scene_annotations, standing_height,
                        visibility, WORKER, write_scene_image)

__all__ = ["PeopleBank", "load_people_bank", "source_split_of", "render_paste_scene", "generate_paste_dataset",
           "shared_source_images", "check_request", "free_window", "SOURCE_SPLITS", "BACKGROUNDS"]

SOURCE_SPLITS = ("train", "heldout")
BACKGROUNDS = ("free", "kept")
BACKGROUND_MARGIN = 4  # pixels around every annotation box that a background window avoids


@dataclass
class PeopleBank:
    """Cut-out people and person-free backgrounds of one source split.

    rgb[p]: uint8 (h_p, w_p, 3) crop; mask[p]: bool (h_p, w_p); keypoints: float32 (P, K, 3)
    x, y (continuous pixel coordinates of the crop), v (the source's); height: float64 (P,)
    standing height in source pixels; image_id, ann_id: (P,) lists of the json's ids;
    backgrounds[b]: uint8 (h_b, w_b, 3) person-free windows with the scene's aspect;
    background_ids: (B,) list of their source image ids; skipped: people skipped by reason;
    source_images: sorted ids of the images used; background: "free" (the person-free windows)
    or "kept" (``photos``: whole source photos with their people, :func:`_photo`)."""
    rgb: list
    mask: list
    keypoints: np.ndarray
    height: np.ndarray
    image_id: list
    ann_id: list
    backgrounds: list
    background_ids: list
    keypoint_set: KeypointSet
    ann_file: str
    source_split: str
    heldout_fraction: float
    skipped: dict = field(default_factory=dict)
    source_images: list = field(default_factory=list)
    background: str = "free"
    photos: list = field(default_factory=list)
    split_rule: str = ""

    def __len__(self) -> int:
        return len(self.rgb)


# =============================================================================== the split
def source_split_of(image_id, heldout_fraction: float) -> str:
    """"heldout" when sha256(str(image_id))'s first 8 hex digits / 2**32 < ``heldout_fraction``,
    else "train"."""
    u = int(hashlib.sha256(str(image_id).encode()).hexdigest()[:8], 16) / 2 ** 32
    return "heldout" if u < heldout_fraction else "train"


def _split_rule(heldout_fraction: float, heldout_folder):
    """(image entry -> "train" | "heldout", the rule in words): by image id hash, or held out
    when ``file_name`` lies under ``heldout_folder``."""
    if heldout_folder is None:
        return (lambda im: source_split_of(im["id"], heldout_fraction),
                f"heldout when int(sha256(str(image_id))[:8], 16) / 2**32 < {heldout_fraction:g}")
    prefix = str(heldout_folder).replace("\\", "/").strip("/") + "/"
    return (lambda im: "heldout" if str(im.get("file_name", "")).replace("\\", "/").startswith(prefix) else "train",
            f"heldout when file_name lies under {prefix}")


def _check_split_args(source_split, heldout_fraction, allow_shared_sources) -> str:
    """The split's name ("train", "heldout", or "all" with ``allow_shared_sources``)."""
    if not (isinstance(heldout_fraction, (int, float)) and 0.0 < float(heldout_fraction) < 1.0):
        raise ValueError(f"heldout_fraction {heldout_fraction!r}: must be a number in (0, 1)")
    if source_split is None:
        if not allow_shared_sources:
            raise ValueError("give --source-split train|heldout (people and backgrounds from one split of the "
                             "source images, so training and held-out scenes share none), or --allow-shared-sources "
                             "to take every source image")
        return "all"
    if source_split not in SOURCE_SPLITS:
        raise ValueError(f"source split {source_split!r}: expected one of {', '.join(SOURCE_SPLITS)}")
    if allow_shared_sources:
        raise ValueError("give --source-split or --allow-shared-sources, not both")
    return source_split


def shared_source_images(ann_a, ann_b) -> set:
    """Source image ids two real-people datasets (their annotations.json) have in common."""
    ids = []
    for f in (ann_a, ann_b):
        info = load_coco_json(f).get("info") or {}
        if "source_images" not in info:
            raise ValueError(f"{f}: no info.source_images (not a real-people scene dataset)")
        ids.append(set(info["source_images"]))
    return ids[0] & ids[1]


# =============================================================================== the bank
def _keypoint_set(data: dict, ann_file) -> KeypointSet:
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
    return KeypointSet.from_coco_category(cats[0]) if cats else COCO17


def _classify(a: dict, K: int, min_keypoints: int, min_height: float, is_coco17: bool, where: str):
    """(reason skipped or None, keypoints (K, 3) float64, standing height) of one annotation."""
    kp = a.get("keypoints")
    if kp is not None and len(kp) != 3 * K:
        raise DatasetError(f"{where}: {len(kp)} keypoint values, expected {3 * K} for the category's {K} keypoints")
    kp = np.asarray(kp if kp is not None else np.zeros(3 * K), np.float64).reshape(K, 3)
    lab = kp[:, 2] > 0
    if not a.get("segmentation"):
        return "no_segmentation", kp, 0.0
    if not lab.any():
        return "no_visible_joint", kp, 0.0
    if lab.sum() < min_keypoints:
        return "few_keypoints", kp, 0.0
    bh = float(a["bbox"][3]) if isinstance(a.get("bbox"), list) else float(np.ptp(kp[lab, 1]))
    h = standing_height(kp[:, :2], lab) if is_coco17 else bh
    h = float(np.clip(h, 0.6 * bh, 4.0 * bh)) if bh > 0 else h
    if not np.isfinite(h) or h < min_height:
        return "too_small", kp, h
    return None, kp, h


def _cut(img: np.ndarray, segm, kp: np.ndarray):
    """Crop of one person: (rgb (h, w, 3) uint8, mask (h, w) bool, keypoints (K, 3) moved into
    the crop) over its mask's bounding box; None when the mask is empty."""
    H, W = img.shape[:2]
    m = decode_segmentation(segm, H, W).astype(bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    k = kp.astype(np.float32).copy()
    k[:, 0] -= x0
    k[:, 1] -= y0
    k[k[:, 2] <= 0, :2] = 0.0
    return np.ascontiguousarray(img[y0:y1, x0:x1]), np.ascontiguousarray(m[y0:y1, x0:x1]), k


def free_window(shape: tuple, boxes: np.ndarray, aspect: float, margin: int = BACKGROUND_MARGIN):
    """Largest window (x0, y0, x1, y1) of an image of ``shape`` (H, W) with height / width =
    ``aspect`` that no box of ``boxes`` (N, 4) x0 y0 x1 y1 (grown by ``margin``) touches; the
    top-left-most of the largest; None when none is >= 1 pixel. Vectorised: a binary search on
    the window width over an integral image of the occupied pixels."""
    H, W = shape
    occ = np.zeros((H, W), np.int32)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        occ[max(int(y0) - margin, 0):max(int(math.ceil(y1)) + margin, 0),
            max(int(x0) - margin, 0):max(int(math.ceil(x1)) + margin, 0)] = 1
    ii = np.pad(occ.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def fits(w: int):
        h = int(round(w * aspect))
        if w < 1 or h < 1 or w > W or h > H:
            return None
        s = ii[h:, w:] - ii[:-h, w:] - ii[h:, :-w] + ii[:-h, :-w]
        free = np.argwhere(s == 0)
        return None if not len(free) else (int(free[0, 1]), int(free[0, 0]), int(free[0, 1]) + w, int(free[0, 0]) + h)

    lo, hi, best = 1, min(W, int(H / aspect) + 1), None
    while lo <= hi:
        mid = (lo + hi) // 2
        win = fits(mid)
        if win is not None:
            best, lo = win, mid + 1
        else:
            hi = mid - 1
    return best


def _image_path(root: Path, fallback: bool, img: dict, ann_file) -> Path:
    """The file of image entry ``img``: ``root/file_name`` (with ``fallback``, else
    ``root/images/file_name`` when that one is there); one line when neither exists."""
    name = img.get("file_name")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{ann_file}: image {img['id']!r} has no file_name")
    path = root / name
    if not path.is_file() and fallback and (root / "images" / name).is_file():
        path = root / "images" / name
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found (image {img['id']!r} of {ann_file}; "
                           f"--images-root is the folder its file_name is relative to)")
    return path


def _check_bank_args(min_keypoints, min_height, min_background, aspect) -> None:
    if not (isinstance(min_keypoints, int) and min_keypoints >= 1):
        raise ValueError(f"min_keypoints {min_keypoints!r}: must be an integer >= 1")
    for name, v, lo in (("min_height", min_height, 1.0), ("min_background", min_background, 16.0)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= lo):
            raise ValueError(f"{name} {v!r}: must be a number >= {lo:g}")
    if not (isinstance(aspect, (int, float)) and 0.1 <= aspect <= 10):
        raise ValueError(f"aspect {aspect!r}: must be a number in [0.1, 10]")


def _select(data: dict, ann_file, split: str, split_of, heldout_folder) -> tuple[list, dict]:
    """The split's image entries (json order; ``split_of``: image entry -> split) and their
    annotations by image id; one line for a json without segmentations, an annotation naming an
    unknown image, or a ``heldout_folder`` that holds none or all of the images."""
    anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    if not any(a.get("segmentation") for a in anns):
        raise DatasetError(f"{ann_file}: no person has a segmentation (people are cut out by their masks; "
                           "give a COCO keypoint json with instance segmentations)")
    if heldout_folder is not None:
        n_held = sum(split_of(im) == "heldout" for im in data["images"])
        if n_held in (0, len(data["images"])):
            raise DatasetError(f"{ann_file}: {'no' if n_held == 0 else 'every'} image's file_name lies under "
                               f"--heldout-folder {heldout_folder!r}; it must hold the held-out images only")
    images = [im for im in data["images"] if split == "all" or split_of(im) == split]
    known = {im["id"] for im in data["images"]}
    by_image = {im["id"]: [] for im in images}
    for n, a in enumerate(data["annotations"]):
        if a.get("image_id") not in known:
            raise DatasetError(f"{ann_file}: annotation {a.get('id', f'entry #{n}')!r} names image "
                               f"{a.get('image_id')!r}, which is not in 'images'")
        if a["image_id"] in by_image:
            by_image[a["image_id"]].append(a)
    return images, by_image


def load_people_bank(ann_file, images_root=None, *, source_split=None, heldout_fraction: float = 0.3, heldout_folder=None,
                     allow_shared_sources: bool = False, min_keypoints: int = 5, min_height: float = 64,
                     min_background: float = 128, aspect: float = 1.0, background: str = "free") -> PeopleBank:
    """Cut out the usable people of one source split and find its backgrounds (module docstring).

    Args:
        ann_file: COCO keypoint json with segmentations; images_root: the folder its
            ``file_name``s are relative to (default: the json's folder, then its ``images/``).
        source_split: "train" or "heldout"; None only with ``allow_shared_sources`` (all images).
        heldout_fraction: share of source images (by id hash) that are held out, in (0, 1);
        heldout_folder: instead, the folder (``file_name`` prefix) that holds the held-out images.
        min_keypoints, min_height: a usable person's labelled keypoints and standing height (px).
        min_background: shorter side (px) of a background window or photo; aspect: scene height / width.
        background: "free" (person-free windows) or "kept" (whole photos, their people kept).
    Raises DatasetError / ValueError with one line naming the file and the problem."""
    split = _check_split_args(source_split, heldout_fraction, allow_shared_sources)
    _check_bank_args(min_keypoints, min_height, min_background, aspect)
    if background not in BACKGROUNDS:
        raise ValueError(f"background {background!r}: expected one of {', '.join(BACKGROUNDS)}")
    if heldout_folder is not None and not (isinstance(heldout_folder, (str, Path)) and str(heldout_folder).strip("/\\")):
        raise ValueError(f"heldout_folder {heldout_folder!r}: must be a folder name (a file_name prefix)")
    ann_file = Path(ann_file)
    data = load_coco_json(ann_file)
    kps_set = _keypoint_set(data, ann_file)
    K = kps_set.num_keypoints
    split_of, rule = _split_rule(float(heldout_fraction), heldout_folder)
    images, by_image = _select(data, ann_file, split, split_of, heldout_folder)
    root = Path(images_root) if images_root is not None else ann_file.parent
    if images_root is not None and not root.is_dir():
        raise DatasetError(f"{root}: --images-root is not a folder")
    skipped = {"crowd": 0, "no_segmentation": 0, "no_visible_joint": 0, "few_keypoints": 0, "too_small": 0}
    plan = []
    for im in images:
        usable = []
        for a in by_image[im["id"]]:
            if a.get("iscrowd", 0):
                skipped["crowd"] += 1
                continue
            why, kp, h = _classify(a, K, min_keypoints, min_height, kps_set is COCO17,
                                   f"{ann_file}: annotation {a.get('id')!r} (image {im['id']!r})")
            if why:
                skipped[why] += 1
            else:
                usable.append((a, kp, h))
        bg = im.get("gt_complete", True) is not False
        if usable or bg:
            plan.append((im, usable, bg, _image_path(root, images_root is None, im, ann_file)))
    bank = _build_bank(plan, by_image, kps_set, ann_file, split, float(heldout_fraction), skipped,
                       min_background, aspect, background)
    bank.split_rule = "every source image" if split == "all" else rule
    return bank


def _build_bank(plan, by_image, kps_set, ann_file, split, heldout_fraction, skipped, min_background, aspect, background):
    """Read the planned images (``plan``: (image entry, usable (ann, kp, height) list, background
    candidate, path)) and cut their people and backgrounds into a :class:`PeopleBank`."""
    rgb, mask, kps, height, iids, aids, bgs, bg_ids, photos, used = [], [], [], [], [], [], [], [], [], set()
    for im, usable, bg, path in plan:
        img = read_image(path)
        if (im.get("width"), im.get("height")) not in ((None, None), (img.shape[1], img.shape[0])):
            raise DatasetError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, its entry in {ann_file} says "
                               f"{im.get('width')}x{im.get('height')}")
        for a, kp, h in usable:
            cut = _cut(img, a["segmentation"], kp)
            if cut is None:
                skipped["no_segmentation"] += 1
                continue
            rgb.append(cut[0]), mask.append(cut[1]), kps.append(cut[2]), height.append(h)
            iids.append(im["id"]), aids.append(a.get("id", -1))
            used.add(im["id"])
        if bg and background == "kept":
            photo = _photo(img, by_image[im["id"]], kps_set.num_keypoints, im["id"])
            if photo is not None and min(img.shape[:2]) >= min_background:
                photos.append(photo)
                used.add(im["id"])
        elif bg:
            boxes = [a["bbox"] for a in by_image[im["id"]] if isinstance(a.get("bbox"), list)]
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float64).reshape(-1, 4)
            win = free_window(img.shape[:2], boxes, aspect)
            if win is not None and min(win[2] - win[0], win[3] - win[1]) >= min_background:
                bgs.append(np.ascontiguousarray(img[win[1]:win[3], win[0]:win[2]]))
                bg_ids.append(im["id"])
                used.add(im["id"])
    K = kps_set.num_keypoints
    return PeopleBank(rgb, mask, np.array(kps, np.float32).reshape(-1, K, 3), np.array(height, np.float64),
                      list(iids), list(aids), bgs, list(bg_ids),
                      kps_set, str(ann_file), split, heldout_fraction, skipped, sorted(used), background, photos)


def _photo(img: np.ndarray, anns: list, K: int, image_id) -> dict | None:
    """A whole source photo for the kept-people background: image uint8 (h, w, 3), its labelled
    people's keypoints float32 (M, K, 3) and masks (M compressed RLEs), ``ignore`` (one RLE over
    its crowd regions and people without labelled joints, or None), ids. None when a person
    of it has no segmentation (its pixels could not be told apart)."""
    from pycocotools import mask as mask_util
    h, w = img.shape[:2]
    kps, rles, ann_ids, ignore = [], [], [], []
    for a in anns:
        if not a.get("segmentation"):
            return None
        rle = mask_util.encode(np.asfortranarray(decode_segmentation(a["segmentation"], h, w)))
        if a.get("iscrowd", 0):
            ignore.append(rle)
            continue
        kp = np.asarray(a.get("keypoints") or np.zeros(3 * K), np.float32).reshape(K, 3)
        if not (kp[:, 2] > 0).any():
            ignore.append(rle)
        else:
            kp[kp[:, 2] <= 0] = 0.0
            kps.append(kp), rles.append(rle), ann_ids.append(a.get("id", -1))
    return {"image": img, "keypoints": np.array(kps, np.float32).reshape(-1, K, 3), "masks": rles,
            "ignore": mask_util.merge(ignore) if ignore else None, "image_id": image_id, "ann_ids": ann_ids}


# =============================================================================== the scene
def _jitter_colour(rng, rgb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """float32 (h, w, 3) colour jitter: saturation U(0.7, 1.3), brightness U(0.75, 1.25),
    per-channel gains U(0.9, 1.1) (ranges scaled by ``strength``); not clipped."""
    x = rgb.astype(np.float32)
    gray = x.mean(axis=2, keepdims=True)
    sat = 1 + strength * rng.uniform(-0.3, 0.3)
    gain = (1 + strength * rng.uniform(-0.25, 0.25)) * (1 + strength * rng.uniform(-0.1, 0.1, size=3))
    return (gray + sat * (x - gray)) * gain.astype(np.float32)


def _background_image(rng, bank: PeopleBank, H: int, W: int) -> dict:
    """A random sub-window (side U(0.6, 1) of a random background window) resized to (H, W),
    mirrored with probability 1/2, colour-jittered: image float32 (H, W, 3), image_id, and no
    people (the keys of :func:`_photo_background`)."""
    b = int(rng.integers(len(bank.backgrounds)))
    src = bank.backgrounds[b]
    h, w = src.shape[:2]
    f = rng.uniform(0.6, 1.0)
    ch, cw = max(int(round(h * f)), 1), max(int(round(w * f)), 1)
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    crop = src[y0:y0 + ch, x0:x0 + cw]
    img = cv2.resize(crop, (W, H), interpolation=cv2.INTER_AREA if cw > W else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return {"image": _jitter_colour(rng, img, 0.5), "keypoints": np.zeros((0, bank.keypoint_set.num_keypoints, 3)),
            "masks": np.zeros((0, H, W), bool), "ignore": None, "image_id": bank.background_ids[b], "ann_ids": []}


def _photo_background(rng, bank: PeopleBank, H: int, W: int) -> dict:
    """A random window of a random kept-people photo (side U(0.6, 1) of the largest window with
    the scene's aspect) resized to (H, W), mirrored with probability 1/2 (flip pairs swapped),
    colour-jittered: image float32 (H, W, 3), its people's keypoints float64 (M, K, 3) and masks
    bool (M, H, W), ignore bool (H, W), image_id, ann_ids (M)."""
    from pycocotools import mask as mask_util
    ph = bank.photos[int(rng.integers(len(bank.photos)))]
    h, w = ph["image"].shape[:2]
    f = rng.uniform(0.6, 1.0)
    cw = max(int(round(min(w, h * W / H) * f)), 1)
    ch = max(min(int(round(cw * H / W)), h), 1)
    x0, y0 = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
    flip = bool(rng.random() < 0.5)

    def warp(a: np.ndarray, interp: int) -> np.ndarray:
        out = cv2.resize(np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw]), (W, H), interpolation=interp)
        return out[:, ::-1] if flip else out

    img = warp(ph["image"], cv2.INTER_AREA if cw > W else cv2.INTER_LINEAR)
    masks = np.stack([warp(mask_util.decode(r) * 255, cv2.INTER_LINEAR) >= 128 for r in ph["masks"]]) \
        if ph["masks"] else np.zeros((0, H, W), bool)
    ignore = warp(mask_util.decode(ph["ignore"]) * 255, cv2.INTER_LINEAR) >= 128 if ph["ignore"] is not None \
        else np.zeros((H, W), bool)
    kp = ph["keypoints"].astype(np.float64).copy()
    kp[..., 0] = (kp[..., 0] - x0) * W / cw
    kp[..., 1] = (kp[..., 1] - y0) * H / ch
    if flip:
        kp = kp[:, bank.keypoint_set.flip_index]
        kp[..., 0] = W - kp[..., 0]
    kp[kp[..., 2] <= 0, :2] = 0.0
    return {"image": _jitter_colour(rng, img, 0.5), "keypoints": kp, "masks": masks, "ignore": ignore,
            "image_id": ph["image_id"], "ann_ids": list(ph["ann_ids"])}


def _transform_person(rng, bank: PeopleBank, p: int, target_height: float, flip: bool, angle: float):
    """Person ``p`` scaled to ``target_height`` px, mirrored when ``flip`` (left/right keypoints
    swapped), rotated by ``angle`` degrees (clockwise on screen) about its crop centre,
    colour-jittered (from ``rng``). Returns None when nothing of its mask is left, else rgb
    float32 (h, w, 3), mask bool (h, w) (cropped to the mask's box) and keypoints float32
    (K, 3) in that crop's continuous pixel coordinates (unlabelled: x = y = 0)."""
    rgb, m, kp = bank.rgb[p], bank.mask[p], bank.keypoints[p].copy()
    f = float(target_height / bank.height[p])
    h, w = m.shape
    nw, nh = max(int(round(w * f)), 1), max(int(round(h * f)), 1)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    m = cv2.resize(m.astype(np.uint8) * 255, (nw, nh), interpolation=interp)
    kp[:, 0] *= nw / w
    kp[:, 1] *= nh / h
    if flip:
        rgb, m = rgb[:, ::-1], m[:, ::-1]
        kp = kp[bank.keypoint_set.flip_index]
        kp[:, 0] = nw - kp[:, 0]
    a = math.radians(angle)
    L = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    corners = (np.array([[0, 0], [nw, 0], [0, nh], [nw, nh]]) - [nw / 2, nh / 2]) @ L.T
    lo, hi = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    t = -L @ np.array([nw / 2, nh / 2]) - lo              # continuous: p' = L p + t
    A = np.hstack([L, (t + L @ [0.5, 0.5] - 0.5)[:, None]])  # cv2 works in pixel-index coordinates
    size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
    rgb = cv2.warpAffine(np.ascontiguousarray(rgb), A, size, flags=cv2.INTER_LINEAR, borderValue=0)
    m = cv2.warpAffine(np.ascontiguousarray(m), A, size, flags=cv2.INTER_LINEAR, borderValue=0) >= 128
    kp[:, :2] = kp[:, :2] @ L.T + t
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    kp[:, :2] -= (x0, y0)
    kp[kp[:, 2] <= 0, :2] = 0.0
    return _jitter_colour(rng, rgb[y0:y1, x0:x1]), m[y0:y1, x0:x1], kp


def _drop_covered(full: np.ndarray, order: np.ndarray, max_covered: float) -> np.ndarray:
    """Keep flags (N,) bool: from the nearest person (last of ``order``, far to near) back, a
    person with no pixel in the image, or whose ``full`` (N, H, W) bool mask the nearer kept
    people cover beyond ``max_covered`` of its area, is dropped."""
    keep = np.zeros(len(full), bool)
    covered = np.zeros(full.shape[1:], bool)
    for i in order[::-1]:
        area = int(full[i].sum())
        if area and int((full[i] & covered).sum()) <= max_covered * area:
            keep[i] = True
            covered |= full[i]
    return keep


def _slices(off: np.ndarray, shape: tuple, H: int, W: int):
    """(scene slices, crop slices) of a (h, w) crop whose top-left pixel goes to ``off`` (x, y),
    clipped to the (H, W) scene; None when nothing of it is inside."""
    h, w = shape
    x0, y0 = int(off[0]), int(off[1])
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    return (slice(sy0, sy1), slice(sx0, sx1)), (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))


def _people(rng, bank: PeopleBank, H: int, W: int, c: float, fixed: list, exclude=None,
            max_upscale: float = 2.0) -> tuple[list, np.ndarray]:
    """The scene's people before occlusion: (source index, rgb, mask, keypoints) each (crops of
    :func:`_transform_person`), placed by the synthetic scenes' crowding calibration, and their
    boxes (N, 4) x0 y0 x1 y1 in the scene. ``fixed``: boxes (4,) of the people already in the
    scene (a kept-people photo's; they count towards the scene's number of people and the
    placement's IoU); ``exclude``: a source image id whose people are not pasted. Each slot's
    person is drawn uniformly from the unused people that its drawn height enlarges at most
    ``max_upscale`` times (else the tallest unused one), so that few pasted people are blurred
    by upscaling."""
    free = np.ones(len(bank), bool) if exclude is None else np.array([i != exclude for i in bank.image_id])
    n = min(max(num_people(rng, c) - len(fixed), 1), int(free.sum()))
    heights = people_heights(rng, c, n, float(min(H, W)))
    who = []
    for h in heights:
        sharp = free & (h <= max_upscale * bank.height)
        pick = np.flatnonzero(sharp)[rng.integers(sharp.sum())] if sharp.any() else \
            int(np.argmax(np.where(free, bank.height, -np.inf)))
        free[pick] = False
        who.append(int(pick))
    people, placed = [], []
    for i, p in enumerate(who):
        flip, angle = bool(rng.random() < 0.5), clipped_normal(rng, 0, 8, -25, 25)
        t = _transform_person(rng, bank, int(p), heights[i], flip, angle)
        if t is None:
            continue
        mh, mw = t[1].shape
        box = place_box(rng, mw, mh, fixed + placed, c, H, W)
        placed.append(box)
        people.append((int(p), *t))
    return people, np.array(placed, np.float64).reshape(-1, 4)


def _arrange(rng, people: list, placed: np.ndarray, c: float, H: int, W: int, max_covered: float, tries: int,
             fixed: list):
    """Depth order and the occlusion limit. People go far to near by box bottom (plus noise x
    height, as in the synthetic scenes); those the nearer kept people cover beyond
    ``max_covered`` are placed again (:func:`place_box` against the kept people's boxes, a fresh
    target) up to ``tries`` times, then dropped. ``people``: (N) of :func:`_people`; ``placed``
    (N, 4) their boxes; ``fixed``: boxes of the people already in the scene (behind every one). Returns the kept people far to near (M,) int64, full masks (N, H, W)
    bool, each person's (scene, crop) slices or None, and offsets (N, 2) int64 (x, y)."""
    n = len(people)
    placed = placed.copy()
    full = np.zeros((n, H, W), bool)
    cuts, todo = [None] * n, np.arange(n)
    offsets = np.round(placed[:, :2]).astype(np.int64)
    for attempt in range(tries + 1):
        for i in todo:
            full[i] = False
            offsets[i] = np.round(placed[i, :2])
            cuts[i] = _slices(offsets[i], people[i][2].shape, H, W)
            if cuts[i] is not None:
                full[i][cuts[i][0]] = people[i][2][cuts[i][1]]
        order = np.argsort(placed[:, 3] + rng.normal(0, 0.1, size=n) * (placed[:, 3] - placed[:, 1]), kind="stable")
        keep = _drop_covered(full, order, max_covered)
        todo = np.flatnonzero(~keep)
        if not len(todo) or attempt == tries:
            break
        for i in todo:
            h, w = people[i][2].shape
            placed[i] = place_box(rng, w, h, fixed + list(placed[keep]), c, H, W)
    return order[keep[order]].astype(np.int64), full, cuts, offsets


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) x0 y0 x1 y1 (pixel edges) of non-empty masks (N, H, W) bool."""
    H, W = masks.shape[1:]
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    return np.stack([cols.argmax(1), rows.argmax(1), W - cols[:, ::-1].argmax(1), H - rows[:, ::-1].argmax(1)],
                    axis=1).astype(np.float64)


def _paste_render(rng, bank: PeopleBank, H: int, W: int, c: float, max_covered: float = 0.8,
                  min_area_frac: float = 0.01, min_keypoints_person: int = 3, replace_tries: int = 2,
                  max_upscale: float = 2.0) -> dict:
    """The full scene (module docstring). Returns image uint8 (H, W, 3), keypoints float32
    (N, K, 3), masks bool (N, H, W) visible, full_boxes (N, 4), max_iou, max_mask_iou (NaN with
    < 2 people), sources [(image id, annotation id)] (N), dropped (people still covered beyond
    ``max_covered`` after ``replace_tries`` new placements), background (its source image id),
    ignore (H, W) bool (a kept photo's crowd regions and people without joints, or None),
    photo_people (how many of the people, the first, are the kept photo's own); people far to near."""
    kept = bank.background == "kept"
    bg = _photo_background(rng, bank, H, W) if kept else _background_image(rng, bank, H, W)
    img, M = bg["image"], len(bg["keypoints"])
    fixed = [b for b, m in zip(_mask_boxes(bg["masks"]), bg["masks"]) if m.any()]
    people, placed = _people(rng, bank, H, W, c, fixed, bg["image_id"] if kept else None, max_upscale)
    order, full, cuts, offsets = _arrange(rng, people, placed, c, H, W, max_covered, replace_tries, fixed)
    owner = np.full((H, W), -1, np.int16)
    for m in range(M):
        owner[bg["masks"][m]] = m
    kps = np.zeros((M + len(order), bank.keypoint_set.num_keypoints, 3), np.float64)
    kps[:M] = bg["keypoints"]
    for rank, i in enumerate(order, start=M):
        _, rgb, m, kp = people[i]
        dst, src = cuts[i]
        ms = m[src]
        img[dst][ms] = rgb[src][ms]
        owner[dst][ms] = rank
        kps[rank] = kp
        kps[rank, :, :2] += offsets[i]
    source_v = kps[..., 2].copy()
    full = np.concatenate([bg["masks"], full[order]])
    full_boxes = _mask_boxes(full)
    vis_masks, area = visibility(kps, owner, min_area_frac, min_keypoints_person)
    kps[..., 2] = np.minimum(kps[..., 2], np.where(source_v > 0, source_v, 0))
    covered = area[:M] < (1 - max_covered) * full[:M].reshape(M, H * W).sum(axis=1)
    kps[:M][covered] = 0.0                               # a photo's own person covered beyond the limit: ignored
    drawn = full.reshape(len(full), H * W).any(axis=1)
    max_iou, max_mask_iou = crowding_figures(full[drawn], full_boxes[drawn])
    ok = area > 0
    sources = [(bg["image_id"], a) for a in bg["ann_ids"]] + [(bank.image_id[people[i][0]], bank.ann_id[people[i][0]])
                                                               for i in order]
    ignore = bg["ignore"] & (owner < M) if kept and bg["ignore"].any() else None
    return {"image": np.clip(np.round(img), 0, 255).astype(np.uint8), "keypoints": kps[ok].astype(np.float32),
            "masks": vis_masks[ok], "full_boxes": full_boxes[ok], "max_iou": max_iou, "max_mask_iou": max_mask_iou,
            "sources": [s for s, k in zip(sources, ok) if k], "dropped": int(len(people) - len(order)),
            "background": bg["image_id"], "ignore": ignore, "photo_people": int(ok[:M].sum())}


def render_paste_scene(rng: np.random.Generator, bank: PeopleBank, image_size=512, crowding="sparse",
                       max_covered: float = 0.8, replace_tries: int = 2, max_upscale: float = 2.0):
    """One real-people scene in memory (a pure function of ``rng``'s state and ``bank``).

    Returns image uint8 (H, W, 3) RGB, keypoints float32 (N, K, 3) x, y, v (continuous pixel
    coordinates), masks bool (N, H, W) visible instance masks, far to near."""
    H, W = image_hw(image_size)
    levels = crowding_levels(crowding)
    if len(levels) != 1:
        raise ValueError(f"crowding {crowding!r}: one level per scene")
    _check_scene_args(bank, levels, max_covered)
    _check_dataset_args(1, 95, 0.01, 3, 1, replace_tries)
    _check_max_upscale(max_upscale)
    scene = _paste_render(rng, bank, H, W, levels[0], max_covered, replace_tries=replace_tries, max_upscale=max_upscale)
    return scene["image"], scene["keypoints"], scene["masks"]


def check_request(bank: PeopleBank, crowding, image_size, max_covered) -> tuple[list, int, int]:
    """Check scenes of ``bank`` at ``crowding`` and ``image_size`` with ``max_covered`` can be
    made (one line when not; :func:`_check_scene_args`); returns (levels, H, W)."""
    levels = crowding_levels(crowding)
    H, W = image_hw(image_size)
    _check_scene_args(bank, levels, max_covered)
    return levels, H, W


def _check_max_upscale(max_upscale) -> None:
    if not (isinstance(max_upscale, (int, float)) and not isinstance(max_upscale, bool) and max_upscale >= 1):
        raise ValueError(f"max_upscale {max_upscale!r}: must be a number >= 1 (inf: any)")


def _check_scene_args(bank: PeopleBank, levels: list, max_covered) -> None:
    """One line when ``max_covered`` is not in (0, 1) or the bank has too few people (the most
    a scene of the most crowded level holds) or no background."""
    if not (isinstance(max_covered, (int, float)) and 0.0 < float(max_covered) < 1.0):
        raise ValueError(f"max_covered {max_covered!r}: must be a number in (0, 1)")
    need = people_range(max(levels))[1]
    what = f"the {bank.source_split} source images of {bank.ann_file}"
    if len(bank) < need:
        skipped = ", ".join(f"{k} {v}" for k, v in bank.skipped.items() if v)
        raise DatasetError(f"{what} hold {len(bank)} usable people (skipped: {skipped or 'none'}), fewer than the "
                           f"{need} a scene at crowding level {max(levels):g} holds")
    if bank.background == "kept" and not bank.photos:
        raise DatasetError(f"{what} have no photo whose every person has a segmentation (images with gt_complete "
                           "false give none)")
    if bank.background != "kept" and not bank.backgrounds:
        raise DatasetError(f"{what} have no person-free background window (images with gt_complete false "
                           "give none)")


# ============================================================================== the dataset
def _make_image(args):
    """Worker: render scene ``index``, write its JPEG, return its annotations (no ids yet) with
    each person's source ids (and a kept photo's crowd regions and people without joints as one
    ``iscrowd`` region), the crowding figures, the people dropped and the background."""
    index, seed, H, W, c, image_dir, jpeg_quality, max_covered, min_area_frac, min_kp, tries, max_up = args
    bank = WORKER["bank"]
    scene = _paste_render(np.random.default_rng([seed, index]), bank, H, W, c, max_covered, min_area_frac, min_kp,
                          tries, max_up)
    file_name = write_scene_image(scene["image"], image_dir, index, jpeg_quality)
    anns = scene_annotations(scene, H, W)
    for a, (iid, aid) in zip(anns, scene["sources"]):
        a["source_image_id"], a["source_annotation_id"] = iid, aid
    if scene["ignore"] is not None and scene["ignore"].any():
        crowd = scene_annotations({"keypoints": np.zeros((1, bank.keypoint_set.num_keypoints, 3), np.float32),
                                   "masks": scene["ignore"][None]}, H, W)[0]
        anns.append({**crowd, "iscrowd": 1, "source_image_id": scene["background"], "source_annotation_id": None})
    return index, file_name, anns, scene["max_iou"], scene["max_mask_iou"], scene["dropped"], scene["background"]


def _check_dataset_args(num_images, jpeg_quality, min_area_frac, min_keypoints_person, chunksize, replace_tries) -> None:
    checks = (("num_images", num_images, 1, None), ("jpeg_quality", jpeg_quality, 1, 100),
              ("replace_tries", replace_tries, 0, 20),
              ("min_keypoints_person", min_keypoints_person, 0, None), ("chunksize", chunksize, 1, None))
    for name, v, lo, hi in checks:
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)):
            raise ValueError(f"{name} {v!r}: must be an integer >= {lo}" + (f" and <= {hi}" if hi else ""))
    if not (isinstance(min_area_frac, (int, float)) and 0.0 <= min_area_frac < 1.0):
        raise ValueError(f"min_area_frac {min_area_frac!r}: must be a number in [0, 1)")


def generate_paste_dataset(out_dir, num_images: int, *, people_from=None, images_root=None, bank: PeopleBank = None,
                           source_split=None, heldout_fraction: float = 0.3, heldout_folder=None,
                           allow_shared_sources: bool = False,
                           background: str = "free",
                           crowding="sparse", seed: int = 0, image_size=512, workers: int | None = None,
                           progress: bool = True, jpeg_quality: int = 95, max_covered: float = 0.8,
                           min_area_frac: float = 0.01, min_keypoints_person: int = 3, chunksize: int = 8,
                           replace_tries: int = 2, max_upscale: float = 2.0) -> dict:
    """Write a real-people scene dataset: ``out_dir/images/NNNNNN.jpg`` and
    ``out_dir/annotations.json`` (the layout of :func:`~posegroup.data.synthetic.generate_dataset`;
    every person also names its ``source_image_id`` and ``source_annotation_id``; ``info`` records
    the source split and ``source_images``). Every input is read and checked before anything is
    written.

    Args:
        people_from, images_root, source_split, heldout_fraction, heldout_folder, allow_shared_sources, background:
            the sources (:func:`load_people_bank`); or ``bank``, one already loaded.
        crowding: as :func:`~posegroup.data.synthetic.generate_dataset` (a comma list mixes levels).
        max_covered: a person whose pasted mask nearer people cover beyond this share is placed
            again (up to ``replace_tries`` times), then dropped.
        max_upscale: a slot takes a source person its height enlarges at most this much when
            there is one (>= 1; ``inf``: any).
        Others: as :func:`~posegroup.data.synthetic.generate_dataset`; image_size default 512.

    Returns: the stats of :func:`~posegroup.data.synthetic.generate_dataset` plus "dropped_people",
    "mean_max_iou_by_level" ({crowding level: mean max box IoU of its images}),
    "skipped_sources" (source people skipped, by reason), "source_people", "source_backgrounds",
    "source_split".
    """
    t0 = time.perf_counter()
    _check_dataset_args(num_images, jpeg_quality, min_area_frac, min_keypoints_person, chunksize, replace_tries)
    levels = crowding_levels(crowding)
    H, W = image_hw(image_size)
    if not (isinstance(max_covered, (int, float)) and 0.0 < float(max_covered) < 1.0):
        raise ValueError(f"max_covered {max_covered!r}: must be a number in (0, 1)")
    _check_max_upscale(max_upscale)
    if (bank is None) == (people_from is None):
        raise ValueError("give exactly one of people_from (a COCO keypoint json) or bank")
    if bank is None:
        bank = load_people_bank(people_from, images_root, source_split=source_split, heldout_fraction=heldout_fraction,
                                heldout_folder=heldout_folder,
                                allow_shared_sources=allow_shared_sources, aspect=H / W, background=background)
    check_request(bank, crowding, image_size, max_covered)
    out = Path(out_dir)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    jobs = [(i, int(seed), H, W, levels[i % len(levels)], image_dir, jpeg_quality, float(max_covered), min_area_frac,
             min_keypoints_person, int(replace_tries), float(max_upscale)) for i in range(int(num_images))]
    results = run_jobs(jobs, bank, workers, chunksize, progress, task=_make_image)
    images, annotations, ious, mask_ious = collect_results(results, levels, H, W)
    for im, r in zip(images, results):
        im["background_source_image_id"] = r[6]
    stats = _stats(annotations, ious, mask_ious, len(images), sum(r[5] for r in results))
    stats["mean_max_iou_by_level"] = {lv: float(np.nanmean([r[3] for r in results if r[0] % len(levels) == k] + [np.nan]))
                                      for k, lv in enumerate(levels)}
    info = {"description": "posegroup real-people scenes (people cut out of real photos and pasted)",
            "crowding": crowding if isinstance(crowding, str) else float(crowding),
            "crowding_level": levels[0] if len(levels) == 1 else levels, "seed": int(seed), "image_size": [H, W],
            "people_from": bank.ann_file, "source_split": bank.source_split, "heldout_fraction": bank.heldout_fraction,
            "background": bank.background,
            "source_split_rule": bank.split_rule,
            "source_images": bank.source_images, "skipped_source_people": bank.skipped,
            "dropped_people": stats["dropped_people"],
            "max_covered": float(max_covered), "replace_tries": int(replace_tries), "max_upscale": float(max_upscale),
            "mean_max_iou": round(stats["mean_max_iou"], 6) if ious else None,
            "mean_max_iou_kind": "full (unoccluded) person bounding boxes, images with >= 2 people",
            "mean_max_mask_iou": round(stats["mean_max_mask_iou"], 6) if ious else None,
            "ignored_people": "small people are annotations with num_keypoints = 0"}
    ann_file = write_json_atomic(out / "annotations.json", {"info": info, "images": images, "annotations": annotations,
                                                              "categories": [bank.keypoint_set.coco_category()]})
    seconds = time.perf_counter() - t0
    return {**stats, "seconds": seconds, "images_per_second": len(images) / seconds if seconds > 0 else float("inf"),
            "annotation_file": str(ann_file), "image_dir": str(image_dir), "skipped_sources": dict(bank.skipped),
            "source_people": len(bank), "source_backgrounds": len(bank.photos if bank.background == "kept" else bank.backgrounds),
            "source_split": bank.source_split, "background": bank.background}


def _stats(annotations: list, ious: list, mask_ious: list, n: int, dropped: int) -> dict:
    """Counts over the written ``annotations`` (crowd regions apart) of ``n`` images."""
    persons = [a for a in annotations if not a["iscrowd"]]
    people = sum(1 for a in persons if a["num_keypoints"] > 0)
    return {"images": n, "people": people, "ignored_people": len(persons) - people,
            "crowd_regions": len(annotations) - len(persons),
            "mean_people_per_image": len(persons) / n, "dropped_people": int(dropped),
            "mean_max_iou": float(np.mean(ious)) if ious else float("nan"),
            "mean_max_mask_iou": float(np.mean(mask_ious)) if mask_ious else float("nan"), "crowded_images": len(ious)}
