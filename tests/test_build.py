import dataclasses

import pytest
import torch

import simgraph as sg
from simgraph.errors import GraphError, UnknownNameError


def two_pops(seed=0, n_a=20, n_b=30):
    return sg.Network(seed).population("a", n_a).population("b", n_b)


def edges(graph, name):
    p = graph.projection(name)
    pre, post = graph.edge_index[:, p.slice]
    return pre - p.pre.start, post - p.post.start


@pytest.mark.parametrize(
    "rule,kw,count",
    [
        ("all_to_all", {}, 20 * 30),
        ("pairwise_bernoulli", {"p": 0.0}, 0),
        ("pairwise_bernoulli", {"p": 1.0}, 600),
        ("fixed_indegree", {"indegree": 5}, 30 * 5),
        ("fixed_outdegree", {"outdegree": 4}, 20 * 4),
        ("fixed_total_number", {"n": 77}, 77),
        ("explicit", {"pre_idx": [0, 1, 19], "post_idx": [29, 0, 5]}, 3),
    ],
)
def test_connection_rule_counts_and_determinism(rule, kw, count):
    g1 = two_pops().connect("a", "b", rule, **kw).build()
    g2 = two_pops().connect("a", "b", rule, **kw).build()
    assert g1.num_edges == count
    assert torch.equal(g1.edge_index, g2.edge_index)
    pre, post = edges(g1, "a->b")
    assert bool(((pre >= 0) & (pre < 20)).all()) and bool(((post >= 0) & (post < 30)).all())
    # sorted by (post, pre): the sparse layout's invariant
    key = post * 20 + pre
    assert torch.all(key[1:] >= key[:-1])


def test_degree_rules_exact_degrees():
    g = two_pops().connect("a", "b", "fixed_indegree", indegree=7, allow_multapses=False).build()
    _, post = edges(g, "a->b")
    assert torch.all(torch.bincount(post, minlength=30) == 7)
    g = two_pops().connect("a", "b", "fixed_outdegree", outdegree=3).build()
    pre, _ = edges(g, "a->b")
    assert torch.all(torch.bincount(pre, minlength=20) == 3)


def test_bernoulli_rate_and_seed_changes_graph():
    g = sg.Network(0).population("a", 200).connect("a", "a", "pairwise_bernoulli", p=0.1).build()
    assert abs(g.num_edges / 200**2 - 0.1) < 0.01
    other = sg.Network(1).population("a", 200).connect("a", "a", "pairwise_bernoulli", p=0.1).build()
    assert g.num_edges != other.num_edges or not torch.equal(g.edge_index, other.edge_index)


@pytest.mark.parametrize(
    "rule,kw",
    [
        ("all_to_all", {}),
        ("pairwise_bernoulli", {"p": 0.5}),
        ("fixed_indegree", {"indegree": 9}),
        ("fixed_indegree", {"indegree": 9, "allow_multapses": False}),
        ("fixed_outdegree", {"outdegree": 9}),
        ("fixed_outdegree", {"outdegree": 9, "allow_multapses": False}),
        ("fixed_total_number", {"n": 80}),
        ("fixed_total_number", {"n": 80, "allow_multapses": False}),
    ],
)
def test_no_autapses_and_multapses_when_disallowed(rule, kw):
    g = sg.Network(3).population("a", 10).connect("a", "a", rule, allow_autapses=False, **kw).build()
    pre, post = edges(g, "a->a")
    assert not torch.any(pre == post)
    if kw.get("allow_multapses") is False:
        assert len(torch.unique(post * 10 + pre)) == len(pre)


def test_one_to_one_and_layout_choice():
    g = sg.Network().population("a", 5).population("b", 5).connect("a", "b", "one_to_one").build()
    pre, post = edges(g, "a->b")
    assert torch.equal(pre, post) and g.projection("a->b").layout == "sparse"
    g = two_pops().connect("a", "b").build()
    assert g.projection("a->b").layout == "dense"
    g = two_pops().connect("a", "b", layout="sparse").build()
    assert g.projection("a->b").layout == "sparse"
    g = sg.Network().population("a", 4).connect("a", "a", allow_autapses=False).build()
    assert g.projection("a->a").layout == "sparse" and g.num_edges == 12


