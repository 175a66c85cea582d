"""Where the low-memory import's process memory goes, phase by phase (issue 10): load the shards into the weight
file, trace vision.onnx, trace reward.onnx, copy the weights into reward.onnx.data. Prints the peak anonymous RSS
of each phase (sampled every 50 ms). Goldens and the parity check are not run.

    /usr/bin/python3 trainer/tests/probe_export_memory.py HF_CHECKPOINT_DIR WORK_DIR
(e.g. a checkpoint kept by `check_full_width.py --keep DIR`: DIR/ckpt)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import reward_trainer.onnx_large as large  # noqa: E402
import reward_trainer.weight_store as ws  # noqa: E402
from reward_trainer.hf_import import AnonPeak, load_published  # noqa: E402

GB = 1e9


def timed(mod, name: str) -> None:
    f = getattr(mod, name)

    def wrapper(*args, **kwargs):
        with AnonPeak(0.05) as p:
            out = f(*args, **kwargs)
        label = name if name != "export" else f"torch.onnx.export ({'reward' if 'readout_index' in str(kwargs) else 'vision'})"
        print(f"{label}: peak anonymous RSS {p.peak / GB:.2f} GB", flush=True)
        return out

    setattr(mod, name, wrapper)


def main() -> None:
    ckpt, work = sys.argv[1:3]
    os.makedirs(os.path.join(work, "stage"), exist_ok=True)
    torch.set_num_threads(2)
    with AnonPeak(0.05) as p:
        model, _, rep = load_published(ckpt, store_path=os.path.join(work, "weights.f32"))
    print(f"load ({rep['checkpoint_bytes'] / GB:.2f} GB checkpoint): peak anonymous RSS {p.peak / GB:.2f} GB", flush=True)
    timed(torch.onnx, "export")
    timed(ws, "weights_into_graph")
    large.export_graphs(model, os.path.join(work, "stage"), large.GraphOptions(attention="fused", stream=True))


if __name__ == "__main__":
    main()
