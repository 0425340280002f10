"""The compiled network: an immutable typed graph and the primitives rules move data with.

Conventions follow PyTorch Geometric: ``edge_index[0]`` is the presynaptic (source, ``_j``) node,
``edge_index[1]`` the postsynaptic (target, ``_i``) node.

Edges are stored projection by projection, each projection a contiguous range of edge ids.
A projection has one of two *layouts*:

- ``dense``: every (post, pre) pair of its two populations, ordered post-major, so that an edge
  tensor slice ``[B, E_p, D]`` is viewable as ``[B, n_post, n_pre, D]``. Moving data along these
  synapses needs no index tensors: broadcasting views and a reduction over one axis (or a matmul).
- ``sparse``: COO pairs sorted by (post, pre). ``propagate`` runs as an int32 CSR matrix product
  (a custom autograd Function); other primitives gather with ``index_select`` and reduce by
  segments. When every post neuron has the same in-degree k, edges are viewed as ``[n_post, k]``
  and post values broadcast instead of being gathered.

An all-to-all projection has the same edge order in both layouts, which is what lets the tests
compare them value for value. Rules never touch ``edge_index``; they use :meth:`Graph.pre`,
:meth:`Graph.post`, :meth:`Graph.to_post`, :meth:`Graph.to_pre`, and the fused forms
:meth:`Graph.edge_map` and :meth:`Graph.propagate` / :meth:`Graph.propagate_back`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .errors import ShapeError, unknown

REDUCTIONS = ("sum", "mean", "max")
# sparse projections run as CSR products; torch flags the whole CSR API as beta on first use
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass(frozen=True)
class Population:
    """A contiguous range of neurons sharing one neuron type."""

    name: str
    start: int
    size: int
    neuron_type: str
    type_id: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class Projection:
    """A contiguous range of synapses from one population to another, with one synapse type."""

    name: str
    pre: Population
    post: Population
    synapse_type: str
    type_id: int
    layout: str  # "dense" or "sparse"
    start: int  # first edge id
    num_edges: int
    rule: str = "explicit"

    @property
    def stop(self) -> int:
        return self.start + self.num_edges

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True, eq=False)
class Graph:
    """An immutable, compiled network. Build one with :class:`simgraph.Network`.

    Every size is a Python int fixed at build time; tensors live on ``graph.device``.
    """

    populations: dict[str, Population]
    projections: dict[str, Projection]
    neuron_types: tuple[str, ...]
    synapse_types: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node_type: Tensor  # [N] long
    edge_type: Tensor  # [E] long
    edge_index: Tensor  # [2, E] long, global node ids
    seed: int | None = None
    node_labels: tuple | None = None  # original node names, e.g. after from_networkx
    # inputs/outputs chosen neuron by neuron (Graph.with_io): global node ids in input/output order.
    # None: the whole populations named in ``inputs`` / ``outputs``, in that order.
    input_ids: Tensor | None = None
    output_ids: Tensor | None = None
    # measured strength of each synapse ([E] float, simgraph edge order), e.g. from_networkx(weight_attr=)
    edge_weight: Tensor | None = None
    # Dale's law: [E] float, +1 / -1 the sign every rule with scalar weights keeps for the synapse (its
    # presynaptic neuron's), 0 unconstrained; None: no signs. E.g. from_networkx(sign_attr=)
    edge_sign: Tensor | None = None
    # tied pairs (gap junctions): [E] long, the id of the edge sharing this one's state (itself if untied);
    # None: no ties. E.g. from_networkx(undirected="tied" or tied_types=)
    edge_partner: Tensor | None = None
    # per sparse projection: (pre ids, post ids), global node ids, sorted by (post, pre)
    _sparse_index: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)
    _in_degree: Tensor | None = field(default=None, repr=False)  # [N] float
    _out_degree: Tensor | None = field(default=None, repr=False)  # [N] float
    # per sparse projection, built on first use: segment lengths for CSR-style reductions (see _segments)
    # lazily built lookups keyed by (kind, ...): segment lengths, restricted views, node masks
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ sizes and names
    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.shape[0])

    @property
    def num_neuron_types(self) -> int:
        return len(self.neuron_types)

    @property
    def num_synapse_types(self) -> int:
        return len(self.synapse_types)

    @property
    def device(self) -> torch.device:
        return self.node_type.device

    @property
    def num_inputs(self) -> int:
        if self.input_ids is not None:
            return int(self.input_ids.shape[0])
        return sum(self.populations[p].size for p in self.inputs)

    @property
    def num_outputs(self) -> int:
        if self.output_ids is not None:
            return int(self.output_ids.shape[0])
        return sum(self.populations[p].size for p in self.outputs)

    @property
    def input_nodes(self) -> Tensor:
        """Global ids of the input neurons, in input order ``[n_in]``."""
        return self.input_ids if self.input_ids is not None else self._cached(("nodes", "in"), lambda: self.nodes(*self.inputs))

    @property
    def output_nodes(self) -> Tensor:
        """Global ids of the output neurons, in output order ``[n_out]``."""
        return self.output_ids if self.output_ids is not None else self._cached(("nodes", "out"), lambda: self.nodes(*self.outputs))

    def input_mask(self) -> Tensor:
        """``[1, N, 1]`` bool: which neurons receive external input."""
        return self._cached(("iomask", "in"), lambda: self._mask(self.input_nodes))

    def output_mask(self) -> Tensor:
        """``[1, N, 1]`` bool: which neurons are read out."""
        return self._cached(("iomask", "out"), lambda: self._mask(self.output_nodes))

    def _mask(self, ids: Tensor) -> Tensor:
        m = torch.zeros(self.num_nodes, dtype=torch.bool, device=self.device)
        m[ids] = True
        return m.view(1, -1, 1)

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def unreachable_outputs(self) -> list[str]:
        """Output populations with a neuron that no input neuron reaches along any directed path of
        synapses: what such a neuron reports cannot depend on the inputs."""
        def find() -> list[str]:
            reached = self.input_mask().view(-1).clone()
            src, dst = self.edge_index
            while True:  # one hop per pass: at most the graph's diameter passes, each O(E)
                grown = reached.clone()
                grown[dst[reached[src]]] = True
                if bool((grown == reached).all()):
                    break
                reached = grown
            missed = self.output_nodes[~reached[self.output_nodes]]
            return [p.name for p in self.populations.values() if bool(((missed >= p.start) & (missed < p.stop)).any())]
        return self._cached(("unreachable_outputs",), find)

    def with_io(self, inputs: Sequence | None = None, outputs: Sequence | None = None) -> "Graph":
        """A copy whose input and/or output neurons are chosen one by one (None keeps the current set).

        Each item is a population name (all its neurons), ``"pop[a:b]"`` (neurons ``a..b-1`` of a
        population), a node label (``graph.node_labels``, e.g. after ``from_networkx``) or an int
        node id (when the graph has no labels). Inputs are fed, and outputs read, in the order given.
        """
        changes = {}
        for what, items in (("inputs", inputs), ("outputs", outputs)):
            if items is None:
                continue
            ids = self._select(items, what)
            pops = tuple(p.name for p in self.populations.values() if bool(((ids >= p.start) & (ids < p.stop)).any()))
            changes[what], changes["input_ids" if what == "inputs" else "output_ids"] = pops, ids
        return dataclasses.replace(self, **changes, _cache={})

    def _select(self, items, what: str) -> Tensor:
        if isinstance(items, (str, int)) or not isinstance(items, (list, tuple)):
            items = [items]
        labels = {label: i for i, label in enumerate(self.node_labels)} if self.node_labels is not None else None
        ids: list[int] = []
        for item in items:
            if isinstance(item, str) and item in self.populations:
                ids.extend(range(self.populations[item].start, self.populations[item].stop))
            elif labels is not None and is_hashable(item) and item in labels:
                ids.append(labels[item])
            elif isinstance(item, str) and item.endswith("]") and "[" in item and item.split("[")[0] in self.populations:
                pop = self.populations[item.split("[")[0]]
                a, sep, b = item[item.index("[") + 1 : -1].partition(":")
                try:
                    lo, hi = (int(a) if a else 0), (int(b) if b else pop.size) if sep else int(a) + 1
                except ValueError:
                    raise ShapeError(f"graph {what}: {item!r} is not pop[a:b] with int bounds") from None
                if not 0 <= lo < hi <= pop.size:
                    raise ShapeError(f"graph {what}: {item!r} selects no neurons or leaves population "
                                     f"{pop.name!r} (size {pop.size})")
                ids.extend(range(pop.start + lo, pop.start + hi))
            elif labels is None and isinstance(item, int) and not isinstance(item, bool):
                if not 0 <= item < self.num_nodes:
                    raise ShapeError(f"graph {what}: node id {item} is out of range for {self.num_nodes} neurons")
                ids.append(item)
            else:
                known = list(self.populations) + ([] if labels is None else [str(k) for k in list(labels)[:2000]])
                raise unknown(f"population or node label in graph {what}", item, known)
        if not ids:
            raise ShapeError(f"graph {what} select no neurons: {list(items)!r}")
        if len(set(ids)) != len(ids):
            raise ShapeError(f"graph {what} name a neuron twice: {list(items)!r}")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def population(self, name: str) -> Population:
        if name not in self.populations:
            raise unknown("population", name, self.populations)
        return self.populations[name]

    def projection(self, name: str) -> Projection:
        if name not in self.projections:
            raise unknown("projection", name, self.projections)
        return self.projections[name]

    def neuron_type_id(self, name: str) -> int:
        if name not in self.neuron_types:
            raise unknown("neuron type", name, self.neuron_types)
        return self.neuron_types.index(name)

    def synapse_type_id(self, name: str) -> int:
        if name not in self.synapse_types:
            raise unknown("synapse type", name, self.synapse_types)
        return self.synapse_types.index(name)

    def nodes(self, *populations: str) -> Tensor:
        """Global node ids of the named populations, in the order given."""
        ids = [torch.arange(self.population(p).start, self.population(p).stop) for p in populations]
        return torch.cat(ids).to(self.device) if ids else torch.zeros(0, dtype=torch.long, device=self.device)

    def in_degree(self) -> Tensor:
        """Number of incoming synapses per node, ``[N]`` float."""
        return self._in_degree

    def out_degree(self) -> Tensor:
        return self._out_degree

    def __repr__(self) -> str:
        return self.summary()

    def summary(self, max_rows: int = 20) -> str:
        """A short table: one row per population (name, size, neuron type, input/output marks), one per
        projection (pre->post, synapse type, layout, synapses), and the totals. Past ``max_rows`` rows
        of either kind, the rest are counted in one line. ``print(graph)`` and ``repr(graph)`` show it."""
        ins = set(self.inputs)
        outs = set(self.outputs)
        pops = [(p.name, str(p.size), p.neuron_type, _io_mark(p, ins, outs, self)) for p in self.populations.values()]
        prjs = [(f"{p.pre.name}->{p.post.name}", p.synapse_type, p.layout, str(p.num_edges),
                 p.name if p.name != f"{p.pre.name}->{p.post.name}" else "") for p in self.projections.values()]
        extra = []
        if self.node_labels is not None:
            extra.append("labelled")
        if self.edge_weight is not None:
            extra.append("weighted")
        head = (f"Graph: {self.num_nodes} neurons in {len(pops)} population{'s' * (len(pops) != 1)} "
                f"({self.num_neuron_types} neuron type{'s' * (self.num_neuron_types != 1)}), "
                f"{self.num_edges} synapses in {len(prjs)} projection{'s' * (len(prjs) != 1)} "
                f"({self.num_synapse_types} synapse type{'s' * (self.num_synapse_types != 1)}); "
                f"{self.num_inputs} in, {self.num_outputs} out; {', '.join(extra + [str(self.device)])}")
        budget = max(int(max_rows), 2)  # rows of both tables together
        n_pop = min(len(pops), max(budget // 2, budget - len(prjs)))
        lines = [head]
        lines += _table(("population", "size", "type", "io"), pops, n_pop, "populations")
        if prjs:
            lines += _table(("projection", "synapse", "layout", "synapses", "name"), prjs, budget - n_pop, "projections")
        return "\n".join(lines)

    # ------------------------------------------------------------------ devices
    def to(self, device: torch.device | str) -> "Graph":
        """A copy of the graph with every tensor on ``device``."""
        device = torch.device(device)
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return dataclasses.replace(
            self,
            node_type=move(self.node_type),
            edge_type=move(self.edge_type),
            edge_index=move(self.edge_index),
            _sparse_index={k: (move(a), move(b)) for k, (a, b) in self._sparse_index.items()},
            _in_degree=move(self._in_degree),
            _out_degree=move(self._out_degree),
            input_ids=move(self.input_ids),
            output_ids=move(self.output_ids),
            edge_weight=move(self.edge_weight),
            edge_sign=move(self.edge_sign),
            edge_partner=move(self.edge_partner),
            _cache={},  # rebuilt lazily on the new device
        )

    # ------------------------------------------------------------------ validation
    def check_nodes(self, x: Tensor, name: str = "node tensor", dim: int | None = None) -> None:
        """Raise ShapeError unless ``x`` is a floating ``[B, N, D]`` tensor on this graph's device."""
        _check_tensor(x, name, self.device)
        if x.dim() != 3 or x.shape[1] != self.num_nodes or (dim is not None and x.shape[2] != dim):
            want = f"[B, {self.num_nodes}, {dim if dim is not None else 'D'}]"
            raise ShapeError(f"{name} must have shape {want} (B episodes, N nodes), got {list(x.shape)}")

    def check_edges(self, e: Tensor, name: str = "edge tensor", dim: int | None = None) -> None:
        """Raise ShapeError unless ``e`` is a floating ``[B, E, D]`` (or ``[E, D]``) tensor here."""
        _check_tensor(e, name, self.device)
        ok = e.dim() in (2, 3) and e.shape[-2] == self.num_edges and (dim is None or e.shape[-1] == dim)
        if not ok:
            want = f"[B, {self.num_edges}, {dim if dim is not None else 'D'}]"
            raise ShapeError(f"{name} must have shape {want} (or [E, D]), got {list(e.shape)}")

    # ------------------------------------------------------------------ primitives
    def pre(self, x: Tensor) -> Tensor:
        """Presynaptic node values per edge: ``[B, N, D] -> [B, E, D]`` (materialised)."""
        return self._per_edge(x, use_pre=True)

    def post(self, x: Tensor) -> Tensor:
        """Postsynaptic node values per edge: ``[B, N, D] -> [B, E, D]`` (materialised)."""
        return self._per_edge(x, use_pre=False)

    def _per_edge(self, x: Tensor, use_pre: bool) -> Tensor:
        parts = []
        for p in self.projections.values():
            if p.layout == "dense":
                v = self._dense_view(x, p, "pre" if use_pre else "post")
                parts.append(v.expand(x.shape[0], p.post.size, p.pre.size, x.shape[-1]).reshape(x.shape[0], -1, x.shape[-1]))
            elif not use_pre and (k := self._uniform_indegree(p)) is not None:  # repeat, no gather
                v = self._dense_view(x, p, "post")
                parts.append(v.expand(-1, -1, k, -1).reshape(x.shape[0], -1, x.shape[-1]))
            else:
                parts.append(self._gather(x, p, "pre" if use_pre else "post"))
        return _cat_edges(parts, x)

    def to_post(self, m: Tensor, reduce: str = "sum") -> Tensor:
        """Sum (or mean/max) per-edge messages into their postsynaptic nodes: ``[B,E,D] -> [B,N,D]``."""
        return self._aggregate(m, reduce, into_post=True)

    def to_pre(self, m: Tensor, reduce: str = "sum") -> Tensor:
        """Sum (or mean/max) per-edge messages into their presynaptic nodes: ``[B,E,D] -> [B,N,D]``."""
        return self._aggregate(m, reduce, into_post=False)

    def _aggregate(self, m: Tensor, reduce: str, into_post: bool) -> Tensor:
        if reduce not in REDUCTIONS:
            raise unknown("reduction", reduce, REDUCTIONS)
        if m.dim() == 2:
            m = m.unsqueeze(0)
        B, D = m.shape[0], m.shape[-1]
        axis = 2 if into_post else 1  # dense view is [B, post, pre, D]: reduce over the other side
        contributions = []
        for p in self.projections.values():
            target = p.post if into_post else p.pre
            mp = m[:, p.slice]
            if p.layout == "dense":
                v = mp.reshape(B, p.post.size, p.pre.size, D)
                c = v.amax(axis) if reduce == "max" else v.sum(axis)
                contributions.append((target, c, None))
            elif reduce == "max":
                idx = self._sparse_index[p.name][1 if into_post else 0]
                contributions.append((target, mp, idx))
            else:
                contributions.append((target, self._segment_sum(mp, p, into_post), None))
        out = _combine(contributions, m, self.num_nodes, reduce)
        if reduce == "mean":
            deg = self._in_degree if into_post else self._out_degree
            out = out / deg.clamp(min=1).to(out.dtype).view(1, -1, 1)
        return out

    def propagate(self, w: Tensor, x: Tensor) -> Tensor:
        """Weighted sum into postsynaptic nodes, channel by channel: ``to_post(w * pre(x))``.

        ``w`` is ``[B, E, C]`` or ``[E, C]`` (shared by the batch), ``x`` is ``[B, N, C]``.
        Dense projections run as a batched matmul; nothing of size E is materialised.
        """
        return self._propagate(w, x, into_post=True)

    def propagate_back(self, w: Tensor, y: Tensor) -> Tensor:
        """Weighted sum into presynaptic nodes: ``to_pre(w * post(y))`` (the transpose of propagate)."""
        return self._propagate(w, y, into_post=False)

    def _propagate(self, w: Tensor, x: Tensor, into_post: bool) -> Tensor:
        if w.dim() == 2:
            w = w.unsqueeze(0)
        B, C = max(w.shape[0], x.shape[0]), x.shape[-1]
        if C == 1 and self._one_dense_projection():
            # the whole net is one all-to-all projection: no slicing or bookkeeping around the
            # matvec (it is tens of microseconds a tick, next to a ~0.1 ms product at N = 1000)
            N = self.num_nodes
            return _dense_matvec(w.reshape(w.shape[0], N, N), x, into_post)
        contributions = []
        for p in self.projections.values():
            source, target = (p.pre, p.post) if into_post else (p.post, p.pre)
            wp = w[:, p.slice]
            if p.layout == "dense":
                wv = wp.reshape(wp.shape[0], p.post.size, p.pre.size, wp.shape[-1])
                xs = x[:, source.slice]
                if C == 1:  # plain matrix-vector products
                    c = _dense_matvec(wv[..., 0], xs, into_post)
                elif into_post:
                    c = torch.einsum("bpqc,bqc->bpc", wv, xs)
                else:
                    c = torch.einsum("bpqc,bpc->bqc", wv, xs)
                contributions.append((target, c, None))
            elif not torch.compiler.is_compiling():  # CSR sparse-matrix products (int32 indices)
                fwd, bwd = self._csr(p, into_post), self._csr(p, not into_post)
                if wp.shape[0] > 1 and wp.stride(0) == 0:  # weights broadcast over the batch: pass one copy,
                    wp = wp[:1]  # so backward sums over episodes per edge instead of per episode
                contributions.append((target, _CSRPropagate.apply(wp, x[:, source.slice], fwd, bwd), None))
            else:  # under torch.compile: gather, multiply, segment-sum (traceable; inductor fuses it)
                src_idx = self._sparse_index[p.name][0 if into_post else 1]
                contributions.append((target, self._segment_sum(wp * x.index_select(1, src_idx), p, into_post), None))
        return _combine(contributions, x, self.num_nodes, "sum", batch=B)

    def prepare(self) -> "Graph":
        """Build every lazily built lookup (CSR tables, segments, int32 ids) now, here and in the
        restricted views already made from this graph. ``torch.compile`` needs this: a lookup built
        inside a traced step is a data-dependent op (bincount) and breaks the graph. (The 0/1 scatter
        matrices of ``_gather`` are left out: traced steps gather with plain ``index_select``.)"""
        self._one_dense_projection()
        for p in self.projections.values():
            if p.layout == "sparse":
                self._uniform_indegree(p)
                for into_post in (True, False):
                    self._segments(p, into_post)
                    self._csr(p, into_post)
                for side in ("pre", "post"):
                    self._index32(p, side)
        for key, view in list(self._cache.items()):
            if key[0] == "view":
                view.prepare()
        return self

    def _uniform_indegree(self, p: Projection) -> int | None:
        """``k`` when every post neuron of sparse ``p`` has exactly ``k >= 1`` synapses (e.g. fixed_indegree)."""
        key = ("uniform", p.name)
        if key not in self._cache:
            lengths = self._segments(p, True)[0]
            k = int(lengths[0, 0]) if lengths.numel() else 0
            self._cache[key] = k if k > 0 and bool((lengths == k).all()) else None
        return self._cache[key]

    def _index32(self, p: Projection, side: str) -> Tensor:
        """Sparse ``p``'s pre or post ids in the narrowest index type (int32 gathers are faster)."""
        key = ("index32", p.name, side)
        if key not in self._cache:
            idx = self._sparse_index[p.name][0 if side == "pre" else 1]
            self._cache[key] = idx.int() if self.num_nodes < 2**31 - 1 else idx
        return self._cache[key]

    def _gather(self, x: Tensor, p: Projection, side: str) -> Tensor:
        """``x[:, ids]``: sparse ``p``'s pre or post node values per edge, ``[B, N, D] -> [B, E_p, D]``.

        On CPU at batch 1, ``index_select``'s backward (``index_add`` along dim 1 of a 3-D tensor)
        is 3x (16 channels) to 37x (1 channel) slower than a CSR product with the 0/1 node-by-edge
        matrix (``python runs/cpu_primitives.py``); the genome rule's sparse forward+backward took
        1.8x less time with it (``simgraph bench``). At batch 16 the per-episode products measured slower, so only batch 1 uses them.
        """
        idx = self._index32(p, side)
        if (x.shape[0] == 1 and x.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu"
                and not torch.compiler.is_compiling()):
            return _GatherNodes.apply(x, idx, self._scatter_matrix(p, side, x.dtype))
        return x.index_select(1, idx)

    def _scatter_matrix(self, p: Projection, side: str, dtype: torch.dtype) -> Tensor:
        """``[N, E_p]`` CSR with a 1 at (node, edge) for sparse ``p``'s pre or post node of every edge."""
        key = ("scatter", p.name, side, dtype)
        if key not in self._cache:
            lengths, perm = self._segments(p, into_post=side == "post")  # edges in node order
            order = perm if perm is not None else torch.arange(p.num_edges, device=lengths.device)
            counts = lengths.new_zeros(self.num_nodes)
            counts[(p.post if side == "post" else p.pre).slice] = lengths[0]
            itype = torch.int32 if max(p.num_edges, self.num_nodes) < 2**31 - 1 else torch.int64
            ones = torch.ones(p.num_edges, dtype=dtype, device=lengths.device)
            self._cache[key] = torch.sparse_csr_tensor(_row_pointers(counts, itype), order.to(itype), ones,
                                                       (self.num_nodes, p.num_edges), check_invariants=False)
        return self._cache[key]

    def _one_dense_projection(self) -> bool:
        """True when the graph is a single dense projection from every node onto every node."""
        key = ("one_dense",)
        if key not in self._cache:
            ps = list(self.projections.values())
            self._cache[key] = (len(ps) == 1 and ps[0].layout == "dense"
                                and ps[0].pre.size == ps[0].post.size == self.num_nodes)
        return self._cache[key]

    def _csr(self, p: Projection, into_post: bool) -> "_CSR":
        """The projection as a CSR matrix ``[n_target, n_source]`` (rows = targets), built once."""
        key = ("csr", p.name, into_post)
        if key not in self._cache:
            pre_idx, post_idx = self._sparse_index[p.name]
            (src, s0), (tgt, t0) = ((pre_idx, p.pre), (post_idx, p.post)) if into_post else ((post_idx, p.post), (pre_idx, p.pre))
            src, tgt = src - s0.start, tgt - t0.start  # local ids, in edge order
            lengths, perm = self._segments(p, into_post)  # rows into pre need the edges permuted, rows into post not
            itype = torch.int32 if max(p.num_edges, s0.size, t0.size) < 2**31 - 1 else torch.int64
            crow = _row_pointers(lengths[0], itype)
            col = (src if perm is None else src[perm]).to(itype)
            # into post with k synapses per post neuron, the target of edge e is e // k: no gather needed
            k = self._uniform_indegree(p)
            self._cache[key] = _CSR(crow, col, perm, tgt.to(itype), src.to(itype), t0.size, s0.size,
                                    k if into_post else None, None if into_post else k, None if perm is None else tgt.long())
        return self._cache[key]

    def _segment_sum(self, m: Tensor, p: Projection, into_post: bool) -> Tensor:
        """Sum a sparse projection's per-edge values ``[B, E_p, D]`` into its target ``[B, n_target, D]``.

        Edges are sorted by post, so into-post sums are CSR segment reductions (``segment_reduce``,
        one pass, no atomics, ~50x faster than ``index_add`` along dim 1 on CPU). Into-pre sums first
        gather the edges into pre order with a cached permutation.
        """
        if into_post and (k := self._uniform_indegree(p)) is not None:
            return m.reshape(m.shape[0], p.post.size, k, m.shape[-1]).sum(2)
        lengths, perm = self._segments(p, into_post)
        if perm is not None:
            m = m.index_select(1, perm)
        B = m.shape[0]
        return torch.segment_reduce(m, "sum", lengths=lengths.expand(B, -1).contiguous(), axis=1)

    def _segments(self, p: Projection, into_post: bool) -> tuple[Tensor, Tensor | None]:
        key = ("segments", p.name, into_post)
        if key not in self._cache:
            pre_idx, post_idx = self._sparse_index[p.name]
            target, ids = (p.post, post_idx) if into_post else (p.pre, pre_idx)
            perm = None if into_post else torch.argsort(ids, stable=True)
            lengths = torch.bincount(ids - target.start, minlength=target.size).unsqueeze(0)
            self._cache[key] = (lengths, perm)
        return self._cache[key]

    def edge_map(
        self,
        fn: Callable[..., Tensor | tuple[Tensor, ...]],
        *,
        pre: Sequence[Tensor] = (),
        post: Sequence[Tensor] = (),
        edge: Sequence[Tensor] = (),
        per_type: Sequence[Tensor] = (),
    ) -> Tensor | tuple[Tensor, ...]:
        """Compute a per-edge function without materialising node values per edge.

        Calls ``fn(*pre_views, *post_views, *edge_views, *type_rows)`` once per projection and
        returns its result(s) as ``[B, E, D]`` tensors. For a dense projection the views are
        broadcastable: pre ``[B, 1, n_pre, D]``, post ``[B, n_post, 1, D]``, edge
        ``[B, n_post, n_pre, D]``; for a sparse one they are gathered ``[B, E_p, D]``. ``per_type``
        tables ``[num_synapse_types, D]`` arrive as the projection's row. ``fn`` must use only
        elementwise/broadcasting ops and operations on the last axis, so both layouts agree:
        ``edge_map(f, pre=[x], post=[y], edge=[e]) == f(pre(x), post(y), e)``.
        """
        outputs: list[list[Tensor]] | None = None
        single = False
        for p in self.projections.values():
            args = []
            if p.layout == "dense":
                args += [self._dense_view(t, p, "pre") for t in pre]
                args += [self._dense_view(t, p, "post") for t in post]
                args += [_edge_slice(t, p).reshape(-1, p.post.size, p.pre.size, t.shape[-1]) for t in edge]
                args += [t[p.type_id].view(1, 1, 1, -1) for t in per_type]
            elif (k := self._uniform_indegree(p)) is not None:
                # every neuron receives k synapses: view edges as [B, n_post, k, D] so post values
                # broadcast like the dense layout instead of being gathered per edge
                ell = lambda t: t.reshape(t.shape[0], p.post.size, k, t.shape[-1])  # noqa: E731
                args += [ell(self._gather(t, p, "pre")) for t in pre]
                args += [self._dense_view(t, p, "post") for t in post]
                args += [ell(_edge_slice(t, p)) for t in edge]
                args += [t[p.type_id].view(1, 1, 1, -1) for t in per_type]
            else:
                args += [self._gather(t, p, "pre") for t in pre]
                args += [self._gather(t, p, "post") for t in post]
                args += [_edge_slice(t, p) for t in edge]
                args += [t[p.type_id].view(1, 1, -1) for t in per_type]
            result = fn(*args)
            if isinstance(result, Tensor):
                single, result = True, (result,)
            if outputs is None:
                outputs = [[] for _ in result]
            for slot, r in zip(outputs, result):
                if r.dim() == 4:  # dense or uniform-indegree views: [B, n_post, n_pre or k, D]
                    r = r.expand(r.shape[0], p.post.size, p.num_edges // p.post.size, r.shape[-1])
                slot.append(r.reshape(r.shape[0], -1, r.shape[-1]))
        if outputs is None:
            raise ShapeError("edge_map called on a graph with no projections")
        merged = tuple(_cat_edges(parts, parts[0]) for parts in outputs)
        return merged[0] if single else merged

    def _dense_view(self, x: Tensor, p: Projection, side: str) -> Tensor:
        if side == "pre":
            return x[:, p.pre.slice].unsqueeze(1)  # [B, 1, n_pre, D]
        return x[:, p.post.slice].unsqueeze(2)  # [B, n_post, 1, D]

    # ------------------------------------------------------------------ inputs and outputs
    def scatter_inputs(self, u: Tensor) -> Tensor:
        """External input per input neuron ``[B, n_in, D]`` -> per node ``[B, N, D]`` (zeros elsewhere)."""
        B, _, D = u.shape
        if self.input_ids is not None:
            return u.new_zeros(B, self.num_nodes, D).index_copy(1, self.input_ids, u)
        if self.num_inputs == self.num_nodes and len(self.inputs) == 1:
            return u  # one input population spanning the whole network: nothing to scatter
        out = u.new_zeros(B, self.num_nodes, D)
        i = 0
        for name in self.inputs:
            pop = self.populations[name]
            out[:, pop.slice] = u[:, i : i + pop.size]
            i += pop.size
        return out

    def read_outputs(self, x: Tensor) -> Tensor:
        """Node tensor ``[B, N, D]`` -> the output populations' rows ``[B, n_out, D]``."""
        if self.output_ids is not None:
            return x.index_select(1, self.output_ids)
        parts = [x[:, self.populations[name].slice] for name in self.outputs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def write_outputs(self, x: Tensor, rows: Tensor) -> Tensor:
        """``x [B, N, D]`` with the output neurons' rows replaced by ``rows [B, n_out, D]`` (out of place)."""
        return x.index_copy(1, self.output_nodes, rows.to(x.dtype))


# ---------------------------------------------------------------------- matrix products
def _dense_matvec(W: Tensor, X: Tensor, into_post: bool) -> Tensor:
    """``W [Bw, n_post, n_pre]``, ``X [B, n_source, 1]`` -> ``[B, n_target, 1]`` (``W x`` or ``W^T x``)."""
    if X.shape[0] == 1 and W.shape[0] == 1:  # one episode: a matrix-vector product
        return torch.matmul(W, X) if into_post else torch.matmul(X.transpose(1, 2), W).transpose(1, 2)
    if W.shape[0] == 1 or W.stride(0) == 0:  # one matrix for the whole batch: a single GEMM
        M = W[0]
        return (X[..., 0] @ (M.T if into_post else M)).unsqueeze(-1)
    X = X.expand(W.shape[0], -1, -1)
    # row-vector form x^T W^T: on CPU, bmm's [B,N,N] @ [B,N,1] path ran 2-3x slower than this one
    return torch.bmm(X.transpose(1, 2), W.transpose(1, 2) if into_post else W).transpose(1, 2)


@dataclass(frozen=True)
class _CSR:
    """One sparse projection as a CSR matrix, rows = targets. ``perm`` maps CSR order to edge
    order (None when they agree); ``tgt``/``src`` are local ids in edge order."""

    crow: Tensor
    col: Tensor
    perm: Tensor | None
    tgt: Tensor
    src: Tensor
    n_tgt: int
    n_src: int
    uniform: int | None = None  # k when every target row holds exactly k edges
    src_uniform: int | None = None  # k when edge order runs through the sources, k edges each
    tgt_long: Tensor | None = None  # tgt as int64, kept when perm is set (for index_add_)

    def targets(self, g: Tensor) -> Tensor:
        """Per-edge target values ``g[:, tgt]`` (edge order): a repeat, not a gather, when uniform."""
        if self.uniform is None:
            return g.index_select(1, self.tgt)
        B, C = g.shape[0], g.shape[-1]
        return g.unsqueeze(2).expand(B, self.n_tgt, self.uniform, C).reshape(B, -1, C)

    def sources(self, x: Tensor) -> Tensor:
        """Per-edge source values ``x[:, src]`` (edge order): a repeat, not a gather, when source-uniform."""
        if self.src_uniform is None:
            return x.index_select(1, self.src)
        B, C = x.shape[0], x.shape[-1]
        return x.unsqueeze(2).expand(B, self.n_src, self.src_uniform, C).reshape(B, -1, C)

    def batch_dot(self, g: Tensor, x: Tensor) -> Tensor:
        """``sum_b g[b, tgt_e, c] * x[b, src_e, c]`` -> ``[1, E, C]``. Node tensors are turned
        node-major (``[n, B, C]``) first, so each edge gathers one contiguous row of B values."""
        B, C = g.shape[0], g.shape[-1]
        xs = x.transpose(0, 1).contiguous().index_select(0, self.src)  # [E, B, C]
        gt = g.transpose(0, 1)  # [n_tgt, B, C]
        if self.uniform is not None:
            k = self.uniform
            out = (xs.view(self.n_tgt, k, B, C) * gt.unsqueeze(1)).sum(2)
        else:
            out = (xs * gt.contiguous().index_select(0, self.tgt)).sum(1)
        return out.reshape(1, -1, C)


def _row_pointers(counts: Tensor, itype: torch.dtype) -> Tensor:
    """CSR ``crow`` from the number of entries in each row."""
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(itype)


def _csr_apply(w: Tensor, x: Tensor, m: _CSR) -> Tensor:
    """``y[b, t, c] = sum_e w[b, e, c] x[b, src_e, c]`` over edges into ``t``: one CSR product per
    (episode, channel), or one sparse x dense product per channel when ``w`` is shared."""
    shared = w.shape[0] == 1 or w.stride(0) == 0
    B, C = max(w.shape[0], x.shape[0]), x.shape[-1]
    if m.perm is not None and not (shared and B > 1):
        # rows are not in edge order (the product into pre): putting w in row order is a random
        # gather of E weights, which costs 2-3x more than scattering the E products straight into
        # their targets (python runs/cpu_primitives.py). Shared weights over a batch stay on the
        # CSR product: one permutation then serves all episodes' columns.
        # (index_add_ is fast only along dim 1 of a 2-D tensor with an int64 index: ~50x slower otherwise)
        prod = w * m.sources(x)
        return torch.stack([x.new_zeros(B, m.n_tgt).index_add_(1, m.tgt_long, prod[..., c].contiguous()) for c in range(C)], -1)
    if m.perm is not None:
        w = w.index_select(1, m.perm)
    out = []
    for c in range(C):
        def mat(b):
            return torch.sparse_csr_tensor(m.crow, m.col, w[b, :, c], (m.n_tgt, m.n_src), check_invariants=False)
        if shared and x.shape[0] == 1:
            out.append((mat(0) @ x[0, :, c]).unsqueeze(0))  # a vector operand: the fastest CSR kernel
        elif shared:
            out.append((mat(0) @ x[:, :, c].T).T)  # [B, n_tgt]
        else:
            out.append(torch.stack([mat(b) @ x[min(b, x.shape[0] - 1), :, c] for b in range(B)]))
    return torch.stack(out, -1)


class _GatherNodes(torch.autograd.Function):
    """:meth:`Graph._gather` of ``x [1, N, C]`` with a fast CPU backward: the gradient
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


class _CSRPropagate(torch.autograd.Function):
    """``propagate`` on a sparse projection with CSR products forward and backward.

    Backward: the input gradient is the transposed product (itself this Function, so double
    backward works); the weight gradient is ``g[post] * x[pre]`` per edge (summed over the batch
    when the weights are shared).
    """

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, fwd: _CSR, bwd: _CSR) -> Tensor:
        ctx.save_for_backward(w, x)
        ctx.csr = (fwd, bwd)
        return _csr_apply(w, x, fwd)

    @staticmethod
    def backward(ctx, g: Tensor):
        w, x = ctx.saved_tensors
        fwd, bwd = ctx.csr
        gw = gx = None
        if ctx.needs_input_grad[1]:
            gx = _CSRPropagate.apply(w, g, bwd, fwd)
            if x.shape[0] == 1 and gx.shape[0] > 1:
                gx = gx.sum(0, keepdim=True)
        if ctx.needs_input_grad[0]:
            if w.shape[0] == 1 and g.shape[0] > 1:  # shared weights: sum_b g[b, tgt] x[b, src] per edge
                gw = fwd.batch_dot(g, x.expand(g.shape[0], -1, -1))
            else:
                gw = fwd.targets(g) * x.index_select(1, fwd.src)
        return gw, gx, None, None


# ---------------------------------------------------------------------- helpers
def _io_mark(p: Population, ins: set, outs: set, graph: "Graph") -> str:
    """``in``/``out`` marks of a population for :meth:`Graph.summary` (``in 3/8``: 3 of its 8 neurons)."""
    marks = []
    for word, names, ids in (("in", ins, graph.input_ids), ("out", outs, graph.output_ids)):
        if p.name not in names:
            continue
        k = p.size if ids is None else int(((ids >= p.start) & (ids < p.stop)).sum())
        marks.append(word if k == p.size else f"{word} {k}/{p.size}")
    return ",".join(marks)


def _table(header: tuple, rows: list, max_rows: int, what: str) -> list[str]:
    """Rows of strings as aligned text lines, the first ``max_rows`` of them and a count of the rest."""
    shown = rows[: max(int(max_rows), 1)]
    keep = [i for i in range(len(header)) if any(r[i] for r in shown) or i == 0]  # drop empty columns
    header = tuple(header[i] for i in keep)
    shown = [tuple(r[i] for i in keep) for r in shown]
    widths = [max(len(c) for c in col) for col in zip(header, *shown)]
    right = {"size", "synapses"}
    fmt = lambda r: "  " + "  ".join(c.rjust(w) if h in right else c.ljust(w)  # noqa: E731
                                      for c, w, h in zip(r, widths, header)).rstrip()
    out = [fmt(header)] + [fmt(r) for r in shown]
    if len(rows) > len(shown):
        out.append(f"  ... {len(rows) - len(shown)} more {what}")
    return out


def is_hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def degrees(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """In- and out-degree per node, ``[N]`` float each, from ``edge_index [2, E]``."""
    return (torch.bincount(edge_index[1], minlength=num_nodes).float(),
            torch.bincount(edge_index[0], minlength=num_nodes).float())


def _check_tensor(x: object, name: str, device: torch.device) -> None:
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.device.type != device.type or (
        device.index is not None and x.device.index is not None and x.device.index != device.index
    ):
        raise ShapeError(f"{name} is on {x.device} but the graph is on {device}; move one with .to()")


def _edge_slice(t: Tensor, p: Projection) -> Tensor:
    if t.dim() == 2:  # [E, D] shared by the batch
        t = t.unsqueeze(0)
    return t[:, p.slice]


def _cat_edges(parts: list[Tensor], like: Tensor) -> Tensor:
    if len(parts) == 1:
        return parts[0]
    B = max(t.shape[0] for t in parts)
    return torch.cat([t.expand(B, *t.shape[1:]) for t in parts], 1)


def _combine(contributions, like: Tensor, num_nodes: int, reduce: str, batch: int | None = None) -> Tensor:
    """Add (or max) per-population contributions into a ``[B, N, D]`` tensor.

    Each contribution is ``(population, values, index)``: values already reduced to
    ``[B, n_target, D]`` (index None), or, for a sparse projection's max, per-edge values to
    scatter by ``index`` (sums of sparse projections arrive reduced by ``_segment_sum``).
    """
    B = batch or max(c.shape[0] for _, c, _ in contributions)
    D = contributions[0][1].shape[-1]
    dtype = contributions[0][1].dtype
    # Fast path: one (already reduced) projection onto every node needs no zero-filled buffer.
    if len(contributions) == 1 and contributions[0][2] is None and contributions[0][0].size == num_nodes:
        return contributions[0][1].expand(B, num_nodes, D)
    if reduce == "max":
        out = torch.full((B, num_nodes, D), -math.inf, dtype=dtype, device=like.device)
        for pop, c, idx in contributions:
            if idx is None:  # out-of-place so autograd keeps what maximum saved
                out = out.slice_scatter(torch.maximum(out[:, pop.slice], c), 1, pop.start, pop.stop)
            else:
                index = idx.view(1, -1, 1).expand(B, -1, D)
                out = out.scatter_reduce(1, index, c.expand(B, *c.shape[1:]), "amax")
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)
    # In-place accumulation into a fresh buffer: autograd records it as CopySlices, and no
    # full-size copy is made per projection (slice_scatter/out-of-place index_add copied N each time).
    out = torch.zeros((B, num_nodes, D), dtype=dtype, device=like.device)
    for pop, c, _ in contributions:
        out[:, pop.slice] += c
    return out
