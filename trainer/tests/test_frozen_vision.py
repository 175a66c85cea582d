"""`--freeze-vision`'s feature cache (model_io.FrozenVisionFeatures): the same scores and gradients as running the
frozen tower at every step, the ViT run once per media item, and a training run that uses it."""
import dataclasses
import json

import torch
from PIL import Image

from reward_trainer.data import PairExample
from reward_trainer.model_io import FrozenVisionFeatures, packed_forward, packed_scores
from reward_trainer.train import set_frozen_vision
from test_model import image_and_text_pairs, small


def _pairs(m, tmp_path):
    """image_and_text_pairs plus a pair with a wider image (another tile grid), a two-image pair and the first pair again."""
    (img, txt), cache = image_and_text_pairs(m, tmp_path)
    Image.new("RGB", (200, 50), (10, 200, 10)).save(tmp_path / "b.png")
    px = cache.get("image", str(tmp_path / "b.png"), 1)
    assert px.shape[2:] != cache.get("image", str(tmp_path / "a.png"), 1).shape[2:]
    T_b = m.tokens_per_image(px.shape[2] // 56, px.shape[3] // 56)
    prompt = [1, 40] + [2] * T_b + [43]
    wide = PairExample("w", "z", prompt + [50, 2, 5], prompt + [61, 62, 2, 5], [(2, 0)], [(2, 0)],
                       [("image", str(tmp_path / "b.png"), 1)], 1, 2, cache)
    # a.png again, now one of two images (hd_num_multi: fewer tiles than alone), beside a same-sized other image:
    # the cache must tell a.png's two tile grids apart, and two distinct items of one grid apart
    Image.new("RGB", (80, 60), (10, 10, 200)).save(tmp_path / "c.png")
    two = [("image", str(tmp_path / n), 2) for n in ("a.png", "c.png")]
    px_two = cache.get(*two[0])
    assert px_two.shape[2:] != cache.get("image", str(tmp_path / "a.png"), 1).shape[2:]
    T_two = m.tokens_per_image(px_two.shape[2] // 56, px_two.shape[3] // 56)
    prompt = [1, 40] + [2] * T_two + [41] + [2] * T_two + [43]
    spans = [(2, 0), (3 + T_two, 1)]
    pair_two = PairExample("m", "z", prompt + [52, 2, 5], prompt + [63, 2, 5], spans, spans, two, 1, 1, cache)
    return [img, txt, wide, pair_two, img]


class _CountingViT(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.crops = inner, 0

    def forward(self, crops):
        self.crops += crops.shape[0]
        return self.inner(crops)


def test_cached_features_give_the_towers_scores_and_run_the_vit_once_per_item(tmp_path):
    m = small()
    pairs = _pairs(m, tmp_path)
    ref_c, ref_r = packed_scores(m, pairs, 0, "cpu")
    vit = m.vit.vision_tower.vision_model = _CountingViT(m.vit.vision_tower.vision_model)
    feats = FrozenVisionFeatures()
    c, r = packed_scores(m, pairs, 0, "cpu", feats)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-5)
    torch.testing.assert_close(r, ref_r, rtol=0, atol=1e-5)
    assert len(feats.store) == 4 and feats.bytes > 0 and feats.reused == 1  # four items among five media slots
    first = vit.crops
    assert first > 0
    c2, r2 = packed_scores(m, pairs, 0, "cpu", feats)
    assert vit.crops == first and feats.reused == 6  # second step: no ViT at all
    torch.testing.assert_close(c2, c, rtol=0, atol=0)
    torch.testing.assert_close(r2, r, rtol=0, atol=0)


def test_frozen_tower_gets_no_gradient_and_the_rest_the_same_gradient_as_without_the_cache(tmp_path):
    m = small().train()
    pairs = _pairs(m, tmp_path)
    set_frozen_vision(m, True)
    grads = []
    for feats in (None, FrozenVisionFeatures()):
        m.zero_grad(set_to_none=True)
        c, r, lm = packed_forward(m, pairs, 0, "cpu", lm=True, features=feats)
        (torch.nn.functional.logsigmoid(c - r).mean() + lm).backward()
        assert all(p.grad is None for p in m.vit.parameters()) and all(p.grad is None for p in m.vision_proj.parameters())
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    without, with_cache = grads
    assert "plora_glb_GN" in with_cache and "plora_sub_GN" in with_cache  # the separators still learn
    assert with_cache["plora_sub_GN"].abs().sum() > 0
    assert without.keys() == with_cache.keys()
    for n in without:
        torch.testing.assert_close(with_cache[n], without[n], rtol=1e-4, atol=1e-6, msg=n)


def test_training_with_a_frozen_tower_caches_each_item_and_leaves_the_tower_as_it_was(tiny_run, tmp_path):
    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import ModelArgs, TrainConfig

    run, _ = tiny_run
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    margs = ModelArgs.from_dict(state["model_args"])
    icfg, vcfg = preprocess_configs(state)
    recs = [json.loads(ln) for ln in open(run / "data" / "train.jsonl")]
    items = {(kind, p) for rec in recs for kind in ("images", "videos") for p in rec.get(kind) or []}
    assert items, "the tiny run's data has media"
    base = dataclasses.replace(TrainConfig(**state["train_config"]), data=str(run / "data" / "train.jsonl"),
                               max_steps=6, time_budget_s=0.0, eval_data=None, init=str(run / "train" / "ckpt.pt"),
                               resume=False, batch_pairs=8, seed=3, lookup_layer=-1, ckpt_every=0)
    res = train_mod.train(dataclasses.replace(base, out=str(tmp_path / "frozen"), freeze_vision=True), margs, icfg, vcfg)
    fv = res["stages"][-1]["frozen_vision"]
    # 6 steps of 8 pairs go round the 32 pairs more than once: the second time round an item is served cached
    assert 0 < fv["cached_items"] <= len(items) and fv["cached_mb"] > 0 and fv["reused"] > 0, fv
    after = torch.load(tmp_path / "frozen" / "ckpt.pt", map_location="cpu")["model"]
    for k, v in state["model"].items():
        if k.startswith(("vit.", "vision_proj.")):
            assert torch.equal(after[k], v), k
    assert any(not torch.equal(after[k], v) for k, v in state["model"].items() if k.startswith("model.layers."))
    res = train_mod.train(dataclasses.replace(base, out=str(tmp_path / "tuned"), max_steps=1), margs, icfg, vcfg)
    assert "frozen_vision" not in res["stages"][-1]
