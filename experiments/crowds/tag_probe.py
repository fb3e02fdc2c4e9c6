"""python experiments/crowds/tag_probe.py CKPT MINUTES [SEED]: can tags be learnt on top of a network
trained without the grouping loss (docs/crowds.md, the grouping loss costs localisation)?

Loads CKPT (an AE run with pull = push = 0), freezes every weight except the tag rows of the final
1x1 head (its heatmap rows keep their gradient zeroed, BatchNorm in eval mode), trains those rows
with the bundled crowd recipe's grouping loss (pull 1e-3, push 1e-2) on CKPT's training scenes for
MINUTES (Adam, lr 4e-3, batch 16, one thread), then scores 100 held-out images per split.
The heatmaps are unchanged, so the true-id AP stays CKPT's; the predicted-tag AP is what a linear
tag read-out of heatmap-only features can group. A probe, not a training recipe."""
import sys
import time

import torch
from common import aps, score

from posegroup.data.training import collate
from posegroup.engine.checkpoint import load_model
from posegroup.engine.train import to_device, forward_loss, single_process_run


def main(ckpt: str, minutes: float, seed: int = 0) -> None:
    model, method, cfg = load_model(ckpt)
    cfg["method"]["options"].update(pull_weight=1e-3, push_weight=1e-2)
    cfg["train"].update(seed=seed, out_dir="/tmp/tag_probe", channels_last=False)
    r = single_process_run(cfg)
    r.net.load_state_dict(model.state_dict())
    r.net.eval()
    head = r.net.heads[-1]
    k = method.num_keypoints
    for p in r.net.parameters():
        p.requires_grad_(False)
    for p in (head.weight, head.bias):
        p.requires_grad_(True)
        p.register_hook(lambda g: torch.cat([torch.zeros_like(g[:k]), g[k:]]))
    opt = torch.optim.Adam([head.weight, head.bias], lr=4e-3)
    gen = torch.Generator().manual_seed(seed)
    t0, steps = time.monotonic(), 0
    while time.monotonic() - t0 < 60 * minutes:
        idx = torch.randint(len(r.train_set), (r.batch_size,), generator=gen).tolist()
        loss, parts = forward_loss(r, to_device(collate([r.train_set[i] for i in idx]), r.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps % 100 == 0:
            print(steps, {key: round(float(v), 5) for key, v in parts.items()}, flush=True)
    print(f"{steps} steps in {(time.monotonic() - t0) / 60:.1f} min")
    print(ckpt, "tag probe", aps(score((r.net, r.method, cfg), {}, n=100)))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