def test_types_populations_and_device_move():
    net = sg.Network().population("x", 3, neuron_type="in").population("y", 4, neuron_type="hid").population("z", 2, neuron_type="in")
    net.connect("x", "y", synapse_type="exc").connect("y", "z", synapse_type="inh").connect("z", "y", synapse_type="exc")
    g = net.inputs("x").outputs("z").build()
    assert g.neuron_types == ("in", "hid") and g.synapse_types == ("exc", "inh")
    assert g.node_type.tolist() == [0] * 3 + [1] * 4 + [0] * 2
    assert g.num_inputs == 3 and g.num_outputs == 2
    assert g.to("cpu").device.type == "cpu"
    # immutable: a field cannot be rebound (a frozen dataclass), and a size is derived, not settable
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.inputs = ("y",)
    with pytest.raises(AttributeError, match="num_nodes"):
        g.num_nodes = 5
    assert g.num_nodes == 9 and g.inputs == ("x",) and g.edge_index.shape[1] == g.num_edges > 0


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda n: n.connect("a", "nope"), "unknown population 'nope'"),
        (lambda n: n.connect("a", "b", "all_to_al"), "did you mean 'all_to_all'"),
        (lambda n: n.connect("a", "b", "pairwise_bernoulli", p=1.5), "probability"),
        (lambda n: n.connect("a", "b", "pairwise_bernoulli", p=float("nan")), "probability"),
        (lambda n: n.connect("a", "b", "pairwise_bernoulli"), "needs p="),
        (lambda n: n.connect("a", "b", "all_to_all", p=0.3), "does not take p="),
        (lambda n: n.connect("a", "b", "fixed_indegree", indegree=-1), "non-negative"),
        (lambda n: n.connect("a", "b", "fixed_indegree", indegree=21, allow_multapses=False), "exceeds"),
        (lambda n: n.connect("a", "b", "fixed_total_number", n=601, allow_multapses=False), "exceeds"),
        (lambda n: n.connect("a", "b", "explicit", pre_idx=[0, 20], post_idx=[0, 1]), "index 20 out of range for population 'a'"),
        (lambda n: n.connect("a", "b", "explicit", pre_idx=[0, 1], post_idx=[0, -1]), "index -1 out of range"),
        (lambda n: n.connect("a", "b", "explicit", pre_idx=[0, 1], post_idx=[0]), "different lengths"),
        (lambda n: n.connect("a", "b", "explicit", pre_idx=[0.5], post_idx=[0]), "integers"),
        (lambda n: n.connect("a", "b", "one_to_one"), "equal sizes"),
        (lambda n: n.connect("a", "b", "pairwise_bernoulli", p=0.5, layout="dense"), "layout='dense'"),
        (lambda n: n.connect("a", "b", layout="dens"), "did you mean 'dense'"),
        (lambda n: n.connect("a", "b").connect("a", "b"), "already exists"),
        (lambda n: n.population("a", 3), "already exists"),
        (lambda n: n.population("c", 0), "positive int"),
        (lambda n: n.population("c", 2.5), "positive int"),
        (lambda n: n.population("", 2), "non-empty string"),
        (lambda n: n.population(3, 2), "non-empty string"),
        (lambda n: n.inputs("c"), "unknown population 'c'"),
        (lambda n: n.outputs("a", "a"), "twice"),
    ],
)
def test_builder_errors(make, match):
    with pytest.raises(sg.SimgraphError, match=match):
        make(two_pops())


def test_unknown_names_on_graph():
    g = two_pops().connect("a", "b").build()
    with pytest.raises(UnknownNameError, match="did you mean 'a->b'"):
        g.projection("a->c")
    with pytest.raises(UnknownNameError, match="neuron type"):
        g.neuron_type_id("nope")
    with pytest.raises(GraphError):
        sg.Network(seed="x")
    with pytest.raises(GraphError, match="no populations"):
        sg.Network().build()
