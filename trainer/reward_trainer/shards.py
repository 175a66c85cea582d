"""Sharded, resumable fine-tuning checkpoints (torch 1.13 has no torch.distributed.checkpoint; its
torch.distributed._shard does not even import on Python 3.11), in a documented format that does not depend on the
process count:

    <run>/ckpt/step-00000100/index.json            {"format", "step", "params": {name: file}, "optim": {name: file},
                                                     "param_groups": [{hyper-parameters, "params": [names]}], "meta"}
    <run>/ckpt/step-00000100/params-00001-of-00003.pt   {name: tensor} (the trainable parameters only)
    <run>/ckpt/step-00000100/optim-00001-of-00003.pt    {name: {"step", "exp_avg", "exp_avg_sq"}} (same grouping)
    <run>/ckpt/latest                                    "step-00000100"

Tensors are keyed by parameter name (never by optimizer slot or flat FSDP parameter), so a run saved with N
processes resumes with M. Frozen weights are not stored: they come from --init again. A checkpoint is written into
a temporary folder and renamed, then `latest` is replaced atomically, so an interrupted save leaves the previous
checkpoint in force. Only rank 0 calls save(); every rank calls load().
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Dict, List, Optional, Tuple

import torch

FORMAT = "reward-trainer-sharded-v1"
STEP_DIR = re.compile(r"^step-(\d{8})$")


def _nbytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    return 0


def _groups(names: List[str], sizes: Dict[str, int], shard_bytes: int) -> List[List[str]]:
    out: List[List[str]] = [[]]
    acc = 0
    for n in names:
        if out[-1] and acc + sizes[n] > shard_bytes:
            out.append([])
            acc = 0
        out[-1].append(n)
        acc += sizes[n]
    return out


def save(ckpt_dir: str, step: int, params: Dict[str, torch.Tensor], optim: Dict, meta: Dict,
         shard_bytes: int = 1 << 30, keep: int = 2) -> str:
    """params: {name: tensor}; optim: named_optim_state(); -> the checkpoint folder."""
    os.makedirs(ckpt_dir, exist_ok=True)
    final = os.path.join(ckpt_dir, f"step-{step:08d}")
    tmp = final + f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    names = list(params)
    sizes = {n: _nbytes(params[n]) + _nbytes(optim["state"].get(n, {})) for n in names}
    groups = _groups(names, sizes, shard_bytes)
    index = {"format": FORMAT, "step": step, "params": {}, "optim": {}, "param_groups": optim["param_groups"],
             "meta": meta}
    for k, g in enumerate(groups):
        pf, of = f"params-{k + 1:05d}-of-{len(groups):05d}.pt", f"optim-{k + 1:05d}-of-{len(groups):05d}.pt"
        torch.save({n: params[n].detach().cpu() for n in g}, os.path.join(tmp, pf))
        st = {n: {kk: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for kk, v in optim["state"][n].items()}
              for n in g if n in optim["state"]}
        torch.save(st, os.path.join(tmp, of))
        index["params"].update({n: pf for n in g})
        index["optim"].update({n: of for n in st})
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    with open(os.path.join(ckpt_dir, "latest.tmp"), "w") as f:
        f.write(os.path.basename(final))
    os.replace(os.path.join(ckpt_dir, "latest.tmp"), os.path.join(ckpt_dir, "latest"))
    steps = sorted(d for d in os.listdir(ckpt_dir) if STEP_DIR.match(d))
    for d in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(ckpt_dir, d), ignore_errors=True)
    return final


def latest(ckpt_dir: str) -> Optional[str]:
    p = os.path.join(ckpt_dir, "latest")
    if not os.path.isfile(p):
        return None
    with open(p) as f:
        d = os.path.join(ckpt_dir, f.read().strip())
    return d if os.path.isfile(os.path.join(d, "index.json")) else None


def load(path: str) -> Tuple[Dict[str, torch.Tensor], Dict, Dict]:
    """-> (params {name: tensor}, named optimizer state, index)."""
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    params: Dict[str, torch.Tensor] = {}
    state: Dict[str, Dict] = {}
    for fn in sorted(set(index["params"].values())):
        params.update(torch.load(os.path.join(path, fn), map_location="cpu"))
    for fn in sorted(set(index["optim"].values())):
        state.update(torch.load(os.path.join(path, fn), map_location="cpu"))
    if set(params) != set(index["params"]):
        raise ValueError(f"{path}: shards do not hold the parameters index.json lists")
    return params, {"state": state, "param_groups": index["param_groups"]}, index


# ------------------------------------------------------------------------------ optimizer state by name
def named_optim_state(opt: torch.optim.Optimizer, names: Dict[int, str]) -> Dict:
    """opt.state_dict() with slots replaced by parameter names (names: id(param) -> name)."""
    sd = opt.state_dict()
    slot_name = {}
    k = 0
    for g in opt.param_groups:
        for p in g["params"]:
            slot_name[k] = names[id(p)]
            k += 1
    groups = [{**{kk: v for kk, v in g.items() if kk != "params"}, "params": [slot_name[i] for i in g["params"]]}
              for g in sd["param_groups"]]
    return {"state": {slot_name[i]: s for i, s in sd["state"].items()}, "param_groups": groups}


def load_named_optim_state(opt: torch.optim.Optimizer, named: Dict, names: Dict[int, str]) -> None:
    slots, k = {}, 0
    for g in opt.param_groups:
        for p in g["params"]:
            slots[names[id(p)]] = k
            k += 1
    if [sorted(g["params"]) for g in named["param_groups"]] != \
            [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]:
        raise ValueError("checkpoint optimizer groups do not match the trainable parameters of this run "
                         "(another --trainable?)")
    groups = [{**{kk: v for kk, v in g.items() if kk != "params"}, "params": [slots[n] for n in g["params"]]}
              for g in named["param_groups"]]
    opt.load_state_dict({"state": {slots[n]: s for n, s in named["state"].items()}, "param_groups": groups})
