"""Running a rule on a graph for T ticks, a batch of B episodes at once."""

from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple, Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor

from .errors import (ConfigError, NonFiniteStateError, ShapeError, SimgraphWarning, check_bool, check_bytes, check_finite, check_int,
                     check_name, check_tensor, check_type, dtype_bytes, is_int, unknown)
from .graph import Graph
from .rules.base import Rule, State


@dataclass
class Monitor:
    """Record ``state[field]`` every ``every`` ticks into a preallocated buffer of its own.

    **Which ticks.** Ticks count from 0; row ``k`` of the record is the state *after* tick
    ``k * every``. A run of ``T`` ticks gives ``(T - 1) // every + 1`` rows: ``every=1`` records the
    state after every tick (its last row is ``run.state[field]``), ``every=3`` over 10 ticks the
    states after ticks 0, 3, 6, 9.

    **Which rows.** ``populations`` (a list of population names) restricts the record:

    - ``field="node"``: the neurons of those populations, population by population in the order
      listed, each in node-id order: ``[rows, B, n, D]``;
    - ``field="edge"``: the synapses of every projection whose *post* (target) population is
      listed, in edge-id order: ``[rows, B, n, D]`` (``[rows, n, D]`` for an unbatched ``[E, D]``
      edge state);
    - any other field is refused with ``populations`` (simgraph cannot tell which of its axes
      holds neurons or synapses): record it whole.

    ``monitor.ids(graph)`` gives the node or edge ids recorded (None: all of them).

    **Keys.** ``run.records`` is keyed by ``name`` when given, else by ``field``
    (``run.records["node"]``). Two monitors with the same key, e.g. ``Monitor("node", every=1)`` and
    ``Monitor("node", every=5)``, are refused: name them, ``Monitor("node", every=5, name="node/5")``.

    Recording is a device-side copy (no ``.item()``, no host sync in the loop); values are detached.
    """

    field: str
    every: int = 1
    populations: Sequence[str] | None = None
    name: str | None = None

    def __post_init__(self):
        check_name("Monitor field (a state field name such as 'node')", self.field, error=ShapeError)
        if self.populations is not None:
            if isinstance(self.populations, str) or not isinstance(self.populations, (list, tuple)):
                raise ShapeError(f"Monitor({self.field!r}): populations must be a list of population names (or None for "
                                 f"the whole network), got {self.populations!r}")
            if not self.populations or not all(isinstance(p, str) for p in self.populations):
                raise ShapeError(f"Monitor({self.field!r}): populations must be a non-empty list of population names (or "
                                 f"None for the whole network), got {self.populations!r}")
            if len(set(self.populations)) != len(self.populations):
                raise ShapeError(f"Monitor({self.field!r}): populations names a population twice: {list(self.populations)}")
        self.every = check_int(f"Monitor({self.field!r}): every", self.every, 1, error=ShapeError)
        if self.name is not None:
            check_name(f"Monitor({self.field!r}): name (the key in run.records, or None)", self.name, error=ShapeError)

    @property
    def key(self) -> str:
        """This monitor's key in ``run.records``: ``name``, else ``field``."""
        return self.name if self.name is not None else self.field

    def ids(self, graph: Graph) -> Tensor | None:
        """The node ids (``field="node"``) or edge ids (``field="edge"``) this monitor records on
        ``graph``, in record order; None when it records the whole field."""
        if self.populations is None:
            return None
        for p in self.populations:
            graph.population(p)  # unknown names: an error with a suggestion
        if self.field == "node":
            return graph.nodes(*self.populations)
        if self.field == "edge":
            parts = [torch.arange(p.start, p.stop) for p in sorted(graph.projections.values(), key=lambda p: p.start)
                     if p.post.name in self.populations]
            if not parts:
                raise ConfigError(f"Monitor('edge', populations={list(self.populations)}): no projection ends in these "
                                  "populations, so there are no synapses to record; list populations that receive synapses "
                                  "(an edge monitor records the synapses into its populations) or drop populations")
            return torch.cat(parts).to(graph.device)
        raise ConfigError(f"Monitor({self.field!r}, populations=...): populations restricts only the 'node' and 'edge' "
                          f"fields (simgraph cannot tell which axis of {self.field!r} holds neurons or synapses); drop "
                          "populations to record the whole field")


