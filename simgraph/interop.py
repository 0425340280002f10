"""Export to and import from networkx and PyTorch Geometric, and graph files (GraphML, GEXF, node-link JSON)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from .build import Network
from .errors import (GraphError, ShapeError, SimgraphError, check_bool, check_choice, check_finite, check_int, check_path, check_tensor,
                     check_type,
                     is_number, unknown)
from .graph import Graph, is_hashable


def to_networkx(graph: Graph, state: dict | None = None, batch_index: int = 0, labels: bool | None = None,
                scalar_attrs: bool = False) -> nx.MultiDiGraph:
    """The graph as a ``networkx.MultiDiGraph`` (edge keys = edge ids).

    Nodes are the original labels (``graph.node_labels``, e.g. after :func:`from_networkx`) when
    ``labels`` is True, which is the default for a graph that has labels; nodes 0..N-1 otherwise.
    Node attributes: ``population``, ``type`` (neuron type); edge attributes: ``projection``, ``type``
    (synapse type) and, for a weighted graph (``graph.edge_weight``), ``weight``; with Dale's law
    (``graph.edge_sign``) ``sign``; with tied pairs (``graph.edge_partner``) ``partner``, the edge key
    of the pair's other synapse. With ``state``,
    episode ``batch_index`` of each field is attached under the field's name as a list of floats
    or, with ``scalar_attrs=True``, as one float attribute per component: ``state_0, state_1, ...``
    for ``state["node"]`` / ``state["edge"]``, ``<field>_0, ...`` for the others.
    ``state["node"]`` (``[B, N, D]``, or ``[N, D]`` shared by all episodes) goes on the nodes and
    ``state["edge"]`` (``[B, E, D]`` or ``[E, D]``) on the edges, decided by the key, never by the
    shape (a wrong shape is an error). Another field goes on the nodes if it is ``[B, N, D]``, on
    the edges if it is ``[B, E, D]``; other shapes are left out, and a field that fits both
    (``N == E``) is refused: drop it from the dict, or attach it yourself.
    Graph attributes record the populations, projections (with layouts), inputs and outputs (and
    neuron-level ``input_ids`` / ``output_ids`` as node keys) so :func:`from_networkx` can rebuild
    the same network; with ``scalar_attrs=True`` they are JSON strings, so that ``nx.write_graphml``
    and ``nx.write_gexf`` take the graph.
    """
    check_type("to_networkx", graph, Graph, "a simgraph Graph", error=ShapeError)
    if state is not None:
        check_type("to_networkx state", state, dict, "a dict of tensors (or None)", error=ShapeError)
    batch_index = check_int("to_networkx batch_index", batch_index, error=ShapeError)
    labels = None if labels is None else check_bool("to_networkx labels (or None)", labels, error=ShapeError)
    scalar_attrs = check_bool("to_networkx scalar_attrs", scalar_attrs, error=ShapeError)
    if labels and graph.node_labels is None:
        raise ShapeError("to_networkx: labels=True but this graph has no node labels (graph.node_labels is None)")
    use_labels = graph.node_labels is not None if labels is None else bool(labels)
    N, E = graph.num_nodes, graph.num_edges
    node_fields, edge_fields = _exported_fields(graph, state, batch_index)
    names = list(graph.node_labels) if use_labels else list(range(N))
    pop_of = [None] * N
    for pop in graph.populations.values():
        pop_of[pop.start : pop.stop] = [pop.name] * pop.size
    ntype = [graph.neuron_types[i] for i in graph.node_type.tolist()]
    meta = {
        "populations": [(p.name, p.size, p.neuron_type) for p in graph.populations.values()],
        "projections": [(p.name, p.pre.name, p.post.name, p.synapse_type, p.layout) for p in graph.projections.values()],
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
    }
    for key, ids in (("input_ids", graph.input_ids), ("output_ids", graph.output_ids)):
        if ids is not None:
            meta[key] = [names[i] for i in ids.tolist()]
    if graph.edge_weight is not None:
        meta["weight_attr"] = "weight"
    if graph.edge_sign is not None:
        meta["signed"] = True
    if graph.edge_partner is not None:
        meta["tied"] = True
    if scalar_attrs:
        meta = {k: json.dumps(v) if isinstance(v, list) else v for k, v in meta.items()}
    G = nx.MultiDiGraph(**meta)

    def attrs(fields: dict, i: int) -> dict:
        if not scalar_attrs:
            return {k: v[i] for k, v in fields.items()}
        return {f"{_prefix(k)}_{d}": x for k, v in fields.items() for d, x in enumerate(v[i])}

    G.add_nodes_from((names[i], {"population": pop_of[i], "type": ntype[i], **attrs(node_fields, i)}) for i in range(N))
    proj_of, etype = [None] * E, [None] * E
    for p in graph.projections.values():
        proj_of[p.start : p.stop] = [p.name] * p.num_edges
        etype[p.start : p.stop] = [p.synapse_type] * p.num_edges
    src, dst = graph.edge_index.tolist()
    per_edge = {key: t.tolist() for key, t in (("weight", graph.edge_weight), ("sign", graph.edge_sign),
                                                ("partner", graph.edge_partner)) if t is not None}
    G.add_edges_from(
        (names[src[e]], names[dst[e]], e, {"projection": proj_of[e], "type": etype[e],
                                           **{key: v[e] for key, v in per_edge.items()}, **attrs(edge_fields, e)})
        for e in range(E)
    )
    return G


def _prefix(key: str) -> str:
    """The scalar attribute prefix of a state field: ``state`` for "node" and "edge", its name otherwise."""
    return "state" if key in ("node", "edge") else str(key)


def _exported_fields(graph: Graph, state: dict | None, batch_index: int) -> tuple[dict, dict]:
    """The per-node and per-edge fields of ``state`` (episode ``batch_index``) as nested lists of floats."""
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
            check_finite(f"to_networkx: state[{key!r}]", value, hint=_NONFINITE_HINT)
        else:
            continue  # not a per-node or per-edge field (documented)
        if value.dim() == 3:
            if not -value.shape[0] <= batch_index < value.shape[0]:
                raise ShapeError(f"batch_index {batch_index} out of range for state[{key!r}] with batch {value.shape[0]}")
            value = value[batch_index]
        (node_fields if on_nodes else edge_fields)[key] = value.detach().cpu().tolist()
    return node_fields, edge_fields


PARALLEL = ("keep", "sum")


def from_networkx(
    G: nx.Graph,
    node_type_attr: str = "type",
    edge_type_attr: str = "type",
    population_attr: str | None = None,
    projection_attr: str | None = None,
    inputs: list | str | None = None,
    outputs: list | str | None = None,
    seed: int | None = 0,
    weight_attr: str | None = None,
    default_type: str | None = None,
    parallel: str = "keep",
    sign_attr: str | dict | None = None,
    undirected: str = "pairs",
    tied_types: list | str | None = None,
) -> Graph:
    """Build a typed :class:`Graph` from any networkx graph.

    Every node needs a neuron type, its ``node_type_attr`` attribute: a node without one is refused
    (a GraphError naming it) unless ``default_type="..."`` names the type such nodes get. Nodes
    are grouped into populations by ``population_attr`` (default: one population per neuron type,
    named after it; for a graph made by :func:`to_networkx`, its ``population`` attribute); edges
    into projections by ``projection_attr`` (default: one per (pre population, post population,
    synapse type); for a graph made by :func:`to_networkx`, its ``projection`` attribute). An edge
    without ``edge_type_attr`` has synapse type ``"default"``. Undirected graphs get both
    directions of every edge, and one autapse per self-loop.

    ``weight_attr="weight"``: every edge's attribute of that name (a finite number; an edge without
    one is an error naming it) is kept, in simgraph's edge order, as ``graph.edge_weight`` ``[E]``
    float. ``parallel="keep"`` keeps parallel edges (a multigraph's repeated (u, v) pairs of one
    synapse type) as separate synapses; ``"sum"`` merges each group into one synapse whose weight is
    the sum of theirs (without ``weight_attr`` each edge counts 1, so the weight is the multiplicity).

    Dale's law, ``sign_attr``: the name of a node attribute holding each neuron's sign (a number:
    its sign; or ``"+"``/``"-"``/``"excitatory"``/``"inhibitory"``), or a dict giving the sign of
    every neuron type (``{"sensory": 1, "inter": -1, "motor": 1}``). Every synapse gets its
    presynaptic neuron's sign as ``graph.edge_sign`` ``[E]`` (+1 / -1; 0 for tied gap junctions and
    for a sign of 0: free), which the rules with scalar weights keep (``rules/constraints.py``).

    Gap junctions: an undirected graph's edges become two directed synapses each, free
    (``undirected="pairs"``) or tied into one shared state (``undirected="tied"``). In a directed
    graph, ``tied_types=["gap"]`` ties the edges of those synapse types: each u->v edge must have a
    v->u edge of the same type (and weight), and the two become one tied pair (in an undirected
    graph, the two directions of each edge of those types are tied). The pairing is
    ``graph.edge_partner`` ``[E]`` (each edge's partner edge id, itself when untied).

    ``inputs`` and ``outputs``: population names (a list, or one name as a string), node labels
    (neuron by neuron, in the order given: :meth:`Graph.with_io`), or a node attribute as a dict,
    ``{"role": "sensory"}`` (every node whose attribute equals the value, or is in a list of
    values, in simgraph's node order). The original node labels, in simgraph's node order, are kept
    in ``graph.node_labels``. Graphs made by :func:`to_networkx` round-trip (node order, populations,
    projections and layouts, inputs and outputs, weights, signs, tied pairs) with no attribute
    names given.
    """
    check_type("from_networkx", G, nx.Graph, "a networkx graph", error=GraphError)
    if G.number_of_nodes() == 0:
        raise GraphError("from_networkx: the graph has no nodes")
    check_choice("from_networkx parallel= mode", parallel, PARALLEL)
    for what, value in (("weight_attr", weight_attr), ("default_type", default_type), ("population_attr", population_attr),
                        ("projection_attr", projection_attr)):
        if value is not None:
            check_type(f"from_networkx {what}", value, str, "a string or None", error=GraphError)
    for what, value in (("node_type_attr", node_type_attr), ("edge_type_attr", edge_type_attr)):
        check_type(f"from_networkx {what}", value, str, "an attribute name (a string)", error=GraphError)
    check_choice("from_networkx undirected= mode", undirected, UNDIRECTED)
    if undirected == "tied" and G.is_directed():
        raise GraphError("from_networkx: undirected='tied' is for undirected graphs; in a directed graph name the synapse "
                         "types whose reciprocal edges are gap junctions with tied_types=[...]")
    if sign_attr is not None and not isinstance(sign_attr, (str, dict)):
        raise GraphError(f"from_networkx: sign_attr must be a node attribute name, a dict of neuron type -> sign, or "
                         f"None, got {sign_attr!r}")
    tied = _tied_types(tied_types)
    exported = _meta(G, "populations") is not None
    inputs = _names(inputs if inputs is not None else _meta(G, "inputs", []), "inputs")
    outputs = _names(outputs if outputs is not None else _meta(G, "outputs", []), "outputs")
    if weight_attr is None and exported:
        weight_attr = _meta(G, "weight_attr")
    if population_attr is None and exported and all("population" in d for _, d in G.nodes(data=True)):
        population_attr = "population"  # exported by to_networkx: keep its populations
        if projection_attr is None and all("projection" in d for *_, d in G.edges(data=True)):
            projection_attr = "projection"  # and its projections
    pop_key = population_attr or node_type_attr
    groups: "OrderedDict[str, list]" = OrderedDict()
    types: dict[str, str] = {}
    if population_attr is not None and G.number_of_nodes() and not any(population_attr in d for _, d in G.nodes(data=True)):
        have = sorted({str(k) for _, d in G.nodes(data=True) for k in d})
        raise GraphError(f"from_networkx: population_attr={population_attr!r}, but no node has a {population_attr!r} "
                         f"attribute (the nodes have: {', '.join(have) or 'none'}); name one they have, or leave it out "
                         f"(one population per neuron type)")
    declared = _meta(G, "populations") if population_attr else None
    if declared:  # keep the population order of an exported simgraph network
        for name, _, ntype in declared:
            groups[str(name)] = []
            types[str(name)] = str(ntype)
    for node, data in G.nodes(data=True):
        if node_type_attr not in data and default_type is None:
            raise GraphError(f"from_networkx: node {node!r} has no {node_type_attr!r} attribute (its neuron type); "
                             f"set it on every node, pass node_type_attr= to name the attribute that holds it, or "
                             f"default_type='...' to give untyped nodes one type")
        ntype = str(data.get(node_type_attr, default_type))
        pop = str(data[pop_key]) if pop_key in data else ntype
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
    inputs, outputs = _by_attribute(G, inputs, labels, "inputs"), _by_attribute(G, outputs, labels, "outputs")
    if G.is_multigraph():
        edges = list(G.edges(keys=True, data=True))
        if exported and all(isinstance(k, (int, np.integer)) for _, _, k, _ in edges):  # keys are edge ids
            edges.sort(key=lambda edge: edge[2])
    else:
        edges = [(u, v, None, d) for u, v, d in G.edges(data=True)]
    projections: "OrderedDict[tuple, list]" = OrderedDict()
    layouts: dict = {}
    if projection_attr and _meta(G, "projections"):  # exported: the same projections, order and layouts
        for name, pa, pb, stype, layout in _meta(G, "projections"):
            key = (str(name), str(pa), str(pb), str(stype))
            projections[key] = []
            layouts[key] = str(layout)
    signs = _node_signs(G, sign_attr, node_type_attr, default_type) if sign_attr is not None else None
    signed = signs is not None or (exported and bool(_meta(G, "signed", False)))
    tied_export = exported and bool(_meta(G, "tied", False))
    weighed = [_weight(u, v, k, data, weight_attr) for u, v, k, data in edges]
    stypes = [str(data.get(edge_type_attr, "default")) for *_, data in edges]
    missing_types = sorted(tied - set(stypes))
    if missing_types:
        raise unknown("synapse type in tied_types", missing_types[0], sorted(set(stypes)))
    tags = _pair_tags(edges, stypes, weighed, tied) if tied and G.is_directed() else {}
    for idx, (u, v, k, data) in enumerate(edges):
        w, stype = weighed[idx], stypes[idx]
        directions = [(u, v)] if G.is_directed() or u == v else [(u, v), (v, u)]  # a self-loop is one autapse
        if tied_export and "partner" in data:  # an exported graph's pairs, by edge id (untied: its own partner)
            tag = ("x", min(int(k), int(data["partner"]))) if int(data["partner"]) != int(k) else None
        elif not G.is_directed() and (undirected == "tied" or stype in tied):  # both directions of one edge
            tag = ("u", idx)
        else:
            tag = tags.get(idx)
        for a, b in directions:
            (pa, ia), (pb, ib) = where[a], where[b]
            pname = data.get(projection_attr) if projection_attr else None
            key = (None if pname is None else str(pname), pa, pb, stype)
            if signs is not None:
                sign = 0.0 if tag is not None else signs[a]  # gap junctions are not signed
            elif signed:  # exported: the sign each synapse had
                sign = _sign_value(data.get("sign"), f"edge {(u, v, k)!r} attribute 'sign'")
            else:
                sign = 0.0
            projections.setdefault(key, []).append((ia, ib, w, sign, tag))
    names_used: dict[str, int] = {}
    extras: list = []  # (weight, sign, tie tag) per synapse, in simgraph's edge order
    keep_weights = weight_attr is not None or parallel == "sum"
    for (pname, pa, pb, stype), syn in projections.items():
        name = pname if pname is not None else f"{pa}->{pb}"
        if name in names_used:
            names_used[name] += 1
            name = f"{name}:{stype}" if names_used[name] == 1 else f"{name}:{stype}:{names_used[name]}"
        names_used.setdefault(name, 0)
        if parallel == "sum":
            merged: "OrderedDict[tuple, list]" = OrderedDict()
            for ia, ib, w, sign, tag in syn:
                m = merged.setdefault((ia, ib), [0.0, sign, None])
                m[0] += w
                if tag is not None:  # the merged synapse pairs with the merged reverse one
                    m[2] = ("s", frozenset(((pa, ia), (pb, ib))), stype)
            syn = [(ia, ib, *m) for (ia, ib), m in merged.items()]
        syn.sort(key=lambda s: (s[1], s[0]))  # simgraph's order (post, pre), stable: build keeps it as it is
        pre, post = [s[0] for s in syn], [s[1] for s in syn]
        extras.extend(s[2:] for s in syn)
        net.connect(pa, pb, "explicit", pre_idx=np.asarray(pre, dtype=np.int64), post_idx=np.asarray(post, dtype=np.int64),
                    synapse_type=stype, name=name, layout=layouts.get((pname, pa, pb, stype), "auto"))
    pop_inputs, pop_outputs = (all(isinstance(n, str) and n in groups for n in names) for names in (inputs, outputs))
    net.inputs(*(inputs if pop_inputs else []))
    net.outputs(*(outputs if pop_outputs else []))
    graph = dataclasses.replace(
        net.build(), node_labels=tuple(labels),
        edge_weight=torch.tensor([x[0] for x in extras], dtype=torch.float32) if keep_weights else None,
        edge_sign=torch.tensor([x[1] for x in extras], dtype=torch.float32) if signed else None,
        edge_partner=_partners([x[2] for x in extras]) if any(x[2] is not None for x in extras) else None)
    if graph.edge_partner is not None:
        _check_partners(graph)
    position = {node: i for i, node in enumerate(labels)}
    for what, names, by_pop in (("inputs", inputs, pop_inputs), ("outputs", outputs, pop_outputs)):
        if not by_pop:  # node labels: neuron by neuron
            graph = graph.with_io(**{what: names})
    for what in ("input_ids", "output_ids"):
        ids = _meta(G, what)
        given = inputs if what == "input_ids" else outputs
        if ids is None or given != _names(_meta(G, what.replace("_ids", "s"), []), what):
            continue  # not exported, or replaced by the caller's inputs/outputs
        missing = [n for n in ids if not is_hashable(n) or n not in position]
        if missing:
            raise GraphError(f"from_networkx: graph attribute {what!r} names node {missing[0]!r}, which is not in the graph")
        graph = dataclasses.replace(graph, **{what: torch.tensor([position[n] for n in ids], dtype=torch.long)}, _cache={})
    return graph


def _meta(G: nx.Graph, key: str, default=None):
    """Graph attribute ``key`` of an exported graph; a JSON string (``scalar_attrs=True``) is decoded."""
    value = G.graph.get(key, default)
    if isinstance(value, str) and key != "weight_attr":
        try:
            value = json.loads(value)
        except ValueError:
            raise GraphError(f"from_networkx: graph attribute {key!r} is a string but not JSON: {value[:80]!r}") from None
    return value



UNDIRECTED = ("pairs", "tied")
_SIGN_WORDS = {"+": 1.0, "-": -1.0, "excitatory": 1.0, "inhibitory": -1.0}


def _weight(u, v, k, data: dict, weight_attr: str | None) -> float:
    """An edge's ``weight_attr`` as a float (1.0 without ``weight_attr``); GraphError naming the edge if not a finite number."""
    if weight_attr is None:
        return 1.0
    w = data.get(weight_attr)
    if not is_number(w) or not math.isfinite(float(w)):
        edge = (u, v) if k is None else (u, v, k)
        raise GraphError(f"from_networkx: edge {edge!r} has {weight_attr!r} = {w!r}, not a finite number "
                         f"(weight_attr={weight_attr!r} needs one on every edge)")
    return float(w)


def _sign_value(value, what: str) -> float:
    """+1.0, -1.0 or 0.0 from a number (its sign) or one of ``+ - excitatory inhibitory``."""
    if isinstance(value, str) and value.strip().lower() in _SIGN_WORDS:
        return _SIGN_WORDS[value.strip().lower()]
    if is_number(value) and math.isfinite(float(value)):
        return float(np.sign(float(value)))
    raise GraphError(f"from_networkx: {what} is {value!r}; a sign is a finite number (its sign counts, 0 = free) or one "
                     f"of {', '.join(map(repr, _SIGN_WORDS))}")


def _node_signs(G: nx.Graph, sign_attr, node_type_attr: str, default_type: str | None) -> dict:
    """Each node's sign (Dale's law) from node attribute ``sign_attr`` or a dict of neuron type -> sign."""
    if isinstance(sign_attr, str):
        out = {}
        for node, data in G.nodes(data=True):
            if sign_attr not in data:
                raise GraphError(f"from_networkx: node {node!r} has no {sign_attr!r} attribute (sign_attr={sign_attr!r} "
                                 "needs one on every node, or give a dict of neuron type -> sign)")
            out[node] = _sign_value(data[sign_attr], f"node {node!r} attribute {sign_attr!r}")
        return out
    ntypes = {node: str(data.get(node_type_attr, default_type)) for node, data in G.nodes(data=True)}
    for key in sign_attr:
        if key not in set(ntypes.values()):
            raise unknown("neuron type in sign_attr", key, set(ntypes.values()))
    unsigned = sorted(set(ntypes.values()) - set(sign_attr))
    if unsigned:
        raise GraphError(f"from_networkx: sign_attr gives no sign for neuron type(s) {unsigned}; give every type one "
                         "(0 = free)")
    table = {t: _sign_value(v, f"sign_attr[{t!r}]") for t, v in sign_attr.items()}
    return {node: table[t] for node, t in ntypes.items()}


def _tied_types(tied_types) -> set:
    if tied_types is None:
        return set()
    if isinstance(tied_types, str):
        tied_types = [tied_types]
    if not isinstance(tied_types, (list, tuple, set)) or not all(isinstance(t, str) for t in tied_types):
        raise GraphError(f"from_networkx: tied_types must be a list of synapse type names, got {tied_types!r}")
    return set(tied_types)


def _pair_tags(edges: list, stypes: list, weights: list, tied: set) -> dict:
    """Tie tags for the edges of ``tied`` synapse types in a directed graph: each u->v edge pairs with an
    unpaired v->u edge of the same type and weight (in edge order); one left over is an error."""
    tags, waiting = {}, {}
    for idx, (u, v, k, _) in enumerate(edges):
        if stypes[idx] not in tied:
            continue
        if u == v:
            tags[idx] = ("t", idx)  # a tied autapse is its own partner
            continue
        back = waiting.get((v, u, stypes[idx], weights[idx]))
        if back:
            j = back.pop(0)
            tags[idx] = tags[j] = ("t", j)
        else:
            waiting.setdefault((u, v, stypes[idx], weights[idx]), []).append(idx)
    for (u, v, stype, w), left in waiting.items():
        if left:
            raise GraphError(f"from_networkx: edge {u!r} -> {v!r} of tied synapse type {stype!r} (weight {w}) has no "
                             f"reverse edge {v!r} -> {u!r} of that type and weight; a tied gap junction needs both")
    return tags


def _partners(net_edges: list) -> Tensor:
    """``edge_partner [E]`` from each synapse's tie tag (None: untied, its own partner)."""
    partner = list(range(len(net_edges)))
    members: dict = {}
    for e, tag in enumerate(net_edges):
        if tag is not None:
            members.setdefault(tag, []).append(e)
    for tag, es in members.items():
        if len(es) == 2:
            partner[es[0]], partner[es[1]] = es[1], es[0]
        elif len(es) != 1:
            raise GraphError(f"from_networkx: {len(es)} synapses claim one tied pair ({tag!r})")
    return torch.tensor(partner, dtype=torch.long)


def _check_partners(graph: Graph) -> None:
    """Each tied pair runs both ways between the same two neurons with one weight (or one autapse)."""
    src, dst = graph.edge_index
    p = graph.edge_partner
    bad = (src[p] != dst) | (dst[p] != src)
    if graph.edge_weight is not None:
        bad |= graph.edge_weight[p] != graph.edge_weight
    bad &= p != torch.arange(graph.num_edges)  # untied synapses are their own partners
    if bool(bad.any()):
        e = int(bad.nonzero()[0])
        raise GraphError(f"from_networkx: tied synapse {e} and its partner {int(p[e])} are not the two directions of one "
                         "gap junction with one weight")


def nodes_by_attribute(G: nx.Graph, graph: Graph, names: dict, what: str = "inputs", who: str = "nodes_by_attribute") -> list:
    """The neurons of ``graph`` whose node attributes in ``G`` (the networkx graph it was read from, or
    ``to_networkx(graph)``) match ``names`` = ``{attribute: value or [values]}``, in simgraph's node
    order, as :meth:`Graph.with_io` items: node labels, or node ids for a graph without labels."""
    labels = list(graph.node_labels) if graph.node_labels is not None else list(range(graph.num_nodes))
    missing = [n for n in labels if n not in G]
    if missing:
        raise GraphError(f"{who}: node {missing[0]!r} of the graph is not in the networkx graph whose attributes select {what}")
    return _by_attribute(G, names, labels, what, who)


def _by_attribute(G: nx.Graph, names, labels: list, what: str, who: str = "from_networkx"):
    """``inputs``/``outputs`` given as ``{attribute: value or [values]}``: the matching node labels in simgraph
    order; anything else unchanged."""
    if not isinstance(names, dict):
        return names
    if not names or not all(isinstance(k, str) for k in names):
        raise GraphError(f"{who}: {what} as a node attribute needs {{attribute name: value or [values]}}, got {names!r}")
    wanted = {k: (list(v) if isinstance(v, (list, tuple, set)) else [v]) for k, v in names.items()}
    attrs = set().union(*(d.keys() for _, d in G.nodes(data=True)))
    for key in wanted:
        if key not in attrs:
            raise unknown(f"node attribute in {what}", key, attrs)
    picked = [n for n in labels if all(G.nodes[n].get(k) in vals for k, vals in wanted.items())]
    if not picked:
        raise GraphError(f"{who}: {what}={names!r} matches no node")
    return picked


def _names(names, what: str) -> list:
    """Population names or node labels for ``inputs``/``outputs``: a list or tuple, or one name as a string
    (a dict, a node attribute, passes through to be resolved once the node order is known)."""
    if names is None:
        return []
    if isinstance(names, str):
        return [names]  # one name, not its letters
    if isinstance(names, dict):
        return names
    if not isinstance(names, (list, tuple)):
        raise GraphError(f"from_networkx: {what} must be a list of population names or node labels, or one name, "
                         f"got {names!r}")
    return list(names)


def _state_field(graph: Graph, value, key: str, who: str) -> Tensor:
    """``state[key]`` for ``key`` "node" (``[B, N, D]`` or ``[N, D]``) or "edge" (``[B, E, D]`` or ``[E, D]``)."""
    n, rows = (graph.num_nodes, "N nodes") if key == "node" else (graph.num_edges, "E edges")
    check_tensor(f"{who}: state[{key!r}]", value)
    if value.dim() not in (2, 3) or value.shape[-2] != n:
        raise ShapeError(f"{who}: state[{key!r}] must have shape [B, {n}, D] or [{n}, D] (B episodes, {rows}), "
                         f"got {list(value.shape)}")
    check_tensor(f"{who}: state[{key!r}]", value, device=graph.device)
    check_finite(f"{who}: state[{key!r}]", value, hint=_NONFINITE_HINT)
    return value


_NONFINITE_HINT = "an exported state must be finite (this looks like the state of a run that diverged)"


# ---------------------------------------------------------------------- files
# sg.write(graph, "net.graphml", state=run.state) / graph, state = sg.read("net.graphml"), for .graphml, .gexf
# and .json (node-link). The file is an ordinary networkx export (to_networkx(..., scalar_attrs=True):
# original node labels, type/population per node, type/projection/weight per edge, states as
# state_0, state_1, ...) that other tools open as it is, plus one graph attribute "simgraph" (JSON)
# with what an exact round trip needs besides: the kind of node labels, the seed, and the shape and
# dtype of each state field.
FORMATS = {".graphml": "GraphML", ".gexf": "GEXF", ".json": "node-link JSON"}
FORMAT_VERSION = 1
_GEXF_TYPE = "synapse_type"  # GEXF keeps an edge's "type" for directed/undirected: synapse types go here


def write(graph: Graph, path, state: dict | None = None, batch_index: int = 0) -> Path:
    """Write ``graph`` (and episode ``batch_index`` of ``state``, if given) to ``path``.

    The format follows the suffix: ``.graphml``, ``.gexf`` or ``.json`` (networkx node-link).
    Node labels must be strings or ints (file formats hold no other kinds). The file is written
    to a temporary name first and then renamed, so a failed write leaves no half file. Returns
    the path.
    """
    check_type("sg.write", graph, Graph, "a simgraph Graph", error=GraphError)
    path = check_path("sg.write", path, error=GraphError)
    suffix = _suffix(path, "sg.write")
    labels = graph.node_labels
    if labels is None:
        kind = "none"
    elif all(isinstance(x, str) for x in labels):
        kind = "str"
    elif all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        kind = "int"
    else:
        bad = next(x for x in labels if not isinstance(x, (str, int)) or isinstance(x, bool))
        raise GraphError(f"sg.write {str(path)!r}: node labels must all be strings or all ints to be saved, "
                         f"got {bad!r}; relabel the graph (dataclasses.replace(graph, node_labels=...))")
    if kind != "none" and len(set(map(str, labels))) != len(labels):
        raise GraphError(f"sg.write {str(path)!r}: node labels are not distinct as text, so the file could not tell them apart")
    G = to_networkx(graph, state, batch_index=batch_index, scalar_attrs=True)
    node_fields, edge_fields = _exported_fields(graph, state, batch_index)
    fields = {}
    for on, found in (("node", node_fields), ("edge", edge_fields)):
        for key in found:
            value = state[key]
            fields[str(key)] = {"on": on, "prefix": _prefix(key), "dim": int(value.shape[-1]),
                                "dtype": str(value.dtype).removeprefix("torch."), "batched": value.dim() == 3}
    prefixes = [(f["on"], f["prefix"]) for f in fields.values()]
    if len(set(prefixes)) != len(prefixes):
        raise GraphError(f"sg.write {str(path)!r}: state fields {sorted(fields)} share an attribute prefix; rename one")
    meta = {"version": FORMAT_VERSION, "labels": kind, "seed": graph.seed, "state": fields,
            "weight_dtype": None if graph.edge_weight is None else str(graph.edge_weight.dtype).removeprefix("torch.")}
    G.graph["simgraph"] = json.dumps(meta)
    if suffix == ".gexf":
        for *_, key, d in G.edges(keys=True, data=True):
            d[_GEXF_TYPE] = d.pop("type")
            d["id"] = str(key)  # GEXF's edge id: the key, which a file without parallel edges keeps only there
        G.graph = {"name": json.dumps(G.graph)}  # networkx's GEXF keeps no graph attributes but its name
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if suffix == ".graphml":
            nx.write_graphml(G, tmp)
        elif suffix == ".gexf":
            nx.write_gexf(G, tmp)
        else:
            tmp.write_text(json.dumps(nx.node_link_data(G, edges="edges")))
        os.replace(tmp, path)
    except OSError as exc:
        raise GraphError(f"sg.write: cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read(path, **import_options) -> tuple[Graph, dict | None]:
    """Read a graph file: ``(graph, state)``.

    A file written by :func:`write` comes back exactly: populations, projections and layouts,
    neuron and synapse types, node labels and order, inputs and outputs, ``edge_weight`` and the
    state (``None`` when none was written; a field written from ``[B, N, D]`` comes back as that
    episode, ``[1, N, D]``; one written from ``[N, D]`` as ``[N, D]``, in its dtype).
    Any other GraphML, GEXF or node-link JSON file is imported with :func:`simgraph.from_networkx`
    and ``import_options`` (``weight_attr=``, ``default_type=``, ...); its state is ``None``.
    """
    path = check_path("sg.read", path, error=GraphError)
    G = read_networkx(path)
    meta = G.graph.get("simgraph")
    try:
        if meta is None:  # not written by sg.write: a plain import
            return from_networkx(G, **import_options), None
        if import_options:
            raise GraphError(f"import options {sorted(import_options)} are for files not written by sg.write")
        return _restore(G, meta)
    except SimgraphError as exc:
        raise type(exc)(f"sg.read {str(path)!r}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise GraphError(f"sg.read {str(path)!r}: the file's simgraph data is damaged: {type(exc).__name__}: {exc}") from None


def read_networkx(path) -> nx.Graph:
    """The networkx graph in a GraphML, GEXF or node-link JSON file, with its node attributes (what
    :func:`read` imports; a file :func:`write` made has its GEXF changes undone and its int labels back)."""
    path = check_path("sg.read", path, error=GraphError)
    suffix = _suffix(path, "sg.read")
    if not path.is_file():
        raise GraphError(f"sg.read: {str(path)!r} does not exist" if not path.exists() else f"sg.read: {str(path)!r} is not a file")
    try:
        if suffix == ".graphml":
            G = nx.read_graphml(path, edge_key_type=int, force_multigraph=True)
        elif suffix == ".gexf":
            G = nx.read_gexf(path)
        else:
            data = json.loads(path.read_text())
            G = nx.node_link_graph(data, edges="edges" if "edges" in data else "links")
    except Exception as exc:  # networkx and the parsers raise many kinds on a malformed file
        raise GraphError(f"sg.read: {str(path)!r} is not a readable {FORMATS[suffix]} file: "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if suffix == ".gexf":
        G = _from_gexf(G, path)
    try:
        kind = json.loads(G.graph["simgraph"])["labels"] if "simgraph" in G.graph else "str"
        if kind in ("int", "none"):  # the file's node keys are text; sg.write wrote ints
            G = nx.relabel_nodes(G, {n: int(n) for n in G.nodes}, copy=True)
    except (ValueError, TypeError, KeyError):
        pass  # damaged simgraph data: read() names it
    return G


def _restore(G: nx.MultiDiGraph, meta: str) -> tuple[Graph, dict | None]:
    meta = json.loads(meta)
    if meta.get("version") != FORMAT_VERSION:
        raise GraphError(f"written by format version {meta.get('version')!r}, this simgraph reads {FORMAT_VERSION}")
    kind = meta["labels"]
    if kind in ("int", "none"):
        G = nx.relabel_nodes(G, {n: int(n) for n in G.nodes}, copy=True)
    if not isinstance(G, nx.MultiDiGraph):
        raise GraphError("the file holds no directed multigraph (sg.write writes one)")
    graph = from_networkx(G, seed=meta["seed"])
    labels = list(graph.node_labels)  # the file's node keys, in simgraph order
    if kind == "none":
        graph = _replace(graph, node_labels=None)
    if graph.edge_weight is not None and meta.get("weight_dtype"):
        graph = _replace(graph, edge_weight=graph.edge_weight.to(getattr(torch, meta["weight_dtype"])))
    # edge e of the rebuilt graph is the file's edge with key e: check it, then read the states
    keyed = {k: (u, v, d) for u, v, k, d in G.edges(keys=True, data=True)}
    src, dst = graph.edge_index.tolist()
    for e in range(graph.num_edges):
        if e not in keyed or (keyed[e][0], keyed[e][1]) != (labels[src[e]], labels[dst[e]]):
            raise GraphError(f"edge {e} does not match the edge keyed {e} in the file")
    if not meta["state"]:
        return graph, None
    state = {}
    for key, f in meta["state"].items():
        names = [f"{f['prefix']}_{d}" for d in range(f["dim"])]
        if f["on"] == "node":
            rows = [[G.nodes[n][a] for a in names] for n in labels]
        else:
            rows = [[keyed[e][2][a] for a in names] for e in range(graph.num_edges)]
        value = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), f["dim"]).to(getattr(torch, f["dtype"]))
        state[key] = value.unsqueeze(0) if f["batched"] else value
    return graph, state


def _replace(graph: Graph, **changes) -> Graph:
    return dataclasses.replace(graph, **changes, _cache={})


def _from_gexf(G: nx.Graph, path: Path) -> nx.Graph:
    """Undo what GEXF adds or moves: node ``label`` and edge ``id`` attributes, synapse types, graph attributes."""
    name = G.graph.get("name")
    meta = None
    if isinstance(name, str) and name.startswith("{"):
        try:
            meta = json.loads(name)
        except ValueError:
            meta = None
    if not isinstance(meta, dict) or "simgraph" not in meta:
        return G  # a GEXF file from elsewhere
    if G.is_directed() and not G.is_multigraph():  # networkx reads a file without parallel edges as a DiGraph:
        M = nx.MultiDiGraph()  # back to sg.write's MultiDiGraph, each edge keyed by its GEXF id (its key when written)
        M.add_nodes_from(G.nodes(data=True))
        for u, v, d in G.edges(data=True):
            key = d.get("id")
            M.add_edge(u, v, key=int(key) if isinstance(key, str) and key.isdigit() else key, **d)
        G = M
    for n, d in G.nodes(data=True):
        if d.get("label") == str(n):
            d.pop("label")
    for *_, d in G.edges(data=True):
        d.pop("id", None)
        if _GEXF_TYPE in d:
            d["type"] = d.pop(_GEXF_TYPE)
    G.graph = meta
    return G


def _suffix(path: Path, who: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise GraphError(f"{who}: {str(path)!r} has suffix {path.suffix or '(none)'!r}; simgraph reads and writes "
                         + ", ".join(f"{s} ({n})" for s, n in FORMATS.items()))
    return suffix


def to_pyg(graph: Graph, state: dict | None = None, hetero: bool = False):
    """The graph as a PyG ``Data`` (``hetero=False``) or ``HeteroData`` keyed by neuron/synapse types.

    ``Data``: ``edge_index``, ``node_type``, ``edge_type``, ``num_nodes`` and, with ``state``,
    ``x = state['node']`` and ``edge_attr = state['edge']`` transposed to PyG's ``[N, B, D]`` /
    ``[E, B, D]`` (batch second); an unbatched ``[N, D]`` / ``[E, D]`` tensor is kept as it is.
    ``HeteroData``: one node store per neuron type, one edge store per (pre type, synapse type,
    post type), with local indices and, with ``state``, ``x``/``edge_attr``. ``state`` must hold
    ``"node"`` and ``"edge"``; other fields are not exported.
    """
    check_type("to_pyg", graph, Graph, "a simgraph Graph", error=ShapeError)
    hetero = check_bool("to_pyg hetero", hetero, error=ShapeError)
    if state is not None:
        check_type("to_pyg state", state, dict, "a dict of tensors with 'node' and 'edge' (or None)", error=ShapeError)
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
