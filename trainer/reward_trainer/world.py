"""The procedural world behind the default model's data: multi-domain preference pairs (`Gen`), the surface
forms each split may use, number words, and the drawing primitives (the `generate` stage writes pairs from it; the
`pretrain` stage draws its text and scenes from it).

Labels come from validator functions checked against ground truth (the paper's method for its math and
instruction-following data): a response is `chosen` only if its validator passes and `rejected` only if it fails;
the generator asserts both for every pair it writes.

Categories: arithmetic, instruction (verifiable constraints), image_count, image_color, image_position
(rendered with PIL), table (read-off), video_motion (direction of a moving ball: needs >1 frame; real H.264
files encoded with ffmpeg), length_trap (long wrong answer vs short right one).
"""
from __future__ import annotations

import os
import random
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .media import encode_video

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 200, 0),
          "purple": (140, 40, 180), "orange": (245, 130, 0)}
SHAPES = ["circle", "square", "triangle"]
NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety"}
NUMBER_WORD_RATE = 0.25  # answers spell their number this often, in both splits


def number_word(v: int) -> str:
    """0..99 in words ("forty-two"); negative numbers never occur in the generated answers."""
    if v < 20:
        return NUM_WORDS[v]
    t, u = TENS[v - v % 10], v % 10
    return t if u == 0 else f"{t}-{NUM_WORDS[u]}"


WORD_VALUES = {number_word(v): v for v in range(100)}


def numbers_in(s: str) -> List[int]:
    """Every number in a reply, written in digits or in words, in order (the validators' reader)."""
    out = []
    for tok in re.findall(r"-?\d+|[a-z]+(?:-[a-z]+)?", s.lower()):
        if tok.lstrip("-").isdigit():
            out.append(int(tok))
        elif tok in WORD_VALUES:
            out.append(WORD_VALUES[tok])
    return out


