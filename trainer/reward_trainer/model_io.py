"""Model forward over preference pairs: media embedding, batching, packed chosen/rejected rows, scores."""
from __future__ import annotations

from typing import List

import torch

from .collate import collate
from .data import PairExample


def batch_inputs(model, pairs: List[PairExample], pad_id: int, device: str):
    """Chosen rows first, rejected rows second; each pair's media is embedded once and shared by both rows."""
    per_ex = [ex.pixels() for ex in pairs]
    pix = [px.to(device) for p in per_ex for px in p]
    all_embeds = model.vision_forward_many(pix) if pix else []
    embeds, offsets, ntoks, off, j = [], [], [], 0, 0
    for ex_pix in per_ex:
        o, n = [], []
        for _ in ex_pix:
            e = all_embeds[j]
            j += 1
            embeds.append(e)
            o.append(off)
            n.append(e.shape[0])
            off += e.shape[0]
        offsets.append(o)
        ntoks.append(n)
    rows = [(ex.chosen_ids, ex.chosen_spans) for ex in pairs] + [(ex.rejected_ids, ex.rejected_spans) for ex in pairs]
    inp = collate(rows, offsets + offsets, ntoks + ntoks, pad_id, off, model.args.hidden_size)
    inp = {k: v.to(device) for k, v in inp.items()}
    if embeds:
        inp["image_embeds"] = torch.cat(embeds, 0)
    else:
        inp["image_embeds"] = torch.zeros(1, model.args.hidden_size, device=device)
    return inp


def _common_prefix(ex: PairExample) -> int:
    """Length of the shared prompt of a pair: never inside a media block that is not shared, and each reply
    keeps >= 1 token (the reward token)."""
    c, r = ex.chosen_ids, ex.rejected_ids
    p = 0
    lim = min(len(c), len(r)) - 1
    while p < lim and c[p] == r[p]:
        p += 1
    shared = set(ex.chosen_spans) & set(ex.rejected_spans)
    for span in ex.chosen_spans + ex.rejected_spans:
        if span not in shared:
            p = min(p, span[0])
    return p


def packed_scores(model, pairs: List[PairExample], pad_id: int, device: str):
    """(chosen scores, rejected scores) with one packed row per pair: [prompt | chosen reply | rejected reply].

    The rejected reply attends to the prompt and itself only, with positions continuing from the prompt, so each
    score equals the unpacked forward's (tested); the shared prompt and its media run through the model once."""
    per_ex = [ex.pixels() for ex in pairs]
    pix = [px.to(device) for p in per_ex for px in p]
    all_embeds = model.vision_forward_many(pix) if pix else []
    D = model.args.hidden_size
    rows = []
    off, j = 0, 0
    for ex, ex_pix in zip(pairs, per_ex):
        ntok, offs = [], []
        for _ in ex_pix:
            n = all_embeds[j].shape[0]
            j += 1
            offs.append(off)
            ntok.append(n)
            off += n
        c, r = ex.chosen_ids, ex.rejected_ids
        p = _common_prefix(ex)
        Lc, Lr = len(c), len(r)
        ids = c + r[p:]
        pos = list(range(Lc)) + list(range(p, Lr))
        img_pos = [0] * len(ids)
        im = [0.0] * len(ids)
        for spans, base, shift in ((ex.chosen_spans, 0, 0), (ex.rejected_spans, Lc - p, p)):
            for start, k in spans:
                if base and start < p:
                    continue  # the shared prompt's media is already in place
                for q in range(ntok[k]):
                    img_pos[base + start + q] = offs[k] + q
                    im[base + start + q] = 1.0
        rows.append((ids, pos, img_pos, im, Lc, p, Lr))
    B, T = len(rows), max(len(x[0]) for x in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    image_positions = torch.zeros((B, T), dtype=torch.long)
    im_mask = torch.zeros((B, T), dtype=torch.float32)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.zeros((B, T, T), dtype=torch.bool)
    ci, ri = torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)
    for b, (ids, pos, img_pos, im, Lc, p, Lr) in enumerate(rows):
        L = len(ids)
        input_ids[b, :L] = torch.tensor(ids)
        position_ids[b, :L] = torch.tensor(pos)
        image_positions[b, :L] = torch.tensor(img_pos)
        im_mask[b, :L] = torch.tensor(im)
        attention_mask[b, :L] = 1
        allowed[b, :Lc, :Lc] = torch.ones(Lc, Lc, dtype=torch.bool).tril()
        allowed[b, Lc:L, :p] = True
        allowed[b, Lc:L, Lc:L] = torch.ones(L - Lc, L - Lc, dtype=torch.bool).tril()
        ci[b], ri[b] = Lc - 1, L - 1
    E = torch.cat(all_embeds, 0) if all_embeds else torch.zeros(1, D, device=device)
    h = model.hidden_states(input_ids.to(device), E, image_positions.to(device), im_mask.to(device),
                            attention_mask.to(device), position_ids.to(device), allowed.to(device))
    ar = torch.arange(B, device=device)
    s = model.v_head(torch.stack([h[ar, ci.to(device)], h[ar, ri.to(device)]], 0)).squeeze(-1)
    return s[0], s[1]


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
