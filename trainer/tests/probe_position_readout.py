"""Issue 15 experiment: where the side of the asked shape is lost on the way to the answer (image_position pairs).

For each pair, the decoder's residual stream after the embedding and after every layer, at two sites: the asked
object's image tokens (their mean; scene_tokens.annotate_lookup's targets) and the query position (the last shared
prompt position, the one that predicts the side word). A logistic-regression probe per (site, layer), fitted on
the first N training pairs and tested on the held-out pairs, says whether "left or right" is linearly readable
there. Also the reward head's pairwise accuracy and the LM head's at the query. Readings: side readable at the
object but not at the query -> the look-up is not formed; readable at the query but the reward at chance -> the
comparison with the reply's side word is what is missing.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 trainer/tests/probe_position_readout.py CKPT POS_DIR TOKENIZER [N]

POS_DIR: `generate --out POS_DIR --categories image_position` (train.jsonl, heldout.jsonl, media/).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer.checkpoint import load_checkpoint, preprocess_configs  # noqa: E402
from reward_trainer.collate import collate  # noqa: E402
from reward_trainer.config import template_config  # noqa: E402
from reward_trainer.data import MediaCache, build_examples, read_jsonl  # noqa: E402
from reward_trainer.model_io import embed_media  # noqa: E402
from reward_trainer.scene_tokens import annotate_lookup  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402


def examples(path, model, state, tok, limit):
    recs = read_jsonl(path)[:limit]
    tc = state.get("train_config", {})
    cache = MediaCache(*preprocess_configs(state))
    exs, _ = build_examples(recs, os.path.dirname(os.path.abspath(path)), tok, cache, tc.get("max_seq_len", 384),
                            model.tokens_per_image, template_config(tc.get("pipeline", "ixc")),
                            annotate_lookup(os.path.dirname(os.path.abspath(path)), cache, model.G, 0.2))
    side = {r["id"]: (r["scene"]["objects"][0][2] < r["scene"]["objects"][1][2]) for r in recs}
    return [(ex, side[ex.rid]) for ex in exs if ex.lookup and ex.lookup[1]]


@torch.no_grad()
def features(model, exs, pad_id):
    """[n, L+1, 2, D] residual (site 0: asked object's tokens' mean, site 1: query), reward and LM pairwise hits."""
    out, rew, lm = [], [], []
    grab = []
    hooks = [layer.register_forward_hook(lambda m, i, o: grab.append(o)) for layer in model.model.layers]
    emb = model.model.tok_embeddings.weight
    try:
        for ex, _ in exs:
            E, offsets, ntoks = embed_media(model, [ex], "cpu")
            scores, q_logits = [], []
            for ids, spans in ((ex.chosen_ids, ex.chosen_spans), (ex.rejected_ids, ex.rejected_spans)):
                grab.clear()
                x = collate([(ids, spans)], offsets, ntoks, pad_id)
                h = model.hidden_states(x["input_ids"], E, x["image_positions"], x["im_mask"], x["attention_mask"])
                if not scores:
                    q, objs = ex.lookup
                    h0 = model._embed(x["input_ids"], E, x["image_positions"], x["im_mask"])
                    sites = [torch.stack([s[0, objs].mean(0), s[0, q]]) for s in [h0] + grab]
                    out.append(torch.stack(sites))
                    q_logits = (h[0, q] @ emb.t()).log_softmax(-1)
                scores.append(float(model.v_head(h[0, len(ids) - 1])))
                at = ex.lookup[0] + 1
                lm.append(float(q_logits[ids[at]]))
            rew.append(scores[0] > scores[1])
    finally:
        for hk in hooks:
            hk.remove()
    lm_hits = [lm[i] > lm[i + 1] for i in range(0, len(lm), 2)]
    return torch.stack(out), rew, lm_hits


def probe(xtr, ytr, xte, yte, steps=300):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.zeros(xtr.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps)
    y = ytr.float()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xtr @ w + b, y) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b > 0) == yte).float().mean()), float(((xtr @ w + b > 0) == ytr).float().mean())


def main() -> None:
    ckpt, pos, tok_path = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1200
    torch.set_num_threads(1)
    model, state = load_checkpoint(ckpt, "cpu")
    model.eval()
    tok = TextTokenizer(tok_path)
    tr = examples(os.path.join(pos, "train.jsonl"), model, state, tok, n)
    te = examples(os.path.join(pos, "heldout.jsonl"), model, state, tok, 10 ** 9)
    ftr, _, _ = features(model, tr, tok.pad_id)
    fte, rew, lm = features(model, te, tok.pad_id)
    ytr = torch.tensor([s for _, s in tr])
    yte = torch.tensor([s for _, s in te])
    print(f"{len(tr)} train / {len(te)} held-out pairs; held-out reward pairwise {sum(rew) / len(rew):.3f}, "
          f"LM pairwise at the query {sum(lm) / len(lm):.3f}")
    print("linear probe of the asked shape's side, held-out (train) accuracy")
    print("layer        asked object's tokens   query position")
    for layer in range(ftr.shape[1]):
        cells = [probe(ftr[:, layer, s], ytr, fte[:, layer, s], yte) for s in (0, 1)]
        name = "embed" if layer == 0 else f"after {layer - 1}"
        print(f"{name:12s} " + "   ".join(f"{a:.3f} ({t:.3f})".ljust(20) for a, t in cells))


if __name__ == "__main__":
    main()
