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
from .collate import collate_packed, share_prefix
from .golden import golden_cases, golden_inputs, published_inputs, reward_feeds
from .manifest import (PACKED_FILE, REQUIRED_FILES, REWARD_INPUTS, file_digest, manifest, model_files,
                       packed_graph_entry, validate_manifest)
from .graphs import export_graphs, export_packed
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


def _prefix_family(feeds: Dict, cuts: int = 4):
    """Rows that share a prefix, cut from one golden row: its first k positions, then its last two (EOS, reward
    token), for several k past its media: a best-of-N group / a step list at token level."""
    ids = feeds["input_ids"][0].tolist()
    pos = feeds["image_positions"][0].tolist()
    im = feeds["im_mask"][0].tolist()
    n = len(ids)
    lo = max([i + 1 for i, v in enumerate(im) if v > 0] + [1])
    ks = sorted({max(lo, n - 2 - d) for d in (0, 3, 7, 12, 20)[:cuts + 1]})
    return [(ids[:k] + ids[-2:], pos[:k] + [0, 0], im[:k] + [0.0, 0.0]) for k in ks]


def check_packed_parity(stage: str, model, runs: List[Dict], pad_id: int) -> Dict:
    """reward_packed.onnx on shared-prefix families (text and image golden rows) against the eager PyTorch score
    of each row on its own (the default forward); raises ParityError past ATOL."""
    text = [r for r in runs if not r["embeds"]]
    image = [r for r in runs if len(r["embeds"]) == 1]
    picked = [r for r in (text[:2] + image[:1])]
    if not picked:
        return {}
    packs, refs = [], []
    with torch.no_grad():
        for r in picked:
            fam = _prefix_family(r["feeds"])
            E = torch.from_numpy(np.array(r["feeds"]["image_embeds"]))
            for ids, pos, im in fam:
                n = len(ids)
                refs.append(float(model(torch.tensor([ids]), E, torch.tensor([pos]), torch.tensor([im]),
                                        torch.ones(1, n, dtype=torch.long), torch.tensor([n - 1]))[0]))
            packs.append((share_prefix(fam), r["feeds"]["image_embeds"], len(fam)))
    res = OnnxRunner().run([(os.path.join(stage, PACKED_FILE),
                             {**{k: v.numpy() for k, v in collate_packed([p], pad_id).items()}, "image_embeds": E})
                            for p, E, _ in packs])
    got = [float(x) for (_, _, k), o in zip(packs, res) for x in o["score"][0][:k]]
    worst = max(abs(a - b) for a, b in zip(got, refs))
    report = {"max_abs_score_diff": worst, "rows": len(refs), "packed_rows": len(packs)}
    print(f"packed parity: {json.dumps(report)}", file=sys.stderr)
    if not (worst <= ATOL) or not np.isfinite(worst):
        raise ParityError(f"reward_packed.onnx vs PyTorch parity failed: max |diff| {worst:.3g} > {ATOL}")
    return report


# ---------------------------------------------------------------------------------------------- export
def export(ckpt: Optional[str], out_dir: str, tokenizer_model: str, heldout: Optional[str], name: str = "ixc-reward-tiny",
           version: int = 1, command: Optional[str] = None, seed: int = 0, pipeline: Optional[str] = None,
           golden_set: str = "all", loaded=None, large=None, packed: Optional[bool] = None,
           content_special_tokens: Optional[str] = None) -> Dict:
    """Writes into a temp dir next to out_dir, checks parity, then moves it into place atomically.

    pipeline: the input pipeline written to model.json and used for golden.json (default: the checkpoint's
    train_config.pipeline); golden_set: all (held-out + synthetic cases, plus the published ones for `ixc`) or
    published (only published_inputs, e.g. for a test model). `loaded` = (model, state) instead of a checkpoint
    path (import-hf); `large` = onnx_large.GraphOptions (fused attention, external data); content_special_tokens:
    literal | published overrides the pipeline's (default: the checkpoint's train_config, else the pipeline's)."""
    from . import onnx_large

    torch.set_num_threads(2)
    model, state = loaded if loaded is not None else load_checkpoint(ckpt)
    icfg, vcfg = preprocess_configs(state)
    pipeline = pipeline or state["train_config"].get("pipeline", "default")
    tcfg = template_config(pipeline, icfg,
                           content_special_tokens or state.get("train_config", {}).get("content_special_tokens", ""))
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
        if packed is None:
            packed = not large and model.args.readout == "last"
        if packed:
            export_packed(model, stage)
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
        if packed:
            report["packed"] = check_packed_parity(stage, model, runs, tok.pad_id)
        with open(os.path.join(stage, "golden.json"), "w", encoding="utf-8") as f:
            gate = {"atol_score": atol} | ({"rtol_score": rtol, "reference": "PyTorch float32"} if half else {})
            json.dump(gate | {"parity": report, "cases": cases}, f, ensure_ascii=False)
        for n, src in model_files(vcfg).items():  # the published video layout's label font
            shutil.copyfile(src, os.path.join(stage, n))
        extra = onnx_large.data_files(graphs) if graphs else []
        extra += [PACKED_FILE] if packed else []
        files = {n: file_digest(os.path.join(stage, n)) for n in (*REQUIRED_FILES, *model_files(vcfg), *extra)}
        train_result = state.get("train_result") or (read_result(ckpt, TRAIN_RESULT) if ckpt else {})
        man = manifest(name, version, model, state, special_ids(tokenizer_model), icfg, vcfg, files, train_result,
                       read_result(ckpt, EVAL_RESULT) if ckpt else {},
                       command or " ".join(["python3", "-m", "reward_trainer"] + sys.argv[1:]),
                       train_result.get("device", "cpu"), tcfg)
        man["evaluation"]["parity"] = report
        if packed:
            man["graphs"]["reward_packed"] = packed_graph_entry(model.args.hidden_size)
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


