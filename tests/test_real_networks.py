"""Real networks in and out (issue 16): a small connectome-shaped graph built here (named neurons in
sensory / inter / motor classes, chemical synapses with contact counts and parallel edges, an
undirected gap-junction part), imported with weights, exported with labels, saved and read back."""

import json

import networkx as nx
import pytest
import torch

import simgraph as sg
from simgraph.errors import GraphError, ShapeError, UnknownNameError

CLASSES = {"ASHL": "sensory", "ASHR": "sensory", "AWCL": "sensory", "AWCR": "sensory",
           "AVAL": "inter", "AVAR": "inter", "AIYL": "inter", "AIYR": "inter",
           "VA01": "motor", "VA02": "motor", "DA01": "motor", "DB01": "motor"}
CHEMICAL = [("ASHL", "AVAL", 5), ("ASHR", "AVAR", 4), ("AWCL", "AIYL", 7), ("AWCR", "AIYR", 6),
            ("ASHL", "AVAL", 2), ("AIYL", "AVAL", 1), ("AIYR", "AVAR", 3), ("AVAL", "VA01", 9),
            ("AVAR", "VA02", 8), ("AVAL", "DA01", 2), ("AVAL", "DA01", 3), ("AIYL", "DB01", 1),
            ("ASHR", "AVAL", 1)]
GAPS = [("AVAL", "AVAR", 4), ("VA01", "VA02", 1), ("ASHL", "ASHR", 2)]


def connectome(nodes_typed: bool = True) -> nx.MultiDiGraph:
    """Chemical synapses (directed, parallel edges ASHL->AVAL and AVAL->DA01) plus gap junctions
    from an undirected graph, as two directed edges of synapse type 'gap' each."""
    G = nx.MultiDiGraph()
    order = ["AVAL", "ASHL", "VA01", "AIYL", "ASHR", "AVAR", "DA01", "AWCL", "VA02", "AIYR", "AWCR", "DB01"]  # mixed classes
    for name in order:
        G.add_node(name, **({"type": CLASSES[name]} if nodes_typed else {}))
    for u, v, w in CHEMICAL:
        G.add_edge(u, v, type="chemical", weight=w)
    gap = nx.Graph()
    gap.add_weighted_edges_from(GAPS)
    G.add_edges_from((u, v, {"type": "gap", "weight": d["weight"]}) for u, v, d in gap.to_directed().edges(data=True))
    return G


def pairs_with_weights(graph):
    """{(pre label, post label, synapse type): sorted weights} of a simgraph Graph."""
    out: dict = {}
    labels = graph.node_labels
    src, dst = graph.edge_index.tolist()
    for e in range(graph.num_edges):
        key = (labels[src[e]], labels[dst[e]], graph.synapse_types[int(graph.edge_type[e])])
        out.setdefault(key, []).append(float(graph.edge_weight[e]))
    return {k: sorted(v) for k, v in out.items()}


# ---------------------------------------------------------------------- import
def test_weights_follow_simgraph_edge_order_and_parallel_edges_are_kept():
    G = connectome()
    g = sg.from_networkx(G, weight_attr="weight")
    assert set(g.neuron_types) == {"sensory", "inter", "motor"} and g.num_nodes == 12
    assert g.num_edges == G.number_of_edges() == len(CHEMICAL) + 2 * len(GAPS)
    assert g.edge_weight.dtype == torch.float32 and g.edge_weight.shape == (g.num_edges,)
    want: dict = {}
    for u, v, k, d in G.edges(keys=True, data=True):
        want.setdefault((u, v, d["type"]), []).append(float(d["weight"]))
    assert pairs_with_weights(g) == {k: sorted(v) for k, v in want.items()}
    assert pairs_with_weights(g)[("ASHL", "AVAL", "chemical")] == [2.0, 5.0]  # a multapse, kept
    assert pairs_with_weights(g)[("AVAR", "AVAL", "gap")] == pairs_with_weights(g)[("AVAL", "AVAR", "gap")] == [4.0]
    assert sg.from_networkx(G).edge_weight is None  # no weight_attr: no weights
    moved = g.to("cpu")
    assert torch.equal(moved.edge_weight, g.edge_weight)


