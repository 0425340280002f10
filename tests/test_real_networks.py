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


# ---------------------------------------------------------------------- Dale's law, gap junctions, io by attribute
SIGNS = {"sensory": 1, "inter": -1, "motor": 1}


def signed_worm(**options):
    return sg.from_networkx(connectome(), weight_attr="weight", sign_attr=SIGNS, tied_types=["gap"], **options)


def test_sign_attr_gives_each_synapse_its_presynaptic_sign_and_leaves_gap_junctions_free():
    g = signed_worm()
    src = g.edge_index[0]
    pre_type = [g.neuron_types[int(g.node_type[int(i)])] for i in src]
    gap = g.edge_type == g.synapse_type_id("gap")
    want = torch.tensor([0.0 if gap[e] else float(SIGNS[t]) for e, t in enumerate(pre_type)])
    assert torch.equal(g.edge_sign, want) and bool((want == -1).any()) and bool((want == 1).any())
    G = connectome()
    for node, data in G.nodes(data=True):
        data["dale"] = {"sensory": "+", "inter": "inhibitory", "motor": 2.5}[data["type"]]
    by_node = sg.from_networkx(G, weight_attr="weight", sign_attr="dale", tied_types="gap")
    assert torch.equal(by_node.edge_sign, g.edge_sign)
    assert sg.from_networkx(G).edge_sign is None  # no sign_attr: no signs


def test_sign_attr_errors_name_the_type_node_or_value():
    G = connectome()
    with pytest.raises(GraphError, match=r"no sign for neuron type\(s\) \['motor'\]"):
        sg.from_networkx(G, sign_attr={"sensory": 1, "inter": -1})
    with pytest.raises(UnknownNameError, match="did you mean 'motor'"):
        sg.from_networkx(G, sign_attr={**SIGNS, "motr": 1})
    with pytest.raises(GraphError, match=r"node 'AVAL' has no 'dale' attribute"):
        sg.from_networkx(G, sign_attr="dale")
    for bad in ("maybe", float("nan"), True, None):
        with pytest.raises(GraphError, match="a sign is a finite number"):
            sg.from_networkx(G, sign_attr={**SIGNS, "inter": bad})
    with pytest.raises(GraphError, match="sign_attr must be"):
        sg.from_networkx(G, sign_attr=3)


def test_tied_types_pair_both_directions_of_every_gap_junction():
    g = signed_worm()
    p, (src, dst) = g.edge_partner, g.edge_index
    gap = g.edge_type == g.synapse_type_id("gap")
    ids = torch.arange(g.num_edges)
    assert torch.equal(p[p], ids)  # an involution
    assert bool((p[gap] != ids[gap]).all()) and torch.equal(p[~gap], ids[~gap])  # gaps paired, chemical alone
    assert torch.equal(src[p][gap], dst[gap]) and torch.equal(dst[p][gap], src[gap])
    assert torch.equal(g.edge_weight[p], g.edge_weight) and int(gap.sum()) == 2 * len(GAPS)
    summed = sg.from_networkx(connectome(), weight_attr="weight", tied_types=["gap"], parallel="sum")
    tied = summed.edge_partner != torch.arange(summed.num_edges)
    assert int(tied.sum()) == 2 * len(GAPS)
    assert torch.equal(summed.edge_index[0][summed.edge_partner][tied], summed.edge_index[1][tied])
    assert sg.from_networkx(connectome()).edge_partner is None


def test_tied_pairs_are_refused_when_a_direction_is_missing_or_weights_differ():
    G = connectome()
    G.add_edge("AIYL", "AIYR", type="gap", weight=3)  # no AIYR -> AIYL
    with pytest.raises(GraphError, match=r"'AIYL' -> 'AIYR' of tied synapse type 'gap' \(weight 3.0\) has no reverse"):
        sg.from_networkx(G, weight_attr="weight", tied_types=["gap"])
    G.add_edge("AIYR", "AIYL", type="gap", weight=2)  # a reverse edge with another weight
    with pytest.raises(GraphError, match="has no reverse edge"):
        sg.from_networkx(G, weight_attr="weight", tied_types=["gap"])
    with pytest.raises(UnknownNameError, match="synapse type in tied_types 'gapp'; did you mean 'gap'"):
        sg.from_networkx(connectome(), tied_types=["gapp"])
    with pytest.raises(GraphError, match="tied_types must be a list"):
        sg.from_networkx(connectome(), tied_types=[1])


