"""Schedules as data: phase order, restricted views, and what the order does to signals."""

import pytest
import torch

from simgraph.errors import ConfigError, GraphError, UnknownNameError
from simgraph.rules.genome import backprop_genome
from simgraph.schedule import Phase, Schedule, make_schedule, restrict, set_edges

from test_genome import SIZES, layered


def test_layer_sweep_order():
    graph = layered()
    s = Schedule.layer_sweep(graph)
    names = ["layer0->layer1", "layer1->layer2", "layer2->layer3"]
    assert [(p.projections, p.direction, p.populations, p.learn) for p in s.phases] == [
        ((names[0],), "forward", ("layer1",), False),
        ((names[1],), "forward", ("layer2",), False),
        ((names[2],), "forward", ("layer3",), False),
        ((names[2],), "backward", ("layer2",), True),
        ((names[1],), "backward", ("layer1",), True),
        ((names[0],), "backward", ("layer0",), True),
    ]
    fwd, rest = s.split()
    assert len(fwd) == 3 and rest[0].direction == "backward"
    sync = Schedule.synchronous(graph)
    assert len(sync.phases) == 1 and sync.phases[0].projections == tuple(names) and sync.phases[0].direction == "both"
    assert sync.split() == ((), sync.phases)


def mlp_out(graph, state, x):
    h = x
    for i, p in enumerate(graph.projections.values()):
        W = state["edge"][:, p.slice, 0].reshape(-1, p.post.size, p.pre.size)
        h = torch.einsum("bpq,bq->bp", W, h)
        h = torch.relu(h) if i < len(graph.projections) - 1 else h
    return h


def test_sweep_reaches_output_in_one_tick_synchronous_in_depth_ticks():
    graph = layered()
    x = torch.randn(2, SIZES[0], dtype=torch.float64)
    u = graph.scatter_inputs(x.unsqueeze(-1))
    for schedule, ticks_needed in (("layer_sweep", 1), ("synchronous", 3)):
        rule = backprop_genome(lr=0.0, schedule=schedule).double()  # frozen weights
        state = rule.init_state(graph, 2)
        want = mlp_out(graph, state, x)
        for t in range(1, 4):
            state = rule.step(graph, state, u)
            close = torch.allclose(rule.readout(graph, state), want)
            assert close == (t >= ticks_needed), (schedule, t)


def test_restrict_and_set_edges():
    for layout in ("dense", "sparse"):
        graph = layered(layout=layout)
        name = "layer1->layer2"
        view = restrict(graph, [name])
        assert list(view.projections) == [name] and restrict(graph, [name]) is view  # cached
        p = graph.projections[name]
        x = torch.randn(2, graph.num_nodes, 1)
        w = torch.randn(2, graph.num_edges, 1)
        full = graph.propagate(w, x)
        only = view.propagate(w, x)
        torch.testing.assert_close(only[:, p.post.slice], full[:, p.post.slice])
        assert only[:, : p.post.start].abs().sum() == 0 and only[:, p.post.stop :].abs().sum() == 0
        assert view.in_degree()[p.post.slice].eq(p.pre.size).all() and view.in_degree().sum() == p.num_edges
        part = view.edge_map(lambda e: e + 1, edge=[w])
        assert part.shape[1] == p.num_edges
        out = set_edges(graph, w, view, part)
        torch.testing.assert_close(out[:, p.slice], w[:, p.slice] + 1)
        torch.testing.assert_close(out[:, : p.start], w[:, : p.start])
        torch.testing.assert_close(out[:, p.stop :], w[:, p.stop :])


def test_errors():
    graph = layered()
    with pytest.raises(UnknownNameError):
        restrict(graph, ["layer0->layer9"])
    with pytest.raises(GraphError):
        restrict(graph, ["layer0->layer1", "layer0->layer1"])
    with pytest.raises(UnknownNameError):
        Phase(("layer0->layer1",), "sideways", ("layer1",))
    with pytest.raises(UnknownNameError):
        make_schedule("zigzag", graph)
    with pytest.raises(ConfigError):
        make_schedule(3, graph)
    with pytest.raises(ConfigError):
        Schedule(())
    with pytest.raises(UnknownNameError):  # a phase naming a population the graph lacks
        make_schedule(Schedule((Phase(("layer0->layer1",), "forward", ("cortex",)),)), graph)
