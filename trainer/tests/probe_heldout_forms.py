"""Held-out accuracy split by surface form: for every pair, whether its question (the prompt's last paragraph) and
its reply are in a form the training split also uses or in a held-out-only one (`world.FORMS`), and whether its
image has a training canvas size (`world.CANVASES`). Tells a skill the model lacks (low in both columns) from a
template it learned (high in the training-form column only).

    /usr/bin/python3 trainer/tests/probe_heldout_forms.py CKPT HELDOUT_JSONL TOKENIZER
"""
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from reward_trainer.data import read_jsonl  # noqa: E402
from reward_trainer.evaluate import checkpoint_examples  # noqa: E402
from reward_trainer.model_io import score_pairs  # noqa: E402
from reward_trainer.world import CANVASES, held_only_patterns  # noqa: E402

HELD_ONLY = held_only_patterns()


def held_form(text: str) -> bool:
    return any(rx.fullmatch(text.split("\n\n")[-1].strip()) for rx in HELD_ONLY)


def main(ckpt: str, data: str, tokenizer: str) -> None:
    torch.set_num_threads(2)
    model, tok, exs, _ = checkpoint_examples(ckpt, data, tokenizer)
    recs = read_jsonl(data)
    base = os.path.dirname(os.path.abspath(data))
    by_id = {r["id"]: r for r in recs}
    tally = defaultdict(lambda: [0, 0])
    for ex, (c, r) in zip(exs, score_pairs(model, exs, tok.pad_id, "cpu")):
        rec = by_id[ex.rid]
        keys = ["question " + ("held-out form" if held_form(rec["messages"][-1]["content"]) else "training form"),
                "reply " + ("held-out form" if held_form(rec["chosen"]) else "training form")]
        if rec["images"]:
            size = Image.open(os.path.join(base, rec["images"][0])).size
            keys.append("canvas " + ("held-out size" if size in CANVASES[1] else "training size"))
        for k in keys:
            tally[(ex.category, k)][0] += int(c > r)
            tally[(ex.category, k)][1] += 1
    for (cat, k), (right, n) in sorted(tally.items()):
        print(f"{cat:16s} {k:28s} {right / n:.2f} ({n})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
