"""PyTorch tokens/s of the reward model's forward (trainer/reward_trainer/model.py) on one device, for the same
architectures and batch x tokens shapes as tokens.py: the figure a CUDA deployment would be compared against.

Weights are random (tokens/s does not depend on their values). Two architectures:
- `default`: the default model's config (models/ixc-reward-tiny/1/model.json `config`);
- `full`: the published widths (decoder 4096, 32 heads, 8 KV heads, SwiGLU 14336, vocab 92544, PLoRA r 256 as
  import-hf builds it) at a reduced depth (--full-layers, e.g. 2,4): tokens/s is reported per layer count,
  so the 32-layer figure is about (tokens/s at L) * L / 32 once the embedding/head cost is small.
The vision tower is built small in both (the reward forward never runs it; image_embeds is an input).

Attention: `eager` is model.py as training and export run it (fp32 softmax over a [B, H, T, T] bias);
`sdpa` swaps InternLM2Attention._attend for F.scaled_dot_product_attention with the same additive mask (what a
CUDA deployment would use; torch >= 2.0).

    python3 bench/gpu/torch_tokens.py --device cuda                       # on the GPU machine
    /usr/bin/python3 bench/gpu/torch_tokens.py --device cpu --quick       # the test: small shapes and widths
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "trainer"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reward_trainer.config import ModelArgs, VisionArgs  # noqa: E402
from reward_trainer import model as model_mod  # noqa: E402

DEFAULT_MANIFEST = os.path.join(REPO, "models", "ixc-reward-tiny", "1", "model.json")
FULL = dict(vocab_size=92544, hidden_size=4096, num_heads=32, num_kv_heads=8, intermediate_size=14336,
            rope_theta=1000000.0, rms_norm_eps=1e-5, plora_rank=256, plora_alpha=256)
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_args() -> ModelArgs:
    c = json.load(open(DEFAULT_MANIFEST))["config"]
    keys = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
            "rope_theta", "rms_norm_eps", "plora_rank", "plora_alpha")
    return ModelArgs(**{k: c[k] for k in keys}, vision=VisionArgs())


def full_args(layers: int, divisor: int = 1) -> ModelArgs:
    """The full-width config; divisor > 1 shrinks every width by that factor (--quick's CPU stand-in, same code)."""
    f = dict(FULL)
    if divisor > 1:
        for k in ("vocab_size", "hidden_size", "intermediate_size", "plora_rank", "plora_alpha"):
            f[k] = max(8, f[k] // divisor)
        f["num_heads"], f["num_kv_heads"] = max(2, f["num_heads"] // divisor), max(1, f["num_kv_heads"] // divisor)
    return ModelArgs(num_layers=layers, **f, vision=VisionArgs())


def approx_flops_per_token(a: ModelArgs, t: int) -> float:
    """2 x (decoder matmul weights incl. PLoRA) + eager attention's QK^T and AV over all T keys (4 T D per layer)."""
    hd = a.hidden_size // a.num_heads
    r, d, f = a.plora_rank, a.hidden_size, a.intermediate_size
    qkv = d * (a.num_heads + 2 * a.num_kv_heads) * hd
    lin = qkv + d * d + 3 * d * f + r * (d + (a.num_heads + 2 * a.num_kv_heads) * hd) + r * 2 * d + 3 * r * (d + f)
    return a.num_layers * (2 * lin + 4 * t * d) + 2 * d


@contextlib.contextmanager
def attention(kind: str):
    if kind == "eager":
        yield
        return
    if not hasattr(F, "scaled_dot_product_attention"):
        raise RuntimeError("sdpa needs torch >= 2.0")
    orig = model_mod.InternLM2Attention._attend

    def sdpa(self, q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))

    model_mod.InternLM2Attention._attend = sdpa
    try:
        yield
    finally:
        model_mod.InternLM2Attention._attend = orig


def build(a: ModelArgs, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if hasattr(torch, "set_default_device") and device.type != "cpu":
        with device:  # parameters created and initialised on the GPU: no CPU init of billions of weights
            m = model_mod.IXCRewardModel(a)
    else:
        m = model_mod.IXCRewardModel(a).to(device)
    return m.eval()


def inputs(a: ModelArgs, b: int, t: int, dtype, device, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, min(a.vocab_size, 1000), (b, t), generator=g)
    return (ids.to(device), torch.zeros(1, a.hidden_size, dtype=dtype, device=device),
            torch.zeros(b, t, dtype=torch.long, device=device), torch.zeros(b, t, dtype=dtype, device=device),
            torch.ones(b, t, dtype=torch.long, device=device), torch.full((b,), t - 1, dtype=torch.long, device=device))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(m, a: ModelArgs, shapes, dtype, device, warmup, runs, max_seconds) -> List[Dict]:
    rows = []
    for b, t in shapes:
        row: Dict = {"batch": b, "tokens": t}
        try:
            x = inputs(a, b, t, dtype, device, seed=1000 * b + t)
            with torch.inference_mode():
                for _ in range(warmup):
                    m(*x)
                sync(device)
                times: List[float] = []
                end = time.perf_counter() + max_seconds
                while len(times) < runs and (not times or time.perf_counter() < end):
                    t0 = time.perf_counter()
                    s = m(*x)
                    sync(device)
                    times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            fl = approx_flops_per_token(a, t) * b * t
            row.update({"runs": len(times), "median_ms": round(med * 1e3, 3), "min_ms": round(min(times) * 1e3, 3),
                        "tokens_per_s": round(b * t / med, 1), "approx_tflops": round(fl / med / 1e12, 2),
                        "finite": bool(torch.isfinite(s.float()).all()),
                        "score_head": [round(float(v), 5) for v in s.float()[:4].cpu()]})
        except RuntimeError as e:  # CUDA out of memory and the like: recorded, the sweep goes on
            row["error"] = str(e)[-800:]
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", default="default,full", help="default, full")
    ap.add_argument("--full-layers", default="2,4", help="decoder depths of the full-width config; L:DTYPES:ATTENTIONS "
                    "('+'-separated) limits one depth, e.g. 32:bf16:sdpa for the whole published depth")
    ap.add_argument("--full-divisor", type=int, default=1, help="shrink the full-width config's widths (CPU tests)")
    ap.add_argument("--dtypes", default="fp32,bf16", help="fp32 (no TF32), tf32, bf16, fp16")
    ap.add_argument("--attention", default="eager,sdpa", help="eager, sdpa")
    ap.add_argument("--shapes", default="1x256,8x512,32x512")
    ap.add_argument("--default-max-seq", type=int, default=0, help="cap T for the default config (default: its "
                    "manifest's max_seq_len, as tokens.py does)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads on CPU (0: leave)")
    ap.add_argument("--quick", action="store_true", help="small shapes, full widths / 16, one depth, few runs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.shapes, a.full_layers, a.warmup, a.runs, a.max_seconds = "1x16,2x32", "1", 1, 2, 5.0
        a.full_divisor = max(a.full_divisor, 16)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in a.shapes.split(",")]
    cap = a.default_max_seq or json.load(open(DEFAULT_MANIFEST)).get("max_seq_len", 0)
    rep: Dict = {"tool": "bench/gpu/torch_tokens.py", "torch": torch.__version__, "device": str(device),
                 "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "threads": torch.get_num_threads(), "settings": vars(a), "results": []}
    plans = []
    dtypes, atts = a.dtypes.split(","), a.attention.split(",")
    for c in a.configs.split(","):
        if c == "default":
            plans.append(("default", default_args(), [(b, min(t, cap) if cap else t) for b, t in shapes], dtypes, atts))
        elif c == "full":
            for spec in a.full_layers.split(","):
                L, *lim = spec.split(":")
                plans.append((f"full-L{L}" + (f"-div{a.full_divisor}" if a.full_divisor > 1 else ""),
                              full_args(int(L), a.full_divisor), shapes,
                              lim[0].split("+") if lim else dtypes, lim[1].split("+") if len(lim) > 1 else atts))
        else:
            raise SystemExit(f"unknown config {c}")
    for name, args, shp, plan_dtypes, plan_atts in plans:
        t0 = time.perf_counter()
        try:
            m = build(args, device)
        except RuntimeError as e:
            rep["results"].append({"config": name, "error": str(e)[-800:]})
            continue
        nparams = sum(p.numel() for p in m.parameters())
        build_s = round(time.perf_counter() - t0, 1)
        for dn in plan_dtypes:
            dt = DTYPES[dn]
            if device.type == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = dn == "tf32"
                torch.backends.cudnn.allow_tf32 = dn == "tf32"
            m = m.to(dt)
            for att in plan_atts:
                head = {"config": name, "layers": args.num_layers, "hidden": args.hidden_size,
                        "num_params": nparams, "build_seconds": build_s, "dtype": dn, "attention": att}
                try:
                    with attention(att):
                        rows = bench(m, args, shp, dt, device, a.warmup, a.runs, a.max_seconds)
                except RuntimeError as e:
                    rep["results"].append(dict(head, error=str(e)[-800:]))
                    print(f"[torch] {name} {dn} {att}: {str(e)[-200:]}", file=sys.stderr)
                    continue
                for r in rows:
                    rep["results"].append(dict(head, **r))
                    print(f"[torch] {name} {dn} {att} {r['batch']}x{r['tokens']}: " + (
                        f"{r['median_ms']} ms, {r['tokens_per_s']} tok/s, ~{r['approx_tflops']} TFLOP/s"
                        if "error" not in r else f"error {r['error'][-200:]}"), file=sys.stderr)
            m = m.float()
        del m
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = json.dumps(rep, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return rep


if __name__ == "__main__":
    main()
