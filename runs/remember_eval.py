"""A trained recall rule against the tuned Hebbian and delta rules on the same net and episodes.

For every load K, the learned rule of RUN, the Hebbian rule and the delta rule are scored on the
same fresh episodes of RUN's task with ``num_patterns = K``. The two hand-set rules are tuned
once, at the task's own load, on separate episodes (``baselines.hebbian_baseline`` and
``delta_baseline``), so all three are one fixed rule scored across loads. Capacity is the largest
K with bit accuracy >= 0.95 on not-given bits.

    python runs/remember_eval.py runs/results/remember64_step260 --loads 14,16,18,20,24,28
    python runs/remember_eval.py RUN --loads 1,2,4,8 --set task.delay=4 --episodes 256
    python runs/remember_eval.py RUN --heldout      # the held-out settings below, each at its own load

Writes RUN/eval.jsonl (RUN/heldout.jsonl) unless --out names another file.

``--heldout`` scores the settings chosen, before the default rule was retrained, as the ones it
must generalise to (issue: learning to remember). The default problem is fully recurrent, N = 32,
K <= 6, delay 0, half cues; each held-out setting changes one of these, and the hand-set rules
are tuned on the held-out setting itself (the learned rule is not):
"""

HELD_OUT = {  # name: overrides of the run's config ("task.bits" also resizes the network)
    "N=48, K=6": {"task.bits": 48, "task.num_patterns": 6},
    "K=10": {"task.num_patterns": 10},
    "K=4, delay 16": {"task.num_patterns": 4, "task.delay": 16},
    "K=4, cue 0.3": {"task.num_patterns": 4, "task.cue_fraction": 0.3},
    "K=4, 8 distractors": {"task.num_patterns": 4, "task.delay": 8, "task.distractors": True},
}
__doc__ += "".join(f"    {name}: {changes}\n" for name, changes in HELD_OUT.items())

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from simgraph.analysis import capacity
from simgraph.cli import _parse_sets
from simgraph.baselines import delta_baseline, hebbian_baseline
from simgraph.rules import DeltaRule, HebbianRule
from simgraph.train import evaluate, load_rule


def hand_set_rules(graph, task):
    """The Hebbian and delta rules with their gains (and step) tuned on ``task``, on separate episodes."""
    beta, _ = hebbian_baseline(graph, task, episodes=16)
    tuned_delta, _ = delta_baseline(graph, task, episodes=16)
    return {"hebbian": HebbianRule(beta=beta), "delta": DeltaRule(**tuned_delta)}, {"hebbian": {"beta": beta}, "delta": tuned_delta}


def scores(rules, graph, task, episodes):
    """Bit accuracy of each rule on the same fresh episodes of ``task``."""
    return {name: round(evaluate(r, graph, task, episodes)["accuracy"], 4) for name, r in rules.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a training run's folder (checkpoint.json inside)")
    ap.add_argument("--loads", help="comma-separated numbers of patterns K")
    ap.add_argument("--heldout", action="store_true", help="score the held-out settings instead of --loads")
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change the run's config for the evaluation, e.g. task.delay=4 (repeatable)")
    ap.add_argument("--out", default=None, help="JSON-lines file (default RUN/eval.jsonl or RUN/heldout.jsonl)")
    args = ap.parse_args()
    if bool(args.loads) == args.heldout:
        ap.error("give --loads or --heldout")
    warnings.simplefilter("ignore")  # the unreachable-output warning of the hand-set rules is expected here
    torch.set_num_threads(2)
    started = time.time()
    rule, graph, cfg = load_rule(args.run)
    rows = []
    if args.heldout:
        for name, changes in HELD_OUT.items():
            changed = cfg.override(**changes, **_parse_sets(args.set))
            g = changed.make_graph() if "task.bits" in changes else graph
            task = changed.make_task().replace(min_patterns=0)
            hand_set, tuned = hand_set_rules(g, task)
            rows.append({"setting": name, **scores({"learned": rule, **hand_set}, g, task, args.episodes), "tuned": tuned})
            print(json.dumps(rows[-1]), flush=True)
        summary = {"learned >= hebbian": sum(r["learned"] >= r["hebbian"] for r in rows), "settings": len(rows)}
    else:
        task = cfg.override(**_parse_sets(args.set)).make_task().replace(min_patterns=0)
        # tuned once at the run's own load, so each hand-set rule is one fixed rule across loads
        hand_set, tuned = hand_set_rules(graph, task)
        for K in (int(k) for k in args.loads.split(",")):
            rows.append({"K": K, **scores({"learned": rule, **hand_set}, graph, task.replace(num_patterns=K), args.episodes)})
            print(json.dumps(rows[-1]), flush=True)
        summary = {"capacity": {name: capacity({r["K"]: r[name] for r in rows}) for name in ("learned", "hebbian", "delta")},
                   "tuned": tuned}
    summary.update({"set": args.set, "episodes": args.episodes, "seconds": round(time.time() - started, 1)})
    print(json.dumps(summary), flush=True)
    out = Path(args.out) if args.out else Path(args.run) / ("heldout.jsonl" if args.heldout else "eval.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows + [summary]))


if __name__ == "__main__":
    main()
