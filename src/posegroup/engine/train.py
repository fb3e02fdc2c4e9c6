"""Config-driven training: Adam + lr schedule, AMP on CUDA, DDP under torchrun, atomic
checkpoints, exact resume, TensorBoard scalars, periodic COCO evaluation.

Exact resume: the batch of step ``n`` is a pure function of (seed, n)
(:class:`~posegroup.data.training.StepBatchSampler`), each image's augmentation a pure function
of (seed, epoch, index) (:class:`~posegroup.data.training.TrainingSet`), and the checkpoint holds
the model, optimizer, scheduler, AMP scaler, step and every global RNG state. Training ``N``
steps straight and ``N/2`` + resume ``N/2`` give the same weights (bit-identical on CPU).
``train.steps: auto`` (the schedule sized to ``max_minutes`` by timing the first steps,
:data:`AUTO_STEPS`) keeps the sized length in the checkpoint: a resume continues that schedule.

Outputs in ``out_dir``: ``last.pt`` (checkpoint, written atomically every
``train.checkpoint_every`` steps and at the end), ``config.yaml``, ``tb/`` (TensorBoard),
``log.jsonl`` (one line per logged step), ``eval_step{N}.json`` (COCO stats on the val split).

Nothing lost, nothing mixed: SIGINT / SIGTERM let the current step finish, write ``last.pt`` at
that step and return with ``stopped="interrupted"`` (a second signal stops at once); temporary
files of a killed checkpoint write are removed at the next start; ``--resume`` refuses a config
that changes the run's outcome (:data:`RESUME_MAY_CHANGE` lists what may change) unless
``allow_changes``; a fresh start with ``overwrite`` sets the old run's files aside in
``.replaced_run/`` and deletes them once the new run has written its first checkpoint, so the
folder never mixes the log, config or TensorBoard files of two runs.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..files import refuse_existing, write_json_atomic, write_text_atomic
from .checkpoint import (CheckpointError, build_method_from_config, build_model, keypoint_set_to_dict, load_checkpoint,
                         load_init_weights,
                         plain, remove_stale_temp_files, rng_state, save_checkpoint, set_rng_state)
from .config import ConfigError, dump_config, merge_config
from .distributed import init_from_env as _distributed
from .distributed import settle
from .predict import inference_options

#: File name of the rolling checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "last.pt"

#: Config keys (dotted; a trailing ``_`` or ``.`` is a prefix) that may differ between a
#: checkpoint's config and the config of ``--resume``: they do not change the trained weights.
RESUME_MAY_CHANGE = ("train.max_minutes", "train.out_dir", "train.workers", "train.eval_every", "train.log_every",
                     "train.checkpoint_every", "train.channels_last", "data.val_")

#: Folder inside ``out_dir`` holding a replaced run until the new one has its first checkpoint.
REPLACED_DIR = ".replaced_run"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad resume); the message names the step/file."""


class RunRefused(TrainingError):
    """Training refused to start: a run is already in ``out_dir`` (no ``overwrite``), or the
    resume config changes the outcome (no ``allow_changes``). Nothing was written."""


# ---- pieces --------------------------------------------------------------------------------

