"""``[network] inputs`` / ``outputs`` by node attribute in a config (issue 16): a table
``{cls = "sensory"}`` selects every neuron whose attribute matches (or is one of a list of values),
in simgraph's node order; the attributes come from the network file, or from ``to_networkx`` for a
topology or builder (``population``, ``type``)."""

from __future__ import annotations

import networkx as nx
import pytest

import simgraph as sg
from simgraph.errors import ConfigError, GraphError, UnknownNameError
from simgraph.train import Config

NEURONS = {"ASHL": ("sensory", "L"), "AVAL": ("inter", "L"), "ASHR": ("sensory", "R"), "VA1": ("motor", "R"),
           "AVAR": ("inter", "R"), "VA2": ("motor", "R"), "ADL": ("sensory", "L")}


def worm(tmp_path):
    """A connectome-shaped GraphML file: named neurons with a class and a side, weighted synapses."""
    G = nx.DiGraph()
    for name, (cls, side) in NEURONS.items():
        G.add_node(name, type=cls, cls=cls, side=side)
    for u, v in [("ASHL", "AVAL"), ("ASHR", "AVAR"), ("ADL", "AVAL"), ("AVAL", "VA1"), ("AVAR", "VA2"), ("AVAL", "AVAR"),
                 ("AVAR", "AVAL"), ("VA1", "AVAL")]:
        G.add_edge(u, v, weight=1.0)
    path = tmp_path / "worm.graphml"
    nx.write_graphml(G, path)
    return path


def labels(graph, ids):
    return [graph.node_labels[i] for i in ids.tolist()]


def where(graph, classes, sides=("L", "R")):
    """The neurons of ``classes`` on ``sides``, in simgraph's node order (what the selection must give)."""
    return [n for n in graph.node_labels if NEURONS[n][0] in classes and NEURONS[n][1] in sides]


def recall(bits):
    return {"kind": "recall", "bits": bits, "num_patterns": 1}


def test_file_network_io_by_node_attribute_from_toml(tmp_path):
    worm(tmp_path)
    toml = tmp_path / "worm.toml"
    toml.write_text('[network]\nfile = "worm.graphml"\ninputs = {cls = "sensory"}\noutputs = {cls = ["motor"]}\n'
                    '[task]\nkind = "recall"\nbits = 3\nnum_patterns = 1\n')
    cfg = Config.load(toml)  # the file is found next to the config
    with pytest.raises(ConfigError, match="needs 3 input and 3 output"):  # 3 sensory neurons, 2 motor ones
        cfg.make_graph()
    graph = cfg.override(**{"network.outputs": {"cls": ["motor", "inter"], "side": "R"}}).make_graph()
    assert labels(graph, graph.input_nodes) == where(graph, ["sensory"]) and len(graph.input_nodes) == 3
    assert labels(graph, graph.output_nodes) == where(graph, ["motor", "inter"], ["R"]) == \
        sorted(["VA1", "AVAR", "VA2"], key=list(graph.node_labels).index)


def test_selected_neurons_are_fed_and_read_in_node_order(tmp_path):
    cfg = Config.from_dict({"network": {"file": str(worm(tmp_path)), "inputs": {"cls": "sensory"},
                                        "outputs": {"side": "L"}}, "task": recall(3)})
    graph = cfg.make_graph()
    assert labels(graph, graph.output_nodes) == where(graph, ["sensory", "inter", "motor"], ["L"])
    # the same graph as naming the neurons one by one
    by_name = cfg.override(**{"network.inputs": where(graph, ["sensory"]),
                              "network.outputs": where(graph, ["sensory", "inter", "motor"], ["L"])}).make_graph()
    assert graph.input_nodes.tolist() == by_name.input_nodes.tolist()
    assert graph.output_nodes.tolist() == by_name.output_nodes.tolist()


def test_topology_io_by_population_and_type():
    net = {"topology": "recall_network", "params": {"n_memory": 5}}
    graph = Config.from_dict({"network": {**net, "inputs": {"population": "input"}, "outputs": {"type": "output"}},
                              "task": recall(4)}).make_graph()
    same = Config.from_dict({"network": net, "task": recall(4)}).make_graph()  # populations named by the topology
    assert graph.input_nodes.tolist() == same.input_nodes.tolist() == [0, 1, 2, 3]
    assert graph.output_nodes.tolist() == same.output_nodes.tolist() == [9, 10, 11, 12]


def test_sg_write_file_with_int_labels(tmp_path):
    path = sg.write(sg.topologies.recall_network(2, 3, 2), tmp_path / "net.json")
    graph = Config.from_dict({"network": {"file": str(path), "inputs": {"population": "input"},
                                          "outputs": {"population": ["output"]}}, "task": recall(2)}).make_graph()
    assert graph.input_nodes.tolist() == [0, 1] and graph.output_nodes.tolist() == [5, 6]


def test_unknown_attribute_is_named_with_a_suggestion(tmp_path):
    cfg = Config.from_dict({"network": {"file": str(worm(tmp_path)), "inputs": {"clss": "sensory"}}, "task": recall(3)})
    with pytest.raises(UnknownNameError, match=r"node attribute in \[network\] inputs 'clss'; did you mean 'cls'"):
        cfg.make_graph()
    with pytest.raises(UnknownNameError, match="did you mean 'population'"):
        Config.from_dict({"network": {"outputs": {"populaton": "neurons"}}}).make_graph()


def test_attribute_matching_no_node_is_refused(tmp_path):
    cfg = Config.from_dict({"network": {"file": str(worm(tmp_path)), "inputs": {"cls": "muscle"}}, "task": recall(3)})
    with pytest.raises(GraphError, match=r"config: \[network\] inputs=\{'cls': 'muscle'\} matches no node"):
        cfg.make_graph()


@pytest.mark.parametrize("bad", [{}, {"": "x"}])
def test_malformed_attribute_table_is_refused(bad):
    with pytest.raises(ConfigError, match="node attribute must be a table"):
        Config.from_dict({"network": {"inputs": bad}})


def test_train_runs_on_neurons_chosen_by_attribute(tmp_path):
    cfg = Config.from_dict({"network": {"file": str(worm(tmp_path)), "inputs": {"cls": "sensory"},
                                        "outputs": {"cls": ["motor", "inter"], "side": "R"}},
                            "rule": {"kind": "plastic"}, "task": recall(3),
                            "train": {"steps": 1, "batch_size": 2, "eval_every": 1, "eval_batch": 2}})
    result = sg.train.train(cfg, progress=False)
    assert result.step == 1 and labels(result.graph, result.graph.output_nodes) == where(result.graph, ["motor", "inter"], ["R"])
