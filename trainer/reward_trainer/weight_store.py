"""Parameters on disk: import-hf's low-memory path (issue 10: the 7B must import on a machine with less RAM than
its fp32 weights).

- `mapped_model`: an IXCRewardModel whose every parameter is a view of one float32 file (np.memmap), built layer by
  layer so that no second copy of the model is ever allocated. `hf_import.load_weights` then streams the shards
  into the file (its `copy_` writes through the views), and the PyTorch forward that computes the golden scores
  reads the weights from the page cache: memory the kernel can drop and re-read, not process memory.
- `weights_into_graph`: reward.onnx traced without weights (`export_params=False`: the parameters are graph
  inputs), then every parameter turned into an initializer whose bytes are copied from the file, one tensor at a
  time, into `reward.onnx.data`. The `Transpose` torch puts in front of each linear's weight is applied while
  copying (what constant folding does in the in-memory export), so the runtime maps the weights as stored.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

ALIGN = 64 * 1024  # tensor offsets in the data file: page-aligned, so ONNX Runtime can map instead of copy


class WeightStoreError(OSError):
    pass


class WeightStore:
    """float32 tensors at fixed offsets of one file, exposed as torch views of a memmap."""

    def __init__(self, path: str, shapes: Dict[str, Tuple[int, ...]]):
        self.path, self.shapes, self.offsets = path, dict(shapes), {}
        off = 0
        for name, shape in self.shapes.items():
            self.offsets[name] = off
            off += math.prod(shape)
        n = max(off, 1) * 4
        # Reserve the blocks first: a memmap over a sparse file that the disk cannot back dies with SIGBUS on the
        # first write past the free space; fallocate fails up front with ENOSPC instead.
        with open(path, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, n)
            except OSError as e:
                raise WeightStoreError(f"cannot reserve {n / 1e9:.1f} GB for the weight file {path}: {e.strerror} "
                                       "(free that much disk next to --out, or import with --in-memory)") from None
        self.mm = np.memmap(path, dtype=np.float32, mode="r+", shape=(max(off, 1),))

    def tensor(self, name: str) -> torch.Tensor:
        off, shape = self.offsets[name], self.shapes[name]
        return torch.from_numpy(self.mm[off:off + math.prod(shape)]).view(*shape)


def _bind(module: nn.Module, prefix: str, store: WeightStore) -> None:
    """Replace every parameter of `module` by its view in `store` (the constructor's tensors are freed)."""
    for name, _ in list(module.named_parameters()):
        path, _, leaf = name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        owner._parameters[leaf] = nn.Parameter(store.tensor(prefix + name), requires_grad=False)


def mapped_model(args, path: str):
    """(IXCRewardModel in eval mode with every parameter a view of `path`, the WeightStore). Peak memory while
    building: the embeddings and one decoder layer, not the model."""
    from .model import CLIPEncoderLayer, InternLM2DecoderLayer, IXCRewardModel

    with torch.no_grad():
        model = IXCRewardModel(dataclasses.replace(args, num_layers=0,
                                                   vision=dataclasses.replace(args.vision, layers=0)))
        model.args = args
        dec, vit = "model.layers.", "vit.vision_tower.vision_model.encoder.layers."
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        stacks = ((dec, lambda: InternLM2DecoderLayer(args), args.num_layers, model.model.layers),
                  (vit, lambda: CLIPEncoderLayer(args.vision), args.vision.layers,
                   model.vit.vision_tower.vision_model.encoder.layers))
        firsts = [make() for _, make, _, _ in stacks]  # one layer of each kind: its shapes, then layer 0
        for (prefix, _, n, _), layer in zip(stacks, firsts):
            for i in range(n):
                shapes.update({f"{prefix}{i}.{k}": tuple(p.shape) for k, p in layer.named_parameters()})
        store = WeightStore(path, shapes)
        _bind(model, "", store)
        for (prefix, make, n, stack), first in zip(stacks, firsts):
            for i in range(n):
                layer = first if i == 0 else make()
                _bind(layer, f"{prefix}{i}.", store)
                stack.append(layer)
    assert set(store.shapes) == {n for n, _ in model.named_parameters()}
    return model.eval(), store


# --------------------------------------------------------------------------------------------- reward.onnx
def _external(tensor, location: str, offset: int, length: int) -> None:
    from onnx import TensorProto

    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = tensor.external_data.add()
        e.key, e.value = k, v


def weights_into_graph(onnx_path: str, out_path: str, values: Dict[str, torch.Tensor],
                       dtype: str = "float32") -> List[str]:
    """A graph torch wrote with export_params=False -> out_path with every input named in `values` turned into
    an initializer (Transpose/Identity of a weight applied while copying), tensors over 1 KiB in
    out_path + '.data', converted to float16 first when asked (onnx_fp16.to_fp16 types the graph, the bytes are
    converted here, one tensor at a time). Returns the data file names."""
    import onnx
    from onnx import TensorProto, numpy_helper

    m = onnx.load(onnx_path)
    g = m.graph
    params = {i.name for i in g.input if i.name in values}
    users: Dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    folded: Dict[str, Tuple[str, Tuple[int, ...]]] = {}  # initializer name -> (parameter, permutation)
    keep = []
    for n in g.node:
        if n.op_type in ("Transpose", "Identity") and n.input[0] in params:
            perm = tuple(next((a.ints for a in n.attribute if a.name == "perm"), ())) if n.op_type == "Transpose" else ()
            if n.op_type == "Transpose" and not perm:
                perm = tuple(reversed(range(values[n.input[0]].dim())))
            folded[n.output[0]] = (n.input[0], perm)
            users[n.input[0]] -= 1
            continue
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    for p in sorted(params):
        if users.get(p, 0) > 0:
            folded[p] = (p, ())
    inputs = [i for i in g.input if i.name not in params]
    del g.input[:]
    g.input.extend(inputs)

    def value(name: str) -> np.ndarray:
        p, perm = folded[name]
        t = values[p].detach()
        return np.ascontiguousarray((t.permute(*perm) if perm else t).to(torch.float32).numpy())

    loc = os.path.basename(out_path) + ".data"
    big = []
    for name, (p, perm) in folded.items():
        shape = list(values[p].shape)
        shape = [shape[i] for i in perm] if perm else shape
        if math.prod(shape) * 4 <= 1024:
            g.initializer.append(numpy_helper.from_array(value(name), name))
        else:  # a placeholder: typed and shaped, its bytes written below
            tp = g.initializer.add()  # a reference into the graph (append would copy)
            tp.name, tp.data_type = name, TensorProto.FLOAT
            tp.dims.extend(shape)
            _external(tp, loc, 0, 0)
            big.append(name)
    from .onnx_fp16 import half_array, to_fp16

    if dtype == "float16":
        to_fp16(m)
    elif dtype != "float32":
        raise ValueError(f"dtype {dtype}")
    off = 0
    with open(out_path + ".data", "wb") as f:
        by_name = {t.name: t for t in g.initializer}
        for name in big:
            tp = by_name[name]
            a = value(name)  # one tensor at a time
            if tp.data_type == TensorProto.FLOAT16:
                a = half_array(a)
            pad = (-off) % ALIGN
            f.write(b"\0" * pad)
            off += pad
            _external(tp, loc, off, a.nbytes)
            f.write(memoryview(a).cast("B"))  # no bytes copy (the embedding table alone is 1.5 GB at 7B)
            off += a.nbytes
            del a
    if not big:
        os.remove(out_path + ".data")
    onnx.save_model(m, out_path)
    onnx.checker.check_model(out_path)  # by path: checks the external data references
    return [loc] if big else []
