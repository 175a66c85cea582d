"""IXC-2.5-Reward architecture at configurable size.

Parameter names follow the published checkpoint (`model.tok_embeddings`, `model.layers.N.attention.wqkv`,
`...Plora_A`, `vit.vision_tower.vision_model.*`, `vision_proj.0/2`, `plora_glb_GN`, `plora_sub_GN`, `v_head`)
so the same code can later load the real weights. Eager attention, fp32 softmax, no fused kernels
(exports to ONNX opset 17 and runs on torch 1.13 and 2.x). The exporter can swap attention for ONNX Runtime's
fused operators (fused_attention.py); the eager code below is what PyTorch always runs.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused_attention
from .config import ModelArgs, VisionArgs


QUERY_CHUNK = 1024  # eager decoder attention in PyTorch: query rows per block above this length
VIT_CROP_CHUNK = 4  # eager ViT attention in PyTorch: crops per block
POS_EMB_STD = 0.5  # ViT position embedding init (see CLIPEmbeddings)


# ----------------------------------------------------------------------------------------------- vision
class CLIPEmbeddings(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.num_patches = (a.tile_size // a.patch) ** 2
        self.class_embedding = nn.Parameter(torch.randn(a.width) * 0.02)
        self.patch_embedding = nn.Conv2d(3, a.width, kernel_size=a.patch, stride=a.patch, bias=False)
        self.position_embedding = nn.Embedding(self.num_patches + 1, a.width)
        # On the scale of the patch embeddings (~1 per channel with the conv's default init), not HF's 0.02: at
        # 0.02 a token's place in the crop is 2 % of its features, and the vision stage's "left"/"right" labels (a
        # pure function of that place) stayed at chance for 1 600 steps; at 0.5 they are learned within 10 steps
        # (trainer/README.md, session 6). A loaded checkpoint overwrites this init.
        nn.init.normal_(self.position_embedding.weight, std=POS_EMB_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embedding(x).flatten(2).transpose(1, 2)  # [N, P, W]
        cls = self.class_embedding.view(1, 1, -1).expand(p.shape[0], 1, p.shape[2])
        return torch.cat([cls, p], dim=1) + self.position_embedding.weight.unsqueeze(0)


class CLIPAttention(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.heads, self.hd = a.heads, a.width // a.heads
        self.q_proj = nn.Linear(a.width, a.width)
        self.k_proj = nn.Linear(a.width, a.width)
        self.v_proj = nn.Linear(a.width, a.width)
        self.out_proj = nn.Linear(a.width, a.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, w = x.shape
        q = self.q_proj(x).view(n, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.heads, self.hd).transpose(1, 2)
        if fused_attention.exporting("mha"):
            return self.out_proj(fused_attention.mha(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads))
        v = self.v_proj(x).view(n, t, self.heads, self.hd).transpose(1, 2)
        if n > VIT_CROP_CHUNK and not torch.onnx.is_in_onnx_export():  # bound the [n, heads, t, t] scores
            o = torch.cat([self._attend(q[i:i + VIT_CROP_CHUNK], k[i:i + VIT_CROP_CHUNK], v[i:i + VIT_CROP_CHUNK])
                           for i in range(0, n, VIT_CROP_CHUNK)])
        else:
            o = self._attend(q, k, v)
        return self.out_proj(o.transpose(1, 2).reshape(n, t, w))

    def _attend(self, q, k, v):
        att = torch.softmax((q @ k.transpose(-1, -2)).float() / math.sqrt(self.hd), dim=-1).to(v.dtype)
        return att @ v


class CLIPMLP(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.fc1 = nn.Linear(a.width, a.width * a.mlp_ratio)
        self.fc2 = nn.Linear(a.width * a.mlp_ratio, a.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu, as CLIP


class CLIPEncoderLayer(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.self_attn = CLIPAttention(a)
        self.layer_norm1 = nn.LayerNorm(a.width, eps=a.layer_norm_eps)
        self.mlp = CLIPMLP(a)
        self.layer_norm2 = nn.LayerNorm(a.width, eps=a.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(a) for _ in range(a.layers)])


class CLIPVisionModel(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.embeddings = CLIPEmbeddings(a)
        self.pre_layrnorm = nn.LayerNorm(a.width, eps=a.layer_norm_eps)  # (sic) HF CLIP spelling
        self.encoder = CLIPEncoder(a)
        # Present for checkpoint compatibility; IXC takes hidden_states[-1], i.e. *before* post_layernorm.
        self.post_layernorm = nn.LayerNorm(a.width, eps=a.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre_layrnorm(self.embeddings(x))
        for layer in self.encoder.layers:
            h = layer(h)
        return h


class VisionTower(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.vision_model = CLIPVisionModel(a)


class ViTWrapper(nn.Module):
    """`vit.vision_tower.vision_model.*` naming as in the IXC checkpoint."""

    def __init__(self, a: VisionArgs):
        super().__init__()
        self.vision_tower = VisionTower(a)


# ---------------------------------------------------------------------------------------------- decoder
class Branches(NamedTuple):
    """The packed layout's attention (reward_packed.onnx, graph version 2; models/README.md).

    A row is a trunk of P positions (causal, right-padded) followed by NB branches of L positions each. Branch b
    sees the first `branch_start[b]` trunk positions and itself (causal); no other branch and no later trunk
    position. That is the block 2-D mask of N responses after one prompt, or of reward suffixes hung after each
    step, stored in O(T) inputs; attention costs P² + NB·L·(P + L) instead of (P + NB·L)². Additive biases:"""
    trunk: torch.Tensor  # [b, 1, P, P]
    to_trunk: torch.Tensor  # [b, 1, NB, 1, P]
    to_self: torch.Tensor  # [b, 1, NB, L, L]


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


class PLoRA(nn.Linear):
    """Partial LoRA (IXC build_mlp.PLoRA): y = W x, plus B(A(x))·alpha/r where im_mask = 1.

    Computed for every token and multiplied by the float mask (identical result, no boolean scatter in ONNX).
    """

    def __init__(self, d_in: int, d_out: int, r: int, alpha: int):
        super().__init__(d_in, d_out, bias=False)
        self.Plora_A = nn.Linear(d_in, r, bias=False)
        self.Plora_B = nn.Linear(r, d_out, bias=False)
        self.lora_scaling = alpha / r
        nn.init.kaiming_uniform_(self.Plora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.Plora_B.weight)

    def forward(self, x: torch.Tensor, im_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = F.linear(x, self.weight)
        lora = self.Plora_B(self.Plora_A(x)) * self.lora_scaling
        return y + lora * im_mask.unsqueeze(-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class InternLM2Attention(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.num_heads, self.num_kv = a.num_heads, a.num_kv_heads
        self.q_per_kv = a.num_heads // a.num_kv_heads
        self.head_dim = a.hidden_size // a.num_heads
        out = (self.num_heads + 2 * self.num_kv) * self.head_dim
        self.wqkv = PLoRA(a.hidden_size, out, a.plora_rank, a.plora_alpha)
        self.wo = PLoRA(self.num_heads * self.head_dim, a.hidden_size, a.plora_rank, a.plora_alpha)
        # Training only (pretrain's attention hints): when > 0, _attend keeps the first keep_heads heads' scores
        # (masked, before the softmax) in `kept`, one tensor per query block, so a loss can shape where they look.
        self.keep_heads = 0
        self.kept: List[torch.Tensor] = []

    def keep(self, heads: int) -> None:
        """From the next forward on, keep the first `heads` heads' scores (more if more were asked for since the last
        take_kept: two hints may read one layer); 0 stops keeping and drops anything kept."""
        if heads <= 0 or not self.keep_heads:
            self.kept = []
        self.keep_heads = max(self.keep_heads, heads) if heads > 0 else 0

    def take_kept(self) -> torch.Tensor:
        """The kept scores [b, keep_heads, t, t] (query blocks joined); keeping stops."""
        out = torch.cat(self.kept, dim=2)
        self.keep_heads, self.kept = 0, []
        return out

    def split_qkv(self, qkv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Published fused layout: 'b q (h gs d) -> b q h gs d', gs = q_per_kv + 2; q = [:q_per_kv], k = [-2], v = [-1]."""
        b, t, _ = qkv.shape
        qkv = qkv.view(b, t, self.num_kv, self.q_per_kv + 2, self.head_dim)
        q = qkv[..., : self.q_per_kv, :].reshape(b, t, self.num_heads, self.head_dim)
        k = qkv[..., -2, :]
        v = qkv[..., -1, :]
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [b, heads, t, d]

    def forward(self, x, im_mask, cos, sin, bias):
        b, t, _ = x.shape
        q, k, v = self.split_qkv(self.wqkv(x, im_mask))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if isinstance(bias, fused_attention.Lengths):  # ONNX export with the fused operator
            return self.wo(fused_attention.gqa(q, k, v, bias, self.num_heads, self.num_kv), im_mask)
        # GQA: query head h uses kv group h // q_per_kv
        k = k.unsqueeze(2).expand(b, self.num_kv, self.q_per_kv, t, self.head_dim).reshape(b, self.num_heads, t, self.head_dim)
        v = v.unsqueeze(2).expand(b, self.num_kv, self.q_per_kv, t, self.head_dim).reshape(b, self.num_heads, t, self.head_dim)
        if isinstance(bias, Branches):
            o = self._attend_branches(q, k, v, bias)
        elif t > QUERY_CHUNK and not torch.onnx.is_in_onnx_export():
            # long inputs in PyTorch: query blocks, so [b, heads, QUERY_CHUNK, t] is the largest score tensor
            # (each row's softmax is independent; same math as one block). The graph keeps one block.
            o = torch.cat([self._attend(q[:, :, i:i + QUERY_CHUNK], k, v, bias[:, :, i:i + QUERY_CHUNK])
                           for i in range(0, t, QUERY_CHUNK)], dim=2)
        else:
            o = self._attend(q, k, v, bias)
        o = o.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.wo(o, im_mask)


    def _attend(self, q, k, v, bias):
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + bias
        if self.keep_heads:
            self.kept.append(scores[:, :self.keep_heads].float().clone())
        att = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        return att @ v

    def _attend_branches(self, q, k, v, br: Branches):
        """Trunk rows attend as usual; each branch's rows attend to [trunk keys | its own keys] in one softmax."""
        b, heads, t, d = q.shape
        P = br.trunk.shape[-1]
        nb, L = br.to_self.shape[2], br.to_self.shape[-1]
        kt, vt = k[:, :, :P], v[:, :, :P]
        ot = self._attend(q[:, :, :P], kt, vt, br.trunk)
        qf = q[:, :, P:]  # [b, heads, nb·L, d]: against the trunk as one matrix (no broadcast over branches)
        qb = qf.reshape(b, heads, nb, L, d)
        kb = k[:, :, P:].reshape(b, heads, nb, L, d)
        vb = v[:, :, P:].reshape(b, heads, nb, L, d)
        s_trunk = (qf @ kt.transpose(-1, -2)).reshape(b, heads, nb, L, P) / math.sqrt(self.head_dim) + br.to_trunk
        s_self = (qb @ kb.transpose(-1, -2)) / math.sqrt(self.head_dim) + br.to_self
        att = torch.softmax(torch.cat([s_trunk, s_self], dim=-1).float(), dim=-1).to(v.dtype)
        a_trunk = att[..., :P].reshape(b, heads, nb * L, P)
        ob = (a_trunk @ vt).reshape(b, heads, nb, L, d) + att[..., P:] @ vb  # [b, heads, nb, L, d]
        return torch.cat([ot, ob.reshape(b, heads, nb * L, d)], dim=2)


