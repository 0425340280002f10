"""The Miconi runs' numbers and curves, from the metrics.jsonl that `simgraph train` wrote.

    simgraph train runs/miconi_50bit.toml --out runs/out/miconi_50bit/plastic --no-baselines
    simgraph train runs/miconi_50bit.toml --out runs/out/miconi_50bit/non_plastic --no-baselines --set rule.plastic=false
    python runs/miconi_report.py runs/out/miconi_50bit/plastic runs/out/miconi_50bit/non_plastic \
        --window 10 --png runs/out/miconi_50bit/compare.png

For each run: the first episode at which the mean sign error of the last ``window`` training
episodes (one row per episode: train.log_every = 1) is below 1%, the error at a few episodes, and
the mean over the last 5 windows; one JSON line per run. With --png, the smoothed curves on one axis.
"""

import argparse
import json
from pathlib import Path


def curve(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["train_sign_error"]) for r in rows if "train_sign_error" in r]


def report(run: Path, window: int) -> dict:
    points = curve(run)
    errs = [e for _, e in points]
    smooth = [sum(errs[i - window + 1 : i + 1]) / window for i in range(window - 1, len(errs))]
    first = next((points[i + window - 1][0] for i, m in enumerate(smooth) if m < 0.01), None)
    tail = errs[-5 * window :]
    at = {s: round(sum(errs[max(0, i - window + 1) : i + 1]) / len(errs[max(0, i - window + 1) : i + 1]), 4)
          for i, (s, _) in enumerate(points) if s in (10, 50, 100, 140, 200, 230, 500, 1000, 2000)}
    return {"run": str(run), "episodes": len(errs), "window": window, "first_episode_below_1pct": first,
            "mean_error_at": at, "final_sign_error": round(sum(tail) / max(len(tail), 1), 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    for run in args.runs:
        print(json.dumps(report(run, args.window)))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for run in args.runs:
            points = curve(run)
            errs = [e for _, e in points]
            w = args.window
            smooth = [sum(errs[i - w + 1 : i + 1]) / w for i in range(w - 1, len(errs))]
            ax.plot([s for s, _ in points][w - 1 :], smooth, lw=1.5, label=run.name)
        ax.axhline(0.01, color="k", ls=":", lw=0.8, label="1%")
        ax.set(xlabel="episode", ylabel=f"sign error (mean of {args.window})", ylim=(0, 1))
        ax.set_yscale("symlog", linthresh=0.01)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
