"""Run (a): Miconi et al. 2018's 1000-neuron binary pattern completion, exact configuration.

    python runs/miconi_pattern_completion.py --seed 0 --episodes 1000

1000 neurons, fully connected (autapses included, no bias), 5 patterns, 106 ticks, inputs x20,
eta = 0.01 fixed, w and alpha ~ 0.01 N(0, 1), Adam lr 3e-4, one episode per update.
"""

import argparse
from pathlib import Path

import miconi_common  # noqa: F401  (puts the checkout on sys.path)
import torch

import topologies
from simgraph.rules import PlasticRule
from simgraph.tasks.pattern_completion import PatternCompletionTask

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--episodes", type=int, default=1000)
p.add_argument("--lr", type=float, default=3e-4)
p.add_argument("--threads", type=int, default=1, help="torch threads (1: leave cores to others)")
p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "miconi_pattern_completion")
args = p.parse_args()
torch.set_num_threads(args.threads)

task = PatternCompletionTask()  # the paper's defaults
graph = topologies.fully_recurrent(task.n_bits, autapses=True, seed=args.seed)
rule = PlasticRule(graph, eta=0.01, input_gain=20.0, init_std=0.01, seed=args.seed)
miconi_common.train(rule, graph, task, args.episodes, args.lr, args.seed, args.out, f"seed{args.seed}")
