"""Bradley-Terry training loop: AdamW, warmup + cosine, grad clipping, seeded, resumable checkpoints; optionally
data-parallel over several processes on one host (`ranks`, gloo)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, Tuple

import torch

from . import host_ranks
from .checkpoint import PRETRAIN_RESULT, TRAIN_RESULT, load_checkpoint, read_result, save_checkpoint, write_result
from .config import ImagePreprocess, ModelArgs, TrainConfig, VideoPreprocess, template_config
from .data import MediaCache, PairExample, build_examples, length_filter, read_jsonl, record_conversations
from .losses import bt_loss
from .model import IXCRewardModel
from .model_io import FrozenVisionFeatures, arm_lookup, lookup_hint_loss, packed_forward, pair_scores, score_pairs
from .scene_tokens import annotate_lookup
from .tokenizer import TextTokenizer


def lr_at(step: int, total: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warmup, then cosine to lr * min_lr_ratio. With a time budget, progress is the larger of the step
    fraction and the time fraction, so the schedule completes when the budget ends the run."""
    warm = max(1, int(total * cfg.warmup_ratio))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = min(1.0, (step - warm) / max(1, total - warm))
    if cfg.time_budget_s:
        p = max(p, min(1.0, elapsed_s / cfg.time_budget_s))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model: IXCRewardModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "GN" not in n else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def set_frozen_vision(model: IXCRewardModel, frozen: bool) -> None:
    for mod in (model.vit, model.vision_proj):
        for p in mod.parameters():
            p.requires_grad = not frozen


def load_examples(path: str, tok: TextTokenizer, cache: MediaCache, cfg: TrainConfig, model: IXCRewardModel):
    """Training pairs after the length constraint -> (examples, dropped by length ratio, dropped as too long)."""
    recs, dropped_len = length_filter(read_jsonl(path), cfg.length_ratio)
    base = os.path.dirname(os.path.abspath(path))
    if host_ranks.world_size() > 1 and cache.keep:
        share_media(recs, base, cache)
    hint = annotate_lookup(base, cache, model.G, cfg.lookup_share) if cfg.lookup_layer >= 0 else None
    ex, dropped_long = build_examples(recs, base, tok, cache, cfg.max_seq_len, model.tokens_per_image,
                                      template_config(cfg.pipeline, None, cfg.content_special_tokens), hint)
    return ex, dropped_len, dropped_long


def share_media(recs: List[Dict], base: str, cache: MediaCache) -> None:
    """Several ranks: each preprocesses every world-th distinct media item and the ranks swap what they made, so
    every cache holds all of them at the cost of one share each. Why: each of 2 ranks decoding every item (ffmpeg
    per video) took 582 s where one process took 205-456 s (trainer/README.md, session 20)."""
    keys = set()
    for r in recs:
        items = record_conversations(r, base)[2]
        n = cache.count(items)
        keys.update(cache.key(k, p, n) for k, p in items)
    mine = sorted(keys)[host_ranks.rank()::host_ranks.world_size()]
    for k in mine:
        cache.get_key(k)
    for part in host_ranks.all_gather({k: cache.cache[k] for k in mine}):
        cache.cache.update(part)


def _category_spec(examples: List[PairExample], spec: List[str], what: str, value) -> List[Tuple[str, float]]:
    """["category=V", ...] -> [(category, value(V)), ...] in order; `value` raises ValueError for a V it refuses.
    A category the training data does not have is an error, not a silent no-op."""
    out = []
    for item in spec:
        cat, sep, v = item.partition("=")
        try:
            if not sep or not cat.strip():
                raise ValueError
            out.append((cat.strip(), value(v.strip())))
        except ValueError:
            raise ValueError(f"{what} {item!r}: expected CATEGORY={value.__doc__}") from None
    unknown = sorted({c for c, _ in out} - {e.category for e in examples})
    if unknown:
        raise ValueError(f"{what} names categories the training data does not have: {', '.join(unknown)}")
    return out


def _times(v: str) -> int:
    """K with K a whole number >= 1"""
    if not v.isdigit() or int(v) < 1:
        raise ValueError
    return int(v)


def _fraction(v: str) -> float:
    """FRACTION with 0 < FRACTION < 1"""
    f = float(v)
    if not 0.0 < f < 1.0:
        raise ValueError
    return f