def test_undirected_tied_or_pairs():
    U = nx.Graph()
    U.add_nodes_from(["a", "b", "c"], type="x")
    U.add_weighted_edges_from([("a", "b", 2.0), ("b", "c", 1.0), ("c", "c", 5.0)])
    tied = sg.from_networkx(U, weight_attr="weight", undirected="tied")
    src, dst = tied.edge_index
    assert tied.num_edges == 5 and torch.equal(src[tied.edge_partner], dst) and torch.equal(dst[tied.edge_partner], src)
    loop = int(((src == dst)).nonzero())
    assert int(tied.edge_partner[loop]) == loop  # one autapse, its own partner
    assert sg.from_networkx(U, undirected="pairs").edge_partner is None
    U.add_edge("a", "c", type="gap", weight=1.0)  # tied_types in an undirected graph: those edges' two directions
    some = sg.from_networkx(U, weight_attr="weight", tied_types=["gap"], default_type="x")
    tied_ids = (some.edge_partner != torch.arange(some.num_edges)).nonzero().view(-1).tolist()
    assert len(tied_ids) == 2 and some.edge_type[tied_ids].tolist() == [some.synapse_type_id("gap")] * 2
    with pytest.raises(UnknownNameError, match="undirected= mode 'tie'"):
        sg.from_networkx(U, undirected="tie")
    with pytest.raises(GraphError, match="undirected='tied' is for undirected graphs"):
        sg.from_networkx(connectome(), undirected="tied")


def test_inputs_and_outputs_by_node_attribute():
    G = connectome()
    for node, data in G.nodes(data=True):
        data["side"] = node[-1] if node[-1] in "LR" else "mid"
    g = sg.from_networkx(G, inputs={"type": "sensory", "side": "L"}, outputs={"type": ["motor", "inter"], "side": "R"})
    labels = g.node_labels
    assert [labels[i] for i in g.input_ids.tolist()] == [n for n in labels if CLASSES[n] == "sensory" and n.endswith("L")]
    assert sorted(labels[i] for i in g.output_ids.tolist()) == ["AIYR", "AVAR"]
    assert g.input_ids.tolist() == sorted(g.input_ids.tolist())  # simgraph's node order
    with pytest.raises(UnknownNameError, match="node attribute in inputs 'sid'; did you mean 'side'"):
        sg.from_networkx(G, inputs={"sid": "L"})
    with pytest.raises(GraphError, match="matches no node"):
        sg.from_networkx(G, outputs={"type": "muscle"})
    with pytest.raises(GraphError, match="needs"):
        sg.from_networkx(G, outputs={})


@pytest.mark.parametrize("suffix", [".graphml", ".gexf", ".json"])
def test_signs_and_tied_pairs_round_trip_through_files(tmp_path, suffix):
    g = signed_worm(inputs="sensory", outputs="motor")
    run = sg.simulate(sg.rules.PlasticRule(g), g, torch.randn(5, 2, g.num_inputs))
    path = sg.write(g, tmp_path / f"worm{suffix}", state=run.state)
    back, state = sg.read(path)
    assert back.node_labels == g.node_labels and torch.equal(back.edge_index, g.edge_index)
    for field in ("edge_weight", "edge_sign", "edge_partner", "node_type", "edge_type"):
        assert torch.equal(getattr(back, field), getattr(g, field)), field
    assert torch.equal(state["edge"], run.state["edge"][:1])
    again = sg.from_networkx(sg.to_networkx(g))
    assert torch.equal(again.edge_sign, g.edge_sign) and torch.equal(again.edge_partner, g.edge_partner)


