"""Configuration dataclasses. Every field carries its help text (used by the CLI and the README)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class VisionArgs:
    width: int = _f(192, "ViT hidden width (CLIP-L: 1024)")
    layers: int = _f(4, "ViT encoder layers (CLIP-L: 24)")
    heads: int = _f(3, "ViT attention heads (CLIP-L: 16)")
    patch: int = _f(14, "ViT patch size in pixels")
    tile_size: int = _f(112, "HD tile (crop) size S in pixels (IXC-2.5: 560)")
    mlp_ratio: int = _f(4, "ViT MLP width / hidden width")
    layer_norm_eps: float = _f(1e-5, "ViT LayerNorm epsilon")


@dataclass
class ModelArgs:
    vocab_size: int = _f(4096, "decoder vocabulary size (tokenizer pieces)")
    hidden_size: int = _f(256, "decoder width D (IXC-2.5: 4096)")
    num_layers: int = _f(4, "decoder layers (IXC-2.5: 32)")
    num_heads: int = _f(8, "query heads")
    num_kv_heads: int = _f(2, "key/value heads (GQA groups)")
    intermediate_size: int = _f(704, "SwiGLU inner width")
    rope_theta: float = _f(1000000.0, "RoPE base")
    rms_norm_eps: float = _f(1e-5, "RMSNorm epsilon")
    plora_rank: int = _f(16, "Partial-LoRA rank r (IXC-2.5: 256)")
    plora_alpha: int = _f(16, "Partial-LoRA alpha; scaling = alpha / r")
    readout: str = _f("last", "score readout: 'last' (hidden state at the reward token) or 'mean' (mean over valid tokens)")
    vision: VisionArgs = field(default_factory=VisionArgs, metadata={"help": "vision tower"})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "ModelArgs":
        d = dict(d)
        v = VisionArgs(**d.pop("vision", {}))
        return ModelArgs(vision=v, **d)


@dataclass
class ImagePreprocess:
    tile_size: int = _f(112, "S, must equal vision.tile_size")
    patch_size: int = _f(14, "ViT patch size")
    hd_num: int = _f(4, "max tiles for a conversation with one image")
    hd_num_multi: int = _f(2, "max tiles per image when a conversation has several images")
    mean: List[float] = _f(list(CLIP_MEAN), "normalisation mean")
    std: List[float] = _f(list(CLIP_STD), "normalisation std")
    decode: str = _f("normalized", "image decode: normalized (EXIF applied, alpha on white, 16-bit/257) | published "
                                   "(PIL Image.open().convert('RGB') only)")
    multi_count: str = _f("images", "what hd_num_multi counts: images | media (images and videos, published)")


# The published tokenizer's added tokens past its 92,544-row embedding table (InternLM2 added_tokens.json, ids
# 92544-92549): the published get_score cannot embed them.
INTERNLM2_OUT_OF_TABLE = ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>",
                          "<|plugin|>"]


@dataclass
class TemplateConfig:
    """The chat-template switches of models/README.md §Text (written to model.json `template`)."""
    media_placement: str = _f("inline", "inline (media where its part is) | ixc (the published apply_chat_template)")
    strip_content: bool = _f(True, "strip each message's content (training's conv2text does; published inference does not)")
    eos_newline: str = _f("keep", "keep | strip the last turn's newline before </s>")
    content_special_tokens: str = _f("literal", "literal (safe: content never yields a control id) | published")
    out_of_table_tokens: List[str] = _f([], "strings the published tokenizer maps past the embedding table")


def ixc_published(icfg: "ImagePreprocess", tcfg: Optional[TemplateConfig] = None) -> TemplateConfig:
    """The `ixc` preset: every switch as the published get_score (published-pipeline-spec.md). Sets the image
    fields on `icfg` (hd_num 9 as the README/evaluation pass, the function default being 24; 6 for several media
    items, videos counted) and returns the template switches."""
    icfg.decode, icfg.multi_count, icfg.hd_num, icfg.hd_num_multi = "published", "media", 9, 6
    t = tcfg or TemplateConfig()
    t.media_placement, t.strip_content, t.eos_newline, t.content_special_tokens = "ixc", False, "keep", "published"
    t.out_of_table_tokens = list(INTERNLM2_OUT_OF_TABLE)
    return t


def template_config(pipeline: str, icfg: Optional["ImagePreprocess"] = None,
                    content_special_tokens: str = "") -> TemplateConfig:
    """TrainConfig.pipeline -> the template switches; `ixc` also sets icfg's published fields when given.
    content_special_tokens ('' = the pipeline's) overrides that one switch; literal drops the out-of-table list
    (content never becomes a control id, so nothing maps past the embedding table)."""
    if pipeline == "default":
        t = TemplateConfig()
    elif pipeline == "ixc":
        t = ixc_published(icfg if icfg is not None else ImagePreprocess())
    else:
        raise ValueError(f"unknown pipeline {pipeline!r} (default | ixc)")
    if content_special_tokens:
        t.content_special_tokens = content_special_tokens
        if content_special_tokens == "literal":
            t.out_of_table_tokens = []
    return t


@dataclass
class VideoPreprocess:
    fps: int = _f(1, "frames per second sampled by ffmpeg (-vf fps=N)")
    max_frames: int = _f(8, "max frames kept after sampling")
    frame_long_side: int = _f(224, "each frame resized so its long side is this")
    header_height: int = _f(20, "white label band above each frame")
    gap: int = _f(10, "white gap between frames")
    line_width: int = _f(2, "black separator line in the middle of the gap")
    label_scale: int = _f(2, "bitmap font scale")
    frame_cap: int = _f(10000, "ffmpeg -frames:v safety cap")
    layout: str = _f("ixc_stack", "video layout: ixc_stack (this project's) or published (IXC-2.5's load_video/"
                     "frame2img/Video_transform; its numbers: --video-max-frames 32 --video-frame-long-side 1120 "
                     "--video-header-height 40, see VideoPreprocess.published())")
    label_font_size: int = _f(40, "published layout: label font size in pixels (SimHei 40 in the published code)")

    @staticmethod
    def published() -> "VideoPreprocess":
        """The published IXC-2.5 numbers: fps 1, num_frm 32, long side 560*2, a 40-px label band, gap 10, line 2."""
        return VideoPreprocess(fps=1, max_frames=32, frame_long_side=1120, header_height=40, gap=10, line_width=2,
                               layout="published", label_font_size=40)


@dataclass
class GenConfig:
    out: str = _f("trainer/runs/data", "output folder for train.jsonl / heldout.jsonl and media")
    train_pairs: int = _f(3200, "training pairs")
    heldout_pairs: int = _f(600, "held-out pairs (generated from unseen seeds)")
    seed: int = _f(1234, "training seed; held-out uses seed + 1_000_003")
    categories: List[str] = _f(
        ["arithmetic", "instruction", "image_count", "image_color", "image_position", "table", "video_motion", "length_trap"],
        "categories to generate (equal shares)")


@dataclass
class PretrainConfig:
    """The pretrain stage (pretrain.py): seconds per sub-stage (0 skips it), batch and peak learning rate."""
    drill_steps: int = _f(0, "look-up drill before the text stage: at most this many steps (0 = skip; it ends "
                              "sooner once its widest layout is answered: pretrain.drill_stage)")
    drill_batch: int = _f(64, "rows per drill step")
    drill_lr: float = _f(2e-3, "drill learning rate (20 warm-up steps, then constant)")
    drill_lookup_layer: int = _f(2, "decoder layer whose head 0 the drill teaches to look the count up (the layer "
                                    "below it carries the asked item; layer 0 holds the previous-token head)")
    text_seconds: float = _f(0.0, "language-modelling stage on the world's text (0 = skip)")
    text_drill_rows: int = _f(0, "text stage: rows of the look-up drill added to every step's loss (0 = none; it "
                                 "goes on from where drill_steps left it, or starts bare: pretrain.LookupDrill)")
    text_batch: int = _f(32, "conversations per text step")
    text_lr: float = _f(2e-3, "text stage peak learning rate")
    text_back_offsets: List[int] = _f([], "text stage: also read the token k places back at every position, for each "
                                          "k (a readout used only in this stage; on a bare key-value drill it can end the look-up's plateau: "
                                          "trainer/README.md, session 9)")
    text_prev_heads: List[int] = _f([], "text stage: head j of decoder layer 0 is also taught to attend from every "
                                        "position to the token k_j places back, for each k_j given (the look-up's "
                                        "first half; trainer/README.md, session 10)")
    text_lookup_layer: int = _f(-1, "text stage: head 0 of this decoder layer is also taught to attend, from the "
                                    "position before a read-off answer (a table's count, a told shape's side), to "
                                    "where that answer stands in the prompt (-1 = off; the look-up's second half)")
    text_attention_weight: float = _f(1.0, "weight of those two attention terms in the text stage's loss")
    vision_seconds: float = _f(0.0, "scene-label stage for the vision tower and projector (0 = skip)")
    vision_batch: int = _f(32, "scenes per vision step (kinds in pretrain.SCENE_KINDS' proportions)")
    vision_lr: float = _f(2e-3, "vision stage peak learning rate")
    # session 8: with 0.3 / 2 the tokens name the shape (every token over a shape 0.48 -> 0.87, colour, side, count
    # and motion unchanged); the Bradley-Terry stage did not turn that into position (trainer/README.md, session 8)
    vision_shape_share: float = _f(0.3, "a token is taught an object's shape only where it holds at least this share "
                                        "of the object's area, or the most of it (0 = every token over the object)")
    vision_shape_weight: float = _f(2.0, "weight of the shape term in the vision stage's loss (colour, side, count, "
                                         "motion: 1)")
    ranks: int = _f(1, "data-parallel processes on this host for every pretraining stage (gloo, each one torch "
                       "thread and a batch of its own: a step takes ranks x the stage's batch; host_ranks.py)")
    drill_ranks: int = _f(0, "processes for the drill stage when ranks > 1: 0 = ranks; 1 = this process alone before "
                             "the ranks start (the drill ends on its steps, not a clock: more ranks only make each "
                             "step bigger; trainer/README.md, session 21)")


@dataclass
class TrainConfig:
    data: str = _f("trainer/runs/data/train.jsonl", "training JSONL")
    eval_data: Optional[str] = _f("trainer/runs/data/heldout.jsonl", "held-out JSONL (the train command evaluates the finished run on it)")
    out: str = _f("trainer/runs/default", "run folder (checkpoints, logs)")
    tokenizer: str = _f("trainer/runs/tokenizer/tokenizer.model", "SentencePiece model")
    device: str = _f("cpu", "cpu | cuda")
    seed: int = _f(0, "torch seed")
    epochs: float = _f(1.0, "passes over the (filtered) training set")
    max_steps: int = _f(0, "stop after this many optimizer steps (0 = epochs decide)")
    time_budget_s: float = _f(0.0, "stop training after this many seconds (0 = none); cosine schedule is laid out on the step count")
    batch_pairs: int = _f(16, "preference pairs per optimizer step (2x rows)")
    lr: float = _f(2e-3, "peak learning rate")
    min_lr_ratio: float = _f(0.05, "final lr = lr * ratio (cosine)")
    warmup_ratio: float = _f(0.05, "warmup steps / total steps")
    weight_decay: float = _f(0.1, "AdamW weight decay (matrices only)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.95, "AdamW beta2 (IXC-2.5-Reward: 0.95)")
    grad_clip: float = _f(1.0, "global grad-norm clip")
    freeze_vision: bool = _f(False, "freeze ViT + projector (the paper does; only sensible with a pretrained tower)")
    max_seq_len: int = _f(384, "max tokens per conversation")
    length_ratio: float = _f(2.5, "length constraint: drop pairs with len(chosen) > ratio * len(rejected) (characters); 0 = off")
    ckpt_every: int = _f(200, "save a checkpoint every N steps")
    resume: bool = _f(True, "resume from out/ckpt.pt when present")
    threads: int = _f(1, "torch.set_num_threads (1: on a 2-core host 1 thread trained 3x faster than 2, 48 vs 15 "
                         "pairs/s: the ops of a 5.7 M-parameter model are too small to split, and OpenBLAS's own "
                         "thread pool oversubscribes the cores; trainer/README.md)")
    ranks: int = _f(1, "data-parallel training processes on this host (gloo), each with its own batch of batch_pairs "
                       "and `threads` torch threads; 2 on a 2-core host: 1.23x the pairs/s of one process, at twice "
                       "the pairs per step (trainer/README.md); reproduce keeps 1, the committed model's setting, until a reproduce "
                       "measures 2")
    init: str = _f("", "start from this checkpoint's weights (e.g. the pretrain stage's ckpt.pt; its model size wins)")
    lm_weight: float = _f(1.0, "weight of the auxiliary LM loss on the chosen replies (model_io.chosen_lm_loss; 0 = "
                                "Bradley-Terry only; needs the 'last' readout)")
    lookup_layer: int = _f(-1, "look-up hint (off = -1): head 0 of this decoder layer is also taught to attend, from "
                               "the position before the answer of a pair whose data names an object in its image "
                               "(the generator's `scene` field: image_position), to that object's vision tokens "
                               "(model_io.lookup_hint_loss; trainer/README.md, session 14)")
    lookup_weight: float = _f(1.0, "weight of the look-up hint's term in the loss")
    lookup_share: float = _f(0.2, "look-up hint targets: the tokens holding >= this share of the object's area in "
                                  "their view, and the one holding most (scene_tokens.object_tokens)")
    oversample: List[str] = _f([], "CATEGORY=K: each training pair of that category appears K times per epoch "
                                   "(e.g. image_position=3); the look-up needs more position steps than its 1/8 "
                                   "share gives (trainer/README.md, session 16)")
    focus: List[str] = _f([], "CATEGORY=FRACTION: the stage's first FRACTION (of its time budget, or of its steps "
                              "without one) trains on that category's pairs alone, before the mix; several run "
                              "in order (measured with image_position=0.2: held-out 87.5 -> 82.9 %, position 70 -> 62; "
                              "trainer/README.md, session 19)")
    cache_media: bool = _f(True, "keep every training pair's preprocessed media in memory (float16: about 1 GB for "
                                 "the cpu budget) instead of decoding it again each epoch")
    content_special_tokens: str = _f("", "literal | published: how message content that spells a control token "
                                         "is tokenized in the exported model ('' = the pipeline's; training data "
                                         "never contains one, so only the export and its goldens change)")
    pipeline: str = _f("default", "input pipeline: default (ours) | ixc (the published get_score: layout, no "
                                  "stripping, special tokens, decode, hd_num 9/6 counting videos; overrides --image-hd-num*)")


@dataclass
class FinetuneConfig:
    """`finetune`: a pretrained model (published HF checkpoint or a trainer checkpoint) on your preference data."""
    init: str = _f("", "published-layout HF checkpoint folder (config.json, tokenizer.model, shards) or a trainer "
                       "checkpoint (ckpt.pt, or its run folder)")
    data: str = _f("", "training preference file")
    eval: Optional[str] = _f(None, "evaluation file: accuracy per category at the end (and every --eval-every steps)")
    data_format: str = _f("jsonl", "format of --data/--eval: jsonl (the trainer's) | hh-rlhf | llamafactory (importers)")
    bad_lines: str = _f("skip", "a bad line (invalid JSON, missing field, missing or unreadable media): skip (reported "
                                "with file:line) | fatal")
    out: str = _f("runs/finetune", "run folder: sharded checkpoints ckpt/, log.jsonl, final ckpt.pt, results")
    tokenizer: Optional[str] = _f(None, "SentencePiece model (default: the HF folder's tokenizer.model, or the "
                                        "trainer checkpoint's)")
    trainable: str = _f("plora", "what trains: head (v_head) | plora (Plora_A/B + v_head) | decoder (decoder layers, "
                                 "final norm, v_head; embeddings and vision frozen) | all")
    device: str = _f("auto", "auto (cuda when available) | cpu | cuda; under torchrun each process takes cuda:LOCAL_RANK")
    bf16: bool = _f(True, "bf16 autocast on cuda (fp32 master weights, grads and optimizer states); ignored on cpu")
    activation_checkpointing: bool = _f(False, "recompute each decoder (and trainable ViT) layer in backward: "
                                               "keeps one layer's activations instead of all")
    fsdp: str = _f("auto", "auto (FSDP for --trainable all with more than one process, DDP otherwise) | on | off")
    seed: int = _f(0, "seed of the data order and of every rank")
    epochs: float = _f(1.0, "passes over the (filtered) training pairs")
    max_steps: int = _f(0, "optimizer steps (0: epochs decide)")
    time_budget_s: float = _f(0.0, "stop after this many seconds (0: none)")
    batch_pairs: int = _f(16, "pairs per optimizer step, over all processes (the effective batch; independent of "
                              "the process count)")
    micro_pairs: int = _f(4, "pairs per forward pass on one process; gradient accumulation steps = batch_pairs / "
                             "(processes * micro_pairs)")
    lr: float = _f(1e-5, "peak learning rate")
    min_lr_ratio: float = _f(0.1, "final lr = lr * ratio (cosine)")
    warmup_ratio: float = _f(0.03, "warmup steps / total steps")
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.95, "AdamW beta2")
    grad_clip: float = _f(1.0, "global grad-norm clip (0: off)")
    length_ratio: float = _f(2.5, "the paper's length constraint on --data: drop pairs with len(chosen) > ratio * "
                                  "len(rejected) characters; 0 = off")
    max_seq_len: int = _f(0, "max tokens per conversation (0: the init's)")
    ckpt_every: int = _f(100, "sharded checkpoint every N optimizer steps (0: only at the end)")
    keep_ckpts: int = _f(2, "sharded checkpoints kept")
    ckpt_shard_mb: float = _f(1024.0, "size of one checkpoint shard file (MiB; parameters and their optimizer states)")
    resume: bool = _f(True, "resume from the newest sharded checkpoint in out/ckpt")
    eval_every: int = _f(0, "evaluate on --eval every N steps (0: only at the end)")
    threads: int = _f(2, "torch.set_num_threads per process")
    export_out: Optional[str] = _f(None, "export the result to this model version directory models/<name>/<version> "
                                         "(the service hot-loads a new version)")
    export_attention: str = _f("auto", "graph attention of the export: auto (fused for an HF init, as import-hf; "
                                       "eager for a trainer checkpoint) | fused | eager")
