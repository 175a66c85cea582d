"""Each framework's real calling convention against the REAL service (conftest.py starts it): OpenRLHF's
remote_rm_url handling and shard merge, TRL's reward-function call, verl's reward managers (reward loop and
legacy) and compute_score, and the clients themselves (sync, asyncio, model, request())."""
import asyncio
import base64
import json
import logging
import os
import sys

import numpy as np
import pytest
import requests
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from reward_client import AsyncRewardClient, RewardClient, RewardServiceError, encode_image  # noqa: E402
from reward_client.trl import make_async_reward_func, make_reward_func  # noqa: E402
import verl_shapes as vs  # noqa: E402

FIXTURES = os.path.abspath(os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures"))
README = os.path.abspath(os.path.join(HERE, "..", "README.md"))
TOL = 1e-4
Q, A = "Please calculate 2 + 5.", "The answer is 7."
QWEN_SYS = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def qwen_prompt(q):
    return "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % (QWEN_SYS, q)


def direct(url, conversations):
    return RewardClient(url).score([{"messages": c} for c in conversations])["scores"]


def conv(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


# --- OpenRLHF ---------------------------------------------------------------------------------------------
def openrlhf_post(url, data):
    """request_api_wrapper: requests.post(json=..., timeout=180), raise_for_status, json()["rewards"]."""
    r = requests.post(url=url, json=data, headers={"Content-Type": "application/json"}, timeout=180)
    r.raise_for_status()
    return r.json()


def test_openrlhf_readme_recipe_url_is_one_server_and_scores(service_url):
    # The recipe as documented (host swapped): OpenRLHF splits --remote_rm_url at commas.
    text = open(README).read()
    recipe = next(line for line in text.splitlines() if "--remote_rm_url" in line and "clip=" in line)
    rm_url = recipe.split("'")[1].replace("http://rm-host:8080", service_url)
    servers = rm_url.split(",")
    assert len(servers) == 1, servers
    queries = [qwen_prompt(Q) + A + "<|im_end|>"]
    out = openrlhf_post(servers[0], {"query": queries, "prompts": [qwen_prompt(Q)], "labels": [None]})
    assert out["shaping"]["clip"] == {"min": -5, "max": 5}
    assert -5 <= out["rewards"][0] <= 5
    assert out["extra_logs"]["template_qwen2"] == [1], "auto detected Qwen2.5 and reported it"


def test_openrlhf_shards_merge_with_an_empty_one(service_url):
    """update_samples_with_rewards: keys of the first shard's extra_logs, torch.as_tensor + cat per key."""
    url = service_url + "/get_reward"
    infos = [openrlhf_post(url, {"query": [], "prompts": [], "labels": []}),
             openrlhf_post(url, {"query": [qwen_prompt(Q) + A], "prompts": [qwen_prompt(Q)], "labels": [None]})]
    rewards = torch.cat([torch.as_tensor(i["rewards"]) for i in infos])
    logs = {k: torch.cat([torch.as_tensor(i["extra_logs"][k]) for i in infos]) for k in infos[0]["extra_logs"]}
    assert rewards.shape == (1,) and logs["raw_reward"].shape == (1,)


def test_openrlhf_09_whole_rollout_in_one_request(service_url):
    n = 1024
    qs = [qwen_prompt("Please calculate %d + %d." % (i % 10, i % 7)) + "It is %d." % (i % 10 + i % 7) for i in range(n)]
    out = openrlhf_post(service_url + "/get_reward?template=qwen2", {"query": qs, "prompts": [""] * n, "labels": [None] * n})
    assert len(out["rewards"]) == n
    ref = direct(service_url, [conv("Please calculate %d + %d." % (i % 10, i % 7), "It is %d." % (i % 10 + i % 7)) for i in (0, 513, 1023)])
    for j, i in enumerate((0, 513, 1023)):
        assert abs(out["rewards"][i] - ref[j]) < TOL


# --- TRL ----------------------------------------------------------------------------------------------------
def trl_call(fn, prompts, completions, **columns):
    """GRPOTrainer._calculate_rewards: f(prompts=, completions=, completion_ids=, **columns, trainer_state=)."""
    out = fn(prompts=prompts, completions=completions, completion_ids=[[1, 2]] * len(prompts), trainer_state=None, **columns)
    if asyncio.iscoroutine(out):
        out = asyncio.run(out)
    return [r if r is not None else float("nan") for r in out]


def test_trl_tools_and_a_bad_sample(service_url, caplog):
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 5}}}
    prompt = [{"role": "user", "content": Q}]
    tool_completion = [{"role": "assistant", "content": None, "tool_calls": [call]},
                       {"role": "tool", "name": "add", "content": "7"},
                       {"role": "assistant", "content": A}]
    bad = [{"role": "assistant", "content": [{"type": "image", "data": base64.b64encode(b"not an image").decode()}]}]
    for make in (make_reward_func, make_async_reward_func):
        fn = make(service_url, fallback=-99.0)
        with caplog.at_level(logging.WARNING, logger="reward_client"):
            out = trl_call(fn, [prompt, prompt, prompt], [tool_completion, bad, [{"role": "assistant", "content": A}]],
                           answer=["7", "7", "7"])
        rendered = [{"role": "user", "content": Q}, {"role": "assistant", "content": '{"name":"add","arguments":{"a":2,"b":5}}'},
                    {"role": "user", "content": "7"}, {"role": "assistant", "content": A}]
        ref = direct(service_url, [rendered, conv(Q, A)])
        assert abs(out[0] - ref[0]) < TOL and abs(out[2] - ref[1]) < TOL
        assert out[1] == -99.0, "one bad sample scores the fallback, the others are scored"
        assert "sample 1 scored as fallback -99.0" in caplog.text


