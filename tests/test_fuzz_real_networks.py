"""Hostile arguments for the issue 16 entry points (from_networkx's sign/gap/io options, init_weights,
sg.analysis, simgraph analyze): every call returns or raises a SimgraphError with a message, never
a raw exception (the same contract as tests/test_fuzz_public_api.py)."""

import math

import networkx as nx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simgraph as sg
from simgraph.analysis import graphs as A
from simgraph.errors import SimgraphError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
WEIRD = st.sampled_from([None, 0, -1, 1.5, math.nan, math.inf, True, "", "x", [], [1], {}, {"x": 1}, object(), b"gap",
                         torch.zeros(2), ("gap",), {"type": None}])


def small_graph():
    G = nx.MultiDiGraph()
    G.add_nodes_from([("a", {"type": "s", "sign": 1}), ("b", {"type": "i", "sign": -1}), ("c", {"type": "m", "sign": "+"})])
    G.add_edges_from([("a", "b", {"type": "chem", "weight": 2}), ("b", "c", {"type": "chem", "weight": 1}),
                      ("b", "c", {"type": "gap", "weight": 3}), ("c", "b", {"type": "gap", "weight": 3})])
    return G


def call(fn):
    try:
        fn()
    except SimgraphError as exc:
        assert str(exc).strip()
        return "clear"
    return "accepted"


@FUZZ
@given(sign=st.one_of(WEIRD, st.sampled_from(["sign", "type", {"s": 1, "i": -1, "m": 0}, {"s": "inhibitory"}])),
       undirected=st.one_of(WEIRD, st.sampled_from(["pairs", "tied"])),
       tied=st.one_of(WEIRD, st.sampled_from([["gap"], "gap", ["chem"], ["gap", "chem"]])),
       io=st.one_of(WEIRD, st.sampled_from(["s", ["a"], {"type": "s"}, {"type": ["s", "i"]}, {"sign": 1}])),
       weight=st.one_of(WEIRD, st.sampled_from(["weight", None])), parallel=st.sampled_from(["keep", "sum", "x"]),
       undirected_graph=st.booleans())
def test_from_networkx_options(sign, undirected, tied, io, weight, parallel, undirected_graph):
    G = small_graph()
    if undirected_graph:
        G = nx.Graph(G)
    outcome = call(lambda: sg.from_networkx(G, sign_attr=sign, undirected=undirected, tied_types=tied, inputs=io,
                                            outputs=["c"], weight_attr=weight, parallel=parallel))
    assert outcome in ("clear", "accepted")


@FUZZ
@given(init=st.one_of(WEIRD, st.sampled_from(["auto", "edge_weight", "default"])), kind=st.sampled_from(["hebbian", "static", "plastic"]),
       weighted=st.booleans())
def test_init_weights(init, kind, weighted):
    g = sg.from_networkx(small_graph(), weight_attr="weight" if weighted else None, sign_attr="sign", tied_types=["gap"],
                         inputs=["a"], outputs=["c"])
    make = {"hebbian": lambda: sg.rules.HebbianRule(init_weights=init), "static": lambda: sg.rules.StaticRule(init_weights=init),
            "plastic": lambda: sg.rules.PlasticRule(g, init_weights=init)}[kind]
    assert call(lambda: make().init_state(g, 1)) in ("clear", "accepted")


@FUZZ
@given(weights=st.one_of(WEIRD, st.sampled_from([torch.ones(4), torch.ones(3), torch.ones(4, 1), torch.tensor([1, 2, 3, 4]),
                                                  torch.tensor([1.0, math.nan, 0, 0])])),
       patterns=st.one_of(WEIRD, st.sampled_from([None, torch.ones(2, 1), torch.ones(1, 3), torch.full((1, 1), math.inf)])),
       initial=st.one_of(WEIRD, st.sampled_from([None, torch.zeros(4)])),
       which=st.sampled_from(["measures", "weight_graph", "by_type", "strengths", "hebbian_similarity"]))
def test_analysis_functions(weights, patterns, initial, which):
    g = sg.from_networkx(small_graph(), inputs=["a"], outputs=["c"])
    fn = {"measures": lambda: A.measures(g, weights, patterns, initial), "weight_graph": lambda: A.weight_graph(g, weights),
          "by_type": lambda: A.by_type(g, weights), "strengths": lambda: A.strengths(g, weights),
          "hebbian_similarity": lambda: A.hebbian_similarity(g, weights, patterns)}[which]
    assert call(fn) in ("clear", "accepted")


@FUZZ
@given(loads=st.one_of(WEIRD, st.sampled_from([[1], [1, 2], [0], [2.0], (1,)])), episodes=st.one_of(WEIRD, st.sampled_from([1, 2, 0])),
       task=st.sampled_from(["recall", "pc", None]), rule=st.sampled_from(["hebbian", None]))
def test_load_sweep_arguments(loads, episodes, task, rule):
    g = sg.Network(seed=0).population("n", 4).connect("n", "n").inputs("n").outputs("n").build()
    t = {"recall": sg.tasks.RecallTask(bits=4, queries=1), "pc": sg.tasks.TASKS["pattern_completion"](n_bits=4), None: None}[task]
    r = sg.rules.HebbianRule() if rule else "rule"
    assert call(lambda: A.load_sweep(r, g, t, loads, episodes)) in ("clear", "accepted")


@pytest.mark.parametrize("argv", [["analyze"], ["analyze", ""], ["analyze", "/nonexistent"], ["analyze", ".", "--loads", ""],
                                  ["analyze", ".", "--episodes", "x"], ["analyze", ".", "--loads", "1,,2"]])
def test_cli_analyze_hostile(argv, capsys):
    from simgraph.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    assert code == 2
