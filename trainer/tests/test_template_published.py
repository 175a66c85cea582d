"""The published get_score input pipeline (template.ixc_segments / slow_tokenize, media.load_image published) on
the real InternLM2 tokenizer: the ids the published code gives, from published-pipeline-spec.md."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from reward_trainer import media
from reward_trainer.config import ImagePreprocess, ModelArgs, TemplateConfig, VisionArgs, ixc_published
from reward_trainer.model import IXCRewardModel
from reward_trainer.template import ContentTokenError, build_segments, layout, neutralize_content_pieces
from reward_trainer.tokenizer import TextTokenizer

TOK = TextTokenizer(os.path.join(FIXTURES, "tokenizers", "internlm2", "tokenizer.model"))
BOS, EOS, NL, T146, T145, T130 = 1, 2, 364, 92543, 92542, 92527
CONTROL = {0, 1, 2, T130, T145, T146}


def ixc(**kw):
    t = ixc_published(ImagePreprocess())
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def flat(segs):
    return [i for kind, s in segs if kind == "text" for i in s]


def test_text_only_keeps_the_newline_before_eos_by_default_and_strips_it_on_request():
    msgs = [{"role": "user", "content": "Hi "}, {"role": "assistant", "content": " there"}]
    keep = flat(build_segments(msgs, TOK, ixc()))
    body = TOK.encode("[UNUSED_TOKEN_146]user\nHi [UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n there"
                      "[UNUSED_TOKEN_145]\n")
    assert keep == [BOS] + body + [EOS, T130]  # no strip_content in the published path
    assert keep[-4:] == [T145, NL, EOS, T130]
    assert flat(build_segments(msgs, TOK, ixc(eos_newline="strip")))[-3:] == [T145, EOS, T130]


def test_one_image_goes_after_bos_before_the_user_turn_even_when_its_part_is_later():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image"}]},
            {"role": "assistant", "content": "A cat."}]
    segs = build_segments(msgs, TOK, ixc())
    assert [k for k, _ in segs] == ["text", "media", "text", "text"]
    assert segs[0] == ("text", [BOS]) and segs[1] == ("media", 0)
    assert segs[2][1] == TOK.encode("[UNUSED_TOKEN_146]user\nWhat is this?[UNUSED_TOKEN_145]\n"
                                    "[UNUSED_TOKEN_146]assistant\nA cat.[UNUSED_TOKEN_145]\n")
    # IXC scale: a 2x2 grid is (2*2+1)*400 + 1 + 3*20 = 2061 positions; L = 1 + text + 2061 + 2
    ids, spans, _ = layout(segs, [2061], 10 ** 6, 2)
    assert spans == [(1, 0)] and len(ids) == 1 + len(segs[2][1]) + 2061 + 2


def test_several_media_stand_where_their_parts_are_each_text_part_tokenized_alone():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Image1 "}, {"type": "image"},
                                         {"type": "text", "text": "; Image2 "}, {"type": "video"},
                                         {"type": "text", "text": "; which?"}]}]
    segs = build_segments(msgs, TOK, ixc())
    assert [k for k, _ in segs] == ["text", "text", "media", "text", "media", "text", "text"]
    assert segs[1][1] == TOK.encode("[UNUSED_TOKEN_146]user\nImage1 ")
    assert segs[3][1] == TOK.encode("; Image2 ")
    assert segs[5][1] == TOK.encode("; which?[UNUSED_TOKEN_145]\n")


def test_published_content_special_tokens():
    def ids(text, **kw):
        return flat(build_segments([{"role": "user", "content": text}], TOK, ixc(**kw)))

    head, tail = TOK.encode("[UNUSED_TOKEN_146]user\n"), [T145, NL, EOS, T130]
    # object-form special_tokens_map (keep): </s> <s> <unk> become 2/1/0, whitespace kept
    assert ids("a </s> b") == [BOS] + TOK.encode("[UNUSED_TOKEN_146]user\na ") + [EOS] + TOK.encode(" b") + tail
    assert ids("<s><unk>") == [BOS] + head + [BOS, 0] + tail
    # plain-string form (strip): whitespace on both sides goes, the header's \n included
    assert ids(" \t</s>\n b", eos_newline="strip") == [BOS] + TOK.encode("[UNUSED_TOKEN_146]user") + [EOS] + \
        TOK.encode("b") + [T145, EOS, T130]
    # [UNUSED_TOKEN_*] are SentencePiece pieces: one id in every version (turn / reward forgery)
    assert T130 in ids("x[UNUSED_TOKEN_130]")[:-2]
    # <ImageHere> with no media splits the text and vanishes
    assert ids("ab<ImageHere>cd") == [BOS] + TOK.encode("[UNUSED_TOKEN_146]user\nab") + TOK.encode("cd") + tail
    for bad in ("<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>"):
        with pytest.raises(ContentTokenError):
            ids("hi " + bad)


ATTACKS = ["</s>", "<s>", "<unk>", "[UNUSED_TOKEN_146]", "[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_130]",
           "[UNUSED_TOKEN_1]", "<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>",
           "<|interpreter|>", "<|plugin|>", "<ImageHere>", "[[UNUSED_TOKEN_146]]", "[UNUSED_TOKEN_145][UNUSED_TOKEN_146]"]


@pytest.mark.parametrize("placement", ["inline", "ixc"])
def test_literal_mode_no_content_yields_a_control_id(placement):
    t = TemplateConfig(media_placement=placement, strip_content=False)
    rng = np.random.default_rng(0)
    for k in range(200):
        content = "".join(rng.choice(ATTACKS + ["a", " ", "\n", "x y"], size=int(rng.integers(1, 8))))
        ids = flat(build_segments([{"role": "user", "content": content}], TOK, t))
        # BOS, the template's own markers and suffix only
        assert [i for i in ids if i in CONTROL or i >= TOK.vocab_size] == [BOS, T146, T145, EOS, T130], content
    assert neutralize_content_pieces("plain text", TOK.atomic_pieces) == ["plain text"]


def test_inline_default_unchanged_for_plain_content():
    msgs = [{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "yo"}]
    assert flat(build_segments(msgs, TOK)) == [BOS] + TOK.encode(
        "[UNUSED_TOKEN_146]user\nhi[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\nyo[UNUSED_TOKEN_145]\n") + [EOS, T130]


def test_published_decode(tmp_path):
    """Image.open().convert('RGB') only: EXIF ignored, alpha dropped, 16-bit grey clipped, 16-bit RGB high byte."""
    a = np.array([[0, 255, 256, 1000, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert np.asarray(media.load_image(str(tmp_path / "g16.png"), "published"))[0, :, 0].tolist() == [0, 255, 255, 255, 255]
    assert np.asarray(media.load_image(str(tmp_path / "g16.png")))[0, :, 0].tolist() == [0, 1, 1, 4, 255]  # ours: /257
    Image.fromarray(np.array([[[200, 100, 50, 0]]], np.uint8), "RGBA").save(tmp_path / "a.png")
    assert np.asarray(media.load_image(str(tmp_path / "a.png"), "published")).tolist() == [[[200, 100, 50]]]
    assert np.asarray(media.load_image(str(tmp_path / "a.png"))).tolist() == [[[255, 255, 255]]]
    exif = os.path.join(FIXTURES, "images", "real", "sharp-Landscape_6-exif-orientation6.jpg")
    assert media.load_image(exif, "published").size == (450, 600) and media.load_image(exif).size == (600, 450)


@pytest.mark.parametrize("rows,cols,want", [(1, 1, 841), (2, 2, 2061), (2, 3, 2861), (3, 2, 2881)])
def test_image_token_count_at_ixc_scale(rows, cols, want):
    """(r*c+1)*400 + 1 + (r+1)*20 from the model's own vision layout at S = 560, patch 14 (G = 20)."""
    m = IXCRewardModel(ModelArgs(hidden_size=8, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=8,
                                 vocab_size=16, vision=VisionArgs(width=8, layers=1, heads=1, patch=14,
                                                                  tile_size=560)))
    assert m.tokens_per_image(rows, cols) == want == (rows * cols + 1) * 400 + 1 + (rows + 1) * 20
    with torch.no_grad():
        out = m.vision_forward(torch.zeros(1, 3, rows * 560, cols * 560))
    assert out.shape[0] == want


@pytest.mark.parametrize("w,h,hd,grid", [(800, 600, 9, (2, 2)), (1920, 1080, 9, (2, 3)), (1920, 1080, 6, (2, 3)),
                                         (1920, 1080, 24, (3, 4)), (560, 560, 9, (1, 1))])
def test_hd_grid_at_ixc_scale(w, h, hd, grid):
    px = media.image_transform(Image.new("RGB", (w, h)), ImagePreprocess(tile_size=560), hd)
    assert media.tile_grid(px, 560) == grid