class Run(NamedTuple):
    outputs: Tensor  # [T, B, n_out, output_dim]
    state: State  # the state after the last tick
    records: dict[str, Tensor]  # Monitor.key (name, else field) -> [(T - 1) // every + 1, ...]: see Monitor


def check_inputs(graph: Graph, rule: Rule, inputs: Tensor, name: str = "inputs") -> Tensor:
    """Validate ``[T, B, n_in(, input_dim)]`` external inputs; returns them 4-D."""
    check_tensor(name, inputs)
    if inputs.dim() == 3 and rule.input_dim == 1:
        inputs = inputs.unsqueeze(-1)
    want = f"[T, B, {graph.num_inputs}, {rule.input_dim}]"
    if inputs.dim() != 4 or inputs.shape[2] != graph.num_inputs or inputs.shape[3] != rule.input_dim or 0 in inputs.shape[:2]:
        raise ShapeError(
            f"{name} must have shape {want} (T ticks, B episodes, one row per neuron of the input populations "
            f"{list(graph.inputs)}, T >= 1 and B >= 1), got {list(inputs.shape)}"
        )
    check_tensor(name, inputs, floating=True, device=graph.device)
    if not bool(torch.isfinite(inputs).all()):  # one host sync, before any work
        t = int(torch.nonzero(~torch.isfinite(inputs))[0, 0])
        raise ShapeError(f"{name} contain NaN or inf (first at tick {t})")
    return inputs


def warn_silent_outputs(rule: Rule, graph: Graph, state: State | None) -> None:
    """Warn once per rule class and graph when outputs cannot respond to the inputs: output
    neurons no input reaches along the synapses, or (from the rule's default state) outputs the
    rule itself keeps at zero (``rule.silent_outputs(graph)``, e.g. the Hebbian rule's non-input neurons)."""
    key = ("warned", type(rule))
    if key in graph._cache:
        return
    graph._cache[key] = True
    cut = graph.unreachable_outputs()
    if cut:
        warnings.warn(f"output populations {cut} have neurons that no input neuron reaches along any synapse: what "
                      "they report cannot depend on the inputs", SimgraphWarning, stacklevel=3)
    quiet = rule.silent_outputs(graph) if state is None and callable(getattr(rule, "silent_outputs", None)) else []
    if quiet:
        warnings.warn(f"{type(rule).__name__} keeps output populations {quiet} at exactly 0 from its default state: "
                      "their neurons get no external input and its writes start from zero weights; read out input "
                      "neurons, or pass a state with nonzero weights", SimgraphWarning, stacklevel=3)


def initial_state(rule: Rule, graph: Graph, state: State | None, batch_size: int) -> State:
    """``state`` checked against the rule, the graph and the batch size (default: ``rule.init_state``);
    a given state must hold no NaN or inf (:class:`simgraph.errors.NonFiniteStateError` otherwise)."""
    given = state is not None
    if state is None:
        state = rule.init_state(graph, batch_size)
    rule.check_state(graph, state)
    copies = rule.copies_per_episode  # MLPRule(mirror=True): each episode and its mirror copy
    if state["node"].shape[0] != batch_size * copies:
        raise ShapeError(f"state has batch {state['node'].shape[0]} but inputs have batch {batch_size}"
                         + (f" ({type(rule).__name__} keeps {copies} states per episode)" if copies != 1 else ""))
    if given:
        check_finite_state(state)
    return state


def check_finite_state(state: State, name: str = "state") -> None:
    """Raise :class:`simgraph.errors.NonFiniteStateError` naming the field and the first bad index if a floating
    tensor of ``state`` holds NaN or inf (one host sync for all fields)."""
    fields = [(k, v) for k, v in state.items() if isinstance(v, Tensor) and (v.is_floating_point() or v.is_complex())]
    # detached: isfinite is abs() != inf underneath, and abs() of a tensor needing a gradient would be recorded
    if not fields or bool(torch.stack([torch.isfinite(v.detach()).all() for _, v in fields]).all()):
        return
    for key, v in fields:
        check_finite(f"{name}[{key!r}]", v, error=NonFiniteStateError,
                     hint="pass a finite state: a state from a run that diverged cannot be continued (rerun it, or find "
                          "the tick where it diverged)")


