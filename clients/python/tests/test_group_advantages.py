"""GRPO group advantages through each framework's helper, against the REAL service (conftest.py starts it):
TRL reward functions, verl's legacy manager and compute_score_batch, OpenRLHF's URL and reward_func, and the
clients' chunking. Expected values are computed here from the service's plain rewards (no group) with
torch.std (unbiased), so a helper that drops the group, the variant or `on` fails."""
import asyncio
import base64
import logging
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from reward_client import AsyncRewardClient, RewardClient  # noqa: E402
from reward_client.openrlhf import remote_rm_url  # noqa: E402
from reward_client.trl import make_async_reward_func, make_reward_func  # noqa: E402
import verl_shapes as vs  # noqa: E402
from test_real_service import SPECIALS, conv, openrlhf_post, qwen_prompt, trl_call  # noqa: E402

TOL = 1e-3  # advantages divide reward differences (1e-4 apart between calls at most) by group stds of ~0.5+
QS = ["Please calculate 2 + 5.", "What is the capital of France?"]
AS = [["The answer is 7.", "It is 12.", "I do not know, sorry."],
      ["Paris.", "The capital of France is Berlin.", "France."]]
BAD = [{"role": "assistant", "content": [{"type": "image", "data": base64.b64encode(b"not an image").decode()}]}]


def expected(rewards, ids, variant, eps=1e-4):
    out = []
    for i, g in enumerate(ids):
        members = [r for r, h in zip(rewards, ids) if h == g]
        mean = sum(members) / len(members)
        std = torch.tensor(members, dtype=torch.float64).std().item() if len(members) > 1 else 0.0
        d = rewards[i] - mean
        out.append(d if variant == "dr_grpo" else (0.0 if d == 0 else d / (std + eps)))
    return out


def plain_rewards(url, convs, **options):
    """The rewards the helpers' advantages are computed on, from a plain call (no group)."""
    return RewardClient(url).get_reward(messages=convs, options=options or None)["rewards"]


def close(got, want, tol=TOL):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert abs(g - w) < tol, (got, want)


def interleaved():
    """TRL-like rows, but the two prompts' completions interleaved (group by prompt must still find them)."""
    prompts, completions, convs, ids = [], [], [], []
    for k in range(3):
        for p in range(2):
            prompts.append(QS[p])
            completions.append(AS[p][k])
            convs.append(conv(QS[p], AS[p][k]))
            ids.append(p)
    return prompts, completions, convs, ids


# --- TRL ----------------------------------------------------------------------------------------------------
def test_trl_group_size_and_prompt_grouping_both_variants(service_url):
    prompts = [q for q in QS for _ in range(3)]
    completions = [a for answers in AS for a in answers]
    convs = [conv(q, a) for q, a in zip(prompts, completions)]
    rewards = plain_rewards(service_url, convs)
    for make in (make_reward_func, make_async_reward_func):
        for variant in ("grpo", "dr_grpo"):
            fn = make(service_url, advantage=variant, group_size=3)
            close(trl_call(fn, prompts, completions), expected(rewards, [0, 0, 0, 1, 1, 1], variant))
    p2, c2, convs2, ids2 = interleaved()
    r2 = plain_rewards(service_url, convs2)
    close(trl_call(make_reward_func(service_url, advantage="grpo"), p2, c2), expected(r2, ids2, "grpo"))
    # a dataset column names the groups (here: one group per prompt, given by the column)
    by_col = make_async_reward_func(service_url, advantage="dr_grpo", group_by="qid")
    close(trl_call(by_col, p2, c2, qid=["a" if i == 0 else "b" for i in ids2]), expected(r2, ids2, "dr_grpo"))
    assert make_reward_func(service_url)(prompts=QS, completions=[AS[0][0], AS[1][0]]) == pytest.approx(
        plain_rewards(service_url, [conv(QS[0], AS[0][0]), conv(QS[1], AS[1][0])]), abs=1e-4), "default: rewards"


def test_trl_advantage_on_raw_vs_shaped(service_url):
    prompts = [q for q in QS for _ in range(3)]
    completions = [a for answers in AS for a in answers]
    convs = [conv(q, a) for q, a in zip(prompts, completions)]
    raw = plain_rewards(service_url, convs)
    shaped = plain_rewards(service_url, convs, normalize=True)
    ids = [0, 0, 0, 1, 1, 1]
    # dr_grpo keeps the scale: z-normalised (shaped) and raw differences differ unless the RM std is 1
    assert max(abs(a - b) for a, b in zip(expected(raw, ids, "dr_grpo"), expected(shaped, ids, "dr_grpo"))) > 10 * TOL
    fn_raw = make_reward_func(service_url, normalize=True, advantage="dr_grpo", group_size=3, advantage_on="raw")
    fn_shaped = make_reward_func(service_url, normalize=True, advantage="dr_grpo", group_size=3)
    close(trl_call(fn_raw, prompts, completions), expected(raw, ids, "dr_grpo"))
    close(trl_call(fn_shaped, prompts, completions), expected(shaped, ids, "dr_grpo"))


