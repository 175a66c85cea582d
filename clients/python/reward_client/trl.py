"""TRL reward functions (GRPOTrainer, RLOOTrainer) backed by the reward service.

    from trl import GRPOTrainer
    from reward_client.trl import make_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=make_reward_func("http://rm-host:8080"), ...)

TRL calls a reward function as f(prompts=..., completions=..., completion_ids=..., **columns) — every other
dataset column as a list, plus trainer_state — and wants one float (or None) per completion. Standard datasets
give strings, conversational ones message lists; tool-using rollouts add `tool` messages and assistant
`tool_calls` with content None; vision-language datasets put images in the messages ({"type": "image",
"image": PIL}) or as {"type": "image"} placeholders with the images in the `images` / `image` column. All of it
is sent in /get_reward's native `messages` form; images become base64 image parts.
"""
import logging

from . import AsyncRewardClient, RewardClient
from ._fallback import score_batch, score_batch_async
from .media import to_service_messages

log = logging.getLogger("reward_client")


def to_messages(prompt, completion, images=None):
    if isinstance(prompt, list):  # conversational: [{"role", "content"}, ...]
        reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return to_service_messages(list(prompt) + list(reply), images)
    return to_service_messages([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], images)


def _images(kwargs, n):
    for key in ("images", "image"):
        col = kwargs.get(key)
        if col is not None and len(col) == n:
            return list(col)
    return [None] * n


def _samples(prompts, completions, kwargs):
    imgs = _images(kwargs, len(prompts))
    out = []
    for p, c, im in zip(prompts, completions, imgs):
        try:
            out.append(to_messages(p, c, im))
        except (TypeError, ValueError, OSError) as err:  # this sample only: unreadable image, odd content
            out.append(err)
    return out


def make_reward_func(base_url, normalize=False, model=None, fallback=0.0, chunk_size=256, **client_kwargs):
    """A TRL reward function. A sample the service refuses (or that cannot be converted) scores `fallback`
    (logged; None makes TRL treat it as missing, NaN); an unreachable service still raises."""
    client = RewardClient(base_url, model=model, chunk_size=chunk_size, **client_kwargs)
    options = {"normalize": True} if normalize else None

    def reward_service(prompts, completions, **kwargs):
        samples = _samples(prompts, completions, kwargs)
        return score_batch(lambda ms: client.get_reward(messages=ms, options=options)["rewards"], samples, fallback, "TRL")

    reward_service.__name__ = "reward_service"
    return reward_service


def make_async_reward_func(base_url, normalize=False, model=None, fallback=0.0, chunk_size=256, **client_kwargs):
    """The same as an async function (TRL runs async reward functions concurrently with the others)."""
    client = AsyncRewardClient(base_url, model=model, chunk_size=chunk_size, **client_kwargs)
    options = {"normalize": True} if normalize else None

    async def reward_service(prompts, completions, **kwargs):
        samples = _samples(prompts, completions, kwargs)

        async def call(ms):
            return (await client.get_reward(messages=ms, options=options))["rewards"]

        return await score_batch_async(call, samples, fallback, "TRL")

    reward_service.__name__ = "reward_service"
    return reward_service
