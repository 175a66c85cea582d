"""Tokens/s of a reward graph (reward.onnx) on several ONNX Runtime execution providers, through ort_capi (the
libonnxruntime.so.1 of onnxruntime-node, whose WebGPU EP the Python wheels lack).

For each model, provider and batch x tokens shape: synthetic full-length rows (no padding; every position is a
token the graph computes), warm-up runs, then timed runs until --runs or --max-seconds; median ms, tokens/s =
B*T / median, and the largest |score - CPU EP score| on the same feeds. Input tensors live in CPU memory, as in
the service, so a GPU EP's times include the upload of the feeds and the copy of the scores back.

    /usr/bin/python3 bench/gpu/tokens.py                                  # default model, cpu + webgpu
    /usr/bin/python3 bench/gpu/tokens.py --quick                          # tiny shapes, CPU EP: the test
    python3 bench/gpu/tokens.py --model /tmp/fw/reward.onnx --shapes-for cpu=1x256,8x512

Prints one JSON document on stdout (also --out FILE); progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_capi import REPO, OrtError, Runtime  # noqa: E402

DEFAULT_MODEL = os.path.join(REPO, "models", "ixc-reward-tiny", "1")
SHAPES = "1x256,8x512,32x512"


def parse_shapes(s: str) -> List[Tuple[int, int]]:
    out = []
    for part in s.split(","):
        b, t = part.lower().split("x")
        out.append((int(b), int(t)))
    return out


def resolve(model: str) -> Tuple[str, Dict]:
    """A model version folder (model.json names the reward graph) or a .onnx file (a model.json beside it is read
    when present) -> (graph path, manifest or {})."""
    if os.path.isdir(model):
        man = json.load(open(os.path.join(model, "model.json")))
        return os.path.join(model, man["graphs"]["reward"]["file"]), man
    side = os.path.join(os.path.dirname(model), "model.json")
    return model, (json.load(open(side)) if os.path.exists(side) else {})


def graph_bytes(path: str) -> int:
    """The graph and its external data file(s)."""
    d, base = os.path.dirname(path), os.path.basename(path)
    return os.path.getsize(path) + sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                                       if f.startswith(base) and f.endswith(".data"))


def feeds_for(inputs: List[Dict], b: int, t: int, vocab: int, image_tokens: int, seed: int) -> Dict[str, np.ndarray]:
    """Synthetic reward.onnx feeds: random ids, full attention, the score read at the last position; image_tokens
    positions per row (after the first) take rows of a random image_embeds table (0: one zero row, text only)."""
    rng = np.random.default_rng(seed)
    meta = {i["name"]: i for i in inputs}
    d = meta["image_embeds"]["shape"][-1]
    if d <= 0:
        raise ValueError("image_embeds has no static width")
    fdt = np.dtype(meta["image_embeds"]["dtype"])
    ids = rng.integers(3, max(4, min(vocab, 1000)), size=(b, t), dtype=np.int64)
    pos = np.zeros((b, t), np.int64)
    im = np.zeros((b, t), fdt)
    k = min(image_tokens, max(0, t - 2))
    if k:
        emb = rng.standard_normal((b * k, d)).astype(fdt)
        for r in range(b):
            pos[r, 1:1 + k] = np.arange(r * k, (r + 1) * k)
            im[r, 1:1 + k] = 1
    else:
        emb = np.zeros((1, d), fdt)
    f = {"input_ids": ids, "image_embeds": emb, "image_positions": pos, "im_mask": im,
         "attention_mask": np.ones((b, t), np.int64), "readout_index": np.full((b,), t - 1, np.int64)}
    return {n: f[n].astype(np.dtype(meta[n]["dtype"])) for n in meta}


def time_runs(sess, feeds, warmup: int, runs: int, max_seconds: float):
    for _ in range(warmup):
        sess.run(feeds)
    times: List[float] = []
    out = None
    t_end = time.perf_counter() + max_seconds
    while len(times) < runs and (not times or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        out = sess.run(feeds)
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv: Optional[List[str]] = None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help=f"model folder or reward .onnx (repeatable; default {DEFAULT_MODEL})")
    ap.add_argument("--label", action="append", help="name per --model in the output (default: the path)")
    ap.add_argument("--providers", default="cpu,webgpu", help="comma list: cpu, webgpu or any EP name ORT appends by name")
    ap.add_argument("--shapes", default=SHAPES, help="BxT list; T is capped at the manifest's max_seq_len")
    ap.add_argument("--shapes-for", action="append", default=[], help="PROVIDER=BxT,... overrides --shapes for one provider")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=30.0, help="stop timing a shape after this long (>= 1 run)")
    ap.add_argument("--threads", type=int, default=0, help="CPU EP intra-op threads (0: ORT's default, one per core)")
    ap.add_argument("--opt", default="all", choices=["disable", "basic", "extended", "all"])
    ap.add_argument("--image-tokens", type=int, default=0, help="image positions per row (PLoRA is computed for all)")
    ap.add_argument("--vocab", type=int, default=0, help="token id range (default: the manifest's, else 1000)")
    ap.add_argument("--no-cap", action="store_true", help="ignore the manifest's max_seq_len")
    ap.add_argument("--ep-option", action="append", default=[], help="PROVIDER:KEY=VALUE passed when appending the EP")
    ap.add_argument("--no-placement", action="store_true", help="skip the verbose node-placement log")
    ap.add_argument("--lib", default=None, help="libonnxruntime.so.1 (default: $ORT_CAPI_LIB or node_modules)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, CPU EP, few runs (the test's mode)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.shapes, a.warmup, a.runs, a.max_seconds = "1x16,2x32", 1, 3, 5.0
        if a.providers == "cpu,webgpu":
            a.providers = "cpu"
    providers = [p.strip() for p in a.providers.split(",") if p.strip()]
    providers.sort(key=lambda p: p.lower() != "cpu")  # CPU first: the reference scores
    per = {k.lower(): parse_shapes(v) for k, v in (s.split("=", 1) for s in a.shapes_for)}
    ep_opts: Dict[str, Dict[str, str]] = {}
    for s in a.ep_option:
        p, kv = s.split(":", 1)
        k, v = kv.split("=", 1)
        ep_opts.setdefault(p.lower(), {})[k] = v
    rt = Runtime(a.lib)
    report: Dict = {"tool": "bench/gpu/tokens.py", "ort": {"lib": rt.lib_path, "version": rt.version,
                                                           "providers_built_in": rt.available_providers()},
                    "host": {"cpus": os.cpu_count()},
                    "settings": {k: v for k, v in vars(a).items() if k not in ("model", "label")}, "models": []}
    models = a.model or [DEFAULT_MODEL]
    for mi, model in enumerate(models):
        path, man = resolve(model)
        cfg = man.get("config", {})
        cap = None if a.no_cap else man.get("max_seq_len")
        vocab = a.vocab or cfg.get("vocab_size", 1000)
        entry: Dict = {"model": model, "label": (a.label[mi] if a.label and mi < len(a.label) else model),
                       "graph": path, "graph_bytes": graph_bytes(path), "config": cfg, "max_seq_len": cap,
                       "sessions": [], "results": []}
        ref: Dict[Tuple[int, int], np.ndarray] = {}
        for prov in providers:
            shapes = per.get(prov.lower(), parse_shapes(a.shapes))
            shapes = [(b, min(t, cap) if cap else t) for b, t in shapes]
            name = "CPU" if prov.lower() == "cpu" else ("WebGPU" if prov.lower() == "webgpu" else prov)
            t0 = time.perf_counter()
            try:
                sess = rt.session(path, provider=name, provider_options=ep_opts.get(prov.lower()),
                                  intra_op_threads=a.threads, opt_level=a.opt, log_placement=not a.no_placement)
            except (OrtError, OSError) as e:
                entry["sessions"].append({"provider": name, "error": str(e)[-1500:]})
                print(f"[tokens] {entry['label']} {name}: session failed: {str(e)[-300:]}", file=sys.stderr)
                continue
            ses = {"provider": name, "create_seconds": round(time.perf_counter() - t0, 2), "placement": sess.placement,
                   "ort_warnings": sess.warnings}
            entry["sessions"].append(ses)
            print(f"[tokens] {entry['label']} {name}: session {ses['create_seconds']} s, placement "
                  f"{ {k: v['nodes'] for k, v in sess.placement.items()} }", file=sys.stderr)
            for b, t in shapes:
                row: Dict = {"provider": name, "batch": b, "tokens": t}
                try:
                    feeds = feeds_for(sess.inputs, b, t, vocab, a.image_tokens, seed=1000 * b + t)
                    times, out = time_runs(sess, feeds, a.warmup, a.runs, a.max_seconds)
                    score = np.asarray(out["score"], np.float32)
                    med = statistics.median(times)
                    row.update({"runs": len(times), "median_ms": round(med * 1e3, 3), "min_ms": round(min(times) * 1e3, 3),
                                "tokens_per_s": round(b * t / med, 1), "finite": bool(np.isfinite(score).all())})
                    if name == "CPU":
                        ref[(b, t)] = score
                        row["max_abs_diff_vs_cpu"] = 0.0
                    elif (b, t) in ref:
                        row["max_abs_diff_vs_cpu"] = float(np.abs(score - ref[(b, t)]).max())
                    else:
                        row["max_abs_diff_vs_cpu"] = None
                    row["score_head"] = [round(float(x), 6) for x in score[:4]]
                except (OrtError, ValueError, MemoryError) as e:
                    row["error"] = str(e)[-1500:]
                entry["results"].append(row)
                print(f"[tokens] {entry['label']} {name} {b}x{t}: " + (
                    f"{row['median_ms']} ms, {row['tokens_per_s']} tok/s, |d| {row['max_abs_diff_vs_cpu']}"
                    if "error" not in row else f"error {row['error'][-300:]}"), file=sys.stderr)
            sess.close()
        report["models"].append(entry)
    text = json.dumps(report, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
