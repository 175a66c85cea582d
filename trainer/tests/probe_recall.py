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
tokens), `BATCH` (rows per step). Session 11: `RAMP` (gap and far widened step by step from a bare start), `TOK` /
`INIT` / `SAVE` (the drill in a real tokenizer's pieces on a real checkpoint, saved for probe_text_stage.py).

    OPENBLAS_NUM_THREADS=1 [BACK=1] [GAP=1] [FAR=4] [FROM=800] [SEED=0] [ATT_SUP=2 PREV_SUP=1] /usr/bin/python3 trainer/tests/probe_recall.py STEPS LR [ROPE_THETA]
    OPENBLAS_NUM_THREADS=1 TOK=RUN/tokenizer/tokenizer.model INIT=FRESH/ckpt.pt SAVE=DRILLED.pt PREV_SUP=1 ATT_SUP=2 CARRY_SUP=1 RAMP=300:2:0,500:2:1,700:2:2 /usr/bin/python3 trainer/tests/probe_recall.py 1800 2e-3
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
from reward_trainer.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from reward_trainer.model import IXCRewardModel  # noqa: E402

NVAL = int(os.environ.get("NVAL", "10"))  # how many value tokens (10: guessing among those present ≈ 0.43)
KEYS, VALUES, SEP, ASK, BAR, FILLER = list(range(100, 160)), list(range(200, 200 + NVAL)), [5], [6], [7] * 8, list(range(300, 310))
# TOK=tokenizer.model: the drill in a real tokenizer's pieces, laid out as the tables are ("| chairs | 7 |" is
# ▁chairs ▁| ▁ 7 ▁|\n|: GAP up to 2 takes the last GAP of "▁|", "▁"), asked as "How many chairs" and padded with
# the question's own words; INIT=ckpt.pt starts from that checkpoint (e.g. a fresh `pretrain` with its vocab) and
# SAVE=ckpt.pt writes the drilled weights in its format, so probe_text_stage.py can continue from them.
TOK = os.environ.get("TOK")
if TOK:
    from reward_trainer.tokenizer import TextTokenizer  # noqa: E402

    _p = P.drill_pieces(TextTokenizer(TOK))  # the drill stage's own (pretrain.drill_stage)
    KEYS, VALUES, SEP, ASK, BAR, FILLER = _p.keys, _p.values, _p.sep, _p.ask, _p.bars, _p.filler
BATCH = int(os.environ.get("BATCH", "64"))  # rows per step
GAP = int(os.environ.get("GAP", "0"))  # tokens between a key and its value ("| chairs | 3 |" has 2 in the default tokenizer's pieces)
FAR = int(os.environ.get("FAR", "0"))  # tokens between the asked key and where the answer is read (a template)
FROM = int(os.environ.get("FROM", "0"))  # GAP and FAR apply from this step on (0 until then): a curriculum
# RAMP="300:2:0,600:2:1,800:2:2": from step 300 on gap 2 and far 0, from 600 far 1, ... (overrides GAP/FAR/FROM):
# a look-up formed on the bare form, widened a few tokens at a time.
RAMP = sorted((int(s), int(g), int(f)) for s, g, f in (x.split(":") for x in os.environ.get("RAMP", "").split(",") if x))


def layout(step: int):
    """(gap, far) at this step."""
    if RAMP:
        now = [(g, f) for s, g, f in RAMP if step >= s]
        return now[-1] if now else (0, 0)
    return (GAP, FAR) if step >= FROM else (0, 0)


def batch(n: int, gap: int, far: int):
    # the module's own generator, seeded in main (the same draws as before pretrain.drill_batch existed)
    r = P.drill_batch(P.DrillPieces(KEYS, VALUES, SEP, ASK, BAR, FILLER), n, gap, far, random)  # type: ignore[arg-type]
    return r.ids, r.valid, r.last, r.answer, r.source


def main() -> None:
    steps, lr = int(sys.argv[1]), float(sys.argv[2])
    theta = float(sys.argv[3]) if len(sys.argv) > 3 else ModelArgs.rope_theta
    torch.set_num_threads(1)
    seed = int(os.environ.get("SEED", "0"))
    torch.manual_seed(seed)
    random.seed(seed)
    init = os.environ.get("INIT")
    if os.environ.get("SAVE") and not init:
        raise SystemExit("SAVE writes INIT's checkpoint format: give INIT too")
    if init:
        model, state = load_checkpoint(init, "cpu")
        model.train()
    else:
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
        gap, far = layout(step)
        ids, valid, last, answer, target = batch(BATCH, gap, far)
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
            print(f"step {step} {time.time() - t0:.0f}s gap {gap} far {far} look-up accuracy {acc:.2f}",
                  {k: round(v, 2) for k, v in terms.items()}, flush=True)
    if os.environ.get("SAVE"):
        save_checkpoint(os.environ["SAVE"], {**state, "model": model.state_dict()})


if __name__ == "__main__":
    main()
