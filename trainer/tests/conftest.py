import os
import sys

TRAINER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TRAINER)
FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures")
sys.path.insert(0, TRAINER)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`reproduce --budget tiny` once for the session: (run folder, exported model folder). Tests may add files
    beside its data; they must not change what is there."""
    from reward_trainer.cli import main

    run = tmp_path_factory.mktemp("run")
    out = run / "model" / "1"
    main(["reproduce", "--budget", "tiny", "--run-dir", str(run), "--out", str(out), "--train-pairs", "32",
          "--heldout-pairs", "16", "--model-num-layers", "1", "--model-hidden-size", "64", "--model-num-heads", "4",
          "--model-num-kv-heads", "2", "--model-intermediate-size", "96", "--vision-layers", "1",
          "--vision-width", "48", "--vision-heads", "2", "--batch-pairs", "8", "--model-vocab-size", "600",
          # the recipe's image look-up hint, on the one layer this model has (its layer 2 would be refused)
          "--lookup-layer", "0"])
    return run, out
