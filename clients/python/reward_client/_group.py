"""GRPO group advantages for the TRL, verl and OpenRLHF helpers: the service computes them (/get_reward's
`group`); this file only decides the groups, asks, and survives one bad sample without breaking a group.

A helper sends one group index per sample (`group.ids`), whichever way the caller named the groups (a size:
consecutive samples, as the trainers lay out a prompt's completions; or a key such as the prompt or verl's
uid), so that a subset of the samples can still be scored with each one in its own group.
"""
import json
import logging
import os

from ._fallback import is_sample_error
from ._sync import RewardServiceError

log = logging.getLogger("reward_client")

ADVANTAGES = ("grpo", "dr_grpo")
ADVANTAGE_ON = ("shaped", "raw")


class AdvantageSpec:
    """What to ask for: `advantage` "grpo" ((r - mean_g) / (std_g + epsilon)) or "dr_grpo" (r - mean_g),
    computed on the "shaped" rewards (the ones returned; default) or the "raw" reward-model scores."""

    def __init__(self, advantage, on="shaped", epsilon=None):
        if advantage not in ADVANTAGES:
            raise ValueError("advantage must be one of %s, not %r" % (", ".join(ADVANTAGES), advantage))
        if on not in ADVANTAGE_ON:
            raise ValueError("advantage_on must be one of %s, not %r" % (", ".join(ADVANTAGE_ON), on))
        self.advantage = advantage
        self.on = on
        self.epsilon = epsilon

    def group(self, ids):
        g = {"ids": list(ids), "on": self.on}
        if self.epsilon is not None:
            g["epsilon"] = float(self.epsilon)
        return g


def advantage_from_env(groupings):
    """(AdvantageSpec, grouping) from REWARD_SERVICE_ADVANTAGE (grpo | dr_grpo; unset: None, plain rewards),
    REWARD_SERVICE_ADVANTAGE_ON, REWARD_SERVICE_ADVANTAGE_EPSILON and REWARD_SERVICE_GROUP (one of
    `groupings`, or a group size), for the helpers that frameworks load by path (verl, OpenRLHF)."""
    adv = os.environ.get("REWARD_SERVICE_ADVANTAGE", "").strip().lower()
    if adv in ("", "none", "off"):
        return None
    eps = os.environ.get("REWARD_SERVICE_ADVANTAGE_EPSILON")
    spec = AdvantageSpec(adv, os.environ.get("REWARD_SERVICE_ADVANTAGE_ON", "shaped").strip().lower(),
                         None if eps is None else float(eps))
    group = os.environ.get("REWARD_SERVICE_GROUP", groupings[0]).strip().lower()
    if group.isdigit():
        return spec, int(group)
    if group not in groupings:
        raise ValueError("REWARD_SERVICE_GROUP must be %s or a group size, not %r" % (", ".join(groupings), group))
    return spec, group


def group_ids(n, size=None, keys=None):
    """One group index per sample (0, 1, ... in order of first appearance): `size` consecutive samples per
    group, or samples with equal `keys` (any JSON-able values: prompts, message lists, uids) together."""
    if (size is None) == (keys is None):
        raise ValueError("group by a size or by keys, one of them")
    if size is not None:
        size = int(size)
        if size < 1 or n % size:
            raise ValueError(
                "%d samples do not split into groups of %d: make the batch a multiple of the group size "
                "(TRL: per-device batch of num_generations; OpenRLHF: micro_rollout_batch_size of "
                "n_samples_per_prompt), or group by the prompt" % (n, size))
        return [i // size for i in range(n)]
    keys = list(keys)
    if len(keys) != n:
        raise ValueError("%d group keys for %d samples" % (len(keys), n))
    seen = {}
    return [seen.setdefault(json.dumps(k, sort_keys=True, default=repr), len(seen)) for k in keys]


def rows(answer):
    """Per-sample {reward, score, raw_reward, grpo, dr_grpo} of a /get_reward answer that has advantages."""
    adv = answer["advantages"]
    raw = answer["extra_logs"]["raw_reward"]
    return [{"reward": r, "score": s, "raw_reward": w, "grpo": g, "dr_grpo": d}
            for r, s, w, g, d in zip(answer["rewards"], answer["scores"], raw, adv["grpo"], adv["dr_grpo"])]


def _plan(samples, what):
    """The requests, as a generator (the same steps for the blocking and the asyncio drivers): it yields the
    indices to score together and receives the answer's rows, or the service's refusal thrown in. All good
    samples go in one call; on a refusal caused by a sample, each one is tried alone to find the bad ones,
    then the rest are scored together again, so every group keeps the samples it still has. Returns one
    row per sample, None for a sample that could not be scored (logged)."""
    out = [None] * len(samples)
    good = []
    for i, s in enumerate(samples):
        if isinstance(s, Exception):
            log.warning("%s sample %d has no advantage (fallback): %s", what, i, s)
        else:
            good.append(i)
    if not good:
        return out
    try:
        got = yield good
    except RewardServiceError as err:
        if not is_sample_error(err):
            raise
        kept = []
        for i in good:
            try:
                yield [i]
                kept.append(i)
            except RewardServiceError as one:
                if not is_sample_error(one):
                    raise
                log.warning("%s sample %d has no advantage (fallback): %s", what, i, one)
        good = kept
        if not good:
            return out
        got = yield good
    for i, row in zip(good, got):
        out[i] = row
    return out


def _step(plan, send=None, throw=None):
    """(done, value): the plan's next request, or its result when it finished."""
    try:
        return False, plan.throw(throw) if throw is not None else plan.send(send)
    except StopIteration as stop:
        return True, stop.value


def score_groups(call, samples, what):
    """call(indices) -> rows of those samples scored as one request (with their group ids)."""
    plan = _plan(samples, what)
    done, value = _step(plan)
    while not done:
        try:
            got = call(value)
        except RewardServiceError as err:
            done, value = _step(plan, throw=err)
            continue
        done, value = _step(plan, send=got)
    return value


async def score_groups_async(call, samples, what):
    """score_groups for an async call."""
    plan = _plan(samples, what)
    done, value = _step(plan)
    while not done:
        try:
            got = await call(value)
        except RewardServiceError as err:
            done, value = _step(plan, throw=err)
            continue
        done, value = _step(plan, send=got)
    return value
