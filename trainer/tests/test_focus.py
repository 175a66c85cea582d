"""TrainConfig.focus: the Bradley-Terry stage opens on one category's pairs alone (trainer/README.md, session 19)."""
import dataclasses
import json

import pytest
import torch

from reward_trainer.data import PairExample
from reward_trainer.train import focus_phases


def pairs(cats):
    return [PairExample(f"p{i}", c, [1, 2], [1, 3], [], []) for i, c in enumerate(cats)]


def test_focus_phases_run_in_order_and_end_where_their_fractions_add_up():
    ex = pairs(["a", "pos", "b", "pos", "a"])
    assert focus_phases(ex, []) == []
    assert focus_phases(ex, ["pos=0.2"]) == [("pos", 0.2, [1, 3])]
    (c1, e1, i1), (c2, e2, i2) = focus_phases(ex, ["pos=0.25", "a=0.5"])
    assert (c1, i1, c2, i2) == ("pos", [1, 3], "a", [0, 4])
    assert (e1, e2) == pytest.approx((0.25, 0.75), abs=1e-12)


@pytest.mark.parametrize("spec", [["pos"], ["pos=0"], ["pos=1"], ["pos=-0.1"], ["pos=x"], ["=0.2"], ["other=0.2"],
                                  ["pos=0.6", "a=0.4"]])
def test_focus_rejects_what_it_cannot_honour(spec):
    with pytest.raises(ValueError):
        focus_phases(pairs(["a", "pos"]), spec)


def test_training_opens_on_the_focus_category_then_mixes_and_records_it(tiny_run, tmp_path, monkeypatch):
    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import ModelArgs, TrainConfig

    run, _ = tiny_run
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    recs = [json.loads(ln) for ln in open(run / "data" / "train.jsonl")]
    cats = sorted({r["category"] for r in recs})
    cat = cats[0]
    steps = []  # each step's categories, as the forward pass saw them
    real = train_mod.packed_forward

    def spy(model, batch, *a, **k):
        steps.append({e.category for e in batch})
        return real(model, batch, *a, **k)

    monkeypatch.setattr(train_mod, "packed_forward", spy)
    cfg = dataclasses.replace(TrainConfig(**state["train_config"]), data=str(run / "data" / "train.jsonl"), max_steps=6,
                              time_budget_s=0.0, eval_data=None, init=str(run / "train" / "ckpt.pt"), resume=False,
                              batch_pairs=8, lookup_layer=-1, ckpt_every=0, out=str(tmp_path / "o"), oversample=[],
                              focus=[f"{cat}=0.5"], ranks=1)  # the spy sees this process only
    res = train_mod.train(cfg, ModelArgs.from_dict(state["model_args"]), *preprocess_configs(state))
    assert len(steps) == 6
    assert all(s == {cat} for s in steps[:3])  # progress 0, 1/6, 2/6 < 0.5: the focus category alone
    assert set().union(*steps[3:]) - {cat}  # then the mix: other categories come back
    n = sum(r["category"] == cat for r in recs)
    assert res["stages"][-1]["focus"] == [{"category": cat, "until": 0.5, "pairs": n, "steps": 3}]
    assert torch.load(tmp_path / "o" / "ckpt.pt", map_location="cpu")["focus_steps"] == [3]
