"""Nothing silently wrong (issue 15): monitor records are exact, NaN/inf never slips in, exports
place every tensor where it belongs, and numpy scalars count as numbers."""

import math

import networkx as nx
import numpy as np
import pytest
import torch

import simgraph as sg
from simgraph.errors import ConfigError, DivergenceError, GraphError, ShapeError, UnknownNameError, check_int


def net():
    """Four populations, dense and sparse projections; 'd' receives no synapses."""
    n = sg.Network(seed=3).population("a", 4).population("b", 3).population("c", 2).population("d", 2)
    n.connect("a", "b", "all_to_all")  # dense
    n.connect("b", "b", "fixed_indegree", indegree=2, allow_autapses=False)  # sparse
    n.connect("b", "c", "pairwise_bernoulli", p=0.7)
    n.connect("c", "a", "all_to_all")
    n.connect("d", "b", "fixed_total_number", n=3)
    return n.inputs("a", "d").outputs("c").build()


GRAPH = net()
T, B = 10, 2
RULES = {
    "hebbian": lambda: sg.rules.HebbianRule(learn_from="activity", eta=0.05),
    "mlp": lambda: sg.rules.MLPRule(GRAPH.num_neuron_types, GRAPH.num_synapse_types, node_dim=3, edge_dim=2, hidden=4, type_dim=2),
}


def inputs(rule, seed=0):
    return torch.randn(T, B, GRAPH.num_inputs, rule.input_dim, generator=torch.Generator().manual_seed(seed))


def hand_stepped(rule, u, state=None):
    """The states after each tick, stepping the rule by hand."""
    state = rule.init_state(GRAPH, B) if state is None else state
    states = []
    for t in range(T):
        state = rule.step(GRAPH, state, GRAPH.scatter_inputs(u[t]))
        states.append({k: v.detach().clone() for k, v in state.items()})
    return states


def expected_ids(field, pops):
    """Record ids written out independently of Monitor.ids: node rows in listed order; edges of
    projections into the listed populations, in edge-id order."""
    if pops is None:
        return None
    if field == "node":
        return torch.cat([torch.arange(GRAPH.population(p).start, GRAPH.population(p).stop) for p in pops])
    edges = sorted(e for p in GRAPH.projections.values() if p.post.name in pops for e in range(p.start, p.stop))
    return torch.tensor(edges)


COMBOS = [(f, every, pops) for f in ("node", "edge") for every in (1, 3) for pops in (None, ["c", "a"] if f == "node" else ["b"])]


# ---------------------------------------------------------------------- monitors
@pytest.mark.parametrize("kind", sorted(RULES))
@pytest.mark.parametrize("checkpoint_every", [0, 4])
def test_every_monitor_combination_matches_a_hand_stepped_loop(kind, checkpoint_every):
    rule = RULES[kind]()
    u = inputs(rule)
    monitors = [sg.Monitor(f, every=e, populations=p, name=f"{f}/{e}/{p}") for f, e, p in COMBOS]
    with torch.set_grad_enabled(checkpoint_every > 0):  # checkpointing only acts with gradients on
        run = sg.simulate(rule, GRAPH, u, monitors=monitors, checkpoint_every=checkpoint_every)
    with torch.no_grad():
        states = hand_stepped(rule, u)
    assert list(run.records) == [m.name for m in monitors]
    for mon, (field, every, pops) in zip(monitors, COMBOS):
        ids = expected_ids(field, pops)
        want = torch.stack([s[field] if ids is None else s[field].index_select(1, ids) for s in states[::every]])
        got = run.records[mon.name]
        assert got.shape == want.shape, mon
        torch.testing.assert_close(got, want, msg=str(mon))
        assert (ids is None and mon.ids(GRAPH) is None) or torch.equal(mon.ids(GRAPH), ids)
        alone = sg.simulate(rule, GRAPH, u, monitors=[sg.Monitor(field, every=every, populations=pops)])
        torch.testing.assert_close(alone.records[field], got)  # no interference between monitors


