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
