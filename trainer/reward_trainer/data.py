"""Preference data: the JSONL format, the length constraint, and tokenized + preprocessed pair examples.

JSONL record: {"id", "category", "messages": [{"role", "content"}], "chosen", "rejected", "images": [paths],
"videos": [paths]}. `chosen`/`rejected` are the assistant reply (a string) or a list of messages appended to
`messages`. Media paths are relative to the JSONL file; the trainer puts them at the start of the first user
message (IXC's single-image layout). Any message `content` may also be a list of parts
({"type": "text", "text"} | {"type": "image", "path"} | {"type": "video", "path"}).
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import media
from .template import ContentTokenError, build_segments, content_parts, layout
from .tokenizer import TextTokenizer


# ---------------------------------------------------------------------------------------------- records
def read_jsonl(path: str) -> List[Dict]:
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def record_conversations(rec: Dict, base_dir: str) -> Tuple[List[Dict], List[Dict], List[Tuple[str, str]]]:
    """-> (chosen messages, rejected messages, media [(kind, abs path)]) with media inline in the first user turn."""
    msgs = [dict(m) for m in rec["messages"]]
    media = [("image", os.path.join(base_dir, p)) for p in rec.get("images") or []]
    media += [("video", os.path.join(base_dir, p)) for p in rec.get("videos") or []]
    if media:
        ui = next(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs[ui] = {"role": "user", "content": [{"type": k} for k, _ in media] + content_parts(msgs[ui]["content"])}

    def tail(x):
        return [{"role": "assistant", "content": x}] if isinstance(x, str) else list(x)

    return msgs + tail(rec["chosen"]), msgs + tail(rec["rejected"]), media


def response_text(x) -> str:
    if isinstance(x, str):
        return x
    out = []
    for m in x:
        for p in content_parts(m["content"]):
            if p["type"] == "text":
                out.append(p["text"])
    return "".join(out)


def length_filter(records: List[Dict], ratio: float) -> Tuple[List[Dict], int]:
    """The paper's length constraint: drop pairs whose chosen response is much longer than the rejected one
    (len(chosen) > ratio * len(rejected), in characters). ratio <= 0 disables it."""
    if ratio <= 0:
        return records, 0
    kept = [r for r in records
            if len(response_text(r["chosen"])) <= ratio * max(1, len(response_text(r["rejected"])))]
    return kept, len(records) - len(kept)


def write_jsonl(records: List[Dict], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------- dataset
@dataclass
class PairExample:
    rid: str
    category: str
    chosen_ids: List[int]
    rejected_ids: List[int]
    chosen_spans: List[Tuple[int, int]]
    rejected_spans: List[Tuple[int, int]]
    media: List[Tuple[str, str, int]] = field(default_factory=list)  # (kind, path, images in conversation)
    chosen_len: int = 0
    rejected_len: int = 0
    cache: Optional["MediaCache"] = None
    # the look-up hint's (query position, the named object's token positions) in the chosen row
    # (scene_tokens.annotate_lookup)
    lookup: Optional[Tuple[int, List[int]]] = None

    def pixels(self) -> List[torch.Tensor]:
        """One HD tensor per media item (recomputed unless the cache keeps them: cheap next to a training step)."""
        return [self.cache.get(k, p, n) for k, p, n in self.media] if self.media else []


class MediaCache:
    def __init__(self, image_cfg, video_cfg, keep: bool = True, half: bool = False):
        """keep: remember every tensor; half: remember it as float16 (half the memory of a training set's media;
        returned as float32, so the model sees the rounded pixels: ~1e-3 of the normalised range)."""
        self.icfg, self.vcfg, self.keep, self.half = image_cfg, video_cfg, keep, half
        self.cache: Dict[Tuple[str, str, int], torch.Tensor] = {}

    def get(self, kind: str, path: str, n_images: int) -> torch.Tensor:
        """n_images: the conversation's count for hd_num_multi (see count()); applies when > 1; videos ignore hd_num."""
        return self.get_key(self.key(kind, path, n_images))

    def key(self, kind: str, path: str, n_images: int) -> Tuple[str, str, int]:
        return kind, path, self.hd_num(n_images)

    def get_key(self, key: Tuple[str, str, int]) -> torch.Tensor:
        kind, path, hd = key
        if key in self.cache:
            return self.cache[key].float()
        if kind == "image":
            t = media.image_transform(media.load_image(path, self.icfg.decode), self.icfg, hd)
        else:
            t = media.video_tensor(path, self.vcfg, self.icfg)
        if self.keep:
            self.cache[key] = t.half() if self.half else t
            return self.cache[key].float()
        return t

    def hd_num(self, n_images: int) -> int:
        return self.icfg.hd_num if n_images <= 1 else self.icfg.hd_num_multi

    def conversation(self, items: List[Tuple[str, str]]) -> List[torch.Tensor]:
        """One tensor per (kind, path) of one conversation."""
        n = self.count(items)
        return [self.get(k, p, n) for k, p in items]

    def count(self, items: List[Tuple[str, str]]) -> int:
        """What hd_num_multi counts: images, or (multi_count = media) every item, as the published
        rule does ([RM] apply_chat_template: hd_num 6 when the media list holds more than one item, videos included)."""
        return len(items) if self.icfg.multi_count == "media" else sum(1 for k, _ in items if k == "image")

    def media_tokens(self, pixels: List[torch.Tensor], tokens_per_image: Callable[[int, int], int]) -> List[int]:
        """Token count of each tensor's image block; tokens_per_image(rows, cols) is the model's."""
        return [tokens_per_image(*media.tile_grid(px, self.icfg.tile_size)) for px in pixels]


def build_examples(records: List[Dict], base_dir: str, tok: TextTokenizer, cache: MediaCache, max_seq_len: int,
                   tokens_per_image: Callable[[int, int], int], tcfg=None,
                   annotate: Optional[Callable[[Dict, PairExample], None]] = None) -> Tuple[List[PairExample], int]:
    """Tokenize + preprocess; returns (examples, dropped: too long, or content the published tokenizer cannot
    embed under the ixc pipeline). `annotate(record, example)` runs on every kept example (e.g. the look-up
    hint's targets: scene_tokens.annotate_lookup)."""
    out, dropped = [], 0
    for r in records:
        c_msgs, r_msgs, media_items = record_conversations(r, base_dir)
        n_img = cache.count(media_items)
        mt = cache.media_tokens(cache.conversation(media_items), tokens_per_image)
        try:
            lc = layout(build_segments(c_msgs, tok, tcfg), mt, max_seq_len, tok.pad_id)
            lr = layout(build_segments(r_msgs, tok, tcfg), mt, max_seq_len, tok.pad_id)
        except ContentTokenError:
            lc = lr = None
        if lc is None or lr is None:
            dropped += 1
            continue
        ex = PairExample(r.get("id", ""), r.get("category", "default"), lc[0], lr[0], lc[1], lr[1],
                         [(k, p, n_img) for k, p in media_items],
                         len(response_text(r["chosen"])), len(response_text(r["rejected"])), cache)
        if annotate is not None:
            annotate(r, ex)
        out.append(ex)
    return out, dropped
