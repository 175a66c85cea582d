import json
import os
import re

import numpy as np

from reward_trainer.config import GenConfig, VideoPreprocess
from reward_trainer.generate import generate
from reward_trainer.media import decode_video


def test_generator_categories_labels_and_media(tmp_path):
    cats = GenConfig().categories
    counts = generate(GenConfig(out=str(tmp_path), train_pairs=len(cats) * 3, heldout_pairs=len(cats), seed=7))
    assert counts == {"train": len(cats) * 3, "heldout": len(cats)}
    train = [json.loads(l) for l in open(tmp_path / "train.jsonl")]
    held = [json.loads(l) for l in open(tmp_path / "heldout.jsonl")]
    assert {r["category"] for r in train} == set(cats) and {r["category"] for r in held} == set(cats)
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    for r in train + held:
        assert r["chosen"] != r["rejected"]
        for p in r["images"] + r["videos"]:
            assert os.path.isfile(tmp_path / p)
        if r["category"] == "length_trap":
            assert len(r["rejected"]) > 3 * len(r["chosen"])  # long wrong vs short right
        if r["category"] in ("image_count", "image_color", "image_position"):
            assert len(r["images"]) == 1 and not r["videos"]
        if r["category"] == "arithmetic":
            a, op, b = re.match(r"\D*(\d+) ([-+*]) (\d+)", r["messages"][0]["content"]).groups()
            assert re.findall(r"-?\d+", r["chosen"])[-1] == str(eval(f"{a}{op}{b}"))


def test_video_motion_needs_several_frames_and_matches_label(tmp_path):
    generate(GenConfig(out=str(tmp_path), train_pairs=16, heldout_pairs=0, seed=3, categories=["video_motion"]))
    recs = [json.loads(l) for l in open(tmp_path / "train.jsonl")]
    for r in recs:
        frames = [np.asarray(f).astype(int) for f in decode_video(str(tmp_path / r["videos"][0]), VideoPreprocess())]
        assert len(frames) >= 3
        # centroid of the non-background (saturated) pixels per frame
        cents = []
        for f in frames:
            sat = (f.max(-1) - f.min(-1)) > 80
            ys, xs = np.nonzero(sat)
            cents.append((xs.mean(), ys.mean()))
        dx, dy = cents[-1][0] - cents[0][0], cents[-1][1] - cents[0][1]
        truth = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert truth in r["chosen"].replace(".", " ").split() and truth not in r["rejected"].replace(".", " ").split()