def test_parallel_sum_merges_multapses_and_counts_without_weights():
    G = connectome()
    g = sg.from_networkx(G, weight_attr="weight", parallel="sum")
    w = pairs_with_weights(g)
    assert w[("ASHL", "AVAL", "chemical")] == [7.0] and w[("AVAL", "DA01", "chemical")] == [5.0]
    assert g.num_edges == G.number_of_edges() - 2
    counts = pairs_with_weights(sg.from_networkx(G, parallel="sum"))
    assert counts[("ASHL", "AVAL", "chemical")] == [2.0] and counts[("AVAL", "VA01", "chemical")] == [1.0]
    with pytest.raises(UnknownNameError, match="parallel"):
        sg.from_networkx(G, parallel="merge")


def test_undirected_graph_weights_go_both_ways():
    gap = nx.Graph()
    gap.add_nodes_from((n, {"type": CLASSES[n]}) for n in CLASSES)
    gap.add_weighted_edges_from(GAPS)
    g = sg.from_networkx(gap, weight_attr="weight")
    w = pairs_with_weights(g)
    assert g.num_edges == 2 * len(GAPS)
    for u, v, x in GAPS:
        assert w[(u, v, "default")] == w[(v, u, "default")] == [float(x)]


def test_a_missing_weight_names_the_edge():
    G = connectome()
    del G.edges["AVAL", "VA01", 0]["weight"]
    with pytest.raises(GraphError, match=r"edge \('AVAL', 'VA01', 0\).*'weight'"):
        sg.from_networkx(G, weight_attr="weight")
    G.edges["AVAL", "VA01", 0]["weight"] = "nine"
    with pytest.raises(GraphError, match="not a finite number"):
        sg.from_networkx(G, weight_attr="weight")
    G.edges["AVAL", "VA01", 0]["weight"] = float("nan")
    with pytest.raises(GraphError, match="AVAL"):
        sg.from_networkx(G, weight_attr="weight")


def test_untyped_nodes_are_refused_unless_a_default_is_named():
    G = connectome(nodes_typed=False)
    with pytest.raises(GraphError, match=r"node 'AVAL' has no 'type' attribute.*default_type"):
        sg.from_networkx(G)
    g = sg.from_networkx(G, default_type="neuron")
    assert g.neuron_types == ("neuron",) and list(g.populations) == ["neuron"]
    G.nodes["ASHL"]["type"] = "sensory"  # partly typed: the others get the default
    g = sg.from_networkx(G, default_type="neuron")
    assert set(g.neuron_types) == {"neuron", "sensory"} and g.population("sensory").size == 1
    G2 = connectome(nodes_typed=False)
    nx.set_node_attributes(G2, CLASSES, "cls")
    assert set(sg.from_networkx(G2, node_type_attr="cls").neuron_types) == {"sensory", "inter", "motor"}


def test_inputs_and_outputs_by_node_label():
    g = sg.from_networkx(connectome(), inputs=["ASHL", "ASHR"], outputs="motor")
    assert [g.node_labels[i] for i in g.input_nodes.tolist()] == ["ASHL", "ASHR"]
    assert g.outputs == ("motor",) and g.num_outputs == 4
    run = sg.simulate(sg.rules.HebbianRule(), g, torch.randn(3, 2, 2))
    assert run.outputs.shape[:3] == (3, 2, 4)


# ---------------------------------------------------------------------- export
def test_to_networkx_uses_labels_and_from_networkx_restores_order():
    g = sg.from_networkx(connectome(), weight_attr="weight").with_io(inputs=["AWCL", "ASHL"], outputs=["VA02", "VA01"])
    G = sg.to_networkx(g)
    assert list(G.nodes) == list(g.node_labels) and G.nodes["ASHL"]["type"] == "sensory"
    assert sorted(d["weight"] for d in G["ASHL"]["AVAL"].values()) == [2.0, 5.0]
    numbered = sg.to_networkx(g, labels=False)
    assert list(numbered.nodes) == list(range(g.num_nodes))
    back = sg.from_networkx(G)
    assert back.node_labels == g.node_labels and torch.equal(back.edge_index, g.edge_index)
    assert torch.equal(back.edge_weight, g.edge_weight) and torch.equal(back.node_type, g.node_type)
    assert torch.equal(back.input_ids, g.input_ids) and torch.equal(back.output_ids, g.output_ids)
    assert back.inputs == g.inputs and back.outputs == g.outputs
    again = sg.from_networkx(numbered)  # numbered nodes: the same network, ids for labels
    assert torch.equal(again.edge_index, g.edge_index) and again.input_ids.tolist() == g.input_ids.tolist()
    with pytest.raises(ShapeError, match="no node labels"):
        sg.to_networkx(sg.Network().population("a", 2).build(), labels=True)


