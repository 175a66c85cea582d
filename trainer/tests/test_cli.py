"""The command line wires each option to the stage that uses it (stages replaced by recorders: no training)."""
import json
import os

import reward_trainer.export as export_mod
import reward_trainer.generate as generate_mod
import reward_trainer.pretrain as pretrain_mod
import reward_trainer.tokenizer_convert as tokenizer_mod
import reward_trainer.train as train_mod
from reward_trainer import cli


def run_reproduce(tmp_path, monkeypatch, *extra):
    seen = {}

    def generate(gcfg):
        seen["generate"] = gcfg.seed
        os.makedirs(gcfg.out, exist_ok=True)
        for name in ("train.jsonl", "heldout.jsonl"):
            open(os.path.join(gcfg.out, name), "w").close()
        return {}

    def train(tcfg, *_):
        seen["train"] = tcfg.seed
        seen["init"] = tcfg.init
        seen["pipeline"] = tcfg.pipeline
        seen["cst"] = tcfg.content_special_tokens
        seen["lr"], seen["threads"], seen["ranks"] = tcfg.lr, tcfg.threads, tcfg.ranks
        seen["freeze"] = tcfg.freeze_vision
        seen["bt_hint"] = (tcfg.lookup_layer, tcfg.oversample, tcfg.focus)
        return {}

    def pretrain(pcfg, margs, icfg, vcfg, tokenizer, out, pipeline, max_seq_len, seed, device, threads):
        seen["pretrain"] = (pcfg.text_seconds, pcfg.vision_seconds, seed, pipeline, out)
        seen["pretrain_threads"] = threads
        seen["back"] = pcfg.text_back_offsets
        seen["hints"] = (pcfg.text_prev_heads, pcfg.text_lookup_layer, pcfg.text_attention_weight)
        seen["drill"] = pcfg.drill_steps
        seen["pretrain_ranks"] = pcfg.ranks
        return {}

    monkeypatch.setattr(generate_mod, "generate", generate)
    monkeypatch.setattr(tokenizer_mod, "train_tokenizer", lambda *a, **k: None)
    monkeypatch.setattr(train_mod, "train", train)
    monkeypatch.setattr(pretrain_mod, "pretrain", pretrain)
    monkeypatch.setattr(cli, "evaluate_stage", lambda *a: {})
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: {})
    cli.main(["reproduce", "--run-dir", str(tmp_path), "--out", str(tmp_path / "model"), *extra])
    return seen


def test_reproduce_seed_reaches_training_and_gen_seed_the_generator(tmp_path, monkeypatch):
    seen = run_reproduce(tmp_path, monkeypatch, "--seed", "7", "--gen-seed", "99")
    assert (seen["generate"], seen["train"], seen["pretrain"][2]) == (99, 7, 7)


def test_reproduce_default_seeds_are_the_committed_models(tmp_path, monkeypatch):
    seen = run_reproduce(tmp_path, monkeypatch)
    assert (seen["generate"], seen["train"]) == (1234, 1234)


def test_reproduce_defaults_are_the_committed_models_recipe(tmp_path, monkeypatch):
    """`reproduce` with no flags runs the stage clocks, ranks and Bradley-Terry settings the committed default model's
    stages record (model.json -> training.stages, each stage's seconds within 2 s of its clock): the defaults and the
    model cannot drift apart unnoticed."""
    manifest = json.load(open(os.path.join(cli.REPO_ROOT, "models", "ixc-reward-tiny", "1", "model.json")))
    stages = {s["stage"]: s for s in manifest["training"]["stages"]}
    seen = run_reproduce(tmp_path, monkeypatch)
    text_s, vision_s = seen["pretrain"][:2]
    assert abs(stages["text"]["seconds"] - text_s) < 2 and abs(stages["vision"]["seconds"] - vision_s) < 2
    bt = stages["bradley_terry"]
    assert abs(bt["seconds"] - cli.BUDGETS["cpu"]["time_budget_s"]) < 2
    assert (seen["ranks"], seen["pretrain_ranks"]) == (bt["ranks"], stages["text"]["ranks"])
    assert seen["bt_hint"][:2] == (bt["lookup"]["layer"], bt["oversample"]["spec"])


