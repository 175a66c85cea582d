"""Bradley-Terry pairwise loss (IXC-2.5-Reward, corrected form from issue #469)."""
import torch
import torch.nn.functional as F


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """mean(-log sigmoid(r_c - r_r))."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()
