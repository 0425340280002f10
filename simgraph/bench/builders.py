"""``simgraph bench --builders``: the connection rules at scale, and against the dense-scratch builder.

Every build runs in a fresh process, which reports its seconds and its peak resident memory above
the baseline it started from (imports done):

- ``vs_dense``: without multapses, at sizes the old builder can still do, simgraph's O(synapses)
  rules against the ``n_post x n_pre`` scratch matrices they replaced
  (:func:`simgraph.bench.reference.dense_connect`), interleaved, medians; the ratios are old / new
  (> 1: the new builder is faster or lighter).
- ``scale``: the sizes of issue 14, new builder only, ``connect`` and ``build`` (the Graph): 1e5
  neurons at p = 1e-3 (1e7 synapses), 46,000 x 46,000 at p = 1e-6, 1e6 neurons with in-degree 100
  (1e8 synapses, with and without multapses; not with ``--quick``).

    simgraph bench --builders [--quick]      (or python -m simgraph.bench.builders [--quick])
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch

from ..build import Network
from .suite import _current_rss_mb, _peak_rss_mb, _reset_peak_rss

# (rule, neurons, parameter): within one population, autapses allowed, no multapses
VS_DENSE = [("pairwise_bernoulli", 10_000, 0.01), ("fixed_indegree", 10_000, 100), ("fixed_total_number", 10_000, 10**6)]
VS_DENSE_QUICK = [("pairwise_bernoulli", 3000, 0.01), ("fixed_indegree", 3000, 30), ("fixed_total_number", 3000, 90_000)]
# (label, rule, pre neurons, post neurons (None: the same population), parameter, connect() keywords)
SCALE = [
    ("bernoulli 1e5 p=1e-3", "pairwise_bernoulli", 100_000, None, 0.001, {}),
    ("bernoulli 46k x 46k p=1e-6", "pairwise_bernoulli", 46_000, 46_000, 1e-6, {}),
    ("indegree 100 of 1e6", "fixed_indegree", 1_000_000, None, 100, {}),
    ("indegree 100 of 1e6, no multapses", "fixed_indegree", 1_000_000, None, 100, {"allow_multapses": False}),
]
PARAM = {"pairwise_bernoulli": "p", "fixed_indegree": "indegree", "fixed_total_number": "n"}
TARGETS = {"bernoulli 1e5 p=1e-3": (20.0, 1500.0), "bernoulli 46k x 46k p=1e-6": (1.0, None)}  # seconds, peak MB


def child(spec: dict) -> dict:
    """One build, timed, with its peak memory (run in a fresh process: ``python -m simgraph.bench.builders SPEC``)."""
    torch.set_num_threads(spec.get("threads", 1))
    rule, n_pre, n_post, value = spec["rule"], spec["n_pre"], spec.get("n_post"), spec["value"]
    if spec["impl"] == "old":
        from .reference import dense_connect
    _reset_peak_rss()
    base = _current_rss_mb()
    start = time.perf_counter()
    if spec["impl"] == "old":
        kw = {"p": value} if rule == "pairwise_bernoulli" else {"k": value}
        synapses = len(dense_connect(rule, n_pre, n_post or n_pre, torch.Generator().manual_seed(0), **kw)[0])
    else:
        net = Network(seed=0).population("a", n_pre)
        if n_post:
            net.population("b", n_post)
        net.connect("a", "b" if n_post else "a", rule, **{PARAM[rule]: value}, **spec.get("kw", {"allow_multapses": False}))
        synapses = len(net._projections[0].pre_idx)
        if spec.get("graph"):
            synapses = net.build().num_edges
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    return {"seconds": round(seconds, 3), "synapses": synapses, "peak_mb": round(peak, 1), "extra_mb": round(peak - base, 1)}


def _run(spec: dict, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, "-m", "simgraph.bench.builders", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark(quick: bool = False, repeats: int = 3, threads: int = 1, log=print) -> dict:
    """Both parts; returns ``{"vs_dense": [...], "scale": [...], "ratios": {...}}``."""
    vs_dense, ratios = [], {}
    for rule, n, value in VS_DENSE_QUICK if quick else VS_DENSE:
        runs = {"old": [], "new": []}
        for _ in range(repeats):
            for impl in runs:
                runs[impl].append(_run(dict(rule=rule, n_pre=n, value=value, impl=impl, threads=threads)))
        row = {"rule": rule, "neurons": n, PARAM[rule]: value}
        for impl, rs in runs.items():
            if any("error" in r for r in rs):
                row[impl] = next(r for r in rs if "error" in r)
                continue
            row[impl] = {"seconds": statistics.median(r["seconds"] for r in rs), "extra_mb": max(r["extra_mb"] for r in rs),
                         "synapses": rs[0]["synapses"]}
        if "seconds" in row["old"] and "seconds" in row["new"]:
            row["time_old_over_new"] = round(row["old"]["seconds"] / row["new"]["seconds"], 2)
            row["memory_old_over_new"] = round(row["old"]["extra_mb"] / max(row["new"]["extra_mb"], 1.0), 2)
            ratios[f"{rule}/N{n}"] = {"time": row["time_old_over_new"], "memory": row["memory_old_over_new"]}
        vs_dense.append(row)
        log(f"builder {rule:<20s} N={n:<6d} {PARAM[rule]}={value:<8g} old {_fmt(row['old'])}  new {_fmt(row['new'])}"
            f"  old/new time {row.get('time_old_over_new', '-')} memory {row.get('memory_old_over_new', '-')}")
    scale = []
    for label, rule, n_pre, n_post, value, kw in SCALE[:2] if quick else SCALE:
        r = _run(dict(rule=rule, n_pre=n_pre, n_post=n_post, value=value, impl="new", kw=kw, graph=True, threads=threads))
        seconds, peak = TARGETS.get(label, (None, None))
        ok = "error" not in r and (seconds is None or r["seconds"] < seconds) and (peak is None or r["peak_mb"] < peak)
        scale.append({"case": label, **r, "target_seconds": seconds, "target_peak_mb": peak, "ok": ok})
        log(f"builder scale {label:<34s} {_fmt(r)}  peak {r.get('peak_mb', '-')} MB"
            + (f"  (target < {seconds:g} s" + (f", < {peak:g} MB peak" if peak else "") + f") {'ok' if ok else 'MISSED'}" if seconds else ""))
    return {"vs_dense": vs_dense, "scale": scale, "ratios": ratios}


def _fmt(r: dict) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return f"{r['seconds']:7.2f} s +{r['extra_mb']:6.0f} MB ({r['synapses']:.3g} syn)"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        print(json.dumps(child(json.loads(sys.argv[1]))))
    else:
        out = benchmark(quick="--quick" in sys.argv, repeats=1 if "--quick" in sys.argv else 3, log=lambda s: print(s, file=sys.stderr))
        print(json.dumps(out))