def _check_agrees(inputs: Tensor, ticks, batch_size) -> None:
    """``ticks`` / ``batch_size`` given beside ``inputs`` must be the inputs' T / B (a conflict would be silently ignored)."""
    T, B = inputs.shape[0], inputs.shape[1]
    for name, value, have in (("ticks", ticks, T), ("batch_size", batch_size, B)):
        if value is not None and (not is_int(value) or value != have):
            raise ShapeError(f"simulate {name}={value!r} disagrees with inputs of shape {tuple(inputs.shape)} "
                             f"({'T' if name == 'ticks' else 'B'} = {have}); leave {name} out when passing inputs")


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
    compile: bool | dict = False,
    lean: bool = False,
) -> Run:
    """Run ``rule`` on ``graph``.

    ``inputs`` is ``[T, B, n_in]`` (or ``[T, B, n_in, input_dim]``) for the input populations; without
    inputs give ``ticks`` and ``batch_size``. ``state`` continues a previous run (default: a fresh
    ``rule.init_state``). Returns the output populations' readout per tick, the final state and the
    monitors' records. Gradients flow through everything unless you wrap the call in ``no_grad``.

    ``checkpoint_every=k`` (when gradients are on) runs the ticks in chunks of ``k`` whose
    intermediates are not kept: backward recomputes each chunk instead of keeping every tick's
    per-synapse intermediates, so memory holds only the state at chunk boundaries plus one chunk's
    intermediates (about ``T/k`` edge states instead of ``T`` times several). The last ``k`` ticks
    run plainly, since backward needs their intermediates first; with ``k >= T`` nothing is
    recomputed. Same values and gradients (random numbers drawn by the step are replayed).

    ``compile=True`` runs the tick through ``torch.compile`` (one graph per tick, no breaks; on a
    GPU ``compile={"mode": "reduce-overhead"}`` adds CUDA graphs); a dict is passed to
    ``torch.compile``. The first call pays the compilation (tens of seconds on CPU); later calls
    with the same rule reuse it.

    A rule may run a whole episode faster than tick by tick (``rule.fast_episode``: MLPRule's native
    episode); a run with inputs and without monitors, compile or recomputation takes it, with the same
    values and gradients.

    ``lean=True`` runs the whole episode through the rule's ``lean_episode`` (rules whose edge update
    can be undone: Hebbian, plastic), whose backward pass recomputes each tick's edge state by
    undoing the updates instead of storing them: memory grows with ticks x neurons, not ticks x
    synapses. Same values and gradients as the plain path; it takes ``inputs`` and ``state`` only.
    """
    if check_bool("simulate lean", lean):
        if isinstance(inputs, Tensor) and inputs.dim() >= 2 and (ticks is not None or batch_size is not None):
            _check_agrees(inputs, ticks, batch_size)  # the inputs fix both
        no_monitors = isinstance(monitors, (list, tuple)) and len(monitors) == 0  # (an array is not "no monitors")
        if not no_monitors or checkpoint_every is not None and not (is_int(checkpoint_every) and checkpoint_every == 0) \
                or compile is not False or inputs is None:
            raise ConfigError("simulate(lean=True) runs the whole episode in one function: it needs inputs and takes "
                              "no monitors, checkpoint_every or compile; drop those or use lean=False")
        return _lean(rule, graph, inputs, state)
    checkpoint_every = check_int("simulate checkpoint_every (0 = off)", checkpoint_every, 0, error=ShapeError)
    _check_rule(rule)
    rule.check_graph(graph)
    warn_silent_outputs(rule, graph, state)
    if isinstance(monitors, Monitor) or not isinstance(monitors, (list, tuple)) or not all(isinstance(m, Monitor) for m in monitors):
        raise ShapeError(f"monitors must be a list of sg.Monitor, got {monitors!r}")
    if inputs is not None:
        inputs = check_inputs(graph, rule, inputs)
        T, B = inputs.shape[0], inputs.shape[1]
        _check_agrees(inputs, ticks, batch_size)
    else:
        T = check_int("without inputs, ticks", ticks, 1, error=ShapeError)
        if batch_size is None and state is not None:
            rule.check_state(graph, state)
        B = batch_size if batch_size is not None else (state["node"].shape[0] // rule.copies_per_episode
                                                      if state is not None else None)
        B = check_int("without inputs, batch_size", B, 1, error=ShapeError)
    check_run_bytes(rule, graph, T, B, fresh_state=state is None, zero_input=inputs is None)
    state = initial_state(rule, graph, state, B)
    plans = _plan_monitors(graph, state, monitors)
    check_monitor_bytes(plans, state, T)
    buffers: dict[str, Tensor] = {}

    recompute = checkpoint_every and torch.is_grad_enabled() and T > checkpoint_every
    if inputs is not None and not plans and compile is False and not recompute \
            and type(rule).fast_episode is not Rule.fast_episode:  # (a rule without one: no whole-episode inputs built)
        # a rule's whole-episode path (MLPRule's native episode: one autograd node instead of ~50 a tick)
        fast = rule.fast_episode(graph, _per_neuron(graph, inputs, state), state)
        if fast is not None:
            return Run(fast[0], fast[1], {})
    step = _compiled_step(rule, graph, state, compile) if compile is not False else rule.step
    zero_input = None
    outputs: list[Tensor] = []
    if inputs is not None:
        inputs = inputs.to(state["node"].dtype)  # the rule's state decides the precision
    if inputs is None:
        zero_input = state["node"].new_zeros(B, graph.num_nodes, rule.input_dim)

    def ticks(state: State, start: int, stop: int, u: Tensor | None = None, record: bool = True) -> tuple[State, list[Tensor]]:
        """Ticks ``start..stop-1``; ``u`` (default ``inputs[start:stop]``) holds their inputs."""
        outs = []
        for t in range(start, stop):
            if inputs is None:
                x = zero_input
            else:
                x = graph.scatter_inputs(inputs[t] if u is None else u[t - start])
            state = step(graph, state, x)
            outs.append(rule.readout(graph, state))
            for mon, ids in plans if record else ():  # backward's recomputation would write the same values again
                if t % mon.every:
                    continue
                _record(buffers, mon, ids, state, t, T, rule)
        return state, outs

    if recompute:
        state, outputs = _checkpointed(rule, ticks, state, inputs, T, checkpoint_every)
    else:  # k >= T: the one chunk would be the last, whose recomputation saves nothing (see _checkpointed)
        state, outputs = ticks(state, 0, T)
    return Run(torch.stack(outputs), state, buffers)


