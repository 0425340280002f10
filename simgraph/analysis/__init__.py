"""Analyses of trained rules: capacity sweeps over a task field, online learning curves, and the
learned synapses as graphs (``graphs``: measures over load; ``report``: ``simgraph analyze``), and
the rule itself (``portrait``: one tick's weight change fitted to local terms)."""

from .capacity import capacity, sweep
from .graphs import by_type, load_sweep, measures, stored_weights, structure, summarize, synapse_weights, weight_graph
from .online import accuracy_after, probe_episode
from .portrait import Portrait, plot_portrait, rule_portrait

__all__ = ["capacity", "sweep", "accuracy_after", "probe_episode", "synapse_weights", "weight_graph", "by_type",
           "measures", "stored_weights", "summarize", "load_sweep", "structure", "rule_portrait", "plot_portrait", "Portrait"]
