"""Image and video preprocessing, exactly as models/README.md (§Image/§Video preprocessing) states.

The service reimplements this in TypeScript and proves parity with golden.json, so every rounding choice here
is part of the contract.
"""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .config import ImagePreprocess, VideoPreprocess

# 5x7 bitmap font for the `<IMAGE i>` frame labels (IXC draws them with SimHei; a bitmap font keeps the TS
# port exact). Shipped in model.json as preprocess.video.label_font.
FONT_W, FONT_H = 5, 7
GLYPHS: Dict[str, List[str]] = {
    "<": ["00010", "00100", "01000", "10000", "01000", "00100", "00010"],
    ">": ["01000", "00100", "00010", "00001", "00010", "00100", "01000"],
    " ": ["00000"] * 7,
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "G": ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
}


def font_manifest() -> Dict:
    return {"width": FONT_W, "height": FONT_H, "advance": FONT_W + 1, "glyphs": GLYPHS}


# ------------------------------------------------------------------------------------------------ images
def load_image(data_or_path, decode: str = "normalized") -> Image.Image:
    """Decode to 8-bit RGB. normalized: EXIF orientation applied, alpha flattened on white, 16-bit grey /257, first
    frame only. published: the reward model's encode_img, `Image.open(image).convert('RGB')` and nothing else
    (EXIF ignored, alpha dropped, 16-bit grey -- mode I -- clipped at 255, 16-bit colour: Pillow keeps the high
    byte; published-pipeline-spec.md §5)."""
    im = Image.open(io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path)
    if decode == "published":
        return im.convert("RGB")
    if decode != "normalized":
        raise ValueError(f"unknown image decode mode {decode!r}")
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode == "I;16" or im.mode == "I":
        arr = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def to_tensor(im: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    a = np.asarray(im, dtype=np.float32) / 255.0  # HWC
    a = (a - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).unsqueeze(0)


def _pad_bottom(im: Image.Image, S: int) -> Image.Image:
    w, h = im.size
    H = int(math.ceil(h / S) * S)
    if H == h:
        return im
    out = Image.new("RGB", (w, H), (255, 255, 255))
    out.paste(im, (0, 0))
    return out


def tile_grid(px: torch.Tensor, tile_size: int) -> Tuple[int, int]:
    """(rows, cols) of tiles in an HD tensor [1, 3, rows*S, cols*S]."""
    return px.shape[2] // tile_size, px.shape[3] // tile_size


def image_transform(im: Image.Image, cfg: ImagePreprocess, hd_num: int) -> torch.Tensor:
    """IXC Image_transform: transpose portrait, choose columns under hd_num, PIL bilinear, pad bottom, normalise."""
    S = cfg.tile_size
    trans = im.width < im.height
    if trans:
        im = im.transpose(Image.TRANSPOSE)
    w, h = im.size
    ratio = w / h
    scale = 1
    while scale * math.ceil(scale / ratio) <= hd_num:
        scale += 1
    scale -= 1
    scale = min(math.ceil(w / S), scale)
    new_w = int(scale * S)
    new_h = int(new_w / ratio)
    im = im.resize((new_w, new_h), Image.BILINEAR)
    im = _pad_bottom(im, S)
    if trans:
        im = im.transpose(Image.TRANSPOSE)
    return to_tensor(im, cfg.mean, cfg.std)


# ------------------------------------------------------------------------------------------------ videos
def sniff_demuxer(head: bytes) -> str:
    """Container from magic bytes (never ffmpeg's own probing)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    raise ValueError("unsupported video container")


def ffmpeg_argv(path: str, demuxer: str, fps: int, frame_cap: int) -> List[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file",
            "-f", demuxer, "-i", path, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", f"fps={fps}",
            "-frames:v", str(frame_cap), "-f", "image2pipe", "-c:v", "ppm", "-"]


def parse_ppm_stream(buf: bytes) -> List[Image.Image]:
    frames, i, n = [], 0, len(buf)
    while i < n:
        fields, j = [], i
        while len(fields) < 4:  # P6 w h maxval, whitespace separated, '#' comments
            while j < n and buf[j:j + 1].isspace():
                j += 1
            if buf[j:j + 1] == b"#":
                while j < n and buf[j:j + 1] != b"\n":
                    j += 1
                continue
            k = j
            while k < n and not buf[k:k + 1].isspace():
                k += 1
            fields.append(buf[j:k])
            j = k
        if fields[0] != b"P6":
            raise ValueError("not a P6 stream")
        w, h, mx = int(fields[1]), int(fields[2]), int(fields[3])
        if mx != 255:
            raise ValueError("16-bit PPM not expected")
        j += 1  # single whitespace after maxval
        size = w * h * 3
        frames.append(Image.frombytes("RGB", (w, h), buf[j:j + size]))
        i = j + size
    return frames


def decode_video(path: str, cfg: VideoPreprocess) -> List[Image.Image]:
    with open(path, "rb") as f:
        head = f.read(16)
    argv = ffmpeg_argv(path, sniff_demuxer(head), cfg.fps, cfg.frame_cap)
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=120)
    if out.returncode != 0:
        raise ValueError("ffmpeg failed: " + out.stderr.decode(errors="replace")[:500])
    frames = parse_ppm_stream(out.stdout)
    if not frames:
        raise ValueError("video has no frames")
    return select_frames(frames, cfg.max_frames)


def select_frames(frames: List, max_frames: int) -> List:
    n = len(frames)
    if n <= max_frames:
        return frames
    return [frames[(i * n) // (max_frames + 1)] for i in range(max_frames)]


def draw_label(canvas: np.ndarray, text: str, x0: int, y0: int, scale: int) -> None:
    x = x0
    for ch in text:
        g = GLYPHS[ch]
        for gy, row in enumerate(g):
            for gx, bit in enumerate(row):
                if bit == "1":
                    canvas[y0 + gy * scale:y0 + (gy + 1) * scale, x + gx * scale:x + (gx + 1) * scale] = 0
        x += (FONT_W + 1) * scale


def resize_long_side(im: Image.Image, long_side: int) -> Image.Image:
    w, h = im.size
    if w >= h:
        nw, nh = long_side, max(1, int(round(h * long_side / w)))
    else:
        nw, nh = max(1, int(round(w * long_side / h))), long_side
    return im.resize((nw, nh), Image.BILINEAR)


def layout_frames(frames: List[Image.Image], cfg: VideoPreprocess) -> Image.Image:
    """ixc_stack layout (see models/README.md §Video preprocessing 3)."""
    fr = [resize_long_side(f, cfg.frame_long_side) for f in frames]
    vertical = fr[-1].width >= fr[-1].height
    hh, gap, lw, sc = cfg.header_height, cfg.gap, cfg.line_width, cfg.label_scale
    line_off = (gap - lw) // 2
    n = len(fr)
    if vertical:
        W = max(f.width for f in fr)
        H = sum(hh + f.height for f in fr) + gap * (n - 1)
    else:
        W = sum(f.width for f in fr) + gap * (n - 1)
        H = hh + max(f.height for f in fr)
    canvas = np.full((H, W, 3), 255, dtype=np.uint8)
    pos = 0
    for i, f in enumerate(fr):
        a = np.asarray(f, dtype=np.uint8)
        if vertical:
            draw_label(canvas, f"<IMAGE {i}>", 2, pos + 2, sc)
            canvas[pos + hh:pos + hh + f.height, 0:f.width] = a
            pos += hh + f.height
            if i < n - 1:
                canvas[pos + line_off:pos + line_off + lw, :] = 0
                pos += gap
        else:
            draw_label(canvas, f"<IMAGE {i}>", pos + 2, 2, sc)
            canvas[hh:hh + f.height, pos:pos + f.width] = a
            pos += f.width
            if i < n - 1:
                canvas[:, pos + line_off:pos + line_off + lw] = 0
                pos += gap
    return Image.fromarray(canvas, "RGB")


def video_transform(im: Image.Image, cfg: ImagePreprocess) -> torch.Tensor:
    """IXC Video_transform: landscape, short side -> S (PIL bilinear), pad long side to a multiple of S at the end."""
    S = cfg.tile_size
    trans = im.width < im.height
    if trans:
        im = im.transpose(Image.TRANSPOSE)
    w, h = im.size
    new_h = S
    new_w = int(S * w / h)
    im = im.resize((new_w, new_h), Image.BILINEAR)
    W = int(math.ceil(new_w / S) * S)
    if W != new_w:
        out = Image.new("RGB", (W, new_h), (255, 255, 255))
        out.paste(im, (0, 0))
        im = out
    if trans:
        im = im.transpose(Image.TRANSPOSE)
    return to_tensor(im, cfg.mean, cfg.std)


# ------------------------------------------------------------------------------- published video layout
# The published path, ixc_utils.py of internlm/internlm-xcomposer2d5-7b-reward (load_video, frame2img,
# Video_transform), followed line by line; decord's VideoReader is replaced by ffprobe/ffmpeg (see
# models/README.md "published layout" for how the frame count and the frame numbering correspond).
LABEL_FONT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "label-font.ttf")
LABEL_FONT_FILE = "label-font.ttf"  # its name inside an exported model dir


def probe_frames(path: str, demuxer: str) -> Tuple[float, int]:
    """(avg_fps, frame count) as decord reports them: get_avg_fps() = avg_frame_rate.num / .den of the video
    stream (NaN for ffprobe's "0/0"), len(vid) = the number of demuxed packets of that stream."""
    argv = ["ffprobe", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file", "-format_whitelist", demuxer,
            "-f", demuxer, "-count_packets", "-select_streams", "v:0",
            "-show_entries", "stream=avg_frame_rate,nb_read_packets", "-of", "json", "-i", path]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=120)
    if out.returncode != 0:
        raise ValueError("ffprobe failed: " + out.stderr.decode(errors="replace")[:500])
    streams = json.loads(out.stdout).get("streams") or []
    if not streams:
        raise ValueError("no video stream")
    num, den = (float(x) for x in streams[0].get("avg_frame_rate", "0/0").split("/"))
    fps = num / den if den != 0 else float("nan")
    return fps, int(streams[0].get("nb_read_packets", 0))


def sample_positions(avg_fps: float, n_frames: int, fps: int, max_frames: int) -> List[int]:
    """load_video: t_stride = int(round(float(fps) / int(1))) (Python round, half to even; the published
    sample rate is the literal 1, ours `fps`), all_pos = range(0, len(vid), t_stride), and with more than num_frm
    of them: step_size = len / (num_frm + 1), indices = [int(i * step_size) for i in range(num_frm)].
    Raises ValueError where the published code does (NaN rate from round(), stride 0 from range())."""
    t_stride = int(round(float(avg_fps) / int(fps)))
    all_pos = list(range(0, n_frames, t_stride))
    if len(all_pos) > max_frames:
        step_size = len(all_pos) / (max_frames + 1)
        all_pos = [all_pos[int(i * step_size)] for i in range(max_frames)]
    return all_pos


def ffmpeg_select_argv(path: str, demuxer: str, positions: Sequence[int]) -> List[str]:
    """The service's argv (src/preprocess/video/ffmpeg.ts extractFramesAt): exact frame numbers, passthrough timing."""
    sel = "select=" + "+".join(f"eq(n\\,{k})" for k in positions)
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file",
            "-f", demuxer, "-i", path, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", sel, "-fps_mode", "passthrough",
            "-frames:v", str(len(positions)), "-f", "image2pipe", "-c:v", "ppm", "-"]


