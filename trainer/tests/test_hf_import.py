"""import-hf: synthetic published-layout checkpoints -> model directory -> ONNX parity; strict refusals."""
import hashlib
import json
import os
import struct

import numpy as np
import pytest
import torch

import hf_synthetic
from reward_trainer import safetensors as st
from reward_trainer.cli import main
from reward_trainer.config import ModelArgs
from reward_trainer.golden import reward_feeds
from reward_trainer.onnx_runner import OnnxRunner
from reward_trainer.hf_import import HFImportError, import_hf
from reward_trainer.manifest import ManifestError, validate_manifest
from reward_trainer.model import IXCRewardModel


# ------------------------------------------------------------------------------------------- safetensors
def test_safetensors_roundtrip_all_dtypes(tmp_path):
    g = torch.Generator().manual_seed(1)
    ts = [("a.bf16", torch.randn(3, 5, generator=g).to(torch.bfloat16)), ("b.f16", torch.randn(7, generator=g).half()),
          ("c.f32", torch.randn(2, 2, 2, generator=g)), ("d.i64", torch.arange(5)), ("e.empty", torch.zeros(0, 4))]
    p = str(tmp_path / "x.safetensors")
    st.write(p, ts, {"format": "pt"})
    entries, meta, base = st.read_header(p)
    assert meta == {"format": "pt"} and base % 8 == 0
    assert [e.dtype for e in entries.values()] == ["BF16", "F16", "F32", "I64", "F32"]
    got = st.load(p)
    for n, t in ts:
        assert got[n].dtype == t.dtype and got[n].shape == t.shape and torch.equal(got[n], t)
    with open(p, "rb") as f:  # the layout is the published format: u64 LE header size, JSON, raw LE bytes
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        f.seek(8 + n + h["c.f32"]["data_offsets"][0])
        assert np.array_equal(np.frombuffer(f.read(32), "<f4").reshape(2, 2, 2), ts[2][1].numpy())


def test_safetensors_truncated_and_corrupt(tmp_path):
    p = str(tmp_path / "x.safetensors")
    st.write(p, [("w", torch.randn(64, 64))])
    raw = open(p, "rb").read()
    cases = {"truncated": raw[:-100], "no header": raw[:5], "header length": struct.pack("<Q", 1 << 40) + raw[8:],
             "not valid JSON": raw[:8] + b"x" + raw[9:], "trailing": raw + b"xx"}
    for want, data in cases.items():
        q = str(tmp_path / "bad.safetensors")
        open(q, "wb").write(data)
        with pytest.raises(st.SafetensorsError) as e:
            st.load(q)
        assert "bad.safetensors" in str(e.value)
        if want in ("truncated", "trailing"):
            assert want in str(e.value) or "trailing bytes" in str(e.value)


# ------------------------------------------------------------------------------------------- import
def _independent_model(ckpt, cfg):
    """Reference PyTorch model loaded WITHOUT the importer: plain load_state_dict(strict) with the documented rename."""
    from reward_trainer.hf_import import model_args

    sd = {}
    for f in sorted(set(json.load(open(os.path.join(ckpt, [n for n in os.listdir(ckpt) if n.endswith("index.json")][0])))["weight_map"].values())):
        p = os.path.join(ckpt, f)
        sd.update(st.load(p) if f.endswith(".safetensors") else torch.load(p))
    sd = {("v_head.weight" if k == "score.weight" else k): v.float() for k, v in sd.items()
          if not k.endswith("inv_freq") and not k.endswith("position_ids")}
    m = IXCRewardModel(model_args(cfg)).eval()
    m.load_state_dict(sd, strict=True)
    return m


@pytest.fixture(scope="module", params=[("bin", "fused", 1000, False), ("safetensors", "eager", None, False),
                                        ("bin", "fused", None, True)],
                ids=["bin-fused-external", "safetensors-eager", "bin-fused-low-memory"])
def imported(request, tmp_path_factory):
    fmt, attention, threshold, low_memory = request.param
    d = tmp_path_factory.mktemp(fmt)
    cfg = hf_synthetic.config()
    ckpt = str(d / "ckpt")
    hf_synthetic.write(ckpt, cfg, fmt=fmt)
    out = d / "models" / "ixc-hf" / "3"
    argv = ["import-hf", "--checkpoint", ckpt, "--out", str(out), "--attention", attention]
    if threshold:
        argv += ["--external-threshold", str(threshold)]
    if not low_memory:
        argv += ["--in-memory"]
    main(argv)
    return fmt, attention, threshold, ckpt, cfg, out, low_memory