def test_two_monitors_on_one_field_need_their_own_names_and_get_their_own_buffers():
    rule = RULES["hebbian"]()
    u = inputs(rule)
    with pytest.raises(ConfigError, match=r"run.records\['node'\].*name="):
        sg.simulate(rule, GRAPH, u, monitors=[sg.Monitor("node", every=1), sg.Monitor("node", every=5)])
    with pytest.raises(ConfigError, match="name="):  # a name may not collide with another monitor's field either
        sg.simulate(rule, GRAPH, u, monitors=[sg.Monitor("edge"), sg.Monitor("node", name="edge")])
    run = sg.simulate(rule, GRAPH, u, monitors=[sg.Monitor("node", every=1), sg.Monitor("node", every=5, name="node/5"),
                                                 sg.Monitor("node", populations=["b"], name="b")])
    every1, every5, only_b = run.records["node"], run.records["node/5"], run.records["b"]
    assert every1.shape[0] == T and every5.shape[0] == 2 and only_b.shape == (T, B, 3, 1)
    torch.testing.assert_close(every5, every1[::5])  # row 1 is tick 5, not whatever was written last
    torch.testing.assert_close(every1[-1], run.state["node"])  # the whole network, beside a restricted monitor
    torch.testing.assert_close(only_b, every1[:, :, GRAPH.population("b").slice])


def test_edge_monitor_with_populations_records_the_synapses_into_them():
    rule = RULES["hebbian"]()
    run = sg.simulate(rule, GRAPH, inputs(rule), monitors=[sg.Monitor("edge"), sg.Monitor("edge", populations=["c"], name="c")])
    into_c = GRAPH.projection("b->c")
    assert run.records["c"].shape == (T, B, into_c.num_edges, 1)
    torch.testing.assert_close(run.records["c"], run.records["edge"][:, :, into_c.slice])
    with pytest.raises(ConfigError, match="no projection ends in"):  # 'a' -> ... but nothing ends in 'd'
        sg.simulate(rule, GRAPH, inputs(rule), monitors=[sg.Monitor("edge", populations=["d"])])
    with pytest.raises(UnknownNameError, match="did you mean 'b'"):
        sg.simulate(rule, GRAPH, inputs(rule), monitors=[sg.Monitor("edge", populations=["bb"])])


def test_unbatched_edge_state_is_recorded_along_its_edge_axis():
    rule = sg.rules.StaticRule(seed=1)
    state = rule.init_state(GRAPH, B)
    state = {"node": state["node"], "edge": state["edge"][0]}  # [E, 1], shared by the batch
    run = sg.simulate(rule, GRAPH, inputs(rule), state=state, monitors=[sg.Monitor("edge", every=3, populations=["b"])])
    ids = expected_ids("edge", ["b"])
    assert run.records["edge"].shape == (4, len(ids), 1)
    torch.testing.assert_close(run.records["edge"][2], state["edge"][ids])


def test_monitor_arguments_are_checked():
    assert sg.Monitor("node", every=np.int64(2)).every == 2  # numpy ints are ints
    for bad in (dict(populations=[]), dict(populations=["a", "a"]), dict(populations=[1]), dict(name=""), dict(name=3),
                dict(every=2.0), dict(every=True)):
        with pytest.raises(ShapeError, match="Monitor"):
            sg.Monitor("node", **bad)
    with pytest.raises(ConfigError, match="only the 'node' and 'edge'"):
        sg.Monitor("hebb", populations=["a"]).ids(GRAPH)
    with pytest.raises(UnknownNameError, match="state field"):
        sg.simulate(RULES["hebbian"](), GRAPH, ticks=2, batch_size=1, monitors=[sg.Monitor("hebb")])


