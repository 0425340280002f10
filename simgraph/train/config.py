"""Experiment configuration: four TOML tables over the one training loop, typos caught with "did you mean".

    seed = 0
    [network]  topology = "fully_recurrent"      # or file = "net.graphml", or builder = "pkg.mod:function"
               params = {p = 0.2}                # keyword arguments of the topology / builder
               inputs = ["neurons"]              # optional: populations, "pop[a:b]", node labels or ids,
               outputs = ["neurons[0:50]"]       # or a node attribute: {class = "sensory"}, {class = ["motor", "inter"]}
    [rule]     kind = "mlp"                      # a registered kind or "package.module:ClassName"
               node_dim = 8                      # any other key: a keyword of the rule's constructor
    [task]     kind = "recall"                   # recall | pattern_completion | oneshot | reversal | online | families
               num_patterns = 6                  # any other key: a field of the task
    [train]    estimator = "bptt"                # bptt | es | cma | tbptt | pes; steps, batch_size, lr, curriculum ...

Sizes a topology needs and the config leaves out (``n``, ``n_in``/``n_out``, ``size``, ``sizes``)
are taken from the task, so ``topology = "fully_recurrent"`` alone gives one neuron per input.
``inputs`` / ``outputs`` as a table select neurons by node attribute (every neuron whose attribute
equals the value, or is one of a list of values, in simgraph's node order): for a ``file`` network the
attributes in the file; for a topology or builder, those ``sg.to_networkx`` gives every neuron
(``population`` and ``type``, its neuron type). An attribute no node has is refused with "did you mean".
Relative paths (``file``) and user modules (``kind = "mymodule:MyRule"``) are looked up next to
the config file first, then in the working directory.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import rules, topologies
from .._imports import is_import_path, load_object
from ..errors import (ConfigError, SimgraphError, check_bool, check_choice, check_int, check_name, check_number, check_path,
                      check_seed, check_type, is_int, is_number, unknown)
from ..graph import Graph
from ..interop import FORMATS, from_networkx, nodes_by_attribute, read, read_networkx, to_networkx
from ..tasks import TASKS, RecallTask, Task

SECTIONS = ("network", "rule", "task", "train")
ESTIMATORS = ("bptt", "es", "cma", "tbptt", "pes")
DEFAULT_TASK = {"kind": "recall", "num_patterns": 6, "bits": 32}
# the learned MLP rule started at the Hebbian rule, at the gain hebbian_baseline tunes on the default net
DEFAULT_RULE = {"kind": "mlp", "start": "hebbian", "beta": 0.03}


@dataclass
class NetworkConfig:
    topology: str | None = None  # a function of simgraph.topologies (default: fully_recurrent)
    file: str | None = None  # a networkx-readable file: .graphml, .gexf, .json (node-link)
    builder: str | None = None  # "package.module:function" returning a Graph
    params: dict = field(default_factory=dict)  # keyword arguments of the topology / builder / from_networkx
    inputs: list | None = None  # which neurons take the task's inputs (default: the graph's own choice)
    outputs: list | None = None

    def __post_init__(self):
        if self.topology is None and self.file is None and self.builder is None:
            self.topology = "fully_recurrent"


@dataclass
class RuleConfig:
    kind: str = "mlp"
    settings: dict = field(default_factory=lambda: {k: v for k, v in DEFAULT_RULE.items() if k != "kind"})


@dataclass
class TaskConfig:
    kind: str = "recall"
    settings: dict = field(default_factory=lambda: {k: v for k, v in DEFAULT_TASK.items() if k != "kind"})


@dataclass
class TrainConfig:
    estimator: str = "bptt"  # bptt | es | cma | tbptt | pes (persistent truncations: one update per window)
    steps: int = 400  # optimiser steps (ES / CMA-ES: generations)
    batch_size: int = 32
    lr: float = 3e-3  # Adam (bptt, es)
    lr_schedule: str = "cosine"  # cosine | constant
    warmup: int = 10
    clip: float = 1.0  # gradient-norm clip; 0 = off
    # bptt
    window: int = 0  # truncated-BPTT window in ticks; tbptt / pes: ticks per truncation (one update each); 0 = the whole episode
    lean: bool = True  # use the rule's lean episode (Hebbian, plastic) when it has one
    recompute_every: int = 0  # checkpointed backprop: keep the state every k ticks, recompute the rest
    # es / cma
    pairs: int = 16  # ES: antithetic pairs per generation; PES: antithetic particle pairs
    sigma: float = 0.05  # ES / PES: noise scale
    rank_shaping: bool = True  # ES: centred ranks instead of raw fitness
    popsize: int = 16  # CMA-ES population
    sigma0: float = 0.1  # CMA-ES initial step size
    fitness: str = "loss"  # ES / CMA-ES: "loss" (its negative) or a metric of the task, e.g. "accuracy"
    keep: str = "mean"  # CMA-ES: the rule holds the search "mean" or the "best" candidate seen
    resample: bool = True  # fresh episodes every step (false: the same batch every step)
    # curriculum: a schedule over one integer task field, raised when the eval metric passes a threshold
    curriculum: bool | None = None  # default: on for recall (num_patterns), off otherwise
    curriculum_field: str = "num_patterns"
    curriculum_start: int = 2
    curriculum_stop: int = 0  # 0: the task's own value
    curriculum_threshold: float = 0.9
    # evaluation, logs, checkpoints
    eval_every: int = 25
    eval_batch: int = 128
    log_every: int = 0  # also log the training batch every k steps (0: at evaluations only)
    checkpoint_every: int = 50
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default
    # a run folder of simgraph train whose trained rule starts this run (same rule kind and parameter shapes;
    # relative paths from the config file's folder): fine-tuning a shipped rule on longer episodes, say
    init_from: str = ""

    def check(self, where: str = "[train]") -> "TrainConfig":
        """Refuse a bad setting (ConfigError naming it); store every value as a plain Python one (a numpy
        int becomes an int, so a run's description stays the same JSON whoever made it)."""
        ints = {"steps": 1, "batch_size": 1, "eval_every": 1, "eval_batch": 1, "checkpoint_every": 1, "pairs": 1,
                "curriculum_start": 1, "window": 0, "warmup": 0, "threads": 0, "recompute_every": 0, "log_every": 0,
                "curriculum_stop": 0, "popsize": 2}
        for name, low in ints.items():
            setattr(self, name, check_int(f"{where}: {name}", getattr(self, name), low))
        for name in ("lr", "sigma", "sigma0"):
            setattr(self, name, check_number(f"{where}: {name}", getattr(self, name), positive=True))
        self.clip = check_number(f"{where}: clip must be >= 0 (0 = off);", self.clip, low=0.0)
        check_choice(f"estimator in {where}", self.estimator, ESTIMATORS)
        check_choice(f"lr_schedule in {where}", self.lr_schedule, ("cosine", "constant"))
        check_choice(f"keep in {where}", self.keep, ("mean", "best"))
        for name in ("lean", "rank_shaping", "resample"):
            setattr(self, name, check_bool(f"{where}: {name}", getattr(self, name)))
        if self.curriculum is not None:
            self.curriculum = check_bool(f"{where}: curriculum", self.curriculum)  # absent: on for recall
        self.curriculum_threshold = check_number(f"{where}: curriculum_threshold", self.curriculum_threshold, positive=True,
                                                 high=1.0)
        for name in ("fitness", "curriculum_field"):
            check_name(f"{where}: {name}", getattr(self, name), error=ConfigError)
        check_type(f"{where}: init_from", self.init_from, str, "a run folder's path as a string ('' = none)")
        return self


@dataclass
class Config:
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    base_dir: str = field(default="", compare=False)  # the config file's folder (not part of the config)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict, where: str = "config", base_dir: str | Path = "") -> "Config":
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table of settings, got {type(data).__name__}")
        _check_keys(data, ["seed", *SECTIONS], where)
        for key in SECTIONS:
            if key in data and not isinstance(data[key], dict):
                raise ConfigError(f"{where}: [{key}] must be a table, got {data[key]!r}")
        rule = dict(data["rule"]) if "rule" in data else dict(DEFAULT_RULE)
        task = dict(data.get("task", {}) or {}) if "task" in data else dict(DEFAULT_TASK)
        cfg = cls(
            seed=data.get("seed", 0),
            network=_make(NetworkConfig, data.get("network", {}), f"{where} [network]"),
            rule=RuleConfig(kind=rule.pop("kind", "mlp"), settings=rule),
            task=TaskConfig(kind=task.pop("kind", "recall"), settings=task),
            train=_make(TrainConfig, data.get("train", {}), f"{where} [train]"),
            base_dir=str(base_dir),
        )
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = check_path("Config.load (a TOML file)", path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            data = tomllib.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, where=str(path), base_dir=path.resolve().parent)

    def to_dict(self) -> dict:
        net = {k: v for k, v in dataclasses.asdict(self.network).items() if v is not None and v != {}}
        return {"seed": self.seed, "network": net, "rule": {"kind": self.rule.kind, **self.rule.settings},
                "task": {"kind": self.task.kind, **self.task.settings}, "train": dataclasses.asdict(self.train)}

    def override(self, **changes) -> "Config":
        """A copy with ``section.key=value`` changes, e.g. ``override(**{"train.steps": 10})``."""
        data = self.to_dict()
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition(".")
            if section and section not in SECTIONS:
                raise unknown("config section in setting " + repr(dotted), section, SECTIONS)
            if not key:
                raise ConfigError(f"setting {dotted!r} names no key; write section.key=value, e.g. train.steps=50")
            if section == "network" and key in ("topology", "file", "builder"):
                for other in ("topology", "file", "builder"):
                    data["network"].pop(other, None)  # one way of naming the network replaces the other
            if section == "rule" and key == "kind" and value != data["rule"].get("kind", "mlp"):
                data["rule"] = _settings_kept_by(value, data["rule"], self.search_paths)
            (data[section] if section else data)[key] = value
        return Config.from_dict(data, base_dir=self.base_dir)

    @property
    def search_paths(self) -> list[str]:
        return [p for p in (self.base_dir, os.getcwd()) if p]

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "config") -> None:
        self.seed = check_seed(f"{where}: seed", self.seed, numpy=True)
        n = self.network
        named = [k for k in ("topology", "file", "builder") if getattr(n, k) is not None]
        if len(named) > 1:
            raise ConfigError(f"{where} [network]: give one of topology, file or builder, not {' and '.join(named)}")
        for key in named:
            check_name(f"{where} [network]: {key}", getattr(n, key), error=ConfigError)
        if n.topology is not None:
            check_choice(f"topology in {where} [network]", n.topology, topologies.TOPOLOGIES)
        if n.builder is not None and not is_import_path(n.builder):
            raise ConfigError(f"{where} [network]: builder must be 'package.module:function', got {n.builder!r}")
        if n.file is not None and Path(n.file).suffix.lower() not in FORMATS:
            raise ConfigError(f"{where} [network]: file {n.file!r} must end in one of {', '.join(FORMATS)} "
                              f"({', '.join(FORMATS.values())})")
        if not all(isinstance(k, str) for k in n.params):
            raise ConfigError(f"{where} [network]: params must be a table of keyword arguments, got {n.params!r}")
        for key in ("inputs", "outputs"):
            v = getattr(n, key)
            if isinstance(v, dict):
                if not v or not all(isinstance(k, str) and k for k in v):
                    raise ConfigError(f"{where} [network]: {key} as a node attribute must be a table such as "
                                      f"{{class = \"sensory\"}} (attribute = value or [values]), got {v!r}")
            elif v is not None and (not isinstance(v, list) or not v):
                raise ConfigError(f"{where} [network]: {key} must be a non-empty list of populations, 'pop[a:b]', "
                                  f"node labels or ids, or a node attribute table such as {{class = \"sensory\"}}, got {v!r}")
        check_type(f"{where} [rule]: kind", self.rule.kind, str, "a string")
        rules.registry.check_settings(self.rule.kind, self.rule.settings, self.search_paths, f"{where} [rule]: ")
        task = self.make_task(where=where)
        self.train.check(f"{where} [train]")
        Curriculum.of(self.train, task)  # a curriculum_field the task lacks is named now, not at step 0

    # ------------------------------------------------------------------ factories
    def make_task(self, where: str = "config") -> Task:
        kind = self.task.kind
        if is_import_path(kind):
            make = load_object(kind, "task kind", self.search_paths)
        elif isinstance(kind, str) and kind in TASKS:
            make = TASKS[kind]
        else:
            raise unknown(f"task kind in {where} [task]", kind, list(TASKS) + ["package.module:ClassName"])
        if not callable(make):
            raise ConfigError(f"task kind {kind!r} is a {type(make).__name__}, not a Task class")
        try:  # a dataclass's (or a partial's) keywords: the task's fields
            fields_of = list(inspect.signature(make).parameters)
        except (TypeError, ValueError):
            fields_of = list(self.task.settings)
        for key in self.task.settings:
            if key not in fields_of:
                raise unknown(f"setting of task kind {kind!r} in {where} [task]", key, fields_of)
        try:
            task = make(**self.task.settings)
        except TypeError as exc:
            raise ConfigError(f"{where} [task]: {exc}") from None
        if not isinstance(task, Task):
            raise ConfigError(f"task kind {kind!r} made a {type(task).__name__}, not a simgraph.tasks.Task")
        return task

    def make_graph(self, task: Task | None = None, device=None) -> Graph:
        """The network, with the sizes the config leaves out taken from the task; checked against the task."""
        task = task if task is not None else self.make_task()
        n = self.network
        params = dict(n.params)
        if n.file is not None:
            graph = _read_graph(self._path(n.file), params)
        elif n.builder is not None:
            make = load_object(n.builder, "network builder", self.search_paths)
            graph = _call(make, params, task, self.seed, device, f"[network] builder {n.builder!r}")
        else:
            make = topologies.TOPOLOGIES[n.topology or "fully_recurrent"]
            graph = _call(make, params, task, self.seed, device, f"[network] topology {n.topology or 'fully_recurrent'!r}")
        if not isinstance(graph, Graph):
            raise ConfigError(f"[network] made a {type(graph).__name__}, not a simgraph Graph")
        if device is not None:
            graph = graph.to(device)
        if n.inputs is not None or n.outputs is not None:
            graph = graph.with_io(*(self._by_attribute(graph, items, what) for what, items in (("inputs", n.inputs),
                                                                                                ("outputs", n.outputs))))
        check_fits(graph, task)
        return graph

    def _by_attribute(self, graph: Graph, items, what: str):
        """``[network] inputs`` / ``outputs`` given as ``{attribute = value or [values]}``: the neurons whose node
        attribute matches (the file's attributes, or to_networkx's for a topology or builder); others unchanged."""
        if not isinstance(items, dict):
            return items
        G = read_networkx(self._path(self.network.file)) if self.network.file is not None else to_networkx(graph)
        return nodes_by_attribute(G, graph, items, f"[network] {what}", "config")

    def make_rule(self, graph: Graph) -> rules.Rule:
        settings = dict(self.rule.settings)
        seed = settings.pop("seed", self.seed)  # a rule's own seed setting wins over the run's
        return rules.build(self.rule.kind, graph, seed=seed, paths=self.search_paths, **settings)

    def _path(self, name: str) -> Path:
        p = Path(name)
        if not p.is_absolute() and self.base_dir and (Path(self.base_dir) / p).exists():
            return Path(self.base_dir) / p
        return p


