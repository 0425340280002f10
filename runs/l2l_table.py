"""Issue 17's table: meta-trained genome and LSTM-synapse rules on the held-out task families, after
10, 20, 50, 100 and 500 online steps, against their starting rules and the best swept SGD and Adam.

Train first (runs/l2l_runs.sh: runs/l2l_genome.toml and runs/l2l_lstm.toml over seeds 0-2), then

    python runs/l2l_table.py --ship runs/out      # copy the finished runs' checkpoints into models/, then score them
    python runs/l2l_table.py                      # score the shipped checkpoints again
    python runs/l2l_table.py --rules genome_norm --out runs/results/learn_to_learn/families_genome_norm

Every rule entry is ``simgraph eval`` of a shipped checkpoint on one held-out family at a fixed
horizon N, the accuracy on 50 unseen queries after N online steps, mean of 64 episodes:

    simgraph eval runs/results/learn_to_learn/models/l2l_genome_s0 --episodes 64 --set 'task.families=["iris"]' \\
        --set task.min_steps=20 --set task.max_steps=20 --set task.query=50 --set task.query_every=0
    # -> "final_accuracy"

SGD and Adam (an MLP of the rule's shape, cross-entropy, one example per step, the best of 6
learning rates chosen per entry: an optimistic baseline) learn on exactly those episodes. Rules:
mean and sample standard deviation over the meta-training seeds. Writes results.{md,csv,json}
and accuracy.png to --out, and checks the issue's "done when" criteria.
"""

import argparse
import csv
import json
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from simgraph.analysis.online import stability
from simgraph.baselines import LEARNING_RATES, OPTIMIZERS, best_of_sweep, mlp_online
from simgraph.tasks import FAMILIES, HELD_OUT_FAMILIES, META_TRAIN_FAMILIES, FamilyTask
from simgraph.tasks.families import DATASETS
from simgraph.train import checkpoint, evaluate, load_rule
from simgraph.train.loop import EVAL_SEED

AT = (10, 20, 50, 100, 500)
EPISODES, QUERY = 64, 50
RESULTS = Path("runs/results/learn_to_learn")
RULES = {"genome": "meta-trained genome", "genome_norm": "meta-trained genome, synapse_norm", "lstm": "meta-trained LSTM rule",
         "genome_anneal": "meta-trained genome, synapse_norm + anneal",
         "genome_anneal500": "meta-trained genome, synapse_norm + anneal, 500-step episodes",
         "lstm_long": "meta-trained LSTM rule, fine-tuned on 100-500 steps",
         "genome_fade": "meta-trained genome, synapse_norm + fade to backprop",
         "genome_fade40": "meta-trained genome, synapse_norm + fade to backprop, T = 40",
         "genome_fade40_early": "meta-trained genome, T = 40 fade, fine-tuned on 10-500 steps",
         "genome_fade40_overlap": "meta-trained genome, T = 40 fade, fine-tuned on 10-500 steps + overlap4",
         "genome_fade_learned": "meta-trained genome, learned fade per entry, + overlap4",
         "genome_fade_bwd10": "meta-trained genome, T = 40 fade (eta_bwd 10), fine-tuned on 10-500 steps + overlap4"}
# a run that began from another shipped run's rule (train.init_from) is held to that rule, seed for seed;
# genome_fade40_early began from genome_fade40 but is held to the backprop genome, the anchor both fade back to
STARTED_FROM = {"lstm_long": "lstm"}


def start_label(kind: str) -> str:
    if kind in STARTED_FROM:
        return f"the {RULES[STARTED_FROM[kind]]} it was fine-tuned from"
    return "untrained LSTM" if kind.startswith("lstm") else "backprop genome"


def starting_rule(kind: str, seed: int, models: Path, graph, cfg):
    """The rule meta-training began from: the config's own start (same seed), or for a fine-tuning
    run the shipped rule of the same seed it was initialised from."""
    if kind in STARTED_FROM:
        return load_rule(models / f"l2l_{STARTED_FROM[kind]}_s{seed}")[0]
    return cfg.make_rule(graph)


def fixed(family: str, steps: int, width: int, classes: int) -> FamilyTask:
    return FamilyTask((family,), width, classes, steps, steps, query=QUERY, query_every=0, name=family)


