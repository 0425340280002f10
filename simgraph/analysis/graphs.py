"""Learned synapses as graphs: what a trained rule writes into its synapses after storing K patterns.

    ws = stored_weights(rule, graph, task.replace(num_patterns=4), episodes=8)  # after the write phase
    G = weight_graph(graph, ws.weights[0])                 # networkx DiGraph, edge attribute "weight"
    row = measures(graph, ws.weights[0], ws.patterns[0])   # strengths, symmetry, clustering, communities ...
    rows = load_sweep(rule, graph, task, loads=(1, 2, 4, 8))   # the same, averaged over episodes, per load

One scalar per synapse is analysed (:func:`synapse_weights`): the rule's edge state for rules with
one weight per synapse (Hebbian, static), the effective weight ``w + alpha H`` of the plastic rule,
and the mean over channels of a vector edge state (the MLP rule's ``e_ij``, whose channels each
weight one message channel). Parallel synapses (multapses) add up into one weighted edge.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, check_finite, check_int, check_ints, check_tensor, check_type
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.recall import RecallTask

MEASURES = ("weight_mean", "weight_std", "weight_abs_mean", "positive_fraction", "strength_mean", "strength_cv",
            "strength_max", "reciprocity", "symmetry", "clustering", "degree_strength_corr", "modularity",
            "communities", "pattern_alignment", "hebbian_similarity", "initial_corr")


def synapse_weights(rule: Rule, graph: Graph, state: dict) -> Tensor:
    """One scalar per synapse for every episode of ``state``: ``[B, E]`` (see the module docstring)."""
    if not isinstance(state, dict) or not isinstance(state.get("edge"), Tensor):
        raise ShapeError(f"synapse_weights needs a rule state with an 'edge' tensor, got {type(state).__name__}")
    edge = state["edge"]
    graph.check_edges(edge, "state['edge']")
    edge = edge if edge.dim() == 3 else edge.unsqueeze(0)
    from ..rules.constraints import constrain
    from ..rules.plastic import PlasticRule

    if isinstance(rule, PlasticRule):
        edge = constrain(graph, rule.w + rule.alpha * edge)
    return edge.detach().float().mean(-1).cpu()


def weight_graph(graph: Graph, weights: Tensor) -> nx.DiGraph:
    """The synapses as a ``networkx.DiGraph`` on the graph's node labels (0..N-1 without labels), edge
    attribute ``weight`` (parallel synapses summed), node attributes ``population`` and ``type``."""
    w = _one(graph, weights, "weight_graph")
    names = list(graph.node_labels) if graph.node_labels is not None else list(range(graph.num_nodes))
    G = nx.DiGraph()
    for p in graph.populations.values():
        G.add_nodes_from((names[i], {"population": p.name, "type": p.neuron_type}) for i in range(p.start, p.stop))
    src, dst = graph.edge_index.tolist()
    for e, x in enumerate(w.tolist()):
        u, v = names[src[e]], names[dst[e]]
        if G.has_edge(u, v):
            G[u][v]["weight"] += x
        else:
            G.add_edge(u, v, weight=x)
    return G


def by_type(graph: Graph, weights: Tensor) -> list[dict]:
    """One row per projection: pre/post population and type, synapse type, count, mean, std, mean |w|, fraction > 0."""
    w = _one(graph, weights, "by_type")
    rows = []
    for p in graph.projections.values():
        x = w[p.slice].double()
        rows.append({"projection": p.name, "pre": p.pre.name, "post": p.post.name, "pre_type": p.pre.neuron_type,
                     "post_type": p.post.neuron_type, "synapse_type": p.synapse_type, "synapses": p.num_edges,
                     "mean": float(x.mean()), "std": float(x.std(unbiased=False)), "abs_mean": float(x.abs().mean()),
                     "positive_fraction": float((x > 0).double().mean())})
    return rows


def strengths(graph: Graph, weights: Tensor) -> Tensor:
    """Total absolute synaptic strength per neuron, in plus out: ``[N]``."""
    w = _one(graph, weights, "strengths").abs().double()
    src, dst = graph.edge_index.cpu()
    s = torch.zeros(graph.num_nodes, dtype=torch.float64)
    return s.index_add(0, dst, w).index_add(0, src, w)


def measures(graph: Graph, weights: Tensor, patterns: Tensor | None = None, initial: Tensor | None = None) -> dict:
    """Graph measures of one episode's synapse weights ``[E]`` (see :data:`MEASURES`).

    ``reciprocity``: the fraction of nonzero connections (autapses aside) whose reverse is nonzero too;
    ``symmetry``: the correlation of ``w_ij`` with ``w_ji`` over reciprocal pairs; ``clustering``:
    networkx's weighted average clustering of the undirected graph of ``|w|``; ``communities`` and
    ``modularity``: greedy modularity communities of the undirected graph of positive weights.
    With the stored ``patterns`` (``[K, n_in]``, one value per input neuron): ``pattern_alignment``,
    the largest normalised mutual information between the input neurons' communities and the sign
    of one stored pattern, and ``hebbian_similarity``, the cosine between the weight change
    (``weights - initial``; ``initial`` default 0) and the Hebbian outer-product matrix
    ``sum_k p_k[i] p_k[j]`` over the synapses between input neurons (NaN where none exist). With
    ``initial``: ``initial_corr``, the correlation of the weights with the weights before storing
    (e.g. the measured strengths a connectome started from).
    """
    w = _one(graph, weights, "measures").double()
    G = weight_graph(graph, w)
    nz = nx.DiGraph((u, v) for u, v, d in G.edges(data=True) if d["weight"] != 0 and u != v)
    nz.add_nodes_from(G)
    pairs = [(d["weight"], G[v][u]["weight"]) for u, v, d in G.edges(data=True) if u != v and G.has_edge(v, u)]
    U = nx.Graph()
    U.add_nodes_from(G)
    for u, v, d in G.edges(data=True):
        a = abs(d["weight"])
        U.add_edge(u, v, weight=U[u][v]["weight"] + a if U.has_edge(u, v) else a)
    s = strengths(graph, w).numpy()
    degree = (graph.in_degree() + graph.out_degree()).cpu().double().numpy()
    row = {
        "weight_mean": float(w.mean()), "weight_std": float(w.std(unbiased=False)), "weight_abs_mean": float(w.abs().mean()),
        "positive_fraction": float((w > 0).double().mean()),
        "strength_mean": float(s.mean()), "strength_cv": float(s.std() / s.mean()) if s.mean() > 0 else math.nan,
        "strength_max": float(s.max()),
        "reciprocity": float(nx.reciprocity(nz)) if nz.number_of_edges() else math.nan,
        "symmetry": _corr(*zip(*pairs)) if len(pairs) > 2 else math.nan,
        "clustering": _clustering(U),
        "degree_strength_corr": _corr(degree, s),
    }
    communities, modularity = _communities(G)
    row["modularity"], row["communities"] = modularity, len(communities)
    row["pattern_alignment"] = row["hebbian_similarity"] = math.nan
    row["initial_corr"] = _corr(_one(graph, initial, "measures initial").numpy(), w.numpy()) if initial is not None else math.nan
    if patterns is not None:
        p = _patterns(graph, patterns)
        row["pattern_alignment"] = _alignment(graph, communities, p)
        dw = w - (_one(graph, initial, "measures initial").double() if initial is not None else 0.0)
        row["hebbian_similarity"] = hebbian_similarity(graph, dw, p)
    return row


def hebbian_matrix(graph: Graph, patterns: Tensor) -> tuple[Tensor, Tensor]:
    """``(keep [E] bool, H)``: the synapses between input neurons and, on them, the Hebbian
    outer-product sum ``H_ij = sum_k p_k[i] p_k[j]`` of ``patterns [K, n_in]``."""
    p = _patterns(graph, patterns).double()
    col = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    col[graph.input_nodes.cpu()] = torch.arange(graph.num_inputs)
    src, dst = graph.edge_index.cpu()
    keep = (col[src] >= 0) & (col[dst] >= 0)
    return keep, (p[:, col[dst[keep]]] * p[:, col[src[keep]]]).sum(0)


def hebbian_similarity(graph: Graph, weights: Tensor, patterns: Tensor) -> float:
    """Cosine between ``weights [E]`` and ``sum_k p_k[i] p_k[j]`` on the synapses between input neurons."""
    w = _one(graph, weights, "hebbian_similarity").double()
    keep, hebb = hebbian_matrix(graph, patterns)
    if not bool(keep.any()):
        return math.nan
    a = w[keep]
    denom = float(a.norm() * hebb.norm())
    return float(a @ hebb) / denom if denom > 0 else math.nan


class StoredWeights(tuple):
    """``(weights [B, E], initial [E], patterns [B, K, n_in], accuracy)`` of :func:`stored_weights`."""

    __slots__ = ()

    def __new__(cls, weights, initial, patterns, accuracy):
        return super().__new__(cls, (weights, initial, patterns, accuracy))

    weights = property(lambda self: self[0])
    initial = property(lambda self: self[1])
    patterns = property(lambda self: self[2])
    accuracy = property(lambda self: self[3])


@torch.no_grad()
def stored_weights(rule: Rule, graph: Graph, task: RecallTask, episodes: int = 8, seed: int = 4321) -> StoredWeights:
    """Run ``episodes`` fresh recall episodes: the synapse weights right after the write phase (the K
    patterns stored), the weights before it, the stored patterns, and the episodes' recall accuracy."""
    from ..train.bptt import run_ticks
    from ..train.loop import _check_parts

    _check_parts(rule, graph, task, "stored_weights")
    if not isinstance(task, RecallTask):
        raise ConfigError(f"stored_weights needs a RecallTask (patterns stored, then recalled), got {type(task).__name__}")
    episodes = check_int("stored_weights episodes", episodes, low=1)
    ep = task.sample(episodes, seed=seed).to(graph.device)
    state0 = rule.init_state(graph, episodes)
    initial = synapse_weights(rule, graph, state0)[0]
    _, stored = run_ticks(rule, graph, ep.ticks(slice(0, task.write_ticks)), state0)
    outputs, _ = run_ticks(rule, graph, ep.ticks(slice(task.write_ticks, None)), stored)
    rest = ep.ticks(slice(task.write_ticks, None))
    accuracy = float(task.metrics(outputs, rest)[task.metric])
    step = task.present_ticks + task.gap_ticks
    patterns = ep.inputs[torch.arange(task.num_patterns) * step].transpose(0, 1).cpu()  # first showing of each
    # a rule that keeps several states per episode (MLPRule(mirror=True): the episodes, then their mirror
    # copies) has more weight sets than patterns: each episode's own copy is the first `episodes`
    return StoredWeights(synapse_weights(rule, graph, stored)[:episodes], initial, patterns, accuracy)


