"""Meta-train a BLUR genome and a VSML LSTM-synapse rule, compare with swept SGD/Adam, run CMA-ES.

    python runs/learn_to_learn.py            # a few minutes on one core
    -> runs/out/learn_to_learn/{results.csv, results.md, meta_train.csv, cma.csv, *.png, *.pt}

Accuracy is measured on unseen examples of each episode after 10, 20, 50, 100 online steps
(one example per step), mean over 32 episodes, on the meta-training task and held-out ones.
The genome runs on input-32-output, the LSTM rule on input-output (VSML's single layer), and
each baseline MLP has the same shape as the rule it is compared with.
"""

import argparse
import csv
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from simgraph.baselines import LEARNING_RATES, best_of_sweep, sweep
from simgraph.rules.genome import GenomeRule, backprop_genome
from simgraph.rules.lstm_synapse import LSTMSynapseRule
from simgraph.tasks.online import HELD_OUT, META_TRAIN
from simgraph.train.cma_es import cma_es
from simgraph.train.learn_to_learn import evaluate, graph_for, meta_train, online_unroll, query_logits

p = argparse.ArgumentParser()
p.add_argument("--genome-iters", type=int, default=300)
p.add_argument("--lstm-iters", type=int, default=300)
p.add_argument("--meta-lr", type=float, default=2e-3)
p.add_argument("--cma-generations", type=int, default=12)
p.add_argument("--cma-popsize", type=int, default=16)
p.add_argument("--only", choices=["all", "genome", "lstm", "cma"], default="all")
p.add_argument("--out", default="runs/out/learn_to_learn")
args = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
os.makedirs(args.out, exist_ok=True)
AT = (10, 20, 50, 100)
TASKS = {**META_TRAIN, **HELD_OUT}
t0 = time.time()


def log_every(n, prefix):
    return lambda r: print(prefix, json.dumps(r), f"{time.time() - t0:.0f}s", flush=True) if r.get("iteration", 0) % n == 0 else None


rows, train_rows = [], []
systems = []
if args.only in ("all", "genome"):
    genome = backprop_genome(0.03, saturation=1.0)  # start: SGD (squared error), +-1 label injection
    for name, task in TASKS.items():
        rows += [("backprop genome (start)", name, k, a) for k, a in evaluate(genome, task, hidden=(32,), at=AT).items()]
    hist = meta_train(genome, META_TRAIN, hidden=(32,), iterations=args.genome_iters, unroll=20, batch=16, query=20,
                      lr=args.meta_lr, log=log_every(25, "genome"))
    train_rows += [{"rule": "genome", **r} for r in hist]
    torch.save(genome.state_dict(), f"{args.out}/genome.pt")
    systems.append(("meta-trained genome", genome, (32,)))
if args.only in ("all", "lstm"):
    lstm = LSTMSynapseRule()
    hist = meta_train(lstm, META_TRAIN, hidden=(), iterations=args.lstm_iters, unroll=20, batch=16, query=20,
                      lr=args.meta_lr, log=log_every(25, "lstm"))
    train_rows += [{"rule": "lstm", **r} for r in hist]
    torch.save(lstm.state_dict(), f"{args.out}/lstm.pt")
    systems.append(("meta-trained LSTM rule", lstm, ()))

for label, rule, hidden in systems:
    shape = "64->32->C" if hidden else "in->C"
    for name, task in TASKS.items():
        rows += [(label, name, k, a) for k, a in evaluate(rule, task, hidden=hidden, at=AT).items()]
        for opt in ("sgd", "adam"):
            best = best_of_sweep(sweep(task, opt, LEARNING_RATES, hidden=hidden, at=AT))
            rows += [(f"best {opt.upper()} ({'hidden 32' if hidden else 'no hidden'})", name, k, a) for k, (a, lr) in best.items()]
    print(label, "evaluated", f"{time.time() - t0:.0f}s", flush=True)

