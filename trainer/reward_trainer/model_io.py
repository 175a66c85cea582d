"""Model forward over preference pairs: media embedding, batching, packed chosen/rejected rows, scores."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from .collate import collate, media_offsets, pack_pairs
from .data import PairExample


def embed_media(model, pairs: List[PairExample], device: str):
    """Every pair's media through the vision tower once -> (image_embeds [M, D], offsets, token counts per pair)."""
    per_ex = [ex.pixels() for ex in pairs]
    pix = [px.to(device) for p in per_ex for px in p]
    embeds = model.vision_forward_many(pix) if pix else []
    ntoks, j = [], 0
    for ex_pix in per_ex:
        ntoks.append([e.shape[0] for e in embeds[j:j + len(ex_pix)]])
        j += len(ex_pix)
    E = torch.cat(embeds, 0) if embeds else torch.zeros(1, model.args.hidden_size, device=device)
    return E, media_offsets(ntoks), ntoks


def batch_inputs(model, pairs: List[PairExample], pad_id: int, device: str):
    """Chosen rows first, rejected rows second; each pair's media is embedded once and shared by both rows."""
    E, offsets, ntoks = embed_media(model, pairs, device)
    rows = [(ex.chosen_ids, ex.chosen_spans) for ex in pairs] + [(ex.rejected_ids, ex.rejected_spans) for ex in pairs]
    inp = {k: v.to(device) for k, v in collate(rows, offsets + offsets, ntoks + ntoks, pad_id).items()}
    inp["image_embeds"] = E
    return inp


def chosen_lm_loss(model, h: torch.Tensor, x) -> torch.Tensor:
    """Auxiliary language-modelling loss on the chosen replies of packed rows: mean cross-entropy of each chosen
    token from where the replies differ (`chosen_start`) to the reward token, predicted by the position before it
    through the token embedding matrix (tied head: nothing new to export). The reward model's decoder then learns
    the right answer densely (a token-level target for every pair) instead of from one comparison bit, the way
    IXC-2.5-Reward starts from a chat model that already answers."""
    rows, cols = [], []
    for b in range(h.shape[0]):
        q0, q1 = int(x["chosen_start"][b]) - 1, int(x["chosen_index"][b])
        rows += [b] * (q1 - q0)
        cols += list(range(q0, q1))
    rows_t = torch.tensor(rows, device=h.device)
    cols_t = torch.tensor(cols, device=h.device)
    logits = h[rows_t, cols_t] @ model.model.tok_embeddings.weight.t()
    return F.cross_entropy(logits.float(), x["input_ids"][rows_t, cols_t + 1])


def packed_forward(model, pairs: List[PairExample], pad_id: int, device: str, lm: bool = False):
    """(chosen scores, rejected scores, auxiliary LM loss or None) with one packed row per pair
    (collate.pack_pairs): each score equals the unpacked forward's (tested); the shared prompt and its media run
    through the model once."""
    E, offsets, ntoks = embed_media(model, pairs, device)
    x = {k: v.to(device) for k, v in pack_pairs(pairs, offsets, ntoks, pad_id).items()}
    h = model.hidden_states(x["input_ids"], E, x["image_positions"], x["im_mask"], x["attention_mask"],
                            x["position_ids"], x["allowed"])
    ar = torch.arange(len(pairs), device=device)
    s = model.v_head(torch.stack([h[ar, x["chosen_index"]], h[ar, x["rejected_index"]]], 0)).squeeze(-1)
    return s[0], s[1], (chosen_lm_loss(model, h, x) if lm else None)


def arm_lookup(model, layer: int) -> None:
    """The next forward keeps head 0's scores of decoder `layer` (lookup_hint_loss reads and releases them)."""
    att = model.model.layers[layer].attention
    att.keep_heads, att.kept = 1, []


def lookup_hint_loss(model, pairs: List[PairExample], layer: int) -> Tuple[torch.Tensor, float, int]:
    """The look-up hint after an armed packed_forward: (-mean log attention mass, mean mass, pairs counted) of head
    0 of `layer`, from the last shared prompt position (the one that predicts where chosen and rejected part: the
    answer) onto the vision tokens of the object the pair's question names (PairExample.lookup, set by
    scene_tokens.annotate_lookup). Why: the decoder does not find the named shape among the image tokens from the
    comparison bit alone (image position stayed at
    52-55 % held-out while the tokens themselves name shape and side: trainer/README.md, sessions 8 and 12); this
    teaches the look-up's second half directly, as the text stage's hint does for tables. Nothing is added to
    the model."""
    logp = model.model.layers[layer].attention.take_kept()[:, 0].log_softmax(-1)  # [B, T(q), T(k)]
    lp = []
    for b, ex in enumerate(pairs):
        if ex.lookup:
            q, keys = ex.lookup
            lp.append(torch.logsumexp(logp[b, q, keys], dim=0))
    if not lp:
        return logp.new_zeros(()), 0.0, 0
    lp_t = torch.stack(lp)
    return -lp_t.mean(), float(lp_t.detach().exp().mean()), len(lp)


def packed_scores(model, pairs: List[PairExample], pad_id: int, device: str):
    """(chosen scores, rejected scores) of packed rows (packed_forward without the LM loss)."""
    c, r, _ = packed_forward(model, pairs, pad_id, device)
    return c, r


def pair_scores(model, pairs: List[PairExample], pad_id: int, device: str):
    """(chosen, rejected) scores: packed rows sharing the prompt for `last` readout, separate rows otherwise."""
    if model.args.readout == "last":
        return packed_scores(model, pairs, pad_id, device)
    s = model(**batch_inputs(model, pairs, pad_id, device))
    return s[:len(pairs)], s[len(pairs):]


@torch.no_grad()
def score_pairs(model, examples: List[PairExample], pad_id: int, device: str, batch_pairs: int = 16):
    model.eval()
    out = []
    for i in range(0, len(examples), batch_pairs):
        c, r = pair_scores(model, examples[i:i + batch_pairs], pad_id, device)
        out += list(zip(c.float().cpu().tolist(), r.float().cpu().tolist()))
    return out
