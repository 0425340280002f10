"""The data model: populations, projections and the immutable :class:`Graph` rules run on.

Conventions follow PyTorch Geometric: ``edge_index[0]`` is the presynaptic (source, ``_j``) node,
``edge_index[1]`` the postsynaptic (target, ``_i``) node.

Edges are stored projection by projection, each projection a contiguous range of edge ids,
stored ``dense`` (every (post, pre) pair, post-major: viewable as ``[B, n_post, n_pre, D]``) or
``sparse`` (COO pairs sorted by (post, pre)). The primitives do not run projection by projection:
the layout plan (:mod:`simgraph.graph.layout`) groups them into blocks, all sparse synapses of a
graph one CSR block over global node ids (:mod:`~simgraph.graph.sparse`), each large dense
projection a block of broadcasting views and matrix products (:mod:`~simgraph.graph.dense`),
synapse types per-edge ids. An all-to-all projection has the same edge order in both layouts,
which is what lets the tests compare them value for value. Rules never touch ``edge_index``;
they use :meth:`Graph.pre`, :meth:`Graph.post`, :meth:`Graph.to_post`, :meth:`Graph.to_pre`,
and the fused forms :meth:`Graph.edge_map` and :meth:`Graph.propagate` / :meth:`Graph.propagate_back`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ShapeError, check_choice, check_device, is_int, unknown
from .dense import dense_matvec
from . import native
from .layout import cat_edges, combine, plan
from .native import NativePropagate

REDUCTIONS = ("sum", "mean", "max")


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
    # per sparse projection: (pre ids, post ids), global node ids, sorted by (post, pre) (the builder's
    # record; the primitives read their ids from edge_index, block by block: see layout.plan)
    _sparse_index: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)
    _in_degree: Tensor | None = field(default=None, repr=False)  # [N] float
    _out_degree: Tensor | None = field(default=None, repr=False)  # [N] float
    # lazily built lookups keyed by (kind, ...): layout blocks, restricted views, node masks
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
        if isinstance(items, (np.ndarray, Tensor)) and items.ndim == 1 and not items.dtype == torch.bool:
            items = items.tolist()  # a 1-D array of node ids or labels: its items (numpy/torch ints become ints)
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
            elif labels is None and is_int(item):  # a Python or numpy int, not a bool
                if not 0 <= item < self.num_nodes:
                    raise ShapeError(f"graph {what}: node id {item} is out of range for {self.num_nodes} neurons")
                ids.append(int(item))
            else:
                known = list(self.populations) + ([] if labels is None else [str(k) for k in list(labels)[:2000]])
                raise unknown(f"population or node label in graph {what}", item, known)
        if not ids:
            raise ShapeError(f"graph {what} select no neurons: {list(items)!r}")
        if len(set(ids)) != len(ids):
            raise ShapeError(f"graph {what} name a neuron twice: {list(items)!r}")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def population(self, name: str) -> Population:
        return self.populations[check_choice("population", name, self.populations)]  # a non-str name: unknown, not TypeError

    def projection(self, name: str) -> Projection:
        return self.projections[check_choice("projection", name, self.projections)]

    def neuron_type_id(self, name: str) -> int:
        return self.neuron_types.index(check_choice("neuron type", name, self.neuron_types))

    def synapse_type_id(self, name: str) -> int:
        return self.synapse_types.index(check_choice("synapse type", name, self.synapse_types))

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
        if self.edge_sign is not None:  # Dale's law: fixed-sign synapses, free ones (sign 0) not counted
            extra.append(f"{int((self.edge_sign != 0).sum())} signed synapses")
        if self.edge_partner is not None:  # tied gap junctions (an untied edge is its own partner), pairs counted once
            ids = torch.arange(self.num_edges, device=self.edge_partner.device)
            extra.append(f"{int((self.edge_partner != ids).sum()) // 2} tied pairs")
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
        device = check_device("Graph.to", device)
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
    def blocks(self) -> tuple:
        """The layout blocks the primitives run on (see :mod:`simgraph.graph.layout`), built once."""
        return self._cached(("blocks",), lambda: plan(self.projections.values(), self.edge_index, self.edge_type, self.num_nodes))

    def pre(self, x: Tensor) -> Tensor:
        """Presynaptic node values per edge: ``[B, N, D] -> [B, E, D]`` (materialised)."""
        _check_rows(x, self.num_nodes, "Graph.pre: x", "[B, N, D] (N neurons)")
        return cat_edges([b.per_edge(x, True) for b in self.blocks()])

    def post(self, x: Tensor) -> Tensor:
        """Postsynaptic node values per edge: ``[B, N, D] -> [B, E, D]`` (materialised)."""
        _check_rows(x, self.num_nodes, "Graph.post: x", "[B, N, D] (N neurons)")
        return cat_edges([b.per_edge(x, False) for b in self.blocks()])

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
        _check_rows(m, self.num_edges, f"Graph.{'to_post' if into_post else 'to_pre'}: messages", "[B, E, D] or [E, D] (E synapses)")
        if not self.projections:  # a sum over no synapses
            return m.new_zeros(m.shape[0], self.num_nodes, m.shape[-1])
        if reduce == "max":
            out = torch.full((m.shape[0], self.num_nodes, m.shape[-1]), -math.inf, dtype=m.dtype, device=m.device)
            for b in self.blocks():
                out = b.max_into(out, m[:, b.start : b.stop], into_post)
            return torch.where(torch.isinf(out), torch.zeros_like(out), out)
        out = combine([b.sum(m[:, b.start : b.stop], into_post) for b in self.blocks()], self.num_nodes)
        if reduce == "mean":
            deg = self._in_degree if into_post else self._out_degree
            out = out / deg.clamp(min=1).to(out.dtype).view(1, -1, 1)
        return out

    def propagate(self, w: Tensor, x: Tensor) -> Tensor:
        """Weighted sum into postsynaptic nodes, channel by channel: ``to_post(w * pre(x))``.

        ``w`` is ``[B, E, C]`` or ``[E, C]`` (shared by the batch), ``x`` is ``[B, N, C]``.
        Dense projections run as a batched matmul, sparse ones as CSR products; nothing of size E
        is materialised.
        """
        return self._propagate(w, x, into_post=True)

    def propagate_back(self, w: Tensor, y: Tensor) -> Tensor:
        """Weighted sum into presynaptic nodes: ``to_pre(w * post(y))`` (the transpose of propagate)."""
        return self._propagate(w, y, into_post=False)

    def _propagate(self, w: Tensor, x: Tensor, into_post: bool) -> Tensor:
        if w.dim() == 2:
            w = w.unsqueeze(0)
        who = "Graph.propagate" if into_post else "Graph.propagate_back"
        _check_rows(w, self.num_edges, f"{who}: w", "[B, E, C] or [E, C] (E synapses)")
        _check_rows(x, self.num_nodes, f"{who}: x", "[B, N, C] (N neurons)")
        B, C = max(w.shape[0], x.shape[0]), x.shape[-1]
        if w.shape[0] not in (1, B) or x.shape[0] not in (1, B):
            raise ShapeError(f"{who}: w has batch {w.shape[0]} and x batch {x.shape[0]}: they must be equal, or 1 "
                             f"(one copy read by every episode)")
        if w.shape[-1] not in (1, C):  # (a 1-channel x under several-channel w summed only its first: refused too)
            raise ShapeError(f"{who}: w has {w.shape[-1]} channels and x {C}: w needs one weight per channel of x, "
                             f"or 1 channel (the same weight for every channel)")
        if w.shape[-1] == 1 and C > 1:  # from here on w has x's channels
            w = w.expand(-1, -1, C)  # the same weight for every channel (the sparse layouts index w by channel)
        if C == 1 and self._one_dense_projection():
            # the whole net is one all-to-all projection: no slicing or bookkeeping around the
            # matvec (it is tens of microseconds a tick, next to a ~0.1 ms product at N = 1000)
            N = self.num_nodes
            return dense_matvec(w.reshape(w.shape[0], N, N), x, into_post)
        if not self.projections:  # a sum over no synapses
            return x.new_zeros(B, self.num_nodes, C)
        ends = self.endpoints() if native.available(C, x.dtype, x.device) and w.dtype == x.dtype else None
        if ends is not None:  # several channels: one C loop over every layout's synapses
            pre, post, _ = ends
            return NativePropagate.apply(w, x, *((pre, post) if into_post else (post, pre)), self.num_nodes)
        parts = [b.propagate(w[:, b.start : b.stop], x, into_post) for b in self.blocks()]
        return combine(parts, self.num_nodes, batch=B)

    def prepare(self) -> "Graph":
        """Build every lazily built lookup (layout blocks, CSR tables, segments, int32 ids) now, here
        and in the restricted views already made from this graph. ``torch.compile`` needs this: a
        lookup built inside a traced step is a data-dependent op (bincount) and breaks the graph.
        (The 0/1 scatter matrices of the batch-1 gathers are left out: traced steps gather with
        plain ``index_select``.)"""
        self._one_dense_projection()
        for b in self.blocks():
            b.prepare()
        for key, view in list(self._cache.items()):
            if key[0] == "view":
                view.prepare()
        return self

    def _one_dense_projection(self) -> bool:
        """True when the graph is a single dense projection from every node onto every node."""
        key = ("one_dense",)
        if key not in self._cache:
            ps = list(self.projections.values())
            self._cache[key] = (len(ps) == 1 and ps[0].layout == "dense"
                                and ps[0].pre.size == ps[0].post.size == self.num_nodes)
        return self._cache[key]

    def endpoints(self) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """``(pre, post, type)`` node and synapse-type ids per synapse, int32 ``[E]`` each, in edge order
        (``type`` None on a graph of one synapse type), built once: for kernels that loop over the
        synapses themselves (the native propagate, ``MLPRule``'s native synapse function) instead of
        over the layout blocks. None on a restricted view (``schedule.restrict``): its primitives see
        only some projections' synapses, and such a kernel would run them all."""
        def make():
            if sum(p.num_edges for p in self.projections.values()) != self.num_edges:
                return None
            pre, post = (ids.to(torch.int32).contiguous() for ids in self.edge_index)
            kinds = self.edge_type.to(torch.int32).contiguous() if self.num_synapse_types > 1 else None
            return pre, post, kinds
        return self._cached(("endpoints",), make)

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

        Calls ``fn(*pre_views, *post_views, *edge_views, *type_rows)`` once per layout block (one
        for all sparse synapses, one per large dense projection) and returns its result(s) as
        ``[B, E, D]`` tensors. Views are broadcastable: for a dense projection pre
        ``[B, 1, n_pre, D]``, post ``[B, n_post, 1, D]``, edge ``[B, n_post, n_pre, D]``; for a sparse
        block gathered ``[B, E_b, D]`` (or, with k synapses into every post neuron, ``[B, S, k, D]``
        with post ``[B, S, 1, D]``). ``per_type`` tables ``[num_synapse_types, D]`` arrive as each
        edge's row, indexed by ``graph.edge_type`` (one broadcast row where a block has one type).
        Edge views are views: ``fn`` may write them in place. ``fn`` must use only
        elementwise/broadcasting ops and operations on the last axis, so all layouts agree:
        ``edge_map(f, pre=[x], post=[y], edge=[e]) == f(pre(x), post(y), e)``.
        """
        if not self.projections:
            raise ShapeError("edge_map called on a graph with no projections")
        outputs: list[list[Tensor]] | None = None
        single = False
        for b in self.blocks():
            result = fn(*b.edge_args(pre, post, edge, per_type))
            if isinstance(result, Tensor):
                single, result = True, (result,)
            if outputs is None:
                outputs = [[] for _ in result]
            for slot, r in zip(outputs, result):
                slot.append(b.flat(r))
        merged = tuple(cat_edges(parts) for parts in outputs)
        return merged[0] if single else merged

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
        if not parts:  # a graph built without outputs reads none: [B, 0, D]
            return x[:, :0]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def write_outputs(self, x: Tensor, rows: Tensor) -> Tensor:
        """``x [B, N, D]`` with the output neurons' rows replaced by ``rows [B, n_out, D]`` (out of place)."""
        return x.index_copy(1, self.output_nodes, rows.to(x.dtype))


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


def _check_rows(x: object, rows: int, name: str, want: str) -> None:
    """ShapeError unless ``x`` is a 3-D tensor with ``rows`` rows on axis 1 (a cheap check on the hot path)."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != rows:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{name} must be {want} with {rows} rows on axis 1, got {got}")


def _check_tensor(x: object, name: str, device: torch.device) -> None:
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.device.type != device.type or (
        device.index is not None and x.device.index is not None and x.device.index != device.index
    ):
        raise ShapeError(f"{name} is on {x.device} but the graph is on {device}; move one with .to()")