def _check_rule(rule) -> None:
    check_type("simulate", rule, Rule, "a simgraph rule (a simgraph.rules.Rule instance)", error=ShapeError)


def _lean(rule: Rule, graph: Graph, inputs: Tensor, state: State | None) -> Run:
    """Check and prepare an episode as the plain path does, then ``rule.lean_episode(graph, U, state) -> (X, edge)``.

    ``U [T, B, N, input_dim]`` is the per-node input and ``X [T, B, N, node_dim]`` every tick's node
    state; the outputs are the output populations' rows of ``X`` (the rule's ``readout`` must be the
    default one: the first ``output_dim`` node channels).
    """
    _check_rule(rule)
    if not callable(getattr(rule, "lean_episode", None)):
        raise ConfigError(f"{type(rule).__name__} has no lean_episode (its edge update cannot be undone); use "
                          "lean=False, or checkpoint_every=k to save memory by recomputation")
    rule.check_graph(graph)
    warn_silent_outputs(rule, graph, state)
    inputs = check_inputs(graph, rule, inputs)
    T, B = inputs.shape[:2]
    # U (every tick's per-node input) and X (every tick's node state) are whole-episode tensors
    size = dtype_bytes() * T * B * graph.num_nodes * (rule.input_dim + rule.node_dim)
    check_bytes(f"simulate(lean=True) over {T} ticks x {B} episodes x {graph.num_nodes} neurons", size,
                "use fewer ticks or a smaller batch, or lean=False with checkpoint_every=k")
    state = initial_state(rule, graph, state, B)
    X, edge = rule.lean_episode(graph, _per_neuron(graph, inputs, state), state)
    outputs = graph.read_outputs(X.reshape(T * B, graph.num_nodes, -1))[..., : rule.output_dim]
    return Run(outputs.view(T, B, *outputs.shape[1:]), {**state, "node": X[-1], "edge": edge}, {})


