"""The GPU benchmark kit (bench/gpu/) on the CPU: ort_capi's ctypes binding of ONNX Runtime's C API scores the
default model like the trainer's ONNX runner (reward_trainer.onnx_runner: python onnxruntime, else
onnxruntime-node, the same libonnxruntime.so.1), and tokens.py / torch_tokens.py / export_full_width.py run and
print valid JSON. ort_capi runs in child processes: a wrong function-table index crashes the process that calls
it, and that must fail a test, not end the suite."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TESTS))
KIT = os.path.join(REPO, "bench", "gpu")
LIB = os.path.join(REPO, "node_modules", "onnxruntime-node", "bin", "napi-v6", "linux", "x64", "libonnxruntime.so.1")
MODEL = os.path.join(REPO, "models", "ixc-reward-tiny", "1")
# the same library and CPU kernels with the same settings (one thread, all graph optimisations): any difference
# past float rounding order means the binding fed or read something else
ATOL_SAME_RUNTIME = 1e-5

pytestmark = pytest.mark.skipif(not os.path.exists(LIB), reason=f"{LIB} missing (npm install provides it)")

SCORE_CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from ort_capi import Runtime
rt = Runtime()
s = rt.session(sys.argv[2], intra_op_threads=1, opt_level="all", log_placement=True)
data = np.load(sys.argv[3])
n = int(data["n"])
out = {}
for i in range(n):
    feeds = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")}
    out[f"score{i}"] = s.run(feeds)["score"]
np.savez(sys.argv[4], **out)
print(json.dumps({"check": rt.self_check(), "inputs": s.inputs, "placement": s.placement}))
"""


def child(args, timeout=300):
    return subprocess.run([sys.executable] + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=dict(os.environ, ORT_DISABLE_TELEMETRY="1"))


def _requests():
    """Golden text rows one by one, a right-padded batch of them, and synthetic rows with image positions (PLoRA and
    the image_embeds Gather), as reward.onnx feeds."""
    from reward_trainer.golden import reward_feeds

    sys.path.insert(0, KIT)
    import tokens  # noqa: E402

    man = json.load(open(os.path.join(MODEL, "model.json")))
    g = json.load(open(os.path.join(MODEL, "golden.json")))
    pad, d = man["tokenizer"]["pad_id"], man["config"]["hidden_size"]
    text = [c for c in g["cases"] if c.get("kind") == "text" and "score" in c][:4]
    reqs = [reward_feeds([(c["input_ids"], [])], [[]], [], pad, d) for c in text]
    reqs.append(reward_feeds([(c["input_ids"], []) for c in text], [[] for _ in text], [], pad, d))
    meta = [{"name": n, "dtype": t, "shape": [-1, d] if n == "image_embeds" else [-1]} for n, t, _ in
            [("input_ids", "int64", 0), ("image_embeds", "float32", 0), ("image_positions", "int64", 0),
             ("im_mask", "float32", 0), ("attention_mask", "int64", 0), ("readout_index", "int64", 0)]]
    reqs.append(tokens.feeds_for(meta, 3, 40, man["config"]["vocab_size"], 12, seed=7))
    return reqs, text


def test_ort_capi_scores_the_default_model_like_the_trainers_onnx_runner(tmp_path):
    from reward_trainer.onnx_runner import OnnxRunner

    reqs, text = _requests()
    np.savez(tmp_path / "feeds.npz", n=len(reqs), **{f"{i}/{k}": v for i, f in enumerate(reqs) for k, v in f.items()})
    p = child(["-c", SCORE_CHILD, KIT, os.path.join(MODEL, "reward.onnx"), str(tmp_path / "feeds.npz"),
               str(tmp_path / "scores.npz")])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    rep = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert rep["check"]["ok"] and rep["check"]["version"].startswith("1.")
    assert [i["name"] for i in rep["inputs"]] == ["input_ids", "image_embeds", "image_positions", "im_mask",
                                                  "attention_mask", "readout_index"]
    assert rep["inputs"][1]["shape"] == [-1, 256] and rep["inputs"][3]["dtype"] == "float32"
    assert list(rep["placement"]) == ["CPUExecutionProvider"] and rep["placement"]["CPUExecutionProvider"]["nodes"] > 100
    got = np.load(tmp_path / "scores.npz")
    ref = OnnxRunner().run([(os.path.join(MODEL, "reward.onnx"), f) for f in reqs])
    worst = 0.0
    for i, r in enumerate(ref):
        a, b = got[f"score{i}"], r["score"]
        assert a.shape == b.shape, (i, a.shape, b.shape)
        worst = max(worst, float(np.abs(a - b).max()))
    assert worst <= ATOL_SAME_RUNTIME, f"ort_capi vs OnnxRunner: max |diff| {worst}"
    # and the PyTorch scores the export recorded (its parity gate, 1e-4), row by row and in the padded batch
    for i, c in enumerate(text):
        assert abs(float(got[f"score{i}"][0]) - c["score"]) <= 1e-4
        assert abs(float(got[f"score{len(text)}"][i]) - c["score"]) <= 1e-4


