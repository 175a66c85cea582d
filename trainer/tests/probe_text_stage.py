"""Issue 15 experiment: more of the text stage, in the chat layout, on chosen categories only; does the decoder
learn the answers? Continues language modelling (pretrain.text_lm_loss, the text stage's own loss and optimizer)
from a checkpoint for some minutes and prints, every 100 steps, the held-out LM pairwise accuracy of
probe_lm_pairwise.py (the tied LM head at the first token where chosen and rejected differ) on the held-out
arithmetic and table pairs. `table_multi` is an extra kind: one table, 2-4 questions about it in turns (every
answer a read-off); `CURRICULUM=1` lets its tables start at one row; `scene_position` is `Gen.scene_text` held
to its position kind (a told scene: which side the named shape is on); `THREADS` (1) torch threads; `BACK` offsets for pretrain.BackReadout (e.g. 1,2,3); `PREV`
(e.g. 1,2), `LOOKUP` (a layer) and `AW` (weight) the text stage's attention hints (PretrainConfig.text_prev_heads,
text_lookup_layer, text_attention_weight); `DRILL` rows of pretrain.LookupDrill added to every step
(PretrainConfig.text_drill_rows), from layout `DRILL_AT` (0 = bare) with look-up layer `DRILL_LAYER` (2); `EXTRA` a JSONL of
more pairs to probe (e.g. told scenes), their categories reported beside the held-out ones.

    /usr/bin/python3 trainer/tests/probe_text_stage.py RUN_DIR INIT_CKPT MINUTES KINDS LR [OUT_CKPT]
e.g. RUN_DIR = a reproduce run folder (data/heldout.jsonl, tokenizer/tokenizer.model), INIT_CKPT =
RUN_DIR/pretrain/ckpt.pt, KINDS = arithmetic,table. OUT_CKPT (optional) gets INIT_CKPT's dict with the new
weights: a `train --init` starting point.
"""
import collections
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer import pretrain as P  # noqa: E402
from reward_trainer.checkpoint import load_checkpoint  # noqa: E402
from reward_trainer.collate import shared_prefix  # noqa: E402
from reward_trainer.config import ImagePreprocess, VideoPreprocess, template_config  # noqa: E402
from reward_trainer.data import MediaCache, build_examples, read_jsonl  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402
from reward_trainer.world import ITEMS, NUMBER_WORD_RATE, Gen, number_word  # noqa: E402


def table_multi(gen: Gen, n: int, curriculum: bool) -> dict:
    r = gen.rng
    items = r.sample(ITEMS, r.randint(1 if curriculum else 3, 4))
    counts = [r.randint(0, 9) for _ in items]
    rows = "\n".join(f"| {it} | {c} |" for it, c in zip(items, counts))
    order = [r.randrange(len(items)) for _ in range(r.randint(2, 4))]
    msgs, a = [], ""
    for k, i in enumerate(order):
        q = gen.form("table_q").format(it=items[i])
        if k == 0:
            q = f"| item | count |\n|---|---|\n{rows}\n\n" + q
        v = number_word(counts[i]) if r.random() < NUMBER_WORD_RATE else counts[i]
        a = gen.form("table_a").format(v=v, it=items[i])
        msgs.append({"role": "user", "content": q})
        if k < len(order) - 1:
            msgs.append({"role": "assistant", "content": a})
    # the rejected reply only marks where the last answer starts (text_batch's reply span); it is never trained on
    return {"id": f"t{n}", "category": "table", "messages": msgs, "chosen": a, "rejected": a + " ", "images": [],
            "videos": []}


def scene_position(gen: Gen, n: int) -> dict:
    while True:
        rec = gen.scene_text(n)
        if rec["category"] == "scene_position":
            return rec


