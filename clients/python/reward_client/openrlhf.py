"""OpenRLHF helpers. OpenRLHF reaches a reward model two ways, both through --remote_rm_url:

1. A URL: it posts {"query", "prompts", "labels"} to /get_reward and trains on the answer's "rewards".
   Options go in the URL's query string (it posts to the URL as given and splits the flag at commas, so no
   value may contain one); remote_rm_url() builds it. With group_size (OpenRLHF's n_samples_per_prompt) the
   service adds GRPO advantages to extra_logs ("advantage", "advantage_dr_grpo"), which OpenRLHF logs;
   it still trains on the rewards.
2. A .py file with reward_func(queries, prompts, labels) (examples/openrlhf_reward.py): OpenRLHF trains on
   the "rewards" it returns, so with REWARD_SERVICE_ADVANTAGE=grpo | dr_grpo they ARE the service's group
   advantages (the rewards go to extra_logs "reward"). Settings as for verl: REWARD_SERVICE_URL, _MODEL,
   _TEMPLATE (default auto), _FALLBACK (advantage of a refused sample; default 0.0), _ADVANTAGE_ON (shaped |
   raw), _ADVANTAGE_EPSILON, _GROUP = prompt (default: OpenRLHF repeats each prompt string for its samples) |
   <n> (n consecutive samples).
"""
import math
import os
import urllib.parse

from ._group import advantage_from_env, group_ids, rows, score_groups
from ._sync import RewardClient


def remote_rm_url(base_url, template=None, normalize=None, clip=None, length_penalty=None, group_size=None,
                  advantage_on=None, model=None):
    """The --remote_rm_url value for a service at `base_url`: clip = (min, max), length_penalty = (threshold,
    per_token), group_size = n_samples_per_prompt (adds GRPO advantages to extra_logs), advantage_on = shaped |
    raw. Values are URL-escaped (a comma becomes %2C: OpenRLHF splits the flag at commas); a base URL with a
    comma raises ValueError (one service per call: join several URLs with commas yourself)."""
    params = [("template", template), ("normalize", None if normalize is None else str(bool(normalize)).lower()),
              ("clip", None if clip is None else "%s:%s" % tuple(clip)),
              ("length_penalty", None if length_penalty is None else "%s:%s" % tuple(length_penalty)),
              ("group_size", None if group_size is None else str(int(group_size))),
              ("advantage_on", advantage_on), ("model", model)]
    query = urllib.parse.urlencode([(k, v) for k, v in params if v is not None], safe=":/")
    url = base_url.rstrip("/") + "/get_reward" + ("?" + query if query else "")
    if "," in url:
        raise ValueError("OpenRLHF splits --remote_rm_url at commas; this URL has one: %s" % url)
    return url


def _settings():
    fb = os.environ.get("REWARD_SERVICE_FALLBACK", "0.0")
    return {
        "url": os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8080"),
        "model": os.environ.get("REWARD_SERVICE_MODEL") or None,
        "template": os.environ.get("REWARD_SERVICE_TEMPLATE", "auto"),
        "fallback": float("nan") if fb.lower() in ("none", "nan") else float(fb),
        "advantage": advantage_from_env(("prompt",)),
    }


def reward_func(queries, prompts, labels=None, **kwargs):
    """OpenRLHF's custom reward function: {"rewards", "scores", "extra_logs"} as tensors, one value per query."""
    import torch

    s = _settings()
    rm = RewardClient(s["url"], model=s["model"], chunk_size=256)
    queries, prompts = list(queries), list(prompts or [])

    def tensors(rewards, scores, logs):
        return {"rewards": torch.tensor(rewards, dtype=torch.float32), "scores": torch.tensor(scores, dtype=torch.float32),
                "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in logs.items()}}

    if s["advantage"] is None:  # what the URL form gives, as tensors
        out = rm.get_reward(query=queries, prompts=prompts, labels=labels, template=s["template"])
        return tensors(out["rewards"], out["scores"], out["extra_logs"])
    spec, group = s["advantage"]
    if isinstance(group, int):
        ids = group_ids(len(queries), size=group)
    elif len(prompts) == len(queries):
        ids = group_ids(len(queries), keys=prompts)
    else:
        raise ValueError("REWARD_SERVICE_GROUP=prompt needs the prompts; OpenRLHF passed %d for %d queries" % (len(prompts), len(queries)))

    def call(idx):
        return rows(rm.get_reward(query=[queries[i] for i in idx], prompts=[prompts[i] for i in idx] if prompts else [],
                                  template=s["template"], group=spec.group([ids[i] for i in idx])))

    got = score_groups(call, queries, "OpenRLHF")
    nan = float("nan")
    return tensors([s["fallback"] if r is None else r[spec.advantage] for r in got],
                   [nan if r is None else r["score"] for r in got],
                   {"reward": [nan if r is None else r["reward"] for r in got],
                    "raw_reward": [nan if r is None else r["raw_reward"] for r in got],
                    "advantage": [s["fallback"] if r is None else r[spec.advantage] for r in got]})
