import pytest
import torch

import simgraph as sg
import topologies
from simgraph.errors import ConfigError, ShapeError, UnknownNameError


def hopfield_episode(n=100, K=5, B=8, seed=0, cue_ticks=6):
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (B, K, n), generator=gen).float() * 2 - 1
    which = torch.randint(0, K, (B,), generator=gen)
    target = patterns[torch.arange(B), which]
    given = (torch.rand(B, n, generator=gen) < 0.5).float()
    inputs = torch.cat([patterns.transpose(0, 1), torch.zeros(3, B, n), (target * given).expand(cue_ticks, -1, -1)])
    return inputs, target, given


def test_hebbian_rule_stores_and_retrieves_patterns_in_a_hopfield_net(device):
    g = topologies.hopfield(100, device=device)
    inputs, target, given = hopfield_episode()
    run = sg.simulate(sg.rules.HebbianRule(), g, inputs.to(device))
    recalled = run.outputs[-1, ..., 0].sign().cpu()
    hidden = 1 - given
    acc = ((recalled == target).float() * hidden).sum() / hidden.sum()
    assert acc > 0.97
    # the same net with frozen (static) synapses cannot complete the hidden bits
    run = sg.simulate(sg.rules.StaticRule(), g, inputs.to(device))
    acc_static = ((run.outputs[-1, ..., 0].sign().cpu() == target).float() * hidden).sum() / hidden.sum()
    assert acc_static < 0.7


def test_hebbian_weights_are_the_outer_product():
    g = topologies.fully_recurrent(6)
    p = torch.tensor([[1.0, -1, 1, 1, -1, -1]])
    run = sg.simulate(sg.rules.HebbianRule(eta=0.5), g, p.unsqueeze(0))
    w = run.state["edge"][0, :, 0].view(6, 6)  # dense all-to-all: [post, pre]
    torch.testing.assert_close(w, 0.5 * torch.outer(p[0], p[0]))


def test_static_rule_never_changes_edges():
    g = topologies.sparse_random(30, 0.2)
    rule = sg.rules.StaticRule()
    s0 = rule.init_state(g, 2)
    run = sg.simulate(rule, g, torch.randn(10, 2, 30), state=dict(s0))
    assert torch.equal(run.state["edge"], s0["edge"])
    assert run.state["node"].abs().sum() > 0


def test_mlp_rule_runs_learns_gradients_and_types(device):
    g = topologies.recall_network(4, 16, 4, device=device)
    rule = sg.rules.MLPRule(g.num_neuron_types, g.num_synapse_types).to(device)
    run = sg.simulate(rule, g, torch.randn(20, 3, 4, device=device))
    assert run.outputs.shape == (20, 3, 4, 1)
    e0 = rule.init_state(g, 3)["edge"]
    assert (run.state["edge"] - e0).abs().max() > 0  # synapses changed
    run.outputs.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rule.parameters())
    frozen = sg.rules.MLPRule(3, 3, plastic=False).to(device)
    run = sg.simulate(frozen, g, torch.randn(5, 3, 4, device=device))
    assert torch.equal(run.state["edge"], frozen.init_state(g, 3)["edge"])


def test_mlp_rule_type_embeddings_matter():
    g = topologies.recall_network(4, 16, 4)
    u = torch.randn(10, 2, 4)
    typed = sg.rules.MLPRule(3, 3)
    untyped = sg.rules.MLPRule(3, 3, use_types=False)
    untyped.load_state_dict(typed.state_dict())
    assert not torch.allclose(sg.simulate(typed, g, u).outputs, sg.simulate(untyped, g, u).outputs)
    with pytest.raises(ConfigError, match="neuron types"):
        sg.simulate(sg.rules.MLPRule(1, 3), g, u)
    with pytest.raises(ConfigError, match="positive int"):
        sg.rules.MLPRule(node_dim=0)


