"""Export to and import from networkx and PyTorch Geometric."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from .build import Network
from .errors import GraphError, ShapeError
from .graph import Graph


def to_networkx(graph: Graph, state: dict | None = None, batch_index: int = 0) -> nx.MultiDiGraph:
    """The graph as a ``networkx.MultiDiGraph`` (nodes 0..N-1, edge keys = edge ids).

    Node attributes: ``population``, ``type`` (neuron type); edge attributes: ``projection``, ``type``
    (synapse type). With ``state``, every tensor field of shape ``[B, N, D]`` or ``[B, E, D]`` is
    attached for episode ``batch_index`` as a list of floats under its field name.
    Graph attributes record the populations, inputs and outputs so :func:`from_networkx` can
    rebuild the same network.
    """
    if not isinstance(graph, Graph):
        raise ShapeError(f"to_networkx needs a simgraph Graph, got {type(graph).__name__}")
    if state is not None and not isinstance(state, dict):
        raise ShapeError(f"to_networkx: state must be a dict of tensors, got {type(state).__name__}")
    if not isinstance(batch_index, (int, np.integer)) or isinstance(batch_index, bool):
        raise ShapeError(f"to_networkx: batch_index must be an int, got {batch_index!r}")
    N, E = graph.num_nodes, graph.num_edges
    node_fields, edge_fields = {}, {}
    for key, value in (state or {}).items():
        if not isinstance(value, Tensor) or value.dim() != 3:
            continue
        if not -value.shape[0] <= batch_index < value.shape[0]:
            raise ShapeError(f"batch_index {batch_index} out of range for state[{key!r}] with batch {value.shape[0]}")
        rows = value[batch_index].detach().cpu().tolist()
        if value.shape[1] == N:
            node_fields[key] = rows
        elif value.shape[1] == E:
            edge_fields[key] = rows
    pop_of = [None] * N
    for pop in graph.populations.values():
        pop_of[pop.start : pop.stop] = [pop.name] * pop.size
    ntype = [graph.neuron_types[i] for i in graph.node_type.tolist()]
    G = nx.MultiDiGraph(
        populations=[(p.name, p.size, p.neuron_type) for p in graph.populations.values()],
        inputs=list(graph.inputs),
        outputs=list(graph.outputs),
    )
    G.add_nodes_from(
        (i, {"population": pop_of[i], "type": ntype[i], **{k: v[i] for k, v in node_fields.items()}}) for i in range(N)
    )
    proj_of, etype = [None] * E, [None] * E
    for p in graph.projections.values():
        proj_of[p.start : p.stop] = [p.name] * p.num_edges
        etype[p.start : p.stop] = [p.synapse_type] * p.num_edges
    src, dst = graph.edge_index.tolist()
    G.add_edges_from(
        (src[e], dst[e], e, {"projection": proj_of[e], "type": etype[e], **{k: v[e] for k, v in edge_fields.items()}})
        for e in range(E)
    )
    return G


def from_networkx(
    G: nx.Graph,
    node_type_attr: str = "type",
    edge_type_attr: str = "type",
    population_attr: str | None = None,
    projection_attr: str | None = None,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    seed: int | None = 0,
) -> Graph:
    """Build a typed :class:`Graph` from any networkx graph.

    Nodes are grouped into populations by ``population_attr`` (default: one population per
    neuron type, named after it); edges into projections by ``projection_attr`` (default: one per
    (pre population, post population, synapse type)). Undirected graphs get both directions.
    Missing type attributes fall back to ``"default"``. The original node labels, in simgraph's
    node order, are kept in ``graph.node_labels``. Graphs made by :func:`to_networkx` round-trip.
    """
    if not isinstance(G, nx.Graph):
        raise GraphError(f"from_networkx needs a networkx graph, got {type(G).__name__}")
    if G.number_of_nodes() == 0:
        raise GraphError("from_networkx: the graph has no nodes")
    pop_key = population_attr or node_type_attr
    groups: "OrderedDict[str, list]" = OrderedDict()
    types: dict[str, str] = {}
    declared = G.graph.get("populations") if population_attr else None
    if declared:  # keep the population order of an exported simgraph network
        for name, _, ntype in declared:
            groups[str(name)] = []
            types[str(name)] = str(ntype)
    for node, data in G.nodes(data=True):
        pop = str(data.get(pop_key, "default"))
        ntype = str(data.get(node_type_attr, "default"))
        if pop in types and types[pop] != ntype:
            raise GraphError(f"from_networkx: population {pop!r} mixes neuron types {types[pop]!r} and {ntype!r} (node {node!r})")
        types.setdefault(pop, ntype)
        groups.setdefault(pop, []).append(node)
    net = Network(seed=seed)
    where: dict = {}
    labels: list = []
    for pop, nodes in groups.items():
        if not nodes:
            raise GraphError(f"from_networkx: population {pop!r} is declared but has no nodes")
        net.population(pop, len(nodes), neuron_type=types[pop])
        for i, node in enumerate(nodes):
            where[node] = (pop, i)
        labels.extend(nodes)
    if G.is_multigraph():
        edges = list(G.edges(keys=True, data=True))
        if all(isinstance(k, int) for _, _, k, _ in edges):  # exported by to_networkx: keys are edge ids
            edges.sort(key=lambda edge: edge[2])
        edges = [(u, v, d) for u, v, _, d in edges]
    else:
        edges = list(G.edges(data=True))
    projections: "OrderedDict[tuple, tuple[list, list]]" = OrderedDict()
    for u, v, data in edges:
        directions = [(u, v)] if G.is_directed() else [(u, v), (v, u)]
        for a, b in directions:
            (pa, ia), (pb, ib) = where[a], where[b]
            stype = str(data.get(edge_type_attr, "default"))
            key = (data.get(projection_attr) if projection_attr else None, pa, pb, stype)
            pre, post = projections.setdefault(key, ([], []))
            pre.append(ia)
            post.append(ib)
    names_used: dict[str, int] = {}
    for (pname, pa, pb, stype), (pre, post) in projections.items():
        name = str(pname) if pname is not None else f"{pa}->{pb}"
        if name in names_used:
            names_used[name] += 1
            name = f"{name}:{stype}" if names_used[name] == 1 else f"{name}:{stype}:{names_used[name]}"
        names_used.setdefault(name, 0)
        net.connect(pa, pb, "explicit", pre_idx=pre, post_idx=post, synapse_type=stype, name=name)
    net.inputs(*(inputs if inputs is not None else G.graph.get("inputs", [])))
    net.outputs(*(outputs if outputs is not None else G.graph.get("outputs", [])))
    return dataclasses.replace(net.build(), node_labels=tuple(labels))


def to_pyg(graph: Graph, state: dict | None = None, hetero: bool = False):
    """The graph as a PyG ``Data`` (``hetero=False``) or ``HeteroData`` keyed by neuron/synapse types.

    ``Data``: ``edge_index``, ``node_type``, ``edge_type``, ``num_nodes`` and, with ``state``,
    ``x = state['node']`` and ``edge_attr = state['edge']`` transposed to PyG's ``[N, B, D]`` /
    ``[E, B, D]`` (batch second). ``HeteroData``: one node store per neuron type, one edge store per
    (pre type, synapse type, post type), with local indices and, with ``state``, ``x``/``edge_attr``.
    """
    from torch_geometric.data import Data, HeteroData

    x = state["node"].transpose(0, 1) if state is not None else None
    e = state["edge"].transpose(0, 1) if state is not None else None
    if not hetero:
        data = Data(edge_index=graph.edge_index, node_type=graph.node_type, edge_type=graph.edge_type, num_nodes=graph.num_nodes)
        if state is not None:
            data.x, data.edge_attr = x, e
        return data
    data = HeteroData()
    local = torch.empty_like(graph.node_type)
    for t, name in enumerate(graph.neuron_types):
        mask = graph.node_type == t
        local[mask] = torch.arange(int(mask.sum()), device=graph.device)
        data[name].num_nodes = int(mask.sum())
        if x is not None:
            data[name].x = x[mask]
    src, dst = graph.edge_index
    for p in graph.projections.values():
        key = (p.pre.neuron_type, p.synapse_type, p.post.neuron_type)
        ei = torch.stack([local[src[p.slice]], local[dst[p.slice]]])
        store = data[key]
        if "edge_index" in store:
            store.edge_index = torch.cat([store.edge_index, ei], 1)
            if e is not None:
                store.edge_attr = torch.cat([store.edge_attr, e[p.slice]], 0)
        else:
            store.edge_index = ei
            if e is not None:
                store.edge_attr = e[p.slice]
    return data
