"""SentencePiece BPE (InternLM2 style) training and conversion to a Hugging Face `tokenizer.json`.

The converter works on any SentencePiece BPE `tokenizer.model`, including the real InternLM2 one, and its output
is tested (with the JS library the service uses) to give sentencepiece's ids exactly:

* normalizer: identity + whitespace escaping (' ' -> '▁'), no dummy prefix;
* no pre-tokenizer (sentencepiece's BPE runs over the whole text run; vocabulary constraints such as split_digits
  are already baked into which pieces exist);
* BPE merges: every split of every NORMAL piece into two NORMAL pieces, ranked by the merged piece's score
  (sentencepiece merges the highest-scoring adjacent pair first, ties leftmost);
* byte_fallback for characters without a piece (<0xNN> pieces);
* USER_DEFINED pieces become added tokens (atomic in text, like sentencepiece's prefix matcher);
* CONTROL/UNKNOWN pieces are NOT added tokens: sentencepiece never recognises `<s>`/`</s>` inside text, and the
  service inserts BOS/EOS by id.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, Iterable, List

from sentencepiece import sentencepiece_model_pb2 as sp_pb2

SPECIAL_PIECES = ["[UNUSED_TOKEN_130]", "[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_146]"]
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def train_tokenizer(sentences: Iterable[str], model_prefix: str, vocab_size: int = 4096) -> str:
    """Train a BPE vocabulary the InternLM2 way. Returns the .model path."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_prefix=model_prefix,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        character_coverage=0.9999,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        user_defined_symbols=SPECIAL_PIECES,
        max_sentence_length=1 << 16,
        num_threads=2,
        minloglevel=2,
    )
    return model_prefix + ".model"


def load_proto(model_path: str) -> "sp_pb2.ModelProto":
    m = sp_pb2.ModelProto()
    with open(model_path, "rb") as f:
        m.ParseFromString(f.read())
    return m


def convert(model_path: str) -> Dict:
    m = load_proto(model_path)
    if m.trainer_spec.model_type != 2:
        raise ValueError("only SentencePiece BPE models are supported")
    ns = m.normalizer_spec
    if ns.name not in ("identity", "") or ns.add_dummy_prefix or ns.remove_extra_whitespaces:
        raise ValueError(f"unsupported normalizer: name={ns.name} dummy_prefix={ns.add_dummy_prefix} "
                         f"remove_extra_whitespaces={ns.remove_extra_whitespaces}")
    if not m.trainer_spec.byte_fallback:
        raise ValueError("byte_fallback models only")
    pieces = [(p.piece, p.score, p.type) for p in m.pieces]
    vocab: Dict[str, int] = {}
    for i, (piece, _, _) in enumerate(pieces):
        vocab.setdefault(piece, i)
    normal = {p: i for i, (p, _, t) in enumerate(pieces) if t == NORMAL}
    merges: List[tuple] = []
    for piece, idx in normal.items():
        if len(piece) < 2:
            continue
        score = pieces[idx][1]
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in normal and right in normal:
                merges.append((-score, idx, normal[left], normal[right], left, right))
    merges.sort()
    unk = next(p for p, _, t in pieces if t == UNKNOWN)
    added = [
        {"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False}
        for i, (p, _, t) in enumerate(pieces) if t == USER_DEFINED
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab,
            "merges": [[l, r] for *_, l, r in merges],
        },
    }


def special_ids(model_path: str) -> Dict[str, int]:
    m = load_proto(model_path)
    ids = {p.piece: i for i, p in enumerate(m.pieces)}
    return {"bos_id": ids["<s>"], "eos_id": ids["</s>"], "unk_id": ids["<unk>"],
            "turn_start": ids["[UNUSED_TOKEN_146]"], "turn_end": ids["[UNUSED_TOKEN_145]"],
            "reward": ids["[UNUSED_TOKEN_130]"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="convert a SentencePiece BPE tokenizer.model to tokenizer.json")
    ap.add_argument("model")
    ap.add_argument("out")
    a = ap.parse_args(argv)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(convert(a.model), f, ensure_ascii=False)


if __name__ == "__main__":
    main()
