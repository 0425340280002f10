"""The typed net (input -> memory -> output, teacher on) past the loads runs/recall_capacity.py sweeps:
every learned rule shipped in a results folder (random start ``mlp``/``mlp_untyped``, Hebbian start
``mlp_hebbian``/``mlp_hebbian_untyped``, whichever are there) and the hand-set Hebbian rule (the
untrained typed start, its gain tuned on that folder's task), scored on the same fresh episodes at each
load. Writes <folder>/loads.{json,md} for each folder:

- runs/results/capacity_typed/ (key cues: the whole key enters the input population; accuracy on
  every value bit)
- runs/results/capacity_typed_partial/ (half cues, ``task.cue = "partial"``; accuracy on the
  not-given bits)

    python runs/typed_recall_loads.py                    # both folders, 4.5 min on the shared 2-core CPU, 1 thread
    python runs/typed_recall_loads.py --folders capacity_typed
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_capacity import BASE, TOPOLOGIES, TYPED_START, TYPED_TASK, typed_hebbian_baseline  # noqa: E402

from simgraph.analysis import capacity, sweep  # noqa: E402
from simgraph.train import Config, load_rule  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FOLDERS = {"capacity_typed": "key", "capacity_typed_partial": "partial"}  # results folder -> the task's cue
KINDS = ("mlp", "mlp_untyped", "mlp_hebbian", "mlp_hebbian_untyped")  # the learned rows, in table order
LABELS = {"hebbian": "hand-set Hebbian (untrained typed start)", "mlp": "learned, typed, random start",
          "mlp_untyped": "learned, untyped, random start", "mlp_hebbian": "learned, typed, Hebbian start",
          "mlp_hebbian_untyped": "learned, untyped, Hebbian start"}
LOADS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 48)
EPISODES = 128


def score_folder(out: Path, cue: str, loads=LOADS, episodes=EPISODES) -> dict:
    """Score the hand-set rule and every shipped learned rule under ``out/models/recall_network`` on
    the typed task with ``cue``; writes ``out/loads.{json,md}`` and returns the JSON written."""
    started = time.time()
    cfg = Config.load(BASE).override(**{"network.topology": "recall_network", "network.params": TOPOLOGIES["recall_network"],
                                        "task.bits": 32, "rule.kind": "mlp", "rule.start": "hebbian", **TYPED_START,
                                        **TYPED_TASK, "task.cue": cue})
    task = cfg.make_task()
    beta = typed_hebbian_baseline(cfg, task)["beta"]
    cfg = cfg.override(**{"rule.beta": beta})
    graph = cfg.make_graph()
    rules = {"hebbian": (cfg.make_rule(graph), graph)}
    for kind in KINDS:
        folder = out / "models" / "recall_network" / kind
        if folder.joinpath("checkpoint.json").is_file():
            rules[kind] = load_rule(folder)[:2]
    results = {}
    for name, (rule, g) in rules.items():
        by_load = sweep(rule, g, task, "num_patterns", loads, episodes)
        results[name] = {"by_load": by_load, "capacity": capacity(by_load)}
        print(f"{out.name} {name} {results[name]['capacity']} " + " ".join(f"K{k}:{a:.3f}" for k, a in by_load.items()), flush=True)
    seconds = round(time.time() - started, 1)
    written = {"results": results, "cue": cue, "hebbian_beta": beta, "episodes": episodes, "seconds": seconds}
    out.joinpath("loads.json").write_text(json.dumps(written, indent=1))
    lines = ["| rule | capacity K (>=95%) | " + " | ".join(f"K={k}" for k in loads) + " |", "|---" * (2 + len(loads)) + "|"]
    for name, r in results.items():
        lines.append(f"| {name}: {LABELS[name]} | {r['capacity']} | " + " | ".join(f"{r['by_load'][k]:.3f}" for k in loads) + " |")
    scored = "all value bits (key cues)" if cue == "key" else "the not-given value bits (half cues)"
    lines.append(f"\nBit accuracy on {scored}, {episodes} fresh episodes per load, the same for every rule; "
                 f"hand-set Hebbian beta {beta} (tuned at K=4); {seconds} s.")
    out.joinpath("loads.md").write_text("\n".join(lines) + "\n")
    return written


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", default=",".join(FOLDERS), help=f"comma-separated subset of {list(FOLDERS)}")
    ap.add_argument("--episodes", type=int, default=EPISODES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.folders.split(","):
        if name not in FOLDERS:
            raise SystemExit(f"unknown folder {name!r}; choose from {list(FOLDERS)}")
        score_folder(RESULTS / name, FOLDERS[name], episodes=args.episodes)


if __name__ == "__main__":
    main()
