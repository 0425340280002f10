"""CSR kernels: the sparse-matrix products and gathers behind the merged sparse layout.

A :class:`CSR` is one direction of a sparse block as a matrix whose rows are *targets* and whose
columns are *sources*, values in a per-edge weight tensor. Rows are either the graph's nodes, or,
when the block's edges do not run through their targets in node order (many projections, each
sorted by post, one after the other), the block's *segments*: maximal runs of consecutive edges
with the same target. Segment rows keep the weights in edge order (no gather of E weights per
product); a second, small product (``S`` segments, not ``E`` edges) adds them into their nodes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

# sparse projections run as CSR products; torch flags the whole CSR API as beta on first use
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def index_type(*sizes: int) -> torch.dtype:
    """The narrowest index type for ids up to ``max(sizes)`` (int32 gathers and CSR products are faster)."""
    return torch.int32 if max(sizes, default=0) < 2**31 - 1 else torch.int64


def row_pointers(counts: Tensor, itype: torch.dtype) -> Tensor:
    """CSR ``crow`` from the number of entries in each row."""
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(itype)


def selection_matrix(rows: Tensor, num_rows: int, num_cols: int, dtype: torch.dtype) -> Tensor:
    """``[num_rows, num_cols]`` CSR with a 1 at ``(rows[j], j)`` for every column ``j``: ``M @ v``
    adds every entry of ``v`` into its row (the backward of a gather along ``rows``)."""
    order = torch.argsort(rows, stable=True)
    itype = index_type(num_rows, num_cols)
    counts = torch.bincount(rows, minlength=num_rows)
    ones = torch.ones(num_cols, dtype=dtype, device=rows.device)
    return torch.sparse_csr_tensor(row_pointers(counts, itype), order.to(itype), ones, (num_rows, num_cols),
                                   check_invariants=False)


@dataclass(frozen=True, eq=False)
class Side:
    """The node ids of one side (pre or post) of a block's edges, in edge order, and the cheapest
    ways to read node values along them and to sum per-edge values into them.

    ``seg_ids`` / ``seg_len`` describe runs of equal ids (segments); ``uniform`` is ``k`` when every
    segment has exactly ``k`` edges, so per-edge values are a repeat of per-segment ones; ``span``
    is ``(a, b)`` when the segments are the nodes ``a..b-1`` in order (per-segment values are then a
    slice, not a gather). Lookups that not every primitive needs are built on first use.
    """

    ids: Tensor  # [E_b] int32 (int64 past 2**31 ids)
    ids_long: Tensor  # [E_b] int64 (index_add_ and scatter want int64)
    seg_ids: Tensor  # [S] int64
    seg_len: Tensor  # [S] int64
    uniform: int | None
    span: tuple[int, int] | None
    sorted: bool  # segments run through their nodes in increasing order (each node at most once)
    num_nodes: int
    _lazy: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def of(ids: Tensor, num_nodes: int) -> "Side":
        ids = ids.long()
        E = int(ids.shape[0])
        starts = torch.cat([ids.new_zeros(1), torch.nonzero(ids[1:] != ids[:-1]).view(-1) + 1]) if E else ids[:0]
        seg_ids = ids[starts]
        seg_len = torch.diff(torch.cat([starts, starts.new_full((1,), E)])) if E else ids[:0]
        S = int(seg_ids.shape[0])
        k = int(seg_len[0]) if S else 0
        uniform = k if S and bool((seg_len == k).all()) else None
        lo = int(seg_ids[0]) if S else 0
        span = (lo, lo + S) if S and int(seg_ids[-1]) == lo + S - 1 and bool((seg_ids[1:] > seg_ids[:-1]).all()) else None
        ordered = S < 2 or bool((seg_ids[1:] > seg_ids[:-1]).all())
        return Side(ids.to(index_type(E, num_nodes)), ids, seg_ids, seg_len, uniform, span, ordered, num_nodes)

    @property
    def num_segments(self) -> int:
        return int(self.seg_ids.shape[0])

    @property
    def segmented(self) -> bool:
        """Sums go through segments when the edges run in long runs of one node (at least 2 edges a
        run on average: many sorted projections one after the other); else through a permutation."""
        return self.num_segments <= self.ids.shape[0] // 2

    @property
    def repeats(self) -> bool:
        """Per-edge values are a repeat of per-segment ones, cheaper than a gather per edge: uniform
        runs of ``k >= 2`` edges, or of one edge each over a span of nodes (a slice). Runs of one edge
        each elsewhere are just scattered ids (as segment rows they would cost a CSR row per edge)."""
        return self.uniform is not None and (self.uniform > 1 or self.span is not None)

    def lazy(self, key, make):
        if key not in self._lazy:
            self._lazy[key] = make()
        return self._lazy[key]

    def prepare(self) -> None:
        """Build every lookup a traced (``torch.compile``) primitive may need."""
        if self.sorted:
            self.node_lengths()
        elif not self.segmented:
            self.perm()
            self.node_counts()

    def perm(self) -> Tensor:
        """Edge order -> node order (stable)."""
        return self.lazy("perm", lambda: torch.argsort(self.ids_long, stable=True))

    def node_counts(self) -> Tensor:
        """``[1, N]`` edges per node."""
        return self.lazy("counts", lambda: torch.bincount(self.ids_long, minlength=self.num_nodes).unsqueeze(0))

    def node_lengths(self) -> Tensor:
        """``[1, N]`` edges per node when sorted: the segment lengths, zeros for nodes without edges."""
        return self.lazy("lengths", lambda: self.seg_len.new_zeros(self.num_nodes).index_copy(0, self.seg_ids, self.seg_len).unsqueeze(0))

    def add_segments(self, y: Tensor) -> Tensor:
        """One channel's per-segment values ``[B, S]`` added into their nodes ``[B, N]``: a slice
        when ``span``, else ``index_add_`` along dim 1 of a 2-D tensor (its fast CPU path: ~5x the
        speed of a ``[N, S]`` 0/1 CSR product at B = 1, and as fast at B = 16; 3-D or dim 0 are slower)."""
        if self.span is not None:
            a, b = self.span
            return y if (a, b) == (0, self.num_nodes) else torch.nn.functional.pad(y, (a, self.num_nodes - b))
        return y.new_zeros(y.shape[0], self.num_nodes).index_add_(1, self.seg_ids, y.contiguous())

    def edge_matrix(self, dtype: torch.dtype) -> Tensor:
        """``[N, E_b]`` 0/1 CSR adding per-edge values into their nodes."""
        return self.lazy(("edges", dtype), lambda: selection_matrix(self.ids_long, self.num_nodes, int(self.ids.shape[0]), dtype))

    def per_segment(self, x: Tensor, dim: int = 1) -> Tensor:
        """``x``'s values at the segments' nodes along ``dim``: a slice when ``span``, else a gather."""
        if self.span is not None:
            return x.narrow(dim, self.span[0], self.span[1] - self.span[0])
        return x.index_select(dim, self.seg_ids)

    def repeat(self, x: Tensor) -> Tensor:
        """Per-edge values ``[B, E_b, C]`` of ``x [B, N, C]`` when uniform: per segment, repeated ``k`` times."""
        v = self.per_segment(x)
        B, S, C = v.shape
        return v.unsqueeze(2).expand(B, S, self.uniform, C).reshape(B, S * self.uniform, C)

    def pad(self, seg: Tensor) -> Tensor:
        """Per-segment values ``[B, S, D]`` -> ``[B, N, D]`` when ``span`` (zeros at the other nodes)."""
        a, b = self.span
        return seg if (a, b) == (0, self.num_nodes) else torch.nn.functional.pad(seg, (0, 0, a, self.num_nodes - b))

    def to_nodes(self, seg: Tensor) -> Tensor:
        """Per-segment values ``[B, S, D]`` -> node sums ``[B, N, D]`` (no autograd), channel by channel."""
        if self.span is not None:
            return self.pad(seg)
        return torch.stack([self.add_segments(seg[..., d]) for d in range(seg.shape[-1])], -1)


@dataclass(frozen=True, eq=False)
class CSR:
    """One direction of a sparse block as a CSR matrix, rows = targets, columns = sources (global
    node ids). ``perm`` maps CSR order to edge order (None when they agree). Rows are the graph's
    nodes, or the target side's segments when ``segment_rows`` (their sums then go into the nodes
    by a second, ``S``-sized product)."""

    crow: Tensor
    col: Tensor
    perm: Tensor | None
    num_rows: int
    segment_rows: bool
    tgt: Side
    src: Side
    _lazy: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def build(tgt: Side, src: Side) -> "CSR":
        N, E = tgt.num_nodes, int(tgt.ids.shape[0])
        itype = index_type(E, N)
        if tgt.sorted:  # edges already run through their targets: node rows, weights in edge order
            return CSR(row_pointers(tgt.node_lengths()[0], itype), src.ids.to(itype), None, N, False, tgt, src)
        if tgt.segmented:  # long runs (projections one after the other): segment rows, weights in edge order
            return CSR(row_pointers(tgt.seg_len, itype), src.ids.to(itype), None, tgt.num_segments, True, tgt, src)
        perm = tgt.perm()  # scattered targets (into pre): rows in node order, weights permuted
        return CSR(row_pointers(tgt.node_counts()[0], itype), src.ids_long[perm].to(itype), perm, N, False, tgt, src)

    def batched(self, B: int) -> tuple[Tensor, Tensor] | None:
        """``(crow, col)`` of ``B`` copies of the matrix along the diagonal, for one CSR product over a
        batch of per-episode weights instead of ``B`` (their call overhead dominated small nets:
        1.3x the time of the whole Hebbian tick at 300 neurons, B = 16). None past 2**24 entries
        (the copies' indices would cost more memory than the calls cost time)."""
        E = int(self.col.shape[0])
        if B * E > 2**24 or B * max(E, self.num_rows, self.tgt.num_nodes) >= 2**31 - 1:
            return None
        key = ("batched", B)
        if key not in self._lazy:
            b = torch.arange(B, device=self.col.device, dtype=self.crow.dtype)
            crow = torch.cat([(self.crow[:-1].unsqueeze(0) + E * b.unsqueeze(1)).reshape(-1), self.crow.new_full((1,), B * E)])
            col = (self.col.unsqueeze(0) + self.tgt.num_nodes * b.unsqueeze(1)).reshape(-1)
            self._lazy[key] = (crow, col)
        return self._lazy[key]

    def rows_to_nodes(self, y: Tensor) -> Tensor:
        """One channel's row sums ``[B, num_rows]`` -> node sums ``[B, N]`` (no autograd: used inside Functions)."""
        return self.tgt.add_segments(y) if self.segment_rows else y

    def targets(self, g: Tensor) -> Tensor:
        """Per-edge target values ``g[:, tgt]`` (edge order): a repeat, not a gather, when uniform."""
        return self.tgt.repeat(g) if self.tgt.repeats else g.index_select(1, self.tgt.ids)

    def sources(self, x: Tensor) -> Tensor:
        """Per-edge source values ``x[:, src]`` (edge order): a repeat, not a gather, when uniform."""
        return self.src.repeat(x) if self.src.repeats else x.index_select(1, self.src.ids)

    def batch_dot(self, g: Tensor, x: Tensor) -> Tensor:
        """``sum_b g[b, tgt_e, c] * x[b, src_e, c]`` -> ``[1, E, C]``. Node tensors are turned
        node-major (``[n, B, C]``) first, so each edge gathers one contiguous row of B values."""
        B, C = g.shape[0], g.shape[-1]
        xs = x.transpose(0, 1).contiguous().index_select(0, self.src.ids)  # [E, B, C]
        gt = g.transpose(0, 1)  # [N, B, C]
        if self.tgt.repeats:
            k = self.tgt.uniform
            gs = self.tgt.per_segment(gt, 0)
            out = (xs.view(-1, k, B, C) * gs.unsqueeze(1)).sum(2)
        else:
            out = (xs * gt.contiguous().index_select(0, self.tgt.ids)).sum(1)
        return out.reshape(1, -1, C)


def csr_apply(w: Tensor, x: Tensor, m: CSR) -> Tensor:
    """``y[b, t, c] = sum_e w[b, e, c] x[b, src_e, c]`` over edges into node ``t``: one CSR product
    per (episode, channel), or one sparse x dense product per channel when ``w`` is shared."""
    shared = w.shape[0] == 1 or w.stride(0) == 0
    B, C = max(w.shape[0], x.shape[0]), x.shape[-1]
    N = m.tgt.num_nodes
    if m.perm is not None and not (shared and B > 1):
        # rows are not in edge order (the product into pre): putting w in row order is a random
        # gather of E weights, which costs 2-3x more than scattering the E products straight into
        # their targets (python runs/cpu_primitives.py). Shared weights over a batch stay on the
        # CSR product: one permutation then serves all episodes' columns.
        # (index_add_ is fast only along dim 1 of a 2-D tensor with an int64 index: ~50x slower otherwise)
        prod = w * m.sources(x)
        return torch.stack([x.new_zeros(B, N).index_add_(1, m.tgt.ids_long, prod[..., c].contiguous()) for c in range(C)], -1)
    if m.perm is not None:
        w = w.index_select(1, m.perm)
    out = []
    for c in range(C):
        def mat(b):
            return torch.sparse_csr_tensor(m.crow, m.col, w[b, :, c], (m.num_rows, N), check_invariants=False)
        if shared and x.shape[0] == 1:
            y = (mat(0) @ x[0, :, c]).unsqueeze(0)  # a vector operand: the fastest CSR kernel
        elif shared:
            y = (mat(0) @ x[:, :, c].T).T  # [B, rows]
        elif (diag := m.batched(B)) is not None:  # every episode in one product: a block-diagonal matrix
            xs = x[:, :, c].expand(B, -1).reshape(-1)
            y = (torch.sparse_csr_tensor(*diag, w[:, :, c].reshape(-1), (B * m.num_rows, B * N), check_invariants=False)
                 @ xs).view(B, -1)
        else:
            y = torch.stack([mat(b) @ x[min(b, x.shape[0] - 1), :, c] for b in range(B)])
        out.append(m.rows_to_nodes(y))
    return torch.stack(out, -1)
