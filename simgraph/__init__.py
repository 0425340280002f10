"""simgraph: networks of neurons and synapses as message passing on typed graphs.

    import simgraph as sg
    graph = sg.Network(seed=0).population("n", 64).connect("n", "n").inputs("n").outputs("n").build()
    run = sg.simulate(sg.rules.HebbianRule(), graph, inputs)      # inputs [T, B, n_in]
"""

from ._allocator import apply_default as _keep_freed_memory

_keep_freed_memory()  # before any tensor work: see _allocator.py (SIMGRAPH_KEEP_FREED_MEMORY=0 opts out)

from . import errors, rules  # noqa: E402
from .build import CONNECTION_RULES, Network
from .errors import SimgraphError
from .graph import Graph, Population, Projection
from .interop import from_networkx, read, to_networkx, to_pyg, write
from .simulate import Monitor, Run, simulate


def __getattr__(name: str):
    """``sg.tasks``, ``sg.train`` and ``sg.analysis`` load on first use: the layers below them (graph,
    build, topologies, rules, simulate) import without the training layer."""
    if name in ("tasks", "train", "analysis"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'simgraph' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Network", "Graph", "Population", "Projection", "CONNECTION_RULES",
    "simulate", "Monitor", "Run",
    "to_networkx", "from_networkx", "to_pyg", "write", "read",
    "rules", "tasks", "train", "analysis", "errors", "SimgraphError",
]
