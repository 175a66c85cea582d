"""TRL reward functions (GRPOTrainer, RLOOTrainer) backed by the reward service.

    from trl import GRPOTrainer
    from reward_client.trl import make_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=make_reward_func("http://rm-host:8080"), ...)

TRL calls a reward function as f(prompts=..., completions=..., completion_ids=..., **columns) — every other
dataset column as a list, plus trainer_state — and wants one float (or None) per completion. Standard datasets
give strings, conversational ones message lists; tool-using rollouts add `tool` messages and assistant
`tool_calls` with content None; vision-language datasets put images in the messages ({"type": "image",
"image": PIL}) or as {"type": "image"} placeholders with the images in the `images` / `image` column. All of it
is sent in /get_reward's native `messages` form; images become base64 image parts. With advantage="grpo" |
"dr_grpo" the function returns the service's group advantages instead (see make_reward_func).
"""
import logging

from . import AsyncRewardClient, RewardClient
from ._fallback import score_batch, score_batch_async
from ._group import AdvantageSpec, group_ids, rows, score_groups, score_groups_async
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


def _group_keys(group_by, prompts, samples, kwargs):
    """What makes completions one GRPO group: the prompt (as converted, images included), or a dataset column."""
    if group_by == "prompt":
        return [("unscorable", i) if isinstance(s, Exception) else s[: len(p) if isinstance(p, list) else 1]
                for i, (p, s) in enumerate(zip(prompts, samples))]
    col = kwargs.get(group_by)
    if col is None or len(col) != len(samples):
        raise ValueError("group_by=%r: TRL passed no such column with one value per completion" % (group_by,))
    return list(col)


def _advantages(advantage, group_size, group_by, advantage_on, epsilon):
    """(spec, ids_of) for the advantage mode, or None for plain rewards (the default)."""
    if advantage is None:
        if group_size is not None or group_by is not None:
            raise ValueError("group_size / group_by need advantage='grpo' or 'dr_grpo'")
        return None
    if group_size is not None and group_by is not None:
        raise ValueError("give group_size or group_by, not both")
    spec = AdvantageSpec(advantage, advantage_on, epsilon)
    by = None if group_size is not None else group_by or "prompt"

    def ids_of(prompts, samples, kwargs):
        keys = None if by is None else _group_keys(by, prompts, samples, kwargs)
        return group_ids(len(samples), size=group_size, keys=keys)

    return spec, ids_of


def make_reward_func(base_url, normalize=False, model=None, fallback=0.0, chunk_size=256, advantage=None,
                     group_size=None, group_by=None, advantage_on="shaped", epsilon=None, **client_kwargs):
    """A TRL reward function. A sample the service refuses (or that cannot be converted) scores `fallback`
    (logged; None makes TRL treat it as missing, NaN); an unreachable service still raises.

    advantage="grpo" | "dr_grpo": return each completion's group-normalised advantage (computed by the service
    on the `advantage_on` = "shaped" | "raw" rewards) instead of its reward. Groups: `group_size` consecutive
    completions (GRPOConfig.num_generations; the call's batch must be a multiple), or completions with the
    same `group_by` value: "prompt" (the default) or a dataset column. A refused sample gets `fallback` and
    leaves its group; the others keep theirs."""
    client = RewardClient(base_url, model=model, chunk_size=chunk_size, **client_kwargs)
    options = {"normalize": True} if normalize else None
    grouped = _advantages(advantage, group_size, group_by, advantage_on, epsilon)

    def reward_service(prompts, completions, **kwargs):
        samples = _samples(prompts, completions, kwargs)
        if grouped is None:
            return score_batch(lambda ms: client.get_reward(messages=ms, options=options)["rewards"], samples, fallback, "TRL")
        spec, ids_of = grouped
        ids = ids_of(prompts, samples, kwargs)

        def call(idx):
            return rows(client.get_reward(messages=[samples[i] for i in idx], options=options,
                                          group=spec.group([ids[i] for i in idx])))

        return [fallback if r is None else r[spec.advantage] for r in score_groups(call, samples, "TRL")]

    reward_service.__name__ = "reward_service"
    return reward_service


def make_async_reward_func(base_url, normalize=False, model=None, fallback=0.0, chunk_size=256, advantage=None,
                           group_size=None, group_by=None, advantage_on="shaped", epsilon=None, **client_kwargs):
    """The same as an async function (TRL runs async reward functions concurrently with the others)."""
    client = AsyncRewardClient(base_url, model=model, chunk_size=chunk_size, **client_kwargs)
    options = {"normalize": True} if normalize else None
    grouped = _advantages(advantage, group_size, group_by, advantage_on, epsilon)

    async def reward_service(prompts, completions, **kwargs):
        samples = _samples(prompts, completions, kwargs)
        if grouped is None:
            async def call(ms):
                return (await client.get_reward(messages=ms, options=options))["rewards"]

            return await score_batch_async(call, samples, fallback, "TRL")
        spec, ids_of = grouped
        ids = ids_of(prompts, samples, kwargs)

        async def call_group(idx):
            return rows(await client.get_reward(messages=[samples[i] for i in idx], options=options,
                                                group=spec.group([ids[i] for i in idx])))

        return [fallback if r is None else r[spec.advantage] for r in await score_groups_async(call_group, samples, "TRL")]

    reward_service.__name__ = "reward_service"
    return reward_service
