"""Issue 15 experiment: the vision stage's shape labels. Starts from a pretrain checkpoint with the vision tower and
projector drawn afresh (the decoder and its tied embeddings kept, as after the text stage), runs the vision stage
itself (pretrain.vision_stage: its optimizer, schedule and progress line) for SECONDS with the given shape rule
(PretrainConfig.vision_shape_share / vision_shape_weight), and prints at its end, on 96 fixed fresh scenes: each label group's per-token accuracy
as the session-6 stage labelled them (every token over an object), the shape at the tokens the share rule keeps
(>= 0.3 of the object, or the most of it), and the shape and side on the position scenes alone (what the position
question needs: it names the shape).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 trainer/tests/probe_vision_stage.py CKPT TOKENIZER SHARE WEIGHT SECONDS
e.g. CKPT = RUN/pretrain/ckpt.pt of a reproduce, TOKENIZER = RUN/tokenizer/tokenizer.model, SHARE 0 WEIGHT 1 for the
session-6 rule. Two at once on the two cores (one torch thread each) make an A/B of the same minutes.
"""
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reward_trainer import pretrain as P  # noqa: E402
from reward_trainer.checkpoint import load_checkpoint  # noqa: E402
from reward_trainer.config import ImagePreprocess, PretrainConfig, VideoPreprocess  # noqa: E402
from reward_trainer.model import IXCRewardModel  # noqa: E402
from reward_trainer.tokenizer import TextTokenizer  # noqa: E402
from reward_trainer.world import Gen  # noqa: E402

KEPT = 0.3  # the share rule the shape is measured at, whatever rule the run trains with


def main() -> None:
    ckpt, tokenizer = sys.argv[1], sys.argv[2]
    share, weight, seconds = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_checkpoint(ckpt, "cpu")
    sd = model.state_dict()
    sd.update({k: v for k, v in IXCRewardModel(model.args).state_dict().items() if k.startswith(("vit.", "vision_proj."))})
    model.load_state_dict(sd)
    tok = TextTokenizer(tokenizer)
    labels = P.SceneLabels(tok)
    icfg, vcfg = ImagePreprocess(), VideoPreprocess()
    test = P.scene_batch(Gen("", "pretrain", random.Random(99)), 96, icfg, vcfg)

    # the stage itself; its scenes come from Gen(Random(seed + 1)), 7 here
    cfg = PretrainConfig(vision_seconds=seconds, vision_shape_share=share, vision_shape_weight=weight)
    steps = P.vision_stage(model, tok, icfg, vcfg, cfg, 6, "cpu")["steps"]
    model.eval()
    with torch.no_grad():
        _, every = P.vision_loss(model, test, labels)
        _, kept = P.vision_loss(model, test, labels, shape_share=KEPT)
        _, pos = P.vision_loss(model, [s for s in test if s["kind"] == "position"], labels, shape_share=KEPT)
    print(f"after {steps} steps: every token " + " ".join(f"{k} {v:.2f}" for k, v in every.items())
          + f" | shape at kept tokens {kept['shape']:.2f} | position scenes: shape {pos['shape']:.2f}"
          f" side {pos['side']:.2f}")


if __name__ == "__main__":
    main()