# Surface forms. Each pool is (forms both splits use, forms only the held-out split uses): the held-out split
# draws half of its phrasings from forms no training pair has, so its accuracy measures the skill and not the
# template (issue 15). Canvas sizes work the same way. The training pools hold 3-9 forms each (session 7; 1-5
# before): with one or two, the session-6 model was right on 100 % of instruction and 92 % of video questions in a
# training form and on 56 % and 61 % in a held-out one (trainer/README.md) -- it had learned the template.
FORMS: Dict[str, Tuple[List[str], List[str]]] = {
    "arith_q": (["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?", "Please calculate {a} {op} {b}.",
                 "What is {a} {opw} {b}?", "Evaluate {a} {op} {b}.", "I need the value of {a} {opw} {b}.",
                 "Quick question: {a} {op} {b}?", "Find {a} {opw} {b}."],
                ["How much is {a} {opw} {b}?", "Work out {a} {op} {b} for me.", "Tell me the result of {a} {op} {b}."]),
    "arith_a": (["{v}", "The answer is {v}.", "{a} {op} {b} = {v}", "It is {v}.", "Sure, {a} {op} {b} is {v}.", "I get {v}.",
                 "Answer: {v}"],
                ["That makes {v}.", "The result is {v}."]),
    "table_q": (["How many {it} are there according to the table?", "What count does the table give for {it}?",
                 "Using the table, how many {it} are there?", "Read the table. How many {it} does it show?",
                 "From the table: the number of {it}?"],
                ["According to the table, how many {it} are listed?", "Look at the table: how many {it}?"]),
    "table_a": (["{v}", "There are {v} {it}.", "The table says {v}.", "{v} {it}.", "It shows {v}.", "The count is {v}."], ["The table lists {v} {it}.", "I see {v}."]),
    "count_q": (["How many {s}s are in the image?", "Count the {s}s in the picture.", "How many {s}s does the picture contain?",
                 "Number of {s}s in this image?", "Please count every {s} in the image."],
                ["How many {s}s can you see?", "What is the number of {s}s shown?"]),
    "count_a": (["{v}", "There are {v}.", "I count {v} {s}s.", "{v} of them.", "There are {v} {s}s.", "My count is {v}."], ["The image has {v}.", "I can see {v}."]),
    "color_q": (["What colour is the {s}?", "What color is the {s}?", "Name the colour of the {s}.",
                 "What is the colour of the {s} in the picture?", "Colour of the {s}?"],
                ["Which colour does the {s} have?", "Tell me the colour of the {s}."]),
    "color_a": (["{v}", "It is {v}.", "The {s} is {v}.", "It's {v}.", "The {s} is coloured {v}.", "Its colour: {v}."], ["The colour is {v}.", "That {s} looks {v}."]),
    "pos_q": (["Is the {s} on the left or on the right?", "Is the {s} on the left side or the right side?",
               "On which side is the {s}: left or right?", "Is the {s} to the left or to the right?",
               "Tell me whether the {s} is on the left or the right."],
              ["Where is the {s}, left or right?", "Which side is the {s} on, left or right?"]),
    "pos_a": (["{v}", "On the {v}.", "The {s} is on the {v}.", "To the {v}.", "It appears on the {v}.",
               "The {s} is to the {v}."], ["It sits on the {v}.", "{V} side."]),
    "video_q": (["In which direction does the ball move?", "Which way does the ball go?",
                 "Which direction is the ball moving in?", "What direction does the ball travel?",
                 "The ball moves. In which direction?"],
                ["Where is the ball moving to?", "Describe the direction of the ball's motion."]),
    "video_a": (["{v}", "It moves {v}.", "The ball moves {v}.", "It travels {v}.", "The ball is moving {v}.",
                 "Direction: {v}.", "Moving {v}."], ["The ball goes {v}.", "Heading {v}."]),
    "instr_upper": (["Write one sentence about {subj}. Use only capital letters.",
                     "Write a sentence about {subj} in capital letters only.",
                     "Say one thing about {subj}. Every letter must be uppercase.",
                     "Write about {subj} in one sentence and do not use any lowercase letters."],
                    ["Reply with a single sentence about {subj}, all in upper case."]),
    "instr_lower": (["Write one sentence about {subj}. Use only lowercase letters.",
                     "Write a sentence about {subj} in small letters only.",
                     "Say one thing about {subj}. Every letter must be lowercase.",
                     "Write about {subj} in one sentence and do not use any capital letters."],
                    ["Give me one sentence about {subj} with no capital letters at all."]),
    "instr_words": (["Describe {subj} in exactly {k} words.", "Write exactly {k} words about {subj}.",
                     "In {k} words, no more and no fewer, describe {subj}."], ["Use exactly {k} words to talk about {subj}."]),
    "instr_end": (["Say something about {subj} and end your answer with the word \"{w}\".",
                   "Write about {subj}. The final word must be \"{w}\".",
                   "Describe {subj} so that your answer ends with \"{w}\"."],
                  ["Tell me about {subj}; the last word of your reply must be \"{w}\"."]),
    "instr_include": (["Write a sentence about {subj} that includes the word \"{w}\".",
                       "Say something about {subj} using the word \"{w}\".",
                       "Describe {subj}; your answer must contain \"{w}\"."],
                      ["Mention {subj} in one sentence and use the word \"{w}\" somewhere."]),
    "instr_start": (["Answer about {subj}, starting your answer with \"{w}\".",
                     "Write about {subj}. Your first word must be \"{w}\".",
                     "Start your reply with \"{w}\" and describe {subj}."],
                    ["Talk about {subj} and begin your reply with \"{w}\"."]),
}


def held_only_patterns() -> List["re.Pattern"]:
    """One regex per surface form only the held-out split may use (placeholders match anything): what the split
    tests check training text against, and what the held-out-by-form probe sorts pairs by."""
    return [re.compile(".*".join(re.escape(p) for p in re.split(r"\{[a-zA-Z]+\}", f)), re.S)
            for _, only in FORMS.values() for f in only]


# scene_text (pretraining only): how a described scene is introduced, and a moving ball's places in order
SCENE_SAYS = ["The picture shows {d}.", "In the image: {d}.", "Scene: {d}."]
SPOTS = {"x": ["at the far left", "on the left", "left of the middle", "in the middle", "right of the middle",
               "on the right", "at the far right"],
         "y": ["at the very top", "near the top", "above the middle", "in the middle", "below the middle",
               "near the bottom", "at the very bottom"]}
