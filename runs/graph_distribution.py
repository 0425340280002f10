"""One rule meta-trained on a distribution of random graphs (issue: learning to remember, item 7).

The learned MLP rule (Hebbian start, mixed loads K = 1..8, 32-bit patterns, half cues) is trained
through the one loop, ``fit(rule, graphs, task)``, on eight random graphs of 32 neurons: sparse
random nets of density 0.15, 0.3 and 0.5 and small worlds of degree 4 and 10, two seeds of some.
Training step s runs on graph s mod 8. None of the topologies ``runs/transfer.py`` scores it on is
in the distribution (fully recurrent; sparse p = 0.2; small world k = 6; modular), nor is N = 64.

    python runs/graph_distribution.py             # resumable; ~20-40 min on the 2-core CPU
    python runs/transfer.py                       # then scores it beside the single-topology rules

Writes runs/results/graph_distribution/ (checkpoints loadable by ``load_rule`` / ``simgraph eval``:
they carry the first graph's config, and the whole distribution under "distribution").
"""

import argparse
import json
from pathlib import Path

import torch

from simgraph.baselines import hebbian_baseline
from simgraph.train import Config, fit

HERE = Path(__file__).resolve().parent
DISTRIBUTION = [  # (topology, params, seed)
    ("sparse_random", {"p": 0.15}, 0), ("sparse_random", {"p": 0.15}, 1),
    ("sparse_random", {"p": 0.3}, 0), ("sparse_random", {"p": 0.3}, 1),
    ("sparse_random", {"p": 0.5}, 0),
    ("small_world", {"k": 4, "p": 0.1}, 0), ("small_world", {"k": 4, "p": 0.1}, 1),
    ("small_world", {"k": 10, "p": 0.1}, 0),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default=str(HERE / "results" / "graph_distribution"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    configs = [Config.load(HERE / "capacity.toml").override(**{
        "seed": seed, "network.topology": topology, "network.params": params, "rule.start": "hebbian",
        "task.min_patterns": 1, "train.steps": args.steps, "train.threads": 1}) for topology, params, seed in DISTRIBUTION]
    task = configs[0].make_task()
    graphs = [c.make_graph(task) for c in configs]
    # the Hebbian start's gain, tuned on the distribution (the mean accuracy at K = 4 over its graphs)
    fixed = task.replace(num_patterns=4, min_patterns=0)
    betas = {b: sum(hebbian_baseline(g, fixed, episodes=32, betas=(b,))[1] for g in graphs) for b in (0.03, 0.1, 0.3, 1.0)}
    beta = max(betas, key=betas.get)
    base = configs[0].override(**{"rule.beta": beta})
    rule = base.make_rule(graphs[0])
    spec = {"config": base.to_dict(), "base_dir": base.base_dir,
            "distribution": [{"topology": t, "params": p, "seed": s} for t, p, s in DISTRIBUTION]}
    out = Path(args.out)
    result = fit(rule, graphs, task, base.train, seed=base.seed, out=out, resume=(out / "checkpoint.json").is_file(),
                 spec=spec, progress=False, on_log=lambda row: print(json.dumps(row), flush=True))
    print(json.dumps({"command": "graph_distribution", "beta": beta, "steps": result.step,
                      "seconds": round(result.seconds, 1), "final": result.history[-1] if result.history else None}))


if __name__ == "__main__":
    main()
