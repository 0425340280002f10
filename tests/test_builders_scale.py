"""O(synapses) connection rules (issue 14, item 2): the laws they draw from, and that they scale.

Degree distributions are checked against each rule's law by a chi-squared goodness-of-fit test, as
NEST's own connection tests do (seeds are fixed, so a test either always passes or always fails; the
significance level is 1e-3). Also: exact degrees and counts where the rule fixes them, no repeated
pairs without multapses, no autapses when excluded, one seed one graph, the size check in bytes,
and builds that a dense n x n scratch matrix could not do.
"""

from __future__ import annotations

import math
import time
from itertools import combinations

import pytest
import torch

import simgraph as sg
from simgraph import build
from simgraph.errors import MemoryBudgetError

ALPHA = 1e-3


# ---------------------------------------------------------------------- chi-squared, without scipy
def _log_binom(n, k):
    return torch.lgamma(n + 1.0) - torch.lgamma(k + 1.0) - torch.lgamma(n - k + 1.0)


def binomial_pmf(n: int, p: float, support: int) -> torch.Tensor:
    k = torch.arange(support, dtype=torch.float64)
    n_t = torch.tensor(float(n), dtype=torch.float64)
    logp = _log_binom(n_t, k) + k * math.log(p) + (n_t - k) * math.log1p(-p)
    return torch.where(k <= n, logp.exp(), torch.zeros(()).double())


def hypergeom_pmf(total: int, good: int, draws: int, support: int) -> torch.Tensor:
    """P(k good among ``draws`` drawn without replacement from ``total`` of which ``good`` are good)."""
    k = torch.arange(support, dtype=torch.float64)
    T, G, D = (torch.tensor(float(v), dtype=torch.float64) for v in (total, good, draws))
    ok = (k <= G) & (k <= D) & (D - k <= T - G)
    kk = torch.where(ok, k, torch.zeros(()).double())
    logp = _log_binom(G, kk) + _log_binom(T - G, D - kk) - _log_binom(T, D)
    return torch.where(ok, logp.exp(), torch.zeros(()).double())


def chi2_pvalue(observed: torch.Tensor, expected: torch.Tensor, fitted: int = 0) -> float:
    """Pearson's test after pooling neighbouring bins until each expects >= 5; p-value from the
    regularised upper incomplete gamma function (the chi-squared survival function)."""
    observed, expected = observed.double(), expected.double()
    expected = expected * observed.sum() / expected.sum()
    obs, exp, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(observed.tolist(), expected.tolist()):
        o, e = o + oi, e + ei
        if e >= 5:
            obs.append(o)
            exp.append(e)
            o = e = 0.0
    if e > 0 or o > 0:  # the thin tail joins the last bin
        obs[-1] += o
        exp[-1] += e
    obs_t, exp_t = torch.tensor(obs), torch.tensor(exp)
    stat = float(((obs_t - exp_t) ** 2 / exp_t).sum())
    df = len(obs) - 1 - fitted
    assert df >= 1, "too few bins for a chi-squared test"
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


def assert_law(degrees: torch.Tensor, pmf: torch.Tensor) -> None:
    counts = torch.bincount(degrees.long(), minlength=len(pmf))
    assert len(counts) == len(pmf), f"degree {len(counts) - 1} outside the law's support"
    p = chi2_pvalue(counts, pmf * len(degrees))
    assert p > ALPHA, f"degrees do not follow the law (chi-squared p = {p:.2e})"


def edges(g: sg.Graph, name: str):
    proj = g.projections[name]
    pre, post = g.edge_index[:, proj.slice]
    return pre - proj.pre.start, post - proj.post.start


def one(rule: str, n_pre: int, n_post: int | None = None, seed: int = 0, **kw):
    """(pre, post) local ids of one projection; ``n_post=None``: within one population of ``n_pre``."""
    net = sg.Network(seed).population("a", n_pre)
    if n_post is None:
        net.connect("a", "a", rule, **kw)
        return edges(net.build(), "a->a")
    net.population("b", n_post).connect("a", "b", rule, **kw)
    return edges(net.build(), "a->b")


def assert_sorted_distinct(pre, post, n_pre, distinct=True):
    key = post * n_pre + pre
    assert torch.all(key[1:] >= key[:-1]), "synapses not sorted by (post, pre)"
    if distinct:
        assert torch.all(key[1:] > key[:-1]), "a repeated (pre, post) pair without multapses"


# ---------------------------------------------------------------------- pairwise_bernoulli
@pytest.mark.parametrize("n_pre,n_post,p,autapses", [(2000, 1500, 0.02, True), (1500, None, 0.01, False), (400, 300, 0.9, True)])
def test_bernoulli_degrees_are_binomial(n_pre, n_post, p, autapses):
    pre, post = one("pairwise_bernoulli", n_pre, n_post, p=p, allow_autapses=autapses)
    rows = n_post or n_pre
    candidates = n_pre - (0 if autapses or n_post else 1)
    assert_sorted_distinct(pre, post, n_pre)
    if not autapses:
        assert not torch.any(pre == post)
    assert_law(torch.bincount(post, minlength=rows), binomial_pmf(candidates, p, candidates + 1))  # in-degrees
    assert_law(torch.bincount(pre, minlength=n_pre), binomial_pmf(rows - (0 if autapses or n_post else 1), p, rows + 1))
    mean, sd = p * rows * candidates, math.sqrt(p * (1 - p) * rows * candidates)
    assert abs(len(pre) - mean) < 5 * sd