# ---------------------------------------------------------------------- rules on weighted, signed, tied graphs
def test_rules_start_from_the_measured_weights_rescaled():
    from simgraph.rules.constraints import start_weights

    g = sg.from_networkx(connectome(), weight_attr="weight", inputs="sensory", outputs="motor")
    w = g.edge_weight
    want = (w / (w.abs().mean() * (g.num_edges / g.num_nodes) ** 0.5)).view(-1, 1)
    assert torch.allclose(start_weights(g, "test", "auto"), want)
    heb = sg.rules.HebbianRule().init_state(g, 2)["edge"]
    assert torch.allclose(heb[1], want) and torch.allclose(sg.rules.StaticRule().init_state(g, 1)["edge"][0], want)
    assert torch.allclose(sg.rules.PlasticRule(g).w, want)
    assert (sg.rules.HebbianRule(init_weights="default").init_state(g, 1)["edge"] == 0).all()
    # relative strengths kept: the strongest measured synapse stays the strongest
    assert int(heb[0, :, 0].argmax()) == int(w.argmax())
    plain = sg.from_networkx(connectome())  # no weights: the rules' own defaults, unchanged
    assert (sg.rules.HebbianRule().init_state(plain, 1)["edge"] == 0).all()
    assert torch.equal(sg.rules.StaticRule().init_state(plain, 1)["edge"][0],
                       sg.rules.StaticRule(init_weights="default").init_state(g, 1)["edge"][0])
    with pytest.raises(GraphError, match="init_weights='edge_weight' needs a graph with measured strengths"):
        sg.rules.HebbianRule(init_weights="edge_weight").init_state(plain, 1)
    import dataclasses

    broken = dataclasses.replace(g, edge_weight=torch.full_like(g.edge_weight, float("nan")), _cache={})
    with pytest.raises(GraphError, match="NaN"):
        sg.rules.HebbianRule().init_state(broken, 1)
    with pytest.raises(UnknownNameError, match="did you mean 'edge_weight'"):
        sg.rules.StaticRule(init_weights="edge_weights")
    with pytest.raises(UnknownNameError):
        sg.rules.PlasticRule(g, init_weights=None)


def test_hebbian_from_measured_weights_drives_the_motor_neurons():
    import warnings

    g = sg.from_networkx(connectome(), weight_attr="weight", inputs="sensory", outputs="motor")
    u = torch.randn(6, 1, g.num_inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.errors.SimgraphWarning)  # no "keeps outputs at 0": the weights reach the motors
        run = sg.simulate(sg.rules.HebbianRule(), g, u)
    assert bool((run.outputs != 0).any())
    with pytest.warns(sg.errors.SimgraphWarning, match="at exactly 0"):
        fresh = sg.from_networkx(connectome(), weight_attr="weight", inputs="sensory", outputs="motor")  # warns once per graph
        zero = sg.simulate(sg.rules.HebbianRule(init_weights="default"), fresh, u)
    assert (zero.outputs == 0).all()


@pytest.mark.parametrize("make", ["hebbian", "static", "plastic"])
def test_dale_and_tied_pairs_hold_tick_after_tick(make):
    g = signed_worm(inputs="sensory", outputs="motor")
    free = sg.from_networkx(connectome(), weight_attr="weight", inputs="sensory", outputs="motor")
    rule = {"hebbian": lambda: sg.rules.HebbianRule(learn_from="activity", eta=0.5),
            "static": lambda: sg.rules.StaticRule(init_weights="default"),
            "plastic": lambda: sg.rules.PlasticRule(g, eta=0.5, init_std=0.5)}[make]()
    torch.manual_seed(0)
    u = torch.randn(8, 3, g.num_inputs)
    mon = [sg.Monitor("edge", every=1)]

    def weights(graph, state):  # the weight each synapse uses
        if make != "plastic":
            return state["edge"]
        from simgraph.rules.constraints import constrain
        return constrain(graph, rule.w + rule.alpha * state["edge"])

    for t, edge in enumerate(sg.simulate(rule, g, u, monitors=mon).records["edge"]):
        w = weights(g, {"edge": edge})
        assert torch.equal(w[:, g.edge_partner], w), t  # tied pairs equal every tick
        assert torch.equal(edge[:, g.edge_partner], edge), t  # and so are the states
        assert bool((w[..., 0] * g.edge_sign >= 0).all()), t  # nothing crosses zero
    # the same rule without the constraints breaks both, so the checks above can fail
    loose = sg.simulate(rule, free, u).state["edge"]
    w = weights(free, {"edge": loose})
    signed = signed_worm().edge_sign
    if make == "plastic":  # (the Hebbian write is symmetric: equal pairs stay equal by themselves)
        assert not torch.equal(loose[:, g.edge_partner], loose)
    assert bool((w[..., 0] * signed < 0).any())


