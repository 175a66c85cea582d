"""Where a drawn object lands among an image's vision tokens: the vision stage's labels (pretrain.py) and the
Bradley-Terry stage's look-up hint (annotate_lookup, train.py) both need it."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from . import media
from .collate import shared_prefix
from .config import ImagePreprocess
from .data import MediaCache, PairExample
from .world import Obj, draw_shape


def cell_coverage(objs: Sequence[Obj], size: Tuple[int, int], cell: int) -> np.ndarray:
    """[objects, rows, cols]: the share of each cell (cell x cell pixels) each object's shape covers."""
    w, h = size
    out = np.zeros((len(objs), math.ceil(h / cell), math.ceil(w / cell)), dtype=np.float32)
    for i, o in enumerate(objs):
        m = Image.new("L", (out.shape[2] * cell, out.shape[1] * cell), 0)
        draw_shape(ImageDraw.Draw(m), o.shape, o.x, o.y, o.r, 255)
        a = np.asarray(m, dtype=np.float32).reshape(out.shape[1], cell, out.shape[2], cell) / 255.0
        out[i] = a.mean(axis=(1, 3))
    return out


def grid_token_index(rows: int, cols: int, G: int) -> Tuple[List[int], List[Tuple[int, int, int]]]:
    """Positions in a vision_forward token block of the global view's G x G tokens and the tiles' (rows*G) x
    (cols*G) tokens, with (view: 0 global / 1 tiles, row, col) of each in its own grid (separators skipped)."""
    idx, rc = [], []
    for r in range(G):
        for c in range(G):
            idx.append(r * (G + 1) + c)
            rc.append((0, r, c))
    base = G * (G + 1) + 1
    for r in range(rows * G):
        for c in range(cols * G):
            idx.append(base + r * (cols * G + 1) + c)
            rc.append((1, r, c))
    return idx, rc


def object_tokens(obj: Obj, size: Tuple[int, int], icfg: ImagePreprocess, hd_num: int, G: int,
                  min_share: float = 0.2) -> List[int]:
    """Positions in the image's token block (vision_forward's layout) of the tokens that show `obj`, drawn on a
    `size` image: in each view (the global view: the whole padded canvas in G x G cells; the tiles: cells of
    tile_size / G pixels), every token holding >= min_share of the object's area there, and the one holding most.
    The object's mask goes through media.image_transform itself (transpose, column choice, bilinear resize,
    padding), so the cells are the ones the model's crops cut, whatever the image's shape."""
    m = Image.new("RGB", size, (255, 255, 255))  # ink on white: the transform pads with white, which reads as empty
    draw_shape(ImageDraw.Draw(m), obj.shape, obj.x, obj.y, obj.r, (0, 0, 0))
    plain = dataclasses.replace(icfg, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    ink = 1.0 - media.image_transform(m, plain, hd_num)[0, 0].numpy()  # [rows*S, cols*S] in [0, 1]
    S = icfg.tile_size
    rows, cols = ink.shape[0] // S, ink.shape[1] // S
    views = [ink.reshape(G, ink.shape[0] // G, G, ink.shape[1] // G).sum(axis=(1, 3)),
             ink.reshape(rows * G, S // G, cols * G, S // G).sum(axis=(1, 3))]
    idx, rc = grid_token_index(rows, cols, G)
    keep = []
    for j, (view, r, c) in zip(idx, rc):
        v = views[view]
        if v[r, c] > 0 and (v[r, c] >= min_share * v.sum() or v[r, c] >= v.max()):
            keep.append(j)
    return keep


def annotate_lookup(base_dir: str, cache: MediaCache, grid: int,
                    min_share: float) -> Callable[[Dict, PairExample], None]:
    """For data.build_examples: an example whose record has the generator's `scene` field ({"image": k, "asked": i,
    "objects": [[shape, colour, x, y, r], ...]}) gets PairExample.lookup = (the last shared prompt position, the
    named object's token positions in image k's block), both as positions in the chosen row (the packed row's
    first part): worked out once here, not at every training step. `grid`: the model's tokens per tile side (G)."""

    def annotate(rec: Dict, ex: PairExample) -> None:
        sc = rec.get("scene")
        if not sc:
            return
        k = int(sc["image"])
        with Image.open(os.path.join(base_dir, rec["images"][k])) as im:
            size = im.size
        obj = Obj(*sc["objects"][int(sc["asked"])])
        start = next(s for s, j in ex.chosen_spans if j == k)
        toks = object_tokens(obj, size, cache.icfg, cache.hd_num(ex.media[k][2]), grid, min_share)
        # the query: the position that predicts where chosen and rejected part (the answer)
        q = shared_prefix(ex.chosen_ids, ex.rejected_ids, ex.chosen_spans, ex.rejected_spans) - 1
        ex.lookup = (q, [start + t for t in toks])

    return annotate
