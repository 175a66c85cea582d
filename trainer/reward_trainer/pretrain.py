"""Stage: pretraining before the Bradley-Terry stage, as IXC-2.5-Reward has it (its decoder is a chat model and
its vision tower was trained long before; ours start from scratch, so the default model earns both here).

1. `text`: language modelling on the procedural world's text (arithmetic facts, tables with questions, verifiable
   instructions, and the image categories' questions about scenes told in words) drawn on the fly from the
   training seed: the decoder learns the facts and the table read-off with a target for every token instead of
   one comparison bit per pair, and every word the scene labels use gets an embedding of its own.
2. `vision`: the vision tower and projector learn the scene labels (shape, colour, side, count, motion direction)
   on scenes rendered on the fly, read out through the frozen token embedding matrix: every image token over a
   shape is trained to point at the words naming it ("red", "circle", "left"; each against its own group of
   words), the mean of a count scene's tokens at its count and the mean of a video's global-view tokens at its
   direction. The decoder then meets image tokens that
   already look like the words its answers use, which is the slow part of learning from pairs alone.

Both stages only see the training side of the world (seeded from the training seed; the held-out split's seed
and its reserved surface forms are never drawn: tests/test_pretrain.py checks both). Nothing new is exported:
the readout is the tied token embedding matrix.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import host_ranks, media
from .checkpoint import PRETRAIN_RESULT, read_result, save_checkpoint, write_result
from .collate import shared_prefix
from .config import ImagePreprocess, ModelArgs, PretrainConfig, TemplateConfig, VideoPreprocess, template_config
from .data import MediaCache, build_examples
from .model import IXCRewardModel
from .scene_tokens import cell_coverage, grid_token_index
from .tokenizer import TextTokenizer
from .world import COLORS, ITEMS, SHAPES, Gen

COSINE_SCALE = 16.0  # logit of a token aligned with its word (cosine 1): e^16 vs at most e^0 for the word opposite
SCENE_KINDS = ("count", "color", "position", "video", "count", "position", "count", "position")  # hard ones 3/8
# facts and look-ups twice; scenes told in words give the scene words their own embeddings (world.Gen.scene_text)
TEXT_CATEGORIES = ("arithmetic", "table", "arithmetic", "table", "instruction", "scene_text")


def word_piece(tok: TextTokenizer, word: str) -> int:
    """The first piece of `word` as it is written inside a sentence ("It is red." -> the piece of " red")."""
    base = tok.encode("x")
    ids = tok.encode("x " + word)[len(base):]
    bare = tok.encode("x ")[len(base):]
    ids = [i for i in ids if i not in bare] or ids
    return ids[0]


def _lr(step: int, total_s: float, elapsed: float, peak: float, warm: int = 20) -> float:
    """Linear warmup over `warm` steps, then cosine over the stage's time budget to 10 % of the peak."""
    if step < warm:
        return peak * (step + 1) / warm
    p = min(1.0, elapsed / max(total_s, 1e-9))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def _optimizer_step(opt: torch.optim.Optimizer, params, loss: torch.Tensor, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    host_ranks.sync_grads([p for g in opt.param_groups for p in g["params"]])  # several ranks: their mean
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def _ema(prev, x: float, a: float = 0.95) -> float:
    return x if prev is None else a * prev + (1 - a) * x


def _adamw(params, lr: float) -> torch.optim.Optimizer:
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


# ------------------------------------------------------------------------------------------------------- text
# Categories whose answer is read off the prompt after its key, and which of the answer token's places there hold
# it: a table's count at every row with that count (any of them gives the right answer: "| cups | 7 |"); a told
# side at its first mention, the named shape's clause ("a red circle on the left": the question repeats both sides
# after it). Not a told colour: it stands before its shape ("an orange triangle"), where no causal head can know
# which shape follows; the look-up there reads the shape's position instead.
READ_OFF = {"table": "all", "scene_position": "first"}


class TextRow(NamedTuple):
    ids: List[int]
    reply_at: int  # first position where chosen and rejected differ
    sources: List[int]  # where the prompt holds the answer token, for a read-off category (else empty)
    read_at: int  # the position that predicts the answer token (reply_at - 1 unless a bare space piece comes first)


def answer_sources(ids: Sequence[int], at: int, category: str, blank: int = -1) -> Tuple[int, List[int]]:
    """(read_at, sources): the position predicting the answer token and the positions before `at` holding it, as
    READ_OFF says for the category. The answer token is ids[at], or the one after a bare space piece (`blank`: a
    tokenizer that splits " 3" into "▁" and "3" puts the difference at the space, and the table holds "3")."""
    a = at
    while a < len(ids) and ids[a] == blank:
        a += 1
    rule = READ_OFF.get(category)
    if rule is None or a >= len(ids):
        return at - 1, []
    found = [j for j in range(at) if ids[j] == ids[a]]
    return a - 1, (found[:1] if rule == "first" else found)


def text_batch(gen: Gen, n: int, tok: TextTokenizer, tcfg: TemplateConfig, max_seq_len: int,
               tokens_per_image) -> List[TextRow]:
    """n chosen conversations from the world's text categories."""
    recs = [getattr(gen, TEXT_CATEGORIES[gen.rng.randrange(len(TEXT_CATEGORIES))])(i) for i in range(n)]
    cache = MediaCache(ImagePreprocess(), VideoPreprocess())  # text only: never asked for media
    ex, _ = build_examples(recs, "", tok, cache, max_seq_len, tokens_per_image, tcfg)
    blank = tok.sp.piece_to_id("\u2581")
    rows = []
    for e in ex:
        at = shared_prefix(e.chosen_ids, e.rejected_ids, e.chosen_spans, e.rejected_spans)
        read_at, sources = answer_sources(e.chosen_ids, at, e.category, blank)
        rows.append(TextRow(e.chosen_ids, at, sources, read_at))
    return rows


class AttentionHints:
    """Text stage only (off by default): two attention terms aimed at the look-up the tables and told scenes need
    (find the named thing, read the word beside it), which next-token loss alone does not form in the stage's
    minutes. On the bare key-value drill (tests/probe_recall.py) both together formed it in four seeds of five within
    400 steps, where neither alone nor session 9's readout did; with the key 2-3 pieces before its value, as in the
    tables, the plateau grew to 600-1 300 steps, and the real text stage did not form it in 1 866 steps of tables
    (trainer/README.md, session 10).
    - `prev`: head j of layer 0 attends from every position to the token prev[j] places back (so each value's
      position can know the key before it);
    - `layer`: head 0 of that layer attends, from the position before a read-off answer (TextRow.read_at), to the
      answer's places in the prompt (TextRow.sources).
    Each term is -log of the attention mass on its target, averaged over its positions; `weight` times their sum
    joins the loss. Nothing is added to the model: the terms only shape heads it already has."""

    def __init__(self, prev: Sequence[int], layer: int, weight: float):
        self.prev, self.layer, self.weight = [int(k) for k in prev], int(layer), float(weight)
        if self.layer == 0 and self.prev:
            raise ValueError("text_lookup_layer 0 would share head 0 of layer 0 with text_prev_heads")

    def arm(self, model: IXCRewardModel) -> None:
        for layer in model.model.layers:
            layer.attention.keep(0)
        if self.prev:
            model.model.layers[0].attention.keep(len(self.prev))
        if self.layer >= 0:
            model.model.layers[self.layer].attention.keep(1)

    def loss(self, model: IXCRewardModel, rows: Sequence[TextRow], am: torch.Tensor) -> torch.Tensor:
        """`weight` times the sum of the terms in use (each a mean over its positions); disarms the model."""
        layers = model.model.layers
        kept = {i: layers[i].attention.take_kept().log_softmax(-1) for i in range(len(layers))
                if layers[i].attention.keep_heads}
        terms = []
        T = am.shape[1]
        for j, k in enumerate(self.prev):
            t = torch.arange(k, T, device=am.device)
            ok = (am[:, k:] > 0) & (am[:, :-k] > 0)
            terms.append(-kept[0][:, j, t, t - k][ok].mean())
        if self.layer >= 0:
            lp = [torch.logsumexp(kept[self.layer][b, 0, r.read_at, r.sources], dim=0)
                  for b, r in enumerate(rows) if r.sources]
            if lp:
                terms.append(-torch.stack(lp).mean())
        return self.weight * torch.stack(terms).sum() if terms else am.new_zeros((), dtype=torch.float32)


class BackReadout(torch.nn.Module):
    """Text stage only (never exported): from each position's final hidden state, the token `k` places back, for
    each k in `offsets`, through a linear map and the tied embeddings. Why: the tables' read-off and the told
    positions need a look-up (find the named item, read the word beside it), and the 4-layer decoder does not form
    one from next-token loss in the stage's minutes: on a bare key-value recall drill it stays at guessing among the
    values present for 1 500-1 900 steps at four learning rates; with this readout on the previous token one seed
    in five (and a draft of the drill) reached 0.96 within 800 steps (trainer/README.md, session 9): a hint, off by
    default, and not yet seen on the tables' own format.
    Knowing what came just before each position is the half of the look-up circuit that next-token loss gives no
    gradient to until the other half exists."""

    def __init__(self, dim: int, offsets: Sequence[int]):
        super().__init__()
        self.offsets = [int(k) for k in offsets]
        self.maps = torch.nn.ModuleList(torch.nn.Linear(dim, dim) for _ in self.offsets)

    def loss(self, h: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Mean over offsets of the cross-entropy of token t-k read at t, over positions where both are real."""
        total = h.new_zeros(())
        for k, lin in zip(self.offsets, self.maps):
            at = valid[:, k:] & valid[:, :-k]
            logits = lin(h[:, k:][at]) @ emb.t()
            total = total + F.cross_entropy(logits.float(), ids[:, :-k][at])
        return total / max(len(self.offsets), 1)


def text_lm_loss(model: IXCRewardModel, rows: Sequence[TextRow], pad_id: int, device: str,
                 back: "BackReadout | None" = None, hints: "AttentionHints | None" = None) -> Tuple[torch.Tensor, float]:
    """Next-token cross-entropy over whole conversations plus, again, over the reply (where the answer is), plus
    `back`'s and `hints`' terms when given; returns (loss, reply accuracy of the first answer token)."""
    B, T = len(rows), max(len(row.ids) for row in rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    am = torch.zeros((B, T), dtype=torch.long)
    reply = torch.zeros((B, T), dtype=torch.bool)
    for b, row in enumerate(rows):
        n = len(row.ids)
        ids[b, :n] = torch.tensor(row.ids)
        am[b, :n] = 1
        reply[b, max(row.reply_at - 1, 0):n - 1] = True
    ids, am, reply = ids.to(device), am.to(device), reply.to(device)
    D = model.args.hidden_size
    if hints is not None:
        hints.arm(model)
    h = model.hidden_states(ids, torch.zeros(1, D, device=device), torch.zeros_like(ids),
                            torch.zeros(B, T, device=device), am)
    logits = (h[:, :-1] @ model.model.tok_embeddings.weight.t()).float()
    tgt = ids[:, 1:]
    valid = am[:, 1:].bool()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view(B, T - 1)
    r = reply[:, :-1] & valid
    loss = ce[valid].mean() + ce[r].mean()
    if back is not None:
        loss = loss + back.loss(h, ids, am.bool(), model.model.tok_embeddings.weight)
    if hints is not None:
        loss = loss + hints.loss(model, rows, am)
    first = torch.tensor([max(row.reply_at - 1, 0) for row in rows], device=device)
    ar = torch.arange(B, device=device)
    acc = float((logits[ar, first].argmax(-1) == tgt[ar, first]).float().mean())
    return loss, acc


def text_params(model: IXCRewardModel) -> List[torch.nn.Parameter]:
    """What the text stage trains: the decoder and its embeddings, not the vision side, PLoRA or the score head."""
    return [p for n, p in model.named_parameters()
            if not n.startswith(("vit.", "vision_proj.", "plora_", "v_head")) and "Plora_" not in n]


def text_hints(cfg: PretrainConfig) -> "AttentionHints | None":
    if not cfg.text_prev_heads and cfg.text_lookup_layer < 0:
        return None
    return AttentionHints(cfg.text_prev_heads, cfg.text_lookup_layer, cfg.text_attention_weight)


def text_stage(model: IXCRewardModel, tok: TextTokenizer, tcfg: TemplateConfig, cfg: PretrainConfig,
               max_seq_len: int, seed: int, device: str, drill: "LookupDrill | None" = None) -> Dict:
    """`drill` (with cfg.text_drill_rows > 0): that many drill rows join every step's loss (LookupDrill)."""
    params = text_params(model)
    back = BackReadout(model.args.hidden_size, cfg.text_back_offsets).to(device) if cfg.text_back_offsets else None
    if back is not None:
        host_ranks.same_weights(back.parameters())
    extra = (list(back.parameters()) if back is not None else []) + (list(drill.back.parameters()) if drill else [])
    opt = _adamw(params + extra, cfg.text_lr)
    hints = text_hints(cfg)
    gen = Gen("", "pretrain", random.Random(seed))
    model.train()
    t0, step, ema, acc_ema = time.time(), 0, None, None
    while (el := host_ranks.rank0_clock(time.time() - t0)) < cfg.text_seconds:
        rows = text_batch(gen, cfg.text_batch, tok, tcfg, max_seq_len, model.tokens_per_image)
        loss, acc = text_lm_loss(model, rows, tok.pad_id, device, back, hints)
        if drill is not None:
            loss = loss + drill.loss(model, cfg.text_drill_rows)
        _optimizer_step(opt, params, loss, _lr(step, cfg.text_seconds, el, cfg.text_lr))
        if drill is not None:
            drill.record()
        step += 1
        ema = _ema(ema, float(loss))
        acc_ema = _ema(acc_ema, acc)
        if step % 20 == 0 and host_ranks.rank() == 0:
            print(f"pretrain text step {step} loss {ema:.3f} answer-token acc {acc_ema:.3f} "
                  f"{time.time() - t0:.0f}/{cfg.text_seconds:.0f}s", file=sys.stderr)
    world = host_ranks.world_size()
    out = {"stage": "text", "steps": step, "seconds": round(time.time() - t0, 1), "ranks": world,
           "sequences": step * cfg.text_batch * world,
           "final_loss_ema": round(ema or 0.0, 4), "answer_token_accuracy_ema": round(acc_ema or 0.0, 4)}
    return {**out, "drill": drill.summary()} if drill is not None else out


# ----------------------------------------------------------------------------------------------- look-up drill
# (gap, far) in order: bare rows first, then the tables' gap, then the asked item moved away from the read position a
# few pieces at a time. Started wide, the look-up did not form in 2 000 steps; widened from a formed bare one it held
# at every width — but only once formed: a fixed schedule that widened seed 1234's drill before its bare look-up
# formed (at 160 steps) left it guessing (trainer/README.md, sessions 10-11). So the drill widens when the current
# layout is answered (DRILL_ADVANCE, over at least DRILL_MIN_STEPS steps there) and stops once the last one is.
DRILL_LAYOUTS = ((0, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 6), (2, 8), (2, 10), (2, 12), (2, 16))
DRILL_ADVANCE = 0.9  # look-up accuracy (moving average) that lets the drill widen
DRILL_MIN_STEPS = 50  # steps at each layout before it may widen (the average restarts there)


class DrillPieces(NamedTuple):
    """The drill's vocabulary in the tokenizer's own pieces, cut from the tables' own text: the world's tables write
    `| chairs | 7 |` (with the default tokenizer ▁chairs ▁| ▁ 7 ▁|\\n|), `bars` being what stands between an item and
    its count (the last `gap` of them are used) and `sep` what follows the count up to the next row's item."""
    keys: List[int]  # the world's items
    values: List[int]  # the digits, as a table's count cell writes them
    sep: List[int]
    ask: List[int]  # "How many", before the asked item
    bars: List[int]
    filler: List[int]  # the rest of the question, between the asked item and the read position


def drill_pieces(tok: TextTokenizer) -> DrillPieces:
    keys = [word_piece(tok, it) for it in ITEMS]
    a, b = keys[ITEMS.index("chairs")], keys[ITEMS.index("cups")]

    def cell(d: int) -> Tuple[List[int], int, List[int]]:
        """(bars, the count's piece, sep) of `| chairs | d |` followed by the next row."""
        ids = tok.encode(f"| chairs | {d} |\n| cups | 3 |")
        i, j = ids.index(a), ids.index(b)
        at = [k for k in range(i + 1, j) if str(d) in tok.sp.id_to_piece(ids[k])]
        if len(at) != 1:
            raise ValueError(f"the tokenizer writes the count {d} of a table row in {len(at)} pieces; the look-up drill "
                             "needs one")
        return ids[i + 1:at[0]], ids[at[0]], ids[at[0] + 1:j]

    cells = [cell(d) for d in range(10)]
    bars, _, sep = cells[7]
    q = tok.encode("How many chairs are there according to the table?")
    k = q.index(a)
    return DrillPieces(keys, [c[1] for c in cells], sep, q[:k], bars, q[k + 1:])


class DrillRows(NamedTuple):
    ids: torch.Tensor  # [B, T]
    valid: torch.Tensor  # [B, T]
    last: torch.Tensor  # [B] the read position (it predicts the asked item's count)
    answer: torch.Tensor  # [B]
    source: torch.Tensor  # [B] where the asked item's count stands
    asked: torch.Tensor  # [B] where the asked item stands in the question


def drill_batch(p: DrillPieces, n: int, gap: int, far: int, rng: random.Random) -> DrillRows:
    """n rows of 2-4 `item count` pairs, then `How many item` and `far` of the question's words."""
    rows, answers, sources, asked = [], [], [], []
    bars = p.bars[max(0, len(p.bars) - gap):] if gap else []
    for _ in range(n):
        k = rng.randint(2, 4)
        keys, vals = rng.sample(p.keys, k), [rng.choice(p.values) for _ in range(k)]
        row = [t for kv in zip(keys, vals) for t in (kv[0], *bars, kv[1], *p.sep)]
        i = rng.randrange(k)
        sources.append(i * (len(bars) + 2 + len(p.sep)) + len(bars) + 1)
        asked.append(len(row) + len(p.ask))
        rows.append(row + p.ask + [keys[i]] + rng.choices(p.filler, k=far))
        answers.append(vals[i])
    T = max(map(len, rows))
    ids = torch.zeros(n, T, dtype=torch.long)
    valid = torch.zeros(n, T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)], valid[b, :len(r)] = torch.tensor(r), 1
    return DrillRows(ids, valid, torch.tensor([len(r) - 1 for r in rows]), torch.tensor(answers),
                     torch.tensor(sources), torch.tensor(asked))


class LookupDrill:
    """The drill's state: its pieces, the hints and readout it trains with, and where it stands in DRILL_LAYOUTS.
    `loss` draws one batch at the current layout; `record` moves on once that layout is answered. drill_stage runs
    it alone; with `text_drill_rows` the text stage adds one batch to each of its steps, so the look-up keeps being
    asked for while the decoder learns the rest (drilled first and then left to the mix, arithmetic fell 0.81 -> 0.64
    and the tables drifted: trainer/README.md, session 11)."""

    def __init__(self, model: IXCRewardModel, tok: TextTokenizer, layer: int, seed: int, device: str, at: int = 0):
        if layer < 2:
            raise ValueError("drill_lookup_layer needs two layers below it (the previous-token head and the carry)")
        self.pieces = drill_pieces(tok)
        # session 9's readout on layer 0's output: with it the bare look-up formed within 200 steps in seeds 2 and
        # 3, which the hints alone left guessing for 400 (trainer/README.md, session 11); drill-only, never exported
        self.back = BackReadout(model.args.hidden_size, [1]).to(device)
        host_ranks.same_weights(self.back.parameters())
        self.hints = AttentionHints([1], layer, 1.0)
        self.carry = model.model.layers[layer - 1].attention
        self.rng = random.Random(seed + 11)
        self.device = device
        self.at, self.since, self.acc, self.reached, self.steps, self.finished = at, 0, None, [], 0, False
        self.shown: Tuple[int, int, float] = (*DRILL_LAYOUTS[at], 0.0)
        self._seen: Dict[str, torch.Tensor] = {}
        self._hook = model.model.layers[0].register_forward_hook(lambda m, i, o: self._seen.__setitem__("h", o))

    def close(self) -> None:
        """Takes the drill's forward hook off the model (the readout's input; nothing of the drill is exported)."""
        self._hook.remove()

    def __enter__(self) -> "LookupDrill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def loss(self, model: IXCRewardModel, n: int) -> torch.Tensor:
        """n rows at the current layout: the count's cross-entropy at the read position, the readout, the carry
        hint (head 0 of the layer below the look-up, to the asked item) and the two look-up hints."""
        gap, far = DRILL_LAYOUTS[self.at]
        r = drill_batch(self.pieces, n, gap, far, self.rng)
        dev = self.device
        ids, valid = r.ids.to(dev), r.valid.to(dev)
        self.hints.arm(model)
        self.carry.keep(1)
        D = model.args.hidden_size
        h = model.hidden_states(ids, torch.zeros(1, D, device=dev), torch.zeros_like(ids),
                                torch.zeros(ids.shape, device=dev), valid)
        ar = torch.arange(len(ids), device=dev)
        last, answer = r.last.to(dev), r.answer.to(dev)
        emb = model.model.tok_embeddings.weight
        logits = (h[ar, last] @ emb.t()).float()
        loss = F.cross_entropy(logits, answer) + self.back.loss(self._seen.pop("h"), ids, valid.bool(), emb)
        loss = loss - self.carry.take_kept().log_softmax(-1)[ar, 0, last, r.asked.to(dev)].mean()
        # from the host-side batch: no device round trip per row on a GPU
        rows = [TextRow(r.ids[b].tolist(), int(r.last[b]) + 1, [int(r.source[b])], int(r.last[b]))
                for b in range(len(r.ids))]
        loss = loss + self.hints.loss(model, rows, valid)
        # the ranks' mean: every rank widens (and stops) at the same step
        self._acc_now = host_ranks.mean(float((logits.argmax(-1) == answer).float().mean()))
        return loss

    def record(self) -> bool:
        """After each step: widens once the current layout is answered; True once the last one is. `shown` keeps
        the layout and moving average this step was measured at (the average restarts when the drill widens)."""
        self.acc = _ema(self.acc, self._acc_now, 0.9)
        self.since += 1
        self.steps += 1
        self.shown = (*DRILL_LAYOUTS[self.at], self.acc)
        if self.since >= DRILL_MIN_STEPS and self.acc >= DRILL_ADVANCE:
            if not self.finished:  # the last layout stays answered while the text stage's rows go on there
                gap, far = DRILL_LAYOUTS[self.at]
                self.reached.append({"gap": gap, "far": far, "step": self.steps})
            if self.at == len(DRILL_LAYOUTS) - 1:
                self.finished = True
                return True
            self.at, self.since, self.acc = self.at + 1, 0, None
        return False

    def summary(self) -> Dict:
        return {"steps": self.steps, "answered": self.reached, "finished": self.finished,
                "look_up_accuracy_ema": round(self.acc or 0.0, 4)}


def drill_stage(model: IXCRewardModel, drill: LookupDrill, cfg: PretrainConfig) -> Dict:
    """Before the text stage (off by default): the look-up the tables need (the told scenes need the same one; the
    drill has tables only), drilled on its own in the tables' pieces — `item count` pairs, then `How many item`, the
    loss on the count at the read position only — with the attention hints on (a previous-token head in layer 0,
    head 0 of `drill_lookup_layer` from the read position to the asked count, head 0 of the layer below it to the
    asked item), through DRILL_LAYOUTS as each is answered; at most `drill_steps` steps."""
    params = text_params(model)
    opt = _adamw(params + list(drill.back.parameters()), cfg.drill_lr)
    model.train()
    t0 = time.time()
    for step in range(1, cfg.drill_steps + 1):
        loss = drill.loss(model, cfg.drill_batch)
        # clipped over the model's parameters only, as the drills measured (the readout's own gradient unclipped)
        _optimizer_step(opt, params, loss, cfg.drill_lr * min(1.0, step / 20))
        done = drill.record()
        if step % 100 == 0 and host_ranks.rank() == 0:
            gap, far, acc = drill.shown
            print(f"pretrain drill step {step} gap {gap} far {far} look-up accuracy {acc:.3f} "
                  f"{time.time() - t0:.0f}s", file=sys.stderr)
        if done:
            break
    return {"stage": "drill", "seconds": round(time.time() - t0, 1), "ranks": host_ranks.world_size(),
            **drill.summary()}


# ----------------------------------------------------------------------------------------------------- vision
class SceneLabels:
    """Word pieces of the scene vocabulary (the same pieces the replies use), by group."""

    def __init__(self, tok: TextTokenizer):
        self.color = {c: word_piece(tok, c) for c in COLORS}
        self.shape = {s: word_piece(tok, s) for s in SHAPES}
        self.side = {s: word_piece(tok, s) for s in ("left", "right")}
        self.count = {k: word_piece(tok, str(k)) for k in range(1, 5)}
        self.motion = {d: word_piece(tok, d) for d in ("left", "right", "up", "down")}
        self.groups: Dict[str, List[int]] = {g: list(getattr(self, g).values())
                                             for g in ("color", "shape", "side", "count", "motion")}


def scene_batch(gen: Gen, n: int, icfg: ImagePreprocess, vcfg: VideoPreprocess, start: int = 0) -> List[Dict]:
    """n rendered scenes with their labels, kinds in SCENE_KINDS' proportions (video costs ~5 crops, an image 2);
    `start` continues the kind cycle across batches."""
    S, G = icfg.tile_size, model_grid(icfg)
    R = S * math.ceil(112 / S)  # the scenes need about 112 pixels; whole tiles, so no resampling
    out = []
    for i in range(n):
        kind = SCENE_KINDS[(start + i) % len(SCENE_KINDS)]
        if kind == "video":
            frames, way = gen.motion_frames()
            canvas = media.layout_frames([Image.fromarray(f) for f in frames], vcfg)
            out.append({"kind": kind, "pixels": media.video_transform(canvas, icfg), "motion": way})
            continue
        im, objs = getattr(gen, f"{kind}_scene")((R, R))
        px = media.image_transform(im, icfg, icfg.hd_num)
        assert px.shape[2:] == (R, R), "scene sizes are whole tiles under hd_num"
        # the global view sees the whole scene in G x G cells, the tiles in cells of S / G pixels
        out.append({"kind": kind, "pixels": px, "objs": objs,
                    "coverage": (cell_coverage(objs, (R, R), R // G), cell_coverage(objs, (R, R), S // G))})
    return out


def model_grid(icfg: ImagePreprocess) -> int:
    """Tokens per tile side after the 2x2 merge (G): tile / patch / 2."""
    return icfg.tile_size // icfg.patch_size // 2


def token_targets(scene: Dict, labels: SceneLabels, G: int, S: int, min_cover: float,
                  shape_share: float = 0.0) -> List[Tuple[int, str, int]]:
    """(token position in the scene's vision block, label group, word piece) for every grid token an object covers
    (>= min_cover of the token's cell): the object's colour and side of the image, and its shape where the token
    holds >= shape_share of the object's area in that view or is the token holding the most of it. Why: a sliver
    of a shape does not show its outline; labelling every token over it taught the tokens to guess (per-token
    shape 0.49 after the session-6 stage, chance 0.33)."""
    idx, rc = grid_token_index(scene["pixels"].shape[2] // S, scene["pixels"].shape[3] // S, G)
    W = scene["pixels"].shape[3]
    share = [cov / np.maximum(cov.sum(axis=(1, 2), keepdims=True), 1e-9) for cov in scene["coverage"]]
    share = [np.where(sh >= sh.max(axis=(1, 2), keepdims=True), 1.0, sh) for sh in share]  # the best token counts
    out = []
    for k, o in enumerate(scene["objs"]):
        words = (("color", labels.color[o.color]), ("side", labels.side["left" if o.x < W / 2 else "right"]))
        for j, (view, r, c) in zip(idx, rc):
            if scene["coverage"][view][k, r, c] >= min_cover:
                out += [(j, g, w) for g, w in words]
                if share[view][k, r, c] >= shape_share:
                    out.append((j, "shape", labels.shape[o.shape]))
    return out


def group_readout(E: torch.Tensor, pieces: Sequence[int]) -> torch.Tensor:
    """[k, D]: each word's embedding minus its group's mean, unit length: the part that tells it from the others.
    Why not the whole rows: words used in the same contexts share most of their embedding (after the text stage
    cosine 0.85-0.92 between "left" and "right"), so cosine logits against whole rows can tell them apart by at
    most 16 x 0.08 = 1.3 however well a token is aligned; against the differences the whole scale is theirs."""
    g = E[torch.tensor(list(pieces), device=E.device)]
    return F.normalize(g - g.mean(0, keepdim=True), dim=-1)


def vision_loss(model: IXCRewardModel, scenes: List[Dict], labels: SceneLabels, min_cover: float = 0.1,
                shape_share: float = 0.0, shape_weight: float = 1.0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Cross-entropy of image tokens read through the (frozen) token embeddings against the scene words, each
    within its own group (colour among the colours, side between left and right, ...): every grid token an object
    covers (>= min_cover of its cell) -> that object's colour and side, and its shape where token_targets'
    shape_share rule allows (that term weighted shape_weight); the mean of a count scene's grid
    tokens -> its count; the mean of a video's global-view tokens -> its direction. One term per group; stats: each group's
    accuracy in the batch."""
    # cosine logits: the tokens learn the words' directions (the decoder RMS-normalises what it reads), and the
    # loss starts near log(group size) instead of at the raw dot products' scale
    E = model.model.tok_embeddings.weight.detach()
    toks = model.vision_forward_many([s["pixels"] for s in scenes])
    G = model.G
    S = model.args.vision.tile_size
    flat = torch.cat(toks, 0)  # one gather for every labelled token (thousands of tiny index ops are slow)
    rows: Dict[str, List[int]] = {g: [] for g in labels.groups}
    tgt: Dict[str, List[int]] = {g: [] for g in labels.groups}
    pooled: Dict[str, List[torch.Tensor]] = {"count": [], "motion": []}
    base = 0
    for s, t in zip(scenes, toks):
        idx = grid_token_index(s["pixels"].shape[2] // S, s["pixels"].shape[3] // S, G)[0]
        if s["kind"] == "video":
            # the global view's tokens only: it is the one crop that shows every frame (a tile holds one or two)
            pooled["motion"].append(t[idx[:G * G]].mean(0))
            tgt["motion"].append(labels.groups["motion"].index(labels.motion[s["motion"]]))
            base += t.shape[0]
            continue
        for j, g, w in token_targets(s, labels, G, S, min_cover, shape_share):
            rows[g].append(base + j)
            tgt[g].append(labels.groups[g].index(w))
        if s["kind"] == "count":
            pooled["count"].append(t[idx].mean(0))
            tgt["count"].append(labels.groups["count"].index(labels.count[len(s["objs"])]))
        base += t.shape[0]
    loss = torch.zeros((), device=E.device)
    stats: Dict[str, float] = {}
    for g, pieces in labels.groups.items():
        if not tgt[g]:
            continue
        x = torch.stack(pooled[g]) if g in pooled else flat[torch.tensor(rows[g], dtype=torch.long, device=flat.device)]
        lg = (F.normalize(x, dim=-1) @ group_readout(E, pieces).t() * COSINE_SCALE).float()
        y = torch.tensor(tgt[g], device=E.device)
        loss = loss + (shape_weight if g == "shape" else 1.0) * F.cross_entropy(lg, y)
        stats[g] = float((lg.argmax(-1) == y).float().mean())
    return loss, stats


def vision_stage(model: IXCRewardModel, tok: TextTokenizer, icfg: ImagePreprocess, vcfg: VideoPreprocess,
                 cfg: PretrainConfig, seed: int, device: str) -> Dict:
    params = [p for n, p in model.named_parameters() if n.startswith(("vit.", "vision_proj."))]
    opt = _adamw(params, cfg.vision_lr)
    gen = Gen("", "pretrain", random.Random(seed + 1))
    labels = SceneLabels(tok)
    model.train()
    t0, step, ema, acc = time.time(), 0, None, {}
    while (el := host_ranks.rank0_clock(time.time() - t0)) < cfg.vision_seconds:
        scenes = scene_batch(gen, cfg.vision_batch, icfg, vcfg, step * cfg.vision_batch)
        loss, stats = vision_loss(model, scenes, labels, shape_share=cfg.vision_shape_share,
                                  shape_weight=cfg.vision_shape_weight)
        _optimizer_step(opt, params, loss, _lr(step, cfg.vision_seconds, el, cfg.vision_lr))
        step += 1
        ema = _ema(ema, float(loss))
        for k, v in stats.items():
            acc[k] = _ema(acc.get(k), v)
        if step % 10 == 0 and host_ranks.rank() == 0:
            print(f"pretrain vision step {step} loss {ema:.3f} " + " ".join(f"{k} {v:.2f}" for k, v in acc.items())
                  + f" {time.time() - t0:.0f}/{cfg.vision_seconds:.0f}s", file=sys.stderr)
    world = host_ranks.world_size()
    return {"stage": "vision", "steps": step, "seconds": round(time.time() - t0, 1), "ranks": world,
            "scenes": step * cfg.vision_batch * world, "final_loss_ema": round(ema or 0.0, 4),
            "accuracy_ema": {k: round(v, 4) for k, v in acc.items()}}


# Rank r > 0 draws its rows and scenes from seed + r * RANK_DRAWS (rank 0 from the seed itself, so one process draws
# as before): apart from each other and from every stage's own offsets (+1 vision, +11 drill)
RANK_DRAWS = 1000


def pretrain(cfg: PretrainConfig, margs: ModelArgs, icfg: ImagePreprocess, vcfg: VideoPreprocess, tokenizer: str,
             out: str, pipeline: str, max_seq_len: int, seed: int, device: str = "cpu", threads: int = 1) -> Dict:
    """Fresh model -> drill -> text stage -> vision stage -> out/ckpt.pt (weights + configs; `train --init` starts
    there) and out/pretrain_result.json (what each stage did); in `cfg.ranks` processes when that is > 1 (the drill
    alone first, in this process, with `cfg.drill_ranks` 1)."""
    args = (cfg, margs, icfg, vcfg, tokenizer, out, pipeline, max_seq_len, seed, device, threads)
    if cfg.ranks <= 1:
        return _pretrain(*args, None, 0)
    drilled = None
    if cfg.drill_steps > 0 and cfg.drill_ranks == 1:
        if cfg.text_drill_rows > 0:
            raise ValueError("drill_ranks 1 needs text_drill_rows 0: the text stage's drill rows go on, in every rank, "
                             "from the layout the drill reached")
        drilled = _drill_alone(*args)
    try:
        host_ranks.spawn(_pretrain, cfg.ranks, args + (drilled,))
    finally:
        if drilled is not None and os.path.exists(drilled):
            os.remove(drilled)
    return read_result(os.path.join(out, "ckpt.pt"), PRETRAIN_RESULT)


def _fresh_model(margs: ModelArgs, tokenizer: str, seed: int, device: str, threads: int):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = TextTokenizer(tokenizer)
    margs = dataclasses.replace(margs, vocab_size=tok.vocab_size)
    return tok, margs, IXCRewardModel(margs).to(device)


def _drill_alone(cfg: PretrainConfig, margs: ModelArgs, icfg: ImagePreprocess, vcfg: VideoPreprocess, tokenizer: str,
                 out: str, pipeline: str, max_seq_len: int, seed: int, device: str, threads: int) -> str:
    """The drill in this process, as one process's pretraining runs it; out/drilled.pt (weights and the stage's
    record) for the ranks to start from. Why: the drill ends on its steps, so two ranks only double each step's work
    (session 21: 654 steps x 2 ranks in 692 s against one process's 950 steps in 397 s)."""
    os.makedirs(out, exist_ok=True)
    tok, margs, model = _fresh_model(margs, tokenizer, seed, device, threads)
    with LookupDrill(model, tok, cfg.drill_lookup_layer, seed, device) as drill:
        stage = drill_stage(model, drill, cfg)
    path = os.path.join(out, "drilled.pt")
    torch.save({"model": model.state_dict(), "stage": stage}, path)
    return path


def _pretrain(cfg: PretrainConfig, margs: ModelArgs, icfg: ImagePreprocess, vcfg: VideoPreprocess, tokenizer: str,
              out: str, pipeline: str, max_seq_len: int, seed: int, device: str, threads: int, drilled: Optional[str],
              rank: int) -> Dict:
    """`drilled`: _drill_alone's file; its weights and drill record stand in for the drill stage."""
    os.makedirs(out, exist_ok=True)
    tok, margs, model = _fresh_model(margs, tokenizer, seed, device, threads)
    tcfg = template_config(pipeline, icfg)
    stages = []
    if drilled is not None:
        blob = torch.load(drilled, map_location=device)
        model.load_state_dict(blob["model"])
        stages.append(blob["stage"])
    host_ranks.same_weights(model.state_dict().values())
    draws = seed + rank * RANK_DRAWS
    # one drill for both stages: the text stage's rows go on at the layout the drill stage reached
    drill_here = cfg.drill_steps > 0 and drilled is None
    need_drill = drill_here or (cfg.text_drill_rows > 0 and cfg.text_seconds > 0)
    drill = LookupDrill(model, tok, cfg.drill_lookup_layer, draws, device) if need_drill else None
    with drill or contextlib.nullcontext():
        if drill_here:
            stages.append(drill_stage(model, drill, cfg))
        if cfg.text_seconds > 0:
            stages.append(text_stage(model, tok, tcfg, cfg, max_seq_len, draws, device,
                                     drill if cfg.text_drill_rows > 0 else None))
    if cfg.vision_seconds > 0:
        stages.append(vision_stage(model, tok, icfg, vcfg, cfg, draws, device))
    if rank > 0:
        return {}
    ckpt = os.path.join(out, "ckpt.pt")
    save_checkpoint(ckpt, {"model": model.state_dict(), "model_args": margs.to_dict(), "step": 0,
                           "pretrain_config": dataclasses.asdict(cfg), "image": dataclasses.asdict(icfg),
                           "video": dataclasses.asdict(vcfg), "final": True})
    result = {"stages": stages, "config": dataclasses.asdict(cfg), "seed": seed}
    write_result(ckpt, PRETRAIN_RESULT, result)
    print("pretrain: " + json.dumps(result), file=sys.stderr)
    return result