def autocast_dtype(device: torch.device, amp: bool) -> "torch.dtype | None":
    """The mixed-precision dtype of training on ``device`` (None: float32 throughout).

    ``amp`` on CUDA: float16 (with a gradient scaler). ``amp`` on a CPU with bfloat16 matrix
    units (AMX tiles or AVX512-BF16): bfloat16 autocast, no scaler (bfloat16 keeps float32's
    exponent range); measured on such a 2-core Xeon, the tiny hourglass's training step takes
    0.6x the float32 time. Other CPUs stay in float32 (bfloat16 is emulated there and slower).
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        cpu = torch.cpu
        fast = getattr(cpu, "_is_amx_tile_supported", lambda: False)() or \
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        return torch.bfloat16 if fast else None
    return None


def lr_factor(step: int, schedule: dict, total_steps: int | None) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).

    ``schedule``: ``type`` "step" (x ``gamma`` at each of ``milestones``), "cosine" (from 1 to
    ``min_lr_ratio`` over ``total_steps``) or "constant"; ``warmup_steps`` of linear warm-up first.
    ``total_steps`` None: the length is not known yet (``train.steps: auto`` before it is
    sized): the cosine stays at its start.
    """
    warm = int(schedule.get("warmup_steps") or 0)
    f = 1.0
    kind = schedule.get("type", "step")
    if kind == "step":
        f = float(schedule.get("gamma", 0.1)) ** sum(1 for m in schedule.get("milestones") or [] if step >= int(m))
    elif kind == "cosine":
        t = 0.0 if total_steps is None else min(1.0, max(0.0, (step - warm) / max(1, total_steps - warm)))
        lo = float(schedule.get("min_lr_ratio", 0.0))
        f = lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    if warm and step < warm:
        f *= (step + 1) / warm
    return f


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors moved to ``device`` (non-blocking)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _flatten(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def config_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every outcome-changing difference between two
    configs (keys in :data:`RESUME_MAY_CHANGE` and private ``_`` keys ignored; absent = ``None``)."""
    a, b = _flatten(plain(old)), _flatten(plain(new))
    changes = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("_") or any(key == k or (k.endswith(("_", ".")) and key.startswith(k))
                                      for k in RESUME_MAY_CHANGE):
            continue
        if a.get(key) != b.get(key):
            changes.append((key, a.get(key), b.get(key)))
    return changes


def unwrap_worker_error(e: BaseException) -> BaseException | None:
    """The original error of a data-loader worker, from torch's re-raised wrapper (whose message
    is "Caught X in DataLoader worker process N." plus the worker's traceback): the same type
    with the original one-line message. None when ``e`` is not such a wrapper."""
    text = str(e.args[0]) if e.args else str(e)
    head = text.split("\n", 1)[0]
    if not (head.startswith("Caught ") and "DataLoader worker process" in head):
        return None
    lines = text.splitlines()[1:]
    last = None
    for i, ln in enumerate(lines):  # the traceback's final "Type: message" line (not indented)
        if ln and not ln[0].isspace() and not ln.startswith(("Traceback", "Original Traceback")):
            last = i
    if last is None:
        return None
    msg = lines[last]
    m = re.match(r"^[A-Za-z_][\w.]*: (.*)$", msg)
    msg = m.group(1) if m else msg
    try:
        return type(e)(msg)
    except Exception:
        return RuntimeError(msg)


def _ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C (SIGINT, which reaches the whole foreground process group)
    to the main process, which stops training at a step boundary and then shuts them down (a
    worker dying mid-step would abort the step). They keep SIGTERM's default: Python's
    multiprocessing ends leftover daemonic workers at exit with SIGTERM and then joins them, so a
    worker that ignored it would hang the exit for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_files(out_dir: Path) -> list[Path]:
    names = [CHECKPOINT_NAME, "config.yaml", "log.jsonl", "tb"]
    files = [out_dir / n for n in names if (out_dir / n).exists()]
    return files + sorted(out_dir.glob("eval_step*.json"))


def _set_old_run_aside(out_dir: Path) -> Path | None:
    """Move the files of the run in ``out_dir`` into ``out_dir/.replaced_run`` (kept there if a
    replaced run is already waiting: that one never got a new checkpoint). Returns the folder."""
    aside = out_dir / REPLACED_DIR
    files = _run_files(out_dir)
    if not files and not aside.exists():
        return None
    if aside.exists():  # an earlier overwrite stopped before its first checkpoint: drop its leftovers
        for f in files:
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        return aside
    aside.mkdir(parents=True)
    for f in files:
        os.replace(f, aside / f.name)
    return aside


# ---- training ------------------------------------------------------------------------------

class _Run:
    """The pieces of one :func:`train` call: config, process group, data, method, network,
    optimizer, schedule, outputs (attributes set by :func:`_setup`, :func:`_resume`,
    :func:`_make_loader` and :func:`_open_outputs`)."""

    writer = bar = log_file = replaced = None


def _setup(cfg: dict, out_dir: Path, max_steps: int | None, fresh: bool, dist_info: tuple) -> _Run:
    """Process group (``dist_info``: :func:`~posegroup.engine.distributed.init_from_env`), device,
    seeds, data, method, network (``model.init_from`` when ``fresh``), optimizer, lr schedule and
    AMP scaler, in the order that fixes the global RNG stream."""
    from ..data.coco import CocoPoseDataset
    from ..data.training import StepBatchSampler, TrainingSet

    r = _Run()
    r.cfg, r.tc, r.dc, r.out_dir = cfg, cfg["train"], cfg["data"], out_dir
    tc, dc = r.tc, r.dc
    r.rank, r.world, r.local_rank, r.own_pg = dist_info
    r.is_main = r.rank == 0
    if tc["device"]:
        r.device = torch.device(tc["device"])
    else:
        r.device = torch.device(f"cuda:{r.local_rank}" if torch.cuda.is_available() else "cpu")
    r.use_amp = bool(tc["amp"]) and r.device.type == "cuda"
    r.amp_dtype = autocast_dtype(r.device, bool(tc["amp"]))
    if r.device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    r.seed = int(tc["seed"])
    _seed_everything(r.seed)
    r.dataset = CocoPoseDataset(dc["train_ann"], dc["train_images"], keypoint_set=dc["keypoint_set"])
    r.ks = r.dataset.keypoint_set
    r.method = build_method_from_config(cfg, r.ks)
    try:
        r.net = build_model(cfg, r.method)
    except ValueError as e:  # the backbone's one-line check of a model.* key, less its class name
        msg = re.sub(r"^[A-Z]\w*: ", "", str(e).splitlines()[0])
        raise ConfigError(f"{cfg['_source']}: model: {msg}") from None
    if fresh:
        load_init_weights(r.net, cfg, r.method)
    r.net = r.net.to(r.device)
    if tc["channels_last"]:                      # weights and images NHWC: see posegroup benchmark step
        r.net = r.net.to(memory_format=torch.channels_last)
    r.ema_net = copy.deepcopy(r.net).requires_grad_(False) if tc["ema"] else None
    net_stride = int(r.net.stride)
    if net_stride != int(dc["stride"]):
        raise TrainingError(f"{cfg['_source']}: data.stride is {dc['stride']} but the network predicts at stride "
                            f"{net_stride} (model.output_stride); set data.stride: {net_stride}")
    aug = dict(dc["augmentation"])
    r.train_set = TrainingSet(r.dataset, r.method, input_size=int(dc["input_size"]), stride=int(dc["stride"]),
                              augment=bool(aug.pop("enabled")), seed=r.seed,
                              color_jitter=bool(aug.pop("color_jitter")), affine_options=aug)
    r.batch_size = int(tc["batch_size"])
    r.steps_per_epoch = StepBatchSampler(len(r.dataset), r.batch_size, world_size=r.world).steps_per_epoch
    r.max_steps = max_steps
    if tc["steps"] == "auto":
        _set_length(r, None)                     # sized by _size_schedule once the first steps are timed
    else:
        _set_length(r, int(tc["steps"]) if tc["steps"] is not None else int(tc["epochs"]) * r.steps_per_epoch)

    if tc["optimizer"] != "adam":
        raise TrainingError(f"{cfg['_source']}: train.optimizer must be 'adam', got {tc['optimizer']!r}")
    r.optimizer = torch.optim.Adam(r.net.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
    sched_cfg = dict(tc["lr_schedule"])
    r.scheduler = torch.optim.lr_scheduler.LambdaLR(r.optimizer, lambda s: lr_factor(s, sched_cfg, r.total_steps))
    r.scaler = torch.amp.GradScaler("cuda", enabled=r.use_amp)
    r.ckpt_path = out_dir / CHECKPOINT_NAME
    return r


#: ``train.steps: auto``: a fresh run times its steps AUTO_STEPS[0] + 1 .. AUTO_STEPS[1] (the first
#: ones pay for memory allocation and caches) and fixes its schedule's length so that the steps
#: left fill AUTO_STEPS[2] of the minutes left (periodic evaluation and checkpoints take the rest).
#: Before that the schedule runs at its start value (a warm-up of AUTO_STEPS[1] steps or more is unaffected).
AUTO_STEPS = (5, 30, 0.97)


def _set_length(r: _Run, total: int | None) -> None:
    """The schedule's length (None: not sized yet) and the step this call stops at."""
    r.total_steps = total
    ends = [v for v in (total, r.max_steps) if v is not None]
    r.end_step = min(ends) if ends else sys.maxsize


def _size_schedule(r: _Run, step: int, elapsed: float, times: dict, max_minutes: float, *,
                   start_step: int, force: bool) -> None:
    """``train.steps: auto``, called after each step while the length is unknown: note the time
    of step ``step`` in ``times`` {step: seconds since the call began}, and at the call's
    AUTO_STEPS[1]-th step -- or earlier when ``force`` (the call's clock ran out first) -- fix
    the schedule's length: the steps that fit into the rest of ``max_minutes`` at the measured
    pace (the slowest rank's, under DDP)."""
    times[step] = elapsed
    first, last = min(times), step
    if last - first < AUTO_STEPS[1] - AUTO_STEPS[0] and not force:
        return
    if last == first:                                     # too few timed steps: the call's mean pace
        first, times[start_step] = start_step, 0.0
    per_step = (times[last] - times[first]) / (last - first)
    left = 60 * max_minutes - times[last]
    total = torch.tensor([step + max(0, int(AUTO_STEPS[2] * left / max(per_step, 1e-9)))], dtype=torch.int64)
    if r.world > 1:
        total = total.to(r.device)
        dist.all_reduce(total, op=dist.ReduceOp.MIN)
    _set_length(r, int(total))
    if r.bar is not None:
        r.bar.total = r.end_step
        r.bar.refresh()
        r.bar.write(f"train.steps auto: {60 / per_step:.1f} steps/min over steps {first + 1}-{last}; "
                    f"the schedule ends at step {r.total_steps} (~{max_minutes:g} min)")


def _resume(r: _Run, resume: bool | str | Path, *, overwrite: bool, allow_changes: bool,
            trust: bool | None) -> tuple[int, dict | None]:
    """Refuse to clobber a run, clear stale temp files, and on ``resume`` load the checkpoint
    (model, optimizer, scheduler, scaler) after checking its method and config. Returns
    ``(start_step, rng states to restore or None)``."""
    if not resume:
        refuse_existing(r.ckpt_path, overwrite, error=RunRefused, found="a checkpoint is already there",
                        to="start afresh (or --resume to continue it)", what="output folder")
    if r.is_main:
        remove_stale_temp_files(r.ckpt_path)  # left by a checkpoint write that was killed
    if not resume:
        return 0, None
    src = r.ckpt_path if resume is True else Path(resume)
    state = load_checkpoint(src, map_location=r.device, trust=trust)
    if state.get("method") != r.method.name:
        raise TrainingError(f"{src}: checkpoint is for method {state.get('method')!r}, config says {r.method.name!r}")
    changes = config_changes(state.get("config") or {}, r.cfg) if not allow_changes else []
    if changes:
        shown = ", ".join(f"{k} ({old!r} -> {new!r})" for k, old, new in changes[:3])
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise RunRefused(f"{src}: the config differs from the checkpoint's in {shown}{more}; resume with the "
                         "run's config, or accept the change with --allow-changes")
    weights = state.get("train_model") or state.get("model") or {}
    bad = next((k for k, v in weights.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
                and not torch.isfinite(v).all()), None) if isinstance(weights, dict) else None
    if bad is not None:
        raise TrainingError(f"{src}: weight '{bad}' holds NaN or infinite values (the run diverged before it was "
                            "saved); resume from an earlier checkpoint, or start afresh with --overwrite")
    try:
        r.net.load_state_dict(state.get("train_model") or state["model"])
        if r.ema_net is not None:
            r.ema_net.load_state_dict(state["model"])
        r.optimizer.load_state_dict(state["optimizer"])
        r.scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{src}: does not fit the configured model/optimizer "
                              f"({str(e).strip().splitlines()[0]})") from None
    if state.get("scaler") and r.use_amp:
        r.scaler.load_state_dict(state["scaler"])
    if r.tc["steps"] == "auto" and state.get("total_steps") is not None:   # the length sized when it began
        _set_length(r, int(state["total_steps"]))
    return int(state["step"]), state.get("rng")


