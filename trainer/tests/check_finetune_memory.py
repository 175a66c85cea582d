"""Fine-tuning memory: the trainer/README.md formula against measured peak RSS of one training step of the
full-width model with few layers (decoder 4096 / 32 heads / 8 KV / SwiGLU 14336 / PLoRA r=256 from
hf_synthetic's published config, CLIP ViT-L width), on CPU in fp32, one subprocess per --trainable mode.

    /usr/bin/python3 trainer/tests/check_finetune_memory.py [--layers 1] [--tokens 1024] [--pairs 2]

Each subprocess builds the model, selects the trainable parameters, allocates AdamW's states (one step on zero
gradients), then runs one real step (forward, backward, optimizer) on `pairs` packed text rows of `tokens`
tokens, and reports ru_maxrss. Predicted peak = RSS after building the model + optimizer states (8 B / trainable
parameter) + gradients (4 B / trainable parameter) + activations (formula below) + the packed rows' attention
bias (4 B * T^2 per row); for head, whose forward keeps nothing, one layer's temporaries. `all` uses vocab 8192 (the 92544-row embedding with its AdamW states would pass the
10 GB this shared machine allows); the formula does not depend on it.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINER = os.path.dirname(HERE)


def act_bytes_per_token_layer(D: int, F: int, r: int, H: int, T: int, elem: int = 4) -> int:
    """Tensors autograd keeps per token and decoder layer (eager fp32, model.py): RMSNorm input and output x2
    (4D), rotated q, expanded k and v, attention output (4D), attention probabilities (H*T), SwiGLU w1 output,
    silu output, w3 output, product (4F), PLoRA A outputs of the five linears (5r)."""
    return elem * (8 * D + 4 * F + 5 * r + H * T)


CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, TRAINER); sys.path.insert(0, HERE)
import hf_synthetic
from reward_trainer.hf_import import model_args
from reward_trainer.model import IXCRewardModel
from reward_trainer.data import PairExample
from reward_trainer import finetune as ft
torch.set_num_threads(2)
mode, layers, T, npairs, vocab, ckpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
cfg = hf_synthetic.config(hidden=4096, layers=layers, heads=32, kv_heads=8, inter=14336, vocab=vocab,
                          vit_layers=2, full_vision=True, full_plora=True)
torch.manual_seed(0)
m = IXCRewardModel(model_args(cfg)).train()
names = ft.select_trainable(m, mode)
if ckpt: ft.checkpoint_activations(m)
params = [p for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-5)
for p in params: p.grad = torch.zeros_like(p)
opt.step(); opt.zero_grad(set_to_none=True)  # AdamW states exist from here, as in every step after the first
base = rss()
g = torch.Generator().manual_seed(1)
half = (T - 24) // 2
def ids(n): return [1] + torch.randint(3, vocab - 10, (n - 1,), generator=g).tolist()
prompt = ids(24)
pairs = [PairExample(f"p{i}", "c", prompt + ids(half)[1:] + [2, 30], prompt + ids(half)[1:] + [2, 30], [], [])
         for i in range(npairs)]
rc, rr = ft.pair_scores(m, pairs, 2, "cpu")
ft.bt_loss(rc, rr).backward()
opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"mode": mode, "params": m.num_params(), "trainable": sum(p.numel() for p in params),
                  "rss_after_build_and_states": base, "peak": peak,
                  "row_tokens": len(pairs[0].chosen_ids) + len(pairs[0].rejected_ids) - len(prompt) - 1}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=1024, help="tokens per packed row (prompt + chosen + rejected)")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["head", "plora", "plora+ckpt", "decoder", "all"])
    a = ap.parse_args()
    D, F, r, H = 4096, 14336, 256, 32
    code = CHILD.replace("TRAINER", repr(TRAINER)).replace("HERE", repr(HERE))
    rows = []
    for mode in a.modes:
        m, ck = mode.split("+")[0], "+ckpt" in mode
        vocab = 8192 if m == "all" else 92544
        out = subprocess.run([sys.executable, "-c", code, m, str(a.layers), str(a.tokens), str(a.pairs), str(vocab),
                              "1" if ck else "0"], capture_output=True, text=True, check=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        T = res["row_tokens"]
        tokens = T * a.pairs
        # the per-token tensors are kept only when a gradient flows through the decoder (not for head); with
        # checkpointing only each layer's input (D) stays, plus one layer's tensors while it is recomputed
        if m == "head":  # nothing is kept; the forward's temporaries of one layer exist at a time
            act = tokens * act_bytes_per_token_layer(D, F, r, H, T)
        elif ck:
            act = tokens * (4 * D * a.layers + act_bytes_per_token_layer(D, F, r, H, T))
        else:
            act = tokens * a.layers * act_bytes_per_token_layer(D, F, r, H, T)
        bias = 4 * T * T * a.pairs if m != "head" else 0
        grads = 4 * res["trainable"]
        pred = res["rss_after_build_and_states"] + grads + act + bias
        res.update({"mode": mode, "activations_formula": act, "grads": grads, "bias": bias, "predicted_peak": pred,
                    "measured_over_predicted": round(res["peak"] / pred, 3)})
        rows.append(res)
        print(json.dumps(res), flush=True)
    print("| mode | trainable | RSS after model + AdamW states | + grads | + activations (formula) | predicted peak "
          "| measured peak | measured / predicted |")
    print("|---|---|---|---|---|---|---|---|")
    gb = lambda x: f"{x / 2**30:.2f} GiB"  # noqa: E731
    for x in rows:
        print(f"| {x['mode']} | {x['trainable'] / 1e6:.1f} M | {gb(x['rss_after_build_and_states'])} | {gb(x['grads'])} "
              f"| {gb(x['activations_formula'] + x['bias'])} | {gb(x['predicted_peak'])} | {gb(x['peak'])} "
              f"| {x['measured_over_predicted']} |")


if __name__ == "__main__":
    main()
