"""The Hebbian outer-product rule: Hopfield storage, the engine's plastic reference rule.

    x_i  <- tanh( beta * sum_j w_ij x_j + input_gain * u_i )
    w_ij <- w_ij + eta * s_i s_j          (s = the clamped input u, or the activity x)

With ``learn_from="input"`` (default) every tick adds the outer product of the presented pattern,
so after a write phase ``w`` is the classic Hopfield matrix ``sum_k p_k p_k^T`` (scaled by
``eta`` and presentation ticks); a partial cue then relaxes to the nearest stored pattern.
``eta`` defaults to ``1 / mean indegree`` (the 1/N of a fully connected Hopfield net).
The weights start at zero, or, on a graph with measured strengths (``graph.edge_weight``), from
those (``init_weights``); on a graph with Dale's law or tied gap-junction pairs every write keeps
them (``rules/constraints.py``).

``sg.simulate(rule, graph, inputs, lean=True)`` runs a whole episode through :meth:`lean_episode`,
whose backward pass subtracts the writes again tick by tick instead of storing every tick's
``[B, E]`` matrix (``lean=False``, the default: plain autograd through ``step``, the reference the
tests compare against).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import FLOAT32_MAX, check_choice, check_gain, check_number
from ..graph import Graph
from ._lean import HebbianEpisode
from .base import Rule, State, mean_indegree_rate, zeros_state
from .constraints import check_init, constrain, constrain_start, constrained, start_weights, stepped_episode
from .static import drive

SOURCES = ("input", "activity")


class HebbianRule(Rule):
    state_fields = ("node", "edge")

    def __init__(self, eta: float | None = None, beta: float = 1.0, input_gain: float = 1.0, learn_from: str = "input",
                 init_weights: str = "auto"):
        super().__init__()
        check_choice("HebbianRule learn_from", learn_from, SOURCES)
        if eta is not None:  # None: 1 / mean indegree of the graph (learning_rate)
            eta = check_number("HebbianRule eta (None: 1 / mean indegree)", eta, positive=True, high=FLOAT32_MAX)
        beta = check_gain("HebbianRule beta", beta)
        input_gain = check_gain("HebbianRule input_gain", input_gain)
        self.eta, self.beta, self.input_gain, self.learn_from = eta, beta, input_gain, learn_from
        self.init_weights = check_init("HebbianRule", init_weights)

    def init_state(self, graph: Graph, batch_size: int) -> State:
        batch_size = self.check_init(graph, batch_size)
        state = zeros_state(graph, batch_size, 1, 1)
        w0 = start_weights(graph, "HebbianRule", self.init_weights)
        if w0 is not None:
            w0 = constrain_start(graph, w0.to(state["edge"]))
            state["edge"] = w0.unsqueeze(0).expand(batch_size, -1, -1)
        return state

    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        w = state["edge"]
        x = drive(graph.propagate(w, state["node"]), self.beta, inputs, self.input_gain)
        s = inputs if self.learn_from == "input" else x
        eta = self.learning_rate(graph)
        # addcmul: one fused pass over the synapses instead of three (product, scale, add)
        w = graph.edge_map(lambda s_j, s_i, w: torch.addcmul(w, s_i, s_j, value=eta), pre=[s], post=[s], edge=[w])
        w = constrain(graph, w)
        return {**state, "node": x, "edge": w}

    def silent_outputs(self, graph: Graph) -> list[str]:
        """Output populations with neurons that stay exactly 0 from the default (zero) weights: the
        write only ever grows weights between neurons that receive input (or are already active).
        None are silent when the weights start from the graph's measured strengths."""
        w0 = start_weights(graph, "HebbianRule", self.init_weights)
        if w0 is not None and bool((w0 != 0).any()):
            return []
        quiet = graph.output_nodes[~graph.input_mask().view(-1)[graph.output_nodes]]
        return [p.name for p in graph.populations.values() if bool(((quiet >= p.start) & (quiet < p.stop)).any())]

    def learning_rate(self, graph: Graph) -> float:
        """``eta``, by default ``1 / mean indegree`` of ``graph``."""
        return self.eta if self.eta is not None else mean_indegree_rate(graph)

    def lean_episode(self, graph: Graph, U: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """The whole episode at once for ``sg.simulate(..., lean=True)``: per-node inputs ``U [T, B, N, 1]``
        -> every tick's node state and the final weights. Backward subtracts each tick's write
        again instead of storing it (O(T N + E) saved instead of O(T E)). On a graph with Dale's law or
        tied pairs it runs :meth:`step` tick by tick (a clamped write cannot be subtracted again)."""
        if constrained(graph):
            return stepped_episode(self, graph, U, state)
        return HebbianEpisode.apply(graph, self.beta, self.input_gain, self.learning_rate(graph),
                                    self.learn_from == "activity", U, state["node"], state["edge"])
