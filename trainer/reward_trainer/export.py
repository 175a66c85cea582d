"""Export a checkpoint to a model version directory (models/README.md): vision.onnx, reward.onnx, tokenizer.json,
golden.json, model.json. Checks ONNX-vs-PyTorch parity (max |diff| <= 1e-4, fp32) with onnxruntime (python when
importable, else onnxruntime-node, the service's runtime) and fails loudly otherwise."""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch

from .checkpoint import EVAL_RESULT, TRAIN_RESULT, load_checkpoint, preprocess_configs, read_result
from .data import MediaCache
from .config import template_config
from .golden import golden_cases, golden_inputs, published_inputs, reward_feeds
from .manifest import REQUIRED_FILES, REWARD_INPUTS, file_digest, manifest, model_files, validate_manifest
from .graphs import export_graphs
from .onnx_runner import OnnxRunner
from .tokenizer import TextTokenizer
from .tokenizer_convert import convert, special_ids

ATOL = 1e-4
# float16 graphs (import-hf --dtype fp16) against the fp32 PyTorch model: half precision keeps 11 significant bits
# (relative step 2^-11 = 4.9e-4 per rounding); with weights, activations and every matmul output rounded, score
# errors of a few 1e-3 are expected. Gate: |diff| <= FP16_ATOL + FP16_RTOL * |score|.
FP16_ATOL, FP16_RTOL = 2e-2, 1e-2


class ParityError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------- parity
def check_parity(stage: str, cases: List[Dict], runs: List[Dict], pad_id: int, hidden_size: int,
                 atol: float = ATOL, rtol: float = 0.0) -> Dict:
    """Vision embeddings, then reward scores from the ONNX embeddings, then a padded batch of text cases, through
    ONNX Runtime; raises ParityError past ATOL, returns the report for golden.json and model.json."""
    runner = OnnxRunner()
    vision, reward = os.path.join(stage, "vision.onnx"), os.path.join(stage, "reward.onnx")
    vis = iter(runner.run([(vision, {"image": px}) for r in runs for px in r["pixels"]]))
    reward_reqs = []
    worst_embed = 0.0
    for r in runs:
        onnx_embeds = []
        for e in r["embeds"]:
            o = next(vis)["image_embeds"]
            if o.shape != e.shape:
                raise ParityError(f"vision.onnx shape {o.shape} != PyTorch {e.shape}")
            worst_embed = max(worst_embed, float(np.abs(o - e).max()))
            onnx_embeds.append(o)
        f = dict(r["feeds"])
        if onnx_embeds:
            f["image_embeds"] = np.concatenate(onnx_embeds, 0)
        reward_reqs.append((reward, f))
    text_idx = [i for i, c in enumerate(cases) if c["kind"] == "text"][:6]
    batch = reward_feeds([(cases[i]["input_ids"], []) for i in text_idx], [[] for _ in text_idx], [], pad_id, hidden_size)
    reward_reqs.append((reward, batch))
    res = runner.run(reward_reqs)
    diffs = [abs(float(o["score"][0]) - r["score"]) for o, r in zip(res[:-1], runs)]
    bdiffs = [abs(float(res[-1]["score"][j]) - runs[i]["score"]) for j, i in enumerate(text_idx)]
    bdiff = max(bdiffs)
    worst = max(diffs + [bdiff])
    # excess over the gate (<= 0 passes); with rtol = 0 this is the plain max |diff| <= atol
    gate = [d - atol - rtol * abs(r["score"]) for d, r in zip(diffs, runs)]
    gate += [d - atol - rtol * abs(runs[i]["score"]) for d, i in zip(bdiffs, text_idx)]
    report = {"max_abs_score_diff": worst, "max_abs_embed_diff": worst_embed, "batched_max_abs_diff": bdiff,
              "cases": len(cases), "runtime": "onnxruntime (python)" if runner.py else "onnxruntime-node"}
    if rtol:
        report.update({"atol": atol, "rtol": rtol, "max_rel_score_diff": max(d / max(abs(r["score"]), 1e-6) for d, r in zip(diffs, runs))})
    print(f"parity: {json.dumps(report)}", file=sys.stderr)
    if not (max(gate) <= 0) or not np.isfinite(worst):
        bad = [cases[i]["id"] for i, d in enumerate(gate[:len(diffs)]) if not d <= 0]
        raise ParityError(f"ONNX vs PyTorch score parity failed: max |diff| {worst:.3g} > {atol} + {rtol}*|score| (cases {bad})")
    return report


