"""Collation: tokenized conversations -> model input tensors. Pure (no model, no files).

A row's media spans are (start, k): media k of the row fills ids[start:start + media_tokens[k]] and takes its
embeddings from rows offsets[k]... of the batch's shared `image_embeds` table."""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

Spans = List[Tuple[int, int]]


def media_offsets(media_tokens: List[List[int]]) -> List[List[int]]:
    """Offset in image_embeds of each media block of each row, the blocks following each other in row order."""
    out, start = [], 0
    for counts in media_tokens:
        row = []
        for n in counts:
            row.append(start)
            start += n
        out.append(row)
    return out


def collate(rows: List[Tuple[List[int], Spans]], offsets: List[List[int]], media_tokens: List[List[int]],
            pad_id: int) -> Dict[str, torch.Tensor]:
    """rows: (ids, spans) per conversation -> the reward.onnx inputs except image_embeds, right-padded."""
    B, T = len(rows), max(len(ids) for ids, _ in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    image_positions = torch.zeros((B, T), dtype=torch.long)
    im_mask = torch.zeros((B, T), dtype=torch.float32)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    readout_index = torch.zeros((B,), dtype=torch.long)
    for i, (ids, spans) in enumerate(rows):
        L = len(ids)
        input_ids[i, :L] = torch.tensor(ids)
        attention_mask[i, :L] = 1
        readout_index[i] = L - 1
        for start, k in spans:
            n = media_tokens[i][k]
            image_positions[i, start:start + n] = torch.arange(offsets[i][k], offsets[i][k] + n)
            im_mask[i, start:start + n] = 1.0
    return {"input_ids": input_ids, "image_positions": image_positions, "im_mask": im_mask,
            "attention_mask": attention_mask, "readout_index": readout_index}


def shared_prefix(chosen_ids: List[int], rejected_ids: List[int], chosen_spans: Spans, rejected_spans: Spans) -> int:
    """Length of the shared prompt of a pair: never inside a media block that is not shared, and each reply
    keeps >= 1 token (the reward token)."""
    p = 0
    lim = min(len(chosen_ids), len(rejected_ids)) - 1
    while p < lim and chosen_ids[p] == rejected_ids[p]:
        p += 1
    shared = set(chosen_spans) & set(rejected_spans)
    for span in chosen_spans + rejected_spans:
        if span not in shared:
            p = min(p, span[0])
    return p


def pack_pairs(pairs, offsets: List[List[int]], media_tokens: List[List[int]], pad_id: int) -> Dict[str, torch.Tensor]:
    """One row per pair: [prompt | chosen reply | rejected reply] (pairs: chosen/rejected ids and spans).

    The rejected reply attends to the prompt and itself only (`allowed` [B, T(q), T(k)]), with positions
    continuing from the prompt; chosen_index/rejected_index are the reward-token positions, chosen_start the first
    position where the chosen reply differs from the rejected one (the auxiliary LM loss predicts from there)."""
    rows = []
    for ex, offs, ntok in zip(pairs, offsets, media_tokens):
        c, r = ex.chosen_ids, ex.rejected_ids
        p = shared_prefix(c, r, ex.chosen_spans, ex.rejected_spans)
        Lc, Lr = len(c), len(r)
        ids = c + r[p:]
        pos = list(range(Lc)) + list(range(p, Lr))
        img_pos = [0] * len(ids)
        im = [0.0] * len(ids)
        for spans, base in ((ex.chosen_spans, 0), (ex.rejected_spans, Lc - p)):
            for start, k in spans:
                if base and start < p:
                    continue  # the shared prompt's media is already in place
                for q in range(ntok[k]):
                    img_pos[base + start + q] = offs[k] + q
                    im[base + start + q] = 1.0
        rows.append((ids, pos, img_pos, im, Lc, p))
    B, T = len(rows), max(len(x[0]) for x in rows)
    out = {"input_ids": torch.full((B, T), pad_id, dtype=torch.long),
           "position_ids": torch.zeros((B, T), dtype=torch.long),
           "image_positions": torch.zeros((B, T), dtype=torch.long),
           "im_mask": torch.zeros((B, T), dtype=torch.float32),
           "attention_mask": torch.zeros((B, T), dtype=torch.long),
           "allowed": torch.zeros((B, T, T), dtype=torch.bool),
           "chosen_index": torch.zeros(B, dtype=torch.long), "rejected_index": torch.zeros(B, dtype=torch.long),
           "chosen_start": torch.zeros(B, dtype=torch.long)}
    for b, (ids, pos, img_pos, im, Lc, p) in enumerate(rows):
        L = len(ids)
        out["input_ids"][b, :L] = torch.tensor(ids)
        out["position_ids"][b, :L] = torch.tensor(pos)
        out["image_positions"][b, :L] = torch.tensor(img_pos)
        out["im_mask"][b, :L] = torch.tensor(im)
        out["attention_mask"][b, :L] = 1
        out["allowed"][b, :Lc, :Lc] = torch.ones(Lc, Lc, dtype=torch.bool).tril()
        out["allowed"][b, Lc:L, :p] = True
        out["allowed"][b, Lc:L, Lc:L] = torch.ones(L - Lc, L - Lc, dtype=torch.bool).tril()
        out["chosen_index"][b], out["rejected_index"][b] = Lc - 1, L - 1
        out["chosen_start"][b] = p
    return out


# ------------------------------------------------------------------------------ packed layout (graph version 2)
Flat = Tuple[List[int], List[int], List[float]]  # ids, image_positions, im_mask of one full row


def flat_row(ids: List[int], spans: Spans, offsets: List[int], media_tokens: List[int]) -> Flat:
    """A row as per-position (id, image row, im_mask): what a packer compares to find a shared prefix."""
    img_pos, im = [0] * len(ids), [0.0] * len(ids)
    for start, k in spans:
        for q in range(media_tokens[k]):
            img_pos[start + q] = offsets[k] + q
            im[start + q] = 1.0
    return list(ids), img_pos, im


def share_prefix(rows: List[Flat]) -> Dict:
    """Full rows that share a prefix -> one packed row: the longest row is the trunk, each row a branch hung
    after its longest common prefix with it (keeping >= 1 own position, the reward token); the trunk is cut at
    the last position any branch sees. The same algorithm as the service's (src/scheduler/pack-shared.ts)."""
    ref = max(range(len(rows)), key=lambda i: len(rows[i][0]))
    r_ids, r_pos, r_im = rows[ref]
    branches = []
    for ids, pos, im in rows:
        a, lim = 0, len(ids) - 1
        while a < lim and a < len(r_ids) and ids[a] == r_ids[a] and pos[a] == r_pos[a] and im[a] == r_im[a]:
            a += 1
        branches.append((a, ids[a:], pos[a:], im[a:]))
    P = max(a for a, *_ in branches)
    return {"trunk": (r_ids[:P], r_pos[:P], r_im[:P]), "branches": branches}


def collate_packed(packed: List[Dict], pad_id: int) -> Dict[str, torch.Tensor]:
    """Packed rows -> reward_packed.onnx inputs except image_embeds: trunk padded to P, NB branches of L
    positions each (padding branches start at 0 and are all padding); readout = each branch's last position."""
    B = len(packed)
    P = max(len(p["trunk"][0]) for p in packed)
    NB = max(len(p["branches"]) for p in packed)
    L = max(len(b[1]) for p in packed for b in p["branches"])
    T = P + NB * L
    out = {"input_ids": torch.full((B, T), pad_id, dtype=torch.long),
           "image_positions": torch.zeros((B, T), dtype=torch.long),
           "im_mask": torch.zeros((B, T), dtype=torch.float32),
           "attention_mask": torch.zeros((B, P), dtype=torch.long),
           "branch_start": torch.zeros((B, NB), dtype=torch.long),
           "branch_mask": torch.zeros((B, NB, L), dtype=torch.long),
           "readout_index": torch.zeros((B, NB), dtype=torch.long)}
    for i, p in enumerate(packed):
        ids, pos, im = p["trunk"]
        n = len(ids)
        out["input_ids"][i, :n] = torch.tensor(ids, dtype=torch.long)
        out["image_positions"][i, :n] = torch.tensor(pos, dtype=torch.long)
        out["im_mask"][i, :n] = torch.tensor(im, dtype=torch.float32)
        out["attention_mask"][i, :n] = 1
        for j, (start, bids, bpos, bim) in enumerate(p["branches"]):
            s, m = P + j * L, len(bids)
            out["input_ids"][i, s:s + m] = torch.tensor(bids, dtype=torch.long)
            out["image_positions"][i, s:s + m] = torch.tensor(bpos, dtype=torch.long)
            out["im_mask"][i, s:s + m] = torch.tensor(bim, dtype=torch.float32)
            out["branch_start"][i, j] = start
            out["branch_mask"][i, j, :m] = 1
            out["readout_index"][i, j] = s + m - 1
    return out
