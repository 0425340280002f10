"""Antithetic evolution strategies over a rule's parameters (the VSML setting).

Each generation draws ``pairs`` noise vectors ``eps_i``, scores the mirrored candidates
``theta +- sigma * eps_i`` with ``fitness`` (higher is better; need not be differentiable: bit
accuracy works), turns the scores into centred ranks, and hands Adam the ES gradient
``-sum_i (w_i+ - w_i-) eps_i / (2 * pairs * sigma)``. Kirsch & Schmidhuber (VSML, 2021) meta-train
LSTM-synapse rules this way.

    history = es(rule, lambda r: accuracy_after(r), generations=100, pairs=64, sigma=0.05, lr=0.01)

The population is evaluated across the ranks of a process group when one is active (torchrun):
each rank scores its slice of candidates and one all-reduce gathers the scores. The noise comes
from ``(seed, generation)`` and is drawn on every rank, so the result does not depend on how many
ranks there are (tested: 2 ranks == 1). ``fitness(rule)`` or ``fitness(rule, generation)``: the
second form lets all candidates of a generation share fresh episodes (common random numbers).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import ConfigError, DivergenceError, check_bool, check_bytes, check_int, check_number, check_seed
from ..rules.base import Rule
from . import distributed as dist

Fitness = Callable[..., float]


def check_noise_bytes(pairs: int, params) -> None:
    """MemoryBudgetError unless the pairs' noise (pairs x parameters, drawn at once a generation) fits."""
    n = sum(p.numel() for p in params)
    check_bytes(f"es noise for {pairs} pairs x {n} parameters", 2 * pairs * n * 4, "use fewer pairs")


def es(rule: Rule, fitness: Fitness, *, generations: int = 100, pairs: int = 32, sigma: float = 0.05, lr: float = 0.01,
       seed: int = 0, rank_shaping: bool = True, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``rule``'s parameters in place; returns one dict per generation
    (``generation``, ``mean``, ``best``, ``worst`` fitness of the population)."""
    generations, pairs = check_int("es generations", generations, 1), check_int("es pairs", pairs, 1)
    sigma, lr = check_number("es sigma", sigma, positive=True), check_number("es lr", lr, positive=True)
    seed, rank_shaping = check_seed("es seed", seed), check_bool("es rank_shaping", rank_shaping)
    params = trainable(rule, "es")
    check_noise_bytes(pairs, params)
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    for gen in range(generations):
        grad, f = es_gradient(rule, params, fitness, gen, pairs=pairs, sigma=sigma, seed=seed, rank_shaping=rank_shaping)
        set_gradient(params, grad)
        opt.step()
        fin = f[torch.isfinite(f)]
        row = {"generation": gen, "mean": float(fin.mean()), "best": float(fin.max()), "worst": float(f.min())}
        history.append(row)
        if log is not None and dist.is_main():
            log(row)
    return history


def es_gradient(rule: Rule, params: Sequence[torch.nn.Parameter], fitness: Fitness, generation: int, *, pairs: int,
                sigma: float, seed: int, rank_shaping: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One generation: the ES estimate of the fitness *ascent* direction (flat, like the parameters)
    and the ``2 * pairs`` candidates' fitness. ``rule`` is left holding its parameters unchanged."""
    theta = parameters_to_vector(params).detach().clone()
    g = torch.Generator().manual_seed((seed * 1_000_003 + generation) % 2**64)  # torch maps n and n mod 2**64 alike
    eps = torch.randn(pairs, theta.numel(), generator=g).to(theta)
    # candidate 2i is theta + sigma eps_i, 2i+1 its mirror
    candidates = lambda i: theta + (sigma if i % 2 == 0 else -sigma) * eps[i // 2]  # noqa: E731
    f = evaluate_population(rule, params, candidates, 2 * pairs, fitness, generation)
    vector_to_parameters(theta, params)
    finite = torch.isfinite(f)
    if not bool(finite.any()):
        raise DivergenceError(f"es generation {generation}: every candidate's fitness is NaN or inf")
    if rank_shaping:
        w = centred_ranks(f)
    else:  # a diverging candidate counts as the worst finite one
        w = torch.where(finite, f, f[finite].min())
        w = w - w.mean()
    return ((w[0::2] - w[1::2]).to(eps) @ eps) / (2 * pairs * sigma), f


def set_gradient(params: Sequence[torch.nn.Parameter], ascent: torch.Tensor) -> None:
    """Write ``-ascent`` into the parameters' ``.grad`` (optimisers minimise)."""
    offset = 0
    for p in params:
        p.grad = -ascent[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()


def centred_ranks(f: torch.Tensor) -> torch.Tensor:
    """Fitness -> ranks scaled to [-0.5, 0.5] (NaN counts as worst): invariant to the fitness scale."""
    f = torch.where(torch.isnan(f), torch.full_like(f, -math.inf), f)
    ranks = torch.empty_like(f)
    ranks[torch.argsort(f, stable=True)] = torch.arange(len(f), dtype=f.dtype)
    return ranks / max(len(f) - 1, 1) - 0.5


def trainable(rule: Rule, who: str) -> list[torch.nn.Parameter]:
    if not isinstance(rule, torch.nn.Module):
        raise ConfigError(f"{who} needs a rule (an nn.Module), got {type(rule).__name__}")
    params = [p for p in rule.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(rule).__name__} has no parameters to evolve")
    return params


def evaluate_population(rule: Rule, params: Sequence[torch.nn.Parameter], candidate: Callable[[int], torch.Tensor],
                        n: int, fitness: Fitness, generation: int) -> torch.Tensor:
    """Fitness of candidates ``0..n-1`` (``candidate(i)`` gives a parameter vector), float64 ``[n]``.

    Each rank scores its slice; the others' entries stay zero, so one all-reduce sum assembles the
    full vector, bit for bit what one process computes. ``rule`` is left holding the last candidate.
    """
    call = _caller(fitness)
    f = torch.zeros(n, dtype=torch.float64)
    part = dist.shard(n)
    for i in range(part.start, part.stop):
        with torch.no_grad():
            vector_to_parameters(candidate(i).to(params[0].dtype), params)
            value = call(rule, generation)
        try:
            f[i] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"fitness must return a number, got {type(value).__name__}") from None
    return dist.all_reduce_sum(f.to(params[0].device)).cpu()


def _caller(fitness: Fitness):
    if not callable(fitness):
        raise ConfigError(f"fitness must be callable, got {type(fitness).__name__}")
    try:
        # a second *required* positional parameter receives the generation; one with a default does not
        ps = inspect.signature(fitness).parameters.values()
        takes_generation = any(p.kind == p.VAR_POSITIONAL for p in ps) or len(
            [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]) >= 2
    except (TypeError, ValueError):  # builtins without a signature
        takes_generation = False
    return (lambda r, g: fitness(r, g)) if takes_generation else (lambda r, g: fitness(r))
