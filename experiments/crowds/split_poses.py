"""python experiments/crowds/split_poses.py COCO_JSON OUT_DIR: split a COCO keypoint json's images
into two disjoint halves by image id (even -> train_poses.json, odd -> val_poses.json), so that
synthetic training scenes (``posegroup synth --poses``) and held-out scenes take their real
poses from different photographs. Prints each half's images and people."""
import json
import sys
from pathlib import Path


def split(data: dict) -> dict:
    """{"train": COCO dict, "val": COCO dict}: images (and their annotations) by id parity."""
    out = {}
    for name, parity in (("train", 0), ("val", 1)):
        ids = {im["id"] for im in data["images"] if im["id"] % 2 == parity}
        out[name] = {**data, "images": [im for im in data["images"] if im["id"] in ids],
                     "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    return out


def main(src, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in split(json.loads(Path(src).read_text())).items():
        (out_dir / f"{name}_poses.json").write_text(json.dumps(part))
        print(name, len(part["images"]), "images", len(part["annotations"]), "people")


if __name__ == "__main__":
    main(*sys.argv[1:3])
