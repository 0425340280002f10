"""Running a rule on a graph for T ticks, a batch of B episodes at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor

from .errors import ShapeError, unknown
from .graph import Graph
from .rules.base import Rule, State


@dataclass
class Monitor:
    """Record ``state[field]`` every ``every`` ticks into a preallocated buffer.

    ``populations`` restricts a node field to those populations' rows. Recording is a device-side
    copy (no ``.item()``, no host sync in the loop); values are detached.
    """

    field: str
    every: int = 1
    populations: Sequence[str] | None = None

    def __post_init__(self):
        if not isinstance(self.field, str):
            raise ShapeError(f"Monitor field must be a state field name (a string), got {self.field!r}")
        if self.populations is not None and (isinstance(self.populations, str) or not isinstance(self.populations, (list, tuple))):
            raise ShapeError(f"Monitor({self.field!r}): populations must be a list of population names, got {self.populations!r}")
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ShapeError(f"Monitor({self.field!r}): every must be a positive int, got {self.every!r}")


class Run(NamedTuple):
    outputs: Tensor  # [T, B, n_out, output_dim]
    state: State  # the state after the last tick
    records: dict[str, Tensor]  # field -> [T // every, ...]


def check_inputs(graph: Graph, rule: Rule, inputs: Tensor, name: str = "inputs") -> Tensor:
    """Validate ``[T, B, n_in(, input_dim)]`` external inputs; returns them 4-D."""
    if not isinstance(inputs, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() == 3 and rule.input_dim == 1:
        inputs = inputs.unsqueeze(-1)
    want = f"[T, B, {graph.num_inputs}, {rule.input_dim}]"
    if inputs.dim() != 4 or inputs.shape[2] != graph.num_inputs or inputs.shape[3] != rule.input_dim or 0 in inputs.shape[:2]:
        raise ShapeError(
            f"{name} must have shape {want} (T ticks, B episodes, one row per neuron of the input populations "
            f"{list(graph.inputs)}, T >= 1 and B >= 1), got {list(inputs.shape)}"
        )
    if not inputs.is_floating_point():
        raise ShapeError(f"{name} must be floating point, got dtype {inputs.dtype}")
    if inputs.device.type != graph.device.type:
        raise ShapeError(f"{name} is on {inputs.device} but the graph is on {graph.device}")
    if not bool(torch.isfinite(inputs).all()):  # one host sync, before any work
        t = int(torch.nonzero(~torch.isfinite(inputs))[0, 0])
        raise ShapeError(f"{name} contain NaN or inf (first at tick {t})")
    return inputs


def simulate(
    rule: Rule,
    graph: Graph,
    inputs: Tensor | None = None,
    *,
    state: State | None = None,
    ticks: int | None = None,
    batch_size: int | None = None,
    monitors: Sequence[Monitor] = (),
    checkpoint_every: int = 0,
) -> Run:
    """Run ``rule`` on ``graph``.

    ``inputs`` is ``[T, B, n_in]`` (or ``[T, B, n_in, input_dim]``) for the input populations; without
    inputs give ``ticks`` and ``batch_size``. ``state`` continues a previous run (default: a fresh
    ``rule.init_state``). Returns the output populations' readout per tick, the final state and the
    monitors' records. Gradients flow through everything unless you wrap the call in ``no_grad``.

    ``checkpoint_every=k`` (when gradients are on) runs the ticks in chunks of ``k`` under
    ``torch.utils.checkpoint``: backward recomputes each chunk instead of keeping every tick's
    per-synapse intermediates, so memory holds only the state at chunk boundaries plus one chunk's
    intermediates (about ``T/k`` edge states instead of ``T`` times several). Same values and gradients.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ShapeError(f"checkpoint_every must be a non-negative int (0 = off), got {checkpoint_every!r}")
    if not isinstance(rule, Rule):
        raise ShapeError(f"simulate needs a simgraph rule (a simgraph.rules.Rule), got {type(rule).__name__}")
    rule.check_graph(graph)
    if isinstance(monitors, Monitor) or not isinstance(monitors, (list, tuple)) or not all(isinstance(m, Monitor) for m in monitors):
        raise ShapeError(f"monitors must be a list of sg.Monitor, got {monitors!r}")
    if inputs is not None:
        inputs = check_inputs(graph, rule, inputs)
        T, B = inputs.shape[0], inputs.shape[1]
    else:
        if not isinstance(ticks, int) or isinstance(ticks, bool) or ticks < 1:
            raise ShapeError(f"without inputs, ticks must be a positive int, got {ticks!r}")
        if batch_size is None and state is not None:
            rule.check_state(graph, state)
        B = batch_size if batch_size is not None else (state["node"].shape[0] if state is not None else None)
        if not isinstance(B, int) or isinstance(B, bool) or B < 1:
            raise ShapeError(f"without inputs, batch_size must be a positive int, got {B!r}")
        T = ticks
    if state is None:
        state = rule.init_state(graph, B)
    rule.check_state(graph, state)
    if state["node"].shape[0] != B:
        raise ShapeError(f"state has batch {state['node'].shape[0]} but inputs have batch {B}")
    rows = {}
    for mon in monitors:
        if mon.field not in state:
            raise unknown("state field in Monitor", mon.field, state)
        if mon.populations is not None:
            rows[mon.field] = graph.nodes(*mon.populations)
    buffers: dict[str, Tensor] = {}

    zero_input = None
    outputs: list[Tensor] = []
    if inputs is not None:
        inputs = inputs.to(state["node"].dtype)  # the rule's state decides the precision
    if inputs is None:
        zero_input = state["node"].new_zeros(B, graph.num_nodes, rule.input_dim)

    def ticks(state: State, start: int, stop: int) -> tuple[State, list[Tensor]]:
        outs = []
        for t in range(start, stop):
            u = graph.scatter_inputs(inputs[t]) if inputs is not None else zero_input
            state = rule.step(graph, state, u)
            outs.append(rule.readout(graph, state))
            for mon in monitors:  # a recomputed chunk writes the same values again: harmless
                if t % mon.every:
                    continue
                value = state[mon.field].detach()
                if mon.field in rows:
                    value = value.index_select(1, rows[mon.field])
                if mon.field not in buffers:
                    buffers[mon.field] = value.new_empty(((T - 1) // mon.every + 1, *value.shape))
                buffers[mon.field][t // mon.every].copy_(value)
        return state, outs

    if checkpoint_every and torch.is_grad_enabled():
        keys = list(state)
        for start in range(0, T, checkpoint_every):
            stop = min(T, start + checkpoint_every)

            def chunk(*values, start=start, stop=stop):
                new, outs = ticks(dict(zip(keys, values)), start, stop)
                if list(new) != keys:
                    raise ShapeError(f"{type(rule).__name__}.step changed the state fields {keys} -> {list(new)}")
                return (*new.values(), torch.stack(outs))

            *values, outs = torch.utils.checkpoint.checkpoint(chunk, *state.values(), use_reentrant=False)
            state = dict(zip(keys, values))
            outputs.extend(outs.unbind(0))
    else:
        state, outputs = ticks(state, 0, T)
    return Run(torch.stack(outputs), state, buffers)
