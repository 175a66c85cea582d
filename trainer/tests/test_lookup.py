"""The Bradley-Terry stage's look-up hint: where the named object's vision tokens are, the data that carries them,
the attention term, and its effect when trained (trainer/README.md, session 14)."""
import dataclasses
import json
import random

import pytest
import torch
from PIL import Image, ImageDraw

from reward_trainer.config import ImagePreprocess, ModelArgs, VideoPreprocess, VisionArgs
from reward_trainer.data import MediaCache, build_examples, read_jsonl
from reward_trainer.model import IXCRewardModel
from reward_trainer.model_io import arm_lookup, lookup_hint_loss, packed_forward
from reward_trainer.scene_tokens import annotate_lookup, object_tokens
from reward_trainer.world import CANVASES, Gen, Obj, draw_shape
from test_model import image_and_text_pairs, small

SIZES = sorted(set(CANVASES[0] + CANVASES[1])) + [(300, 120), (120, 300), (250, 250)]


class InkViT(torch.nn.Module):
    """Stands in for the CLIP tower: each patch's feature is the ink (1 - red channel, the image un-normalised)
    it holds, in channel 0. Through the model's own crop / merge / separator code (vision_proj an identity,
    separators zero) every token of the block then carries the ink its crop shows there: the layout the model
    really has, worked out by none of scene_tokens' code."""

    def __init__(self, patch: int, width: int):
        super().__init__()
        self.patch, self.width = patch, width

    def forward(self, crops):
        n, _, S, _ = crops.shape
        P = S // self.patch
        ink = (1.0 - crops[:, 0]).clamp(0, 1).reshape(n, P, self.patch, P, self.patch).mean(dim=(2, 4))
        out = torch.zeros(n, 1 + P * P, self.width)
        out[:, 1:, 0] = ink.reshape(n, P * P)
        return out


def ink_model() -> IXCRewardModel:
    v = VisionArgs(width=8, layers=1, heads=2, patch=14, tile_size=112)
    m = IXCRewardModel(ModelArgs(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                 intermediate_size=32, vision=v))
    m.vit.vision_tower.vision_model = InkViT(14, 8)
    m.vision_proj = torch.nn.Identity()
    with torch.no_grad():
        m.plora_glb_GN.zero_()
        m.plora_sub_GN.zero_()
    return m


@pytest.mark.parametrize("size", SIZES)
def test_object_tokens_are_the_tokens_that_show_the_object_in_each_view(size):
    m = ink_model()
    G, W = m.G, 8
    icfg = dataclasses.replace(ImagePreprocess(tile_size=112), mean=[0.0] * 3, std=[1.0] * 3)
    rng = random.Random(hash(size) & 0xFFFF)
    for shape in ("circle", "square", "triangle"):
        for _ in range(2):
            w, h = size
            o = Obj(shape, "red", rng.randint(14, w - 15), rng.randint(14, h - 15), 12)
            im = Image.new("RGB", size, (255, 255, 255))
            draw_shape(ImageDraw.Draw(im), o.shape, o.x, o.y, o.r, (0, 0, 0))
            for hd in (1, 4, 9):
                from reward_trainer import media

                with torch.no_grad():
                    seq = m.vision_forward(media.image_transform(im, icfg, hd))
                ink = sum(seq[:, k * W] for k in range(4))  # the 2x2 merge's four patches
                split = G * (G + 1)  # the global view's block, then the separator, then the tiles
                got = set(object_tokens(o, size, icfg, hd, G, 0.2))
                assert got and all(j < seq.shape[0] for j in got)
                for view in (ink[:split], ink[split + 1:]):
                    base = 0 if view.shape[0] == split else split + 1
                    share = view / view.sum()
                    best = base + int(view.argmax())
                    assert best in got, (size, hd, o)  # the token showing the most of it
                    clear = {base + int(j) for j in torch.nonzero(share >= 0.3).flatten()}
                    assert clear <= got, (size, hd, o, clear - got)  # and every token showing much of it
                # nothing that shows none of it (bicubic's ringing aside: a trace of ink)
                assert all(float(ink[j]) > 1e-3 for j in got), (size, hd, o)


