"""Online learning curves: query accuracy after N examples, on the same episodes as the SGD/Adam baselines."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.base import Episode
from ..tasks.online import OnlineTask, with_queries
from ..train.bptt import run_ticks


def probe_episode(task: OnlineTask, at: Sequence[int], batch: int = 32, query: int = 50, seed: int = 12345) -> Episode:
    """One stream of ``max(at)`` examples with the ``query`` examples inserted as probe ticks after
    each step in ``at``: probes leave the state alone, so each block scores the state after that
    many examples (the episodes of ``baselines.mlp_online`` with the same seed)."""
    at = sorted(set(at))
    if not at or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in at):
        raise ConfigError(f"at must be positive step counts, got {list(at)!r}")
    return with_queries(task.episode(max(at), batch, query, seed=seed), at, task.n_classes)


@torch.no_grad()
def accuracy_after(rule: Rule, graph: Graph, task: OnlineTask, at: Sequence[int] = (10, 20, 50, 100), *, batch: int = 32,
                   query: int = 50, seed: int = 12345) -> dict[int, float]:
    """Query accuracy after each of ``at`` online steps, mean over ``batch`` episodes."""
    ep = probe_episode(task, at, batch, query, seed).to(graph.device)
    out, _ = run_ticks(rule, graph, ep, rule.init_state(graph, batch))
    right = (out.argmax(-1) == ep.targets.argmax(-1)).float()
    blocks = right[ep.probe].view(len(sorted(set(at))), query, batch)
    return {k: float(blocks[i].mean()) for i, k in enumerate(sorted(set(at)))}


STABLE_AT = (20, 100, 500)


def stability(curve: dict[int, float], start: dict[int, float] | None = None, at: Sequence[int] = STABLE_AT,
              tol: float = 0.01) -> list[str]:
    """What keeps a learning curve from counting as "keeps learning" (issue 17), empty if nothing:
    at the steps ``at`` it has, accuracy never falls by more than ``tol`` from one to the next
    (step 500 >= step 100 >= step 20 within a point), and, with ``start`` (the curve of the rule
    meta-training started from), is at least ``start``'s at each of them, within ``tol``."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ConfigError(f"stability tol must be a number >= 0, got {tol!r}")
    steps = [k for k in sorted(set(at)) if k in curve]
    if not steps:
        raise ConfigError(f"stability: the curve has none of the steps {sorted(set(at))} (it has {sorted(curve)})")
    problems = [f"falls from {curve[a]:.3f} at step {a} to {curve[b]:.3f} at step {b}"
                for a, b in zip(steps, steps[1:]) if curve[b] < curve[a] - tol]
    if start is not None:
        problems += [f"{curve[k]:.3f} at step {k} is below the starting rule's {start[k]:.3f}"
                     for k in steps if k in start and curve[k] < start[k] - tol]
    return problems
