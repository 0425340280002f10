"""``simgraph bench``: engine vs hand-written dense tensors vs a straightforward PyG version.

For every rule, on a dense all-to-all net and a sparse random net of about the same number of
synapses, at batch 1 and 16, forward and forward+backward: seconds per tick, ticks/s, synapse
updates/s, fraction of the measured roofline, peak memory (a fresh process per variant), and the
ratios the performance targets are about; and typed nets of 20 projections against the same
synapses as one projection (``--typed`` runs only those). The MLP rule also runs as ``plain``: the
engine with its synapse function under plain autograd instead of the fused Function
(``rules/_fused.py``), and one meta-training step of the recall default (``simgraph train``'s
built-in problem) runs both ways (``--train-step`` runs only that). Ends with one JSON line
(also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ..errors import ConfigError, unknown
from . import suite

TARGETS = {"engine_vs_dense": 0.9, "engine_vs_pyg": 2.0, "sparse_vs_dense_time": 1.5, "lean_backprop_time": 1.3,
           "typed_vs_one_projection": 1.3, "engine_vs_plain": 1.0, "mlp_roofline_fwd_bwd": 0.25,
           "train_step_vs_plain": 3.0}
LOWER_IS_BETTER = {"sparse_vs_dense_time", "typed_vs_one_projection"}  # time ratios


def _args(argv):
    p = argparse.ArgumentParser(prog="simgraph bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes and few ticks (a smoke run, < 2 minutes)")
    p.add_argument("--rules", default=",".join(suite.RULES), help="comma-separated subset of " + ",".join(suite.RULES))
    p.add_argument("--batches", default="1,16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case (median taken)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: 1 when the machine is busier than its cores, else torch's default)")
    p.add_argument("--max-gb", type=float, default=6.0, help="skip variants estimated to need more memory")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant peak-memory processes")
    p.add_argument("--out", default="runs/out/bench", help="folder for the memory-vs-episode-length PNG")
    p.add_argument("--json", help="also write the full results as JSON here")
    p.add_argument("--miconi", action="store_true",
                   help="only the plastic-network benchmark: one training episode of Miconi's 1000-neuron pattern "
                        "completion, simgraph vs a plain dense PyTorch implementation (time and peak memory ratios)")
    p.add_argument("--typed", action="store_true",
                   help="only the typed-graph benchmark: nets of ~20 typed projections vs the same synapses as one projection")
    p.add_argument("--no-builders", action="store_true", help="leave the builder benchmark out of a full run")
    p.add_argument("--train-step", action="store_true",
                   help="only the recall default's meta-training step (simgraph train's built-in problem), the fused "
                        "synapse function against plain autograd")
    p.add_argument("--builders", action="store_true",
                   help="only the builder benchmark (part of a full run, not of --quick): the connection rules against the old "
                        "dense-scratch builder, and at issue 14's sizes (1e5 neurons at p=1e-3, 46k x 46k at p=1e-6, "
                        "1e6 neurons x in-degree 100)")
    a = p.parse_args(argv)
    rules = [r.strip() for r in a.rules.split(",") if r.strip()]
    for r in rules:
        if r not in suite.RULES:
            raise unknown("rule in --rules", r, suite.RULES)
    try:
        batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        raise ConfigError(f"--batches must be comma-separated ints, got {a.batches!r}") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batches must be positive ints, got {a.batches!r}")
    if a.threads is not None and a.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {a.threads}")
    if a.repeats is not None and a.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {a.repeats}")
    try:
        torch.device(a.device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device must be 'cpu' or 'cuda[:i]', got {a.device!r}") from None
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {a.device} asked for but CUDA is not available")
    a.rules, a.batches = rules, batches
    return a


def main(argv: list[str] | None = None) -> int:
    a = _args(list(argv or []))
    if a.miconi:  # issue: simgraph <= 0.8x the time and <= 0.25x the peak memory of the plain version
        from . import plastic

        plastic.report(plastic.benchmark(n=200 if a.quick else 1000, episodes=1 if a.quick else 3,
                                         threads=a.threads or 1, rounds=1 if a.quick else 2))
        return 0
    if a.builders:
        print(json.dumps(_builders(a)))
        return 0
    started = time.time()
    device = torch.device(a.device)
    quick = a.quick
    torch.set_num_threads(a.threads or _default_threads())
    sizes = {"dense": (100, 1.0), "sparse": (1000, 0.01)} if quick else {"dense": (1000, 1.0), "sparse": (10000, 0.01)}
    repeats = a.repeats or (2 if quick else 3)
    rules = [r for r in a.rules if r != "plastic" or _plastic_works(device)]
    roof = suite.roofline(device, quick)
    machine = _machine(device)
    print(f"simgraph bench on {machine}; bandwidth {roof['bandwidth_gbs']:.1f} GB/s, matmul {roof['matmul_gflops']:.0f} GFLOP/s",
          file=sys.stderr)

    only = a.typed or a.train_step
    rows, typed_ratios = ([], {}) if a.train_step else suite.typed_case(
        [r for r in rules if r in suite.TYPED_RULES], a.batches, repeats, device, quick, _print_row)
    step_ratio = {}
    if "mlp" in rules and not a.typed:
        step_rows, ratio = suite.train_step_case(repeats, device, quick, _print_row)
        rows += step_rows
        step_ratio = {"recall_default/B32": ratio}
    for kind, (n, density) in sizes.items() if not only else ():
        graph = suite.make_graph(kind, n, density, device)
        E = graph.num_edges
        for rule_name in rules:
            rule = suite.make_rule(rule_name, graph)
            impls = ["engine"] + (["dense"] if kind == "dense" and rule_name in suite.HAND_WRITTEN else [])
            impls += ["pyg"] if rule_name in suite.HAND_WRITTEN else []
            impls += ["plain"] if rule_name in suite.PLAIN_REFERENCE else []
            for B in a.batches:
                for backward in (False, True):
                    ticks = 2 if quick else (3 if backward or rule_name in ("mlp", "lstm_synapse") else 5)
                    mode = "fwd+bwd" if backward else "fwd"
                    variants, base = {}, dict(rule=rule_name, graph=kind, n=n, synapses=E, batch=B, mode=mode)
                    for impl in impls:
                        need = E * B * 4 * suite.memory_factor(rule_name, impl) * (ticks if backward else 2) / 1e9
                        if need > a.max_gb:
                            rows.append({**base, "impl": impl, "skipped": f"needs ~{need:.0f} GB > --max-gb {a.max_gb:g}"})
                            continue
                        variants[impl] = suite.make_variant(rule_name, impl, graph, B, backward, rule)
                    if not variants:
                        continue
                    # PyG's multi-GB temporaries slow whatever runs after them (the MLP engine's dense 1k
                    # forward+backward took 156 instead of 104 ms interleaved with it), so it is timed on its own
                    pyg = {k: variants.pop(k) for k in ("pyg",) if k in variants}
                    times = suite.time_interleaved(variants, ticks, backward, repeats, device)
                    times.update(suite.time_interleaved(pyg, ticks, backward, repeats, device) if pyg else {})
                    bytes_per, flops_per = suite.cost_model(rule, B, backward)
                    for impl, sec in times.items():
                        row = {**base, "impl": impl, "s_per_tick": sec, "ticks_per_s": 1 / sec, "syn_updates_per_s": E * B / sec,
                               "roofline_fraction": suite.roofline_seconds(bytes_per, flops_per, E * B, roof) / sec,
                               "cost": (bytes_per, flops_per, E * B)}
                        if impl == "engine" and not a.no_memory and (not quick or (rule_name == "mlp" and B == 1)):
                            spec = dict(graph=kind, n=n, density=density, rule=rule_name, impl=impl, batch=B, ticks=ticks,
                                        backward=backward, device=str(device), threads=torch.get_num_threads())
                            row.update({f"mem_{k}": v for k, v in suite.measure_peak(spec).items()})
                        rows.append(row)
                        _print_row(row)
    if not only:  # the peak is the machine's best: measured again at the end (on a shared machine the start's
        # measurement can fall at a busy moment: 60 against 85 GFLOP/s), fractions against the better of the two
        again = suite.roofline(device, quick)
        roof = {k: max(roof[k], again[k]) for k in roof}
        print(f"roofline at the end: bandwidth {again['bandwidth_gbs']:.1f} GB/s, matmul {again['matmul_gflops']:.0f} GFLOP/s; "
              f"fractions below use the best: {roof['bandwidth_gbs']:.1f} GB/s, {roof['matmul_gflops']:.0f} GFLOP/s", file=sys.stderr)
        for r in rows:
            if "cost" in r:
                r["roofline_fraction"] = suite.roofline_seconds(*r.pop("cost"), roof) / r["s_per_tick"]
    ratios = {**_ratios(rows), "typed_vs_one_projection": typed_ratios, "train_step_vs_plain": step_ratio}
    curves = _memory_curves(a, device, quick, repeats) if not only else {"rules": {}}
    built = _builders(a) if not (only or quick or a.no_builders) else {}  # --quick: only with --builders
    result = {"command": "bench", "quick": quick, "machine": machine, "torch": torch.__version__, "roofline": roof,
              "ratios": ratios, "targets": TARGETS, "memory": curves, "builders": built, "rows": rows,
              "seconds": round(time.time() - started, 1)}
    _print_summary(ratios, curves)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


def _builders(a) -> dict:
    """Connection rules: each build in a fresh process, against the dense-scratch builder (see bench.builders)."""
    from . import builders

    return builders.benchmark(quick=a.quick, repeats=a.repeats or (1 if a.quick else 3), threads=a.threads or 1,
                              log=lambda line: print(line, file=sys.stderr))


def _default_threads() -> int:
    """On a shared machine whose load exceeds its cores, intra-op threads wait on descheduled
    siblings: one thread measured ~25x faster than two there, and far steadier."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores
    except OSError:
        busy = False
    return 1 if busy else torch.get_num_threads()


