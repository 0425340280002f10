"""Recall vs load and delay, per network type and topology (issue: learning to remember, part 4).

For each topology (fully recurrent, input->memory->output, sparse random p=0.2, small-world) and
network type this meta-trains the trainable types with runs/capacity.toml (32-bit patterns, half
cues, 400 steps, curriculum up to K=8 checked every 25 steps; [network] and [rule] set per model,
through the one training loop), then measures bit accuracy on fresh episodes against the load K
(delay 0), and at K=4 against the delay, the cue fraction and distractors in the delay. Writes runs/out/capacity/{results.json,results.md,*.png}.

Network types: ``frozen`` (synapses fixed), ``hebbian`` (outer product, gain tuned), ``delta`` (online
delta rule, gain and step tuned), ``plastic`` (Miconi's differentiable plasticity, meta-trained), ``mlp`` (the learned MLP rule from a random start), ``mlp_hebbian``
(the learned MLP rule started at the tuned Hebbian rule: ``start="hebbian"``), ``mlp_untyped`` (one
neuron and synapse embedding for all). On input->memory->output the task shows each value to the
output neurons while it is written (``teach=True``), without which it is unsolvable.

    python runs/recall_capacity.py            # ~60 min on a 2-core CPU; resumable (checkpoints per model)
    python runs/recall_capacity.py --models hebbian,delta,mlp_hebbian --topologies sparse_random
    python runs/recall_capacity.py --quick    # a smoke run: tiny budgets, a minute
    python runs/recall_capacity.py --topologies recall_network --models hebbian,mlp_hebbian,mlp_hebbian_untyped \
        --out runs/results/capacity_typed --steps 1000 --eval-every 10 --threads 1 --set train.threads=1 \
        --set task.min_patterns=1 --set task.num_patterns=16        # the typed net, key cues (~25 min)
    python runs/recall_capacity.py --bits 64 --out runs/results/capacity64 --topologies sparse_random,small_world,modular \
        --models hebbian,delta,mlp_hebbian --set task.min_patterns=1 --set task.num_patterns=16
    python runs/recall_capacity.py --bits 128 --out runs/results/capacity128 --loads 1,2,4,8,12,16,20,24,32,48 \
        --sweep-load 16 --models frozen,hebbian,delta,plastic --set task.min_patterns=1 --set task.num_patterns=32

``--loads`` replaces the loads swept (default LOADS), ``--sweep-load`` the load K at which the delay, cue and
distractor sweeps run (default 4), ``--load NAME=FOLDER`` adds a row for a rule trained elsewhere (e.g. at another
N: the rule is shared per neuron and synapse), scored on the same episodes. A ``notes.md`` in the --out folder is copied to the top of results.md.
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from simgraph.analysis import capacity, sweep  # noqa: E402
from simgraph.cli import _parse_sets  # noqa: E402
from simgraph.train import Config, load_rule, train  # noqa: E402

BASE = Path(__file__).resolve().parent / "capacity.toml"
from simgraph.baselines import delta_baseline, hebbian_baseline  # noqa: E402
from simgraph.rules import DeltaRule, HebbianRule  # noqa: E402

TOPOLOGIES = {
    "fully_recurrent": {},
    "recall_network": {"n_memory": 32},
    "sparse_random": {"p": 0.2},
    "small_world": {"k": 6, "p": 0.1},
    "modular": {"p_within": 0.5, "p_between": 0.05},  # 4 modules of bits / 4 neurons
}
LOADS = (1, 2, 4, 6, 8, 12, 16)
DELAYS = (0, 4, 8, 16, 32)
# difficulty: result key -> (task field swept, its values, the other task fields held)
SWEEPS = {
    "by_load": ("num_patterns", LOADS, {}),
    "by_delay": ("delay", DELAYS, {"num_patterns": 4}),
    "by_cue": ("cue_fraction", (0.25, 0.5, 0.75), {"num_patterns": 4}),  # the fraction of bits a cue gives
    "by_distractors": ("delay", (4, 8, 16), {"num_patterns": 4, "distractors": True}),  # random patterns in the delay
}
COLUMNS = {"by_load": "K={}", "by_delay": "delay {}", "by_cue": "cue {}", "by_distractors": "{} distractors"}


def sweeps(loads=LOADS, held_load=4):
    """SWEEPS with other loads, and the delay, cue and distractor sweeps at load ``held_load``."""
    return {key: (field, loads if key == "by_load" else values, {**held, "num_patterns": held_load} if held else held)
            for key, (field, values, held) in SWEEPS.items()}


def models_for(topology):
    if topology == "recall_network":
        # the only topology here with several neuron types. "hebbian" there is the hand-set
        # hetero-associative memory: the untrained Hebbian start below (fixed random afferent code,
        # Hebbian writes of activity on the memory -> output synapses only), its gain tuned
        return ["frozen", "hebbian", "mlp", "mlp_untyped", "mlp_hebbian", "mlp_hebbian_untyped"]
    return ["frozen", "hebbian", "delta", "plastic", "mlp", "mlp_hebbian"]


# input -> memory -> output, the Hebbian start (and the hand-set rule): the memory holds a fixed random
# code of the key (afferent weights N(0, 4^2 / indegree), never written) and the memory -> output
# synapses associate it with the value the teacher shows the outputs. Writing the afferent and the
# recurrent synapses too (the plain Hebbian rule) merges the keys' codes: 0.77 at K=2 instead of 1.000.
# beta = 0.3 keeps the activities away from 0 (the tuned hand-set gain, 0.03, leaves outputs near 1e-4,
# which the first residual steps swamp), and the read-out gain 10 scales the outputs to the targets
# (the least-squares gain of this start is 11-12 at K=1-8)
TYPED_START = {"rule.learn_from": "activity", "rule.init_weight_std": {"afferent": 4.0}, "rule.write_types": ["efferent"],
               "rule.beta": 0.3, "rule.output_gain": 10.0}
TYPED_TASK = {"task.teach": True, "task.cue": "key"}  # the key enters the input population, the value the outputs


def rule_settings(kind, topology):
    """[rule] overrides for a trainable network type."""
    rule = {"rule.kind": kind if kind in ("frozen", "plastic") else "mlp"}
    if kind.endswith("_untyped"):
        rule["rule.use_types"] = False
    if kind.startswith("mlp_hebbian") or (kind == "hebbian" and topology == "recall_network"):
        rule["rule.start"] = "hebbian"
        if topology == "recall_network":
            rule.update(TYPED_START)
    return rule


def typed_hebbian_baseline(cfg, task, episodes=16):
    """The hand-set rule on input -> memory -> output (the untrained typed Hebbian start), ``beta``
    tuned like :func:`hebbian_baseline` (on K=4 episodes no evaluation uses); returns ``{"beta": b}``."""
    from simgraph.baselines import BETAS, TUNE_SEED
    from simgraph.train import evaluate

    graph = cfg.make_graph()
    score = {b: evaluate(cfg.override(**{"rule.beta": b}).make_rule(graph), graph, task.replace(num_patterns=4), 128,
                         seed=TUNE_SEED)["accuracy"] for b in BETAS}
    return {"beta": max(score, key=score.get)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default="runs/out/capacity")
    ap.add_argument("--topologies", default=",".join(TOPOLOGIES), help="comma-separated subset")
    ap.add_argument("--models", default="", help="comma-separated subset of network types (default: all)")
    ap.add_argument("--eval-every", type=int, default=25, help="curriculum check interval (steps)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the tuning and the scoring")
    ap.add_argument("--bits", type=int, default=32, help="pattern size, and so the number of neurons N")
    ap.add_argument("--loads", default="", help="comma-separated loads K for the load sweep (default: "
                    + ",".join(map(str, LOADS)) + ")")
    ap.add_argument("--sweep-load", type=int, default=4, help="the load K of the delay, cue and distractor sweeps")
    ap.add_argument("--load", action="append", default=[], metavar="NAME=FOLDER",
                    help="also score the trained rule in run folder FOLDER as row <topology>/NAME, untrained here "
                         "(on the chosen topologies at --bits; repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training-config override for every model, e.g. task.min_patterns=1 (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loads = tuple(int(k) for k in args.loads.split(",")) if args.loads else LOADS
    grid = sweeps(loads, args.sweep_load)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps, episodes = (2, 8) if args.quick else (args.steps, 128)
    started = time.time()
    # a run of some models adds to (or replaces) their rows in the results already there
    previous = out / "results.json"
    results = json.loads(previous.read_text())["results"] if previous.is_file() and not args.quick else {}
    for r in results.values():  # JSON made the swept values strings
        for key in SWEEPS:
            if key in r:
                r[key] = {float(k) if "." in k else int(k): v for k, v in r[key].items()}
    loaded = dict(spec.split("=", 1) for spec in args.load)  # row name -> a trained run folder, scored as it is
    chosen = args.topologies.split(",")
    for name in chosen:
        if name not in TOPOLOGIES:
            raise SystemExit(f"unknown topology {name!r}; choose from {list(TOPOLOGIES)}")
    for topology, params in TOPOLOGIES.items():
        if topology not in chosen:
            continue
        for kind in models_for(topology) + list(loaded):
            if args.models and kind not in args.models.split(",") and kind not in loaded:
                continue
            name = f"{topology}/{kind}"
            t0 = time.time()
            task_settings = TYPED_TASK if topology == "recall_network" else {}
            cfg = Config.load(BASE).override(**{"network.topology": topology, "network.params": params,
                                                "task.bits": args.bits,
                                                **rule_settings(kind, topology), **task_settings,
                                                "train.steps": steps, "train.eval_every": args.eval_every,
                                                **_parse_sets(args.set)})
            task = cfg.make_task().replace(min_patterns=0)  # scored (and the hand-set rules tuned) at one load at a time
            tuned = {}
            if kind in ("hebbian", "delta", "mlp_hebbian") and topology != "recall_network":
                graph = cfg.make_graph()
                beta, _ = hebbian_baseline(graph, task.replace(num_patterns=4), episodes=16)
                tuned = {"beta": beta}
                if kind == "delta":
                    tuned, _ = delta_baseline(graph, task.replace(num_patterns=4), episodes=16)
                cfg = cfg.override(**{f"rule.{k}": v for k, v in tuned.items()}) if kind == "mlp_hebbian" else cfg
            if kind == "hebbian" and topology == "recall_network":  # the untrained typed start, its beta tuned
                tuned = typed_hebbian_baseline(cfg, task)
                cfg = cfg.override(**{f"rule.{k}": v for k, v in tuned.items()})
                graph = cfg.make_graph()
                rule = cfg.make_rule(graph)
            elif kind in loaded:  # a rule trained elsewhere (any N: the rule is shared), on this topology's graph
                rule, graph, tuned = load_rule(loaded[kind])[0], cfg.make_graph(), {"from": loaded[kind]}
            elif kind in ("hebbian", "delta"):
                rule = HebbianRule(**tuned) if kind == "hebbian" else DeltaRule(**tuned)
            else:
                folder = out / "models" / topology / kind
                done = folder.joinpath("checkpoint.json").is_file() and json.loads(folder.joinpath("checkpoint.json").read_text())["step"] >= steps
                if done:
                    rule, graph, _ = load_rule(folder)
                else:
                    res = train(cfg, folder, resume=folder.joinpath("checkpoint.json").is_file(), progress=False)
                    rule, graph = res.rule, res.graph
            swept = {key: sweep(rule, graph, task.replace(**held), field, values[:2] if args.quick else values, episodes)
                     for key, (field, values, held) in grid.items()
                     if not (field == "cue_fraction" and task.cue != "partial")}  # a key cue gives no bits
            results[name] = {"neurons": graph.num_nodes, "synapses": graph.num_edges, "tuned": tuned, **swept,
                             "sweep_load": args.sweep_load,
                             "capacity": capacity(swept["by_load"]), "seconds": round(time.time() - t0, 1)}
            print(f"{name:<32s} N={graph.num_nodes:<3d} capacity K={capacity(swept['by_load']):<3d} "
                  + " ".join(f"K{k}:{a:.3f}" for k, a in swept["by_load"].items()), flush=True)
            # written after every model, so an interrupted sweep keeps what it measured
            total = round(time.time() - started, 1)
            (out / "results.json").write_text(json.dumps({"results": results, "seconds": total, "steps": steps}, indent=1))
            write_table(results, out / "results.md", total, out / "notes.md")
    total = round(time.time() - started, 1)
    plot(results, "by_load", f"patterns stored K ({args.bits} bits each, half cue)", out / "accuracy_vs_load.png")
    plot(results, "by_delay", f"delay after the write phase (ticks), K={args.sweep_load}", out / "accuracy_vs_delay.png")
    print(json.dumps({"command": "recall_capacity", "seconds": total,
                      "capacity": {k: v["capacity"] for k, v in results.items()}}))


def write_table(results, path, seconds, notes=None):
    columns = [(key, v) for key in SWEEPS for v in sorted({v for r in results.values() for v in r.get(key, {})})]
    head = [notes.read_text().rstrip() + "\n"] if notes is not None and notes.is_file() else []
    lines = head + ["| topology / network type | N | synapses | capacity K (>=95%) | "
             + " | ".join(COLUMNS[key].format(v) for key, v in columns) + " |", "|---" * (4 + len(columns)) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['neurons']} | {r['synapses']} | {r['capacity']} | "
                     + " | ".join(f"{r[key][v]:.3f}" if v in r.get(key, {}) else "-" for key, v in columns) + " |")
    lines.append(f"\nBit accuracy on not-given bits (chance 0.5), fresh episodes; total {seconds} s.")
    path.write_text("\n".join(lines) + "\n")


def plot(results, key, xlabel, path):
    topologies = [t for t in TOPOLOGIES if any(name.startswith(t + "/") for name in results)]
    fig, axes = plt.subplots(1, len(topologies), figsize=(4 * len(topologies), 3.4), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, topology in zip(axes, topologies):
        for name, r in results.items():
            if name.startswith(topology + "/"):
                xs = list(r[key])
                ax.plot(xs, [r[key][x] for x in xs], marker="o", label=name.split("/")[1])
        ax.axhline(0.95, color="grey", lw=0.5, ls="--")
        ax.set_title(topology)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.legend(fontsize=7)  # per panel: the rows differ between topologies (loaded rules, typed rows)
    axes[0].set_ylabel("bit accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