def _per_neuron(graph: Graph, inputs: Tensor, state: State) -> Tensor:
    """A whole episode's per-neuron inputs ``[T, B, N, input_dim]`` from ``inputs [T, B, n_in, input_dim]``, in
    the state's precision (as the tick loop converts them)."""
    T, B = inputs.shape[:2]
    inputs = inputs.to(state["node"].dtype)
    return graph.scatter_inputs(inputs.reshape(T * B, *inputs.shape[2:])).view(T, B, graph.num_nodes, -1)


def check_run_bytes(rule: Rule, graph: Graph, T: int, B: int, fresh_state: bool = True, zero_input: bool = True) -> None:
    """Refuse (:class:`simgraph.errors.MemoryBudgetError`) a run whose fresh state, zero inputs and
    stacked outputs alone would not fit the byte budget, before any of them is allocated."""
    item = dtype_bytes()
    dims = [getattr(rule, k, 1) for k in ("node_dim", "edge_dim", "input_dim", "output_dim")]
    node_dim, edge_dim, input_dim, output_dim = (d if isinstance(d, int) and d > 0 else 1 for d in dims)
    N, E = graph.num_nodes, graph.num_edges
    if fresh_state or zero_input:
        per_tick = item * B * ((N * node_dim + E * edge_dim) if fresh_state else 0) + item * B * N * input_dim * zero_input
        check_bytes(f"simulate's state for batch_size={B} on {N} neurons and {E} synapses "
                    f"({node_dim} and {edge_dim} channels)", per_tick,
                    "use a smaller batch_size (or a smaller network)")
    check_bytes(f"simulate's outputs over {T} ticks x {B} episodes x {graph.num_outputs} output neurons",
                item * T * B * graph.num_outputs * output_dim, "use fewer ticks or a smaller batch")


def check_monitor_bytes(plans: Sequence[tuple[Monitor, Tensor | None]], state: State, T: int) -> None:
    """Refuse monitors whose buffers (``(T - 1) // every + 1`` rows each) would not fit the byte budget together."""
    total, parts = 0, []
    for mon, ids in plans:
        value = state.get(mon.field)
        if not isinstance(value, Tensor):
            continue  # _record names a missing field
        numel = value.numel()
        if ids is not None and value.dim() >= 2:
            axis = 1 if mon.field == "node" else value.dim() - 2
            numel = numel // max(value.shape[axis], 1) * len(ids)
        rows = (T - 1) // mon.every + 1
        size = rows * numel * value.element_size()
        total += size
        parts.append(f"{mon.key!r}: {rows} rows of {numel} values")
    if parts:
        check_bytes(f"the monitor buffers ({'; '.join(parts)})", total,
                    "record less often (every=), fewer populations, or fewer ticks")


def _plan_monitors(graph: Graph, state: State, monitors: Sequence[Monitor]) -> list[tuple[Monitor, Tensor | None]]:
    """Each monitor with the ids it records (see :class:`Monitor`); refuses unknown fields and shared keys."""
    plans, keys = [], {}
    for mon in monitors:
        if mon.field not in state:
            raise unknown("state field in Monitor", mon.field, state)
        if mon.key in keys:
            raise ConfigError(
                f"two monitors would record into run.records[{mon.key!r}]: {keys[mon.key]} and {mon}; give each a "
                f"distinct name=, e.g. Monitor({mon.field!r}, every={mon.every}, name='{mon.field}/{mon.every}')"
            )
        keys[mon.key] = mon
        plans.append((mon, mon.ids(graph)))
    return plans