def test_import_writes_a_valid_model_dir(imported):
    fmt, attention, threshold, ckpt, cfg, out, low_memory = imported
    man = validate_manifest(str(out))
    assert man["name"] == "ixc-hf" and man["version"] == 3 and man["dtype"] == "float32"
    assert man["config"]["hidden_size"] == 64 and man["config"]["vocab_size"] == 92544
    assert man["tokenizer"]["special_ids"] == {"turn_start": 92543, "turn_end": 92542, "reward": 92527}
    ext = {g: man["graphs"][g]["external_data"] for g in ("vision", "reward")}
    files = set(os.listdir(out))
    if low_memory:  # the streamed reward graph always keeps its weights in the data file, the vision graph is small
        assert ext == {"vision": [], "reward": ["reward.onnx.data"]}
        assert os.path.getsize(out / "reward.onnx") < os.path.getsize(out / "reward.onnx.data")
    elif threshold:
        assert ext == {"vision": ["vision.onnx.data"], "reward": ["reward.onnx.data"]}
        assert {"vision.onnx.data", "reward.onnx.data"} <= files
        # the protobuf holds no weights, the data file does; both hashed in the manifest
        assert os.path.getsize(out / "reward.onnx") < os.path.getsize(out / "reward.onnx.data")
        for f in ("vision.onnx.data", "reward.onnx.data"):
            assert man["files"][f]["sha256"] == hashlib.sha256((out / f).read_bytes()).hexdigest()
    else:
        assert ext == {"vision": [], "reward": []} and not any(f.endswith(".data") for f in files)
    assert not any(n.startswith(".") for n in os.listdir(out.parent))  # no staging dirs left behind
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "reward.onnx"), load_external_data=False).graph.node}
    vops = {n.op_type for n in onnx.load(str(out / "vision.onnx"), load_external_data=False).graph.node}
    if attention == "fused":
        assert man["graphs"]["reward"]["attention"] == "com.microsoft.GroupQueryAttention"
        assert "GroupQueryAttention" in ops and "Softmax" not in ops  # no [B, H, T, T] scores in the graph
        assert "MultiHeadAttention" in vops and "Softmax" not in vops
    else:
        assert man["graphs"]["reward"]["attention"] == "eager" and "Softmax" in ops


def test_import_scores_match_independent_pytorch(imported):
    """ONNX (onnxruntime-node) and the exporter's PyTorch goldens vs a model loaded without the importer."""
    fmt, attention, threshold, ckpt, cfg, out, low_memory = imported
    ref = _independent_model(ckpt, cfg)
    g = json.loads((out / "golden.json").read_text())
    assert g["parity"]["max_abs_score_diff"] <= 1e-4
    text = [c for c in g["cases"] if c["kind"] == "text"]
    assert len(text) >= 3
    reqs, want = [], []
    D = cfg["hidden_size"]
    for c in text[:4]:
        feeds = reward_feeds([(c["input_ids"], [])], [[]], [], 2, D)
        with torch.no_grad():
            s = float(ref(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0])
        assert abs(s - c["score"]) <= 1e-4, (c["id"], s, c["score"])
        reqs.append((str(out / "reward.onnx"), feeds))
        want.append(s)
    # one image case end to end: vision.onnx -> reward.onnx vs the independent model (ViT, projector, GN, PLoRA),
    # laid out by the published pipeline the imported model declares
    import base64, tempfile
    from reward_trainer import media
    from reward_trainer.config import ImagePreprocess, template_config
    from reward_trainer.media import tile_grid
    from reward_trainer.template import build_segments, layout, strip_media_data
    from reward_trainer.tokenizer import TextTokenizer

    man = json.loads((out / "model.json").read_text())
    icfg = ImagePreprocess(tile_size=man["preprocess"]["image"]["tile_size"], patch_size=man["preprocess"]["image"]["patch_size"])
    tcfg = template_config("ixc", icfg)
    assert man["template"]["media_placement"] == "ixc" and man["preprocess"]["image"]["decode"] == "published"
    c = [c for c in g["cases"] if c["kind"] == "image" and len(c.get("media_tokens", [])) == 1][0]
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        part = [p for m in c["messages"] if not isinstance(m["content"], str) for p in m["content"] if p["type"] == "image"][0]
        f.write(base64.b64decode(part["data"]))
        f.flush()
        px = media.image_transform(media.load_image(f.name, icfg.decode), icfg, icfg.hd_num)
    tok = TextTokenizer(os.path.join(ckpt, "tokenizer.model"))
    mt = [ref.tokens_per_image(*tile_grid(px, icfg.tile_size))]
    ids, spans, _ = layout(build_segments(strip_media_data(c["messages"]), tok, tcfg), mt, man["max_seq_len"], 2)
    assert ids == c["input_ids"]
    vis = OnnxRunner().run([(str(out / "vision.onnx"), {"image": px.numpy()})])[0]["image_embeds"]
    with torch.no_grad():
        emb = ref.vision_forward(px)
        feeds = reward_feeds([(ids, spans)], [mt], [emb.numpy()], 2, D)
        s_img = float(ref(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0])
    assert np.abs(vis - emb.numpy()).max() <= 1e-4
    assert abs(s_img - c["score"]) <= 1e-4
    reqs.append((str(out / "reward.onnx"), dict(feeds, image_embeds=vis)))
    want.append(s_img)
    got = [float(r["score"][0]) for r in OnnxRunner().run(reqs)]
    assert np.max(np.abs(np.array(got) - np.array(want))) <= 1e-4, (got, want)
    assert np.std(want) > 1e-3  # scores depend on the input (not a constant head)


