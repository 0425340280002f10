"""Issue 13, N=64 sparse nets: a learned rule against the tuned Hebbian rule on a second set of fresh
episodes (not recall_capacity.py's fixed scoring episodes), at every load it scores.

    python runs/k1_check.py OUT.json TOPOLOGY=RUN_FOLDER [TOPOLOGY=RUN_FOLDER ...] [--episodes 256] [--seed S]

The Hebbian rule's beta is tuned as recall_capacity.py tunes it (hebbian_baseline at K=4, its own
tuning episodes); both rules are scored on the same ``episodes`` episodes from ``seed`` per load.
"""
import argparse
import json
import time

import torch

from simgraph.baselines import hebbian_baseline
from simgraph.rules import HebbianRule
from simgraph.train import evaluate, load_rule

LOADS = (1, 2, 4, 6, 8, 12, 16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="TOPOLOGY=RUN_FOLDER")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--seed", type=int, default=123_456_789)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results, t0 = {}, time.time()
    for spec in args.runs:
        topo, folder = spec.split("=", 1)
        rule, graph, cfg = load_rule(folder)
        task = cfg.make_task().replace(min_patterns=0)
        beta, _ = hebbian_baseline(graph, task.replace(num_patterns=4), episodes=16)
        row = {}
        for name, r in (("learned", rule), ("hebbian", HebbianRule(beta=beta))):
            row[name] = {k: evaluate(r, graph, task.replace(num_patterns=k), args.episodes, seed=args.seed)["accuracy"] for k in LOADS}
            print(topo, name, " ".join(f"K{k}:{a:.4f}" for k, a in row[name].items()), flush=True)
        row["hebbian_beta"], row["folder"] = beta, folder
        results[topo] = row
    json.dump({"episodes": args.episodes, "seed": args.seed, "seconds": round(time.time() - t0, 1), "results": results},
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
