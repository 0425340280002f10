"""Analyses of trained rules: capacity sweeps over a task field, online learning curves."""

from .capacity import capacity, sweep
from .online import accuracy_after, probe_episode

__all__ = ["capacity", "sweep", "accuracy_after", "probe_episode"]
