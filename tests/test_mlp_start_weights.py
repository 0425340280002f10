"""Issue 16: the Hebbian-start MLP rule starts its weight channel from a graph's measured strengths
the way the Hebbian rule does (rules/constraints.py), so it is still the Hebbian rule, output
for output, on an imported network."""

import dataclasses

import pytest
import torch

import simgraph as sg
from simgraph.errors import ConfigError, GraphError
from simgraph.rules.constraints import constrain_start, start_weights
from simgraph.topologies import fully_recurrent


def weighted(graph, signed=False):
    g = torch.Generator().manual_seed(3)
    w = torch.rand(graph.num_edges, generator=g) * 4 + 0.5  # e.g. contact counts
    sign = (torch.randint(0, 2, (graph.num_edges,), generator=g) * 2 - 1).float() if signed else None
    return dataclasses.replace(graph, edge_weight=w, edge_sign=sign, _cache={})


@pytest.mark.parametrize("signed", [False, True])
def test_weight_channel_starts_from_the_measured_strengths(signed):
    graph = weighted(fully_recurrent(10), signed)
    rule = sg.rules.MLPRule(start="hebbian", init_weight_std=1.0)  # measured strengths win over the random pattern
    w0 = rule.init_state(graph, 2)["edge"][..., 0]
    want = constrain_start(graph, start_weights(graph, "test", "auto"))[:, 0]
    torch.testing.assert_close(w0, want.expand(2, -1))
    torch.testing.assert_close(w0, sg.rules.HebbianRule().init_state(graph, 2)["edge"][..., 0])
    if signed:  # Dale's law at the start: each signed synapse on its side of zero
        s = graph.edge_sign
        assert bool((w0[0] * s >= 0).all())
    # "default" ignores them: the rule's own start (here the random pattern)
    other = sg.rules.MLPRule(start="hebbian", init_weight_std=1.0, init_weights="default").init_state(graph, 1)["edge"]
    assert not torch.allclose(other[0, :, 0], w0[0])


def test_still_the_hebbian_rule_on_an_imported_network():
    graph = weighted(fully_recurrent(12))
    ep = sg.tasks.RecallTask(num_patterns=3, bits=12).sample(3, seed=1)
    with torch.no_grad():
        want = sg.simulate(sg.rules.HebbianRule(beta=0.3), graph, ep.inputs).outputs
        got = sg.simulate(sg.rules.MLPRule(start="hebbian", beta=0.3), graph, ep.inputs).outputs
        zero_start = sg.simulate(sg.rules.MLPRule(start="hebbian", beta=0.3, init_weights="default"), graph, ep.inputs).outputs
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert (zero_start - want).abs().max() > 1e-3  # the measured strengths changed what the net does


def test_init_weights_is_checked():
    with pytest.raises(ConfigError, match="start='hebbian'"):
        sg.rules.MLPRule(init_weights="edge_weight")  # the random start has no weight channel
    with pytest.raises(sg.errors.SimgraphError, match="init_weights"):
        sg.rules.MLPRule(start="hebbian", init_weights="measured")
    with pytest.raises(GraphError, match="edge_weight"):
        sg.rules.MLPRule(start="hebbian", init_weights="edge_weight").init_state(fully_recurrent(4), 1)
