"""Schema check of a model version directory (models/README.md §The manifest). The exporter runs it on what it
wrote; the service has its own (stricter) loader."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict

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
        _need(m["files"], name, dict, "files")
    for name in m["files"]:  # every listed file, external data included, is hashed
        f = _need(m["files"], name, dict, "files")
        if os.path.basename(name) != name:
            raise ManifestError(f"files.{name}: must be a plain file name in the model directory")
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
    _check_large(m, v, r)
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


DTYPES = ("float32", "float16")
ATTENTION = ("eager", "com.microsoft.GroupQueryAttention", "com.microsoft.MultiHeadAttention")


def _check_large(m: Dict, v: Dict, r: Dict) -> None:
    """Optional fields of large-model exports (onnx_large.py); absent = float32, eager, no external data."""
    dtype = m.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ManifestError(f"dtype must be one of {DTYPES}")
    for gname, g in (("vision", v), ("reward", r)):
        if g.get("dtype", dtype) != dtype:
            raise ManifestError(f"graphs.{gname}.dtype must equal dtype")
        if g.get("attention", "eager") not in ATTENTION:
            raise ManifestError(f"graphs.{gname}.attention must be one of {ATTENTION}")
        ext = g.get("external_data", [])
        if not isinstance(ext, list):
            raise ManifestError(f"graphs.{gname}.external_data must be a list")
        for f in ext:
            if f not in m["files"]:
                raise ManifestError(f"graphs.{gname}.external_data {f!r} is not listed (and hashed) in files")
        floats = [io["dtype"] for io in g["inputs"] + g["outputs"] if io["dtype"] in DTYPES]
        if any(d != dtype for d in floats):
            raise ManifestError(f"graphs.{gname}: float inputs/outputs must be {dtype}")
