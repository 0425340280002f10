"""A connectome from two CSV tables (neurons.csv, synapses.csv; see make_data.py for the columns) into
simgraph: the ``[network] builder = "worm:build"`` of runs/connectome/connectome.toml.

    G = read_csv("neurons.csv", "synapses.csv")   # networkx MultiDiGraph, named neurons
    graph = build()                               # simgraph Graph: weights, Dale's law, tied gap junctions

Chemical synapses are directed edges with their contact count as ``weight`` (parallel contacts kept
as separate synapses); a gap junction, listed once, becomes two edges of type ``gap`` that
``tied_types=["gap"]`` ties into one shared state. Each neuron's sign (Dale's law) comes from its
transmitter (GABA inhibitory). Inputs and outputs are chosen by the node attribute ``class``.
"""

import csv
from pathlib import Path

import networkx as nx

import simgraph as sg
from simgraph.errors import GraphError

HERE = Path(__file__).resolve().parent
SIGN = {"GABA": -1, "glutamate": 1, "acetylcholine": 1}


def read_csv(neurons, synapses) -> nx.MultiDiGraph:
    G = nx.MultiDiGraph()
    for path in (neurons, synapses):
        if not Path(path).is_file():
            raise GraphError(f"connectome table {str(path)!r} does not exist (python runs/connectome/make_data.py writes one)")
    with open(neurons, newline="") as f:
        for row in csv.DictReader(f):
            G.add_node(row["name"], type=row["class"], transmitter=row["transmitter"], sign=SIGN[row["transmitter"]])
    with open(synapses, newline="") as f:
        for row in csv.DictReader(f):
            pre, post, kind, count = row["pre"], row["post"], row["type"], float(row["count"])
            for a, b in ((pre, post), (post, pre)) if kind == "gap" else ((pre, post),):
                G.add_edge(a, b, type=kind, weight=count)
    return G


def build(neurons: str = "neurons.csv", synapses: str = "synapses.csv", inputs: str = "sensory", outputs: str = "motor",
          n_in: int | None = None, n_out: int | None = None, seed: int = 0) -> sg.Graph:
    """The connectome as a Graph with inputs/outputs the neurons of class ``inputs``/``outputs`` (the task's
    ``n_in``/``n_out`` must match their counts)."""
    G = read_csv(HERE / neurons, HERE / synapses)
    graph = sg.from_networkx(G, weight_attr="weight", sign_attr="sign", tied_types=["gap"],
                             inputs={"type": inputs}, outputs={"type": outputs}, seed=seed)
    for what, want, have in (("inputs", n_in, graph.num_inputs), ("outputs", n_out, graph.num_outputs)):
        if want is not None and want != have:
            raise GraphError(f"the task needs {want} {what} but the connectome has {have} {what} neurons")
    return graph
