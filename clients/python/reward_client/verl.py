"""verl integrations backed by the reward service. A reward model needs the prompt, and verl's reward
managers call compute_score(data_source, solution_str, ground_truth, extra_info) without it, so there are two
ways in (README: "verl"):

1. A reward manager that takes the prompt from verl's own batch: the raw chat messages (`raw_prompt`, kept
   with data.return_raw_chat=True) when present, else the prompt token ids decoded with the policy tokenizer
   and sent as an OpenRLHF-style `query` that the service parses back with template=auto (or
   REWARD_SERVICE_TEMPLATE). Works with verl's stock datasets (the prompt in the top-level `prompt` column).
     current verl (reward loop, use_reward_loop=true, the default since 0.7):
       reward.reward_manager.source=importlib reward.reward_manager.name=RewardServiceManager
       reward.reward_manager.module.path=<this file>
     legacy managers (verl.workers.reward_manager; importing the custom reward function registers it):
       custom_reward_function.path=<this file> custom_reward_function.name=compute_score
       reward_model.reward_manager=reward_service
2. compute_score / compute_score_async / compute_score_batch with the prompt in extra_info["prompt"], put
   there by one preprocessing step: dataset.map(copy_prompt_to_extra_info).

The service: REWARD_SERVICE_URL (default http://127.0.0.1:8080), REWARD_SERVICE_MODEL (default: the server's),
REWARD_SERVICE_FALLBACK (reward of a sample the service refuses; default 0.0; logged), REWARD_SERVICE_TEMPLATE
(policy template of decoded prompts; default auto).

GRPO group advantages from the service instead of rewards: REWARD_SERVICE_ADVANTAGE=grpo | dr_grpo (unset:
rewards, as before), REWARD_SERVICE_GROUP = auto (verl's `uid`, the id its GRPO estimator groups by, where the
batch has it, else the prompt) | uid | prompt | <n> (n consecutive samples), REWARD_SERVICE_ADVANTAGE_ON =
shaped (default) | raw, REWARD_SERVICE_ADVANTAGE_EPSILON (the service's default 1e-4). Only the batch-level
entry points see whole groups: the legacy manager and compute_score_batch. The advantage goes where the reward
went (the token reward tensor / "score"), the reward to reward_extra_info "rm_reward".
"""
import logging
import os

from . import AsyncRewardClient, RewardClient
from ._fallback import score_batch, score_batch_async
from ._group import advantage_from_env, group_ids, rows, score_groups
from .media import to_service_messages

log = logging.getLogger("reward_client")

_clients = {}


def _settings():
    fb = os.environ.get("REWARD_SERVICE_FALLBACK", "0.0")
    return {
        "url": os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8080"),
        "model": os.environ.get("REWARD_SERVICE_MODEL") or None,
        "fallback": None if fb.lower() in ("none", "nan") else float(fb),
        "template": os.environ.get("REWARD_SERVICE_TEMPLATE", "auto"),
        "advantage": advantage_from_env(("auto", "uid", "prompt")),
    }


def _per_sample_only(s, where):
    if s["advantage"] is not None:
        raise ValueError(
            "REWARD_SERVICE_ADVANTAGE is set, but %s scores one sample per call and a group advantage needs the "
            "whole group: use the legacy manager (reward_model.reward_manager=reward_service) or compute_score_batch "
            "(reward_model.reward_manager=batch)" % where)


def _ids(n, group, uids, prompt_keys, where):
    """Group index per sample: a size, verl's uid, or the prompt."""
    if isinstance(group, int):
        return group_ids(n, size=group)
    if group == "uid" or (group == "auto" and uids is not None):
        if uids is None:
            raise ValueError("REWARD_SERVICE_GROUP=uid: %s has no uid; use prompt or a group size" % where)
        return group_ids(n, keys=[str(u) for u in uids])
    return group_ids(n, keys=prompt_keys)


def client(asynchronous=False):
    s = _settings()
    key = (s["url"], s["model"], asynchronous)
    if key not in _clients:
        cls = AsyncRewardClient if asynchronous else RewardClient
        _clients[key] = cls(s["url"], model=s["model"], chunk_size=256)
    return _clients[key]


