"""Decoder weights back out of an exported reward.onnx, for a model whose checkpoint is gone: the exporter's node
names carry the module path (`/layers.0/attention/wqkv/Plora_A/MatMul`), and a Linear's weight is stored
transposed as the MatMul's constant input (deduplicated copies go through an Identity). Used to add the packed
graph to an existing model version (export.add_packed); the result is checked against golden.json."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch


def decoder_state(reward_onnx: str) -> Dict[str, torch.Tensor]:
    """{parameter name: tensor} for every decoder parameter and v_head (the vision tower is not in reward.onnx)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(reward_onnx).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input[0] in inits}
    state: Dict[str, torch.Tensor] = {}
    for name, arr in inits.items():
        if not name.startswith("onnx::"):
            state[name] = torch.from_numpy(np.array(arr))
    for n in g.node:
        if n.op_type != "MatMul" or not n.name.endswith("/MatMul"):
            continue
        src = next((alias.get(x, x) for x in n.input if alias.get(x, x) in inits), None)
        if src is None:
            continue
        path = n.name[1:-len("/MatMul")].replace("/", ".")
        key = (path if path.startswith("v_head") else "model." + path) + ".weight"
        state[key] = torch.from_numpy(np.array(inits[src]).T.copy())
    return state