def load_video_published(path: str, cfg: VideoPreprocess) -> Tuple[List[Image.Image], List[int]]:
    """load_video(video_path, num_frm=32) -> (frames, their indices)."""
    with open(path, "rb") as f:
        demuxer = sniff_demuxer(f.read(16))
    avg_fps, n = probe_frames(path, demuxer)
    positions = sample_positions(avg_fps, n, cfg.fps, cfg.max_frames)
    if not positions:
        raise ValueError("video has no frames")
    out = subprocess.run(ffmpeg_select_argv(path, demuxer, positions), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         check=False, timeout=120)
    if out.returncode != 0:
        raise ValueError("ffmpeg failed: " + out.stderr.decode(errors="replace")[:500])
    frames = parse_ppm_stream(out.stdout)
    if not frames:
        raise ValueError("video has no decodable frames")
    # a packet that decodes to no frame: decord hands out its last decoded frame instead
    frames += [frames[-1]] * (len(positions) - len(frames))
    return frames, positions


_fonts: Dict[Tuple[str, int], ImageFont.FreeTypeFont] = {}


def label_font(size: int, path: str = LABEL_FONT) -> ImageFont.FreeTypeFont:
    """get_font(): ImageFont.truetype(SimHei.ttf, size=40); ours is assets/label-font.ttf (see its README)."""
    if (path, size) not in _fonts:
        _fonts[(path, size)] = ImageFont.truetype(path, size=size)
    return _fonts[(path, size)]


