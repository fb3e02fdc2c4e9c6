"""Network ms of the PyTorch PoseNet module against onnxruntime on the same prepared inputs, one
thread each, alternating image by image (so a busy machine slows both alike).

    python experiments/posenet/speed_torch_vs_onnx.py [SIZE] [IMAGES]
"""
import json
import statistics
import sys
import time

import cv2
import torch

from posegroup.methods.personlab.posenet import PoseNetONNX, PoseNetTorch

ROOT = "../shared/data/coco_images/"


def main(size=513, count=40):
    torch.set_num_threads(1)
    ours = PoseNetTorch(input_size=size, flip=False, device="cpu")
    ref = PoseNetONNX("../shared/data/models/posenet_mobilenetv1_dyn.onnx", input_size=size, threads=1)
    images = json.load(open(ROOT + "person_keypoints_local_images.json"))["images"][:count]
    times = {"pytorch": [], "onnxruntime": []}
    for im in images:
        x, _ = ours.preprocess(cv2.imread(ROOT + im["file_name"])[:, :, ::-1].copy())
        for name, net in (("pytorch", ours), ("onnxruntime", ref)):
            t = time.perf_counter()
            net.run_graph(x)
            times[name].append(1e3 * (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"size {size}, {len(images)} images, 1 thread: network ms median pytorch {med['pytorch']:.1f}, "
          f"onnxruntime {med['onnxruntime']:.1f} (pytorch / onnxruntime {med['pytorch'] / med['onnxruntime']:.2f}x)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
