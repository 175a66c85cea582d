"""Client for the reward service: a synchronous client (standard library only), an asyncio client, image
encoding for media parts, and TRL / verl / OpenRLHF integrations (reward_client.trl, reward_client.verl,
reward_client.openrlhf), each of which can ask for GRPO group advantages instead of rewards.

    from reward_client import RewardClient, AsyncRewardClient
    rm = RewardClient("http://127.0.0.1:8080")
    rm.get_reward(query=["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>"])
    rm.score([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}])
    rm.request("GET", "/metrics").text        # any route, JSON or not
"""
from ._sync import (  # noqa: F401
    RETRYABLE_STATUS,
    Response,
    RewardClient,
    RewardServiceError,
    parse_retry_after,
    retry_delay,
)
from .aio import AsyncRewardClient  # noqa: F401
from .media import encode_image, to_service_messages  # noqa: F401

__version__ = "0.2.0"
__all__ = [
    "AsyncRewardClient",
    "Response",
    "RewardClient",
    "RewardServiceError",
    "encode_image",
    "parse_retry_after",
    "retry_delay",
    "to_service_messages",
]
