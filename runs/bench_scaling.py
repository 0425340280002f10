"""Scaling figures: time per tick against synapses, batch size and episode length (log-log PNG).

    python runs/bench_scaling.py [--quick] [--rules hebbian,mlp] [--out runs/out/bench]

Writes scaling.png (three panels, fraction of the measured roofline annotated) and scaling.md
(the same numbers as a markdown table for the README). Engine only, forward ticks (episode
panel: forward+backward, plain and checkpointed); medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from simgraph.bench import suite
from simgraph.bench import _default_threads
from simgraph.errors import ConfigError
from simgraph.simulate import simulate


def per_tick(rule_name, kind, n, batch, ticks, repeats, backward=False):
    graph = suite.make_graph(kind, n, 100 / n if kind == "sparse" else 1.0)
    rule = suite.make_rule(rule_name, graph)
    v = suite.make_variant(rule_name, "engine", graph, batch, backward, rule)
    sec = suite.time_interleaved({"engine": v}, ticks, backward, repeats, graph.device)["engine"]
    return graph.num_edges, sec, rule


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: as simgraph bench)")
    p.add_argument("--rules", default="hebbian,mlp")
    p.add_argument("--out", default="runs/out/bench")
    a = p.parse_args(argv)
    rules = a.rules.split(",")
    for r in rules:
        if r not in suite.RULES:
            raise ConfigError(f"unknown rule {r!r}; choose from {list(suite.RULES)}")
    if a.threads is not None and a.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads or _default_threads())
    roof = suite.roofline("cpu", a.quick)
    dense_n = [50, 100, 200] if a.quick else [100, 200, 400, 700, 1000]
    sparse_n = [500, 1000] if a.quick else [1000, 2000, 5000, 10000]  # indegree 100
    batches = [1, 4] if a.quick else [1, 2, 4, 8, 16]
    lengths = [4, 8] if a.quick else [4, 8, 16, 32]
    reps, ticks = (2, 2) if a.quick else (3, 3)
    rows = []
    for r in rules:
        for kind, ns in (("dense", dense_n), ("sparse", sparse_n)):
            for n in ns:
                E, sec, rule = per_tick(r, kind, n, 1, ticks, reps)
                rows.append(dict(panel="synapses", rule=r, graph=kind, n=n, E=E, B=1, T=ticks, sec=sec, rule_obj=rule))
        for B in batches:
            E, sec, rule = per_tick(r, "dense", dense_n[-2], B, ticks, reps)
            rows.append(dict(panel="batch", rule=r, graph="dense", n=dense_n[-2], E=E, B=B, T=ticks, sec=sec, rule_obj=rule))
    n = dense_n[1]
    graph = suite.make_graph("dense", n)
    rule = suite.make_rule("mlp", graph)
    for T in lengths:
        u = torch.randn(T, 1, n)
        for k in (0, max(1, round(math.sqrt(T)))):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                simulate(rule, graph, u, checkpoint_every=k).outputs.square().sum().backward()
                ts.append((time.perf_counter() - t) / T)
            rows.append(dict(panel="episode", rule="mlp", graph="dense", n=n, E=graph.num_edges, B=1, T=T,
                             sec=statistics.median(ts), checkpoint=k, rule_obj=rule))
    for row in rows:
        if row["panel"] != "episode":
            b, f = suite.cost_model(row["rule_obj"], row["B"])
            row["roof"] = suite.roofline_seconds(b, f, row["E"] * row["B"], roof) / row["sec"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot(rows, out / "scaling.png")
    (out / "scaling.md").write_text(_table(rows, roof))
    print((out / "scaling.md").read_text())
    return 0


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for r in sorted({row["rule"] for row in rows if row["panel"] == "synapses"}):
        for kind, mark in (("dense", "o-"), ("sparse", "s--")):
            pts = [row for row in rows if row["panel"] == "synapses" and row["rule"] == r and row["graph"] == kind]
            axes[0].plot([p["E"] for p in pts], [p["sec"] * 1e3 for p in pts], mark, label=f"{r} {kind}")
            for p in pts[-1:]:
                axes[0].annotate(f"{p['roof']:.0%} roof", (p["E"], p["sec"] * 1e3), fontsize=7)
        pts = [row for row in rows if row["panel"] == "batch" and row["rule"] == r]
        axes[1].plot([p["B"] for p in pts], [p["sec"] * 1e3 for p in pts], "o-", label=r)
        for p in pts[-1:]:
            axes[1].annotate(f"{p['roof']:.0%} roof", (p["B"], p["sec"] * 1e3), fontsize=7)
    for k, label in ((False, "plain"), (True, "checkpointed")):
        pts = [row for row in rows if row["panel"] == "episode" and bool(row["checkpoint"]) == k]
        axes[2].plot([p["T"] for p in pts], [p["sec"] * 1e3 for p in pts], "o-", label=f"mlp fwd+bwd, {label}")
    titles = ("time per tick vs synapses (B=1)", "time per tick vs batch (dense)", "time per tick vs episode length")
    for ax, xl, t in zip(axes, ("synapses", "batch", "ticks"), titles):
        ax.set(xscale="log", yscale="log", xlabel=xl, ylabel="ms per tick", title=t)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows, roof):
    lines = [f"Measured on {torch.get_num_threads()} CPU thread(s); bandwidth {roof['bandwidth_gbs']:.1f} GB/s, "
             f"matmul {roof['matmul_gflops']:.0f} GFLOP/s.", "",
             "| panel | rule | graph | N | synapses | B | ms/tick | synapse updates/s | roofline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        roof_s = f"{r['roof']:.1%}" if "roof" in r else ("ckpt every %d" % r["checkpoint"] if r.get("checkpoint") else "plain")
        lines.append(f"| {r['panel']} | {r['rule']} | {r['graph']} | {r['n']} | {r['E']} | {r['B']} | {r['sec'] * 1e3:.2f} | "
                     f"{r['E'] * r['B'] / r['sec']:.3g} | {roof_s} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
