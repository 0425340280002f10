"""Gradient estimators and searches, separate from the loop (learned_optimization style).

An estimator turns one batch of episodes into one update of the rule's meta-parameters:

- ``BPTT``: backprop through the unroll (full, truncated by ``window``, lean or checkpointed);
  the loop's Adam applies the gradient.
- ``ES``: antithetic evolution strategies; the fitness of mirrored candidates gives a gradient
  estimate that the loop's Adam applies. Needs no differentiable rule or loss.
- ``CMA``: CMA-ES (the ``cma`` package); a search with its own state, no optimiser.
- ``TBPTT`` and ``PES``: *persistent truncated* unrolls for long episodes (learned_optimization's
  truncated step). One loop step is one truncation of ``window`` ticks of the current episode,
  then one update; the rule's state carries over to the next truncation; the episode the loop
  sampled at the step where the previous one ended starts next. ``TBPTT`` backpropagates within
  the truncation (the gradient ignores what earlier truncations' parameters did to the state:
  biased, but every tick of a long episode is trained). ``PES`` (persistent evolution strategies,
  Vicol, Metz and Sohl-Dickstein 2021) keeps one state per antithetic particle and the sum
  ``xi`` of each particle's perturbations since the episode began; the estimate
  ``sum_i xi_i L_i / (2 pairs sigma^2)`` of the truncation losses ``L_i`` is unbiased for the
  gradient of the (Gaussian-smoothed) episode loss however the episode is cut. Both score each
  truncation's error over the whole episode's normaliser, so the truncations' losses add up to
  the episode's loss.

Under torchrun, BPTT splits the batch across ranks; ES and CMA-ES split the population (every
candidate is scored on the whole batch). Either way the result equals one process. TBPTT and PES
run in one process.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import ConfigError, DivergenceError, check_bool, check_bytes, check_choice, check_int, check_name, check_number, check_seed, unknown
from ..graph import Graph
from ..rules.base import Rule, State
from ..tasks.base import Episode, Task
from . import distributed as dist
from .bptt import locate_divergence, run_ticks, unroll
from .cma_es import CMASearch, check_population_bytes
from .es import check_noise_bytes, es_gradient, set_gradient


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
        self.window = check_int("BPTT window (0: the whole episode)", window, 0)
        self.recompute_every = check_int("BPTT recompute_every (0: off)", recompute_every, 0)
        self.lean = check_bool("BPTT lean", lean)

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
    """``fitness(rule) -> float`` on ``episode``: minus the loss, or one of the task's metrics (a name the task
    does not report is refused here, before any candidate runs)."""
    if fitness != "loss":
        known = task.metrics(torch.zeros(episode.targets.shape, dtype=episode.targets.dtype,
                                         device=episode.targets.device), episode)
        if fitness not in known:
            raise unknown(f"fitness (the loss or a metric of {type(task).__name__})", fitness, ["loss", *known])

    @torch.no_grad()
    def score(rule: Rule) -> float:
        try:
            res = unroll(rule, graph, episode, task, backward=False)
        except DivergenceError:
            return math.nan  # a diverging candidate ranks last
        if fitness == "loss":
            return -float(res.loss)
        metrics = task.metrics(res.outputs, episode)
        if fitness not in metrics:
            raise unknown(f"fitness (the loss or a metric of {type(task).__name__})", fitness, ["loss", *metrics])
        return float(metrics[fitness])

    return score


class ES(Estimator):
    def __init__(self, pairs: int = 16, sigma: float = 0.05, rank_shaping: bool = True, fitness: str = "loss",
                 seed: int = 0):
        self.pairs, self.sigma = check_int("ES pairs", pairs, 1), check_number("ES sigma", sigma, positive=True)
        self.rank_shaping = check_bool("ES rank_shaping", rank_shaping)
        self.fitness = check_name("ES fitness ('loss' or a metric of the task)", fitness, error=ConfigError)
        self.seed = check_seed("ES seed", seed)

    def setup(self, rule, params):  # refused before any work, as sg.train.es does
        check_noise_bytes(self.pairs, params)

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
        self.popsize, self.sigma0 = check_int("CMA popsize", popsize, 2), check_number("CMA sigma0", sigma0, positive=True)
        self.fitness = check_name("CMA fitness ('loss' or a metric of the task)", fitness, error=ConfigError)
        self.keep, self.seed = check_choice("CMA keep", keep, ("mean", "best")), check_seed("CMA seed", seed)
        self.search: CMASearch | None = None

    def setup(self, rule, params):
        check_population_bytes(self.popsize, params, "cma")
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


class Truncated(Estimator):
    """Persistent truncated unrolls: the current episode, the next tick, and the subclass's states.

    ``step`` advances ``window`` ticks (0: the whole episode) and returns the truncation's loss;
    when the episode is over, the ``episode`` the loop handed in at that step starts (its states
    from ``rule.init_state``). ``state_dict`` holds the episode, the position and the states, so
    a resumed run continues mid-episode exactly.
    """

    name = "truncated"

    def __init__(self, window: int = 0):
        self.window = check_int(f"{type(self).__name__} window (0: the whole episode)", window, 0)
        self.episode: Episode | None = None
        self.tick = 0

    def step(self, rule, graph, task, episode, params, step):
        if dist.active():
            raise ConfigError(f"estimator {self.name!r} keeps states across steps in one process; run it without torchrun")
        if self.episode is None or self.tick >= self.episode.inputs.shape[0]:
            self.episode, self.tick = episode, 0
            self.start(rule, graph, params)
        T = self.episode.inputs.shape[0]
        stop = min(T, self.tick + (self.window or T))
        part = self.episode.ticks(slice(self.tick, stop))
        norm = task.loss_norm(self.episode)
        extra = self.advance(rule, graph, task, part, norm, params, step)
        self.tick = stop
        return StepResult(extra.pop("loss"), None, None, {**extra, "episode_tick": stop, "episode_ticks": T})

    def start(self, rule, graph, params) -> None:
        raise NotImplementedError

    def advance(self, rule, graph, task, part: Episode, norm: Tensor, params, step: int) -> dict:
        raise NotImplementedError

    def state_dict(self):
        if self.episode is None:
            return {}
        fields = {k: v for k, v in self.episode._asdict().items() if v is not None}
        return {"episode": fields, "tick": torch.tensor(self.tick), **self.states_dict()}

    def load_state_dict(self, state):
        if not state:
            return
        self.episode = Episode(**state["episode"])
        self.tick = int(state["tick"])
        self.load_states(state)

    def states_dict(self) -> dict:
        raise NotImplementedError

    def load_states(self, state: dict) -> None:
        raise NotImplementedError


def _finite(loss: Tensor, state: State) -> bool:
    ok = torch.isfinite(loss)
    for v in state.values():
        if v.is_floating_point():
            ok = ok & torch.isfinite(v).all()
    return bool(ok)


class TBPTT(Truncated):
    """Truncated backprop with the state carried across truncations and one update per truncation."""

    name = "tbptt"

    def start(self, rule, graph, params):
        self.state = rule.init_state(graph, self.episode.inputs.shape[1])

    def advance(self, rule, graph, task, part, norm, params, step):
        start = self.state
        out, state = run_ticks(rule, graph, part, start)
        loss = task.error(task.check_outputs(out, part), part).sum() / norm
        if not _finite(loss.detach(), state):
            where = locate_divergence(rule, graph, part, start, task)
            raise DivergenceError(f"{where} of the truncation from episode tick {self.tick}")
        if loss.requires_grad:
            loss.backward()
        self.state = {k: v.detach() for k, v in state.items()}
        return {"loss": float(loss.detach())}

    def states_dict(self):
        return {"state": self.state}

    def load_states(self, state):
        self.state = dict(state["state"])


class PES(Truncated):
    """Persistent evolution strategies over truncations (see the module docstring).

    Particle ``2j`` runs ``theta + sigma z_j``, particle ``2j+1`` its mirror, with fresh ``z``
    every truncation (from ``(seed, step)``) and the same episodes for all (common random
    numbers). A pair whose loss or state turns NaN or inf drops out until its episode ends (and is
    counted in the log); when every pair has, the step raises DivergenceError.
    """

    name = "pes"

    def __init__(self, window: int = 0, pairs: int = 16, sigma: float = 0.05, seed: int = 0):
        super().__init__(window)
        self.pairs, self.sigma = check_int("PES pairs", pairs, 1), check_number("PES sigma", sigma, positive=True)
        self.seed = check_seed("PES seed", seed)

    def setup(self, rule, params):
        n = sum(p.numel() for p in params)
        check_bytes(f"pes perturbations for {self.pairs} pairs x {n} parameters", 3 * self.pairs * n * 4, "use fewer pairs")

    def start(self, rule, graph, params):
        theta = parameters_to_vector(params).detach()
        B = self.episode.inputs.shape[1]
        with torch.no_grad():
            first = rule.init_state(graph, B)
            one = sum(v.numel() * v.element_size() for v in first.values() if isinstance(v, torch.Tensor))
            check_bytes(f"pes's {2 * self.pairs} particle states ({one} bytes each)", 2 * self.pairs * one,
                        "use fewer pairs or a smaller batch")
            self.states = [first] + [rule.init_state(graph, B) for _ in range(2 * self.pairs - 1)]
        self.xi = theta.new_zeros(self.pairs, theta.numel())  # particle 2j's sum of perturbations; 2j+1: -xi
        self.alive = torch.ones(self.pairs, dtype=torch.bool)

    @torch.no_grad()
    def advance(self, rule, graph, task, part, norm, params, step):
        theta = parameters_to_vector(params).detach().clone()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) % 2**64)  # any seed: torch maps n and n mod 2**64 alike
        eps = self.sigma * torch.randn(self.pairs, theta.numel(), generator=g).to(theta)
        self.xi += eps
        losses = torch.zeros(self.pairs, 2, dtype=torch.float64)
        try:
            for j in range(self.pairs):
                if not bool(self.alive[j]):
                    continue
                for side, sign in ((0, 1.0), (1, -1.0)):
                    vector_to_parameters(theta + sign * eps[j], params)
                    out, state = run_ticks(rule, graph, part, self.states[2 * j + side])
                    loss = task.error(task.check_outputs(out, part), part).sum() / norm
                    if not _finite(loss, state):
                        self.alive[j] = False
                        break
                    losses[j, side] = float(loss)
                    self.states[2 * j + side] = state
        finally:
            vector_to_parameters(theta, params)
        ok = self.alive
        if not bool(ok.any()):
            raise DivergenceError(f"pes: every particle's loss or state became NaN or inf by episode tick {self.tick}")
        for j in torch.nonzero(~ok).flatten().tolist():  # finite placeholders (checkpoints refuse NaN); never read
            self.states[2 * j] = self.states[2 * j + 1] = {k: torch.zeros_like(v) for k, v in self.states[2 * j].items()}
        diff = (losses[:, 0] - losses[:, 1]).to(theta) * ok.to(theta)
        grad = (diff @ self.xi) / (2 * int(ok.sum()) * self.sigma ** 2)
        set_gradient(params, -grad)
        return {"loss": float(losses[ok].mean()), "pes_dead_pairs": int((~ok).sum())}

    def states_dict(self):
        return {"states": self.states, "xi": self.xi, "alive": self.alive}

    def load_states(self, state):
        self.states = [dict(s) for s in state["states"]]
        self.xi, self.alive = state["xi"], state["alive"].bool()


def make_estimator(settings, seed: int) -> Estimator:
    """The estimator a ``TrainConfig`` names."""
    kind = settings.estimator
    if kind == "bptt":
        return BPTT(settings.window, settings.recompute_every, settings.lean)
    if kind == "es":
        return ES(settings.pairs, settings.sigma, settings.rank_shaping, settings.fitness, seed)
    if kind == "cma":
        return CMA(settings.popsize, settings.sigma0, settings.fitness, settings.keep, seed)
    if kind in ("tbptt", "pes"):
        if settings.fitness != "loss":
            raise ConfigError(f"estimator {kind!r} follows the loss (its truncations' losses add up to the episode's); "
                              f"fitness={settings.fitness!r} is for es and cma: remove it")
        return TBPTT(settings.window) if kind == "tbptt" else PES(settings.window, settings.pairs, settings.sigma, seed)
    raise ConfigError(f"unknown estimator {kind!r} (bptt, es, cma, tbptt, pes)")