def _record(buffers: dict[str, Tensor], mon: Monitor, ids: Tensor | None, state: State, t: int, T: int, rule: Rule) -> None:
    """Copy ``state[mon.field]`` (the rows ``ids``) into row ``t // mon.every`` of the monitor's buffer."""
    value = state.get(mon.field)
    if not isinstance(value, Tensor):
        raise ShapeError(f"{type(rule).__name__}.step dropped the state field {mon.field!r} that {mon} records")
    value = value.detach()
    if ids is not None:  # node fields are [B, N, D]; edge fields [B, E, D] or [E, D]
        value = value.index_select(1 if mon.field == "node" else value.dim() - 2, ids)
    buf = buffers.get(mon.key)
    if buf is None:
        rows = (T - 1) // mon.every + 1
        try:
            buf = buffers[mon.key] = value.new_empty((rows, *value.shape))
        except (RuntimeError, MemoryError):  # torch's OutOfMemoryError is a RuntimeError
            size = rows * value.numel() * value.element_size()
            raise ShapeError(f"{mon} needs a buffer of {size:,} bytes ({rows} rows of {list(value.shape)}), more than "
                             "could be allocated; record less often (every=), fewer populations, or fewer ticks") from None
    elif buf.shape[1:] != value.shape:
        raise ShapeError(f"state[{mon.field!r}] changed shape from {list(buf.shape[1:])} to {list(value.shape)} at tick {t}; "
                         f"{mon} needs one shape for the whole run")
    buf[t // mon.every].copy_(value)


def _checkpointed(rule: Rule, ticks, state: State, inputs: Tensor | None, T: int, k: int) -> tuple[State, list[Tensor]]:
    """Run ``T > k`` ticks so that backward keeps only chunk boundaries and recomputes each chunk.

    Chunks of ``k`` ticks are counted back from the end (the first chunk takes the remainder). The
    last chunk runs plainly: backward needs its intermediates before anything else, so recomputing
    them would be pure waste, and memory then holds one chunk's intermediates at a time either way.
    The others run under :class:`_Replay`, which records no graph in the forward pass and has no
    per-tensor hooks in the recomputation (both cost ``torch.utils.checkpoint`` measurable time);
    except tick 0, a chunk of its own under ``torch.utils.checkpoint``, which records the graph
    (without its intermediates) and so shows whether the step reads any tensor needing a gradient
    besides the state, the inputs and the rule's parameters. If it does, or under autocast, or on
    a device other than CPU and CUDA, all chunks stay under ``torch.utils.checkpoint``, which
    handles those cases.
    """
    keys = list(state)
    params = [p for p in rule.parameters() if p.requires_grad]
    device = state["node"].device
    replay = device.type in ("cpu", "cuda") and not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled(device.type)
    outputs: list[Tensor] = []
    last = T - k
    first = last % k or k
    bounds = [0, *([1] if first > 1 else []), *range(first, last + 1, k)]
    for i, (start, stop) in enumerate(pairwise(bounds)):

        def chunk(values, u, record, start=start, stop=stop):
            new, outs = ticks(dict(zip(keys, values)), start, stop, u, record)
            if list(new) != keys:
                raise ShapeError(f"{type(rule).__name__}.step changed the state fields {keys} -> {list(new)}")
            return (*new.values(), *outs)

        if replay and i > 0:
            u = inputs[start:stop] if inputs is not None else None
            result = _Replay.apply(chunk, rule, len(keys), u, *state.values(), *params)
        else:
            calls = []  # the first call records the monitors; backward's recomputation does not

            def recorded(*values, chunk=chunk, calls=calls):
                calls.append(None)
                return chunk(values, None, len(calls) == 1)

            mark = _sequence_mark() if replay else 0
            result = torch.utils.checkpoint.checkpoint(recorded, *state.values(), use_reentrant=False)
            if replay:
                known = [*state.values(), *params, *([inputs] if inputs is not None else [])]
                replay = _reads_only(result, known, mark)
        state = dict(zip(keys, result[: len(keys)]))
        outputs.extend(result[len(keys) :])
    state, outs = ticks(state, last, T)
    return state, outputs + outs


class _Replay(torch.autograd.Function):
    """A chunk of ticks run without recording a graph; backward runs it again, recording one.

    ``_Replay.apply(fn, rule, n, u, *state, *params)`` returns ``fn(state, u, True)`` (``n`` state
    tensors; ``u`` the chunk's inputs or None; ``params`` the rule's parameters that need gradients).
    Backward calls ``fn(state, u, False)`` on stand-ins for these tensors, under the random number
    state of the forward pass, and takes the gradients of the stand-ins: ``fn`` must read no other
    tensor that needs a gradient.
    """

    @staticmethod
    def forward(ctx, fn, rule, n, u, *tensors):
        ctx.fn, ctx.rule, ctx.n = fn, rule, n
        ctx.save_for_backward(u, *tensors)
        device = tensors[0].device
        ctx.rng = (device, torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
        ctx.set_materialize_grads(False)  # no zero tensors for outputs the loss does not use
        return fn(tensors[:n], u, True)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        params = saved[ctx.n + 1 :]
        # stand-ins: detached copies, so that autograd stops at them. Under create_graph=True
        # (higher-order gradients) views instead, so that the gradients stay differentiable with
        # respect to the originals, and the parameters get views too, swapped into the rule: with
        # the parameters themselves as targets, autograd would also walk through earlier chunks
        higher = torch.is_grad_enabled()
        stand_in = (lambda t: t.view_as(t)) if higher else (lambda t: t.detach().requires_grad_())
        inputs = [stand_in(t) if t is not None and t.requires_grad else t for t in saved[: ctx.n + 1]]
        device, cpu_rng, cuda_rng = ctx.rng
        with torch.random.fork_rng(devices=[device] if cuda_rng is not None else [], device_type="cuda"):
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)
            with torch.enable_grad(), _swapped(ctx.rule, params, higher) as params:
                outs = ctx.fn(inputs[1:], inputs[0], False)
        inputs += params
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        wrt = [t for t in inputs if t is not None and t.requires_grad]
        found = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True,
                                         create_graph=higher) if pairs and wrt else [None] * len(wrt))
        return (None, None, None, *(next(found) if t is not None and t.requires_grad else None for t in inputs))


