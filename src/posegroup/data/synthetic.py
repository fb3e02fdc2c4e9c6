"""Synthetic crowded scenes: articulated figures drawn with cv2, written as a COCO keypoint dataset.

Every figure is a COCO-17 person (:data:`posegroup.skeleton.COCO17`): head (ellipsoid with hair,
eyes, nose, ears), torso, neck, arms with hands, legs with feet, drawn as filled capsules,
polygons and ellipses in per-person clothing colours (skin / hair / shirt with optional stripes /
trousers / shoes, per-pixel noise and a lighting gradient) over a textured background (two-colour
gradient, low-frequency noise, random shapes).

Poses come either from a built-in kinematic prior (random joint angles inside plausible limits, a
random body yaw: facing the camera, or in profile facing image-left or image-right; a person
facing the camera has its *left* side on the image *right*, so the left/right keypoint names
agree with COCO's horizontal-flip convention) or from the real people of a COCO keypoint json
(``poses_file``): people with >= ``min_keypoints`` labelled keypoints, normalised to a standing
height of 1, randomly mirrored (with the left/right swap); only limbs whose two endpoints are
labelled are drawn and unlabelled joints stay v = 0.

Scene model. People are drawn far to near (painter's order, nearer = lower feet in the image)
into a per-pixel owner map. A person's visible instance mask is the pixels it owns at the end.
Keypoint visibility: v = 2 if the joint is inside the image and its pixel is owned by that
person or by nobody, v = 1 if inside the image but owned by another (nearer) person, v = 0 if
outside the image or unlabelled (then x = y = 0, as COCO writes it).

Small people: a person whose visible area is < ``min_area_frac`` of the image or who has fewer
than ``min_keypoints_person`` labelled (v > 0) keypoints is *kept* as an annotation with
``num_keypoints = 0`` and all-zero keypoints (plus its segmentation), so that a loader masks it
out of the loss (ARCHITECTURE.md: ``ignore_mask`` covers people without labelled keypoints).
People with no visible pixel at all are dropped.

Crowding. ``crowding`` is "sparse" (level 0: 1-4 people, each placed so that its box IoU with
the people already placed is near a target drawn from U(0, 0.1)), "heavy" (level 1: 3-8 people,
target IoU U(0.55, 0.9), similar sizes: OCHuman-like) or a float level c in [0, 1] that
interpolates every knob linearly. The reported crowding figure, ``mean_max_iou``, follows
OCHuman (whose people have an average max box IoU of 0.67, recurrent-association paper sec. 5):
the mean over images with >= 2 people of the largest pairwise IoU between the people's *full*
(unoccluded, clipped to the image) bounding boxes. ``mean_max_mask_iou`` gives the same with the
full body masks.

Coordinates (ARCHITECTURE.md): continuous pixel coordinates, pixel (row i, col j) has centre
(j + 0.5, i + 0.5); a joint at (x, y) is the end point of its limb's capsule (cv2 is given
(x - 0.5, y - 0.5) with sub-pixel ``shift``).

Determinism: image i is drawn from ``np.random.default_rng([seed, i])`` only, so the bytes of
every JPEG and of the json are identical for the same arguments whatever the worker count.

Body proportions (fractions of standing height) are the anthropometric segment lengths of
Drillis & Contini as tabulated in Winter, *Biomechanics and Motor Control of Human Movement*
(shoulder height 0.818, hip 0.530, upper arm 0.186, forearm 0.146, thigh 0.245, shank 0.246);
joint-centre widths, radii and angle limits are this module's choices (plausible human ranges).
"""
from __future__ import annotations

import colorsys
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..files import write_json_atomic
from ..skeleton import COCO17
from .coco import load_coco_json

__all__ = ["generate_dataset", "render_scene", "load_pose_bank", "crowding_level", "crowding_levels", "CROWDING_LEVELS",
           "max_pairwise_iou", "box_iou_matrix"]

K = COCO17.num_keypoints  # COCO-17 is the point of this module: the figures are COCO people.
(NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP,
 L_KNEE, R_KNEE, L_ANK, R_ANK) = range(17)

# ---- body model (units: standing height = 1) ------------------------------------------------
TORSO = 0.818 - 0.530      # hip-joint centre to shoulder line (Winter)
UPPER_ARM = 0.186          # Winter
FOREARM = 0.146            # Winter
THIGH = 0.245              # Winter
SHANK = 0.246              # Winter
SHO_HALF = 0.11            # half distance between shoulder joint centres (biacromial 0.259 - joints)
HIP_HALF = 0.075           # half distance between COCO hip points
NECK = 0.115               # shoulder line to head centre (head centre ~0.935)
HEAD_RADII = (0.05, 0.066, 0.058)  # head ellipsoid: lateral, vertical, front-back
TORSO_HALF_DEPTH = 0.06
RADIUS = {"upper_arm": 0.036, "forearm": 0.028, "hand": 0.03, "thigh": 0.058, "shank": 0.042,
          "foot": 0.026, "neck": 0.03, "torso_edge": 0.03}

# ---- materials (label values in the per-person drawing canvas; +8 = shaded far-side limb) ----
SKIN, HAIR, SHIRT, PANTS, SHOES, EYE = 1, 2, 3, 4, 5, 6
SHADE = 8
SKIN_TONES = np.array([(255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66),
                       (141, 85, 36), (92, 58, 38)], np.float32)
HAIR_COLOURS = np.array([(20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 170, 110),
                         (150, 150, 150), (140, 60, 30)], np.float32)
PANTS_COLOURS = np.array([(30, 45, 95), (22, 22, 28), (95, 85, 60), (120, 120, 125),
                          (60, 30, 30), (170, 160, 140)], np.float32)

_SHIFT = 4                  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT

# Canonical segment lengths used to normalise real poses to height 1: (a, b, length). COCO's
# annotated shoulder-hip and ear-ear distances run ~11% longer than the joint-centre values
# (median over the 287 fully labelled upright people of COCO val2017, height = nose-to-ankle /
# 0.87), hence 0.32 and 0.11 there.
_CANON_SEGMENTS = ((L_SHO, L_HIP, 0.32), (R_SHO, R_HIP, 0.32), (L_SHO, L_ELB, UPPER_ARM),
                   (R_SHO, R_ELB, UPPER_ARM), (L_ELB, L_WRI, FOREARM), (R_ELB, R_WRI, FOREARM),
                   (L_HIP, L_KNEE, THIGH), (R_HIP, R_KNEE, THIGH), (L_KNEE, L_ANK, SHANK),
                   (R_KNEE, R_ANK, SHANK), (L_SHO, R_SHO, 2 * SHO_HALF), (L_EAR, R_EAR, 0.11))


