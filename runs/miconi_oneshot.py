"""Run (c): Miconi 2016's one-shot association and reversal learning with a plastic network.

    python runs/miconi_oneshot.py --seed 0 --episodes 2000

Network: ``pattern`` (8) and ``label`` (2) neurons (plus ``--hidden`` neurons), all-to-all
(every projection dense), eta learned per synapse type; the label neurons are the output.
"""

import argparse
from pathlib import Path

import miconi_common  # noqa: F401  (puts the checkout on sys.path)
import torch

import simgraph as sg
from simgraph.rules import PlasticRule
from simgraph.tasks.oneshot import OneShotTask

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--episodes", type=int, default=2000)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--hidden", type=int, default=0)
p.add_argument("--task", choices=["oneshot", "reversal", "both"], default="both")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "miconi_oneshot")
args = p.parse_args()
torch.set_num_threads(args.threads)

for name in ["oneshot", "reversal"] if args.task == "both" else [args.task]:
    task = OneShotTask() if name == "oneshot" else OneShotTask.reversal_task()
    net = sg.Network(args.seed).population("pattern", task.pattern_bits).population("label", task.label_bits)
    pops = ["pattern", "label"] + (["hidden"] if args.hidden else [])
    if args.hidden:
        net.population("hidden", args.hidden)
    for a in pops:
        for b in pops:
            net.connect(a, b, "all_to_all", synapse_type=f"{a}_to_{b}")
    graph = net.inputs("pattern", "label").outputs("label").build()
    rule = PlasticRule(graph, eta=0.1, learn_eta=True, eta_per_type=True, input_gain=20.0, init_std=0.01, seed=args.seed)
    miconi_common.train(rule, graph, task, args.episodes, args.lr, args.seed, args.out, f"{name}_seed{args.seed}",
                        batch_size=args.batch, log_every=50)
    print(f"{name}: learned eta per synapse type", dict(zip(graph.synapse_types, rule.eta_table()[:, 0].tolist())))
