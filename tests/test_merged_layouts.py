"""Merged layouts (one CSR block for all sparse synapses, synapse types as per-edge ids) give the
same values and gradients as running the graph projection by projection.

The reference below is the definition, written projection by projection directly against
``edge_index`` (a plain loop: gather, multiply, ``index_add``), so it shares no code with the
engine's blocks. Graphs are random and typed: many projections between a few populations, in a
random order (post ranges interleave, so the merged block's edges do not run through the nodes
in order), dense and sparse, several synapse types.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simgraph as sg
from simgraph.graph import layout
from simgraph.schedule import restrict

RULES = ("all_to_all", "pairwise_bernoulli", "fixed_indegree", "fixed_outdegree", "explicit")


def typed_net(data, max_projections=12):
    """A random typed net: 1-4 populations, up to ``max_projections`` projections of any rule and
    three synapse types, drawn in random order."""
    n_pops = data.draw(st.integers(1, 4), label="populations")
    sizes = [data.draw(st.integers(1, 7), label=f"size{i}") for i in range(n_pops)]
    net = sg.Network(seed=data.draw(st.integers(0, 99), label="seed"))
    for i, n in enumerate(sizes):
        net.population(f"p{i}", n, neuron_type=f"t{i % 3}")
    for k in range(data.draw(st.integers(1, max_projections), label="projections")):
        a, b = (data.draw(st.integers(0, n_pops - 1), label=f"{side}{k}") for side in ("pre", "post"))
        rule = data.draw(st.sampled_from(RULES), label=f"rule{k}")
        kw = {"synapse_type": f"s{data.draw(st.integers(0, 2), label=f'type{k}')}", "name": f"c{k}"}
        if rule == "all_to_all":
            kw["layout"] = data.draw(st.sampled_from(["auto", "sparse"]), label=f"layout{k}")
        elif rule == "pairwise_bernoulli":
            kw["p"] = 0.5
        elif rule == "fixed_indegree":
            kw["indegree"] = data.draw(st.integers(1, 3), label=f"k{k}")
        elif rule == "fixed_outdegree":
            kw["outdegree"] = data.draw(st.integers(1, 3), label=f"k{k}")
        else:
            m = data.draw(st.integers(0, 12), label=f"m{k}")
            g = torch.Generator().manual_seed(k)
            kw.update(pre_idx=torch.randint(0, sizes[a], (m,), generator=g), post_idx=torch.randint(0, sizes[b], (m,), generator=g))
        net.connect(f"p{a}", f"p{b}", rule, **kw)
    return net.inputs("p0").outputs(f"p{n_pops - 1}").build()


# ---------------------------------------------------------------------- the per-projection reference
def ref_gather(graph, x, use_pre):
    return torch.cat([x[:, graph.edge_index[0 if use_pre else 1, p.slice]] for p in graph.projections.values()], 1)


def ref_sum(graph, m, into_post, reduce="sum"):
    B, D = m.shape[0], m.shape[-1]
    out = torch.full((B, graph.num_nodes, D), -torch.inf if reduce == "max" else 0.0, dtype=m.dtype)
    for p in graph.projections.values():
        idx = graph.edge_index[1 if into_post else 0, p.slice]
        if reduce == "max":
            out = out.scatter_reduce(1, idx.view(1, -1, 1).expand(B, -1, D), m[:, p.slice].expand(B, -1, -1), "amax")
        else:
            out = out.index_add(1, idx, m[:, p.slice].expand(B, -1, -1))
    if reduce == "max":  # nodes no edge reaches are 0
        out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
    if reduce == "mean":
        ids = torch.cat([graph.edge_index[1 if into_post else 0, p.slice] for p in graph.projections.values()])
        deg = torch.bincount(ids, minlength=graph.num_nodes).clamp(min=1)  # within a view: its projections
        out = out / deg.to(m.dtype).view(1, -1, 1)
    return out


def ref_propagate(graph, w, x, into_post):
    w = w if w.dim() == 3 else w.unsqueeze(0)
    out = torch.zeros(max(w.shape[0], x.shape[0]), graph.num_nodes, x.shape[-1], dtype=x.dtype)
    for p in graph.projections.values():
        src, dst = graph.edge_index[:, p.slice] if into_post else graph.edge_index[:, p.slice].flip(0)
        out = out.index_add(1, dst, (w[:, p.slice] * x[:, src]).expand(out.shape[0], -1, -1))
    return out


def ref_edge_map(graph, fn, pre, post, edge, per_type):
    parts = []
    for p in graph.projections.values():
        src, dst = graph.edge_index[:, p.slice]
        args = [t[:, src] for t in pre] + [t[:, dst] for t in post]
        args += [(t if t.dim() == 3 else t.unsqueeze(0))[:, p.slice] for t in edge]
        args += [t[p.type_id].view(1, 1, -1) for t in per_type]
        parts.append(fn(*args))
    B = max(r.shape[0] for r in parts)
    return torch.cat([r.expand(B, -1, -1) for r in parts], 1)


def fn(a, b, c, e, t):
    return torch.tanh(a * b + e * t) + c * t


def everything(graph, x, y, m, w, table, engine=True):
    """Every primitive on ``graph`` (engine or reference); returns the outputs."""
    if engine:
        g = graph
        return [g.pre(x), g.post(y), g.to_post(m), g.to_pre(m), g.to_post(m, "mean"), g.to_pre(m, "mean"),
                g.to_post(m, "max"), g.to_pre(m, "max"), g.propagate(w, x), g.propagate_back(w, y),
                g.edge_map(fn, pre=[x], post=[y, x], edge=[m], per_type=[table])]
    g = graph
    return [ref_gather(g, x, True), ref_gather(g, y, False), ref_sum(g, m, True), ref_sum(g, m, False),
            ref_sum(g, m, True, "mean"), ref_sum(g, m, False, "mean"), ref_sum(g, m, True, "max"),
            ref_sum(g, m, False, "max"), ref_propagate(g, w, x, True), ref_propagate(g, w, y, False),
            ref_edge_map(g, fn, [x], [y, x], [m], [table])]


def compare(graph, batch, shared_w, seed, rtol=1e-9, atol=1e-10):
    gen = torch.Generator().manual_seed(seed)
    N, E, D = graph.num_nodes, graph.num_edges, 3
    leaves = [torch.randn(batch, N, D, generator=gen, dtype=torch.float64),
              torch.randn(batch, N, D, generator=gen, dtype=torch.float64),
              torch.randn(batch, E, D, generator=gen, dtype=torch.float64),
              torch.randn(*(() if shared_w else (batch,)), E, D, generator=gen, dtype=torch.float64),
              torch.randn(graph.num_synapse_types, D, generator=gen, dtype=torch.float64)]
    results = []
    for engine in (True, False):
        ls = [t.clone().requires_grad_() for t in leaves]
        outs = everything(graph, *ls, engine=engine)
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        results.append((outs, torch.autograd.grad(loss, ls)))
    (outs, grads), (ref_outs, ref_grads) = results
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        torch.testing.assert_close(a.expand_as(b), b, rtol=rtol, atol=atol, msg=lambda s: f"output {i}: {s}")
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda s: f"gradient {i}: {s}")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_merged_layout_equals_per_projection_reference(data):
    graph = typed_net(data)
    batch = data.draw(st.sampled_from([1, 2]), label="batch")  # batch 1 takes the CSR-backward gathers
    shared = data.draw(st.booleans(), label="shared weights")
    compare(graph, batch, shared, data.draw(st.integers(0, 999), label="tensor seed"))


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_dense_projections_in_the_sparse_block_and_per_projection_plans_agree(data):
    """Small dense projections run inside the CSR block or as dense blocks, and the one-block-per-
    projection plan: all give the reference's values and gradients."""
    graph = typed_net(data)
    seed = data.draw(st.integers(0, 999), label="tensor seed")
    old = layout.DENSE_AS_SPARSE_BELOW
    try:
        for threshold, merge in ((10**9, True), (0, True), (10**9, False)):
            layout.DENSE_AS_SPARSE_BELOW = threshold
            g = graph.to("cpu")  # a copy with fresh lookups
            if not merge:
                g._cache[("blocks",)] = layout.plan(g.projections.values(), g.edge_index, g.edge_type, g.num_nodes, merge=False)
            compare(g, 2, False, seed)
    finally:
        layout.DENSE_AS_SPARSE_BELOW = old


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_restricted_views_of_merged_blocks(data):
    """A schedule's view over some projections (edges not contiguous: several blocks) agrees with
    the reference on those projections; edge_map returns the view's edges, in build order."""
    graph = typed_net(data)
    names = [n for n in graph.projections if data.draw(st.booleans(), label=f"keep {n}")] or list(graph.projections)[:1]
    view = restrict(graph, names)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, graph.num_nodes, 2, generator=gen, dtype=torch.float64)
    m = torch.randn(2, graph.num_edges, 2, generator=gen, dtype=torch.float64)
    table = torch.randn(graph.num_synapse_types, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(view.propagate(m, x), ref_propagate(view, m, x, True))
    torch.testing.assert_close(view.to_pre(m, "mean"), ref_sum(view, m, False, "mean"))
    got = view.edge_map(fn, pre=[x], post=[x, x], edge=[m], per_type=[table])
    torch.testing.assert_close(got, ref_edge_map(view, fn, [x], [x, x], [m], [table]))


def test_edge_views_are_views_so_rules_can_write_them_in_place():
    """The lean episodes write edge states in place through edge_map's edge views."""
    g = typed_graph()
    h = torch.zeros(1, g.num_edges, 1, dtype=torch.float64)
    x = torch.randn(1, g.num_nodes, 1, dtype=torch.float64)
    g.edge_map(lambda xj, xi, h: h.addcmul_(xi, xj), pre=[x], post=[x], edge=[h])
    torch.testing.assert_close(h, g.pre(x) * g.post(x))


def typed_graph(n=60, synapses=900, populations=4, projections=14):
    from simgraph.bench import suite

    return suite.make_typed_graphs(n, synapses, populations, projections)[0]


def test_a_typed_graph_is_one_block():
    """All sparse projections of a typed net, however many, run as one CSR block."""
    g = typed_graph()
    assert len(g.projections) == 14 and len(g.blocks()) == 1
    (block,) = g.blocks()
    assert block.kind == "sparse" and block.num_edges == g.num_edges
    assert not block.post.sorted and block.csr(True).segment_rows  # weights stay in edge order


@pytest.mark.parametrize("make", ["hebbian", "mlp", "static", "plastic"])
def test_rules_give_the_per_projection_results(make):
    """Rules on the merged layout equal the one-block-per-projection plan, values and gradients."""
    from simgraph.bench import suite

    g = typed_graph()
    u = torch.randn(6, 2, g.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    runs = []
    for merge in (True, False):
        graph = g.to("cpu")
        if not merge:
            graph._cache[("blocks",)] = layout.plan(graph.projections.values(), graph.edge_index, graph.edge_type,
                                                    graph.num_nodes, merge=False)
        rule = suite.typed_rule(make, graph).double()
        state = {k: v.double() for k, v in rule.init_state(graph, 2).items()}
        leaves = [p for p in rule.parameters() if p.requires_grad]
        if not leaves:
            state["edge"] = (0.1 * torch.randn(2, graph.num_edges, 1, dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(1))).requires_grad_()
            leaves = [state["edge"]]
        run = sg.simulate(rule, graph, u, state=state)
        grads = torch.autograd.grad(run.outputs.square().sum(), leaves, allow_unused=True)
        runs.append((run.outputs, run.state["edge"], grads))
    (o1, e1, g1), (o2, e2, g2) = runs
    torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(e1, e2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_merged_products_pass_gradcheck_and_double_backward():
    """The CSR products and per-type rows on a merged block with segment rows (typed net), first
    and second order (segment sums, as before the merge, are differentiable once)."""
    g = typed_graph(12, 40, 3, 6)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, g.num_nodes, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, g.num_edges, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(g.num_synapse_types, 2, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(w, x, t):
        return g.propagate(w, x) + g.propagate_back(w, x).square(), g.edge_map(lambda a, e, s: a * e * s, pre=[x[:1]], edge=[w], per_type=[t])

    assert torch.autograd.gradcheck(f, (w, x, t))
    assert torch.autograd.gradgradcheck(f, (w, x, t))
    assert torch.autograd.gradcheck(lambda m: g.to_post(m).sin() + g.to_pre(m, "mean"), (w,))