# ------------------------------------------------------------------------------- packed graph for a published dir
def add_packed(model_dir: str) -> Dict:
    """Adds reward_packed.onnx to an existing model version whose checkpoint is not at hand: the decoder weights
    come out of its reward.onnx (onnx_weights.py) and must reproduce every text golden score (PyTorch, <= ATOL)
    before the packed graph is exported and checked (text and image rows, image embeddings from its vision.onnx).
    Existing files stay byte for byte; model.json gains the file, the graph entry and the parity report."""
    from .config import ModelArgs
    from .model import IXCRewardModel
    from .onnx_weights import decoder_state

    torch.set_num_threads(2)
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        man = json.load(f)
    with open(os.path.join(model_dir, "golden.json"), encoding="utf-8") as f:
        golden = json.load(f)
    c = man["config"]
    args = ModelArgs.from_dict({k: c[k] for k in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                                  "intermediate_size", "rope_theta", "rms_norm_eps", "plora_rank",
                                                  "plora_alpha")} | {"readout": man["score"]["readout"],
                                                                     "vision": {k: c["vision"][k] for k in
                                                                                ("width", "layers", "heads", "patch",
                                                                                 "tile_size")}})
    model = IXCRewardModel(args).eval()
    missing = [k for k in model.state_dict() if not k.startswith(("vit.", "vision_proj", "plora_")) and k not in
               (state := decoder_state(os.path.join(model_dir, man["graphs"]["reward"]["file"])))]
    if missing:
        raise ParityError(f"reward.onnx lacks decoder weights {missing[:5]}")
    model.load_state_dict(state, strict=False)
    D, pad = args.hidden_size, man["tokenizer"]["pad_id"]
    runs, worst = [], 0.0
    media = [cs for cs in golden["cases"] if cs.get("media_tokens") and len(cs["media_tokens"]) == 1][:1]
    vis_out = []
    if media:  # the image row's embeddings: vision.onnx on a synthetic HD tensor of the case's token count
        S = args.vision.tile_size
        for rows in range(1, 5):
            for cols in range(1, 5):
                if model.tokens_per_image(rows, cols) == media[0]["media_tokens"][0]:
                    px = np.random.default_rng(0).standard_normal((1, 3, rows * S, cols * S)).astype(np.float32)
                    vis_out = OnnxRunner().run([(os.path.join(model_dir, "vision.onnx"), {"image": px})])
                    break
            if vis_out:
                break
    with torch.no_grad():
        for cs in golden["cases"]:
            if "score" not in cs or cs.get("media_tokens"):
                continue
            ids = cs["input_ids"]
            n = len(ids)
            feeds = {"input_ids": np.array([ids]), "image_embeds": np.zeros((1, D), np.float32),
                     "image_positions": np.zeros((1, n), np.int64), "im_mask": np.zeros((1, n), np.float32)}
            s = float(model(torch.tensor([ids]), torch.zeros(1, D), torch.zeros(1, n, dtype=torch.long),
                            torch.zeros(1, n), torch.ones(1, n, dtype=torch.long), torch.tensor([n - 1]))[0])
            worst = max(worst, abs(s - cs["score"]))
            runs.append({"embeds": [], "feeds": feeds})
        if vis_out:
            ids, T = media[0]["input_ids"], media[0]["media_tokens"][0]
            start = ids.index(pad, 1)
            pos = np.zeros((1, len(ids)), np.int64)
            im = np.zeros((1, len(ids)), np.float32)
            pos[0, start:start + T] = np.arange(T)
            im[0, start:start + T] = 1
            E = vis_out[0]["image_embeds"]
            runs.append({"embeds": [E], "feeds": {"input_ids": np.array([ids]), "image_embeds": E,
                                                  "image_positions": pos, "im_mask": im}})
    if not runs or not worst <= ATOL:
        raise ParityError(f"weights read back from reward.onnx miss the golden scores by {worst:.3g}")
    stage = tempfile.mkdtemp(prefix=".packed-", dir=model_dir)
    try:
        export_packed(model, stage)
        report = check_packed_parity(stage, model, runs, pad)
        report["weights_vs_golden_max_abs_diff"] = worst
        os.replace(os.path.join(stage, PACKED_FILE), os.path.join(model_dir, PACKED_FILE))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    os.chmod(os.path.join(model_dir, PACKED_FILE), 0o644)
    man["files"][PACKED_FILE] = file_digest(os.path.join(model_dir, PACKED_FILE))
    man["graphs"]["reward_packed"] = packed_graph_entry(D)
    man["evaluation"].setdefault("parity", {})["packed"] = report
    with open(os.path.join(model_dir, "model.json"), "w", encoding="utf-8") as f:
        json.dump(man, f, indent=2, ensure_ascii=False)
        f.write("\n")
    validate_manifest(model_dir)
    return report