def test_bernoulli_edge_cases():
    assert len(one("pairwise_bernoulli", 50, p=0.0)[0]) == 0
    pre, post = one("pairwise_bernoulli", 30, 20, p=1.0)
    assert len(pre) == 600 and torch.equal(post * 30 + pre, torch.arange(600))
    pre, post = one("pairwise_bernoulli", 30, p=1.0, allow_autapses=False)
    assert len(pre) == 30 * 29 and not torch.any(pre == post)
    assert len(one("pairwise_bernoulli", 1, p=1.0, allow_autapses=False)[0]) == 0  # no pair off the diagonal


def test_bernoulli_pairs_uniform():
    """Every pair as likely: the counts of each (post, pre) over many small draws are alike (geometric skips
    carry no position bias across rows or chunk boundaries)."""
    g = torch.Generator().manual_seed(0)
    hits = torch.cat([build._bernoulli(97, 0.05, g) for _ in range(4000)])
    counts = torch.bincount(hits, minlength=97)
    assert len(counts) == 97
    assert chi2_pvalue(counts, torch.ones(97)) > ALPHA


# ---------------------------------------------------------------------- fixed degrees
@pytest.mark.parametrize("n_pre,k", [(3000, 20), (60, 30)])  # sparse rows (redraw repeats) and dense rows (random keys)
@pytest.mark.parametrize("multapses", [True, False])
def test_fixed_indegree_exact_and_out_degrees_binomial(n_pre, k, multapses):
    n_post = 2000
    pre, post = one("fixed_indegree", n_pre, n_post, indegree=k, allow_multapses=multapses)
    assert torch.all(torch.bincount(post, minlength=n_post) == k)
    assert_sorted_distinct(pre, post, n_pre, distinct=not multapses)
    # each post draws k of n_pre: a pre is hit Binomial(n_post * k, 1/n_pre) times with multapses,
    # Binomial(n_post, k/n_pre) without
    law = binomial_pmf(n_post * k, 1 / n_pre, n_post * k + 1) if multapses else binomial_pmf(n_post, k / n_pre, n_post + 1)
    assert_law(torch.bincount(pre, minlength=n_pre), law[: int(torch.bincount(pre).max()) + 50])


@pytest.mark.parametrize("k", [3, 40])
def test_fixed_outdegree_exact_no_autapses(k):
    n = 1000 if k == 3 else 70
    pre, post = one("fixed_outdegree", n, outdegree=k, allow_multapses=False, allow_autapses=False)
    assert torch.all(torch.bincount(pre, minlength=n) == k)
    assert not torch.any(pre == post)
    assert_sorted_distinct(pre, post, n)
    assert_law(torch.bincount(post, minlength=n), binomial_pmf(n - 1, k / (n - 1), n))


@pytest.mark.parametrize("m,k", [(16, 2), (6, 3)])  # sparse path (redraws) and dense path (random keys)
def test_draw_rows_subsets_uniform(m, k):
    """Each row a uniformly random k-subset: every one of the C(m, k) subsets as frequent."""
    rows = 60 * math.comb(m, k)
    x = build._draw_rows(rows, m, k, torch.Generator().manual_seed(1), distinct=True)
    assert torch.all(x[:, 1:] > x[:, :-1])
    code = {s: i for i, s in enumerate(combinations(range(m), k))}
    ids = torch.tensor([code[tuple(r)] for r in x.tolist()])
    assert chi2_pvalue(torch.bincount(ids, minlength=len(code)), torch.ones(len(code))) > ALPHA


# ---------------------------------------------------------------------- fixed_total_number
@pytest.mark.parametrize("n_pre,n,autapses", [(400, 3000, True), (300, 2000, False), (40, 1000, True)])  # last: dense
@pytest.mark.parametrize("multapses", [True, False])
def test_fixed_total_number_exact_and_row_law(n_pre, n, autapses, multapses):
    pre, post = one("fixed_total_number", n_pre, n=n, allow_autapses=autapses, allow_multapses=multapses)
    assert len(pre) == n
    assert_sorted_distinct(pre, post, n_pre, distinct=not multapses)
    if not autapses:
        assert not torch.any(pre == post)
    width = n_pre - (0 if autapses else 1)
    pairs = n_pre * width
    # a row's count: Binomial(n, 1/rows) with multapses; Hypergeometric (its width of the pairs) without
    law = binomial_pmf(n, 1 / n_pre, n + 1) if multapses else hypergeom_pmf(pairs, width, n, min(n, width) + 1)
    assert_law(torch.bincount(post, minlength=n_pre), law)


