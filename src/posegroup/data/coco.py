"""COCO-format keypoint datasets (COCO, CrowdPose, OCHuman, synthetic, your own).

``CocoPoseDataset(ann_file, image_root)[i]`` gives one image with its people:

- ``image``: uint8 (H, W, 3) RGB
- ``keypoints``: float32 (N, K, 3) x, y, v of the non-crowd people with >= 1 labelled keypoint
- ``instance_masks``: uint8 (N, H, W) their masks (zeros where an annotation has none)
- ``ignore_mask``: bool (H, W), True over crowd regions and people without labelled keypoints
  (SPEC section 0: both are masked out of the training loss)
- ``image_id``: int, ``file_name``: str (absolute path)

Every fault in the input (missing or unreadable image, malformed json, keypoint arrays of the
wrong length, annotations naming unknown image ids, NaN/inf or non-numeric keypoints and boxes,
labelled keypoints more than one image width/height outside their image, malformed polygons or
RLE segmentations, duplicate image or annotation ids, non-positive image sizes) raises :class:`DatasetError` with one
line naming the file, the record (image / annotation id) and the fault: :func:`load_coco_json`
checks every file it reads (:func:`validate_coco`).
"""
from __future__ import annotations

import json
import os
import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..skeleton import KeypointSet, get_keypoint_set


class DatasetError(ValueError):
    """Bad input data; the message is one line naming the file and the fault."""


