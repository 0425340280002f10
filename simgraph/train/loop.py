"""The one meta-training loop: any rule, any graph, any task, any estimator.

    result = sg.train.fit(rule, graph, task, steps=400, estimator="bptt")      # or settings=TrainConfig(...)

Every step samples a batch from ``(seed, step)``, hands it to the estimator (``estimators.py``:
BPTT, ES, CMA-ES), applies the update (Adam with warmup and cosine/constant schedule, gradient
clipping, a NaN guard), and every ``eval_every`` steps scores the rule on held-out episodes
(seeds no training step uses) and moves the curriculum. Logs go to ``metrics.jsonl``, checkpoints
are atomic and a resumed run replays exactly the batches an uninterrupted one would have seen, so
it ends with the same parameters (on CPU). Under torchrun the work is split across ranks (see the
estimators) and rank 0 alone writes.

``train(config)`` is the same loop driven by a :class:`~simgraph.train.config.Config` (what
``simgraph train CONFIG.toml`` runs); its checkpoints can be reloaded with :func:`load_rule`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import (CheckpointError, ConfigError, DivergenceError, check_bool, check_finite, check_int, check_out_folder, check_path, check_seed, check_type,
                      unknown)
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.base import Task
from . import checkpoint
from . import distributed as dist
from .bptt import check_learns_from_labels, unroll
from .config import Config, Curriculum, TrainConfig, check_fits
from .estimators import PeerDiverged, make_estimator

EVAL_SEED = 10**9  # evaluation episodes come from seeds no training step uses
MAX_EPISODES = 2**31 - 1  # an evaluation of more episodes would not end: such a count is a typo
LOG = "metrics.jsonl"


@dataclass
class TrainResult:
    rule: Rule
    graph: Graph
    task: Task  # the task where the curriculum stands at the end (the level the next step would train)
    settings: TrainConfig
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    step: int = 0
    config: Config | None = None

    @property
    def num_patterns(self) -> int | None:  # recall: where the curriculum ended
        return getattr(self.task, "num_patterns", None)


def batch_seed(seed: int, step: int) -> int:
    return seed * 1_000_003 + step


@torch.no_grad()
def evaluate(rule: Rule, graph: Graph | Sequence[Graph], task: Task, episodes: int = 256, seed: int = EVAL_SEED,
             chunk: int = 256, distributed: bool = False) -> dict:
    """Loss and metrics of ``rule`` on ``episodes`` fresh episodes of ``task`` (mean over chunks).

    The episodes depend on ``episodes`` and ``seed`` only: they are drawn and scored in blocks of
    ``EVAL_BLOCK`` (block ``k`` from ``seed + k * EVAL_BLOCK``) and run ``chunk`` at a time, so ``chunk``
    (a memory knob) does not change the scores.

    ``graph`` may be a list of graphs (a graph distribution, as :func:`fit` takes): each is scored
    on the same episodes and the scores are averaged over the graphs.
    ``distributed=True`` (every rank must call it) splits each chunk's episodes across the ranks
    of the process group and sums the outputs back together, so every rank scores exactly what
    one process would.
    """
    if isinstance(graph, (list, tuple)):
        scores = [evaluate(rule, g, task, episodes, seed, chunk, distributed) for g in graph_list(graph, "evaluate")]
        return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}
    episodes = check_int("evaluate episodes", episodes, 1, MAX_EPISODES)
    chunk = check_int("evaluate chunk (episodes per batch)", chunk, 1)
    seed = check_seed("evaluate seed", seed)
    _check_parts(rule, graph, task, "evaluate")
    check_fits(graph, task)
    totals: dict[str, float] = {}
    for start in range(0, episodes, EVAL_BLOCK):
        n = min(EVAL_BLOCK, episodes - start)
        ep = task.sample(n, seed=seed + start, device=graph.device)
        outs = []
        for a in range(0, n, chunk):  # the block's episodes, chunk at a time
            part = ep if chunk >= n else ep.episodes(slice(a, min(a + chunk, n)))
            if distributed and dist.active():
                share = dist.shard(part.inputs.shape[1])
                out = torch.zeros(part.targets.shape, dtype=torch.float64, device=graph.device)
                if share.stop > share.start:
                    mine = part.episodes(share)
                    out[:, share] = task.check_outputs(unroll(rule, graph, mine, task, backward=False).outputs, mine).double()
                outs.append(dist.all_reduce_sum(out).to(part.targets.dtype))
            else:
                outs.append(task.check_outputs(unroll(rule, graph, part, task, backward=False).outputs, part))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        scores = {"loss": task.loss(out, ep), **task.metrics(out, ep)}  # over the whole block: chunk changes nothing
        for key, value in scores.items():
            totals[key] = totals.get(key, 0.0) + float(value) * n
    return {key: value / episodes for key, value in totals.items()}


# evaluate draws and scores its episodes this many at a time (block k from seed + k * EVAL_BLOCK), whatever
# the chunk it runs them in; the default chunk is one block
EVAL_BLOCK = 256


def fit(rule: Rule, graph: Graph | Sequence[Graph], task: Task, settings: TrainConfig | dict | None = None, *, seed: int = 0,
        out: str | Path | None = None, resume: bool = False, progress: bool = True, stop_after: int | None = None,
        on_log: Callable[[dict], None] | None = None, spec: dict | None = None, **overrides) -> TrainResult:
    """Meta-train ``rule`` on ``task`` over ``graph``; returns the trained rule and the log.

    ``settings``: a TrainConfig, a dict of its fields, or its fields as keywords (``steps=100``).
    ``out``: a run folder for ``metrics.jsonl`` and checkpoints; ``resume=True`` continues the
    checkpoint there (it must come from the same rule, task and settings: ``spec`` names the run,
    by default their description). ``stop_after`` ends early (for tests).

    ``graph`` may be a list of graphs, a **graph distribution** (sizes, densities, topologies: any
    graphs that fit the task, on one device): training step ``s`` runs on ``graph[s % len(graph)]``
    and evaluation (and so the curriculum) averages over all of them. Type ids are per graph (id 0
    of one graph shares its embedding with id 0 of another); the rule must take every graph's types.
    """
    t = _settings(settings, overrides)
    distribution = isinstance(graph, (list, tuple))
    graphs = graph_list(graph, "fit") if distribution else [graph]
    graph = graphs[0]  # what the probe and the episodes' device below use
    if t.estimator in ("tbptt", "pes") and len(graphs) > 1:  # their state runs on across steps, on one graph
        raise ConfigError(f"estimator {t.estimator!r} carries the network's state from step to step, so it trains "
                          f"on one graph; a graph distribution ({len(graphs)} graphs) needs bptt, es or cma")
    _check_parts(rule, graph, task, "fit")
    seed = check_seed("fit seed", seed, numpy=True)
    resume, progress = check_bool("fit resume", resume), check_bool("fit progress", progress)
    if stop_after is not None:
        stop_after = check_int("fit stop_after (None: run every step)", stop_after, 1)
    if resume and out is None:
        raise ConfigError("fit(resume=True) continues the checkpoint in a run folder: pass out= (the folder), "
                          "or resume=False")
    if t.init_from:  # start from a trained rule (train() passes the folder resolved against the config's)
        kind = ((spec or {}).get("config") or {}).get("rule", {}).get("kind")  # the config's rule kind, from train()
        _start_from(rule, Path(t.init_from), "[train] init_from", kind)
    for g in graphs:
        check_fits(g, task)
        rule.check_graph(g)
    if t.threads:
        torch.set_num_threads(t.threads)
    params = [p for p in rule.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(rule).__name__} has no parameters to meta-train")
    if t.batch_size < dist.world():
        raise ConfigError(f"batch_size={t.batch_size} is smaller than the {dist.world()} processes; "
                          "every process needs at least one episode")
    sample = _probe(task, graph)
    if sample[1].teacher is not None or sample[1].probe is not None:
        check_learns_from_labels(rule, type(task).__name__)
    if t.fitness != "loss" and t.estimator != "bptt":
        known = list(task.metrics(*sample))
        if t.fitness not in known:
            raise unknown("fitness (the loss or a metric of the task)", t.fitness, ["loss", *known])
    spec = spec if spec is not None else describe(rule, graphs if distribution else graph, task, t, seed)
    estimator = make_estimator(t, seed)
    opt = torch.optim.Adam(params, lr=t.lr) if estimator.uses_optimizer else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(t.steps, t.warmup, t.lr_schedule)) if opt else None
    curriculum = Curriculum.of(t, task)
    level = curriculum.start if curriculum else None
    step, history = 0, []
    out = check_out_folder("fit out", out) if out is not None else None
    main = dist.is_main()

    # rank 0 reads the checkpoint and hands it to the others (no shared file system needed);
    # an error travels too, so that no rank waits on a peer that gave up
    loaded = None
    if main:
        try:
            loaded = _load_for_resume(out, spec, resume, estimator)
        except CheckpointError as exc:
            loaded = exc
    loaded = dist.broadcast_object(loaded)
    if isinstance(loaded, CheckpointError):
        raise loaded
    if loaded is not None:
        tensors = loaded
        checkpoint.load_state(rule, tensors["rule"], str(out))
        if opt is not None:
            checkpoint.load_optimizer(opt, tensors["optimizer"], str(out), {id(p): n for n, p in rule.named_parameters()})
        try:
            if sched is not None:
                sched.load_state_dict(tensors["scheduler"])
            estimator.load_state_dict(tensors.get("estimator", {}))
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{out}: the checkpoint does not fit this rule: {checkpoint.one_line(exc)}") from None
        step, level = int(tensors["progress"][0]), int(tensors["progress"][1])
        level = level if curriculum else None
        history = dist.broadcast_object(_read_log(out / LOG, step) if main else None)
    estimator.setup(rule, params)
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(spec, indent=1))
        _write_log(out / LOG, history)

    bar = _progress(progress and main, t.steps, step)
    start, last_loss = time.time(), float("nan")
    last_saved = step if loaded is not None else None
    current = curriculum.task(task, level) if curriculum else task  # (a run resumed at its last step)

    def at_level() -> dict:  # where the curriculum stands, for the log, the progress bar and the checkpoint
        return {curriculum.field: level} if curriculum else {}

    while step < t.steps:
        current = curriculum.task(task, level) if curriculum else task
        episode = current.sample(t.batch_size, seed=batch_seed(seed, step if t.resample else 0), device=graph.device)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        try:
            result = estimator.step(rule, graphs[step % len(graphs)], current, episode, params, step)
        except PeerDiverged:
            raise DivergenceError(f"step {step}: another rank's episodes went NaN or inf (its message names the tick "
                                  f"and quantity); stopped, {_kept(last_saved)}") from None
        except DivergenceError as exc:
            raise DivergenceError(f"{exc} of step {step}{_on_rank()}; stopped, {_kept(last_saved)}") from None
        if result.loss is not None:
            last_loss = result.loss
        if opt is not None:
            norm = nn.utils.clip_grad_norm_(params, t.clip if t.clip > 0 else math.inf)
            if not torch.isfinite(norm):
                raise DivergenceError(f"the meta-gradient norm became {float(norm)} at step {step}; no update applied, "
                                      f"stopped, {_kept(last_saved)}")
            opt.step()
            lr_used = sched.get_last_lr()[0]  # the rate of this update (after sched.step() it is the next one's)
            sched.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", **at_level())
        evaluating = step % t.eval_every == 0 or step == t.steps
        if evaluating or (t.log_every and step % t.log_every == 0):
            row = {"step": step, **at_level(), "train_loss": result.loss}
            if result.outputs is not None:
                row.update({f"train_{k}": float(v) for k, v in current.metrics(result.outputs, result.episode).items()})
            row.update(result.extra)
            if evaluating:
                metrics = evaluate(rule, graphs if distribution else graph, current, t.eval_batch, distributed=True)
                row.update({f"eval_{k}": v for k, v in metrics.items()})
            row.update({"lr": lr_used if sched else None, "seconds": round(time.time() - start, 2)})
            history.append(row)
            if out is not None and main:
                _append_log(out / LOG, row)
            if on_log is not None and main:
                on_log(row)
            if evaluating and curriculum and row[f"eval_{curriculum.metric}"] >= curriculum.threshold and level < curriculum.stop:
                level += 1
        if out is not None and (step % t.checkpoint_every == 0 or step == t.steps):
            if main:
                tensors = {"rule": rule.state_dict(), "estimator": estimator.state_dict(),
                           "progress": torch.tensor([step, level if curriculum else 0])}
                if opt is not None:
                    tensors.update(optimizer=opt.state_dict(), scheduler=sched.state_dict())
                checkpoint.save(out, step, tensors, {"run": spec, **at_level()})
            last_saved = step
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    # where the curriculum stands: raised after the last evaluation when it passed (what the checkpoint
    # records and a resume of the finished run returns)
    current = curriculum.task(task, level) if curriculum else task
    return TrainResult(rule, graphs if distribution else graph, current, t, history, time.time() - start, step)


def train(config: Config | None = None, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, on_log: Callable[[dict], None] | None = None,
          device: torch.device | str | None = None) -> TrainResult:
    """:func:`fit` with the rule, graph, task and settings a :class:`Config` describes."""
    cfg = config if config is not None else Config()
    check_type("train", cfg, Config, "a simgraph.train.Config")
    task = cfg.make_task()
    graph = cfg.make_graph(task, device)
    rule = cfg.make_rule(graph).to(graph.device)
    settings = cfg.train  # init_from: relative to the config file's folder (fit loads it)
    if settings.init_from:
        settings = dataclasses.replace(settings, init_from=str(cfg._path(settings.init_from)))
    res = fit(rule, graph, task, settings, seed=cfg.seed, out=out_dir, resume=resume, progress=progress,
              stop_after=stop_after, on_log=on_log, spec=_config_spec(cfg))
    res.config = cfg
    return res


def _start_from(rule: Rule, folder: Path, who: str, kind: str | None = None) -> None:
    """Load the trained parameters of the run folder ``folder`` into ``rule`` (refused, naming both, unless
    it is a run folder and the rule kinds and every parameter's shape agree; ``kind``: this run's config
    rule kind, where there is a config: kinds of one class, mlp and frozen, differ too)."""
    if not folder.is_dir() or not checkpoint.exists(folder):
        raise CheckpointError(f"{who} {str(folder)!r} is not a run folder with a checkpoint (a folder written by "
                          f"simgraph train); '' starts from the rule as built")
    trained, _, source = load_rule(folder)
    if type(trained) is not type(rule):
        raise ConfigError(f"{who} {str(folder)!r} holds a {type(trained).__name__} "
                          f"({source.rule.kind!r}), but this run's rule is a {type(rule).__name__}")
    if kind is not None and source.rule.kind != kind:
        raise ConfigError(f"{who} {str(folder)!r} holds a rule of kind {source.rule.kind!r}, but this run's rule is "
                          f"of kind {kind!r}: start from a run of the same kind")
    checkpoint.load_state(rule, trained.state_dict(), f"{who} {str(folder)!r}",
                          f"this run's rule ({type(rule).__name__} with its settings)")


def load_rule(folder: str | Path) -> tuple[Rule, Graph, Config]:
    """The trained rule, its graph and config from a run folder written by :func:`train` / ``simgraph train``."""
    folder = check_path("load_rule (a run folder)", folder, error=CheckpointError)
    spec, tensors = checkpoint.load(folder)
    run = spec.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise CheckpointError(f"{folder}: the checkpoint holds no config table; it was not written by simgraph train "
                              "(a run of sg.train.fit: rebuild the rule and load tensors['rule'] yourself)")
    cfg = Config.from_dict(run["config"], where=f"{folder} checkpoint config", base_dir=run.get("base_dir", ""))
    task = cfg.make_task()
    graph = cfg.make_graph(task)
    rule = cfg.make_rule(graph)
    checkpoint.load_state(rule, tensors.get("rule") if isinstance(tensors, dict) else None, f"{folder}",
                          "rule parameters (a table of tensors under 'rule') of the config")
    for name, p in rule.named_parameters():  # save() never writes these; a file that has them was altered
        check_finite(f"{folder}: rule parameter {name!r}", p, error=CheckpointError)
    return rule, graph, cfg


def describe(rule: Rule, graph: Graph | Sequence[Graph], task: Task, settings: TrainConfig, seed: int) -> dict:
    """What identifies a run of :func:`fit` for resuming: the rule's class and parameter shapes, the
    graph's (or each graph's) sizes and types, the task and the settings."""
    def sizes(g: Graph) -> dict:
        return {"nodes": g.num_nodes, "edges": g.num_edges, "neuron_types": list(g.neuron_types),
                "synapse_types": list(g.synapse_types)}

    return {"rule": f"{type(rule).__module__}.{type(rule).__qualname__}",
            "parameters": {k: list(v.shape) for k, v in rule.state_dict().items()},
            "graph": [sizes(g) for g in graph] if isinstance(graph, (list, tuple)) else sizes(graph),
            "task": {"kind": type(task).__name__, **_plain(task.settings())},
            "train": dataclasses.asdict(settings), "seed": seed}


def graph_list(graphs, who: str) -> list[Graph]:
    """A graph distribution checked: a non-empty list of Graphs on one device."""
    graphs = list(graphs)
    if not graphs:
        raise ConfigError(f"{who} got an empty list of graphs (a graph distribution needs at least one)")
    for i, g in enumerate(graphs):
        check_type(f"{who} graph [{i}]", g, Graph, "a simgraph Graph")
    if len({g.device for g in graphs}) > 1:
        raise ConfigError(f"{who}: the graphs of a distribution must be on one device, got "
                          f"{sorted({str(g.device) for g in graphs})}")
    return graphs


# ---------------------------------------------------------------------- helpers
def _check_parts(rule, graph, task, who: str) -> None:
    check_type(who, rule, Rule, "a simgraph rule (sg.rules.Rule)")
    check_type(who, graph, Graph, "a simgraph Graph")
    check_type(who, task, Task, "a simgraph task (sg.tasks.Task)")


def _config_spec(cfg: Config) -> dict:
    return {"config": cfg.to_dict(), "base_dir": cfg.base_dir}


def _plain(values: dict) -> dict:
    return json.loads(json.dumps(values, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _settings(settings, overrides: dict) -> TrainConfig:
    if isinstance(settings, dict):  # a dict of fields is keywords on top of the defaults
        settings, overrides = None, {**settings, **overrides}
    if settings is None:
        settings = TrainConfig()
    elif not isinstance(settings, TrainConfig):
        raise ConfigError(f"settings must be a TrainConfig or a dict of its fields, got {type(settings).__name__}")
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in overrides:
        if key not in names:
            raise unknown("training setting", key, names)
    return dataclasses.replace(settings, **overrides).check("training settings")


def _probe(task: Task, graph: Graph):
    ep = task.sample(1, seed=0, device=graph.device)
    return torch.zeros_like(ep.targets), ep


def _kept(last_saved: int | None) -> str:
    return f"the last good checkpoint (step {last_saved}) is kept" if last_saved is not None else "no checkpoint was written"


def _on_rank() -> str:
    return f" on rank {dist.rank()}" if dist.active() else ""


def _load_for_resume(out: Path | None, spec: dict, resume: bool, estimator):
    if out is None or not checkpoint.exists(out):
        return None
    if not resume:
        raise CheckpointError(f"{out} already holds a checkpoint; pass resume=True (--resume) or pick another folder")
    saved, tensors = checkpoint.load(out)
    old, new, what = _with_new_defaults(_plain(saved.get("run", {}))), _plain(spec), "run"
    if old != new:
        if isinstance(old, dict) and "config" in old and "config" in new:
            old, new, what = old["config"], new["config"], "config"
        raise CheckpointError(f"{out} was written by a different {what} ({_first_difference(old, new)}); "
                              "resume with the same one")
    needed = ["rule", "progress"] + (["optimizer", "scheduler"] if estimator.uses_optimizer else [])
    for key in needed:
        if not isinstance(tensors, dict) or key not in tensors:
            raise CheckpointError(f"{out}: the checkpoint lacks {key!r}; it was not written by simgraph train")
    progress = tensors["progress"]
    if not isinstance(progress, torch.Tensor) or progress.shape != (2,) or int(progress[0]) != saved["step"] or int(progress[1]) < 0:
        raise CheckpointError(f"{out}: the checkpoint's step/curriculum record does not match checkpoint.json "
                              f"(step {saved['step']}); the files were edited or mixed up")
    return tensors


def _with_new_defaults(run):
    """A checkpoint written before a [train] setting existed lacks it; it ran as that setting's
    default, so the comparison fills it in (anything else still has to match exactly)."""
    config = run.get("config") if isinstance(run, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        return run
    return {**run, "config": {**config, "train": {**_plain(dataclasses.asdict(TrainConfig())), **config["train"]}}}


def _schedule(steps: int, warmup: int, kind: str):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="meta-training", unit="step", dynamic_ncols=True)


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if not isinstance(row, dict) or not isinstance(row.get("step", 0), int) or isinstance(row.get("step"), bool):
            continue  # not a row this loop wrote (an edited log): resuming keeps going without it
        if row.get("step", 0) <= upto:
            rows.append(row)
    return rows


def _write_log(path: Path, rows: list[dict]) -> None:
    checkpoint.atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _append_log(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _first_difference(a, b, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    return f"{where or 'config'}: {a!r} in the checkpoint, {b!r} now"
