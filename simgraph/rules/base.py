"""The rule interface every learning system implements.

A rule is an ``nn.Module`` whose parameters are the meta-parameters (shared functions, type
embeddings, optional per-synapse slow parameters). Its state is a plain ``dict`` of tensors with
at least ``"node"`` ``[B, N, Dn]`` and ``"edge"`` ``[B, E, De]``; a rule may add fields
(``"hebb"``, ``"h"``, ...). One tick is ``step(graph, state, inputs) -> new state`` where
``inputs`` is the external input per node ``[B, N, input_dim]`` (zero on non-input nodes).
"""

from __future__ import annotations

import functools
import inspect
from typing import Dict

import torch
from torch import Tensor, nn

from ..errors import GraphError, ShapeError, check_bytes, check_int, check_type, dtype_bytes
from ..graph import Graph
from ..schedule import split_phases

State = Dict[str, Tensor]


def seeded_init(init):
    """Decorate a rule's ``__init__(..., seed=...)`` so that the parameters it draws from torch's global
    generator (``nn.Linear``, ``torch.randn``) come from ``seed``: one seed, one initial rule, whatever
    ran before; the global generator is left as it was. (``rules.build`` seeds the global generator
    with the same seed first, so rules built from a config start exactly as before.)"""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)  # a wrong call: its own TypeError
        bound.apply_defaults()
        from ..errors import check_seed

        seed = check_seed(f"{type(self).__name__} seed", bound.arguments.get("seed", 0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init(self, *args, **kwargs)

    return wrapper


class Rule(nn.Module):
    """Base class: subclasses set ``node_dim``, ``edge_dim`` and implement ``init_state``/``step``."""

    node_dim: int = 1
    edge_dim: int = 1
    input_dim: int = 1
    output_dim: int = 1
    needs_synapses: bool = True  # check_graph refuses a graph without synapses (False: a rule that runs on one)
    # the fields its state may hold: check_state refuses others (a misspelt or foreign field would be ignored);
    # None (a rule that does not say) skips the check
    state_fields: tuple[str, ...] | None = None
    # states per episode: a rule that runs each episode in several copies (MLPRule(mirror=True): the episode
    # and its sign-flipped mirror) keeps a state of batch copies * B for inputs of batch B
    copies_per_episode: int = 1

    def init_state(self, graph: Graph, batch_size: int) -> State:
        raise NotImplementedError

    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        """One tick: the new state from ``state`` and the external input per neuron ``inputs [B, N, input_dim]``
        (zero on non-input neurons: ``graph.scatter_inputs(u)`` makes it from ``u [B, n_in, input_dim]``)."""
        raise NotImplementedError

    def fast_episode(self, graph: Graph, U: Tensor, state: State) -> tuple[Tensor, State] | None:
        """The whole episode in one call, where this rule has a faster path than ``step`` tick by tick for
        it: ``(outputs [T, B, n_out, output_dim], final state)`` from the per-neuron inputs ``U [T, B, N,
        input_dim]``, the same values and gradients as the tick loop. None (the default): run the ticks.
        ``sg.simulate`` asks for it when a run has inputs and no monitors, compile or checkpointing."""
        return None

    def check_inputs(self, graph: Graph, inputs) -> None:
        """ShapeError unless ``inputs`` is the per-neuron input of one tick, ``[B, N, input_dim]`` (what every
        built-in ``step`` checks first; a Python compare per tick)."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 3 or inputs.shape[1] != graph.num_nodes \
                or inputs.shape[2] != self.input_dim:
            got = list(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ShapeError(f"{type(self).__name__}.step inputs must be the input per neuron [B, N, input_dim] = "
                             f"[B, {graph.num_nodes}, {self.input_dim}] (graph.scatter_inputs(u) makes it from "
                             f"u [B, {graph.num_inputs}, {self.input_dim}]; sg.simulate takes [T, B, n_in]), got {got}")

    def readout(self, graph: Graph, state: State) -> Tensor:
        """What the output populations report: by default the first ``output_dim`` node channels."""
        return graph.read_outputs(state["node"][..., : self.output_dim])

    # ------------------------------------------------------------------ checks
    def check_graph(self, graph: Graph) -> None:
        """Raise if this rule cannot run on ``graph`` (override to add rule-specific checks)."""
        check_type(type(self).__name__, graph, Graph, "a simgraph Graph (build one with sg.Network(...).build())",
                   error=ShapeError)
        if self.needs_synapses and graph.num_edges == 0:
            raise GraphError(f"{type(self).__name__} needs a graph with at least one synapse (its updates run on "
                             f"synapses), but this graph has none (no projections, or only empty ones); connect "
                             f"populations with Network.connect(...) first")

    def check_init(self, graph: Graph, batch_size) -> int:
        """What every ``init_state`` checks first: :meth:`check_graph`, then ``batch_size`` as an int >= 1
        whose fresh state (``node_dim`` and ``edge_dim`` channels per neuron and synapse) fits the byte
        budget (MemoryBudgetError naming the size otherwise, before anything is allocated)."""
        self.check_graph(graph)
        name = type(self).__name__
        B = check_int(f"{name}.init_state batch_size", batch_size, 1, error=ShapeError)
        dims = [getattr(self, k, 1) for k in ("node_dim", "edge_dim")]
        node_dim, edge_dim = (d if isinstance(d, int) and d > 0 else 1 for d in dims)
        check_bytes(f"{name}'s state for batch_size={B} on {graph.num_nodes} neurons and {graph.num_edges} synapses "
                    f"({node_dim} and {edge_dim} channels)", dtype_bytes() * B * (graph.num_nodes * node_dim + graph.num_edges * edge_dim),
                    "use a smaller batch_size (or a smaller network)")
        return B

    def check_state(self, graph: Graph, state: State) -> None:
        """Raise ShapeError unless ``state`` fits this rule and graph."""
        check_type(f"{type(self).__name__} state", state, dict, "a dict of tensors", error=ShapeError)
        for key in ("node", "edge"):
            if key not in state:
                raise ShapeError(f"state is missing field {key!r} (has {sorted(state)})")
        if self.state_fields is not None:
            extra = sorted(str(k) for k in state if k not in self.state_fields)
            if extra:
                raise ShapeError(f"state has field(s) {extra} that {type(self).__name__} does not use (its state holds "
                                 f"{list(self.state_fields)}); drop them (a state from rule.init_state or run.state fits)")
        graph.check_nodes(state["node"], "state['node']", self.node_dim)
        graph.check_edges(state["edge"], "state['edge']", self.edge_dim)
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        for key in ("node", "edge"):
            if dtype is not None and state[key].dtype != dtype:
                raise ShapeError(f"state[{key!r}] is {state[key].dtype} but {type(self).__name__}'s parameters are {dtype}: "
                                 f"convert one to the other (rule.to({state[key].dtype}), or rule.init_state makes a state "
                                 f"of the rule's dtype)")
        if state["edge"].dim() == 3 and state["edge"].shape[0] not in (1, state["node"].shape[0]):
            raise ShapeError(
                f"state['edge'] has batch {state['edge'].shape[0]} but state['node'] has batch {state['node'].shape[0]}"
            )


class SweepRule(Rule):
    """A rule that learns from labels in two sweeps over its schedule (BLUR genomes, VSML LSTM
    synapses): ``forward_pass`` predicts with the inputs clamped; ``backward_pass`` injects a one-hot
    target ``[B, n_out]`` (absent: none) and runs the schedule's backward phases, which learn.

    Subclasses set ``schedule`` and implement ``forward_pass``, ``_inject(graph, x, target)`` and
    ``_phase(graph, phase, x, e)`` (one phase of the schedule on node and edge states). A rule whose
    phases read more than the two states (GenomeRule: its genome, blended per example, and a rate)
    overrides ``backward_pass`` too, with its own ``_inject`` and ``_phase`` signatures.
    """

    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        """Forward sweep with ``inputs`` clamped, label injection from ``state["target"]``, backward sweep."""
        state = self.forward_pass(graph, state, inputs)
        return self.backward_pass(graph, state, state.get("target"))

    def forward_pass(self, graph: Graph, state: State, inputs: Tensor) -> State:
        raise NotImplementedError

    def backward_pass(self, graph: Graph, state: State, target: Tensor | None) -> State:
        x, e = state["node"], state["edge"]
        if target is not None:
            x = self._inject(graph, x, target)
        for ph in split_phases(self.schedule, graph)[1]:
            x, e = self._phase(graph, ph, x, e)
        return {**state, "node": x, "edge": e}

    def readout(self, graph: Graph, state: State) -> Tensor:
        return graph.read_outputs(state["node"])[..., 0]  # node channel 0: logits / forward prediction


def type_rows(table: Tensor, ids: Tensor) -> Tensor:
    """Embedding rows for every node/edge: ``table[ids]`` broadcast over the batch, ``[1, n, D]``."""
    return table.index_select(0, ids).unsqueeze(0)


def mean_indegree_rate(graph: Graph) -> float:
    """``1 / mean indegree`` of ``graph``: the default write rate of the outer-product rules (the 1/N
    of a fully connected Hopfield net)."""
    return graph.num_nodes / max(graph.num_edges, 1)


def zeros_state(graph: Graph, batch_size: int, node_dim: int, edge_dim: int, dtype: torch.dtype | None = None) -> State:
    """A zero ``{"node", "edge"}`` state on the graph's device (default dtype: torch's default)."""
    kw = dict(dtype=dtype or torch.get_default_dtype(), device=graph.device)
    return {
        "node": torch.zeros(batch_size, graph.num_nodes, node_dim, **kw),
        "edge": torch.zeros(batch_size, graph.num_edges, edge_dim, **kw),
    }