def test_round_trip_keeps_forced_layouts_and_empty_projections():
    net = sg.Network(seed=5).population("a", 3).population("b", 2)
    net.connect("a", "b", "all_to_all", layout="sparse").connect("b", "a", "fixed_total_number", n=0)
    g = net.inputs("a").outputs("b").build()
    back = sg.from_networkx(sg.to_networkx(g))
    assert [(p.name, p.layout, p.num_edges) for p in back.projections.values()] == \
           [(p.name, p.layout, p.num_edges) for p in g.projections.values()]


def test_scalar_attributes_save_with_networkx_writers(tmp_path):
    g = sg.from_networkx(connectome(), weight_attr="weight", inputs="sensory", outputs="motor")
    run = sg.simulate(sg.rules.HebbianRule(), g, torch.randn(2, 3, g.num_inputs))
    G = sg.to_networkx(g, run.state, batch_index=2, scalar_attrs=True)
    assert G.nodes["AVAL"]["state_0"] == pytest.approx(float(run.state["node"][2, g.node_labels.index("AVAL"), 0]))
    assert all(not isinstance(v, (list, tuple)) for _, d in G.nodes(data=True) for v in d.values())
    assert all(not isinstance(v, (list, tuple)) for *_, d in G.edges(data=True) for v in d.values())
    assert all(not isinstance(v, (list, tuple, dict)) for v in G.graph.values())
    nx.write_graphml(G, tmp_path / "a.graphml")
    nx.write_gexf(G, tmp_path / "a.gexf")
    back = sg.from_networkx(nx.read_graphml(tmp_path / "a.graphml", edge_key_type=int))
    assert back.node_labels == g.node_labels and torch.equal(back.edge_index, g.edge_index)
    assert torch.equal(back.edge_weight, g.edge_weight)


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".graphml", ".gexf", ".json"])
def test_write_read_round_trips_exactly(tmp_path, suffix):
    g = sg.from_networkx(connectome(), weight_attr="weight", outputs="motor", seed=7).with_io(inputs=["ASHR", "ASHL"])
    rule = sg.rules.HebbianRule()
    run = sg.simulate(rule, g, torch.randn(4, 1, g.num_inputs))
    state = {"node": run.state["node"], "edge": run.state["edge"][0], "trace": torch.randn(1, g.num_edges, 2, dtype=torch.float64)}
    path = sg.write(g, tmp_path / f"net{suffix}", state=state)
    h, got = sg.read(path)
    assert h.node_labels == g.node_labels and h.seed == g.seed
    assert list(h.populations.items()) == list(g.populations.items())
    assert list(h.projections.items()) == list(g.projections.items())
    assert h.neuron_types == g.neuron_types and h.synapse_types == g.synapse_types
    for name in ("node_type", "edge_type", "edge_index", "edge_weight", "input_ids"):
        assert torch.equal(getattr(h, name), getattr(g, name)), name
    assert h.output_ids is None and h.inputs == g.inputs and h.outputs == g.outputs
    assert set(got) == set(state)
    for key in state:
        assert got[key].dtype == state[key].dtype and torch.equal(got[key], state[key]), key
    plain, none = sg.read(sg.write(g, tmp_path / f"plain{suffix}"))
    assert none is None and torch.equal(plain.edge_weight, g.edge_weight)


@pytest.mark.parametrize("suffix", [".graphml", ".json"])
def test_write_read_unlabelled_and_int_labelled_graphs(tmp_path, suffix):
    net = sg.Network(seed=3).population("x", 4, neuron_type="e").population("y", 3)
    g = net.connect("x", "y", "fixed_indegree", indegree=2).connect("y", "x").inputs("x").outputs("y").build()
    h, _ = sg.read(sg.write(g, tmp_path / f"u{suffix}"))
    assert h.node_labels is None and torch.equal(h.edge_index, g.edge_index) and h.edge_weight is None
    G = nx.relabel_nodes(nx.path_graph(6, nx.DiGraph), {i: 10 + i for i in range(6)})
    nx.set_node_attributes(G, "cell", "type")
    k = sg.from_networkx(G)
    h, _ = sg.read(sg.write(k, tmp_path / f"i{suffix}"))
    assert h.node_labels == k.node_labels == tuple(range(10, 16))


