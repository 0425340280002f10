import networkx as nx
import pytest
import torch

import simgraph as sg
import topologies
from simgraph.errors import GraphError, ShapeError


def typed_net():
    net = sg.Network(4).population("in", 5, neuron_type="input").population("mem", 12, neuron_type="memory")
    net.population("out", 3, neuron_type="output")
    net.connect("in", "mem", "fixed_indegree", indegree=2, synapse_type="afferent")
    net.connect("mem", "mem", "all_to_all", synapse_type="recurrent")
    net.connect("mem", "out", "pairwise_bernoulli", p=0.5, synapse_type="efferent")
    net.connect("in", "mem", "fixed_total_number", n=7, synapse_type="afferent", name="extra")
    return net.inputs("in").outputs("out").build()


def test_networkx_round_trip_keeps_everything():
    g = typed_net()
    G = sg.to_networkx(g)
    assert isinstance(G, nx.MultiDiGraph)
    assert G.number_of_nodes() == g.num_nodes and G.number_of_edges() == g.num_edges
    assert G.nodes[0]["type"] == "input" and G.nodes[6]["population"] == "mem"
    back = sg.from_networkx(G, population_attr="population", projection_attr="projection")
    assert list(back.populations) == list(g.populations)
    assert list(back.projections) == list(g.projections)
    assert torch.equal(back.edge_index, g.edge_index)
    assert torch.equal(back.node_type, g.node_type) and torch.equal(back.edge_type, g.edge_type)
    assert back.neuron_types == g.neuron_types and back.synapse_types == g.synapse_types
    assert back.inputs == g.inputs and back.outputs == g.outputs
    assert [p.layout for p in back.projections.values()] == [p.layout for p in g.projections.values()]


def test_states_become_attributes_of_one_episode():
    g = topologies.fully_recurrent(4)
    run = sg.simulate(sg.rules.HebbianRule(), g, torch.randn(3, 2, 4))
    G = sg.to_networkx(g, run.state, batch_index=1)
    assert G.nodes[2]["node"] == pytest.approx(run.state["node"][1, 2].tolist())
    u, v, k = 1, 3, 3 * 4 + 1  # dense edge id = post * n_pre + pre
    assert G.edges[u, v, k]["edge"] == pytest.approx(run.state["edge"][1, k].tolist())
    with pytest.raises(ShapeError, match="batch_index 5"):
        sg.to_networkx(g, run.state, batch_index=5)


def test_from_any_networkx_graph_groups_types():
    G = nx.karate_club_graph()  # undirected, 'club' attribute as neuron type
    g = sg.from_networkx(G, node_type_attr="club")
    assert set(g.neuron_types) == {"Mr. Hi", "Officer"}
    assert g.num_edges == 2 * G.number_of_edges()
    labels = list(g.node_labels)
    src, dst = g.edge_index
    got = {(labels[a], labels[b]) for a, b in zip(src.tolist(), dst.tolist())}
    assert got == {(u, v) for u, v in G.edges()} | {(v, u) for u, v in G.edges()}
    with pytest.raises(GraphError, match="no nodes"):
        sg.from_networkx(nx.DiGraph())
    with pytest.raises(GraphError, match="networkx graph"):
        sg.from_networkx([(0, 1)])


def test_to_pyg_data_and_heterodata():
    g = typed_net()
    rule = sg.rules.HebbianRule()
    run = sg.simulate(rule, g, torch.randn(2, 3, g.num_inputs))
    data = sg.to_pyg(g, run.state)
    assert torch.equal(data.edge_index, g.edge_index) and data.num_nodes == g.num_nodes
    assert data.x.shape == (g.num_nodes, 3, 1) and data.edge_attr.shape == (g.num_edges, 3, 1)
    hetero = sg.to_pyg(g, run.state, hetero=True)
    assert hetero["memory"].num_nodes == 12
    assert hetero["input", "afferent", "memory"].edge_index.shape[1] == g.projection("in->mem").num_edges + 7
    assert hetero["memory", "recurrent", "memory"].edge_attr.shape == (144, 3, 1)
