"""The layout plan: which block runs which projections, built once per graph (GeNN style: the
connectivity kind is chosen for speed and invisible to the rules).

Projections are walked in edge order. Consecutive projections that are contiguous in edge order
and run sparse join one :class:`~simgraph.graph.sparse.SparseBlock`; a large dense projection is
a :class:`~simgraph.graph.dense.DenseBlock` of its own. Dense projections with fewer synapses
than ``DENSE_AS_SPARSE_BELOW`` run inside the sparse block instead (graphs of several projections).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dense import DenseBlock
from .sparse import SparseBlock

# Dense projections with fewer synapses than this join the sparse block (in graphs of several
# projections). Measured on the recall net (16 -> 64 -> 16, three dense projections, 2-core CPU):
# all three in one CSR block ran the Hebbian tick at B = 1 in 0.78x (forward) and 0.52x
# (forward+backward) the time of three dense blocks, but the MLP rule's at B = 32 (the recall
# default) in 1.39x and 1.34x: its wide per-edge update is cheapest on broadcast dense views, not on
# gathered ones. So dense stays dense by default.
DENSE_AS_SPARSE_BELOW = 0


def plan(projections, edge_index: Tensor, edge_type: Tensor, num_nodes: int, merge: bool = True) -> tuple:
    """The blocks of a graph (or of a restricted view: its projections only), in edge order.
    ``merge=False``: one block per projection, in its own layout (the per-projection engine, kept
    as the reference the tests and ``runs/typed_layouts.py`` compare the merged plan with)."""
    projections = list(projections)
    runs: list[tuple[str, list]] = []
    for p in projections:
        sparse = p.layout == "sparse" or (merge and len(projections) > 1 and p.num_edges < DENSE_AS_SPARSE_BELOW)
        if merge and sparse and runs and runs[-1][0] == "sparse" and runs[-1][1][-1].stop == p.start:
            runs[-1][1].append(p)
        else:
            runs.append(("sparse" if sparse else "dense", [p]))
    return tuple(SparseBlock(ps, edge_index, edge_type, num_nodes) if kind == "sparse" else DenseBlock(ps[0])
                 for kind, ps in runs)


def cat_edges(parts: list[Tensor]) -> Tensor:
    """Per-block edge tensors ``[B_i, E_i, D]`` -> ``[B, E, D]`` (no copy for one block)."""
    if len(parts) == 1:
        return parts[0]
    B = max(t.shape[0] for t in parts)
    return torch.cat([t.expand(B, *t.shape[1:]) for t in parts], 1)


def combine(parts: list[tuple[int, int, Tensor]], num_nodes: int, batch: int | None = None) -> Tensor:
    """Add per-block node sums ``(lo, hi, [B, hi - lo, D])`` into one ``[B, N, D]`` tensor."""
    B = batch or max(c.shape[0] for _, _, c in parts)
    lo, hi, c = parts[0]
    if len(parts) == 1 and (lo, hi) == (0, num_nodes):  # one block onto every node: no zero-filled buffer
        return c.expand(B, num_nodes, c.shape[-1])
    # In-place accumulation into a fresh buffer: autograd records it as CopySlices, and no
    # full-size copy is made per block (slice_scatter/out-of-place index_add copied N each time).
    out = torch.zeros((B, num_nodes, c.shape[-1]), dtype=c.dtype, device=c.device)
    for lo, hi, c in parts:
        out[:, lo:hi] += c
    return out
