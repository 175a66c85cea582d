"""The packed layout (reward_packed.onnx, graph version 2): N responses after one prompt, or reward suffixes hung
after each step, in one row. Scores must equal separate rows (the default path), and the efficient branch
attention must equal the eager 2-D-mask reference."""
import torch

from reward_trainer.collate import collate_packed, share_prefix
from reward_trainer.model import packed_dense

from test_model import small


def _rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    prompt = [1, 7] + torch.randint(10, 300, (30,), generator=g).tolist()
    img = ([0] * 4 + list(range(5)) + [0] * 23, [0.0] * 4 + [1.0] * 5 + [0.0] * 23)  # 5 image positions at 4..8
    rows = []
    for n in (6, 1, 11, 3):
        resp = [7] + torch.randint(10, 300, (n,), generator=g).tolist() + [6, 2, 5]
        ids = prompt + resp
        rows.append((ids, img[0] + [0] * len(resp), img[1] + [0.0] * len(resp)))
    return rows


def _separate(m, rows, E):
    out = []
    for ids, pos, im in rows:
        n = len(ids)
        out.append(float(m(torch.tensor([ids]), E, torch.tensor([pos]), torch.tensor([im]),
                           torch.ones(1, n, dtype=torch.long), torch.tensor([n - 1]))[0]))
    return torch.tensor(out)


def test_shared_prompt_and_steps_equal_separate_rows_and_dense_reference():
    m = small()
    E = torch.randn(5, 64)
    shared = _rows(0)
    # steps: prefixes of one response, each ending in the template tail + suffix
    ids, pos, im = _rows(1)[2]
    body = ids[:-3]
    steps = [(body[:k] + [6, 2, 5], pos[:k] + [0] * 3, im[:k] + [0.0] * 3) for k in (34, 37, 40, len(body))]
    packs = [share_prefix(shared), share_prefix(steps)]
    f = collate_packed(packs, pad_id=2)
    with torch.no_grad():
        got = m.forward_packed(
            f["input_ids"], E, f["image_positions"], f["im_mask"], f["attention_mask"], f["branch_start"],
            f["branch_mask"], f["readout_index"])
        pos_ids, allowed = packed_dense(f["attention_mask"], f["branch_start"], f["branch_mask"])
        dense = m(f["input_ids"], E, f["image_positions"], f["im_mask"], torch.ones_like(f["input_ids"]),
                  f["readout_index"], position_ids=pos_ids, allowed=allowed)
        sep_a, sep_b = _separate(m, shared, E), _separate(m, steps, E)
    assert got.shape == (2, 4)
    assert torch.allclose(got[0], sep_a, atol=1e-5), (got[0], sep_a)
    assert torch.allclose(got[1], sep_b, atol=1e-5), (got[1], sep_b)
    assert torch.allclose(got, dense, atol=1e-5)
    # the trunk is shared: the prompt (incl. its image) is computed once
    assert len(packs[0]["trunk"][0]) >= 33 and all(a >= 33 for a, *_ in packs[0]["branches"])


def test_branch_sees_neither_other_branches_nor_later_trunk():
    m = small()
    E = torch.randn(5, 64)
    rows = _rows(2)
    f = collate_packed([share_prefix(rows)], pad_id=2)
    args = lambda f: (f["input_ids"], E, f["image_positions"], f["im_mask"], f["attention_mask"], f["branch_start"],
                      f["branch_mask"], f["readout_index"])
    with torch.no_grad():
        base = m.forward_packed(*args(f))
        g = {k: v.clone() for k, v in f.items()}
        P = g["attention_mask"].shape[1]
        L = g["branch_mask"].shape[2]
        g["input_ids"][0, P + 1] = 299  # second position of branch 0: only branch 0 may change
        moved = m.forward_packed(*args(g))
    assert not torch.allclose(base[0, 0], moved[0, 0])
    assert torch.equal(base[0, 1:], moved[0, 1:])
    assert L >= 2


def test_default_forward_unchanged_by_optional_inputs():
    m = small()
    E = torch.randn(5, 64)
    ids, pos, im = _rows(3)[0]
    n = len(ids)
    a = (torch.tensor([ids]), E, torch.tensor([pos]), torch.tensor([im]), torch.ones(1, n, dtype=torch.long))
    with torch.no_grad():
        plain = m(*a, torch.tensor([n - 1]))
        causal = torch.ones(n, n, dtype=torch.bool).tril().unsqueeze(0)
        explicit = m(*a, torch.tensor([[n - 1, n - 2]]), position_ids=torch.arange(n).unsqueeze(0), allowed=causal)
    assert plain.shape == (1,) and explicit.shape == (1, 2)
    assert torch.allclose(explicit[0, 0], plain[0], atol=1e-6)