def test_trl_a_bad_sample_leaves_its_group_and_gets_the_fallback(service_url, caplog):
    prompt = [{"role": "user", "content": QS[0]}]
    completions = [[{"role": "assistant", "content": a}] for a in AS[0]] + [BAD]
    good = [conv(QS[0], a) for a in AS[0]]
    rewards = plain_rewards(service_url, good)
    for make in (make_reward_func, make_async_reward_func):
        fn = make(service_url, advantage="grpo", group_size=4, fallback=0.0)
        with caplog.at_level(logging.WARNING, logger="reward_client"):
            out = trl_call(fn, [prompt] * 4, completions)
        close(out[:3], expected(rewards, [0, 0, 0], "grpo"))
        assert out[3] == 0.0
        assert "sample 3 has no advantage" in caplog.text


def test_trl_group_size_must_divide_the_batch(service_url):
    fn = make_reward_func(service_url, advantage="grpo", group_size=4)
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        fn(prompts=QS * 3, completions=["x"] * 6)
    with pytest.raises(ValueError, match="group_size / group_by need advantage"):
        make_reward_func(service_url, group_size=4)
    with pytest.raises(ValueError, match="advantage must be one of"):
        make_reward_func(service_url, advantage="ppo")


# --- verl ---------------------------------------------------------------------------------------------------
def grpo_batch():
    """verl's rollout layout, samples interleaved; uids as for a dataset that holds each prompt twice (rows
    with 2 and 1 rollouts), so grouping by uid and by prompt differ. Returns group indices by uid."""
    tok = vs.CharTokenizer(SPECIALS)
    prompts, responses, uids, convs = [], [], [], []
    for k in range(3):
        for p in range(2):
            prompts.append(qwen_prompt(QS[p]))
            responses.append(AS[p][k] + "<|im_end|>")
            uids.append("uid-%d" % (p if k < 2 else 2 + p))
            convs.append(conv(QS[p], AS[p][k]))
    nt = {"data_source": ["x"] * 6, "uid": uids, "extra_info": [{"index": i} for i in range(6)]}
    return tok, vs.make_batch(tok, prompts, responses, nt), convs, [int(u[-1]) for u in uids], [i % 2 for i in range(6)]


