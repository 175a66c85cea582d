"""host_ranks: data-parallel processes on one host for the pretraining stages (`--pretrain-ranks`); the Bradley-Terry
stage's ranks are checked in test_e2e.py (one step of 2 ranks x 1 pair moves the weights as 1 process x 2 pairs)."""
import dataclasses
import os

import numpy as np
import torch

from reward_trainer import host_ranks
from reward_trainer.checkpoint import load_checkpoint
from reward_trainer.config import ImagePreprocess, PretrainConfig, VideoPreprocess
from reward_trainer.pretrain import _adamw, _optimizer_step, pretrain
from reward_trainer.tokenizer import TextTokenizer

from test_model import small
from test_pretrain import trained_tokenizer  # noqa: F401  (the fixture)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))


def _rows(rank: int):
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(8, 6, generator=g), torch.randn(8, 1, generator=g)


def _loss(net, x, y):
    return ((net(x) - y) ** 2).mean() * 40  # large enough that the grad-norm clip acts too


def _two_steps_on_own_rows(out: str, rank: int) -> None:
    net = _net()
    opt = _adamw(list(net.parameters()), 1e-2)
    x, y = _rows(rank)
    for _ in range(2):
        _optimizer_step(opt, list(net.parameters()), _loss(net, x, y), 1e-2)
    torch.save(net.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    # what the drill's widening and the stages' clocks decide on: the same number on every rank
    agreed = (host_ranks.mean(float(rank)), host_ranks.rank0_clock(5.0 + rank), host_ranks.rank())
    torch.save(agreed, os.path.join(out, f"agreed{rank}.pt"))


def test_a_pretraining_step_of_two_ranks_is_one_step_on_the_mean_of_their_losses(tmp_path):
    """_optimizer_step under two ranks: each rank's loss on its own rows, the gradients averaged before the clip, so
    both ranks hold the weights one process gets from the mean of the two losses (to 1e-6); a statistic's mean and
    rank 0's clock are the same number on both ranks."""
    host_ranks.spawn(_two_steps_on_own_rows, 2, (str(tmp_path),))
    ref = _net()
    opt = _adamw(list(ref.parameters()), 1e-2)
    rows = [_rows(0), _rows(1)]
    for _ in range(2):
        loss = (_loss(ref, *rows[0]) + _loss(ref, *rows[1])) / 2
        _optimizer_step(opt, list(ref.parameters()), loss, 1e-2)
    for r in (0, 1):
        got = torch.load(str(tmp_path / f"rank{r}.pt"))
        for k, v in ref.state_dict().items():
            assert torch.allclose(got[k], v, atol=1e-6), (r, k, float((got[k] - v).abs().max()))
    assert [torch.load(str(tmp_path / f"agreed{r}.pt")) for r in (0, 1)] == [(0.5, 5.0, 0), (0.5, 5.0, 1)]


def test_pretrain_in_two_ranks_draws_apart_and_counts_every_rank(tmp_path, trained_tokenizer):  # noqa: F811
    """`PretrainConfig.ranks`: every stage runs in both processes, each drawing its own rows and scenes (a drill of
    2 ranks ends elsewhere than one process's drill on rank 0's rows alone), the records count both ranks' rows,
    and rank 0 writes a checkpoint `train --init` loads."""
    tok = TextTokenizer(trained_tokenizer)
    args = dataclasses.replace(small().args, vocab_size=tok.vocab_size, num_layers=3)
    icfg = ImagePreprocess(tile_size=56, hd_num=4)

    def run(name, **kw):
        cfg = PretrainConfig(drill_batch=4, text_batch=2, vision_batch=2, **kw)
        res = pretrain(cfg, args, icfg, VideoPreprocess(), trained_tokenizer, str(tmp_path / name), "default", 384, 7)
        return res, load_checkpoint(str(tmp_path / name / "ckpt.pt"))[0]

    res, two = run("two", ranks=2, drill_steps=3, text_seconds=1.0, vision_seconds=1.0)
    drill, text, vision = res["stages"]
    assert (drill["stage"], drill["steps"], drill["ranks"]) == ("drill", 3, 2)
    assert text["ranks"] == 2 and text["steps"] >= 1 and text["sequences"] == text["steps"] * 2 * 2
    assert vision["ranks"] == 2 and vision["steps"] >= 1 and vision["scenes"] == vision["steps"] * 2 * 2
    assert np.isfinite(sum(float(p.sum()) for p in two.parameters()))

    # the drill alone (steps, not seconds): two ranks on rank 0's rows twice over would end where one process does
    _, one = run("drill1", ranks=1, drill_steps=3)
    _, both = run("drill2", ranks=2, drill_steps=3)
    w1, w2 = one.model.layers[2].attention.wqkv.weight, both.model.layers[2].attention.wqkv.weight
    assert float((w1 - w2).abs().max()) > 1e-4

    # drill_ranks 1: the drill in this process alone (weights as one process's drill), the other stages on the ranks
    _, alone = run("drill-alone", ranks=2, drill_ranks=1, drill_steps=3)
    for a, b in zip(one.parameters(), alone.parameters()):
        assert float((a - b).abs().max()) < 1e-6
    res, _ = run("drill-then-ranks", ranks=2, drill_ranks=1, drill_steps=3, text_seconds=1.0)
    assert [(s["stage"], s["ranks"]) for s in res["stages"]] == [("drill", 1), ("text", 2)]
    assert res["stages"][0]["steps"] == 3
    assert "drilled.pt" not in os.listdir(tmp_path / "drill-then-ranks")  # the hand-over file is removed


def _records(n: int):
    return [{"messages": [{"role": "user", "content": "What is shown?"}], "chosen": "a", "rejected": "b",
             "images": [f"m/{i}.png"] + ([f"m/{(i + 1) % n}.png"] if i % 3 == 0 else [])} for i in range(n)]


def _share(base: str, n: int, rank: int) -> None:
    from reward_trainer import train as T

    cache = T.MediaCache(ImagePreprocess(tile_size=56, hd_num=4), VideoPreprocess(), keep=True, half=True)
    decoded = []
    real = cache.get_key
    cache.get_key = lambda k: decoded.append(k) or real(k)
    T.share_media(_records(n), base, cache)
    torch.save((decoded, {k: v.clone() for k, v in cache.cache.items()}), os.path.join(base, f"share{rank}.pt"))


def test_ranks_each_preprocess_a_share_of_the_media_and_swap_it(tmp_path):
    """train.share_media: with 2 ranks each decodes half of the distinct (item, tiles) keys and ends up holding all
    of them, each tensor the one a single process makes."""
    from PIL import Image

    from reward_trainer.data import MediaCache, record_conversations

    n = 7
    (tmp_path / "m").mkdir()
    for i in range(n):
        Image.new("RGB", (40 + 9 * i, 50), (30 * i, 90, 200 - 20 * i)).save(tmp_path / "m" / f"{i}.png")
    host_ranks.spawn(_share, 2, (str(tmp_path), n))
    one = MediaCache(ImagePreprocess(tile_size=56, hd_num=4), VideoPreprocess(), keep=True, half=True)
    for r in _records(n):
        one.conversation(record_conversations(r, str(tmp_path))[2])
    got = [torch.load(str(tmp_path / f"share{r}.pt")) for r in (0, 1)]
    keys = set(one.cache)
    assert len(keys) > n  # single items at hd_num and pairs at hd_num_multi
    assert sorted(got[0][0] + got[1][0]) == sorted(keys) and abs(len(got[0][0]) - len(got[1][0])) <= 1
    for _, cache in got:
        assert set(cache) == keys and all(torch.equal(cache[k], one.cache[k]) for k in keys)
