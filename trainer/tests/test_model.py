import math

import torch
import torch.nn.functional as F

from reward_trainer.config import ModelArgs, VisionArgs
from reward_trainer.model import IXCRewardModel, PLoRA


def small(**kw):
    a = ModelArgs(vocab_size=300, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=96,
                  plora_rank=4, plora_alpha=8, vision=VisionArgs(width=24, layers=1, heads=2, patch=14, tile_size=56), **kw)
    torch.manual_seed(0)
    m = IXCRewardModel(a).eval()
    with torch.no_grad():  # non-zero LoRA B and separators so their effect is visible
        for mod in m.modules():
            if isinstance(mod, PLoRA):
                mod.Plora_B.weight.normal_(0, 0.05)
        m.plora_glb_GN.normal_()
        m.plora_sub_GN.normal_()
    return m


def test_param_names_follow_checkpoint():
    names = set(n for n, _ in small().named_parameters())
    for n in ["model.tok_embeddings.weight", "model.layers.0.attention.wqkv.weight",
              "model.layers.0.attention.wqkv.Plora_A.weight", "model.layers.0.attention.wqkv.Plora_B.weight",
              "model.layers.1.attention.wo.Plora_B.weight", "model.layers.0.feed_forward.w1.weight",
              "model.layers.0.feed_forward.w2.Plora_A.weight", "model.layers.0.feed_forward.w3.weight",
              "model.layers.0.attention_norm.weight", "model.layers.0.ffn_norm.weight", "model.norm.weight",
              "vit.vision_tower.vision_model.embeddings.patch_embedding.weight",
              "vit.vision_tower.vision_model.embeddings.class_embedding",
              "vit.vision_tower.vision_model.embeddings.position_embedding.weight",
              "vit.vision_tower.vision_model.pre_layrnorm.weight",
              "vit.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
              "vit.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
              "vision_proj.0.weight", "vision_proj.2.weight", "plora_glb_GN", "plora_sub_GN", "v_head.weight"]:
        assert n in names, n
    m = small()
    assert tuple(m.plora_glb_GN.shape) == (1, 1, 96) and tuple(m.plora_sub_GN.shape) == (1, 1, 1, 96)
    assert m.model.layers[0].attention.wqkv.weight.shape == (4 * 16 + 2 * 2 * 16, 64)
    assert m.v_head.bias is None


def test_vision_token_count_and_layout():
    m = small()
    S, G = 56, 2
    for rows, cols in [(1, 1), (2, 1), (1, 3), (2, 2)]:
        x = torch.randn(1, 3, rows * S, cols * S)
        out = m.vision_forward(x)
        assert out.shape == (m.tokens_per_image(rows, cols), 64)
        assert out.shape[0] == (rows * cols + 1) * G * G + 1 + (rows + 1) * G
    # separator positions: project the separators alone and find them in the block
    with torch.no_grad():
        rows, cols = 2, 1
        out = m.vision_forward(torch.randn(1, 3, rows * S, cols * S))
        sub = m.vision_proj(m.plora_sub_GN.reshape(1, -1))[0]
        glb = m.vision_proj(m.plora_glb_GN.reshape(1, -1))[0]
        is_sub = [bool(torch.allclose(r, sub, atol=1e-5)) for r in out]
        is_glb = [bool(torch.allclose(r, glb, atol=1e-5)) for r in out]
        g_end = G * (G + 1)
        assert [i for i, v in enumerate(is_glb) if v] == [g_end]
        expect_sub = [r * (G + 1) + G for r in range(G)] + [g_end + 1 + r * (cols * G + 1) + cols * G for r in range(rows * G)]
        assert [i for i, v in enumerate(is_sub) if v] == expect_sub


def test_merge_channel_order_and_tile_order():
    m = small()
    G, W = m.G, 24
    feats = torch.arange(1 * 16 * W, dtype=torch.float32).reshape(1, 16, W)  # 4x4 patches
    merged = m._merge(feats)
    grid = feats.reshape(4, 4, W)
    for gi in range(G):
        for gj in range(G):
            want = torch.cat([grid[2 * gi, 2 * gj], grid[2 * gi, 2 * gj + 1], grid[2 * gi + 1, 2 * gj],
                              grid[2 * gi + 1, 2 * gj + 1]])
            assert torch.equal(merged[0, gi, gj], want)


