"""Meta-training: one loop, several gradient estimators (truncated BPTT here; ES/CMA-ES beside it)."""

from . import checkpoint
from .bptt import unroll
from .config import Config, NetworkConfig, RuleConfig, TrainConfig
from .loop import TrainResult, evaluate, load_rule, train

__all__ = ["train", "evaluate", "unroll", "load_rule", "Config", "NetworkConfig", "RuleConfig", "TrainConfig", "TrainResult", "checkpoint"]
