"""Pairwise accuracy overall / per category, and length-bias figures."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List

from .data import PairExample
from .model_io import score_pairs


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
