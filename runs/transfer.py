"""Transfer: rules meta-trained on one topology, scored on every other (issue: learning to remember, item 7).

The learned rules are size-free (one shared neuron and synapse function), so a rule trained on
one net runs unchanged on any other. Each row is a trained run; each column a topology built at
``--bits`` neurons, scored at load ``--load`` (half cues) on the same fresh episodes as the tuned
Hebbian rule of that column (gain tuned on the column's net, separate episodes). A rule's eta is
1 / mean indegree of the net it runs on, as at training. A rule trained on a net with fewer
synapse (or neuron) types than the one it is scored on has no embedding for the new types; it
runs with the new types given its first type's embedding (``widened``), i.e. it treats the modular
net's long-range synapses like the local ones it knows.

    python runs/transfer.py                       # the shipped rules, N=32 and N=64 columns
    python runs/transfer.py --runs A,B --bits 64 --load 4

Writes runs/results/transfer/{transfer.json,transfer.md}.
"""

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import torch

from simgraph.baselines import hebbian_baseline
from simgraph.rules import HebbianRule
from simgraph.train import Config, evaluate, load_rule

HERE = Path(__file__).resolve().parent
RUNS = {  # trained on: run folder (every one from the Hebbian start)
    "fully recurrent, N=32": "results/default_train/model",
    "sparse random p=0.2, N=32": "results/capacity/models/sparse_random/mlp_hebbian",
    "fully recurrent, N=64": "results/remember64_step260",
    "sparse random p=0.2, N=64": "results/capacity64/models/sparse_random/mlp_hebbian",
    "small world k=6, N=64": "results/capacity64/models/small_world/mlp_hebbian",
    "modular, N=64": "results/capacity64/models/modular/mlp_hebbian",
    "8 random graphs, N=32 (runs/graph_distribution.py)": "results/graph_distribution",
}
TOPOLOGIES = {
    "fully recurrent": ("fully_recurrent", {}),
    "sparse random p=0.2": ("sparse_random", {"p": 0.2}),
    "small world k=6": ("small_world", {"k": 6, "p": 0.1}),
    "modular": ("modular", {"p_within": 0.5, "p_between": 0.05}),
}


def widened(rule, graph):
    """``rule`` with its per-type embeddings extended to ``graph``'s types by repeating the first row."""
    wide = copy.deepcopy(rule)
    for count, names in (("num_neuron_types", ("neuron_embedding", "initial_node")),
                         ("num_synapse_types", ("synapse_embedding", "initial_edge"))):
        missing = getattr(graph, count) - getattr(rule, count)
        if missing > 0:
            for name in names:
                table = getattr(wide, name).data
                setattr(wide, name, torch.nn.Parameter(torch.cat([table, table[:1].expand(missing, -1)])))
            setattr(wide, count, getattr(graph, count))
    return wide


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="", help="comma-separated run folders (default: the shipped ones)")
    ap.add_argument("--bits", default="32,64", help="comma-separated net sizes N (= pattern bits)")
    ap.add_argument("--load", type=int, default=4, help="patterns stored, K")
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "results" / "transfer"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    started = time.time()
    runs = {r: r for r in args.runs.split(",")} if args.runs else {k: str(HERE / v) for k, v in RUNS.items()}
    runs = {k: v for k, v in runs.items() if Path(v, "checkpoint.json").is_file()}
    rules = {name: load_rule(folder)[0] for name, folder in runs.items()}
    columns, table = {}, {name: {} for name in rules}
    for bits in (int(b) for b in args.bits.split(",")):
        for label, (topology, params) in TOPOLOGIES.items():
            column = f"{label}, N={bits}"
            cfg = Config.load(HERE / "capacity.toml").override(**{
                "network.topology": topology, "network.params": params, "task.bits": bits,
                "task.num_patterns": args.load})
            graph, task = cfg.make_graph(), cfg.make_task()
            beta, hebbian = hebbian_baseline(graph, task, episodes=args.episodes)
            columns[column] = {"hebbian": round(hebbian, 4), "beta": beta}
            for name, rule in rules.items():
                table[name][column] = round(evaluate(widened(rule, graph), graph, task, args.episodes)["accuracy"], 4)
            print(column, json.dumps({"hebbian": columns[column]["hebbian"],
                                      **{n: table[n][column] for n in rules}}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = round(time.time() - started, 1)
    (out / "transfer.json").write_text(json.dumps({"load": args.load, "episodes": args.episodes, "runs": runs,
                                                   "hebbian": columns, "learned": table, "seconds": seconds}, indent=1))
    lines = ["| trained on \\ scored on | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
             "| tuned Hebbian | " + " | ".join(f"{c['hebbian']:.3f}" for c in columns.values()) + " |"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(
            f"**{row[c]:.3f}**" if row[c] >= columns[c]["hebbian"] else f"{row[c]:.3f}" for c in columns) + " |")
    lines.append(f"\nBit accuracy on not-given bits at K={args.load}, half cues, {args.episodes} fresh episodes per cell "
                 f"(bold: at least the tuned Hebbian rule's); {seconds} s.")
    (out / "transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
