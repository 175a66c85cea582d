"""Preference files for fine-tuning, checked record by record: the trainer's JSONL or a format the importers read
(hh-rlhf, LLaMA-Factory DPO), media paths relative to the file, and every bad record (invalid JSON, a missing or
mistyped field, a missing or undecodable image or video) reported as `file:line: reason`, then skipped or fatal.

`train`'s loader reads a whole generated file at once and trusts it; a user's file gets this one.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

from .data import MediaCache, PairExample, build_examples, length_filter
from .importers import import_hh_rlhf, import_llamafactory
from .tokenizer import TextTokenizer

FORMATS = ("jsonl", "hh-rlhf", "llamafactory")
ROLES = ("system", "user", "assistant")


class BadRecordError(ValueError):
    pass


def _records(path: str, fmt: str) -> List[Tuple[str, object]]:
    """-> [(where, record dict | error string)] in file order; where = path:line (path:record N for importer
    formats whose file is not one record per line)."""
    if fmt == "jsonl":
        out: List[Tuple[str, object]] = []
        op = gzip.open if path.endswith(".gz") else open
        with op(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append((f"{path}:{i}", json.loads(line)))
                except ValueError as e:
                    out.append((f"{path}:{i}", f"invalid JSON ({e})"))
        return out
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r} ({' | '.join(FORMATS)})")
    recs = import_hh_rlhf(path) if fmt == "hh-rlhf" else import_llamafactory(path)
    unit = "line" if path.endswith((".jsonl", ".jsonl.gz")) else "record"
    # the importers number ids by source row (0-based): that is the line of a one-row-per-line file
    return [(f"{path}:{'' if unit == 'line' else 'record '}{int(re.sub(r'.*-', '', r['id'])) + 1}", r) for r in recs]


def _message_error(m, what: str) -> Optional[str]:
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        return f"{what}: each message needs role and content"
    if m["role"] not in ROLES:
        return f"{what}: role {m['role']!r} is not one of {ROLES}"
    if not isinstance(m["content"], (str, list)):
        return f"{what}: content must be a string or a list of parts"
    return None


def record_error(rec, base_dir: str) -> Optional[str]:
    """Structure and media files of one record (decoding is checked when the pair is built)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for k in ("messages", "chosen", "rejected"):
        if k not in rec:
            return f"missing field {k!r}"
    if not isinstance(rec["messages"], list) or not rec["messages"]:
        return "messages must be a non-empty list"
    for i, m in enumerate(rec["messages"]):
        e = _message_error(m, f"messages[{i}]")
        if e:
            return e
    for k in ("chosen", "rejected"):
        v = rec[k]
        if isinstance(v, list):
            if not v:
                return f"{k} is an empty list"
            for i, m in enumerate(v):
                e = _message_error(m, f"{k}[{i}]")
                if e:
                    return e
        elif not isinstance(v, str):
            return f"{k} must be a string or a list of messages"
    items = []
    for k in ("images", "videos"):
        v = rec.get(k) or []
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            return f"{k} must be a list of paths"
        items += v
    if items and not any(m["role"] == "user" for m in rec["messages"]):
        return "media given but no user message to put it in"
    for p in items:
        if not os.path.isfile(os.path.join(base_dir, p)):
            return f"media file not found: {p} (paths are relative to the data file)"
    return None


def load_pairs(path: str, fmt: str, tok: TextTokenizer, cache: MediaCache, max_seq_len: int,
               tokens_per_image: Callable[[int, int], int], tcfg=None, length_ratio: float = 0.0,
               bad_lines: str = "skip", warn: Optional[Callable[[str], None]] = None) -> Tuple[List[PairExample], Dict]:
    """-> (examples, report {records, pairs, bad: [{where, error}], dropped_length_ratio, dropped_too_long}).
    bad_lines: skip (each reported through `warn`) | fatal (BadRecordError naming file:line)."""
    warn = warn or (lambda s: print(s, file=sys.stderr))
    base = os.path.dirname(os.path.abspath(path))
    bad: List[Dict] = []

    def reject(where: str, err: str) -> None:
        if bad_lines == "fatal":
            raise BadRecordError(f"{where}: {err}")
        bad.append({"where": where, "error": err})
        warn(f"skipping {where}: {err}")

    good: List[Tuple[str, Dict]] = []
    raw = _records(path, fmt)
    for where, rec in raw:
        err = rec if isinstance(rec, str) else record_error(rec, base)
        if err:
            reject(where, err)
        else:
            good.append((where, rec))  # type: ignore[arg-type]
    kept, dropped_len = length_filter([r for _, r in good], length_ratio)
    kept_ids = {id(r) for r in kept}
    out: List[PairExample] = []
    dropped_long = 0
    for where, rec in good:
        if id(rec) not in kept_ids:
            continue
        try:  # tokenizes and decodes the media: an unreadable image or video fails here
            ex, long_ = build_examples([rec], base, tok, cache, max_seq_len, tokens_per_image, tcfg)
        except Exception as e:  # PIL, ffmpeg, template errors: one bad record must not end the run
            reject(where, f"{type(e).__name__}: {str(e)[:300]}")
            continue
        out += ex
        dropped_long += long_
    return out, {"records": len(raw), "pairs": len(out), "bad": bad, "dropped_length_ratio": dropped_len,
                 "dropped_too_long": dropped_long}