def test_object_tokens_follow_the_share():
    icfg = ImagePreprocess(tile_size=112)
    o = Obj("square", "red", 56, 56, 30)  # spans the four middle tile cells' corners and more
    few, many = object_tokens(o, (112, 112), icfg, 1, 4, 0.6), object_tokens(o, (112, 112), icfg, 1, 4, 0.0)
    assert set(few) < set(many)
    # no token holds all of an object that straddles cells: each view still names the one holding most
    tilted = Obj("circle", "red", 40, 30, 12)
    best = object_tokens(tilted, (112, 112), icfg, 1, 4, 1.01)
    assert len(best) == 2 and set(best) <= set(object_tokens(tilted, (112, 112), icfg, 1, 4, 0.2))


def test_position_pairs_record_their_scene_and_the_object_asked_about(tmp_path):
    gen = Gen(str(tmp_path), "train", random.Random(3))
    for n in range(40):
        r = gen.image_position(n)
        sc = r["scene"]
        asked, other = (Obj(*x) for x in (sc["objects"][sc["asked"]], sc["objects"][1 - sc["asked"]]))
        assert sc["image"] == 0 and asked.shape in r["messages"][0]["content"]
        side = "left" if asked.x < other.x else "right"
        assert side in r["chosen"].lower() and side not in r["rejected"].lower()
        with Image.open(tmp_path / r["images"][0]) as im:
            px = im.convert("RGB").getpixel((asked.x, asked.y))
        assert max(px) - min(px) > 40, "the asked object (a saturated colour on grey) is drawn where the scene says"
    assert "scene" not in gen.image_count(99) and "scene" not in gen.arithmetic(98)