@dataclass(frozen=True)
class Curriculum:
    """Raise the integer task field ``field`` from ``start`` to ``stop``, one at a time, whenever the
    evaluation metric reaches ``threshold``."""

    field: str
    start: int
    stop: int
    threshold: float
    metric: str

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: store the checked, plain values)
        check_name("Curriculum field", self.field, error=ConfigError)
        set_("start", check_int("Curriculum start", self.start, 1))
        set_("stop", check_int(f"Curriculum stop (>= start = {self.start})", self.stop, self.start))
        set_("threshold", check_number("Curriculum threshold", self.threshold, positive=True, high=1.0))
        check_name("Curriculum metric", self.metric, error=ConfigError)

    @classmethod
    def of(cls, settings: TrainConfig, task: Task) -> "Curriculum | None":
        on = settings.curriculum if settings.curriculum is not None else isinstance(task, RecallTask)
        if not on:
            return None
        names = [f.name for f in dataclasses.fields(task)] if dataclasses.is_dataclass(task) else []
        value = getattr(task, settings.curriculum_field, None)
        if settings.curriculum_field not in names or not is_int(value):
            raise ConfigError(f"curriculum_field {settings.curriculum_field!r} is not an integer field of "
                              f"{type(task).__name__} (fields: {', '.join(names)}); set curriculum = false or name one")
        stop = settings.curriculum_stop or value
        if getattr(task, "cue", None) == "position" and settings.curriculum_field == "num_patterns":
            raise ConfigError("curriculum changes the number of patterns, which changes the input size of "
                              "cue='position'; set curriculum = false")
        return cls(settings.curriculum_field, min(settings.curriculum_start, stop), stop,
                   settings.curriculum_threshold, task.metric)

    def task(self, task: Task, value: int) -> Task:
        return task.replace(**{self.field: value})