def single_process_run(cfg: dict) -> _Run:
    """``cfg``'s data, method, network, optimizer and schedule in this process (no process
    group, no outputs, no data loader; ``r.model`` is the network), as a fresh training run
    would build them: what :func:`posegroup.engine.benchmark.benchmark_step` times a step of."""
    r = _setup(cfg, Path(cfg["train"]["out_dir"]), None, False, (0, 1, 0, False))
    r.model = r.net
    return r


def _make_loader(r: _Run, start_step: int) -> torch.utils.data.DataLoader:
    """DDP wrapper (``r.model``) and the data loader of batches ``start_step + 1, ...``."""
    from ..data.training import StepBatchSampler, collate

    r.model = r.net
    if r.world > 1:
        r.model = torch.nn.parallel.DistributedDataParallel(
            r.net, device_ids=[r.local_rank] if r.device.type == "cuda" else None)
    sampler = StepBatchSampler(len(r.dataset), r.batch_size, seed=r.seed, start_step=start_step, rank=r.rank,
                               world_size=r.world)
    workers = int(r.tc["workers"])
    return torch.utils.data.DataLoader(
        r.train_set, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
        pin_memory=r.device.type == "cuda", generator=torch.Generator().manual_seed(r.seed),
        persistent_workers=False, prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None)