def oversample(examples: List[PairExample], spec: List[str]) -> List[PairExample]:
    """`spec` ["category=K", ...]: each pair of those categories K times (K >= 1, an integer), the rest once. The
    copies are the same examples (no extra preprocessing or memory); epoch_batches shuffles them apart."""
    times = dict(_category_spec(examples, spec, "oversample", _times))
    # the copies after the originals: the first pairs (the score statistics' sample) stay distinct
    return examples + [e for e in examples for _ in range(times.get(e.category, 1) - 1)]


def focus_phases(examples: List[PairExample], spec: List[str]) -> List[Tuple[str, float, List[int]]]:
    """`spec` ["category=FRACTION", ...] -> [(category, where the phase ends as a fraction of the stage, indices of
    that category's pairs)], in order. The phases come first and together leave part of the stage to the mix."""
    phases, end = [], 0.0
    for cat, f in _category_spec(examples, spec, "focus", _fraction):
        end += f
        phases.append((cat, end, [i for i, e in enumerate(examples) if e.category == cat]))
    if end >= 1.0:
        raise ValueError(f"focus {' '.join(spec)}: the phases take {end:g} of the stage and leave the mix nothing")
    return phases


class Progress:
    """A one-line progress bar with loss / accuracy (EMA), rate and ETA, on stderr."""

    def __init__(self, total: int):
        self.total, self.t0, self.loss, self.acc = total, time.time(), None, None

    def update(self, step: int, loss: float, acc: float, lr: float, pairs: int) -> None:
        a = 0.95
        self.loss = loss if self.loss is None else a * self.loss + (1 - a) * loss
        self.acc = acc if self.acc is None else a * self.acc + (1 - a) * acc
        el = time.time() - self.t0
        rate = pairs / max(el, 1e-9)
        eta = (self.total - step) * el / max(step, 1)
        w = 24
        fill = int(w * step / max(1, self.total))
        line = (f"\r[{'#' * fill}{'.' * (w - fill)}] {step}/{self.total} loss {self.loss:.4f} acc {self.acc:.3f} "
                f"lr {lr:.2e} {rate:.2f} pairs/s eta {eta / 60:.1f}m")
        sys.stderr.write(line if sys.stderr.isatty() else line[1:] + "\n")
        sys.stderr.flush()


def train(cfg: TrainConfig, margs: ModelArgs, icfg: ImagePreprocess, vcfg: VideoPreprocess) -> Dict:
    """One process, or `cfg.ranks` processes (gloo on this host, each `cfg.threads` torch threads): each rank takes its
    own batch of `batch_pairs` from the one shuffled order, gradients are averaged, rank 0 writes the checkpoint."""
    # checked here, before any rank starts: a rank's ValueError reaches the caller only as a spawn error
    if cfg.lookup_layer >= 0 and not (cfg.lookup_layer < margs.num_layers and margs.readout == "last"):
        raise ValueError(f"lookup_layer {cfg.lookup_layer} needs a decoder layer below {margs.num_layers} and the "
                         f"'last' readout (packed rows)")
    if cfg.ranks <= 1:
        return _train(cfg, margs, icfg, vcfg, 0)
    host_ranks.spawn(_train, cfg.ranks, (cfg, margs, icfg, vcfg))
    return read_result(os.path.join(cfg.out, "ckpt.pt"), TRAIN_RESULT)


