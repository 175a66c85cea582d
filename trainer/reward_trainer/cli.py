"""Command line: python3 -m reward_trainer <command> [--options]. `reproduce` rebuilds the default model."""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shlex
import sys
import time
import typing
from typing import Any, Dict, List, Optional, Type

from .config import (FinetuneConfig, GenConfig, ImagePreprocess, ModelArgs, PretrainConfig, TrainConfig, VideoPreprocess,
                     VisionArgs)

TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TRAINER_DIR)


def _bool(s: str) -> bool:
    """`--flag true|false` (argparse's type=bool would take any non-empty string, "false" too, as True)."""
    return s.lower() in ("1", "true", "yes")


def _add_dataclass(ap: argparse.ArgumentParser, cls: Type, prefix: str = "", skip=(), defaults=None) -> None:
    """One flag per field; `defaults` ({dest: value}) replaces a field's default for this command (and its help)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(f.type) or f.name == "vision":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
        bare_ok = default == []  # an empty default: `--flag` alone is allowed (and gives [])
        if defaults and prefix + f.name in defaults:
            default = copy.deepcopy(defaults[prefix + f.name])
        flag = "--" + (prefix + f.name).replace("_", "-")
        # argparse %-formats help strings: a measured "87.5 %" would break --help
        h = (f.metadata.get("help", "") + f" (default: {default})").replace("%", "%%")
        if isinstance(default, bool):
            ap.add_argument(flag, dest=prefix + f.name, type=_bool, default=default, help=h)
        elif isinstance(default, list):
            # an empty default names no element type: the annotation does (List[int]); `--flag` alone gives []
            item = type(default[0]) if default else typing.get_args(hints[f.name])[0]
            ap.add_argument(flag, dest=prefix + f.name, nargs="*" if bare_ok else "+", type=item, default=default, help=h)
        else:
            ap.add_argument(flag, dest=prefix + f.name, type=type(default) if default is not None else str, default=default, help=h)


def _take(ns: argparse.Namespace, cls: Type, prefix: str = "") -> Any:
    kw = {}
    for f in dataclasses.fields(cls):
        if hasattr(ns, prefix + f.name):
            kw[f.name] = getattr(ns, prefix + f.name)
    return cls(**kw)


def _model_args(ns) -> ModelArgs:
    m = _take(ns, ModelArgs, "model_")
    m.vision = _take(ns, VisionArgs, "vision_")
    return m


def _image_cfg(ns, margs: ModelArgs) -> ImagePreprocess:
    i = _take(ns, ImagePreprocess, "image_")
    i.tile_size, i.patch_size = margs.vision.tile_size, margs.vision.patch
    return i


# Budgets for `reproduce`. cpu: <= 100 min end to end on 2 cores (issue 15): data ~9 min, the look-up drill ~8 min,
# pretraining 12 + 15 min (the text stage's 12 give arithmetic and tables the same minutes as 10 did before scenes told
# in words took a sixth), Bradley-Terry 50 min (it stops at its time budget, the cosine schedule follows the time
# fraction; at 1 thread ~44 pairs/s, so the epochs seldom end it first), evaluation and export ~5 min; cuda: more data
# and epochs. lr is the Bradley-Terry stage's peak: 5e-4 after pretraining, since 2e-3 erased the arithmetic the text
# stage taught within 600 steps (LM probe 0.83 -> 0.59) while 5e-4 kept it at the same reward accuracy (trainer/README.md,
# session 4).
BUDGETS = {
    "cpu": {"train_pairs": 16000, "heldout_pairs": 800, "epochs": 12.0, "time_budget_s": 2800.0,
            "pretrain_text_seconds": 840.0, "pretrain_vision_seconds": 900.0, "lr": 5e-4},
    "cuda": {"train_pairs": 24000, "heldout_pairs": 1600, "epochs": 3.0, "time_budget_s": 0.0,
             "pretrain_text_seconds": 600.0, "pretrain_vision_seconds": 600.0, "lr": 5e-4},
    "tiny": {"train_pairs": 48, "heldout_pairs": 16, "epochs": 1.0, "time_budget_s": 0.0,
             "pretrain_text_seconds": 0.0, "pretrain_vision_seconds": 0.0, "lr": TrainConfig.lr},
}

# `reproduce`'s recipe over the dataclasses' defaults (`train` and `pretrain` keep theirs: all off), each measured in
# trainer/README.md: the look-up drill and the text stage's attention hints teach the tables' look-up (sessions 10-12),
# the Bradley-Terry stage's look-up hint over image tokens with position pairs three times per epoch teaches image
# position (sessions 16-17: held-out table 59 -> 95 %, position 52 -> 78 %), and count pairs twice per epoch give
# count back the steps position took (session 18: count 73 -> 90, position 78 -> 70, overall 86.25 -> 87.5 %).
# Every stage on two ranks (host_ranks.py): the Bradley-Terry stage's 2800 s then present ~60 pairs/s instead of ~46
# and the vision stage larger batches (session 21: 87.5 -> 89.75 %, every category >= 79 %, 98.7 min end to end).
# The 2 min the parallel video encodes saved went to the text stage, 720 -> 840 s (session 23: 91.37 %, every
# category >= 78 %, 92.7 min end to end).
REPRODUCE_RECIPE = {"pretrain_drill_steps": 1000, "pretrain_text_prev_heads": [1], "pretrain_text_lookup_layer": 2,
                    "lookup_layer": 2, "oversample": ["image_position=3", "image_count=2"], "ranks": 2,
                    "pretrain_ranks": 2}


def evaluate_stage(ckpt: str, data: str, tokenizer: str, device: str) -> Dict:
    """Held-out evaluation of a finished run, stored beside its checkpoint (export puts it in model.json)."""
    from .checkpoint import EVAL_RESULT, write_result
    from .evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(ckpt, data, tokenizer, device)
    write_result(ckpt, EVAL_RESULT, res)
    print("heldout: " + json.dumps(res, indent=2), file=sys.stderr)
    return res


def reproduce(ns) -> None:
    """generate -> tokenizer -> train -> evaluate -> export, all from scratch."""
    from .data import read_jsonl
    from .export import export
    from .generate import generate, tokenizer_corpus
    from .tokenizer_convert import train_tokenizer
    from .train import train

    t0 = time.time()
    budget = BUDGETS[ns.budget]
    run = os.path.abspath(ns.run_dir)
    data = os.path.join(run, "data")
    gcfg = GenConfig(out=data, train_pairs=ns.train_pairs or budget["train_pairs"],
                     heldout_pairs=ns.heldout_pairs or budget["heldout_pairs"], seed=ns.gen_seed)
    if not os.path.exists(os.path.join(data, "heldout.jsonl")) or not ns.reuse_data:
        print(f"generate: {generate(gcfg)}", file=sys.stderr)
    tok_dir = os.path.join(run, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    tok_model = os.path.join(tok_dir, "tokenizer.model")
    if not os.path.exists(tok_model) or not ns.reuse_data:
        train_tokenizer(tokenizer_corpus(read_jsonl(os.path.join(data, "train.jsonl"))), os.path.join(tok_dir, "tokenizer"),
                        ns.model_vocab_size)
    margs = _model_args(ns)
    tcfg = _take(ns, TrainConfig)
    tcfg.data, tcfg.eval_data = os.path.join(data, "train.jsonl"), os.path.join(data, "heldout.jsonl")
    tcfg.tokenizer, tcfg.out = tok_model, os.path.join(run, "train")
    tcfg.epochs = budget["epochs"] if ns.epochs_override is None else ns.epochs_override
    tcfg.time_budget_s = budget["time_budget_s"] if ns.time_budget_override is None else ns.time_budget_override
    tcfg.lr = budget["lr"] if ns.lr_override is None else ns.lr_override
    icfg, vcfg = _image_cfg(ns, margs), _take(ns, VideoPreprocess, "video_")
    pcfg = _take(ns, PretrainConfig, "pretrain_")
    for f in ("text_seconds", "vision_seconds"):
        if getattr(ns, f"pretrain_{f}") is None:
            setattr(pcfg, f, budget[f"pretrain_{f}"])
    if pcfg.text_seconds or pcfg.vision_seconds:
        from .pretrain import pretrain

        pdir = os.path.join(run, "pretrain")
        if not os.path.exists(os.path.join(pdir, "ckpt.pt")) or not ns.reuse_data:
            pretrain(pcfg, margs, icfg, vcfg, tok_model, pdir, tcfg.pipeline, tcfg.max_seq_len, tcfg.seed, tcfg.device,
                     tcfg.threads)
        tcfg.init = os.path.join(pdir, "ckpt.pt")
    if tcfg.freeze_vision is None:
        tcfg.freeze_vision = bool(pcfg.vision_seconds)
    train(tcfg, margs, icfg, vcfg)
    ckpt = os.path.join(tcfg.out, "ckpt.pt")
    heldout = evaluate_stage(ckpt, tcfg.eval_data, tok_model, tcfg.device)
    rep = export(ckpt, os.path.abspath(ns.out), tok_model, tcfg.eval_data, command=ns.command_line)
    print(json.dumps({"total_seconds": round(time.time() - t0, 1), "heldout": heldout, "parity": rep},
                     indent=2), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m reward_trainer", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="procedural preference data (train + held-out)")
    _add_dataclass(g, GenConfig)

    tk = sub.add_parser("tokenizer", help="train the SentencePiece BPE vocabulary on a JSONL file")
    tk.add_argument("--data", required=True)
    tk.add_argument("--out-prefix", required=True)
    tk.add_argument("--vocab-size", type=int, default=4096)

    cv = sub.add_parser("convert-tokenizer", help="SentencePiece tokenizer.model -> tokenizer.json")
    cv.add_argument("model")
    cv.add_argument("out")

    im = sub.add_parser("import", help="convert hh-rlhf / LLaMA-Factory DPO data to the trainer JSONL")
    im.add_argument("--format", choices=["hh-rlhf", "llamafactory"], required=True)
    im.add_argument("input")
    im.add_argument("output")

    for name in ("train", "reproduce"):
        t = sub.add_parser(name, help="train a model" if name == "train" else
                           "generate -> tokenizer -> train -> evaluate -> export (the default model)")
        _add_dataclass(t, TrainConfig, skip=("epochs", "time_budget_s", "lr", "data", "eval_data", "out", "tokenizer",
                                              "seed", "freeze_vision")
                       if name == "reproduce" else (), defaults=REPRODUCE_RECIPE if name == "reproduce" else None)
        _add_dataclass(t, ModelArgs, "model_")
        _add_dataclass(t, VisionArgs, "vision_")
        _add_dataclass(t, ImagePreprocess, "image_", skip=("tile_size", "patch_size"))
        _add_dataclass(t, VideoPreprocess, "video_")
        if name == "reproduce":
            _add_dataclass(t, PretrainConfig, "pretrain_", skip=("text_seconds", "vision_seconds"),
                           defaults=REPRODUCE_RECIPE)
            for f in ("text", "vision"):
                t.add_argument(f"--pretrain-{f}-seconds", type=float, default=None,
                               help=f"pretrain {f} stage seconds (default: the budget's; 0 skips it)")
            t.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                           help="data/epoch budget (default: cpu, or cuda with --device cuda)")
            t.add_argument("--run-dir", default=os.path.join(TRAINER_DIR, "runs", "default"))
            t.add_argument("--out", default=os.path.join(REPO_ROOT, "models", "ixc-reward-tiny", "1"))
            t.add_argument("--train-pairs", type=int, default=0)
            t.add_argument("--heldout-pairs", type=int, default=0)
            # 1234 for both: the seeds the committed default model was trained and generated with
            t.add_argument("--seed", type=int, default=1234, help="torch seed of the training run (default: 1234)")
            t.add_argument("--gen-seed", type=int, default=1234,
                           help="data generation seed; held-out uses seed + 1_000_003 (default: 1234)")
            t.add_argument("--epochs", dest="epochs_override", type=float, default=None)
            t.add_argument("--time-budget-s", dest="time_budget_override", type=float, default=None)
            t.add_argument("--lr", dest="lr_override", type=float, default=None,
                           help="Bradley-Terry peak learning rate (default: the budget's)")
            t.add_argument("--reuse-data", type=_bool, default=False)
            # the default model is trained on the published get_score input pipeline (issue 11): one pipeline
            # ...except that message content never yields a control id (the safe setting models/README.md allows;
            # the published tokenizer would turn "[UNUSED_TOKEN_145]" typed by a user into a real turn end)
            t.set_defaults(pipeline="ixc", content_special_tokens="literal")
            # frozen once the vision stage has trained the tower: its features are then computed once per item
            # (1.78x the Bradley-Terry steps in a reproduce, trainer/README.md session 15); without that stage the
            # tower is random, and freezing it would fix noise features
            t.add_argument("--freeze-vision", type=_bool, default=None,
                           help="freeze ViT + projector in the Bradley-Terry stage (default: true when the vision "
                                "stage runs, else false)")

    pt = sub.add_parser("pretrain", help="text + vision pretraining of a fresh model (train --init starts from its ckpt.pt)")
    _add_dataclass(pt, PretrainConfig)
    _add_dataclass(pt, ModelArgs, "model_")
    _add_dataclass(pt, VisionArgs, "vision_")
    _add_dataclass(pt, ImagePreprocess, "image_", skip=("tile_size", "patch_size"))
    _add_dataclass(pt, VideoPreprocess, "video_")
    pt.add_argument("--tokenizer", required=True)
    pt.add_argument("--out", required=True, help="folder for ckpt.pt and pretrain_result.json")
    pt.add_argument("--pipeline", choices=["default", "ixc"], default="default")
    pt.add_argument("--max-seq-len", type=int, default=384)
    pt.add_argument("--seed", type=int, default=1234)
    pt.add_argument("--device", default="cpu")

    ev = sub.add_parser("evaluate", help="held-out pairwise accuracy of a checkpoint")
    ev.add_argument("--ckpt", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--tokenizer", required=True)
    ev.add_argument("--device", default="cpu")

    ex = sub.add_parser("export", help="checkpoint -> model version directory (with ONNX parity check)")
    ex.add_argument("--ckpt", required=True)
    ex.add_argument("--tokenizer", required=True)
    ex.add_argument("--heldout", default=None, help="held-out JSONL used for golden cases")
    ex.add_argument("--out", required=True)
    ex.add_argument("--name", default="ixc-reward-tiny")
    ex.add_argument("--version", type=int, default=1)
    ex.add_argument("--pipeline", choices=["default", "ixc"], default=None,
                    help="input pipeline written to model.json and used for golden.json (default: the checkpoint's)")
    ex.add_argument("--content-special-tokens", choices=["literal", "published"], default=None,
                    help="override the pipeline's content_special_tokens (default: the checkpoint's, else the pipeline's)")
    ex.add_argument("--golden-set", choices=["all", "published"], default="all",
                    help="golden cases: all (held-out, synthetic; plus published ones for ixc) or published only")

    pk = sub.add_parser("add-packed", help="add reward_packed.onnx (graph version 2) to a model version directory, "
                                           "weights read back from its reward.onnx and checked against golden.json")
    pk.add_argument("--model-dir", required=True)

    hf = sub.add_parser("import-hf", help="published IXC-2.5-Reward checkpoint (HF layout) -> model version directory")
    hf.add_argument("--checkpoint", required=True, help="folder with config.json, tokenizer.model and the shards")
    hf.add_argument("--out", required=True, help="models/<name>/<version>")
    hf.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32",
                    help="graph dtype (fp32: every execution provider; fp16: GPU EPs only, the CPU EP refuses it)")
    hf.add_argument("--attention", choices=["fused", "eager"], default="fused",
                    help="fused: com.microsoft GroupQueryAttention/MultiHeadAttention (no T x T scores); eager: opset 17")
    hf.add_argument("--external-threshold", type=int, default=None,
                    help="weight bytes above which a graph uses ONNX external data (default 2 GiB)")
    hf.add_argument("--in-memory", action="store_true",
                    help="build the float32 model in process memory (~5.7 x the checkpoint at the peak) instead of "
                         "the default: parameters in a float32 file next to --out (4 bytes per parameter of disk, "
                         "removed at the end) and reward.onnx written tensor by tensor")

    ft = sub.add_parser("finetune", help="fine-tune a published (HF layout) or trainer checkpoint on preference data; "
                        "several processes: torchrun --nproc_per_node N -m reward_trainer finetune ...")
    _add_dataclass(ft, FinetuneConfig)
    for flag, choices in (("--trainable", ["head", "plora", "decoder", "all"]), ("--bad-lines", ["skip", "fatal"]),
                          ("--data-format", ["jsonl", "hh-rlhf", "llamafactory"]), ("--fsdp", ["auto", "on", "off"]),
                          ("--device", ["auto", "cpu", "cuda"]), ("--export-attention", ["auto", "fused", "eager"])):
        ft._option_string_actions[flag].choices = choices
    return ap


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    ns = ap.parse_args(argv)
    ns.command_line = "python3 -m reward_trainer " + " ".join(shlex.quote(a) for a in argv)
    if ns.cmd == "generate":
        from .generate import generate

        print(json.dumps(generate(_take(ns, GenConfig))))
    elif ns.cmd == "tokenizer":
        from .data import read_jsonl
        from .generate import tokenizer_corpus
        from .tokenizer_convert import train_tokenizer

        print(train_tokenizer(tokenizer_corpus(read_jsonl(ns.data)), ns.out_prefix, ns.vocab_size))
    elif ns.cmd == "convert-tokenizer":
        from .tokenizer_convert import main as conv

        conv([ns.model, ns.out])
    elif ns.cmd == "import":
        from .data import write_jsonl
        from .importers import import_hh_rlhf, import_llamafactory

        recs = import_hh_rlhf(ns.input) if ns.format == "hh-rlhf" else import_llamafactory(ns.input)
        write_jsonl(recs, ns.output)
        print(json.dumps({"pairs": len(recs), "output": ns.output}))
    elif ns.cmd == "train":
        from .train import train

        margs = _model_args(ns)
        tcfg = _take(ns, TrainConfig)
        train(tcfg, margs, _image_cfg(ns, margs), _take(ns, VideoPreprocess, "video_"))
        if tcfg.eval_data:
            evaluate_stage(os.path.join(tcfg.out, "ckpt.pt"), tcfg.eval_data, tcfg.tokenizer, tcfg.device)
    elif ns.cmd == "pretrain":
        from .pretrain import pretrain

        margs = _model_args(ns)
        pretrain(_take(ns, PretrainConfig), margs, _image_cfg(ns, margs), _take(ns, VideoPreprocess, "video_"),
                 ns.tokenizer, ns.out, ns.pipeline, ns.max_seq_len, ns.seed, ns.device)
    elif ns.cmd == "reproduce":
        ns.budget = ns.budget or ("cuda" if ns.device == "cuda" else "cpu")
        reproduce(ns)
    elif ns.cmd == "evaluate":
        import torch

        from .evaluate import evaluate_checkpoint

        torch.set_num_threads(2)
        print(json.dumps(evaluate_checkpoint(ns.ckpt, ns.data, ns.tokenizer, ns.device), indent=2))
    elif ns.cmd == "import-hf":
        from .hf_import import import_hf

        rep = import_hf(ns.checkpoint, ns.out, ns.dtype, ns.attention, ns.external_threshold, ns.command_line,
                        not ns.in_memory)
        print(json.dumps({k: v for k, v in rep.items() if k != "shards"}))
    elif ns.cmd == "add-packed":
        from .export import add_packed

        print(json.dumps(add_packed(ns.model_dir)))
    elif ns.cmd == "finetune":
        from .finetune import finetune

        fcfg = _take(ns, FinetuneConfig)
        if not fcfg.init or not fcfg.data:
            ap.error("finetune needs --init and --data")
        finetune(fcfg, ns.command_line)
    elif ns.cmd == "export":
        from .export import export

        print(json.dumps(export(ns.ckpt, ns.out, ns.tokenizer, ns.heldout, ns.name, ns.version, ns.command_line,
                                pipeline=ns.pipeline, golden_set=ns.golden_set,
                                content_special_tokens=ns.content_special_tokens)))