def _open_outputs(r: _Run, start_step: int, *, fresh_overwrite: bool, progress: bool) -> None:
    """Rank 0: the output folder (an old run set aside when overwriting), ``config.yaml``,
    TensorBoard writer, ``log.jsonl`` (lines of steps to redo dropped) and the progress bar."""
    if not r.is_main:
        return
    out_dir = r.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if fresh_overwrite:
        r.replaced = _set_old_run_aside(out_dir)
    write_text_atomic(out_dir / "config.yaml", dump_config(r.cfg))
    from torch.utils.tensorboard import SummaryWriter
    r.writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step if start_step else None)
    log_path = out_dir / "log.jsonl"
    if log_path.exists():  # drop lines of steps a resume will redo (or all, when starting fresh)
        keep = [ln for ln in log_path.read_text().splitlines()
                if ln.strip() and start_step and json.loads(ln).get("step", 0) <= start_step]
        write_text_atomic(log_path, "".join(ln + "\n" for ln in keep))
    r.log_file = open(log_path, "a")
    if progress:
        from tqdm import tqdm
        total = None if r.end_step == sys.maxsize else r.end_step      # train.steps auto: sized after its timing
        r.bar = tqdm(total=total, initial=start_step, desc="train", unit="step", dynamic_ncols=True)


