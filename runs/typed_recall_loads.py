"""The typed net (input -> memory -> output, key cues) past the loads runs/recall_capacity.py sweeps:
the shipped learned rules (typed, untyped) and the hand-set Hebbian rule, scored on the same fresh
episodes at each load. Writes runs/results/capacity_typed/loads.{json,md}.

    python runs/typed_recall_loads.py            # ~2 min on a 2-core CPU, 1 thread
"""

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_capacity import BASE, TOPOLOGIES, TYPED_START, TYPED_TASK, typed_hebbian_baseline  # noqa: E402

from simgraph.analysis import capacity, sweep  # noqa: E402
from simgraph.train import Config, load_rule  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "capacity_typed"
LOADS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 48)
EPISODES = 128


def main():
    torch.set_num_threads(1)
    started = time.time()
    rules = {}
    for kind in ("mlp_hebbian", "mlp_hebbian_untyped"):
        folder = OUT / "models" / "recall_network" / kind
        if folder.joinpath("checkpoint.json").is_file():
            rules[kind] = load_rule(folder)[:2]
    cfg = Config.load(BASE).override(**{"network.topology": "recall_network", "network.params": TOPOLOGIES["recall_network"],
                                        "task.bits": 32, "rule.kind": "mlp", "rule.start": "hebbian", **TYPED_START, **TYPED_TASK})
    task = cfg.make_task()
    cfg = cfg.override(**{"rule.beta": typed_hebbian_baseline(cfg, task)["beta"]})
    graph = cfg.make_graph()
    rules = {"hebbian": (cfg.make_rule(graph), graph), **rules}
    results = {}
    for name, (rule, g) in rules.items():
        by_load = sweep(rule, g, task, "num_patterns", LOADS, EPISODES)
        results[name] = {"by_load": by_load, "capacity": capacity(by_load)}
        print(name, results[name]["capacity"], " ".join(f"K{k}:{a:.3f}" for k, a in by_load.items()), flush=True)
    seconds = round(time.time() - started, 1)
    OUT.joinpath("loads.json").write_text(json.dumps({"results": results, "episodes": EPISODES, "seconds": seconds}, indent=1))
    lines = ["| rule | capacity K (>=95%) | " + " | ".join(f"K={k}" for k in LOADS) + " |", "|---" * (2 + len(LOADS)) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['capacity']} | " + " | ".join(f"{r['by_load'][k]:.3f}" for k in LOADS) + " |")
    lines.append(f"\nBit accuracy on all value bits (key cues), {EPISODES} fresh episodes per load, the same for every rule; {seconds} s.")
    OUT.joinpath("loads.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
