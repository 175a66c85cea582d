"""Import a published IXC-2.5-Reward checkpoint (Hugging Face layout) into a model version directory.

    python3 -m reward_trainer import-hf --checkpoint DIR --out models/<name>/<version> [--dtype fp32]

DIR holds config.json, tokenizer.model and the weights in one of four layouts: pytorch_model.bin.index.json +
pytorch_model-0000N-of-0000M.bin (the published one, bf16 pickles), model.safetensors.index.json +
model-0000N-of-0000M.safetensors (the auto-converted mirror), or a single pytorch_model.bin / model.safetensors.

Names are mapped strictly: our model.py already uses the published names, except the score head, published as
`score.weight` [1, hidden] and called `v_head.weight` here; known non-persistent buffers (rotary_emb.inv_freq,
position_ids) are dropped when a checkpoint carries them. Anything else that is missing, unexpected or mis-shaped
is refused with the full list. Weights stream shard by shard (a shard is read, each tensor converted and copied
into the model, the shard freed), so the peak is the model in its working dtype plus one shard, never a second
full copy; `import_hf` reports the peak RSS as a multiple of the checkpoint size. The output is written by the
normal exporter (temp dir, parity check, rename), so a failure leaves nothing at --out.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from . import safetensors as st
from .config import ImagePreprocess, ModelArgs, VideoPreprocess, VisionArgs

# IXC-2.5 vision tower (CLIP ViT-L/14 at 560, internlm/internlm-xcomposer2d5-clip) and PLoRA settings: not in the
# reward config.json (the tower is built from another repo), so they come from the documented values unless a
# config carries `vision_config` / `plora_rank` / `plora_alpha` (the synthetic test checkpoints do).
DOC_VISION = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "patch_size": 14,
              "image_size": 560, "intermediate_size": 4096, "layer_norm_eps": 1e-5}
DOC_PLORA = {"plora_rank": 256, "plora_alpha": 256}
HEAD_RENAME = {"score.weight": "v_head.weight"}
DROPPED_BUFFERS = (re.compile(r"^model\.layers\.\d+\.attention\.rotary_emb\.inv_freq$"),
                   re.compile(r"^vit\.vision_tower\.vision_model\.embeddings\.position_ids$"))
INDEX = {"safetensors": "model.safetensors.index.json", "bin": "pytorch_model.bin.index.json"}
SINGLE = {"safetensors": "model.safetensors", "bin": "pytorch_model.bin"}
# --dtype -> the graphs' dtype. The PyTorch model is always built and traced in fp32 (Debian's CPU torch 1.13 has
# no fp16 matmul); fp16 graphs are converted from that trace (onnx_fp16.py) and parity-checked with a looser gate.
DTYPES = {"fp32": "float32", "fp16": "float16"}
# what the imported model declares for the input pipeline (ixc25-reward.md §4-5; the pipeline issue settles it)


class HFImportError(ValueError):
    pass


# ------------------------------------------------------------------------------------------------ config
def model_args(cfg: Dict) -> ModelArgs:
    def need(k):
        if k not in cfg:
            raise HFImportError(f"config.json: {k} missing")
        return cfg[k]

    if cfg.get("bias", False):
        raise HFImportError("config.json: bias=true is not the IXC-2.5 architecture (no biases in wqkv/wo/w1-3)")
    if cfg.get("hidden_act", "silu") != "silu":
        raise HFImportError(f"config.json: hidden_act {cfg['hidden_act']!r}, expected silu")
    v = dict(DOC_VISION, **cfg.get("vision_config", {}))
    if v["intermediate_size"] % v["hidden_size"]:
        raise HFImportError("vision_config: intermediate_size must be a multiple of hidden_size")
    heads = need("num_attention_heads")
    return ModelArgs(
        vocab_size=need("vocab_size"), hidden_size=need("hidden_size"), num_layers=need("num_hidden_layers"),
        num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads", heads),
        intermediate_size=need("intermediate_size"), rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        plora_rank=int(cfg.get("plora_rank", DOC_PLORA["plora_rank"])),
        plora_alpha=int(cfg.get("plora_alpha", DOC_PLORA["plora_alpha"])), readout="last",
        vision=VisionArgs(width=v["hidden_size"], layers=v["num_hidden_layers"], heads=v["num_attention_heads"],
                          patch=v["patch_size"], tile_size=v["image_size"],
                          mlp_ratio=v["intermediate_size"] // v["hidden_size"], layer_norm_eps=v["layer_norm_eps"]))


# ------------------------------------------------------------------------------------------------ shards
def shard_layout(ckpt: str) -> Tuple[str, List[str], Optional[Dict[str, str]]]:
    """-> (kind, shard files in order, weight_map or None for a single file). Missing shards are refused here."""
    for kind in ("safetensors", "bin"):
        ip = os.path.join(ckpt, INDEX[kind])
        if os.path.exists(ip):
            try:
                with open(ip, encoding="utf-8") as f:
                    wm = json.load(f)["weight_map"]
            except (ValueError, KeyError, TypeError) as e:
                raise HFImportError(f"{ip}: not a shard index ({e})") from None
            files = sorted(set(wm.values()))
            missing = [f for f in files if not os.path.isfile(os.path.join(ckpt, f))]
            if missing:
                held = {f: sum(1 for v in wm.values() if v == f) for f in missing}
                raise HFImportError(f"{ip} names {len(missing)} shard file(s) that are missing from {ckpt}: "
                                    + ", ".join(f"{f} ({n} tensors)" for f, n in held.items()))
            return kind, files, wm
    for kind in ("safetensors", "bin"):
        if os.path.isfile(os.path.join(ckpt, SINGLE[kind])):
            return kind, [SINGLE[kind]], None
    raise HFImportError(f"{ckpt}: no {INDEX['safetensors']}, {INDEX['bin']}, {SINGLE['safetensors']} or "
                        f"{SINGLE['bin']}")


def iter_shard(path: str, kind: str) -> Iterator[Tuple[str, torch.Tensor]]:
    if kind == "safetensors":
        try:
            yield from st.iter_tensors(path)
        except st.SafetensorsError as e:
            raise HFImportError(f"corrupt or truncated shard: {e}") from None
        return
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as e:  # torch reports a truncated zip as "failed finding central directory"
        raise HFImportError(f"corrupt or truncated shard {path}: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(sd, dict):
        raise HFImportError(f"{path}: not a state dict")
    for name in list(sd):
        yield name, sd.pop(name)  # released as we go


def _shape_names(ckpt: str, kind: str, files: List[str], wm: Optional[Dict[str, str]]) -> Optional[List[str]]:
    """Tensor names known before reading weights (index or safetensors headers), for an early full check."""
    if wm is not None:
        return list(wm)
    if kind == "safetensors":
        try:
            return list(st.read_header(os.path.join(ckpt, files[0]))[0])
        except st.SafetensorsError as e:
            raise HFImportError(f"corrupt or truncated shard: {e}") from None
    return None


def _target(name: str) -> Optional[str]:
    if any(p.match(name) for p in DROPPED_BUFFERS):
        return None
    return HEAD_RENAME.get(name, name)


def _problems(missing, unexpected, misshaped, where: str) -> HFImportError:
    lines = [f"checkpoint does not match the IXC-2.5-Reward architecture ({where}):"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    return HFImportError("\n".join(lines))


def load_weights(model: torch.nn.Module, ckpt: str) -> Dict:
    """Stream every shard into `model` (strict). Returns a report (layout, shards, tensors, dropped, bytes)."""
    kind, files, wm = shard_layout(ckpt)
    expected = model.state_dict()
    names = _shape_names(ckpt, kind, files, wm)
    if names is not None:  # name-level check before any weight is read
        mapped = {_target(n) for n in names} - {None}
        missing = sorted(set(expected) - mapped)
        unexpected = sorted(n for n in names if _target(n) is not None and _target(n) not in expected)
        if missing or unexpected:
            raise _problems([_src(n) for n in missing], unexpected, [], "index")
    assigned, dropped, unexpected, misshaped = set(), [], [], []
    ck_bytes = sum(os.path.getsize(os.path.join(ckpt, f)) for f in files)
    with torch.no_grad():
        for f in files:
            for name, t in iter_shard(os.path.join(ckpt, f), kind):
                if wm is not None and wm.get(name) not in (None, f):
                    unexpected.append(f"{name} (in {f}, index says {wm[name]})")
                    continue
                tgt = _target(name)
                if tgt is None:
                    dropped.append(name)
                elif tgt not in expected:
                    unexpected.append(name)
                elif tuple(t.shape) != tuple(expected[tgt].shape):
                    misshaped.append(f"{name} {list(t.shape)} (model {list(expected[tgt].shape)})")
                elif tgt in assigned:
                    unexpected.append(f"{name} (duplicate)")
                else:
                    if not t.is_floating_point():
                        raise HFImportError(f"{name}: dtype {t.dtype}, expected a floating-point tensor")
                    expected[tgt].copy_(t)  # converts bf16/fp16 -> the model's dtype in place
                    assigned.add(tgt)
                del t
    missing = sorted(set(expected) - assigned)
    if missing or unexpected or misshaped:
        raise _problems([_src(n) for n in missing], unexpected, misshaped, "shards")
    return {"layout": kind, "shards": files, "tensors": len(assigned), "dropped_buffers": len(dropped),
            "checkpoint_bytes": ck_bytes}


def _src(name: str) -> str:
    for k, v in HEAD_RENAME.items():
        if v == name:
            return k
    return name


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ------------------------------------------------------------------------------------------------ import
def load_published(checkpoint: str, dtype: str = "fp32", store_path: Optional[str] = None):
    """A published-layout checkpoint -> (model in float32 (an fp16 graph is converted after tracing), eval mode; the trainer-state dict that declares the
    published input pipeline; the load report). Shared by import-hf and finetune --init. With `store_path` the
    parameters live in that file (weight_store.mapped_model) instead of process memory."""
    from .model import IXCRewardModel
    from .tokenizer_convert import load_proto, special_ids

    cfg_path, tok_path = os.path.join(checkpoint, "config.json"), os.path.join(checkpoint, "tokenizer.model")
    for p in (cfg_path, tok_path):
        if not os.path.isfile(p):
            raise HFImportError(f"{p} missing")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    args = model_args(cfg)
    try:
        special_ids(tok_path)
        pieces = len(load_proto(tok_path).pieces)
    except Exception as e:
        raise HFImportError(f"{tok_path}: not an InternLM2 SentencePiece model ({type(e).__name__}: {e})") from None
    if pieces != args.vocab_size:
        raise HFImportError(f"tokenizer.model has {pieces} pieces, config.json vocab_size is {args.vocab_size}")
    shard_layout(checkpoint)  # refuse a missing shard before building the model
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)
        if store_path:
            from .weight_store import WeightStoreError, mapped_model

            try:
                model, _ = mapped_model(args, store_path)
            except WeightStoreError as e:
                raise HFImportError(str(e)) from None
        else:
            model = IXCRewardModel(args).eval()
    finally:
        torch.set_default_dtype(prev)
    rss_model = peak_rss_bytes()
    rep = load_weights(model, checkpoint)
    rep["peak_rss_after_load"] = peak_rss_bytes()
    rep["rss_after_model_build"] = rss_model
    S = args.vision.tile_size
    real = S == DOC_VISION["image_size"]
    # The imported model declares the published input pipeline (models/README.md): template, decode and hd_num
    # through the `ixc` preset; the published video layout at the real tile size (its numbers are 560-based).
    icfg = ImagePreprocess(tile_size=S, patch_size=args.vision.patch)
    vcfg = VideoPreprocess.published() if real else VideoPreprocess()
    state = {"image": dataclasses.asdict(icfg), "video": dataclasses.asdict(vcfg),
             "train_config": {"max_seq_len": int(cfg.get("max_length", 16384)) if real else 1024, "length_ratio": 0.0,
                              "pipeline": "ixc"},
             "train_result": {"device": "cpu", "steps": 0, "train_pairs": 0}}
    return model, state, rep


class AnonPeak:
    """Peak anonymous RSS (process memory, not page cache a memmap maps), sampled from /proc/self/status: the
    figure that decides whether the import fits a machine (ru_maxrss also counts the mapped weight file)."""

    def __init__(self, every_s: float = 0.2):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    @staticmethod
    def now() -> int:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.peak = max(self.peak, self.now())

    def __enter__(self):
        self.peak = self.now()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.now())


def import_hf(checkpoint: str, out: str, dtype: str = "fp32", attention: str = "fused",
              external_threshold: Optional[int] = None, command: Optional[str] = None,
              low_memory: bool = True) -> Dict:
    """low_memory (default; `--in-memory` turns it off): parameters in a float32 file next to --out (removed at the
    end; needs 4 bytes per parameter of disk) and reward.onnx written tensor by tensor, so process memory is one
    shard or the longest golden case's activations, whichever is larger, instead of the float32 model plus its
    serialised graphs (bench/README.md §Full-width import)."""
    import shutil
    import tempfile

    if dtype not in DTYPES:
        raise HFImportError(f"--dtype {dtype}: this build exports {sorted(DTYPES)}")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".import-", dir=parent) if low_memory else None
    try:
        with AnonPeak() as anon:
            rep = _import(checkpoint, out, dtype, attention, external_threshold, command, work)
        rep["peak_anon_rss"] = anon.peak
        rep["peak_anon_rss_x_checkpoint"] = round(anon.peak / rep["checkpoint_bytes"], 2)
        rep["low_memory"] = low_memory
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in rep.items() if k != "shards"}), file=sys.stderr)
    return rep


def _import(checkpoint: str, out: str, dtype: str, attention: str, external_threshold: Optional[int],
            command: Optional[str], work: Optional[str]) -> Dict:
    from .export import export
    from .onnx_large import GraphOptions

    t0 = time.time()
    model, state, rep = load_published(checkpoint, dtype, os.path.join(work, "weights.f32") if work else None)
    t_load = time.time() - t0
    tok_path = os.path.join(checkpoint, "tokenizer.model")
    opts = GraphOptions(attention=attention, dtype=DTYPES[dtype], external_threshold=external_threshold,
                        stream=work is not None)
    name, version = os.path.basename(os.path.dirname(os.path.abspath(out))), os.path.basename(os.path.abspath(out))
    if not version.isdigit():
        raise HFImportError(f"--out must end in models/<name>/<version> with an integer version, got {out}")
    parity = export(None, out, tok_path, None, name=name, version=int(version),
                    command=command or "python3 -m reward_trainer import-hf", loaded=(model, state), large=opts)
    rep.update({"parity": parity, "seconds_load": round(t_load, 1), "seconds_total": round(time.time() - t0, 1),
                "peak_rss": peak_rss_bytes(), "num_params": model.num_params()})
    rep["peak_rss_x_checkpoint"] = round(rep["peak_rss"] / rep["checkpoint_bytes"], 2)
    rep["peak_rss_load_x_checkpoint"] = round(rep["peak_rss_after_load"] / rep["checkpoint_bytes"], 2)
    return rep