def load_coco_json(ann_file: str | Path, *, require_images: bool = True) -> dict:
    """Read and validate a COCO keypoint json; one-line errors name the file and the fault.
    ``require_images=False`` accepts a file with an ``annotations`` list only (a pose bank)."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{ann_file}: malformed json ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{ann_file}: cannot read ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or (require_images and not isinstance(data.get("images"), list)):
        raise DatasetError(f"{ann_file}: not a COCO annotation file (needs 'images' and 'annotations' lists)")
    validate_coco(data, ann_file)
    return data


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bad_number(values) -> tuple[int, object] | None:
    """(index, value) of the first entry that is not a finite number, else None."""
    for i, v in enumerate(values):
        if not _is_number(v) or not math.isfinite(v):
            return i, v
    return None


def _add_unique_id(seen: set, value, name: str, entry: str, duplicate: str) -> None:
    """Add ``value`` to ``seen``; one DatasetError line when it is unhashable or already there."""
    try:
        dup = value in seen
    except TypeError:
        raise DatasetError(f"{name}: {entry}: id {value!r} is not a number or string") from None
    if dup:
        raise DatasetError(f"{name}: {duplicate}")
    seen.add(value)


def validate_coco(data: dict, name) -> None:
    """Check a loaded COCO json (ground truth or pose bank) record by record.

    Faults, each a one-line :class:`DatasetError` ``"<name>: image|annotation <id>: <fault>"``:
    an image without an id, a duplicate image id, a width/height that is not a positive number,
    a ``crowdIndex`` that is not a finite number >= 0; a duplicate annotation id, ``keypoints``
    that are not a list of finite numbers in whole (x, y, v) triples, a labelled keypoint (v > 0)
    more than one image width/height outside its image (x < -W or x > 2W, y < -H or y > 2H; the
    rule of :data:`KEYPOINT_MARGIN`), a ``bbox`` that is not four finite numbers with non-negative
    width and height, a non-finite or negative ``area`` (0 for a person with labelled keypoints), a ``segmentation`` that is neither polygons of finite
    numbers nor an RLE of the image's size (uncompressed counts: non-negative integers summing
    to H x W).
    (Whether ``keypoints`` has 3 x K values and names a known image is the reader's check.)"""
    seen_images, sizes = set(), {}
    for n, img in enumerate(data.get("images") or []):
        if not isinstance(img, dict) or "id" not in img:
            raise DatasetError(f"{name}: image entry #{n} is not an object with an 'id'")
        iid = img["id"]
        _add_unique_id(seen_images, iid, name, f"image entry #{n}", f"image {iid!r}: duplicate image id (entry #{n})")
        for key in ("width", "height"):
            if key in img and not (_is_number(img[key]) and math.isfinite(img[key]) and img[key] > 0):
                raise DatasetError(f"{name}: image {iid!r}: {key} {img[key]!r} is not a positive number")
        if "width" in img and "height" in img:
            sizes[iid] = (img["width"], img["height"])
        if "crowdIndex" in img:
            c = img["crowdIndex"]
            if not (_is_number(c) and math.isfinite(c) and c >= 0):
                raise DatasetError(f"{name}: image {iid!r}: crowdIndex {c!r} is not a finite number >= 0")
    seen_anns = set()
    for n, a in enumerate(data.get("annotations") or []):
        if not isinstance(a, dict):
            raise DatasetError(f"{name}: annotation entry #{n} is not an object")
        label = _annotation_label(a, n)
        if "id" in a:
            _add_unique_id(seen_anns, a["id"], name, f"annotation entry #{n}",
                           f"{label}: duplicate annotation id (entry #{n})")
        size = sizes.get(a["image_id"]) if "image_id" in a and _hashable(a["image_id"]) else None
        _check_annotation(a, f"{name}: {label}", size)


#: A labelled ground-truth keypoint may lie at most this many image widths (heights) left of or
#: right of (above or below) its image; further out it is a fault, not an annotation.
KEYPOINT_MARGIN = 1.0


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _annotation_label(a: dict, n: int) -> str:
    """"annotation <id> (image <image_id>)" for error lines (entry number when there is no id)."""
    label = f"annotation {a['id']!r}" if "id" in a else f"annotation entry #{n} (no id)"
    return label + (f" (image {a['image_id']!r})" if "image_id" in a else "")


def _check_annotation(a: dict, where: str, size: tuple | None) -> None:
    """One annotation's keypoints, bbox, area and segmentation (``where``: "<file>: <label>";
    ``size``: its image's (W, H) or None); see :func:`validate_coco`."""
    kp = a.get("keypoints")
    if kp is not None:
        if not isinstance(kp, list):
            raise DatasetError(f"{where}: keypoints is a {type(kp).__name__}, not a list")
        if len(kp) % 3:
            raise DatasetError(f"{where}: {len(kp)} keypoint values, not whole (x, y, v) triples")
        bad = _bad_number(kp)
        if bad is not None:
            j, v = bad
            raise DatasetError(f"{where}: keypoint {j // 3} {'xyv'[j % 3]} is {v!r}, not a finite number")
        if size is not None:
            _check_keypoint_range(np.asarray(kp, float).reshape(-1, 3), where, size)
    if "bbox" in a:
        bb = a["bbox"]
        if not isinstance(bb, list) or len(bb) != 4:
            raise DatasetError(f"{where}: bbox {bb!r} is not [x, y, width, height]")
        bad = _bad_number(bb)
        if bad is not None:
            raise DatasetError(f"{where}: bbox {'xywh'[bad[0]]} is {bad[1]!r}, not a finite number")
        if bb[2] < 0 or bb[3] < 0:
            raise DatasetError(f"{where}: bbox has negative width or height {bb[2:]}")
    if "area" in a and not (_is_number(a["area"]) and math.isfinite(a["area"])):
        raise DatasetError(f"{where}: area {a['area']!r} is not a finite number")
    if "area" in a and (a["area"] < 0 or (a["area"] == 0 and not a.get("iscrowd") and isinstance(kp, list)
                                          and any(_is_number(v) and v > 0 for v in kp[2::3]))):
        raise DatasetError(f"{where}: area {a['area']!r} of a person with labelled keypoints must be > 0 "
                           "(OKS divides by it)" if a["area"] >= 0 else f"{where}: area {a['area']!r} is negative")
    if a.get("segmentation"):
        _check_segmentation(a["segmentation"], where, size)


def _check_keypoint_range(kp: np.ndarray, where: str, size: tuple) -> None:
    """kp: (K, 3) finite x, y, v. A labelled keypoint beyond :data:`KEYPOINT_MARGIN` image
    sizes outside the (W, H) image is a fault."""
    w, h = size
    lo, hi = -KEYPOINT_MARGIN * np.array([w, h]), (1 + KEYPOINT_MARGIN) * np.array([w, h])
    out = (kp[:, 2] > 0) & ((kp[:, :2] < lo) | (kp[:, :2] > hi)).any(1)
    if out.any():
        j = int(np.argmax(out))
        raise DatasetError(f"{where}: keypoint {j} at ({kp[j, 0]:g}, {kp[j, 1]:g}) lies more than one image "
                           f"width/height outside the {w:g}x{h:g} image")


def _check_segmentation(segm, where: str, size: tuple | None) -> None:
    """Polygons (lists of finite numbers) or an RLE dict of the image's ``size`` (W, H): ``size``
    [H, W], ``counts`` a string (compressed) or non-negative integers summing to H x W."""
    if isinstance(segm, list):
        for i, poly in enumerate(segm):
            if not isinstance(poly, list) or _bad_number(poly) is not None:
                raise DatasetError(f"{where}: segmentation polygon {i} is not a list of finite numbers")
        return
    if not isinstance(segm, dict):
        raise DatasetError(f"{where}: segmentation is a {type(segm).__name__}, not polygons or an RLE dict")
    hw, counts = segm.get("size"), segm.get("counts")
    if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)):
        raise DatasetError(f"{where}: RLE segmentation size {hw!r} is not [height, width]")
    if size is not None and tuple(hw) != (size[1], size[0]):
        raise DatasetError(f"{where}: RLE segmentation size {hw} is not the image's [{size[1]:g}, {size[0]:g}]")
    if isinstance(counts, str):
        return
    if not (isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in counts)):
        raise DatasetError(f"{where}: RLE segmentation counts are not a string or a list of integers >= 0")
    if sum(counts) != hw[0] * hw[1]:
        raise DatasetError(f"{where}: RLE segmentation counts sum to {sum(counts)}, not {hw[0]} x {hw[1]}")


def decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """COCO polygon / RLE / uncompressed RLE -> uint8 (H, W) mask."""
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_utils.frPyObjects(segm, height, width)
    elif isinstance(segm, dict):
        rle = dict(segm)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(rle).astype(np.uint8)


class CocoPoseDataset:
    """Images and people of a COCO-format keypoint json.

    Args:
        ann_file: COCO keypoint json.
        image_root: folder that ``images[].file_name`` is relative to. Default: the json's
            folder, then its ``images/`` subfolder (the layout ``posegroup synth`` writes).
        keypoint_set: a :class:`KeypointSet` or name; default read from the json's categories.
        only_with_people: keep only images with at least one person with labelled keypoints.
    """

    def __init__(self, ann_file, image_root=None, keypoint_set: KeypointSet | str | None = None,
                 only_with_people: bool = False):
        self.ann_file = Path(ann_file)
        data = load_coco_json(self.ann_file)
        self.data = data
        if keypoint_set is None:
            cats = [c for c in data.get("categories") or [] if c.get("keypoints")]
            if not cats:
                raise DatasetError(f"{self.ann_file}: no category with a 'keypoints' list")
            keypoint_set = KeypointSet.from_coco_category(cats[0])
        self.keypoint_set = get_keypoint_set(keypoint_set)
        self.image_root = self._find_root(image_root)
        k = self.keypoint_set.num_keypoints

        self.images = {}
        for img in data["images"]:
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                raise DatasetError(f"{self.ann_file}: an image entry lacks 'id' or 'file_name'")
            self._check_inside_root(img)
            self.images[img["id"]] = img
        self.anns = defaultdict(list)
        for a in data["annotations"]:
            if not isinstance(a, dict) or "image_id" not in a:
                raise DatasetError(f"{self.ann_file}: an annotation lacks 'image_id'")
            if a["image_id"] not in self.images:
                raise DatasetError(f"{self.ann_file}: annotation {a.get('id')} names image id "
                                   f"{a['image_id']}, which is not in 'images'")
            kp = a.get("keypoints")
            if kp is not None and len(kp) != 3 * k:
                raise DatasetError(f"{self.ann_file}: annotation {a.get('id')} has {len(kp)} keypoint "
                                   f"values, expected {3 * k} ({k} keypoints x 3)")
            self.anns[a["image_id"]].append(a)
        ids = sorted(self.images)
        if only_with_people:
            ids = [i for i in ids if any(_num_labelled(a) > 0 and not a.get("iscrowd", 0)
                                         for a in self.anns[i])]
        self.image_ids = ids

    def _find_root(self, image_root) -> Path:
        if image_root is not None:
            return Path(image_root)
        base = self.ann_file.parent
        first = next(iter(self.data["images"]), None)
        if isinstance(first, dict) and isinstance(first.get("file_name"), str) and first["file_name"] \
                and not (base / first["file_name"]).exists() \
                and (base / "images" / first["file_name"]).exists():
            return base / "images"
        return base

    def _check_inside_root(self, img: dict) -> None:
        """An image's ``file_name`` names a file inside the image root (a relative path that
        does not climb out of it), else a one-line :class:`DatasetError` naming the image entry."""
        name = img["file_name"]
        root = os.path.normpath(os.path.abspath(self.image_root))
        full = os.path.normpath(os.path.join(root, name)) if isinstance(name, str) and name else None
        if full is None or os.path.commonpath([root, full]) != root or full == root:
            raise DatasetError(f"{self.ann_file}: image {img['id']!r}: file_name {name!r} is not a file inside the "
                               f"image folder {self.image_root} (refused: images are read only from there)")

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.images[image_id]["file_name"]

    def load_image(self, image_id: int) -> np.ndarray:
        """uint8 (H, W, 3) RGB; one-line error for a missing or unreadable file."""
        path = self.image_path(image_id)
        return read_image(path)

    def annotations(self, image_id: int, with_masks: bool = True) -> dict:
        """The people of one image, without reading the image (shapes as in ``__getitem__``;
        ``with_masks=False`` skips decoding the segmentations: empty masks, no ignore regions)."""
        info = self.images[image_id]
        h, w = int(info.get("height", 0)), int(info.get("width", 0))
        return self._people(image_id, h, w, with_masks=with_masks)

    def _people(self, image_id: int, h: int, w: int, with_masks: bool = True) -> dict:
        k = self.keypoint_set.num_keypoints
        kps, masks = [], []
        ignore = np.zeros((h, w), bool)
        for a in self.anns[image_id]:
            n_lab = _num_labelled(a)
            crowd = bool(a.get("iscrowd", 0))
            if crowd or n_lab == 0:
                if with_masks and h and w:
                    m = self._mask(a, h, w) if a.get("segmentation") else None
                    if m is not None and m.any():
                        ignore |= m.astype(bool)
                    elif a.get("bbox") and not crowd:
                        x, y, bw, bh = a["bbox"]
                        ignore[max(int(y), 0):int(np.ceil(y + bh)), max(int(x), 0):int(np.ceil(x + bw))] = True
                continue
            kps.append(np.asarray(a["keypoints"], np.float32).reshape(k, 3))
            if with_masks:
                segm = a.get("segmentation")
                masks.append(self._mask(a, h, w) if segm and h and w else np.zeros((h, w), np.uint8))
        keypoints = np.stack(kps) if kps else np.zeros((0, k, 3), np.float32)
        inst = np.stack(masks) if masks else np.zeros((0, h, w), np.uint8)
        return {"keypoints": keypoints, "instance_masks": inst, "ignore_mask": ignore}

    def _mask(self, a: dict, h: int, w: int) -> np.ndarray:
        """uint8 (H, W) mask of annotation ``a``; a segmentation pycocotools cannot decode (a
        corrupt compressed RLE) or not of the image's size is one line naming file and annotation."""
        try:
            m = decode_segmentation(a["segmentation"], h, w)
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            raise DatasetError(f"{self.ann_file}: {_annotation_label(a, 0)}: segmentation cannot be decoded "
                               f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        if m.shape != (h, w):
            raise DatasetError(f"{self.ann_file}: {_annotation_label(a, 0)}: segmentation is {m.shape[0]}x{m.shape[1]}, "
                               f"the image {h}x{w}")
        return m

    def __getitem__(self, i: int) -> dict:
        image_id = self.image_ids[i]
        image = self.load_image(image_id)
        h, w = image.shape[:2]
        info = self.images[image_id]
        if ("height" in info and int(info["height"]) != h) or ("width" in info and int(info["width"]) != w):
            raise DatasetError(f"{self.image_path(image_id)}: image is {w}x{h} but {self.ann_file.name} "
                               f"says {info.get('width')}x{info.get('height')}")
        out = self._people(image_id, h, w)
        out.update(image=image, image_id=image_id, file_name=str(self.image_path(image_id)))
        return out


def _num_labelled(a: dict) -> int:
    kp = a.get("keypoints")
    if not kp:
        return 0
    return int(np.count_nonzero(np.asarray(kp, np.float32)[2::3] > 0))


def read_image(path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB; one-line error for a missing or unreadable file,
    or one whose header declares more than :data:`posegroup.limits.MAX_IMAGE_PIXELS` pixels."""
    from ..limits import check_image_pixels
    path = Path(path)
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            raise DatasetError(f"{path}: dangling or looping symbolic link, not an image")
        if path.exists():
            raise DatasetError(f"{path}: not a regular file (a folder, a pipe ...), not an image")
        raise DatasetError(f"{path}: image file not found")
    buf = np.fromfile(str(path), dtype=np.uint8)
    try:
        check_image_pixels(buf, path)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except cv2.error as e:   # OpenCV's own pixel limit (formats whose header is not read above), or a decoder fault
        from ..limits import MAX_IMAGE_PIXELS
        why = f"above the limit of {MAX_IMAGE_PIXELS} pixels" if "MAX_IMAGE_PIXELS" in str(e) else "corrupt"
        raise DatasetError(f"{path}: unreadable image ({why}; not decoded)") from None
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
