"""Static synapses: fixed random weights that never change; the engine's simplest reference rule.

    x_i <- tanh( gain * sum_j w_ij x_j + input_gain * u_i ),   w_ij ~ N(0, 1 / indegree_i), fixed.

On a graph with measured strengths (``graph.edge_weight``) the fixed weights are those, rescaled
(``init_weights``, see ``rules/constraints.py``); Dale's law gives each signed synapse ``s * |w|`` and
tied gap-junction pairs share one weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, check_finite, check_gain, check_seed
from ..graph import Graph
from .base import Rule, State
from .constraints import check_init, constrain_start, start_weights


class StaticRule(Rule):
    """Fixed weights drawn once from ``seed`` (the same for every episode) or given as ``weights [E]``."""
    state_fields = ("node", "edge")

    needs_synapses = False  # without synapses it runs: each neuron sees its input alone

    def __init__(self, gain: float = 1.0, input_gain: float = 1.0, seed: int = 0, weights: Tensor | None = None,
                 init_weights: str = "auto"):
        super().__init__()
        self.gain, self.input_gain = check_gain("StaticRule gain", gain), check_gain("StaticRule input_gain", input_gain)
        self.seed = check_seed("StaticRule seed", seed)
        if weights is not None:  # the shape is checked against the graph in initial_weights
            try:
                w = torch.as_tensor(weights).detach()
            except (TypeError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"StaticRule weights must be a tensor or array of E numbers (one per synapse), got "
                                  f"{type(weights).__name__}: {exc}") from None
            if w.dtype == torch.bool or w.is_complex() or w.numel() == 0:
                raise ConfigError(f"StaticRule weights must be real numbers, one per synapse; got dtype {w.dtype}, "
                                  f"shape {list(w.shape)}")
            check_finite("StaticRule weights", w, error=ConfigError, hint="pass finite weights")
        self.weights = weights
        self.init_weights = check_init("StaticRule", init_weights)

    def initial_weights(self, graph: Graph) -> Tensor:
        """``weights`` if given, else the graph's rescaled measured strengths (``init_weights``), else
        the random draw; then Dale's law and tied pairs (the identity on a graph with neither)."""
        if self.weights is not None:
            w = torch.as_tensor(self.weights, dtype=torch.get_default_dtype()).reshape(-1, 1)
            graph.check_edges(w.to(graph.device), "StaticRule weights", 1)
        elif (w := start_weights(graph, "StaticRule", self.init_weights)) is None:
            g = torch.Generator().manual_seed(self.seed)
            w = torch.randn(graph.num_edges, 1, generator=g)
            fan_in = graph.in_degree().cpu().clamp(min=1)[graph.edge_index[1].cpu()]
            w = w / fan_in.sqrt().unsqueeze(1)
        return constrain_start(graph, w.to(graph.device))

    def init_state(self, graph: Graph, batch_size: int) -> State:
        batch_size = self.check_init(graph, batch_size)
        w = self.initial_weights(graph)
        return {
            "node": torch.zeros(batch_size, graph.num_nodes, 1, device=graph.device, dtype=w.dtype),
            "edge": w.unsqueeze(0).expand(batch_size, -1, -1),
        }

    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        return {**state, "node": drive(graph.propagate(state["edge"], state["node"]), self.gain, inputs, self.input_gain)}


def drive(h: Tensor, gain: float, inputs: Tensor, input_gain: float) -> Tensor:
    """``tanh(gain * h + input_gain * inputs)`` in two kernels when ``gain == 1`` (the default)."""
    return torch.tanh(torch.add(h if gain == 1.0 else gain * h, inputs, alpha=input_gain))
