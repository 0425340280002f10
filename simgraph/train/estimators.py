"""Gradient estimators and searches, separate from the loop (learned_optimization style).

An estimator turns one batch of episodes into one update of the rule's meta-parameters:

- ``BPTT``: backprop through the unroll (full, truncated by ``window``, lean or checkpointed);
  the loop's Adam applies the gradient.
- ``ES``: antithetic evolution strategies; the fitness of mirrored candidates gives a gradient
  estimate that the loop's Adam applies. Needs no differentiable rule or loss.
- ``CMA``: CMA-ES (the ``cma`` package); a search with its own state, no optimiser.

Under torchrun, BPTT splits the batch across ranks; ES and CMA-ES split the population (every
candidate is scored on the whole batch). Either way the result equals one process.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from ..errors import ConfigError, DivergenceError
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.base import Episode, Task
from . import distributed as dist
from .bptt import unroll
from .cma_es import CMASearch
from .es import es_gradient, set_gradient


class StepResult(NamedTuple):
    loss: float | None  # the batch's training loss (None where the estimator has none)
    outputs: Tensor | None  # outputs on ``episode`` (for training metrics), or None
    episode: Episode | None  # the episodes ``outputs`` belong to (this rank's share)
    extra: dict  # estimator-specific numbers for the log


class Estimator:
    uses_optimizer = True  # the loop applies .grad with Adam

    def setup(self, rule: Rule, params: list[nn.Parameter]) -> None:
        pass

    def step(self, rule: Rule, graph: Graph, task: Task, episode: Episode, params: list[nn.Parameter],
             step: int) -> StepResult:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class BPTT(Estimator):
    def __init__(self, window: int = 0, recompute_every: int = 0, lean: bool = True):
        self.window, self.recompute_every, self.lean = window, recompute_every, lean

    def step(self, rule, graph, task, episode, params, step):
        """Accumulate the batch's meta-gradient into ``.grad``.

        Several processes: each rank unrolls its slice; the loss of a slice is normalised by its
        own ``task.loss_norm``, so rank ``r``'s gradient is weighted by ``n_r / sum(n)`` to give
        exactly the whole-batch gradient. Gradients, loss, normalisers and a "diverged" flag travel
        in one all-reduce, so a rank that hit NaN stops every rank.
        """
        lean = self.lean and callable(getattr(rule, "lean_episode", None)) and getattr(rule, "lean", True)
        run = lambda ep: unroll(rule, graph, ep, task, window=self.window,  # noqa: E731
                                checkpoint_every=self.recompute_every, lean=lean)
        if not dist.active():
            res = run(episode)
            return StepResult(float(res.loss), res.outputs, episode, {})
        part = episode.episodes(dist.shard(episode.inputs.shape[1]))
        count = task.loss_norm(part) if part.inputs.shape[1] else torch.zeros((), device=episode.inputs.device)
        error, res = None, None
        try:
            res = run(part) if part.inputs.shape[1] else None
            loss = res.loss if res is not None else torch.zeros((), device=count.device)
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
            raise PeerDiverged()
        offset = 0
        for p, had in zip(params, has_grad):
            n = p.numel()
            if had:
                p.grad = (buf[offset : offset + n] / total).view_as(p)
            offset += n
        return StepResult(float(buf[-3] / total), None if res is None else res.outputs, part, {})


class PeerDiverged(DivergenceError):
    """Another rank's unroll diverged (that rank raises the detailed error)."""


def fitness_of(graph: Graph, task: Task, episode: Episode, fitness: str):
    """``fitness(rule) -> float`` on ``episode``: minus the loss, or one of the task's metrics."""

    @torch.no_grad()
    def score(rule: Rule) -> float:
        try:
            res = unroll(rule, graph, episode, task, backward=False)
        except DivergenceError:
            return math.nan  # a diverging candidate ranks last
        if fitness == "loss":
            return -float(res.loss)
        return float(task.metrics(res.outputs, episode)[fitness])

    return score


class ES(Estimator):
    def __init__(self, pairs: int = 16, sigma: float = 0.05, rank_shaping: bool = True, fitness: str = "loss",
                 seed: int = 0):
        self.pairs, self.sigma, self.rank_shaping, self.fitness, self.seed = pairs, sigma, rank_shaping, fitness, seed

    def step(self, rule, graph, task, episode, params, step):
        score = fitness_of(graph, task, episode, self.fitness)
        ascent, f = es_gradient(rule, params, score, step, pairs=self.pairs, sigma=self.sigma, seed=self.seed,
                                rank_shaping=self.rank_shaping)
        set_gradient(params, ascent)
        fin = f[torch.isfinite(f)]
        extra = {"fitness_mean": float(fin.mean()), "fitness_best": float(fin.max())}
        return StepResult(-extra["fitness_mean"] if self.fitness == "loss" else None, None, None, extra)


class CMA(Estimator):
    uses_optimizer = False

    def __init__(self, popsize: int = 16, sigma0: float = 0.1, fitness: str = "loss", keep: str = "mean", seed: int = 0):
        self.popsize, self.sigma0, self.fitness, self.keep, self.seed = popsize, sigma0, fitness, keep, seed
        self.search: CMASearch | None = None

    def setup(self, rule, params):
        if self.search is None:
            x0 = parameters_to_vector(params).detach().double().cpu().numpy()
            self.search = CMASearch(x0, self.sigma0, self.popsize, self.seed)

    def step(self, rule, graph, task, episode, params, step):
        xs = self.search.ask()
        fs = self.search.score(rule, params, xs, fitness_of(graph, task, episode, self.fitness), step)
        self.search.tell(xs, fs)
        self.search.load_into(params, self.keep)
        row = self.search.row(step, fs)
        extra = {"fitness_mean": row["mean"], "fitness_best": row["best"], "fitness_best_so_far": row["best_so_far"]}
        return StepResult(-row["mean"] if self.fitness == "loss" else None, None, None, extra)

    def state_dict(self):
        return self.search.state_dict()

    def load_state_dict(self, state):
        self.search = CMASearch.from_state(state, self.sigma0, self.popsize, self.seed)


def make_estimator(settings, seed: int) -> Estimator:
    """The estimator a ``TrainConfig`` names."""
    kind = settings.estimator
    if kind == "bptt":
        return BPTT(settings.window, settings.recompute_every, settings.lean)
    if kind == "es":
        return ES(settings.pairs, settings.sigma, settings.rank_shaping, settings.fitness, seed)
    if kind == "cma":
        return CMA(settings.popsize, settings.sigma0, settings.fitness, settings.keep, seed)
    raise ConfigError(f"unknown estimator {kind!r} (bptt, es, cma)")
