"""Export a checkpoint to a model version directory (models/README.md): vision.onnx, reward.onnx, tokenizer.json,
golden.json, model.json. Checks ONNX-vs-PyTorch parity (max |diff| <= 1e-4, fp32) with onnxruntime (python when
importable, else onnxruntime-node, the service's runtime) and fails loudly otherwise."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import media
from .config import ImagePreprocess, VideoPreprocess
from .data import TextTokenizer, build_segments, layout, read_jsonl, record_conversations, tokens_for_pixels
from .tokenizer_convert import convert, special_ids
from .train import load_model

OPSET = 17
ATOL = 1e-4
TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TRAINER_DIR)

REWARD_INPUTS = [("input_ids", "int64", ["B", "T"]), ("image_embeds", "float32", ["M", "D"]),
                 ("image_positions", "int64", ["B", "T"]), ("im_mask", "float32", ["B", "T"]),
                 ("attention_mask", "int64", ["B", "T"]), ("readout_index", "int64", ["B"])]


class ParityError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------- onnx runners
class OnnxRunner:
    """Runs a list of (model path, feeds) with python onnxruntime when present, else onnxruntime-node."""

    def __init__(self):
        try:
            import onnxruntime  # noqa: F401

            self.py = True
        except Exception:
            self.py = False

    def run(self, requests: List[Tuple[str, Dict[str, np.ndarray]]]) -> List[Dict[str, np.ndarray]]:
        if self.py:
            import onnxruntime as ort

            sess: Dict[str, object] = {}
            out = []
            for path, feeds in requests:
                if path not in sess:
                    sess[path] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                names = [o.name for o in sess[path].get_outputs()]
                out.append(dict(zip(names, sess[path].run(None, feeds))))
            return out
        reqs = [{"model": path, "feeds": {k: {"dtype": str(v.dtype), "dims": list(v.shape),
                                             "b64": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
                                         for k, v in feeds.items()}} for path, feeds in requests]
        with tempfile.TemporaryDirectory() as td:
            rq, rs = os.path.join(td, "rq.json"), os.path.join(td, "rs.json")
            with open(rq, "w") as f:
                json.dump(reqs, f)
            p = subprocess.run(["node", os.path.join(TRAINER_DIR, "node", "run_onnx.mjs"), rq, rs],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise RuntimeError("onnxruntime-node failed: " + p.stderr.decode(errors="replace")[-2000:])
            with open(rs) as f:
                res = json.load(f)
        return [{k: np.frombuffer(base64.b64decode(v["b64"]), dtype=np.float32).reshape(v["dims"]) for k, v in r.items()}
                for r in res]


# ---------------------------------------------------------------------------------------- graph export
class _Vision(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, image):
        return self.m.vision_forward(image)


def export_graphs(model, out_dir: str) -> None:
    S = model.args.vision.tile_size
    with torch.no_grad():
        torch.onnx.export(_Vision(model), (torch.randn(1, 3, 2 * S, 3 * S),), os.path.join(out_dir, "vision.onnx"),
                          input_names=["image"], output_names=["image_embeds"], opset_version=OPSET,
                          dynamic_axes={"image": {2: "H", 3: "W"}, "image_embeds": {0: "T_img"}},
                          do_constant_folding=True)
        B, T, M = 2, 16, 5
        args = (torch.randint(0, model.args.vocab_size, (B, T)), torch.randn(M, model.args.hidden_size),
                torch.randint(0, M, (B, T)), (torch.rand(B, T) > 0.5).float(), torch.ones(B, T, dtype=torch.long),
                torch.tensor([T - 1, T - 3]))
        torch.onnx.export(model, args, os.path.join(out_dir, "reward.onnx"),
                          input_names=[n for n, _, _ in REWARD_INPUTS], output_names=["score"], opset_version=OPSET,
                          dynamic_axes={"input_ids": {0: "B", 1: "T"}, "image_embeds": {0: "M"},
                                        "image_positions": {0: "B", 1: "T"}, "im_mask": {0: "B", 1: "T"},
                                        "attention_mask": {0: "B", 1: "T"}, "readout_index": {0: "B"},
                                        "score": {0: "B"}},
                          do_constant_folding=True)
    import onnx

    for name in ("vision.onnx", "reward.onnx"):
        onnx.checker.check_model(onnx.load(os.path.join(out_dir, name)))


# -------------------------------------------------------------------------------------------- goldens
def _png_b64(im: Image.Image) -> str:
    b = io.BytesIO()
    im.save(b, format="PNG")
    return base64.b64encode(b.getvalue()).decode()


def _jpeg_b64(im: Image.Image) -> str:
    b = io.BytesIO()
    im.save(b, format="JPEG", quality=90)
    return base64.b64encode(b.getvalue()).decode()


def _file_b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def _synthetic_image(rng: random.Random, w: int, h: int) -> Image.Image:
    """Gradient + shapes + noise: the hardest case for resize parity."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 255 // max(1, w - 1)), (y * 255 // max(1, h - 1)), ((x + y) * 7) % 256], -1).astype(np.float32)
    a += np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, 25, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(3):
        cx, cy, r = rng.randint(0, w), rng.randint(0, h), rng.randint(4, max(5, min(w, h) // 3))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return im


def _tensor_checksum(px: torch.Tensor, rng: random.Random, k: int = 16) -> Dict:
    n, c, h, w = px.shape
    samples = []
    for _ in range(k):
        ci, yi, xi = rng.randrange(c), rng.randrange(h), rng.randrange(w)
        samples.append([0, ci, yi, xi, float(px[0, ci, yi, xi])])
    return {"shape": list(px.shape), "sum": float(px.double().sum()), "abs_sum": float(px.double().abs().sum()),
            "sample": samples}


def golden_inputs(heldout_path: Optional[str], rng: random.Random, work: str, vcfg: VideoPreprocess) -> List[Dict]:
    """Build golden cases: [{id, kind, messages (with base64 media), media [(kind, path)]}]."""
    cases: List[Dict] = []
    recs = read_jsonl(heldout_path) if heldout_path and os.path.exists(heldout_path) else []
    base = os.path.dirname(os.path.abspath(heldout_path)) if heldout_path else ""

    def add(kind, msgs, media_items):
        cases.append({"id": f"{kind}-{sum(1 for c in cases if c['kind'] == kind)}", "kind": kind,
                      "messages": msgs, "media": media_items})

    text = [r for r in recs if not r.get("images") and not r.get("videos")]
    for r in text[:8]:
        for resp in (r["chosen"], r["rejected"]):
            add("text", [dict(m) for m in r["messages"]] + [{"role": "assistant", "content": resp}], [])
    add("text", [{"role": "system", "content": "  You are a helpful assistant.  "},
                 {"role": "user", "content": "你好！Can you count: 1, 22, 333?\n\n  Emoji: 😀🎉  "},
                 {"role": "assistant", "content": "\nSure: one, twenty-two, three hundred thirty-three.\t"}], [])
    add("text", [{"role": "user", "content": "Is </s> or <s> special here? [UNUSED_TOKEN_130] is."},
                 {"role": "assistant", "content": "Control pieces are plain text inside content."}], [])
    add("text", [{"role": "user", "content": "Repeat after me. " + "The quick brown fox jumps over the lazy dog. " * 60},
                 {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}], [])  # truncated
    for r in [r for r in recs if r.get("images")][:6]:
        for resp in (r["chosen"], r["rejected"]):
            p = os.path.join(base, r["images"][0])
            add("image", [{"role": "user", "content": [{"type": "image", "data": _file_b64(p)},
                                                       {"type": "text", "text": r["messages"][0]["content"]}]},
                          {"role": "assistant", "content": resp}], [("image", p)])
    # odd geometries: portrait (transpose), upscale, downscale, wide (several columns), JPEG, 2 images (hd_num_multi)
    for j, (w, h, fmt) in enumerate([(90, 200, "png"), (50, 40, "png"), (300, 200, "jpeg"), (460, 100, "png"),
                                     (128, 128, "jpeg")]):
        im = _synthetic_image(rng, w, h)
        p = os.path.join(work, f"golden-{j}.{fmt}")
        im.save(p, format="PNG" if fmt == "png" else "JPEG", quality=90)
        add("image", [{"role": "user", "content": [{"type": "text", "text": "Describe the image."},
                                                   {"type": "image", "data": _file_b64(p)},
                                                   {"type": "text", "text": " What stands out?"}]},
                      {"role": "assistant", "content": "A colourful pattern with circles."}], [("image", p)])
    p1, p2 = os.path.join(work, "golden-0.png"), os.path.join(work, "golden-2.jpeg")
    add("image", [{"role": "user", "content": [{"type": "text", "text": "Image 1:"}, {"type": "image", "data": _file_b64(p1)},
                                               {"type": "text", "text": "Image 2:"}, {"type": "image", "data": _file_b64(p2)},
                                               {"type": "text", "text": "Which one is taller?"}]},
                  {"role": "assistant", "content": "The first one."}], [("image", p1), ("image", p2)])
    for r in [r for r in recs if r.get("videos")][:3]:
        for resp in (r["chosen"], r["rejected"]):
            p = os.path.join(base, r["videos"][0])
            add("video", [{"role": "user", "content": [{"type": "video", "data": _file_b64(p)},
                                                       {"type": "text", "text": r["messages"][0]["content"]}]},
                          {"role": "assistant", "content": resp}], [("video", p)])
    # portrait frames (side-by-side layout) and > max_frames frames (frame selection)
    for j, (w, h, n) in enumerate([(48, 80, 3), (64, 48, vcfg.max_frames + 3)]):
        frames = [np.asarray(_synthetic_image(rng, w, h)) for _ in range(n)]
        p = os.path.join(work, f"golden-video-{j}.mp4")
        media.encode_video(frames, p, fps=1)
        add("video", [{"role": "user", "content": [{"type": "video", "data": _file_b64(p)},
                                                   {"type": "text", "text": "What happens in the video?"}]},
                      {"role": "assistant", "content": "Colourful noise changes between frames."}], [("video", p)])
    return cases


def _media_for_model(cases_media, icfg, vcfg) -> List[torch.Tensor]:
    hd = icfg.hd_num if sum(1 for k, _ in cases_media if k == "image") <= 1 else icfg.hd_num_multi
    out = []
    for kind, p in cases_media:
        if kind == "image":
            out.append(media.image_transform(media.load_image(p), icfg, hd))
        else:
            out.append(media.video_tensor(p, vcfg, icfg))
    return out


def _strip_data(messages):
    """messages with media parts reduced to {"type"} (for the template builder)."""
    out = []
    for m in messages:
        c = m["content"]
        if isinstance(c, list):
            c = [{"type": p["type"]} if p["type"] != "text" else dict(p) for p in c]
        out.append({"role": m["role"], "content": c})
    return out


def build_feeds(ids, spans, media_tokens, embeds: np.ndarray, pad_id: int):
    T = len(ids)
    pos = np.zeros((1, T), np.int64)
    mask = np.zeros((1, T), np.float32)
    off = 0
    offs = []
    for n in media_tokens:
        offs.append(off)
        off += n
    for start, k in spans:
        n = media_tokens[k]
        pos[0, start:start + n] = np.arange(offs[k], offs[k] + n)
        mask[0, start:start + n] = 1
    return {"input_ids": np.asarray([ids], np.int64), "image_embeds": embeds.astype(np.float32),
            "image_positions": pos, "im_mask": mask, "attention_mask": np.ones((1, T), np.int64),
            "readout_index": np.asarray([T - 1], np.int64)}


# -------------------------------------------------------------------------------------------- manifest
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
             files: Dict, train_result: Dict, command: str, device: str) -> Dict:
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
        "evaluation": {"heldout": train_result.get("heldout", {"pairs": 0, "accuracy": 0.0, "per_category": {},
                                                               "length_bias": {}})},
    }


