"""Dense and sparse layouts give the same values and gradients (property test over random graphs)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simgraph as sg
import topologies


def random_net(data, layout):
    """Random populations and projections; every all-to-all projection stored in ``layout``."""
    n_pops = data.draw(st.integers(1, 3), label="populations")
    sizes = [data.draw(st.integers(1, 6), label=f"size{i}") for i in range(n_pops)]
    net = sg.Network(seed=data.draw(st.integers(0, 9), label="seed"))
    for i, n in enumerate(sizes):
        net.population(f"p{i}", n, neuron_type=f"t{i % 2}")
    n_proj = data.draw(st.integers(1, 4), label="projections")
    for k in range(n_proj):
        a = data.draw(st.integers(0, n_pops - 1), label=f"pre{k}")
        b = data.draw(st.integers(0, n_pops - 1), label=f"post{k}")
        dense_kind = data.draw(st.booleans(), label=f"all_to_all{k}")
        if dense_kind:
            net.connect(f"p{a}", f"p{b}", "all_to_all", layout=layout, name=f"c{k}", synapse_type=f"s{k % 2}")
        else:
            net.connect(f"p{a}", f"p{b}", "pairwise_bernoulli", p=0.5, name=f"c{k}", synapse_type=f"s{k % 2}")
    return net.inputs("p0").outputs(f"p{n_pops - 1}").build()


def reference(graph, x, m):
    """The primitives written directly against edge_index (the definition both layouts must meet)."""
    src, dst = graph.edge_index
    N = graph.num_nodes
    to_post = torch.zeros(x.shape[0], N, m.shape[-1], dtype=m.dtype).index_add(1, dst, m)
    to_pre = torch.zeros(x.shape[0], N, m.shape[-1], dtype=m.dtype).index_add(1, src, m)
    return x[:, src], x[:, dst], to_post, to_pre


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_dense_and_sparse_layouts_agree(data):
    seed = data.draw(st.integers(0, 1000), label="tensor seed")
    dense_g = random_net(data, "dense")
    # the very same graph with every projection stored sparse
    sparse_g = _rebuild(dense_g, "sparse")
    assert torch.equal(dense_g.edge_index, sparse_g.edge_index)
    B, D = 2, 3
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, dense_g.num_nodes, D, generator=gen, dtype=torch.float64)
    m0 = torch.randn(B, dense_g.num_edges, D, generator=gen, dtype=torch.float64)
    w0 = torch.randn(dense_g.num_edges, D, generator=gen, dtype=torch.float64)

    def everything(g):
        x, m, w = (t.clone().requires_grad_() for t in (x0, m0, w0))
        outs = [g.pre(x), g.post(x), g.to_post(m), g.to_pre(m), g.to_post(m, "mean"), g.to_post(m, "max"),
                g.to_pre(m, "max"), g.propagate(w, x), g.propagate_back(w, x),
                g.edge_map(lambda a, b, e, w: torch.tanh(a * b + e) * w, pre=[x], post=[x], edge=[m, w])]
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        grads = torch.autograd.grad(loss, (x, m, w))
        return outs, grads

    (outs_d, grads_d), (outs_s, grads_s) = everything(dense_g), everything(sparse_g)
    for a, b in zip(outs_d + list(grads_d), outs_s + list(grads_s)):
        torch.testing.assert_close(a.expand_as(b), b, rtol=1e-10, atol=1e-10)
    pre, post, to_post, to_pre = reference(dense_g, x0, m0)
    torch.testing.assert_close(outs_d[0], pre)
    torch.testing.assert_close(outs_d[1], post)
    torch.testing.assert_close(outs_d[2], to_post)
    torch.testing.assert_close(outs_d[3], to_pre)
    torch.testing.assert_close(outs_d[7], dense_g.to_post(w0 * pre))


def _rebuild(graph, layout):
    net = sg.Network(seed=graph.seed)
    for p in graph.populations.values():
        net.population(p.name, p.size, neuron_type=p.neuron_type)
    for q in graph.projections.values():
        pre, post = graph.edge_index[:, q.slice]
        net.connect(q.pre.name, q.post.name, "explicit", pre_idx=pre - q.pre.start, post_idx=post - q.post.start,
                    synapse_type=q.synapse_type, name=q.name, layout="sparse" if layout == "sparse" else "auto")
    return net.inputs(*graph.inputs).outputs(*graph.outputs).build()


def test_rules_agree_across_layouts():
    dense = topologies.recall_network(n_in=4, n_memory=6, n_out=3)
    sparse = _rebuild(dense, "sparse")
    assert {p.layout for p in dense.projections.values()} == {"dense"}
    assert {p.layout for p in sparse.projections.values()} == {"sparse"}
    u = torch.randn(12, 2, 4, dtype=torch.float64)
    for make in (lambda: sg.rules.MLPRule(3, 3).double(), lambda: sg.rules.HebbianRule(), lambda: sg.rules.StaticRule()):
        torch.manual_seed(0)
        rule = make()
        runs = []
        for g in (dense, sparse):
            rule.zero_grad()
            run = sg.simulate(rule, g, u)
            run.outputs.square().sum().backward() if any(p.requires_grad for p in rule.parameters()) else None
            runs.append((run, [p.grad.clone() for p in rule.parameters() if p.grad is not None]))
        (rd, gd), (rs, gs) = runs
        torch.testing.assert_close(rd.outputs, rs.outputs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rd.state["edge"], rs.state["edge"], rtol=1e-5, atol=1e-5)
        for a, b in zip(gd, gs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_sparse_products_pass_gradcheck_and_double_backward():
    """The CSR path of propagate / propagate_back (a custom autograd Function) against finite
    differences, first and second order, for per-episode, shared and broadcast (stride-0) weights."""
    g = (sg.Network(seed=3).population("a", 5).population("b", 4)
         .connect("a", "b", "pairwise_bernoulli", p=0.6).connect("b", "a", "fixed_indegree", indegree=2)
         .connect("b", "b", "all_to_all", layout="sparse").inputs("a").outputs("b").build())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, g.num_nodes, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    for w in (torch.randn(3, g.num_edges, 2, generator=gen, dtype=torch.float64),
              torch.randn(1, g.num_edges, 2, generator=gen, dtype=torch.float64),
              torch.randn(g.num_edges, 1, generator=gen, dtype=torch.float64)):
        w.requires_grad_()
        xs = x[..., : w.shape[-1]]

        def f(w, x):
            wb = w.unsqueeze(0).expand(3, -1, -1) if w.dim() == 2 else w  # stride-0 batch when shared
            return g.propagate(wb, x) + g.propagate_back(wb, x).square()

        assert torch.autograd.gradcheck(f, (w, xs))
        assert torch.autograd.gradgradcheck(f, (w, xs))


def test_sparse_gathers_pass_gradcheck_and_double_backward():
    """pre/post/edge_map on sparse projections at batch 1 (gradient by a CSR product with the 0/1
    node-by-edge matrix) against finite differences, first and second order, and against batch 2."""
    g = (sg.Network(seed=4).population("a", 5).population("b", 4)
         .connect("a", "b", "pairwise_bernoulli", p=0.6).connect("b", "a", "fixed_indegree", indegree=2)
         .inputs("a").outputs("b").build())
    gen = torch.Generator().manual_seed(0)
    for C in (1, 3):
        x = torch.randn(1, g.num_nodes, C, generator=gen, dtype=torch.float64, requires_grad=True)
        e = torch.randn(1, g.num_edges, C, generator=gen, dtype=torch.float64)

        def f(x):
            return g.pre(x) * g.post(x).sin() + g.edge_map(lambda a, b, w: a * b * w, pre=[x], post=[x.cos()], edge=[e])

        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))
        (g1,) = torch.autograd.grad(f(x).square().sum(), x)
        x2 = x.detach().expand(2, -1, -1).clone().requires_grad_()  # batch 2 takes index_select's own backward
        (g2,) = torch.autograd.grad(f(x2).square().sum(), x2)
        torch.testing.assert_close(g2, g1.expand(2, -1, -1) * 1.0)
