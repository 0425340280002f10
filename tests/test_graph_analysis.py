"""The learned synapses as graphs (issue 16, part 3): measures on hand-made weights whose answers are
known, the Hebbian rule as the reference a learned rule is compared with, and ``simgraph analyze``."""

import json
import math

import networkx as nx
import pytest
import torch

import simgraph as sg
from simgraph.analysis import graphs as A
from simgraph.errors import ConfigError, ShapeError


def two_neurons_and_a_loop():
    G = nx.MultiDiGraph()
    G.add_nodes_from(["a", "b", "c"], type="n")
    G.add_edges_from([("a", "b"), ("a", "b"), ("b", "a"), ("b", "c"), ("c", "c")])
    return sg.from_networkx(G, inputs=["a", "b"], outputs=["c"])


def recurrent(n=16):
    return sg.Network(seed=0).population("n", n).connect("n", "n").inputs("n").outputs("n").build()


def test_weight_graph_sums_multapses_and_keeps_labels():
    g = two_neurons_and_a_loop()
    w = torch.arange(1.0, g.num_edges + 1)
    G = A.weight_graph(g, w)
    src, dst = g.edge_index.tolist()
    labels = g.node_labels
    want = {}
    for e in range(g.num_edges):
        want[(labels[src[e]], labels[dst[e]])] = want.get((labels[src[e]], labels[dst[e]]), 0.0) + float(w[e])
    assert {(u, v): d["weight"] for u, v, d in G.edges(data=True)} == want
    assert G.number_of_edges() == 4 and G.nodes["a"]["type"] == "n"


def test_measures_on_weights_with_known_answers():
    g = recurrent(8)
    src, dst = g.edge_index
    sym = (src.float() - 3.5) * (dst.float() - 3.5)  # w_ij = w_ji
    row = A.measures(g, sym)
    assert row["symmetry"] == pytest.approx(1.0) and row["reciprocity"] == pytest.approx(1.0)
    anti = (src - dst).float()  # w_ij = -w_ji
    assert A.measures(g, anti)["symmetry"] == pytest.approx(-1.0)
    assert A.measures(g, anti)["positive_fraction"] == pytest.approx(28 / 64)
    # two blocks of positive weights: two communities, modularity 0.5 for two equal cliques
    block = ((src < 4) == (dst < 4)).float()
    row = A.measures(g, block)
    assert row["communities"] == 2 and row["modularity"] == pytest.approx(0.5, abs=1e-6)
    assert A.measures(g, torch.ones(g.num_edges))["strength_cv"] == pytest.approx(0.0)
    s = A.strengths(g, torch.ones(g.num_edges))
    assert torch.equal(s, torch.full((8,), 16.0, dtype=torch.float64))  # 8 in + 8 out
    assert A.measures(g, sym, initial=2 * sym + 1)["initial_corr"] == pytest.approx(1.0)
    assert A.measures(g, sym, initial=-sym)["initial_corr"] == pytest.approx(-1.0)
    assert math.isnan(A.measures(g, sym)["initial_corr"])
    one_way = torch.where(src < dst, 1.0, 0.0)
    assert A.measures(g, one_way)["reciprocity"] == pytest.approx(0.0)


def test_hebbian_rule_is_the_hebbian_reference_and_its_communities_are_the_pattern():
    g = recurrent(16)
    task = sg.tasks.RecallTask(num_patterns=1, bits=16)
    ws = A.stored_weights(sg.rules.HebbianRule(), g, task, episodes=3)
    assert ws.weights.shape == (3, g.num_edges) and ws.patterns.shape == (3, 1, 16)
    row = A.summarize(g, ws)
    assert row["hebbian_similarity"] == pytest.approx(1.0, abs=1e-6)  # w = eta * ticks * p p^T
    assert row["symmetry"] == pytest.approx(1.0)
    assert row["pattern_alignment"] == pytest.approx(1.0)  # the + and - neurons of the one pattern
    assert row["num_patterns"] == 1 and 0.0 <= row["accuracy"] <= 1.0
    # a rule that writes nothing has no weight change to compare, and a random one is far from Hebbian
    static = A.summarize(g, A.stored_weights(sg.rules.StaticRule(), g, task, episodes=2))
    assert math.isnan(static["hebbian_similarity"])
    noise = torch.randn(g.num_edges, generator=torch.Generator().manual_seed(0))
    assert abs(A.hebbian_similarity(g, noise, ws.patterns[0])) < 0.3


def test_load_sweep_rows_follow_the_load():
    g = recurrent(16)
    rows = sg.analysis.load_sweep(sg.rules.HebbianRule(beta=2.0), g, sg.tasks.RecallTask(bits=16), loads=[1, 4], episodes=2)
    assert [r["num_patterns"] for r in rows] == [1, 4]
    assert set(A.MEASURES) <= set(rows[0])
    assert rows[1]["weight_abs_mean"] > rows[0]["weight_abs_mean"]  # more patterns written, larger weights
    assert rows[0]["pattern_alignment"] > rows[1]["pattern_alignment"]


