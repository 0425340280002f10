"""Data parallelism over ``torch.distributed``, nanoGPT style.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` joins the process group they describe (gloo on CPU, nccl on CUDA). Without those
variables, or with ``WORLD_SIZE=1``, every helper here is a no-op on one process, so the
single-process code path is the same code.

Work is split by :func:`shard`: each rank takes a contiguous slice of a list of ``n`` items (episodes
of a batch, candidates of a population). Every rank generates the *whole* batch or population from
the same seed and keeps its slice, so the split never changes what is computed, only where.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError

TIMEOUT = timedelta(minutes=int(os.environ.get("SIMGRAPH_DIST_TIMEOUT_MIN", "30")))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True when the environment describes a multi-process launch (torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def device_for(kind: str = "cpu") -> torch.device:
    """``cpu``, or under torchrun ``cuda`` -> ``cuda:LOCAL_RANK`` (one GPU per process)."""
    if kind == "cpu":
        return torch.device("cpu")
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {kind!r} asked for, but this torch build sees no CUDA device")
        if kind == "cuda" and launched():
            kind = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return torch.device(kind)
    raise ConfigError(f"device must be 'cpu' or 'cuda[:i]', got {kind!r}")


def setup(device: torch.device | str = "cpu") -> bool:
    """Join the process group described by the environment; returns whether one is active."""
    if dist.is_available() and dist.is_initialized():
        return active()
    if not launched():
        return False
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set; launch with torchrun")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return active()


def cleanup(ok: bool = True) -> None:
    """Leave the process group. After a normal finish, wait for every rank first: a rank tearing
    gloo down while its peer is still on its last collective was seen to abort the peer (SIGABRT,
    "terminate called without an active exception"). After an error, leave at once (no barrier
    that a crashed peer could hang)."""
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous slice of ``n`` items (sizes differ by at most one)."""
    r, w = rank(), world()
    return slice(n * r // w, n * (r + 1) // w)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (and return it); identity on one process."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj=None, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (pickled: only between our own trusted processes)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