def _as_messages(prompt):
    """A prompt from a dataset (string, list of messages, or the numpy object array parquet gives) as messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in list(prompt)]


def copy_prompt_to_extra_info(row):
    """Preprocessing for the compute_score route: dataset.map(copy_prompt_to_extra_info) copies verl's
    top-level `prompt` column into extra_info["prompt"], where compute_score can read it."""
    extra = dict(row.get("extra_info") or {})
    extra["prompt"] = _as_messages(row["prompt"])
    return dict(row, extra_info=extra)


def _prompt(extra_info):
    extra_info = extra_info or {}
    for key in ("prompt", "raw_prompt"):
        if extra_info.get(key) is not None:
            return _as_messages(extra_info[key])
    raise ValueError(
        "compute_score has no prompt: verl passes only the response. Use the RewardServiceManager reward manager "
        "(takes the prompt from verl's batch), or preprocess with dataset.map(copy_prompt_to_extra_info) so that "
        "extra_info['prompt'] holds it")


def _sample(solution_str, extra_info):
    try:
        return to_service_messages(_prompt(extra_info) + [{"role": "assistant", "content": solution_str}])
    except ValueError as err:
        if "has no prompt" in str(err):
            raise
        return err


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    s = _settings()
    _per_sample_only(s, "compute_score")
    sample = _sample(solution_str, extra_info)
    return score_batch(lambda ms: client().get_reward(messages=ms)["rewards"], [sample], s["fallback"], "verl")[0]


async def compute_score_async(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """The reward loop's naive/dapo managers await an async compute_score instead of using a thread."""
    s = _settings()
    _per_sample_only(s, "compute_score_async")
    sample = _sample(solution_str, extra_info)

    async def call(ms):
        return (await client(True).get_reward(messages=ms))["rewards"]

    return (await score_batch_async(call, [sample], s["fallback"], "verl"))[0]


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, **kwargs):
    """Legacy `batch` reward manager (one request per batch). With REWARD_SERVICE_ADVANTAGE, one dict per
    sample, which that manager unpacks: {"score": advantage, "rm_reward": reward}."""
    s = _settings()
    samples = [_sample(r, e) for r, e in zip(solution_strs, extra_infos)]
    if s["advantage"] is None:
        return score_batch(lambda ms: client().get_reward(messages=ms)["rewards"], samples, s["fallback"], "verl")
    spec, group = s["advantage"]
    keys = [("unscorable", i) if isinstance(m, Exception) else m[:-1] for i, m in enumerate(samples)]
    ids = _ids(len(samples), group, None, keys, "compute_score_batch")

    def call(idx):
        return rows(client().get_reward(messages=[samples[i] for i in idx], group=spec.group([ids[i] for i in idx])))

    return [{"score": s["fallback"] if r is None else r[spec.advantage], "rm_reward": None if r is None else r["reward"]}
            for r in score_groups(call, samples, "verl")]


# --- reward managers: the prompt from verl's batch ---------------------------------------------------------
def _item_sample(item, tokenizer):
    """("messages", conversation) or ("query", prompt+response text) for one DataProtoItem."""
    responses = item.batch["responses"]
    mask = item.batch["attention_mask"]
    resp_len = responses.shape[-1]
    valid_resp = int(mask[-resp_len:].sum())
    response_ids = responses[:valid_resp]
    nt = item.non_tensor_batch
    extra = nt.get("extra_info") or {}
    raw = nt.get("raw_prompt")
    if raw is None and isinstance(extra, dict):
        raw = extra.get("prompt")
    if raw is not None:
        answer = tokenizer.decode(response_ids, skip_special_tokens=True)
        return "messages", to_service_messages(_as_messages(raw) + [{"role": "assistant", "content": answer}])
    prompts = item.batch["prompts"]
    valid_prompt = int(mask[: prompts.shape[-1]].sum())
    prompt_ids = prompts[prompts.shape[-1] - valid_prompt:]  # left padded
    text = tokenizer.decode(prompt_ids, skip_special_tokens=False) + tokenizer.decode(response_ids, skip_special_tokens=False)
    return "query", text


def _score_kinds(kinds, call_messages, call_query, fallback):
    """Scores ("messages", x) / ("query", x) samples with one batched call per kind, in input order."""
    rewards = [fallback] * len(kinds)
    for kind, call in (("messages", call_messages), ("query", call_query)):
        idx = [i for i, (k, _) in enumerate(kinds) if k == kind]
        if idx:
            for i, r in zip(idx, score_batch(call, [kinds[i][1] for i in idx], fallback, "verl")):
                rewards[i] = r
    return rewards


