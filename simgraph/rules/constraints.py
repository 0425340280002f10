"""What a graph fixes about its synapses, for the rules with one scalar weight per synapse (Hebbian,
static, plastic): measured starting strengths, Dale's law and tied gap-junction pairs.

- **Starting weights** (``init_weights``): ``"auto"`` (default) starts from ``graph.edge_weight``
  when the graph has one (``from_networkx(weight_attr=...)``) and from the rule's own default
  otherwise; ``"edge_weight"`` insists on the graph's weights; ``"default"`` ignores them. The
  measured strengths are rescaled as a whole, ``w0 = edge_weight / (mean|edge_weight| *
  sqrt(mean indegree))``, so a neuron's summed input is of order one whatever unit the data uses
  (contact counts, nS, ...) and the relative strengths of all synapses are kept.
- **Dale's law** (``graph.edge_sign``, +1 / -1 per synapse, 0 = free): the starting weight of a
  signed synapse is ``s * |w0|``, and every weight a rule computes is held on its side of zero,
  ``s * relu(s * w)``: a synapse whose learned value would change sign is silent (0) instead.
- **Tied pairs** (``graph.edge_partner``): both directions of a gap junction hold one state. They
  start equal (the lower edge id's value) and every update is averaged over the pair, so the two
  stay equal tick after tick.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, GraphError, check_choice, check_finite
from ..graph import Graph

INIT_WEIGHTS = ("auto", "edge_weight", "default")


def check_init(who: str, init_weights) -> str:
    """``init_weights`` of a rule constructor, checked."""
    return check_choice(f"{who} init_weights", init_weights, INIT_WEIGHTS)


def start_weights(graph: Graph, who: str, init_weights: str) -> Tensor | None:
    """The rescaled measured strengths ``[E, 1]`` a rule starts from, or None for the rule's own default."""
    if init_weights == "default" or (init_weights == "auto" and graph.edge_weight is None):
        return None
    if graph.edge_weight is None:
        raise GraphError(f"{who} init_weights='edge_weight' needs a graph with measured strengths (graph.edge_weight), "
                         "e.g. from_networkx(G, weight_attr='weight'); this graph has none (use init_weights='auto')")
    w = graph.edge_weight.to(torch.get_default_dtype())
    check_finite(f"{who}: graph.edge_weight", w, error=GraphError)
    size = float(w.abs().mean()) if w.numel() else 0.0
    if size == 0.0:
        return w.reshape(-1, 1).clone()
    fan_in = max(graph.num_edges / max(graph.num_nodes, 1), 1.0)
    return (w / (size * fan_in ** 0.5)).reshape(-1, 1)


def constrained(graph: Graph) -> bool:
    return graph.edge_sign is not None or graph.edge_partner is not None


def tie(graph: Graph, e: Tensor) -> Tensor:
    """Edge tensor ``[B, E, D]`` or ``[E, D]`` with each tied pair replaced by its mean (untied edges unchanged)."""
    if graph.edge_partner is None:
        return e
    return 0.5 * (e + e.index_select(e.dim() - 2, graph.edge_partner))


def dale(graph: Graph, w: Tensor) -> Tensor:
    """Weights ``[B, E, D]`` or ``[E, D]`` held on the side of zero ``graph.edge_sign`` fixes: ``s * relu(s * w)``."""
    if graph.edge_sign is None:
        return w
    s = graph.edge_sign.to(w.dtype).view(-1, 1)
    return torch.where(s == 0, w, s * torch.relu(s * w))


def constrain(graph: Graph, w: Tensor) -> Tensor:
    """Dale's law and tied pairs on weights a rule has just computed (the identity on a graph with neither)."""
    return dale(graph, tie(graph, w)) if constrained(graph) else w


def constrain_start(graph: Graph, w: Tensor) -> Tensor:
    """Starting weights ``[E, D]``: each tied pair takes its lower edge id's value, each signed synapse ``s * |w|``."""
    if graph.edge_partner is not None:
        ids = torch.arange(graph.num_edges, device=w.device)
        w = w.index_select(0, torch.minimum(ids, graph.edge_partner.to(w.device)))
    if graph.edge_sign is not None:
        s = graph.edge_sign.to(w.device, w.dtype).view(-1, 1)
        w = torch.where(s == 0, w, s * w.abs())
    return w


def stepped_episode(rule, graph: Graph, U: Tensor, state: dict) -> tuple[Tensor, Tensor]:
    """``lean_episode``'s result ``(X [T, B, N, D], edge)`` by plain ``rule.step`` tick by tick: the path a
    rule's lean episode takes on a graph with Dale's law or tied pairs (clamping cannot be undone)."""
    xs = []
    for t in range(U.shape[0]):
        state = rule.step(graph, state, U[t])
        xs.append(state["node"])
    if not xs:
        raise ConfigError("an episode needs at least one tick")
    return torch.stack(xs), state["edge"]
