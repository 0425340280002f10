"""How recall capacity across topologies relates to their graph measures (issue 16, part 3).

Joins the capacities of runs/results/capacity/results.json (runs/recall_capacity.py: every topology
and network type, 32-bit patterns, half cues) with, per topology, the weight-free structure of its
graph (density, reciprocity, clustering, path length, in-degree spread: simgraph.analysis.structure)
and the graph measures of what the Hebbian rule writes into it after storing K=4 patterns
(simgraph.analysis.load_sweep: symmetry, modularity, alignment of communities with the patterns,
cosine to the Hebbian outer-product matrix). No training: the trained rules' capacities are read.

    python runs/capacity_structure.py    # writes runs/out/capacity_structure/{results.json,table.md,capacity_vs_structure.png}
    python runs/capacity_structure.py --replot   # the figure again from results.json
"""

import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from recall_capacity import BASE, TOPOLOGIES  # noqa: E402

from simgraph.analysis import load_sweep, structure  # noqa: E402
from simgraph.analysis.report import save_figure  # noqa: E402
from simgraph.baselines import hebbian_baseline  # noqa: E402
from simgraph.rules import HebbianRule  # noqa: E402
from simgraph.train import Config  # noqa: E402

STRUCTURE = ("density", "reciprocity", "clustering", "path_length", "indegree_cv")
LEARNED = ("symmetry", "modularity", "pattern_alignment", "hebbian_similarity", "strength_cv")


def main(out="runs/out/capacity_structure"):
    torch.set_num_threads(2)
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    capacities = json.loads((HERE / "results" / "capacity" / "results.json").read_text())["results"]
    rows = []
    for topology, params in TOPOLOGIES.items():
        cfg = Config.load(BASE).override(**{"network.topology": topology, "network.params": params})
        task = cfg.make_task().replace(num_patterns=4)
        graph = cfg.make_graph()
        row = {"topology": topology, **structure(graph)}
        row.update({f"capacity_{name.split('/')[1]}": r["capacity"] for name, r in capacities.items()
                    if name.startswith(topology + "/")})
        if graph.num_inputs == graph.num_outputs and bool((graph.input_nodes == graph.output_nodes).all()):
            beta, _ = hebbian_baseline(graph, task, episodes=16)
            (hebb,) = load_sweep(HebbianRule(beta=beta), graph, task, loads=[4], episodes=8)
            row.update({f"hebbian_{m}": hebb[m] for m in ("accuracy", *LEARNED)})
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    seconds = round(time.time() - started, 1)
    (out / "results.json").write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=1))
    cols = ["topology", "neurons", "synapses", *STRUCTURE, "capacity_frozen", "capacity_hebbian", "capacity_mlp",
            "hebbian_accuracy", *(f"hebbian_{m}" for m in LEARNED)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|---" * len(cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    lines.append(f"\nHebbian measures after storing K=4 patterns (8 episodes, recurrent gain tuned on 16); {seconds} s.")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "capacity_vs_structure.png")
    print(json.dumps({"command": "capacity_structure", "seconds": seconds, "out": str(out)}))


def plot(rows, path):
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, x in zip(axes, ("synapses", "clustering", "reciprocity")):
        for kind, marker in (("hebbian", "o"), ("mlp", "s"), ("frozen", "^")):
            pts = [(r[x], r[f"capacity_{kind}"]) for r in rows if f"capacity_{kind}" in r]
            ax.scatter(*zip(*pts), marker=marker, label=kind)
        for r in rows:
            ax.annotate(r["topology"], (r[x], r["capacity_mlp"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(x)
    axes[0].set_ylabel("capacity K (>= 95% bits)")
    axes[-1].legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    if sys.argv[1:] == ["--replot"]:  # the figure again from results.json, without recomputing
        folder = Path("runs/out/capacity_structure")
        plot(json.loads((folder / "results.json").read_text())["rows"], folder / "capacity_vs_structure.png")
    else:
        main()
