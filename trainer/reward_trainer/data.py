"""Preference data: the JSONL format, importers, the chat template (models/README.md §Text), batching.

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
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

ROLES = ("system", "user", "assistant")


# -------------------------------------------------------------------------------------------- template
class TextTokenizer:
    """SentencePiece ids for text runs (no BOS/EOS, no dummy prefix, user-defined markers atomic)."""

    def __init__(self, model_path: str):
        import sentencepiece as spm

        from .tokenizer_convert import special_ids

        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.ids = special_ids(model_path)
        self.bos_id, self.eos_id, self.pad_id = self.ids["bos_id"], self.ids["eos_id"], self.ids["eos_id"]
        self.reward_id = self.ids["reward"]
        self.vocab_size = self.sp.get_piece_size()

    def encode(self, text: str) -> List[int]:
        return self.sp.encode(text) if text else []


def _parts(content) -> List[Dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [dict(p) for p in content]


def _strip_parts(parts: List[Dict]) -> List[Dict]:
    """IXC content.strip(): leading whitespace of the first text part, trailing of the last text part."""
    texts = [i for i, p in enumerate(parts) if p["type"] == "text"]
    if texts:
        parts[texts[0]]["text"] = parts[texts[0]]["text"].lstrip()
        parts[texts[-1]]["text"] = parts[texts[-1]]["text"].rstrip()
    return parts


@dataclass
class Encoded:
    """One conversation as ids; `media` lists (position of the first media token, media index) in order."""
    ids: List[int]
    segments: List[Tuple[str, object]]  # ("text", [ids]) | ("media", media_index)
    truncated: bool = False


def build_segments(messages: List[Dict], tok: TextTokenizer) -> List[Tuple[str, object]]:
    """Template -> [("text", ids) | ("media", k)], with BOS first and EOS + reward token last."""
    segs: List[Tuple[str, object]] = [("text", [tok.bos_id])]
    media_k = 0
    for m in messages:
        role = m["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        parts = _strip_parts(_parts(m["content"]))
        run = f"[UNUSED_TOKEN_146]{role}\n"
        for p in parts:
            if p["type"] == "text":
                run += p["text"]
            elif p["type"] in ("image", "video"):
                segs.append(("text", tok.encode(run)))
                segs.append(("media", media_k))
                media_k += 1
                run = ""
            else:
                raise ValueError(f"unknown part type {p['type']!r}")
        run += "[UNUSED_TOKEN_145]\n"
        segs.append(("text", tok.encode(run)))
    segs.append(("text", [tok.eos_id, tok.reward_id]))
    return segs


def layout(segs, media_tokens: Sequence[int], max_seq_len: int, pad_id: int):
    """Flatten segments to (ids, media_spans[(start, k)], truncated) applying left truncation of text.

    Truncation `left` (text-only conversations): drop text tokens right after BOS until the sequence fits.
    A conversation with media that does not fit returns None (the service answers 422 input_too_long).
    """
    total = sum(len(s) if kind == "text" else media_tokens[s] for kind, s in segs)
    excess = total - max_seq_len
    truncated = excess > 0
    if excess > 0 and any(kind == "media" for kind, _ in segs):
        return None  # contract: a conversation with media that does not fit is an error, never truncated
    if excess > 0:
        # drop from the earliest text runs after BOS; never touch media or the final [EOS, reward]
        new = [segs[0]]
        for i, (kind, s) in enumerate(segs[1:], start=1):
            if kind == "text" and excess > 0 and i < len(segs) - 1:
                cut = min(excess, len(s))
                s = s[cut:]
                excess -= cut
            new.append((kind, s))
        if excess > 0:
            return None
        segs = new
    ids: List[int] = []
    spans: List[Tuple[int, int]] = []
    for kind, s in segs:
        if kind == "text":
            ids.extend(s)
        else:
            spans.append((len(ids), s))
            ids.extend([pad_id] * media_tokens[s])
    return ids, spans, truncated


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
        msgs[ui] = {"role": "user", "content": [{"type": k} for k, _ in media] + _parts(msgs[ui]["content"])}

    def tail(x):
        return [{"role": "assistant", "content": x}] if isinstance(x, str) else list(x)

    return msgs + tail(rec["chosen"]), msgs + tail(rec["rejected"]), media


def response_text(x) -> str:
    if isinstance(x, str):
        return x
    out = []
    for m in x:
        for p in _parts(m["content"]):
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


# --------------------------------------------------------------------------------------------- importers
def _hh_split(transcript: str) -> List[Dict]:
    """'\n\nHuman: …\n\nAssistant: …' -> messages."""
    msgs: List[Dict] = []
    text = transcript
    markers = (("\n\nHuman:", "user"), ("\n\nAssistant:", "assistant"))
    pos = 0
    cur_role, cur_start = None, 0
    while True:
        nxt = [(text.find(mk, pos), mk, role) for mk, role in markers]
        nxt = [x for x in nxt if x[0] >= 0]
        if not nxt:
            break
        i, mk, role = min(nxt)
        if cur_role is not None:
            msgs.append({"role": cur_role, "content": text[cur_start:i].strip()})
        cur_role, cur_start, pos = role, i + len(mk), i + len(mk)
    if cur_role is not None:
        msgs.append({"role": cur_role, "content": text[cur_start:].strip()})
    return msgs


def import_hh_rlhf(path: str, category: str = "hh-rlhf") -> List[Dict]:
    """Anthropic hh-rlhf: {"chosen": transcript, "rejected": transcript}; shared prefix = the prompt."""
    out = []
    for n, r in enumerate(read_jsonl(path)):
        c, j = _hh_split(r["chosen"]), _hh_split(r["rejected"])
        k = 0
        while k < min(len(c), len(j)) and c[k] == j[k]:
            k += 1
        # the last assistant turn differs; keep everything before the first difference as the prompt
        if k == len(c) or k == len(j) or not c or c[-1]["role"] != "assistant" or j[-1]["role"] != "assistant":
            continue
        prompt = c[:k]
        if not prompt or prompt[-1]["role"] != "user":
            continue
        out.append({"id": f"{category}-{n}", "category": category, "messages": prompt,
                    "chosen": c[k:], "rejected": j[k:], "images": [], "videos": []})
    return out


def _lf_role(x: str) -> str:
    return {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
            "system": "system", "observation": "user", "function_call": "assistant"}.get(x, "assistant")


def _lf_content(c) -> str:
    if isinstance(c, str):
        return c
    return "".join(p.get("value", p.get("text", "")) for p in c if p.get("type", "text") == "text")


def import_llamafactory(path: str, category: str = "llamafactory") -> List[Dict]:
    """LLaMA-Factory DPO data: sharegpt json ({conversations, chosen, rejected}) or the v1 jsonl
    ({chosen_messages, rejected_messages} with typed content parts)."""
    if path.endswith(".jsonl"):
        rows = read_jsonl(path)
    else:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    out = []
    for n, r in enumerate(rows):
        if "conversations" in r:
            msgs = [{"role": _lf_role(m["from"]), "content": m["value"]} for m in r["conversations"]]
            ch = [{"role": _lf_role(r["chosen"]["from"]), "content": r["chosen"]["value"]}]
            rj = [{"role": _lf_role(r["rejected"]["from"]), "content": r["rejected"]["value"]}]
            if r.get("system"):
                msgs.insert(0, {"role": "system", "content": r["system"]})
        elif "chosen_messages" in r:
            c = [{"role": _lf_role(m["role"]), "content": _lf_content(m["content"])} for m in r["chosen_messages"]]
            j = [{"role": _lf_role(m["role"]), "content": _lf_content(m["content"])} for m in r["rejected_messages"]]
            k = 0
            while k < min(len(c), len(j)) and c[k] == j[k]:
                k += 1
            msgs, ch, rj = c[:k], c[k:], j[k:]
        else:
            raise ValueError(f"{path}: row {n} is not a LLaMA-Factory DPO row")
        if not msgs or not ch or not rj:
            continue
        out.append({"id": f"{category}-{n}", "category": category, "messages": msgs, "chosen": ch, "rejected": rj,
                    "images": [], "videos": []})
    return out


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

    def pixels(self) -> List[torch.Tensor]:
        """One HD tensor per media item (recomputed unless the cache keeps them: cheap next to a training step)."""
        return [self.cache.get(k, p, n) for k, p, n in self.media] if self.media else []


class MediaCache:
    def __init__(self, image_cfg, video_cfg, keep: bool = True):
        self.icfg, self.vcfg, self.keep = image_cfg, video_cfg, keep
        self.cache: Dict[Tuple[str, str, int], torch.Tensor] = {}

    def get(self, kind: str, path: str, n_images: int) -> torch.Tensor:
        """n_images: images in the conversation (hd_num_multi applies when > 1; videos ignore hd_num)."""
        from . import media

        hd = self.icfg.hd_num if n_images <= 1 else self.icfg.hd_num_multi
        key = (kind, path, hd)
        if key in self.cache:
            return self.cache[key]
        if kind == "image":
            t = media.image_transform(media.load_image(path), self.icfg, hd)
        else:
            t = media.video_tensor(path, self.vcfg, self.icfg)
        if self.keep:
            self.cache[key] = t
        return t


def tokens_for_pixels(px: torch.Tensor, S: int, G: int) -> int:
    rows, cols = px.shape[2] // S, px.shape[3] // S
    return (rows * cols + 1) * G * G + 1 + (rows + 1) * G


def build_examples(records: List[Dict], base_dir: str, tok: TextTokenizer, cache: MediaCache, max_seq_len: int,
                   G: int) -> Tuple[List[PairExample], int]:
    """Tokenize + preprocess; returns (examples, dropped_too_long)."""
    out, dropped = [], 0
    S = cache.icfg.tile_size
    for r in records:
        c_msgs, r_msgs, media_items = record_conversations(r, base_dir)
        n_img = sum(1 for k, _ in media_items if k == "image")
        pixels = [cache.get(k, p, n_img) for k, p in media_items]
        mt = [tokens_for_pixels(px, S, G) for px in pixels]
        lc = layout(build_segments(c_msgs, tok), mt, max_seq_len, tok.pad_id)
        lr = layout(build_segments(r_msgs, tok), mt, max_seq_len, tok.pad_id)
        if lc is None or lr is None:
            dropped += 1
            continue
        out.append(PairExample(r.get("id", ""), r.get("category", "default"), lc[0], lr[0], lc[1], lr[1],
                               [(k, p, n_img) for k, p in media_items],
                               len(response_text(r["chosen"])), len(response_text(r["rejected"])), cache))
    return out, dropped


def collate(rows: List[Tuple[List[int], List[Tuple[int, int]]]], media_offsets: List[List[int]],
            media_tokens: List[List[int]], pad_id: int, M: int, D: int):
    """rows: (ids, spans) per conversation; media_offsets[i][k] = row offset of media k of row i in image_embeds.

    Returns the reward.onnx input dict (image_embeds filled by the caller)."""
    B, T = len(rows), max(len(ids) for ids, _ in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    image_positions = torch.zeros((B, T), dtype=torch.long)
    im_mask = torch.zeros((B, T), dtype=torch.float32)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    readout_index = torch.zeros((B,), dtype=torch.long)
    for i, (ids, spans) in enumerate(rows):
        L = len(ids)
        input_ids[i, :L] = torch.tensor(ids)
        attention_mask[i, :L] = 1
        readout_index[i] = L - 1
        for start, k in spans:
            n = media_tokens[i][k]
            image_positions[i, start:start + n] = torch.arange(media_offsets[i][k], media_offsets[i][k] + n)
            im_mask[i, start:start + n] = 1.0
    return {"input_ids": input_ids, "image_positions": image_positions, "im_mask": im_mask,
            "attention_mask": attention_mask, "readout_index": readout_index}


def batch_inputs(model, pairs: List[PairExample], pad_id: int, device: str):
    """Chosen rows first, rejected rows second; each pair's media is embedded once and shared by both rows."""
    per_ex = [ex.pixels() for ex in pairs]
    pix = [px.to(device) for p in per_ex for px in p]
    all_embeds = model.vision_forward_many(pix) if pix else []
    embeds, offsets, ntoks, off, j = [], [], [], 0, 0
    for ex_pix in per_ex:
        o, n = [], []
        for _ in ex_pix:
            e = all_embeds[j]
            j += 1
            embeds.append(e)
            o.append(off)
            n.append(e.shape[0])
            off += e.shape[0]
        offsets.append(o)
        ntoks.append(n)
    rows = [(ex.chosen_ids, ex.chosen_spans) for ex in pairs] + [(ex.rejected_ids, ex.rejected_spans) for ex in pairs]
    inp = collate(rows, offsets + offsets, ntoks + ntoks, pad_id, off, model.args.hidden_size)
    inp = {k: v.to(device) for k, v in inp.items()}
    if embeds:
        inp["image_embeds"] = torch.cat(embeds, 0)
    else:
        inp["image_embeds"] = torch.zeros(1, model.args.hidden_size, device=device)
    return inp