CANVASES = ([(112, 112)] * 6 + [(160, 112), (96, 112)], [(128, 128), (144, 104), (112, 96), (120, 140)])
OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}
ITEMS = ["apples", "pears", "books", "pens", "cups", "chairs", "lamps", "shoes", "coins", "boxes"]
SUBJECTS = ["the weather", "my garden", "a good book", "the city", "our team", "the river", "this song", "the market"]
FILLER = ["It is a nice day to go outside", "Many people enjoy this very much", "The plan worked well in the end",
          "We should talk about it again soon", "There is always more to learn here", "That was a simple idea",
          "Everyone agreed with the result", "The answer may surprise you"]


class Obj(NamedTuple):
    """A drawn shape: its kind, colour name, centre and radius in pixels."""
    shape: str
    color: str
    x: int
    y: int
    r: int


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


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
        self.heldout = split == "heldout"
        self.encode_video = encode_video  # generate_split hands it to a media.VideoEncoder
        if out_dir:
            os.makedirs(os.path.join(out_dir, "media", split), exist_ok=True)

    def form(self, name: str) -> str:
        """A surface form from the pool `name`: the held-out split takes half of its draws from its own forms."""
        both, held = FORMS[name]
        return self.rng.choice(held if self.heldout and self.rng.random() < 0.5 else both)

    def num(self, v: int) -> str:
        return number_word(v) if 0 <= v < 100 and self.rng.random() < NUMBER_WORD_RATE else str(v)

    def color(self, name: str) -> Tuple[int, int, int]:
        """The named colour with a random shade (each channel +-20), so a name is a range and not one RGB value."""
        return tuple(max(0, min(255, c + self.rng.randint(-20, 20))) for c in COLORS[name])  # type: ignore[return-value]

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
        q = self.form("arith_q").format(a=a, b=b, op=op, opw=OP_WORDS[op])
        fmt = self.form("arith_a")
        word = r.random() < NUMBER_WORD_RATE  # chosen and rejected spell their number the same way
        v, w = (number_word(truth), number_word(wrong)) if word else (truth, wrong)
        valid = lambda s: numbers_in(s)[-1] == truth
        return self._pair(n, "arithmetic", q, fmt.format(a=a, b=b, op=op, v=v), fmt.format(a=a, b=b, op=op, v=w), valid)

    def instruction(self, n: int) -> Dict:
        r = self.rng
        subj = r.choice(SUBJECTS)
        base = r.choice(FILLER)
        kind = r.choice(["upper", "lower", "words", "end", "include", "start"])
        if kind == "upper":
            q = self.form("instr_upper").format(subj=subj)
            good, bad = base.upper() + ".", base + "."
            valid = lambda s: s == s.upper()
        elif kind == "lower":
            q = self.form("instr_lower").format(subj=subj)
            good, bad = base.lower() + ".", base.upper() + "."
            valid = lambda s: s == s.lower()
        elif kind == "words":
            words = base.split()
            k = r.randint(2, min(6, len(words)))
            q = self.form("instr_words").format(subj=subj, k=NUM_WORDS[k])
            good = " ".join(words[:k]) + "."
            kb = max(1, min(len(words), k + r.choice([-1, 1, 2])))
            if kb == k:
                kb = k + 1
            bad = " ".join((words * 2)[:kb]) + "."
            valid = lambda s, k=k: len(s.split()) == k
        elif kind == "end":
            w = r.choice(["done", "thanks", "finally", "now"])
            q = self.form("instr_end").format(subj=subj, w=w)
            good, bad = f"{base} {w}.", f"{base}."
            valid = lambda s, w=w: s.rstrip(".").split()[-1] == w
        elif kind == "include":
            w = r.choice(["blue", "seven", "music", "light", "river"])
            q = self.form("instr_include").format(subj=subj, w=w)
            good, bad = f"{base} with {w}.", f"{base}."
            valid = lambda s, w=w: w in s.split() or w + "." in s.split()
        else:
            w = r.choice(["Yes", "No", "Sure", "Well"])
            q = self.form("instr_start").format(subj=subj, w=w)
            good, bad = f"{w}, {base[0].lower() + base[1:]}.", f"{base}."
            valid = lambda s, w=w: s.split()[0].strip(",") == w
        return self._pair(n, "instruction", q, good, bad, valid)

    def table(self, n: int) -> Dict:
        r = self.rng
        items = r.sample(ITEMS, r.randint(3, 4))
        counts = [r.randint(0, 9) for _ in items]
        i = r.randrange(len(items))
        rows = "\n".join(f"| {it} | {c} |" for it, c in zip(items, counts))
        q = f"| item | count |\n|---|---|\n{rows}\n\n" + self.form("table_q").format(it=items[i])
        wrong_opts = [c for c in set(counts) if c != counts[i]] or [(counts[i] + 1) % 10]
        wrong = r.choice(wrong_opts)
        fmt = self.form("table_a")
        word = r.random() < NUMBER_WORD_RATE
        v, w = (number_word(counts[i]), number_word(wrong)) if word else (counts[i], wrong)
        valid = lambda s: numbers_in(s)[-1] == counts[i]
        return self._pair(n, "table", q, fmt.format(v=v, it=items[i]), fmt.format(v=w, it=items[i]), valid)

    def length_trap(self, n: int) -> Dict:
        r = self.rng
        base = self.arithmetic(n) if r.random() < 0.5 else self.table(n)
        q = base["messages"][0]["content"]
        truth = str(numbers_in(base["chosen"])[-1])
        wrong = str(numbers_in(base["rejected"])[-1])
        long_wrong = (r.choice(["Let me think about this carefully, step by step.", "Good question! Let me work through it slowly and check every part."])
                      + " " + " ".join(r.sample(FILLER, 3)) + f". After checking everything twice, the final answer is {wrong}.")
        valid = lambda s: str(numbers_in(s)[-1]) == truth
        return self._pair(n, "length_trap", q, truth, long_wrong, valid)

    # --------------------------------------------------------------------------------- image categories
    def _canvas(self, size: Optional[Tuple[int, int]] = None) -> Tuple[Image.Image, ImageDraw.ImageDraw, int, int]:
        # mostly one tile; a wide image exercises the HD grid (2 columns), a small portrait one the transpose path
        both, held = CANVASES
        w, h = size or self.rng.choice(held if self.heldout and self.rng.random() < 0.5 else both)
        im = Image.new("RGB", (w, h), _bg(self.rng))
        return im, ImageDraw.Draw(im), w, h

    # Scenes: the image and what is in it (Obj), shared by the pairs below and the pretrain stage's labels.
    def count_scene(self, size: Optional[Tuple[int, int]] = None) -> Tuple[Image.Image, List[Obj]]:
        r = self.rng
        im, d, w, h = self._canvas(size)
        shape, k = r.choice(SHAPES), r.randint(1, 4)
        cname = r.choice(list(COLORS))
        color = self.color(cname)
        objs = []
        for x, y in _non_overlapping(r, k, w, h, 11):
            draw_shape(d, shape, x, y, 10, color)
            objs.append(Obj(shape, cname, x, y, 10))
        return im, objs

    def color_scene(self, size: Optional[Tuple[int, int]] = None) -> Tuple[Image.Image, List[Obj]]:
        r = self.rng
        im, d, w, h = self._canvas(size)
        shape, cname, rad = r.choice(SHAPES), r.choice(list(COLORS)), r.randint(18, 30)
        x, y = r.randint(rad + 2, w - rad - 3), r.randint(rad + 2, h - rad - 3)
        draw_shape(d, shape, x, y, rad, self.color(cname))
        return im, [Obj(shape, cname, x, y, rad)]

    def position_scene(self, size: Optional[Tuple[int, int]] = None) -> Tuple[Image.Image, List[Obj]]:
        """Two shapes, one in each half; the first Obj is the one a question asks about."""
        r = self.rng
        im, d, w, h = self._canvas(size)
        s1, s2 = r.sample(SHAPES, 2)
        n1, n2 = r.sample(list(COLORS), 2)
        left_first = r.random() < 0.5
        xl, xr = r.randint(14, w // 2 - 16), r.randint(w // 2 + 16, w - 15)
        x1, x2 = (xl, xr) if left_first else (xr, xl)
        y1, y2 = r.randint(14, h - 15), r.randint(14, h - 15)
        draw_shape(d, s1, x1, y1, 12, self.color(n1))
        draw_shape(d, s2, x2, y2, 12, self.color(n2))
        return im, [Obj(s1, n1, x1, y1, 12), Obj(s2, n2, x2, y2, 12)]

    def motion_frames(self) -> Tuple[List[np.ndarray], str]:
        """3-4 frames of a ball moving one way (the start is random, so one frame does not tell) and the way."""
        r = self.rng
        W, H, k = 96, 64, r.choice([3, 4])
        horizontal = r.random() < 0.6
        sign = r.choice([-1, 1])
        step = r.randint(14, 18) if horizontal else r.randint(8, 10)
        span = step * (k - 1)
        lim = W if horizontal else H
        start = r.randint(10, lim - 11 - span) if sign > 0 else r.randint(10 + span, lim - 11)
        other = r.randint(10, (H if horizontal else W) - 11)
        color = self.color(r.choice(list(COLORS)))
        bg = _bg(r)
        frames = []
        for i in range(k):
            im = Image.new("RGB", (W, H), bg)
            d = ImageDraw.Draw(im)
            p = start + sign * step * i
            x, y = (p, other) if horizontal else (other, p)
            d.ellipse([x - 8, y - 8, x + 8, y + 8], fill=color)
            frames.append(np.asarray(im))
        return frames, {(True, 1): "right", (True, -1): "left", (False, 1): "down", (False, -1): "up"}[(horizontal, sign)]

    def image_count(self, n: int) -> Dict:
        r = self.rng
        im, objs = self.count_scene()
        shape, k = objs[0].shape, len(objs)
        path = self.save_image(im, f"{n:06d}")
        wrong = r.choice([c for c in range(1, 6) if c != k])
        fmt = self.form("count_a")
        word = r.random() < NUMBER_WORD_RATE
        v, wv = (number_word(k), number_word(wrong)) if word else (k, wrong)
        valid = lambda s: numbers_in(s)[0] == k
        return self._pair(n, "image_count", self.form("count_q").format(s=shape), fmt.format(v=v, s=shape),
                          fmt.format(v=wv, s=shape), valid, images=[path])

    def image_color(self, n: int) -> Dict:
        r = self.rng
        im, (o,) = self.color_scene()
        path = self.save_image(im, f"{n:06d}")
        wrong = r.choice([c for c in COLORS if c != o.color])
        fmt = self.form("color_a")
        valid = lambda s: o.color in s.lower().replace(".", " ").split()
        return self._pair(n, "image_color", self.form("color_q").format(s=o.shape), fmt.format(v=o.color, s=o.shape),
                          fmt.format(v=wrong, s=o.shape), valid, images=[path])

    def image_position(self, n: int) -> Dict:
        im, objs = self.position_scene()
        o, other = objs
        path = self.save_image(im, f"{n:06d}")
        truth, wrong = ("left", "right") if o.x < other.x else ("right", "left")
        fmt = self.form("pos_a")
        valid = lambda s: truth in s.lower().replace(".", " ").split()
        rec = self._pair(n, "image_position", self.form("pos_q").format(s=o.shape),
                         fmt.format(v=truth, V=truth.capitalize(), s=o.shape),
                         fmt.format(v=wrong, V=wrong.capitalize(), s=o.shape), valid, images=[path])
        # what is where in the picture, and which object the question names: the Bradley-Terry stage's look-up
        # hint (scene_tokens.annotate_lookup) aims the answer's attention at that object's vision tokens
        rec["scene"] = {"image": 0, "asked": 0, "objects": [list(x) for x in objs]}
        return rec

    def video_motion(self, n: int) -> Dict:
        r = self.rng
        frames, truth = self.motion_frames()
        rel = os.path.join("media", self.split, f"{n:06d}.mp4")
        self.encode_video(frames, os.path.join(self.out, rel), fps=1)
        wrong = {"right": "left", "left": "right", "down": "up", "up": "down"}[truth]
        if r.random() < 0.3:
            wrong = r.choice([d for d in ("left", "right", "up", "down") if d != truth])
        fmt = self.form("video_a")
        valid = lambda s: truth in s.replace(".", " ").split()
        return self._pair(n, "video_motion", self.form("video_q"), fmt.format(v=truth), fmt.format(v=wrong), valid,
                          videos=[rel])

    # ------------------------------------------------------------------------ scenes told in words (pretraining)
    def scene_text(self, n: int) -> Dict:
        """An image category's question about a scene described in words instead of shown (the text stage's
        category; never a generated pair). Why: the decoder's tied embeddings of words no text category uses
        ("left", "circle", "up", most colours) collapse to one shared direction during the text stage (the
        softmax pushes every unused row the same way: cosine 0.99 between "left" and "right"), so neither the
        vision stage's readout nor the Bradley-Terry stage could tell them apart. Told scenes give each word its
        own meaning, in the replies' own phrasings."""
        r = self.rng
        kind = r.choice(("position", "count", "color", "motion"))
        c1, c2 = r.sample(list(COLORS), 2)
        s1, s2 = r.sample(SHAPES, 2)
        if kind == "position":
            truth = r.choice(("left", "right"))
            wrong = "right" if truth == "left" else "left"
            said = [f"{_a(c1)} {s1} on the {truth}", f"{_a(c2)} {s2} on the {wrong}"]
            r.shuffle(said)
            fmt = self.form("pos_a")
            q, good, bad = self.form("pos_q").format(s=s1), fmt.format(v=truth, V=truth.capitalize(), s=s1), \
                fmt.format(v=wrong, V=wrong.capitalize(), s=s1)
            valid = lambda s: truth in s.lower().replace(".", " ").split()
            desc = " and ".join(said)
        elif kind == "count":
            k = r.randint(1, 4)
            wrong = r.choice([c for c in range(1, 6) if c != k])
            fmt = self.form("count_a")
            word = r.random() < NUMBER_WORD_RATE
            v, wv = (number_word(k), number_word(wrong)) if word else (k, wrong)
            q, good, bad = self.form("count_q").format(s=s1), fmt.format(v=v, s=s1), fmt.format(v=wv, s=s1)
            valid = lambda s: numbers_in(s)[0] == k
            desc = f"{self.num(k)} {c1} {s1}{'s' if k > 1 else ''}" + (f" and {_a(c2)} {s2}" if r.random() < 0.5 else "")
        elif kind == "color":
            fmt = self.form("color_a")
            q, good, bad = self.form("color_q").format(s=s1), fmt.format(v=c1, s=s1), fmt.format(v=c2, s=s1)
            valid = lambda s: c1 in s.lower().replace(".", " ").split()
            desc = f"{_a(c1)} {s1}" + (f" next to {_a(c2)} {s2}" if r.random() < 0.5 else "")
        else:  # the ball's places frame by frame, so the direction is read from their order, not copied
            truth = r.choice(("left", "right", "up", "down"))
            places = SPOTS["x" if truth in ("left", "right") else "y"]
            k = r.choice((3, 4))
            start = r.randint(0, len(places) - k)
            seq = places[start:start + k]
            if truth in ("left", "up"):
                seq = seq[::-1]
            desc = f"{_a(c1)} ball " + ", then ".join(seq)
            wrong = {"right": "left", "left": "right", "down": "up", "up": "down"}[truth]
            if r.random() < 0.3:
                wrong = r.choice([d for d in ("left", "right", "up", "down") if d != truth])
            fmt = self.form("video_a")
            q, good, bad = self.form("video_q"), fmt.format(v=truth), fmt.format(v=wrong)
            valid = lambda s: truth in s.replace(".", " ").split()
        return self._pair(n, f"scene_{kind}", r.choice(SCENE_SAYS).format(d=desc) + " " + q, good, bad, valid)

    # ----------------------------------------------------------------------------------------- helpers
    def _pair(self, n, cat, q, good, bad, valid: Callable[[str], bool], images=(), videos=()) -> Dict:
        assert valid(good), (cat, q, good)
        assert not valid(bad), (cat, q, bad)
        return {"id": f"{self.split}-{n:06d}", "category": cat, "messages": [{"role": "user", "content": q}],
                "chosen": good, "rejected": bad, "images": list(images), "videos": list(videos)}