@pytest.mark.parametrize("make", ["hebbian", "plastic"])
def test_lean_episodes_on_constrained_graphs_equal_the_plain_path(make):
    g = signed_worm(inputs="sensory", outputs="motor")
    rule = sg.rules.HebbianRule(learn_from="activity") if make == "hebbian" else sg.rules.PlasticRule(g, eta=0.3)
    u = torch.randn(7, 2, g.num_inputs)
    lean, plain = sg.simulate(rule, g, u, lean=True), sg.simulate(rule, g, u)
    assert torch.allclose(lean.outputs, plain.outputs, atol=1e-6)
    assert torch.allclose(lean.state["edge"], plain.state["edge"], atol=1e-6)


def test_a_named_weighted_connectome_with_gap_junctions_trains_and_comes_back(tmp_path):
    """Issue 16's 'done when': in, trained, simulated, out with the same names, types, weights and tied states."""
    g = signed_worm(inputs="sensory", outputs="motor")
    task = sg.tasks.RecallTask(num_patterns=2, bits=4, queries=2)
    rule = sg.rules.PlasticRule(g, eta=0.1)
    before = rule.w.detach().clone()
    result = sg.train.fit(rule, g, task, steps=2, batch_size=4, eval_every=2, eval_batch=4, progress=False)
    assert not torch.equal(result.rule.w.detach(), before)  # it trained
    run = sg.simulate(result.rule, g, task.sample(2, seed=1).inputs)
    assert torch.equal(run.state["edge"][:, g.edge_partner], run.state["edge"])
    G = sg.to_networkx(g, run.state)
    assert set(G.nodes) == set(CLASSES) and all(G.nodes[n]["type"] == CLASSES[n] for n in G)
    for suffix in (".graphml", ".json"):
        back, state = sg.read(sg.write(g, tmp_path / f"trained{suffix}", state=run.state))
        assert back.node_labels == g.node_labels and torch.equal(back.edge_weight, g.edge_weight)
        assert torch.equal(back.edge_partner, g.edge_partner) and torch.equal(state["edge"], run.state["edge"][:1])
        assert torch.equal(state["edge"][:, back.edge_partner], state["edge"])


def test_the_connectome_example_reads_the_same_network_from_csv_and_graphml(monkeypatch):
    """runs/connectome: the config's GraphML file and worm.py's CSV tables give one graph, with weights,
    Dale's law from the transmitters and tied gap junctions, sensory inputs and motor outputs."""
    import sys
    from pathlib import Path

    from simgraph.train import Config

    here = Path(__file__).resolve().parents[1] / "runs" / "connectome"
    monkeypatch.syspath_prepend(str(here))
    import worm

    cfg = Config.load(here / "connectome.toml")
    g = cfg.make_graph()
    h = worm.build(n_in=16, n_out=16)
    assert g.node_labels == h.node_labels and torch.equal(g.edge_index, h.edge_index)
    for field in ("edge_weight", "edge_sign", "edge_partner", "input_ids", "output_ids"):
        assert torch.equal(getattr(g, field), getattr(h, field)), field
    labels = g.node_labels
    assert all(labels[i].startswith("SEN") for i in g.input_ids.tolist()) and g.num_outputs == 16
    inhibitory = {labels[i] for i in g.edge_index[0][g.edge_sign < 0].tolist()}
    transmitter = {row.split(",")[0]: row.split(",")[2] for row in (here / "neurons.csv").read_text().split()[1:]}
    assert inhibitory == {n for n, t in transmitter.items() if t == "GABA"}
    gap = g.edge_type == g.synapse_type_id("gap")
    assert bool((g.edge_partner[gap] != torch.arange(g.num_edges)[gap]).all())
    with pytest.raises(GraphError, match="needs 8 inputs"):
        worm.build(n_in=8)
    sys.modules.pop("worm", None)


def test_print_graph_says_how_many_synapses_are_signed_and_tied():
    g = signed_worm()
    head = str(g).splitlines()[0]
    assert f"{int((g.edge_sign != 0).sum())} signed synapses" in head and f"{len(GAPS)} tied pairs" in head
    assert "signed" not in str(sg.from_networkx(connectome())).splitlines()[0]