def _common_prefix(ex: PairExample) -> int:
    """Length of the shared prompt of a pair: never inside a media block that is not shared, and each reply
    keeps >= 1 token (the reward token)."""
    c, r = ex.chosen_ids, ex.rejected_ids
    p = 0
    lim = min(len(c), len(r)) - 1
    while p < lim and c[p] == r[p]:
        p += 1
    shared = set(ex.chosen_spans) & set(ex.rejected_spans)
    for span in ex.chosen_spans + ex.rejected_spans:
        if span not in shared:
            p = min(p, span[0])
    return p


def packed_scores(model, pairs: List[PairExample], pad_id: int, device: str):
    """(chosen scores, rejected scores) with one packed row per pair: [prompt | chosen reply | rejected reply].

    The rejected reply attends to the prompt and itself only, with positions continuing from the prompt, so each
    score equals the unpacked forward's (tested); the shared prompt and its media run through the model once."""
    per_ex = [ex.pixels() for ex in pairs]
    pix = [px.to(device) for p in per_ex for px in p]
    all_embeds = model.vision_forward_many(pix) if pix else []
    D = model.args.hidden_size
    rows = []
    off, j = 0, 0
    for ex, ex_pix in zip(pairs, per_ex):
        ntok, offs = [], []
        for _ in ex_pix:
            n = all_embeds[j].shape[0]
            j += 1
            offs.append(off)
            ntok.append(n)
            off += n
        c, r = ex.chosen_ids, ex.rejected_ids
        p = _common_prefix(ex)
        Lc, Lr = len(c), len(r)
        ids = c + r[p:]
        pos = list(range(Lc)) + list(range(p, Lr))
        img_pos = [0] * len(ids)
        im = [0.0] * len(ids)
        for spans, base, shift in ((ex.chosen_spans, 0, 0), (ex.rejected_spans, Lc - p, p)):
            for start, k in spans:
                if base and start < p:
                    continue  # the shared prompt's media is already in place
                for q in range(ntok[k]):
                    img_pos[base + start + q] = offs[k] + q
                    im[base + start + q] = 1.0
        rows.append((ids, pos, img_pos, im, Lc, p, Lr))
    B, T = len(rows), max(len(x[0]) for x in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    image_positions = torch.zeros((B, T), dtype=torch.long)
    im_mask = torch.zeros((B, T), dtype=torch.float32)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.zeros((B, T, T), dtype=torch.bool)
    ci, ri = torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)
    for b, (ids, pos, img_pos, im, Lc, p, Lr) in enumerate(rows):
        L = len(ids)
        input_ids[b, :L] = torch.tensor(ids)
        position_ids[b, :L] = torch.tensor(pos)
        image_positions[b, :L] = torch.tensor(img_pos)
        im_mask[b, :L] = torch.tensor(im)
        attention_mask[b, :L] = 1
        allowed[b, :Lc, :Lc] = torch.ones(Lc, Lc, dtype=torch.bool).tril()
        allowed[b, Lc:L, :p] = True
        allowed[b, Lc:L, Lc:L] = torch.ones(L - Lc, L - Lc, dtype=torch.bool).tril()
        ci[b], ri[b] = Lc - 1, L - 1
    E = torch.cat(all_embeds, 0) if all_embeds else torch.zeros(1, D, device=device)
    h = model.hidden_states(input_ids.to(device), E, image_positions.to(device), im_mask.to(device),
                            attention_mask.to(device), position_ids.to(device), allowed.to(device))
    ar = torch.arange(B, device=device)
    s = model.v_head(torch.stack([h[ar, ci.to(device)], h[ar, ri.to(device)]], 0)).squeeze(-1)
    return s[0], s[1]
