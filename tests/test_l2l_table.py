"""runs/l2l_table.py's rule entries are what `simgraph eval` of the shipped checkpoint prints."""

import importlib.util
import json
from pathlib import Path

from simgraph.cli import main
from simgraph.train import load_rule

ROOT = Path(__file__).resolve().parents[1]


def table_module():
    spec = importlib.util.spec_from_file_location("l2l_table", ROOT / "runs" / "l2l_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simgraph_eval_reproduces_a_table_entry(tmp_path, capsys):
    run = tmp_path / "l2l_genome_s0"
    small = ["train.steps=2", "train.eval_every=2", "train.eval_batch=2", "train.batch_size=2", "task.max_steps=12",
             "network.params={sizes=[16, 4, 5]}", "train.threads=1"]
    argv = ["train", str(ROOT / "runs" / "l2l_genome.toml"), "--out", str(run), "--no-baselines", "--no-progress"]
    assert main(argv + [x for s in small for x in ("--set", s)]) == 0
    capsys.readouterr()
    table = table_module()
    table.configure("20", 3)
    rule, graph, _ = load_rule(run)
    want = table.rule_curve(rule, graph, "iris")[20]
    sets = ['task.families=["iris"]', "task.min_steps=20", "task.max_steps=20", f"task.query={table.QUERY}",
            "task.query_every=0"]
    assert main(["eval", str(run), "--episodes", "3"] + [x for s in sets for x in ("--set", s)]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["final_accuracy"] == want and got["task"]["families"] == ["iris"]
