"""Learning systems, one file each, all over the same engine (see ``base.Rule``), and a registry
that names them for configs (``register``, ``build``)."""

from .base import Rule, State, SweepRule
from .delta import DeltaRule
from .genome import GenomeRule, backprop_genome
from .hebbian import HebbianRule
from .lstm_synapse import BackpropCell, LSTMSynapseRule
from .mlp import MLPRule
from .plastic import PlasticRule
from .registry import build, register, registered
from .static import StaticRule

__all__ = ["Rule", "State", "SweepRule", "StaticRule", "HebbianRule", "DeltaRule", "MLPRule", "PlasticRule",
           "GenomeRule", "backprop_genome", "LSTMSynapseRule", "BackpropCell", "register", "registered", "build"]
