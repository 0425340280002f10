"""CMA-ES over a rule's parameters through the ``cma`` package (fitness need not be differentiable).

BLUR evolved genomes this way with fitness = accuracy. ``fitness(rule) -> float`` (higher is
better) is called once per candidate with the candidate's numbers loaded into ``rule``; at the
end ``rule`` holds the best candidate seen.

    history = cma_es(rule, lambda r: accuracy_after(r, 20), generations=10, popsize=16)

Under torchrun the population is scored across ranks (``es.evaluate_population``): rank 0 owns the
``cma`` object, asks, and sends the candidates to every rank; each rank scores its slice; one
all-reduce brings the scores back. numpy's global random state (cma's source of samples) is set
aside while fitness runs, so a fitness that draws from numpy cannot change the search, and the
result is the same on any number of ranks. ``fitness(rule)`` or ``fitness(rule, generation)``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import DivergenceError, check_bytes, check_int, check_number
from ..rules.base import Rule
from . import distributed as dist
from .es import evaluate_population, trainable


def check_population_bytes(popsize: int, params, who: str) -> None:
    """MemoryBudgetError unless the population and the n x n covariance (float64) fit."""
    n = sum(p.numel() for p in params)
    check_bytes(f"{who}'s population ({popsize} x {n} parameters) and covariance ({n} x {n})", 8 * (popsize * n + 2 * n * n),
                "use a smaller popsize or a rule with fewer parameters")


def cma_es(rule: Rule, fitness: Callable[..., float], *, generations: int = 10, popsize: int = 16,
           sigma0: float = 0.1, seed: int = 0, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Returns one dict per generation (``generation``, ``best``, ``mean``, ``best_so_far``), after a
    generation ``0`` row holding the initial parameters' fitness."""
    generations, popsize = check_int("cma_es generations", generations, 1), check_int("cma_es popsize", popsize, 2)
    sigma0 = check_number("cma_es sigma0", sigma0, positive=True)
    seed = check_int("cma_es seed", seed, 0, 2**32 - 2)  # cma seeds numpy with seed + 1
    params = trainable(rule, "cma_es")
    check_population_bytes(popsize, params, "cma_es")
    search = CMASearch(parameters_to_vector(params).detach().double().cpu().numpy(), sigma0, popsize, seed)
    (f0,) = search.score(rule, params, [search.x0], fitness, 0)
    search.best_x, search.best_f = search.x0, f0
    history = [{"generation": 0, "best": f0, "mean": f0, "best_so_far": f0}]
    for gen in range(1, generations + 1):
        xs = search.ask()
        fs = search.score(rule, params, xs, fitness, gen)
        search.tell(xs, fs)
        history.append(search.row(gen, fs))
        if log is not None and dist.is_main():
            log(history[-1])
    search.load_into(params, "best")
    return history


class CMASearch:
    """One CMA-ES search (the ``cma`` package) that ranks can share and a checkpoint can restore.

    Rank 0 owns the ``cma`` object; ``ask`` sends its candidates to every rank. cma draws its
    samples from numpy's global generator: every call into it runs on a numpy state of its own,
    so nothing else that uses numpy changes the search, and replaying the told fitness values
    (``state_dict`` / ``from_state``) rebuilds the search exactly, without scoring anything again.
    """

    def __init__(self, x0: np.ndarray, sigma0: float, popsize: int, seed: int):
        self.x0, self.sigma0, self.popsize, self.seed = np.asarray(x0, dtype=np.float64), float(sigma0), popsize, seed
        self.told: list[list[float]] = []
        self.best_x, self.best_f = self.x0, -math.inf
        self.mean = self.x0
        self._numpy_state = None
        self._es = None
        if dist.is_main():
            import cma

            with self._own_numpy():
                self._es = cma.CMAEvolutionStrategy(self.x0, self.sigma0, {"popsize": popsize, "seed": seed + 1, "verbose": -9})

    @contextmanager
    def _own_numpy(self):
        outside = np.random.get_state()
        if self._numpy_state is not None:
            np.random.set_state(self._numpy_state)
        try:
            yield
        finally:
            self._numpy_state = np.random.get_state()
            np.random.set_state(outside)

    def ask(self) -> list[np.ndarray]:
        xs = None
        if self._es is not None:
            with self._own_numpy():
                xs = self._es.ask()
        return dist.broadcast_object(xs)  # rank 0's candidates everywhere

    def tell(self, xs: list[np.ndarray], fs: list[float]) -> None:
        """``fs``: fitness, higher is better; NaN or inf counts as the worst."""
        fs = [f if math.isfinite(f) else -math.inf for f in fs]
        if not any(math.isfinite(f) for f in fs):
            raise DivergenceError(f"cma-es generation {len(self.told) + 1}: every candidate's fitness is NaN or inf")
        self.told.append(list(fs))
        i = int(np.argmax(fs))
        if fs[i] > self.best_f:
            self.best_x, self.best_f = xs[i], fs[i]
        mean = None
        if self._es is not None:
            with self._own_numpy():
                self._es.tell(xs, [-f if math.isfinite(f) else 1e9 for f in fs])  # cma minimises
            mean = np.array(self._es.mean, dtype=np.float64)
        self.mean = dist.broadcast_object(mean)

    @staticmethod
    def score(rule: Rule, params, xs: list[np.ndarray], fitness, generation: int) -> list[float]:
        f = evaluate_population(rule, params, lambda i: torch.as_tensor(xs[i]), len(xs), fitness, generation)
        return [v if math.isfinite(v) else -math.inf for v in f.tolist()]

    def row(self, generation: int, fs: list[float]) -> dict:
        finite = [f for f in fs if math.isfinite(f)]
        return {"generation": generation, "best": max(fs), "mean": float(np.mean(finite)) if finite else -math.inf,
                "best_so_far": self.best_f}

    def load_into(self, params, which: str = "mean") -> None:
        x = self.best_x if which == "best" else self.mean
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(np.asarray(x)).to(params[0]), params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        told = torch.tensor(self.told, dtype=torch.float64).view(-1, self.popsize)
        bad = ~torch.isfinite(told)  # diverged candidates (-inf): checkpoints hold finite numbers only, so a mask
        return {"x0": torch.as_tensor(self.x0), "told": told.masked_fill(bad, 0.0), "told_diverged": bad,
                "best_x": torch.as_tensor(np.asarray(self.best_x, dtype=np.float64)),
                "best_f": torch.tensor(self.best_f, dtype=torch.float64)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], sigma0: float, popsize: int, seed: int) -> "CMASearch":
        """The search as it was after the told generations: the same ask/tell calls, replayed."""
        search = cls(state["x0"].numpy(), sigma0, popsize, seed)
        told = state["told"]
        if "told_diverged" in state:  # (checkpoints written before the mask have no diverged candidates)
            told = told.masked_fill(state["told_diverged"].bool(), -math.inf)
        for fs in told.tolist():
            xs = search.ask()
            search.tell(xs, fs)
        search.best_x, search.best_f = state["best_x"].numpy(), float(state["best_f"])
        return search