def _train(cfg: TrainConfig, margs: ModelArgs, icfg: ImagePreprocess, vcfg: VideoPreprocess, rank: int) -> Dict:
    world = max(1, cfg.ranks)
    main = rank == 0
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    tok = TextTokenizer(cfg.tokenizer)
    margs = dataclasses.replace(margs, vocab_size=tok.vocab_size)
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")
    stages: List[Dict] = []
    if cfg.resume and os.path.exists(ckpt_path):
        model, state = load_checkpoint(ckpt_path, cfg.device)
        margs = model.args
        stages = state.get("stages", [])
    elif cfg.init:
        model, _ = load_checkpoint(cfg.init, cfg.device)  # e.g. the pretrain stage's weights
        margs, state = model.args, None
        stages = read_result(cfg.init, PRETRAIN_RESULT).get("stages", [])
    else:
        model, state = IXCRewardModel(margs).to(cfg.device), None
    if world > 1:  # same starting weights everywhere (a fresh model's init draws are rank 0's)
        host_ranks.same_weights(model.state_dict().values())
        torch.manual_seed(cfg.seed + rank)
    template_config(cfg.pipeline, icfg)  # the ixc preset sets icfg's published fields (saved with the checkpoint)
    cache = MediaCache(icfg, vcfg, keep=cfg.cache_media, half=True)
    t_load = time.time()
    train_ex, dropped_len, dropped_long = load_examples(cfg.data, tok, cache, cfg, model)
    unique_pairs = len(train_ex)
    phases = focus_phases(train_ex, cfg.focus)  # drawn from the distinct pairs, before the copies
    train_ex = oversample(train_ex, cfg.oversample)
    if main:
        over = f"{len(train_ex)} per epoch after oversampling; " if cfg.oversample else ""
        print(f"train pairs {unique_pairs} ({over}length constraint ratio {cfg.length_ratio}: dropped {dropped_len}; "
              f"too long for max_seq_len {cfg.max_seq_len}: dropped {dropped_long}); preprocessing "
              f"{time.time() - t_load:.0f}s" + (f"; {world} ranks" if world > 1 else ""), file=sys.stderr)
    set_frozen_vision(model, cfg.freeze_vision)
    # a frozen tower's features are computed once per media item, not at every step (model_io)
    features = FrozenVisionFeatures() if cfg.freeze_vision else None
    opt = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_pairs * world))  # a step takes batch_pairs on each rank
    total = cfg.max_steps or max(1, int(steps_per_epoch * cfg.epochs))
    step, elapsed_before = 0, 0.0
    focus_steps = [0] * len(phases)  # steps each focus phase took; the mix's own step count is what is left
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        focus_steps = list(state.get("focus_steps", focus_steps))
        if main:
            print(f"resumed at step {step}", file=sys.stderr)
    order_rng = random.Random(cfg.seed)
    epoch_orders: List[List[List[int]]] = []
    focus_rngs = [random.Random(cfg.seed + 1 + k) for k in range(len(phases))]
    focus_orders: List[List[int]] = [[] for _ in phases]  # each phase's pairs, shuffled pass after pass

    step_pairs = cfg.batch_pairs * world  # one step's pairs over all ranks

    def size(i: int) -> int:
        return max(len(train_ex[i].chosen_ids), len(train_ex[i].rejected_ids))

    def epoch_batches() -> List[List[int]]:
        """Shuffle, then sort windows of 16 steps' pairs by length (less padding), cut them into steps, then shuffle
        the steps."""
        o = list(range(len(train_ex)))
        order_rng.shuffle(o)
        win = step_pairs * 16
        batches = []
        for w in range(0, len(o), win):
            chunk = sorted(o[w:w + win], key=size)
            batches += [chunk[k:k + step_pairs] for k in range(0, len(chunk), step_pairs)]
        order_rng.shuffle(batches)
        return batches

    def batch_for(s: int) -> List[PairExample]:
        """The mix's step s's pairs on this rank."""
        e = s // steps_per_epoch
        while len(epoch_orders) <= e:
            epoch_orders.append(epoch_batches())
        return on_this_rank(epoch_orders[e][s % steps_per_epoch])

    def focus_batch(k: int, j: int) -> List[PairExample]:
        """Focus phase k's step j: its pairs shuffled anew each pass (the same draws again on resume)."""
        pool = phases[k][2]
        while len(focus_orders[k]) < (j + 1) * step_pairs:
            o = list(pool)
            focus_rngs[k].shuffle(o)
            focus_orders[k] += o
        return on_this_rank(focus_orders[k][j * step_pairs:(j + 1) * step_pairs])

    def on_this_rank(ids: List[int]) -> List[PairExample]:
        """Several ranks split one step's pairs dealt in turn by length, so each gets the same work: a rank that
        drew the short batch would wait for the other at every all-reduce (measured: 2 ranks then trained no faster
        than 1 process)."""
        if world > 1:
            ids = sorted(ids, key=size)
            ids = ids[rank::world] or ids[rank % len(ids):][:1]  # an epoch's last step may have fewer pairs than ranks
        return [train_ex[i] for i in ids]

    def save(final: bool = False) -> None:
        if not main:
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total_steps": total,
            "elapsed_s": elapsed_before + time.time() - t0, "model_args": margs.to_dict(),
            "train_config": dataclasses.asdict(cfg), "image": dataclasses.asdict(icfg),
            "video": dataclasses.asdict(vcfg), "final": final, "stages": stages, "focus_steps": focus_steps,
            "data": {"pairs": unique_pairs, "dropped_length_ratio": dropped_len, "dropped_too_long": dropped_long}})

    def elapsed() -> float:
        """Seconds of training so far; with several ranks rank 0's clock, so they stop and schedule together."""
        return host_ranks.rank0_clock(elapsed_before + time.time() - t0)

    trainable = [p for p in model.parameters() if p.requires_grad]
    prog = Progress(total)
    t0 = time.time()
    model.train()
    seen = 0
    mass_ema = None  # the look-up hint's attention mass on its targets (EMA over the steps that had targets)
    while step < total:
        now = elapsed()
        if cfg.time_budget_s and now > cfg.time_budget_s:
            if main:
                print(f"\ntime budget reached at step {step}/{total}", file=sys.stderr)
            break
        # the stage's progress as the schedule counts it: every rank has rank 0's clock, so all switch together
        progress = now / cfg.time_budget_s if cfg.time_budget_s else step / total
        k = next((i for i, ph in enumerate(phases) if progress < ph[1]), None)
        if k is not None:
            pairs = focus_batch(k, focus_steps[k])
            focus_steps[k] += 1
        else:
            pairs = batch_for(step - sum(focus_steps))
        lr = lr_at(step, total, cfg, now)
        for g in opt.param_groups:
            g["lr"] = lr
        n = len(pairs)
        if cfg.lookup_layer >= 0:
            arm_lookup(model, cfg.lookup_layer)
        if cfg.lm_weight and margs.readout == "last":
            rc, rr, lm = packed_forward(model, pairs, tok.pad_id, cfg.device, lm=True, features=features)
            loss = bt_loss(rc, rr) + cfg.lm_weight * lm
        else:
            rc, rr = pair_scores(model, pairs, tok.pad_id, cfg.device, features)
            loss = bt_loss(rc, rr)
        if cfg.lookup_layer >= 0:
            term, mass, counted = lookup_hint_loss(model, pairs, cfg.lookup_layer)
            loss = loss + cfg.lookup_weight * term
            if counted:
                mass_ema = mass if mass_ema is None else 0.95 * mass_ema + 0.05 * mass
        opt.zero_grad(set_to_none=True)
        loss.backward()
        host_ranks.sync_grads(trainable)
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        step += 1
        seen += n * world
        if main:
            prog.update(step, float(loss), float((rc > rr).float().mean()), lr, seen)
        if cfg.ckpt_every and step % cfg.ckpt_every == 0:
            save()
    train_s = elapsed_before + time.time() - t0
    cache_use = features.summary() if features is not None else None  # the training steps', before scoring below
    if not main:
        return {}
    model.eval()
    # score statistics on (a bounded sample of) the training set, for normalize: true
    sample = train_ex[: min(len(train_ex), 256)]
    sc = score_pairs(model, sample, tok.pad_id, cfg.device, features=features)
    vals = torch.tensor([v for pair in sc for v in pair])
    stats = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.numel())}
    stage = {"stage": "bradley_terry", "steps": step, "seconds": round(train_s, 1), "lm_weight": cfg.lm_weight,
             "init": bool(cfg.init), "ranks": world, "batch_pairs_per_rank": cfg.batch_pairs}
    if cfg.lookup_layer >= 0:
        stage["lookup"] = {"layer": cfg.lookup_layer, "weight": cfg.lookup_weight, "share": cfg.lookup_share,
                           "pairs": sum(1 for e in train_ex[:unique_pairs] if e.lookup),
                           "mass_ema": None if mass_ema is None else round(mass_ema, 4)}
    if phases:
        stage["focus"] = [{"category": c, "until": round(end, 4), "pairs": len(ids), "steps": n}
                          for (c, end, ids), n in zip(phases, focus_steps)]
    if cfg.oversample:
        stage["oversample"] = {"spec": list(cfg.oversample), "pairs": unique_pairs, "pairs_per_epoch": len(train_ex)}
    if cache_use is not None:
        stage["frozen_vision"] = cache_use
    result = {"steps": step, "total_steps": total, "train_seconds": round(train_s, 1), "train_pairs": unique_pairs,
              "dropped_length_ratio": dropped_len, "dropped_too_long": dropped_long, "train_stats": stats,
              "pairs_per_second": round(step * cfg.batch_pairs * world / max(train_s, 1e-9), 3), "ranks": world,
              "num_params": model.num_params(), "device": cfg.device,
              "stages": stages + [stage]}
    save(final=True)
    write_result(ckpt_path, TRAIN_RESULT, result)
    print("\n" + json.dumps(result, indent=2), file=sys.stderr)
    return result