def test_trl_vision_language_images(service_url):
    from PIL import Image

    png = os.path.join(FIXTURES, "images", "real", "imagereward-1.webp")
    pil = Image.open(png).convert("RGB")
    arr = np.asarray(pil)
    placeholder = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    inline = [{"role": "user", "content": [{"type": "image", "image": pil}, {"type": "text", "text": "What is shown?"}]}]
    fn = make_reward_func(service_url, fallback=None)
    out = trl_call(fn, [placeholder, placeholder, inline], ["A picture."] * 3, images=[[pil], [arr], None])
    path_out = trl_call(fn, [placeholder], ["A picture."], image=[png])
    assert not any(np.isnan(out)) and not np.isnan(path_out[0])
    # PIL and numpy encode the same pixels (lossless PNG): same score.
    assert abs(out[0] - out[1]) < TOL and abs(out[0] - out[2]) < TOL
    part = encode_image(arr)
    assert base64.b64decode(part["data"])[:8] == b"\x89PNG\r\n\x1a\n"


# --- verl ---------------------------------------------------------------------------------------------------
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def stock_batch(n=3):
    """verl's stock layout (gsm8k preprocessing): prompt in the top-level column, no prompt in extra_info."""
    tok = vs.CharTokenizer(SPECIALS)
    qs = ["Please calculate %d + 3." % i for i in range(n)]
    ans = ["It is %d." % (i + 3) for i in range(n)]
    nt = {"data_source": ["openai/gsm8k"] * n, "reward_model": [{"ground_truth": str(i + 3)} for i in range(n)],
          "extra_info": [{"split": "train", "index": i} for i in range(n)]}
    batch = vs.make_batch(tok, [qwen_prompt(q) for q in qs], [a + "<|im_end|>" for a in ans], nt)
    return tok, batch, [conv(q, a) for q, a in zip(qs, ans)]