def _close_outputs(r: _Run) -> None:
    if r.bar is not None:
        r.bar.close()
    if r.writer is not None:
        r.writer.flush()
        r.writer.close()
    if r.log_file is not None:
        r.log_file.close()


def _write_checkpoint(r: _Run, step: int) -> None:
    """``last.pt`` at ``step`` (atomic); the first one of a run that replaced another deletes
    the old run's files."""
    weights = ({"model": r.net.state_dict()} if r.ema_net is None      # "model": what inference loads
               else {"model": r.ema_net.state_dict(), "train_model": r.net.state_dict()})
    save_checkpoint(r.ckpt_path, {
        **weights, "optimizer": r.optimizer.state_dict(),
        "scheduler": r.scheduler.state_dict(), "scaler": r.scaler.state_dict() if r.use_amp else None,
        "step": step, "epoch": step // r.steps_per_epoch, "total_steps": r.total_steps, "rng": rng_state(),
        "config": r.cfg,
        "keypoint_set": keypoint_set_to_dict(r.ks), "method": r.method.name})
    if r.replaced is not None:  # the new run has its first checkpoint: the old one can go
        shutil.rmtree(r.replaced, ignore_errors=True)
        r.replaced = None


class _StopRequest:
    """SIGINT / SIGTERM handler: the first signal asks to stop after the current step, a second
    one stops at once."""

    def __init__(self, r: _Run):
        self.r, self.signal, self.saved = r, None, {}

    def __call__(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now (the last checkpoint stays)
            raise KeyboardInterrupt
        self.signal = signum
        if self.r.bar is not None:
            self.r.bar.write(f"{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
                             "(again to stop at once)")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self)

    def restore(self) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _next_batch(r: _Run, it, stop: _StopRequest) -> dict | None:
    """The next batch on the device; None when a signal reached the data-loader workers too
    (one process). A worker's error is raised as the worker's own error. Under DDP every rank
    settles after reading (:func:`~posegroup.engine.distributed.settle`): one rank's data fault
    stops every rank, reported once by the failing rank."""
    error = None
    try:
        raw = next(it)
    except Exception as e:
        if stop.signal is not None and r.world == 1:  # the signal reached the workers too
            return None
        error = unwrap_worker_error(e) or e
    settle(error)  # raises ``error`` (or, on the other ranks, PeerFailed) when any rank failed
    return to_device(raw, r.device)


def forward_loss(r: _Run, batch: dict) -> tuple[torch.Tensor, dict]:
    """The loss of one batch (``batch`` is consumed): the method's ``training_loss(model, batch)``
    hook, or where it gives None the network's stacks through ``method.loss``, the forward under
    the run's autocast; with ``train.channels_last`` the images enter in that memory format."""
    image = batch.pop("image")
    if r.tc["channels_last"]:
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.autocast(r.device.type, dtype=r.amp_dtype or torch.float32, enabled=r.amp_dtype is not None):
        own = r.method.training_loss(r.model, dict(batch, image=image))
        if own is not None:
            return own
        preds = r.model(image)
    preds = [p.float() for p in preds] if isinstance(preds, (list, tuple)) else [preds.float()]
    return r.method.loss(preds, batch)


def _train_step(r: _Run, batch: dict, step: int, *, t0: float, max_minutes: float | None,
                stop: _StopRequest, last_good: str | None) -> tuple[float, dict, torch.Tensor, float]:
    """One optimisation step. Returns ``(loss, parts, flags, elapsed seconds at the loss)``,
    flags (float64, summed over ranks): [non-finite loss, out of time, loss, signal]. A
    non-finite loss on any rank raises :class:`TrainingError` naming the step before the
    weights change."""
    loss, parts = forward_loss(r, batch)
    loss_value = float(loss.detach())
    elapsed = time.monotonic() - t0
    flags = torch.tensor([0.0 if math.isfinite(loss_value) else 1.0,
                          1.0 if (max_minutes is not None and elapsed >= 60 * max_minutes) else 0.0,
                          loss_value if math.isfinite(loss_value) else 0.0,
                          1.0 if stop.signal is not None else 0.0],
                         device=r.device, dtype=torch.float64)
    if r.world > 1:
        # any rank's NaN (or clock) stops all ranks; the logged loss is the mean over ranks
        dist.all_reduce(flags)
        loss_value = float(flags[2]) / r.world if flags[0] == 0 else loss_value
    if flags[0] > 0:
        raise TrainingError(
            f"non-finite loss ({loss_value}) at step {step + 1} (of {r.total_steps}) with train.lr "
            f"{r.optimizer.param_groups[0]['lr']:g}; "
            + (f"last good checkpoint: {last_good}" if last_good else "no checkpoint written yet"))
    r.optimizer.zero_grad(set_to_none=True)
    r.scaler.scale(loss).backward()
    if r.tc["grad_clip"] and r.tc["grad_clip"] > 0:
        r.scaler.unscale_(r.optimizer)
        torch.nn.utils.clip_grad_norm_(r.net.parameters(), float(r.tc["grad_clip"]))
    r.scaler.step(r.optimizer)
    r.scaler.update()
    r.scheduler.step()
    if r.ema_net is not None:
        update_ema(r.ema_net, r.net, float(r.tc["ema"]), step + 1)
    return loss_value, parts, flags, elapsed