class RewardServiceManager:
    """Reward manager for verl's reward loop (RewardManagerBase protocol: built with config, tokenizer,
    compute_score; `await run_single(data)` -> {"reward_score", "reward_extra_info"}). One request per sample,
    which the service batches across the reward loop's concurrent calls."""

    def __init__(self, config=None, tokenizer=None, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None, **kwargs):
        self.config = config
        self.tokenizer = tokenizer
        self.settings = _settings()
        _per_sample_only(self.settings, "the reward loop's RewardServiceManager")

    async def run_single(self, data):
        item = data[-1:][0]  # multi-sequence outputs: the last sequence, as verl's own managers do
        kind, sample = _item_sample(item, self.tokenizer)
        s = self.settings
        c = client(True)

        async def call(xs):
            if kind == "messages":
                return (await c.get_reward(messages=xs))["rewards"]
            return (await c.get_reward(query=xs, prompts=[], template=s["template"]))["rewards"]

        reward = (await score_batch_async(call, [sample], s["fallback"], "verl"))[0]
        return {"reward_score": reward, "reward_extra_info": {"rm_reward": reward}}


class RewardServiceRewardManager:
    """Legacy reward manager (verl.workers.reward_manager protocol: built with tokenizer, num_examine,
    compute_score, reward_fn_key; `manager(data, return_dict)` -> token-level reward tensor with the reward on
    each response's last token). One chunked request per batch."""

    def __init__(self, tokenizer, num_examine=0, compute_score=None, reward_fn_key="data_source", **kwargs):
        self.tokenizer = tokenizer
        self.num_examine = num_examine
        self.settings = _settings()

    def __call__(self, data, return_dict=False):
        s = self.settings
        kinds = [_item_sample(data[i], self.tokenizer) for i in range(len(data))]
        if s["advantage"] is not None:
            return self._advantages(data, kinds, return_dict)
        rewards = _score_kinds(
            kinds,
            lambda xs: client().get_reward(messages=xs)["rewards"],
            lambda xs: client().get_reward(query=xs, prompts=[], template=s["template"])["rewards"],
            s["fallback"],
        )
        return _reward_tensor(data, rewards, {"rm_reward": list(rewards)}, return_dict)

    def _advantages(self, data, kinds, return_dict):
        """Group advantages in the reward tensor (groups: verl's uid by default), the rewards in extra info."""
        s = self.settings
        spec, group = s["advantage"]
        uids = data.non_tensor_batch.get("uid")
        keys = [_prompt_ids(data[i]) for i in range(len(data))]
        ids = _ids(len(data), group, uids, keys, "this batch")
        got = [None] * len(data)
        for kind in ("messages", "query"):  # a group shares its prompt, hence its kind
            idx = [i for i, (k, _) in enumerate(kinds) if k == kind]
            if not idx:
                continue

            def call(js, idx=idx, kind=kind):
                xs = [kinds[idx[j]][1] for j in js]
                g = spec.group([ids[idx[j]] for j in js])
                if kind == "messages":
                    return rows(client().get_reward(messages=xs, group=g))
                return rows(client().get_reward(query=xs, prompts=[], template=s["template"], group=g))

            for i, r in zip(idx, score_groups(call, [kinds[i][1] for i in idx], "verl")):
                got[i] = r
        values = [s["fallback"] if r is None else r[spec.advantage] for r in got]
        info = {"rm_reward": [None if r is None else r["reward"] for r in got],
                "rm_advantage": values}
        return _reward_tensor(data, values, info, return_dict)


def _prompt_ids(item):
    """The valid prompt token ids of one DataProtoItem (left padded), as a list: the prompt's identity."""
    prompts = item.batch["prompts"]
    valid = int(item.batch["attention_mask"][: prompts.shape[-1]].sum())
    return [int(t) for t in prompts[prompts.shape[-1] - valid:]]


def _reward_tensor(data, values, extra_info, return_dict):
    """verl's token-level reward: each value on its response's last token (NaN for None)."""
    import torch

    responses = data.batch["responses"]
    reward_tensor = torch.zeros_like(responses, dtype=torch.float32)
    lengths = data.batch["attention_mask"][:, -responses.shape[-1]:].sum(dim=-1)
    for i, r in enumerate(values):
        if int(lengths[i]) > 0:
            reward_tensor[i, int(lengths[i]) - 1] = float("nan") if r is None else r
    if return_dict:
        return {"reward_tensor": reward_tensor, "reward_extra_info": extra_info}
    return reward_tensor


def _register():
    """Makes reward_model.reward_manager=reward_service / reward.reward_manager.name=reward_service resolve
    where verl is installed (importing this file through custom_reward_function.path runs this)."""
    try:
        from verl.workers.reward_manager import register
        register("reward_service")(RewardServiceRewardManager)
    except (ImportError, ValueError, AttributeError):
        pass
    try:
        from verl.experimental.reward_loop.reward_manager import register as register_loop
        register_loop("reward_service")(RewardServiceManager)
    except (ImportError, ValueError, AttributeError):
        pass


_register()
