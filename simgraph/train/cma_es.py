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
from typing import Callable

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import ConfigError
from ..rules.base import Rule
from . import distributed as dist
from .es import evaluate_population, trainable


def cma_es(rule: Rule, fitness: Callable[..., float], *, generations: int = 10, popsize: int = 16,
           sigma0: float = 0.1, seed: int = 0, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Returns one dict per generation (``generation``, ``best``, ``mean``, ``best_so_far``), after a
    generation ``0`` row holding the initial parameters' fitness."""
    import cma

    for name, v, low in (("generations", generations, 1), ("popsize", popsize, 2)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"cma_es needs {name} >= {low} (an int), got {v!r}")
    if not isinstance(sigma0, (int, float)) or not math.isfinite(sigma0) or sigma0 <= 0:
        raise ConfigError(f"cma_es sigma0 must be positive, got {sigma0!r}")
    params = trainable(rule, "cma_es")
    x0 = parameters_to_vector(params).detach().double().cpu().numpy()

    def score(xs: list[np.ndarray], gen: int) -> list[float]:
        rng = np.random.get_state()
        f = evaluate_population(rule, params, lambda i: torch.as_tensor(xs[i]), len(xs), fitness, gen)
        np.random.set_state(rng)
        return [v if math.isfinite(v) else -math.inf for v in f.tolist()]  # a diverging candidate is the worst

    best_x, (best_f,) = x0, score([x0], 0)
    history = [{"generation": 0, "best": best_f, "mean": best_f, "best_so_far": best_f}]
    es = cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": popsize, "seed": seed + 1, "verbose": -9}) if dist.is_main() else None
    for gen in range(1, generations + 1):
        xs = dist.broadcast_object(es.ask() if es is not None else None)  # rank 0's candidates everywhere
        fs = score(xs, gen)
        if es is not None:
            es.tell(xs, [-f if math.isfinite(f) else 1e9 for f in fs])  # cma minimises
        i = int(np.argmax(fs))
        if fs[i] > best_f:
            best_x, best_f = xs[i], fs[i]
        finite = [f for f in fs if math.isfinite(f)]
        row = {"generation": gen, "best": fs[i], "mean": float(np.mean(finite)) if finite else -math.inf,
               "best_so_far": best_f}
        history.append(row)
        if log is not None and dist.is_main():
            log(row)
    with torch.no_grad():
        vector_to_parameters(torch.as_tensor(best_x).to(params[0]), params)
    return history