# =============================================================================== small helpers
#: Named crowding levels. "medium" is calibrated to CrowdPose val: its people have a mean max box
#: IoU of 0.305 (4.2 per image, measured on ../shared/data/crowdpose/crowdpose_val.json); level 0.3
#: gives 0.316 (3.5 per image; 150 images, seed 5). Sparse gives 0.09 (COCO val keypoint people:
#: 0.14), heavy 0.80 (OCHuman: 0.67).
CROWDING_LEVELS = {"sparse": 0.0, "medium": 0.3, "heavy": 1.0}


def crowding_level(crowding) -> float:
    """Map ``crowding`` (a name of :data:`CROWDING_LEVELS`: "sparse" -> 0.0, "medium" -> 0.3,
    "heavy" -> 1.0, or a number / numeric string in [0, 1]) to a level c in [0, 1]."""
    if isinstance(crowding, str):
        name = crowding.strip().lower()
        if name in CROWDING_LEVELS:
            return CROWDING_LEVELS[name]
        try:
            crowding = float(name)
        except ValueError:
            raise ValueError(f"crowding {crowding!r}: expected 'sparse', 'medium', 'heavy' or a number in [0, 1]") from None
    try:
        c = float(crowding)
    except (TypeError, ValueError):
        raise ValueError(f"crowding {crowding!r}: expected 'sparse', 'medium', 'heavy' or a number in [0, 1]") from None
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"crowding {crowding!r}: a number must lie in [0, 1]")
    return c


def crowding_levels(crowding) -> list[float]:
    """One level, or the levels of a comma-separated list / sequence ("sparse,heavy")."""
    if isinstance(crowding, str) and "," in crowding:
        crowding = [c for c in crowding.split(",") if c.strip()]
    if isinstance(crowding, (list, tuple)):
        if not crowding:
            raise ValueError("crowding: an empty list of levels")
        return [crowding_level(c) for c in crowding]
    return [crowding_level(crowding)]


