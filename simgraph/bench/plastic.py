"""Benchmark: one training episode of Miconi's 1000-neuron pattern completion, simgraph vs plain PyTorch.

    simgraph bench --miconi             (or: python -m simgraph.bench.plastic [--n 1000] [--episodes 3] ...)

Both variants run the same equations on the same episodes (task sample, forward over 106 ticks,
backward, Adam step). ``dense`` is the straightforward PyTorch version written here (a [N, N] trace
per tick, kept by autograd for backprop); ``simgraph`` is ``PlasticRule.unroll`` with lean backprop.
Each variant runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own;
we report the peak and the peak minus the process's footprint before the first episode (torch itself).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time



def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _dense_model(n: int, seed: int):
    """The plain implementation: w, alpha [N, N] (row = presynaptic i, column = postsynaptic j)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(0.01 * torch.randn(n, n, generator=g))
    alpha = torch.nn.Parameter(0.01 * torch.randn(n, n, generator=g))

    def episode(inputs, eta=0.01, gain=20.0):  # inputs [T, 1, N] -> outputs [T, 1, N]
        y, hebb, outs = torch.zeros(1, n), torch.zeros(n, n), []
        for u in inputs:
            y_new = torch.tanh(y.mm(w + alpha * hebb) + gain * u)
            hebb = (1 - eta) * hebb + eta * torch.bmm(y.unsqueeze(2), y_new.unsqueeze(1))[0]
            y = y_new
            outs.append(y)
        return torch.stack(outs)

    return [w, alpha], episode


def _simgraph_model(n: int, seed: int):
    import topologies
    import simgraph as sg
    from simgraph.rules import PlasticRule

    graph = topologies.fully_recurrent(n, autapses=True, seed=seed)
    rule = PlasticRule(graph, eta=0.01, input_gain=20.0, seed=seed)
    return list(rule.parameters()), lambda inputs: sg.simulate(rule, graph, inputs, lean=rule.lean).outputs[..., 0]


def worker(variant: str, n: int, episodes: int, warmup: int, threads: int, seed: int = 0) -> dict:
    import torch

    from simgraph.tasks.pattern_completion import PatternCompletionTask

    torch.set_num_threads(threads)
    task = PatternCompletionTask(n_bits=n)
    params, episode = (_dense_model if variant == "dense" else _simgraph_model)(n, seed)
    opt = torch.optim.Adam(params, lr=3e-4)
    g = torch.Generator().manual_seed(seed)
    base = _maxrss_mb()
    times = []
    for i in range(warmup + episodes):
        ep = task.sample(1, g)
        t0 = time.perf_counter()
        loss = task.loss(episode(ep.inputs), ep)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"variant": variant, "seconds_per_episode": times[len(times) // 2], "peak_mb": _maxrss_mb(),
            "peak_above_start_mb": _maxrss_mb() - base, "final_loss": float(loss)}


def benchmark(n: int = 1000, episodes: int = 3, warmup: int = 1, threads: int = 1, rounds: int = 2) -> dict:
    """Time and peak memory per training episode; ratios simgraph / dense.

    Every (variant, round) is a fresh process; rounds alternate the order of the variants, and each
    variant keeps its fastest round (the machine may be shared: the minimum is the least disturbed
    measurement) and its largest peak memory.
    """
    res: dict[str, dict] = {}
    for r in range(rounds):
        for variant in ("dense", "simgraph") if r % 2 == 0 else ("simgraph", "dense"):
            cmd = [sys.executable, "-m", "simgraph.bench.plastic", "--worker", variant, "--n", str(n), "--episodes", str(episodes),
                   "--warmup", str(warmup), "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"benchmark worker {variant} failed:\n{out.stderr}")
            x = json.loads(out.stdout.strip().splitlines()[-1])
            best = res.setdefault(variant, x)
            best["seconds_per_episode"] = min(best["seconds_per_episode"], x["seconds_per_episode"])
            for k in ("peak_mb", "peak_above_start_mb"):
                best[k] = max(best[k], x[k])
    d, s = res["dense"], res["simgraph"]
    return {
        "n": n, "ticks": 106, "episodes_timed": episodes, "rounds": rounds, "threads": threads, "dense": d, "simgraph": s,
        "time_ratio": s["seconds_per_episode"] / d["seconds_per_episode"],
        "peak_memory_ratio": s["peak_mb"] / d["peak_mb"],
        "peak_memory_above_start_ratio": s["peak_above_start_mb"] / d["peak_above_start_mb"],
    }


def report(r: dict) -> None:
    for v in ("dense", "simgraph"):
        x = r[v]
        print(f"{v:9s} {x['seconds_per_episode']:.3f} s/episode  peak {x['peak_mb']:7.0f} MB  "
              f"(+{x['peak_above_start_mb']:.0f} MB over start)")
    print(f"ratios simgraph/dense: time {r['time_ratio']:.2f}  peak memory {r['peak_memory_ratio']:.3f}  "
          f"memory above start {r['peak_memory_above_start_ratio']:.3f}")
    print(json.dumps(r))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", choices=["dense", "simgraph"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.n, a.episodes, a.warmup, a.threads)))
        sys.exit(0)
    report(benchmark(a.n, a.episodes, a.warmup, a.threads, a.rounds))
