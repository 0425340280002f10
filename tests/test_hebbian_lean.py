"""sg.simulate(HebbianRule(), ..., lean=True): backprop that subtracts the writes again instead of storing them
gives the same values and gradients as plain autograd, on every layout, and stores no [T, E]."""

import pytest
import torch

import simgraph as sg
from simgraph.errors import ConfigError, ShapeError
from simgraph.rules import HebbianRule

D = torch.float64


def net(kind: str, seed: int = 0) -> sg.Graph:
    net = sg.Network(seed).population("a", 6).population("b", 5)
    if kind == "dense":  # one all-to-all projection: the engine's matvec fast path
        net = sg.Network(seed).population("a", 9)
        net.connect("a", "a", "all_to_all")
        return net.inputs("a").outputs("a").build()
    if kind == "uniform":  # every neuron receives 3 synapses (the ELL view)
        net = sg.Network(seed).population("a", 9)
        net.connect("a", "a", "fixed_indegree", indegree=3)
        return net.inputs("a").outputs("a").build()
    net.connect("a", "a", "all_to_all", synapse_type="rec")  # mixed: dense + non-uniform sparse
    net.connect("a", "b", "pairwise_bernoulli", p=0.5, synapse_type="ff")
    net.connect("b", "a", "pairwise_bernoulli", p=0.4, layout="sparse", synapse_type="fb")
    return net.inputs("a").outputs("b", "a").build()


def episode_grads(rule, graph, lean, shared_w0, B=3, T=7):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(T, B, graph.num_inputs, generator=g, dtype=D).requires_grad_()
    x0 = (0.3 * torch.randn(B, graph.num_nodes, 1, generator=g, dtype=D)).requires_grad_()
    w0 = (0.2 * torch.randn(1 if shared_w0 else B, graph.num_edges, 1, generator=g, dtype=D)).requires_grad_()
    run = sg.simulate(rule, graph, u, state={"node": x0, "edge": w0.expand(B, -1, -1) if shared_w0 else w0}, lean=lean)
    weights = torch.linspace(-1, 2, run.outputs.shape[2], dtype=D).view(1, 1, -1, 1)
    loss = (run.outputs * weights).pow(2).sum() + (run.state["edge"] * torch.linspace(0, 1, graph.num_edges, dtype=D).view(1, -1, 1)).sum()
    loss.backward()
    return run.outputs.detach(), run.state["edge"].detach(), u.grad, x0.grad, w0.grad


@pytest.mark.parametrize("kind", ["dense", "uniform", "mixed"])
@pytest.mark.parametrize("learn_from", ["input", "activity"])
@pytest.mark.parametrize("shared_w0", [False, True])
def test_lean_backprop_equals_autograd(kind, learn_from, shared_w0):
    graph = net(kind)
    rule = HebbianRule(beta=0.8, input_gain=0.7, learn_from=learn_from, eta=0.3)
    plain = episode_grads(rule, graph, False, shared_w0)
    lean = episode_grads(rule, graph, True, shared_w0)
    for name, a, b in zip(("outputs", "final edges", "d/du", "d/dx0", "d/dW0"), plain, lean):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


def test_lean_matches_simulate_in_float32_and_default_eta():
    graph = net("mixed")
    u = torch.randn(12, 4, graph.num_inputs)
    a, b = sg.simulate(HebbianRule(), graph, u), sg.simulate(HebbianRule(), graph, u, lean=True)
    torch.testing.assert_close(b.outputs, a.outputs)
    torch.testing.assert_close(b.state["edge"], a.state["edge"])


def test_lean_saves_no_edge_tensor_per_tick():
    """Saved for backward: the inputs and every tick's activity [T, B, N] plus one [B, E] matrix."""
    graph = net("dense")
    B, T = 2, 40
    w0 = torch.zeros(B, graph.num_edges, 1, requires_grad=True)
    saved = {}
    for lean in (False, True):
        numel = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: numel.append(t.numel()) or t, lambda t: t):
            sg.simulate(HebbianRule(learn_from="activity"), graph, torch.randn(T, B, 9), state={"node": torch.zeros(B, 9, 1), "edge": w0}, lean=lean)
        saved[lean] = sum(numel)
    edge_floats = B * graph.num_edges
    assert saved[False] >= T * edge_floats  # plain autograd keeps a matrix per tick
    assert saved[True] <= 2 * (T + 1) * B * 9 + edge_floats


def test_lean_refuses_bad_input_like_simulate():
    graph = net("dense")
    with pytest.raises(ShapeError, match="inputs must have shape"):
        sg.simulate(HebbianRule(), graph, torch.randn(5, 2, 4), lean=True)
    with pytest.raises(ShapeError, match="NaN"):
        sg.simulate(HebbianRule(), graph, torch.full((5, 2, 9), float("nan")), lean=True)
    with pytest.raises(ShapeError, match="batch"):
        sg.simulate(HebbianRule(), graph, torch.randn(5, 2, 9), state=HebbianRule().init_state(graph, 3), lean=True)
    with pytest.raises(ConfigError, match="lean must be"):
        sg.simulate(HebbianRule(), graph, torch.randn(5, 2, 9), lean="yes")
    with pytest.raises(ConfigError, match="lean must be"):
        sg.simulate(sg.rules.PlasticRule(graph), graph, torch.randn(5, 2, 9), lean=1)
