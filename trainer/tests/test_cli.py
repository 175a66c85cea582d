"""The command line wires each option to the stage that uses it (stages replaced by recorders: no training)."""
import os

import reward_trainer.export as export_mod
import reward_trainer.generate as generate_mod
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
        return {}

    monkeypatch.setattr(generate_mod, "generate", generate)
    monkeypatch.setattr(tokenizer_mod, "train_tokenizer", lambda *a, **k: None)
    monkeypatch.setattr(train_mod, "train", train)
    monkeypatch.setattr(cli, "evaluate_stage", lambda *a: {})
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: {})
    cli.main(["reproduce", "--run-dir", str(tmp_path), "--out", str(tmp_path / "model"), *extra])
    return seen


def test_reproduce_seed_reaches_training_and_gen_seed_the_generator(tmp_path, monkeypatch):
    assert run_reproduce(tmp_path, monkeypatch, "--seed", "7", "--gen-seed", "99") == {"generate": 99, "train": 7}


def test_reproduce_default_seeds_are_the_committed_models(tmp_path, monkeypatch):
    assert run_reproduce(tmp_path, monkeypatch) == {"generate": 1234, "train": 1234}