def test_distinct_ids_uniform():
    g = torch.Generator().manual_seed(2)
    draws = [build._distinct_ids(200, 20, g) for _ in range(3000)]
    assert all(len(d) == 20 and bool(torch.all(d[1:] > d[:-1])) for d in draws)
    assert chi2_pvalue(torch.bincount(torch.cat(draws), minlength=200), torch.ones(200)) > ALPHA


# ---------------------------------------------------------------------- all rules
RULES = [
    ("pairwise_bernoulli", {"p": 0.3}),
    ("fixed_indegree", {"indegree": 7}),
    ("fixed_indegree", {"indegree": 30}),
    ("fixed_outdegree", {"outdegree": 7}),
    ("fixed_outdegree", {"outdegree": 30}),
    ("fixed_total_number", {"n": 300}),
    ("fixed_total_number", {"n": 1200}),
    ("all_to_all", {}),
]


@pytest.mark.parametrize("rule,kw", RULES)
def test_no_repeats_no_autapses_and_seeded(rule, kw):
    for seed in range(3):
        pre, post = one(rule, 40, seed=seed, allow_autapses=False, allow_multapses=False, **kw)
        assert not torch.any(pre == post)
        assert_sorted_distinct(pre, post, 40)
    a = one(rule, 40, seed=5, allow_multapses=True, **kw)
    b = one(rule, 40, seed=5, allow_multapses=True, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    if rule != "all_to_all":
        c = one(rule, 40, seed=6, allow_multapses=True, **kw)
        assert not (len(c[0]) == len(a[0]) and torch.equal(c[0], a[0]) and torch.equal(c[1], a[1]))


def test_edge_ids_are_int64_and_projection_views():
    g = (sg.Network(0).population("a", 50).population("b", 30).connect("a", "b", "pairwise_bernoulli", p=0.2)
         .connect("b", "a", "fixed_indegree", indegree=3).connect("a", "a").build())
    assert g.edge_index.dtype == torch.long and g.edge_type.dtype == torch.long
    for name, (pre, post) in g._sparse_index.items():
        assert torch.equal(torch.stack([pre, post]), g.edge_index[:, g.projections[name].slice])


# ---------------------------------------------------------------------- scale
def test_big_sparse_builds_fast():
    """200k neurons at p = 1e-5 (about 400k synapses): a dense scratch matrix would be 4e10 entries."""
    start = time.perf_counter()
    g = sg.Network(0).population("a", 200_000).connect("a", "a", "pairwise_bernoulli", p=1e-5, allow_autapses=False).build()
    mid = time.perf_counter()
    sg.Network(0).population("a", 200_000).connect("a", "a", "fixed_indegree", indegree=5, allow_multapses=False).build()
    sg.Network(0).population("a", 200_000).connect("a", "a", "fixed_total_number", n=400_000, allow_multapses=False).build()
    end = time.perf_counter()
    assert abs(g.num_edges - 4e5) < 5 * 4e5**0.5
    assert mid - start < 5 and end - mid < 10, f"took {mid - start:.1f} s and {end - mid:.1f} s"


def test_tiny_p_on_huge_populations_is_instant():
    start = time.perf_counter()
    pre, post = one("pairwise_bernoulli", 46_000, 46_000, p=1e-6)
    assert time.perf_counter() - start < 2
    assert abs(len(pre) - 2116) < 5 * 2116**0.5


def test_size_check_is_in_bytes(monkeypatch):
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", str(10**8))  # 100 MB
    net = sg.Network(0).population("a", 50_000).population("b", 50_000)
    net.connect("a", "b", "pairwise_bernoulli", p=1e-4, name="sparse")  # 250k synapses, about 16 MB: fits
    start = time.perf_counter()
    for rule, kw in [("pairwise_bernoulli", {"p": 0.01}), ("fixed_indegree", {"indegree": 100}),
                     ("fixed_total_number", {"n": 10**7, "allow_multapses": False})]:
        with pytest.raises(MemoryBudgetError, match="bytes"):
            net.connect("a", "b", rule, **kw)
    assert time.perf_counter() - start < 1  # refused before drawing


# ---------------------------------------------------------------------- the bench's builder rows
def test_bench_builder_rows_and_dense_reference():
    """The dense-scratch reference draws from the same laws; the bench child reports time and memory."""
    from simgraph.bench import builders
    from simgraph.bench.reference import dense_connect

    g = torch.Generator().manual_seed(0)
    pre, post = dense_connect("pairwise_bernoulli", 30, 20, g, p=1.0)
    new = one("pairwise_bernoulli", 30, 20, p=1.0)
    assert torch.equal(pre, new[0]) and torch.equal(post, new[1])
    pre, post = dense_connect("fixed_indegree", 50, 40, g, k=7)
    assert torch.all(torch.bincount(post, minlength=40) == 7)
    assert_sorted_distinct(pre, post, 50)
    for impl in ("old", "new"):
        r = builders.child(dict(rule="fixed_total_number", n_pre=200, value=500, impl=impl, graph=True))
        assert r["synapses"] == 500 and r["seconds"] >= 0 and r["peak_mb"] > 0
