"""Golden cases for golden.json: text, image and video conversations (held-out pairs plus odd geometries, CJK/emoji,
control-piece text, a truncated conversation, two images, portrait and long videos) with their ids, media tensors
and PyTorch scores; the exporter checks ONNX against them and the service's tests replay them."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import random
from fractions import Fraction
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import media
from .collate import collate, media_offsets
from .config import INTERNLM2_OUT_OF_TABLE, VideoPreprocess
from .data import MediaCache, read_jsonl
from .template import ContentTokenError, build_segments, layout, strip_media_data


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


def _tensor_checksum(px: torch.Tensor, rng: random.Random, k: int = 16, mean=None, std=None) -> Dict:
    n, c, h, w = px.shape
    samples = []
    for _ in range(k):
        ci, yi, xi = rng.randrange(c), rng.randrange(h), rng.randrange(w)
        samples.append([0, ci, yi, xi, float(px[0, ci, yi, xi])])
    out = {"shape": list(px.shape), "sum": float(px.double().sum()), "abs_sum": float(px.double().abs().sum()),
           "sample": samples}
    if mean is not None:
        # the 8-bit canvas the tensor was normalised from (HWC), exactly: a consumer compares pixels, not sums
        u8 = np.rint((px[0].double().numpy() * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]) * 255)
        out["u8_sha256"] = hashlib.sha256(u8.clip(0, 255).astype(np.uint8).transpose(1, 2, 0).tobytes()).hexdigest()
    return out


def golden_inputs(heldout_path: Optional[str], rng: random.Random, work: str, vcfg: VideoPreprocess) -> List[Dict]:
    """Build golden cases: [{id, kind, messages (with base64 media), media [(kind, path)]}]."""
    cases: List[Dict] = []
    recs = read_jsonl(heldout_path) if heldout_path and os.path.exists(heldout_path) else []
    base = os.path.dirname(os.path.abspath(heldout_path)) if heldout_path else ""

    def add(kind, msgs, media_items):
        cases.append({"id": f"{kind}-{sum(1 for c in cases if c['kind'] == kind)}", "kind": kind,
                      "messages": msgs, "media": media_items})

    def from_heldout(kind, n):
        """Both replies of the first n held-out pairs with one `kind` medium."""
        for r in [r for r in recs if r.get(kind + "s")][:n]:
            for resp in (r["chosen"], r["rejected"]):
                p = os.path.join(base, r[kind + "s"][0])
                add(kind, [{"role": "user", "content": [{"type": kind, "data": _file_b64(p)},
                                                        {"type": "text", "text": r["messages"][0]["content"]}]},
                           {"role": "assistant", "content": resp}], [(kind, p)])

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
    from_heldout("image", 6)
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
    from_heldout("video", 3)
    # portrait frames (side-by-side layout) and > max_frames frames (frame selection)
    for j, (w, h, n) in enumerate([(48, 80, 3), (64, 48, vcfg.max_frames + 3)]):
        frames = [np.asarray(_synthetic_image(rng, w, h)) for _ in range(n)]
        p = os.path.join(work, f"golden-video-{j}.mp4")
        media.encode_video(frames, p, fps=1)
        add("video", [{"role": "user", "content": [{"type": "video", "data": _file_b64(p)},
                                                   {"type": "text", "text": "What happens in the video?"}]},
                      {"role": "assistant", "content": "Colourful noise changes between frames."}], [("video", p)])
    # frame rates and sampling of the published load_video (stride round(avg_fps), half to even): 25, 30 and 29.97
    # fps, more than 32 sampled positions (2 fps x 34 s: stride 2, 34 positions), a square video (strict w > h:
    # side by side), and an image with a video in one conversation (two media items)
    for j, (w, h, rate, secs) in enumerate([(64, 48, "25", 2), (64, 36, "30", 2), (48, 64, "30000/1001", 2),
                                            (32, 24, "2", 34), (40, 40, "25", 2)]):
        n = int(round(Fraction(rate) * secs))
        frames = [np.asarray(_synthetic_image(rng, w, h)) for _ in range(n)]
        p = os.path.join(work, f"golden-video-rate-{j}.mp4")
        media.encode_video(frames, p, fps=rate)
        add("video", [{"role": "user", "content": [{"type": "video", "data": _file_b64(p)},
                                                   {"type": "text", "text": f"A {rate} fps clip: what changes?"}]},
                      {"role": "assistant", "content": "Noise and circles move between frames."}], [("video", p)])
    pv, pi = os.path.join(work, "golden-video-rate-0.mp4"), os.path.join(work, "golden-2.jpeg")
    add("video", [{"role": "user", "content": [{"type": "image", "data": _file_b64(pi)},
                                               {"type": "video", "data": _file_b64(pv)},
                                               {"type": "text", "text": "Does the picture appear in the video?"}]},
                  {"role": "assistant", "content": "No, the video shows different patterns."}], [("image", pi), ("video", pv)])
    return cases


def _b64_image(im: Image.Image, **save) -> str:
    buf = io.BytesIO()
    im.save(buf, **save)
    return base64.b64encode(buf.getvalue()).decode()


def published_inputs(rng: random.Random, work: str) -> List[Dict]:
    """Cases for a model with the published pipeline (issue 11's proof): images at three aspect ratios (portrait
    included), an EXIF-rotated JPEG, an RGBA PNG, a 16-bit grey PNG, two images, a single image at a literal
    <ImageHere>, each special token in user text (the out-of-table ones are expected refusals), an empty system
    prompt, multi-turn, unstripped whitespace and a truncated text."""
    cases: List[Dict] = []

    def add(cid, kind, msgs, items=(), error=None):
        c = {"id": f"pub-{cid}", "kind": kind, "messages": msgs, "media": list(items)}
        if error:
            c["error"] = error
        cases.append(c)

    def img_case(cid, im, fmt, text="Describe the image.", **save):
        p = os.path.join(work, f"pub-{cid}.{fmt}")
        with open(p, "wb") as f:
            f.write(base64.b64decode(_b64_image(im, format="PNG" if fmt == "png" else "JPEG", **save)))
        add(cid, "image", [{"role": "user", "content": [{"type": "image", "data": _file_b64(p)},
                                                        {"type": "text", "text": text}]},
                           {"role": "assistant", "content": "A colourful pattern with circles."}], [("image", p)])
        return p

    p_land = img_case("landscape", _synthetic_image(rng, 300, 200), "png")
    p_port = img_case("portrait", _synthetic_image(rng, 120, 260), "jpeg", quality=90)
    img_case("wide", _synthetic_image(rng, 460, 100), "png")
    ex = _synthetic_image(rng, 90, 60)
    exif = ex.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display; published ignores it (no exif_transpose)
    img_case("exif6", ex, "jpeg", quality=90, exif=exif.tobytes())
    rgba = np.concatenate([np.asarray(_synthetic_image(rng, 80, 64)),
                           np.tile(np.linspace(0, 255, 80).astype(np.uint8), (64, 1))[..., None]], -1)
    rgba[:20, :20, 3] = 0  # fully transparent corner with colour: published drops alpha, keeps the colour
    img_case("rgba", Image.fromarray(rgba, "RGBA"), "png")
    y, x = np.mgrid[0:50, 0:70]
    img_case("grey16", Image.fromarray(((x * 13 + y * 7) % 1100).astype(np.uint16)), "png")  # clipped at 255
    # 800x300 alone would get 4 columns under hd_num; with a second item hd_num_multi gives it 3
    p_wide = os.path.join(work, "pub-wide2.png")
    _synthetic_image(rng, 800, 300).save(p_wide, format="PNG")
    add("two-images", "image",
        [{"role": "user", "content": [{"type": "text", "text": "Image1 "}, {"type": "image", "data": _file_b64(p_wide)},
                                      {"type": "text", "text": "; Image2 "}, {"type": "image", "data": _file_b64(p_port)},
                                      {"type": "text", "text": "; which one is taller?"}]},
         {"role": "assistant", "content": "The second one."}], [("image", p_wide), ("image", p_port)])
    add("marker", "image",
        [{"role": "user", "content": [{"type": "image", "data": _file_b64(p_land)},
                                      {"type": "text", "text": "Look at <ImageHere> and say what you see."}]},
         {"role": "assistant", "content": "Circles."}], [("image", p_land)])
    for j, t in enumerate(["</s>", "<s>", "<unk>", "[UNUSED_TOKEN_146]", "[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_130]",
                           "<ImageHere>", " </s> \n"]):
        add(f"special-{j}", "text", [{"role": "user", "content": f"Is {t} special here?"},
                                     {"role": "assistant", "content": f"It ends with {t}"}])
    for j, t in enumerate(INTERNLM2_OUT_OF_TABLE):
        add(f"out-of-table-{j}", "error", [{"role": "user", "content": f"Say {t} now."},
                                           {"role": "assistant", "content": "ok"}], error="content_token_out_of_range")
    add("empty-system", "text", [{"role": "system", "content": ""}, {"role": "user", "content": "Hello?"},
                                 {"role": "assistant", "content": "Hi."}])
    add("multi-turn", "text", [{"role": "system", "content": "You are terse."},
                               {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                               {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}])
    add("whitespace", "text", [{"role": "user", "content": "  padded  \n\n"},
                               {"role": "assistant", "content": "\n kept \t"}])
    add("truncated", "text", [{"role": "user", "content": "Repeat. " + "The quick brown fox. " * 200},
                              {"role": "assistant", "content": "The quick brown fox."}])
    return cases


def reward_feeds(rows, media_tokens: List[List[int]], embeds: List[np.ndarray], pad_id: int,
                 hidden_size: int) -> Dict[str, np.ndarray]:
    """reward.onnx feeds for rows whose media blocks follow each other in one image_embeds table."""
    feeds = {k: v.numpy() for k, v in collate(rows, media_offsets(media_tokens), media_tokens, pad_id).items()}
    feeds["image_embeds"] = np.concatenate(embeds, 0) if embeds else np.zeros((1, hidden_size), np.float32)
    return feeds


def golden_cases(model, tok, cache: MediaCache, max_seq_len: int, raw: List[Dict], rng: random.Random, tcfg=None):
    """-> (golden.json cases with their PyTorch scores, one run per case: media tensors, PyTorch embeddings and
    reward feeds, for the ONNX parity check). Cases the pipeline refuses (`error`) come last, without a run."""
    cases, runs, refused = [], [], []
    with torch.no_grad():
        for c in raw:
            if c.get("error") == "content_token_out_of_range" and tcfg is not None \
                    and tcfg.content_special_tokens == "literal":
                c = {k: v for k, v in c.items() if k != "error"} | {"kind": "text"}  # literal text: scored
            if c.get("error"):
                try:
                    build_segments(strip_media_data(c["messages"]), tok, tcfg)
                except ContentTokenError:
                    refused.append({k: c[k] for k in ("id", "kind", "messages", "error")})
                    continue
                raise ValueError(f"golden case {c['id']} was expected to be refused ({c['error']})")
            pix = cache.conversation(c["media"])
            mt = cache.media_tokens(pix, model.tokens_per_image)
            laid = layout(build_segments(strip_media_data(c["messages"]), tok, tcfg), mt, max_seq_len, tok.pad_id)
            if laid is None:
                raise ValueError(f"golden case {c['id']} does not fit max_seq_len")
            ids, spans, truncated = laid
            embeds = [model.vision_forward(px).numpy() for px in pix]
            feeds = reward_feeds([(ids, spans)], [mt], embeds, tok.pad_id, model.args.hidden_size)
            score = float(model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0])
            case = {"id": c["id"], "kind": c["kind"], "messages": c["messages"], "input_ids": ids,
                    "truncated": truncated, "media_tokens": mt, "score": score}
            if pix:
                case["image_tensors"] = [_tensor_checksum(px, rng, 16, cache.icfg.mean, cache.icfg.std) for px in pix]
            cases.append(case)
            runs.append({"pixels": [px.numpy() for px in pix], "embeds": embeds, "feeds": feeds, "score": score})
    return cases + refused, runs
