"""Test-only writer of a synthetic IXC-2.5-Reward checkpoint in the published Hugging Face layout.

Same file names (pytorch_model-0000N-of-0000M.bin + pytorch_model.bin.index.json, or the safetensors mirror's
model-0000N-of-0000M.safetensors + model.safetensors.index.json), bf16 tensors, the published parameter names
and shapes (enumerated here from ixc25-reward.md §1.2 and the issue, independently of model.py), random weights.
config.json sets the sizes; reduced-width checkpoints also set vision_config / plora_rank / plora_alpha.
Tensors are generated one at a time and written shard by shard, so a full-width checkpoint never sits in memory.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from reward_trainer import safetensors as st

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared", "fixtures", "tokenizers",
                         "internlm2", "tokenizer.model")


def config(hidden=64, layers=2, heads=4, kv_heads=2, inter=96, vocab=92544, vit_width=48, vit_layers=1, vit_heads=2,
           image_size=56, plora_rank=8, plora_alpha=8, full_vision=False, full_plora=False) -> Dict:
    c = {"architectures": ["InternLMXComposer2ForRewardModel"], "model_type": "internlm2",
         "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
         "num_key_value_heads": kv_heads, "intermediate_size": inter, "vocab_size": vocab,
         "max_position_embeddings": 24576, "rope_theta": 1000000, "rope_scaling": {"type": "dynamic", "factor": 2.0},
         "rms_norm_eps": 1e-05, "bias": False, "hidden_act": "silu", "max_length": 16384,
         "attn_implementation": "flash_attention_2", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
         "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    if not full_vision:  # the real config has none of these: the importer then uses the documented ViT-L/14-560
        c["vision_config"] = {"hidden_size": vit_width, "num_hidden_layers": vit_layers,
                              "num_attention_heads": vit_heads, "patch_size": 14, "image_size": image_size,
                              "intermediate_size": 4 * vit_width, "layer_norm_eps": 1e-5}
    else:
        c["vision_config"] = {"num_hidden_layers": vit_layers}  # full ViT-L width, fewer layers
    if not full_plora:
        c["plora_rank"], c["plora_alpha"] = plora_rank, plora_alpha
    return c


def published_shapes(c: Dict, buffers: bool = True) -> List[Tuple[str, List[int]]]:
    D, L, H, KV, F, V = (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                         c["num_key_value_heads"], c["intermediate_size"], c["vocab_size"])
    r = c.get("plora_rank", 256)
    vc = {"hidden_size": 1024, "num_hidden_layers": 24, "patch_size": 14, "image_size": 560,
          "intermediate_size": 4096, **c.get("vision_config", {})}
    W, P = vc["hidden_size"], (vc["image_size"] // vc["patch_size"]) ** 2 + 1
    hd = D // H
    out: List[Tuple[str, List[int]]] = [("model.tok_embeddings.weight", [V, D])]

    def plora(prefix, din, dout):
        out.extend([(f"{prefix}.weight", [dout, din]), (f"{prefix}.Plora_A.weight", [r, din]),
                    (f"{prefix}.Plora_B.weight", [dout, r])])

    for i in range(L):
        p = f"model.layers.{i}"
        plora(f"{p}.attention.wqkv", D, (H + 2 * KV) * hd)
        plora(f"{p}.attention.wo", D, D)
        plora(f"{p}.feed_forward.w1", D, F)
        plora(f"{p}.feed_forward.w3", D, F)
        plora(f"{p}.feed_forward.w2", F, D)
        out += [(f"{p}.attention_norm.weight", [D]), (f"{p}.ffn_norm.weight", [D])]
        if buffers:
            out.append((f"{p}.attention.rotary_emb.inv_freq", [hd // 2]))
    out.append(("model.norm.weight", [D]))
    vp = "vit.vision_tower.vision_model"
    out += [(f"{vp}.embeddings.class_embedding", [W]),
            (f"{vp}.embeddings.patch_embedding.weight", [W, 3, vc["patch_size"], vc["patch_size"]]),
            (f"{vp}.embeddings.position_embedding.weight", [P, W]),
            (f"{vp}.pre_layrnorm.weight", [W]), (f"{vp}.pre_layrnorm.bias", [W])]
    if buffers:
        out.append((f"{vp}.embeddings.position_ids", [1, P]))
    for i in range(vc["num_hidden_layers"]):
        q = f"{vp}.encoder.layers.{i}"
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [(f"{q}.self_attn.{n}.weight", [W, W]), (f"{q}.self_attn.{n}.bias", [W])]
        out += [(f"{q}.layer_norm1.weight", [W]), (f"{q}.layer_norm1.bias", [W]),
                (f"{q}.mlp.fc1.weight", [vc["intermediate_size"], W]), (f"{q}.mlp.fc1.bias", [vc["intermediate_size"]]),
                (f"{q}.mlp.fc2.weight", [W, vc["intermediate_size"]]), (f"{q}.mlp.fc2.bias", [W]),
                (f"{q}.layer_norm2.weight", [W]), (f"{q}.layer_norm2.bias", [W])]
    out += [(f"{vp}.post_layernorm.weight", [W]), (f"{vp}.post_layernorm.bias", [W]),
            ("vision_proj.0.weight", [D, 4 * W]), ("vision_proj.0.bias", [D]),
            ("vision_proj.2.weight", [D, D]), ("vision_proj.2.bias", [D]),
            ("plora_glb_GN", [1, 1, 4 * W]), ("plora_sub_GN", [1, 1, 1, 4 * W]), ("score.weight", [1, D])]
    return out


def _tensor(name: str, shape: List[int], gen: torch.Generator) -> torch.Tensor:
    if name.endswith("position_ids"):
        return torch.arange(shape[-1]).view(shape)
    if name.endswith("inv_freq"):
        return torch.rand(shape, generator=gen)
    if "norm" in name and name.endswith("weight"):  # RMSNorm / LayerNorm gains around 1
        return (1 + 0.1 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
    fan_in = shape[-1] if len(shape) > 1 else 1
    std = 0.02 if len(shape) < 2 or "tok_embeddings" in name or "position_embedding" in name else fan_in ** -0.5
    return (std * torch.randn(shape, generator=gen)).to(torch.bfloat16)


def write(out: str, cfg: Dict, fmt: str = "bin", shards: int = 3, seed: int = 0, buffers: bool = True,
          single: bool = False, tokenizer: str = TOKENIZER,
          mutate: Optional[Dict[str, Tuple[str, List[int]]]] = None) -> Dict[str, str]:
    """Write the checkpoint into `out`; returns its weight_map. `mutate` maps a published name to a
    (new name, new shape) pair, to build broken checkpoints for the refusal tests."""
    os.makedirs(out, exist_ok=True)
    shards = 1 if single else shards
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(tokenizer, os.path.join(out, "tokenizer.model"))
    names = published_shapes(cfg, buffers)
    if mutate:
        names = [mutate.get(n, (n, s)) for n, s in names]
    nbytes = [2 * _numel(s) for _, s in names]
    per = sum(nbytes) / shards
    groups: List[List[int]] = [[]]
    acc = 0.0
    for i, b in enumerate(nbytes):
        if acc >= per * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(i)
        acc += b
    while len(groups) < shards:
        groups.append([])
    ext = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    gen = torch.Generator().manual_seed(seed)
    weight_map: Dict[str, str] = {}
    for k, idx in enumerate(groups):
        fn = f"{stem}.{ext}" if single else f"{stem}-{k + 1:05d}-of-{shards:05d}.{ext}"
        tensors = [(names[i][0], _tensor(names[i][0], names[i][1], gen)) for i in idx]
        path = os.path.join(out, fn)
        if fmt == "safetensors":
            st.write(path, tensors, {"format": "pt"})
        else:
            torch.save(dict(tensors), path)
        weight_map.update({n: fn for n, _ in tensors})
        del tensors
    if not single:
        with open(os.path.join(out, f"{stem}.{ext}.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(nbytes)}, "weight_map": weight_map}, f, indent=2)
    return weight_map


def _numel(shape: List[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def iter_names(cfg: Dict) -> Iterator[str]:
    for n, _ in published_shapes(cfg):
        yield n
