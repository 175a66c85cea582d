"""Stage: write the procedural train / held-out preference sets (world.Gen) and the tokenizer corpus."""
from __future__ import annotations

import os
import random
from typing import Dict, List

from .config import GenConfig
from .data import write_jsonl
from .media import VideoEncoder
from .world import Gen
def generate_split(out_dir: str, split: str, n: int, seed: int, categories: List[str], workers: int = 0) -> List[Dict]:
    """`workers` ffmpeg encodes at a time (0: one per core); the records and files do not depend on it."""
    g = Gen(out_dir, split, random.Random(seed))
    recs = []
    with VideoEncoder(workers) as enc:
        g.encode_video = enc.submit
        for i in range(n):
            cat = categories[i % len(categories)]
            recs.append(getattr(g, cat)(i))
    random.Random(seed + 7).shuffle(recs)
    write_jsonl(recs, os.path.join(out_dir, f"{split}.jsonl"))
    return recs


def generate(cfg: GenConfig) -> Dict[str, int]:
    os.makedirs(cfg.out, exist_ok=True)
    tr = generate_split(cfg.out, "train", cfg.train_pairs, cfg.seed, cfg.categories)
    ho = generate_split(cfg.out, "heldout", cfg.heldout_pairs, cfg.seed + 1_000_003, cfg.categories)
    return {"train": len(tr), "heldout": len(ho)}


def tokenizer_corpus(records: List[Dict]) -> List[str]:
    """Text the default vocabulary is trained on: the generated conversations in template form + a small
    general-purpose seed so imported chat data does not fall back to bytes everywhere."""
    out = []
    for r in records:
        for m in r["messages"]:
            out.append(f"[UNUSED_TOKEN_146]{m['role']}\n{m['content']}[UNUSED_TOKEN_145]\n")
        for x in (r["chosen"], r["rejected"]):
            out.append(f"[UNUSED_TOKEN_146]assistant\n{x}[UNUSED_TOKEN_145]\n")
    out += GENERAL_TEXT
    return out


GENERAL_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Human: How can I help you today?\n\nAssistant: I am happy to answer questions about anything you like.",
    "I'm sorry, but I can't help with that request. Is there something else you would like to know?",
    "Here are some ideas: first, make a plan; second, ask a friend; third, take a short break and try again.",
    "Python is a programming language. def main():\n    print('hello world')\n    return 0\n",
    "Please write a short story about a cat who learns to read, in three paragraphs.",
    "The image shows a person standing next to a red car on a sunny street.",
    "In the video, a dog runs across the yard and catches a ball.",
    "There are many reasons why people choose to live in cities, including work, culture and transport.",
    "你好，世界。今天天气很好。",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14",
] * 20
