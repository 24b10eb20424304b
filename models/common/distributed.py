"""Multi-process training with ``torchrun`` and DistributedDataParallel (DDP).

DDP is the maintained successor of ``nn.DataParallel`` (PyTorch tutorial "Getting Started
with Distributed Data Parallel"): one process per device, each holding a full replica of
the model; gradients are averaged across processes during ``backward``, so every replica
takes the same optimizer step. ``torchrun --nproc_per_node N`` starts the N processes and
sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``.

A trainer wraps its work in :func:`session` and then

- gives :func:`wrap`'s result (the DDP module) the training forward passes, while it keeps
  the plain module for ``state_dict``/``load_state_dict``, so checkpoints and artifacts
  have exactly the keys of a single-process run (no ``module.`` prefix);
- trains each rank on its own disjoint share of every epoch (e.g. :func:`shard`);
- lets only :func:`is_main` (rank 0) write checkpoints, progress bars and the artifact,
  and shares rank 0's results with :func:`broadcast_object`.

Without torchrun (or with ``WORLD_SIZE=1``) every helper is a no-op: rank 0 of a world
of 1, and training runs in one process exactly as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

T = TypeVar("T")

_owns_group = False  # True when setup() (not a caller) created the process group


def launched() -> bool:
    """True when started by torchrun (``RANK`` set) with ``WORLD_SIZE > 1``."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def initialized() -> bool:
    """True when a process group is up (torch.distributed available and initialised)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else torchrun's ``RANK``, else 0."""
    if initialized():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    """Number of processes: from the process group, else torchrun's ``WORLD_SIZE``, else 1."""
    if initialized():
        return dist.get_world_size()
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and logs progress."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the torchrun process group when launched by torchrun; a no-op otherwise.

    The backend is ``nccl`` for CUDA devices and ``gloo`` otherwise; on CUDA each process
    takes the GPU ``cuda:LOCAL_RANK``.

    Args:
        device: the device the run asked for (``--device``).

    Returns:
        The device this process trains on (``cuda:LOCAL_RANK`` under torchrun on CUDA).

    Raises:
        RuntimeError: launched by torchrun but this PyTorch build has no torch.distributed.
    """
    global _owns_group
    if not launched():
        return device
    if not dist.is_available():
        raise RuntimeError("launched by torchrun (WORLD_SIZE > 1) but this PyTorch build has "
                           "no torch.distributed; run without torchrun")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend,
                                device_id=device if device.type == "cuda" else None)
        _owns_group = True
    log.info("rank %d of %d on %s (%s)", rank(), world_size(), device, dist.get_backend())
    return device


def cleanup() -> None:
    """Leave the process group if :func:`setup` created it."""
    global _owns_group
    if _owns_group and initialized():
        dist.destroy_process_group()
    _owns_group = False


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """:func:`setup` on entry, :func:`cleanup` on exit; yields this process's device."""
    try:
        yield setup(device)
    finally:
        cleanup()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a world of more than one process, else ``model``.

    Keep using ``model`` itself for ``state_dict``, evaluation and saving.
    """
    if world_size() == 1 or not initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(items: Sequence[T], drop_last: bool = True) -> list[T]:
    """Every ``world_size``-th item starting at this rank (all of them in one process).

    Args:
        drop_last: first cut ``items`` to a multiple of ``world_size``, so that every rank
            gets the same number (DDP needs the same number of backward passes on every
            rank; at most ``world_size - 1`` items are left out).
    """
    n = world_size()
    if drop_last:
        items = items[: len(items) - len(items) % n]
    return list(items[rank()::n])


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if initialized():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (``values`` itself in one process)."""
    if not initialized():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def broadcast_object(obj: T | None, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; ``obj`` in one process).

    The other ranks' ``obj`` is ignored (pass ``None``).
    """
    box = [obj]
    if initialized():
        dist.broadcast_object_list(box, src=src)
    return box[0]  # type: ignore[return-value]
