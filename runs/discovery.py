"""Steps until the learned rule finds a storage rule, over seeds (issue: learning to remember, item 3).

"Discovery" is the first evaluation at which bit accuracy at K = 2 patterns passes 0.95 (the curriculum
off, so the load stays at 2), within the default budget of 400 steps, evaluated every 10 steps on 64
held-out episodes. Each setting is the default config (runs/default.toml) with a few fields changed:

    default   fully recurrent, 32 neurons, 32-bit patterns, half cues
    larger    fully recurrent, 48 neurons, 48-bit patterns, a 4-tick delay (the outside setting)
    sparse    sparse random p = 0.2, 32 neurons

and each start is the learned MLP rule from ``start="random"`` (before) or ``start="hebbian"`` (after:
the Hebbian rule inside the rule family, its gain beta tuned on separate episodes first).

    python runs/discovery.py                        # all settings, starts and seeds; resumable
    python runs/discovery.py --starts hebbian --seeds 10 --settings default
    python runs/discovery.py --quick                # a smoke run (2 seeds, 20 steps)
    python runs/discovery.py --settings sparse --starts hebbian --set train.lr=0.01   # a variant of the recipe

A variant (``--set KEY=VALUE``, repeatable) is recorded with its runs and gets its own rows, so what
each change buys is read off the table against the plain recipe.

Writes runs/results/discovery/{runs.jsonl,results.md}; runs.jsonl gets one line per finished run and
is read back on restart, so an interrupted sweep continues where it stopped.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from simgraph.baselines import hebbian_baseline
from simgraph.cli import _parse_sets
from simgraph.train import Config, fit

DEFAULT = Path(__file__).resolve().parent / "default.toml"
SETTINGS = {
    "default": {},
    "larger": {"task.bits": 48, "task.delay": 4},
    "sparse": {"network.topology": "sparse_random", "network.params": {"p": 0.2}},
}
THRESHOLD = 0.95


class Discovered(Exception):
    pass


def config(setting: str, start: str, seed: int, steps: int, variant: dict) -> Config:
    cfg = Config.load(DEFAULT)
    if start == "random":  # the default's beta belongs to its Hebbian start
        cfg.rule.settings.pop("beta", None)
    return cfg.override(**{
        **SETTINGS[setting], "seed": seed, "rule.start": start, "task.num_patterns": 2, "train.curriculum": False,
        "train.steps": steps, "train.eval_every": 10, "train.eval_batch": 64, "train.checkpoint_every": 10**6,
        "train.threads": 0, **variant})


def one_run(setting: str, start: str, seed: int, steps: int, variant: dict) -> dict:
    cfg = config(setting, start, seed, steps, variant)
    task = cfg.make_task()
    graph = cfg.make_graph(task)
    beta = None
    if start == "hebbian":  # start from the tuned Hebbian point, not from beta = 1
        beta, _ = hebbian_baseline(graph, task, episodes=64)
        cfg = cfg.override(**{"rule.beta": beta})
    rule = cfg.make_rule(graph)
    found = []

    def watch(row):
        if row.get("eval_accuracy", 0.0) >= THRESHOLD:
            found.append(row)
            raise Discovered

    t0 = time.time()
    last = None
    try:
        result = fit(rule, graph, task, cfg.train, seed=cfg.seed, progress=False, on_log=watch)
        last = result.history[-1] if result.history else None
    except Discovered:
        pass
    row = found[0] if found else last
    return {"setting": setting, "start": start, "seed": seed, "variant": variant, "beta": beta,
            "discovered_at": found[0]["step"] if found else None, "accuracy": row["eval_accuracy"] if row else None,
            "seconds": round(time.time() - t0, 1)}


def summary(runs: list[dict], steps: int) -> str:
    lines = [f"Steps until bit accuracy at K = 2 passes {THRESHOLD} (evaluated every 10 steps; budget {steps} steps; "
             "'-' = not within the budget).", "",
             "| setting | start | variant | seeds | discovered | median steps | steps per seed |", "|---|---|---|---|---|---|---|"]
    variants = list(dict.fromkeys(_label(r) for r in runs))
    for setting, start, variant in ((a, b, c) for a in SETTINGS for b in ("random", "hebbian") for c in variants):
        rs = sorted((r for r in runs if (r["setting"], r["start"], _label(r)) == (setting, start, variant)),
                    key=lambda r: r["seed"])
        if not rs:
            continue
        hits = [r["discovered_at"] for r in rs if r["discovered_at"] is not None]
        med = statistics.median([h if h is not None else float("inf") for h in (r["discovered_at"] for r in rs)])
        each = ", ".join(str(r["discovered_at"]) if r["discovered_at"] is not None else "-" for r in rs)
        lines.append(f"| {setting} | {start} | {variant} | {len(rs)} | {len(hits)}/{len(rs)} | "
                     f"{med if med != float('inf') else '-'} | {each} |")
    return "\n".join(lines) + "\n"


def _label(run: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.get("variant", {}).items()) or "plain"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--starts", default="random,hebbian")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="start at this seed (two processes can split the seeds, "
                    "each with its own --out; a last run over the merged runs.jsonl writes the table)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default="runs/results/discovery")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a variant of the recipe")
    args = ap.parse_args()
    variant = _parse_sets(args.set)
    seeds, steps = (2, 20) if args.quick else (args.seeds, args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["setting"], r["start"], r["seed"], _label(r)) for r in runs}
    for setting in args.settings.split(","):
        if setting not in SETTINGS:
            raise SystemExit(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
        for start in args.starts.split(","):
            for seed in range(0 if args.quick else args.first_seed, seeds):
                if (setting, start, seed, _label({"variant": variant})) in done:
                    continue
                r = one_run(setting, start, seed, steps, variant)
                print(json.dumps(r), flush=True)
                runs.append(r)
                with log.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                (out / "results.md").write_text(summary(runs, steps))
    (out / "results.md").write_text(summary(runs, steps))
    print(summary(runs, steps))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
