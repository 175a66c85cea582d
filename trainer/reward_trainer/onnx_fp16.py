"""float32 ONNX graph -> float16 graph for GPU execution providers (import-hf --dtype fp16).

Debian's torch 1.13 cannot run fp16 matmuls on the CPU, so the model is traced in fp32 and the *graph* converted
(onnxconverter-common is not installable here; this is the small part of it we need):
- float initializers, float Constant / ConstantOfShape values, Cast(to=float) targets, float graph inputs and
  outputs (and If branches' outputs) become float16; finite values are clamped to ±65504 so a large negative fill
  (masks) stays finite instead of turning into -inf;
- two kinds of fp32 islands stay float32, with Casts at their borders, as the published model computes them:
  * RoPE: everything upstream of Cos/Sin back to the integer positions (angles reach max_seq_len radians; in
    fp16 16384 has a spacing of 16), cast to fp16 after Cos/Sin (the published rotary cache: `.to(dtype)`);
  * RMSNorm: from the Cast to float before Pow through ReduceMean/Add/Sqrt/Div/Mul while every non-constant
    input comes from the island (the published InternLM2RMSNorm runs in fp32: x² overflows fp16 above 256).
Element types of intermediate tensors are propagated by op rules below (the contrib attention ops have no ONNX
schema, so onnx.shape_inference cannot type them).
"""
from __future__ import annotations

from collections import defaultdict, deque
from typing import Dict, List, Set

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
_INT64_OUT = {"Shape", "Size", "NonZero", "ArgMax", "ArgMin"}
_BOOL_OUT = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"}
_NORM_OPS = {"ReduceMean", "Add", "Sqrt", "Div", "Reciprocal", "Mul"}


def _attr(n, name):
    for a in n.attribute:
        if a.name == name:
            return a
    return None


def half_array(a: np.ndarray) -> np.ndarray:
    """float32 values as float16, finite ones clamped to +-65504 (a large negative mask fill stays finite)."""
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16)


def _half(t: TensorProto) -> TensorProto:
    return numpy_helper.from_array(half_array(numpy_helper.to_array(t)), t.name)


def elem_types(g: onnx.GraphProto, outer: Dict[str, int] = None) -> Dict[str, int]:
    """Element type of every tensor of `g` (inputs, initializers, node outputs), by op rules."""
    ty: Dict[str, int] = dict(outer or {})
    for v in g.input:
        ty[v.name] = v.type.tensor_type.elem_type
    for t in g.initializer:
        ty[t.name] = t.data_type
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type == "Cast":
            out = [_attr(n, "to").i]
        elif n.op_type == "Constant":
            out = [_attr(n, "value").t.data_type]
        elif n.op_type == "ConstantOfShape":
            v = _attr(n, "value")
            out = [v.t.data_type if v else F32]
        elif n.op_type in _INT64_OUT:
            out = [TensorProto.INT64]
        elif n.op_type in _BOOL_OUT:
            out = [TensorProto.BOOL]
        elif n.op_type == "Where":
            out = [ty.get(n.input[1], 0)]
        elif n.op_type == "If":
            out = [o.type.tensor_type.elem_type for o in _attr(n, "then_branch").g.output]
        else:
            out = [ty.get(ins[0], 0)] * len(n.output) if ins else [0] * len(n.output)
        for name, t in zip(n.output, out):
            ty[name] = t
    return ty


