"""python experiments/posenet/ae_hough_ceiling.py CKPT SPLIT_JSON [N] [IMAGE_ROOT]: AE's true-id
ceiling on a PoseNet-backed AE checkpoint (``short_offsets: true``) with its heatmaps as the
network gives them against the same heatmaps Hough-voted by PoseNet's short-range offsets (each
cell's probability splatted bilinearly at cell + offset, PersonLab's voting, on the same grid),
so that a joint's evidence from the cells around it gathers on one cell before AE's peak step.
Prints AP and true-id AP of both on the first N images (default 30)."""
import sys

import numpy as np

from posegroup.engine.benchmark import open_split, predict_split, timed_predictor, true_id_predictor
from posegroup.engine.checkpoint import load_model
from posegroup.engine.evaluate import score_results
from posegroup.engine.predict import inference_options
from posegroup.methods.ae import decode


def hough_vote(heat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """heat (K, H, W) probabilities, offsets (K, 2, H, W) (x, y) in cells from each cell's centre
    -> (K, H, W): each cell's value splatted bilinearly at its cell + offset on the grid itself,
    unsmoothed (:func:`~posegroup.methods.ae.decode.hough_vote` with factor 1, blur 0)."""
    return decode.hough_vote(heat, np.zeros(heat.shape + (1,), np.float32), offsets, factor=1, blur=0.0)[0]


def main(ckpt, ann, n=30, root=None):
    model, method, config = load_model(ckpt)[:3]
    opts = inference_options(config, method)
    ds, ids = open_split(ann, method.keypoint_set, n, root)
    for voted in (False, True):
        if voted:
            plain = type(method).network_outputs

            def network_outputs(self, *a, **k):
                o = plain(self, *a, **k)
                return o._replace(heatmaps=hough_vote(o.heatmaps, o.offsets))
            type(method).network_outputs = network_outputs
        res = predict_split(timed_predictor(model, method, opts), ds, ids, oracle=true_id_predictor(method, model, opts))
        score = [score_results(str(ds.ann_file), r, ids, keypoint_set=ds.keypoint_set, keys=("AP",))["AP"]
                 for r in (res["results"], res["true_results"])]
        print(f"{'hough-voted' if voted else 'as given'}: AP {score[0]:.3f}, true-id AP {score[1]:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 30,
         sys.argv[4] if len(sys.argv) > 4 else None)
