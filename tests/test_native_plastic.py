"""The plastic rule's lean episode in C (rules/_native_plastic.py, one all-to-all projection) against
the torch lean episode (``SIMGRAPH_NATIVE=0``) and plain autograd through ``step``: outputs, final
traces and every gradient in float64, for every option (Oja, neuromodulation, learned eta, a batch,
an initial state with gradients, a trace shared by the batch); gradcheck; float32 within rounding;
and where it runs (one all-to-all projection only)."""

import pytest
import torch

import simgraph as sg
from simgraph import topologies
from simgraph.rules import PlasticRule, _lean, _native_plastic

needs_native = pytest.mark.skipif(_native_plastic._library() is None, reason="the C kernel cannot be built here")
pytestmark = needs_native

OPTIONS = [dict(), dict(oja=True), dict(neuromodulated=True), dict(learn_eta=True, eta_per_type=True, oja=True, neuromodulated=True),
           dict(plastic=False)]


def _run(graph, kw, mode, monkeypatch, state=None, dtype=torch.float64, B=3):
    """outputs, final trace and gradients of a fixed random function of both, by ``mode``: native, torch or plain."""
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0" if mode == "torch" else "1")
    rule = PlasticRule(graph, eta=0.1, init_std=0.3, seed=1, **kw).to(dtype)
    u = torch.randn(6, B, graph.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(dtype)
    u.requires_grad_()
    st = None if state is None else {k: v.detach().to(dtype).requires_grad_() for k, v in state.items()}
    calls = []
    real = _native_plastic.forward
    monkeypatch.setattr(_native_plastic, "forward", lambda *a: calls.append(1) or real(*a))
    run = sg.simulate(rule, graph, u, state=st, lean=mode != "plain")
    g = torch.Generator().manual_seed(5)
    loss = (run.outputs * torch.randn(run.outputs.shape, generator=g, dtype=torch.float64).to(dtype)).sum() \
        + (run.state["edge"] * torch.randn(run.state["edge"].shape, generator=g, dtype=torch.float64).to(dtype)).sum()
    wanted = [u, *(st.values() if st else ()), *(p for p in rule.parameters() if p.requires_grad)]
    return run, torch.autograd.grad(loss, wanted), bool(calls)


@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: ",".join(kw) or "plain")
def test_the_c_episode_equals_the_torch_episode_and_plain_autograd(kw, monkeypatch):
    graph = topologies.fully_recurrent(9, autapses=True, seed=0)
    native, g_native, took = _run(graph, kw, "native", monkeypatch)
    assert took
    for mode in ("torch", "plain"):
        other, g_other, took = _run(graph, kw, mode, monkeypatch)
        assert not took
        torch.testing.assert_close(native.outputs, other.outputs, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(native.state["edge"], other.state["edge"], rtol=1e-12, atol=1e-13)
        for a, b in zip(g_native, g_other):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_an_initial_state_with_gradients(shared, monkeypatch):
    graph = topologies.fully_recurrent(6, autapses=True, seed=1)
    g = torch.Generator().manual_seed(3)
    state = {"node": 0.5 * torch.randn(2, 6, 1, generator=g, dtype=torch.float64),
             "edge": 0.3 * torch.randn(1 if shared else 2, 36, 1, generator=g, dtype=torch.float64)}
    native, g_native, took = _run(graph, dict(neuromodulated=True), "native", monkeypatch, state=state, B=2)
    plain, g_plain, _ = _run(graph, dict(neuromodulated=True), "plain", monkeypatch, state=state, B=2)
    assert took
    torch.testing.assert_close(native.outputs, plain.outputs, rtol=1e-12, atol=1e-13)
    for a, b in zip(g_native, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck(monkeypatch):
    monkeypatch.setenv("SIMGRAPH_NATIVE", "1")
    graph = topologies.fully_recurrent(4, autapses=True, seed=0)
    rule = PlasticRule(graph, eta=0.2, init_std=0.5, seed=2, learn_eta=True, neuromodulated=True, oja=True).double()
    names = [n for n, p in rule.named_parameters()]

    class Episode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rule = rule

        def forward(self, u):
            run = sg.simulate(self.rule, graph, u, lean=True)
            return run.outputs, run.state["edge"]

    episode = Episode()
    u = torch.randn(4, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    params = dict(rule.named_parameters())
    f = lambda u, *ts: torch.func.functional_call(episode, {f"rule.{n}": t for n, t in zip(names, ts)}, (u,))  # noqa: E731
    assert torch.autograd.gradcheck(f, (u, *(params[n].detach().clone().requires_grad_() for n in names)), eps=1e-6, atol=1e-6)


def test_float32_within_float32_rounding(monkeypatch):
    graph = topologies.fully_recurrent(40, autapses=True, seed=0)
    kw = dict(neuromodulated=True)
    r64, g64, _ = _run(graph, kw, "native", monkeypatch)
    r32, g32, took = _run(graph, kw, "native", monkeypatch, dtype=torch.float32)
    assert took
    torch.testing.assert_close(r32.outputs.double(), r64.outputs, rtol=1e-4, atol=1e-5)
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


def test_only_one_all_to_all_projection_takes_it(monkeypatch):
    for graph in (topologies.fully_recurrent(8, autapses=False), topologies.sparse_random(12, p=0.5, seed=0)):
        native, g_native, took = _run(graph, {}, "native", monkeypatch)
        assert not took
        plain, g_plain, _ = _run(graph, {}, "plain", monkeypatch)
        torch.testing.assert_close(native.outputs, plain.outputs, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("native", ["1", "0"])
def test_an_episode_whose_undo_would_amplify_rounding_runs_plainly(native, monkeypatch):
    """Each undo divides by 1 - eta: at eta = 0.3 over 100 float32 ticks the lean gradients were NaN (an
    outsider's fuzz). Such an episode runs with plain autograd, with a warning; Miconi's eta = 0.01 stays lean."""
    monkeypatch.setenv("SIMGRAPH_NATIVE", native)
    graph = topologies.fully_recurrent(16, autapses=True)
    u = torch.randn(100, 2, 16, generator=torch.Generator().manual_seed(0))
    grads = {}
    for lean in (True, False):
        rule = PlasticRule(graph, eta=0.3, init_std=0.3, seed=1)
        if lean:
            with pytest.warns(sg.errors.SimgraphWarning, match="plain autograd"):
                out = sg.simulate(rule, graph, u, lean=True).outputs
        else:
            out = sg.simulate(rule, graph, u).outputs
        grads[lean] = torch.autograd.grad(out.square().sum(), [rule.w, rule.alpha])
    for a, b in zip(grads[True], grads[False]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    assert _lean.undo_is_exact(0.01, 106, torch.float32) and not _lean.undo_is_exact(0.2, 100, torch.float32)
    assert _lean.undo_is_exact(0.3, 50, torch.float64) and not _lean.undo_is_exact(0.3, 100, torch.float64)


@pytest.mark.parametrize("rule_name", ["plastic", "plastic_torch", "hebbian"])
def test_double_backward_through_a_lean_episode_is_a_clear_error(rule_name, monkeypatch):
    """The lean backward passes run without autograd: a create_graph gradient would carry no graph (a
    gradient penalty would silently add nothing; outsider's fuzz), so it is refused by name."""
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0" if rule_name == "plastic_torch" else "1")
    graph = topologies.fully_recurrent(6, autapses=True)
    rule = sg.rules.HebbianRule() if rule_name == "hebbian" else PlasticRule(graph, eta=0.1, init_std=0.3)
    state = {k: v.detach().clone().requires_grad_() for k, v in rule.init_state(graph, 2).items()}
    out = sg.simulate(rule, graph, torch.randn(5, 2, 6), state=state, lean=True).outputs
    with pytest.raises(sg.errors.ConfigError, match="no double backward"):
        torch.autograd.grad(out.sin().sum(), [state["edge"]], create_graph=True)