def fp32_islands(g: onnx.GraphProto, ty: Dict[str, int]) -> Set[int]:
    """Indices of the nodes that stay float32 (RoPE angle computation, RMSNorm statistics)."""
    prod = {o: i for i, n in enumerate(g.node) for o in n.output}
    cons: Dict[str, List[int]] = defaultdict(list)
    for i, n in enumerate(g.node):
        for x in n.input:
            cons[x].append(i)
    consts = {t.name for t in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    keep: Set[int] = set()
    # RoPE: backward over float tensors from Cos/Sin, stopping at a Cast from a non-float and at constants
    todo = deque(i for i, n in enumerate(g.node) if n.op_type in ("Cos", "Sin"))
    while todo:
        i = todo.popleft()
        if i in keep:
            continue
        keep.add(i)
        n = g.node[i]
        if n.op_type == "Cast" and ty.get(n.input[0]) not in (F32, F16):
            continue
        for x in n.input:
            if x in prod and ty.get(x) == F32:
                todo.append(prod[x])
    # RMSNorm: Cast(->float) -> Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul (...), all inputs from the island
    for i, n in enumerate(g.node):
        if n.op_type != "Pow" or not any(g.node[j].op_type == "ReduceMean" for j in cons[n.output[0]]):
            continue
        region = {i}
        src = prod.get(n.input[0])
        if src is not None and g.node[src].op_type == "Cast":
            region.add(src)
        outs = {o for j in region for o in g.node[j].output}
        q = deque(j for o in outs for j in cons[o])
        while q:
            j = q.popleft()
            m = g.node[j]
            if j in region or m.op_type not in _NORM_OPS:
                continue
            live = [x for x in m.input if x and x not in consts and ty.get(x) in (F32, F16)]
            if not live or not all(x in outs for x in live):
                continue
            region.add(j)
            outs.update(m.output)
            q.extend(k for o in m.output for k in cons[o])
        keep |= region
    return keep


def _half_subgraph(g: onnx.GraphProto) -> None:
    """If branches: everything float16 (they only pass values through: Squeeze/Identity/Constant)."""
    for n in g.node:
        _half_node_attrs(n)
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == F32:
            v.type.tensor_type.elem_type = F16
    del g.value_info[:]


def _half_node_attrs(n) -> None:
    for a in n.attribute:
        if a.type == AttributeProto.TENSOR and a.t.data_type == F32:
            a.t.CopyFrom(_half(a.t))
        elif n.op_type == "Cast" and a.name == "to" and a.i == F32:
            a.i = F16
        elif a.type == AttributeProto.GRAPH:
            _half_subgraph(a.g)


def to_fp16(m: onnx.ModelProto) -> onnx.ModelProto:
    """Converts `m` in place (weights included) and returns it. An external-data initializer only has its type
    changed: its bytes are the writer's to convert (weight_store.weights_into_graph)."""
    g = m.graph
    ty = elem_types(g)
    keep = fp32_islands(g, ty)
    cons: Dict[str, List[int]] = defaultdict(list)
    for i, n in enumerate(g.node):
        for x in n.input:
            cons[x].append(i)
    # domain of each float32 tensor after conversion: 32 (stays) or 16
    dom: Dict[str, int] = {}
    for v in g.input:
        if v.type.tensor_type.elem_type == F32:
            dom[v.name] = 16
            v.type.tensor_type.elem_type = F16
    for t in g.initializer:
        if t.data_type == F32:
            dom[t.name] = 32 if cons[t.name] and all(c in keep for c in cons[t.name]) else 16
    for i, n in enumerate(g.node):
        if n.op_type == "Constant" and ty.get(n.output[0]) == F32:
            dom[n.output[0]] = 32 if cons[n.output[0]] and all(c in keep for c in cons[n.output[0]]) else 16
            if dom[n.output[0]] == 32:
                keep.add(i)
        for o in n.output:
            if ty.get(o) == F32 and n.op_type != "Constant":
                dom[o] = 32 if i in keep else 16
    for k, t in enumerate(g.initializer):
        if dom.get(t.name) == 16:
            if t.data_location == TensorProto.EXTERNAL:
                t.data_type = F16  # data not loaded (weight_store streams it later, converted to this type)
            else:
                g.initializer[k].CopyFrom(_half(t))
    new_nodes = []
    casts: Dict[tuple, str] = {}

    def cast(x: str, to: int) -> str:
        key = (x, to)
        if key not in casts:
            casts[key] = f"{x}__to{'32' if to == F32 else '16'}"
            new_nodes.append(helper.make_node("Cast", [x], [casts[key]], to=to, name=casts[key]))
        return casts[key]

    for i, n in enumerate(g.node):
        want = 32 if i in keep else 16
        if want == 16:
            _half_node_attrs(n)
        for k, x in enumerate(n.input):
            if n.op_type == "Cast":
                break  # a Cast takes either float type as it is
            if x in dom and dom[x] != want:
                n.input[k] = cast(x, F32 if want == 32 else F16)
        new_nodes.append(n)
    for o in g.output:
        if o.type.tensor_type.elem_type == F32:
            o.type.tensor_type.elem_type = F16
            if dom.get(o.name) == 32:
                raise ValueError(f"graph output {o.name} is computed in an fp32 island")
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    return m
