"""What the engine is measured against: the same math written by hand, twice.

- ``dense_*``: plain dense tensors for one all-to-all population (``W [B, N, N, D]``, post-major,
  so it is the very memory the engine's dense layout holds), written the way one would by hand.
- ``Pyg*``: a straightforward PyTorch Geometric ``MessagePassing`` version on ``edge_index``
  (messages and edge updates computed on lifted ``x_i``/``x_j`` features, PyG's usual idiom).

Each takes the engine rule object for its parameters, so all three compute the same numbers;
:func:`simgraph.bench.suite` checks that before timing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MessagePassing


# ---------------------------------------------------------------------- hand-written dense
def dense_static(rule, x: Tensor, W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``W [B|1, N, N, 1]``: ``x <- tanh(gain W x + input_gain u)``."""
    return torch.tanh(rule.gain * torch.matmul(W[..., 0], x) + rule.input_gain * u), W


def dense_hebbian(rule, x: Tensor, W: Tensor, u: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    x = torch.tanh(rule.beta * torch.matmul(W[..., 0], x) + rule.input_gain * u)
    s = u if rule.learn_from == "input" else x
    W = torch.baddbmm(W[..., 0], s, s.transpose(1, 2), alpha=eta).unsqueeze(-1)  # W + eta s s^T
    return x, W


def dense_mlp(rule, x: Tensor, e: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """The MLP rule on one all-to-all population of one neuron and one synapse type."""
    B, N = x.shape[:2]
    t = rule.neuron_embedding[0].expand(B, N, -1)
    P = rule.message_in(torch.cat([x, t], -1))
    m = torch.einsum("bpqc,bqc->bpc", e, P) / N**0.5
    x = rule.node_cell(torch.cat([m, u, t], -1).reshape(B * N, -1), x.reshape(B * N, -1)).reshape(B, N, -1)
    a, b, c, d, g = rule.node_to_edge(torch.cat([x, t], -1)).chunk(5, -1)
    pre, post = (lambda v: v.unsqueeze(1)), (lambda v: v.unsqueeze(2))
    h = torch.tanh(pre(a) + post(b) + pre(c) * post(d) + F.linear(e, rule.edge_in.weight) * (1 + post(g))
                   + rule.synapse_embedding[0])
    return x, e + rule.edge_out(h)


# ---------------------------------------------------------------------- straightforward PyG
class PygWeighted(MessagePassing):
    """``sum_j w_ij x_j`` into each post node; tensors are ``[B, N, D]`` / ``[B, E, D]``."""

    def __init__(self):
        super().__init__(aggr="add", node_dim=1)

    def forward(self, x: Tensor, edge_index: Tensor, w: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, w=w)

    def message(self, x_j: Tensor, w: Tensor) -> Tensor:
        return w * x_j


class PygHebb(MessagePassing):
    def __init__(self):
        super().__init__(aggr="add", node_dim=1)

    def forward(self, s: Tensor, edge_index: Tensor, w: Tensor, eta: float) -> Tensor:
        return self.edge_updater(edge_index, s=s, w=w, eta=eta)

    def edge_update(self, s_i: Tensor, s_j: Tensor, w: Tensor, eta: float) -> Tensor:
        return w + eta * s_i * s_j


class PygMLPEdge(MessagePassing):
    """The MLP rule's synapse function applied per edge to lifted node features."""

    def __init__(self, rule):
        super().__init__(aggr="add", node_dim=1)
        self.rule = rule

    def forward(self, z: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        return self.edge_updater(edge_index, z=z, e=e)

    def edge_update(self, z_i: Tensor, z_j: Tensor, e: Tensor) -> Tensor:
        r = self.rule
        a, _, c, _, _ = r.node_to_edge(z_j).chunk(5, -1)
        _, b, _, d, g = r.node_to_edge(z_i).chunk(5, -1)
        h = torch.tanh(a + b + c * d + F.linear(e, r.edge_in.weight) * (1 + g) + r.synapse_embedding[0])
        return e + r.edge_out(h)


def pyg_static(rule, conv, edge_index, x, w, u):
    return torch.tanh(rule.gain * conv(x, edge_index, w) + rule.input_gain * u), w


def pyg_hebbian(rule, conv, hebb, edge_index, x, w, u, eta):
    x = torch.tanh(rule.beta * conv(x, edge_index, w) + rule.input_gain * u)
    s = u if rule.learn_from == "input" else x
    return x, hebb(s, edge_index, w, eta)


def pyg_mlp(rule, conv, edge, edge_index, scale, x, e, u):
    B, N = x.shape[:2]
    t = rule.neuron_embedding[0].expand(B, N, -1)
    m = conv(rule.message_in(torch.cat([x, t], -1)), edge_index, e) * scale
    x = rule.node_cell(torch.cat([m, u, t], -1).reshape(B * N, -1), x.reshape(B * N, -1)).reshape(B, N, -1)
    return x, edge(torch.cat([x, t], -1), edge_index, e)


# ---------------------------------------------------------------------- the dense-scratch builder
def dense_connect(rule: str, n_pre: int, n_post: int, g: torch.Generator, *, p: float = 0.0, k: int = 0,
                  autapses_ok: bool = True) -> tuple[Tensor, Tensor]:
    """simgraph's builder before issue 14, without multapses: an ``n_post x n_pre`` random matrix per
    projection (a Bernoulli mask, top-k keys, or a permutation of every pair), then a sort by (post, pre).
    Returns local (pre, post) ids, the order :meth:`simgraph.Network.connect` stores."""
    if rule == "pairwise_bernoulli":
        mask = torch.rand(n_post, n_pre, generator=g) < p
        if not autapses_ok:
            mask.fill_diagonal_(False)
        post_i, pre_i = mask.nonzero(as_tuple=True)
    elif rule == "fixed_indegree":
        keys = torch.rand(n_post, n_pre, generator=g)
        if not autapses_ok:
            keys.fill_diagonal_(-1.0)
        post_i, pre_i = torch.arange(n_post).repeat_interleave(k), keys.topk(k, dim=1).indices.reshape(-1)
    elif rule == "fixed_total_number" and autapses_ok:
        flat = torch.randperm(n_pre * n_post, generator=g)[:k]
        post_i, pre_i = flat // n_pre, flat % n_pre
    else:
        raise ValueError(f"no dense-scratch reference for {rule!r} (autapses_ok={autapses_ok})")
    order = torch.argsort(post_i * n_pre + pre_i, stable=True)
    return pre_i[order], post_i[order]
