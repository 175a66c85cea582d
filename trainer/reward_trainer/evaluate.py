"""Pairwise accuracy overall / per category, and length-bias figures."""
from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Dict, List

from .checkpoint import load_checkpoint, preprocess_configs
from .config import template_config
from .data import MediaCache, PairExample, build_examples, read_jsonl
from .model_io import score_pairs
from .tokenizer import TextTokenizer


def _pearson(x: List[float], y: List[float]) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    return 0.0 if sx == 0 or sy == 0 else sxy / (sx * sy)


def summarize(examples: List[PairExample], scores) -> Dict:
    per = defaultdict(lambda: [0, 0])
    correct = 0
    lens, vals = [], []
    longer_wins = [0, 0]
    for ex, (c, r) in zip(examples, scores):
        ok = c > r
        correct += ok
        per[ex.category][0] += ok
        per[ex.category][1] += 1
        lens += [ex.chosen_len, ex.rejected_len]
        vals += [c, r]
        if ex.chosen_len != ex.rejected_len:
            longer_wins[1] += 1
            longer_wins[0] += (c > r) == (ex.chosen_len > ex.rejected_len)
    n = max(1, len(examples))
    trap = per.get("length_trap", [0, 0])
    return {
        "pairs": len(examples),
        "accuracy": round(correct / n, 4),
        "per_category": {k: {"pairs": v[1], "accuracy": round(v[0] / v[1], 4)} for k, v in sorted(per.items())},
        "length_bias": {
            "length_trap_accuracy": round(trap[0] / trap[1], 4) if trap[1] else None,
            "score_length_pearson": round(_pearson([float(l) for l in lens], vals), 4),
            "longer_preferred_rate": round(longer_wins[0] / longer_wins[1], 4) if longer_wins[1] else None,
        },
    }


def evaluate(model, examples: List[PairExample], pad_id: int, device: str) -> Dict:
    return summarize(examples, score_pairs(model, examples, pad_id, device))


def checkpoint_examples(ckpt: str, data: str, tokenizer: str, device: str = "cpu"):
    """A checkpoint and a JSONL file's pairs prepared as it was trained (its max_seq_len, preprocessing and
    pipeline) -> (model, tokenizer, examples, pairs dropped as too long)."""
    model, state = load_checkpoint(ckpt, device)
    tok = TextTokenizer(tokenizer)
    cache = MediaCache(*preprocess_configs(state))
    exs, dropped = build_examples(read_jsonl(data), os.path.dirname(os.path.abspath(data)), tok, cache,
                                  state["train_config"]["max_seq_len"], model.tokens_per_image,
                                  template_config(state["train_config"].get("pipeline", "default")))
    return model, tok, exs, dropped


def evaluate_checkpoint(ckpt: str, data: str, tokenizer: str, device: str = "cpu") -> Dict:
    """The `evaluate` stage: a checkpoint on a JSONL file (no length constraint: held-out pairs are scored as
    they are; pairs too long for max_seq_len are dropped and counted)."""
    model, tok, exs, dropped = checkpoint_examples(ckpt, data, tokenizer, device)
    res = evaluate(model, exs, tok.pad_id, device)
    res["dropped_too_long"] = dropped
    return res
