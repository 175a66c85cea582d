"""Full-width import check (npm run check:full-width): a synthetic checkpoint in the published layout at the real
widths (decoder 4096 / 32 heads / 8 KV / SwiGLU 14336 / vocab 92544, CLIP ViT-L/14-560 width, documented PLoRA
r=256) with few layers -> import-hf (subprocess under /usr/bin/time -v) -> model dir with parity. Prints time, peak
RSS (also as a multiple of the checkpoint size) and the parity report as JSON.

    /usr/bin/python3 trainer/tests/check_full_width.py [--layers 2] [--vit-layers 2] [--fmt bin] [--in-memory] [--keep DIR]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINER = os.path.dirname(HERE)
sys.path.insert(0, TRAINER)
sys.path.insert(0, HERE)

import hf_synthetic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vit-layers", type=int, default=2)
    ap.add_argument("--fmt", choices=["bin", "safetensors"], default="bin")
    ap.add_argument("--attention", choices=["fused", "eager"], default="fused")
    ap.add_argument("--in-memory", action="store_true", help="import-hf --in-memory (the float32 model in RAM)")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temp dir, removed)")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="full-width-")
    os.makedirs(work, exist_ok=True)
    try:
        cfg = hf_synthetic.config(hidden=4096, layers=a.layers, heads=32, kv_heads=8, inter=14336, vocab=92544,
                                  vit_layers=a.vit_layers, full_vision=True, full_plora=True)
        ckpt = os.path.join(work, "ckpt")
        t0 = time.time()
        hf_synthetic.write(ckpt, cfg, fmt=a.fmt)
        t_write = time.time() - t0
        out = os.path.join(work, "models", "ixc-full-width", "1")
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "reward_trainer", "import-hf", "--checkpoint", ckpt,
               "--out", out, "--attention", a.attention] + (["--in-memory"] if a.in_memory else [])
        t0 = time.time()
        p = subprocess.run(cmd, cwd=TRAINER, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wall = time.time() - t0
        err = p.stderr.decode(errors="replace")
        if p.returncode != 0:
            print(err[-4000:], file=sys.stderr)
            raise SystemExit(f"import-hf failed (rc {p.returncode})")
        rep = json.loads(p.stdout.decode().strip().splitlines()[-1])
        rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
        ck = rep["checkpoint_bytes"]
        files = json.load(open(os.path.join(out, "model.json")))["files"]
        print(json.dumps({
            "config": {"hidden": 4096, "layers": a.layers, "vit_layers": a.vit_layers, "vocab": 92544,
                       "format": a.fmt, "attention": a.attention, "in_memory": a.in_memory},
            "num_params": rep["num_params"], "checkpoint_bytes": ck, "write_seconds": round(t_write, 1),
            "import_wall_seconds": round(wall, 1), "load_seconds": rep["seconds_load"],
            "peak_rss_bytes": rss_kib * 1024, "peak_rss_x_checkpoint": round(rss_kib * 1024 / ck, 2),
            "peak_rss_after_load_x_checkpoint": rep["peak_rss_load_x_checkpoint"],
            # time -v: the largest process of the tree (ONNX Runtime's parity runner is a child); the importer alone:
            # its own high-water mark (mapped weight pages included) and its anonymous memory (sampled)
            "importer_peak_rss_bytes": rep["peak_rss"],
            "peak_anon_rss_bytes": rep["peak_anon_rss"], "peak_anon_rss_x_checkpoint": rep["peak_anon_rss_x_checkpoint"],
            "parity": rep["parity"], "files": {k: v["bytes"] for k, v in files.items()}}, indent=2))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
