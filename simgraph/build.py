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

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import (GraphError, check_bool, check_bytes, check_choice, check_device, check_int, check_name, check_probability,
                     check_seed, is_int, is_number, unknown)
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
# at its peak, per synapse (the projections' local pre/post ids, edge_index, type ids: 40 bytes); a
# connection rule's draw holds about as much per synapse (float64 draws, ids, the sorted copies).
# Measured: 1e8 synapses (fixed_indegree) peak at 4.7 GB, 47 bytes per synapse.
NEURON_BYTES = 32
SYNAPSE_BYTES = 64


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
        self.seed = None if seed is None else check_seed("Network seed (or None)", seed, error=GraphError)
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
        check_name("population name", name)
        if name in self._populations:
            raise GraphError(f"population {name!r} already exists")
        size = check_int(f"population {name!r}: size", size, 1, error=GraphError)
        total = size + sum(n for n, _ in self._populations.values())
        if total > MAX_SIZE:
            raise GraphError(f"population {name!r}: size {size} brings the network to {total} neurons, more than {MAX_SIZE}")
        check_bytes(f"population {name!r} (size {size}, {total} neurons in the network)", total * NEURON_BYTES,
                    "use a smaller population size")
        neuron_type = name if neuron_type is None else neuron_type
        check_name(f"neuron type of population {name!r}", neuron_type)
        self._populations[name] = (size, neuron_type)
        return self

    def inputs(self, *names: str) -> "Network":
        """Name the populations that receive external input, in input order (``inputs("a", "b")``, or one
        list, ``inputs(["a", "b"])``)."""
        self._inputs = self._distinct(names, "inputs")
        return self

    def outputs(self, *names: str) -> "Network":
        """Name the populations read out as the network's output, in output order (names, or one list)."""
        self._outputs = self._distinct(names, "outputs")
        return self

    def _distinct(self, names: Sequence[str], what: str) -> list[str]:
        if len(names) == 1 and isinstance(names[0], (list, tuple)) and names[0]:  # one list of names
            names = tuple(names[0])
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
        **unknown_options,
    ) -> "Network":
        """Connect population ``pre`` to population ``post`` with a NEST connection rule.

        Rules and their parameter: ``all_to_all``, ``one_to_one``, ``pairwise_bernoulli`` (``p``),
        ``fixed_indegree`` (``indegree``), ``fixed_outdegree`` (``outdegree``),
        ``fixed_total_number`` (``n``), ``explicit`` (``pre_idx``, ``post_idx``: local indices).
        Autapses (i -> i) only arise when ``pre == post``. ``layout="auto"`` stores a projection
        dense when it holds every (post, pre) pair exactly once, sparse otherwise. Every rule draws in
        time and memory proportional to the synapses it makes (not to ``n_pre * n_post``); a projection
        whose synapses would not fit the byte budget is refused before anything is drawn.
        """
        if unknown_options:  # a typo (prob=, in_degree=) would otherwise be Python's bare TypeError
            raise unknown("Network.connect keyword", next(iter(unknown_options)),
                          ["synapse_type", "p", "indegree", "outdegree", "n", "pre_idx", "post_idx", "allow_autapses",
                           "allow_multapses", "layout", "name"])
        n_pre, _ = self._pop(pre)
        n_post, _ = self._pop(post)
        where = f"projection {pre}->{post}"
        check_choice(f"connection rule in {where}", rule, CONNECTION_RULES)
        check_choice(f"layout in {where}", layout, LAYOUTS)
        check_name(f"synapse type of {where}", synapse_type)
        if name is not None:
            check_name(f"name of {where}", name)
        name = name or f"{pre}->{post}"
        allow_autapses = check_bool(f"{where}: allow_autapses", allow_autapses, error=GraphError)
        allow_multapses = check_bool(f"{where}: allow_multapses", allow_multapses, error=GraphError)
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
        same = pre == post
        autapses_ok = allow_autapses or not same
        _check_work(rule, n_pre, n_post, given, allow_multapses, autapses_ok, where)
        g = self.generator

        # every rule but fixed_outdegree and explicit draws its synapses already sorted by (post, pre)
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
            p = check_probability(f"{where}: pairwise_bernoulli p", p, error=GraphError)
            pre_i, post_i = _decode(_bernoulli(_pairs(n_pre, n_post, autapses_ok), p, g), n_pre, autapses_ok)
        elif rule == "fixed_indegree":
            post_i, pre_i = _fixed_degree(n_post, n_pre, indegree, "indegree", autapses_ok, allow_multapses, g, where)
        elif rule == "fixed_outdegree":
            pre_i, post_i = _fixed_degree(n_pre, n_post, outdegree, "outdegree", autapses_ok, allow_multapses, g, where)
            post_i, order = torch.sort(post_i, stable=True)  # drawn sorted by (pre, post): a stable sort by post
            pre_i = pre_i[order]
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
            order = torch.argsort(post_i * n_pre + pre_i, stable=True)
            pre_i, post_i = pre_i[order], post_i[order]

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
        # written in place, projection by projection: one copy of every id, no concatenations
        edge_index = torch.empty(2, E, dtype=torch.long)
        edge_type = torch.empty(E, dtype=torch.long)
        e0 = 0
        for q in self._projections:
            if q.synapse_type not in synapse_types:
                synapse_types.append(q.synapse_type)
            tid = synapse_types.index(q.synapse_type)
            pre_pop, post_pop = populations[q.pre], populations[q.post]
            e1 = e0 + len(q.pre_idx)
            projections[q.name] = Projection(q.name, pre_pop, post_pop, q.synapse_type, tid, q.layout, e0, e1 - e0, q.rule)
            pre_g, post_g = edge_index[0, e0:e1], edge_index[1, e0:e1]
            torch.add(q.pre_idx, pre_pop.start, out=pre_g)
            torch.add(q.post_idx, post_pop.start, out=post_g)
            edge_type[e0:e1] = tid
            if q.layout == "sparse":
                sparse_index[q.name] = (pre_g, post_g)  # views of edge_index
            e0 = e1
        node_type = torch.cat([torch.full((p.size,), p.type_id, dtype=torch.long) for p in populations.values()])
        in_degree, out_degree = degrees(edge_index, N)
        graph = Graph(
            populations=populations,
            projections=projections,
            neuron_types=tuple(neuron_types),
            synapse_types=tuple(synapse_types),
            inputs=tuple(self._inputs),
            outputs=tuple(self._outputs),
            node_type=node_type,
            edge_type=edge_type,
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
    """For each of ``n_fixed`` nodes, draw ``k`` partners among ``n_other``; returns (fixed ids, partner ids),
    sorted by (fixed, partner)."""
    k = check_int(f"{where}: {what}", k, 0, error=GraphError)
    available = n_other - (0 if autapses_ok else 1)
    if not multapses_ok and k > available:
        raise GraphError(f"{where}: {what}={k} exceeds the {available} possible partners without multapses")
    if k > 0 and available <= 0:
        raise GraphError(f"{where}: no possible partners for {what}={k} without autapses")
    partner = _draw_rows(n_fixed, available, k, g, distinct=not multapses_ok)
    if not autapses_ok:  # drawn among the n-1 others: skip over the node itself
        partner += partner >= torch.arange(n_fixed).unsqueeze(1)
    return torch.arange(n_fixed).repeat_interleave(k), partner.reshape(-1)


def _fixed_total(n_pre, n_post, n, autapses_ok, multapses_ok, g, where):
    n = check_int(f"{where}: fixed_total_number n", n, 0, error=GraphError)
    pairs = _pairs(n_pre, n_post, autapses_ok)
    if n > 0 and pairs == 0 or (not multapses_ok and n > pairs):
        without = "multapses" if autapses_ok else "autapses/multapses"
        raise GraphError(f"{where}: n={n} exceeds the {pairs} possible pairs without {without}")
    if multapses_ok:
        flat = torch.randint(0, max(pairs, 1), (n,), generator=g).sort().values
    else:
        flat = _distinct_ids(pairs, n, g)
    return _decode(flat, n_pre, autapses_ok)


# ---------------------------------------------------------------------- O(synapses) sampling
# Each draw below costs time and memory in proportion to the synapses it makes (NEST's builders do the
# same): no n_post x n_pre scratch unless the rows are so dense that it is about the size of the result.
DENSE_ROWS = 8  # rows drawing more than 1/DENSE_ROWS of their candidates use random keys over every candidate


def _pairs(n_pre: int, n_post: int, autapses_ok: bool) -> int:
    """Candidate (post, pre) pairs: all of them, or (within one population) those off the diagonal."""
    return n_pre * n_post if autapses_ok else n_pre * (n_pre - 1)


def _decode(flat: Tensor, n_pre: int, autapses_ok: bool) -> tuple[Tensor, Tensor]:
    """(pre, post) of flat pair ids ``post * width + pre`` (width ``n_pre``, or ``n_pre - 1`` off the diagonal,
    where pre skips over post); increasing flat ids give synapses sorted by (post, pre)."""
    width = n_pre if autapses_ok else n_pre - 1
    if flat.numel() == 0:
        return flat, flat.clone()
    post_i = torch.div(flat, width, rounding_mode="floor")
    pre_i = flat - post_i * width
    if not autapses_ok:
        pre_i += pre_i >= post_i
    return pre_i, post_i


def _bernoulli(pairs: int, p: float, g: torch.Generator) -> Tensor:
    """Each of ``range(pairs)`` independently with probability ``p``, sorted: geometric skips between
    successive hits (Batagelj & Brandes 2005), so the work is the expected ``p * pairs`` hits, not ``pairs``."""
    if p <= 0.0 or pairs == 0:
        return torch.zeros(0, dtype=torch.long)
    if p >= 1.0:
        return torch.arange(pairs)
    log_q = math.log1p(-p)
    chunks, last = [], -1
    while True:
        mean = p * (pairs - 1 - last)
        size = int(mean + 6 * math.sqrt(mean) + 16)
        u = torch.rand(size, dtype=torch.float64, generator=g)
        gaps = u.neg_().log1p_().div_(log_q).floor_().clamp_(max=pairs).long() + 1  # Geometric(p) on 1, 2, ...
        hits = gaps.cumsum_(0).add_(last)  # each gap <= pairs + 1 < 2**62: no overflow before the first id >= pairs
        past = hits >= pairs
        if bool(past.any()):
            chunks.append(hits[: int(past.int().argmax())])
            return torch.cat(chunks) if len(chunks) > 1 else chunks[0]
        chunks.append(hits)
        last = int(hits[-1])


def _draw_rows(rows: int, m: int, k: int, g: torch.Generator, distinct: bool) -> Tensor:
    """``[rows, k]`` int64 draws from ``range(m)``, each row sorted; ``distinct``: each row a uniform k-subset.

    Sparse rows draw k uniform ids already sorted (exponential spacings: the running sums of k + 1
    exponentials over their total are k sorted uniforms, no sort needed), and with ``distinct`` redraw
    the repeats, in the rows that have any, until none has (whatever a row keeps, its redraws are
    uniform, so every k-subset is equally likely). Dense rows (``k > m / DENSE_ROWS``) take the ``k``
    largest of random keys over all ``m`` candidates: ``rows * m`` keys, at most ``DENSE_ROWS`` per synapse."""
    if k == 0:
        return torch.zeros(rows, 0, dtype=torch.long)
    if distinct and k * DENSE_ROWS > m:
        keys = torch.rand(rows, m, generator=g)
        return keys.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    s = torch.empty(rows, k + 1, dtype=torch.float64).exponential_(generator=g).cumsum_(1)
    x = s[:, :k].div_(s[:, k:]).mul_(m).floor_().clamp_(max=m - 1).long()
    del s
    todo = None  # rows that may still hold a repeat: all of them at first
    while distinct:
        sub = x if todo is None else x[todo]
        again = sub[:, 1:] == sub[:, :-1]  # rows are sorted: a repeat follows its first copy
        bad = again.any(1)
        if not bool(bad.any()):
            break
        todo = bad.nonzero().squeeze(1) if todo is None else todo[bad]
        sub, again = sub[bad], again[bad]
        sub[:, 1:][again] = torch.randint(0, m, (int(again.sum()),), generator=g)
        x[todo] = sub.sort(dim=1).values
    return x


def _distinct_ids(m: int, k: int, g: torch.Generator) -> Tensor:
    """``k`` different values of ``range(m)``, sorted, every k-subset equally likely.

    Sparse (``k <= m / DENSE_ROWS``): draw with replacement until ``k`` different values are in hand,
    then drop a uniform subset of the surplus. Dense: the first ``k`` of a permutation, at most
    ``DENSE_ROWS`` ids per value kept."""
    if k * DENSE_ROWS > m:
        return torch.randperm(m, generator=g)[:k].sort().values
    have = torch.zeros(0, dtype=torch.long)
    while len(have) < k:
        h = len(have)
        draws = -(m - h) * math.log1p(-(k - h) / (m - h))  # expected draws for k - h new values
        draws = int(draws + 4 * math.sqrt(draws) + 16)
        have = torch.unique(torch.cat([have, torch.randint(0, m, (draws,), generator=g)]))
    if len(have) > k:
        keep = torch.ones(len(have), dtype=torch.bool)
        keep[_draw_rows(1, len(have), len(have) - k, g, distinct=True)[0]] = False
        have = have[keep]
    return have


def _check_work(rule, n_pre, n_post, given, multapses_ok, autapses_ok, where) -> None:
    """Refuse, before drawing anything, a projection whose synapses (and the draw's scratch) cannot fit."""
    k = given["indegree"] if rule == "fixed_indegree" else given["outdegree"] if rule == "fixed_outdegree" else None
    if k is not None and not is_int(k):
        return  # the rule's own check names the bad value
    k = max(int(k or 0), 0)
    n = max(int(given["n"]), 0) if is_int(given["n"]) else 0
    p = given["p"]
    p = float(p) if is_number(p) and 0.0 <= float(p) <= 1.0 else 0.0  # a bad p: the rule's own check names it
    pairs = _pairs(n_pre, n_post, autapses_ok)
    rows, others = (n_post, n_pre) if rule == "fixed_indegree" else (n_pre, n_post)
    available = others - (0 if autapses_ok else 1)
    if not multapses_ok:  # more than the rule can make: the rule's own check says so
        k, n = min(k, max(available, 0)), min(n, pairs)
    synapses = {
        "all_to_all": pairs,
        "one_to_one": min(n_pre, n_post),
        "pairwise_bernoulli": int(p * pairs + 6 * math.sqrt(p * pairs)),  # expected, plus six standard deviations
        "fixed_indegree": rows * k,
        "fixed_outdegree": rows * k,
        "fixed_total_number": n,
    }.get(rule, 0)
    if synapses > MAX_SIZE:
        raise GraphError(f"{where}: rule {rule!r} would make about {synapses} synapses, more than {MAX_SIZE}")
    scratch = 0  # dense draws: random keys (4 bytes) over every candidate, or a permutation (8 bytes) of them
    if not multapses_ok and rule in ("fixed_indegree", "fixed_outdegree") and k * DENSE_ROWS > available:
        scratch = rows * available * 4
    elif not multapses_ok and rule == "fixed_total_number" and n * DENSE_ROWS > pairs:
        scratch = pairs * 8
    check_bytes(f"{where}: rule {rule!r} (about {synapses} synapses)", synapses * SYNAPSE_BYTES + scratch,
                "use smaller populations or a sparser rule")


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


