"""Procedural multi-domain preference data. Labels come from validator functions checked against ground truth
(the paper's method for its math and instruction-following data): a response is `chosen` only if its validator
passes and `rejected` only if it fails; the generator asserts both for every pair it writes.

Categories: arithmetic, instruction (verifiable constraints), image_count, image_color, image_position
(rendered with PIL), table (read-off), video_motion (direction of a moving ball: needs >1 frame; real H.264
files encoded with ffmpeg), length_trap (long wrong answer vs short right one).
"""
from __future__ import annotations

import os
import random
import re
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .config import GenConfig
from .data import write_jsonl
from .media import encode_video

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 200, 0),
          "purple": (140, 40, 180), "orange": (245, 130, 0)}
SHAPES = ["circle", "square", "triangle"]
NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ITEMS = ["apples", "pears", "books", "pens", "cups", "chairs", "lamps", "shoes", "coins", "boxes"]
SUBJECTS = ["the weather", "my garden", "a good book", "the city", "our team", "the river", "this song", "the market"]
FILLER = ["It is a nice day to go outside", "Many people enjoy this very much", "The plan worked well in the end",
          "We should talk about it again soon", "There is always more to learn here", "That was a simple idea",
          "Everyone agreed with the result", "The answer may surprise you"]


def _bg(rng: random.Random) -> Tuple[int, int, int]:
    g = rng.randint(235, 255)
    return (g, g, g)


def draw_shape(d: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, color) -> None:
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)


def _non_overlapping(rng: random.Random, n: int, w: int, h: int, r: int) -> List[Tuple[int, int]]:
    pts: List[Tuple[int, int]] = []
    for _ in range(1000):
        if len(pts) == n:
            break
        x, y = rng.randint(r + 2, w - r - 3), rng.randint(r + 2, h - r - 3)
        if all((x - a) ** 2 + (y - b) ** 2 > (2 * r + 4) ** 2 for a, b in pts):
            pts.append((x, y))
    if len(pts) < n:
        raise RuntimeError("could not place shapes")
    return pts


