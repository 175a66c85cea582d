import os

import pytest

from conftest import FIXTURES
from reward_trainer.data import length_filter, record_conversations
from reward_trainer.importers import import_hh_rlhf, import_llamafactory
from reward_trainer.template import build_segments, layout
from reward_trainer.losses import bt_loss


class FakeTok:
    """Character-level stand-in: one id per character (ids >= 10), markers atomic, so the template is visible."""
    bos_id, eos_id, pad_id, reward_id = 1, 2, 2, 5
    MARK = {"[UNUSED_TOKEN_146]": 7, "[UNUSED_TOKEN_145]": 6}

    def encode(self, text):
        out, i = [], 0
        while i < len(text):
            for k, v in self.MARK.items():
                if text.startswith(k, i):
                    out.append(v)
                    i += len(k)
                    break
            else:
                out.append(10 + ord(text[i]))
                i += 1
        return out


def ids_text(ids):
    rev = {1: "<s>", 2: "</s>", 5: "<R>", 6: "<E>", 7: "<B>"}
    return "".join(rev[i] if i in rev else chr(i - 10) if i >= 10 else "?" for i in ids)


def flat(segs):
    return [i for k, s in segs if k == "text" for i in s]


def test_template_text_only_strips_content():
    msgs = [{"role": "user", "content": "  hi there \n"}, {"role": "assistant", "content": "\tok  "}]
    assert ids_text(flat(build_segments(msgs, FakeTok()))) == "<s><B>user\nhi there<E>\n<B>assistant\nok<E>\n</s><R>"


def test_template_media_inline_and_layout():
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  Q?"}]},
            {"role": "assistant", "content": "A"}]
    segs = build_segments(msgs, FakeTok())
    ids, spans, truncated = layout(segs, [4], 100, 2)
    assert ids_text(ids[:7]) == "<s><B>user\n"
    assert spans == [(7, 0)] and ids[7:11] == [2, 2, 2, 2]
    assert ids_text(ids[11:]) == "Q?<E>\n<B>assistant\nA<E>\n</s><R>"
    assert not truncated


def test_truncation_left_keeps_end_and_never_cuts_media():
    msgs = [{"role": "user", "content": "x" * 50}, {"role": "assistant", "content": "answer"}]
    ids, spans, truncated = layout(build_segments(msgs, FakeTok()), [], 30, 2)
    assert truncated and len(ids) == 30 and ids[0] == 1 and ids[-2:] == [2, 5]
    assert ids_text(ids).endswith("<B>assistant\nanswer<E>\n</s><R>")
    media_msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]},
                  {"role": "assistant", "content": "a"}]
    assert layout(build_segments(media_msgs, FakeTok()), [40], 30, 2) is None
    # media conversations are never truncated, even when dropping text would make them fit
    assert layout(build_segments(media_msgs, FakeTok()), [5], 40, 2) is not None
    long_media = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q" * 40}]},
                  {"role": "assistant", "content": "a"}]
    assert layout(build_segments(long_media, FakeTok()), [5], 30, 2) is None


def test_length_filter_drops_much_longer_chosen():
    recs = [{"chosen": "a" * 10, "rejected": "b" * 10}, {"chosen": "a" * 30, "rejected": "b" * 10},
            {"chosen": "a" * 25, "rejected": "b" * 10}, {"chosen": "a", "rejected": "b" * 100}]
    kept, dropped = length_filter(recs, 2.5)
    assert dropped == 1 and recs[1] not in kept and len(kept) == 3
    assert length_filter(recs, 0) == (recs, 0)


def test_record_media_at_start_of_first_user_message(tmp_path):
    rec = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], "chosen": "a",
           "rejected": "b", "images": ["x.png"], "videos": ["v.mp4"]}
    c, r, media = record_conversations(rec, str(tmp_path))
    assert media == [("image", os.path.join(str(tmp_path), "x.png")), ("video", os.path.join(str(tmp_path), "v.mp4"))]
    assert c[1]["content"][:2] == [{"type": "image"}, {"type": "video"}] and c[-1] == {"role": "assistant", "content": "a"}
    assert r[-1]["content"] == "b"


def test_bt_loss_formula_and_gradient():
    import torch

    c = torch.tensor([2.0, 0.0, -1.0], requires_grad=True)
    r = torch.tensor([1.0, 0.0, 1.0])
    loss = bt_loss(c, r)
    want = sum(-torch.log(torch.sigmoid(torch.tensor(d))) for d in [1.0, 0.0, -2.0]) / 3
    assert abs(float(loss) - float(want)) < 1e-6
    loss.backward()
    assert (c.grad < 0).all()  # increasing the chosen score lowers the loss
    assert abs(float(bt_loss(torch.tensor([0.0]), torch.tensor([0.0]))) - 0.693147) < 1e-5


def test_import_hh_rlhf_real_fixture():
    recs = import_hh_rlhf(os.path.join(FIXTURES, "preference", "hh-rlhf-harmless-base-test.jsonl.gz"))
    assert len(recs) > 2000  # 2,312 lines; a few have identical or malformed transcripts
    for r in recs[:200]:
        assert r["messages"][0]["role"] == "user" and r["messages"][-1]["role"] == "user"
        assert r["chosen"][-1]["role"] == "assistant" and r["rejected"][-1]["role"] == "assistant"
        assert all("\n\nHuman:" not in m["content"] and "\n\nAssistant:" not in m["content"] for m in r["messages"])


def test_import_llamafactory_real_fixtures():
    recs = import_llamafactory(os.path.join(FIXTURES, "preference", "llamafactory-dpo_en_demo.json"))
    assert len(recs) == 300
    assert recs[0]["messages"][-1]["role"] == "user" and recs[0]["chosen"][0]["role"] == "assistant"
    assert recs[0]["chosen"] != recs[0]["rejected"]
    v1 = import_llamafactory(os.path.join(FIXTURES, "preference", "llamafactory-v1_dpo_demo.jsonl"))
    assert len(v1) == 10
    assert all(isinstance(m["content"], str) and m["content"] for r in v1 for m in r["messages"] + r["chosen"])


def test_importer_rejects_unknown_rows(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('[{"foo": 1}]')
    with pytest.raises(ValueError):
        import_llamafactory(str(p))
