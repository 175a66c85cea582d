"""The plain (eager, inline-weights) ONNX graphs of a model: vision.onnx and reward.onnx at opset 17, with the
dynamic axes of models/README.md. onnx_large.py builds on these pieces for fused attention and external data."""
from __future__ import annotations

import os

import torch

from .manifest import REWARD_INPUTS

OPSET = 17


class _Vision(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, image):
        return self.m.vision_forward(image)


def export_graphs(model, out_dir: str) -> None:
    S = model.args.vision.tile_size
    with torch.no_grad():
        torch.onnx.export(_Vision(model), (torch.randn(1, 3, 2 * S, 3 * S),), os.path.join(out_dir, "vision.onnx"),
                          input_names=["image"], output_names=["image_embeds"], opset_version=OPSET,
                          dynamic_axes={"image": {2: "H", 3: "W"}, "image_embeds": {0: "T_img"}},
                          do_constant_folding=True)
        B, T, M = 2, 16, 5
        args = (torch.randint(0, model.args.vocab_size, (B, T)), torch.randn(M, model.args.hidden_size),
                torch.randint(0, M, (B, T)), (torch.rand(B, T) > 0.5).float(), torch.ones(B, T, dtype=torch.long),
                torch.tensor([T - 1, T - 3]))
        torch.onnx.export(model, args, os.path.join(out_dir, "reward.onnx"),
                          input_names=[n for n, _, _ in REWARD_INPUTS], output_names=["score"], opset_version=OPSET,
                          dynamic_axes={"input_ids": {0: "B", 1: "T"}, "image_embeds": {0: "M"},
                                        "image_positions": {0: "B", 1: "T"}, "im_mask": {0: "B", 1: "T"},
                                        "attention_mask": {0: "B", 1: "T"}, "readout_index": {0: "B"},
                                        "score": {0: "B"}},
                          do_constant_folding=True)
    import onnx

    for name in ("vision.onnx", "reward.onnx"):
        onnx.checker.check_model(onnx.load(os.path.join(out_dir, name)))
