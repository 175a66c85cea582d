"""The chat template (models/README.md §Text): messages -> text runs and media slots -> ids with left truncation.

Pure: the tokenizer is passed in (anything with encode/bos_id/eos_id/reward_id), so tests use a fake one.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

ROLES = ("system", "user", "assistant")


def content_parts(content) -> List[Dict]:
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


def build_segments(messages: List[Dict], tok) -> List[Tuple[str, object]]:
    """Template -> [("text", ids) | ("media", k)], with BOS first and EOS + reward token last."""
    segs: List[Tuple[str, object]] = [("text", [tok.bos_id])]
    media_k = 0
    for m in messages:
        role = m["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        parts = _strip_parts(content_parts(m["content"]))
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


def strip_media_data(messages):
    """messages with media parts reduced to {"type"} (for the template builder)."""
    out = []
    for m in messages:
        c = m["content"]
        if isinstance(c, list):
            c = [{"type": p["type"]} if p["type"] != "text" else dict(p) for p in c]
        out.append({"role": m["role"], "content": c})
    return out