def test_reproduce_chains_pretraining_into_training_on_the_published_pipeline(tmp_path, monkeypatch):
    """Issue 15 / 11: the default budget pretrains (text, then vision) and the Bradley-Terry stage starts from that
    checkpoint; everything runs on the published input pipeline unless told otherwise."""
    seen = run_reproduce(tmp_path, monkeypatch)
    text_s, vision_s, _, pipeline, out = seen["pretrain"]
    assert text_s > 0 and vision_s > 0 and pipeline == "ixc" == seen["pipeline"]
    assert seen["init"] == os.path.join(out, "ckpt.pt")
    assert seen["cst"] == "literal"  # the default model keeps content from ever becoming a control id
    seen = run_reproduce(tmp_path / "b", monkeypatch, "--pretrain-text-seconds", "0", "--pretrain-vision-seconds", "0",
                         "--pipeline", "default")
    assert "pretrain" not in seen and seen["init"] == "" and seen["pipeline"] == "default"


def test_reproduce_bradley_terry_lr_is_the_budgets_unless_given(tmp_path, monkeypatch):
    """Issue 15: after pretraining, the BT stage runs at the budget's lower lr (2e-3 erased what the text stage
    taught); --lr overrides it; tiny keeps the train command's default."""
    assert cli.BUDGETS["cpu"]["lr"] < cli.TrainConfig.lr
    assert run_reproduce(tmp_path / "a", monkeypatch)["lr"] == cli.BUDGETS["cpu"]["lr"]
    assert run_reproduce(tmp_path / "b", monkeypatch, "--lr", "3e-3")["lr"] == 3e-3
    assert run_reproduce(tmp_path / "c", monkeypatch, "--budget", "tiny")["lr"] == cli.TrainConfig.lr


def test_reproduce_freezes_the_tower_the_vision_stage_trained_unless_told(tmp_path, monkeypatch):
    """Session 15: a frozen tower's features are computed once (1.78x the Bradley-Terry steps); a budget that skips
    the vision stage keeps training the tower (freezing a random one would fix noise features)."""
    assert run_reproduce(tmp_path / "a", monkeypatch)["freeze"] is True
    assert run_reproduce(tmp_path / "b", monkeypatch, "--freeze-vision", "false")["freeze"] is False
    assert run_reproduce(tmp_path / "c", monkeypatch, "--budget", "tiny")["freeze"] is False
    assert run_reproduce(tmp_path / "d", monkeypatch, "--pretrain-vision-seconds", "0")["freeze"] is False
    assert run_reproduce(tmp_path / "e", monkeypatch, "--budget", "tiny", "--freeze-vision", "true")["freeze"] is True


def test_reproduce_runs_both_stages_on_one_thread_unless_told(tmp_path, monkeypatch):
    """1 thread trained 3x faster than 2 on the 2-core host (trainer/README.md); --threads reaches both stages."""
    seen = run_reproduce(tmp_path / "a", monkeypatch)
    assert (seen["threads"], seen["pretrain_threads"]) == (1, 1)
    seen = run_reproduce(tmp_path / "b", monkeypatch, "--threads", "2")
    assert (seen["threads"], seen["pretrain_threads"]) == (2, 2)


def test_template_config_content_special_tokens_override():
    from reward_trainer.config import INTERNLM2_OUT_OF_TABLE, template_config

    pub = template_config("ixc")
    assert (pub.content_special_tokens, pub.out_of_table_tokens) == ("published", INTERNLM2_OUT_OF_TABLE)
    lit = template_config("ixc", None, "literal")
    assert (lit.content_special_tokens, lit.out_of_table_tokens, lit.media_placement) == ("literal", [], "ixc")


