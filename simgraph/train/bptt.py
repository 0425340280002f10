"""Truncated backprop through time: the gradient estimator of short-window meta-training.

Modelled on learned_optimization's truncated unroll: run ``window`` ticks from a state, take the
loss of those ticks, backpropagate, detach the state, go on. Gradients of all windows of an
episode accumulate in ``.grad``; the caller takes one optimiser step per batch of episodes.
``window=0`` (default) backpropagates through the whole episode, which is what recall needs:
the loss sits in the recall phase, the storing happens in the write phase.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import DivergenceError
from ..graph import Graph
from ..rules.base import Rule
from ..simulate import simulate
from ..tasks.recall import Episode


class UnrollResult(NamedTuple):
    loss: Tensor  # 0-d, detached: the episode's loss
    outputs: Tensor  # [T, B, n_out, output_dim], detached


def unroll(rule: Rule, graph: Graph, episode: Episode, window: int = 0, backward: bool = True) -> UnrollResult:
    """Run ``episode`` window by window, accumulating the gradient of the episode loss into ``.grad``.

    The episode loss is the squared error at read-out ticks divided by the number of read-out
    entries, so the accumulated gradient equals the full-episode gradient when ``window=0``.
    """
    T, B = episode.inputs.shape[:2]
    window = window or T
    norm = episode.loss_mask.sum().clamp(min=1)
    state = rule.init_state(graph, B)
    total = episode.inputs.new_zeros(())
    outputs = []
    for start in range(0, T, window):
        ticks = slice(start, start + window)
        run = simulate(rule, graph, episode.inputs[ticks], state=state)
        err = (run.outputs[..., 0] - episode.targets[ticks]).square() * episode.loss_mask[ticks]
        loss = err.sum() / norm
        if backward and loss.requires_grad:
            loss.backward()
        state = {k: v.detach() for k, v in run.state.items()}
        total = total + loss.detach()
        outputs.append(run.outputs.detach())
    if not bool(torch.isfinite(total)):
        raise DivergenceError(f"the recall loss is {total.item()} (NaN or inf) after {T} ticks")
    return UnrollResult(total, torch.cat(outputs))
