"""Diagnostic for issue 15: can the scene words be told apart, and do the image tokens say them?

1. The tied token embeddings of each label group (colours, shapes, left/right, counts, motion directions): their
   norms and mean pairwise cosine, as rows and centred on the group's mean, and the cosine of random vocabulary
   pairs. Words no training text uses drift together (the softmax pushes every unused row the same way): session 6
   measured cosine 0.993 between "left" and "right" after the text stage, so nothing could read one from the other.
2. Per-token accuracy of the vision tower on fresh training-side scenes (the vision stage's own labels and group
   readout, pretrain.vision_loss): every token over an object -> its colour, shape and side; pooled count; motion.

    /usr/bin/python3 trainer/tests/probe_vision_labels.py CKPT TOKENIZER [SCENES]
"""
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer import pretrain as P  # noqa: E402
from reward_trainer.checkpoint import load_checkpoint  # noqa: E402
from reward_trainer.config import ImagePreprocess, VideoPreprocess  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402
from reward_trainer.world import Gen  # noqa: E402


def mean_offdiag_cos(M: torch.Tensor) -> float:
    n = F.normalize(M, dim=-1)
    c = n @ n.t()
    k = M.shape[0]
    return float((c.sum() - c.trace()) / (k * (k - 1)))


@torch.no_grad()
def main() -> None:
    ckpt, tokenizer = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_checkpoint(ckpt, "cpu")
    model.eval()
    tok = TextTokenizer(tokenizer)
    labels = P.SceneLabels(tok)
    E = model.model.tok_embeddings.weight
    idx = torch.randperm(E.shape[0])[:500]
    print(f"random vocabulary pairs: cosine {mean_offdiag_cos(E[idx]):.3f}, mean norm {float(E.norm(dim=-1).mean()):.2f}")
    for g, pieces in labels.groups.items():
        rows = E[torch.tensor(pieces)]
        words = [tok.sp.id_to_piece(p) for p in pieces]
        print(f"{g:7s} {words}: norms {[round(float(x), 2) for x in rows.norm(dim=-1)]}, cosine "
              f"{mean_offdiag_cos(rows):.3f}, centred {mean_offdiag_cos(rows - rows.mean(0, keepdim=True)):.3f}")
    gen = Gen("", "pretrain", random.Random(99))
    icfg = ImagePreprocess()
    scenes = P.scene_batch(gen, n, icfg, VideoPreprocess())
    _, stats = P.vision_loss(model, scenes, labels)
    print(f"vision tokens on {n} fresh scenes: " + ", ".join(f"{k} {v:.2f}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