def test_by_type_and_plastic_effective_weights():
    net = sg.Network(seed=0).population("a", 4, neuron_type="x").population("b", 3, neuron_type="y")
    g = net.connect("a", "b", synapse_type="ab").connect("b", "a", synapse_type="ba").inputs("a").outputs("b").build()
    w = torch.cat([torch.full((12,), 2.0), torch.full((12,), -1.0)])
    rows = A.by_type(g, w)
    assert [(r["pre_type"], r["synapse_type"], r["synapses"], r["mean"], r["positive_fraction"]) for r in rows] == [
        ("x", "ab", 12, 2.0, 1.0), ("y", "ba", 12, -1.0, 0.0)]
    rule = sg.rules.PlasticRule(g)
    state = rule.init_state(g, 2)
    state["edge"] = torch.ones_like(state["edge"])
    assert torch.allclose(A.synapse_weights(rule, g, state)[0], (rule.w + rule.alpha).detach()[:, 0])


def test_structure_of_topologies():
    full = A.structure(recurrent(6))
    assert full["density"] == pytest.approx(1.0) and full["reciprocity"] == pytest.approx(1.0)
    ring = sg.Network(seed=0).population("n", 6)
    ids = torch.arange(6)
    ring = ring.connect("n", "n", "explicit", pre_idx=ids, post_idx=(ids + 1) % 6).inputs("n").outputs("n").build()
    s = A.structure(ring)
    assert s["reciprocity"] == 0.0 and s["path_length"] == pytest.approx(3.0) and s["clustering"] == 0.0


def test_analysis_refuses_bad_arguments():
    g = recurrent(4)
    with pytest.raises(ShapeError, match=r"shape \[16\]"):
        A.measures(g, torch.ones(5))
    with pytest.raises(ShapeError, match="NaN"):
        A.measures(g, torch.full((16,), float("nan")))
    with pytest.raises(ShapeError, match="torch.Tensor"):
        A.weight_graph(g, [1.0] * 16)
    with pytest.raises(ConfigError, match="simgraph Graph"):
        A.measures("graph", torch.ones(16))
    with pytest.raises(ShapeError, match=r"patterns must be a tensor \[K, 4\]"):
        A.measures(g, torch.ones(16), patterns=torch.ones(2, 3))
    with pytest.raises(ConfigError, match="RecallTask"):
        A.stored_weights(sg.rules.HebbianRule(), g, sg.tasks.TASKS["pattern_completion"](n_bits=4))
    with pytest.raises(ConfigError, match="episodes must be an int >= 1"):
        A.stored_weights(sg.rules.HebbianRule(), g, sg.tasks.RecallTask(bits=4), episodes=0)
    for bad in (3, "1,2", [0], [1.5], []):
        with pytest.raises(ConfigError, match="loads"):
            A.load_sweep(sg.rules.HebbianRule(), g, sg.tasks.RecallTask(bits=4), loads=bad)
    with pytest.raises(ConfigError, match="structure needs a simgraph Graph"):
        A.structure(nx.DiGraph())
    with pytest.raises(ShapeError, match="'edge' tensor"):
        A.synapse_weights(sg.rules.HebbianRule(), g, {"node": torch.zeros(1, 4, 1)})


# ---------------------------------------------------------------------- simgraph analyze
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from simgraph.cli import main

    folder = tmp_path_factory.mktemp("analyze")
    cfg = folder / "tiny.toml"
    cfg.write_text('[network]\ntopology = "fully_recurrent"\n[rule]\nkind = "plastic"\n'
                   '[task]\nkind = "recall"\nnum_patterns = 2\nbits = 8\nqueries = 2\n'
                   '[train]\nsteps = 2\neval_every = 2\neval_batch = 4\nbatch_size = 4\ncheckpoint_every = 2\n')
    assert main(["train", str(cfg), "--out", str(folder / "run"), "--no-baselines", "--no-progress"]) == 0
    return folder / "run"


def test_analyze_writes_tables_plots_and_a_graph_that_reads_back(trained_run, tmp_path, capsys):
    from simgraph.cli import main

    capsys.readouterr()
    assert main(["analyze", str(trained_run), "--out", str(tmp_path / "a"), "--loads", "1,2,4", "--episodes", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["command"] == "analyze" and line["loads"] == [1, 2, 4]
    out = tmp_path / "a"
    for name in ("measures_by_load.csv", "measures_by_load.json", "weights_by_type.csv", "learned.graphml",
                 "weights.graphml", "measures_vs_load.png", "strength_distribution.png", "weights_by_type.png",
                 "learned_vs_hebbian.png", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "measures_vs_load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((out / "measures_by_load.json").read_text())
    assert [r["num_patterns"] for r in rows] == [1, 2, 4] and all(0 <= r["accuracy"] <= 1 for r in rows)
    lines = (out / "measures_by_load.csv").read_text().splitlines()
    assert lines[0].startswith("num_patterns,accuracy,") and len(lines) == 4
    graph, state = sg.read(out / "learned.graphml")
    assert graph.num_edges == 64 and state["edge"].shape == (1, 64, 1)
    W = nx.read_graphml(out / "weights.graphml")
    assert W.number_of_edges() == 64


def test_analyze_default_out_and_loads(trained_run, capsys):
    from simgraph.cli import main

    assert main(["analyze", str(trained_run), "--episodes", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["loads"] == [1, 2, 4] and (trained_run / "analysis" / "summary.json").is_file()  # K=2: 1, 2, 1, 2, 4


def test_analyze_errors_are_simgraph_errors(trained_run, tmp_path, capsys):
    from simgraph.cli import main

    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert main(["analyze", str(trained_run), "--loads", "1,two"]) == 2
    assert "--loads must be comma-separated ints" in capsys.readouterr().err
    assert main(["analyze", str(trained_run), "--loads", "0"]) == 2
    assert main(["analyze", str(trained_run), "--episodes", "0"]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["analyze", str(trained_run), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