def frame2img(imgs: List[Image.Image], cfg: VideoPreprocess, font: ImageFont.FreeTypeFont) -> Image.Image:
    """frame2img(imgs, font) with the manifest's numbers (published: 560 * 2, pad 40, gap 10, line 2 at +5)."""
    L, pad, gap = cfg.frame_long_side, cfg.header_height, cfg.gap
    new_imgs = []
    for img in imgs:
        w, h = img.size
        scale = w / h
        if w > h:  # strict: a square frame takes the else branch
            new_w, new_h = L, int(L / scale)
        else:
            new_w, new_h = int(L * scale), L
        if new_w < 1 or new_h < 1:
            raise ValueError(f"video frame aspect ratio {w}:{h} is too extreme")
        new_imgs.append(img.resize((new_w, new_h), Image.BILINEAR))  # transforms.functional.resize on a PIL image
    imgs = new_imgs
    new_w = new_h = 0
    if w > h:  # w, h: the loop's leftover, the last ORIGINAL frame's size
        for im in imgs:
            new_w = max(new_w, im.size[0])
            new_h += im.size[1] + gap + pad  # the gap follows every frame, the last one too
        new_img = Image.new("RGB", (new_w, new_h), "white")
        draw = ImageDraw.Draw(new_img)
        curr_h = 0
        for idx, im in enumerate(imgs):
            w, h = im.size
            new_img.paste(im, (0, pad + curr_h))
            draw.text((0, curr_h), f"<IMAGE {idx}>", font=font, fill="black")
            if idx + 1 < len(imgs):
                draw.line([(0, pad + curr_h + h + 5), (new_w, pad + curr_h + h + 5)], fill="black", width=2)
            curr_h += h + gap + pad
    else:
        for im in imgs:
            new_w += im.size[0] + gap
            new_h = max(new_h, im.size[1])
        new_h += pad
        new_img = Image.new("RGB", (new_w, new_h), "white")
        draw = ImageDraw.Draw(new_img)
        curr_w = 0
        for idx, im in enumerate(imgs):
            w, h = im.size
            new_img.paste(im, (curr_w, pad))
            draw.text((curr_w, 0), f"<IMAGE {idx}>", font=font, fill="black")
            if idx + 1 < len(imgs):
                draw.line([(curr_w + w + 5, 0), (curr_w + w + 5, new_h)], fill="black", width=2)
            curr_w += w + gap
    return new_img


