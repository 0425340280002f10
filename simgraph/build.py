"""Building networks: populations, projections and NEST's connection rules.

    net = sg.Network(seed=0)
    net.population("cue", 32, neuron_type="input")
    net.population("memory", 128, neuron_type="memory")
    net.connect("cue", "memory", "one_to_one" if ... else "all_to_all", synapse_type="afferent")
    net.connect("memory", "memory", "pairwise_bernoulli", p=0.2, allow_autapses=False)
    net.inputs("cue"); net.outputs("memory")
    graph = net.build()

One ``seed`` owns one ``torch.Generator``: the same seed and the same calls give the same graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import GraphError, check_bytes, check_device, unknown
from .graph import Graph, Population, Projection, degrees

CONNECTION_RULES = (
    "all_to_all",
    "one_to_one",
    "pairwise_bernoulli",
    "fixed_indegree",
    "fixed_outdegree",
    "fixed_total_number",
    "explicit",
)
LAYOUTS = ("auto", "dense", "sparse")
# ids are int64 but a network past 2**31 neurons or synapses per projection cannot be held in
# memory anyway: refuse it with a clear error instead of a failed allocation deep inside torch
MAX_SIZE = 2**31 - 1
# what build() holds per neuron (type ids, their concatenation, in- and out-degrees: int64 each) and,
# at its peak, per synapse (local and global pre/post ids, their concatenation, edge_index, type ids);
# connect() holds per synapse the drawn ids, the sort keys and order and the sorted copies
NEURON_BYTES = 32
SYNAPSE_BYTES = 64
_NAME = re.compile(r"^\S(.*\S)?$")  # non-empty, no surrounding whitespace


@dataclass
class _PendingProjection:
    name: str
    pre: str
    post: str
    synapse_type: str
    layout: str
    rule: str
    pre_idx: Tensor  # local ids, sorted by (post, pre)
    post_idx: Tensor


class Network:
    """A mutable network description; :meth:`build` compiles it into an immutable :class:`Graph`."""

    def __init__(self, seed: int | None = 0):
        if seed is not None and (not _is_int(seed) or not -(2**63) <= seed < 2**64):  # what torch's generator takes
            raise GraphError(f"seed must be an int in [-2**63, 2**64) or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.seed)
        self._populations: dict[str, tuple[int, str]] = {}
        self._projections: list[_PendingProjection] = []
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    # ------------------------------------------------------------------ populations
    def population(self, name: str, size: int, neuron_type: str | None = None) -> "Network":
        """Add ``size`` neurons called ``name`` with one neuron type (default: the name)."""
        _check_name(name, "population name")
        if name in self._populations:
            raise GraphError(f"population {name!r} already exists")
        if not _is_int(size) or size < 1:
            raise GraphError(f"population {name!r}: size must be a positive int, got {size!r}")
        total = int(size) + sum(n for n, _ in self._populations.values())
        if total > MAX_SIZE:
            raise GraphError(f"population {name!r}: size {size} brings the network to {total} neurons, more than {MAX_SIZE}")
        check_bytes(f"population {name!r} (size {int(size)}, {total} neurons in the network)", total * NEURON_BYTES,
                    "use a smaller population size")
        neuron_type = name if neuron_type is None else neuron_type
        _check_name(neuron_type, f"neuron type of population {name!r}")
        self._populations[name] = (int(size), neuron_type)
        return self

    def inputs(self, *names: str) -> "Network":
        """Name the populations that receive external input, in input order."""
        self._inputs = self._distinct(names, "inputs")
        return self

    def outputs(self, *names: str) -> "Network":
        """Name the populations read out as the network's output, in output order."""
        self._outputs = self._distinct(names, "outputs")
        return self

    def _distinct(self, names: Sequence[str], what: str) -> list[str]:
        for n in names:
            self._pop(n)
        if len(set(names)) != len(names):
            raise GraphError(f"{what} name a population twice: {list(names)}")
        return list(names)

    def _pop(self, name: str) -> tuple[int, str]:
        if not isinstance(name, str) or name not in self._populations:
            raise unknown("population", name, self._populations)
        return self._populations[name]

    # ------------------------------------------------------------------ projections
    def connect(
        self,
        pre: str,
        post: str,
        rule: str = "all_to_all",
        *,
        synapse_type: str = "default",
        p: float | None = None,
        indegree: int | None = None,
        outdegree: int | None = None,
        n: int | None = None,
        pre_idx: Sequence[int] | Tensor | np.ndarray | None = None,
        post_idx: Sequence[int] | Tensor | np.ndarray | None = None,
        allow_autapses: bool = True,
        allow_multapses: bool = True,
        layout: str = "auto",
        name: str | None = None,
    ) -> "Network":
        """Connect population ``pre`` to population ``post`` with a NEST connection rule.

        Rules and their parameter: ``all_to_all``, ``one_to_one``, ``pairwise_bernoulli`` (``p``),
        ``fixed_indegree`` (``indegree``), ``fixed_outdegree`` (``outdegree``),
        ``fixed_total_number`` (``n``), ``explicit`` (``pre_idx``, ``post_idx``: local indices).
        Autapses (i -> i) only arise when ``pre == post``. ``layout="auto"`` stores a projection
        dense when it holds every (post, pre) pair exactly once, sparse otherwise.
        """
        n_pre, _ = self._pop(pre)
        n_post, _ = self._pop(post)
        where = f"projection {pre}->{post}"
        if rule not in CONNECTION_RULES:
            raise unknown(f"connection rule in {where}", rule, CONNECTION_RULES)
        if layout not in LAYOUTS:
            raise unknown(f"layout in {where}", layout, LAYOUTS)
        _check_name(synapse_type, f"synapse type of {where}")
        if name is not None:
            _check_name(name, f"name of {where}")
        name = name or f"{pre}->{post}"
        for flag, value in (("allow_autapses", allow_autapses), ("allow_multapses", allow_multapses)):
            if not isinstance(value, (bool, np.bool_)):  # "False" (a string) would silently mean True
                raise GraphError(f"{where}: {flag} must be True or False, got {value!r}")
        if any(q.name == name for q in self._projections):
            raise GraphError(f"projection {name!r} already exists; pass name= to connect() to add another")
        # a parameter given to a rule that does not use it is almost always a typo
        given = {"p": p, "indegree": indegree, "outdegree": outdegree, "n": n, "pre_idx": pre_idx, "post_idx": post_idx}
        wanted = {
            "pairwise_bernoulli": {"p"},
            "fixed_indegree": {"indegree"},
            "fixed_outdegree": {"outdegree"},
            "fixed_total_number": {"n"},
            "explicit": {"pre_idx", "post_idx"},
        }.get(rule, set())
        for key, value in given.items():
            if value is None and key in wanted:
                raise GraphError(f"{where}: rule {rule!r} needs {key}=")
            if value is not None and key not in wanted:
                raise GraphError(f"{where}: rule {rule!r} does not take {key}= (it takes {sorted(wanted) or 'nothing'})")
        _check_work(rule, n_pre, n_post, given, allow_multapses, where)
        same = pre == post
        autapses_ok = allow_autapses or not same
        g = self.generator

        if rule == "all_to_all":
            post_i, pre_i = _grid(n_post, n_pre)
            if not autapses_ok:
                keep = post_i != pre_i
                post_i, pre_i = post_i[keep], pre_i[keep]
        elif rule == "one_to_one":
            if n_pre != n_post:
                raise GraphError(f"{where}: one_to_one needs equal sizes, got {n_pre} and {n_post}")
            if not autapses_ok:
                raise GraphError(f"{where}: one_to_one within one population makes only autapses, but allow_autapses=False")
            pre_i = post_i = torch.arange(n_pre)
        elif rule == "pairwise_bernoulli":
            if not _is_number(p) or not 0.0 <= float(p) <= 1.0:
                raise GraphError(f"{where}: pairwise_bernoulli p must be a probability in [0, 1], got {p!r}")
            mask = torch.rand(n_post, n_pre, generator=g) < float(p)
            if not autapses_ok:
                mask.fill_diagonal_(False)
            post_i, pre_i = mask.nonzero(as_tuple=True)
        elif rule == "fixed_indegree":
            post_i, pre_i = _fixed_degree(n_post, n_pre, indegree, "indegree", autapses_ok, allow_multapses, g, where)
        elif rule == "fixed_outdegree":
            pre_i, post_i = _fixed_degree(n_pre, n_post, outdegree, "outdegree", autapses_ok, allow_multapses, g, where)
        elif rule == "fixed_total_number":
            pre_i, post_i = _fixed_total(n_pre, n_post, n, autapses_ok, allow_multapses, g, where)
        else:  # explicit
            pre_i = _index_array(pre_idx, n_pre, f"{where}: pre_idx", pre)
            post_i = _index_array(post_idx, n_post, f"{where}: post_idx", post)
            if pre_i.shape != post_i.shape:
                raise GraphError(f"{where}: pre_idx and post_idx have different lengths ({len(pre_i)} and {len(post_i)})")
            if not autapses_ok and bool((pre_i == post_i).any()):
                raise GraphError(f"{where}: explicit indices contain autapses but allow_autapses=False")
            if not allow_multapses and len(torch.unique(post_i * n_pre + pre_i)) != len(pre_i):
                raise GraphError(f"{where}: explicit indices contain repeated pairs but allow_multapses=False")

        order = torch.argsort(post_i.long() * n_pre + pre_i.long(), stable=True)
        pre_i, post_i = pre_i.long()[order], post_i.long()[order]
        complete = len(pre_i) == n_pre * n_post and (rule == "all_to_all" or _is_complete(pre_i, post_i, n_pre, n_post))
        if layout == "auto":
            layout = "dense" if complete else "sparse"
        elif layout == "dense" and not complete:
            raise GraphError(
                f"{where}: layout='dense' needs every (post, pre) pair exactly once "
                f"({n_post}x{n_pre}={n_post * n_pre}), this projection has {len(pre_i)} synapses; use 'sparse'"
            )
        self._projections.append(_PendingProjection(name, pre, post, synapse_type, layout, rule, pre_i, post_i))
        return self

    # ------------------------------------------------------------------ compile
    def build(self, device: torch.device | str | None = None) -> Graph:
        """Compile into an immutable :class:`Graph` (on ``device``, default CPU)."""
        if not self._populations:
            raise GraphError("network has no populations; add one with population()")
        if device is not None:
            device = check_device("Network.build", device)
        neuron_types: list[str] = []
        populations: dict[str, Population] = {}
        start = 0
        for name, (size, ntype) in self._populations.items():
            if ntype not in neuron_types:
                neuron_types.append(ntype)
            populations[name] = Population(name, start, size, ntype, neuron_types.index(ntype))
            start += size
        N = start
        E = sum(len(q.pre_idx) for q in self._projections)
        check_bytes(f"Network.build ({N} neurons, {E} synapses)", N * NEURON_BYTES + E * SYNAPSE_BYTES,
                    "use fewer neurons or sparser connections")
        synapse_types: list[str] = []
        projections: dict[str, Projection] = {}
        sparse_index: dict[str, tuple[Tensor, Tensor]] = {}
        pre_all, post_all, etype_all = [], [], []
        e0 = 0
        for q in self._projections:
            if q.synapse_type not in synapse_types:
                synapse_types.append(q.synapse_type)
            tid = synapse_types.index(q.synapse_type)
            pre_pop, post_pop = populations[q.pre], populations[q.post]
            proj = Projection(q.name, pre_pop, post_pop, q.synapse_type, tid, q.layout, e0, len(q.pre_idx), q.rule)
            projections[q.name] = proj
            pre_g, post_g = q.pre_idx + pre_pop.start, q.post_idx + post_pop.start
            if q.layout == "sparse":
                sparse_index[q.name] = (pre_g, post_g)
            pre_all.append(pre_g)
            post_all.append(post_g)
            etype_all.append(torch.full((len(pre_g),), tid, dtype=torch.long))
            e0 += len(pre_g)
        node_type = torch.cat([torch.full((p.size,), p.type_id, dtype=torch.long) for p in populations.values()])
        empty = torch.zeros(0, dtype=torch.long)
        pre_cat = torch.cat(pre_all) if pre_all else empty
        post_cat = torch.cat(post_all) if post_all else empty
        edge_index = torch.stack([pre_cat, post_cat])
        in_degree, out_degree = degrees(edge_index, N)
        graph = Graph(
            populations=populations,
            projections=projections,
            neuron_types=tuple(neuron_types),
            synapse_types=tuple(synapse_types),
            inputs=tuple(self._inputs),
            outputs=tuple(self._outputs),
            node_type=node_type,
            edge_type=torch.cat(etype_all) if etype_all else empty,
            edge_index=edge_index,
            seed=self.seed,
            _sparse_index=sparse_index,
            _in_degree=in_degree,
            _out_degree=out_degree,
        )
        return graph if device is None else graph.to(device)


