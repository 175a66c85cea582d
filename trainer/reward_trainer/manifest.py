"""model.json (models/README.md §The manifest): the writer, and the check the exporter runs on what it wrote."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from typing import Any, Dict

import torch

from . import media
from .config import ImagePreprocess, VideoPreprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REWARD_INPUTS = [("input_ids", "int64", ["B", "T"]), ("image_embeds", "float32", ["M", "D"]),
                 ("image_positions", "int64", ["B", "T"]), ("im_mask", "float32", ["B", "T"]),
                 ("attention_mask", "int64", ["B", "T"]), ("readout_index", "int64", ["B"])]
REQUIRED_FILES = ("vision.onnx", "reward.onnx", "tokenizer.json", "golden.json")
REWARD_IO = ["input_ids", "image_embeds", "image_positions", "im_mask", "attention_mask", "readout_index"]


class ManifestError(ValueError):
    pass


def _need(d: Dict, key: str, typ, where: str) -> Any:
    if key not in d:
        raise ManifestError(f"{where}.{key} missing")
    v = d[key]
    if typ is not None and not isinstance(v, typ) or (typ in (int, float) and isinstance(v, bool)):
        raise ManifestError(f"{where}.{key} has type {type(v).__name__}, want {typ}")
    return v


def validate_manifest(model_dir: str) -> Dict:
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        m = json.load(f)
    if _need(m, "format_version", int, "") != 1:
        raise ManifestError("format_version must be 1")
    for k, t in (("name", str), ("version", int), ("architecture", str), ("created", str), ("producer", dict),
                 ("files", dict), ("graphs", dict), ("config", dict), ("tokenizer", dict), ("template", dict),
                 ("max_seq_len", int), ("truncation", dict), ("preprocess", dict), ("score", dict),
                 ("evaluation", dict)):
        _need(m, k, t, "")
    if m["architecture"] != "ixc2.5-reward":
        raise ManifestError("architecture must be ixc2.5-reward")
    for k in ("command", "git_commit", "device", "torch"):
        _need(m["producer"], k, str, "producer")
    for name in REQUIRED_FILES:
        f = _need(m["files"], name, dict, "files")
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise ManifestError(f"{name} listed but missing")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != _need(f, "sha256", str, f"files.{name}") or os.path.getsize(path) != _need(f, "bytes", int, f"files.{name}"):
            raise ManifestError(f"{name}: checksum or size mismatch")
    v, r = _need(m["graphs"], "vision", dict, "graphs"), _need(m["graphs"], "reward", dict, "graphs")
    if [i["name"] for i in v["inputs"]] != ["image"] or [o["name"] for o in v["outputs"]] != ["image_embeds"]:
        raise ManifestError("vision graph I/O names")
    if [i["name"] for i in r["inputs"]] != REWARD_IO or [o["name"] for o in r["outputs"]] != ["score"]:
        raise ManifestError("reward graph I/O names")
    D = _need(m["config"], "hidden_size", int, "config")
    if v["outputs"][0]["shape"] != ["T_img", D]:
        raise ManifestError("vision output shape must be [T_img, hidden_size]")
    for k in ("num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size", "plora_rank", "plora_alpha"):
        _need(m["config"], k, int, "config")
    vis = _need(m["config"], "vision", dict, "config")
    tok = m["tokenizer"]
    for k in ("bos_id", "eos_id", "pad_id", "unk_id"):
        _need(tok, k, int, "tokenizer")
    sid = _need(tok, "special_ids", dict, "tokenizer")
    for k in ("turn_start", "turn_end", "reward"):
        _need(sid, k, int, "tokenizer.special_ids")
    t = m["template"]
    if t.get("turn") != "[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n":
        raise ManifestError("template.turn")
    if t.get("prefix_ids") != [tok["bos_id"]] or t.get("suffix_ids") != [tok["eos_id"], sid["reward"]]:
        raise ManifestError("template prefix/suffix ids")
    if m["truncation"].get("side") not in ("left", "right"):
        raise ManifestError("truncation.side")
    img = _need(m["preprocess"], "image", dict, "preprocess")
    if img.get("tile_size") != vis.get("tile_size") or img.get("patch_size") != vis.get("patch"):
        raise ManifestError("preprocess.image tile/patch must match config.vision")
    for k in ("hd_num", "hd_num_multi"):
        _need(img, k, int, "preprocess.image")
    vid = _need(m["preprocess"], "video", dict, "preprocess")
    for k in ("fps", "max_frames", "frame_long_side", "header_height", "gap", "line_width", "label_scale"):
        _need(vid, k, int, "preprocess.video")
    font = _need(vid, "label_font", dict, "preprocess.video")
    for ch in "<>IMAGE 0123456789":
        g = font["glyphs"].get(ch)
        if not g or len(g) != font["height"] or any(len(row) != font["width"] for row in g):
            raise ManifestError(f"label_font glyph {ch!r}")
    s = m["score"]
    if s.get("readout") not in ("last", "mean") or s.get("head") != "v_head":
        raise ManifestError("score.readout/head")
    st = _need(s, "train_stats", dict, "score")
    if not (isinstance(st.get("std"), (int, float)) and st["std"] > 0):
        raise ManifestError("score.train_stats.std must be > 0")
    ho = _need(m["evaluation"], "heldout", dict, "evaluation")
    for k in ("pairs", "accuracy", "per_category", "length_bias"):
        _need(ho, k, None, "evaluation.heldout")
    return m


# ---------------------------------------------------------------------------------------------- writer
def _sha(path: str) -> Dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": os.path.getsize(path)}


def git_commit() -> str:
    try:
        p = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        c = p.stdout.decode().strip()
        if p.returncode != 0 or not c:
            return "none"
        d = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "trainer"], stdout=subprocess.PIPE)
        return c + ("-dirty" if d.stdout.strip() else "")
    except Exception:
        return "none"


def manifest(name: str, version: int, model, state, tok_ids: Dict, icfg: ImagePreprocess, vcfg: VideoPreprocess,
             files: Dict, train_result: Dict, heldout: Dict, command: str, device: str) -> Dict:
    a = model.args
    D = a.hidden_size
    return {
        "format_version": 1,
        "name": name, "version": version,
        "architecture": "ixc2.5-reward",
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "producer": {"command": command, "git_commit": git_commit(), "device": device, "torch": torch.__version__,
                     "trainer": "trainer/reward_trainer"},
        "files": files,
        "graphs": {
            "vision": {"file": "vision.onnx",
                       "inputs": [{"name": "image", "dtype": "float32", "shape": [1, 3, "H", "W"]}],
                       "outputs": [{"name": "image_embeds", "dtype": "float32", "shape": ["T_img", D]}]},
            "reward": {"file": "reward.onnx",
                       "inputs": [{"name": n, "dtype": t, "shape": [D if s == "D" else s for s in sh]}
                                  for n, t, sh in REWARD_INPUTS],
                       "outputs": [{"name": "score", "dtype": "float32", "shape": ["B"]}]},
        },
        "config": {"hidden_size": D, "num_layers": a.num_layers, "num_heads": a.num_heads,
                   "num_kv_heads": a.num_kv_heads, "intermediate_size": a.intermediate_size,
                   "vocab_size": a.vocab_size, "rope_theta": a.rope_theta, "rms_norm_eps": a.rms_norm_eps,
                   "plora_rank": a.plora_rank, "plora_alpha": a.plora_alpha,
                   "vision": {"width": a.vision.width, "layers": a.vision.layers, "heads": a.vision.heads,
                              "patch": a.vision.patch, "tile_size": a.vision.tile_size},
                   "num_params": model.num_params()},
        "tokenizer": {"file": "tokenizer.json", "type": "sentencepiece-bpe",
                      "bos_id": tok_ids["bos_id"], "eos_id": tok_ids["eos_id"], "pad_id": tok_ids["eos_id"],
                      "unk_id": tok_ids["unk_id"],
                      "special": {"turn_start": "[UNUSED_TOKEN_146]", "turn_end": "[UNUSED_TOKEN_145]",
                                  "reward": "[UNUSED_TOKEN_130]"},
                      "special_ids": {"turn_start": tok_ids["turn_start"], "turn_end": tok_ids["turn_end"],
                                      "reward": tok_ids["reward"]}},
        "template": {"turn": "[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n",
                     "roles": ["system", "user", "assistant"], "strip_content": True,
                     "prefix_ids": [tok_ids["bos_id"]], "suffix_ids": [tok_ids["eos_id"], tok_ids["reward"]],
                     "media_placement": "inline"},
        "max_seq_len": state["train_config"]["max_seq_len"],
        "truncation": {"side": "left"},
        "preprocess": {
            "image": {"tile_size": icfg.tile_size, "patch_size": icfg.patch_size, "hd_num": icfg.hd_num,
                      "hd_num_multi": icfg.hd_num_multi, "resize": "pil_bilinear", "pad_color": [255, 255, 255],
                      "pad_side": "bottom", "transpose_portrait": True, "mean": list(icfg.mean), "std": list(icfg.std),
                      "global_view": "bicubic", "merge": "2x2", "separators": ["plora_glb_GN", "plora_sub_GN"],
                      "tokens_per_image": "(rows*cols+1)*G^2 + 1 + (rows+1)*G, G = tile_size/patch_size/2"},
            "video": {"fps": vcfg.fps, "max_frames": vcfg.max_frames, "frame_long_side": vcfg.frame_long_side,
                      "layout": "ixc_stack", "header_height": vcfg.header_height, "gap": vcfg.gap,
                      "line_width": vcfg.line_width, "label_scale": vcfg.label_scale,
                      "label_font": media.font_manifest()},
        },
        "score": {"readout": a.readout, "head": "v_head", "head_bias": False,
                  "train_stats": train_result.get("train_stats", {"mean": 0.0, "std": 1.0, "n": 0})},
        "training": {k: train_result.get(k) for k in ("steps", "total_steps", "train_seconds", "train_pairs",
                                                      "dropped_length_ratio", "dropped_too_long", "pairs_per_second",
                                                      "device")}
                    | {"length_ratio": state["train_config"]["length_ratio"]},
        "evaluation": {"heldout": heldout or {"pairs": 0, "accuracy": 0.0, "per_category": {}, "length_bias": {}}},
    }
