"""What the PoseNet experiments share: the held-out splits of a ``benchmark methods --backbone
posenet_mobilenet`` output folder, as ``compare.score_splits`` takes them."""
from pathlib import Path

from posegroup.engine.demo import find_shared_data

SCENES = ("sparse", "medium", "heavy")


def held_out_splits(bench) -> dict:
    """BENCH_DIR -> {split: (annotation file, image folder or None)}: its sparse / medium /
    heavy real-people scenes (images beside their annotations), then the real val2017 photos
    (images in the shared ``coco_images`` folder)."""
    data = Path(bench) / "data"
    people = find_shared_data("coco_images/person_keypoints_local_images.json")
    if people is None:
        raise SystemExit("../shared/data/coco_images/person_keypoints_local_images.json not found: "
                         "the real val2017 split needs its images")
    anns = {s: (str(data / s / "annotations.json"), None) for s in SCENES}
    anns["real_val2017"] = (str(data / "real_val2017" / "annotations.json"), str(people.parent))
    return anns
