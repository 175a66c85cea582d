"""OpenRLHF entry file: --remote_rm_url points here (OpenRLHF loads reward_func from a .py path). Everything
lives in reward_client.openrlhf; see its docstring and clients/python/README.md."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reward_client.openrlhf import reward_func  # noqa: E402,F401
