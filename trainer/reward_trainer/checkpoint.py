"""Run-folder files: the self-describing checkpoint (ckpt.pt: model args, train/preprocess config, weights, optimizer,
step) and the stages' JSON results beside it. One loader serves train (resume), evaluate and export."""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import torch

from .config import ImagePreprocess, ModelArgs, VideoPreprocess
from .model import IXCRewardModel

TRAIN_RESULT = "train_result.json"
EVAL_RESULT = "eval_result.json"
PRETRAIN_RESULT = "pretrain_result.json"


def save_checkpoint(path: str, state: Dict) -> None:
    """Written to a temp file and renamed, so an interrupted save never leaves a torn checkpoint."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, device: str = "cpu") -> Tuple[IXCRewardModel, Dict]:
    """-> (model in eval mode on `device`, the whole checkpoint dict)."""
    state = torch.load(path, map_location="cpu")
    model = IXCRewardModel(ModelArgs.from_dict(state["model_args"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def preprocess_configs(state: Dict) -> Tuple[ImagePreprocess, VideoPreprocess]:
    return ImagePreprocess(**state["image"]), VideoPreprocess(**state["video"])


def write_result(ckpt: str, name: str, result: Dict) -> None:
    with open(os.path.join(os.path.dirname(os.path.abspath(ckpt)), name), "w") as f:
        json.dump(result, f, indent=2)


def read_result(ckpt: str, name: str) -> Dict:
    """A stage's result beside the checkpoint ({} when that stage has not run)."""
    path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