# ---------------------------------------------------------------------- connection helpers
def _grid(n_post: int, n_pre: int) -> tuple[Tensor, Tensor]:
    post_i = torch.arange(n_post).repeat_interleave(n_pre)
    pre_i = torch.arange(n_pre).repeat(n_post)
    return post_i, pre_i


def _fixed_degree(n_fixed, n_other, k, what, autapses_ok, multapses_ok, g, where):
    """For each of ``n_fixed`` nodes, draw ``k`` partners among ``n_other``; returns (fixed ids, partner ids)."""
    if not _is_int(k) or k < 0:
        raise GraphError(f"{where}: {what} must be a non-negative int, got {k!r}")
    available = n_other - (0 if autapses_ok else 1)
    if not multapses_ok and k > available:
        raise GraphError(f"{where}: {what}={k} exceeds the {available} possible partners without multapses")
    if k > 0 and available <= 0:
        raise GraphError(f"{where}: no possible partners for {what}={k} without autapses")
    fixed = torch.arange(n_fixed).repeat_interleave(k)
    if multapses_ok:
        partner = torch.randint(0, max(available, 1), (n_fixed, k), generator=g)
        if not autapses_ok:  # draw among n-1 and skip over the node itself
            partner = partner + (partner >= torch.arange(n_fixed).unsqueeze(1)).long()
    else:
        keys = torch.rand(n_fixed, n_other, generator=g)
        if not autapses_ok:
            keys.fill_diagonal_(-1.0)
        partner = keys.topk(k, dim=1).indices
    return fixed, partner.reshape(-1)


