"""The MLP rule's fused synapse function (rules/_fused.py) against the plain autograd version:
gradcheck in float64 on the shapes every layout hands it, the rule on every layout and both
starts, the compiled kernels, double backward, and no graph break in the kernels."""

import pytest
import torch

import simgraph as sg
from simgraph.bench import suite
from simgraph.rules import MLPRule, _fused

H, DE = 3, 2


def _views(layout: str, hebbian: bool, seed: int = 0):
    """Inputs shaped as ``graph.edge_map`` hands them to the synapse function on each layout."""
    g = torch.Generator().manual_seed(seed)
    B, n_post, n_pre, E, S, k = 2, 3, 4, 5, 2, 3
    pre, post, edge, syn = {
        "dense": ((B, 1, n_pre), (B, n_post, 1), (B, n_post, n_pre), (1, 1, 1)),
        "sparse": ((B, E), (B, E), (B, E), (1, E)),  # gathered rows; one type row per edge (a typed block)
        "ell": ((B, S, k), (B, S, 1), (B, S, k), (1, 1, 1)),  # k synapses per post neuron
        "shared_edge": ((B, E), (B, E), (1, E), (1, 1)),  # one edge state for the whole batch
    }[layout]
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x = [r(*pre, H), r(*pre, H), r(*post, H), r(*post, H), 0.5 * r(*post, H), r(*edge, DE), r(*syn, H),
         0.7 * r(H, DE), 0.5 * r(DE, H), r(DE)]
    if hebbian:
        x += [r(DE), r(*pre, 1), r(*post, 1), r(DE)]  # residual scale, q_j, q_i, the write's rates
    return x


@pytest.mark.parametrize("layout", ["dense", "sparse", "ell", "shared_edge"])
@pytest.mark.parametrize("hebbian", [False, True], ids=["random", "hebbian"])
def test_fused_gradcheck_and_equal_to_plain(layout, hebbian):
    x = [t.requires_grad_() for t in _views(layout, hebbian)]
    extra = x[10:] if hebbian else [None] * 4

    def fused(*t):
        return _fused.EdgeUpdate.apply(False, *t[:10], *(t[10:] if hebbian else extra))

    assert torch.autograd.gradcheck(fused, x, eps=1e-6, atol=1e-7)
    want = _fused.reference(*x[:10], *extra)
    got = fused(*x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, x, go), torch.autograd.grad(want, x, go)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("layout", ["sparse", "ell"])
def test_type_ids_gather_the_table_inside_the_kernel(layout, compiled):
    """``sid``: the synapse-type table ``[S, H]`` and per-edge type ids (what the rule passes on a
    graph of several synapse types) give the values and gradients of per-edge rows gathered first."""
    x = _views(layout, True, seed=3)
    shape = {"sparse": (1, 5, 1), "ell": (1, 2, 3, 1)}[layout]
    sid = torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(4))
    x[6] = torch.randn(3, H, dtype=torch.float64)  # the table
    x = [t.requires_grad_() for t in x]
    fused = lambda *t: _fused.EdgeUpdate.apply(compiled, *t, sid)  # noqa: E731
    if not compiled:
        assert torch.autograd.gradcheck(fused, x, eps=1e-6, atol=1e-7)
    rows = x[6][sid.squeeze(-1)]
    want = _fused.reference(*x[:6], rows, *x[7:])
    got = fused(*x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, x, go), torch.autograd.grad(want, x, go)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    if compiled:  # the gather and the per-type sums stay inside one graph each
        import torch._dynamo as dynamo

        d = [t.detach() for t in x]
        args = (*d[:7], d[7].t().contiguous(), *d[8:], sid)
        for fn, call in ((_fused.forward_math, args), (_fused.backward_math, (go, (True,) * 14, *args))):
            dynamo.reset()
            explained = dynamo.explain(fn)(*call)
            assert explained.graph_break_count == 0 and explained.graph_count == 1, fn.__name__


