"""Run (b): 50-bit, 2-pattern completion with 51 neurons (50 + a bias neuron), plastic vs non-plastic.

    python runs/miconi_50bit.py --seed 0 --episodes 2000

The same network is trained twice: with plasticity (w and alpha learned) and with alpha pinned at
zero (a plain recurrent net with learned w). Task timing as the 1000-bit benchmark:
2 * 2 * (6 + 4) + 6 = 46 ticks; the bias neuron's input is always 1.
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
p.add_argument("--episodes", type=int, default=2000)
p.add_argument("--lr", type=float, default=3e-4)
p.add_argument("--only", choices=["plastic", "non_plastic"])
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "miconi_50bit")
args = p.parse_args()
torch.set_num_threads(args.threads)

task = PatternCompletionTask(n_bits=50, n_patterns=2, bias=True)
graph = topologies.fully_recurrent(task.num_inputs, autapses=True, seed=args.seed)  # 51 neurons
curves = {}
for name in [args.only] if args.only else ["plastic", "non_plastic"]:
    rule = PlasticRule(graph, eta=0.01, input_gain=20.0, init_std=0.01, seed=args.seed, plastic=name == "plastic")
    curves[name] = miconi_common.train(rule, graph, task, args.episodes, args.lr, args.seed, args.out, f"{name}_seed{args.seed}",
                        output_slice=slice(0, task.n_bits))["sign_errors"]  # the bias neuron is not scored
if len(curves) == 2:
    miconi_common.plot_compare(curves, args.out / f"compare_seed{args.seed}.png", "50-bit, 2 patterns, 51 neurons")
