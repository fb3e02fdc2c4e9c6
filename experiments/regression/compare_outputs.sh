#!/bin/bash
# Outputs of predict / evaluate on the shipped models from two source trees, for a byte-for-byte
# comparison (docs/shipped_weights.md):
#   git worktree add /work/base REV
#   experiments/regression/compare_outputs.sh /work/base OUT_BASE; experiments/regression/compare_outputs.sh . OUT_HEAD
#   for d in ae personlab recurrent posenet_onnx; do cmp OUT_BASE/$d/results.json OUT_HEAD/$d/results.json; done
# SCENES: a folder with val_heavy/ and val_medium/ synthetic splits (posegroup demo writes them
# to posegroup_demo/data); real data from ../shared/data.
SRC=$1; OUT=$2; SCENES=${SCENES:-posegroup_demo/data}; DATA=${DATA:-../shared/data}
mkdir -p "$OUT"
export PYTHONPATH=$SRC/src OMP_NUM_THREADS=1
W=$SRC/src/posegroup/weights
for m in ae personlab recurrent; do
  python -m posegroup.cli --quiet predict "$SCENES/val_heavy/images" --weights "$W/$m.pt" --out "$OUT/$m" --no-draw
  python -m posegroup.cli --quiet evaluate --gt "$SCENES/val_medium/annotations.json" --weights "$W/$m.pt" > "$OUT/eval_$m.txt"
done
python -m posegroup.cli --quiet predict "$DATA/coco_images/val2017" --onnx "$DATA/models/posenet_mobilenetv1_dyn.onnx" \
  --format posenet --out "$OUT/posenet_onnx" --no-draw
