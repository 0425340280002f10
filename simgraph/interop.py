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
    (synapse type). With ``state``, episode ``batch_index`` of each field is attached as a list of
    floats under the field's name: ``state["node"]`` (``[B, N, D]``, or ``[N, D]`` shared by all
    episodes) on the nodes and ``state["edge"]`` (``[B, E, D]`` or ``[E, D]``) on the edges, decided
    by the key, never by the shape (a wrong shape is an error). Another field goes on the nodes if it
    is ``[B, N, D]``, on the edges if it is ``[B, E, D]``; other shapes are left out, and a field that
    fits both (``N == E``) is refused: drop it from the dict, or attach it yourself.
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
        if key in ("node", "edge"):
            value = _state_field(graph, value, key, "to_networkx")
            on_nodes = key == "node"
        elif isinstance(value, Tensor) and value.dim() == 3 and value.shape[1] in (N, E):
            if N == E:
                raise ShapeError(f"to_networkx: state[{key!r}] has shape {list(value.shape)} and this graph has as many "
                                 f"nodes as edges ({N}), so it could belong to either; drop it from the state dict "
                                 "(only 'node' and 'edge' are placed by their key) and attach it yourself")
            on_nodes = value.shape[1] == N
        else:
            continue  # not a per-node or per-edge field (documented)
        if value.dim() == 3:
            if not -value.shape[0] <= batch_index < value.shape[0]:
                raise ShapeError(f"batch_index {batch_index} out of range for state[{key!r}] with batch {value.shape[0]}")
            value = value[batch_index]
        (node_fields if on_nodes else edge_fields)[key] = value.detach().cpu().tolist()
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
    inputs: list[str] | str | None = None,
    outputs: list[str] | str | None = None,
    seed: int | None = 0,
) -> Graph:
    """Build a typed :class:`Graph` from any networkx graph.

    Nodes are grouped into populations by ``population_attr`` (default: one population per
    neuron type, named after it; for a graph made by :func:`to_networkx`, its ``population``
    attribute); edges into projections by ``projection_attr`` (default: one per (pre population,
    post population, synapse type); for a graph made by :func:`to_networkx`, its ``projection``
    attribute). Undirected graphs get both directions of every edge, and one autapse per
    self-loop. Missing type attributes fall back to ``"default"``. ``inputs`` and ``outputs`` name
    populations: a list, or one name as a string. The original node labels, in simgraph's node
    order, are kept in ``graph.node_labels``. Graphs made by :func:`to_networkx` round-trip, with
    no attribute names given.
    """
    if not isinstance(G, nx.Graph):
        raise GraphError(f"from_networkx needs a networkx graph, got {type(G).__name__}")
    if G.number_of_nodes() == 0:
        raise GraphError("from_networkx: the graph has no nodes")
    inputs = _names(inputs if inputs is not None else G.graph.get("inputs", []), "inputs")
    outputs = _names(outputs if outputs is not None else G.graph.get("outputs", []), "outputs")
    if population_attr is None and G.graph.get("populations") and all("population" in d for _, d in G.nodes(data=True)):
        population_attr = "population"  # exported by to_networkx: keep its populations
        if projection_attr is None and all("projection" in d for *_, d in G.edges(data=True)):
            projection_attr = "projection"  # and its projections
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
        directions = [(u, v)] if G.is_directed() or u == v else [(u, v), (v, u)]  # a self-loop is one autapse
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
    net.inputs(*inputs)
    net.outputs(*outputs)
    return dataclasses.replace(net.build(), node_labels=tuple(labels))


def _names(names, what: str) -> list:
    """Population names for ``inputs``/``outputs``: a list or tuple, or one name as a string."""
    if names is None:
        return []
    if isinstance(names, str):
        return [names]  # one name, not its letters
    if not isinstance(names, (list, tuple)):
        raise GraphError(f"from_networkx: {what} must be a list of population names or one name, got {names!r}")
    return list(names)


def _state_field(graph: Graph, value, key: str, who: str) -> Tensor:
    """``state[key]`` for ``key`` "node" (``[B, N, D]`` or ``[N, D]``) or "edge" (``[B, E, D]`` or ``[E, D]``)."""
    n, rows = (graph.num_nodes, "N nodes") if key == "node" else (graph.num_edges, "E edges")
    if not isinstance(value, Tensor):
        raise ShapeError(f"{who}: state[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (2, 3) or value.shape[-2] != n:
        raise ShapeError(f"{who}: state[{key!r}] must have shape [B, {n}, D] or [{n}, D] (B episodes, {rows}), "
                         f"got {list(value.shape)}")
    if value.device.type != graph.device.type:
        raise ShapeError(f"{who}: state[{key!r}] is on {value.device} but the graph is on {graph.device}; move one with .to()")
    return value


def to_pyg(graph: Graph, state: dict | None = None, hetero: bool = False):
    """The graph as a PyG ``Data`` (``hetero=False``) or ``HeteroData`` keyed by neuron/synapse types.

    ``Data``: ``edge_index``, ``node_type``, ``edge_type``, ``num_nodes`` and, with ``state``,
    ``x = state['node']`` and ``edge_attr = state['edge']`` transposed to PyG's ``[N, B, D]`` /
    ``[E, B, D]`` (batch second); an unbatched ``[N, D]`` / ``[E, D]`` tensor is kept as it is.
    ``HeteroData``: one node store per neuron type, one edge store per (pre type, synapse type,
    post type), with local indices and, with ``state``, ``x``/``edge_attr``. ``state`` must hold
    ``"node"`` and ``"edge"``; other fields are not exported.
    """
    if not isinstance(graph, Graph):
        raise ShapeError(f"to_pyg needs a simgraph Graph, got {type(graph).__name__}")
    if not isinstance(hetero, (bool, np.bool_)):
        raise ShapeError(f"to_pyg: hetero must be True or False, got {hetero!r}")
    if state is not None:
        if not isinstance(state, dict):
            raise ShapeError(f"to_pyg: state must be a dict of tensors with 'node' and 'edge' (or None), got "
                             f"{type(state).__name__}")
        for key in ("node", "edge"):
            if key not in state:
                raise ShapeError(f"to_pyg: state is missing field {key!r} (has {sorted(map(str, state))}); pass the state "
                                 "of a run (run.state) or None")
    from torch_geometric.data import Data, HeteroData

    x = _batch_second(_state_field(graph, state["node"], "node", "to_pyg")) if state is not None else None
    e = _batch_second(_state_field(graph, state["edge"], "edge", "to_pyg")) if state is not None else None
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


def _batch_second(t: Tensor) -> Tensor:
    return t.transpose(0, 1) if t.dim() == 3 else t
