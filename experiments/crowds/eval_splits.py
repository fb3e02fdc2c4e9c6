"""python eval_splits.py CKPT N split[,split...] [key=json ...]: AP (true ids) of a checkpoint."""
import json
import sys

from common import aps, score

ckpt, n, splits = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
test = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
print(ckpt, test, aps(score(ckpt, test, splits, n)))