def load_sweep(rule: Rule, graph: Graph, task: RecallTask, loads=(1, 2, 4, 8), episodes: int = 8, seed: int = 4321) -> list[dict]:
    """:func:`measures` after storing K patterns, mean over ``episodes`` episodes, for every K in ``loads``;
    each row also has ``num_patterns`` and the episodes' recall ``accuracy``."""
    if not isinstance(task, RecallTask):
        raise ConfigError(f"load_sweep needs a RecallTask (patterns stored, then recalled), got {type(task).__name__}")
    loads = check_ints("load_sweep loads (pattern counts)", list(loads) if isinstance(loads, (list, tuple)) else loads, 1)
    return [summarize(graph, stored_weights(rule, graph, task.replace(num_patterns=k), episodes, seed)) for k in loads]


def summarize(graph: Graph, ws: StoredWeights) -> dict:
    """One :func:`load_sweep` row: the mean of :func:`measures` over the episodes of ``ws``, with
    ``num_patterns`` and ``accuracy``."""
    per = [measures(graph, ws.weights[b], ws.patterns[b], ws.initial) for b in range(ws.weights.shape[0])]
    row = {"num_patterns": int(ws.patterns.shape[1]), "accuracy": ws.accuracy}
    row.update({m: float(np.nanmean([r[m] for r in per])) if not all(math.isnan(r[m]) for r in per) else math.nan
                for m in MEASURES})
    return row