def rule_curve(rule, graph, family: str) -> dict[int, float]:
    w, c = graph.num_inputs, graph.num_outputs
    return {n: evaluate(rule, graph, fixed(family, n, w, c), EPISODES)["final_accuracy"] for n in AT}


def configure(at: str, episodes: int) -> None:
    """Other horizons or fewer episodes (a quick look; the README's table uses the defaults)."""
    global AT, EPISODES
    AT, EPISODES = tuple(int(x) for x in at.split(",")), episodes


def shape_label(sizes) -> str:
    """How the baselines' network is named in the table: "hidden 32" or "no hidden"."""
    return f"hidden {sizes[1]}" if len(sizes) > 2 else "no hidden"


def baselines_from(path: Path) -> dict[tuple[str, str], dict[str, dict[int, tuple[float, float]]]]:
    """The best SGD / Adam entries of an earlier run's results.csv, by (shape label, family): they
    are deterministic (the same episodes from the same seeds), so a table that adds rules can reuse
    them instead of sweeping again (about 1000 of this script's 1149 s)."""
    base = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            method = row["method"]
            if not method.startswith("best "):
                continue  # "best sgd (hidden 32, lr 0.1)"
            opt, rest = method[len("best "):].split(" (", 1)
            shape, lr = rest.rstrip(")").rsplit(", lr ", 1)
            base.setdefault((shape, row["task"]), {}).setdefault(opt, {})[int(row["step"])] = (float(row["accuracy"]), float(lr))
    return base


def best_baselines(family: str, sizes: list[int]) -> dict[str, dict[int, tuple[float, float]]]:
    """Per optimiser, per step: (best accuracy, its learning rate), on the rule entries' episodes."""
    out = {}
    for opt in OPTIMIZERS:
        runs = {lr: {} for lr in LEARNING_RATES}
        for n in AT:
            task = fixed(family, n, sizes[0], sizes[-1])
            for lr in LEARNING_RATES:
                runs[lr].update(mlp_online(task, opt, lr, hidden=tuple(sizes[1:-1]), at=(n,), batch=EPISODES, query=QUERY,
                                           seed=EVAL_SEED))
        out[opt] = best_of_sweep(runs)
    return out


