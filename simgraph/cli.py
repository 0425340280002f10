"""The ``simgraph`` command: train, eval, export, analyze (and bench, when the benchmark suite is present).

Every command ends with one machine-readable JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

from .errors import ConfigError, SimgraphError, check_int, check_out_file, check_out_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="meta-train a rule to remember (default: a built-in recall problem)")
    p.add_argument("config", nargs="?", help="TOML config (runs/*.toml): [network], [rule], [task], [train]; default: the built-in recall problem")
    p.add_argument("--out", help="run folder for checkpoints and logs (default: a new runs/out/train-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (a folder without one: start afresh there, so a restartable job can always pass it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. train.steps=50")
    p.add_argument("--no-baselines", action="store_true", help="skip the frozen-synapse and Hebbian comparison")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:i (under torchrun, cuda means cuda:LOCAL_RANK)")

    p = sub.add_parser("eval", help="score a trained checkpoint on fresh episodes of its task (or a changed one)")
    p.add_argument("run", help="run folder written by simgraph train")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the task, e.g. task.num_patterns=8")
    p.add_argument("--episodes", type=int, default=512)

    p = sub.add_parser("export", help="write a run's network (with one episode's final state) as node-link JSON")
    p.add_argument("run")
    p.add_argument("--out", required=True)

    p = sub.add_parser("analyze", help="the learned synapses of a recall run as graphs: tables (CSV/JSON) and PNG plots")
    p.add_argument("run", help="run folder written by simgraph train (a recall task)")
    p.add_argument("--out", help="folder for the tables and plots (default: RUN/analysis)")
    p.add_argument("--loads", help="comma-separated pattern counts K to store, e.g. 1,2,4,8 (default: 1, 2, K/2, K, 2K)")
    p.add_argument("--episodes", type=int, default=8, help="episodes per load (measures are averaged over them)")

    # the suite parses its own flags (simgraph bench --help): everything after "bench" goes to it
    sub.add_parser("bench", help="the benchmark suite (JSON output); simgraph bench --help for its flags", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "eval": _eval, "export": _export, "analyze": _analyze}[args.command](args)
    except SimgraphError as exc:
        print(f"simgraph {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's side (a full disk, no permission): one line, not a traceback
        print(f"simgraph {args.command}: error: {exc.strerror or exc}" + (f": {exc.filename!r}" if exc.filename else ""),
              file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- commands
def _train(args) -> int:
    """Under torchrun every rank runs this; rank 0 alone talks and scores (see train.distributed)."""
    from .train import distributed as dist

    device = dist.device_for(args.device)
    cfg = _train_config(args)  # before joining the group: a config error then stops each rank alone
    dist.setup(device)
    ok = False
    try:
        code = _train_ranks(args, cfg, device, dist)
        ok = True
        return code
    finally:
        dist.cleanup(ok)


def _train_config(args):
    from .train import Config

    cfg = Config.load(args.config) if args.config else Config()
    return cfg.override(**_parse_sets(args.set)) if args.set else cfg


def _train_ranks(args, cfg, device, dist) -> int:
    from .baselines import hebbian_baseline
    from .tasks import RecallTask
    from .train import evaluate, train

    main = dist.is_main()
    out = check_out_folder("--out", args.out) if args.out else Path("runs/out") / time.strftime("train-%Y%m%d-%H%M%S")
    # --resume on a folder without a checkpoint starts afresh: a restartable job passes it every time
    if dist.active() and not args.out:
        out = Path(dist.broadcast_object(str(out)))  # one folder, even if the ranks' clocks differ
    task = cfg.make_task()
    if main:
        net = cfg.network.file or cfg.network.builder or cfg.network.topology or "fully_recurrent"
        print(f"simgraph train: {cfg.rule.kind} rule on {net}, {cfg.train.estimator}, task {task}"
              + (f", {dist.world()} processes" if dist.active() else ""), file=sys.stderr)
        print(f"run folder: {out}", file=sys.stderr)
    started = time.time()
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress, on_log=_log_line, device=device)
    recall = isinstance(task, RecallTask)
    frozen = None
    if not args.no_baselines and cfg.rule.kind == "mlp" and recall:
        if main:
            print("training the frozen-synapse baseline with the same budget ...", file=sys.stderr)
        frozen = train(cfg.override(**{"rule.kind": "frozen"}), out / "frozen", resume=args.resume,
                       progress=not args.no_progress, on_log=_log_line, device=device)
    if not main:
        return 0
    episodes = 512 if recall else cfg.train.eval_batch  # recall: the README's table; others: the eval batch
    final = evaluate(result.rule, result.graph, task, episodes)
    scores = {cfg.rule.kind: final[task.metric]}
    if frozen is not None:
        scores["frozen"] = evaluate(frozen.rule, frozen.graph, task, episodes)[task.metric]
    graph = result.graph
    autoassociative = graph.num_inputs == graph.num_outputs and bool((graph.input_nodes == graph.output_nodes).all())
    if not args.no_baselines and recall and task.cue == "partial" and autoassociative and cfg.rule.kind == "mlp":
        beta, acc = hebbian_baseline(graph, task)
        scores[f"hebbian(beta={beta})"] = acc
    print(f"\n{task.metric} on {episodes} fresh episodes of {task}:", file=sys.stderr)
    for name, acc in scores.items():
        print(f"  {name:<24s} {acc:.3f}", file=sys.stderr)
    summary = {"command": "train", "run": str(out), "rule": cfg.rule.kind, "task": cfg.task.kind,
               "estimator": cfg.train.estimator, "steps": cfg.train.steps, "episodes": episodes, "metrics": final, "accuracy": scores,
               "seconds": round(time.time() - started, 1)}
    if recall:
        summary.update(num_patterns=task.num_patterns, bits=task.bits)
    print(json.dumps(summary))
    return 0


def _eval(args) -> int:
    from .train import evaluate, load_rule
    from .train.config import check_fits
    from .train.loop import MAX_EPISODES

    check_int("--episodes", args.episodes, 1, MAX_EPISODES)
    rule, graph, cfg = load_rule(args.run)
    changes = _parse_sets(args.set)
    for key in changes:
        if not key.startswith("task."):
            raise ConfigError(f"eval can only change task settings, not {key!r}")
    task = cfg.override(**changes).make_task() if changes else cfg.make_task()
    check_fits(graph, task)
    metrics = evaluate(rule, graph, task, args.episodes)
    print(json.dumps({"command": "eval", "run": args.run, "task": {"kind": cfg.task.kind, **task.settings()},
                      "episodes": args.episodes, **metrics}, default=str))
    return 0


def _export(args) -> int:
    import networkx as nx
    import torch

    from .interop import to_networkx
    from .train import load_rule
    from .train.bptt import run_ticks

    target = check_out_file("--out (the node-link JSON file to write)", args.out)
    if target.suffix.lower() != ".json":
        raise ConfigError(f"--out {args.out!r}: export writes node-link JSON, so name a .json file (got "
                          f"{target.suffix or 'no suffix'!r}); for GraphML or GEXF load the run (sg.train.load_rule) "
                          f"and use sg.write(graph, 'net.graphml', state)")
    rule, graph, cfg = load_rule(args.run)
    episode = cfg.make_task().sample(1, seed=0)
    with torch.no_grad():
        _, state = run_ticks(rule, graph, episode, rule.init_state(graph, 1))
    G = to_networkx(graph, state)
    target.write_text(json.dumps(nx.node_link_data(G, edges="edges")))
    print(json.dumps({"command": "export", "out": args.out, "nodes": G.number_of_nodes(), "edges": G.number_of_edges()}))
    return 0


def _analyze(args) -> int:
    from .analysis.report import analyze_run

    loads = None
    if args.loads is not None:
        try:
            loads = [int(k) for k in args.loads.split(",")]
        except ValueError:
            raise ConfigError(f"--loads must be comma-separated ints, e.g. 1,2,4,8; got {args.loads!r}") from None
    summary = analyze_run(args.run, args.out or str(Path(args.run) / "analysis"), loads, args.episodes)
    for row in summary["by_load"]:
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                        if k in ("num_patterns", "accuracy", "symmetry", "modularity", "pattern_alignment",
                                 "hebbian_similarity")), file=sys.stderr)
    print(json.dumps({k: summary[k] for k in ("command", "run", "out", "rule", "neurons", "synapses", "loads", "files")}))
    return 0


def _bench(argv: list[str]) -> int:
    from .bench import main as bench_main

    try:
        return bench_main(argv)
    except SimgraphError as exc:
        print(f"simgraph bench: error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- helpers
def _parse_sets(items: list[str]) -> dict:
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: take it as a string
        changes[key.strip()] = value
    return changes


def _log_line(row: dict) -> None:
    if "eval_loss" not in row:
        return  # training-batch rows (train.log_every) go to metrics.jsonl only
    level = " ".join(f"{k}={row[k]}" for k in ("num_patterns",) if k in row)
    evals = "  ".join(f"eval {k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("eval_") and isinstance(v, float))
    train_loss = row.get("train_loss")
    print(f"step {row['step']:>5d}  {level}  train loss {train_loss if train_loss is None else f'{train_loss:.4f}'}  {evals}",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