class Gen:
    def __init__(self, out_dir: str, split: str, rng: random.Random):
        self.out, self.split, self.rng = out_dir, split, rng
        os.makedirs(os.path.join(out_dir, "media", split), exist_ok=True)

    def save_image(self, im: Image.Image, name: str) -> str:
        rel = os.path.join("media", self.split, name + ".png")
        im.save(os.path.join(self.out, rel))
        return rel

    # ---------------------------------------------------------------------------------- text categories
    def arithmetic(self, n: int) -> Dict:
        r = self.rng
        op = r.choice(["+", "-", "*"])
        a, b = r.randint(0, 9), r.randint(0, 9)
        if op == "-" and b > a:
            a, b = b, a
        truth = {"+": a + b, "-": a - b, "*": a * b}[op]
        wrong = truth + r.choice([-3, -2, -1, 1, 2, 3])
        if wrong < 0:
            wrong = truth + r.randint(1, 3)
        q = r.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?", "Please calculate {a} {op} {b}."])
        fmt = r.choice(["{v}", "The answer is {v}.", "{a} {op} {b} = {v}", "It is {v}."])
        q = q.format(a=a, b=b, op=op)
        valid = lambda s: re.findall(r"-?\d+", s)[-1] == str(truth)
        return self._pair(n, "arithmetic", q, fmt.format(a=a, b=b, op=op, v=truth), fmt.format(a=a, b=b, op=op, v=wrong), valid)

    def instruction(self, n: int) -> Dict:
        r = self.rng
        subj = r.choice(SUBJECTS)
        base = r.choice(FILLER)
        kind = r.choice(["upper", "lower", "words", "end", "include", "start"])
        if kind == "upper":
            q = f"Write one sentence about {subj}. Use only capital letters."
            good, bad = base.upper() + ".", base + "."
            valid = lambda s: s == s.upper()
        elif kind == "lower":
            q = f"Write one sentence about {subj}. Use only lowercase letters."
            good, bad = base.lower() + ".", base.upper() + "."
            valid = lambda s: s == s.lower()
        elif kind == "words":
            words = base.split()
            k = r.randint(2, min(6, len(words)))
            q = f"Describe {subj} in exactly {NUM_WORDS[k]} words."
            good = " ".join(words[:k]) + "."
            kb = max(1, min(len(words), k + r.choice([-1, 1, 2])))
            if kb == k:
                kb = k + 1
            bad = " ".join((words * 2)[:kb]) + "."
            valid = lambda s, k=k: len(s.split()) == k
        elif kind == "end":
            w = r.choice(["done", "thanks", "finally", "now"])
            q = f"Say something about {subj} and end your answer with the word \"{w}\"."
            good, bad = f"{base} {w}.", f"{base}."
            valid = lambda s, w=w: s.rstrip(".").split()[-1] == w
        elif kind == "include":
            w = r.choice(["blue", "seven", "music", "light", "river"])
            q = f"Write a sentence about {subj} that includes the word \"{w}\"."
            good, bad = f"{base} with {w}.", f"{base}."
            valid = lambda s, w=w: w in s.split() or w + "." in s.split()
        else:
            w = r.choice(["Yes", "No", "Sure", "Well"])
            q = f"Answer about {subj}, starting your answer with \"{w}\"."
            good, bad = f"{w}, {base[0].lower() + base[1:]}.", f"{base}."
            valid = lambda s, w=w: s.split()[0].strip(",") == w
        return self._pair(n, "instruction", q, good, bad, valid)

    def table(self, n: int) -> Dict:
        r = self.rng
        items = r.sample(ITEMS, r.randint(3, 4))
        counts = [r.randint(0, 9) for _ in items]
        i = r.randrange(len(items))
        rows = "\n".join(f"| {it} | {c} |" for it, c in zip(items, counts))
        q = f"| item | count |\n|---|---|\n{rows}\n\nHow many {items[i]} are there according to the table?"
        wrong_opts = [c for c in set(counts) if c != counts[i]] or [(counts[i] + 1) % 10]
        wrong = r.choice(wrong_opts)
        fmt = r.choice(["{v}", "There are {v} {it}.", "The table says {v}."])
        valid = lambda s: re.findall(r"\d+", s)[-1] == str(counts[i])
        return self._pair(n, "table", q, fmt.format(v=counts[i], it=items[i]), fmt.format(v=wrong, it=items[i]), valid)

    def length_trap(self, n: int) -> Dict:
        r = self.rng
        base = self.arithmetic(n) if r.random() < 0.5 else self.table(n)
        q = base["messages"][0]["content"]
        truth = re.findall(r"-?\d+", base["chosen"])[-1]
        wrong = re.findall(r"-?\d+", base["rejected"])[-1]
        long_wrong = (r.choice(["Let me think about this carefully, step by step.", "Good question! Let me work through it slowly and check every part."])
                      + " " + " ".join(r.sample(FILLER, 3)) + f". After checking everything twice, the final answer is {wrong}.")
        valid = lambda s: re.findall(r"-?\d+", s)[-1] == truth
        return self._pair(n, "length_trap", q, truth, long_wrong, valid)

    # --------------------------------------------------------------------------------- image categories
    def _canvas(self) -> Tuple[Image.Image, ImageDraw.ImageDraw, int, int]:
        # mostly one tile; a wide image exercises the HD grid (2 columns), a small portrait one the transpose path
        w, h = self.rng.choice([(112, 112)] * 6 + [(160, 112), (96, 112)])
        im = Image.new("RGB", (w, h), _bg(self.rng))
        return im, ImageDraw.Draw(im), w, h

    def image_count(self, n: int) -> Dict:
        r = self.rng
        im, d, w, h = self._canvas()
        shape, k = r.choice(SHAPES), r.randint(1, 4)
        color = r.choice(list(COLORS.values()))
        for x, y in _non_overlapping(r, k, w, h, 11):
            draw_shape(d, shape, x, y, 10, color)
        path = self.save_image(im, f"{n:06d}")
        wrong = r.choice([c for c in range(1, 6) if c != k])
        fmt = r.choice(["{v}", "There are {v}.", "I count {v} {s}s."])
        valid = lambda s: re.findall(r"\d+", s)[0] == str(k)
        return self._pair(n, "image_count", f"How many {shape}s are in the image?", fmt.format(v=k, s=shape),
                          fmt.format(v=wrong, s=shape), valid, images=[path])

    def image_color(self, n: int) -> Dict:
        r = self.rng
        im, d, w, h = self._canvas()
        shape = r.choice(SHAPES)
        cname = r.choice(list(COLORS))
        rad = r.randint(18, 30)
        draw_shape(d, shape, r.randint(rad + 2, w - rad - 3), r.randint(rad + 2, h - rad - 3), rad, COLORS[cname])
        path = self.save_image(im, f"{n:06d}")
        wrong = r.choice([c for c in COLORS if c != cname])
        fmt = r.choice(["{v}", "It is {v}.", "The {s} is {v}."])
        valid = lambda s: cname in s.lower().replace(".", " ").split()
        return self._pair(n, "image_color", f"What colour is the {shape}?", fmt.format(v=cname, s=shape),
                          fmt.format(v=wrong, s=shape), valid, images=[path])

    def image_position(self, n: int) -> Dict:
        r = self.rng
        im, d, w, h = self._canvas()
        s1, s2 = r.sample(SHAPES, 2)
        c1, c2 = r.sample(list(COLORS.values()), 2)
        left_first = r.random() < 0.5
        xl, xr = r.randint(14, w // 2 - 16), r.randint(w // 2 + 16, w - 15)
        x1, x2 = (xl, xr) if left_first else (xr, xl)
        draw_shape(d, s1, x1, r.randint(14, h - 15), 12, c1)
        draw_shape(d, s2, x2, r.randint(14, h - 15), 12, c2)
        path = self.save_image(im, f"{n:06d}")
        truth = "left" if left_first else "right"
        wrong = "right" if left_first else "left"
        fmt = r.choice(["{v}", "On the {v}.", "The {s} is on the {v}."])
        valid = lambda s: truth in s.replace(".", " ").split()
        return self._pair(n, "image_position", f"Is the {s1} on the left or on the right?", fmt.format(v=truth, s=s1),
                          fmt.format(v=wrong, s=s1), valid, images=[path])

    def video_motion(self, n: int) -> Dict:
        r = self.rng
        W, H, k = 96, 64, r.choice([3, 4])
        horizontal = r.random() < 0.6
        sign = r.choice([-1, 1])
        step = r.randint(14, 18) if horizontal else r.randint(8, 10)
        span = step * (k - 1)
        lim = W if horizontal else H
        start = r.randint(10, lim - 11 - span) if sign > 0 else r.randint(10 + span, lim - 11)
        other = r.randint(10, (H if horizontal else W) - 11)
        color = r.choice(list(COLORS.values()))
        bg = _bg(r)
        frames = []
        for i in range(k):
            im = Image.new("RGB", (W, H), bg)
            d = ImageDraw.Draw(im)
            p = start + sign * step * i
            x, y = (p, other) if horizontal else (other, p)
            d.ellipse([x - 8, y - 8, x + 8, y + 8], fill=color)
            frames.append(np.asarray(im))
        rel = os.path.join("media", self.split, f"{n:06d}.mp4")
        encode_video(frames, os.path.join(self.out, rel), fps=1)
        truth = {(True, 1): "right", (True, -1): "left", (False, 1): "down", (False, -1): "up"}[(horizontal, sign)]
        wrong = {"right": "left", "left": "right", "down": "up", "up": "down"}[truth]
        if r.random() < 0.3:
            wrong = r.choice([d for d in ("left", "right", "up", "down") if d != truth])
        fmt = r.choice(["{v}", "It moves {v}.", "The ball moves {v}."])
        valid = lambda s: truth in s.replace(".", " ").split()
        return self._pair(n, "video_motion", "In which direction does the ball move?", fmt.format(v=truth),
                          fmt.format(v=wrong), valid, videos=[rel])

    # ----------------------------------------------------------------------------------------- helpers
    def _pair(self, n, cat, q, good, bad, valid: Callable[[str], bool], images=(), videos=()) -> Dict:
        assert valid(good), (cat, q, good)
        assert not valid(bad), (cat, q, bad)
        return {"id": f"{self.split}-{n:06d}", "category": cat, "messages": [{"role": "user", "content": q}],
                "chosen": good, "rejected": bad, "images": list(images), "videos": list(videos)}


def generate_split(out_dir: str, split: str, n: int, seed: int, categories: List[str]) -> List[Dict]:
    g = Gen(out_dir, split, random.Random(seed))
    recs = []
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
