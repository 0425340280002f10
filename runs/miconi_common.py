"""Shared by the miconi_* runs: the training loop, the CSV log and the PNG curve."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402


def train(rule, graph, task, episodes: int, lr: float, seed: int, out: Path, name: str, batch_size: int = 1,
          log_every: int = 10, output_slice: slice | None = None) -> dict:
    """Adam on one batch of fresh episodes per update; prints the mean sign error every ``log_every``.

    Writes ``out/<name>.csv`` (episode, loss, sign_error) as it goes and ``out/<name>.png`` at the end.
    """
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(rule.parameters(), lr=lr)
    g = torch.Generator().manual_seed(10_000 + seed)  # episodes: a stream of their own, apart from the init
    rows, t0 = [], time.perf_counter()
    csv_path = out / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "loss", "sign_error"])
        for ep in range(1, episodes + 1):
            episode = task.sample(batch_size, g)
            outputs = rule.unroll(graph, episode.inputs).outputs[..., 0]
            if output_slice is not None:
                outputs = outputs[:, :, output_slice]
            loss = task.loss(outputs, episode)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rows.append((ep, float(loss.detach()), float(task.sign_error(outputs, episode))))
            writer.writerow(rows[-1])
            if ep % log_every == 0:
                f.flush()
                recent = sum(r[2] for r in rows[-log_every:]) / log_every
                print(f"{name} episode {ep:5d}  loss {rows[-1][1]:9.3f}  sign error (last {log_every}) {recent:.4f}  "
                      f"{(time.perf_counter() - t0) / ep:.3f} s/episode", flush=True)
    plot(rows, out / f"{name}.png", name, log_every)
    window = rows[-log_every * 5:]
    summary = {"run": name, "seed": seed, "episodes": episodes, "seconds": round(time.perf_counter() - t0, 1),
               "final_sign_error": sum(r[2] for r in window) / len(window), "csv": str(csv_path)}
    first = next((r[0] for i, r in enumerate(rows) if i >= log_every - 1
                  and sum(x[2] for x in rows[i - log_every + 1:i + 1]) / log_every < 0.01), None)
    summary["first_episode_below_1pct"] = first
    print(json.dumps(summary), flush=True)
    summary["sign_errors"] = [r[2] for r in rows]  # for comparison plots (kept out of the printed line)
    return summary


def plot_compare(curves: dict, path: Path, title: str, window: int = 10) -> None:
    """Several runs' sign-error curves (mean of ``window`` episodes) on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, errs in curves.items():
        smooth = torch.tensor(errs).unfold(0, window, 1).mean(1)
        ax.plot(range(window, len(errs) + 1), smooth, lw=1.5, label=name)
    ax.axhline(0.01, color="k", ls=":", lw=0.8, label="1%")
    ax.set(xlabel="episode", ylabel=f"sign error (mean of {window})", title=title, ylim=(0, 1))
    ax.set_yscale("symlog", linthresh=0.01)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(rows, path: Path, title: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r[0] for r in rows]
    err = torch.tensor([r[2] for r in rows])
    smooth = err.unfold(0, window, 1).mean(1) if len(err) >= window else err
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ep, err, lw=0.5, alpha=0.4, label="per episode")
    ax.plot(ep[len(ep) - len(smooth):], smooth, lw=1.5, label=f"mean of {window}")
    ax.axhline(0.01, color="k", ls=":", lw=0.8, label="1%")
    ax.set(xlabel="episode", ylabel="sign error", title=title, yscale="symlog", ylim=(0, 1))
    ax.set_yscale("symlog", linthresh=0.01)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
