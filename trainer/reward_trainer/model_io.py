"""Model forward over preference pairs: media embedding, batching, packed chosen/rejected rows, scores."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .collate import collate, media_offsets, pack_pairs
from .data import PairExample


class FrozenVisionFeatures:
    """The merged ViT features of every media item, computed once without gradients while the tower is frozen
    (`--freeze-vision`): after an item's first step the Bradley–Terry stage spends nothing on the ViT for it (the
    ViT was about half of a step's forward and backward on the default model, trainer/README.md). Exact: the
    tower has no dropout, so a cached item's features are what a recompute would give. The separators
    (plora_*_GN) and the projector still run every step (model.vision_assemble), so the separators keep their
    gradients. Keyed like MediaCache: (kind, path, hd_num)."""

    def __init__(self) -> None:
        self.store: Dict[Tuple[str, str, int], Tuple[torch.Tensor, int, int]] = {}
        self.bytes = 0
        self.reused = 0  # media slots served from the store

    def summary(self) -> Dict[str, float]:
        return {"cached_items": len(self.store), "cached_mb": round(self.bytes / 2**20, 1), "reused": self.reused}

    def embeds(self, model, pairs: List[PairExample], device: str) -> List[torch.Tensor]:
        """One image token block [T_img, D] per media item of `pairs`, in order."""
        keys, todo = [], {}
        for ex in pairs:
            for kind, path, n in ex.media:
                key = (kind, path, ex.cache.hd_num(n))
                keys.append(key)
                if key not in self.store and key not in todo:
                    todo[key] = ex.cache.get(kind, path, n).to(device)
        if todo:
            S = model.args.vision.tile_size
            with torch.no_grad():
                feats = model.vision_features_many(list(todo.values()))
            for (key, px), f in zip(todo.items(), feats):
                self.store[key] = (f, px.shape[2] // S, px.shape[3] // S)
                self.bytes += f.numel() * f.element_size()
        self.reused += len(keys) - len(todo)
        items = [self.store[k] for k in keys]
        out: List[Optional[torch.Tensor]] = [None] * len(items)
        grids: Dict[Tuple[int, int], List[int]] = {}
        for i, (_, rows, cols) in enumerate(items):
            grids.setdefault((rows, cols), []).append(i)
        for (rows, cols), idx in grids.items():
            res = model.vision_assemble(torch.stack([items[i][0] for i in idx]), rows, cols)
            for j, i in enumerate(idx):
                out[i] = res[j]
        return out  # type: ignore[return-value]


def embed_media(model, pairs: List[PairExample], device: str, features: Optional[FrozenVisionFeatures] = None):
    """Every pair's media through the vision tower once (or its cached features through the separators and the
    projector) -> (image_embeds [M, D], offsets, token counts per pair)."""
    if features is not None:
        embeds = features.embeds(model, pairs, device)
    else:
        pix = [px.to(device) for ex in pairs for px in ex.pixels()]
        embeds = model.vision_forward_many(pix) if pix else []
    ntoks, j = [], 0
    for ex in pairs:
        ntoks.append([e.shape[0] for e in embeds[j:j + len(ex.media)]])
        j += len(ex.media)
    E = torch.cat(embeds, 0) if embeds else torch.zeros(1, model.args.hidden_size, device=device)
    return E, media_offsets(ntoks), ntoks


def batch_inputs(model, pairs: List[PairExample], pad_id: int, device: str,
                 features: Optional[FrozenVisionFeatures] = None):
    """Chosen rows first, rejected rows second; each pair's media is embedded once and shared by both rows."""
    E, offsets, ntoks = embed_media(model, pairs, device, features)
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


def packed_forward(model, pairs: List[PairExample], pad_id: int, device: str, lm: bool = False,
                   features: Optional[FrozenVisionFeatures] = None):
    """(chosen scores, rejected scores, auxiliary LM loss or None) with one packed row per pair
    (collate.pack_pairs): each score equals the unpacked forward's (tested); the shared prompt and its media run
    through the model once."""
    E, offsets, ntoks = embed_media(model, pairs, device, features)
    x = {k: v.to(device) for k, v in pack_pairs(pairs, offsets, ntoks, pad_id).items()}
    h = model.hidden_states(x["input_ids"], E, x["image_positions"], x["im_mask"], x["attention_mask"],
                            x["position_ids"], x["allowed"])
    ar = torch.arange(len(pairs), device=device)
    s = model.v_head(torch.stack([h[ar, x["chosen_index"]], h[ar, x["rejected_index"]]], 0)).squeeze(-1)
    return s[0], s[1], (chosen_lm_loss(model, h, x) if lm else None)


def arm_lookup(model, layer: int) -> None:
    """The next forward keeps head 0's scores of decoder `layer` (lookup_hint_loss reads and releases them)."""
    model.model.layers[layer].attention.keep(1)


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


def packed_scores(model, pairs: List[PairExample], pad_id: int, device: str,
                  features: Optional[FrozenVisionFeatures] = None):
    """(chosen scores, rejected scores) of packed rows (packed_forward without the LM loss)."""
    c, r, _ = packed_forward(model, pairs, pad_id, device, features=features)
    return c, r


def pair_scores(model, pairs: List[PairExample], pad_id: int, device: str,
                features: Optional[FrozenVisionFeatures] = None):
    """(chosen, rejected) scores: packed rows sharing the prompt for `last` readout, separate rows otherwise."""
    if model.args.readout == "last":
        return packed_scores(model, pairs, pad_id, device, features)
    s = model(**batch_inputs(model, pairs, pad_id, device, features))
    return s[:len(pairs)], s[len(pairs):]


@torch.no_grad()
def score_pairs(model, examples: List[PairExample], pad_id: int, device: str, batch_pairs: int = 16,
                features: Optional[FrozenVisionFeatures] = None):
    model.eval()
    out = []
    for i in range(0, len(examples), batch_pairs):
        c, r = pair_scores(model, examples[i:i + batch_pairs], pad_id, device, features)
        out += list(zip(c.float().cpu().tolist(), r.float().cpu().tolist()))
    return out
