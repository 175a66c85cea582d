"""Scoring a batch where one bad sample must not fail the others (TRL and verl helpers)."""
import logging

from ._sync import RewardServiceError

log = logging.getLogger("reward_client")


def is_sample_error(err):
    """A 4xx about the request's content (one sample can cause it); 5xx, 429 and network errors are not."""
    return isinstance(err, RewardServiceError) and 400 <= err.status < 500 and err.status not in (401, 403, 404, 429)


def _start(samples, fallback, what):
    """Indices of the samples that converted, and the rewards list with the fallback for the others (logged)."""
    rewards = [fallback] * len(samples)
    for i, s in enumerate(samples):
        if isinstance(s, Exception):
            log.warning("%s sample %d scored as fallback %r: %s", what, i, fallback, s)
    return [i for i, s in enumerate(samples) if not isinstance(s, Exception)], rewards


def score_batch(call, samples, fallback, what):
    """call(list of samples) -> list of rewards. On a sample-caused 4xx the batch is retried one sample at a
    time and each sample that still fails gets `fallback` (logged with the service's reason). Errors that are
    not about a sample (service down after retries, auth) propagate: training on fallback rewards would be
    silent data loss."""
    good, rewards = _start(samples, fallback, what)
    if not good:
        return rewards
    try:
        for i, r in zip(good, call([samples[i] for i in good])):
            rewards[i] = r
        return rewards
    except RewardServiceError as err:
        if not is_sample_error(err) or len(good) == 1:
            if is_sample_error(err):
                log.warning("%s sample %d scored as fallback %r: %s", what, good[0], fallback, err)
                return rewards
            raise
    for i in good:
        try:
            rewards[i] = call([samples[i]])[0]
        except RewardServiceError as err:
            if not is_sample_error(err):
                raise
            log.warning("%s sample %d scored as fallback %r: %s", what, i, fallback, err)
    return rewards


async def score_batch_async(call, samples, fallback, what):
    """score_batch for an async call."""
    import asyncio

    good, rewards = _start(samples, fallback, what)
    if not good:
        return rewards
    try:
        for i, r in zip(good, await call([samples[i] for i in good])):
            rewards[i] = r
        return rewards
    except RewardServiceError as err:
        if not is_sample_error(err):
            raise

    async def one(i):
        try:
            rewards[i] = (await call([samples[i]]))[0]
        except RewardServiceError as err:
            if not is_sample_error(err):
                raise
            log.warning("%s sample %d scored as fallback %r: %s", what, i, fallback, err)

    await asyncio.gather(*(one(i) for i in good))
    return rewards
