"""Differentiable Hebbian plasticity (Miconi 2016; Miconi, Clune & Stanley 2018; backpropamine).

Every synapse j -> i has two slow parameters learned by backprop, ``w`` and ``alpha`` (``[E, 1]``,
one per edge of the graph the rule is built for), and a fast Hebbian trace ``H`` (the edge state,
zero at the start of every episode):

    x_i(t)     = tanh( sum_j (w_ij + alpha_ij H_ij(t)) x_j(t-1) + input_gain * u_i(t) )
    H_ij(t+1)  = (1 - eta) H_ij(t) + eta x_j(t-1) x_i(t)                   (plain)
    H_ij(t+1)  = H_ij(t) + eta x_i(t) (x_j(t-1) - x_i(t) H_ij(t))          (oja=True)

(Indices follow the graph's convention, ``j`` pre and ``i`` post; REFERENCES.md writes the same
equations with ``i`` pre and ``j`` post.) ``eta`` is one scalar or one per synapse type, fixed or
learned (as ``sigmoid(eta_logit)``, which keeps it in (0, 1)). ``neuromodulated=True`` lets the
network gate its own plasticity (backpropamine): ``m(t) = tanh(v . x(t) + b)`` with learned
``v [N, 1]`` and ``b``, and every ``eta x_i(t)`` in the write becomes ``eta m(t) x_i(t)``
(m < 0 un-learns). ``plastic=False`` pins alpha at zero: the same network without plasticity.

``sg.simulate(rule, graph, inputs, lean=True)`` runs a whole episode through :meth:`lean_episode`,
whose backward pass reconstructs the trace tick by tick instead of storing it (see ``_lean.py``);
the training loop takes that path when the rule's ``lean`` is True (default). ``step`` is the same
tick in plain autograd, for ``sg.simulate`` and as the reference the tests compare against.

``w`` starts at ``init_std * N(0, 1)``, or, on a graph with measured strengths
(``graph.edge_weight``), at those, rescaled (``init_weights``). On a graph with Dale's law the
effective weight ``w + alpha H`` is held on its synapse's side of zero, and tied gap-junction pairs
share one effective weight and one trace (``rules/constraints.py``); the lean episode then runs
``step`` tick by tick.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..errors import (FLOAT32_MAX, ConfigError, GraphError, ShapeError, SimgraphWarning, check_bool, check_bytes, check_gain, check_number, check_seed,
                      check_type, dtype_bytes)
from ..graph import Graph
from ._lean import modulation, run_episode, undo_growth, undo_is_exact, write_trace
from .base import Rule, State
from .constraints import check_init, constrain, constrain_start, constrained, start_weights, stepped_episode, tie


class PlasticRule(Rule):
    """Miconi's plastic network on ``graph`` (any topology, dense or sparse projections)."""
    state_fields = ("node", "edge")

    def __init__(
        self,
        graph: Graph,
        eta: float = 0.01,
        learn_eta: bool = False,
        eta_per_type: bool = False,
        oja: bool = False,
        neuromodulated: bool = False,
        plastic: bool = True,
        input_gain: float = 20.0,
        init_std: float = 0.01,
        seed: int = 0,
        lean: bool = True,
        init_weights: str = "auto",
    ):
        super().__init__()
        check_type("PlasticRule", graph, Graph, "the simgraph Graph it will run on", error=GraphError)
        if graph.num_edges == 0:
            raise GraphError("PlasticRule needs a graph with at least one synapse")
        eta = check_number("PlasticRule eta (the trace decays by 1 - eta per tick)", eta, low=0.0, below=1.0)
        input_gain = check_gain("PlasticRule input_gain", input_gain)
        init_std = check_number("PlasticRule init_std", init_std, low=0.0, high=FLOAT32_MAX)
        learn_eta, eta_per_type, oja, neuromodulated, plastic, lean = (
            check_bool(f"PlasticRule {name}", v) for name, v in (("learn_eta", learn_eta), ("eta_per_type", eta_per_type),
                                                                   ("oja", oja), ("neuromodulated", neuromodulated),
                                                                   ("plastic", plastic), ("lean", lean)))
        seed = check_seed("PlasticRule seed", seed)
        self.init_weights = check_init("PlasticRule", init_weights)
        self.num_nodes, self.num_edges, self.num_types = graph.num_nodes, graph.num_edges, graph.num_synapse_types
        check_bytes(f"PlasticRule's per-synapse parameters w and alpha ({self.num_edges} synapses)",
                    (2 * self.num_edges + self.num_nodes) * dtype_bytes(), "use a graph with fewer synapses")
        self.oja, self.input_gain, self.lean, self.plastic = bool(oja), float(input_gain), bool(lean), bool(plastic)
        g = torch.Generator().manual_seed(int(seed))
        w = init_std * torch.randn(self.num_edges, 1, generator=g)
        measured = start_weights(graph, "PlasticRule", self.init_weights)
        self.w = nn.Parameter(constrain_start(graph, (measured if measured is not None else w).cpu()))
        alpha = init_std * torch.randn(self.num_edges, 1, generator=g)
        if plastic:
            self.alpha = nn.Parameter(alpha)
        else:  # the same network with plasticity disabled: alpha pinned at zero
            self.register_buffer("alpha", torch.zeros(self.num_edges, 1))
        eta_table = torch.full((self.num_types if eta_per_type else 1, 1), float(eta))
        if learn_eta:  # learned through a logit: eta stays in (0, 1), so the trace keeps decaying (and stays invertible)
            if not 0 < eta < 1:
                raise ConfigError(f"PlasticRule with learn_eta=True needs an initial eta in (0, 1), got {eta!r}")
            self.eta_logit = nn.Parameter(torch.logit(eta_table.double()).float())
        else:
            self.register_buffer("eta_fixed", eta_table)
        if neuromodulated:
            self.mod_v = nn.Parameter(init_std * torch.randn(self.num_nodes, 1, generator=g))
            self.mod_b = nn.Parameter(torch.ones(1))  # start near m = tanh(1): plasticity on
        else:
            self.mod_v = self.mod_b = None

    # ------------------------------------------------------------------ checks and state
    def check_graph(self, graph: Graph) -> None:
        super().check_graph(graph)
        if (graph.num_nodes, graph.num_edges, graph.num_synapse_types) != (self.num_nodes, self.num_edges, self.num_types):
            raise GraphError(
                f"this PlasticRule was built for a graph with {self.num_nodes} nodes, {self.num_edges} synapses and "
                f"{self.num_types} synapse types; got {graph.num_nodes}, {graph.num_edges}, {graph.num_synapse_types} "
                "(w and alpha are per synapse: build the rule for this graph)"
            )
        if self.w.device.type != graph.device.type:
            raise ShapeError(f"the rule's parameters are on {self.w.device} but the graph is on {graph.device}; move one with .to()")

    def eta_table(self) -> Tensor:
        """``[num_synapse_types, 1]``: the learning rate of every synapse type."""
        eta = torch.sigmoid(self.eta_logit) if hasattr(self, "eta_logit") else self.eta_fixed
        return eta.expand(self.num_types, 1)

    def init_state(self, graph: Graph, batch_size: int) -> State:
        batch_size = self.check_init(graph, batch_size)  # check_graph, then the batch size and its bytes
        kw = dict(dtype=self.w.dtype, device=self.w.device)
        return {"node": torch.zeros(batch_size, graph.num_nodes, 1, **kw), "edge": torch.zeros(batch_size, graph.num_edges, 1, **kw)}

    # ------------------------------------------------------------------ one tick (plain autograd)
    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        x_prev, hebb = state["node"], state["edge"]
        x = torch.tanh(graph.propagate(constrain(graph, self.w + self.alpha * hebb), x_prev) + self.input_gain * inputs)
        mx = x * modulation(x, self.mod_v, self.mod_b) if self.mod_v is not None else x
        hebb = graph.edge_map(
            lambda xj, xi, mxi, h, e: write_trace(h, xj, xi, mxi, e, self.oja),
            pre=[x_prev], post=[x, mx], edge=[hebb], per_type=[self.eta_table()],
        )
        hebb = tie(graph, hebb)
        return {**state, "node": x, "edge": hebb}

    # ------------------------------------------------------------------ a whole episode
    def lean_episode(self, graph: Graph, U: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """The whole episode at once for ``sg.simulate(..., lean=True)``: backward undoes each tick's
        trace update instead of storing it (see ``_lean.PlasticEpisode``); on a graph with Dale's law or
        tied pairs, :meth:`step` tick by tick."""
        if constrained(graph):
            return stepped_episode(self, graph, U, state)
        if U.dtype != self.w.dtype:
            raise ShapeError(f"the state is {U.dtype} but the rule's parameters are {self.w.dtype}; convert one")
        eta = float(self.eta_table().max())
        if 0 <= eta < 1 and not undo_is_exact(eta, U.shape[0], U.dtype):
            warnings.warn(f"PlasticRule lean episode: undoing {U.shape[0]} trace writes at eta={eta:.3g} can grow "
                          f"{U.dtype} rounding by {undo_growth(eta, U.shape[0]):.1e}x, too much for exact gradients; "
                          f"this episode runs with plain autograd (memory grows with ticks x synapses)", SimgraphWarning,
                          stacklevel=4)
            return stepped_episode(self, graph, U, state)
        return run_episode(graph, self.oja, self.input_gain * U, state["node"], state["edge"], self.w, self.alpha,
                           self.eta_table(), self.mod_v, self.mod_b)
