"""The sparse layout: consecutive projections run as ONE CSR block over global node ids.

However many populations, projections and synapse types a graph has, its sparse synapses (and
dense projections below ``layout.DENSE_AS_SPARSE_BELOW`` synapses, none by default) form one block
per contiguous edge range, usually one for the whole graph: one gather per primitive, one CSR product per channel,
one segment reduction, whatever the number of projections. Edges stay in the graph's order (so
edge views stay views, and rules may write them in place); the index tensors are built once:

- each side (pre, post) is a :class:`~simgraph.graph.csr.Side`: its ids, and its *segments*
  (runs of equal ids in edge order; projections are sorted by post, so a block of P projections
  has at most P segments per post neuron);
- sums into a side run as segment reductions (no atomics) and, when the segments do not run
  through the nodes in order, a second, segment-sized product adds them into their nodes;
- when every segment holds the same number ``k`` of edges (fixed in-degree), per-edge tensors
  are viewed as ``[B, S, k, D]`` (ELL) and post values broadcast instead of being gathered;
- synapse types are per-edge ids: ``edge_map``'s ``per_type`` tables arrive as one row per edge
  (one broadcast row when the block has a single type).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .autograd import CSRPropagate, GatherNodes, SegmentsToNodes
from .csr import CSR, Side, selection_matrix


def side_sum(side: Side, m: Tensor) -> Tensor:
    """Per-edge values ``[B, E_b, D]`` summed into their ``side`` nodes ``[B, N, D]``: CSR segment
    reductions (``segment_reduce``: one pass, no atomics, ~50x faster than ``index_add`` along dim 1
    on CPU), through a cached permutation when the ids are scattered (sums into pre)."""
    B, D = m.shape[0], m.shape[-1]
    if side.repeats:
        return segments_to_nodes(side, m.reshape(B, -1, side.uniform, D).sum(2))
    if side.sorted:
        return torch.segment_reduce(m, "sum", lengths=side.node_lengths().expand(B, -1).contiguous(), axis=1)
    if side.segmented:
        seg = torch.segment_reduce(m, "sum", lengths=side.seg_len.unsqueeze(0).expand(B, -1).contiguous(), axis=1)
        return segments_to_nodes(side, seg)
    m = m.index_select(1, side.perm())
    return torch.segment_reduce(m, "sum", lengths=side.node_counts().expand(B, -1).contiguous(), axis=1)


def segments_to_nodes(side: Side, seg: Tensor) -> Tensor:
    """Per-segment values ``[B, S, D]`` -> node sums ``[B, N, D]``."""
    if side.span is not None:
        return side.pad(seg)
    if torch.compiler.is_compiling():
        return seg.new_zeros(seg.shape[0], side.num_nodes, seg.shape[-1]).index_add(1, side.seg_ids, seg)
    return SegmentsToNodes.apply(seg, side)


def _fast_gather_backward(x: Tensor) -> bool:
    """At batch 1 on CPU, ``index_select``'s backward (``index_add`` along dim 1 of a 3-D tensor) is
    3x (16 channels) to 37x (1 channel) slower than a CSR product with the 0/1 node-by-edge matrix
    (``python runs/cpu_primitives.py``); the genome rule's sparse forward+backward took 1.8x less
    time with it (``simgraph bench``). At batch 16 the per-episode products measured slower."""
    return (x.shape[0] == 1 and x.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu"
            and not torch.compiler.is_compiling())


class SparseBlock:
    """Consecutive projections (one contiguous edge range) as one CSR block."""

    kind = "sparse"

    def __init__(self, projections, edge_index: Tensor, edge_type: Tensor, num_nodes: int):
        self.projections = tuple(projections)
        self.start, self.stop = self.projections[0].start, self.projections[-1].stop
        self.num_nodes = num_nodes
        src, tgt = edge_index[:, self.start : self.stop]
        self.pre, self.post = Side.of(src, num_nodes), Side.of(tgt, num_nodes)
        types = {p.type_id for p in self.projections}
        self.type_id = types.pop() if len(types) == 1 else None  # one synapse type: per-type rows broadcast
        self.edge_type = edge_type[self.start : self.stop]
        self.ell = self.post.uniform if self.post.repeats else None  # k edges a post segment: [B, S, k, D] views
        self._lazy: dict = {}

    @property
    def num_edges(self) -> int:
        return self.stop - self.start

    def _get(self, key, make):
        if key not in self._lazy:
            self._lazy[key] = make()
        return self._lazy[key]

    def csr(self, into_post: bool) -> CSR:
        """The block as a CSR matrix, rows = targets (post, or pre for ``into_post=False``), built once."""
        tgt, src = (self.post, self.pre) if into_post else (self.pre, self.post)
        return self._get(("csr", into_post), lambda: CSR.build(tgt, src))

    def prepare(self) -> None:
        for into_post in (True, False):
            self.csr(into_post)
        self.pre.prepare()
        self.post.prepare()

    # ------------------------------------------------------------------ per-edge views
    def gather(self, x: Tensor, side: Side) -> Tensor:
        """``x``'s node values along ``side``, per edge ``[B, E_b, D]`` (materialised)."""
        if side.repeats:  # a repeat of per-segment values, not a gather per edge
            return side.repeat(x)
        if _fast_gather_backward(x):
            return GatherNodes.apply(x, side.ids, side.edge_matrix(x.dtype))
        return x.index_select(1, side.ids)

    def per_edge(self, x: Tensor, use_pre: bool) -> Tensor:
        return self.gather(x, self.pre if use_pre else self.post)

    def _type_rows(self, t: Tensor, ell: bool) -> Tensor:
        """A ``[num_types, D]`` table as the block's rows: one broadcast row, or one row per edge."""
        if self.type_id is not None:
            return t[self.type_id].view((1, 1, 1, -1) if ell else (1, 1, -1))
        if _fast_gather_backward(t.unsqueeze(0)):
            key = ("types", t.shape[0], t.dtype)
            S = self._get(key, lambda: selection_matrix(self.edge_type, t.shape[0], self.num_edges, t.dtype))
            rows = GatherNodes.apply(t.unsqueeze(0), self.edge_type, S)
        else:
            rows = t.index_select(0, self.edge_type).unsqueeze(0)
        return rows.view(1, -1, self.ell, t.shape[-1]) if ell else rows

    def edge_args(self, pre, post, edge, per_type) -> list[Tensor]:
        """The views ``edge_map`` hands ``fn``: ``[B, E_b, D]``, or ELL ``[B, S, k, D]`` with post
        values ``[B, S, 1, D]`` broadcast over each segment's ``k`` edges."""
        if self.ell is not None:
            k = self.ell
            ell = lambda t: t.reshape(t.shape[0], -1, k, t.shape[-1])  # noqa: E731
            return ([ell(self.gather(t, self.pre)) for t in pre] + [self.post.per_segment(t).unsqueeze(2) for t in post]
                    + [ell(self.edges(t)) for t in edge] + [self._type_rows(t, True) for t in per_type])
        return ([self.gather(t, self.pre) for t in pre] + [self.gather(t, self.post) for t in post]
                + [self.edges(t) for t in edge] + [self._type_rows(t, False) for t in per_type])

    def flat(self, r: Tensor) -> Tensor:
        """One result of ``fn`` on :meth:`edge_args` as ``[B, E_b, D]``."""
        if r.dim() == 4:  # ELL views: [B, S, k, D]
            r = r.expand(r.shape[0], -1, self.ell, r.shape[-1])
        return r.reshape(r.shape[0], -1, r.shape[-1])

    def edges(self, t: Tensor) -> Tensor:
        """The block's slice of an edge tensor ``[B, E, D]`` or ``[E, D]`` (a view)."""
        return (t.unsqueeze(0) if t.dim() == 2 else t)[:, self.start : self.stop]

    # ------------------------------------------------------------------ reductions and products
    def sum(self, m: Tensor, into_post: bool) -> tuple[int, int, Tensor]:
        """The block's per-edge values summed into their post (or pre) nodes, as ``(0, N, [B, N, D])``."""
        return 0, self.num_nodes, side_sum(self.post if into_post else self.pre, m)

    def max_into(self, out: Tensor, m: Tensor, into_post: bool) -> Tensor:
        B, D = out.shape[0], out.shape[-1]
        index = (self.post if into_post else self.pre).ids_long.view(1, -1, 1).expand(B, -1, D)
        return out.scatter_reduce(1, index, m.expand(B, *m.shape[1:]), "amax")

    def propagate(self, w: Tensor, x: Tensor, into_post: bool) -> tuple[int, int, Tensor]:
        """``sum_e w_e x[source_e]`` into every target node, channel by channel: ``(0, N, [B, N, C])``."""
        if torch.compiler.is_compiling():  # gather, multiply, segment-sum (traceable; inductor fuses it)
            src, tgt = (self.pre, self.post) if into_post else (self.post, self.pre)
            return 0, self.num_nodes, side_sum(tgt, w * x.index_select(1, src.ids))
        if w.shape[0] > 1 and w.stride(0) == 0:  # weights broadcast over the batch: pass one copy,
            w = w[:1]  # so backward sums over episodes per edge instead of per episode
        return 0, self.num_nodes, CSRPropagate.apply(w, x, self.csr(into_post), self.csr(not into_post))
