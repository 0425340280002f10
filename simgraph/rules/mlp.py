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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..graph import Graph
from .base import Rule, State, type_rows


class MLPRule(Rule):
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
    ):
        super().__init__()
        from ..errors import check_bool, check_bytes, check_int, check_number, check_seed, dtype_bytes, is_int

        for name, v in dict(num_neuron_types=num_neuron_types, num_synapse_types=num_synapse_types, node_dim=node_dim,
                            edge_dim=edge_dim, hidden=hidden, type_dim=type_dim, input_dim=input_dim,
                            output_dim=output_dim).items():
            if not is_int(v) or v < 1:
                raise ConfigError(f"MLPRule {name} must be a positive int, got {v!r}")
        num_neuron_types, num_synapse_types, node_dim, edge_dim, hidden, type_dim, input_dim, output_dim = (
            check_int("MLPRule", v) for v in (num_neuron_types, num_synapse_types, node_dim, edge_dim, hidden, type_dim,
                                              input_dim, output_dim))
        if output_dim > node_dim:
            raise ConfigError(f"MLPRule output_dim={output_dim} exceeds node_dim={node_dim}")
        use_types, plastic = check_bool("MLPRule use_types", use_types), check_bool("MLPRule plastic", plastic)
        init_edge_std = check_number("MLPRule init_edge_std", init_edge_std, low=0.0)
        update_scale = check_number("MLPRule update_scale", update_scale)
        self.node_dim, self.edge_dim, self.input_dim, self.output_dim = node_dim, edge_dim, input_dim, output_dim
        self.num_neuron_types, self.num_synapse_types = num_neuron_types, num_synapse_types
        self.use_types, self.plastic = use_types, plastic
        self.init_edge_std, self.seed = init_edge_std, check_seed("MLPRule seed", seed)
        z = node_dim + type_dim
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
        # neuron function
        self.message_in = nn.Linear(z, edge_dim)
        self.node_cell = nn.GRUCell(edge_dim + input_dim + type_dim, node_dim)
        self.read = nn.Linear(node_dim, output_dim)
        # synapse function: per-node first layer (pre, post, product pair, state gate), then U
        self.node_to_edge = nn.Linear(z, 5 * hidden)
        self.edge_in = nn.Linear(edge_dim, hidden, bias=False)
        self.edge_out = nn.Linear(hidden, edge_dim)
        with torch.no_grad():
            self.edge_out.weight.mul_(update_scale)
            self.edge_out.bias.zero_()

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

    def _types(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if self.use_types:
            return graph.node_type, graph.edge_type
        return torch.zeros_like(graph.node_type), torch.zeros_like(graph.edge_type)

    def init_state(self, graph: Graph, batch_size: int) -> State:
        self.check_graph(graph)
        node_type, edge_type = self._types(graph)
        # a fixed random pattern per synapse (same every episode) breaks the symmetry between synapses
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(graph.num_edges, self.edge_dim, generator=g).to(graph.device, self.initial_edge.dtype)
        e0 = self.initial_edge.index_select(0, edge_type) + self.init_edge_std * noise
        x0 = self.initial_node.index_select(0, node_type)
        return {
            "node": x0.unsqueeze(0).expand(batch_size, -1, -1),
            "edge": e0.unsqueeze(0).expand(batch_size, -1, -1),
        }

    # ------------------------------------------------------------------ one tick
    def step(self, graph: Graph, state: State, inputs: Tensor) -> State:
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
        syn = self.synapse_embedding if self.use_types else self.synapse_embedding[:1].expand(self.num_synapse_types, -1)

        def update(a_j, c_j, b_i, d_i, g_i, e_ij, s):
            # Same math as tanh(a_j + b_i + c_j d_i + (W e)(1 + g_i) + s), written so that only two
            # hidden-wide per-edge tensors are allocated: the pre/post sums broadcast once, the two
            # products fuse into addcmul_ (in place on a fresh temporary, which autograd allows: no
            # backward needs its old value), and tanh_ overwrites it.
            h = torch.addcmul(a_j + s + b_i, c_j, d_i)
            h = h.addcmul_(F.linear(e_ij, W.weight), 1 + g_i).tanh_()
            return e_ij + F.linear(h, U.weight, U.bias)

        e = graph.edge_map(update, pre=[a, c], post=[b, d, gate], edge=[e], per_type=[syn])
        return {**state, "node": x, "edge": e}

    def readout(self, graph: Graph, state: State) -> Tensor:
        return self.read(graph.read_outputs(state["node"]))
