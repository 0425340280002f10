"""Schedules as data: which projections and populations update, in which order, in which direction.

A :class:`Schedule` is a list of :class:`Phase` s. A phase names the projections whose synapses
carry messages in it, the direction those messages travel (``forward``: pre -> post, ``backward``:
post -> pre, ``both``), the populations whose neurons update, and whether the synapses learn.
A rule walks the phases in order; the engine stays one engine, the order is just data:

- ``Schedule.synchronous(graph)``: one phase, every projection both ways, every neuron and synapse
  updates every tick (signals advance one synapse per tick).
- ``Schedule.layer_sweep(graph)``: one forward phase per projection in build order (updating its
  post population), then one backward phase per projection in reverse order (updating its pre
  population and learning its synapses) - a feed-forward pass and a backward pass per tick.

The primitives act on a subset of projections through :func:`restrict`, a view of the graph with
only those projections (edge tensors keep their full ``[B, E, D]`` size; the view reads and writes
the named projections' edge slices, and :func:`set_edges` writes a view's edge results back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .errors import ConfigError, GraphError, check_bool, check_choice, check_name, check_type
from .graph import Graph, degrees

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class Phase:
    projections: tuple[str, ...]
    direction: str  # "forward" | "backward" | "both"
    populations: tuple[str, ...]  # the neurons that update in this phase
    learn: bool = False  # whether the phase's synapses update

    def __post_init__(self):
        # names as tuples (a list is taken as one; a schedule is hashed, to cache its phases on a graph)
        for what in ("projections", "populations"):
            names = getattr(self, what)
            if isinstance(names, str) or not isinstance(names, (list, tuple)):
                raise ConfigError(f"Phase {what} must be a tuple of {what[:-1]} names, got {names!r}")
            object.__setattr__(self, what, tuple(check_name(f"Phase {what}[{i}]", n, error=ConfigError)
                                                 for i, n in enumerate(names)))
        check_choice("phase direction", self.direction, DIRECTIONS)
        object.__setattr__(self, "learn", check_bool("Phase learn", self.learn))


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]

    def __post_init__(self):
        if isinstance(self.phases, Phase) or not isinstance(self.phases, (list, tuple)):
            raise ConfigError(f"Schedule phases must be a tuple of Phase, got {self.phases!r}")
        if not self.phases:
            raise ConfigError("a schedule needs at least one phase")
        for i, ph in enumerate(self.phases):
            check_type(f"Schedule phases[{i}]", ph, Phase, "a Phase")
        object.__setattr__(self, "phases", tuple(self.phases))

    @staticmethod
    def synchronous(graph: Graph) -> "Schedule":
        return Schedule((Phase(tuple(graph.projections), "both", tuple(graph.populations), learn=True),))

    @staticmethod
    def layer_sweep(graph: Graph) -> "Schedule":
        projs = list(graph.projections.values())
        if not projs:
            raise GraphError("layer_sweep needs a graph with at least one projection")
        forward = [Phase((p.name,), "forward", (p.post.name,)) for p in projs]
        backward = [Phase((p.name,), "backward", (p.pre.name,), learn=True) for p in reversed(projs)]
        return Schedule(tuple(forward + backward))

    def check(self, graph: Graph) -> None:
        """Raise UnknownNameError if a phase names a projection or population ``graph`` lacks."""
        for ph in self.phases:
            for name in ph.projections:
                graph.projection(name)
            for name in ph.populations:
                graph.population(name)

    def split(self) -> tuple[tuple[Phase, ...], tuple[Phase, ...]]:
        """(phases before the first backward-going one, the rest): predict, then learn."""
        for i, ph in enumerate(self.phases):
            if ph.direction != "forward":
                return self.phases[:i], self.phases[i:]
        return self.phases, ()


SCHEDULES = {"synchronous": Schedule.synchronous, "layer_sweep": Schedule.layer_sweep}


def check_schedule(spec: "str | Schedule") -> None:
    """Fail early (at rule construction) on a schedule that is neither a known name nor a Schedule."""
    if isinstance(spec, str):
        check_choice("schedule", spec, SCHEDULES)
    if not isinstance(spec, (str, Schedule)):
        raise ConfigError(f"schedule must be a name {sorted(SCHEDULES)} or a Schedule, got {type(spec).__name__}")


def make_schedule(spec: "str | Schedule", graph: Graph) -> Schedule:
    """A Schedule from a name in SCHEDULES or an existing Schedule, checked against ``graph``."""
    if isinstance(spec, str):
        spec = SCHEDULES[check_choice("schedule", spec, SCHEDULES)](graph)
    if not isinstance(spec, Schedule):
        raise ConfigError(f"schedule must be a name {sorted(SCHEDULES)} or a Schedule, got {type(spec).__name__}")
    spec.check(graph)
    return spec


def split_phases(spec: "str | Schedule", graph: Graph) -> tuple[tuple[Phase, ...], tuple[Phase, ...]]:
    """``make_schedule(spec, graph).split()``, cached on the graph by the (hashable) spec: rules
    call it every tick."""
    key = ("phases", spec)
    if key not in graph._cache:
        graph._cache[key] = make_schedule(spec, graph).split()
    return graph._cache[key]


# ---------------------------------------------------------------------- views on projections
def restrict(graph: Graph, names: Sequence[str]) -> Graph:
    """A view of ``graph`` whose primitives see only the named projections.

    Node and edge tensors keep their full sizes. ``to_post``/``propagate`` give zeros on nodes the
    view's projections do not reach; ``mean`` divides by the degree within the view; ``edge_map``
    returns the view's edges only (in build order), to be written back with :func:`set_edges`.
    Views are cached on the graph object, so building one per tick costs a dict lookup.
    """
    key = ("view", tuple(names))
    if key in graph._cache:
        return graph._cache[key]
    for n in key[1]:
        graph.projection(n)
    if len(set(key[1])) != len(key[1]):
        raise GraphError(f"restrict: projection names repeat in {list(key[1])}")
    projs = {n: p for n, p in graph.projections.items() if n in key[1]}  # keep build order
    edge_index = torch.cat([graph.edge_index[:, p.slice] for p in projs.values()], 1)
    ind, outd = degrees(edge_index, graph.num_nodes)
    view = dataclasses.replace(
        graph,
        projections=projs,
        _sparse_index={n: v for n, v in graph._sparse_index.items() if n in projs},
        _in_degree=ind,
        _out_degree=outd,
        _cache={},  # the view's own lookups: its degrees and segments differ from the graph's
    )
    graph._cache[key] = view
    return view


def set_edges(graph: Graph, full: Tensor, view: Graph, part: Tensor) -> Tensor:
    """``full [B, E, D]`` with the edges of ``view``'s projections replaced by ``part [B, E_view, D]``."""
    B = max(full.shape[0], part.shape[0])
    pieces, i = [], 0
    for name, p in graph.projections.items():
        if name in view.projections:
            pieces.append(part[:, i : i + p.num_edges])
            i += p.num_edges
        else:
            pieces.append(full[:, p.slice])
    if i != part.shape[1]:
        raise GraphError(f"set_edges: view has {i} edges but part has {part.shape[1]}")
    return torch.cat([t.expand(B, *t.shape[1:]) for t in pieces], 1)


def node_mask(graph: Graph, populations: Sequence[str]) -> Tensor:
    """``[1, N, 1]`` bool mask of the named populations' neurons (cached on the graph)."""
    key = ("mask", tuple(populations))
    cache = graph._cache
    if key not in cache:
        m = torch.zeros(graph.num_nodes, dtype=torch.bool, device=graph.device)
        for name in populations:
            m[graph.population(name).slice] = True
        cache[key] = m.view(1, -1, 1)
    return cache[key]