def structure(graph: Graph) -> dict:
    """Weight-free measures of a topology: neurons, synapses, density, reciprocity, clustering, mean
    shortest path (of the largest strongly connected part) and in-degree spread."""
    check_type("structure", graph, Graph, "a simgraph Graph")
    G = nx.DiGraph(graph.edge_index.t().tolist())
    G.add_nodes_from(range(graph.num_nodes))
    G.remove_edges_from(nx.selfloop_edges(G))
    N = graph.num_nodes
    core = max(nx.strongly_connected_components(G), key=len)
    indeg = graph.in_degree().cpu().double()
    return {"neurons": N, "synapses": graph.num_edges, "density": G.number_of_edges() / max(N * (N - 1), 1),
            "reciprocity": float(nx.reciprocity(G)) if G.number_of_edges() else math.nan,
            "clustering": float(nx.average_clustering(G.to_undirected())),
            "path_length": float(nx.average_shortest_path_length(G.subgraph(core))) if len(core) > 1 else math.nan,
            "indegree_cv": float(indeg.std(unbiased=False) / indeg.mean()) if float(indeg.mean()) > 0 else math.nan}


# ---------------------------------------------------------------------- helpers
def _one(graph: Graph, weights, who: str) -> Tensor:
    check_type(who, graph, Graph, "a simgraph Graph")
    check_tensor(f"{who}: weights [E]", weights)
    if weights.dim() != 1 or weights.shape[0] != graph.num_edges:
        raise ShapeError(f"{who}: weights must have shape [{graph.num_edges}] (one per synapse), got {list(weights.shape)}")
    return check_tensor(f"{who}: weights", weights, floating=True, finite=True).detach().cpu()


