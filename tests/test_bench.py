"""`simgraph bench --quick` runs and reports (what it reports, not how fast: no timing asserts)."""

import json

import pytest

from simgraph.errors import SimgraphError
import torch

from simgraph.bench import main, suite
from simgraph.cli import main as cli_main
from simgraph.errors import ConfigError


def test_quick_bench_reports_every_rule_and_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--json", str(out), "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    full = json.loads(out.read_text())
    assert summary["command"] == "bench" and summary["quick"]
    assert summary["roofline"]["bandwidth_gbs"] > 0 and summary["roofline"]["matmul_gflops"] > 0
    for name in ("engine_vs_dense", "engine_vs_pyg", "sparse_vs_dense_time"):
        assert summary["ratios"][name], name
    rules = {r["rule"] for r in full["rows"]}
    assert {"static", "hebbian", "mlp", "genome", "lstm_synapse"} <= rules
    impls = {(r["rule"], r["impl"]) for r in full["rows"] if "s_per_tick" in r}
    assert {("hebbian", "dense"), ("mlp", "dense"), ("hebbian", "pyg"), ("mlp", "pyg")} <= impls
    assert all(r["syn_updates_per_s"] > 0 for r in full["rows"] if "s_per_tick" in r)
    assert any("mem_extra_mb" in r for r in full["rows"])
    mem = summary["memory"]
    assert {name: c["lean"] for name, c in mem["rules"].items()} == {"mlp": "checkpoint", "hebbian": "lean", "plastic": "lean"}
    for c in mem["rules"].values():
        assert len(c["plain_mb"]) == len(c["lean_mb"]) == len(mem["ticks"]) and c["time_ratio"] > 0
    assert (tmp_path / "memory_vs_episode.png").exists()


def test_references_compute_what_the_engine_computes():
    for kind in ("dense", "sparse"):
        graph = suite.make_graph(kind, 40 if kind == "dense" else 200, 0.1)
        for rule_name in ("static", "hebbian", "mlp"):
            rule = suite.make_rule(rule_name, graph)
            impls = ("engine", "pyg", "dense") if kind == "dense" else ("engine", "pyg")
            outs = [suite.run_variant(suite.make_variant(rule_name, i, graph, 2, False, rule), 3, False) for i in impls]
            for o in outs[1:]:
                torch.testing.assert_close(o, outs[0], rtol=1e-4, atol=1e-5)


def test_bad_bench_arguments_are_clear_errors():
    with pytest.raises(SimgraphError, match="unknown rule in --rules 'hebian'; did you mean 'hebbian'"):
        main(["--rules", "hebian"])
    with pytest.raises(ConfigError, match="batches"):
        main(["--batches", "0"])
    with pytest.raises(ConfigError, match="dense"):
        suite.make_variant("hebbian", "dense", suite.make_graph("sparse", 50, 0.1), 1, False)
    assert cli_main(["bench", "--rules", "nope"]) == 2


@pytest.mark.gpu
def test_quick_bench_on_gpu(tmp_path):
    assert main(["--quick", "--device", "cuda", "--rules", "hebbian,mlp", "--no-memory", "--out", str(tmp_path)]) == 0
