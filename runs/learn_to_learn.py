"""The learn-to-learn table: trained genome / LSTM-synapse rules against swept SGD and Adam.

Train first (each is one config over the one loop):

    simgraph train runs/genome.toml --out runs/out/genome --no-baselines
    simgraph train runs/lstm_synapse.toml --out runs/out/lstm --no-baselines
    simgraph train runs/cma_genome.toml --out runs/out/cma --no-baselines

then

    python runs/learn_to_learn.py --genome runs/out/genome --lstm runs/out/lstm --cma runs/out/cma

Query accuracy on unseen examples of each episode after 10, 20, 50, 100 online steps (one example
per step), mean of 32 episodes (``simgraph.analysis.accuracy_after``), on the meta-training task
and held-out ones, against the best of 6 learning rates for SGD and Adam on an MLP of the same
shape (``simgraph.baselines``; the same episodes). Writes results.{csv,md} and PNGs to --out.
"""

import argparse
import csv
import json
import time
from pathlib import Path

import torch

import topologies
from simgraph.analysis import accuracy_after
from simgraph.baselines import LEARNING_RATES, best_of_sweep, sweep
from simgraph.rules import backprop_genome
from simgraph.tasks.online import HELD_OUT, META_TRAIN
from simgraph.train import load_rule

AT = (10, 20, 50, 100)
TASKS = {**META_TRAIN, **HELD_OUT}


def hidden_of(graph) -> tuple:
    sizes = [p.size for p in graph.populations.values()]
    return tuple(sizes[1:-1])


def log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genome", type=Path)
    ap.add_argument("--lstm", type=Path)
    ap.add_argument("--cma", type=Path)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/out/learn_to_learn"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    systems = []
    if args.genome:
        rule, graph, _ = load_rule(args.genome)
        systems.append(("backprop genome (start)", backprop_genome(0.03, saturation=1.0), hidden_of(graph)))
        systems.append(("meta-trained genome", rule, hidden_of(graph)))
    if args.lstm:
        rule, graph, _ = load_rule(args.lstm)
        systems.append(("meta-trained LSTM rule", rule, hidden_of(graph)))
    rows, baselines_done = [], set()
    for label, rule, hidden in systems:
        for name, task in TASKS.items():
            graph = topologies.layered([task.input_size, *hidden, task.n_classes])
            rows += [(label, name, k, a) for k, a in accuracy_after(rule, graph, task, AT).items()]
            if args.no_baselines or (hidden, name) in baselines_done:
                continue
            baselines_done.add((hidden, name))
            for opt in ("sgd", "adam"):
                best = best_of_sweep(sweep(task, opt, LEARNING_RATES, hidden=hidden, at=AT))
                rows += [(f"best {opt.upper()} ({'hidden ' + str(hidden[0]) if hidden else 'no hidden'})", name, k, a)
                         for k, (a, lr) in best.items()]
        print(label, "evaluated", f"{time.time() - t0:.0f}s", flush=True)

    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "task", "step", "accuracy"])
        w.writerows([(m, t, k, f"{a:.4f}") for m, t, k, a in rows])
    table = {}
    for m, t, k, a in rows:
        table.setdefault((t, m), {})[k] = a
    lines = ["| task | method | " + " | ".join(f"step {k}" for k in AT) + " |", "|" + "---|" * (len(AT) + 2)]
    for (t, m), accs in table.items():
        tag = " (meta-train)" if t in META_TRAIN else " (held out)"
        lines.append(f"| {t}{tag} | {m} | " + " | ".join(f"{accs[k]:.3f}" for k in AT) + " |")
    if args.cma:
        cma = [r for r in log_rows(args.cma) if "fitness_best_so_far" in r]
        lines += ["", f"CMA-ES ({args.cma}): generation 1 mean fitness {cma[0]['fitness_mean']:.3f}, best candidate "
                  f"after {cma[-1]['step']} generations {cma[-1]['fitness_best_so_far']:.3f}"]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        fig.savefig(args.out / "accuracy.png", dpi=100)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for label, run in (("genome", args.genome), ("lstm", args.lstm)):
        if run:
            r = [x["train_loss"] for x in log_rows(run)]
            k = 10
            axes[0].plot([sum(r[max(0, i - k):i + 1]) / len(r[max(0, i - k):i + 1]) for i in range(len(r))], label=label)
    axes[0].set_title("meta-loss (query CE, running mean)")
    axes[0].legend()
    if args.cma:
        cma = [r for r in log_rows(args.cma) if "fitness_best_so_far" in r]
        axes[1].plot([r["step"] for r in cma], [r["fitness_best_so_far"] for r in cma], label="best so far")
        axes[1].plot([r["step"] for r in cma], [r["fitness_mean"] for r in cma], label="population mean")
        axes[1].set_title("CMA-ES fitness (accuracy)")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(args.out / "training.png", dpi=100)
    print(json.dumps({"seconds": round(time.time() - t0), "out": str(args.out)}))


if __name__ == "__main__":
    main()
