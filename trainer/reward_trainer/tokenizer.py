"""The text tokenizer the trainer encodes with: SentencePiece ids for text runs (models/README.md §Text)."""
from __future__ import annotations

from typing import List


class TextTokenizer:
    """SentencePiece ids for text runs (no BOS/EOS, no dummy prefix, user-defined markers atomic)."""

    def __init__(self, model_path: str):
        import sentencepiece as spm

        from .tokenizer_convert import special_ids

        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.ids = special_ids(model_path)
        self.bos_id, self.eos_id, self.pad_id = self.ids["bos_id"], self.ids["eos_id"], self.ids["eos_id"]
        self.reward_id = self.ids["reward"]
        self.unk_id = self.ids["unk_id"]
        self.vocab_size = self.sp.get_piece_size()
        # user-defined pieces ([UNUSED_TOKEN_*]): sentencepiece matches them whole anywhere in text
        from .tokenizer_convert import USER_DEFINED, load_proto

        self.atomic_pieces = [p.piece for p in load_proto(model_path).pieces if p.type == USER_DEFINED]

    def encode(self, text: str) -> List[int]:
        return self.sp.encode(text) if text else []
