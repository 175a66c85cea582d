"""TrainConfig.oversample: chosen categories repeated within an epoch (trainer/README.md, session 16)."""
import collections
import dataclasses
import json

import pytest
import torch

from reward_trainer.data import PairExample
from reward_trainer.train import oversample


def pairs(cats):
    return [PairExample(f"p{i}", c, [1, 2], [1, 3], [], []) for i, c in enumerate(cats)]


def test_oversample_repeats_the_named_categories_after_the_originals():
    ex = pairs(["a", "pos", "b", "pos"])
    out = oversample(ex, ["pos=3"])
    assert out[:4] == ex  # the originals first, in order (the score statistics' sample stays distinct)
    assert collections.Counter(e.rid for e in out) == {"p0": 1, "p1": 3, "p2": 1, "p3": 3}
    assert oversample(ex, []) == ex
    assert [e.rid for e in oversample(ex, ["pos=1", "a=2"])] == ["p0", "p1", "p2", "p3", "p0"]


@pytest.mark.parametrize("spec", ["pos", "pos=0", "pos=1.5", "pos=x", "=2", "other=2"])
def test_oversample_rejects_what_it_cannot_honour(spec):
    with pytest.raises(ValueError):
        oversample(pairs(["a", "pos"]), [spec])


def test_training_oversamples_and_records_it(tiny_run, tmp_path):
    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import ModelArgs, TrainConfig

    run, _ = tiny_run
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    recs = [json.loads(ln) for ln in open(run / "data" / "train.jsonl")]
    cat, n = collections.Counter(r["category"] for r in recs).most_common(1)[0]
    cfg = dataclasses.replace(TrainConfig(**state["train_config"]), data=str(run / "data" / "train.jsonl"), max_steps=1,
                              time_budget_s=0.0, eval_data=None, init=str(run / "train" / "ckpt.pt"), resume=False,
                              batch_pairs=4, lookup_layer=-1, ckpt_every=0, out=str(tmp_path / "o"),
                              oversample=[f"{cat}=3"])
    res = train_mod.train(cfg, ModelArgs.from_dict(state["model_args"]), *preprocess_configs(state))
    rec = res["stages"][-1]["oversample"]
    assert rec == {"spec": [f"{cat}=3"], "pairs": res["train_pairs"], "pairs_per_epoch": res["train_pairs"] + 2 * n}
