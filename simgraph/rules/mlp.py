"""The learned MLP rule ("learning to remember", Gregor 2020; REFERENCES.md section 1).

Every neuron has a state ``x [Dn]``, every synapse a state ``e [De]``. Two small functions, shared
by all neurons and all synapses, update them every tick from local information only:

    message    m_i  = sum_j e_ij * (P [x_j, t_j]) / sqrt(indegree_i)        (De channels)
    neuron     x_i <- GRU(x_i ; [m_i, u_i, t_i])                              (t: type embedding)
    synapse    h_ij = tanh( A z_j + B z_i + (C z_j) * (D z_i) + (W e_ij) * (1 + G z_i) + s_type )
               e_ij <- e_ij + U h_ij                                          (z = [x', t])

The synapse function sees its own state, its pre- (``_j``) and post-synaptic (``_i``) neuron
states and type embeddings. Following the design's performance habit, the first layer is applied
per *node* (A z, B z, C z, D z, G z are node tensors) and only broadcast to edges inside
``graph.edge_map``; the products ``pre x post`` and ``state x post`` that storage rules need come
for free. ``U`` starts small so the untrained rule is a gentle perturbation, not chaos.

``plastic=False`` freezes synapses at their initial values: the "memory in activations only"
network type. ``use_types=False`` gives every neuron and synapse the same embedding.

``start="hebbian"`` puts the Hebbian rule inside the family and starts meta-training there. Node
channel 0 is an activity ``a``, edge channel 0 a weight ``w``, and every learned term is a residual
that is exactly zero before training:

    a_i  <- tanh( beta * sum_j w_ij a_j + input_gain * u_i + eps * R x_i )   (R = 0 at the start)
    w_ij <- w_ij + eta * (s_i s_j + eps * [U h_ij]_0)                         (s = u, or a; [U]_0 = 0)
    out_i = g * a_i + eps * read(x_i)                                         (read = 0, g = 1 at the start)

with the GRU state ``x`` and the other edge channels learned as above (the GRU also sees ``a``,
``u`` and the Hebbian field). So the untrained rule *is* ``HebbianRule(eta, beta, input_gain,
learn_from)``, output for output (tested). On a graph with measured strengths
(``graph.edge_weight``) ``w`` starts from them as the Hebbian rule's does (``init_weights``:
``"auto"``, ``"edge_weight"``, ``"default"``; rescaled, signed synapses at ``s * |w0|``, tied pairs
equal: ``rules/constraints.py``); Dale's law and ties are not held during the learned updates
(the other edge channels and the residual have no sign to keep).

On a net of several synapse types the Hebbian core can be set per type: ``init_weight_std`` a
``{synapse type: std}`` mapping (the types not named start at 0) and ``write_types`` the types the
Hebbian write lands on (None: all; the learned residual still updates every synapse). On input ->
memory -> output (``recall_network``, key cues with a teacher) ``init_weight_std={"afferent": 4}``,
``write_types=["efferent"]`` is the hand-set hetero-associative memory: a fixed random code of the
key in the memory, associated with the value on the memory -> output synapses (32 memory neurons,
32-bit patterns: 1.000 at K=1, 0.986 at K=4, 0.955 at K=6; tested). One std and writes everywhere
is at chance there (0.53-0.67 at every beta): random memory -> output weights drown the
associations, and writing the afferent and recurrent synapses merges the keys' codes. ``beta``, ``input_gain``, ``eta`` and the read-out gain
``g`` are meta-parameters, and training can only move away from Hebbian storage where that lowers
the loss. ``eps = residual_scale`` keeps the first optimiser steps (Adam moves each parameter by
about lr, whatever its gradient) from throwing the rule far off the Hebbian point. On the default
problem, eps = 0.01 kept the bit accuracy at K = 2 at 0.99 but then stalled below Hebbian (0.90 at
K = 4-5 after 150 steps); eps = 0.1 dipped to 0.91 at K = 2 and passed it (0.952 at K = 6 after 125
steps, where the tuned Hebbian rule reaches 0.926), so 0.1 is the default. The synapse
function sees the input ``u`` too, so error-correcting writes such as ``(u_i - f_i) u_j`` (the delta
rule, ``f`` the Hebbian field) lie in its span.

``mirror=True`` runs every episode twice, as itself and sign-flipped (inputs ``-u``), and reads out half
the difference of the two copies, so the rule is exactly odd (flipping every pattern flips every
output), as Hebbian storage is. Issue 13: the trained sparse-net rules missed a few +1 bits at K = 1
through a learned offset of about -0.1; the odd rule has none (K = 1 exactly 1.000 on all three N=64
sparse nets). It costs twice the compute, and its states hold ``2 B`` episodes for inputs of batch
``B``: the ``B`` episodes first, then their mirror copies (``init_state``, ``simulate``'s final state and
its monitors show all ``2 B``; ``simgraph analyze`` and ``rule_portrait`` read the first ``B``).
``residual_bias=False`` runs the activity and read-out residuals of the Hebbian core without biases.

``edge_update`` chooses how the synapse function runs: ``"native"`` a C kernel over the synapse list
(``rules/_native.py``; the CPU, a power-of-two ``hidden``), ``"plain"`` autograd through it,
``"fused"`` one autograd Function that saves only its inputs and recomputes the hidden layer in
backward, ``"compiled"`` the same with inductor-compiled kernels (``rules/_fused.py``; Triton on a
GPU), ``"auto"`` (default, or ``SIMGRAPH_EDGE_UPDATE``) native where it runs, else compiled for large
ticks and plain for small ones. All give the same values and gradients to rounding (tested in float64).
With ``start="hebbian"``, ``"native"`` and ``"auto"`` also run the neuron update after propagate (the
GRU cell, the activity, the synapse function's node-side first layer) as one C call each way
(``rules/_native_neuron.py``; the other modes run its torch reference): the recall default's
meta-training step 141 -> 125 ms on this project's 2-core CPU (before the kernels were threaded).
There, a run of a whole episode with inputs (``sg.simulate`` without monitors, compile or
recomputation; so every BPTT meta-training step) goes through :meth:`fast_episode`: the episode as
one autograd node around the same kernels (``rules/_native_episode.py``), not about 50 small ATen
calls and their autograd nodes a tick (the recall default's meta-training step 107 -> 57 ms).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, check_choice
from ..graph import Graph
from . import _fused, _native, _native_episode, _native_neuron
from ._fused import edge_update
from .base import Rule, State, mean_indegree_rate, seeded_init, type_rows
from .constraints import check_init, constrain_start, start_weights

STARTS = ("random", "hebbian")
LEARN_FROM = ("input", "activity")


class MLPRule(Rule):
    state_fields = ("node", "edge")

    @seeded_init  # the parameters come from seed, not from whatever the global generator holds
    def __init__(
        self,
        num_neuron_types: int = 1,
        num_synapse_types: int = 1,
        node_dim: int = 8,
        edge_dim: int = 4,
        hidden: int = 16,
        type_dim: int = 4,
        input_dim: int = 1,
        output_dim: int = 1,
        use_types: bool = True,
        plastic: bool = True,
        init_edge_std: float = 1.0,
        update_scale: float = 0.1,
        seed: int = 0,
        start: str = "random",
        eta: float | None = None,
        beta: float = 1.0,
        input_gain: float = 1.0,
        learn_from: str = "input",
        init_weight_std: float | dict = 0.0,
        output_gain: float = 1.0,
        residual_scale: float = 0.1,
        init_weights: str = "auto",
        write_types: list | None = None,
        edge_update: str | None = None,
        residual_bias: bool = True,
        mirror: bool = False,
    ):
        super().__init__()
        from ..errors import (check_bool, check_bytes, check_choice, check_gain, check_int, check_name, check_number, check_seed,
                             dtype_bytes, is_number)

        num_neuron_types, num_synapse_types, node_dim, edge_dim, hidden, type_dim, input_dim, output_dim = (
            check_int(f"MLPRule {name}", v, 1) for name, v in dict(
                num_neuron_types=num_neuron_types, num_synapse_types=num_synapse_types, node_dim=node_dim, edge_dim=edge_dim,
                hidden=hidden, type_dim=type_dim, input_dim=input_dim, output_dim=output_dim).items())
        if output_dim > node_dim:
            raise ConfigError(f"MLPRule output_dim={output_dim} exceeds node_dim={node_dim}")
        use_types, plastic = check_bool("MLPRule use_types", use_types), check_bool("MLPRule plastic", plastic)
        # mirror=True: every episode also runs sign-flipped (inputs -u) in a second copy of the network, and
        # the read-out is half the difference of the two copies' read-outs, so the rule is exactly odd (out(-u)
        # = -out(u)), as Hebbian storage is: no learned offset can read a weakly recalled +1 bit as -1 (issue 13:
        # the N=64 sparse-net rules' activity residual was +0.00..+0.12 at +1 bits, -0.20..-0.36 at -1 bits,
        # an offset of -0.09..-0.14; every K=1 miss was a +1 bit). Twice the state and compute; untrained
        # start="hebbian" is still the Hebbian rule (its mirror copy is its exact negative).
        self.mirror = check_bool("MLPRule mirror", mirror)
        self.copies_per_episode = 2 if self.mirror else 1
        init_edge_std = check_number("MLPRule init_edge_std", init_edge_std, low=0.0)
        update_scale = check_gain("MLPRule update_scale", update_scale)  # finite, and finite in a float32 tensor
        self.node_dim, self.edge_dim, self.input_dim, self.output_dim = node_dim, edge_dim, input_dim, output_dim
        self.num_neuron_types, self.num_synapse_types = num_neuron_types, num_synapse_types
        self.use_types, self.plastic = use_types, plastic
        self.init_edge_std, self.seed = init_edge_std, check_seed("MLPRule seed", seed)
        self.start = check_choice("MLPRule start", start, STARTS)
        self.learn_from = check_choice("MLPRule learn_from", learn_from, LEARN_FROM)
        # how the synapse function runs (rules/_fused.py): the same numbers to rounding in every mode
        self.edge_update = _fused.check_mode(_fused.default_mode() if edge_update is None else edge_update)
        # one std for every synapse, or {synapse type: std} (the types not named start at 0)
        if isinstance(init_weight_std, dict):
            self.init_weight_std = {check_name("MLPRule init_weight_std synapse type", k, error=ConfigError):
                                    check_number(f"MLPRule init_weight_std[{k!r}]", v, low=0.0) for k, v in init_weight_std.items()}
        else:
            self.init_weight_std = check_number("MLPRule init_weight_std (a number, or {synapse type: number})",
                                                init_weight_std, low=0.0)
        hebbian = start == "hebbian"
        # the synapse types the Hebbian write lands on (None: all); names checked against the graph
        if write_types is not None:
            if isinstance(write_types, (str, bytes, dict)) or not hasattr(write_types, "__iter__"):
                raise ConfigError(f"MLPRule write_types must be a list of synapse type names (or None: all), got {write_types!r}")
            write_types = [check_name(f"MLPRule write_types[{i}]", t, error=ConfigError) for i, t in enumerate(write_types)]
        self.write_types = write_types
        self.init_weights = check_init("MLPRule", init_weights)
        given = dict(eta=eta, beta=beta, input_gain=input_gain, learn_from=learn_from, init_weight_std=init_weight_std,
                     output_gain=output_gain, residual_scale=residual_scale, init_weights=init_weights,
                     write_types=write_types, residual_bias=residual_bias)
        defaults = dict(eta=None, beta=1.0, input_gain=1.0, learn_from="input", init_weight_std=0.0, output_gain=1.0,
                        residual_scale=0.1, init_weights="auto", write_types=None, residual_bias=True)
        same = lambda v, d: v is d or ((is_number(v) or isinstance(v, str)) and v == d)  # noqa: E731  (an array: not the default)
        unused = [k for k, v in given.items() if not same(v, defaults[k])]
        if unused and not hebbian:  # silently ignoring them would train a different rule than the config says
            raise ConfigError(f"MLPRule {', '.join(unused)} set the Hebbian core of start='hebbian'; this rule has "
                              f"start={start!r}: set start='hebbian' or remove them")
        if hebbian and (input_dim != 1 or output_dim != 1):
            raise ConfigError(f"MLPRule start='hebbian' stores scalar inputs and reads scalar outputs; it needs "
                              f"input_dim=1 and output_dim=1, got {input_dim} and {output_dim}")
        # start="hebbian": one more node channel (the activity a) and one more edge channel (the weight w)
        core = 1 if hebbian else 0
        self.core = core
        self.node_dim, self.edge_dim = node_dim + core, edge_dim + core
        z = node_dim + core + type_dim
        # every parameter below, counted before any is allocated (hidden=2**34 would be terabytes)
        params = (num_neuron_types * (type_dim + node_dim) + num_synapse_types * (hidden + edge_dim)
                  + (z + 1) * edge_dim + 3 * node_dim * (edge_dim + input_dim + type_dim + node_dim + 2)
                  + (node_dim + 1) * output_dim + (z + 1) * 5 * hidden + edge_dim * hidden + (hidden + 1) * edge_dim)
        check_bytes(f"MLPRule's {params} parameters (hidden={hidden}, node_dim={node_dim}, edge_dim={edge_dim}, "
                    f"type_dim={type_dim})", params * dtype_bytes(), "use smaller hidden/node_dim/edge_dim/type_dim or fewer types")

        self.neuron_embedding = nn.Parameter(torch.randn(num_neuron_types, type_dim) * 0.5)
        self.synapse_embedding = nn.Parameter(torch.zeros(num_synapse_types, hidden))
        self.initial_edge = nn.Parameter(torch.zeros(num_synapse_types, edge_dim))
        self.initial_node = nn.Parameter(torch.zeros(num_neuron_types, node_dim))
        # neuron function (start="hebbian": the GRU also sees a, u and the Hebbian field)
        self.message_in = nn.Linear(z, edge_dim)
        self.node_cell = nn.GRUCell(edge_dim + input_dim + type_dim + 2 * core, node_dim)
        self.read = nn.Linear(node_dim, output_dim)
        # synapse function: per-node first layer (pre, post, product pair, state gate), then U
        self.node_to_edge = nn.Linear(z + input_dim * core, 5 * hidden)
        self.edge_in = nn.Linear(edge_dim + core, hidden, bias=False)
        self.edge_out = nn.Linear(hidden, edge_dim + core)
        with torch.no_grad():
            self.edge_out.weight.mul_(update_scale)
            self.edge_out.bias.zero_()
        if hebbian:  # the Hebbian rule's constants, now meta-parameters; every residual starts at exactly 0
            self.eta = None if eta is None else check_number("MLPRule eta (None: 1 / mean indegree)", eta, positive=True)
            self.eta_scale = nn.Parameter(torch.ones(()))
            self.beta = nn.Parameter(torch.tensor(check_number("MLPRule beta", beta)))
            self.input_gain = nn.Parameter(torch.tensor(check_number("MLPRule input_gain", input_gain)))
            # a read-out gain leaves every sign (the bit accuracy) as it is and lets the squared-error loss
            # scale the outputs without raising beta (1/beta would blow up the clamped neurons' outputs)
            self.output_gain = nn.Parameter(torch.tensor(check_number("MLPRule output_gain", output_gain)))
            # Adam moves every parameter by about lr per step whatever its gradient's size, so a residual
            # that starts at 0 would jump to the size of the Hebbian terms within a few steps; its output
            # is scaled down instead (by residual_scale; the weight residual also by eta, the write's size).
            self.residual_scale = check_number("MLPRule residual_scale", residual_scale, low=0.0)
            # residual_bias=False: the activity and read-out residuals run without their biases (kept as
            # parameters, so a trained rule loads, but unused and so never trained), an offset that reads a
            # weakly recalled +1 bit as -1 (issue 13: every K=1 miss of the N=64 sparse-net rules was one)
            self.residual_bias = check_bool("MLPRule residual_bias", residual_bias)
            self.activity_residual = nn.Linear(node_dim, 1)
            with torch.no_grad():
                for layer in (self.activity_residual, self.read):
                    layer.weight.zero_()
                    layer.bias.zero_()
                self.edge_out.weight[0].zero_()

    # ------------------------------------------------------------------ state
    def check_graph(self, graph: Graph) -> None:
        super().check_graph(graph)
        if self.use_types and graph.num_neuron_types > self.num_neuron_types:
            raise ConfigError(
                f"graph has {graph.num_neuron_types} neuron types {graph.neuron_types} but MLPRule was built for "
                f"{self.num_neuron_types}; pass num_neuron_types={graph.num_neuron_types}"
            )
        if self.use_types and graph.num_synapse_types > self.num_synapse_types:
            raise ConfigError(
                f"graph has {graph.num_synapse_types} synapse types {graph.synapse_types} but MLPRule was built for "
                f"{self.num_synapse_types}; pass num_synapse_types={graph.num_synapse_types}"
            )
        if self.core:
            for what, names in (("init_weight_std", self.init_weight_std), ("write_types", self.write_types)):
                for name in names if isinstance(names, (dict, list)) else ():
                    check_choice(f"synapse type (MLPRule {what})", name, graph.synapse_types)

    def _types(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if self.use_types:
            return graph.node_type, graph.edge_type
        return torch.zeros_like(graph.node_type), torch.zeros_like(graph.edge_type)

    def init_state(self, graph: Graph, batch_size: int) -> State:
        batch_size = self.check_init(graph, batch_size)  # check_graph, then the batch size and its bytes
        if self.mirror:  # the episode's copies first, then their mirror copies
            batch_size = self.check_init(graph, 2 * batch_size)
        node_type, edge_type = self._types(graph)
        # a fixed random pattern per synapse (same every episode) breaks the symmetry between synapses
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(graph.num_edges, self.edge_dim - self.core, generator=g).to(graph.device, self.initial_edge.dtype)
        e0 = self.initial_edge.index_select(0, edge_type) + self.init_edge_std * noise
        x0 = self.initial_node.index_select(0, node_type)
        if self.core:  # a = 0; w = 0, or a fixed random pattern N(0, init_weight_std^2 / indegree),
            # or the graph's measured strengths as the Hebbian rule starts from them (constraints.py)
            w0 = torch.randn(graph.num_edges, 1, generator=g).to(graph.device, e0.dtype)
            fan_in = graph.in_degree().clamp(min=1).to(e0.dtype)[graph.edge_index[1]].unsqueeze(1)
            measured = start_weights(graph, "MLPRule", self.init_weights)
            w0 = self._weight_std(graph, e0) * w0 / fan_in.sqrt() if measured is None else constrain_start(graph, measured.to(e0))
            e0 = torch.cat([w0, e0], -1)
            x0 = torch.cat([x0.new_zeros(x0.shape[0], 1), x0], -1)
        return {
            "node": x0.unsqueeze(0).expand(batch_size, -1, -1),
            "edge": e0.unsqueeze(0).expand(batch_size, -1, -1),
        }

    def _weight_std(self, graph: Graph, like: Tensor) -> Tensor | float:
        """``init_weight_std`` per synapse ``[E, 1]`` (a {synapse type: std} mapping), or the one number."""
        if not isinstance(self.init_weight_std, dict):
            return self.init_weight_std
        table = like.new_tensor([self.init_weight_std.get(name, 0.0) for name in graph.synapse_types])
        return table.index_select(0, graph.edge_type).unsqueeze(1)

    def learning_rate(self, graph: Graph) -> Tensor:
        """start="hebbian": the Hebbian write's ``eta`` (by default ``1 / mean indegree``) times its learned scale."""
        if not self.core:
            raise ConfigError("MLPRule.learning_rate: only start='hebbian' has a Hebbian write (and its eta)")
        eta = self.eta if self.eta is not None else mean_indegree_rate(graph)
        return self.eta_scale * eta

    # ------------------------------------------------------------------ one tick
    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        if self.mirror:
            if state["node"].shape[0] != 2 * inputs.shape[0]:
                raise ShapeError(f"MLPRule(mirror=True) keeps a mirror copy of every episode: a state of batch "
                                 f"{2 * inputs.shape[0]} for inputs of batch {inputs.shape[0]} (rule.init_state makes "
                                 f"it), got {state['node'].shape[0]}")
            inputs = torch.cat([inputs, -inputs], 0)
        self._check_step_state(state, inputs.shape[0])  # after the mirror copies
        if self.core:
            return self._hebbian_step(graph, state, inputs)
        x, e = state["node"], state["edge"]
        B, N = x.shape[0], x.shape[1]
        node_type, _ = self._types(graph)
        t = type_rows(self.neuron_embedding, node_type).expand(B, -1, -1)

        # neuron update: synapses carry channel-wise weighted sums of a per-node projection
        scale = graph.in_degree().clamp(min=1).rsqrt().view(1, -1, 1).to(x.dtype)
        m = graph.propagate(e, self.message_in(torch.cat([x, t], -1))) * scale
        cell_in = torch.cat([m, inputs, t], -1).reshape(B * N, -1)
        x = self.node_cell(cell_in, x.reshape(B * N, -1)).reshape(B, N, -1)
        if not self.plastic:
            return {**state, "node": x}

        # synapse update from the new neuron states
        a, b, c, d, gate = self.node_to_edge(torch.cat([x, t], -1)).chunk(5, dim=-1)
        W, U = self.edge_in, self.edge_out
        syn = self._synapse_table()

        mode = self.edge_update
        if self._runs_native(graph, mode, e):
            return {**state, "node": x, "edge": _native.edge_update(
                self._endpoints(graph), a, c, b, d, gate, e, syn, W.weight, U.weight, U.bias)}

        ids = self._type_ids(graph, mode, B)

        def update(a_j, c_j, b_i, d_i, g_i, e_ij, s, sid=None):  # e + U tanh(a_j + s + b_i + c_j d_i + (W e)(1 + g_i))
            return edge_update(mode, a_j, c_j, b_i, d_i, g_i, e_ij, s, W.weight, U.weight, U.bias, sid=sid)

        if ids is None:
            e = graph.edge_map(update, pre=[a, c], post=[b, d, gate], edge=[e], per_type=[syn])
        else:
            e = graph.edge_map(lambda *v: update(*v[:6], syn, v[6]), pre=[a, c], post=[b, d, gate], edge=[e, ids])
        return {**state, "node": x, "edge": e}

    def _check_step_state(self, state: State, batch: int) -> None:
        """ShapeError unless the node and edge states have this rule's widths and the inputs' batch (a
        few Python compares a tick: the native kernels index by them, so a wrong width must not reach them)."""
        x, e = state.get("node"), state.get("edge")
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[0] != batch or x.shape[-1] != self.node_dim:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"MLPRule.step: state['node'] must be [B, N, node_dim] = [{batch}, N, {self.node_dim}] "
                             f"for these inputs, got {got} (rule.init_state(graph, B) makes a state that fits)")
        if not isinstance(e, Tensor) or e.dim() not in (2, 3) or e.shape[-1] != self.edge_dim \
                or (e.dim() == 3 and e.shape[0] not in (1, batch)):
            got = list(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise ShapeError(f"MLPRule.step: state['edge'] must be [B, E, edge_dim] = [{batch} or 1, E, {self.edge_dim}] "
                             f"(or [E, {self.edge_dim}], shared), got {got} (rule.init_state(graph, B) makes a state that fits)")

    def _hebbian_step(self, graph: Graph, state: State, u: Tensor) -> State:
        """start="hebbian": the Hebbian rule on (a, w) plus learned residuals on every channel."""
        x, e = state["node"], state["edge"]
        B, N = x.shape[0], x.shape[1]
        a = x[..., :1]
        node_type, _ = self._types(graph)
        t_rows = type_rows(self.neuron_embedding, node_type)

        # one propagate for the Hebbian field sum_j w_ij a_j (channel 0) and the learned messages (the
        # rest): no per-channel slices of e, whose backward would zero-fill and copy a whole edge state each
        both = graph.propagate(e, torch.cat([a, self.message_in(torch.cat([x, t_rows.expand(B, -1, -1)], -1))], -1))
        scale = graph.in_degree().clamp(min=1).rsqrt().view(1, -1, 1).to(x.dtype)
        # the GRU cell, the activity a and the synapse function's node-side first layer (rules/_native_neuron.py:
        # one C call each way in the native modes, where these small ops cost half a meta-training step)
        mode = self.edge_update
        cell, q = self.node_cell, self.node_to_edge
        x, y = _native_neuron.neuron_update(
            both, x, u, t_rows, scale, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, self.beta,
            self.input_gain, self.residual_scale, self.activity_residual.weight,
            self.activity_residual.bias if self.residual_bias else None,
            q.weight if self.plastic else None, q.bias if self.plastic else None, native=mode in ("auto", "native"))
        if not self.plastic:
            return {**state, "node": x}

        s = u if self.learn_from == "input" else x[..., :1]
        a_, b_, c_, d_, gate = y.unbind(0)
        W, U = self.edge_in, self.edge_out
        syn, hebbian_write, residual = self._hebbian_tables(graph, x)

        if self._runs_native(graph, mode, e):
            write = hebbian_write if self.write_types is None else self._write_mask(graph, x) * hebbian_write
            return {**state, "node": x, "edge": _native.edge_update(
                self._endpoints(graph), a_, c_, b_, d_, gate, e, syn, W.weight, U.weight, U.bias, residual, s, s, write)}

        ids = self._type_ids(graph, mode, B)
        # write_types: the write as a per-type table [S, De] (zero rows: no Hebbian write), each edge's row
        # from edge_map (one broadcast row per single-type block)
        writes = [] if self.write_types is None else [self._write_mask(graph, x) * hebbian_write]

        def update(a_j, c_j, s_j, b_i, d_i, g_i, s_i, e_ij, syn_type, sid=None, write=hebbian_write):
            # e + (U h) * residual + write * s_i s_j
            return edge_update(mode, a_j, c_j, b_i, d_i, g_i, e_ij, syn_type, W.weight, U.weight, U.bias, residual,
                               s_j, s_i, write, sid=sid)

        if ids is None:
            e = graph.edge_map(lambda *v: update(*v[:9], None, *v[9:]), pre=[a_, c_, s], post=[b_, d_, gate, s], edge=[e],
                               per_type=[syn, *writes])
        else:
            e = graph.edge_map(lambda *v: update(*v[:8], syn, *v[8:]), pre=[a_, c_, s], post=[b_, d_, gate, s], edge=[e, ids],
                               per_type=writes)
        return {**state, "node": x, "edge": e}

    def fast_episode(self, graph: Graph, U: Tensor, state: State) -> tuple[Tensor, State] | None:
        """start="hebbian" on the native path (``auto``/``native`` where its kernels run): the whole
        episode as one autograd node (``rules/_native_episode.py``), the same numbers as ``step`` tick
        by tick. Else None (``sg.simulate`` runs the ticks)."""
        x, e = state.get("node"), state.get("edge")
        if not self.core or not isinstance(x, Tensor) or not isinstance(e, Tensor) \
                or not self._runs_native(graph, self.edge_update, e):
            return None
        cell, q = self.node_cell, self.node_to_edge
        if any(v.dtype != x.dtype or v.device.type != "cpu" for v in (x, e, U, *self.parameters())) \
                or not _native_neuron.available(self.edge_dim - 1, self.node_dim - 1, self.neuron_embedding.shape[1],
                                                q.weight.shape[0] if self.plastic else 5, x.dtype, x.device):
            return None
        T, B = U.shape[0], U.shape[1]
        if self.mirror:
            U = torch.cat([U, -U], 1)
        self._check_step_state(state, U.shape[1])
        # what every tick reads that does not change within the episode, once (under autograd)
        node_type, _ = self._types(graph)
        t_rows = type_rows(self.neuron_embedding, node_type)
        P = self.message_in.weight
        mt = nn.functional.linear(t_rows, P[:, self.node_dim:], self.message_in.bias)
        scale = graph.in_degree().clamp(min=1).rsqrt().view(1, -1, 1).to(x.dtype)
        syn, write, residual = self._hebbian_tables(graph, x)
        if self.write_types is not None:
            write = self._write_mask(graph, x) * write
        W, Uo = self.edge_in, self.edge_out
        synapse = (q.weight, q.bias, syn, W.weight, Uo.weight, Uo.bias, residual, write) if self.plastic else (None,) * 8
        X, e_last = _native_episode.run(
            self._endpoints(graph), U, x, e.unsqueeze(0) if e.dim() == 2 else e, t_rows, scale, P[:, : self.node_dim], mt,
            cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, self.beta, self.input_gain, self.residual_scale,
            self.activity_residual.weight, self.activity_residual.bias if self.residual_bias else None, *synapse,
            self.learn_from == "input")
        e = e_last if self.plastic else e  # (not plastic: the synapses keep the state they were given)
        out = self._readout(graph, {"node": X.flatten(0, 1)})
        out = out.view(T, U.shape[1], *out.shape[1:])
        if self.mirror:  # half the difference of each episode's copy and its mirror copy (readout)
            out = (out[:, :B] - out[:, B:]) / 2
        return out, {**state, "node": X[-1], "edge": e}

    def _synapse_table(self) -> Tensor:
        """The synapse-type embedding table ``[S, hidden]`` (every type row 0 without ``use_types``)."""
        return self.synapse_embedding if self.use_types else self.synapse_embedding[:1].expand(self.num_synapse_types, -1)

    def _hebbian_tables(self, graph: Graph, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """start="hebbian": the synapse-type table ``[S, hidden]``, the Hebbian write ``[De]`` (``eta`` on
        channel 0 only) and the residual's per-channel scale ``[De]`` (``eta * residual_scale`` on channel
        0, whose gradient stops there; 1 on the others)."""
        syn = self._synapse_table()
        eta = self.learning_rate(graph).to(like.dtype).view(1)
        write = torch.cat([eta, eta.new_zeros(self.edge_dim - 1)])
        residual = torch.cat([eta.detach() * self.residual_scale, eta.new_ones(self.edge_dim - 1)])
        return syn, write, residual

    def _write_mask(self, graph: Graph, like: Tensor) -> Tensor:
        """``[num_synapse_types, 1]``: 1 for the synapse types of ``write_types``, 0 for the others."""
        return like.new_tensor([[float(name in self.write_types)] for name in graph.synapse_types])

    def _runs_native(self, graph: Graph, mode: str, e: Tensor) -> bool:
        """Whether this tick's synapse function runs the native C kernel (``rules/_native.py``): mode
        ``native``, or ``auto`` on a CPU where it builds; never inside a ``torch.compile`` trace, nor
        on a restricted view (a schedule's step over some projections: ``edge_map`` covers those)."""
        if mode not in ("auto", "native") or torch.compiler.is_compiling() or graph.endpoints() is None:
            return False
        if _native.available(self.edge_in.out_features, self.edge_dim, e.dtype, e.device):
            return True
        if mode == "native":
            _native.warn_unavailable(self.edge_in.out_features, self.edge_dim, e.dtype, e.device)
        return False

    def _endpoints(self, graph: Graph) -> tuple:
        """The graph's synapse endpoints for the native kernel; the type ids only where types are used
        (the embedding's rows, or the per-type Hebbian write)."""
        pre, post, kinds = graph.endpoints()  # the per-type write (write_types) needs the ids without use_types too
        return pre, post, kinds if self.use_types or self.write_types is not None else None

    def _type_ids(self, graph: Graph, mode: str, batch: int = 1) -> Tensor | None:
        """Per-edge synapse type ids ``[E, 1]`` for the fused synapse function on a graph of several
        synapse types: it gathers each edge's row of the type table inside its kernel (an ``[E, hidden]``
        tensor of rows, and its gradient, are not materialised). None: the rows come from ``edge_map``'s
        ``per_type`` (one type, or the plain reference)."""
        if not self.use_types or graph.num_synapse_types < 2:
            return None
        if mode == "auto":  # small ticks run plain: per-edge rows, whose gather has the fast batch-1 backward
            mode = _fused.auto_mode(batch * graph.num_edges * self.edge_in.out_features)
        return None if mode == "plain" else graph.edge_type.view(-1, 1)

    def readout(self, graph: Graph, state: State) -> Tensor:
        if self.mirror:  # half the difference of each episode's copy and its mirror copy: an odd rule
            out = self._readout(graph, state)
            half = out.shape[0] // 2
            return (out[:half] - out[half:]) / 2
        return self._readout(graph, state)

    def _readout(self, graph: Graph, state: State) -> Tensor:
        if self.core:
            x = graph.read_outputs(state["node"])
            return self.output_gain * x[..., :1] + self.residual_scale * self._residual(self.read, x[..., 1:])
        return self.read(graph.read_outputs(state["node"]))

    def _residual(self, layer: nn.Linear, h: Tensor) -> Tensor:
        """A learned residual of the Hebbian core (start="hebbian"), with its bias or without (``residual_bias``)."""
        return layer(h) if self.residual_bias else nn.functional.linear(h, layer.weight)
