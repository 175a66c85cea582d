"""Graph export for large models: ONNX external data, fused attention, manifest fields.

- External data: a protobuf cannot exceed 2 GB, so a graph whose weights exceed `external_threshold` bytes (2 GB
  by default; REWARD_ONNX_EXTERNAL_THRESHOLD or the option lowers it, which the tests do) is written as
  `<graph>.onnx` + one `<graph>.onnx.data` file holding every tensor over 1 KiB. The manifest lists the data file
  under the graph (`external_data`) and in `files` with its sha256, and onnx.checker runs on the *path* (the
  in-memory checker refuses > 2 GB protos).
- Attention: `attention="fused"` exports decoder attention as com.microsoft GroupQueryAttention and ViT attention as
  com.microsoft MultiHeadAttention (fused_attention.py); "eager" keeps the plain opset-17 graph (the default for
  the tiny model, whose graphs every runtime can load).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from typing import Dict, List, Optional

import torch

from . import fused_attention
from .graphs import OPSET, _Vision
from .manifest import REWARD_INPUTS

TWO_GB = 2 * 1024 ** 3
ENV_THRESHOLD = "REWARD_ONNX_EXTERNAL_THRESHOLD"
ATTENTION = {"eager": {"reward": "eager", "vision": "eager"},
             "fused": {"reward": "com.microsoft.GroupQueryAttention", "vision": "com.microsoft.MultiHeadAttention"}}


@dataclasses.dataclass
class GraphOptions:
    attention: str = "eager"  # eager | fused
    dtype: str = "float32"  # float32 (CPU EP) | float16 (GPU EPs)
    external_threshold: Optional[int] = None  # bytes of weights above which external data is used; None: env or 2 GB
    stream: bool = False  # reward.onnx traced without weights, weights copied one by one (weight_store.py)

    def threshold(self) -> int:
        if self.external_threshold is not None:
            return self.external_threshold
        return int(os.environ.get(ENV_THRESHOLD, TWO_GB))


def _weight_bytes(m) -> int:
    from onnx.external_data_helper import uses_external_data

    n = 0
    for t in m.graph.initializer:
        n += len(t.raw_data) if not uses_external_data(t) else 0
    return n


def finish_graph(tmp_path: str, out_dir: str, name: str, threshold: int, dtype: str = "float32") -> List[str]:
    """Re-save the graph torch wrote at tmp_path (possibly with torch's one-file-per-tensor external data) as
    out_dir/name, converted to float16 when asked (onnx_fp16.py), with one external data file when its weights
    exceed `threshold`. Returns the data file names."""
    import onnx

    m = onnx.load(tmp_path)  # pulls in any external data torch wrote next to it
    if dtype == "float16":
        from .onnx_fp16 import to_fp16

        to_fp16(m)
    path = os.path.join(out_dir, name)
    data: List[str] = []
    if _weight_bytes(m) > threshold:
        loc = name + ".data"
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=loc,
                        size_threshold=1024)
        data.append(loc)
    else:
        onnx.save_model(m, path)
    del m
    onnx.checker.check_model(path)  # by path: works above 2 GB and checks the external data references
    return data


@contextlib.contextmanager
def _no_parameter_clones(model):
    """torch.onnx.export's tracer clones every traced input, the module's parameters included, into a list the
    exporter never reads (torch.jit._trace.ONNXTracedModule's `ret_inputs`): a second, process-memory copy of the
    whole model (5.8 GB of 5.6 GB of weights measured on the 4-layer full-width model). While tracing for the
    low-memory export, a clone of a parameter's own memory returns the parameter itself; every other clone is
    untouched. The model's forward never clones a parameter (nothing in model.py calls clone)."""
    ptrs = {p.data_ptr() for p in model.parameters()}
    orig = torch.Tensor.clone

    def clone(self, *args, **kwargs):
        if self.data_ptr() in ptrs:
            return self
        return orig(self, *args, **kwargs)

    torch.Tensor.clone = clone
    try:
        yield
    finally:
        torch.Tensor.clone = orig


def export_graphs(model, out_dir: str, opts: GraphOptions) -> Dict[str, Dict]:
    """vision.onnx + reward.onnx into out_dir -> {graph: {"external_data": [...], "attention": ...}}."""

    if opts.attention not in ATTENTION:
        raise ValueError(f"attention must be one of {sorted(ATTENTION)}")
    if opts.dtype not in ("float32", "float16"):
        raise ValueError("dtype must be float32 or float16")
    if opts.dtype == "float16" and next(model.parameters()).dtype != torch.float32:
        raise ValueError("float16 graphs are converted from an fp32 trace: pass the model in float32")
    S = model.args.vision.tile_size
    tmp = os.path.join(out_dir, ".torch-export")
    ops = ("gqa", "mha") if opts.attention == "fused" else ()
    info: Dict[str, Dict] = {}
    try:
        for graph in ("vision", "reward"):
            os.makedirs(tmp, exist_ok=True)
            tp = os.path.join(tmp, graph + ".onnx")
            frugal = _no_parameter_clones(model) if opts.stream else contextlib.nullcontext()
            with torch.no_grad(), fused_attention.fused(ops), frugal:
                if graph == "vision":
                    torch.onnx.export(_Vision(model), (torch.randn(1, 3, 2 * S, 3 * S),), tp,
                                      input_names=["image"], output_names=["image_embeds"], opset_version=OPSET,
                                      dynamic_axes={"image": {2: "H", 3: "W"}, "image_embeds": {0: "T_img"}},
                                      do_constant_folding=True, custom_opsets={fused_attention.DOMAIN: 1})
                else:
                    B, T, M = 2, 16, 5
                    args = (torch.randint(0, model.args.vocab_size, (B, T)), torch.randn(M, model.args.hidden_size),
                            torch.randint(0, M, (B, T)), (torch.rand(B, T) > 0.5).float(),
                            torch.ones(B, T, dtype=torch.long), torch.tensor([T - 1, T - 3]))
                    args[4][1, T - 2:] = 0  # a right-padded row, so the trace cannot specialise on "no padding"
                    # streamed: no weights in the trace (they become inputs; TRAINING mode only so that torch
                    # de-duplicates parameters by pointer instead of comparing every pair of equal-shaped weights)
                    stream = dict(export_params=False, training=torch.onnx.TrainingMode.TRAINING) if opts.stream else {}
                    torch.onnx.export(model, args, tp, input_names=[n for n, _, _ in REWARD_INPUTS],
                                      output_names=["score"], opset_version=OPSET,
                                      dynamic_axes={"input_ids": {0: "B", 1: "T"}, "image_embeds": {0: "M"},
                                                    "image_positions": {0: "B", 1: "T"}, "im_mask": {0: "B", 1: "T"},
                                                    "attention_mask": {0: "B", 1: "T"}, "readout_index": {0: "B"},
                                                    "score": {0: "B"}},
                                      do_constant_folding=not opts.stream, **stream,
                                      custom_opsets={fused_attention.DOMAIN: 1})
            if graph == "reward" and opts.stream:
                from .weight_store import weights_into_graph

                values = dict(model.named_parameters()) | dict(model.named_buffers())
                data = weights_into_graph(tp, os.path.join(out_dir, "reward.onnx"), values, opts.dtype)
            else:
                data = finish_graph(tp, out_dir, graph + ".onnx", opts.threshold(), opts.dtype)
            shutil.rmtree(tmp)
            info[graph] = {"external_data": data, "attention": ATTENTION[opts.attention][graph]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def data_files(info: Dict[str, Dict]) -> List[str]:
    return [f for g in info.values() for f in g["external_data"]]


def annotate(man: Dict, info: Dict[str, Dict], opts: GraphOptions) -> None:
    """Manifest fields of this path: top-level `dtype`; per graph `dtype`, `attention`, `external_data`."""
    man["dtype"] = opts.dtype
    for graph, g in info.items():
        man["graphs"][graph].update({"dtype": opts.dtype, "attention": g["attention"],
                                     "external_data": list(g["external_data"])})
        for io in man["graphs"][graph]["inputs"] + man["graphs"][graph]["outputs"]:
            if io["dtype"] in ("float32", "float16"):
                io["dtype"] = opts.dtype  # the graph's float I/O follows its dtype
