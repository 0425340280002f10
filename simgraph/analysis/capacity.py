"""Recall accuracy as a function of difficulty, and capacity (largest load recalled at >= 95%)."""

from __future__ import annotations

from typing import Iterable

from ..graph import Graph
from ..rules.base import Rule
from ..tasks.recall import RecallTask
from ..train.loop import evaluate


def sweep(rule: Rule, graph: Graph, task: RecallTask, field: str, values: Iterable, episodes: int = 256) -> dict:
    """Bit accuracy of ``rule`` on ``task`` with ``field`` set to each of ``values``: ``{value: acc}``."""
    return {v: evaluate(rule, graph, task.replace(**{field: v}), episodes)["accuracy"] for v in values}


def capacity(accuracy_by_load: dict, threshold: float = 0.95) -> int:
    """The largest load K whose accuracy is >= ``threshold`` with every smaller swept K also passing
    (0 if even the smallest fails)."""
    best = 0
    for k in sorted(accuracy_by_load):
        if accuracy_by_load[k] < threshold:
            break
        best = k
    return best