def image_hw(image_size) -> tuple[int, int]:
    """``image_size`` (an int or (H, W)) as (H, W), each side >= 32 px; ValueError otherwise."""
    if isinstance(image_size, (int, np.integer)):
        h = w = int(image_size)
    else:
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size {image_size!r}: expected an int or (H, W)") from None
    if h < 32 or w < 32:
        raise ValueError(f"image_size {image_size!r}: each side must be >= 32 pixels")
    return h, w


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` (M, 4) and ``b`` (N, 4), both (x0, y0, x1, y1) -> (M, N)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def max_pairwise_iou(boxes: np.ndarray) -> float:
    """Largest IoU over pairs of distinct boxes (N, 4) (x0, y0, x1, y1); NaN when N < 2."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return float("nan")
    iou = box_iou_matrix(boxes, boxes)
    np.fill_diagonal(iou, -1.0)
    return float(iou.max())


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else v


def _perp(ref: np.ndarray, u: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Unit component of ``ref`` orthogonal to unit ``u`` (``fallback`` when ref is parallel)."""
    p = ref - (ref @ u) * u
    if np.linalg.norm(p) < 1e-6:
        p = fallback - (fallback @ u) * u
    return _unit(p)


def _rodrigues(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    return v * math.cos(a) + np.cross(axis, v) * math.sin(a) + axis * (axis @ v) * (1 - math.cos(a))


def clipped_normal(rng, mean, sd, lo, hi) -> float:
    """One draw of N(``mean``, ``sd``) from ``rng``, clipped to [``lo``, ``hi``]."""
    return float(np.clip(rng.normal(mean, sd), lo, hi))


# ============================================================================ pose generation
# A "figure" is: joints (17, 2) in body units (image orientation: x right, y down; origin at the
# hip centre), labelled (17,) bool, shapes: list of (depth, material, kind, geometry).

def _project(p3: np.ndarray) -> np.ndarray:
    """World (x right, y up, z towards camera) -> image units (x right, y down)."""
    p3 = np.asarray(p3)
    return np.stack([p3[..., 0], -p3[..., 1]], axis=-1)


def _ellipse_2d(center3, R, radii):
    """Orthographic outline of the ellipsoid ``center3 + R diag(radii) S^2``: centre (2,),
    semi-axes (2,), angle in degrees (cv2.ellipse convention)."""
    A = (R * np.asarray(radii)[None, :])[:2]
    A[1] *= -1.0
    cov = A @ A.T
    evals, evecs = np.linalg.eigh(cov)
    axes = np.sqrt(np.maximum(evals, 1e-12))
    angle = math.degrees(math.atan2(evecs[1, 0], evecs[0, 0]))
    return _project(center3), axes, angle


def _kinematic_figure(rng) -> tuple[np.ndarray, np.ndarray, list]:
    """Sample a figure from the kinematic prior. Angles in degrees; limits are plausible
    human ranges (this module's choice). Returns joints (17, 2), labelled (17,), shapes."""
    pose = _kinematic_pose(rng)
    return _figure_shapes(rng, pose)


def _kinematic_pose(rng) -> dict:
    """The 3-D body of :func:`_kinematic_figure` (its random draws first, in their order):
    ``P`` (17, 3) body-frame joints, rotations ``R_t`` (torso), ``R_b`` (body yaw, body ->
    world), ``R_h`` (head), shoulder and head centres ``sc``, ``hc``, hand and toe points by
    wrist / ankle index, and ``build`` (body width factor)."""
    build = rng.uniform(0.85, 1.3)               # body width factor (thin .. heavy build)
    L = rng.uniform(0.95, 1.05, size=6)          # segment length jitter
    # Torso: lean forward, lateral bend, twist of the shoulders about the vertical.
    R_t = (_rot("y", clipped_normal(rng, 0, 10, -35, 35)) @ _rot("z", clipped_normal(rng, 0, 5, -15, 15))
           @ _rot("x", clipped_normal(rng, 4, 8, -15, 45)))
    # Body yaw: front (U(-35, 35)), or profile facing image-left / image-right (+-U(50, 100)).
    facing = rng.choice(3, p=[0.5, 0.25, 0.25])
    yaw = rng.uniform(-35, 35) if facing == 0 else (1 if facing == 1 else -1) * rng.uniform(50, 100)
    R_b = _rot("z", clipped_normal(rng, 0, 4, -12, 12)) @ _rot("y", yaw)

    P = np.zeros((K, 3))
    P[L_HIP] = (HIP_HALF, 0, 0)
    P[R_HIP] = (-HIP_HALF, 0, 0)
    sc = R_t @ np.array([0, TORSO * L[0], 0])
    P[L_SHO] = sc + R_t @ np.array([SHO_HALF, 0, 0])
    P[R_SHO] = sc + R_t @ np.array([-SHO_HALF, 0, 0])
    # Head: yaw / pitch / roll relative to the torso.
    R_h = (R_t @ _rot("y", clipped_normal(rng, 0, 20, -50, 50)) @ _rot("x", clipped_normal(rng, 0, 10, -30, 30))
           @ _rot("z", clipped_normal(rng, 0, 6, -20, 20)))
    hc = sc + R_h @ np.array([0, NECK, 0.01])
    P[NOSE] = hc + R_h @ np.array([0, -0.012, 0.056])
    P[L_EYE] = hc + R_h @ np.array([0.022, 0.01, 0.046])
    P[R_EYE] = hc + R_h @ np.array([-0.022, 0.01, 0.046])
    P[L_EAR] = hc + R_h @ np.array([0.048, 0.0, -0.004])
    P[R_EAR] = hc + R_h @ np.array([-0.048, 0.0, -0.004])
    down = np.array([0.0, -1.0, 0.0])
    fwd = R_t @ np.array([0.0, 0.0, 1.0])
    hands, toes = {}, {}
    for s, sho, elb, wri in ((1, L_SHO, L_ELB, L_WRI), (-1, R_SHO, R_ELB, R_WRI)):
        abd = rng.uniform(0, 170) if rng.random() < 0.25 else abs(rng.normal(0, 22))
        flex = rng.uniform(-40, 170) if rng.random() < 0.25 else clipped_normal(rng, 10, 30, -50, 170)
        u = R_t @ _rot("x", -flex) @ _rot("z", s * min(abd, 170)) @ down
        P[elb] = P[sho] + UPPER_ARM * L[1] * u
        bend = _rodrigues(_perp(fwd, u, np.array([0.0, 1.0, 0.0])), u, rng.uniform(-60, 60))
        e = math.radians(rng.uniform(0, 20) if rng.random() < 0.3 else rng.uniform(0, 145))
        f = math.cos(e) * u + math.sin(e) * bend
        P[wri] = P[elb] + FOREARM * L[2] * f
        hands[wri] = P[wri] + 0.035 * f
    for s, hip, knee, ank in ((1, L_HIP, L_KNEE, L_ANK), (-1, R_HIP, R_KNEE, R_ANK)):
        hf = rng.uniform(-20, 100) if rng.random() < 0.2 else clipped_normal(rng, 5, 15, -30, 110)
        ha = rng.uniform(0, 45) if rng.random() < 0.1 else abs(rng.normal(0, 6))
        u = _rot("x", -hf) @ _rot("z", s * ha) @ down
        P[knee] = P[hip] + THIGH * L[3] * u
        kf = math.radians(rng.uniform(0, 120) if rng.random() < 0.3 else rng.uniform(0, 25))
        back = _perp(np.array([0.0, 0.0, -1.0]), u, np.array([0.0, 1.0, 0.0]))
        d = math.cos(kf) * u + math.sin(kf) * back
        P[ank] = P[knee] + SHANK * L[4] * d
        toes[ank] = P[ank] + 0.1 * _perp(np.array([0.0, 0.0, 1.0]), d, np.array([0.0, 0.0, 1.0])) + 0.02 * d
    return {"P": P, "R_t": R_t, "R_b": R_b, "R_h": R_h, "sc": sc, "hc": hc, "hands": hands, "toes": toes,
            "build": build}


def _figure_shapes(rng, pose: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """The drawing of a :func:`_kinematic_pose` (clothing drawn from ``rng``): projected joints
    (17, 2), labelled (17,) and the depth-sorted shapes (torso, head, face parts, limbs, hands,
    feet; far-side limbs shaded)."""
    P, R_t, R_b, R_h, sc, hc = (pose[k] for k in ("P", "R_t", "R_b", "R_h", "sc", "hc"))
    hands, toes, build = pose["hands"], pose["toes"], pose["build"]
    W = (R_b @ P.T).T                             # world coordinates
    depth = W[:, 2]
    J = _project(W)
    wv = lambda p: R_b @ p                        # noqa: E731  (body -> world for extra points)
    long_sleeves, long_pants = rng.random() < 0.4, rng.random() < 0.7

    # Torso: convex hull of the shoulders / waist / hips with front-back thickness.
    tw = build
    waist_l = P[L_HIP] + 0.3 * (P[L_SHO] - P[L_HIP])   # the waist, 30% up the torso
    waist_r = P[R_HIP] + 0.3 * (P[R_SHO] - P[R_HIP])
    zf = R_t @ np.array([0, 0, TORSO_HALF_DEPTH * tw])
    zh = np.array([0, 0, TORSO_HALF_DEPTH * tw])
    xs = R_t @ np.array([0.02 * tw, 0, 0])
    xh = np.array([0.02 * tw, 0, 0])
    hip_lo = np.array([0, -0.04, 0])
    upper = [P[L_SHO] + xs, P[R_SHO] - xs, waist_l + xs, waist_r - xs]
    lower = [waist_l + xh, waist_r - xh, P[L_HIP] + xh + hip_lo, P[R_HIP] - xh + hip_lo]
    upper = [q + sgn * zf for q in upper for sgn in (-1, 1)]
    lower = [q + sgn * zh for q in lower for sgn in (-1, 1)]
    t_depth = float((R_b @ (sc * 0.5))[2])
    shapes = []
    shapes.append((t_depth - 0.001, PANTS, "poly", _project(np.array([wv(q) for q in lower]))))
    shapes.append((t_depth, SHIRT, "poly", _project(np.array([wv(q) for q in upper]))))
    # Shoulder caps round the torso's top corners.
    for j in (L_SHO, R_SHO):
        shapes.append((t_depth + 0.0005, SHIRT, "disc", (J[j], RADIUS["upper_arm"] * tw * 1.15)))
    # Neck and head.
    hcw = wv(hc)
    shapes.append((t_depth + 0.001, SKIN, "capsule", (_project(wv(sc)), _project(hcw), RADIUS["neck"] * tw)))
    Rw = R_b @ R_h
    hd = float(hcw[2])
    c2, ax, ang = _ellipse_2d(wv(hc + R_h @ np.array([0, 0.01, -0.012])), Rw, np.array(HEAD_RADII) * 1.05)
    shapes.append((hd + 0.1, HAIR, "ellipse", (c2, ax, ang)))
    c2, ax, ang = _ellipse_2d(wv(hc + R_h @ np.array([0, -0.006, 0.006])), Rw, np.array(HEAD_RADII) * 0.95)
    shapes.append((hd + 0.101, SKIN, "ellipse", (c2, ax, ang)))
    face_front = hd + 0.102
    for j, mat, r in ((NOSE, SKIN, 0.014), (L_EYE, EYE, 0.009), (R_EYE, EYE, 0.009),
                      (L_EAR, SKIN, 0.014), (R_EAR, SKIN, 0.014)):
        # Parts behind the head's centre are hidden by the head (drawn before it).
        d = face_front + depth[j] if depth[j] >= hd else hd + 0.099
        shapes.append((d, mat, "disc", (J[j], r)))
    # Limbs (far-side limbs shaded).
    arm_mat = SHIRT if long_sleeves else SKIN
    leg_mat = PANTS if long_pants else SKIN
    for a, b, mat, rr, extra in ((L_SHO, L_ELB, SHIRT, "upper_arm", 0.02), (R_SHO, R_ELB, SHIRT, "upper_arm", 0.02),
                                 (L_ELB, L_WRI, arm_mat, "forearm", 0.02), (R_ELB, R_WRI, arm_mat, "forearm", 0.02),
                                 (L_HIP, L_KNEE, PANTS, "thigh", -0.005), (R_HIP, R_KNEE, PANTS, "thigh", -0.005),
                                 (L_KNEE, L_ANK, leg_mat, "shank", -0.005), (R_KNEE, R_ANK, leg_mat, "shank", -0.005)):
            d = 0.5 * (depth[a] + depth[b])
            shade = SHADE if d < t_depth - 0.03 else 0
            shapes.append((d + extra, mat + shade, "capsule", (J[a], J[b], RADIUS[rr] * tw)))
    for wri, hand in hands.items():
        hw = wv(hand)
        shade = SHADE if hw[2] < t_depth - 0.03 else 0
        shapes.append((float(hw[2]) + 0.021, SKIN + shade, "capsule", (J[wri], _project(hw), RADIUS["hand"] * tw)))
    for ank, toe in toes.items():
        tw3 = wv(toe)
        shade = SHADE if tw3[2] < t_depth - 0.03 else 0
        shapes.append((float(tw3[2]) - 0.004, SHOES + shade, "capsule", (J[ank], _project(tw3), RADIUS["foot"] * tw)))
    return J, np.ones(K, bool), shapes


def _bank_figure(rng, bank_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Figure from a normalised real pose (17, 3: x, y, labelled) of the bank: random mirror
    (with the left/right swap) and small rotation; draws only limbs with both ends labelled."""
    J = bank_pose[:, :2].astype(np.float64).copy()
    lab = bank_pose[:, 2] > 0
    if rng.random() < 0.5:
        flip = COCO17.flip_index
        J = J[flip] * np.array([-1.0, 1.0])
        lab = lab[flip]
    a = math.radians(clipped_normal(rng, 0, 5, -15, 15))
    J = J @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    tw = rng.uniform(0.85, 1.3)
    long_sleeves, long_pants = rng.random() < 0.4, rng.random() < 0.7
    arm_mat = SHIRT if long_sleeves else SKIN
    leg_mat = PANTS if long_pants else SKIN
    shapes = []
    # Depth order (unknown for real poses): legs, torso, neck, head, face, arms.
    for a_, b_, mat, rr in ((L_HIP, L_KNEE, PANTS, "thigh"), (R_HIP, R_KNEE, PANTS, "thigh"),
                            (L_KNEE, L_ANK, leg_mat, "shank"), (R_KNEE, R_ANK, leg_mat, "shank")):
        if lab[a_] and lab[b_]:
            shapes.append((0.0, mat, "capsule", (J[a_], J[b_], RADIUS[rr] * tw)))
    for j, mat, rr in ((L_ANK, SHOES, "foot"), (R_ANK, SHOES, "foot"), (L_KNEE, leg_mat, "shank"),
                       (R_KNEE, leg_mat, "shank"), (L_HIP, PANTS, "thigh"), (R_HIP, PANTS, "thigh")):
        if lab[j]:
            shapes.append((0.01, mat, "disc", (J[j], RADIUS[rr] * tw)))
    tors = [j for j in (L_SHO, R_SHO, R_HIP, L_HIP) if lab[j]]
    if len(tors) >= 3:
        pts = J[tors]
        shapes.append((1.0, SHIRT, "poly", pts))
        for i in range(len(tors)):
            shapes.append((1.0, SHIRT, "capsule", (pts[i], pts[(i + 1) % len(tors)], RADIUS["torso_edge"] * 2 * tw)))
    elif len(tors) == 2:
        shapes.append((1.0, SHIRT, "capsule", (J[tors[0]], J[tors[1]], RADIUS["torso_edge"] * 2 * tw)))
    for j in (L_SHO, R_SHO):
        if lab[j]:
            shapes.append((1.0, SHIRT, "disc", (J[j], RADIUS["upper_arm"] * tw * 1.15)))
    face = [j for j in (NOSE, L_EYE, R_EYE, L_EAR, R_EAR) if lab[j]]
    if face:
        hc = 0.5 * (J[L_EAR] + J[R_EAR]) if (lab[L_EAR] and lab[R_EAR]) else J[face].mean(axis=0)
        r = float(np.clip(np.max(np.linalg.norm(J[face] - hc, axis=1)) + 0.015, 0.055, 0.1))
        if lab[L_SHO] and lab[R_SHO]:
            shapes.append((1.5, SKIN, "capsule", (0.5 * (J[L_SHO] + J[R_SHO]), hc, RADIUS["neck"] * tw)))
        shapes.append((2.0, HAIR, "ellipse", (hc + np.array([0, -0.01]), np.array([r, r * 1.2]) * 1.04, 0.0)))
        shapes.append((2.01, SKIN, "ellipse", (hc + np.array([0, 0.006]), np.array([r, r * 1.2]) * 0.92, 0.0)))
        for j in face:
            shapes.append((2.02, EYE if j in (L_EYE, R_EYE) else SKIN, "disc", (J[j], 0.012)))
    for a_, b_, mat, rr in ((L_SHO, L_ELB, SHIRT, "upper_arm"), (R_SHO, R_ELB, SHIRT, "upper_arm"),
                            (L_ELB, L_WRI, arm_mat, "forearm"), (R_ELB, R_WRI, arm_mat, "forearm")):
        if lab[a_] and lab[b_]:
            shapes.append((3.0, mat, "capsule", (J[a_], J[b_], RADIUS[rr] * tw)))
    for j, mat, rr in ((L_ELB, SHIRT, "upper_arm"), (R_ELB, SHIRT, "upper_arm"), (L_WRI, SKIN, "hand"),
                       (R_WRI, SKIN, "hand")):
        if lab[j]:
            shapes.append((3.01, mat, "disc", (J[j], RADIUS[rr] * tw)))
    return J, lab, shapes


def _extent(shapes) -> np.ndarray:
    """(x0, y0, x1, y1) in body units covering every shape."""
    lo = np.full(2, np.inf)
    hi = np.full(2, -np.inf)
    for _, _, kind, g in shapes:
        if kind == "capsule":
            p = np.stack([g[0], g[1]])
            r = g[2]
        elif kind == "disc":
            p, r = g[0][None], g[1]
        elif kind == "ellipse":
            p, r = g[0][None], float(np.max(g[1]))
        else:
            p, r = g, 0.0
        lo = np.minimum(lo, p.min(axis=0) - r)
        hi = np.maximum(hi, p.max(axis=0) + r)
    return np.concatenate([lo, hi])


# ================================================================================ drawing
def _cv(p: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates -> cv2 fixed-point (pixel centres at integers)."""
    return np.round((np.asarray(p) - 0.5 - origin) * _ONE).astype(np.int32)


def _draw_shapes(canvas: np.ndarray, shapes, scale: float, offset: np.ndarray, origin: np.ndarray) -> None:
    """Draw ``shapes`` (body units) into the uint8 label ``canvas`` whose top-left pixel is at
    continuous ``origin``: point p -> offset + scale * p. Far shapes first."""
    for _, mat, kind, g in sorted(shapes, key=lambda s: s[0]):
        mat = int(mat)
        if kind == "capsule":
            p, q = _cv(offset + scale * g[0], origin), _cv(offset + scale * g[1], origin)
            th = max(2, int(round(2 * g[2] * scale)))
            cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), mat, th, cv2.LINE_8, _SHIFT)
        elif kind == "disc":
            c = _cv(offset + scale * g[0], origin)
            r = max(int(round(g[1] * scale * _ONE)), _ONE)
            cv2.circle(canvas, tuple(int(v) for v in c), r, mat, -1, cv2.LINE_8, _SHIFT)
        elif kind == "ellipse":
            c = _cv(offset + scale * g[0], origin)
            ax = tuple(max(int(round(a * scale * _ONE)), _ONE) for a in g[1])
            cv2.ellipse(canvas, tuple(int(v) for v in c), ax, float(g[2]), 0, 360, mat, -1, cv2.LINE_8, _SHIFT)
        else:
            pts = _cv(offset + scale * g, origin)
            hull = cv2.convexHull(pts.reshape(-1, 1, 2))
            cv2.fillConvexPoly(canvas, hull, mat, cv2.LINE_8, _SHIFT)


def _random_rgb(rng, s_range=(0.2, 0.9), v_range=(0.25, 0.95)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s_range), rng.uniform(*v_range))
    return np.array([r, g, b], np.float32) * 255


def _person_palette(rng) -> tuple[np.ndarray, dict]:
    pal = np.zeros((16, 3), np.float32)
    pal[SKIN] = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.05)
    pal[HAIR] = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    pal[SHIRT] = _random_rgb(rng)
    pal[PANTS] = (PANTS_COLOURS[rng.integers(len(PANTS_COLOURS))] if rng.random() < 0.6 else _random_rgb(rng))
    pal[SHOES] = (20, 20, 20) if rng.random() < 0.6 else _random_rgb(rng, (0, 0.3), (0.2, 1.0))
    pal[EYE] = (30, 25, 25)
    pal[SHADE:SHADE + 8] = pal[:8] * 0.72
    tex = {"stripes": rng.random() < 0.35, "stripe_rgb": _random_rgb(rng, (0, 1), (0.1, 1.0)),
           "period": rng.uniform(0.03, 0.09), "angle": rng.uniform(0, math.pi),
           "noise": rng.uniform(2, 12), "light": rng.uniform(-0.35, 0.35), "light_angle": rng.uniform(0, 2 * math.pi)}
    return np.clip(pal, 0, 255), tex


def _background(rng, H: int, W: int) -> np.ndarray:
    """Gradient + low-frequency noise + random shapes, float32 (H, W, 3) RGB in [0, 255]."""
    c0, c1 = _random_rgb(rng, (0, 0.7), (0.2, 1.0)), _random_rgb(rng, (0, 0.7), (0.2, 1.0))
    th = rng.uniform(0, 2 * math.pi)
    yy, xx = np.arange(H, dtype=np.float32)[:, None], np.arange(W, dtype=np.float32)[None, :]
    t = xx * math.cos(th) + yy * math.sin(th)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    g = rng.random((int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3)).astype(np.float32) - 0.5
    img += cv2.resize(g, (W, H), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 70)
    img = np.clip(img, 0, 255).astype(np.uint8)
    s = min(H, W)
    for _ in range(int(rng.integers(3, 13))):
        col = tuple(int(v) for v in _random_rgb(rng, (0, 0.9), (0.1, 1.0)))
        kind = rng.integers(4)
        p = (int(rng.integers(-s // 8, W + s // 8)), int(rng.integers(-s // 8, H + s // 8)))
        if kind == 0:
            q = (p[0] + int(rng.integers(s // 16, s // 2)), p[1] + int(rng.integers(s // 16, s // 2)))
            cv2.rectangle(img, p, q, col, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, p, int(rng.integers(s // 32 + 1, s // 5)), col, -1, cv2.LINE_AA)
        elif kind == 2:
            q = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.line(img, p, q, col, int(rng.integers(1, max(2, s // 40))), cv2.LINE_AA)
        else:
            cv2.ellipse(img, p, (int(rng.integers(4, s // 4)), int(rng.integers(4, s // 6))),
                        float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    return img.astype(np.float32)


def _place(rng, figs: list, heights: np.ndarray, c: float, H: int, W: int) -> tuple[np.ndarray, list]:
    """Placement of :func:`_render`: each person's box (of 48 random candidates) whose IoU with
    those already placed is closest to a target drawn from [0.55 c, 0.1 + 0.8 c]. Returns the
    boxes (N, 4) x0 y0 x1 y1 and each figure's offset (2,) (figure units x height -> pixels)."""
    placed, offsets = [], []
    for i, (J, lab, shapes) in enumerate(figs):
        ext = _extent(shapes) * heights[i]
        box = place_box(rng, ext[2] - ext[0], ext[3] - ext[1], placed, c, H, W)
        placed.append(box)
        offsets.append(box[:2] - ext[:2])
    return np.array(placed), offsets


def place_box(rng, bw: float, bh: float, placed: list, c: float, H: int, W: int) -> np.ndarray:
    """The crowding calibration of one person: of 48 random boxes of size ``bw`` x ``bh`` (box
    centres at most ~15% of the width and ~20% of the height out of the image), the one whose
    largest IoU with the boxes ``placed`` (list of (4,) x0 y0 x1 y1) is closest to a target drawn
    from U(0.55 c, 0.1 + 0.8 c); the first candidate when nothing is placed. Returns (4,)."""
    n_cand = 48
    cx = rng.uniform(min(0.35 * bw, W / 2), max(W - 0.35 * bw, W / 2), size=n_cand)
    cy = rng.uniform(min(0.3 * bh, H / 2), max(H - 0.3 * bh, H / 2), size=n_cand)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    target = rng.uniform(0.55 * c, 0.1 + 0.8 * c)
    if not placed:
        return boxes[0]
    return boxes[int(np.argmin(np.abs(box_iou_matrix(boxes, np.array(placed)).max(axis=1) - target)))]


def visibility(kps: np.ndarray, owner: np.ndarray, min_area_frac: float,
                min_keypoints_person: int) -> tuple[np.ndarray, np.ndarray]:
    """Visibility of :func:`_render`, in place on ``kps`` (N, 17, 3): v = 2 where the person owns
    the keypoint's pixel (or nobody does), 1 where another person covers it, 0 outside the image
    or unlabelled (x, y zeroed); people below ``min_area_frac`` of the image or with fewer than
    ``min_keypoints_person`` labelled keypoints are zeroed. ``owner`` (H, W) int16 person rank or
    -1. Returns visible masks (N, H, W) bool and their areas (N,)."""
    n = kps.shape[0]
    H, W = owner.shape
    vis_masks = owner[None] == np.arange(n, dtype=np.int16)[:, None, None]
    x, y = kps[..., 0], kps[..., 1]
    inside = (kps[..., 2] > 0) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    xi = np.clip(np.floor(x).astype(np.int64), 0, W - 1)
    yi = np.clip(np.floor(y).astype(np.int64), 0, H - 1)
    own = owner[yi, xi]
    mine = (own == np.arange(n)[:, None]) | (own < 0)
    v = np.where(inside, np.where(mine, 2, 1), 0)
    kps[..., 2] = v
    kps[v == 0, :2] = 0.0
    area = vis_masks.reshape(n, -1).sum(axis=1)
    small = (area < min_area_frac * H * W) | ((v > 0).sum(axis=1) < min_keypoints_person)
    kps[small] = 0.0
    return vis_masks, area


def crowding_figures(full_masks: np.ndarray, full_boxes: np.ndarray) -> tuple[float, float]:
    """(max box IoU, max mask IoU; NaN with < 2 people) over the people with pixels in the
    image; ``full_masks`` (N, H, W) bool, ``full_boxes`` (N, 4)."""
    n = full_masks.shape[0]
    drawn = full_masks.reshape(n, -1).any(axis=1)
    max_iou = max_pairwise_iou(full_boxes[drawn])
    fm = full_masks[drawn].reshape(int(drawn.sum()), -1).astype(np.float32)
    if len(fm) >= 2:
        inter = fm @ fm.T
        a = np.diag(inter)
        iou = inter / np.maximum(a[:, None] + a[None, :] - inter, 1)
        np.fill_diagonal(iou, -1)
        return max_iou, float(iou.max())
    return max_iou, float("nan")


# ================================================================================ the scene
def people_range(c: float) -> tuple[int, int]:
    """(fewest, most) people of a scene at crowding level ``c``: 1-4 sparse .. 3-8 heavy."""
    return int(round(1 + 2 * c)), int(round(4 + 4 * c))


def num_people(rng, c: float) -> int:
    """Number of people of a scene at crowding level ``c``, uniform over :func:`people_range`."""
    lo, hi = people_range(c)
    return int(rng.integers(lo, hi + 1))


def people_heights(rng, c: float, n: int, s: float) -> np.ndarray:
    """Standing heights (n,) in pixels of a scene's people (``s``: the image's shorter side): a
    scene scale U(0.3 + 0.25 c, 0.7 + 0.15 c) times a per-person log-normal spread that narrows
    with ``c`` (similar sizes in crowds), clipped to [0.2, 1] x ``s``."""
    base = rng.uniform(0.3 + 0.25 * c, 0.7 + 0.15 * c)
    return np.clip(base * np.exp(rng.normal(0, 0.25 - 0.15 * c, size=n)), 0.2, 1.0) * s


def _render(rng, H: int, W: int, c: float, pose_bank=None, min_area_frac: float = 0.01,
            min_keypoints_person: int = 3) -> dict:
    """The full scene: see :func:`render_scene`. Returns a dict with image, keypoints (N, 17, 3),
    masks (N, H, W) bool (visible), full_boxes (N, 4) x0 y0 x1 y1 of the full masks,
    max_iou (box), max_mask_iou (NaN with < 2 people)."""
    img = _background(rng, H, W)
    s = float(min(H, W))
    # -- people: number, figures, sizes (every range interpolates linearly in c) --------------
    n = num_people(rng, c)
    figs = []
    for _ in range(n):
        if pose_bank is not None and len(pose_bank):
            figs.append(_bank_figure(rng, pose_bank[int(rng.integers(len(pose_bank)))]))
        else:
            figs.append(_kinematic_figure(rng))
    heights = people_heights(rng, c, n, s)
    # -- placement: each person's box IoU with those already placed close to a target ---------
    placed, offsets = _place(rng, figs, heights, c, H, W)
    # -- painter's order: far (feet higher in the image) to near ------------------------------
    order = np.argsort(placed[:, 3] + rng.normal(0, 0.1, size=n) * heights, kind="stable")
    owner = np.full((H, W), -1, np.int16)
    full_masks = np.zeros((n, H, W), bool)
    kps = np.zeros((n, K, 3), np.float64)
    yy, xx = np.arange(H, dtype=np.float32)[:, None], np.arange(W, dtype=np.float32)[None, :]
    full_boxes = np.zeros((n, 4))
    for rank, i in enumerate(order):
        J, lab, shapes = figs[i]
        pal, tex = _person_palette(rng)
        scale, off = heights[i], offsets[i]
        ext = _extent(shapes) * scale + np.concatenate([off, off])
        x0, y0 = max(int(math.floor(ext[0])) - 2, 0), max(int(math.floor(ext[1])) - 2, 0)
        x1, y1 = min(int(math.ceil(ext[2])) + 2, W), min(int(math.ceil(ext[3])) + 2, H)
        kp = J * scale + off
        kps[rank, :, :2] = np.round(kp, 2)
        kps[rank, :, 2] = lab
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _draw_shapes(canvas, shapes, scale, off, np.array([x0, y0], np.float64))
        m = canvas > 0
        if not m.any():
            continue
        colour = pal[canvas]
        cy_, cx_ = yy[y0:y1], xx[:, x0:x1]
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        full_boxes[rank] = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
        if tex["stripes"]:
            ph = (cx_ * math.cos(tex["angle"]) + cy_ * math.sin(tex["angle"])) / (tex["period"] * scale)
            st = ((canvas % SHADE) == SHIRT) & (np.floor(ph).astype(np.int64) % 2 == 0)
            colour[st] = tex["stripe_rgb"] * np.where(canvas[st] >= SHADE, 0.72, 1.0)[:, None]
        light = 1 + tex["light"] * ((cx_ - 0.5 * (x0 + x1)) * math.cos(tex["light_angle"])
                                    + (cy_ - 0.5 * (y0 + y1)) * math.sin(tex["light_angle"])) / scale
        sel = colour[m] * light[m][:, None] + rng.standard_normal((int(m.sum()), 3), dtype=np.float32) * tex["noise"]
        sub = img[y0:y1, x0:x1]
        sub[m] = sel
        owner[y0:y1, x0:x1][m] = rank
        full_masks[rank, y0:y1, x0:x1] = m
    # -- finish the image: sensor noise, optional blur -------------------------------------
    img += rng.standard_normal((H, W, 3), dtype=np.float32) * rng.uniform(0, 6)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    vis_masks, area = visibility(kps, owner, min_area_frac, min_keypoints_person)
    max_iou, max_mask_iou = crowding_figures(full_masks, full_boxes)
    keep = area > 0
    return {"image": image, "keypoints": kps[keep].astype(np.float32), "masks": vis_masks[keep],
            "full_boxes": full_boxes[keep], "max_iou": max_iou, "max_mask_iou": max_mask_iou}


def render_scene(rng: np.random.Generator, image_size=256, crowding="sparse", pose_bank=None):
    """Draw one synthetic scene in memory.

    Args:
        rng: ``np.random.Generator``; the scene is a pure function of its state.
        image_size: int (square) or (H, W).
        crowding: "sparse", "heavy" or a level in [0, 1] (see the module docstring).
        pose_bank: None (kinematic prior) or (P, 17, 3) float array of normalised real poses
            (x, y, labelled) from :func:`load_pose_bank`.

    Returns:
        image: uint8 (H, W, 3) RGB.
        keypoints: float32 (N, 17, 3) x, y, v in continuous pixel coordinates; people kept
            with all-zero keypoints are the small ones (num_keypoints = 0, to be ignored).
        masks: bool (N, H, W) visible instance masks (pixels each person owns), far to near.
    """
    H, W = image_hw(image_size)
    scene = _render(rng, H, W, crowding_level(crowding), pose_bank)
    return scene["image"], scene["keypoints"], scene["masks"]


# =============================================================================== pose bank
def load_pose_bank(poses_file, min_keypoints: int = 8) -> np.ndarray:
    """Real poses from a COCO keypoint json, normalised to standing height 1.

    Takes the non-crowd people with >= ``min_keypoints`` labelled (v > 0) keypoints (default 8:
    the brief), moves the hip centre (or, without both hips, the labelled keypoints' mean) to
    the origin and divides by the height estimated from the labelled segments: the 75th
    percentile of (observed length / canonical length) over the segments of
    ``_CANON_SEGMENTS`` (foreshortening only shortens), else the labelled extent / 0.5.

    Returns: float32 (P, 17, 3): x, y (body units, y down), labelled (1.0 / 0.0).
    Raises ValueError (naming the file) for a missing or malformed file, a keypoint list that
    is not 17 x 3 values, or no usable person.
    """
    path = Path(poses_file)
    data = load_coco_json(path, require_images=False)
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list):
        raise ValueError(f"{path}: no 'annotations' list (not a COCO keypoint json)")
    out = []
    for ann in anns:
        if not isinstance(ann, dict) or ann.get("iscrowd", 0):
            continue
        kp = ann.get("keypoints")
        if kp is None:
            continue
        if not isinstance(kp, list) or len(kp) != 3 * K:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise ValueError(f"{path}: annotation id {ann.get('id')} has {n} keypoint values, "
                             f"expected {3 * K} (COCO-17 x, y, v triples)")
        try:
            a = np.asarray(kp, np.float64).reshape(K, 3)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: annotation id {ann.get('id')} has non-numeric keypoints") from None
        lab = a[:, 2] > 0
        if lab.sum() < min_keypoints:
            continue
        xy = a[:, :2]
        origin = 0.5 * (xy[L_HIP] + xy[R_HIP]) if (lab[L_HIP] and lab[R_HIP]) else xy[lab].mean(axis=0)
        scale = standing_height(xy, lab)
        if not np.isfinite(scale) or scale <= 1e-6:
            continue
        pose = np.zeros((K, 3), np.float32)
        pose[:, :2] = np.where(lab[:, None], (xy - origin) / scale, 0.0)
        pose[:, 2] = lab
        out.append(pose)
    if not out:
        raise ValueError(f"{path}: no person with >= {min_keypoints} labelled keypoints")
    return np.stack(out)


def standing_height(xy: np.ndarray, lab: np.ndarray) -> float:
    """Standing height of a COCO-17 person from its labelled keypoints (``xy`` (17, 2), ``lab``
    (17,) bool, at least one True): the 75th percentile of (observed length / canonical length)
    over the labelled segments of ``_CANON_SEGMENTS`` (foreshortening only shortens), else the
    labelled extent / 0.5. Same units as ``xy``."""
    ratios = [np.linalg.norm(xy[i] - xy[j]) / L for i, j, L in _CANON_SEGMENTS if lab[i] and lab[j]]
    if ratios:
        return float(np.percentile(ratios, 75))
    ext = xy[lab].max(axis=0) - xy[lab].min(axis=0)
    return float(ext.max()) / 0.5


# ============================================================================== the dataset
#: A worker process's shared state: ``"bank"``, the poses or people its tasks draw from, set by
#: :func:`init_worker` (the Pool initializer; in this process when the jobs run here).
WORKER: dict = {}


def init_worker(bank) -> None:
    """Pool initializer: ``bank`` for this process's tasks; OpenCV on one thread."""
    WORKER["bank"] = bank
    cv2.setNumThreads(1)


def _make_image(args):
    """Worker: render image ``index``, write its JPEG, return its annotations (no ids yet)."""
    index, seed, H, W, c, image_dir, jpeg_quality, min_area_frac, min_kp = args
    rng = np.random.default_rng([seed, index])
    scene = _render(rng, H, W, c, WORKER["bank"], min_area_frac, min_kp)
    file_name = write_scene_image(scene["image"], image_dir, index, jpeg_quality)
    return index, file_name, scene_annotations(scene, H, W), scene["max_iou"], scene["max_mask_iou"]


def write_scene_image(image: np.ndarray, image_dir: Path, index: int, jpeg_quality: int) -> str:
    """Write uint8 (H, W, 3) RGB ``image`` as ``image_dir/NNNNNN.jpg`` (``index``); returns its name."""
    file_name = f"{index:06d}.jpg"
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"{image_dir / file_name}: JPEG encoding failed")
    with open(image_dir / file_name, "wb") as f:
        f.write(buf.tobytes())
    return file_name


def scene_annotations(scene: dict, H: int, W: int) -> list[dict]:
    """COCO annotations (no ids yet) of a scene's ``keypoints`` (N, K, 3) and visible ``masks``
    (N, H, W) bool: keypoints (x, y to 2 decimals, v int), num_keypoints, the mask's bbox and
    area, and the mask as a compressed RLE segmentation."""
    from pycocotools import mask as mask_util

    anns = []
    for kp, m in zip(scene["keypoints"], scene["masks"]):
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        bbox = [float(v) for v in mask_util.toBbox(rle)]
        anns.append({
            "category_id": 1,
            "keypoints": [round(float(v), 2) if i % 3 < 2 else int(v) for i, v in enumerate(kp.reshape(-1))],
            "num_keypoints": int((kp[:, 2] > 0).sum()),
            "bbox": bbox,
            "area": int(m.sum()),
            "iscrowd": 0,
            "segmentation": {"size": [H, W], "counts": rle["counts"].decode("ascii")},
        })
    return anns


def run_jobs(jobs: list, bank, workers: int, chunksize: int, progress: bool, task=None) -> list:
    """``task`` (default :func:`_make_image`) of every job, in job order, after
    :func:`init_worker` ``(bank)`` in each process: in this process (``workers`` 1 or one job)
    or in a forkserver pool (a fork of this process could inherit a lock held by a thread of
    torch, onnxruntime or OpenMP and deadlock; the server is a fresh single-threaded process).
    ``task`` is a module-level function (the pool pickles it by name)."""
    task = _make_image if task is None else task
    n = len(jobs)
    results = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="synth", unit="img")
    try:
        if workers == 1 or n == 1:
            init_worker(bank)
            for job in jobs:
                results.append(task(job))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp
            with mp.get_context("forkserver").Pool(min(workers, n), initializer=init_worker, initargs=(bank,)) as pool:
                for r in pool.imap(task, jobs, chunksize=max(1, int(chunksize))):
                    results.append(r)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def collect_results(results: list, levels: list, H: int, W: int) -> tuple[list, list, list, list]:
    """COCO ``images`` and ``annotations`` (image id = index + 1, annotation ids from 1) of the
    job results ``(index, file_name, anns, max_iou, max_mask_iou, ...)`` in index order, with the
    finite max box / mask IoUs (images with >= 2 people)."""
    images, annotations, ious, mask_ious = [], [], [], []
    for index, file_name, anns, max_iou, max_mask_iou, *_ in results:
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": W, "height": H,
                       "crowding": levels[index % len(levels)]})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
        if np.isfinite(max_iou):
            ious.append(max_iou)
            mask_ious.append(max_mask_iou)
    return images, annotations, ious, mask_ious


def generate_dataset(out_dir, num_images: int, *, crowding="sparse", seed: int = 0, poses_file=None,
                     image_size=256, workers: int | None = None, progress: bool = True,
                     jpeg_quality: int = 95, min_area_frac: float = 0.01, min_keypoints_person: int = 3,
                     chunksize: int = 8) -> dict:
    """Write a synthetic COCO keypoint dataset: ``out_dir/images/NNNNNN.jpg`` and
    ``out_dir/annotations.json`` (image ids are index + 1; ``file_name`` is relative to
    ``out_dir/images``; each image entry has width and height).

    Args:
        out_dir: output folder (created).
        num_images: number of images (>= 1).
        crowding: "sparse", "medium", "heavy", a level in [0, 1], or a comma-separated list
            of them ("sparse,heavy"): image i then takes the (i mod n)-th, a training set that
            mixes crowding levels (each image entry records its ``crowding`` level).
        seed: image i is drawn from ``np.random.default_rng([seed, i])``.
        poses_file: None (kinematic prior) or a COCO keypoint json whose people (>= 8
            labelled keypoints) supply the poses (:func:`load_pose_bank`).
        image_size: int or (H, W); default 256 (the brief).
        workers: processes; None = ``os.cpu_count()``; 1 = in this process. The output does
            not depend on it.
        progress: tqdm progress bar.
        jpeg_quality: cv2 JPEG quality (this module's choice, 95).
        min_area_frac, min_keypoints_person: people with a smaller visible area fraction or
            fewer labelled keypoints get ``num_keypoints = 0`` (brief: 1%, 3).
        chunksize: images per worker task.

    Returns: {"images", "people" (annotations with keypoints), "ignored_people"
    (num_keypoints = 0 annotations), "mean_people_per_image", "mean_max_iou" (full-box max
    IoU, mean over images with >= 2 people), "mean_max_mask_iou", "crowded_images" (images
    with >= 2 people), "seconds", "images_per_second", "annotation_file", "image_dir"}.
    """
    t0 = time.perf_counter()
    if int(num_images) < 1:
        raise ValueError(f"num_images {num_images!r}: must be >= 1")
    levels = crowding_levels(crowding)
    H, W = image_hw(image_size)
    bank = load_pose_bank(poses_file) if poses_file is not None else None
    out = Path(out_dir)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    n = int(num_images)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    jobs = [(i, int(seed), H, W, levels[i % len(levels)], image_dir, jpeg_quality, min_area_frac,
             min_keypoints_person) for i in range(n)]
    results = run_jobs(jobs, bank, workers, chunksize, progress)
    images, annotations, ious, mask_ious = collect_results(results, levels, H, W)
    mean_iou = float(np.mean(ious)) if ious else float("nan")
    mean_mask_iou = float(np.mean(mask_ious)) if mask_ious else float("nan")
    info = {"description": "posegroup synthetic crowded scenes",
            "crowding": crowding if isinstance(crowding, str) else float(crowding), "crowding_level": levels[0] if len(levels) == 1 else levels,
            "seed": int(seed), "image_size": [H, W], "poses_file": None if poses_file is None else str(poses_file),
            "mean_max_iou": round(mean_iou, 6) if ious else None,
            "mean_max_iou_kind": "full (unoccluded) person bounding boxes, images with >= 2 people",
            "mean_max_mask_iou": round(mean_mask_iou, 6) if ious else None,
            "ignored_people": "small people are annotations with num_keypoints = 0"}
    ann_file = write_json_atomic(out / "annotations.json", {"info": info, "images": images, "annotations": annotations,
                                                              "categories": [COCO17.coco_category()]})
    seconds = time.perf_counter() - t0
    people = sum(1 for a in annotations if a["num_keypoints"] > 0)
    return {"images": n, "people": people, "ignored_people": len(annotations) - people,
            "mean_people_per_image": len(annotations) / n, "mean_max_iou": mean_iou,
            "mean_max_mask_iou": mean_mask_iou, "crowded_images": len(ious), "seconds": seconds,
            "images_per_second": n / seconds if seconds > 0 else float("inf"),
            "annotation_file": str(ann_file), "image_dir": str(image_dir)}
