"""``simgraph analyze RUN``: the learned synapses of a trained recall run as graphs, in tables and PNGs.

Files written to the output folder:

- ``measures_by_load.csv`` / ``.json``: :func:`~simgraph.analysis.graphs.load_sweep` rows, one per load K
  (recall accuracy, strength distribution, symmetry and reciprocity, clustering, degree-strength
  correlation, modularity and communities, alignment of communities with the stored patterns,
  cosine similarity of the weight change to the Hebbian outer-product matrix);
- ``weights_by_type.csv``: per projection (pre/post type, synapse type) weight summaries at the run's K;
- ``learned.graphml``: the network with the stored synapse states of one episode (``sg.read`` loads
  it back exactly) and ``weights.graphml``: the scalar weight graph, for Gephi / networkx;
- ``measures_vs_load.png``, ``strength_distribution.png``, ``weights_by_type.png``,
  ``learned_vs_hebbian.png``; ``summary.json`` (with ``measured_corr``, for a weighted graph: the
  correlation of the trained weights before storing with the measured strengths a rule starts
  from, rescaled and signed by Dale's law).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import networkx as nx
import torch

from ..errors import ConfigError
from . import graphs

PLOTTED = ("accuracy", "symmetry", "modularity", "pattern_alignment", "hebbian_similarity", "clustering", "initial_corr")


def default_loads(k: int) -> list[int]:
    """Loads around a run's own pattern count ``k``: 1, 2, k/2, k, 2k."""
    return sorted({1, 2, max(k // 2, 1), k, 2 * k})


def analyze_run(run, out, loads=None, episodes: int = 8, seed: int = 4321) -> dict:
    """Analyse the run folder ``run`` (written by ``simgraph train`` on a recall task) into folder ``out``."""
    from ..errors import check_int, check_ints, check_out_folder, check_path
    from ..interop import write
    from ..tasks.recall import RecallTask
    from ..train import load_rule

    run = check_path("analyze: run", run)
    out = check_out_folder("analyze: --out", out)
    episodes = check_int("analyze episodes", episodes, low=1)
    rule, graph, cfg = load_rule(run)
    task = cfg.make_task()
    if not isinstance(task, RecallTask):
        raise ConfigError(f"analyze needs a run of the recall task (patterns stored, then recalled); {run} trained "
                          f"task kind {cfg.task.kind!r}")
    loads = check_ints("analyze loads (pattern counts)", default_loads(task.num_patterns) if loads is None else loads, 1)
    stored = {k: graphs.stored_weights(rule, graph, task.replace(num_patterns=k), episodes, seed) for k in sorted(set(loads))}
    rows = [graphs.summarize(graph, ws) for ws in stored.values()]
    out.mkdir(parents=True, exist_ok=True)
    ws = stored.get(task.num_patterns) or graphs.stored_weights(rule, graph, task, episodes, seed)
    types = graphs.by_type(graph, ws.weights[0])
    _csv(out / "measures_by_load.csv", rows)
    (out / "measures_by_load.json").write_text(json.dumps(rows, indent=1, default=_nan))
    _csv(out / "weights_by_type.csv", types)
    with torch.no_grad():
        from ..train.bptt import run_ticks

        ep = task.sample(1, seed=seed).to(graph.device)
        _, state = run_ticks(rule, graph, ep.ticks(slice(0, task.write_ticks)), rule.init_state(graph, 1))
    write(graph, out / "learned.graphml", state={k: v for k, v in state.items() if k in ("node", "edge")})
    nx.write_graphml(graphs.weight_graph(graph, ws.weights[0]), out / "weights.graphml")
    plots = _plots(out, graph, rows, stored, ws, types, task.num_patterns)
    summary = {"command": "analyze", "run": str(run), "out": str(out), "rule": cfg.rule.kind,
               "neurons": graph.num_nodes, "synapses": graph.num_edges, "num_patterns": task.num_patterns,
               "loads": [r["num_patterns"] for r in rows], "episodes": episodes, "by_load": rows,
               # how much of the measured strengths the trained rule's starting weights keep (weighted graphs)
               "measured_corr": _measured_corr(graph, ws.initial),
               "files": sorted({p.name for p in out.iterdir()} | {"summary.json"})}  # this file too
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_nan))
    summary["plots"] = plots
    return summary


def _nan(x):
    return None if isinstance(x, float) and math.isnan(x) else str(x)


def _csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def _plots(out: Path, graph, rows: list[dict], stored: dict, ws, types: list[dict], k: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    loads = [r["num_patterns"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    for m in PLOTTED:
        ys = [r[m] for r in rows]
        if not all(math.isnan(y) for y in ys):
            ax.plot(loads, ys, marker="o", label=m.replace("_", " "))
    ax.set_xlabel("stored patterns K")
    ax.set_xscale("log", base=2)
    ax.set_xticks(loads, [str(x) for x in loads])
    ax.minorticks_off()
    ax.set_title("learned synapses after storing K patterns")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, out / "measures_vs_load.png", made)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for r_k in sorted({loads[0], loads[-1], k} & set(stored)):
        s = torch.cat([graphs.strengths(graph, w) for w in stored[r_k].weights])  # every episode's neurons
        ax.hist(s.numpy(), bins=30, alpha=0.5, label=f"K={r_k}" + (" (the run's load)" if r_k == k else ""))
    ax.set_xlabel("neuron strength (sum of |w| in and out)")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=8)
    save_figure(fig, out / "strength_distribution.png", made)

    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(types) + 2), 4))
    ax.bar(range(len(types)), [t["mean"] for t in types], yerr=[t["std"] for t in types], capsize=3)
    ax.set_xticks(range(len(types)), [f"{t['pre']}->{t['post']}\n{t['synapse_type']}" for t in types], fontsize=7,
                  rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel(f"synapse weight at K={k} (mean, std)")
    save_figure(fig, out / "weights_by_type.png", made)

    keep, hebb = graphs.hebbian_matrix(graph, ws.patterns[0])
    if bool(keep.any()):
        fig, ax = plt.subplots(figsize=(4.8, 4.4))
        ax.scatter(hebb.numpy(), (ws.weights[0] - ws.initial)[keep].numpy(), s=4, alpha=0.4)
        ax.set_xlabel("Hebbian outer product sum_k p_k[i] p_k[j]")
        ax.set_ylabel("learned weight change")
        ax.set_title(f"K={k}, synapses between input neurons")
        save_figure(fig, out / "learned_vs_hebbian.png", made)
    return made


def save_figure(fig, path: Path, made: list | None = None) -> None:
    """``tight_layout``, save as PNG (110 dpi), close; the file name joins ``made``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    if made is not None:
        made.append(Path(path).name)


def _measured_corr(graph, initial) -> float | None:
    from ..rules.constraints import constrain_start, start_weights

    if graph.edge_weight is None:
        return None
    measured = constrain_start(graph, start_weights(graph, "analyze", "edge_weight").to(graph.device))
    return graphs._corr(measured.view(-1).cpu().numpy(), initial.numpy())