@pytest.fixture
def verl_env(service_url, monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_URL", service_url)
    regs = vs.install_fake_registries()
    sys.modules.pop("reward_client.verl", None)
    yield monkeypatch, regs
    for m in [m for m in sys.modules if m == "verl" or m.startswith("verl.")]:
        sys.modules.pop(m)


def test_verl_legacy_manager_puts_uid_group_advantages_in_the_reward_tensor(verl_env, service_url):
    monkeypatch, regs = verl_env
    tok, batch, convs, ids, by_prompt = grpo_batch()
    rewards = plain_rewards(service_url, convs)
    from reward_client.verl import RewardServiceRewardManager

    lengths = batch.batch["attention_mask"][:, -batch.batch["responses"].shape[-1]:].sum(-1)
    for variant in ("grpo", "dr_grpo"):
        monkeypatch.setenv("REWARD_SERVICE_ADVANTAGE", variant)
        out = RewardServiceRewardManager(tok)(batch, return_dict=True)
        got = [float(out["reward_tensor"][i, int(lengths[i]) - 1]) for i in range(len(batch))]
        close(got, expected(rewards, ids, variant))
        close(out["reward_extra_info"]["rm_reward"], rewards, 1e-4)
    monkeypatch.setenv("REWARD_SERVICE_GROUP", "prompt")
    out = RewardServiceRewardManager(tok)(batch, return_dict=True)
    close(out["reward_extra_info"]["rm_advantage"], expected(rewards, by_prompt, "dr_grpo"))
    # REWARD_SERVICE_GROUP=3: consecutive triples, which here mix the two prompts
    monkeypatch.setenv("REWARD_SERVICE_GROUP", "3")
    out = RewardServiceRewardManager(tok)(batch, return_dict=True)
    close(out["reward_extra_info"]["rm_advantage"], expected(rewards, [0, 0, 0, 1, 1, 1], "dr_grpo"))


def test_verl_compute_score_batch_dicts_and_per_sample_entry_points_refuse(verl_env, service_url):
    monkeypatch, _ = verl_env
    monkeypatch.setenv("REWARD_SERVICE_ADVANTAGE", "grpo")
    from reward_client import verl

    _, _, convs, _, by_prompt = grpo_batch()
    rewards = plain_rewards(service_url, convs)
    extra = [{"prompt": [c[0]]} for c in convs]
    got = verl.compute_score_batch(["x"] * 6, [c[1]["content"] for c in convs], ["7"] * 6, extra)
    close([g["score"] for g in got], expected(rewards, by_prompt, "grpo"))
    close([g["rm_reward"] for g in got], rewards, 1e-4)
    with pytest.raises(ValueError, match="compute_score scores one sample per call"):
        verl.compute_score("x", AS[0][0], "7", extra[0])
    with pytest.raises(ValueError, match="RewardServiceManager scores one sample per call"):
        verl.RewardServiceManager(config={}, tokenizer=None)
    monkeypatch.setenv("REWARD_SERVICE_GROUP", "uid")
    with pytest.raises(ValueError, match="compute_score_batch has no uid"):
        verl.compute_score_batch(["x"] * 6, [c[1]["content"] for c in convs], ["7"] * 6, extra)


# --- OpenRLHF -----------------------------------------------------------------------------------------------
def test_openrlhf_url_with_group_size_and_reward_func_advantages(service_url, monkeypatch):
    prompts = [qwen_prompt(q) for q in QS for _ in range(3)]
    queries = [p + a + "<|im_end|>" for p, answers in zip(prompts[::3], AS) for a in answers]
    convs = [conv(q, a) for q, answers in zip(QS, AS) for a in answers]
    rewards = plain_rewards(service_url, convs)
    ids = [0, 0, 0, 1, 1, 1]
    url = remote_rm_url(service_url, template="qwen2", group_size=3, advantage_on="raw")
    out = openrlhf_post(url, {"query": queries, "prompts": prompts, "labels": [None] * 6})
    close(out["extra_logs"]["advantage"], expected(rewards, ids, "grpo"))
    close(out["extra_logs"]["advantage_dr_grpo"], expected(rewards, ids, "dr_grpo"))
    assert out["advantages"]["on"] == "raw"
    assert "," not in remote_rm_url(service_url, model="a,b")  # escaped: OpenRLHF splits the flag at commas
    with pytest.raises(ValueError, match="commas"):
        remote_rm_url("http://rm-a:8080,http://rm-b:8080")

    path = os.path.join(HERE, "..", "examples", "openrlhf_reward.py")
    reward_func = vs.load_by_path(path, "reward_func")  # --remote_rm_url /path/openrlhf_reward.py
    monkeypatch.setenv("REWARD_SERVICE_URL", service_url)
    monkeypatch.setenv("REWARD_SERVICE_TEMPLATE", "qwen2")
    plain = reward_func(queries, prompts, [None] * 6)
    close(plain["rewards"].tolist(), rewards, 1e-4)
    monkeypatch.setenv("REWARD_SERVICE_ADVANTAGE", "dr_grpo")
    order = [0, 3, 1, 4, 2, 5]  # interleaved: grouped by the prompt strings
    got = reward_func([queries[i] for i in order], [prompts[i] for i in order], [None] * 6)
    close(got["rewards"].tolist(), expected([rewards[i] for i in order], [ids[i] for i in order], "dr_grpo"))
    close(got["extra_logs"]["reward"].tolist(), [rewards[i] for i in order], 1e-4)
    assert got["scores"].shape == (6,)


# --- the clients ------------------------------------------------------------------------------------------
def test_clients_chunk_group_ids_whole_and_rank_groups(service_url):
    convs = [conv(q, a) for q, answers in zip(QS, AS) for a in answers] + [conv(QS[0], "Seven.")]
    ids = ["p", "p", "p", "q", "q", "q", "r"]
    rm = RewardClient(service_url)
    whole = rm.get_reward(messages=convs, group={"ids": ids})
    chunked = rm.get_reward(messages=convs, group={"ids": ids}, chunk_size=2)
    close(chunked["advantages"]["grpo"], whole["advantages"]["grpo"], 1e-4)
    assert chunked["advantages"]["group"] == whole["advantages"]["group"] == [0, 0, 0, 1, 1, 1, 2]
    assert chunked["advantages"]["ids"] == ids
    close(whole["advantages"]["grpo"], expected(whole["rewards"], ids, "grpo"), 1e-9)

    body = {"prompt": QS[0], "candidates": AS[0] + AS[1]}
    got = rm.rank(body, group={"size": 3})
    close(got["advantages"]["dr_grpo"], expected(got["scores"], [0, 0, 0, 1, 1, 1], "dr_grpo"), 1e-9)
    got = asyncio.run(AsyncRewardClient(service_url).rank(dict(body, normalize=True), group={"ids": [1, 2] * 3, "on": "normalized"}))
    close(got["advantages"]["grpo"], expected(got["normalized_scores"], [1, 2] * 3, "grpo"), 1e-9)
