"""verl custom reward functions backed by the reward service.

verl passes only the decoded *response* (`solution_str`) to a custom reward function, so keep the prompt in the
dataset's `extra_info` (e.g. extra_info={"prompt": [{"role": "user", "content": question}]} or a string).

Per sample (default reward manager):
    custom_reward_function.path=clients/python/examples/verl_reward.py custom_reward_function.name=compute_score
Batched, one HTTP request per batch (reward_model.reward_manager=batch):
    custom_reward_function.path=clients/python/examples/verl_reward.py custom_reward_function.name=compute_score_batch

The service URL comes from REWARD_SERVICE_URL (default http://127.0.0.1:8080).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reward_client import RewardClient  # noqa: E402

_client = None


def client():
    global _client
    if _client is None:
        _client = RewardClient(os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8080"))
    return _client


def _messages(solution_str, extra_info):
    prompt = (extra_info or {}).get("prompt")
    if prompt is None:
        raise ValueError("put the prompt in extra_info['prompt'] (a string or chat messages)")
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return turns + [{"role": "assistant", "content": solution_str}]


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return client().get_reward(messages=[_messages(solution_str, extra_info)])["rewards"][0]


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, **kwargs):
    messages = [_messages(s, e) for s, e in zip(solution_strs, extra_infos)]
    return client().get_reward(messages=messages)["rewards"]
