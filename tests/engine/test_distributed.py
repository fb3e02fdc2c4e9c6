"""DDP errors end as one line: the failing rank reports its own error, the others exit quietly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posegroup.engine.distributed import PeerFailed, peer_gone, settle
from tests.helpers import make_dataset


def test_settle_without_process_group_raises_the_error():
    settle(None)
    with pytest.raises(FileNotFoundError, match="x.png"):
        settle(FileNotFoundError("x.png: image file not found"))


def test_peer_gone(monkeypatch):
    assert peer_gone(PeerFailed("rank 1 stopped"))
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not peer_gone(gloo)                      # one process: a real error, shown
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert peer_gone(gloo)
    assert not peer_gone(RuntimeError("something else"))


def _torchrun_train(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "posegroup.cli", "--quiet", "train", str(config)],
                          capture_output=True, text=True, timeout=240, cwd=cwd,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _config(tmp_path: Path, ann: Path, workers: int) -> Path:
    cfg = {"method": {"name": "ae", "options": {"pull_weight": 1.0, "push_weight": 1.0}},
           "model": {"name": "tiny", "num_stacks": 1, "depth": 2, "base_width": 16, "width_increase": 8,
                     "stem_width": 8},
           "data": {"train_ann": str(ann), "input_size": 64},
           "train": {"batch_size": 2, "lr": 1e-3, "steps": 6, "workers": workers, "checkpoint_every": 100,
                     "log_every": 1, "seed": 3, "out_dir": str(tmp_path / "run")},
           "test": {"input_size": 64}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _our_lines(stderr: str) -> list[str]:
    """stderr without torchrun's own report (its log lines, traceback and failure table, which
    start at its first log line)."""
    lines = []
    for ln in stderr.splitlines():
        if ln[:1] in "WE" and ln[1:5].isdigit():   # torchrun's logging: W1130 16:08:11 ...
            break
        lines.append(ln)
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("missing, workers", [(0, 0), (4, 2), ("nan", 0)])
def test_ddp_fault_is_one_line(tmp_path, missing, workers):
    """A missing image on rank 1 (img000) or rank 0 (img004, with 2 data-loader workers), or a
    NaN keypoint in the json (every rank): one line naming the file, no traceback of ours and no
    gloo "Connection closed" from the rank that did not fail; non-zero exit."""
    ann = make_dataset(tmp_path / "data", 5, size=64)
    if missing == "nan":
        d = json.loads(ann.read_text())
        d["annotations"][1]["keypoints"][0] = float("nan")
        ann.write_text(json.dumps(d))
        expect = f"{ann}"
    else:
        (tmp_path / "data" / f"img00{missing}.png").unlink()
        expect = f"{tmp_path / 'data' / f'img00{missing}.png'}: image file not found"
    out = _torchrun_train(_config(tmp_path, ann, workers), tmp_path)
    assert out.returncode != 0
    ours = _our_lines(out.stderr)
    assert len(ours) == 1, out.stderr[-3000:]
    assert ours[0].startswith("posegroup: error: ") and expect in ours[0], ours
    assert "Connection closed" not in out.stderr and "[rank" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.count("Traceback") <= 1          # torchrun's own ChildFailedError, nothing of ours
    assert "exitcode  : 2" in out.stderr                # the launcher's root cause: the rank that failed


_LEAVE = """
import multiprocessing, sys, time
import torch.distributed as dist
from posegroup.cli import _leave_distributed
dist.init_process_group("gloo", init_method=sys.argv[1], rank=0, world_size=1)
worker = multiprocessing.Process(target=time.sleep, args=(300,), daemon=True)   # a data-loader worker's place
worker.start()
print(worker.pid, flush=True)
_leave_distributed(2)
print("not reached", flush=True)
"""


def test_a_failing_ddp_rank_ends_its_workers_before_it_exits(tmp_path):
    """A rank that leaves on an error (``os._exit``, which skips multiprocessing's exit handler)
    ends its children first: none outlives it to hold the launcher's output pipes open."""
    import os
    import time
    proc = subprocess.run([sys.executable, "-c", _LEAVE, f"file://{tmp_path / 'store'}"],
                          capture_output=True, text=True, timeout=120)
    pid = int(proc.stdout.split()[0])
    try:
        assert proc.returncode == 2, proc.stderr
        assert "not reached" not in proc.stdout
        time.sleep(0.2)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)             # ended and reaped: no such process
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
