"""Importers: public preference formats -> the trainer JSONL records (see data.py)."""
from __future__ import annotations

import json
from typing import Dict, List

from .data import read_jsonl


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
