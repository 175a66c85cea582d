"""Collation: tokenized conversations -> the reward.onnx input tensors. Pure (no model, no files)."""
from __future__ import annotations

from typing import List, Tuple

import torch


def collate(rows: List[Tuple[List[int], List[Tuple[int, int]]]], media_offsets: List[List[int]],
            media_tokens: List[List[int]], pad_id: int, M: int, D: int):
    """rows: (ids, spans) per conversation; media_offsets[i][k] = row offset of media k of row i in image_embeds.

    Returns the reward.onnx input dict (image_embeds filled by the caller)."""
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
            image_positions[i, start:start + n] = torch.arange(media_offsets[i][k], media_offsets[i][k] + n)
            im_mask[i, start:start + n] = 1.0
    return {"input_ids": input_ids, "image_positions": image_positions, "im_mask": im_mask,
            "attention_mask": attention_mask, "readout_index": readout_index}