def _plastic_works(device) -> bool:
    """The plastic rule joins when it imports and runs one tick (it is being finished elsewhere)."""
    try:
        g = suite.make_graph("dense", 8, device=device)
        suite.run_variant(suite.make_variant("plastic", "engine", g, 1, True), 1, True)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure just leaves the rule out, said on stderr
        print(f"(plastic rule left out: {type(exc).__name__}: {exc})", file=sys.stderr)
        return False


def _machine(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _print_row(r: dict) -> None:
    extra = f"  roof {r['roofline_fraction']:.1%}" if "roofline_fraction" in r else ""
    mem = f"  peak +{r['mem_extra_mb']:.0f} MB" if "mem_extra_mb" in r else ""
    mem += f"  {r['s_per_step'] * 1e3:.1f} ms/step ({r['ticks']} ticks)" if "s_per_step" in r else ""
    print(f"{r['rule']:<12s} {r['graph']:<6s} N={r['n']:<6d} B={r['batch']:<3d} {r['mode']:<8s} {r['impl']:<7s} "
          f"{r['s_per_tick'] * 1e3:10.2f} ms/tick  {r['ticks_per_s']:9.1f} ticks/s  {r['syn_updates_per_s']:9.3g} syn/s"
          f"{extra}{mem}", file=sys.stderr)


def _ratios(rows: list[dict]) -> dict:
    """Speed ratios per (rule, graph, batch, mode); > 1 means the engine is faster."""
    t = {(r["rule"], r["graph"], r["batch"], r["mode"], r["impl"]): r["s_per_tick"] for r in rows
         if "s_per_tick" in r and r["graph"] in ("dense", "sparse")}
    out = {"engine_vs_dense": {}, "engine_vs_pyg": {}, "engine_vs_plain": {}, "sparse_vs_dense_time": {},
           "mlp_roofline_fwd_bwd": {}}
    for r in rows:  # the learned rule's forward+backward against the machine's limit (issue 14: >= 25%)
        if r.get("rule") == "mlp" and r.get("impl") == "engine" and r.get("mode") == "fwd+bwd" and "roofline_fraction" in r:
            out["mlp_roofline_fwd_bwd"][f"{r['graph']}/B{r['batch']}"] = round(r["roofline_fraction"], 3)
    for (rule, graph, B, mode, impl), sec in t.items():
        if impl != "engine":
            key = {"dense": "engine_vs_dense", "plain": "engine_vs_plain"}.get(impl, "engine_vs_pyg")
            eng = t.get((rule, graph, B, mode, "engine"))
            if eng:
                out[key][f"{rule}/{graph}/B{B}/{mode}"] = round(sec / eng, 3)
        elif graph == "sparse" and (rule, "dense", B, mode, "engine") in t:
            out["sparse_vs_dense_time"][f"{rule}/B{B}/{mode}"] = round(sec / t[(rule, "dense", B, mode, "engine")], 3)
    return out


def _memory_curves(a, device, quick: bool, repeats: int) -> dict:
    """Peak memory of backprop through episodes of growing length, plain vs lean, for the MLP rule
    (checkpointed every sqrt(T) ticks) and the Hebbian and plastic rules (edge update run backwards);
    and each lean method's time over plain autograd, interleaved in this process."""
    sizes = {"mlp": 60, "hebbian": 100, "plastic": 100} if quick else {"mlp": 300, "hebbian": 1000, "plastic": 1000}
    B, lengths = 1, ((4, 16) if quick else (8, 16, 32, 64))
    T = lengths[-2]
    curves = {"batch": B, "ticks": list(lengths), "time_ticks": T, "rules": {}}
    for rule_name, n in sizes.items():
        if rule_name not in a.rules:
            continue
        how = suite.LEAN[rule_name]
        c = curves["rules"][rule_name] = {"n": n, "lean": how, "plain_mb": [], "lean_mb": []}
        if how == "checkpoint":
            c["every"] = [suite.checkpoint_interval(t) for t in lengths]
        if not a.no_memory:
            for t in lengths:
                for key, h in (("plain_mb", "plain"), ("lean_mb", how)):
                    spec = dict(graph="dense", n=n, rule=rule_name, batch=B, ticks=t, backward=True, episode=h, device=str(device),
                                threads=torch.get_num_threads())
                    # a resident-memory peak can only be undercounted (a page reclaimed mid-run), so full runs take the larger of two
                    peaks = [suite.measure_peak(spec).get("extra_mb") for _ in range(1 if quick else 2)]
                    c[key].append(None if None in peaks else max(peaks))
        graph = suite.make_graph("dense", n, device=device)
        runs = {h: suite.episode_loss(rule_name, graph, T, B, h) for h in ("plain", how)}
        times = {h: [] for h in runs}
        for _ in range(repeats + 1):
            for h, loss in runs.items():
                t0 = time.perf_counter()
                loss().backward()
                suite._sync(device)
                times[h].append(time.perf_counter() - t0)
        plain, lean = (statistics.median(v[1:]) for v in times.values())
        c["time_ratio"] = round(lean / plain, 3)
    done = [c for c in curves["rules"].values() if c["plain_mb"] and None not in c["plain_mb"] + c["lean_mb"]]
    if done:
        curves["png"] = _plot_curves(curves, Path(a.out))
    return curves


def _plot_curves(curves: dict, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    label = {"checkpoint": "checkpoint every sqrt(T)", "lean": "edge update run backwards"}
    for (name, c), color in zip(curves["rules"].items(), ("C0", "C1", "C2")):
        if not c["plain_mb"] or None in c["plain_mb"] + c["lean_mb"]:
            continue
        ax.plot(curves["ticks"], c["plain_mb"], "o--", color=color, label=f"{name} N={c['n']}: plain backprop")
        ax.plot(curves["ticks"], [max(v, 0.1) for v in c["lean_mb"]], "s-", color=color, label=f"{name}: {label[c['lean']]}")
    ax.set(xscale="log", yscale="log", xlabel="episode length (ticks)", ylabel="peak memory above baseline (MB)",
           title=f"Backprop through an episode, dense nets, B={curves['batch']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "memory_vs_episode.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _print_summary(ratios: dict, curves: dict) -> None:
    print("\nratios (> 1: engine faster; sparse_vs_dense_time: sparse time / dense time; typed_vs_one_projection: "
          "typed net time / the same synapses as one projection; engine_vs_plain, train_step_vs_plain: plain time / "
          "fused time; mlp_roofline_fwd_bwd: fraction of the roofline):", file=sys.stderr)
    for name, values in ratios.items():
        for key, v in values.items():
            ok = v >= TARGETS[name] if name not in LOWER_IS_BETTER else v <= TARGETS[name]
            print(f"  {name:<22s} {key:<32s} {v:7.2f}  (target {'<=' if name in LOWER_IS_BETTER else '>='} "
                  f"{TARGETS[name]}) {'ok' if ok else 'MISSED'}", file=sys.stderr)
    for name, c in curves["rules"].items():
        ok = "ok" if c["time_ratio"] <= TARGETS["lean_backprop_time"] else "MISSED"
        print(f"  {c['lean']} time / plain  {name:<8s} T={curves['time_ticks']}  {c['time_ratio']:.2f}  "
              f"(target <= {TARGETS['lean_backprop_time']}) {ok}", file=sys.stderr)
        if c["plain_mb"]:
            print(f"    peak MB vs ticks {curves['ticks']}: plain {c['plain_mb']}, {c['lean']} {c['lean_mb']}", file=sys.stderr)
