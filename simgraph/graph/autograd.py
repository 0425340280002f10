"""Custom autograd Functions of the sparse layout: CSR products and gathers with fast CPU backwards."""

from __future__ import annotations

import torch
from torch import Tensor

from .csr import CSR, Side, csr_apply


class GatherNodes(torch.autograd.Function):
    """``x.index_select(1, idx)`` of ``x [1, N, C]`` with a fast CPU backward: the gradient
    ``[1, E, C] -> [1, N, C]`` is one CSR product with the 0/1 node-by-edge matrix ``S`` (double
    backward falls back to ``index_add``, which autograd can differentiate)."""

    @staticmethod
    def forward(ctx, x: Tensor, idx: Tensor, S: Tensor) -> Tensor:
        ctx.idx, ctx.S, ctx.num_nodes = idx, S, x.shape[1]
        return x.index_select(1, idx)

    @staticmethod
    def backward(ctx, g: Tensor):
        if torch.is_grad_enabled():  # create_graph: stay differentiable
            return g.new_zeros(1, ctx.num_nodes, g.shape[2]).index_add(1, ctx.idx.long(), g), None, None
        gx = ctx.S @ (g[0, :, 0] if g.shape[2] == 1 else g[0].contiguous())
        return gx.view(1, ctx.num_nodes, g.shape[2]), None, None


class SegmentsToNodes(torch.autograd.Function):
    """Per-segment values ``[B, S, D]`` added into their nodes ``[B, N, D]`` (several segments may
    share a node): ``index_add_`` forward, a gather backward."""

    @staticmethod
    def forward(ctx, seg: Tensor, side: Side) -> Tensor:
        ctx.side = side
        return side.to_nodes(seg)

    @staticmethod
    def backward(ctx, g: Tensor):
        return g.index_select(1, ctx.side.seg_ids), None


class CSRPropagate(torch.autograd.Function):
    """``propagate`` on a sparse block with CSR products forward and backward.

    Backward: the input gradient is the transposed product (itself this Function, so double
    backward works); the weight gradient is ``g[target] * x[source]`` per edge (summed over the
    batch when the weights are shared).
    """

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, fwd: CSR, bwd: CSR) -> Tensor:
        ctx.save_for_backward(w, x)
        ctx.csr = (fwd, bwd)
        return csr_apply(w, x, fwd)

    @staticmethod
    def backward(ctx, g: Tensor):
        w, x = ctx.saved_tensors
        fwd, bwd = ctx.csr
        gw = gx = None
        if ctx.needs_input_grad[1]:
            gx = CSRPropagate.apply(w, g, bwd, fwd)
            if x.shape[0] == 1 and gx.shape[0] > 1:
                gx = gx.sum(0, keepdim=True)
        if ctx.needs_input_grad[0]:
            if w.shape[0] == 1 and g.shape[0] > 1:  # shared weights: sum_b g[b, tgt] x[b, src] per edge
                gw = fwd.batch_dot(g, x.expand(g.shape[0], -1, -1))
            else:
                gw = fwd.targets(g) * fwd.sources(x)
        return gw, gx, None, None
