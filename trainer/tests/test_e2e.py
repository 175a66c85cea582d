"""Tiny generate -> tokenizer -> train -> export -> ONNX parity run (the `reproduce --budget tiny` path)."""
import hashlib
import json
import os

import numpy as np
import pytest

from conftest import REPO
from reward_trainer import export as export_mod
from reward_trainer.manifest import validate_manifest


def test_manifest_schema_and_checksums(tiny_run):
    _, out = tiny_run
    man = validate_manifest(str(out))  # raises on any schema / checksum problem
    assert set(os.listdir(out)) == {"model.json", "vision.onnx", "reward.onnx", "reward_packed.onnx", "tokenizer.json", "golden.json"}
    for name, f in man["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == f["sha256"]
    assert man["config"]["hidden_size"] == 64 and man["graphs"]["vision"]["outputs"][0]["shape"] == ["T_img", 64]
    assert man["template"]["suffix_ids"] == [man["tokenizer"]["eos_id"], man["tokenizer"]["special_ids"]["reward"]]
    assert man["producer"]["command"].startswith("python3 -m reward_trainer reproduce")
    assert man["evaluation"]["heldout"]["pairs"] == 16
    assert man["training"]["train_pairs"] > 0
    assert [st["stage"] for st in man["training"]["stages"]][-1] == "bradley_terry"  # stages reach model.json


def test_golden_cases_cover_text_image_video_with_parity(tiny_run):
    _, out = tiny_run
    g = json.loads((out / "golden.json").read_text())
    kinds = {c["kind"] for c in g["cases"]}
    assert kinds == {"text", "image", "video"}
    assert g["parity"]["max_abs_score_diff"] <= 1e-4 and g["atol_score"] == 1e-4
    for c in g["cases"]:
        assert np.isfinite(c["score"]) and c["input_ids"][0] == 1
        if c["kind"] != "text":
            assert len(c["image_tensors"]) == len(c["media_tokens"]) >= 1
            assert sum(1 for i in c["input_ids"] if i == 2) >= sum(c["media_tokens"])


def test_export_fails_loudly_on_parity_mismatch(tiny_run, monkeypatch):
    run, _ = tiny_run
    real = export_mod.OnnxRunner.run

    def skewed(self, requests):
        res = real(self, requests)
        for r in res:
            if "score" in r:
                r["score"] = r["score"] + 1e-3
        return res

    monkeypatch.setattr(export_mod.OnnxRunner, "run", skewed)
    target = run / "model-bad" / "1"
    with pytest.raises(export_mod.ParityError):
        export_mod.export(str(run / "train" / "ckpt.pt"), str(target), str(run / "tokenizer" / "tokenizer.model"),
                          str(run / "data" / "heldout.jsonl"))
    assert not target.exists()  # nothing half-written is left in place
    assert not [p for p in os.listdir(run / "model-bad") if p.startswith(".export-")]


def test_resume_from_checkpoint_continues(tiny_run, tmp_path, monkeypatch):
    """A run killed after its step-2 checkpoint and resumed ends bit-for-bit (within float noise) where the same
    run left alone ends: resume restores the weights, the AdamW moments and the step, and runs only the rest."""
    import dataclasses

    import torch

    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import ModelArgs, TrainConfig

    run, _ = tiny_run
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    assert state["final"] and state["step"] >= 1 and "model_args" in state and "train_config" in state
    margs = ModelArgs.from_dict(state["model_args"])
    # a focus phase for the first two steps (TrainConfig.focus): the resumed run must know the mix starts at its own 0
    cat = json.loads(open(run / "data" / "train.jsonl").readline())["category"]
    base = dataclasses.replace(TrainConfig(**state["train_config"]), max_steps=4, ckpt_every=2, time_budget_s=0.0,
                               epochs=1.0, eval_data=None, focus=[f"{cat}=0.4"],
                               ranks=1)  # one process: the spy below counts this process's forward passes

    def train(out, resume):
        icfg, vcfg = preprocess_configs(state)
        return train_mod.train(dataclasses.replace(base, out=str(out), resume=resume), margs, icfg, vcfg)

    # one forward per optimizer step: pair_scores (BT only) or packed_forward (BT + the auxiliary LM loss)
    step_fn = "packed_forward" if base.lm_weight else "pair_scores"
    real_scores = getattr(train_mod, step_fn)
    calls = []

    def counting(*a, **k):
        calls.append(1)
        return real_scores(*a, **k)

    monkeypatch.setattr(train_mod, step_fn, counting)
    assert train(tmp_path / "straight", resume=False)["steps"] == 4
    assert len(calls) == 4
    straight = torch.load(tmp_path / "straight" / "ckpt.pt", map_location="cpu")

    class Killed(Exception):
        pass

    def dies_after_two(*a, **k):
        if len(calls) == 2:
            raise Killed()
        return counting(*a, **k)

    calls.clear()
    monkeypatch.setattr(train_mod, step_fn, dies_after_two)
    with pytest.raises(Killed):
        train(tmp_path / "cut", resume=True)
    mid = torch.load(tmp_path / "cut" / "ckpt.pt", map_location="cpu")
    assert mid["step"] == 2 and not mid["final"] and mid["optimizer"]["state"], "the step-2 checkpoint holds AdamW moments"

    calls.clear()
    monkeypatch.setattr(train_mod, step_fn, counting)
    res = train(tmp_path / "cut", resume=True)
    assert res["steps"] == 4 and len(calls) == 2, "resumed at step 2: ran steps 3 and 4 only"
    resumed = torch.load(tmp_path / "cut" / "ckpt.pt", map_location="cpu")
    assert resumed["final"] and resumed["step"] == 4
    # same weights and optimizer moments as the run that was never interrupted (CPU float32: tolerance 1e-5)
    for name, w in straight["model"].items():
        assert torch.allclose(resumed["model"][name], w, rtol=1e-4, atol=1e-5), name
    for i, st in straight["optimizer"]["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                assert torch.allclose(resumed["optimizer"]["state"][i][k], v, rtol=1e-4, atol=1e-6), (i, k)
    # and the resumed weights moved away from the step-2 checkpoint (training did continue)
    assert any(not torch.equal(resumed["model"][n], mid["model"][n]) for n in mid["model"])


def test_exported_manifest_satisfies_the_service_json_schema(tiny_run):
    """Checked directly with jsonschema, independent of the trainer's validator."""
    from jsonschema import Draft202012Validator

    _, out = tiny_run
    with open(os.path.join(REPO, "models", "manifest.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    man = json.loads((out / "model.json").read_text())
    assert [e.message for e in Draft202012Validator(schema).iter_errors(man)] == []


def test_golden_ids_reproduced_with_js_tokenizer(tiny_run):
    """The service's path: template pieces tokenized by tokenizer.json in @huggingface/tokenizers."""
    from test_tokenizer import node_encode

    from reward_trainer.template import build_segments, layout, strip_media_data

    _, out = tiny_run
    man = json.loads((out / "model.json").read_text())
    g = json.loads((out / "golden.json").read_text())
    t = man["tokenizer"]

    added = json.loads((out / "tokenizer.json").read_text())["added_tokens"]

    class Recorder:
        bos_id, eos_id, pad_id, reward_id = t["bos_id"], t["eos_id"], t["pad_id"], t["special_ids"]["reward"]
        # what the service keeps out of content (literal mode): tokenizer.json's added tokens
        atomic_pieces = [a["content"] for a in added if not a.get("special")]

        def __init__(self, table=None):
            self.seen, self.table = [], table

        def encode(self, text):
            self.seen.append(text)
            return self.table[text] if self.table is not None else []

    from reward_trainer.config import TemplateConfig

    tm = man["template"]
    tcfg = TemplateConfig(**{k: tm[k] for k in ("media_placement", "strip_content", "eos_newline",
                                                "content_special_tokens") if k in tm})
    rec = Recorder()
    for c in g["cases"]:
        build_segments(strip_media_data(c["messages"]), rec, tcfg)
    texts = sorted(set(rec.seen))
    table = dict(zip(texts, node_encode(str(out / "tokenizer.json"), texts)))
    js = Recorder(table)
    for c in g["cases"]:
        ids, _, truncated = layout(build_segments(strip_media_data(c["messages"]), js, tcfg), c["media_tokens"],
                                   man["max_seq_len"], t["pad_id"])
        assert ids == c["input_ids"], c["id"]
        assert truncated == c["truncated"]


def test_two_ranks_of_one_pair_step_as_one_process_of_two(tiny_run, tmp_path):
    """`ranks`: each rank takes its own batch and the gradients are averaged, so one step of 2 ranks x 1 pair moves
    the weights as one step of 1 process x 2 pairs (Bradley-Terry only: the LM loss is a token mean per batch).
    AdamW's first step is lr * g / (|g| + eps), i.e. about lr * sign(g): a weight whose gradient is float noise may
    flip, so the check is that all but 1 in 1 000 weights land within lr / 10 of the one-process run."""
    import dataclasses

    import torch

    from reward_trainer import train as train_mod
    from reward_trainer.checkpoint import preprocess_configs
    from reward_trainer.config import ModelArgs, TrainConfig

    run, _ = tiny_run
    lines = open(run / "data" / "train.jsonl").read().splitlines()
    recs = [json.loads(ln) for ln in lines]
    with_image = [ln for ln, r in zip(lines, recs) if r.get("images")]
    text_only = [ln for ln, r in zip(lines, recs) if not r.get("images") and not r.get("videos")]
    assert with_image and text_only
    data = run / "data" / "two.jsonl"  # beside train.jsonl: the media paths are relative to it
    data.write_text(with_image[0] + "\n" + text_only[0] + "\n")  # rank 1's batch never reaches the vision tower
    state = torch.load(run / "train" / "ckpt.pt", map_location="cpu")
    margs = ModelArgs.from_dict(state["model_args"])
    icfg, vcfg = preprocess_configs(state)
    base = dataclasses.replace(TrainConfig(**state["train_config"]), data=str(data), max_steps=1, time_budget_s=0.0,
                               eval_data=None, lm_weight=0.0, init=str(run / "train" / "ckpt.pt"), resume=False,
                               warmup_ratio=0.0, lr=1e-3, grad_clip=1e9, seed=7, lookup_layer=-1, oversample=[],
                               focus=[])

    def weights(out, **kw):
        res = train_mod.train(dataclasses.replace(base, out=str(tmp_path / out), **kw), margs, icfg, vcfg)
        return res, torch.load(tmp_path / out / "ckpt.pt", map_location="cpu")["model"]

    one_res, one = weights("one", batch_pairs=2)
    two_res, two = weights("two", batch_pairs=1, ranks=2)
    assert (one_res["steps"], two_res["steps"], two_res["ranks"]) == (1, 1, 2)
    start = state["model"]
    moved = sum(int((one[n] != start[n]).sum()) for n in start)
    assert moved > 0.5 * sum(w.numel() for w in start.values()), "the step moved most weights"
    off = sum(int(((two[n] - one[n]).abs() > 1e-4).sum()) for n in one)
    assert off <= 1e-3 * sum(w.numel() for w in one.values()), f"{off} weights differ by more than lr/10"