def ship(src: Path, models: Path) -> None:
    """Copy the finished runs into ``models``: the trained rule (a checkpoint without the optimiser
    and the estimator's mid-episode state, which only resuming needs), the config and the log."""
    for run in sorted(src.glob("l2l_*_s*")):
        if not (run / "done").is_file():
            print(f"skip {run} (not finished)")
            continue
        dest = models / run.name
        if dest.exists():
            shutil.rmtree(dest)
        spec, tensors = checkpoint.load(run)
        extra = {k: v for k, v in spec.items() if k not in ("format", "step", "tensors", "sha256")}
        checkpoint.save(dest, spec["step"], {"rule": tensors["rule"], "progress": tensors["progress"]}, extra)
        for name in ("config.json", "metrics.jsonl", "done"):
            shutil.copy2(run / name, dest / name)
        print(f"shipped {run} -> {dest}")


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ship", type=Path, help="a folder of finished runs (l2l_<rule>_s<seed>) to copy into models/ first")
    ap.add_argument("--models", type=Path, default=RESULTS / "models")
    ap.add_argument("--out", type=Path, default=RESULTS / "families")
    ap.add_argument("--at", default=",".join(map(str, AT)), help="online steps to score after (default %(default)s)")
    ap.add_argument("--episodes", type=int, default=EPISODES)
    ap.add_argument("--rules", help="score only these comma-separated rule names (e.g. genome_norm); default all")
    ap.add_argument("--baselines-from", type=Path, help="reuse the best SGD/Adam entries of an earlier results.csv "
                    "(same --at and --episodes) instead of sweeping them again")
    args = ap.parse_args()
    configure(args.at, args.episodes)
    torch.set_num_threads(1)
    if args.ship:
        ship(args.ship, args.models)
    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    curves, starts, train_info, shapes = {}, {}, {}, {}  # (rule, family) -> [curve per seed]
    for run in sorted(args.models.glob("l2l_*_s*")):
        kind, seed = run.name[len("l2l_"):].rsplit("_s", 1)[0], int(run.name.rsplit("_s", 1)[1])
        if args.rules and kind not in args.rules.split(","):
            continue
        rule, graph, cfg = load_rule(run)
        start = starting_rule(kind, seed, args.models, graph, cfg)
        shapes[kind] = [p.size for p in graph.populations.values()]
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        train_info.setdefault(kind, []).append({"seed": seed, "steps": rows[-1]["step"], "seconds": rows[-1]["seconds"],
                                                "estimator": cfg.train.estimator, "done": (run / "done").read_text().strip()})
        for fam in HELD_OUT_FAMILIES:
            curves.setdefault((kind, fam), []).append(rule_curve(rule, graph, fam))
            starts.setdefault((kind, fam), []).append(rule_curve(start, graph, fam))
        print(f"{run.name} scored, {time.time() - t0:.0f} s", flush=True)
    earlier = baselines_from(args.baselines_from) if args.baselines_from else {}
    by_shape = {}
    for sizes in {tuple(s) for s in shapes.values()}:
        for fam in HELD_OUT_FAMILIES:
            old = earlier.get((shape_label(sizes), fam))
            if old is not None and all(n in old.get(opt, {}) for opt in OPTIMIZERS for n in AT):
                by_shape[(sizes, fam)] = old
            else:
                by_shape[(sizes, fam)] = best_baselines(fam, list(sizes))
    base = {(kind, fam): by_shape[(tuple(sizes), fam)] for kind, sizes in shapes.items() for fam in HELD_OUT_FAMILIES}
    print(f"baselines done, {time.time() - t0:.0f} s", flush=True)

    seen = {FAMILIES[f].source for f in META_TRAIN_FAMILIES}
    csv_rows, md = [], ["| held-out task | method | " + " | ".join(f"step {n}" for n in AT) + " |", "|" + "---|" * (len(AT) + 2)]
    verdict = {}
    for fam in HELD_OUT_FAMILIES:
        src = FAMILIES[fam].source
        new = "unseen classes" if src in seen else "dataset never seen" if src in DATASETS else "generator never seen"
        for kind in shapes:
            if (kind, fam) not in curves:
                continue
            label = f"{fam} ({new})"
            per_seed, start = curves[(kind, fam)], starts[(kind, fam)]
            mean = {n: statistics.mean(c[n] for c in per_seed) for n in AT}
            spread = {n: statistics.stdev(c[n] for c in per_seed) if len(per_seed) > 1 else float("nan") for n in AT}
            start_mean = {n: statistics.mean(c[n] for c in start) for n in AT}
            md.append(f"| {label} | {RULES[kind]} ({len(per_seed)} seeds) | " +
                      " | ".join(fmt([c[n] for c in per_seed]) for n in AT) + " |")
            md.append(f"| | its start ({start_label(kind)}) | " +
                      " | ".join(fmt([c[n] for c in start]) for n in AT) + " |")
            b = base[(kind, fam)]
            shape = shape_label(shapes[kind])
            for opt in OPTIMIZERS:
                md.append(f"| | best {opt.upper()} ({shape}) | " + " | ".join(f"{b[opt][n][0]:.3f}" for n in AT) + " |")
            for s, c in zip([i["seed"] for i in train_info[kind]], per_seed):
                csv_rows += [(fam, RULES[kind], s, n, f"{c[n]:.4f}") for n in AT]
            for s, c in zip([i["seed"] for i in train_info[kind]], start):
                csv_rows += [(fam, f"start of {kind}", s, n, f"{c[n]:.4f}") for n in AT]
            for opt in OPTIMIZERS:
                csv_rows += [(fam, f"best {opt} ({shape}, lr {b[opt][n][1]})", "", n, f"{b[opt][n][0]:.4f}") for n in AT]
            sgd = {n: b["sgd"][n][0] for n in AT}
            chance = 1 / FAMILIES[fam].ways[1]
            verdict[(kind, fam)] = {
                "mean": mean, "spread": spread, "start": start_mean, "sgd": sgd, "adam": {n: b["adam"][n][0] for n in AT},
                "unstable": stability(mean, start_mean),
                "unstable_seeds": sum(bool(stability(c, s)) for c, s in zip(per_seed, start)),
                "beats_sgd_at_20": mean[20] - sgd[20] > 2 * spread[20],
                "margin_20": mean[20] - sgd[20],
                "new_dataset": src not in seen and src in DATASETS,
                "within_5_of_sgd_at_100_and_above_chance": mean[100] > chance and mean[100] >= sgd[100] - 0.05,
                "chance": chance,
            }
    md += ["", "Done-when checks (rule means over seeds; spread = sample std over seeds):", ""]
    for kind in shapes:
        rows = {f: v for (k, f), v in verdict.items() if k == kind}
        md.append(f"- {RULES[kind]}: never falls (step 500 >= 100 >= 20 within 1 point) and at least its start: "
                  + ", ".join(f"{f} {'yes' if not v['unstable'] else 'NO (' + '; '.join(v['unstable']) + ')'}"
                              for f, v in rows.items()))
        md.append(f"  - beats best SGD at step 20 by more than 2 spreads on {sum(v['beats_sgd_at_20'] for v in rows.values())}"
                  f" of {len(rows)} (margins: " + ", ".join(f"{f} {v['margin_20']:+.3f} vs 2x{v['spread'][20]:.3f}"
                                                             for f, v in rows.items()) + ")")
        md.append("  - at step 100 against best SGD / Adam: " + ", ".join(
            f"{f} {v['mean'][100]:.3f} vs {v['sgd'][100]:.3f} / {v['adam'][100]:.3f}" for f, v in rows.items())
            + "; at step 500: " + ", ".join(f"{f} {v['mean'][500]:.3f} vs {v['sgd'][500]:.3f} / {v['adam'][500]:.3f}"
                                           for f, v in rows.items()))
        if kind.startswith("lstm"):
            md.append("  - datasets never seen, above chance and within 5 points of best SGD at step 100: " + ", ".join(
                f"{f} {'yes' if v['within_5_of_sgd_at_100_and_above_chance'] else 'no'} ({v['mean'][100]:.3f}, chance "
                f"{v['chance']:.3f}, SGD {v['sgd'][100]:.3f})" for f, v in rows.items() if v["new_dataset"]))
    seconds = round(time.time() - t0)
    md += ["", f"Meta-training runs: " + "; ".join(
        f"{kind} seed {i['seed']}: {i['estimator']}, {i['steps']} steps, {i['done']}" for kind in train_info
        for i in train_info[kind]), f"Scoring: {seconds} s on {platform.node()} ({platform.processor() or platform.machine()}), "
        f"1 thread, torch {torch.__version__}."]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "method", "seed", "step", "accuracy"])
        w.writerows(csv_rows)
    (args.out / "results.json").write_text(json.dumps(
        {f"{k}/{f}": v for (k, f), v in verdict.items()} | {"train": train_info, "seconds": seconds}, indent=1))
    print("\n".join(md))
    plot(args.out, verdict, shapes)


def plot(out: Path, verdict: dict, shapes: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(HELD_OUT_FAMILIES)
    fig, axes = plt.subplots(len(shapes), len(fams), figsize=(4 * len(fams), 3.3 * len(shapes)), squeeze=False, sharey=True)
    for row, kind in enumerate(shapes):
        for ax, fam in zip(axes[row], fams):
            v = verdict.get((kind, fam))
            if v is None:
                continue
            m = [v["mean"][n] for n in AT]
            s = [0 if v["spread"][n] != v["spread"][n] else v["spread"][n] for n in AT]
            ax.plot(AT, m, marker="o", label=RULES[kind])
            ax.fill_between(AT, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.2)
            ax.plot(AT, [v["start"][n] for n in AT], marker=".", ls=":", label="its start")
            ax.plot(AT, [v["sgd"][n] for n in AT], marker="s", ls="--", label="best SGD")
            ax.plot(AT, [v["adam"][n] for n in AT], marker="^", ls="--", label="best Adam")
            ax.set_xscale("log")
            ax.set_title(f"{fam} ({kind})")
            ax.set_xlabel("online steps")
        axes[row][0].set_ylabel("query accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=90)


if __name__ == "__main__":
    main()
