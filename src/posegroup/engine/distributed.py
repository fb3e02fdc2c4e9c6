"""DDP under torchrun: the process group from torchrun's environment, and one error line for
the whole job.

An error on one rank must reach the user as the same single line as on one process, and the
other ranks must stop without a traceback of their own (a gloo "Connection closed by peer").
Every rank therefore calls :func:`settle` at the same points (after setup, after each batch is
read): when any rank failed, the lowest failing rank raises its own error (the CLI prints its
one line) and exits, leaving its process group to the exit, and every other rank waits for that
exit and raises :class:`PeerFailed`, which the CLI turns into a quiet non-zero exit (so the
launcher's report names the failing rank as the root cause). An error between two settle points (a peer gone inside a collective) is
recognised by :func:`peer_gone` and also ends quietly: the failing rank reports it.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


class PeerFailed(RuntimeError):
    """Another rank stopped with an error and reports it; this rank exits quietly."""


def init_from_env() -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, initialised_here) from torchrun's environment
    (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); NCCL on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return rank, world, local, False
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local, True


def settle(error: Exception | None) -> None:
    """A collective every rank calls at the same point with its own error (or None).

    Returns when no rank failed. Otherwise raises on every rank: the lowest failing rank its
    own ``error``, the others :class:`PeerFailed`. Without a process group (one process) it
    just raises ``error`` if given. Cost: one all-reduce of one integer.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        if error is not None:
            raise error
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    first = torch.tensor([rank if error is not None else world], dtype=torch.int64, device=device)
    dist.all_reduce(first, op=dist.ReduceOp.MIN)
    first = int(first.item())
    if first == world:
        return
    if first == rank:
        raise error
    try:  # wait for the failing rank to exit (it never joins), so that it ends first
        dist.barrier()
    except Exception:
        pass
    raise PeerFailed(f"rank {first} stopped with an error (reported by that rank)")


def peer_gone(e: BaseException) -> bool:
    """True when ``e`` says another rank of a running job is gone (it stopped on an error it
    reports itself, or was killed): a PeerFailed, or a gloo / NCCL communication failure."""
    if isinstance(e, PeerFailed):
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        ("gloo" in text and ("Connection closed" in text or "Connection reset" in text))
        or "NCCL communicator was aborted" in text)
