"""Reference points for meta-trained memory rules: the fixed Hebbian outer-product rule."""

from __future__ import annotations

from ..graph import Graph
from ..rules.hebbian import HebbianRule
from ..tasks.recall import RecallTask
from .loop import EVAL_SEED, evaluate

BETAS = (0.03, 0.1, 0.3, 1.0)
TUNE_SEED = EVAL_SEED // 2  # tuning episodes differ from the evaluation episodes


def hebbian_baseline(graph: Graph, task: RecallTask, episodes: int = 512, betas=BETAS) -> tuple[float, float]:
    """Hopfield storage of the presented patterns, its recurrent gain ``beta`` tuned on separate
    episodes; returns ``(beta, bit accuracy on the evaluation episodes)``. Only meaningful where the
    input neurons are the output neurons (auto-associative nets); elsewhere it scores near chance.
    """
    tuned = {b: evaluate(HebbianRule(beta=b), graph, task, 128, seed=TUNE_SEED)["accuracy"] for b in betas}
    beta = max(tuned, key=tuned.get)
    return beta, evaluate(HebbianRule(beta=beta), graph, task, episodes)["accuracy"]
