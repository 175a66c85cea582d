"""The chat template (models/README.md §Text): messages -> text runs and media slots -> ids with left truncation.

Pure: the tokenizer is passed in (anything with encode/bos_id/eos_id/reward_id), so tests use a fake one.

References for the published pipeline (`ixc_segments`, `slow_tokenize`): [RM] the reward model's
modeling_internlm_xcomposer2.py (internlm/internlm-xcomposer2d5-7b-reward: apply_chat_template, get_score),
[T433] transformers <= 4.33 tokenization_utils.py `PreTrainedTokenizer.tokenize` (the pinned slow tokenizer;
docs/install.md pins 4.30.2, the reward training README 4.33.2). models/README.md §Text has the behaviour.
"""
from __future__ import annotations

import re
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


class ContentTokenError(ValueError):
    """content_special_tokens = published: content the published tokenizer maps past the embedding table (the
    service answers 422 content_token_out_of_range)."""


def neutralize_content_pieces(text: str, pieces: Sequence[str]) -> List[str]:
    """Literal mode: cut `text` into chunks (tokenized one by one) so that no chunk holds an atomic piece whole:
    each leftmost occurrence is cut after its first character. Mirrors src/conversation/encode.ts."""
    cuttable = sorted((p for p in pieces if len(p) > 1), key=len, reverse=True)
    if not cuttable or not text:
        return [text]
    pat = re.compile("|".join(re.escape(p) for p in cuttable))
    out, rest = [], text
    m = pat.search(rest)
    while m:
        out.append(rest[:m.start() + 1])
        rest = rest[m.start() + 1:]
        m = pat.search(rest)
    out.append(rest)
    return out


def _neutral(tok, text: str) -> List[str]:
    return neutralize_content_pieces(text, getattr(tok, "atomic_pieces", ()))