def check_fits(graph: Graph, task: Task) -> None:
    """ConfigError unless the graph's input and output sets have the task's sizes."""
    if graph.num_inputs != task.num_inputs or graph.num_outputs != task.num_outputs:
        raise ConfigError(
            f"the task needs {task.num_inputs} input and {task.num_outputs} output neurons, the network has "
            f"{graph.num_inputs} inputs ({', '.join(graph.inputs) or 'none'}) and {graph.num_outputs} outputs "
            f"({', '.join(graph.outputs) or 'none'}); size the network, or choose its neurons with "
            "[network] inputs = [...] / outputs = [...] (populations, 'pop[a:b]', node labels or ids)")


# sizes a topology takes that the task can fill: parameter -> value from the task
def _settings_kept_by(kind, settings: dict, paths) -> dict:
    """A new rule kind keeps the settings it also takes (``frozen`` from ``mlp`` keeps the sizes) and
    drops the others (the Hebbian start of the default has no meaning for ``plastic``)."""
    try:
        names = rules.registry.check_settings(kind, {}, paths)[2]
    except ConfigError:
        return {k: v for k, v in settings.items() if k != "kind"}  # validate() names the unknown kind
    return {k: v for k, v in settings.items() if k in names}


def _sizes(task: Task) -> dict:
    teacher = getattr(task, "teacher_inputs", 0)  # channels that drive the output neurons, not input neurons
    n_in = task.num_inputs - teacher
    return {"n": max(n_in, task.num_outputs), "n_in": n_in, "n_out": task.num_outputs,
            "sizes": [n_in, task.num_outputs], "teach": bool(teacher)}


