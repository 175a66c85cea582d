"""tokenizer.json from tokenizer_convert.py must give sentencepiece 0.1.97's ids exactly, evaluated with the JS
library the service uses (@huggingface/tokenizers via node)."""
import json
import os
import subprocess

import sentencepiece as spm

from conftest import FIXTURES, TRAINER
from reward_trainer.tokenizer_convert import SPECIAL_PIECES, convert, special_ids, train_tokenizer

INTERNLM2 = os.path.join(FIXTURES, "tokenizers", "internlm2", "tokenizer.model")

CORPUS = [
    "Hello world", "hello  world   three spaces", " leading space", "trailing space ", "\n", "\n\nHuman: hi\n\nAssistant: yo",
    "line1\nline2\r\nline3\ttab", "12345 + 678 = 999", "3.14159, 2024-11-26, 1e-5, 0x1F",
    "你好，世界！今天天气很好。", "日本語のテキストと한국어", "emoji 😀🎉👍🏽 ok", "👨‍👩‍👧 family", "Ünïcödé façade naïve café",
    "[UNUSED_TOKEN_146]user\nhi[UNUSED_TOKEN_145]\n</s>[UNUSED_TOKEN_130]",
    "<s> and </s> and <unk> are plain text", "[UNUSED_TOKEN_146][UNUSED_TOKEN_146]x[UNUSED_TOKEN_145]",
    "def f(x):\n    return x**2  # comment\n", "    indented\n\tcode", "a\u0000b\u200bc", "<0x41> literal byte piece",
    "The quick brown fox jumps over the lazy dog. " * 5, "¿Qué tal? ça va! Grüße, Ελληνικά, русский текст",
    "$$\\frac{a}{b}$$ ~~~ ### *** ___", "", " ", "  ", "\u2581 lower one eighth block",
]


def node_encode(tokenizer_json, texts):
    p = subprocess.run(["node", os.path.join(TRAINER, "node", "encode.mjs"), tokenizer_json],
                       input=json.dumps(texts).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def check(model_path, tmp_path, texts):
    tj = tmp_path / "tokenizer.json"
    tj.write_text(json.dumps(convert(model_path), ensure_ascii=False), encoding="utf-8")
    sp = spm.SentencePieceProcessor(model_file=model_path)
    got = node_encode(str(tj), texts)
    for t, g in zip(texts, got):
        assert g == sp.encode(t), repr(t)


def test_internlm2_converter_parity(tmp_path):
    check(INTERNLM2, tmp_path, CORPUS)
    ids = special_ids(INTERNLM2)
    assert ids == {"bos_id": 1, "eos_id": 2, "unk_id": 0, "turn_start": 92543, "turn_end": 92542, "reward": 92527}


def test_internlm2_control_pieces_not_recognised(tmp_path):
    tj = convert(INTERNLM2)
    added = {t["content"] for t in tj["added_tokens"]}
    assert "[UNUSED_TOKEN_130]" in added and "<s>" not in added and "</s>" not in added
    sp = spm.SentencePieceProcessor(model_file=INTERNLM2)
    ids = node_encode_json(tmp_path, tj, ["x</s>y<s>"])[0]
    assert 1 not in ids and 2 not in ids and ids == sp.encode("x</s>y<s>")


def node_encode_json(tmp_path, tj, texts):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    return node_encode(str(p), texts)


def test_trained_tokenizer_is_internlm2_style_and_converts(tmp_path):
    sents = CORPUS * 3 + [f"What is {a} + {b}? The answer is {a + b}." for a in range(30) for b in range(10)]
    model = train_tokenizer(sents, str(tmp_path / "tok"), vocab_size=400)
    sp = spm.SentencePieceProcessor(model_file=model)
    assert sp.id_to_piece(0) == "<unk>" and sp.id_to_piece(1) == "<s>" and sp.id_to_piece(2) == "</s>"
    assert all(sp.piece_to_id(p) > 2 for p in SPECIAL_PIECES)
    assert sp.encode("12") == [sp.piece_to_id("1"), sp.piece_to_id("2")]  # split_digits
    assert sp.encode("hi", out_type=str)[0] != "\u2581h"  # no dummy prefix
    check(model, tmp_path, CORPUS + sents[-20:])
