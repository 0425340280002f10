"""CMA-ES over a rule's parameters through the ``cma`` package (fitness need not be differentiable).

BLUR evolved genomes this way with fitness = accuracy. ``fitness(rule) -> float`` (higher is
better) is called once per candidate with the candidate's numbers loaded into ``rule``; at the
end ``rule`` holds the best candidate seen.

    history = cma_es(rule, lambda r: accuracy_after(r, 20), generations=10, popsize=16)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import ConfigError
from ..rules.base import Rule


def cma_es(rule: Rule, fitness: Callable[[Rule], float], *, generations: int = 10, popsize: int = 16,
           sigma0: float = 0.1, seed: int = 0, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Returns one dict per generation (``generation``, ``best``, ``mean``, ``best_so_far``), after a
    generation ``0`` row holding the initial parameters' fitness."""
    import cma

    if not isinstance(generations, int) or generations < 1 or not isinstance(popsize, int) or popsize < 2:
        raise ConfigError(f"cma_es needs generations >= 1 and popsize >= 2, got {generations!r}, {popsize!r}")
    if not sigma0 > 0:
        raise ConfigError(f"cma_es sigma0 must be positive, got {sigma0!r}")
    params = [p for p in rule.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(rule).__name__} has no parameters to evolve")
    x0 = parameters_to_vector(params).detach().double().numpy()

    def score(x: np.ndarray) -> float:
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(x, dtype=params[0].dtype), params)
            f = float(fitness(rule))
        return f if math.isfinite(f) else -math.inf  # a diverging candidate is simply the worst

    best_x, best_f = x0, score(x0)
    history = [{"generation": 0, "best": best_f, "mean": best_f, "best_so_far": best_f}]
    es = cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": popsize, "seed": seed + 1, "verbose": -9})
    for gen in range(1, generations + 1):
        xs = es.ask()
        fs = [score(x) for x in xs]
        es.tell(xs, [-f if math.isfinite(f) else 1e9 for f in fs])  # cma minimises
        i = int(np.argmax(fs))
        if fs[i] > best_f:
            best_x, best_f = xs[i], fs[i]
        row = {"generation": gen, "best": fs[i], "mean": float(np.mean([f for f in fs if math.isfinite(f)] or [-1])),
               "best_so_far": best_f}
        history.append(row)
        if log is not None:
            log(row)
    score(best_x)
    return history