def build_segments(messages: List[Dict], tok, tcfg=None) -> List[Tuple[str, object]]:
    """Template -> [("text", ids) | ("media", k)], with BOS first and EOS + reward token last (its own segment)."""
    if tcfg is not None and tcfg.media_placement == "ixc":
        return ixc_segments(messages, tok, tcfg)
    strip = tcfg.strip_content if tcfg is not None else True
    segs: List[Tuple[str, object]] = [("text", [tok.bos_id])]
    media_k = 0
    chunks: List[str] = []  # the current text run, tokenized chunk by chunk (literal mode cuts)

    def flush():
        ids = [i for c in chunks for i in tok.encode(c)]
        chunks.clear()
        return ids

    for m in messages:
        role = m["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        parts = content_parts(m["content"])
        if strip:
            parts = _strip_parts(parts)
        run = f"[UNUSED_TOKEN_146]{role}\n"
        for p in parts:
            if p["type"] == "text":
                pieces = _neutral(tok, p["text"])
                run += pieces[0]
                for c in pieces[1:]:
                    chunks.append(run)
                    run = c
            elif p["type"] in ("image", "video"):
                chunks.append(run)
                segs.append(("text", flush()))
                segs.append(("media", media_k))
                media_k += 1
                run = ""
            else:
                raise ValueError(f"unknown part type {p['type']!r}")
        run += "[UNUSED_TOKEN_145]\n"
        chunks.append(run)
        segs.append(("text", flush()))
    if tcfg is not None and tcfg.eos_newline == "strip":
        _strip_before_eos(segs, tok)
    segs.append(("text", [tok.eos_id, tok.reward_id]))
    return segs


def _strip_before_eos(segs, tok) -> None:
    """eos_newline = strip: the last turn's "\n" (after the atomic turn-end piece, so its ids are those of "\n")."""
    ws = tok.encode("\n")
    kind, ids = segs[-1]
    if kind == "text" and ids[len(ids) - len(ws):] == ws:
        segs[-1] = ("text", ids[:len(ids) - len(ws)])


# ------------------------------------------------------------------------------ the published layout (ixc)
MARKER = "<ImageHere>"
_MARK, _CUT = object(), object()


def slow_tokenize(text: str, tok, tcfg) -> List[int]:
    """The pinned slow tokenizer on one text part (transformers <= 4.33 `PreTrainedTokenizer.tokenize`): the text
    is split on special tokens first (`tokens_trie.split`, longest match), those become their ids, and the chunks
    go to SentencePiece one by one. Stripping: a special token held as a plain string strips the whitespace on
    both sides ("We strip left and right by default"); an AddedToken(lstrip=False, rstrip=False), the object form
    of special_tokens_map.json, strips nothing -- eos_newline keep/strip names the two cases (spec §3.3)."""
    controls = {"<s>": tok.bos_id, "</s>": tok.eos_id, "<unk>": tok.unk_id}
    bad = set(tcfg.out_of_table_tokens)
    keys = sorted(set(controls) | bad, key=len, reverse=True)
    pieces = re.split("(" + "|".join(re.escape(k) for k in keys) + ")", text)
    for i in range(1, len(pieces), 2):
        if pieces[i] in bad:
            # added tokens 92544-92549 >= vocab 92544: tok_embeddings fails on them in the published call
            raise ContentTokenError(f"content contains {pieces[i]!r}, past the embedding table")
        if tcfg.eos_newline == "strip":
            pieces[i - 1], pieces[i + 1] = pieces[i - 1].rstrip(), pieces[i + 1].lstrip()
    ids: List[int] = []
    for i, p in enumerate(pieces):
        ids.extend(tok.encode(p) if i % 2 == 0 else [controls[p]])
    return ids


def ixc_segments(messages: List[Dict], tok, tcfg) -> List[Tuple[str, object]]:
    """The published apply_chat_template (reward modeling_internlm_xcomposer2.py, `apply_template=True`), with our
    message parts: a media part stands where an `<ImageHere>` would when the conversation has several media items
    (the documented `Image1 <ImageHere>; Image2 <ImageHere>` form); a single item goes where the code puts an image
    it was given without a marker: in front of the prompt."""
    published = tcfg.content_special_tokens == "published"
    n = sum(1 for m in messages for p in content_parts(m["content"]) if p["type"] != "text")
    items: List[object] = []  # str | _MARK | _CUT
    for m in messages:
        role = m["role"]
        if role not in ROLES:  # published: NotImplementedError for any other role
            raise ValueError(f"unknown role {role!r}")
        parts = content_parts(m["content"])
        if tcfg.strip_content:  # published inference inserts {content} verbatim; training's conv2text strips
            parts = _strip_parts(parts)
        # [RM] apply_chat_template: one turn per message, header + raw content + turn end and newline
        items.append(f"[UNUSED_TOKEN_146]{role}\n")
        for p in parts:
            if p["type"] == "text":
                if published:  # a literal <ImageHere> in content splits the prompt like any marker
                    for j, s in enumerate(p["text"].split(MARKER)):
                        items.extend([_MARK, s] if j else [s])
                else:
                    for j, c in enumerate(_neutral(tok, p["text"])):
                        items.extend([_CUT, c] if j else [c])
            elif p["type"] in ("image", "video"):
                if n > 1:
                    items.append(_MARK)
            else:
                raise ValueError(f"unknown part type {p['type']!r}")
        items.append("[UNUSED_TOKEN_145]\n")
    if published:
        items.append("</s>[UNUSED_TOKEN_130]")  # prompt + '</s>' + '[UNUSED_TOKEN_130]', one string
    elif tcfg.eos_newline == "strip":
        items[-1] = items[-1].rstrip()
    # [RM] apply_chat_template: one media item and no marker in the prompt -> a marker is put in front of it
    if n == 1 and _MARK not in items:
        items.insert(0, _MARK)
    parts: List[List[object]] = [[]]  # prompt.split('<ImageHere>')
    for it in items:
        if it is _MARK:
            parts.append([])
        else:
            parts[-1].append(it)
    segs: List[Tuple[str, object]] = []
    for idx, part in enumerate(parts):
        # each part is tokenized on its own; only the first gets BOS (add_special_tokens=need_bos), even when
        # it is empty, so one image without a marker gives [BOS], image, `[UNUSED_TOKEN_146]user\n…`
        if idx == 0:
            segs.append(("text", [tok.bos_id]))  # a segment of its own: left truncation starts after it
        ids: List[int] = []
        chunks, cur = [], ""
        for it in part:
            if it is _CUT:
                chunks.append(cur)
                cur = ""
            else:
                cur += it
        chunks.append(cur)
        for c in chunks:
            ids.extend(slow_tokenize(c, tok, tcfg) if published else tok.encode(c))
        if ids:
            segs.append(("text", ids))
        if idx < n:  # media item idx goes after part idx; markers past the last item only split the text
            segs.append(("media", idx))
    if published:  # the suffix ids came out of the string; keep them a segment of their own for truncation
        kind, ids = segs[-1]
        if kind != "text" or ids[-2:] != [tok.eos_id, tok.reward_id]:
            raise ValueError("the published prompt must end with </s>[UNUSED_TOKEN_130]")
        segs[-1:] = [("text", ids[:-2])] if len(ids) > 2 else []
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