# ---------------------------------------------------------------------------------------------- export
def export(ckpt: Optional[str], out_dir: str, tokenizer_model: str, heldout: Optional[str], name: str = "ixc-reward-tiny",
           version: int = 1, command: Optional[str] = None, seed: int = 0, loaded=None, large=None) -> Dict:
    """Writes into a temp dir next to out_dir, checks parity, then moves it into place atomically.
    `loaded` = (model, state) instead of a checkpoint path (import-hf); `large` = onnx_large.GraphOptions."""
    from . import onnx_large

    torch.set_num_threads(2)
    model, state = loaded if loaded is not None else load_model(ckpt)
    icfg = ImagePreprocess(**state["image"])
    vcfg = VideoPreprocess(**state["video"])
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
        raw = golden_inputs(heldout, rng, work, vcfg)
        S, G = icfg.tile_size, model.G
        cases, requests, meta = [], [], []
        max_len = state["train_config"]["max_seq_len"]
        with torch.no_grad():
            for c in raw:
                pix = _media_for_model(c["media"], icfg, vcfg)
                mt = [tokens_for_pixels(px, S, G) for px in pix]
                laid = layout(build_segments(_strip_data(c["messages"]), tok), mt, max_len, tok.pad_id)
                if laid is None:
                    raise ValueError(f"golden case {c['id']} does not fit max_seq_len")
                ids, spans, truncated = laid
                embeds = [model.vision_forward(px) for px in pix]
                E = torch.cat(embeds, 0) if embeds else torch.zeros(1, model.args.hidden_size)
                feeds = build_feeds(ids, spans, mt, E.numpy(), tok.pad_id)
                score = float(model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0])
                case = {"id": c["id"], "kind": c["kind"], "messages": c["messages"], "input_ids": ids,
                        "truncated": truncated, "media_tokens": mt, "score": score}
                if pix:
                    case["image_tensors"] = [_tensor_checksum(px, rng) for px in pix]
                cases.append(case)
                for px in pix:
                    requests.append((os.path.join(stage, "vision.onnx"), {"image": px.numpy()}))
                meta.append((feeds, [e.numpy() for e in embeds], score))
        # ---- parity: vision embeddings, then reward scores from the ONNX embeddings, then a padded batch
        runner = OnnxRunner()
        vis = runner.run(requests)
        vi = 0
        reward_reqs = []
        worst_embed = 0.0
        for feeds, embeds, _ in meta:
            onnx_embeds = []
            for e in embeds:
                o = vis[vi]["image_embeds"]
                vi += 1
                if o.shape != e.shape:
                    raise ParityError(f"vision.onnx shape {o.shape} != PyTorch {e.shape}")
                worst_embed = max(worst_embed, float(np.abs(o - e).max()))
                onnx_embeds.append(o)
            f = dict(feeds)
            if onnx_embeds:
                f["image_embeds"] = np.concatenate(onnx_embeds, 0)
            reward_reqs.append((os.path.join(stage, "reward.onnx"), f))
        text_idx = [i for i, c in enumerate(cases) if c["kind"] == "text"][:6]
        reward_reqs.append((os.path.join(stage, "reward.onnx"), _pad_batch([meta[i][0] for i in text_idx], tok.pad_id)))
        res = runner.run(reward_reqs)
        diffs = [abs(float(r["score"][0]) - m[2]) for r, m in zip(res[:-1], meta)]
        batch_scores = res[-1]["score"]
        bdiff = max(abs(float(batch_scores[j]) - meta[i][2]) for j, i in enumerate(text_idx))
        worst = max(diffs + [bdiff])
        report = {"max_abs_score_diff": worst, "max_abs_embed_diff": worst_embed, "batched_max_abs_diff": bdiff,
                  "cases": len(cases), "runtime": "onnxruntime (python)" if runner.py else "onnxruntime-node"}
        print(f"parity: {json.dumps(report)}", file=sys.stderr)
        if not (worst <= ATOL) or not np.isfinite(worst):
            bad = [cases[i]["id"] for i, d in enumerate(diffs) if not d <= ATOL]
            raise ParityError(f"ONNX vs PyTorch score parity failed: max |diff| {worst:.3g} > {ATOL} (cases {bad})")
        with open(os.path.join(stage, "golden.json"), "w", encoding="utf-8") as f:
            json.dump({"atol_score": ATOL, "parity": report, "cases": cases}, f, ensure_ascii=False)
        extra = onnx_large.data_files(graphs) if graphs else []
        files = {n: _sha(os.path.join(stage, n)) for n in ["vision.onnx", "reward.onnx", "tokenizer.json", "golden.json"] + extra}
        tr_path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "train_result.json") if ckpt else ""
        train_result = state.get("train_result") or (json.load(open(tr_path)) if os.path.exists(tr_path) else {})
        man = manifest(name, version, model, state, special_ids(tokenizer_model), icfg, vcfg, files, train_result,
                       command or " ".join(["python3", "-m", "reward_trainer"] + sys.argv[1:]),
                       train_result.get("device", "cpu"))
        man["evaluation"]["parity"] = report
        if graphs:
            onnx_large.annotate(man, graphs, large)
        with open(os.path.join(stage, "model.json"), "w", encoding="utf-8") as f:
            json.dump(man, f, indent=2, ensure_ascii=False)
            f.write("\n")
        from .manifest import validate_manifest

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


def _pad_batch(feeds_list: List[Dict[str, np.ndarray]], pad_id: int) -> Dict[str, np.ndarray]:
    B, T = len(feeds_list), max(f["input_ids"].shape[1] for f in feeds_list)
    out = {"input_ids": np.full((B, T), pad_id, np.int64), "image_positions": np.zeros((B, T), np.int64),
           "im_mask": np.zeros((B, T), np.float32), "attention_mask": np.zeros((B, T), np.int64),
           "readout_index": np.zeros((B,), np.int64), "image_embeds": feeds_list[0]["image_embeds"]}
    for i, f in enumerate(feeds_list):
        L = f["input_ids"].shape[1]
        out["input_ids"][i, :L] = f["input_ids"][0]
        out["attention_mask"][i, :L] = 1
        out["readout_index"][i] = L - 1
    return out
