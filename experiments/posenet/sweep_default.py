"""COCO AP of the pretrained PoseNet (PyTorch module + PersonLab decoder) on the 136 real COCO
images of ../shared/data/coco_images, over input size, output stride, flip and weight precision.

    python experiments/posenet/sweep_default.py WEIGHTS SIZE[,SIZE..] STRIDE[,STRIDE..] FLIP[,FLIP..]

WEIGHTS: a converted .pt or Google's .onnx; FLIP: 0 or 1. Prints one line per setting."""
import sys
import time

from posegroup.data.coco import CocoPoseDataset
from posegroup.engine.predict import evaluate_predictor
from posegroup.methods.personlab.posenet import PoseNetTorch

ANN = "../shared/data/coco_images/person_keypoints_local_images.json"


def main(weights, sizes, strides, flips):
    ds = CocoPoseDataset(ANN)
    for stride in [int(s) for s in strides.split(",")]:
        for size in [int(s) for s in sizes.split(",")]:
            for flip in [bool(int(f)) for f in flips.split(",")]:
                net = PoseNetTorch(weights, input_size=size, output_stride=stride, flip=flip)
                t = time.perf_counter()
                stats = evaluate_predictor(net.predict, ds)
                dt = (time.perf_counter() - t) / len(ds.image_ids)
                print(f"weights={weights} size={size} stride={stride} flip={int(flip)} AP={stats['AP']:.3f} "
                      f"AP50={stats['AP50']:.3f} AR={stats['AR']:.3f} s/img={dt:.3f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
