"""Rules by name: the built-in kinds and any rule a user registers or names as ``"module:Class"``.

    sg.rules.register("oja", OjaRule)                 # then [rule] kind = "oja" in a config
    rule = sg.rules.build("plastic", graph, seed=0, eta=0.03)

``build`` fills the constructor arguments a rule needs from the graph when they are not given:
``graph``, ``num_neuron_types``, ``num_synapse_types``, and ``seed``; every other setting is checked
against the constructor's signature ("did you mean" for typos). The global torch seed is set to
``seed`` first, so one seed gives one initial rule.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from .._imports import is_import_path, load_object
from ..errors import ConfigError, check_bool, check_name, check_seed, unknown
from ..graph import Graph
from .base import Rule
from .delta import DeltaRule
from .genome import GenomeRule, backprop_genome
from .hebbian import HebbianRule
from .lstm_synapse import LSTMSynapseRule
from .mlp import MLPRule
from .plastic import PlasticRule
from .static import StaticRule

_REGISTRY: dict[str, tuple[Callable[..., Rule], dict]] = {}
FROM_GRAPH = {"num_neuron_types": lambda g: g.num_neuron_types, "num_synapse_types": lambda g: g.num_synapse_types}


def register(name: str, factory: Callable[..., Rule], *, replace: bool = False, **preset) -> None:
    """Name a rule class (or a function returning a Rule) for configs; ``preset`` fixes some arguments."""
    check_name("a rule name", name, error=ConfigError)
    if ":" in name:
        raise ConfigError(f"a rule name must not hold ':' (that names 'module:Class'), got {name!r}")
    if not callable(factory):
        raise ConfigError(f"register({name!r}, ...) needs a Rule class or a function returning a Rule, got {factory!r}")
    names, any_keyword = _parameters(factory)
    for key in preset:  # a typo in a preset would only surface when the kind is first built
        if key not in names and not any_keyword:
            raise unknown(f"preset setting of rule kind {name!r}", key, names)
    if check_bool("register replace", replace) is False and name in _REGISTRY:
        raise ConfigError(f"rule kind {name!r} is already registered ({_REGISTRY[name][0].__name__}); pass replace=True "
                          "to rebind it")
    _REGISTRY[name] = (factory, dict(preset))


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def check_settings(kind: str, settings: dict, paths=(), where: str = "") -> tuple[Callable[..., Rule], dict, list[str]]:
    """``(factory, preset, keyword names)`` of ``kind``, after refusing settings it does not take or that it fixes
    ("did you mean" for typos); ``where`` names the config table in the message."""
    factory, preset = resolve(kind, paths)
    names, any_keyword = _parameters(factory)
    for key in settings:
        if key in preset:
            raise ConfigError(f"{where}rule kind {kind!r} fixes {key}={preset[key]!r}; remove {key} from the settings")
        if key not in names and not any_keyword:
            raise unknown(f"setting of rule kind {kind!r}{' in ' + where.rstrip(': ') if where else ''}", key, names)
    return factory, preset, names


def resolve(kind: str, paths=()) -> tuple[Callable[..., Rule], dict]:
    if is_import_path(kind):
        return load_object(kind, "rule kind", paths), {}
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise unknown("rule kind", kind, list(_REGISTRY) + ["package.module:ClassName"])
    return _REGISTRY[kind]


def build(kind: str, graph: Graph, *, seed: int = 0, paths=(), **settings) -> Rule:
    """A rule of ``kind`` for ``graph``; ConfigError naming any setting it does not take."""
    factory, preset, names = check_settings(kind, settings, paths)
    seed = check_seed("rules.build seed", seed)
    kwargs = {**preset, **settings}
    if "graph" in names and "graph" not in kwargs:
        kwargs["graph"] = graph
    for key, value in FROM_GRAPH.items():
        if key in names and key not in kwargs:
            kwargs[key] = value(graph)
    if "seed" in names and "seed" not in kwargs:
        kwargs["seed"] = seed
    torch.manual_seed(seed)  # rules that draw from the global generator start the same way
    try:
        rule = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"rule kind {kind!r}: {exc}") from None
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule kind {kind!r} made a {type(rule).__name__}, not a simgraph Rule (subclass sg.rules.Rule)")
    rule.check_graph(graph)
    return rule


def _parameters(factory) -> tuple[list[str], bool]:
    target = getattr(factory, "rule_settings_of", factory)  # a wrapper names the class whose settings it passes on
    names, any_keyword = [], False
    for fn in (factory, target) if target is not factory else (factory,):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return names, True
        for p in sig.parameters.values():
            if p.kind == p.VAR_KEYWORD:
                any_keyword = any_keyword or fn is target
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "kw", "kwargs"):
                if p.name not in names:
                    names.append(p.name)
    return names, any_keyword


def _genome(start: str = "random", lr: float = 0.1, loss: str = "mse", **settings) -> GenomeRule:
    """``start="random"``: a random genome; ``"backprop"``: the genome that is SGD with step ``lr`` (``loss``)."""
    if start == "backprop":
        return backprop_genome(lr, loss=loss, **settings)
    if start != "random":
        raise unknown("genome start", start, ("random", "backprop"))
    return GenomeRule(**settings)


_genome.rule_settings_of = GenomeRule

for _name, _factory, _preset in (
    ("mlp", MLPRule, {}),
    ("frozen", MLPRule, {"plastic": False}),
    ("hebbian", HebbianRule, {}),
    ("delta", DeltaRule, {}),
    ("static", StaticRule, {}),
    ("plastic", PlasticRule, {}),
    ("genome", _genome, {}),
    ("lstm_synapse", LSTMSynapseRule, {}),
):
    register(_name, _factory, **_preset)