def test_monitors_record_every_k_ticks():
    g = topologies.fully_recurrent(8)
    u = torch.randn(10, 2, 8)
    run = sg.simulate(sg.rules.HebbianRule(), g, u, monitors=[sg.Monitor("node", every=3), sg.Monitor("edge", every=5)])
    assert run.records["node"].shape == (4, 2, 8, 1)  # ticks 0, 3, 6, 9
    assert run.records["edge"].shape == (2, 2, 64, 1)
    full = sg.simulate(sg.rules.HebbianRule(), g, u, monitors=[sg.Monitor("node")])
    torch.testing.assert_close(run.records["node"], full.records["node"][::3])
    torch.testing.assert_close(full.records["node"][-1], full.state["node"])
    part = sg.simulate(sg.rules.HebbianRule(), g, u, monitors=[sg.Monitor("node", populations=["neurons"])])
    assert part.records["node"].shape == (10, 2, 8, 1)
    with pytest.raises(UnknownNameError, match="did you mean 'node'"):
        sg.simulate(sg.rules.HebbianRule(), g, u, monitors=[sg.Monitor("nodes")])
    with pytest.raises(ShapeError, match="every"):
        sg.Monitor("node", every=0)


def test_run_continues_from_a_state_and_without_inputs():
    g = topologies.fully_recurrent(8)
    rule, u = sg.rules.HebbianRule(), torch.randn(10, 2, 8)
    whole = sg.simulate(rule, g, u)
    first = sg.simulate(rule, g, u[:4])
    second = sg.simulate(rule, g, u[4:], state=first.state)
    torch.testing.assert_close(torch.cat([first.outputs, second.outputs]), whole.outputs)
    free = sg.simulate(rule, g, ticks=5, batch_size=2)
    assert free.outputs.shape == (5, 2, 8, 1)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(5, 2, 7), r"shape \[T, B, 8, 1\]"),
        (torch.randn(5, 8), r"shape"),
        (torch.ones(5, 2, 8, dtype=torch.long), "floating point"),
        (torch.full((5, 2, 8), float("nan")), "NaN or inf .first at tick 0"),
        ([[1.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_before_running(bad, match):
    g = topologies.fully_recurrent(8)
    with pytest.raises(ShapeError, match=match):
        sg.simulate(sg.rules.HebbianRule(), g, bad)


def test_bad_states_raise():
    g = topologies.fully_recurrent(8)
    rule, u = sg.rules.HebbianRule(), torch.randn(5, 2, 8)
    good = rule.init_state(g, 2)
    with pytest.raises(ShapeError, match="missing field 'edge'"):
        sg.simulate(rule, g, u, state={"node": good["node"]})
    with pytest.raises(ShapeError, match=r"state\['node'\] must have shape"):
        sg.simulate(rule, g, u, state={**good, "node": torch.zeros(2, 9, 1)})
    with pytest.raises(ShapeError, match=r"state\['edge'\] must have shape"):
        sg.simulate(rule, g, u, state={**good, "edge": torch.zeros(2, 63, 1)})
    with pytest.raises(ShapeError, match="floating"):
        sg.simulate(rule, g, u, state={**good, "edge": torch.zeros(2, 64, 1, dtype=torch.int64)})
    with pytest.raises(ShapeError, match="batch"):
        sg.simulate(rule, g, u, state=rule.init_state(g, 3))
    with pytest.raises(ShapeError, match="Graph"):
        sg.simulate(rule, "not a graph", u)


@pytest.mark.gpu
def test_cpu_tensors_on_a_gpu_graph_are_refused():
    g = topologies.fully_recurrent(8, device="cuda")
    with pytest.raises(ShapeError, match="graph is on cuda"):
        sg.simulate(sg.rules.HebbianRule(), g, torch.randn(5, 2, 8))


def test_every_topology_builds_and_runs():
    for name, make in topologies.TOPOLOGIES.items():
        g = make()
        assert g.num_nodes > 0 and g.num_edges > 0, name
        assert torch.equal(make().edge_index, g.edge_index), f"{name} is not deterministic"
        rule = sg.rules.MLPRule(g.num_neuron_types, g.num_synapse_types)
        run = sg.simulate(rule, g, torch.randn(3, 2, g.num_inputs))
        assert torch.isfinite(run.outputs).all(), name