def _fixed_total(n_pre, n_post, n, autapses_ok, multapses_ok, g, where):
    if not _is_int(n) or n < 0:
        raise GraphError(f"{where}: fixed_total_number n must be a non-negative int, got {n!r}")
    if autapses_ok:
        pairs = n_pre * n_post
        if not multapses_ok and n > pairs:
            raise GraphError(f"{where}: n={n} exceeds the {pairs} possible pairs without multapses")
        flat = torch.randint(0, pairs, (n,), generator=g) if multapses_ok else torch.randperm(pairs, generator=g)[:n]
        return flat % n_pre, flat // n_pre
    # same population, no autapses: draw among the n*(n-1) off-diagonal pairs
    pairs = n_pre * (n_pre - 1)
    if n > 0 and pairs == 0 or (not multapses_ok and n > pairs):
        raise GraphError(f"{where}: n={n} exceeds the {pairs} possible pairs without autapses/multapses")
    flat = torch.randint(0, max(pairs, 1), (n,), generator=g) if multapses_ok else torch.randperm(pairs, generator=g)[:n]
    post_i = flat // (n_pre - 1)
    pre_i = flat % (n_pre - 1)
    pre_i = pre_i + (pre_i >= post_i).long()
    return pre_i, post_i


def _check_work(rule, n_pre, n_post, given, multapses_ok, where) -> None:
    """Refuse a projection whose index tensors could not be allocated (before trying to)."""
    k = given["indegree"] if rule == "fixed_indegree" else given["outdegree"] if rule == "fixed_outdegree" else None
    if k is not None and not _is_int(k):
        return  # the rule's own check names the bad value
    n = given["n"] if _is_int(given["n"]) else 0
    dense = n_pre * n_post
    size = {
        "all_to_all": dense,
        "pairwise_bernoulli": dense,
        "fixed_indegree": n_post * (k or 0) if multapses_ok else dense,
        "fixed_outdegree": n_pre * (k or 0) if multapses_ok else dense,
        "fixed_total_number": n if multapses_ok else max(n, dense),
    }.get(rule, 0)
    if size > MAX_SIZE:
        raise GraphError(f"{where}: rule {rule!r} would need {size} synapses (or candidate pairs), more than {MAX_SIZE}")
    # candidate grids: a float32 random key (and a mask byte) per (post, pre) pair, then the drawn synapses
    if rule == "pairwise_bernoulli":
        p = given["p"]
        frac = float(p) if _is_number(p) and 0.0 <= float(p) <= 1.0 else 0.0  # a bad p: the rule's own check names it
        need = dense * 5 + int(frac * dense) * SYNAPSE_BYTES
    elif rule in ("fixed_indegree", "fixed_outdegree") and not multapses_ok:
        need = dense * 4 + (n_post if rule == "fixed_indegree" else n_pre) * (k or 0) * SYNAPSE_BYTES
    else:
        need = size * SYNAPSE_BYTES
    check_bytes(f"{where}: rule {rule!r} ({size} synapses or candidate pairs)", need,
                "use smaller populations or a sparser rule (fixed_indegree with allow_multapses=True draws no candidate grid)")


def _index_array(idx, size: int, what: str, pop: str) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(idx))
    except Exception as exc:  # ragged lists and the like
        raise GraphError(f"{what} is not an array of ints: {exc}") from None
    if t.dim() != 1:
        raise GraphError(f"{what} must be one-dimensional, got shape {list(t.shape)}")
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise GraphError(f"{what} must hold integers, got dtype {t.dtype}")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        bad = t[(t < 0) | (t >= size)][0].item()
        raise GraphError(f"{what} has index {bad} out of range for population {pop!r} of size {size}")
    return t


def _is_complete(pre_i: Tensor, post_i: Tensor, n_pre: int, n_post: int) -> bool:
    return bool(torch.equal(post_i * n_pre + pre_i, torch.arange(n_pre * n_post)))


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise GraphError(f"{what} must be a non-empty string without surrounding spaces, got {name!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