def video_transform_published_image(img: Image.Image, S: int) -> Image.Image:
    """Video_transform(img, hd_num) up to the tensor (hd_num is never read): new_w = int(560 * (w / h))."""
    width, height = img.size
    trans = False
    if width < height:
        img = img.transpose(Image.TRANSPOSE)
        trans = True
        width, height = img.size
    ratio = width / height
    new_h = int(1 * S)
    new_w = int(new_h * ratio)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    img = img.transpose(Image.TRANSPOSE)
    img = _pad_bottom(img, S)  # padding_336(img, 560): white at the bottom of the transposed image
    if not trans:
        img = img.transpose(Image.TRANSPOSE)
    return img


def published_canvas(path: str, cfg: VideoPreprocess, font_path: str = LABEL_FONT) -> Tuple[Image.Image, List[int]]:
    frames, positions = load_video_published(path, cfg)
    return frame2img(frames, cfg, label_font(cfg.label_font_size, font_path)), positions


def video_tensor(path: str, vcfg: VideoPreprocess, icfg: ImagePreprocess) -> torch.Tensor:
    if vcfg.layout == "published":
        canvas, _ = published_canvas(path, vcfg)
        return to_tensor(video_transform_published_image(canvas, icfg.tile_size), icfg.mean, icfg.std)
    if vcfg.layout != "ixc_stack":
        raise ValueError(f"unknown video layout {vcfg.layout!r}")
    return video_transform(layout_frames(decode_video(path, vcfg), vcfg), icfg)


def encode_video(frames: List[np.ndarray], path: str, fps="1") -> None:
    """Write real H.264 MP4 (yuv420p) with ffmpeg, used by the procedural generator; fps: a rate ffmpeg reads (25, "30000/1001")."""
    h, w, _ = frames[0].shape
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", path]
    p = subprocess.run(argv, input=b"".join(f.astype(np.uint8).tobytes() for f in frames),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("ffmpeg encode failed: " + p.stderr.decode(errors="replace")[:500])


class VideoEncoder:
    """encode_video, `workers` ffmpeg processes at a time; `with` waits for every file and raises the first failure.
    The frames are drawn by the caller before `submit`, so each file is the same bytes as one at a time (the argv is
    the same). Why: the 2 000 video pairs' encodes were 97 % of `generate` (0.2 s each, mostly ffmpeg's start-up),
    and two at once move 1.53x as many on 2 cores (trainer/README.md, session 22)."""

    def __init__(self, workers: int = 0):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1))
        self.jobs: list = []

    def submit(self, frames: List[np.ndarray], path: str, fps="1") -> None:
        self.jobs.append(self.pool.submit(encode_video, frames, path, fps))

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, kind, *_) -> None:
        self.pool.shutdown(wait=True)
        if kind is None:
            for j in self.jobs:
                j.result()
