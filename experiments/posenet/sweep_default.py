"""COCO AP of the pretrained PoseNet (PyTorch module + PersonLab decoder) on the 136 real COCO
images of ../shared/data/coco_images, over input size, output stride, flip and weight precision.

    python experiments/posenet/sweep_default.py WEIGHTS SIZE[,SIZE..] STRIDE[,STRIDE..] FLIP[,FLIP..]

WEIGHTS: a converted .pt, Google's .onnx, or "shipped"; FLIP: 0 or 1. Prints one line per
setting: AP on all 136 images and on the 88 of them from val2017 (PoseNet never trained on
those; the other 48 are train2017 images)."""
import sys
import time

from posegroup.data.coco import CocoPoseDataset
from posegroup.engine.evaluate import evaluate_results
from posegroup.engine.predict import predict_dataset
from posegroup.methods.personlab.posenet import PoseNetTorch

ANN = "../shared/data/coco_images/person_keypoints_local_images.json"


def main(weights, sizes, strides, flips):
    ds = CocoPoseDataset(ANN)
    ids = list(ds.image_ids)
    val_ids = [i for i in ids if "val2017" in ds.images[i]["file_name"]]
    for stride in [int(s) for s in strides.split(",")]:
        for size in [int(s) for s in sizes.split(",")]:
            for flip in [bool(int(f)) for f in flips.split(",")]:
                net = PoseNetTorch(None if weights == "shipped" else weights, input_size=size,
                                   output_stride=stride, flip=flip)
                t = time.perf_counter()
                results = predict_dataset(net.predict, ds, progress=False)
                dt = (time.perf_counter() - t) / len(ids)
                a = evaluate_results(ANN, results, keypoint_set=ds.keypoint_set, image_ids=ids)
                v = evaluate_results(ANN, [r for r in results if r["image_id"] in set(val_ids)],
                                     keypoint_set=ds.keypoint_set, image_ids=val_ids)
                print(f"weights={weights} size={size} stride={stride} flip={int(flip)} AP={a['AP']:.3f} "
                      f"AP50={a['AP50']:.3f} AR={a['AR']:.3f} val2017({len(val_ids)}) AP={v['AP']:.3f} "
                      f"s/img={dt:.3f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
