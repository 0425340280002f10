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
from ..tasks.recall import Episode, RecallTask, bit_accuracy
from . import checkpoint
from . import distributed as dist
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
def evaluate(rule: Rule, graph: Graph, task: RecallTask, episodes: int = 256, seed: int = EVAL_SEED, chunk: int = 256,
             distributed: bool = False) -> dict:
    """Loss and bit accuracy of ``rule`` on ``episodes`` fresh episodes of ``task``.

    ``distributed=True`` (every rank must call it) splits each chunk of episodes across the ranks
    of the process group and sums the parts, so every rank gets the one-process numbers.
    """
    loss = acc = 0.0
    done = 0
    while done < episodes:
        n = min(chunk, episodes - done)
        ep = task.sample(n, seed=seed + done, device=graph.device)
        if distributed and dist.active():
            # sums, not means, travel: sum of squared errors, read-out entries, right bits, scored bits
            part = _slice_episode(ep, dist.shard(n))
            sums = torch.zeros(4, dtype=torch.float64, device=graph.device)
            if part.inputs.shape[1]:
                res = unroll(rule, graph, part, backward=False)
                right = (torch.sign(res.outputs[..., 0]) == part.targets).float() * part.metric_mask
                sums += torch.stack([res.loss * part.loss_mask.sum().clamp(min=1), part.loss_mask.sum(),
                                     right.sum(), part.metric_mask.sum()]).double()
            sums = dist.all_reduce_sum(sums)
            loss += float(sums[0] / sums[1].clamp(min=1)) * n
            acc += float(sums[2] / sums[3].clamp(min=1)) * n
        else:
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
    device: torch.device | str | None = None,
) -> TrainResult:
    """Meta-train ``config.rule`` on the recall task. ``stop_after`` ends early (for tests).

    Under ``torchrun`` (a process group is active, see :mod:`.distributed`) the batch of every step
    is split across ranks: each rank generates the whole ``(seed, step)`` batch, keeps its slice,
    and the gradients are summed with weights so that the update equals one process with the whole
    batch. Rank 0 alone writes checkpoints, logs and the progress bar; evaluation is split too.
    """
    cfg, t = config, config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    graph = cfg.make_graph(device)
    rule = cfg.make_rule(graph).to(graph.device)
    params = [p for p in rule.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"rule kind {cfg.rule.kind!r} has no parameters to meta-train")
    if t.batch_size < dist.world():
        raise ConfigError(f"train.batch_size={t.batch_size} is smaller than the {dist.world()} processes; "
                          "every process needs at least one episode")
    opt = torch.optim.Adam(params, lr=t.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(t.steps, t.warmup, t.lr_schedule))
    step, num_patterns = 0, cfg.start_patterns()
    full = cfg.make_task().num_patterns
    history: list[dict] = []
    out = Path(out_dir) if out_dir is not None else None
    main = dist.is_main()

    # rank 0 reads the checkpoint and hands it to the others (no shared file system needed);
    # an error travels too, so that no rank waits on a peer that gave up
    loaded = None
    if main:
        try:
            loaded = _load_for_resume(out, cfg, resume)
        except CheckpointError as exc:
            loaded = exc
    loaded = dist.broadcast_object(loaded)
    if isinstance(loaded, CheckpointError):
        raise loaded
    if loaded is not None:
        spec, tensors = loaded
        try:
            rule.load_state_dict(tensors["rule"])
            opt.load_state_dict(tensors["optimizer"])
            sched.load_state_dict(tensors["scheduler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{out}: the checkpoint does not fit this rule: {str(exc).splitlines()[0]}") from None
        step, num_patterns = spec["step"], spec["num_patterns"]
        history = dist.broadcast_object(_read_log(out / LOG, step) if main else None)
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        _write_log(out / LOG, history)

    bar = _progress(progress and main, t.steps, step)
    start, last_loss = time.time(), float("nan")
    last_saved = step if loaded is not None else None
    while step < t.steps:
        task = cfg.make_task(num_patterns)
        episode = task.sample(t.batch_size, seed=batch_seed(cfg.seed, step), device=graph.device)
        opt.zero_grad(set_to_none=True)
        try:
            last_loss = _gradient(rule, graph, episode, t.window, params)
        except _PeerDiverged:
            raise DivergenceError(f"step {step}: another rank's episodes went NaN or inf (its message names the tick "
                                  f"and quantity); stopped, {_kept(last_saved)}") from None
        except DivergenceError as exc:
            raise DivergenceError(f"{exc} of step {step}{_on_rank()}; stopped, {_kept(last_saved)}") from None
        norm = nn.utils.clip_grad_norm_(params, t.clip)
        if not torch.isfinite(norm):
            raise DivergenceError(f"the meta-gradient norm became {float(norm)} at step {step}; no update applied, "
                                  f"stopped, {_kept(last_saved)}")
        opt.step()
        sched.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", K=num_patterns)
        if step % t.eval_every == 0 or step == t.steps:
            metrics = evaluate(rule, graph, task, t.eval_batch, distributed=True)
            row = {"step": step, "num_patterns": num_patterns, "train_loss": last_loss, "eval_loss": metrics["loss"],
                   "eval_accuracy": metrics["accuracy"], "lr": sched.get_last_lr()[0], "seconds": round(time.time() - start, 2)}
            history.append(row)
            if out is not None and main:
                _append_log(out / LOG, row)
            if on_log is not None and main:
                on_log(row)
            if t.curriculum and metrics["accuracy"] >= t.curriculum_threshold and num_patterns < full:
                num_patterns += 1
        if out is not None and (step % t.checkpoint_every == 0 or step == t.steps):
            if main:
                tensors = {"rule": rule.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
                checkpoint.save(out, step, tensors, {"config": cfg.to_dict(), "num_patterns": num_patterns})
            last_saved = step
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    return TrainResult(rule, graph, cfg, history, time.time() - start, num_patterns)


def _gradient(rule: Rule, graph: Graph, episode: Episode, window: int, params: list[nn.Parameter]) -> float:
    """Accumulate the batch's meta-gradient into ``.grad``; returns the batch loss.

    One process: a plain unroll. Several: each rank unrolls its slice; the loss of a slice is
    normalised by its own read-out count ``n_r``, so rank ``r``'s gradient is weighted by
    ``n_r / sum(n)`` to give exactly the whole-batch gradient. Gradients, loss, counts and a
    "diverged" flag travel in one all-reduce, so a rank that hit NaN stops every rank.
    """
    if not dist.active():
        return float(unroll(rule, graph, episode, window=window).loss)
    part = _slice_episode(episode, dist.shard(episode.inputs.shape[1]))
    count = part.loss_mask.sum().clamp(min=1)
    error = None
    try:
        loss = unroll(rule, graph, part, window=window).loss
    except DivergenceError as exc:
        error, loss = exc, torch.zeros((), device=count.device)
        for p in params:
            p.grad = None
    has_grad = [p.grad is not None for p in params]  # same on every rank: same rule, same code
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() * count for p in params]
    extra = torch.stack([loss * count, count, torch.tensor(float(error is not None), device=count.device)])
    buf = dist.all_reduce_sum(torch.cat(flat + [extra.to(flat[0].dtype)]))
    total, bad = buf[-2], buf[-1]
    if error is not None:
        raise error
    if float(bad) > 0:
        raise _PeerDiverged()
    offset = 0
    for p, had in zip(params, has_grad):
        n = p.numel()
        if had:
            p.grad = (buf[offset : offset + n] / total).view_as(p)
        offset += n
    return float(buf[-3] / total)


class _PeerDiverged(DivergenceError):
    """Another rank's unroll diverged (that rank raises the detailed error)."""


def _kept(last_saved: int | None) -> str:
    return f"the last good checkpoint (step {last_saved}) is kept" if last_saved is not None else "no checkpoint was written"


def _on_rank() -> str:
    return f" on rank {dist.rank()}" if dist.active() else ""


def _slice_episode(ep: Episode, part: slice) -> Episode:
    return Episode(*(x[:, part] for x in ep))


def _load_for_resume(out: Path | None, cfg: Config, resume: bool):
    if out is None or not checkpoint.exists(out):
        return None
    if not resume:
        raise CheckpointError(f"{out} already holds a checkpoint; pass resume=True (--resume) or pick another folder")
    spec, tensors = checkpoint.load(out)
    if spec.get("config") != cfg.to_dict():
        diff = _first_difference(spec.get("config"), cfg.to_dict())
        raise CheckpointError(f"{out} was written by a different config ({diff}); resume with the same config")
    for key in ("rule", "optimizer", "scheduler"):
        if not isinstance(tensors, dict) or not isinstance(tensors.get(key), dict):
            raise CheckpointError(f"{out}: the checkpoint lacks {key!r}; it was not written by simgraph train")
    for key in ("step", "num_patterns"):
        if not isinstance(spec.get(key), int) or isinstance(spec.get(key), bool) or spec[key] < 0:
            raise CheckpointError(f"{out}/checkpoint.json: {key} must be an int >= 0, got {spec.get(key)!r}")
    return spec, tensors


def load_rule(folder: str | Path) -> tuple[Rule, Graph, Config]:
    """The trained rule, its graph and config from a run folder's checkpoint."""
    spec, tensors = checkpoint.load(folder)
    if not isinstance(spec.get("config"), dict):
        raise CheckpointError(f"{folder}: the checkpoint holds no config table; it was not written by simgraph train")
    cfg = Config.from_dict(spec["config"], where=f"{folder} checkpoint config")
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    state = tensors.get("rule") if isinstance(tensors, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{folder}: the checkpoint holds no rule parameters (a table of tensors under 'rule')")
    try:
        rule.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{folder}: rule parameters do not fit the config: {str(exc).splitlines()[0]}") from None
    for name, p in rule.named_parameters():  # save() never writes these; a file that has them was altered
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"{folder}: rule parameter {name!r} holds NaN or inf")
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
