"""Issue 15 experiment: where the text stage's hinted heads look (pretrain.AttentionHints). On 60 training-side
read-off conversations (tables and told positions, pretrain.text_batch with sources), prints the attention mass of
every head of every layer, at the position that predicts the answer, on the answer's sources (heads above 0.15),
and of layer 0's first heads on the token k back for each k in PREV. Spread over a table's 3-4 counts is ≈ 0.3;
a look-up that finds the asked row is near 1.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 trainer/tests/probe_attention.py CKPT TOKENIZER [PREV e.g. 1,2,3]
"""
import collections
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer import pretrain as P  # noqa: E402
from reward_trainer.checkpoint import load_checkpoint  # noqa: E402
from reward_trainer.config import template_config  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402
from reward_trainer.world import Gen  # noqa: E402


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)
    model, state = load_checkpoint(sys.argv[1], "cpu")
    model.eval()
    tok = TextTokenizer(sys.argv[2])
    prev = [int(k) for k in sys.argv[3].split(",")] if len(sys.argv) > 3 else []
    tc = state.get("train_config", {})
    P.TEXT_CATEGORIES = ("table", "scene_text")
    gen = Gen("", "pretrain", random.Random(99))
    rows = []
    while len(rows) < 60:
        rows += [r for r in P.text_batch(gen, 32, tok, template_config(tc.get("pipeline", "ixc")),
                                         tc.get("max_seq_len", 384), model.tokens_per_image) if r.sources]
    layers = model.model.layers
    D, H = model.args.hidden_size, model.args.num_heads
    mass = collections.defaultdict(list)
    for r in rows[:60]:
        for layer in layers:
            layer.attention.keep_heads, layer.attention.kept = H, []
        x = torch.tensor([r.ids])
        model.hidden_states(x, torch.zeros(1, D), torch.zeros_like(x), torch.zeros(x.shape), torch.ones_like(x))
        for i, layer in enumerate(layers):
            p = layer.attention.take_kept().softmax(-1)[0]  # [heads, T, T]
            for h in range(H):
                mass[(i, h)].append(float(p[h, r.read_at, r.sources].sum()))
            if i == 0:
                for j, k in enumerate(prev):
                    t = torch.arange(k, p.shape[1])
                    mass[(0, j, f"{k} back")].append(float(p[j, t, t - k].mean()))
    for key, v in sorted(mass.items(), key=lambda kv: str(kv[0])):
        m = sum(v) / len(v)
        if len(key) == 3:
            print(f"layer 0 head {key[1]} on the token {key[2]}: {m:.3f}")
        elif m > 0.15:
            print(f"layer {key[0]} head {key[1]} on the answer's sources: {m:.3f}")


if __name__ == "__main__":
    main()
