"""Fine-tune a pretrained reward model on preference pairs, on one process or many (torchrun), and export it.

    python3 -m reward_trainer finetune --init HF_DIR|ckpt.pt --data train.jsonl [--eval eval.jsonl] --trainable plora
    torchrun --nproc_per_node N -m reward_trainer finetune ...

BT loss (losses.py) after the paper's length constraint; AdamW with warmup + cosine (train.lr_at); `batch_pairs`
pairs per optimizer step over all processes, so the effective batch, the data order and (up to float summation
order) the loss curve do not depend on the process count: step s takes the same `batch_pairs` pairs of a seeded
per-epoch permutation, rank r takes the r-th contiguous slice, split in micro-batches of `micro_pairs`
(gradient accumulation under DDP's no_sync); each rank's loss is sum(pair losses) * world / batch_pairs, which
DDP's gradient average turns into the global mean. FSDP (torch >= 2.0) for --trainable all with several
processes. Rank 0 alone writes checkpoints (shards.py), logs and the export.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

from . import distributed as dd
from . import shards
from .checkpoint import EVAL_RESULT, TRAIN_RESULT, load_checkpoint, preprocess_configs, save_checkpoint, write_result
from .config import FinetuneConfig, template_config
from .data import MediaCache, PairExample
from .dataset import load_pairs
from .evaluate import summarize
from .hf_import import load_published
from .losses import bt_loss
from .model import CLIPEncoderLayer, IXCRewardModel, InternLM2DecoderLayer
from .model_io import pair_scores
from .tokenizer import TextTokenizer
from .train import lr_at

MODES = ("head", "plora", "decoder", "all")


# ------------------------------------------------------------------------------------------------ model
def select_trainable(model: IXCRewardModel, mode: str) -> List[str]:
    """Set requires_grad for a --trainable mode; -> the trainable parameter names. head: v_head; plora: every
    Plora_A/Plora_B + v_head (the published model's image-token adapters); decoder: decoder layers (PLoRA
    included), final norm, v_head (token embeddings and the vision side frozen); all: every parameter."""
    if mode not in MODES:
        raise ValueError(f"--trainable {mode}: one of {MODES}")

    def wanted(n: str) -> bool:
        if mode == "all" or n == "v_head.weight":
            return True
        if mode == "plora":
            return ".Plora_A." in n or ".Plora_B." in n
        if mode == "decoder":
            return n.startswith("model.layers.") or n.startswith("model.norm.")
        return False

    names = []
    for n, p in model.named_parameters():
        p.requires_grad_(wanted(n))
        if p.requires_grad:
            names.append(n)
    return names


def checkpoint_activations(model: IXCRewardModel) -> int:
    """Activation checkpointing from outside model.py: each decoder and ViT layer's forward runs under
    torch.utils.checkpoint (non-reentrant: correct when the layer input needs no grad, e.g. PLoRA-only, whose
    first layer input is a frozen embedding). Parameter names do not change. -> layers wrapped."""
    from torch.utils.checkpoint import checkpoint

    layers = list(model.model.layers) + list(model.vit.vision_tower.vision_model.encoder.layers)
    for layer in layers:
        inner = layer.forward

        def fwd(*a, _inner=inner, **k):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *a, use_reentrant=False, **k)
            return _inner(*a, **k)

        layer.forward = fwd  # instance attribute: nn.Module.__call__ finds it before the class method
    return len(layers)


class PairScorer(torch.nn.Module):
    """The unit DDP/FSDP wrap: forward(pairs) -> (chosen, rejected) scores through model_io.pair_scores, so the
    wrappers see one forward per micro-batch (their hooks are set up in forward)."""

    def __init__(self, reward: IXCRewardModel, pad_id: int, device: str):
        super().__init__()
        self.reward, self.pad_id, self.device = reward, pad_id, device

    def forward(self, pairs: List[PairExample]):
        return pair_scores(self.reward, pairs, self.pad_id, self.device)


def load_init(init: str, tokenizer: Optional[str] = None) -> Tuple[IXCRewardModel, Dict, str, str]:
    """--init -> (model fp32 on cpu, trainer state (image/video/train_config), tokenizer path, kind hf|trainer)."""
    if os.path.isdir(init) and os.path.isfile(os.path.join(init, "model.json")):
        raise ValueError(f"{init} is a model version directory (ONNX graphs): fine-tuning needs PyTorch weights; "
                         "pass the published checkpoint folder it was imported from, or a trainer ckpt.pt")
    if os.path.isdir(init) and os.path.isfile(os.path.join(init, "config.json")):
        model, state, _ = load_published(init)
        return model, state, tokenizer or os.path.join(init, "tokenizer.model"), "hf"
    path = os.path.join(init, "ckpt.pt") if os.path.isdir(init) else init
    if not os.path.isfile(path):
        raise ValueError(f"--init {init}: neither a published checkpoint folder (config.json) nor a trainer "
                         "checkpoint (ckpt.pt)")
    model, state = load_checkpoint(path)
    tok = tokenizer or state.get("train_config", {}).get("tokenizer")
    if not tok or not os.path.isfile(tok):
        raise ValueError(f"--init {init}: the checkpoint's tokenizer {tok!r} is not there; pass --tokenizer")
    return model, state, tok, "trainer"


def param_groups(named, decay_names, weight_decay: float) -> List[Dict]:
    decay, no_decay = [], []
    for n, p in named:
        if p.requires_grad:
            (decay if n in decay_names else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------------------------ schedule
def epoch_order(seed: int, epoch: int, n: int) -> List[int]:
    """The pair order of one epoch: a pure function of (seed, epoch), so a resumed or differently sized run
    takes the same pairs at the same step."""
    o = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(o)
    return o


def step_pairs(cfg: FinetuneConfig, n: int, step: int, rank: int, world: int) -> List[List[int]]:
    """Indices of this rank's micro-batches at `step` (the rank's contiguous slice of the global batch)."""
    spe = n // cfg.batch_pairs
    e, k = divmod(step, spe)
    batch = epoch_order(cfg.seed, e, n)[k * cfg.batch_pairs:(k + 1) * cfg.batch_pairs]
    per = cfg.batch_pairs // world
    mine = batch[rank * per:(rank + 1) * per]
    return [mine[i:i + cfg.micro_pairs] for i in range(0, per, cfg.micro_pairs)]


def pair_tokens(pairs: List[PairExample]) -> int:
    return sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)


# ------------------------------------------------------------------------------------------------ eval
@torch.no_grad()
def evaluate_distributed(scorer, examples: List[PairExample], d: dd.Dist, micro: int, autocast) -> Dict:
    """Accuracy overall / per category (evaluate.summarize). Every rank scores the same number of micro-batches
    (FSDP needs all ranks in every forward; a rank without work repeats one and drops it), rank 0 gathers."""
    scorer.eval()
    chunks = [list(range(i, min(i + micro, len(examples)))) for i in range(0, len(examples), micro)]
    rounds = math.ceil(len(chunks) / d.world) if chunks else 0
    mine: List[Tuple[int, float, float]] = []
    for r in range(rounds):
        j = r * d.world + d.rank
        idx = chunks[j] if j < len(chunks) else chunks[0]
        with autocast():
            c, rj = scorer([examples[i] for i in idx])
        if j < len(chunks):
            mine += list(zip(idx, c.float().cpu().tolist(), rj.float().cpu().tolist()))
    scorer.train()
    got = sorted(x for part in dd.gather_objects(d, mine) for x in part)
    return summarize(examples, [(c, r) for _, c, r in got])


# ------------------------------------------------------------------------------------------------ run
def _log(d: dd.Dist, path: str, rec: Dict) -> None:
    if d.main:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def finetune(cfg: FinetuneConfig, command: str = "python3 -m reward_trainer finetune") -> Dict:
    d = dd.init(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if d.main else (lambda s: None)
    cuda = d.device.startswith("cuda")
    if cfg.batch_pairs % (d.world * cfg.micro_pairs):
        raise ValueError(f"--batch-pairs {cfg.batch_pairs} must be a multiple of processes ({d.world}) x "
                         f"--micro-pairs ({cfg.micro_pairs}): every rank runs the same number of micro-batches")
    accum = cfg.batch_pairs // (d.world * cfg.micro_pairs)
    out = os.path.abspath(cfg.out)
    if d.main:
        os.makedirs(out, exist_ok=True)
    model, state, tok_path, kind = load_init(cfg.init, cfg.tokenizer)
    tok = TextTokenizer(tok_path)
    icfg, vcfg = preprocess_configs(state)
    tc = dict(state["train_config"])
    pipeline = tc.get("pipeline", "default")
    tcfg = template_config(pipeline, icfg)
    max_seq_len = cfg.max_seq_len or tc["max_seq_len"]
    cache = MediaCache(icfg, vcfg, keep=False)  # pixels recomputed per batch: memory bounded for large files
    t_load = time.time()
    train_ex, rep = load_pairs(cfg.data, cfg.data_format, tok, cache, max_seq_len, model.tokens_per_image, tcfg,
                               cfg.length_ratio, cfg.bad_lines, say)
    eval_ex, eval_rep = ([], {})
    if cfg.eval:
        eval_ex, eval_rep = load_pairs(cfg.eval, cfg.data_format, tok, cache, max_seq_len, model.tokens_per_image,
                                       tcfg, 0.0, cfg.bad_lines, say)
    say(f"train pairs {len(train_ex)} of {rep['records']} records (bad {len(rep['bad'])}; length constraint ratio "
        f"{cfg.length_ratio}: dropped {rep['dropped_length_ratio']}; too long for max_seq_len {max_seq_len}: "
        f"dropped {rep['dropped_too_long']}); eval pairs {len(eval_ex)}; {time.time() - t_load:.1f}s")
    if len(train_ex) < cfg.batch_pairs:
        raise ValueError(f"{len(train_ex)} usable training pairs, fewer than --batch-pairs {cfg.batch_pairs}")

    trainable = select_trainable(model, cfg.trainable)
    decay_names = {n for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "GN" not in n}
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.activation_checkpointing:
        checkpoint_activations(model)
    ok, why = dd.fsdp_status()
    use_fsdp = d.active and (cfg.fsdp == "on" or (cfg.fsdp == "auto" and cfg.trainable == "all" and ok))
    if use_fsdp and not ok:
        raise RuntimeError(f"--fsdp on: {why}")
    if cfg.trainable == "all" and d.active and not use_fsdp:
        say(f"FSDP not used ({why if not ok else '--fsdp off'}): DDP keeps a full replica per process")
    model.to(d.device).train()
    scorer = dd.wrap(PairScorer(model, tok.pad_id, d.device), d, use_fsdp, find_unused=cfg.trainable == "all",
                     layer_classes=(InternLM2DecoderLayer, CLIPEncoderLayer))
    sync_skippable = not use_fsdp and cfg.trainable != "all"
    named = [(dd.clean_name(n)[len("reward."):], p) for n, p in scorer.named_parameters()]
    opt = torch.optim.AdamW(param_groups(named, decay_names, cfg.weight_decay), lr=cfg.lr,
                            betas=(cfg.beta1, cfg.beta2))
    names_by_id = {id(p): n for n, p in named}
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda and cfg.bf16 else \
        (lambda: torch.autocast("cpu", enabled=False))

    spe = len(train_ex) // cfg.batch_pairs  # whole global batches per epoch; the rest falls to other epochs' orders
    total = cfg.max_steps or max(1, int(spe * cfg.epochs))
    ckpt_dir = os.path.join(out, "ckpt")
    log_path = os.path.join(out, "log.jsonl")
    step, elapsed_before = 0, 0.0
    last = shards.latest(ckpt_dir) if cfg.resume else None
    if last:
        params, named_opt, index = shards.load(last)
        m = index["meta"]
        if (m["trainable"], m["seed"], m["batch_pairs"], m["train_pairs"]) != \
                (cfg.trainable, cfg.seed, cfg.batch_pairs, len(train_ex)):
            raise ValueError(f"{last}: saved by a run with other settings {m} (trainable, seed, batch, data); use "
                             "another --out or --resume false")
        if use_fsdp:
            full = {"state": {"reward." + n: s for n, s in named_opt["state"].items()},
                    "param_groups": [{**g, "params": ["reward." + n for n in g["params"]]}
                                     for g in named_opt["param_groups"]]}
            _load_params(model, params)  # before wrapping would be cheaper; FSDP shards views of these tensors
            dd.load_full_optim(scorer, opt, full)
        else:
            _load_params(model, params)
            shards.load_named_optim_state(opt, named_opt, names_by_id)
        step, elapsed_before = index["step"], m.get("elapsed_s", 0.0)
        say(f"resumed from {last} at step {step}")

    def save_sharded() -> None:
        if use_fsdp:
            sd, osd = dd.full_state(scorer, d, opt)
            if d.main:
                params = {n[len("reward."):]: t for n, t in sd.items() if n[len("reward."):] in set(trainable)}
                nopt = {"state": {n[len("reward."):]: s for n, s in osd["state"].items()},
                        "param_groups": [{**g, "params": [n[len("reward."):] for n in g["params"]]}
                                         for g in osd["param_groups"]]}
        elif d.main:
            params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            nopt = shards.named_optim_state(opt, names_by_id)
        if d.main:
            meta = {"trainable": cfg.trainable, "seed": cfg.seed, "batch_pairs": cfg.batch_pairs,
                    "train_pairs": len(train_ex), "world": d.world, "elapsed_s": elapsed_before + time.time() - t0,
                    "init": os.path.abspath(cfg.init)}
            path = shards.save(ckpt_dir, step, params, nopt, meta, int(cfg.ckpt_shard_mb * (1 << 20)), cfg.keep_ckpts)
            say(f"checkpoint {path}")
        dd.barrier(d)

    say(f"finetune: {cfg.trainable} ({n_trainable:,} of {model.num_params():,} parameters), {d.world} process(es) "
        f"on {d.device}, {'FSDP' if use_fsdp else 'DDP' if d.active else 'single process'}, batch {cfg.batch_pairs} = "
        f"{d.world} x {cfg.micro_pairs} x {accum} accumulation, {total} steps, bf16 autocast "
        f"{'on' if cuda and cfg.bf16 else 'off'}, activation checkpointing {'on' if cfg.activation_checkpointing else 'off'}")
    t0 = time.time()
    tokens_done, pairs_done, ema = 0, 0, None
    curve: List[Dict] = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(d.device)
    while step < total:
        if cfg.time_budget_s and elapsed_before + time.time() - t0 > cfg.time_budget_s:
            say(f"time budget reached at step {step}/{total}")
            break
        lr = lr_at(step, total, cfg, elapsed_before + time.time() - t0)  # type: ignore[arg-type]
        for g in opt.param_groups:
            g["lr"] = lr
        ts = time.time()
        loss_sum = correct = toks = 0.0
        micro = step_pairs(cfg, len(train_ex), step, d.rank, d.world)
        for j, idx in enumerate(micro):
            pairs = [train_ex[i] for i in idx]
            # no_sync on all but the last micro-batch, except under find_unused_parameters: DDP then zeroes
            # the accumulated gradient of a parameter the last micro-batch does not use (the vision tower on a
            # text-only micro-batch), so those runs all-reduce every micro-batch (measured: test_finetune)
            with dd.no_sync(scorer, d.active and j < len(micro) - 1 and sync_skippable):
                with autocast():
                    rc, rr = scorer(pairs)
                # sum of the pairs' BT losses; / batch_pairs: the global batch mean; * world: DDP averages ranks
                part = bt_loss(rc.float(), rr.float()) * len(pairs)
                (part * d.world / cfg.batch_pairs).backward()
            loss_sum += float(part.detach())
            correct += float((rc > rr).sum())
            toks += pair_tokens(pairs)
        if cfg.grad_clip:
            params = [p for p in scorer.parameters() if p.requires_grad]
            gn = float(scorer.clip_grad_norm_(cfg.grad_clip) if use_fsdp else
                       torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        else:
            gn = float("nan")
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_sum, correct, toks = dd.all_sum(d, [loss_sum, correct, toks])
        dt = time.time() - ts
        tokens_done += toks
        pairs_done += cfg.batch_pairs
        loss, acc = loss_sum / cfg.batch_pairs, correct / cfg.batch_pairs
        ema = loss if ema is None else 0.9 * ema + 0.1 * loss
        el = time.time() - t0
        rec = {"step": step, "loss": loss, "accuracy": acc, "lr": lr, "grad_norm": gn, "tokens": int(toks),
               "tokens_per_s": round(tokens_done / max(el, 1e-9), 1), "pairs_per_s": round(pairs_done / max(el, 1e-9), 3),
               "step_s": round(dt, 3)}
        curve.append(rec)
        _log(d, log_path, rec)
        say(f"step {step}/{total} loss {loss:.4f} (ema {ema:.4f}) acc {acc:.3f} lr {lr:.2e} "
            f"{rec['tokens_per_s']:.0f} tok/s {rec['pairs_per_s']:.2f} pairs/s eta {(total - step) * el / max(1, len(curve)) / 60:.1f}m")
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < total:
            save_sharded()
        if cfg.eval_every and eval_ex and step % cfg.eval_every == 0 and step < total:
            ev = evaluate_distributed(scorer, eval_ex, d, cfg.micro_pairs, autocast)
            _log(d, log_path, {"step": step, "eval": ev})
            say(f"eval at step {step}: accuracy {ev['accuracy']:.4f} " +
                " ".join(f"{k} {v['accuracy']:.3f}" for k, v in ev["per_category"].items()))
    train_s = elapsed_before + time.time() - t0
    save_sharded()
    heldout = evaluate_distributed(scorer, eval_ex, d, cfg.micro_pairs, autocast) if eval_ex else {}
    if heldout:
        heldout["dropped_too_long"] = eval_rep["dropped_too_long"]
        heldout["bad_records"] = len(eval_rep["bad"])
        say("eval: " + json.dumps(heldout))
    stats = _score_stats(scorer, train_ex[:256], d, cfg.micro_pairs, autocast)
    full_sd = dd.full_state(scorer, d)[0] if use_fsdp else None
    result = {"steps": step, "total_steps": total, "train_seconds": round(train_s, 1), "train_pairs": len(train_ex),
              "dropped_length_ratio": rep["dropped_length_ratio"], "dropped_too_long": rep["dropped_too_long"],
              "bad_records": len(rep["bad"]), "train_stats": stats,
              "pairs_per_second": round(pairs_done / max(time.time() - t0, 1e-9), 3),
              "tokens_per_second": round(tokens_done / max(time.time() - t0, 1e-9), 1),
              "num_params": model.num_params(), "trainable_params": n_trainable, "trainable": cfg.trainable,
              "device": "cuda" if cuda else "cpu", "processes": d.world, "init": os.path.abspath(cfg.init),
              "init_kind": kind, "loss_curve": [round(r["loss"], 6) for r in curve],
              "grad_norm_curve": [round(r["grad_norm"], 6) for r in curve],
              "peak_cuda_bytes": torch.cuda.max_memory_allocated(d.device) if cuda else None}
    if d.main:
        sd = {k[len("reward."):]: v for k, v in full_sd.items()} if use_fsdp else \
            {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
        ckpt = os.path.join(out, "ckpt.pt")
        save_checkpoint(ckpt, {
            "model": sd, "step": step, "total_steps": total, "model_args": model.args.to_dict(),
            "train_config": {**tc, "max_seq_len": max_seq_len, "length_ratio": cfg.length_ratio,
                             "pipeline": pipeline, "tokenizer": os.path.abspath(tok_path)},
            "finetune_config": dataclasses.asdict(cfg), "image": dataclasses.asdict(icfg),
            "video": dataclasses.asdict(vcfg), "train_result": result, "final": True,
            "data": {"pairs": len(train_ex), "dropped_length_ratio": rep["dropped_length_ratio"],
                     "dropped_too_long": rep["dropped_too_long"], "bad": rep["bad"]}})
        write_result(ckpt, TRAIN_RESULT, result)
        if heldout:
            write_result(ckpt, EVAL_RESULT, heldout)
        if cfg.export_out:
            result["export"] = export_result(ckpt, cfg, tok_path, kind, command)
        say(json.dumps({k: v for k, v in result.items() if not k.endswith("_curve")}))
    dd.shutdown(d)
    return result


def _load_params(model: IXCRewardModel, params: Dict[str, torch.Tensor]) -> None:
    own = dict(model.named_parameters())
    missing = [n for n in params if n not in own]
    if missing:
        raise ValueError(f"checkpoint parameters not in the model: {missing[:5]}")
    with torch.no_grad():
        for n, t in params.items():
            own[n].copy_(t)


@torch.no_grad()
def _score_stats(scorer, pairs: List[PairExample], d: dd.Dist, micro: int, autocast) -> Dict:
    """Score mean/std on (up to 256) training pairs for model.json's normalize stats; all ranks run it (FSDP)."""
    scorer.eval()
    vals: List[float] = []
    for i in range(0, len(pairs), micro):
        with autocast():
            c, r = scorer(pairs[i:i + micro])
        vals += c.float().cpu().tolist() + r.float().cpu().tolist()
    scorer.train()
    t = torch.tensor(vals)
    return {"mean": float(t.mean()), "std": float(t.std()), "n": int(t.numel())}


def export_result(ckpt: str, cfg: FinetuneConfig, tok_path: str, kind: str, command: str) -> Dict:
    """The finished run -> a new model version directory through the normal exporter (temp dir, goldens,
    ONNX-vs-PyTorch parity, atomic rename): the service's model watcher loads it as the next version. An HF init
    keeps import-hf's graph options (fused attention, external data over 2 GiB) and its published pipeline
    (carried in the checkpoint's train_config / image / video sections)."""
    from .export import export
    from .onnx_large import GraphOptions

    out = os.path.abspath(cfg.export_out)
    name, version = os.path.basename(os.path.dirname(out)), os.path.basename(out)
    if not version.isdigit():
        raise ValueError(f"--export-out must end in models/<name>/<version> with an integer version, got {out}")
    att = cfg.export_attention if cfg.export_attention != "auto" else ("fused" if kind == "hf" else "eager")
    large = GraphOptions(attention=att) if (kind == "hf" or att == "fused") else None
    heldout = cfg.eval if cfg.eval and cfg.data_format == "jsonl" else None
    return export(ckpt, out, tok_path, heldout, name=name, version=int(version), command=command, large=large)

