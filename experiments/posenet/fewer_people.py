"""python experiments/posenet/fewer_people.py BENCH_DIR OUT [SEED]: the training scenes of a
``benchmark methods --backbone posenet_mobilenet`` run remade from half its training people.

The train2017 source photos of ``../shared/data/coco_images`` are dealt into two sets holding
the same number of usable people (most people first, each photo to the set with fewer), the
first set's photos kept; 600 scenes (sparse, medium, heavy mixed, 512 px, seed SEED, default 0)
are pasted from their people into OUT/data/train, and BENCH_DIR's held-out splits are linked
beside them, so that ``train_and_score.py CONFIG OUT ...`` trains on half the people and scores
on the same held-out scenes. Prints the two sets' people counts."""
import collections
import json
import sys
from pathlib import Path

from posegroup.data.paste import generate_paste_dataset, load_people_bank
from posegroup.engine.demo import find_shared_data

from common import SCENES


def half_people(ann_file: Path, dst: Path) -> tuple[int, int]:
    """``ann_file`` without the second set of its train2017 photos, written to ``dst``; returns
    the usable people of (kept set, dropped set)."""
    doc = json.loads(ann_file.read_text())
    bank = load_people_bank(ann_file, source_split="train", heldout_folder="val2017")
    people = collections.Counter(int(i) for i in bank.image_id)
    photos = sorted((im["id"] for im in doc["images"] if im["file_name"].startswith("train2017/")),
                    key=lambda i: (-people[i], i))
    dropped, counts = set(), [0, 0]
    for i in photos:
        side = 0 if counts[0] <= counts[1] else 1
        if side:
            dropped.add(i)
        counts[side] += people[i]
    doc["images"] = [im for im in doc["images"] if im["id"] not in dropped]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] not in dropped]
    dst.write_text(json.dumps(doc))
    return counts[0], counts[1]


def main(bench, out, seed=0):
    bench, out = Path(bench).resolve(), Path(out)
    source = find_shared_data("coco_images/person_keypoints_local_images.json")
    if source is None:
        raise SystemExit("../shared/data/coco_images/person_keypoints_local_images.json not found")
    (out / "data").mkdir(parents=True, exist_ok=True)
    subset = out / "half_train_people.json"
    print("usable people, kept / dropped: %d / %d" % half_people(source, subset), flush=True)
    bank = load_people_bank(subset, source.parent, source_split="train", heldout_folder="val2017")
    generate_paste_dataset(out / "data" / "train", 600, bank=bank, crowding="sparse,medium,heavy", seed=int(seed),
                           image_size=512, workers=1, progress=False)
    for split in (*SCENES, "real_val2017"):
        link = out / "data" / split
        if not link.exists():
            link.symlink_to(bench / "data" / split)


if __name__ == "__main__":
    main(*sys.argv[1:])