def test_reproduce_runs_two_ranks_unless_told(tmp_path, monkeypatch):
    """Two processes for every stage unless told (the committed model's setting, cli.REPRODUCE_RECIPE); --ranks sets
    the Bradley-Terry stage's and --pretrain-ranks the pretraining stages', each alone."""
    seen = run_reproduce(tmp_path / "a", monkeypatch)
    assert (seen["ranks"], seen["pretrain_ranks"]) == (2, 2)
    seen = run_reproduce(tmp_path / "b", monkeypatch, "--ranks", "1")
    assert (seen["ranks"], seen["pretrain_ranks"]) == (1, 2)
    seen = run_reproduce(tmp_path / "c", monkeypatch, "--pretrain-ranks", "1")
    assert (seen["ranks"], seen["pretrain_ranks"]) == (2, 1)


def test_reproduce_back_readout_offsets_are_none_unless_given(tmp_path, monkeypatch):
    """--pretrain-text-back-offsets (an integer list whose default is empty) reaches the text stage; `--flag` alone
    is the empty list."""
    assert run_reproduce(tmp_path / "a", monkeypatch)["back"] == []
    assert run_reproduce(tmp_path / "b", monkeypatch, "--pretrain-text-back-offsets", "1", "2")["back"] == [1, 2]
    assert run_reproduce(tmp_path / "c", monkeypatch, "--pretrain-text-back-offsets")["back"] == []


def test_reproduce_runs_the_recipe_unless_told(tmp_path, monkeypatch):
    """The drill, the text stage's hints, the image look-up hint and position/count oversampling (cli.REPRODUCE_RECIPE,
    trainer/README.md sessions 17-18; session 19's position-only start was not kept) are reproduce's defaults; each flag
    given bare or at its off value turns it off."""
    seen = run_reproduce(tmp_path / "a", monkeypatch)
    assert seen["hints"] == ([1], 2, 1.0) and seen["drill"] == 1000
    assert seen["bt_hint"] == (2, ["image_position=3", "image_count=2"], [])
    seen = run_reproduce(tmp_path / "b", monkeypatch, "--pretrain-text-prev-heads", "--pretrain-text-lookup-layer", "-1",
                         "--pretrain-drill-steps", "0", "--lookup-layer", "-1", "--oversample", "--focus")
    assert seen["hints"] == ([], -1, 1.0) and seen["drill"] == 0 and seen["bt_hint"] == (-1, [], [])
    seen = run_reproduce(tmp_path / "c", monkeypatch, "--pretrain-text-prev-heads", "1", "3", "--pretrain-text-lookup-layer",
                         "3", "--pretrain-text-attention-weight", "0.5", "--oversample", "table=2", "video_motion=2",
                         "--focus", "table=0.1", "image_count=0.1")
    assert seen["hints"] == ([1, 3], 3, 0.5)
    assert seen["bt_hint"] == (2, ["table=2", "video_motion=2"], ["table=0.1", "image_count=0.1"])


def test_train_and_pretrain_keep_every_hint_off():
    """The recipe is reproduce's alone: `train` and `pretrain` start from the dataclasses' defaults."""
    ap = cli.build_parser()
    ns = ap.parse_args(["train", "--data", "d", "--out", "o", "--tokenizer", "t"])
    assert (ns.lookup_layer, ns.oversample, ns.focus) == (-1, [], [])
    ns = ap.parse_args(["pretrain", "--tokenizer", "t", "--out", "o"])
    assert (ns.drill_steps, ns.text_prev_heads, ns.text_lookup_layer) == (0, [], -1)


def test_every_command_prints_its_help(capsys):
    """--help of every command (a field's help with a measured "87.5 %" once broke `train --help` and
    `reproduce --help`: argparse %-formats help strings)."""
    import argparse

    import pytest

    from reward_trainer.cli import build_parser

    ap = build_parser()
    names = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"train", "reproduce", "pretrain", "export", "finetune"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as e:
            ap.parse_args([name, "--help"])
        assert e.value.code == 0
        assert "usage:" in capsys.readouterr().out