cma_rows = []
if args.only in ("all", "cma"):
    # CMA-ES from a random genome (not from backprop): fitness = query accuracy after 20 steps,
    # on a fixed set of episodes so generations are comparable.
    task = META_TRAIN["digits0-4"]
    graph = graph_for(task, (32,))
    ep = task.episode(20, 16, 20, seed=777)

    def fitness(rule):
        _, state, _ = online_unroll(rule, graph, ep.x, ep.y)
        return (query_logits(rule, graph, state, ep.xq).argmax(-1) == ep.yq).float().mean().item()

    rnd = GenomeRule(2, sigma=("tanh", "tanh"), normalize=True, saturation=1.0, seed=3)
    cma_rows = cma_es(rnd, fitness, generations=args.cma_generations, popsize=args.cma_popsize, sigma0=0.3,
                      log=lambda r: print("cma", json.dumps(r), f"{time.time() - t0:.0f}s", flush=True))
    torch.save(rnd.state_dict(), f"{args.out}/cma_genome.pt")

# ---------------------------------------------------------------------- outputs
suffix = "" if args.only == "all" else f"_{args.only}"
with open(f"{args.out}/results{suffix}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["method", "task", "step", "accuracy"])
    w.writerows([(m, t, k, f"{a:.4f}") for m, t, k, a in rows])
if train_rows:
    with open(f"{args.out}/meta_train{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(train_rows[0]))
        w.writeheader()
        w.writerows(train_rows)
if cma_rows:
    with open(f"{args.out}/cma.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cma_rows[0]))
        w.writeheader()
        w.writerows(cma_rows)

table = {}
for m, t, k, a in rows:
    table.setdefault((t, m), {})[k] = a
lines = ["| task | method | " + " | ".join(f"step {k}" for k in AT) + " |", "|" + "---|" * (len(AT) + 2)]
for (t, m), accs in table.items():
    tag = " (meta-train)" if t in META_TRAIN else " (held out)"
    lines.append(f"| {t}{tag} | {m} | " + " | ".join(f"{accs[k]:.3f}" for k in AT) + " |")
if cma_rows:
    lines += ["", f"CMA-ES (random genome, fitness = accuracy after 20 steps on digits0-4): initial {cma_rows[0]['best']:.3f}, "
              f"best after {len(cma_rows) - 1} generations {cma_rows[-1]['best_so_far']:.3f}"]
open(f"{args.out}/results{suffix}.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if rows:
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 3.5), sharey=True)
    for ax, t in zip(axes, TASKS):
        for (tt, m), accs in table.items():
            if tt == t:
                ax.plot(AT, [accs[k] for k in AT], marker="o", label=m)
        ax.set_title(t + (" (meta-train)" if t in META_TRAIN else " (held out)"))
        ax.set_xscale("log")
        ax.set_xlabel("online steps")
    axes[0].set_ylabel("query accuracy")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{args.out}/accuracy{suffix}.png", dpi=100)
if train_rows or cma_rows:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for rule in ("genome", "lstm"):
        r = [x for x in train_rows if x["rule"] == rule]
        if r:
            k = 10
            sm = [sum(x["loss"] for x in r[max(0, i - k):i + 1]) / len(r[max(0, i - k):i + 1]) for i in range(len(r))]
            axes[0].plot(sm, label=rule)
    axes[0].set_title("meta-loss (query CE, running mean)")
    axes[0].legend()
    if cma_rows:
        axes[1].plot([r["generation"] for r in cma_rows], [r["best_so_far"] for r in cma_rows], label="best so far")
        axes[1].plot([r["generation"] for r in cma_rows], [r["mean"] for r in cma_rows], label="population mean")
        axes[1].set_title("CMA-ES fitness (accuracy)")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(f"{args.out}/training{suffix}.png", dpi=100)
print(json.dumps({"seconds": round(time.time() - t0), "out": args.out}))