def test_read_imports_foreign_files_and_refuses_bad_ones(tmp_path):
    G = nx.DiGraph()
    G.add_nodes_from((n, {"type": c}) for n, c in CLASSES.items())
    G.add_weighted_edges_from(CHEMICAL)
    nx.write_graphml(G, tmp_path / "foreign.graphml")
    g, state = sg.read(tmp_path / "foreign.graphml", weight_attr="weight")
    assert state is None and g.num_edges == G.number_of_edges() and g.edge_weight is not None
    bare = nx.path_graph(3)
    nx.write_graphml(bare, tmp_path / "bare.graphml")
    with pytest.raises(GraphError, match=r"bare\.graphml.*no 'type' attribute"):
        sg.read(tmp_path / "bare.graphml")
    with pytest.raises(GraphError, match=r"missing\.graphml.*does not exist"):
        sg.read(tmp_path / "missing.graphml")
    with pytest.raises(GraphError, match=r"net\.csv.*suffix"):
        sg.read(tmp_path / "net.csv")
    g0 = sg.from_networkx(connectome())
    with pytest.raises(GraphError, match=r"net\.txt.*suffix"):
        sg.write(g0, tmp_path / "net.txt")
    with pytest.raises(GraphError, match=r"cannot write.*nowhere"):
        sg.write(g0, tmp_path / "nowhere" / "net.json")
    for name, text in (("junk.graphml", "<graphml><graph"), ("junk.json", "{not json"), ("junk.gexf", "")):
        (tmp_path / name).write_text(text)
        with pytest.raises(GraphError, match=name.replace(".", r"\.") + ".*not a readable"):
            sg.read(tmp_path / name)
    good = sg.write(g0, tmp_path / "damaged.json")
    data = json.loads(good.read_text())
    data["graph"]["simgraph"] = "{\"version\": 1}"
    good.write_text(json.dumps(data))
    with pytest.raises(GraphError, match=r"damaged\.json.*damaged"):
        sg.read(good)
    with pytest.raises(GraphError, match="path"):
        sg.read(3)


# ---------------------------------------------------------------------- summaries
def test_print_graph_is_a_short_table():
    g = sg.from_networkx(connectome(), weight_attr="weight", outputs="motor").with_io(inputs=["ASHL", "ASHR"])
    text = str(g)
    lines = text.splitlines()
    assert lines[0].startswith("Graph: 12 neurons in 3 populations") and "weighted" in lines[0]
    assert all(len(line) < 160 for line in lines)
    row = next(line for line in lines if line.strip().startswith("sensory"))
    assert row.split()[:3] == ["sensory", "4", "sensory"] and "in 2/4" in row
    assert any(line.split()[:1] == ["motor"] and line.rstrip().endswith("out") for line in lines)
    assert any(line.split()[:4] == ["sensory->inter", "chemical", "sparse", "6"] for line in lines)
    assert repr(g) == text
    net = sg.Network(seed=0)
    for i in range(300):
        net.population(f"p{i}", 2)
    for i in range(299):
        net.connect(f"p{i}", f"p{i + 1}")
    big = str(net.build())
    assert len(big.splitlines()) < 30 and "more populations" in big and "more projections" in big


# ---------------------------------------------------------------------- outputs that cannot respond
def test_hebbian_rule_warns_once_about_outputs_it_keeps_at_zero():
    import warnings

    import topologies
    from simgraph.errors import SimgraphWarning

    graph = topologies.recall_network(n_in=4, n_memory=6, n_out=3, seed=0)
    u = torch.randn(5, 2, 4)
    with pytest.warns(SimgraphWarning, match=r"HebbianRule keeps output populations \['output'\] at exactly 0"):
        run = sg.simulate(sg.rules.HebbianRule(), graph, u)
    assert (run.outputs == 0).all()  # what the warning says is true
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per rule class and graph; none for a net whose outputs get input
        sg.simulate(sg.rules.HebbianRule(), graph, u)
        sg.simulate(sg.rules.HebbianRule(), topologies.fully_recurrent(4), u)
        sg.simulate(sg.rules.MLPRule(3, 3), graph, u)  # the learned rule can drive them


def test_outputs_no_input_reaches_are_named():
    from simgraph.errors import SimgraphWarning

    net = sg.Network(0).population("a", 3).population("b", 2).population("c", 2)
    net.connect("a", "b", "all_to_all").connect("c", "c", "all_to_all")
    graph = net.inputs("a").outputs("b", "c").build()
    assert graph.unreachable_outputs() == ["c"]
    with pytest.warns(SimgraphWarning, match=r"output populations \['c'\] have neurons that no input neuron reaches"):
        sg.simulate(sg.rules.MLPRule(3, 1), graph, torch.randn(3, 1, 3))
    assert topologies_reach_all()


def topologies_reach_all() -> bool:
    import topologies

    return all(not f(seed=0).unreachable_outputs() for name, f in topologies.TOPOLOGIES.items())
