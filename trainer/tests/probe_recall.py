"""Issue 15 experiment: can the default decoder (fresh, ModelArgs defaults) learn a bare key-value look-up, the
skill the tables' read-off and the told positions need? Rows of 2-4 pairs `key value ;` (keys from 60 tokens,
values from 10) then `? key`; `GAP` tokens `|` between each key and its value and `FAR` filler tokens after the
asked key make it more like a table's read-off (from step `FROM` on, before it the bare form). The loss is at that last position only, on the key's value. Guessing among the
values present scores ≈ 0.43; a model that looks the key up scores 1. `BACK` (e.g. 1) adds pretrain.BackReadout
with those offsets over every position, as the text stage does with PretrainConfig.text_back_offsets. Prints the
look-up accuracy (moving average) every 100 steps, with the hint terms below. One torch thread; two runs side by
side make a fair A/B. More knobs (trainer/README.md, session 10): `BACK_LAYER` (the readout on that layer's output),
`PREV_SUP` / `ATT_SUP` (the text stage's attention hints, pretrain.AttentionHints), `CARRY_SUP` (head 0 of a layer
taught to look from the read position at the asked key), `ATT_UNTIL` (hints off from that step), `NVAL` (value
tokens), `BATCH` (rows per step).

    OPENBLAS_NUM_THREADS=1 [BACK=1] [GAP=1] [FAR=4] [FROM=800] [SEED=0] [ATT_SUP=2 PREV_SUP=1] /usr/bin/python3 trainer/tests/probe_recall.py STEPS LR [ROPE_THETA]
"""
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer import pretrain as P  # noqa: E402
from reward_trainer.config import ModelArgs  # noqa: E402
from reward_trainer.model import IXCRewardModel  # noqa: E402

NVAL = int(os.environ.get("NVAL", "10"))  # how many value tokens (10: guessing among those present ≈ 0.43)
KEYS, VALUES, SEP, ASK, BAR, FILLER = list(range(100, 160)), list(range(200, 200 + NVAL)), 5, 6, 7, list(range(300, 310))
BATCH = int(os.environ.get("BATCH", "64"))  # rows per step
GAP = int(os.environ.get("GAP", "0"))  # tokens between a key and its value ("| chairs | 3 |": 1)
FAR = int(os.environ.get("FAR", "0"))  # tokens between the asked key and where the answer is read (a template)
FROM = int(os.environ.get("FROM", "0"))  # GAP and FAR apply from this step on (0 until then): a curriculum


def batch(n: int, gap: int, far: int):
    rows, answers, targets = [], [], []
    for _ in range(n):
        k = random.randint(2, 4)
        keys, vals = random.sample(KEYS, k), [random.choice(VALUES) for _ in range(k)]
        row = [t for kv in zip(keys, vals) for t in (kv[0], *[BAR] * gap, kv[1], SEP)]
        i = random.randrange(k)
        rows.append(row + [ASK, keys[i]] + random.choices(FILLER, k=far))
        answers.append(vals[i])
        targets.append(i * (gap + 3) + gap + 1)  # where the asked key's value sits
    T = max(map(len, rows))
    ids = torch.zeros(n, T, dtype=torch.long)
    valid = torch.zeros(n, T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)], valid[b, :len(r)] = torch.tensor(r), 1
    return ids, valid, torch.tensor([len(r) - 1 for r in rows]), torch.tensor(answers), torch.tensor(targets)


def main() -> None:
    steps, lr = int(sys.argv[1]), float(sys.argv[2])
    theta = float(sys.argv[3]) if len(sys.argv) > 3 else ModelArgs.rope_theta
    torch.set_num_threads(1)
    seed = int(os.environ.get("SEED", "0"))
    torch.manual_seed(seed)
    random.seed(seed)
    model = IXCRewardModel(ModelArgs(vocab_size=512, rope_theta=theta))
    D = model.args.hidden_size
    offsets = [int(k) for k in os.environ.get("BACK", "").split(",") if k]
    back = P.BackReadout(D, offsets) if offsets else None
    params = P.text_params(model)  # the text stage's
    opt = P._adamw(params + (list(back.parameters()) if back else []), lr)
    emb = model.model.tok_embeddings.weight
    # BACK_LAYER=i: the readout reads the residual stream after decoder layer i (0-based) instead of the final state,
    # so the token-before information has to be there by then, where later layers' attention can match on it.
    back_layer = os.environ.get("BACK_LAYER")
    seen = {}
    if back_layer is not None:
        model.model.layers[int(back_layer)].register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    # The text stage's attention hints (pretrain.AttentionHints), until step ATT_UNTIL: PREV_SUP=k1,k2.. teaches head
    # j of layer 0 to attend to the token k_j back, ATT_SUP=i head 0 of layer i to attend from the read position to
    # the asked key's value; CARRY_SUP=i (this drill only) head 0 of layer i from the read position to the asked key.
    prev = [int(k) for k in os.environ.get("PREV_SUP", "").split(",") if k]
    hints = P.text_hints(P.PretrainConfig(text_prev_heads=prev, text_lookup_layer=int(os.environ.get("ATT_SUP", "-1"))))
    att_until = int(os.environ.get("ATT_UNTIL", "1000000000"))
    carry = int(os.environ.get("CARRY_SUP", "-1"))
    if carry >= 0 and (carry == 0 and prev or hints is not None and carry == hints.layer):
        raise SystemExit("CARRY_SUP needs a layer of its own")
    terms = {}
    t0, acc = time.time(), None
    for step in range(steps):
        ids, valid, last, answer, target = batch(BATCH, *((GAP, FAR) if step >= FROM else (0, 0)))
        hinting = hints is not None and step < att_until
        if step == att_until:
            terms.clear()  # the hints are off from here: print no stale term
        if hinting:
            hints.arm(model)
        if carry >= 0:
            model.model.layers[carry].attention.keep_heads = 1
        h = model.hidden_states(ids, torch.zeros(1, D), torch.zeros_like(ids), torch.zeros(ids.shape), valid)
        logits = h[torch.arange(len(ids)), last] @ emb.t()
        loss = F.cross_entropy(logits, answer)
        if back is not None:
            loss = loss + back.loss(seen.get("h", h), ids, valid.bool(), emb)
        if carry >= 0:
            far = FAR if step >= FROM else 0
            kept = model.model.layers[carry].attention.take_kept()
            lc = -kept.log_softmax(-1)[torch.arange(len(ids)), 0, last, last - far].mean()
            terms["carry"] = float(lc)
            if step < att_until:
                loss = loss + lc
        if hinting:
            rows = [P.TextRow(ids[b].tolist(), int(last[b]) + 1, [int(target[b])], int(last[b])) for b in range(len(ids))]
            lh = hints.loss(model, rows, valid)
            terms["hints"] = float(lh)
            loss = loss + lh
        P._optimizer_step(opt, params, loss, lr * min(1.0, (step + 1) / 20))
        acc = P._ema(acc, float((logits.argmax(-1) == answer).float().mean()), 0.9)
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} {time.time() - t0:.0f}s look-up accuracy {acc:.2f}",
                  {k: round(v, 2) for k, v in terms.items()}, flush=True)


if __name__ == "__main__":
    main()