def test_plora_matches_direct_formula():
    torch.manual_seed(1)
    lin = PLoRA(8, 6, r=2, alpha=6)
    torch.nn.init.normal_(lin.Plora_B.weight)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.float32)
    y = lin(x, mask)
    W, A, B = lin.weight, lin.Plora_A.weight, lin.Plora_B.weight
    for b in range(2):
        for t in range(5):
            want = W @ x[b, t] + (mask[b, t] * 3.0) * (B @ (A @ x[b, t]))
            assert torch.allclose(y[b, t], want, atol=1e-5)


def test_fused_qkv_layout_matches_published_split():
    m = small()
    att = m.model.layers[0].attention
    x = torch.randn(1, 3, 64)
    q, k, v = att.split_qkv(att.wqkv(x, torch.zeros(1, 3)))
    # published split: view weight as [kv, q_per_kv + 2, head_dim, in]; q = [:, :q_per_kv], k = [:, -2], v = [:, -1]
    Wv = att.wqkv.weight.view(2, 4, 16, 64)
    Wq = Wv[:, :2].reshape(4 * 16, 64)
    Wk = Wv[:, 2].reshape(2 * 16, 64)
    Wvv = Wv[:, 3].reshape(2 * 16, 64)
    assert torch.allclose(q.transpose(1, 2).reshape(1, 3, -1), x @ Wq.T, atol=1e-5)
    assert torch.allclose(k.transpose(1, 2).reshape(1, 3, -1), x @ Wk.T, atol=1e-5)
    assert torch.allclose(v.transpose(1, 2).reshape(1, 3, -1), x @ Wvv.T, atol=1e-5)


def _attention_reference(att, x, cos, sin, T):
    """Direct per-head formula: head h uses kv group h // q_per_kv, causal softmax."""
    Wv = att.wqkv.weight.view(2, 4, 16, 64)
    outs = []
    for h in range(4):
        g, j = h // 2, h % 2
        q = x @ Wv[g, j].T
        k = x @ Wv[g, 2].T
        v = x @ Wv[g, 3].T

        def rope(z):
            return z * cos + torch.cat([-z[:, 8:], z[:, :8]], -1) * sin
        s = rope(q) @ rope(k).T / math.sqrt(16)
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        outs.append(torch.softmax(s, -1) @ v)
    return torch.cat(outs, -1) @ att.wo.weight.T


def test_attention_matches_direct_formula_without_image_tokens():
    m = small()
    att = m.model.layers[0].attention
    T = 5
    x = torch.randn(1, T, 64)
    pos = torch.arange(T).float()
    inv = 1.0 / (1e6 ** (torch.arange(0, 16, 2).float() / 16))
    emb = torch.cat([pos[:, None] * inv, pos[:, None] * inv], -1)
    cos, sin = emb.cos(), emb.sin()
    bias = torch.zeros(1, 1, T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)
    got = att(x, torch.zeros(1, T), cos[None, None], sin[None, None], bias)
    assert torch.allclose(got[0], _attention_reference(att, x[0], cos, sin, T), atol=1e-5)


def _inputs(m, L, n_img=0, T=None):
    T = T or L
    ids = torch.randint(3, 300, (1, T))
    pos = torch.zeros(1, T, dtype=torch.long)
    mask = torch.zeros(1, T)
    if n_img:
        pos[0, 1:1 + n_img] = torch.arange(n_img)
        mask[0, 1:1 + n_img] = 1
    am = torch.zeros(1, T, dtype=torch.long)
    am[0, :L] = 1
    return ids, pos, mask, am, torch.tensor([L - 1])


def test_score_independent_of_padding_and_other_rows():
    m = small()
    E = torch.randn(7, 64)
    with torch.no_grad():
        a = _inputs(m, 12, n_img=5)
        b = _inputs(m, 20)
        sa = m(a[0], E, a[1], a[2], a[3], a[4])
        sb = m(b[0], E, b[1], b[2], b[3], b[4])
        T = 25
        def pad(x, v):
            return F.pad(x, (0, T - x.shape[1]), value=v)
        batch = [torch.cat([pad(a[i], 0), pad(b[i], 0)]) for i in range(4)]
        batch[0][0, 12:] = 2
        s = m(batch[0], E, batch[1], batch[2], batch[3], torch.tensor([11, 19]))
    assert torch.allclose(s, torch.cat([sa, sb]), atol=1e-5)