def _patterns(graph: Graph, patterns) -> Tensor:
    if not isinstance(patterns, Tensor) or patterns.dim() != 2 or patterns.shape[1] != graph.num_inputs:
        shape = list(patterns.shape) if isinstance(patterns, Tensor) else type(patterns).__name__
        raise ShapeError(f"patterns must be a tensor [K, {graph.num_inputs}] (one value per input neuron), got {shape}")
    check_finite("patterns", patterns)
    return patterns.detach().cpu()


def _corr(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _clustering(U: nx.Graph) -> float:
    top = max((d["weight"] for *_, d in U.edges(data=True)), default=0.0)
    if top == 0:
        return 0.0
    H = nx.Graph()
    H.add_nodes_from(U)
    H.add_weighted_edges_from((u, v, d["weight"] / top) for u, v, d in U.edges(data=True) if u != v)
    return float(nx.average_clustering(H, weight="weight"))


def _communities(G: nx.DiGraph) -> tuple[list, float]:
    P = nx.Graph()
    P.add_nodes_from(G)
    for u, v, d in G.edges(data=True):
        if d["weight"] > 0 and u != v:
            P.add_edge(u, v, weight=P[u][v]["weight"] + d["weight"] if P.has_edge(u, v) else d["weight"])
    if P.number_of_edges() == 0:
        return [set(G)], math.nan
    parts = nx.community.greedy_modularity_communities(P, weight="weight")
    return [set(c) for c in parts], float(nx.community.modularity(P, parts, weight="weight"))


def _alignment(graph: Graph, communities: list, patterns: Tensor) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    names = list(graph.node_labels) if graph.node_labels is not None else list(range(graph.num_nodes))
    member = {n: c for c, part in enumerate(communities) for n in part}
    labels = [member[names[i]] for i in graph.input_nodes.tolist()]
    if len(set(labels)) < 2:
        return 0.0
    return max(float(normalized_mutual_info_score(labels, (p > 0).long().tolist())) for p in patterns)
