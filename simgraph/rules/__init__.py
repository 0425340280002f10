"""Learning systems, one file each, all over the same engine (see ``base.Rule``)."""

from .base import Rule, State
from .hebbian import HebbianRule
from .mlp import MLPRule
from .static import StaticRule

__all__ = ["Rule", "State", "StaticRule", "HebbianRule", "MLPRule"]
