"""finetune: trainable modes, 1 vs 2 processes (torchrun, gloo), gradient accumulation, resume from the sharded
checkpoint, activation checkpointing, bad records by file:line, export of an HF-initialised run."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from PIL import Image

import hf_synthetic
from conftest import FIXTURES, TRAINER
from reward_trainer import finetune as ft
from reward_trainer import shards
from reward_trainer.cli import main
from reward_trainer.config import ModelArgs, VisionArgs
from reward_trainer.data import MediaCache, PairExample
from reward_trainer.dataset import BadRecordError, load_pairs
from reward_trainer.manifest import validate_manifest
from reward_trainer.model import IXCRewardModel
from reward_trainer.tokenizer import TextTokenizer

LOSS_TOL = 2e-5  # |loss(N=1) - loss(N=2)| per step: the same pairs, only the gradient summation order differs


def _records(media_dir):
    recs = []
    for i in range(12):
        recs.append({"id": f"t{i}", "category": "math", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                     "chosen": f"It is {2 * i}.", "rejected": f"It is {2 * i + 1}."})
    for i, c in enumerate(["red", "blue", "green", "red"]):
        Image.new("RGB", (40 + 10 * i, 30), c).save(os.path.join(media_dir, f"im{i}.png"))
        recs.append({"id": f"i{i}", "category": "color", "messages": [{"role": "user", "content": "Colour?"}],
                     "chosen": c, "rejected": "purple", "images": [f"media/im{i}.png"]})
    return recs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    hf_synthetic.write(str(d / "hf"), hf_synthetic.config(layers=1), shards=2)
    (d / "data" / "media").mkdir(parents=True)
    with open(d / "data" / "train.jsonl", "w") as f:
        for r in _records(str(d / "data" / "media")):
            f.write(json.dumps(r) + "\n")
    return d


def _args(setup, out, *extra):
    return ["finetune", "--init", str(setup / "hf"), "--data", str(setup / "data" / "train.jsonl"), "--out", str(out),
            "--batch-pairs", "8", "--lr", "1e-3", "--threads", "1", *extra]


def _curve(out, which="loss_curve"):
    return json.load(open(os.path.join(out, "train_result.json")))[which]


def _same(a, b, tol=LOSS_TOL):
    """Same length, changing, and equal within tol (relative for the gradient norms' larger values)."""
    return len(a) == len(b) and a[0] != a[-1] and all(abs(x - y) <= tol * max(1.0, abs(x)) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------------ modes
def test_trainable_modes_select_their_parameters():
    m = IXCRewardModel(ModelArgs(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                 intermediate_size=48, plora_rank=4, plora_alpha=4,
                                 vision=VisionArgs(width=16, layers=1, heads=2, tile_size=28)))
    every = [n for n, _ in m.named_parameters()]
    assert ft.select_trainable(m, "head") == ["v_head.weight"]
    plora = ft.select_trainable(m, "plora")
    assert len(plora) == 2 * 5 * 2 + 1 and all(".Plora_" in n for n in plora if n != "v_head.weight")
    dec = ft.select_trainable(m, "decoder")
    assert set(plora) < set(dec) and "model.norm.weight" in dec and "model.layers.1.attention.wqkv.weight" in dec
    assert not any(n.startswith(("vit.", "vision_proj", "model.tok_embeddings")) or "GN" in n for n in dec)
    assert ft.select_trainable(m, "all") == every
    assert [n for n, p in m.named_parameters() if p.requires_grad] == every


# ------------------------------------------------------------------------------------------------ processes
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n, argv, out):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(n),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           *ft.dd.torchrun_compat_args(), "-m", "reward_trainer", *argv]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=TRAINER)
    r = subprocess.run(cmd, cwd=TRAINER, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def test_one_and_two_processes_give_the_same_loss_curve(setup, tmp_path):
    """--trainable all (the vision tower is unused on text-only micro-batches: DDP's find_unused_parameters
    path) with gradient accumulation: 1 process = 4 micro-batches of 2, 2 processes = 2 x 2 each."""
    one, two = tmp_path / "one", tmp_path / "two"
    main(_args(setup, one, "--trainable", "all", "--micro-pairs", "2", "--max-steps", "4"))
    log = _torchrun(2, _args(setup, two, "--trainable", "all", "--micro-pairs", "2", "--max-steps", "4"), two)
    a, b = _curve(one), _curve(two)
    assert len(a) == 4 and _same(a, b), (a, b)
    # the gradient's scale too (Adam would hide a constant factor in the loss curve)
    ga, gb = _curve(one, "grad_norm_curve"), _curve(two, "grad_norm_curve")
    assert _same(ga, gb), (ga, gb)
    res = json.load(open(two / "train_result.json"))
    assert res["processes"] == 2 and res["train_pairs"] == 16
    # rank 0 alone logs and writes: one progress line and one log record per step, one checkpoint
    assert log.count("step 1/4 ") == 1
    assert len(open(two / "log.jsonl").read().splitlines()) == 4
    assert sorted(os.listdir(two / "ckpt")) == ["latest", "step-00000004"]


def test_gradient_accumulation_matches_one_big_batch(setup, tmp_path):
    main(_args(setup, tmp_path / "a", "--trainable", "plora", "--micro-pairs", "8", "--max-steps", "3"))
    main(_args(setup, tmp_path / "b", "--trainable", "plora", "--micro-pairs", "2", "--max-steps", "3"))
    for which in ("loss_curve", "grad_norm_curve"):
        a, b = _curve(tmp_path / "a", which), _curve(tmp_path / "b", which)
        assert _same(a, b), (which, a, b)


# ------------------------------------------------------------------------------------------------ resume
def test_resume_from_the_sharded_checkpoint_continues_the_curve(setup, tmp_path, monkeypatch):
    base = _args(setup, tmp_path / "straight", "--trainable", "decoder", "--micro-pairs", "4", "--max-steps", "4")
    main(base)
    straight = _curve(tmp_path / "straight")

    real = shards.save

    def save_then_die(ckpt_dir, step, *a, **k):
        path = real(ckpt_dir, step, *a, **k)
        if step == 2:
            raise KeyboardInterrupt("killed after the step-2 checkpoint")
        return path

    run = _args(setup, tmp_path / "resumed", "--trainable", "decoder", "--micro-pairs", "4", "--max-steps", "4",
                "--ckpt-every", "2", "--ckpt-shard-mb", "0.2")
    monkeypatch.setattr(shards, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(run)
    monkeypatch.setattr(shards, "save", real)
    ck = tmp_path / "resumed" / "ckpt" / "step-00000002"
    index = json.load(open(ck / "index.json"))
    assert len({*index["params"].values()}) > 1  # 0.2 MiB shards: the decoder's params span several files
    main(run)
    resumed = _curve(tmp_path / "resumed")
    assert len(resumed) == 2  # steps 3 and 4 only
    assert max(abs(x - y) for x, y in zip(straight[2:], resumed)) <= 1e-6, (straight, resumed)


def test_sharded_checkpoint_format_roundtrip(tmp_path):
    p = {"a": torch.randn(300, 300), "b": torch.randn(10), "c": torch.randn(200, 400)}
    opt = torch.optim.AdamW([torch.nn.Parameter(t.clone()) for t in p.values()])
    for q in opt.param_groups[0]["params"]:
        q.grad = torch.randn_like(q)
    opt.step()
    ids = {id(q): n for q, n in zip(opt.param_groups[0]["params"], p)}
    named = shards.named_optim_state(opt, ids)
    for step in (1, 2, 3):
        shards.save(str(tmp_path), step, p, named, {"x": step}, shard_bytes=900_000, keep=2)  # a | b | c, each with its Adam states
    assert sorted(os.listdir(tmp_path)) == ["latest", "step-00000002", "step-00000003"]
    last = shards.latest(str(tmp_path))
    got, gopt, index = shards.load(last)
    assert index["meta"] == {"x": 3} and len(set(index["params"].values())) == 3
    assert all(torch.equal(got[k], p[k]) for k in p)
    opt2 = torch.optim.AdamW([torch.nn.Parameter(t.clone()) for t in p.values()])
    ids2 = {id(q): n for q, n in zip(opt2.param_groups[0]["params"], p)}
    shards.load_named_optim_state(opt2, gopt, ids2)
    for q1, q2 in zip(opt.param_groups[0]["params"], opt2.param_groups[0]["params"]):
        assert torch.equal(opt.state[q1]["exp_avg_sq"], opt2.state[q2]["exp_avg_sq"])


# ------------------------------------------------------------------------------------------------ memory
def _tiny_pairs(model, n=2):
    ids = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    return [PairExample(f"p{i}", "c", ids + [20 + i, 2, 30], ids + [40 + i, 41, 2, 30], [], []) for i in range(n)]


def test_activation_checkpointing_same_gradients_fewer_saved_tensors():
    torch.manual_seed(0)
    m = IXCRewardModel(ModelArgs(vocab_size=64, hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=2,
                                 intermediate_size=128, plora_rank=4, plora_alpha=4,
                                 vision=VisionArgs(width=16, layers=1, heads=2, tile_size=28))).train()
    ft.select_trainable(m, "decoder")
    pairs = _tiny_pairs(m)

    def run():
        saved = [0]

        def pack(t):
            saved[0] += t.numel() * t.element_size()
            return t

        m.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            rc, rr = ft.pair_scores(m, pairs, 2, "cpu")
            loss = ft.bt_loss(rc, rr)
        loss.backward()
        return saved[0], {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    plain_bytes, plain = run()
    assert ft.checkpoint_activations(m) == 3 + 1
    ck_bytes, ck = run()
    assert plain.keys() == ck.keys() and len(plain) > 10
    assert max(float((plain[k] - ck[k]).abs().max()) for k in plain) <= 1e-6
    # outside the recompute only each layer's inputs stay saved (counted again inside the recompute's own
    # forward, which runs during backward and frees as it goes)
    assert ck_bytes < 0.5 * plain_bytes, (ck_bytes, plain_bytes)


# ------------------------------------------------------------------------------------------------ data
def test_bad_records_reported_with_file_and_line_then_skipped_or_fatal(setup, tmp_path):
    (tmp_path / "media").mkdir()
    Image.new("RGB", (30, 30), "red").save(tmp_path / "media" / "ok.png")
    trunc = os.path.relpath(os.path.join(FIXTURES, "images", "hostile", "sharp-truncated.png"), tmp_path)
    good = {"category": "c", "messages": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}
    lines = [json.dumps(good),                                                            # 1
             json.dumps({**good, "images": ["media/ok.png"]}),                           # 2 (relative to the file)
             json.dumps({k: v for k, v in good.items() if k != "rejected"}),              # 3 missing field
             "",                                                                          # 4 blank: ignored
             "{not json",                                                                 # 5
             json.dumps({**good, "images": ["media/missing.png"]}),                      # 6 missing file
             json.dumps({**good, "images": [trunc]}),                                     # 7 truncated PNG
             json.dumps({**good, "messages": [{"role": "bot", "content": "x"}]})]         # 8 bad role
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    tok = TextTokenizer(str(setup / "hf" / "tokenizer.model"))
    m = IXCRewardModel(ModelArgs(vision=VisionArgs(width=16, layers=1, heads=2, tile_size=28)))
    from reward_trainer.config import ImagePreprocess, VideoPreprocess, template_config

    icfg = ImagePreprocess(tile_size=28)
    cache = MediaCache(icfg, VideoPreprocess())
    warned = []
    ex, rep = load_pairs(str(path), "jsonl", tok, cache, 4096, m.tokens_per_image, template_config("ixc", icfg),
                         warn=warned.append)
    assert len(ex) == 2 and rep["records"] == 7
    where = {b["where"].rsplit(":", 1)[1]: b["error"] for b in rep["bad"]}
    assert sorted(where, key=int) == ["3", "5", "6", "7", "8"]
    assert "rejected" in where["3"] and "JSON" in where["5"] and "missing.png" in where["6"]
    assert "truncated" in where["7"].lower() and "bot" in where["8"]
    assert all(w.startswith(f"skipping {path}:") for w in warned) and len(warned) == 5
    with pytest.raises(BadRecordError, match=rf"{path}:3: missing field 'rejected'"):
        load_pairs(str(path), "jsonl", tok, cache, 4096, m.tokens_per_image, template_config("ixc", icfg),
                   bad_lines="fatal")


def test_importer_format_reports_source_rows(setup, tmp_path):
    tok = TextTokenizer(str(setup / "hf" / "tokenizer.model"))
    m = IXCRewardModel(ModelArgs(vision=VisionArgs(width=16, layers=1, heads=2, tile_size=28)))
    from reward_trainer.config import ImagePreprocess, VideoPreprocess

    src = os.path.join(FIXTURES, "preference", "llamafactory-dpo_en_demo.json")
    ex, rep = load_pairs(src, "llamafactory", tok, MediaCache(ImagePreprocess(tile_size=28), VideoPreprocess()),
                         256, m.tokens_per_image)
    assert rep["records"] > 10 and len(ex) + rep["dropped_too_long"] == rep["records"]


# ------------------------------------------------------------------------------------------------ export
def test_finetune_from_hf_exports_a_new_model_version(setup, tmp_path):
    out = tmp_path / "models" / "ft" / "2"
    main(_args(setup, tmp_path / "run", "--trainable", "plora", "--micro-pairs", "4", "--max-steps", "2",
               "--eval", str(setup / "data" / "train.jsonl"), "--export-out", str(out)))
    man = validate_manifest(str(out))
    assert man["name"] == "ft" and man["version"] == 2
    assert man["template"]["media_placement"] == "ixc" and man["preprocess"]["image"]["decode"] == "published"
    assert man["graphs"]["reward"]["attention"] == "com.microsoft.GroupQueryAttention"  # import-hf's default
    assert man["training"]["steps"] == 2 and man["training"]["train_pairs"] == 16
    assert set(man["evaluation"]["heldout"]["per_category"]) == {"color", "math"}
    assert man["evaluation"]["parity"]["max_abs_score_diff"] <= 1e-4
    # the export holds the fine-tuned weights: its PyTorch side (ckpt.pt) differs from the import in PLoRA only
    ck = torch.load(tmp_path / "run" / "ckpt.pt")["model"]
    init, _, _, _ = ft.load_init(str(setup / "hf"))
    changed = {n for n, t in init.state_dict().items() if not torch.equal(t, ck[n])}
    assert changed and all(".Plora_" in n or n == "v_head.weight" for n in changed)