# ---------------------------------------------------------------------- NaN and inf
@pytest.mark.parametrize("key", ["node", "edge"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_given_state_with_nan_or_inf_is_refused_naming_the_field(key, bad):
    rule = RULES["hebbian"]()
    state = {k: v.clone() for k, v in rule.init_state(GRAPH, B).items()}
    state[key][1, 2, 0] = bad
    for call in (lambda: sg.simulate(rule, GRAPH, inputs(rule), state=state),
                 lambda: sg.simulate(rule, GRAPH, ticks=3, state=state)):
        with pytest.raises(ShapeError, match=rf"state\['{key}'\] holds NaN or inf \({'NaN' if bad != bad else 'inf'} first, at index \[1, 2, 0\]\)") as exc:
            call()
        assert isinstance(exc.value, DivergenceError)  # what a diverged run hands on: training loops catch it as such


NAN, INF = math.nan, math.inf
BAD_HYPERPARAMETERS = [
    (sg.rules.MLPRule, "init_edge_std", [NAN, INF, -1.0, "1.0", None]),
    (sg.rules.MLPRule, "update_scale", [NAN, -INF, "0.1"]),
    (sg.rules.MLPRule, "plastic", ["False", 0]),
    (sg.rules.MLPRule, "seed", [2**64, 1.5, "0"]),
    (sg.rules.HebbianRule, "eta", [NAN, INF, 0.0, -0.1, "0.1", True]),
    (sg.rules.HebbianRule, "beta", [NAN, INF, "1"]),
    (sg.rules.HebbianRule, "input_gain", [NAN, "1"]),
    (lambda **kw: sg.rules.PlasticRule(GRAPH, **kw), "eta", [NAN, INF, "0.01", 1.0]),
    (lambda **kw: sg.rules.PlasticRule(GRAPH, **kw), "init_std", [NAN, INF]),
    (lambda **kw: sg.rules.PlasticRule(GRAPH, **kw), "input_gain", [NAN, -INF, "20"]),
    (lambda **kw: sg.rules.PlasticRule(GRAPH, **kw), "oja", ["False", 1]),
    (sg.rules.StaticRule, "gain", [NAN, INF, "1"]),
    (sg.rules.StaticRule, "input_gain", [NAN, "1"]),
    (sg.rules.StaticRule, "weights", [torch.tensor([1.0, NAN]), [INF], ["x"], torch.zeros(0)]),
    (sg.rules.GenomeRule, "saturation", [NAN, INF, 0.0, "1"]),
    (sg.rules.GenomeRule, "oja", [NAN]),
    (sg.rules.GenomeRule, "sigma", ["tanh"]),
    (sg.rules.LSTMSynapseRule, "init_std", [NAN, INF]),
]


@pytest.mark.parametrize("make,name,values", BAD_HYPERPARAMETERS,
                         ids=[f"{getattr(m, '__name__', 'PlasticRule').replace('<lambda>', 'PlasticRule')}.{n}" for m, n, _ in BAD_HYPERPARAMETERS])
def test_rule_hyperparameters_must_be_finite_numbers_of_the_right_kind(make, name, values):
    for value in values:
        with pytest.raises(ConfigError, match=name):
            make(**{name: value})


def test_numpy_scalars_are_numbers():
    assert check_int("x", np.int64(2), 1) == 2 and type(check_int("x", np.int32(2), 1)) is int
    pairs = [
        (lambda: sg.rules.MLPRule(4, 1, node_dim=3, hidden=4, init_edge_std=0.5, update_scale=0.25, seed=1),
         lambda: sg.rules.MLPRule(np.int64(4), np.int32(1), node_dim=np.int64(3), hidden=np.int64(4),
                                  init_edge_std=np.float64(0.5), update_scale=np.float32(0.25), seed=np.int64(1))),
        (lambda: sg.rules.HebbianRule(eta=0.5, beta=2.0), lambda: sg.rules.HebbianRule(eta=np.float32(0.5), beta=np.float64(2))),
        (lambda: sg.rules.StaticRule(gain=0.5, seed=3), lambda: sg.rules.StaticRule(gain=np.float32(0.5), seed=np.int64(3))),
        (lambda: sg.rules.PlasticRule(GRAPH, eta=0.25, input_gain=2, seed=2),
         lambda: sg.rules.PlasticRule(GRAPH, eta=np.float32(0.25), input_gain=np.int64(2), seed=np.uint8(2), oja=np.bool_(False))),
    ]
    for make_py, make_np in pairs:
        runs = []
        for make in (make_py, make_np):
            with torch.random.fork_rng():
                torch.manual_seed(0)  # MLPRule's layers draw their initial weights from torch's global generator
                rule = make()
            runs.append(sg.simulate(rule, GRAPH, inputs(rule)).outputs)
        torch.testing.assert_close(runs[1], runs[0])


# ---------------------------------------------------------------------- interop
def square():
    """N == E: three neurons, three synapses."""
    return sg.Network().population("a", 3).connect("a", "a", "one_to_one").inputs("a").outputs("a").build()


def test_to_networkx_places_state_by_its_key_when_nodes_and_edges_are_equally_many():
    g = square()
    assert g.num_nodes == g.num_edges == 3
    state = {"node": torch.arange(6.0).view(2, 3, 1), "edge": 10 + torch.arange(6.0).view(2, 3, 1)}
    G = sg.to_networkx(g, state, batch_index=1)
    assert [G.nodes[i]["node"] for i in range(3)] == [[3.0], [4.0], [5.0]] and "edge" not in G.nodes[0]
    assert sorted(d["edge"] for *_, d in G.edges(data=True)) == [[13.0], [14.0], [15.0]]
    assert all("node" not in d for *_, d in G.edges(data=True))
    with pytest.raises(ShapeError, match=r"state\['hebb'\].*either"):
        sg.to_networkx(g, {**state, "hebb": torch.zeros(2, 3, 1)})
    G = sg.to_networkx(g, {**state, "target": torch.zeros(2, 1)})  # not per node or edge: left out, as documented
    assert "target" not in G.nodes[0]


def test_unbatched_states_are_exported_and_wrong_shapes_refused():
    g = GRAPH
    N, E = g.num_nodes, g.num_edges
    node, edge = torch.randn(N, 2), torch.randn(E, 3)
    G = sg.to_networkx(g, {"node": node, "edge": edge})
    assert G.nodes[4]["node"] == pytest.approx(node[4].tolist())
    src, dst = g.edge_index[:, 7].tolist()
    assert G.edges[src, dst, 7]["edge"] == pytest.approx(edge[7].tolist())
    for bad in ({"node": torch.randn(N + 1, 2), "edge": edge}, {"node": node, "edge": torch.randn(2, E - 1, 1)},
                {"node": [1.0], "edge": edge}, {"node": node, "edge": torch.randn(E)}):
        with pytest.raises(ShapeError, match="state"):
            sg.to_networkx(g, bad)
    data = sg.to_pyg(g, {"node": node, "edge": edge})
    assert torch.equal(data.x, node) and torch.equal(data.edge_attr, edge)  # PyG's own [N, D] / [E, D]
    hetero = sg.to_pyg(g, {"node": node, "edge": edge}, hetero=True)
    assert hetero["a"].x.shape == (g.population("a").size, 2)


def test_to_pyg_checks_its_arguments():
    state = RULES["hebbian"]().init_state(GRAPH, B)
    for bad, words in (([1, 2], "dict"), ({}, "missing field 'node'"), ({"node": state["node"]}, "missing field 'edge'"),
                       ({"node": state["node"][:, :-1], "edge": state["edge"]}, r"state\['node'\]"),
                       ({"node": state["node"], "edge": state["edge"][:, 1:]}, r"state\['edge'\]"),
                       ({"node": "x", "edge": state["edge"]}, "Tensor")):
        for hetero in (False, True):
            with pytest.raises(ShapeError, match=words):
                sg.to_pyg(GRAPH, bad, hetero=hetero)
    with pytest.raises(ShapeError, match="hetero"):
        sg.to_pyg(GRAPH, state, hetero="yes")
    with pytest.raises(ShapeError, match="Graph"):
        sg.to_pyg(nx.DiGraph(), state)


def test_from_networkx_undirected_self_loop_is_one_autapse():
    G = nx.Graph()
    G.add_edges_from([(0, 0), (0, 1), (1, 2)])
    g = sg.from_networkx(G, default_type="default")
    pairs = sorted(map(tuple, g.edge_index.t().tolist()))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 2), (2, 1)]


def test_from_networkx_takes_one_population_name_as_a_string():
    G = nx.DiGraph()
    G.add_nodes_from([(0, {"type": "exc"}), (1, {"type": "exc"}), (2, {"type": "inh"})])
    G.add_edges_from([(0, 1), (1, 2), (2, 0)])
    g = sg.from_networkx(G, inputs="exc", outputs="inh")
    assert g.inputs == ("exc",) and g.outputs == ("inh",)
    with pytest.raises(GraphError, match="inputs"):
        sg.from_networkx(G, inputs=3)


def test_networkx_round_trip_needs_no_attribute_names():
    n = sg.Network(seed=2).population("x", 3, neuron_type="in").population("y", 4).population("z", 2, neuron_type="in")
    n.connect("x", "y", synapse_type="exc").connect("y", "z", "fixed_indegree", indegree=2).connect("z", "y", name="back")
    g = n.inputs("x").outputs("z").build()
    back = sg.from_networkx(sg.to_networkx(g))  # x and z share a neuron type: types alone cannot tell them apart
    assert list(back.populations) == list(g.populations) and list(back.projections) == list(g.projections)
    assert torch.equal(back.edge_index, g.edge_index) and back.inputs == g.inputs and back.outputs == g.outputs