class InternLM2MLP(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.w1 = PLoRA(a.hidden_size, a.intermediate_size, a.plora_rank, a.plora_alpha)
        self.w3 = PLoRA(a.hidden_size, a.intermediate_size, a.plora_rank, a.plora_alpha)
        self.w2 = PLoRA(a.intermediate_size, a.hidden_size, a.plora_rank, a.plora_alpha)

    def forward(self, x, im_mask):
        return self.w2(F.silu(self.w1(x, im_mask)) * self.w3(x, im_mask), im_mask)


class InternLM2DecoderLayer(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.attention = InternLM2Attention(a)
        self.feed_forward = InternLM2MLP(a)
        self.attention_norm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.ffn_norm = RMSNorm(a.hidden_size, a.rms_norm_eps)

    def forward(self, h, im_mask, cos, sin, bias):
        h = h + self.attention(self.attention_norm(h), im_mask, cos, sin, bias)
        return h + self.feed_forward(self.ffn_norm(h), im_mask)


class InternLM2Model(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.tok_embeddings = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList([InternLM2DecoderLayer(a) for _ in range(a.num_layers)])
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


# ------------------------------------------------------------------------------------------------ model
def _by_shape(images: List[torch.Tensor], fn) -> List[torch.Tensor]:
    """fn over [n, ...] batches of the same-shape tensors among `images` ([1, ...] each) -> one result per image."""
    out: List[Optional[torch.Tensor]] = [None] * len(images)
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    for idx in groups.values():
        res = fn(torch.cat([images[i] for i in idx], 0))
        for j, i in enumerate(idx):
            out[i] = res[j]
    return out  # type: ignore[return-value]


class IXCRewardModel(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        a, v = args, args.vision
        assert v.tile_size % (2 * v.patch) == 0, "tile_size must be a multiple of 2*patch"
        assert a.hidden_size % a.num_heads == 0 and a.num_heads % a.num_kv_heads == 0
        self.G = v.tile_size // v.patch // 2
        merged = 4 * v.width
        self.vit = ViTWrapper(v)
        self.vision_proj = nn.Sequential(nn.Linear(merged, a.hidden_size), nn.GELU(), nn.Linear(a.hidden_size, a.hidden_size))
        self.plora_glb_GN = nn.Parameter(torch.zeros(1, 1, merged))
        self.plora_sub_GN = nn.Parameter(torch.zeros(1, 1, 1, merged))
        self.model = InternLM2Model(a)
        self.v_head = nn.Linear(a.hidden_size, 1, bias=False)
        hd = a.hidden_size // a.num_heads
        self.register_buffer("inv_freq", 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2).float() / hd)), persistent=False)
        self.model.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # decoder linears and embeddings N(0, 0.02) (InternLM2 initializer_range); PLoRA A/B, ViT and projector
        # keep their constructors' init (A kaiming, B zero: a fresh PLoRA is a no-op; the ViT's position
        # embeddings POS_EMB_STD)
        if isinstance(m, (PLoRA, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    # ---------------------------------------------------------------------------------------- vision
    def tokens_per_image(self, rows: int, cols: int) -> int:
        G = self.G
        return (rows * cols + 1) * G * G + 1 + (rows + 1) * G

    def _merge(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P*P, W] -> [N, G, G, 4W], channel order (r0,c0),(r0,c1),(r1,c0),(r1,c1)."""
        n, _, w = feats.shape
        G = self.G
        x = feats.reshape(n, G, 2, G, 2, w).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, G, G, 4 * w)

    def vision_forward(self, image: torch.Tensor) -> torch.Tensor:
        """One HD tensor [1, 3, rows*S, cols*S] -> image token block [T_img, D] (IXC CLIPVisionTower layout)."""
        return self._vision_batch(image)[0]

    def vision_forward_many(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        """Same as vision_forward per image, with same-shape images run through the ViT together (training)."""
        return _by_shape(images, self._vision_batch)

    def vision_features_many(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        """vision_features per image ([1 + rows*cols, G, G, C] each), same-shape images batched."""
        return _by_shape(images, self.vision_features)

    def _vision_batch(self, image: torch.Tensor) -> torch.Tensor:
        """[n, 3, rows*S, cols*S] (all the same grid) -> [n, T_img, D]."""
        S = self.args.vision.tile_size
        return self.vision_assemble(self.vision_features(image), image.shape[2] // S, image.shape[3] // S)

    def vision_features(self, image: torch.Tensor) -> torch.Tensor:
        """The ViT's part of _vision_batch: [n, 3, rows*S, cols*S] -> merged features [n, 1 + rows*cols, G, G, C]
        (global view first). What a frozen tower's cache keeps (model_io.FrozenVisionFeatures)."""
        S, G = self.args.vision.tile_size, self.G
        n = image.shape[0]
        rows = image.shape[2] // S
        cols = image.shape[3] // S
        glb = F.interpolate(image, size=(S, S), mode="bicubic", align_corners=False)  # global view
        tiles = image.reshape(n, 3, rows, S, cols, S).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, 3, S, S)
        crops = torch.cat([glb.unsqueeze(1), tiles], dim=1).reshape(-1, 3, S, S)  # [global, tile0, tile1, ...]
        feats = self.vit.vision_tower.vision_model(crops)[:, 1:]  # last layer, CLS dropped
        m = self._merge(feats)
        return m.reshape(n, -1, G, G, m.shape[-1])

    def vision_assemble(self, m: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """The rest of _vision_batch: merged features [n, 1 + rows*cols, G, G, C] -> the separators (plora_*_GN)
        in the IXC layout and the projector -> [n, T_img, D]."""
        G = self.G
        n, C = m.shape[0], m.shape[-1]
        g = torch.cat([m[:, 0], self.plora_sub_GN.expand(n, G, 1, C)], dim=2).reshape(n, -1, C)
        t = m[:, 1:].reshape(n, rows, cols, G, G, C).permute(0, 1, 3, 2, 4, 5).reshape(n, rows * G, cols * G, C)
        t = torch.cat([t, self.plora_sub_GN.expand(n, t.shape[1], 1, C)], dim=2).reshape(n, -1, C)
        seq = torch.cat([g, self.plora_glb_GN.expand(n, 1, C), t], dim=1)
        return self.vision_proj(seq)

    # ---------------------------------------------------------------------------------------- reward
    def forward(self, input_ids, image_embeds, image_positions, im_mask, attention_mask, readout_index,
                position_ids: Optional[torch.Tensor] = None, allowed: Optional[torch.Tensor] = None):
        """The reward.onnx signature. Returns score [B].

        Optional (the eager reference of the packed layout, never exported): explicit `position_ids` [B, T],
        a 2-D mask `allowed` [B, T(q), T(k)] and several readouts per row (`readout_index` [B, R] -> [B, R])."""
        if position_ids is not None or allowed is not None or readout_index.dim() == 2:
            if self.args.readout != "last":
                raise ValueError("several readouts per row need readout = last")
            h = self.hidden_states(input_ids, image_embeds, image_positions, im_mask, attention_mask, position_ids, allowed)
            idx = readout_index.view(h.shape[0], -1, 1).expand(-1, -1, h.shape[-1])
            return self.v_head(torch.gather(h, 1, idx)).squeeze(-1).view(readout_index.shape)
        h = self.hidden_states(input_ids, image_embeds, image_positions, im_mask, attention_mask)
        if self.args.readout == "mean":
            am = attention_mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * am).sum(1) / am.sum(1).clamp(min=1.0)
        else:
            idx = readout_index.view(-1, 1, 1).expand(h.shape[0], 1, h.shape[-1])
            pooled = torch.gather(h, 1, idx).squeeze(1)
        return self.v_head(pooled).squeeze(-1)

    def _embed(self, input_ids, image_embeds, image_positions, im_mask):
        m = im_mask.to(image_embeds.dtype).unsqueeze(-1)
        return self.model.tok_embeddings(input_ids) * (1.0 - m) + F.embedding(image_positions, image_embeds) * m

    def hidden_states(self, input_ids, image_embeds, image_positions, im_mask, attention_mask,
                      position_ids: Optional[torch.Tensor] = None, allowed: Optional[torch.Tensor] = None):
        """Final-norm hidden states [B, T, D]. Defaults: position ids = arange(T), causal + padding mask.

        Training passes explicit `position_ids` [B, T] and `allowed` [B, T(q), T(k)] to score a chosen and a
        rejected reply in one packed row that shares the prompt (same math as two separate rows)."""
        b, t = input_ids.shape
        h = self._embed(input_ids, image_embeds, image_positions, im_mask)
        if position_ids is None:
            pos = torch.arange(t, device=input_ids.device, dtype=torch.float32)
            freqs = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0)
            emb = torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        else:
            freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq
            emb = torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
        cos, sin = cos.to(h.dtype), sin.to(h.dtype)  # as the published rotary cache (no-op in fp32)
        if allowed is None and fused_attention.exporting("gqa"):
            bias = fused_attention.lengths(attention_mask)  # causal + right padding inside the operator
        elif allowed is None:
            causal = torch.ones(t, t, device=input_ids.device, dtype=torch.bool).tril()
            allowed = causal.unsqueeze(0) & (attention_mask > 0).unsqueeze(1)  # [b, t(q), t(k)]
        if allowed is not None:
            bias = torch.zeros(b, 1, t, t, device=h.device, dtype=h.dtype).masked_fill(~allowed.unsqueeze(1), torch.finfo(h.dtype).min)
        plora_mask = im_mask.to(h.dtype)
        for layer in self.model.layers:
            h = layer(h, plora_mask, cos, sin, bias)
        return self.model.norm(h)

    def forward_packed(self, input_ids, image_embeds, image_positions, im_mask, attention_mask, branch_start,
                       branch_mask, readout_index):
        """The reward_packed.onnx signature (graph version 2). Per-position inputs are [B, T], T = P + NB·L (trunk,
        then the branches one after the other); attention_mask [B, P] (trunk), branch_start [B, NB] (trunk
        positions the branch sees, also its first position id), branch_mask [B, NB, L] (1 on real branch
        positions, right-padded), readout_index [B, R] (positions in T). Returns score [B, R]."""
        if self.args.readout != "last":
            raise ValueError("the packed graph needs readout = last")
        b = input_ids.shape[0]
        P = attention_mask.shape[1]
        L = branch_mask.shape[2]
        h = self._embed(input_ids, image_embeds, image_positions, im_mask)
        dev = input_ids.device
        pos_t = torch.arange(P, device=dev).unsqueeze(0).expand(b, P)
        pos_b = (branch_start.unsqueeze(-1) + torch.arange(L, device=dev)).reshape(b, -1)
        freqs = torch.cat([pos_t, pos_b], dim=1).to(torch.float32).unsqueeze(-1) * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().unsqueeze(1).to(h.dtype), emb.sin().unsqueeze(1).to(h.dtype)
        neg = torch.finfo(h.dtype).min
        causal_p = torch.ones(P, P, device=dev, dtype=torch.bool).tril()
        trunk_ok = causal_p.unsqueeze(0) & (attention_mask > 0).unsqueeze(1)  # [b, P, P]
        to_trunk_ok = torch.arange(P, device=dev).view(1, 1, P) < branch_start.unsqueeze(-1)  # [b, NB, P]
        causal_l = torch.ones(L, L, device=dev, dtype=torch.bool).tril()
        ar_l = torch.arange(L, device=dev)
        eye_l = ar_l.unsqueeze(0) == ar_l.unsqueeze(1)  # (EyeLike has no bool kernel in ONNX Runtime)
        # a padded branch position still sees itself: no all-masked softmax row
        to_self_ok = causal_l & ((branch_mask > 0).unsqueeze(2) | eye_l)  # [b, NB, L, L]
        def bias(ok):
            return torch.zeros(ok.shape, dtype=h.dtype, device=dev).masked_fill(~ok, neg)

        br = Branches(bias(trunk_ok).unsqueeze(1), bias(to_trunk_ok).unsqueeze(2).unsqueeze(1), bias(to_self_ok).unsqueeze(1))
        plora_mask = im_mask.to(h.dtype)
        for layer in self.model.layers:
            h = layer(h, plora_mask, cos, sin, br)
        h = self.model.norm(h)
        idx = readout_index.unsqueeze(-1).expand(-1, -1, h.shape[-1])
        return self.v_head(torch.gather(h, 1, idx)).squeeze(-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def packed_dense(attention_mask: torch.Tensor, branch_start: torch.Tensor, branch_mask: torch.Tensor):
    """The packed layout as explicit position ids [B, T] and 2-D mask `allowed` [B, T, T] for `forward`: the eager
    reference the packed graph is checked against (a padded branch position sees only itself)."""
    b, P = attention_mask.shape
    nb, L = branch_mask.shape[1], branch_mask.shape[2]
    T = P + nb * L
    pos = torch.zeros(b, T, dtype=torch.long)
    allowed = torch.zeros(b, T, T, dtype=torch.bool)
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    for i in range(b):
        pos[i, :P] = torch.arange(P)
        allowed[i, :P, :P] = causal & (attention_mask[i] > 0).unsqueeze(0)
        for j in range(nb):
            s = P + j * L
            start = int(branch_start[i, j])
            pos[i, s:s + L] = start + torch.arange(L)
            real = branch_mask[i, j] > 0
            allowed[i, s:s + L, :start] = real.unsqueeze(1)
            allowed[i, s:s + L, s:s + L] = torch.ones(L, L, dtype=torch.bool).tril() & real.unsqueeze(0) & real.unsqueeze(1)
            allowed[i, s:s + L, s:s + L] |= torch.eye(L, dtype=torch.bool)
    return pos, allowed
