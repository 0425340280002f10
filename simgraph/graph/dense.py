"""The dense layout: an all-to-all projection whose edge tensor slice ``[B, E_p, D]`` is viewable as
``[B, n_post, n_pre, D]`` (post-major). Moving data along its synapses needs no index tensors:
broadcasting views and a reduction over one axis, or a matrix product."""

from __future__ import annotations

import torch
from torch import Tensor


# Below this many weights, a propagate is a broadcast multiply and a sum, not a BLAS product: on the
# recall default (32 episodes x 32 x 32 synapses, 2-core CPU, 1 thread) forward+backward of one
# channel took 0.16 against 0.45 ms (batched matrix-vector products of strided per-episode
# matrices copy them one by one), of 4 channels (einsum: 128 tiny products) 0.30 against 1.5 ms.
# One channel at 1M weights: 1.4 (BLAS) against 1.6 ms, so large single channels stay on BLAS.
# Several channels always broadcast (1000 x 1000 x 4 weights: 8.4 against 19.5 ms with backward,
# 2.9 against 17 ms forward only).
BROADCAST_BELOW = 2**18


def broadcast_matvec(W: Tensor, X: Tensor, into_post: bool) -> Tensor:
    """``W [Bw, n_post, n_pre, C]``, ``X [B, n_source, C]`` -> ``[B, n_target, C]``, channel by
    channel, as one broadcast product and a sum (autograd's backward is two more of each)."""
    return (W * X.unsqueeze(1)).sum(2) if into_post else (W * X.unsqueeze(2)).sum(1)


def dense_matvec(W: Tensor, X: Tensor, into_post: bool) -> Tensor:
    """``W [Bw, n_post, n_pre]``, ``X [B, n_source, 1]`` -> ``[B, n_target, 1]`` (``W x`` or ``W^T x``)."""
    if W.numel() < BROADCAST_BELOW:
        return broadcast_matvec(W.unsqueeze(-1), X, into_post)
    if W.stride(-1) != 1 and W.stride(-2) != 1:  # a channel of a wider edge state: one copy, not one per episode
        W = W.contiguous()
    if X.shape[0] == 1 and W.shape[0] == 1:  # one episode: a matrix-vector product
        return torch.matmul(W, X) if into_post else torch.matmul(X.transpose(1, 2), W).transpose(1, 2)
    if W.shape[0] == 1 or W.stride(0) == 0:  # one matrix for the whole batch: a single GEMM
        M = W[0]
        return (X[..., 0] @ (M.T if into_post else M)).unsqueeze(-1)
    X = X.expand(W.shape[0], -1, -1)
    # row-vector form x^T W^T: on CPU, bmm's [B,N,N] @ [B,N,1] path ran 2-3x slower than this one
    return torch.bmm(X.transpose(1, 2), W.transpose(1, 2) if into_post else W).transpose(1, 2)


class DenseBlock:
    """One dense projection."""

    kind = "dense"

    def __init__(self, projection):
        self.projections = (projection,)
        self.p = projection
        self.start, self.stop = projection.start, projection.stop

    def prepare(self) -> None:
        pass

    def view(self, x: Tensor, side: str) -> Tensor:
        """Node values as a broadcastable view: pre ``[B, 1, n_pre, D]``, post ``[B, n_post, 1, D]``."""
        if side == "pre":
            return x[:, self.p.pre.slice].unsqueeze(1)
        return x[:, self.p.post.slice].unsqueeze(2)

    def grid(self, t: Tensor) -> Tensor:
        """The projection's slice of an edge tensor ``[B, E, D]`` or ``[E, D]`` as ``[B, n_post, n_pre, D]``."""
        t = (t.unsqueeze(0) if t.dim() == 2 else t)[:, self.start : self.stop]
        return t.reshape(t.shape[0], self.p.post.size, self.p.pre.size, t.shape[-1])

    def per_edge(self, x: Tensor, use_pre: bool) -> Tensor:
        v = self.view(x, "pre" if use_pre else "post")
        return v.expand(x.shape[0], self.p.post.size, self.p.pre.size, x.shape[-1]).reshape(x.shape[0], -1, x.shape[-1])

    def edge_args(self, pre, post, edge, per_type) -> list[Tensor]:
        return ([self.view(t, "pre") for t in pre] + [self.view(t, "post") for t in post]
                + [self.grid(t) for t in edge] + [t[self.p.type_id].view(1, 1, 1, -1) for t in per_type])

    def flat(self, r: Tensor) -> Tensor:
        if r.dim() == 4:  # broadcast views: [B, n_post, n_pre, D]
            r = r.expand(r.shape[0], self.p.post.size, self.p.pre.size, r.shape[-1])
        return r.reshape(r.shape[0], -1, r.shape[-1])

    def _grid_of(self, m: Tensor) -> Tensor:
        return m.reshape(m.shape[0], self.p.post.size, self.p.pre.size, m.shape[-1])

    def sum(self, m: Tensor, into_post: bool) -> tuple[int, int, Tensor]:
        target = self.p.post if into_post else self.p.pre
        return target.start, target.stop, self._grid_of(m).sum(2 if into_post else 1)

    def max_into(self, out: Tensor, m: Tensor, into_post: bool) -> Tensor:
        target = self.p.post if into_post else self.p.pre
        c = self._grid_of(m).amax(2 if into_post else 1)  # out of place, so autograd keeps what maximum saved
        return out.slice_scatter(torch.maximum(out[:, target.slice], c), 1, target.start, target.stop)

    def propagate(self, w: Tensor, x: Tensor, into_post: bool) -> tuple[int, int, Tensor]:
        p = self.p
        source, target = (p.pre, p.post) if into_post else (p.post, p.pre)
        wv = self._grid_of(w)
        xs = x[:, source.slice]
        if x.shape[-1] == 1:  # plain matrix-vector products
            c = dense_matvec(wv[..., 0], xs, into_post)
        else:
            c = broadcast_matvec(wv, xs, into_post)
        return target.start, target.stop, c
