"""Recall accuracy as a function of difficulty, and capacity (largest load recalled at >= 95%)."""

from __future__ import annotations

from typing import Iterable

from ..errors import ConfigError, check_int, check_name, check_probability
from ..graph import Graph
from ..rules.base import Rule
from ..tasks.recall import RecallTask
from ..train.loop import evaluate


def sweep(rule: Rule, graph: Graph, task: RecallTask, field: str, values: Iterable, episodes: int = 256) -> dict:
    """Bit accuracy of ``rule`` on ``task`` with ``field`` set to each of ``values``: ``{value: acc}``."""
    check_name("sweep field (a task setting)", field, error=ConfigError)
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__") or not (values := list(values)):
        raise ConfigError(f"sweep values must be a non-empty list of values of {field!r}, got {values!r}")
    return {v: evaluate(rule, graph, task.replace(**{field: v}), episodes)["accuracy"] for v in values}


def capacity(accuracy_by_load: dict, threshold: float = 0.95) -> int:
    """The largest load K whose accuracy is >= ``threshold`` with every smaller swept K also passing
    (0 if even the smallest fails). Loads are ints >= 1 and accuracies numbers in [0, 1]: a NaN accuracy
    (a run that diverged) would otherwise count as passing."""
    threshold = check_probability("capacity threshold", threshold)
    if not isinstance(accuracy_by_load, dict):
        raise ConfigError(f"capacity needs a dict {{load K: accuracy}}, got {type(accuracy_by_load).__name__}")
    accuracy_by_load = {check_int("capacity load", k, 1): check_probability(f"capacity accuracy at load {k!r}", a)
                        for k, a in accuracy_by_load.items()}
    best = 0
    for k in sorted(accuracy_by_load):
        if accuracy_by_load[k] < threshold:
            break
        best = k
    return best