def test_im_mask_switches_image_embeddings_and_plora():
    m = small()
    E = torch.randn(3, 64)
    ids, pos, mask, am, ro = _inputs(m, 8, n_img=3)
    with torch.no_grad():
        s_img = m(ids, E, pos, mask, am, ro)
        s_img2 = m(ids, E * 2, pos, mask, am, ro)
        s_txt = m(ids, E, pos, torch.zeros_like(mask), am, ro)
        s_txt2 = m(ids, E * 2, pos, torch.zeros_like(mask), am, ro)
    assert not torch.allclose(s_img, s_img2)  # image rows are used where im_mask = 1
    assert torch.allclose(s_txt, s_txt2)  # ... and ignored elsewhere
    # PLoRA only acts on image tokens: zeroing Plora_B changes the image score, not the text-only score
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, PLoRA):
                mod.Plora_B.weight.zero_()
        assert torch.allclose(m(ids, E, pos, torch.zeros_like(mask), am, ro), s_txt, atol=1e-6)
        assert not torch.allclose(m(ids, E, pos, mask, am, ro), s_img, atol=1e-4)


def test_mean_readout_averages_valid_positions():
    m = small(readout="mean")
    ids, pos, mask, am, ro = _inputs(m, 6, T=9)
    with torch.no_grad():
        s = m(ids, torch.zeros(1, 64), pos, mask, am, ro)
        s_short = m(ids[:, :6], torch.zeros(1, 64), pos[:, :6], mask[:, :6], am[:, :6], ro)
    assert torch.allclose(s, s_short, atol=1e-5)


def test_vision_forward_many_equals_single():
    m = small()
    ims = [torch.randn(1, 3, 56, 56), torch.randn(1, 3, 112, 56), torch.randn(1, 3, 56, 56), torch.randn(1, 3, 56, 168)]
    with torch.no_grad():
        many = m.vision_forward_many(ims)
        for im, e in zip(ims, many):
            assert torch.allclose(m.vision_forward(im), e, atol=1e-5)


def image_and_text_pairs(m, tmp_path):
    """Two preference pairs for `small()`: one with an 80x60 image in the shared prompt, one text-only; the replies
    share a first token, then differ (what the packed layout and the auxiliary LM loss must handle)."""
    from PIL import Image

    from reward_trainer.config import ImagePreprocess, VideoPreprocess
    from reward_trainer.data import MediaCache, PairExample

    Image.new("RGB", (80, 60), (200, 10, 10)).save(tmp_path / "a.png")
    cache = MediaCache(ImagePreprocess(tile_size=56, hd_num=4), VideoPreprocess())
    px = cache.get("image", str(tmp_path / "a.png"), 1)
    T_img = m.tokens_per_image(px.shape[2] // 56, px.shape[3] // 56)
    prompt = [1, 40, 41, 42] + [2] * T_img + [43, 44]
    img = PairExample("i", "x", prompt + [50, 51, 52, 2, 5], prompt + [60, 2, 5], [(4, 0)], [(4, 0)],
                      [("image", str(tmp_path / "a.png"), 1)], 3, 1, cache)
    txt = PairExample("t", "y", [1, 40, 41, 70, 2, 5], [1, 40, 41, 71, 72, 73, 74, 2, 5], [], [], [], 1, 4, cache)
    return [img, txt], cache


def test_packed_pair_scores_equal_separate_rows(tmp_path):
    """Training packs [prompt | chosen | rejected] into one row; scores must equal the unpacked forward."""
    from reward_trainer.data import PairExample
    from reward_trainer.model_io import batch_inputs, packed_scores

    m = small()
    (img, txt), cache = image_and_text_pairs(m, tmp_path)
    same = PairExample("s", "z", [1, 40, 2, 5], [1, 40, 2, 5], [], [], [], 1, 1, cache)
    with torch.no_grad():
        pairs = [img, txt, same]
        sep = m(**batch_inputs(m, pairs, 2, "cpu"))
        c, r = packed_scores(m, pairs, 2, "cpu")
    assert torch.allclose(torch.cat([c, r]), sep, atol=1e-5)
