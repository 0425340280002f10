"""Ready-made networks, one small function each. Every function returns a built ``simgraph.Graph``.

This module sits on the build layer (it imports only ``build``, ``graph`` and ``errors``), so
``import topologies`` / ``simgraph.topologies`` works without the training layer.

All take ``seed`` (same seed, same graph) and ``device``. Neuron types and synapse types are
named so that typed rules (embeddings per type) can tell the parts apart.
"""

from __future__ import annotations

from typing import Sequence

import networkx as nx

from .build import Network
from .errors import GraphError, check_bool, check_bytes, check_int, check_ints, check_probability, check_seed
from .graph import Graph


def layered(sizes: Sequence[int] = (8, 32, 4), seed: int = 0, device=None) -> Graph:
    """Feed-forward layers ``layer0 -> layer1 -> ...``, all-to-all (dense) between neighbours.

    Neuron types: ``input``, ``hidden``, ``output``; synapse type ``feedforward``.
    """
    sizes = check_ints("layered sizes", sizes, 1, error=GraphError)
    if len(sizes) < 2:
        raise GraphError(f"layered needs a list of at least two layer sizes, got {sizes!r}")
    net = Network(seed)
    last = len(sizes) - 1
    for i, n in enumerate(sizes):
        net.population(f"layer{i}", n, neuron_type="input" if i == 0 else "output" if i == last else "hidden")
    for i in range(last):
        net.connect(f"layer{i}", f"layer{i + 1}", "all_to_all", synapse_type="feedforward")
    return net.inputs("layer0").outputs(f"layer{last}").build(device)


def fully_recurrent(n: int = 64, autapses: bool = True, seed: int = 0, device=None) -> Graph:
    """One population ``neurons``, every pair connected (dense with autapses); input = output = all."""
    n, autapses = check_int("fully_recurrent n (the population size)", n, 1), check_bool("fully_recurrent autapses", autapses)
    net = Network(seed).population("neurons", n, neuron_type="neuron")
    net.connect("neurons", "neurons", "all_to_all", allow_autapses=autapses, synapse_type="recurrent")
    return net.inputs("neurons").outputs("neurons").build(device)


def sparse_random(n: int = 100, p: float = 0.1, seed: int = 0, device=None) -> Graph:
    """Erdos-Renyi recurrent net: each ordered pair connected with probability ``p``, no autapses."""
    n, p = check_int("sparse_random n (the population size)", n, 1), check_probability("sparse_random p", p)
    net = Network(seed).population("neurons", n, neuron_type="neuron")
    net.connect("neurons", "neurons", "pairwise_bernoulli", p=p, allow_autapses=False, synapse_type="recurrent")
    return net.inputs("neurons").outputs("neurons").build(device)


def small_world(n: int = 100, k: int = 10, p: float = 0.1, seed: int = 0, device=None) -> Graph:
    """Watts-Strogatz small-world ring (networkx's generator), both directions of each link."""
    n, k = check_int("small_world n", n, 3), check_int("small_world k", k, 2)
    if k >= n:
        raise GraphError(f"small_world needs an int 2 <= k < n, got k={k!r} for n={n!r}")
    if k % 2:  # networkx links each node to k // 2 neighbours on each side: an odd k would silently be k - 1
        raise GraphError(f"small_world k (ring neighbours, k // 2 on each side) must be even, got k={k}; use {k - 1} or {k + 1}")
    p = check_probability("small_world p (rewiring probability)", p)
    # networkx builds the ring as Python dicts first (a few hundred bytes per link) before simgraph sees it
    check_bytes(f"small_world's networkx ring ({n} neurons x {k} neighbours)", 300 * n * k, "use a smaller n or k")
    seed = None if seed is None else check_seed("small_world seed", seed, error=GraphError)  # networkx draws first
    ring = nx.connected_watts_strogatz_graph(n, k, p, seed=seed)
    src, dst = zip(*[(u, v) for u, v in ring.edges()] + [(v, u) for u, v in ring.edges()])
    net = Network(seed).population("neurons", n, neuron_type="neuron")
    net.connect("neurons", "neurons", "explicit", pre_idx=list(src), post_idx=list(dst), synapse_type="recurrent")
    return net.inputs("neurons").outputs("neurons").build(device)


def modular(modules: int = 4, size: int = 16, p_within: float = 0.5, p_between: float = 0.05, seed: int = 0, device=None) -> Graph:
    """``modules`` populations densely wired inside (``p_within``) and sparsely between (``p_between``).

    Synapse types ``local`` and ``long_range``; all modules are inputs and outputs.
    """
    modules, size = check_int("modular modules", modules, 1), check_int("modular size", size, 1)
    p_within = check_probability("modular p_within", p_within)
    p_between = check_probability("modular p_between", p_between)
    net = Network(seed)
    names = [f"module{m}" for m in range(modules)]
    for name in names:
        net.population(name, size, neuron_type="neuron")
    for a in names:
        for b in names:
            if a == b:
                net.connect(a, b, "pairwise_bernoulli", p=p_within, allow_autapses=False, synapse_type="local")
            else:
                net.connect(a, b, "pairwise_bernoulli", p=p_between, synapse_type="long_range")
    return net.inputs(*names).outputs(*names).build(device)


def hopfield(n: int = 64, seed: int = 0, device=None) -> Graph:
    """Hopfield-style auto-associator: every neuron to every other neuron (no autapses), input = output."""
    n = check_int("hopfield n (the population size)", n, 1)
    return fully_recurrent(n, autapses=False, seed=seed, device=device)


def recall_network(
    n_in: int = 16, n_memory: int = 64, n_out: int = 16, p_recurrent: float = 1.0, teach: bool = False, seed: int = 0,
    device=None,
) -> Graph:
    """Input -> memory -> output: the cue/pattern enters ``input``, is stored in a recurrent
    ``memory`` population (all-to-all, or ``pairwise_bernoulli(p_recurrent)``), and read out of
    ``output``. Three neuron types and three synapse types (afferent, recurrent, efferent).

    ``teach=True`` makes the output population an input too (after ``input``): the teacher channels
    of ``RecallTask(teach=True)``, which show each value to the output neurons while it is written.
    """
    teach = check_bool("recall_network teach", teach)
    for name, size in (("n_in", n_in), ("n_memory", n_memory), ("n_out", n_out)):
        check_int(f"recall_network {name}", size, 1)
    p_recurrent = check_probability("recall_network p_recurrent", p_recurrent)
    net = Network(seed)
    net.population("input", n_in, neuron_type="input")
    net.population("memory", n_memory, neuron_type="memory")
    net.population("output", n_out, neuron_type="output")
    net.connect("input", "memory", "all_to_all", synapse_type="afferent")
    if p_recurrent >= 1.0:
        net.connect("memory", "memory", "all_to_all", synapse_type="recurrent")
    else:
        net.connect("memory", "memory", "pairwise_bernoulli", p=p_recurrent, allow_autapses=False, synapse_type="recurrent")
    net.connect("memory", "output", "all_to_all", synapse_type="efferent")
    return net.inputs(*(("input", "output") if teach else ("input",))).outputs("output").build(device)


TOPOLOGIES = {
    f.__name__: f for f in (layered, fully_recurrent, sparse_random, small_world, modular, hopfield, recall_network)
}

__all__ = ["TOPOLOGIES", *TOPOLOGIES]
