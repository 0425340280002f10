"""Reference points for learned rules.

- Memory: :func:`hebbian_baseline`, the fixed Hebbian outer-product rule with its gain tuned, and
  :func:`delta_baseline`, the online delta rule with its gain and step tuned.
- Online learning: SGD and Adam on a bias-free ReLU MLP of the rules' shape.

Online baselines take one example per step, a batch of independent episodes trained at once (each episode has its own
weights ``[B, out, in]``; the summed loss gives every episode its own gradient). Weights start
N(0, 1/fan_in) like the rules' synapses. Learning rates are swept; :func:`best_of_sweep` keeps,
for each evaluation step, the best learning rate (an optimistic baseline).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError, check_bytes, check_choice, check_gain, check_int, check_ints, check_number, check_type
from .graph import Graph
from .rules.base import mean_indegree_rate
from .rules.delta import DeltaRule
from .rules.hebbian import HebbianRule
from .tasks.online import OnlineTask, StreamTask
from .tasks.recall import RecallTask
from .train.loop import EVAL_SEED, MAX_EPISODES, evaluate

BETAS = (0.03, 0.1, 0.3, 1.0)
TUNE_SEED = EVAL_SEED // 2  # tuning episodes differ from the evaluation episodes


def hebbian_baseline(graph: Graph, task: RecallTask, episodes: int = 512, betas=BETAS) -> tuple[float, float]:
    """Hopfield storage of the presented patterns, its recurrent gain ``beta`` tuned on separate
    episodes; returns ``(beta, bit accuracy on the evaluation episodes)``. Only meaningful where the
    input neurons are the output neurons (auto-associative nets); elsewhere it scores near chance.
    """
    _check_parts(graph, task, "hebbian_baseline")
    episodes = check_int("hebbian_baseline episodes", episodes, 1, MAX_EPISODES)  # before the tuning runs
    tuned = {b: evaluate(HebbianRule(beta=b), graph, task, 128, seed=TUNE_SEED)["accuracy"] for b in _grid("betas", betas)}
    beta = max(tuned, key=tuned.get)
    return beta, evaluate(HebbianRule(beta=beta), graph, task, episodes)["accuracy"]


ETA_SCALES = (0.25, 0.5, 1.0)  # times 1 / mean indegree


def delta_baseline(graph: Graph, task: RecallTask, episodes: int = 512, betas=BETAS,
                   eta_scales=ETA_SCALES) -> tuple[dict, float]:
    """The online delta rule, ``beta`` and ``eta`` tuned on separate episodes like :func:`hebbian_baseline`;
    returns ``({"beta", "eta"}, bit accuracy on the evaluation episodes)``."""
    _check_parts(graph, task, "delta_baseline")
    episodes = check_int("delta_baseline episodes", episodes, 1, MAX_EPISODES)  # before the tuning runs
    eta0 = mean_indegree_rate(graph)
    grid = [{"beta": b, "eta": e * eta0} for b in _grid("betas", betas) for e in _grid("eta_scales", eta_scales, positive=True)]
    tuned = [evaluate(DeltaRule(**kw), graph, task, 128, seed=TUNE_SEED)["accuracy"] for kw in grid]
    best = grid[max(range(len(grid)), key=tuned.__getitem__)]
    return best, evaluate(DeltaRule(**best), graph, task, episodes)["accuracy"]


def _check_parts(graph, task, who: str) -> None:
    check_type(who, graph, Graph, "a simgraph Graph")
    check_type(who, task, RecallTask, "a RecallTask")


def _grid(name: str, values, positive: bool = False) -> list[float]:
    """A tuning grid: a non-empty list of finite numbers (an empty grid has no best value)."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__") or not (values := list(values)):
        raise ConfigError(f"baseline {name} must be a non-empty list of numbers to tune over, got {values!r}")
    return [check_number(f"baseline {name}[{i}]", v, positive=True) if positive else check_gain(f"baseline {name}[{i}]", v)
            for i, v in enumerate(values)]


OPTIMIZERS = ("sgd", "adam")
LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def mlp_online(task: OnlineTask, optimizer: str = "sgd", lr: float = 0.1, *, hidden: Sequence[int] = (32,),
               at: Sequence[int] = (10, 20, 50, 100), batch: int = 32, query: int = 50, seed: int = 12345) -> dict[int, float]:
    """Query accuracy after ``at`` online steps, on the same episodes as ``analysis.accuracy_after``."""
    check_type("mlp_online", task, StreamTask, "a stream task (sg.tasks.OnlineTask, FamilyTask) as its task")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    lr = check_number("mlp_online lr", lr, positive=True)
    hidden = [] if isinstance(hidden, (list, tuple)) and not hidden else check_ints("mlp_online hidden (layer widths)", hidden, 1)
    at = sorted(set(check_ints("mlp_online at (step counts)", at, 1)))
    batch, query = check_int("mlp_online batch", batch, 1), check_int("mlp_online query", query, 1)
    seed = check_int("mlp_online seed", seed, 0, 2**64 - 1)
    sizes = [task.input_size, *hidden, task.n_classes]
    # weights, their gradients and Adam's two moments, per episode of the batch
    check_bytes(f"mlp_online's weights (batch={batch}, layers {sizes})", 16 * batch * sum(i * o for i, o in zip(sizes, sizes[1:])),
                "use smaller hidden layers or a smaller batch")
    ep = task.episode(max(at), batch, query, seed=seed)
    g = torch.Generator().manual_seed(seed)
    Ws = [(torch.randn(batch, o, i, generator=g) / i**0.5).requires_grad_(True) for i, o in zip(sizes, sizes[1:])]
    opt = torch.optim.SGD(Ws, lr=lr) if optimizer == "sgd" else torch.optim.Adam(Ws, lr=lr)

    def forward(x):  # x [B, n_in] or [Q, B, n_in]
        h = x
        for k, W in enumerate(Ws):
            h = torch.einsum("boi,...bi->...bo", W, h)
            h = torch.relu(h) if k < len(Ws) - 1 else h
        return h

    out = {}
    for t in range(max(at)):
        loss = F.cross_entropy(forward(ep.x[t]), ep.y[t], reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t + 1 in at:
            with torch.no_grad():
                out[t + 1] = (forward(ep.xq).argmax(-1) == ep.yq).float().mean().item()
    return out


def sweep(task: OnlineTask, optimizer: str = "sgd", lrs: Sequence[float] = LEARNING_RATES, **kw) -> dict[float, dict[int, float]]:
    """``mlp_online`` at each learning rate of ``lrs``: ``{lr: {step: accuracy}}``."""
    return {lr: mlp_online(task, optimizer, lr, **kw) for lr in _grid("sweep lrs", lrs, positive=True)}


def best_of_sweep(results: dict[float, dict[int, float]]) -> dict[int, tuple[float, float]]:
    """For each step: (best accuracy, its learning rate)."""
    check_type("best_of_sweep", results, dict, "sweep()'s result {lr: {step: accuracy}}")
    if not results or not all(isinstance(r, dict) for r in results.values()):
        raise ConfigError(f"best_of_sweep needs sweep()'s result, a non-empty {{lr: {{step: accuracy}}}}, got {results!r}")
    steps = next(iter(results.values())).keys()
    if any(r.keys() != steps for r in results.values()):
        raise ConfigError("best_of_sweep: the learning rates' curves have different steps; sweep them with one at=")
    return {k: max((r[k], lr) for lr, r in results.items()) for k in steps}