def main() -> None:
    run, init, minutes, kinds, lr = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(","), float(sys.argv[5])
    out = sys.argv[6] if len(sys.argv) > 6 else None
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))  # 1: faster than 2 on the 2-core host (README)
    torch.manual_seed(0)
    model, state = load_checkpoint(init, "cpu")
    tok = TextTokenizer(os.path.join(run, "tokenizer", "tokenizer.model"))
    tc = state.get("train_config", {})
    tcfg, msl = template_config(tc.get("pipeline", "ixc")), tc.get("max_seq_len", 384)
    data = os.path.join(run, "data")
    recs = [r for r in read_jsonl(os.path.join(data, "heldout.jsonl")) if r.get("category") in ("arithmetic", "table")]
    if os.environ.get("EXTRA"):
        recs += read_jsonl(os.environ["EXTRA"])
    probe_ex, _ = build_examples(recs, data, tok, MediaCache(ImagePreprocess(), VideoPreprocess()), msl,
                                 model.tokens_per_image, tcfg)
    D = model.args.hidden_size

    @torch.no_grad()
    def probe() -> dict:
        model.eval()
        per = collections.defaultdict(lambda: [0, 0])
        for ex in probe_ex:
            at = shared_prefix(ex.chosen_ids, ex.rejected_ids, ex.chosen_spans, ex.rejected_spans)
            lp = []
            for ids in (ex.chosen_ids, ex.rejected_ids):
                x = torch.tensor([ids[:at + 1]])
                h = model.hidden_states(x, torch.zeros(1, D), torch.zeros_like(x), torch.zeros(1, x.shape[1]),
                                        torch.ones_like(x))
                lp.append(float((h[0, at - 1] @ model.model.tok_embeddings.weight.t()).log_softmax(-1)[ids[at]]))
            per[ex.category][0] += lp[0] > lp[1]
            per[ex.category][1] += 1
        model.train()
        return {k: round(a / n, 3) for k, (a, n) in sorted(per.items())}

    gen = Gen("", "pretrain", random.Random(7))  # the training side of the world only (as the text stage)
    curriculum = os.environ.get("CURRICULUM") == "1"
    Gen.table_multi = lambda self, n: table_multi(self, n, curriculum)  # type: ignore[attr-defined]
    Gen.scene_position = scene_position  # type: ignore[attr-defined]
    P.TEXT_CATEGORIES = tuple(kinds)
    params = P.text_params(model)  # the text stage's
    offsets = [int(k) for k in os.environ.get("BACK", "").split(",") if k]
    back = P.BackReadout(model.args.hidden_size, offsets) if offsets else None
    drill_rows = int(os.environ.get("DRILL", "0"))
    drill = P.LookupDrill(model, tok, int(os.environ.get("DRILL_LAYER", "2")), 0, "cpu",
                          int(os.environ.get("DRILL_AT", "0"))) if drill_rows else None
    opt = P._adamw(params + (list(back.parameters()) if back is not None else [])
                   + (list(drill.back.parameters()) if drill else []), lr)
    hints = P.text_hints(P.PretrainConfig(
        text_prev_heads=[int(k) for k in os.environ.get("PREV", "").split(",") if k],
        text_lookup_layer=int(os.environ.get("LOOKUP", "-1")), text_attention_weight=float(os.environ.get("AW", "1"))))
    print("step 0", probe(), flush=True)
    t0, step, ema, ntok, total = time.time(), 0, None, 0, minutes * 60
    while time.time() - t0 < total:
        rows = P.text_batch(gen, 32, tok, tcfg, msl, model.tokens_per_image)
        ntok += sum(len(r.ids) for r in rows)
        loss, _ = P.text_lm_loss(model, rows, tok.pad_id, "cpu", back, hints)
        if drill is not None:
            loss = loss + drill.loss(model, drill_rows)
        P._optimizer_step(opt, params, loss, P._lr(step, total, time.time() - t0, lr))
        if drill is not None:
            drill.record()
        step += 1
        ema = P._ema(ema, float(loss))
        if step % 100 == 0:
            el = time.time() - t0
            print(f"step {step} {el:.0f}s loss {ema:.3f} tokens/s {ntok / el:.0f}", probe(),
                  drill.summary() if drill else "", flush=True)
    print("final", step, probe(), flush=True)
    if out:
        state["model"] = model.state_dict()
        torch.save(state, out)


if __name__ == "__main__":
    main()
