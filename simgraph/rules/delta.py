"""The online delta rule: error-correcting storage, local to each synapse; a stronger hand-set
reference than Hebbian outer products (Widrow-Hoff, applied to the recurrent weights).

    x_i  <- tanh( beta * sum_j w_ij x_j + input_gain * u_i )        (the same dynamics as HebbianRule)
    h_i   = sum_j w_ij u_j                                           (what the weights recall of u)
    w_ij <- w_ij + eta * [u_i != 0] (u_i - h_i) u_j

While a pattern is shown, each synapse moves its weight so that the network's own recall of the
pattern from the pattern gets closer to it: patterns that are already stored are not written again,
so storage does not saturate with correlated crosstalk the way the outer product does. The write is
gated by the post-synaptic neuron receiving input (``u_i != 0``), so a neuron without an external
target (a hidden neuron, or a bit a partial cue leaves out) keeps its weights. ``eta`` defaults to
``1 / mean indegree``: one presentation then stores a fresh pattern almost exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import FLOAT32_MAX, check_gain, check_number
from ..graph import Graph
from .base import Rule, State, mean_indegree_rate, zeros_state
from .static import drive


class DeltaRule(Rule):
    state_fields = ("node", "edge")

    def __init__(self, eta: float | None = None, beta: float = 1.0, input_gain: float = 1.0):
        super().__init__()
        if eta is not None:  # None: 1 / mean indegree of the graph
            eta = check_number("DeltaRule eta (None: 1 / mean indegree)", eta, positive=True, high=FLOAT32_MAX)
        self.eta = eta
        self.beta = check_gain("DeltaRule beta", beta)
        self.input_gain = check_gain("DeltaRule input_gain", input_gain)

    def init_state(self, graph: Graph, batch_size: int) -> State:
        return zeros_state(graph, self.check_init(graph, batch_size), 1, 1)

    def learning_rate(self, graph: Graph) -> float:
        """``eta``, by default ``1 / mean indegree`` of ``graph``."""
        return self.eta if self.eta is not None else mean_indegree_rate(graph)

    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        w = state["edge"]
        x = drive(graph.propagate(w, state["node"]), self.beta, inputs, self.input_gain)
        error = (inputs - graph.propagate(w, inputs)) * (inputs != 0)
        w = graph.edge_map(lambda u_j, err_i, w: torch.addcmul(w, err_i, u_j, value=self.learning_rate(graph)),
                           pre=[inputs], post=[error], edge=[w])
        return {**state, "node": x, "edge": w}
