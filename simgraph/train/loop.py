"""The meta-training loop: Adam on the rule's parameters, truncated BPTT, curriculum, checkpoints.

Determinism: the rule is initialised from ``config.seed`` and the batch of step ``s`` is generated
from ``(seed, s)`` alone, so a run resumed from a checkpoint replays exactly the batches an
uninterrupted run would have seen and ends with the same parameters (on CPU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, DivergenceError
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.recall import RecallTask, bit_accuracy
from . import checkpoint
from .bptt import unroll
from .config import Config

EVAL_SEED = 10**9  # evaluation episodes come from seeds no training step uses
LOG = "metrics.jsonl"


@dataclass
class TrainResult:
    rule: Rule
    graph: Graph
    config: Config
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    num_patterns: int = 0  # where the curriculum ended


def batch_seed(seed: int, step: int) -> int:
    return seed * 1_000_003 + step


@torch.no_grad()
def evaluate(rule: Rule, graph: Graph, task: RecallTask, episodes: int = 256, seed: int = EVAL_SEED, chunk: int = 256) -> dict:
    """Loss and bit accuracy of ``rule`` on ``episodes`` fresh episodes of ``task``."""
    loss = acc = 0.0
    done = 0
    while done < episodes:
        n = min(chunk, episodes - done)
        ep = task.sample(n, seed=seed + done, device=graph.device)
        res = unroll(rule, graph, ep, backward=False)
        loss += float(res.loss) * n
        acc += float(bit_accuracy(res.outputs, ep)) * n
        done += n
    return {"loss": loss / episodes, "accuracy": acc / episodes}


def train(
    config: Config,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Meta-train ``config.rule`` on the recall task. ``stop_after`` ends early (for tests)."""
    cfg, t = config, config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    params = [p for p in rule.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"rule kind {cfg.rule.kind!r} has no parameters to meta-train")
    opt = torch.optim.Adam(params, lr=t.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(t.steps, t.warmup, t.lr_schedule))
    step, num_patterns = 0, cfg.start_patterns()
    full = cfg.make_task().num_patterns
    history: list[dict] = []
    out = Path(out_dir) if out_dir is not None else None

    if out is not None and checkpoint.exists(out):
        if not resume:
            raise CheckpointError(f"{out} already holds a checkpoint; pass resume=True (--resume) or pick another folder")
        spec, tensors = checkpoint.load(out)
        if spec.get("config") != cfg.to_dict():
            diff = _first_difference(spec.get("config"), cfg.to_dict())
            raise CheckpointError(f"{out} was written by a different config ({diff}); resume with the same config")
        rule.load_state_dict(tensors["rule"])
        opt.load_state_dict(tensors["optimizer"])
        sched.load_state_dict(tensors["scheduler"])
        step, num_patterns = int(spec["step"]), int(spec["num_patterns"])
        history = _read_log(out / LOG, step)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        _write_log(out / LOG, history)

    bar = _progress(progress, t.steps, step)
    start, last_loss = time.time(), float("nan")
    while step < t.steps:
        task = cfg.make_task(num_patterns)
        episode = task.sample(t.batch_size, seed=batch_seed(cfg.seed, step), device=graph.device)
        opt.zero_grad(set_to_none=True)
        res = unroll(rule, graph, episode, window=t.window)
        norm = nn.utils.clip_grad_norm_(params, t.clip)
        if not torch.isfinite(norm):
            raise DivergenceError(f"step {step}: the meta-gradient norm is {float(norm)} (NaN or inf); no update applied")
        opt.step()
        sched.step()
        step += 1
        last_loss = float(res.loss)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", K=num_patterns)
        if step % t.eval_every == 0 or step == t.steps:
            metrics = evaluate(rule, graph, task, t.eval_batch)
            row = {"step": step, "num_patterns": num_patterns, "train_loss": last_loss, "eval_loss": metrics["loss"],
                   "eval_accuracy": metrics["accuracy"], "lr": sched.get_last_lr()[0], "seconds": round(time.time() - start, 2)}
            history.append(row)
            if out is not None:
                _append_log(out / LOG, row)
            if on_log is not None:
                on_log(row)
            if t.curriculum and metrics["accuracy"] >= t.curriculum_threshold and num_patterns < full:
                num_patterns += 1
        if out is not None and (step % t.checkpoint_every == 0 or step == t.steps):
            tensors = {"rule": rule.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            checkpoint.save(out, step, tensors, {"config": cfg.to_dict(), "num_patterns": num_patterns})
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    return TrainResult(rule, graph, cfg, history, time.time() - start, num_patterns)


def load_rule(folder: str | Path) -> tuple[Rule, Graph, Config]:
    """The trained rule, its graph and config from a run folder's checkpoint."""
    spec, tensors = checkpoint.load(folder)
    cfg = Config.from_dict(spec["config"], where=f"{folder} checkpoint config")
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    try:
        rule.load_state_dict(tensors["rule"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: rule parameters do not fit the config: {str(exc).splitlines()[0]}") from None
    return rule, graph, cfg


# ---------------------------------------------------------------------- helpers
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
