"""verl entry file: custom_reward_function.path / reward.reward_manager.module.path point here (verl loads it
by path). Everything lives in reward_client.verl; see its docstring and clients/python/README.md."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reward_client.verl import (  # noqa: E402,F401
    RewardServiceManager,
    RewardServiceRewardManager,
    compute_score,
    compute_score_async,
    compute_score_batch,
    copy_prompt_to_extra_info,
)
