"""Truncated backprop through time: the gradient estimator of short-window meta-training.

Modelled on learned_optimization's truncated unroll: run ``window`` ticks from a state, take the
loss of those ticks, backpropagate, detach the state, go on. Gradients of all windows of an
episode accumulate in ``.grad``; the caller takes one optimiser step per batch of episodes.
``window=0`` (default) backpropagates through the whole episode, which is what recall needs:
the loss sits in the recall phase, the storing happens in the write phase.

Divergence: a NaN or inf in the loss, the outputs or any state field is caught without a host
sync per tick. Each window ANDs "all finite" into one flag on the device; the flag is read once,
at the end of the episode. Only when it fired is the episode replayed tick by tick (no grad) from
its initial state to name the first tick and quantity that went bad.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import DivergenceError
from ..graph import Graph
from ..rules.base import Rule, State
from ..simulate import simulate
from ..tasks.recall import Episode


class UnrollResult(NamedTuple):
    loss: Tensor  # 0-d, detached: the episode's loss
    outputs: Tensor  # [T, B, n_out, output_dim], detached


def unroll(rule: Rule, graph: Graph, episode: Episode, window: int = 0, backward: bool = True,
           checkpoint_every: int = 0) -> UnrollResult:
    """Run ``episode`` window by window, accumulating the gradient of the episode loss into ``.grad``.

    The episode loss is the squared error at read-out ticks divided by the number of read-out
    entries, so the accumulated gradient equals the full-episode gradient when ``window=0``.
    Raises DivergenceError naming the tick and quantity when anything becomes NaN or inf.
    """
    T, B = episode.inputs.shape[:2]
    window = window or T
    norm = episode.loss_mask.sum().clamp(min=1)
    state0 = state = rule.init_state(graph, B)
    total = episode.inputs.new_zeros(())
    finite = torch.ones((), dtype=torch.bool, device=total.device)
    outputs = []
    for start in range(0, T, window):
        ticks = slice(start, start + window)
        run = simulate(rule, graph, episode.inputs[ticks], state=state, checkpoint_every=checkpoint_every)
        err = (run.outputs[..., 0] - episode.targets[ticks]).square() * episode.loss_mask[ticks]
        loss = err.sum() / norm
        if backward and loss.requires_grad:
            loss.backward()
        state = {k: v.detach() for k, v in run.state.items()}
        total = total + loss.detach()
        outputs.append(run.outputs.detach())
        # NaN/inf anywhere in a window's states persists to its end (updates are x + f(x)), so the
        # window's last state, its outputs and loss stand for every tick; no sync here
        finite = finite & torch.isfinite(loss.detach()) & torch.isfinite(run.outputs.detach()).all()
        for v in state.values():
            if v.is_floating_point():
                finite = finite & torch.isfinite(v).all()
    if not bool(finite):  # the one host sync of the check
        raise DivergenceError(locate_divergence(rule, graph, episode, state0))
    return UnrollResult(total, torch.cat(outputs))


@torch.no_grad()
def locate_divergence(rule: Rule, graph: Graph, episode: Episode, state: State) -> str:
    """Replay ``episode`` tick by tick from ``state``: "state['edge'] became NaN at tick 17"."""
    for name, p in rule.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f"parameter {name!r} of {type(rule).__name__} holds {_kind(p)} (before tick 0)"
    for t in range(episode.inputs.shape[0]):
        run = simulate(rule, graph, episode.inputs[t : t + 1], state=state)
        state = run.state
        for key, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                return f"state[{key!r}] became {_kind(v)} at tick {t}"
        if not bool(torch.isfinite(run.outputs).all()):
            return f"the output became {_kind(run.outputs)} at tick {t}"
        err = (run.outputs[0, ..., 0] - episode.targets[t]).square() * episode.loss_mask[t]
        if not bool(torch.isfinite(err.sum())):
            return f"the recall loss became {_kind(err.sum())} at tick {t} (squared error overflowed)"
    # not reproducible tick by tick (e.g. a nondeterministic kernel): say what we know
    return f"the recall loss or a state became NaN or inf within the {episode.inputs.shape[0]} ticks of the episode"


def _kind(x: Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "inf"