@torch.no_grad()
def update_ema(ema_net: torch.nn.Module, net: torch.nn.Module, decay: float, step: int) -> float:
    """``train.ema``: move every floating-point tensor of ``ema_net``'s state (weights and
    BatchNorm statistics) towards ``net``'s, e ← d·e + (1 − d)·w, with d = min(decay, (1 + step) /
    (10 + step)) (the warm-up of TensorFlow's ExponentialMovingAverage ``num_updates``, so the
    average forgets the initial weights in a short run); integer buffers are copied. ``step``:
    the optimisation step just taken (1, 2, ...). Returns d."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for e, w in zip(ema_net.state_dict().values(), net.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(w.to(e.dtype), 1.0 - d)
        else:
            e.copy_(w)
    return d


def _log_step(r: _Run, step: int, loss_value: float, parts: dict | None, elapsed: float) -> None:
    """Rank 0: progress bar, and every ``train.log_every`` steps (and the last) TensorBoard
    scalars and a ``log.jsonl`` line."""
    if not r.is_main:
        return
    if r.bar is not None:
        r.bar.update(1)
        r.bar.set_postfix(loss=f"{loss_value:.4g}")
    if step % max(1, int(r.tc["log_every"])) == 0 or step == r.end_step:
        lr = r.optimizer.param_groups[0]["lr"]
        r.writer.add_scalar("train/loss", loss_value, step)
        r.writer.add_scalar("train/lr", lr, step)
        for name, v in (parts or {}).items():
            r.writer.add_scalar(f"train/{name}", float(v), step)
        r.log_file.write(json.dumps({"step": step, "loss": loss_value, "lr": lr, "minutes": elapsed / 60,
                                     **{k: float(v) for k, v in (parts or {}).items()}}) + "\n")
        r.log_file.flush()


def _bookkeeping(r: _Run, step: int, flags: torch.Tensor, stop: _StopRequest, evaluator) -> tuple[str | None, bool, Any]:
    """After step ``step``: checkpoint (every ``train.checkpoint_every`` steps and when
    finishing), evaluation (every ``train.eval_every`` steps and at the end of the schedule).
    Returns ``(stop reason or None, checkpoint written, eval stats or the marker _NO_EVAL)``."""
    timed_out = bool(flags[1] > 0)
    # any rank's signal stops all ranks at the same step; alone, a signal that came during
    # this step counts now
    interrupted = bool(flags[3] > 0) or (r.world == 1 and stop.signal is not None)
    finishing = step == r.end_step or timed_out or interrupted
    ckpt_every, eval_every = int(r.tc["checkpoint_every"] or 0), int(r.tc["eval_every"] or 0)
    saved = finishing or bool(ckpt_every and step % ckpt_every == 0)
    if saved and r.is_main:
        _write_checkpoint(r, step)
    stats = _NO_EVAL
    if evaluator is not None and ((eval_every and step % eval_every == 0) or (finishing and step == r.total_steps)):
        stats = _run_eval(evaluator, r.net if r.ema_net is None else r.ema_net, step, r.writer, r.is_main, r.world)
        r.model.train()
    reason = None
    if interrupted and step < r.end_step:
        reason = "interrupted"
    elif timed_out:
        reason = "max_minutes"
    return reason, saved, stats


def _after_loop(r: _Run, step: int, start_step: int, stopped: str) -> str:
    """The stop reason after the step loop: a loop left on a signal (workers hit) is
    "interrupted" with a checkpoint at ``step``; a call with nothing to do still leaves a file."""
    if stopped not in ("interrupted", "max_minutes") and step < r.end_step:  # left the loop on a signal
        stopped = "interrupted"
        if r.is_main:
            _write_checkpoint(r, step)
    if step == start_step and r.is_main and not r.ckpt_path.exists():  # nothing to do, still leave a file
        _write_checkpoint(r, step)
    return stopped


#: :func:`_bookkeeping`'s "no evaluation at this step".
_NO_EVAL = object()


def _prepare(cfg: dict, out_dir: Path, max_steps: int | None, *, resume, overwrite: bool, allow_changes: bool,
             trust: bool | None, progress: bool) -> tuple[_Run, int, dict | None]:
    """:func:`_setup`, :func:`_resume` and :func:`_open_outputs`, settled across DDP ranks
    (:func:`~posegroup.engine.distributed.settle`): an error on any rank stops every rank and is
    reported once. Returns ``(run, start step, rng states to restore or None)``."""
    dist_info = _distributed()
    r, error, start_step, restored_rng = None, None, 0, None
    try:
        r = _setup(cfg, out_dir, max_steps, fresh=not resume, dist_info=dist_info)
        start_step, restored_rng = _resume(r, resume, overwrite=overwrite, allow_changes=allow_changes, trust=trust)
        _open_outputs(r, start_step, fresh_overwrite=not resume and overwrite, progress=progress)
    except Exception as e:
        error = e
    try:
        settle(error)
    except BaseException:  # the process group ends with the process (see train())
        if r is not None:
            _close_outputs(r)
        raise
    return r, start_step, restored_rng


def train(config: dict, *, out_dir: str | Path | None = None, resume: bool | str | Path = False,
          max_steps: int | None = None, max_minutes: float | None = None, progress: bool = True,
          overwrite: bool = False, allow_changes: bool = False, trust: bool | None = None,
          schedule_minutes: float | None = None) -> dict:
    """Train the network described by ``config`` (see :mod:`posegroup.engine.config`).

    Args:
        config: a merged config (:func:`~posegroup.engine.config.load_config`) or a raw dict
            (merged here against the CWD).
        out_dir: output folder (default ``train.out_dir``).
        resume: False (start fresh), True (continue from ``out_dir/last.pt``) or a checkpoint path.
        max_steps: stop when the step count reaches this (absolute; the lr schedule still spans
            the configured length, so a later resume continues exactly). Default: the configured
            length.
        max_minutes: wall-clock limit of this call (default ``train.max_minutes``).
        progress: tqdm bar (rank 0).
        overwrite: allow a fresh start (``resume`` False) in an ``out_dir`` that already holds a
            checkpoint (default False: that is an error, so no run is lost by accident). The old
            run's files are set aside (``.replaced_run/``) and deleted once the new run has
            written its first checkpoint.
        allow_changes: resume even when the config differs from the checkpoint's in keys that
            change the outcome (default False: a one-line :class:`TrainingError` naming them).
        trust: read a pickled (old-format/foreign) resume checkpoint; see
            :func:`~posegroup.engine.checkpoint.load_checkpoint`.
        schedule_minutes: with ``train.steps: auto``, the minutes its schedule is sized to
            (default: ``max_minutes``); a caller that trains in chunks of ``max_minutes`` passes
            its whole budget. Used only while the length is not sized yet.
    Returns: summary dict: ``steps`` (total done), ``start_step``, ``total_steps`` (configured; with ``train.steps: auto``
    as sized, None until then),
    ``final_loss`` (last step's loss), ``checkpoint`` (path), ``eval`` (last val stats or None),
    ``out_dir``, ``minutes`` (this call), ``stopped`` ("done" | "max_steps" | "max_minutes" |
    "interrupted": SIGINT/SIGTERM, with a checkpoint at the step reached).
    Raises: :class:`TrainingError` naming the step on a non-finite loss (``last.pt`` then holds
    the last good state) or naming the keys of a changed config on resume;
    :class:`~posegroup.engine.checkpoint.CheckpointError` for a bad resume file. A data-loader
    worker's error is raised as the worker's own error (one line), not torch's wrapper.
    """
    cfg = config if "_source" in config else merge_config(config)
    max_minutes = max_minutes if max_minutes is not None else cfg["train"]["max_minutes"]
    schedule_minutes = schedule_minutes if schedule_minutes is not None else max_minutes
    if cfg["train"]["steps"] == "auto" and schedule_minutes is None:
        raise ConfigError(f"{cfg['_source']}: 'train.steps' is auto, which sizes the schedule to "
                          "'train.max_minutes', but no max_minutes is set (config or --max-minutes)")
    r, start_step, restored_rng = _prepare(cfg, Path(out_dir or cfg["train"]["out_dir"]), max_steps, resume=resume,
                                           overwrite=overwrite, allow_changes=allow_changes, trust=trust,
                                           progress=progress)
    loader = _make_loader(r, start_step)
    stop = _StopRequest(r)
    evaluator = _Evaluator(cfg, r.method, r.out_dir) if r.dc["val_ann"] else None

    if restored_rng is not None:
        set_rng_state(restored_rng)
    step, last_loss, last_eval = start_step, float("nan"), None
    t0 = time.monotonic()
    r.model.train()
    it = None
    try:
        it = iter(loader)  # workers start here, before the handlers below (they ignore the signals)
        stop.install()
        step, last_loss, last_eval, stopped = _step_loop(
            r, it, stop, evaluator, start_step=start_step, t0=t0, max_minutes=max_minutes,
            schedule_minutes=schedule_minutes, last_good=str(resume if resume is not True else r.ckpt_path)
            if resume else None)
        stopped = _after_loop(r, step, start_step, stopped)
    finally:
        stop.restore()
        _close_outputs(r)
        del it  # shuts data-loader workers down
        if r.own_pg and sys.exc_info()[0] is None:  # on an error the process exit ends the group:
            dist.barrier()                            # the other ranks wait for it (distributed.settle)
            dist.destroy_process_group()
    return {"steps": step, "start_step": start_step, "total_steps": r.total_steps, "final_loss": last_loss,
            "checkpoint": str(r.ckpt_path), "eval": last_eval, "out_dir": str(r.out_dir),
            "minutes": (time.monotonic() - t0) / 60, "stopped": stopped}


def _step_loop(r: _Run, it, stop: _StopRequest, evaluator, *, start_step: int, t0: float,
               max_minutes: float | None, schedule_minutes: float | None,
               last_good: str | None) -> tuple[int, float, Any, str]:
    """The training steps of one :func:`train` call, from ``start_step`` until the schedule's
    (or ``max_steps``') end, the clock or a signal; ``train.steps: auto`` is sized on the way.
    Returns ``(step reached, last loss, last eval stats or None, stop reason)``."""
    step, last_loss, last_eval, auto_times = start_step, float("nan"), None, {}
    while step < r.end_step:
        batch = _next_batch(r, it, stop)
        if batch is None:
            return step, last_loss, last_eval, "done"       # _after_loop: a signal reached the workers
        last_loss, parts, flags, elapsed = _train_step(r, batch, step, t0=t0, max_minutes=max_minutes,
                                                       stop=stop, last_good=last_good)
        step += 1
        _log_step(r, step, last_loss, parts, elapsed)
        if r.total_steps is None and (step - start_step >= AUTO_STEPS[0] or flags[1] > 0):
            _size_schedule(r, step, time.monotonic() - t0, auto_times, schedule_minutes, start_step=start_step,
                           force=bool(flags[1] > 0))
        reason, saved, stats = _bookkeeping(r, step, flags, stop, evaluator)
        last_good = str(r.ckpt_path) if saved else last_good
        last_eval = last_eval if stats is _NO_EVAL else stats
        if reason is not None:
            return step, last_loss, last_eval, reason
    return step, last_loss, last_eval, "done" if r.total_steps is not None and step >= r.total_steps else "max_steps"


class _Evaluator:
    """COCO keypoint AP of the current weights on ``data.val_ann`` (first ``val_max_images``)."""

    def __init__(self, cfg: dict, method, out_dir: Path):
        self.cfg, self.method, self.out_dir = cfg, method, out_dir
        self.dataset = None

    def __call__(self, net: torch.nn.Module, step: int) -> dict:
        from ..data.coco import CocoPoseDataset
        from .predict import evaluate_predictor, make_predictor
        dc = self.cfg["data"]
        if self.dataset is None:
            self.dataset = CocoPoseDataset(dc["val_ann"], dc["val_images"], keypoint_set=dc["keypoint_set"])
        predictor = make_predictor(net, self.method, None, **inference_options(self.cfg, self.method))
        stats = evaluate_predictor(predictor, self.dataset, max_images=dc["val_max_images"], method=self.method)
        stats["step"] = step
        write_json_atomic(self.out_dir / f"eval_step{step}.json", stats, indent=1)
        return stats


def _run_eval(evaluator: _Evaluator, net, step: int, writer, is_main: bool, world: int) -> dict | None:
    """Evaluate on rank 0 without touching any global RNG (so resume stays exact)."""
    stats = None
    if is_main:
        saved = rng_state()
        try:
            stats = evaluator(net, step)
        finally:
            set_rng_state(saved)
        for k in ("AP", "AP50", "AP75", "APm", "APl", "AR"):
            if k in stats and isinstance(stats[k], (int, float)):
                writer.add_scalar(f"val/{k}", float(stats[k]), step)
    if world > 1:
        dist.barrier()
    return stats