def test_examples_carry_look_up_targets_only_when_asked_for(tiny_run):
    run, _ = tiny_run
    from reward_trainer.config import template_config
    from reward_trainer.tokenizer import TextTokenizer

    tok = TextTokenizer(str(run / "tokenizer" / "tokenizer.model"))
    recs = read_jsonl(str(run / "data" / "train.jsonl"))
    assert any(r["category"] == "image_position" for r in recs)
    m = small()
    icfg = ImagePreprocess(tile_size=56, hd_num=4)
    cache = MediaCache(icfg, VideoPreprocess())
    tcfg = template_config("ixc", None, "literal")
    off, _ = build_examples(recs, str(run / "data"), tok, cache, 4096, m.tokens_per_image, tcfg)
    on, _ = build_examples(recs, str(run / "data"), tok, cache, 4096, m.tokens_per_image, tcfg,
                           annotate_lookup(str(run / "data"), cache, m.G, 0.2))
    assert not any(e.lookup for e in off)
    for e in on:
        if e.category != "image_position":
            assert e.lookup is None
            continue
        q, keys = e.lookup
        p, start = _answer_and_image_start(e)
        n_img = m.tokens_per_image(*[d // 56 for d in e.pixels()[0].shape[2:]])
        assert q == p - 1  # the position that predicts the answer
        assert keys and all(start <= j < start + n_img for j in keys)  # inside the image's block


def _answer_and_image_start(ex):
    """(first position where chosen and rejected differ, first position of the image block)."""
    return next(i for i, (a, b) in enumerate(zip(ex.chosen_ids, ex.rejected_ids)) if a != b), ex.chosen_spans[0][0]


def _reference_mass(m, ex, layer, toks):
    """The chosen conversation alone through the model: head 0's attention from the last shared prompt position
    onto the given tokens of the image block."""
    p, start = _answer_and_image_start(ex)
    n = len(ex.chosen_ids)
    emb = torch.cat(m.vision_forward_many(ex.pixels()), 0)
    img_pos, im = torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n)
    img_pos[0, start:start + emb.shape[0]] = torch.arange(emb.shape[0])
    im[0, start:start + emb.shape[0]] = 1.0
    att = m.model.layers[layer].attention
    att.keep_heads, att.kept = 1, []
    m.hidden_states(torch.tensor([ex.chosen_ids]), emb, img_pos, im, torch.ones(1, n, dtype=torch.long))
    prob = att.take_kept()[0, 0, p - 1].softmax(-1)
    return float(prob[[start + t for t in toks]].sum())


def test_the_hint_term_is_minus_the_log_attention_mass_on_the_named_object(tmp_path):
    m = small()
    (img, txt), cache = image_and_text_pairs(m, tmp_path)
    img2 = dataclasses.replace(img, rid="i2")
    p, start = _answer_and_image_start(img)
    toks = {"i": [0, 1, 5], "i2": [3]}
    img.lookup, img2.lookup = (p - 1, [start + t for t in toks["i"]]), (p - 1, [start + t for t in toks["i2"]])
    with torch.no_grad():
        for layer in (0, 1):
            arm_lookup(m, layer)
            packed_forward(m, [img, txt, img2], 2, "cpu", lm=True)
            term, mass, counted = lookup_hint_loss(m, [img, txt, img2], layer)
            ref = [_reference_mass(m, ex, layer, toks[ex.rid]) for ex in (img, img2)]
            assert counted == 2
            assert abs(float(term) - (-sum(torch.tensor(ref).log()) / 2)) < 1e-5, (float(term), ref)
            assert abs(mass - sum(ref) / 2) < 1e-6
            assert all(not la.attention.keep_heads for la in m.model.layers)  # released
        arm_lookup(m, 0)
        packed_forward(m, [txt], 2, "cpu")
        assert lookup_hint_loss(m, [txt], 0)[1:] == (0.0, 0)


def test_training_with_the_hint_moves_attention_onto_the_named_object(tiny_run, tmp_path):
    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import TrainConfig

    run, _ = tiny_run
    pos = [ln for name in ("train.jsonl", "heldout.jsonl") for ln in open(run / "data" / name).read().splitlines()
           if json.loads(ln)["category"] == "image_position"]
    data = run / "data" / "position.jsonl"  # beside train.jsonl: both splits' media paths are relative to it
    data.write_text("\n".join(pos) + "\n")
    assert len(pos) >= 4
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    margs = ModelArgs.from_dict(state["model_args"])
    icfg, vcfg = preprocess_configs(state)
    base = dataclasses.replace(TrainConfig(**state["train_config"]), data=str(data), max_steps=25, time_budget_s=0.0,
                               eval_data=None, init=str(run / "train" / "ckpt.pt"), resume=False, batch_pairs=4,
                               lr=2e-3, warmup_ratio=0.0, seed=5, lookup_layer=0, oversample=[], focus=[])

    def lookup(out, **kw):
        res = train_mod.train(dataclasses.replace(base, out=str(tmp_path / out), **kw), margs, icfg, vcfg)
        return res["stages"][-1].get("lookup")

    taught, untaught = lookup("taught", lookup_weight=5.0), lookup("untaught", lookup_weight=0.0)
    assert taught["pairs"] == untaught["pairs"] == len(pos)
    assert taught["mass_ema"] > untaught["mass_ema"] + 0.05, (taught, untaught)
    assert lookup("off", lookup_layer=-1, max_steps=1) is None
    with pytest.raises(ValueError, match="lookup_layer"):
        lookup("bad", lookup_layer=margs.num_layers, max_steps=1)


def test_kept_heads_accumulate_until_taken_and_zero_drops_them():
    m = ink_model()
    att = m.model.layers[0].attention
    ids = torch.tensor([[1, 2, 3, 4]])
    run = lambda: m.hidden_states(ids, torch.zeros(1, 32), torch.zeros_like(ids), torch.zeros(1, 4), torch.ones(1, 4))  # noqa: E731
    att.keep(1)
    att.keep(2)  # a second hint on the same layer widens, never narrows
    att.keep(1)
    run()
    assert att.take_kept().shape == (1, 2, 4, 4) and att.keep_heads == 0
    att.keep(1)
    run()
    att.keep(0)  # stop: what the forward kept is dropped
    assert att.kept == [] and att.keep_heads == 0
    run()
    assert att.kept == []
