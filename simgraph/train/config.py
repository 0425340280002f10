"""Experiment configuration: plain dataclasses, loaded from TOML, typos caught with "did you mean".

A config has four sections, each a dataclass below::

    seed = 0
    [network]  topology = "fully_recurrent"       # a function of topologies/, sized from the task
    [rule]     kind = "mlp"                       # mlp | frozen | hebbian | static
    [task]     num_patterns = 4 ...               # simgraph.tasks.RecallTask fields
    [train]    steps = 400 ...                    # optimiser, curriculum, evaluation, checkpoints
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .. import rules
from ..errors import ConfigError, unknown
from ..graph import Graph
from ..tasks.recall import RecallTask

RULE_KINDS = ("mlp", "frozen", "hebbian", "static")
SINGLE_POPULATION = ("fully_recurrent", "sparse_random", "small_world", "hopfield", "modular")


@dataclass
class NetworkConfig:
    topology: str = "fully_recurrent"
    params: dict = field(default_factory=dict)  # extra keyword arguments of the topology function


@dataclass
class RuleConfig:
    kind: str = "mlp"
    node_dim: int = 8
    edge_dim: int = 4
    hidden: int = 16
    type_dim: int = 4
    use_types: bool = True
    init_edge_std: float = 1.0
    update_scale: float = 0.1
    beta: float = 0.1  # hebbian / static recurrent gain


@dataclass
class TrainConfig:
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    lr_schedule: str = "cosine"  # cosine | constant
    warmup: int = 10
    clip: float = 1.0
    window: int = 0  # truncated-BPTT window in ticks; 0 = the whole episode
    eval_every: int = 25
    eval_batch: int = 128
    curriculum: bool = True  # start with few patterns, add one when accuracy passes the threshold
    curriculum_start: int = 2
    curriculum_threshold: float = 0.9
    checkpoint_every: int = 50
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default


@dataclass
class Config:
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    # RecallTask keyword arguments; the default problem: 6 patterns of 32 bits, half cues
    task: dict = field(default_factory=lambda: {"num_patterns": 6, "bits": 32})
    train: TrainConfig = field(default_factory=TrainConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "Config":
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table of settings, got {type(data).__name__}")
        _check_keys(data, [f.name for f in fields(cls)], where)
        sections = {"network": NetworkConfig, "rule": RuleConfig, "train": TrainConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}")
                kwargs[key] = _make(sections[key], value, f"{where} [{key}]")
            elif key == "task":
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: [task] must be a table, got {value!r}")
                _check_keys(value, [f.name for f in fields(RecallTask)], f"{where} [task]")
                kwargs[key] = dict(value)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, where=str(path))

    def to_dict(self) -> dict:
        return asdict(self)

    def override(self, **changes) -> "Config":
        """A copy with ``section.key=value`` style changes, e.g. ``override(**{"train.steps": 10})``."""
        data = self.to_dict()
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition(".")
            if section and section not in ("network", "rule", "task", "train"):
                raise unknown("config section in setting " + repr(dotted), section, ("network", "rule", "task", "train"))
            if not key:
                raise ConfigError(f"setting {dotted!r} names no key; write section.key=value, e.g. train.steps=50")
            target = data[section] if section else data
            target[key] = value
        return Config.from_dict(data)

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "config") -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"{where}: seed must be an int in [0, 2**32), got {self.seed!r}")  # torch generators take 64 bits
        if not isinstance(self.network.params, dict) or not all(isinstance(k, str) for k in self.network.params):
            raise ConfigError(f"{where} [network]: params must be a table of keyword arguments, got {self.network.params!r}")
        sized = {"recall_network": ("n_in", "n_out"), "modular": ("size",)}.get(self.network.topology, ("n",))
        for key in ("seed", "device", *sized):  # make_graph sets these from the task and seed
            if key in self.network.params:
                raise ConfigError(f"{where} [network]: params.{key} is set from the task/seed, not by hand; remove it")
        task = self.make_task()
        if self.rule.kind not in RULE_KINDS:
            raise unknown(f"rule kind in {where} [rule]", self.rule.kind, RULE_KINDS)
        import topologies

        if self.network.topology not in topologies.TOPOLOGIES:
            raise unknown(f"topology in {where} [network]", self.network.topology, topologies.TOPOLOGIES)
        if self.network.topology in SINGLE_POPULATION and task.cue != "partial":
            raise ConfigError(
                f"{where}: topology {self.network.topology!r} uses the same neurons for input and output, which "
                f"fits only cue='partial'; use topology='recall_network' for cue={task.cue!r}"
            )
        for name in ("node_dim", "edge_dim", "hidden", "type_dim"):
            v = getattr(self.rule, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{where} [rule]: {name} must be a positive int, got {v!r}")
        if not self.rule.init_edge_std >= 0:
            raise ConfigError(f"{where} [rule]: init_edge_std must be >= 0, got {self.rule.init_edge_std!r}")
        t = self.train
        for name in ("steps", "batch_size", "eval_every", "eval_batch", "checkpoint_every", "curriculum_start"):
            v = getattr(t, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{where} [train]: {name} must be a positive int, got {v!r}")
        for name in ("window", "warmup", "threads"):
            v = getattr(t, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{where} [train]: {name} must be an int >= 0, got {v!r}")
        if not (isinstance(t.lr, (int, float)) and 0 < t.lr < math.inf):
            raise ConfigError(f"{where} [train]: lr must be positive and finite, got {t.lr!r}")
        if not (isinstance(t.clip, (int, float)) and 0 < t.clip < math.inf):
            raise ConfigError(f"{where} [train]: clip must be positive and finite, got {t.clip!r}")
        if t.lr_schedule not in ("cosine", "constant"):
            raise unknown(f"lr_schedule in {where} [train]", t.lr_schedule, ("cosine", "constant"))
        if not 0 < t.curriculum_threshold <= 1:
            raise ConfigError(f"{where} [train]: curriculum_threshold must be in (0, 1], got {t.curriculum_threshold!r}")
        if t.curriculum and task.cue == "position":
            raise ConfigError(f"{where}: curriculum changes the number of patterns, which changes the input size of cue='position'; set curriculum=false")

    # ------------------------------------------------------------------ factories
    def make_task(self, num_patterns: int | None = None) -> RecallTask:
        kwargs = dict(self.task)
        if num_patterns is not None:
            kwargs["num_patterns"] = num_patterns
        try:
            return RecallTask(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"[task]: {exc}") from None

    def start_patterns(self) -> int:
        full = self.make_task().num_patterns
        return min(self.train.curriculum_start, full) if self.train.curriculum else full

    def make_graph(self, device=None) -> Graph:
        """The network, sized so that its input and output populations fit the task."""
        import topologies

        task = self.make_task()
        make = topologies.TOPOLOGIES[self.network.topology]
        params = dict(self.network.params)
        if self.network.topology == "recall_network":
            params.update(n_in=task.num_inputs, n_out=task.num_outputs)
        elif self.network.topology == "modular":
            modules = params.get("modules", 4)
            if task.bits % modules:
                raise ConfigError(f"[network] modular: bits={task.bits} is not divisible by modules={modules}")
            params["size"] = task.bits // modules
        elif self.network.topology == "layered":
            raise ConfigError("[network] layered feed-forward nets have no recurrence to hold a stream; pick another topology")
        else:
            params["n"] = task.bits
        try:
            return make(seed=self.seed, device=device, **params)
        except TypeError as exc:
            raise ConfigError(f"[network] params do not fit {self.network.topology}(): {exc}") from None

    def make_rule(self, graph: Graph) -> rules.Rule:
        r = self.rule
        torch.manual_seed(self.seed)  # same seed, same initial rule
        if r.kind in ("mlp", "frozen"):
            return rules.MLPRule(
                graph.num_neuron_types, graph.num_synapse_types, node_dim=r.node_dim, edge_dim=r.edge_dim,
                hidden=r.hidden, type_dim=r.type_dim, use_types=r.use_types, plastic=r.kind == "mlp",
                init_edge_std=r.init_edge_std, update_scale=r.update_scale, seed=self.seed,
            )
        if r.kind == "hebbian":
            return rules.HebbianRule(beta=r.beta)
        return rules.StaticRule(gain=r.beta, seed=self.seed)


def _check_keys(data: dict, known: list[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise unknown(f"setting in {where}", key, known)


def _make(cls, values: dict, where: str):
    _check_keys(values, [f.name for f in fields(cls)], where)
    obj = cls(**values)
    for f in fields(cls):  # types: TOML gives int/float/bool/str/table; catch "steps = '10'" early
        v, default = getattr(obj, f.name), getattr(cls(), f.name) if f.default_factory is dataclasses.MISSING else None
        if default is not None and not _same_kind(v, default):
            raise ConfigError(f"{where}: {f.name} must be {type(default).__name__}, got {v!r}")
        if isinstance(default, float) and not math.isfinite(v):  # NaN would only surface as a diverged run
            raise ConfigError(f"{where}: {f.name} must be a finite number, got {v!r}")
    return obj


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
