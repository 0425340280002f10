"""Issue 17: a check on a task family no run and no design choice has seen (``quantiles4``: nested
Gaussian shells in 4 inputs, 2-3 classes), for the genomes whose settings were chosen by looking
at the held-out table (so its tasks are no longer strictly unseen for them).

    python runs/l2l_fresh_check.py [--rules genome_fade40_early,genome_fade_bwd10] [--family quantiles4]

Per rule: accuracy after 10 .. 500 online steps, mean ± spread over the shipped seeds, against its
start and best swept SGD / Adam (``runs/l2l_table.py``'s episodes, sweep and scoring). Writes
``runs/results/learn_to_learn/fresh_<family>.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import l2l_table as T  # noqa: E402

from simgraph.train import load_rule  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", default="genome_fade40_early,genome_fade_bwd10")
    ap.add_argument("--family", default="diabetes")
    ap.add_argument("--models", type=Path, default=T.RESULTS / "models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows, sizes = [], None
    for kind in args.rules.split(","):
        curves, starts = [], []
        for run in sorted(args.models.glob(f"l2l_{kind}_s*")):
            rule, graph, cfg = load_rule(run)
            seed = int(run.name.rsplit("_s", 1)[1])
            curves.append(T.rule_curve(rule, graph, args.family))
            starts.append(T.rule_curve(T.starting_rule(kind, seed, args.models, graph, cfg), graph, args.family))
            sizes = cfg.network.params["sizes"]
        if not curves:
            raise SystemExit(f"no shipped runs l2l_{kind}_s* in {args.models}")
        rows.append((f"{T.RULES[kind]} ({len(curves)} seeds)", curves))
        rows.append((f"its start ({T.start_label(kind)})", starts))
    base = T.best_baselines(args.family, sizes)
    md = [f"Fresh check on `{args.family}` (64 episodes, 50 queries; `python runs/l2l_fresh_check.py`):", "",
          "| method | " + " | ".join(f"step {n}" for n in T.AT) + " |", "|---|" + "---|" * len(T.AT)]
    for label, curves in rows:
        cells = [T.fmt([c[n] for c in curves]) for n in T.AT]
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    for opt, best in base.items():
        md.append(f"| best {opt.upper()} ({T.shape_label(sizes)}) | " + " | ".join(f"{best[n][0]:.3f}" for n in T.AT) + " |")
    md += ["", f"{time.time() - t0:.0f} s, 1 thread, torch {torch.__version__}."]
    out = T.RESULTS / f"fresh_{args.family}.md"
    out.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