def test_tampered_external_data_is_refused(imported, tmp_path):
    fmt, attention, threshold, ckpt, cfg, out, low_memory = imported
    if not threshold and not low_memory:
        pytest.skip("no external data in this variant (the other parameters cover it)")
    import shutil

    cp = tmp_path / "copy"
    shutil.copytree(out, cp)
    with open(cp / "reward.onnx.data", "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(ManifestError, match="reward.onnx.data"):
        validate_manifest(str(cp))


# ------------------------------------------------------------------------------------------- refusals
@pytest.fixture
def small_cfg():
    return hf_synthetic.config(layers=1)


def _refused(tmp_path, ckpt, *needles):
    out = tmp_path / "models" / "x" / "1"
    with pytest.raises(HFImportError) as e:
        import_hf(str(ckpt), str(out))
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert not out.exists() and not (out.parent.exists() and os.listdir(out.parent))
    return msg


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_renamed_key_refused_with_both_names(tmp_path, small_cfg, fmt):
    ck = tmp_path / "ck"
    hf_synthetic.write(str(ck), small_cfg, fmt=fmt,
                       mutate={"model.layers.0.attention.wo.Plora_A.weight": ("model.layers.0.attention.wo.lora_A.weight", [8, 64])})
    msg = _refused(tmp_path, ck, "missing (1): model.layers.0.attention.wo.Plora_A.weight",
                   "unexpected (1): model.layers.0.attention.wo.lora_A.weight")


def test_wrong_shapes_refused_with_full_list(tmp_path, small_cfg):
    ck = tmp_path / "ck"
    hf_synthetic.write(str(ck), small_cfg, mutate={"score.weight": ("score.weight", [2, 64]),
                                                   "plora_sub_GN": ("plora_sub_GN", [1, 1, 192])})
    _refused(tmp_path, ck, "wrong shape (2)", "score.weight [2, 64] (model [1, 64])", "plora_sub_GN [1, 1, 192]")


def test_missing_head_and_missing_shard_refused(tmp_path, small_cfg):
    ck = tmp_path / "ck"
    wm = hf_synthetic.write(str(ck), small_cfg)
    os.remove(ck / "pytorch_model-00002-of-00003.bin")
    n = sum(1 for v in wm.values() if v == "pytorch_model-00002-of-00003.bin")
    _refused(tmp_path, ck, f"pytorch_model-00002-of-00003.bin ({n} tensors)")


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_truncated_shard_clear_error_nothing_written(tmp_path, small_cfg, fmt):
    ck = tmp_path / "ck"
    wm = hf_synthetic.write(str(ck), small_cfg, fmt=fmt)
    last = sorted(set(wm.values()))[-1]
    p = ck / last
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size // 2)
    msg = _refused(tmp_path, ck, "truncated", last)
    assert "Traceback" not in msg


def test_unknown_extra_tensor_and_dropped_buffers(tmp_path, small_cfg):
    ck = tmp_path / "ck"
    hf_synthetic.write(str(ck), small_cfg, single=True, mutate={"model.norm.weight": ("output.weight", [92544, 64])})
    _refused(tmp_path, ck, "missing (1): model.norm.weight", "unexpected (1): output.weight")


def test_chunked_eager_attention_equals_one_block(monkeypatch):
    """PyTorch's long-input path (query blocks / crop blocks) gives the one-block numbers."""
    from reward_trainer import model as model_mod
    from reward_trainer.config import VisionArgs

    torch.manual_seed(0)
    m = IXCRewardModel(ModelArgs(vocab_size=300, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                                 intermediate_size=48, plora_rank=4, plora_alpha=4,
                                 vision=VisionArgs(width=24, layers=1, heads=2, tile_size=28))).eval()
    B, T = 2, 37
    am = torch.ones(B, T, dtype=torch.long)
    am[1, 20:] = 0
    args = (torch.randint(0, 300, (B, T)), torch.randn(3, 32), torch.randint(0, 3, (B, T)),
            (torch.rand(B, T) > 0.5).float(), am, torch.tensor([T - 1, 19]))
    img = torch.randn(1, 3, 56, 84)
    with torch.no_grad():
        s1, v1 = m(*args), m.vision_forward(img)
        monkeypatch.setattr(model_mod, "QUERY_CHUNK", 8)
        monkeypatch.setattr(model_mod, "VIT_CROP_CHUNK", 2)
        s2, v2 = m(*args), m.vision_forward(img)
    assert torch.allclose(s1, s2, atol=1e-6) and torch.allclose(v1, v2, atol=1e-6)


def test_low_memory_parameters_live_in_the_weight_file(tmp_path):
    """import-hf --low-memory: every parameter of the model is a view of the weight file (a write to the file is
    seen by the model, so no process-memory copy exists) and holds the checkpoint's value."""
    from reward_trainer.hf_import import load_published

    cfg = hf_synthetic.config()
    ckpt = str(tmp_path / "ckpt")
    hf_synthetic.write(ckpt, cfg, fmt="safetensors")
    store = str(tmp_path / "w.f32")
    model, _, _ = load_published(ckpt, store_path=store)
    ref = _independent_model(ckpt, cfg)
    sd = ref.state_dict()
    params = dict(model.named_parameters())
    assert set(params) == set(sd)
    assert all(torch.equal(params[k], sd[k]) for k in sd)
    mm = np.memmap(store, dtype=np.float32, mode="r+")
    assert mm.size == sum(p.numel() for p in params.values())
    before = float(params["v_head.weight"][0, 0])
    mm[:] = 0.5  # through the file, not the model
    assert all(bool((p == 0.5).all()) for p in params.values()), "a parameter is not backed by the weight file"
    assert before != 0.5


def test_streamed_reward_graph_has_no_weight_transposes(imported):
    """The streamed reward.onnx applies torch's weight Transposes while copying (what constant folding does in the
    in-memory export): none is left for the runtime to materialise as a second copy of a weight."""
    import onnx

    fmt, attention, threshold, ckpt, cfg, out, low_memory = imported
    g = onnx.load(str(out / "reward.onnx"), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    feeds_on_weights = [n.name for n in g.node if n.op_type in ("Transpose", "Identity") and n.input[0] in inits]
    assert not feeds_on_weights, feeds_on_weights[:5]
    assert [i.name for i in g.input] == ["input_ids", "image_embeds", "image_positions", "im_mask", "attention_mask",
                                         "readout_index"]


def test_streamed_export_does_not_copy_the_parameters(tmp_path):
    """The low-memory export traces both graphs without a process-memory copy of the weights: torch's tracer
    clones every traced input (parameters included) and takes every parameter of the traced module, which put a
    second copy of the model in RAM. A 400 MB embedding table must not show up in the export's anonymous-memory
    peak (sampled every 20 ms; the trace itself is small)."""
    from reward_trainer.config import ModelArgs, VisionArgs
    from reward_trainer.hf_import import AnonPeak
    from reward_trainer.onnx_large import GraphOptions, export_graphs
    from reward_trainer.weight_store import mapped_model

    args = ModelArgs(vocab_size=100_000, hidden_size=1024, num_layers=1, num_heads=8, num_kv_heads=2,
                     intermediate_size=256, plora_rank=4, plora_alpha=4,
                     vision=VisionArgs(width=32, layers=1, heads=2, patch=14, tile_size=56))
    model, store = mapped_model(args, str(tmp_path / "w.f32"))
    table = model.model.tok_embeddings.weight
    assert table.numel() * 4 >= 400e6
    (tmp_path / "out").mkdir()
    with AnonPeak(0.02) as peak:
        base = AnonPeak.now()
        export_graphs(model, str(tmp_path / "out"), GraphOptions(attention="fused", stream=True))
    assert peak.peak - base < 0.5 * table.numel() * 4, (peak.peak - base) / 1e6


def test_low_memory_import_without_the_disk_for_its_weight_file_is_refused_cleanly(tmp_path, monkeypatch):
    """The weight file's blocks are reserved before it is mapped: a full disk is a clear error naming the size and
    the way out (not a SIGBUS on the first write into a sparse file), and nothing is left at --out or beside it."""
    import errno

    from reward_trainer.hf_import import HFImportError, import_hf

    ckpt = str(tmp_path / "ckpt")
    hf_synthetic.write(ckpt, hf_synthetic.config(), fmt="bin")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "models" / "m" / "1"
    with pytest.raises(HFImportError, match=r"cannot reserve .* GB for the weight file .*No space left.*--in-memory"):
        import_hf(ckpt, str(out))
    assert not out.exists() and os.listdir(out.parent) == []
