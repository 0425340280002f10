"""Meta-training online learning rules by backprop through the unroll (BLUR / VSML style).

A rule with ``forward_pass`` (predict), ``backward_pass`` (learn from a one-hot target) and
``readout`` (logits) learns a stream of labelled examples inside an episode; the meta-loss is the
cross-entropy on unseen examples of the same episodes after the unroll. Adam (lr 5e-4), gradient
norm clipped to 10, as in Sandler et al. 2021.

    graph = graph_for(task, hidden=(32,))
    history = meta_train(rule, {"digits0-4": task}, iterations=200, unroll=20)
    acc = evaluate(rule, task, at=(10, 20, 50, 100))
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DivergenceError
from ..graph import Graph
from ..rules.base import Rule, State
from ..tasks.online import OnlineTask


def graph_for(task: OnlineTask, hidden: Sequence[int] = (32,), layout: str = "dense") -> Graph:
    """A layered graph ``input -> hidden... -> output`` sized for ``task``."""
    from ..build import Network

    sizes = [task.input_size, *hidden, task.n_classes]
    net = Network(0)
    for i, n in enumerate(sizes):
        net.population(f"layer{i}", n, neuron_type="input" if i == 0 else "output" if i == len(sizes) - 1 else "hidden")
    for i in range(len(sizes) - 1):
        net.connect(f"layer{i}", f"layer{i + 1}", layout=layout)
    return net.inputs("layer0").outputs(f"layer{len(sizes) - 1}").build()


def _check_rule(rule: Rule) -> None:
    for name in ("forward_pass", "backward_pass", "readout"):
        if not callable(getattr(rule, name, None)):
            raise ConfigError(f"{type(rule).__name__} has no {name}(); online learning needs predict-then-learn rules "
                              "(GenomeRule, LSTMSynapseRule)")


def online_unroll(rule: Rule, graph: Graph, x: Tensor, y: Tensor, state: State | None = None,
                  snapshot_at: Sequence[int] = ()) -> tuple[Tensor, State, dict[int, State]]:
    """Learn the stream ``x [T, B, n_in]``, ``y [T, B]``: predict each example, then learn from it.

    Returns the online logits ``[T, B, C]`` (before each example was learned), the final state, and
    the states after the steps in ``snapshot_at``.
    """
    _check_rule(rule)
    T, B = x.shape[0], x.shape[1]
    C = graph.num_outputs
    if int(y.max()) >= C:
        raise ConfigError(f"labels go up to {int(y.max())} but the graph has {C} output neurons")
    state = rule.init_state(graph, B) if state is None else state
    dtype = state["node"].dtype
    logits, snaps = [], {}
    for t in range(T):
        state = rule.forward_pass(graph, state, graph.scatter_inputs(x[t].to(dtype).unsqueeze(-1)))
        logits.append(rule.readout(graph, state))
        state = rule.backward_pass(graph, state, F.one_hot(y[t], C).to(dtype))
        if t + 1 in snapshot_at:
            snaps[t + 1] = state
    return torch.stack(logits), state, snaps


def query_logits(rule: Rule, graph: Graph, state: State, xq: Tensor) -> Tensor:
    """Predictions ``[Q, B, C]`` for unseen examples, each from ``state`` (nothing is learned)."""
    dtype = state["node"].dtype
    return torch.stack([rule.readout(graph, rule.forward_pass(graph, state, graph.scatter_inputs(q.to(dtype).unsqueeze(-1))))
                        for q in xq])


def meta_train(
    rule: Rule,
    tasks: Mapping[str, OnlineTask],
    *,
    hidden: Sequence[int] = (32,),
    iterations: int = 100,
    unroll: int = 20,
    batch: int = 16,
    query: int = 20,
    lr: float = 5e-4,
    clip: float = 10.0,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Adam on the rule's parameters; tasks are visited round-robin. Returns one dict per iteration
    (``iteration``, ``task``, ``loss``, ``accuracy`` on the query examples)."""
    if not tasks:
        raise ConfigError("meta_train needs at least one task")
    for what, v in dict(iterations=iterations, unroll=unroll, batch=batch, query=query).items():
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"meta_train {what} must be a positive int, got {v!r}")
    if not lr > 0 or not clip > 0:
        raise ConfigError(f"meta_train lr and clip must be positive, got {lr!r}, {clip!r}")
    graphs = {name: graph_for(t, hidden) for name, t in tasks.items()}
    names = list(tasks)
    opt = torch.optim.Adam(rule.parameters(), lr=lr)
    history = []
    for it in range(iterations):
        name = names[it % len(names)]
        ep = tasks[name].episode(unroll, batch, query, seed=seed * 1_000_003 + it)
        _, state, _ = online_unroll(rule, graphs[name], ep.x, ep.y)
        logits = query_logits(rule, graphs[name], state, ep.xq)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ep.yq.reshape(-1))
        if not math.isfinite(loss.item()):
            raise DivergenceError(f"meta-loss became {loss.item()} at iteration {it} on task {name!r}")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rule.parameters(), clip)
        opt.step()
        row = {"iteration": it, "task": name, "loss": loss.item(),
               "accuracy": (logits.argmax(-1) == ep.yq).float().mean().item()}
        history.append(row)
        if log is not None:
            log(row)
    return history


@torch.no_grad()
def evaluate(rule: Rule, task: OnlineTask, *, hidden: Sequence[int] = (32,), at: Sequence[int] = (10, 20, 50, 100),
             batch: int = 32, query: int = 50, seed: int = 12345) -> dict[int, float]:
    """Query accuracy after ``at`` online steps, mean over ``batch`` episodes."""
    graph = graph_for(task, hidden)
    ep = task.episode(max(at), batch, query, seed=seed)
    _, _, snaps = online_unroll(rule, graph, ep.x, ep.y, snapshot_at=at)
    return {k: (query_logits(rule, graph, snaps[k], ep.xq).argmax(-1) == ep.yq).float().mean().item() for k in at}
