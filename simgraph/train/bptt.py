"""Running a rule over a task's episode, and truncated backprop through time.

``unroll`` is modelled on learned_optimization's truncated unroll: run ``window`` ticks from a
state, take the loss of those ticks, backpropagate, detach the state, go on. Gradients of all
windows of an episode accumulate in ``.grad``; the caller takes one optimiser step per batch.
``window=0`` (default) backpropagates through the whole episode, which is what recall needs: the
loss sits in the recall phase, the storing happens in the write phase.

An episode without a teacher signal or probe ticks runs through ``sg.simulate`` (with its lean
and checkpointed backward paths). One with them runs predict-then-learn rules (``SweepRule``:
``forward_pass``, ``readout``, ``backward_pass``) tick by tick: each tick predicts, then learns
from ``teacher[t]``; a probe tick predicts from the state and leaves it unchanged.

Divergence: a NaN or inf in the loss, the outputs or any state field is caught without a host
sync per tick. Each window ANDs "all finite" into one flag on the device; the flag is read once,
at the end of the episode. Only when it fired is the episode replayed tick by tick (no grad) from
its initial state to name the first tick and quantity that went bad.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError, DivergenceError, NonFiniteStateError, check_bool, check_int, check_type
from ..graph import Graph
from ..rules.base import Rule, State
from ..simulate import simulate
from ..tasks.base import Episode, Task

_SQUARED_ERROR = Task()  # the loss of unroll(task=None): mean squared error on the loss mask


class UnrollResult(NamedTuple):
    loss: Tensor  # 0-d, detached: the episode's loss
    outputs: Tensor  # [T, B, n_out], detached


def unroll(rule: Rule, graph: Graph, episode: Episode, task: Task | None = None, *, window: int = 0,
           backward: bool = True, checkpoint_every: int = 0, lean: bool = False) -> UnrollResult:
    """Run ``episode`` window by window, accumulating the gradient of ``task.loss`` into ``.grad``.

    The window losses are each window's error over the *whole* episode's normaliser, so the
    accumulated gradient equals the full-episode gradient when ``window=0``. ``lean`` runs each
    window through the rule's lean episode (``sg.simulate(lean=True)``). Raises DivergenceError
    naming the tick and quantity when anything becomes NaN or inf.
    """
    check_type("train.unroll", episode, Episode, "an Episode (task.sample(batch_size)) as its episode")
    check_type("train.unroll", task, (Task, type(None)), "a Task or None (squared error) as its task")
    window = check_int("train.unroll: window", window, 0)
    backward, lean = check_bool("train.unroll: backward", backward), check_bool("train.unroll: lean", lean)
    checkpoint_every = check_int("train.unroll: checkpoint_every", checkpoint_every, 0)
    task = task if task is not None else _SQUARED_ERROR
    T, B = episode.inputs.shape[:2]
    window = window or T
    norm = task.loss_norm(episode)
    state0 = state = rule.init_state(graph, B)
    total = episode.inputs.new_zeros(())
    finite = torch.ones((), dtype=torch.bool, device=total.device)
    outputs = []
    for start in range(0, T, window):
        part = episode.ticks(slice(start, start + window))
        try:
            out, state = run_ticks(rule, graph, part, state, checkpoint_every=checkpoint_every, lean=lean)
        except NonFiniteStateError:  # an earlier window left NaN/inf in the state: name the tick below
            finite = torch.zeros_like(finite)
            break
        out = task.check_outputs(out, part)
        loss = task.error(out, part).sum() / norm
        if backward and loss.requires_grad:
            loss.backward()
        state = {k: v.detach() for k, v in state.items()}
        total = total + loss.detach()
        outputs.append(out.detach())
        # NaN/inf anywhere in a window's states persists to its end (updates are x + f(x)), so the
        # window's last state, its outputs and loss stand for every tick; no sync here
        finite = finite & torch.isfinite(loss.detach()) & torch.isfinite(out.detach()).all()
        for v in state.values():
            if v.is_floating_point():
                finite = finite & torch.isfinite(v).all()
    if not bool(finite):  # the one host sync of the check
        raise DivergenceError(locate_divergence(rule, graph, episode, state0, task))
    return UnrollResult(total, torch.cat(outputs))


def run_ticks(rule: Rule, graph: Graph, episode: Episode, state: State, *, checkpoint_every: int = 0,
              lean: bool = False) -> tuple[Tensor, State]:
    """The episode's outputs ``[T, B, n_out, ...]`` and final state, from ``state``."""
    check_type("train.run_ticks", episode, Episode, "an Episode (task.sample(batch_size)) as its episode")
    if episode.teacher is None and episode.probe is None:
        run = simulate(rule, graph, episode.inputs, state=state, checkpoint_every=checkpoint_every, lean=lean)
        return run.outputs, run.state
    check_learns_from_labels(rule)
    rule.check_state(graph, state)
    dtype = state["node"].dtype
    inputs = episode.inputs.to(dtype).unsqueeze(-1)
    outputs = []
    for t in range(inputs.shape[0]):
        predicted = rule.forward_pass(graph, state, graph.scatter_inputs(inputs[t]))
        outputs.append(rule.readout(graph, predicted))
        if episode.probe is None or not bool(episode.probe[t]):
            teacher = None if episode.teacher is None else episode.teacher[t]
            state = rule.backward_pass(graph, predicted, teacher)
    return torch.stack(outputs), state


def check_learns_from_labels(rule: Rule, task: str = "this task") -> None:
    """ConfigError unless ``rule`` can run teacher and probe ticks (``forward_pass``, ``readout``, ``backward_pass``)."""
    for name in ("forward_pass", "backward_pass", "readout"):
        if not callable(getattr(rule, name, None)):
            raise ConfigError(f"{task} teaches with labels, which needs a predict-then-learn rule (a SweepRule: "
                              f"genome, lstm_synapse); {type(rule).__name__} has no {name}()")


@torch.no_grad()
def locate_divergence(rule: Rule, graph: Graph, episode: Episode, state: State, task: Task | None = None) -> str:
    """Replay ``episode`` tick by tick from ``state``: "state['edge'] became NaN at tick 17"."""
    task = task if task is not None else _SQUARED_ERROR
    for name, p in rule.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f"parameter {name!r} of {type(rule).__name__} holds {_kind(p)} (before tick 0)"
    for t in range(episode.inputs.shape[0]):
        part = episode.ticks(slice(t, t + 1))
        out, state = run_ticks(rule, graph, part, state)
        for key, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                return f"state[{key!r}] became {_kind(v)} at tick {t}"
        if not bool(torch.isfinite(out).all()):
            return f"the output became {_kind(out)} at tick {t}"
        err = task.error(task.check_outputs(out, part), part).sum()
        if not bool(torch.isfinite(err)):
            return f"the loss became {_kind(err)} at tick {t} (the error overflowed)"
    # not reproducible tick by tick (e.g. a nondeterministic kernel): say what we know
    return f"the loss or a state became NaN or inf within the {episode.inputs.shape[0]} ticks of the episode"


def _kind(x: Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "inf"
