"""Export a reduced-depth, full-width reward model (random weights) to ONNX for tokens.py: the trainer's export
path for large graphs (reward_trainer.onnx_large.export_graphs: external data past 2 GB, eager opset-17 or fused
com.microsoft attention), without import-hf's checkpoint round trip and golden parity cases, which would take
most of the GPU machine's minutes. The vision tower is built small: tokens.py runs only reward.onnx.

Writes DIR/reward.onnx (+ reward.onnx.data), DIR/vision.onnx and a minimal DIR/model.json (config, graphs.reward)
that tokens.py reads; prints a JSON summary.

    python3 bench/gpu/export_full_width.py --out /tmp/fw --layers 2 [--attention eager|fused]
    /usr/bin/python3 bench/gpu/export_full_width.py --out /tmp/fw --divisor 16 --threshold 1000000   # CPU test
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import torch_tokens  # noqa: E402  (puts trainer/ on sys.path)
from reward_trainer import onnx_large  # noqa: E402


_EXPORT = torch.onnx.export


def use_exporter(dynamo: bool) -> bool:
    """The trainer's export passes dynamic_axes, custom_opsets and autograd.Function symbolics: TorchScript-exporter
    arguments. torch >= 2.9 defaults torch.onnx.export to the dynamo exporter, which reads none of them; pin the
    one asked for wherever the argument exists (torch 1.13, the trainer's CPU torch, has no such argument).
    Returns whether the choice could be made."""
    if "dynamo" not in inspect.signature(_EXPORT).parameters:
        return not dynamo
    torch.onnx.export = functools.partial(_EXPORT, dynamo=dynamo)
    return True


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--attention", choices=["eager", "fused"], default="eager")
    ap.add_argument("--vocab", type=int, default=0, help="override the vocabulary (default: the published 92544)")
    ap.add_argument("--divisor", type=int, default=1, help="shrink every width (CPU tests)")
    ap.add_argument("--threshold", type=int, default=None, help="external-data threshold in bytes (default 2 GB)")
    ap.add_argument("--no-stream", action="store_true", help="trace with the weights inside (default: trace without "
                    "them, then copy them in: import-hf's low-memory path, 2.4x faster here at 220 M parameters)")
    ap.add_argument("--build-device", default="auto", help="where the random weights are drawn (auto: cuda when "
                    "available; the export itself runs on the CPU)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    args = torch_tokens.full_args(a.layers, a.divisor)
    if a.vocab:
        args.vocab_size = a.vocab
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    dev = torch.device("cuda" if a.build_device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.build_device == "auto" else a.build_device))
    # drawing ~1e9 random weights on a CPU takes tens of seconds; on the GPU, under a second plus the copy back
    model = torch_tokens.build(args, dev).cpu().eval()
    # PLoRA's B starts at zero (a fresh adapter is a no-op); random B makes the adapter's arithmetic visible in
    # the scores that tokens.py compares across EPs
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("Plora_B.weight"):
                p.normal_(0, 0.02)
    t_build = time.time() - t0
    opts = onnx_large.GraphOptions(attention=a.attention, dtype="float32", external_threshold=a.threshold,
                                   stream=not a.no_stream)
    t0 = time.time()
    exporter = "torchscript"
    use_exporter(dynamo=False)
    try:
        info = onnx_large.export_graphs(model, a.out, opts)
    except Exception as e:
        # a torch without the TorchScript exporter: the dynamo one can still trace the eager graph (dynamic_axes
        # are converted); the fused path's symbolics need TorchScript, so it fails again, loudly
        if not use_exporter(dynamo=True):
            raise
        exporter = f"dynamo (torchscript failed: {str(e)[-300:]})"
        print(f"[export] {exporter}", file=sys.stderr)
        info = onnx_large.export_graphs(model, a.out, opts)
    t_export = time.time() - t0
    cfg = {k: v for k, v in args.to_dict().items()}
    cfg["num_params"] = sum(p.numel() for p in model.parameters())
    man = {"name": "full-width-bench", "config": cfg, "max_seq_len": None,
           "graphs": {"reward": {"file": "reward.onnx", "attention": info["reward"]["attention"],
                                 "external_data": info["reward"]["external_data"]}},
           "note": "bench/gpu/export_full_width.py: random weights, reduced depth; not a servable model version"}
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(man, f, indent=1)
    files = {n: os.path.getsize(os.path.join(a.out, n)) for n in sorted(os.listdir(a.out))}
    rep = {"tool": "bench/gpu/export_full_width.py", "torch": torch.__version__, "layers": a.layers,
           "attention": a.attention, "exporter": exporter, "stream": not a.no_stream,
           "build_device": str(dev), "hidden": args.hidden_size, "vocab": args.vocab_size,
           "num_params": cfg["num_params"], "build_seconds": round(t_build, 1), "export_seconds": round(t_export, 1),
           "files": files}
    print(json.dumps(rep))
    return rep


if __name__ == "__main__":
    main()
