import json
import os
import re

import numpy as np

from reward_trainer.config import GenConfig, VideoPreprocess
from reward_trainer.generate import generate
from reward_trainer.world import CANVASES, FORMS, OP_WORDS, held_only_patterns, number_word, numbers_in
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
            q = r["messages"][0]["content"]
            for op, word in OP_WORDS.items():
                q = q.replace(f" {word} ", f" {op} ")
            a, op, b = re.match(r"\D*(\d+) ([-+*]) (\d+)", q).groups()
            assert numbers_in(r["chosen"])[-1] == eval(f"{a}{op}{b}") != numbers_in(r["rejected"])[-1]


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


def test_numbers_in_reads_digits_and_words():
    assert numbers_in("The answer is forty-two.") == [42]
    assert numbers_in("7 - 3 = 4") == [7, 3, 4]
    assert numbers_in("I count three circles, not 5.") == [3, 5]
    assert [number_word(v) for v in (0, 13, 20, 81)] == ["zero", "thirteen", "twenty", "eighty-one"]
    assert all(numbers_in(number_word(v)) == [v] for v in range(100))


def test_no_training_form_reads_as_a_held_out_one():
    """Every form of the training pools, its placeholders filled with words, matches no held-out-only form (the
    generated check below sees only the forms its seed happens to draw)."""
    held_only = held_only_patterns()
    for name, (both, _) in FORMS.items():
        for f in both:
            text = re.sub(r"\{[a-zA-Z]+\}", "seven", f)
            assert not [rx.pattern for rx in held_only if rx.fullmatch(text)], (name, f)


def test_heldout_varies_surface_form_and_shares_nothing_with_training(tmp_path):
    """Issue 15: the held-out split uses phrasings and canvas sizes no training pair has, its own seed, and no
    media file of the training split; a model that learned the template and not the skill scores lower there."""
    from PIL import Image
    import hashlib

    cats = GenConfig().categories
    generate(GenConfig(out=str(tmp_path), train_pairs=len(cats) * 40, heldout_pairs=len(cats) * 40, seed=11))
    train = [json.loads(l) for l in open(tmp_path / "train.jsonl")]
    held = [json.loads(l) for l in open(tmp_path / "heldout.jsonl")]

    def texts(recs):
        return [r["messages"][0]["content"] for r in recs] + [r["chosen"] for r in recs] + [r["rejected"] for r in recs]

    held_only = held_only_patterns()
    # anchored at the end: a held-out-only form never closes a training prompt or reply
    train_hits = [t for t in texts(train) for rx in held_only if rx.fullmatch(t.split("\n\n")[-1])]
    held_hits = [t for t in texts(held) for rx in held_only if rx.fullmatch(t.split("\n\n")[-1])]
    assert not train_hits, train_hits[:3]
    assert len(held_hits) > len(held) // 4  # about half of the held-out questions and replies use unseen forms

    def sizes(recs):
        return {Image.open(tmp_path / r["images"][0]).size for r in recs if r["images"]}

    assert sizes(train) <= set(CANVASES[0])
    assert sizes(held) & set(CANVASES[1])  # sizes the training split never has

    def digests(recs):
        return {hashlib.sha256(open(tmp_path / p, "rb").read()).hexdigest() for r in recs for p in r["images"] + r["videos"]}

    assert not digests(train) & digests(held)
    assert any(re.search(r"[a-z]+-?[a-z]*", r["chosen"]) and numbers_in(r["chosen"]) and not re.search(r"\d", r["chosen"])
               for r in train if r["category"] in ("arithmetic", "table", "image_count"))  # number words in training too


def test_video_encodes_run_side_by_side_and_write_the_same_files(tmp_path):
    """generate_split's VideoEncoder: with 3 encodes at a time the records and every media file are the bytes one at a
    time writes, all written by the time it returns; a failed encode is raised, not lost."""
    import hashlib

    import pytest

    from reward_trainer import media
    from reward_trainer.generate import generate_split

    def files(d):
        return {p: hashlib.sha256(open(os.path.join(d, "media", "train", p), "rb").read()).hexdigest()
                for p in sorted(os.listdir(os.path.join(d, "media", "train")))}

    cats = ["video_motion", "image_color"]
    one = generate_split(str(tmp_path / "one"), "train", 12, 5, cats, workers=1)
    three = generate_split(str(tmp_path / "three"), "train", 12, 5, cats, workers=3)
    assert one == three
    a, b = files(tmp_path / "one"), files(tmp_path / "three")
    assert a == b and sum(p.endswith(".mp4") for p in a) == 6
    for p in a:
        if p.endswith(".mp4"):
            assert len(decode_video(str(tmp_path / "three" / "media" / "train" / p), VideoPreprocess())) >= 2

    real = media.encode_video
    try:
        def broken(frames, path, fps="1"):
            if path.endswith("000002.mp4"):
                raise RuntimeError("x")
            real(frames, path, fps)
        media.encode_video = broken
        with pytest.raises(RuntimeError):
            generate_split(str(tmp_path / "bad"), "train", 8, 5, cats, workers=2)
    finally:
        media.encode_video = real