@pytest.fixture
def verl_module(service_url, monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_URL", service_url)
    regs = vs.install_fake_registries()
    sys.modules.pop("reward_client.verl", None)
    path = os.path.join(HERE, "..", "examples", "verl_reward.py")
    yield path, regs
    for m in [m for m in sys.modules if m == "verl" or m.startswith("verl.")]:
        sys.modules.pop(m)


def test_verl_reward_loop_manager_from_importlib(verl_module, service_url):
    path, _ = verl_module
    tok, batch, convs = stock_batch()
    cls = vs.load_by_path(path, "RewardServiceManager")  # reward.reward_manager.source=importlib
    manager = cls(config={}, tokenizer=tok, compute_score=None)

    async def loop():  # the reward loop runs run_single per sample, concurrently
        return await asyncio.gather(*(manager.run_single(batch[i:i + 1]) for i in range(len(batch))))

    results = asyncio.run(loop())
    ref = direct(service_url, convs)
    for r, want in zip(results, ref):
        assert abs(r["reward_score"] - want) < TOL, "prompt decoded from the batch; Qwen's default system prompt dropped"
        assert set(r["reward_extra_info"]) == {"rm_reward"}


def test_verl_legacy_manager_registered_by_custom_reward_function(verl_module, service_url):
    path, regs = verl_module
    tok, batch, convs = stock_batch()
    fn = vs.load_by_path(path, "compute_score")  # custom_reward_function.path is loaded first ...
    cls = regs["verl.workers.reward_manager"]("reward_service")  # ... then reward_model.reward_manager resolves
    assert regs["verl.experimental.reward_loop.reward_manager"]("reward_service").__name__ == "RewardServiceManager"
    manager = cls(tokenizer=tok, num_examine=0, compute_score=fn, reward_fn_key="data_source")
    out = manager(batch, return_dict=True)
    tensor = out["reward_tensor"]
    ref = direct(service_url, convs)
    lengths = batch.batch["attention_mask"][:, -batch.batch["responses"].shape[-1]:].sum(-1)
    for i in range(len(batch)):
        assert abs(float(tensor[i, int(lengths[i]) - 1]) - ref[i]) < TOL
        assert float(tensor[i].abs().sum() - abs(tensor[i, int(lengths[i]) - 1])) == 0.0
    with pytest.raises(ValueError, match="Unknown reward manager: batch_typo"):
        regs["verl.workers.reward_manager"]("batch_typo")


def test_verl_compute_score_with_the_preprocessing_step(verl_module, service_url):
    path, _ = verl_module
    rows = [{"data_source": "openai/gsm8k", "prompt": np.array([{"role": "user", "content": Q}], dtype=object),
             "reward_model": {"ground_truth": "7"}, "extra_info": {"split": "train", "index": 0}}]
    prep = vs.load_by_path(path, "copy_prompt_to_extra_info")
    rows = [prep(r) for r in rows]
    ref = direct(service_url, [conv(Q, A)])[0]
    cs = vs.load_by_path(path, "compute_score")
    # naive manager (legacy and reward loop): keyword call, extra_info also carries num_turns etc.
    extra = dict(rows[0]["extra_info"], num_turns=None, rollout_reward_scores={})
    assert abs(cs(data_source="openai/gsm8k", solution_str=A, ground_truth="7", extra_info=extra) - ref) < TOL
    cs_async = vs.load_by_path(path, "compute_score_async")
    assert asyncio.iscoroutinefunction(cs_async)
    assert abs(asyncio.run(cs_async(data_source="openai/gsm8k", solution_str=A, ground_truth="7", extra_info=extra)) - ref) < TOL
    batch_fn = vs.load_by_path(path, "compute_score_batch")
    got = batch_fn(data_sources=["a", "b"], solution_strs=[A, A], ground_truths=["7", "7"], extra_infos=[extra, extra])
    assert all(abs(g - ref) < TOL for g in got)
    with pytest.raises(ValueError, match="RewardServiceManager"):
        cs(data_source="openai/gsm8k", solution_str=A, ground_truth="7", extra_info={"split": "train"})


# --- the clients ----------------------------------------------------------------------------------------------
def test_clients_model_argument_request_and_asyncio(service_url):
    rm = RewardClient(service_url)
    name = rm.models()["default_model"]
    assert rm.score([{"messages": conv(Q, A)}], model=name)["model"]["name"] == name
    with pytest.raises(RewardServiceError) as err:
        rm.get_reward(messages=[conv(Q, A)], model="no-such-model")
    assert (err.value.status, err.value.code) == (404, "unknown_model")
    metrics = rm.request("GET", "/metrics")
    assert metrics.content_type == "text/plain" and "scorer_requests_total" in metrics.text
    chunked = rm.get_reward(messages=[conv(Q, A)] * 5, chunk_size=2)
    assert len(chunked["rewards"]) == 5 and len(chunked["extra_logs"]["raw_reward"]) == 5

    async def many():
        c = AsyncRewardClient(service_url, model=name)
        outs = await asyncio.gather(*(c.get_reward(messages=[conv(Q, A)]) for _ in range(16)))
        return outs, (await c.request("GET", "/healthz")).json()

    outs, health = asyncio.run(many())
    assert health == {"status": "ok"}
    assert len({round(o["rewards"][0], 5) for o in outs}) == 1
    assert abs(outs[0]["rewards"][0] - direct(service_url, [conv(Q, A)])[0]) < TOL
    assert json.loads(json.dumps(outs[0]))["model"]["name"] == name
