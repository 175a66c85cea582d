"""Offline training worker for IXC-2.5-Reward-family reward models (see trainer/README.md)."""
