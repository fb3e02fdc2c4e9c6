"""Figures of docs/posenet_backbone.md: the methods' networks on PoseNet's pretrained MobileNetV1
(``model.backbone: posenet_mobilenet``), scored on the 136 real COCO images of
../shared/data/coco_images (one CPU thread).

    python experiments/posenet/backbone_heads.py personlab SIZE STRIDE
        PersonLab's network before any training (PoseNet's own heads through the method's
        predict) beside the pretrained PoseNet predictor (PoseNetTorch, SIZE + 1 px).
    python experiments/posenet/backbone_heads.py ae-ceiling SIZE STRIDE [flip]
        AE before training with the true people's ids as tags (predict_true_ids): how well
        PoseNet's heatmap head locates joints, argmax + 1/4 cell against short_offsets.
    python experiments/posenet/backbone_heads.py checkpoint CKPT SIZE
        a trained checkpoint: AP on the held-out source split (images never pasted into
        ``synth --people-from --source-split train`` scenes) and on all 136.
"""
import sys
import time

import numpy as np
import torch

from posegroup.data.coco import CocoPoseDataset
from posegroup.data.paste import source_split_of
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import evaluate_results
from posegroup.evaluation import to_coco_results
from posegroup.methods import build_method
from posegroup.skeleton import COCO17

ANN = "../shared/data/coco_images/person_keypoints_local_images.json"
PERSONLAB = {"radius": 32.0, "decode": {"peak_threshold": 0.1, "oks_mass": "votes"}}


def score(ds, predict) -> tuple[float, float, float]:
    """(AP on all images, AP on the held-out source split, seconds) of ``predict(sample)``."""
    results, t = [], time.perf_counter()
    for i, image_id in enumerate(ds.image_ids):
        out = predict(ds[i])
        results += to_coco_results(image_id, out[0], out[1])
    held = [i for i in ds.image_ids if source_split_of(i, 0.3) == "heldout"]
    return (evaluate_results(ANN, results)["AP"], evaluate_results(ANN, results, image_ids=held)["AP"],
            time.perf_counter() - t)


def personlab(ds, size: int, stride: int) -> None:
    from posegroup.methods.personlab.posenet import PoseNetTorch
    method = build_method("personlab", COCO17, **PERSONLAB)
    net = method.build_model({"backbone": "posenet_mobilenet", "output_stride": stride}).eval()
    ap = score(ds, lambda s: method.predict(net, s["image"], input_size=size, with_masks=False))
    ref = PoseNetTorch(input_size=size + 1, output_stride=stride, device="cpu")
    ap_ref = score(ds, lambda s: ref.predict(s["image"]))
    print(f"stride {stride}, {size} px: PersonLab network AP {ap[0]:.3f} (held-out {ap[1]:.3f}); "
          f"PoseNetTorch {size + 1} px AP {ap_ref[0]:.3f} (held-out {ap_ref[1]:.3f})")


def ae_ceiling(ds, size: int, stride: int, flip: bool) -> None:
    for offsets in (False, True):
        method = build_method("ae", COCO17, short_offsets=offsets)
        net = method.build_model({"backbone": "posenet_mobilenet", "output_stride": stride}).eval()
        ap = score(ds, lambda s: method.predict_true_ids(net, s["image"], s["keypoints"], input_size=size, flip=flip))
        print(f"stride {stride}, {size} px, flip {flip}, short_offsets {offsets}: AP {ap[0]:.3f} ({ap[2]:.0f} s)")


def checkpoint(ds, path: str, size: int) -> None:
    model, method, _ = load_model(path)
    extra = {"with_masks": False} if method.name == "personlab" else {}
    ap = score(ds, lambda s: method.predict(model, s["image"], input_size=size, **extra))
    print(f"{path}: AP {ap[0]:.3f}, held-out {ap[1]:.3f} ({ap[2]:.0f} s)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    data = CocoPoseDataset(ANN)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "personlab":
        personlab(data, int(args[0]), int(args[1]))
    elif mode == "ae-ceiling":
        ae_ceiling(data, int(args[0]), int(args[1]), len(args) > 2 and args[2] == "flip")
    else:
        checkpoint(data, args[0], int(args[1]))