def test_tokens_quick_prints_valid_json():
    p = child([os.path.join(KIT, "tokens.py"), "--quick", "--threads", "1"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    rep = json.loads(p.stdout)
    assert rep["ort"]["version"] and "CPUExecutionProvider" in rep["ort"]["providers_built_in"]
    (m,) = rep["models"]
    assert [s["provider"] for s in m["sessions"]] == ["CPU"]
    assert [(r["batch"], r["tokens"]) for r in m["results"]] == [(1, 16), (2, 32)]
    for r in m["results"]:
        assert r["tokens_per_s"] > 0 and r["finite"] and r["max_abs_diff_vs_cpu"] == 0.0 and len(r["score_head"]) == r["batch"]


def test_tokens_records_an_ep_that_cannot_start_and_goes_on():
    """On a machine without a GPU the WebGPU EP finds no adapter: the session error is recorded, the CPU rows stay."""
    p = child([os.path.join(KIT, "tokens.py"), "--quick", "--threads", "1", "--providers", "cpu,NoSuchEP"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    (m,) = json.loads(p.stdout)["models"]
    bad = [s for s in m["sessions"] if s["provider"] == "NoSuchEP"]
    assert bad and "NoSuchEP" in bad[0]["error"]
    assert {r["provider"] for r in m["results"]} == {"CPU"}


def test_torch_tokens_quick_on_cpu_prints_valid_json():
    p = child([os.path.join(KIT, "torch_tokens.py"), "--device", "cpu", "--quick", "--threads", "1"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    rep = json.loads(p.stdout)
    ok = [r for r in rep["results"] if "error" not in r]
    assert {r["config"] for r in ok} == {"default", "full-L1-div16"}
    eager32 = [r for r in ok if r["dtype"] == "fp32" and r["attention"] == "eager"]
    assert len(eager32) == 4 and all(r["tokens_per_s"] > 0 and r["finite"] for r in eager32)
    # sdpa needs torch >= 2.0: measured there, an explained error row on the trainer's torch 1.13
    for r in rep["results"]:
        assert "error" not in r or (r["attention"] == "sdpa" and "torch >= 2.0" in r["error"])


def test_full_width_export_path_runs_small(tmp_path):
    """export_full_width.py (the trainer's large-graph export, external data forced by a low threshold) at widths / 16,
    then tokens.py on the result: the device's full-width step, small."""
    out = tmp_path / "fw"
    p = child([os.path.join(KIT, "export_full_width.py"), "--out", str(out), "--layers", "1", "--divisor", "16",
               "--threshold", "100000", "--threads", "1"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    rep = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert rep["hidden"] == 256 and "reward.onnx.data" in rep["files"]
    p = child([os.path.join(KIT, "tokens.py"), "--model", str(out), "--providers", "cpu", "--shapes", "2x24",
               "--runs", "2", "--warmup", "1", "--threads", "1"])
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    (m,) = json.loads(p.stdout)["models"]
    assert m["graph_bytes"] > 1_000_000 and m["results"][0]["finite"]


def test_device_and_pack_scripts_parse():
    for s in ("device.sh", "pack.sh"):
        p = subprocess.run(["bash", "-n", os.path.join(KIT, s)], stderr=subprocess.PIPE)
        assert p.returncode == 0, p.stderr.decode()


def test_placement_parser_counts_nodes_and_fallback_ops_per_ep():
    """ORT's verbose placement report, one message per line as the logger callback receives it (the lines that
    say which ops a GPU EP left on the CPU, the cost device.sh reports)."""
    sys.path.insert(0, KIT)
    from ort_capi import parse_placement

    msgs = ["Node placements", " Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 3", "  MatMul (/m/MatMul)",
            "  Softmax (/m/Softmax)", "  MemcpyFromHost (Memcpy)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2", "  Gather (/Gather_2)", "  Shape ()",
            "Some nodes were not assigned to the preferred execution providers which may or may not have an negative "
            "impact on performance.", "  Unrelated (line)"]
    got = parse_placement(msgs)
    assert got == {"WebGpuExecutionProvider": {"nodes": 3, "ops": {"MatMul": 1, "Softmax": 1, "MemcpyFromHost": 1}},
                   "CPUExecutionProvider": {"nodes": 2, "ops": {"Gather": 1, "Shape": 1}}}
    assert parse_placement([" All nodes placed on [CPUExecutionProvider]. Number of nodes: 422"]) == \
        {"CPUExecutionProvider": {"nodes": 422, "ops": {}}}
