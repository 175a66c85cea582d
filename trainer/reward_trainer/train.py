"""Bradley-Terry training loop: AdamW, warmup + cosine, grad clipping, seeded, resumable checkpoints."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from typing import Dict, List

import torch

from .checkpoint import PRETRAIN_RESULT, TRAIN_RESULT, load_checkpoint, read_result, save_checkpoint, write_result
from .config import ImagePreprocess, ModelArgs, TrainConfig, VideoPreprocess, template_config
from .data import MediaCache, PairExample, build_examples, length_filter, read_jsonl
from .losses import bt_loss
from .model import IXCRewardModel
from .model_io import packed_forward, pair_scores, score_pairs
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
    ex, dropped_long = build_examples(recs, os.path.dirname(os.path.abspath(path)), tok, cache, cfg.max_seq_len,
                                      model.tokens_per_image, template_config(cfg.pipeline, None, cfg.content_special_tokens))
    return ex, dropped_len, dropped_long


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
    template_config(cfg.pipeline, icfg)  # the ixc preset sets icfg's published fields (saved with the checkpoint)
    cache = MediaCache(icfg, vcfg, keep=cfg.cache_media, half=True)
    t_load = time.time()
    train_ex, dropped_len, dropped_long = load_examples(cfg.data, tok, cache, cfg, model)
    print(f"train pairs {len(train_ex)} (length constraint ratio {cfg.length_ratio}: dropped {dropped_len}; "
          f"too long for max_seq_len {cfg.max_seq_len}: dropped {dropped_long}); preprocessing {time.time() - t_load:.0f}s",
          file=sys.stderr)
    set_frozen_vision(model, cfg.freeze_vision)
    opt = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train_ex) / cfg.batch_pairs)
    total = cfg.max_steps or max(1, int(steps_per_epoch * cfg.epochs))
    step, elapsed_before = 0, 0.0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        print(f"resumed at step {step}", file=sys.stderr)
    order_rng = random.Random(cfg.seed)
    epoch_orders: List[List[List[int]]] = []

    def epoch_batches() -> List[List[int]]:
        """Shuffle, then sort windows of 16 batches by length (less padding), then shuffle the batches."""
        o = list(range(len(train_ex)))
        order_rng.shuffle(o)
        win = cfg.batch_pairs * 16
        batches = []
        for w in range(0, len(o), win):
            chunk = sorted(o[w:w + win], key=lambda i: max(len(train_ex[i].chosen_ids), len(train_ex[i].rejected_ids)))
            batches += [chunk[k:k + cfg.batch_pairs] for k in range(0, len(chunk), cfg.batch_pairs)]
        order_rng.shuffle(batches)
        return batches

    def batch_for(s: int) -> List[PairExample]:
        e = s // steps_per_epoch
        while len(epoch_orders) <= e:
            epoch_orders.append(epoch_batches())
        return [train_ex[i] for i in epoch_orders[e][s % steps_per_epoch]]

    def save(final: bool = False) -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total_steps": total,
            "elapsed_s": elapsed_before + time.time() - t0, "model_args": margs.to_dict(),
            "train_config": dataclasses.asdict(cfg), "image": dataclasses.asdict(icfg),
            "video": dataclasses.asdict(vcfg), "final": final, "stages": stages,
            "data": {"pairs": len(train_ex), "dropped_length_ratio": dropped_len, "dropped_too_long": dropped_long}})

    prog = Progress(total)
    t0 = time.time()
    model.train()
    seen = 0
    while step < total:
        if cfg.time_budget_s and elapsed_before + time.time() - t0 > cfg.time_budget_s:
            print(f"\ntime budget reached at step {step}/{total}", file=sys.stderr)
            break
        pairs = batch_for(step)
        lr = lr_at(step, total, cfg, elapsed_before + time.time() - t0)
        for g in opt.param_groups:
            g["lr"] = lr
        n = len(pairs)
        if cfg.lm_weight and margs.readout == "last":
            rc, rr, lm = packed_forward(model, pairs, tok.pad_id, cfg.device, lm=True)
            loss = bt_loss(rc, rr) + cfg.lm_weight * lm
        else:
            rc, rr = pair_scores(model, pairs, tok.pad_id, cfg.device)
            loss = bt_loss(rc, rr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        opt.step()
        step += 1
        seen += n
        prog.update(step, float(loss), float((rc > rr).float().mean()), lr, seen)
        if cfg.ckpt_every and step % cfg.ckpt_every == 0:
            save()
    train_s = elapsed_before + time.time() - t0
    model.eval()
    # score statistics on (a bounded sample of) the training set, for normalize: true
    sample = train_ex[: min(len(train_ex), 256)]
    sc = score_pairs(model, sample, tok.pad_id, cfg.device)
    vals = torch.tensor([v for pair in sc for v in pair])
    stats = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.numel())}
    result = {"steps": step, "total_steps": total, "train_seconds": round(train_s, 1), "train_pairs": len(train_ex),
              "dropped_length_ratio": dropped_len, "dropped_too_long": dropped_long, "train_stats": stats,
              "pairs_per_second": round(step * cfg.batch_pairs / max(train_s, 1e-9), 3),
              "num_params": model.num_params(), "device": cfg.device,
              "stages": stages + [{"stage": "bradley_terry", "steps": step, "seconds": round(train_s, 1),
                                   "lm_weight": cfg.lm_weight, "init": bool(cfg.init)}]}
    save(final=True)
    write_result(ckpt_path, TRAIN_RESULT, result)
    print("\n" + json.dumps(result, indent=2), file=sys.stderr)
    return result

