"""Online learning curves: query accuracy after N examples, on the same episodes as the SGD/Adam baselines."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError, check_int, check_ints, check_number, check_type
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.base import Episode
from ..tasks.online import OnlineTask, StreamTask, with_queries
from ..train.bptt import run_ticks


def probe_episode(task: OnlineTask, at: Sequence[int], batch: int = 32, query: int = 50, seed: int = 12345) -> Episode:
    """One stream of ``max(at)`` examples with the ``query`` examples inserted as probe ticks after
    each step in ``at``: probes leave the state alone, so each block scores the state after that
    many examples (the episodes of ``baselines.mlp_online`` with the same seed)."""
    check_type("probe_episode", task, StreamTask, "a stream task (sg.tasks.OnlineTask, FamilyTask) as its task")
    at = sorted(set(check_ints("probe_episode at (step counts)", at, 1)))
    batch, query = check_int("probe_episode batch", batch, 1), check_int("probe_episode query", query, 1)
    return with_queries(task.episode(max(at), batch, query, seed=seed), at, task.n_classes)


@torch.no_grad()
def accuracy_after(rule: Rule, graph: Graph, task: OnlineTask, at: Sequence[int] = (10, 20, 50, 100), *, batch: int = 32,
                   query: int = 50, seed: int = 12345) -> dict[int, float]:
    """Query accuracy after each of ``at`` online steps, mean over ``batch`` episodes."""
    check_type("accuracy_after", rule, Rule, "a simgraph rule (sg.rules.Rule)")
    check_type("accuracy_after", graph, Graph, "the simgraph Graph the rule runs on")
    at = sorted(set(check_ints("accuracy_after at (step counts)", at, 1)))
    ep = probe_episode(task, at, batch, query, seed).to(graph.device)
    batch, query = int(batch), int(query)
    out, _ = run_ticks(rule, graph, ep, rule.init_state(graph, batch))
    right = (out.argmax(-1) == ep.targets.argmax(-1)).float()
    blocks = right[ep.probe].view(len(at), query, batch)
    return {k: float(blocks[i].mean()) for i, k in enumerate(at)}


STABLE_AT = (20, 100, 500)


def stability(curve: dict[int, float], start: dict[int, float] | None = None, at: Sequence[int] = STABLE_AT,
              tol: float = 0.01) -> list[str]:
    """What keeps a learning curve from counting as "keeps learning" (issue 17), empty if nothing:
    at the steps ``at`` it has, accuracy never falls by more than ``tol`` from one to the next
    (step 500 >= step 100 >= step 20 within a point), and, with ``start`` (the curve of the rule
    meta-training started from), is at least ``start``'s at each of them, within ``tol``."""
    tol = check_number("stability tol", tol, low=0.0)
    check_type("stability", curve, dict, "a curve {step: accuracy} (accuracy_after's result)")
    steps = [k for k in sorted(set(at)) if k in curve]
    if not steps:
        raise ConfigError(f"stability: the curve has none of the steps {sorted(set(at))} (it has {sorted(curve)})")
    problems = [f"falls from {curve[a]:.3f} at step {a} to {curve[b]:.3f} at step {b}"
                for a, b in zip(steps, steps[1:]) if curve[b] < curve[a] - tol]
    if start is not None:
        problems += [f"{curve[k]:.3f} at step {k} is below the starting rule's {start[k]:.3f}"
                     for k in steps if k in start and curve[k] < start[k] - tol]
    return problems
