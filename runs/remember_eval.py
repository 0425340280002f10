"""A trained recall rule against the tuned Hebbian and delta rules on the same net and episodes.

For every load K, the learned rule of RUN, the Hebbian rule and the delta rule are scored on the
same fresh episodes of RUN's task with ``num_patterns = K``. The two hand-set rules are tuned
once, at the task's own load, on separate episodes (``baselines.hebbian_baseline`` and
``delta_baseline``), so all three are one fixed rule scored across loads. Capacity is the largest
K with bit accuracy >= 0.95 on not-given bits.

    python runs/remember_eval.py runs/results/remember64_step260 --loads 14,16,18,20,24,28
    python runs/remember_eval.py RUN --loads 1,2,4,8 --set task.delay=4 --episodes 256

Writes RUN/eval.jsonl unless --out names another file.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from simgraph.analysis import capacity
from simgraph.baselines import delta_baseline, hebbian_baseline
from simgraph.rules import DeltaRule, HebbianRule
from simgraph.train import evaluate, load_rule
from simgraph.cli import _parse_sets


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a training run's folder (checkpoint.json inside)")
    ap.add_argument("--loads", required=True, help="comma-separated numbers of patterns K")
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="change a task field for the evaluation, e.g. delay=4 (repeatable)")
    ap.add_argument("--out", default=None, help="JSON-lines file (default RUN/eval.jsonl)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # the unreachable-output warning of the hand-set rules is expected here
    torch.set_num_threads(2)
    started = time.time()
    rule, graph, cfg = load_rule(args.run)
    changes = {k.removeprefix("task."): v for k, v in _parse_sets(args.set).items()}
    task = cfg.make_task().replace(**changes)
    beta, _ = hebbian_baseline(graph, task, episodes=16)
    tuned_delta, _ = delta_baseline(graph, task, episodes=16)
    rows = []
    for K in (int(k) for k in args.loads.split(",")):
        t = task.replace(num_patterns=K)
        rows.append({"K": K, **{name: round(evaluate(r, graph, t, args.episodes)["accuracy"], 4) for name, r in
                                (("learned", rule), ("hebbian", HebbianRule(beta=beta)), ("delta", DeltaRule(**tuned_delta)))}})
        print(json.dumps(rows[-1]), flush=True)
    summary = {"capacity": {name: capacity({r["K"]: r[name] for r in rows}) for name in ("learned", "hebbian", "delta")},
               "tuned": {"hebbian": {"beta": beta}, "delta": tuned_delta}, "task": changes, "episodes": args.episodes,
               "seconds": round(time.time() - started, 1)}
    print(json.dumps(summary), flush=True)
    out = Path(args.out) if args.out else Path(args.run) / "eval.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows + [summary]))


if __name__ == "__main__":
    main()
