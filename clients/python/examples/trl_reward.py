"""TRL entry file (works without installing the package): see reward_client.trl."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reward_client.trl import make_async_reward_func, make_reward_func, to_messages  # noqa: E402,F401