@contextmanager
def _swapped(rule: Rule, params: Sequence[Tensor], swap: bool):
    """With ``swap``, the rule reads views of ``params`` (yielded) in place of them; else ``params``."""
    if not swap:
        yield list(params)
        return
    views = {id(p): p.view_as(p) for p in params}
    slots = [(m, name, p) for m in rule.modules() for name, p in m._parameters.items() if p is not None and id(p) in views]
    for m, name, p in slots:
        m._parameters[name] = views[id(p)]
    try:
        yield [views[id(p)] for p in params]
    finally:
        for m, name, p in slots:
            m._parameters[name] = p


def _sequence_mark() -> int:
    """A number below that of every autograd node recorded from now on (on this thread)."""
    with torch.enable_grad():
        return torch.empty(0, requires_grad=True).view(0).grad_fn._sequence_nr()


def _reads_only(outputs: Sequence[Tensor], known: Sequence[Tensor], since: int) -> bool:
    """Whether the graph behind ``outputs``, recorded after ``since``, reaches no tensor needing a
    gradient except ``known`` ones: every path ends in a ``known`` leaf or at a ``known`` tensor's
    node, not at another leaf and not in a graph recorded earlier (a tensor computed elsewhere)."""
    try:
        stops = {t.grad_fn for t in known if t.grad_fn is not None}
        leaves = {id(t) for t in known}
        todo, seen = [o.grad_fn for o in outputs if o.grad_fn is not None], set()
        while todo:
            node = todo.pop()
            if node in seen or node in stops:
                continue
            seen.add(node)
            if hasattr(node, "variable"):  # AccumulateGrad: a leaf
                if id(node.variable) not in leaves:
                    return False
            elif node._sequence_nr() <= since:
                return False
            else:
                todo.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
        return True
    except (AttributeError, RuntimeError):  # an autograd internal changed: stay on the safe path
        return False


def _compiled_step(rule: Rule, graph: Graph, state: State, options: bool | dict):
    """``rule.step`` under ``torch.compile``, built once per rule and options.

    The first time a rule meets a graph, one eager tick (its result dropped) makes the lookups a
    step builds lazily, such as a schedule's restricted views; ``graph.prepare()`` builds the rest,
    so the traced tick holds no data-dependent op and compiles as one graph.
    """
    if options is True:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"simulate compile must be True, False or a dict of torch.compile options, got {options!r}")
    key = tuple(sorted((k, repr(v)) for k, v in options.items()))
    cache = rule.__dict__.setdefault("_compiled_steps", {})
    if key not in cache:
        try:
            cache[key] = torch.compile(rule.step, **{"dynamic": False, **options})
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:  # torch checks the options here
            raise ConfigError(f"simulate compile options {options!r} are not valid torch.compile options: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    prepared = rule.__dict__.setdefault("_prepared_graphs", weakref.WeakSet())
    if graph not in prepared:
        with torch.no_grad():
            rule.step(graph, state, state["node"].new_zeros(state["node"].shape[0] // rule.copies_per_episode,
                                                           graph.num_nodes, rule.input_dim))
        graph.prepare()
        prepared.add(graph)
    return cache[key]
