"""model.json (models/README.md §The manifest): the writer, and the check the exporter runs on what it wrote."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from typing import Dict, List, Optional

import torch

from . import media
from .config import ImagePreprocess, TemplateConfig, VideoPreprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REWARD_INPUTS = [("input_ids", "int64", ["B", "T"]), ("image_embeds", "float32", ["M", "D"]),
                 ("image_positions", "int64", ["B", "T"]), ("im_mask", "float32", ["B", "T"]),
                 ("attention_mask", "int64", ["B", "T"]), ("readout_index", "int64", ["B"])]
# graph version 2 (optional, models/README.md "reward_packed.onnx"): a trunk and branches per row, R readouts
REWARD_PACKED_INPUTS = [("input_ids", "int64", ["B", "T"]), ("image_embeds", "float32", ["M", "D"]),
                        ("image_positions", "int64", ["B", "T"]), ("im_mask", "float32", ["B", "T"]),
                        ("attention_mask", "int64", ["B", "P"]), ("branch_start", "int64", ["B", "NB"]),
                        ("branch_mask", "int64", ["B", "NB", "L"]), ("readout_index", "int64", ["B", "R"])]
PACKED_FILE = "reward_packed.onnx"
REQUIRED_FILES = ("vision.onnx", "reward.onnx", "tokenizer.json", "golden.json")
# The service's contract, generated from its zod schema (npm run schema:manifest).
SCHEMA_PATH = os.path.join(REPO_ROOT, "models", "manifest.schema.json")
# What the trainer promises on top: the evidence and preprocessing fields the service keeps opaque.
_INT = {"type": "integer"}
TRAINER_SCHEMA = {
    "type": "object",
    "required": ["created", "producer", "config", "preprocess", "score", "evaluation"],
    "properties": {
        "architecture": {"const": "ixc2.5-reward"},
        "producer": {"type": "object", "required": ["command", "git_commit", "device", "torch"],
                     "properties": {k: {"type": "string"} for k in ("command", "git_commit", "device", "torch")}},
        "config": {"required": ["num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
                                "plora_rank", "plora_alpha"],
                   "properties": {k: _INT for k in ("num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                                                     "vocab_size", "plora_rank", "plora_alpha")}},
        "preprocess": {"properties": {
            # decode / multi_count: absent in manifests written before them (the service defaults them)
            "image": {"required": ["hd_num", "hd_num_multi"],
                      "properties": {"hd_num": _INT, "hd_num_multi": _INT,
                                     "decode": {"enum": ["normalized", "published"]},
                                     "multi_count": {"enum": ["images", "media"]}}},
            "video": {"required": ["fps", "max_frames", "frame_long_side", "header_height", "gap", "line_width",
                                   "label_font"],
                      "properties": {k: _INT for k in ("fps", "max_frames", "frame_long_side", "header_height", "gap",
                                                        "line_width", "label_scale")},
                      # published: the label font is a model file (name + size); ixc_stack: a bitmap font + scale
                      "if": {"required": ["layout"], "properties": {"layout": {"const": "published"}}},
                      "then": {"properties": {"label_font": {"type": "object", "required": ["file", "size"],
                                                             "properties": {"file": {"type": "string"},
                                                                            "size": _INT}}}},
                      "else": {"required": ["label_scale"]}}}},
        "score": {"required": ["head"], "properties": {"head": {"const": "v_head"},
                                                         "train_stats": {"properties": {"std": {"exclusiveMinimum": 0}}}}},
        "evaluation": {"type": "object", "required": ["heldout"],
                       "properties": {"heldout": {"type": "object",
                                                  "required": ["pairs", "accuracy", "per_category", "length_bias"]}}},
    },
}


class ManifestError(ValueError):
    pass


def schema_errors(m: Dict) -> List[str]:
    """Violations of the service's JSON Schema and the trainer's additions, as "path: message"."""
    from jsonschema import Draft202012Validator

    with open(SCHEMA_PATH, encoding="utf-8") as f:
        service = json.load(f)
    errs = [e for schema in (service, TRAINER_SCHEMA) for e in Draft202012Validator(schema).iter_errors(m)]
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errs)


def validate_manifest(model_dir: str) -> Dict:
    """The JSON Schemas, then what a schema cannot say: checksums and agreement between fields."""
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        m = json.load(f)
    errs = schema_errors(m)
    if errs:
        raise ManifestError("model.json: " + "; ".join(errs))
    for name in REQUIRED_FILES:
        if name not in m["files"]:
            raise ManifestError(f"files.{name} missing")
    for name in m["files"]:  # every listed file, external data included, is hashed
        if os.path.basename(name) != name:
            raise ManifestError(f"files.{name}: must be a plain file name in the model directory")
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise ManifestError(f"{name} listed but missing")
        if file_digest(path) != m["files"][name]:
            raise ManifestError(f"{name}: checksum or size mismatch")
    v, r = m["graphs"]["vision"], m["graphs"]["reward"]
    _check_large(m, v, r)
    if [i["name"] for i in v["inputs"]] != ["image"] or [o["name"] for o in v["outputs"]] != ["image_embeds"]:
        raise ManifestError("vision graph I/O names")
    if [i["name"] for i in r["inputs"]] != [n for n, _, _ in REWARD_INPUTS] or [o["name"] for o in r["outputs"]] != ["score"]:
        raise ManifestError("reward graph I/O names")
    rp = m["graphs"].get("reward_packed")
    if rp is not None:
        if rp.get("version") != 2 or rp["file"] not in m["files"]:
            raise ManifestError("graphs.reward_packed: version 2 and a file listed in files")
        if [i["name"] for i in rp["inputs"]] != [n for n, _, _ in REWARD_PACKED_INPUTS] or \
                [o["name"] for o in rp["outputs"]] != ["score"]:
            raise ManifestError("reward_packed graph I/O names")
    if v["outputs"][0]["shape"] != ["T_img", m["config"]["hidden_size"]]:
        raise ManifestError("vision output shape must be [T_img, hidden_size]")
    tok, t = m["tokenizer"], m["template"]
    if t["turn"] != "[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n":
        raise ManifestError("template.turn")
    if t["prefix_ids"] != [tok["bos_id"]] or t["suffix_ids"] != [tok["eos_id"], tok["special_ids"]["reward"]]:
        raise ManifestError("template prefix/suffix ids")
    img, vis = m["preprocess"]["image"], m["config"]["vision"]
    if img.get("tile_size") != vis["tile_size"] or img.get("patch_size") != vis["patch"]:
        raise ManifestError("preprocess.image tile/patch must match config.vision")
    video = m["preprocess"]["video"]
    font = video["label_font"]
    if video.get("layout") == "published":
        # the font must be one of `files`, which the loop above has already found and checksummed
        if font["file"] not in m["files"]:
            raise ManifestError(f"label_font.file {font['file']!r} not listed in files or missing")
        return m
    for ch in "<>IMAGE 0123456789":
        g = font["glyphs"].get(ch)
        if not g or len(g) != font["height"] or any(len(row) != font["width"] for row in g):
            raise ManifestError(f"label_font glyph {ch!r}")
    return m


# ---------------------------------------------------------------------------------------------- writer
def file_digest(path: str) -> Dict:
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


def video_section(vcfg: VideoPreprocess) -> Dict:
    """preprocess.video: the layout and its numbers (models/README.md "Video preprocessing")."""
    common = {"fps": vcfg.fps, "max_frames": vcfg.max_frames, "frame_long_side": vcfg.frame_long_side,
              "layout": vcfg.layout, "header_height": vcfg.header_height, "gap": vcfg.gap, "line_width": vcfg.line_width}
    if vcfg.layout == "published":
        return common | {"label_font": {"file": media.LABEL_FONT_FILE, "size": vcfg.label_font_size}}
    return common | {"label_scale": vcfg.label_scale, "label_font": media.font_manifest()}


def model_files(vcfg: VideoPreprocess) -> Dict[str, str]:
    """Files an export copies into the model dir besides the ones it writes: {name in the dir: source path}."""
    return {media.LABEL_FONT_FILE: media.LABEL_FONT} if vcfg.layout == "published" else {}


def packed_graph_entry(hidden_size: int) -> Dict:
    """graphs.reward_packed of model.json."""
    return {"file": PACKED_FILE, "version": 2,
            "inputs": [{"name": n, "dtype": t, "shape": [hidden_size if s == "D" else s for s in sh]}
                       for n, t, sh in REWARD_PACKED_INPUTS],
            "outputs": [{"name": "score", "dtype": "float32", "shape": ["B", "R"]}]}


def manifest(name: str, version: int, model, state, tok_ids: Dict, icfg: ImagePreprocess, vcfg: VideoPreprocess,
             files: Dict, train_result: Dict, heldout: Dict, command: str, device: str,
             tcfg: Optional[TemplateConfig] = None) -> Dict:
    a = model.args
    tcfg = tcfg or TemplateConfig()
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
                                      "reward": tok_ids["reward"]},
                      "control_pieces": {"bos": "<s>", "eos": "</s>", "unk": "<unk>"},
                      "out_of_table_tokens": list(tcfg.out_of_table_tokens)},
        "template": {"turn": "[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n",
                     "roles": ["system", "user", "assistant"], "strip_content": tcfg.strip_content,
                     "prefix_ids": [tok_ids["bos_id"]], "suffix_ids": [tok_ids["eos_id"], tok_ids["reward"]],
                     "media_placement": tcfg.media_placement, "eos_newline": tcfg.eos_newline,
                     "content_special_tokens": tcfg.content_special_tokens},
        "max_seq_len": state["train_config"]["max_seq_len"],
        "truncation": {"side": "left"},
        "preprocess": {
            "image": {"tile_size": icfg.tile_size, "patch_size": icfg.patch_size, "hd_num": icfg.hd_num,
                      "hd_num_multi": icfg.hd_num_multi, "resize": "pil_bilinear", "pad_color": [255, 255, 255],
                      "pad_side": "bottom", "transpose_portrait": True, "mean": list(icfg.mean), "std": list(icfg.std),
                      "decode": icfg.decode, "multi_count": icfg.multi_count,
                      "global_view": "bicubic", "merge": "2x2", "separators": ["plora_glb_GN", "plora_sub_GN"],
                      "tokens_per_image": "(rows*cols+1)*G^2 + 1 + (rows+1)*G, G = tile_size/patch_size/2"},
            "video": video_section(vcfg),
        },
        "score": {"readout": a.readout, "head": "v_head", "head_bias": False,
                  "train_stats": train_result.get("train_stats", {"mean": 0.0, "std": 1.0, "n": 0})},
        "training": {k: train_result.get(k) for k in ("steps", "total_steps", "train_seconds", "train_pairs",
                                                      "dropped_length_ratio", "dropped_too_long", "pairs_per_second",
                                                      "device")}
                    | {"length_ratio": state["train_config"]["length_ratio"]}
                    | ({"stages": train_result["stages"]} if train_result.get("stages") else {}),
        "evaluation": {"heldout": heldout or {"pairs": 0, "accuracy": 0.0, "per_category": {}, "length_bias": {}}},
    }


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
