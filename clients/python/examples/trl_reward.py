"""TRL (GRPOTrainer / RLOO) reward function backed by the reward service.

    from trl import GRPOTrainer
    from trl_reward import make_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=make_reward_func("http://rm-host:8080"), ...)

TRL calls reward functions with keyword arguments `prompts`, `completions` (+ every dataset column) and wants
one float per completion. Conversational datasets give message lists, standard ones give strings; both are
turned into chat messages here and sent in one /get_reward request (the service batches across requests too).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reward_client import RewardClient  # noqa: E402


def to_messages(prompt, completion):
    if isinstance(prompt, list):  # conversational: [{"role", "content"}, ...]
        reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return list(prompt) + list(reply)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


def make_reward_func(base_url, normalize=False, **client_kwargs):
    client = RewardClient(base_url, **client_kwargs)
    options = {"normalize": True} if normalize else None

    def reward_service(prompts, completions, **kwargs):
        messages = [to_messages(p, c) for p, c in zip(prompts, completions)]
        return client.get_reward(messages=messages, options=options)["rewards"]

    return reward_service
