"""PyTorch's own multi-process stack for fine-tuning: torchrun's environment -> init_process_group (nccl on cuda,
gloo on cpu), DistributedDataParallel, or FullyShardedDataParallel for full fine-tuning. Nothing home-made: this
module only picks the backend and wrapper, and wraps the few collectives the loop needs so that one process (no
torchrun) runs the same code without a process group.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: str = "auto") -> Dist:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them: one process."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local, device)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_sum(d: Dist, values: List[float]) -> List[float]:
    """Sum of per-rank numbers (loss sums, counts) over all ranks, in float64."""
    t = torch.tensor(values, dtype=torch.float64)
    if d.active:
        if d.device.startswith("cuda"):
            t = t.to(d.device)
        dist.all_reduce(t)
    return t.cpu().tolist()


def gather_objects(d: Dist, obj: Any) -> List[Any]:
    if not d.active:
        return [obj]
    out: List[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def torchrun_compat_args() -> List[str]:
    """Launcher flags that make torchrun work where its Std flag parsing is broken: torch 1.13 on Python 3.11
    (Debian) parses the default `--redirects 0 --tee 0` to None ("'NoneType' object has no attribute 'get'")
    because enum iteration skips the zero flag there. A mapping that names no launched rank (9; at most 9 local ranks) means "none" too."""
    try:
        from torch.distributed.elastic.multiprocessing.api import Std
    except Exception:
        return []
    return [] if Std.from_str("0") is not None else ["--redirects", "9:0", "--tee", "9:0"]


def fsdp_status() -> Tuple[bool, str]:
    """FSDP needs torch >= 2.0 here: torch 1.13's torch.distributed.fsdp fails to import on Python 3.11
    (a dataclass default in torch.distributed._shard) and runs on cuda only."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: F401
    except Exception as e:  # ValueError on 1.13 + Python 3.11
        return False, f"torch.distributed.fsdp unavailable ({type(e).__name__}: {str(e)[:120]})"
    if int(torch.__version__.split(".")[0]) < 2:
        return False, f"torch {torch.__version__}: FSDP with use_orig_params needs torch >= 2.0"
    return True, "ok"


def wrap(module: torch.nn.Module, d: Dist, use_fsdp: bool, find_unused: bool, layer_classes=()) -> torch.nn.Module:
    """One process: the module itself. Several: DDP (device_ids unset: inputs are moved by the module, which works
    for cpu and a single cuda device per process), or FSDP with one unit per transformer layer."""
    if not d.active:
        return module
    if use_fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
        import functools

        policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=set(layer_classes))
        return FSDP(module, auto_wrap_policy=policy, use_orig_params=True,
                    device_id=torch.device(d.device) if d.device.startswith("cuda") else None)
    return torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused)


def is_fsdp(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "FullyShardedDataParallel"


def no_sync(module: torch.nn.Module, skip: bool):
    """Gradient accumulation: no all-reduce on the micro-batches before the last one."""
    return module.no_sync() if skip and hasattr(module, "no_sync") else contextlib.nullcontext()


def clean_name(name: str) -> str:
    """Parameter name without the wrappers' prefixes (DDP `module.`, FSDP `_fsdp_wrapped_module.`, checkpoint)."""
    for p in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module."):
        name = name.replace(p, "")
    return name[len("module."):] if name.startswith("module.") else name


def full_state(module: torch.nn.Module, d: Dist, optim: Optional[torch.optim.Optimizer] = None):
    """FSDP: (full model state dict, name-keyed full optimizer state) gathered to rank 0 on cpu (None elsewhere)."""
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    cfg = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT, cfg):
        sd = module.state_dict()
    osd = FSDP.full_optim_state_dict(module, optim, rank0_only=True) if optim is not None else None
    return (sd, osd) if d.main else (None, None)


def load_full_optim(module: torch.nn.Module, optim: torch.optim.Optimizer, full: dict) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    optim.load_state_dict(FSDP.shard_full_optim_state_dict(full, module))
