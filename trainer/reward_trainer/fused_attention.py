"""Attention exported as ONNX Runtime's fused com.microsoft operators (../shared/reference/ort-attention.md).

Eager attention in the graph materialises [B, heads, T, T] fp32 scores per layer (34 GB at 16k tokens for the
7B). The operators below compute the same softmax(QKᵀ/√d)V inside one kernel (CPU, CUDA and WebGPU kernels exist):
- decoder: GroupQueryAttention (K/V keep their 8 groups, no repeat in the graph); causal + right padding through
  seqlens_k = valid length − 1, which is exactly the eager mask for right-padded rows (the service pads right);
- vision: MultiHeadAttention without mask (CLIP attends everywhere).

Each is a torch.autograd.Function: its forward is plain PyTorch (the same math as the eager path, so tracing sees
the right shapes and values) and its `symbolic` emits the contrib op. The model only takes this path inside
`fused(...)` during torch.onnx.export; training and PyTorch inference keep the eager code unchanged.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, NamedTuple, Sequence

import torch

DOMAIN = "com.microsoft"
OPS = ("gqa", "mha")
_active: set = set()


class Lengths(NamedTuple):
    """What replaces the additive [B, 1, T, T] bias on the fused path."""
    seqlens_k: torch.Tensor  # [B] int32, valid length − 1
    total_len: torch.Tensor  # [] int32, T


@contextlib.contextmanager
def fused(ops: Sequence[str]) -> Iterator[None]:
    bad = set(ops) - set(OPS)
    if bad:
        raise ValueError(f"unknown fused attention op(s) {sorted(bad)}; known: {list(OPS)}")
    prev = set(_active)
    _active.clear()
    _active.update(ops)
    try:
        yield
    finally:
        _active.clear()
        _active.update(prev)


def exporting(op: str) -> bool:
    return op in _active and torch.onnx.is_in_onnx_export()


def lengths(attention_mask: torch.Tensor) -> Lengths:
    """Right-padded [B, T] 0/1 mask -> GQA's (seqlens_k, total_sequence_length), computed in-graph (T is dynamic)."""
    seqlens = attention_mask.sum(-1) - 1
    total = torch.ones_like(attention_mask[0]).sum()
    return Lengths(seqlens.to(torch.int32), total.to(torch.int32))


def _none(g):
    from torch.onnx import symbolic_helper

    return symbolic_helper._optional_input_placeholder_tensor(g)


def _softmax_av(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep) -> torch.Tensor:
    """q, k, v [b, h, t, d] -> [b, t, h*d]; fp32 softmax like the eager path."""
    b, h, t, d = q.shape
    s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    if keep is not None:
        s = s.masked_fill(~keep, torch.finfo(s.dtype).min)
    a = torch.softmax(s.float(), dim=-1).to(v.dtype)
    return (a @ v).transpose(1, 2).reshape(b, t, h * d)


class _GQA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, seqlens_k, total_len, num_heads: int, kv_heads: int):  # type: ignore[override]
        b, t, _ = q.shape
        d = q.shape[-1] // num_heads
        rep = num_heads // kv_heads
        qh = q.view(b, t, num_heads, d).transpose(1, 2)
        kh = k.view(b, t, kv_heads, d).transpose(1, 2).repeat_interleave(rep, dim=1)
        vh = v.view(b, t, kv_heads, d).transpose(1, 2).repeat_interleave(rep, dim=1)
        j = torch.arange(t, device=q.device)
        keep = (j[None, :] <= j[:, None])[None] & (j[None, None, :] <= seqlens_k.long()[:, None, None])
        return _softmax_av(qh, kh, vh, keep.unsqueeze(1))

    @staticmethod
    def symbolic(g, q, k, v, seqlens_k, total_len, num_heads: int, kv_heads: int):
        out = g.op(f"{DOMAIN}::GroupQueryAttention", q, k, v, _none(g), _none(g), seqlens_k, total_len,
                   num_heads_i=num_heads, kv_num_heads_i=kv_heads, outputs=3)[0]
        out.setType(q.type())
        return out


class _MHA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, num_heads: int):  # type: ignore[override]
        n, t, w = q.shape
        d = w // num_heads
        sp = lambda x: x.view(n, t, num_heads, d).transpose(1, 2)  # noqa: E731
        return _softmax_av(sp(q), sp(k), sp(v), None)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int):
        out = g.op(f"{DOMAIN}::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        out.setType(q.type())
        return out


def gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: Lengths, num_heads: int, kv_heads: int) -> torch.Tensor:
    """q [b, H, t, d], k/v [b, KV, t, d] (RoPE applied) -> [b, t, H*d]."""
    b, _, t, d = q.shape
    flat = lambda x: x.transpose(1, 2).reshape(b, t, -1)  # noqa: E731
    return _GQA.apply(flat(q), flat(k), flat(v), lens.seqlens_k, lens.total_len, num_heads, kv_heads)


def mha(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q, k, v [n, t, w] -> [n, t, w]."""
    return _MHA.apply(q, k, v, num_heads)
