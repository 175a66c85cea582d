"""asyncio client: the same calls as RewardClient, awaitable. Each HTTP attempt runs the standard-library
transport in the event loop's default executor (no third-party packages); waits between retries are
asyncio.sleep, so hundreds of concurrent calls (verl's reward loop, TRL async reward functions) cost no
blocked threads while they back off. Chunked get_reward sends its chunks concurrently."""
import asyncio
import functools

from ._sync import RewardClient, _Base, _opt_model, chunk_group, chunks, get_reward_body, merge_get_reward


class AsyncRewardClient(_Base):
    def __init__(self, base_url, api_key=None, max_attempts=6, timeout=180.0, initial_delay=0.25, max_delay=8.0,
                 max_retry_after=60.0, model=None, chunk_size=None, sleep=None):
        super().__init__(base_url, api_key, max_attempts, timeout, initial_delay, max_delay, max_retry_after, model, chunk_size)
        self._sleep = sleep or asyncio.sleep
        # One attempt, no retries: the retry loop below is the async one.
        self._once = RewardClient(base_url, api_key, max_attempts=1, timeout=timeout)

    async def get_reward(self, query=None, prompts=None, labels=None, messages=None, template=None, options=None,
                         model=None, chunk_size=None, group=None):
        n = len(query) if query is not None else len(messages or [])
        bodies = [
            get_reward_body(
                query=None if query is None else list(query)[a:b],
                prompts=None if prompts is None else list(prompts)[a:b] if len(prompts) else [],
                labels=labels[a:b] if isinstance(labels, (list, tuple)) else labels,
                messages=None if messages is None else messages[a:b],
                template=template, options=options, model=self._model(model), group=chunk_group(group, a, b))
            for a, b in chunks(n, chunk_size or self.chunk_size, group)
        ]
        return merge_get_reward(list(await asyncio.gather(*(self.post_json("/get_reward", b) for b in bodies))))

    async def score(self, items, model=None, **extra):
        return await self.post_json("/v1/score", dict(extra, items=items, **_opt_model(self._model(model))))

    async def step_scores(self, messages, steps, model=None):
        res = await self.score([{"messages": messages, "steps": steps}], model=model)
        return res["results"][0]["step_scores"]

    async def compare(self, body, model=None):
        return await self.post_json("/v1/compare", dict(body, **_opt_model(self._model(model))))

    async def rank(self, body, model=None, group=None):
        """/v1/rank. group ({"size": n} or {"ids": [...]}, optional "on": "raw" | "normalized", "epsilon") adds
        the candidates' GRPO advantages (answer["advantages"]["grpo"], ["dr_grpo"])."""
        extra = {} if group is None else {"group": group}
        return await self.post_json("/v1/rank", dict(body, **extra, **_opt_model(self._model(model))))

    async def models(self):
        return (await self.request("GET", "/v1/models")).json()

    async def post_json(self, path, body):
        return (await self.request("POST", path, body)).json()

    async def request(self, method, path, body=None, params=None, headers=None, content_type=None):
        """Same contract as RewardClient.request (Response back; 502/503/504 and network errors retried)."""
        from ._sync import RETRYABLE_STATUS, RewardServiceError

        loop = asyncio.get_running_loop()
        call = functools.partial(self._once.request, method, path, body, params, headers, content_type)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await loop.run_in_executor(None, call)
            except RewardServiceError as err:
                retryable = err.status in RETRYABLE_STATUS or err.code == "unreachable"
                if not retryable or attempt >= self.max_attempts:
                    raise RewardServiceError(err.status, err.code, err.message, attempt)
                retry_after = getattr(err, "retry_after", None)
            await self._sleep(self._delay(attempt, retry_after))