def test_rule_on_a_typed_graph_passes_type_ids_to_the_fused_kernels():
    """On a graph of several synapse types the fused rule hands the kernels type ids (no per-edge rows):
    compiled against plain, float64, values and gradients (the table's included)."""
    typed, _ = suite.make_typed_graphs(24, 150, populations=3, projections=5)
    assert typed.num_synapse_types > 1
    probe = MLPRule(1, typed.num_synapse_types)
    assert probe._type_ids(typed, "compiled") is not None and probe._type_ids(typed, "fused") is not None
    # plain, and auto on a tick too small to compile (which runs plain), keep the per-edge rows
    assert probe._type_ids(typed, "plain") is None and probe._type_ids(typed, "auto", 2) is None
    runs = {}
    for mode in ("plain", "compiled"):
        torch.manual_seed(0)
        rule = MLPRule(typed.num_neuron_types, typed.num_synapse_types, edge_update=mode).double()
        with torch.no_grad():
            rule.synapse_embedding.normal_()
        u = torch.randn(4, 2, typed.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        out = sg.simulate(rule, typed, u).outputs
        runs[mode] = (out, torch.autograd.grad(out.square().sum(), [rule.synapse_embedding, rule.edge_in.weight]))
    torch.testing.assert_close(runs["compiled"][0], runs["plain"][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(runs["compiled"][1], runs["plain"][1]):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_double_backward_runs_the_reference():
    x = [t.requires_grad_() for t in _views("dense", True)]
    assert torch.autograd.gradgradcheck(lambda *t: _fused.EdgeUpdate.apply(False, *t), x, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("keep", [True, False], ids=["hidden_kept", "hidden_recomputed"])
def test_compiled_kernels_equal_the_reference_without_graph_breaks(keep, monkeypatch):
    """The compiled mode (inductor) and the kernels' single graph, with the forward's hidden layer
    kept for the backward (small ticks) and recomputed (large ones); a kernel that cannot compile
    would fall back to the eager one with a warning, which this test would see."""
    import warnings

    import torch._dynamo as dynamo

    monkeypatch.setattr(_fused, "SAVE_HIDDEN_MAX", 2**40 if keep else 0)
    x = [t.requires_grad_() for t in _views("dense", True, seed=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.errors.SimgraphWarning)
        got = _fused.edge_update("compiled", *x)
        go = torch.randn_like(got)
        grads = torch.autograd.grad(got, x, go)
    want = _fused.reference(*x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, torch.autograd.grad(want, x, go)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    d = [t.detach() for t in x]
    args = (*d[:7], d[7].t().contiguous(), *d[8:])
    h = _fused.forward_math(*args, None, True)[1]
    calls = ((_fused.forward_math, (*args, None, True)), (_fused.backward_math, (go, (True,) * 14, *args, None, h))) if keep \
        else ((_fused.forward_math, args), (_fused.backward_math, (go, (True,) * 14, *args)))
    for fn, call in calls:
        dynamo.reset()
        explained = dynamo.explain(fn)(*call)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, fn.__name__


def _graphs():
    typed, _ = suite.make_typed_graphs(24, 150, populations=3, projections=5)
    nonuniform = (sg.Network(seed=0).population("n", 20)
                  .connect("n", "n", "pairwise_bernoulli", p=0.3).inputs("n").outputs("n").build())
    return {"dense": suite.make_graph("dense", 8), "ell": suite.make_graph("sparse", 30, 0.1), "csr": nonuniform,
            "typed": typed}


@pytest.mark.parametrize("start", ["random", "hebbian"])
def test_rule_gives_the_plain_values_and_gradients_on_every_layout(start):
    """simulate + backward through the MLP rule, fused against plain, float64, every layout:
    dense views, ELL, non-uniform CSR, the merged block of a typed graph (per-edge type rows)."""
    for name, graph in _graphs().items():
        runs = {}
        for mode in ("plain", "fused"):
            torch.manual_seed(0)
            kw = dict(start="hebbian", learn_from="activity", init_weight_std=1.0) if start == "hebbian" else {}
            rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types, node_dim=3, edge_dim=2, hidden=4,
                           type_dim=2, edge_update=mode, **kw).double()
            u = torch.randn(5, 2, graph.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            out = sg.simulate(rule, graph, u).outputs
            params = [p for p in rule.parameters() if p.requires_grad]
            runs[mode] = (out, torch.autograd.grad(out.square().sum(), params, allow_unused=True))
        torch.testing.assert_close(runs["fused"][0], runs["plain"][0], rtol=1e-12, atol=1e-12, msg=name)
        for a, b in zip(runs["fused"][1], runs["plain"][1]):
            if b is None:
                assert a is None or not a.any(), name
            else:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_modes_are_checked():
    with pytest.raises(sg.errors.SimgraphError, match="edge_update .fast"):
        MLPRule(edge_update="fast")
    assert MLPRule(edge_update="plain").edge_update == "plain"
    assert MLPRule().edge_update == _fused.default_mode()


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["fused", "compiled"])
def test_fused_on_cuda_equals_the_reference(mode):
    """On a GPU the compiled kernels are Triton's: the same values and gradients as the reference."""
    x = [t.cuda().requires_grad_() for t in _views("dense", True, seed=2)]
    got = _fused.edge_update(mode, *x)
    want = _fused.reference(*x)
    go = torch.randn_like(want)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, x, go), torch.autograd.grad(want, x, go)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
