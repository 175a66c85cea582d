"""Data-parallel processes on one host for the CPU stages (`train --ranks N`, `pretrain --pretrain-ranks N`): gloo
over loopback, each rank a batch of its own, the gradients averaged, rank 0's clock the stage's clock so that the
ranks stop and schedule together. Why: every stage runs at one torch thread (more threads were 3x slower on a
2-core host: trainer/README.md, session 6), so one process leaves the second core to OpenBLAS's spinning thread.
Without a process group every helper is the one-process identity, so the loops have one code path.
(torchrun fine-tuning has its own module: distributed.py.)"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable, List, Sequence

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable, world: int, port: int, args: Sequence) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        fn(*args, rank)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world: int, args: Sequence) -> None:
    """fn(*args, rank) in `world` processes joined by one gloo group; returns when all are done (a rank's exception
    is raised here)."""
    import torch.multiprocessing as mp

    # OpenBLAS keeps a second busy thread per process besides torch's (trainer/README.md, session 6): with one
    # process per core that thread would contend with the other rank
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        mp.spawn(_entry, args=(fn, world, _free_port(), tuple(args)), nprocs=world, join=True)
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def sync_grads(params: List[torch.nn.Parameter]) -> None:
    """Average the gradients over the ranks in one flat all-reduce. A parameter this rank's batch did not reach
    (no image in it: the vision tower) counts as a zero gradient, so every rank sends the same layout."""
    world = world_size()
    if world == 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for p in params:  # views of the reduced buffer: no second copy of the gradients per step
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p)
        i += n


def same_weights(tensors: Iterable[torch.Tensor]) -> None:
    """Rank 0's values everywhere (a fresh model's init draws, a readout's)."""
    if world_size() > 1:
        for t in tensors:
            dist.broadcast(t.data, 0)


def rank0_clock(seconds: float) -> float:
    """Rank 0's `seconds` on every rank: the time budget and the schedule follow one clock."""
    if world_size() == 1:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t[0])


def all_gather(obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (pickled through the group: tensors travel as bytes)."""
    world = world_size()
    if world == 1:
        return [obj]
    out: List[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def mean(x: float) -> float:
    """The ranks' mean of a per-rank statistic (so decisions taken on it agree on every rank)."""
    world = world_size()
    if world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]) / world