# ---------------------------------------------------------------------------------------------- export
def export(ckpt: Optional[str], out_dir: str, tokenizer_model: str, heldout: Optional[str], name: str = "ixc-reward-tiny",
           version: int = 1, command: Optional[str] = None, seed: int = 0, pipeline: Optional[str] = None,
           golden_set: str = "all", loaded=None, large=None) -> Dict:
    """Writes into a temp dir next to out_dir, checks parity, then moves it into place atomically.

    pipeline: the input pipeline written to model.json and used for golden.json (default: the checkpoint's
    train_config.pipeline); golden_set: all (held-out + synthetic cases, plus the published ones for `ixc`) or
    published (only published_inputs, e.g. for a test model). `loaded` = (model, state) instead of a checkpoint
    path (import-hf); `large` = onnx_large.GraphOptions (fused attention, external data)."""
    from . import onnx_large

    torch.set_num_threads(2)
    model, state = loaded if loaded is not None else load_checkpoint(ckpt)
    icfg, vcfg = preprocess_configs(state)
    pipeline = pipeline or state["train_config"].get("pipeline", "default")
    tcfg = template_config(pipeline, icfg)
    tok = TextTokenizer(tokenizer_model)
    if tok.vocab_size != model.args.vocab_size:
        raise ValueError("tokenizer does not match the checkpoint's vocab_size")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".export-", dir=parent)
    work = tempfile.mkdtemp(prefix="reward-export-")
    try:
        graphs = onnx_large.export_graphs(model, stage, large) if large else None
        if not large:
            export_graphs(model, stage)
        with open(os.path.join(stage, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(convert(tokenizer_model), f, ensure_ascii=False)
        rng = random.Random(seed)
        raw = golden_inputs(heldout, rng, work, vcfg) if golden_set == "all" else []
        if pipeline == "ixc" or golden_set == "published":
            raw += published_inputs(rng, work)
        cases, runs = golden_cases(model, tok, MediaCache(icfg, vcfg, keep=False), state["train_config"]["max_seq_len"],
                                   raw, rng, tcfg)
        half = bool(large) and large.dtype == "float16"
        atol, rtol = (FP16_ATOL, FP16_RTOL) if half else (ATOL, 0.0)
        report = check_parity(stage, cases, runs, tok.pad_id, model.args.hidden_size, atol, rtol)
        with open(os.path.join(stage, "golden.json"), "w", encoding="utf-8") as f:
            gate = {"atol_score": atol} | ({"rtol_score": rtol, "reference": "PyTorch float32"} if half else {})
            json.dump(gate | {"parity": report, "cases": cases}, f, ensure_ascii=False)
        for n, src in model_files(vcfg).items():  # the published video layout's label font
            shutil.copyfile(src, os.path.join(stage, n))
        extra = onnx_large.data_files(graphs) if graphs else []
        files = {n: file_digest(os.path.join(stage, n)) for n in (*REQUIRED_FILES, *model_files(vcfg), *extra)}
        train_result = state.get("train_result") or (read_result(ckpt, TRAIN_RESULT) if ckpt else {})
        man = manifest(name, version, model, state, special_ids(tokenizer_model), icfg, vcfg, files, train_result,
                       read_result(ckpt, EVAL_RESULT) if ckpt else {},
                       command or " ".join(["python3", "-m", "reward_trainer"] + sys.argv[1:]),
                       train_result.get("device", "cpu"), tcfg)
        man["evaluation"]["parity"] = report
        if graphs:
            onnx_large.annotate(man, graphs, large)
        with open(os.path.join(stage, "model.json"), "w", encoding="utf-8") as f:
            json.dump(man, f, indent=2, ensure_ascii=False)
            f.write("\n")
        validate_manifest(stage)
        os.chmod(stage, 0o755)  # mkdtemp makes 0700; the service may run as another user
        for n in os.listdir(stage):
            os.chmod(os.path.join(stage, n), 0o644)
        # atomic-ish swap: old dir renamed away, new one renamed in, old removed
        if os.path.exists(out_dir):
            old = out_dir + ".old-" + str(os.getpid())
            os.replace(out_dir, old)
            os.replace(stage, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out_dir)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if os.path.exists(stage):
            shutil.rmtree(stage, ignore_errors=True)