def _call(make, params: dict, task: Task, seed: int, device, what: str) -> Graph:
    try:
        sig = inspect.signature(make).parameters
    except (TypeError, ValueError):
        sig = {}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.values())
    for key in params:
        if key not in sig and not takes_any:
            raise unknown(f"parameter of {what}", key, [k for k in sig if k not in ("task", "device")])
    kwargs = dict(params)
    for key, value in _sizes(task).items():
        if key in sig and key not in kwargs:
            kwargs[key] = value
    if "size" in sig and "size" not in kwargs:  # modular: one module size from the task
        modules = kwargs.get("modules", sig["modules"].default if "modules" in sig else 1)
        if task.num_inputs % modules:
            raise ConfigError(f"{what}: {task.num_inputs} inputs do not split into modules={modules}; set params.size")
        kwargs["size"] = task.num_inputs // modules
    for key, value in (("seed", seed), ("task", task), ("device", device)):
        if key in sig and key not in kwargs:
            kwargs[key] = value
    try:
        return make(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except SimgraphError as exc:  # same kind of error, now saying which config setting made it
        raise type(exc)(f"{what} with params {params}: {exc}") from None


def _read_graph(path: Path, params: dict) -> Graph:
    """``sg.read`` of the file: a file ``sg.write`` made comes back exactly; any other is imported
    by ``from_networkx`` with ``params`` as its options."""

    if not path.is_file():
        raise ConfigError(f"[network] file {str(path)!r} does not exist")
    allowed = [p for p in inspect.signature(from_networkx).parameters if p not in ("G", "inputs", "outputs")]
    for key in params:
        if key not in allowed:
            raise unknown("[network] params key for a graph file (a from_networkx argument)", key, allowed)
    return read(path, **params)[0]


def _check_keys(data: dict, known: list[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise unknown(f"setting in {where}", key, known)


def _make(cls, values: dict, where: str):
    _check_keys(values, [f.name for f in fields(cls)], where)
    obj = cls(**values)
    for f in fields(cls):  # TOML gives int/float/bool/str/table; catch "steps = '10'" early
        v = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if default is None:
            continue
        if not _same_kind(v, default):
            raise ConfigError(f"{where}: {f.name} must be {type(default).__name__}, got {v!r}")
        if isinstance(default, float) and not math.isfinite(float(v)):  # NaN would only surface as a diverged run
            raise ConfigError(f"{where}: {f.name} must be a finite number, got {v!r}")
    return obj


def _same_kind(value, default) -> bool:
    """TOML's kinds, and the numpy scalars a Python caller may pass for them."""
    if isinstance(default, bool) or isinstance(value, (bool, np.bool_)):
        return isinstance(value, (bool, np.bool_)) and isinstance(default, bool)
    if isinstance(default, float):
        return is_number(value)
    if isinstance(default, int):
        return is_int(value)
    return isinstance(value, type(default))


__all__ = ["Config", "NetworkConfig", "RuleConfig", "TaskConfig", "TrainConfig", "check_fits", "ESTIMATORS"]
