"""Diagnostic for issue 15: does the decoder *know* the answer, whatever its score head says?

For each pair, the language-model head (the tied token embeddings) at the first position where chosen and rejected
differ: is the chosen reply's token more likely than the rejected one's? Accuracy per category. A decoder that has
learned the arithmetic facts or the table read-off scores near 1 on those categories even when the reward head
does not; near 0.5 means it has not learned them at all.

    /usr/bin/python3 trainer/tests/probe_lm_pairwise.py CKPT DATA.jsonl TOKENIZER [category,category,...]
"""
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer.checkpoint import load_checkpoint, preprocess_configs  # noqa: E402
from reward_trainer.collate import collate, shared_prefix  # noqa: E402
from reward_trainer.config import template_config  # noqa: E402
from reward_trainer.data import MediaCache, build_examples, read_jsonl  # noqa: E402
from reward_trainer.model_io import embed_media  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402


@torch.no_grad()
def first_diff_logprob(model, ex, ids, spans, at: int, pad_id: int) -> float:
    E, offsets, ntoks = embed_media(model, [ex], "cpu")
    x = collate([(ids, spans)], offsets, ntoks, pad_id)
    h = model.hidden_states(x["input_ids"], E, x["image_positions"], x["im_mask"], x["attention_mask"])
    return float((h[0, at - 1] @ model.model.tok_embeddings.weight.t()).log_softmax(-1)[ids[at]])


def main() -> None:
    ckpt, data, tok_path = sys.argv[1:4]
    cats = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
    torch.set_num_threads(2)
    model, state = load_checkpoint(ckpt, "cpu")
    model.eval()
    tok = TextTokenizer(tok_path)
    recs = [r for r in read_jsonl(data) if cats is None or r.get("category") in cats]
    tc = state.get("train_config", {})
    exs, _ = build_examples(recs, os.path.dirname(os.path.abspath(data)), tok, MediaCache(*preprocess_configs(state)),
                            tc.get("max_seq_len", 384), model.tokens_per_image,
                            template_config(tc.get("pipeline", "ixc")))  # a pretrain checkpoint: reproduce's pipeline
    per = collections.defaultdict(lambda: [0, 0])
    for ex in exs:
        at = shared_prefix(ex.chosen_ids, ex.rejected_ids, ex.chosen_spans, ex.rejected_spans)
        c = first_diff_logprob(model, ex, ex.chosen_ids, ex.chosen_spans, at, tok.pad_id)
        r = first_diff_logprob(model, ex, ex.rejected_ids, ex.rejected_spans, at, tok.pad_id)
        per[ex.category][0] += c > r
        per[ex.category][1] += 1
    for k, (a, n) in sorted(per.items()):
        print(f"{k:15s} LM pairwise {a / n:.3f} ({n} pairs)")


if __name__ == "__main__":
    main()
