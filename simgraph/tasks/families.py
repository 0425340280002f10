"""Task families for meta-training learning rules and for held-out tests, from what ships with scikit-learn.

A :class:`Family` is a source of classification problems: a dataset (``digits``, ``iris``, ``wine``,
``breast_cancer``, optionally restricted to some of its classes) or a generator
(``classification``, ``blobs``, ``moons``, ``circles``, ``quantiles``), with how many classes an episode uses.
:data:`FAMILIES` names them; :func:`register_family` adds one. A :class:`FamilyTask` draws every
episode from one of its families, chosen per episode, and makes it a problem for a network of
fixed width:

- the features (standardised over the dataset, or over the episode's draws for a generator) go
  through a fresh Gaussian random projection to ``width`` inputs, rescaled to unit RMS;
- a random ``c`` of the family's classes (``c`` between its ``ways``, at most ``num_classes``) are mapped to ``c``
  random distinct outputs of the ``num_classes``; outputs no class uses are never the answer
  (a rule has to learn to leave them low);
- query examples are unseen: datasets are split per episode (queries first, without
  replacement; the stream cycles through the rest in a fresh order each pass), generators
  draw fresh examples;
- the horizon varies: every batch has ``steps`` online steps drawn log-uniformly from
  ``[min_steps, max_steps]`` (one length per batch, so a batch is one tensor);
- query blocks (the same ``query`` unseen examples each time) follow every ``query_every``
  steps and the last one, so the loss is summed over query points along the episode.

Everything comes from the seed (``numpy.random.default_rng(seed)``): same seed, same batch.
:data:`META_TRAIN_FAMILIES` and :data:`HELD_OUT_FAMILIES` split the registry; held-out
``iris`` and ``breast_cancer`` are datasets and ``moons`` a generator that meta-training never
sees, ``digits5-9`` are digit classes it never sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ..errors import ConfigError, check_bool, check_bytes, check_choice, check_int, check_ints, check_name, check_number, check_type
from .base import Episode, check_batch
from .online import Stream, StreamTask, with_queries

DATASETS = {"digits": "load_digits", "iris": "load_iris", "wine": "load_wine", "breast_cancer": "load_breast_cancer",
            "diabetes": "load_diabetes"}
GENERATORS = ("classification", "blobs", "moons", "circles", "quantiles")
TWO_CLASS = ("moons", "circles")
# the Family settings and the sources that read them (any other source refuses a setting away from its default)
READ_BY = {"features": ("classification", "quantiles"), "class_sep": ("classification",),
           "noise": ("blobs", "moons", "circles")}


@lru_cache(maxsize=None)
def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X standardised per feature, y)`` of a scikit-learn dataset (ships with the package, no download)."""
    from sklearn import datasets

    d = getattr(datasets, DATASETS[name])()
    x = d.data.astype(np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6 if name != "digits" else 1.0)  # digits: blank pixels stay 0
    if name == "diabetes":  # a regression target (disease progression), as three classes: its tertiles
        return x, np.searchsorted(np.quantile(d.target, [1 / 3, 2 / 3]), d.target, side="right").astype(np.int64)
    return x, d.target.astype(np.int64)


@dataclass(frozen=True)
class Family:
    """``source``: a dataset in DATASETS or a generator in GENERATORS. ``classes``: the dataset
    classes it draws from (None: all). ``ways = (lo, hi)``: classes per episode, uniform in
    ``lo..hi`` (default: 2 to all the dataset's classes; 2 to 5 for blobs and classification). ``features``: inputs of the ``classification`` and ``quantiles`` generators. ``noise``: of the 2-D
    generators (blobs: cluster spread ``1 + 10 noise``). ``class_sep``: of the ``classification``
    generator (its clusters' distance; smaller overlaps the classes more)."""

    source: str
    classes: tuple[int, ...] | None = None
    ways: tuple[int, int] | None = None
    features: int = 8
    noise: float = 0.1
    class_sep: float = 1.0

    def __post_init__(self):
        check_choice("family source", self.source, [*DATASETS, *GENERATORS])  # a dict or array: unknown, not TypeError
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(check_ints("family classes", self.classes, 0)))
        if self.ways is None:  # from 2 to as many classes as the source has (blobs, classification: 5)
            most = 2 if self.source in TWO_CLASS else 5 if self.source in GENERATORS else \
                len(self.classes if self.classes is not None else set(dataset(self.source)[1].tolist()))
            object.__setattr__(self, "ways", (2, most))
        if not isinstance(self.ways, (tuple, list)) or len(self.ways) != 2:
            raise ConfigError(f"family ways must be (fewest, most) classes per episode, got {self.ways!r}")
        lo, hi = (check_int("family ways", w, 2) for w in self.ways)
        object.__setattr__(self, "ways", (lo, hi))
        if lo > hi:
            raise ConfigError(f"family ways must be (fewest, most) with fewest <= most, got {self.ways!r}")
        object.__setattr__(self, "features", check_int("family features", self.features, 2))
        object.__setattr__(self, "noise", check_number("family noise", self.noise, low=0.0))
        object.__setattr__(self, "class_sep", check_number("family class_sep", self.class_sep, positive=True))
        # a setting the source does not read would be silently ignored: refused unless at its default
        for what, sources in READ_BY.items():
            if self.source not in sources and getattr(self, what) != Family.__dataclass_fields__[what].default:
                raise ConfigError(f"family {what}={getattr(self, what)!r} is not read by {self.source!r} (only by "
                                  f"{', '.join(sources)}): remove it")
        if self.source in GENERATORS:
            if self.classes is not None:
                raise ConfigError(f"{self.source} is a generator; it takes ways=(lo, hi), not classes=")
            if self.source in TWO_CLASS and (lo, hi) != (2, 2):
                raise ConfigError(f"{self.source} makes exactly 2 classes; use ways=(2, 2), got {self.ways!r}")
            if self.source == "classification" and hi > 2 ** min(self.features, hi):  # one cluster a class, in
                raise ConfigError(  # the corners of a hypercube of min(features, classes) informative inputs
                    f"classification with features={self.features} makes at most {2 ** self.features} classes, fewer "
                    f"than ways={self.ways}; use more features or fewer ways")
        else:
            y = dataset(self.source)[1]
            have = sorted(set(y.tolist()))
            classes = tuple(have) if self.classes is None else tuple(self.classes)
            if len(set(classes)) != len(classes) or not all(isinstance(c, (int, np.integer)) and c in have for c in classes):
                raise ConfigError(f"{self.source} classes must be distinct ints among {have}, got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(int(c) for c in classes))
            if hi > len(classes):
                raise ConfigError(f"family of {self.source} has {len(classes)} classes, fewer than ways={self.ways}")

    @property
    def native(self) -> int:
        """Features before the random projection."""
        if self.source in DATASETS:
            return dataset(self.source)[0].shape[1]
        return self.features if self.source in READ_BY["features"] else 2

    def draw(self, c: int, steps: int, query: int, rng: np.random.Generator):
        """``(x_stream [steps, d], y_stream, x_query [query, d], y_query)`` with labels in ``0..c-1``."""
        if self.source in DATASETS:
            X, Y = dataset(self.source)
            chosen = rng.choice(self.classes, c, replace=False)
            pool = rng.permutation(np.flatnonzero(np.isin(Y, chosen)))
            if len(pool) <= query:
                raise ConfigError(f"{self.source} with {c} classes has {len(pool)} examples, not more than query={query}")
            q, rest = pool[:query], pool[query:]
            passes = -(-steps // len(rest))  # each pass over the remaining examples in a fresh order
            s = np.concatenate([rng.permutation(rest) for _ in range(passes)])[:steps]
            lookup = np.full(Y.max() + 1, -1)
            lookup[chosen] = np.arange(c)
            return X[s], lookup[Y[s]], X[q], lookup[Y[q]]
        from sklearn import datasets

        n, rs = steps + query, int(rng.integers(2**31))
        if self.source == "classification":
            x, y = datasets.make_classification(n, n_features=self.features, n_informative=min(self.features, max(2, c)),
                                                n_redundant=0, n_classes=c, n_clusters_per_class=1, class_sep=self.class_sep,
                                                random_state=rs)
        elif self.source == "quantiles":  # classes are nested shells of a Gaussian (by distance from its centre)
            x, y = datasets.make_gaussian_quantiles(n_samples=n, n_features=self.features, n_classes=c, random_state=rs)
        elif self.source == "blobs":
            x, y = datasets.make_blobs(n, centers=c, cluster_std=1.0 + 10 * self.noise, center_box=(-4, 4), random_state=rs)
        elif self.source == "moons":
            x, y = datasets.make_moons(n, noise=self.noise, random_state=rs)
        else:
            x, y = datasets.make_circles(n, noise=self.noise, factor=0.5, random_state=rs)
        x = (x - x.mean(0)) / x.std(0).clip(min=1e-6)
        return x[:steps], y[:steps], x[steps:], y[steps:]


FAMILIES: dict[str, Family] = {
    "digits0-4": Family("digits", classes=(0, 1, 2, 3, 4), ways=(2, 5)),
    "digits5-9": Family("digits", classes=(5, 6, 7, 8, 9), ways=(5, 5)),
    "wine": Family("wine", ways=(2, 3)),
    "iris": Family("iris", ways=(3, 3)),
    "breast_cancer": Family("breast_cancer", ways=(2, 2)),
    "classification": Family("classification", ways=(2, 5), features=8),
    # 4 inputs, 2-3 overlapping classes: the shape of iris (versicolor and virginica overlap), never iris itself
    "overlap4": Family("classification", ways=(2, 3), features=4, class_sep=0.6),
    # nested Gaussian shells, 4 inputs: no meta-training run and no design choice has seen it (a fresh check)
    "quantiles4": Family("quantiles", ways=(2, 3), features=4),
    # 10 clinical measurements, disease progression a year later in tertiles (442 patients): likewise fresh
    "diabetes": Family("diabetes", ways=(3, 3)),
    "blobs": Family("blobs", ways=(2, 5)),
    "moons": Family("moons", ways=(2, 2)),
    "circles": Family("circles", ways=(2, 2)),
}
META_TRAIN_FAMILIES = ("digits0-4", "wine", "classification", "blobs", "circles")
HELD_OUT_FAMILIES = ("digits5-9", "iris", "breast_cancer", "moons")


def register_family(name: str, family: Family, *, replace: bool = False) -> None:
    """Name a family for ``FamilyTask(families=[...])`` and configs."""
    check_name("a family name", name, error=ConfigError)
    check_type(f"register_family({name!r}, ...)", family, Family, "a Family")
    replace = check_bool("register_family replace", replace)
    if name in FAMILIES and not replace:
        raise ConfigError(f"family {name!r} is already registered; pass replace=True to rebind it")
    FAMILIES[name] = family


@dataclass(frozen=True)
class FamilyTask(StreamTask):
    """Online classification episodes drawn from named ``families`` (see the module docstring).

    ``width`` inputs and ``num_classes`` outputs (the network's fixed sizes); ``min_steps`` ..
    ``max_steps`` online steps per batch (log-uniform; equal: a fixed horizon); ``query`` unseen
    examples per query block, a block after every ``query_every`` steps (0: after the last step
    only) and after the last; ``stream_loss``: score the stream predictions too (each made before
    its label arrives). Loss: cross-entropy on the scored ticks. Metrics: ``accuracy`` (all query
    blocks), ``final_accuracy`` (the last block), ``online_accuracy`` (stream predictions)."""

    families: tuple[str, ...] = META_TRAIN_FAMILIES
    width: int = 16
    num_classes: int = 5
    min_steps: int = 10
    max_steps: int = 200
    query: int = 10
    query_every: int = 20
    stream_loss: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self):
        from ..errors import check_bool

        fams = (self.families,) if isinstance(self.families, str) else self.families
        if not isinstance(fams, (tuple, list)) or not fams:
            raise ConfigError(f"FamilyTask families must be a non-empty list of family names, got {self.families!r}")
        for f in fams:
            check_choice("task family", f, FAMILIES)
        object.__setattr__(self, "families", tuple(fams))
        for what in ("width", "num_classes", "min_steps", "max_steps", "query"):
            check_int(f"FamilyTask {what}", getattr(self, what), 2 if what == "num_classes" else 1)
        check_int("FamilyTask query_every", self.query_every, 0)
        check_bool("FamilyTask stream_loss", self.stream_loss)
        if self.min_steps > self.max_steps:
            raise ConfigError(f"FamilyTask min_steps={self.min_steps} exceeds max_steps={self.max_steps}")
        for f in self.families:
            if FAMILIES[f].ways[0] > self.num_classes:
                raise ConfigError(f"family {f!r} needs at least {FAMILIES[f].ways[0]} classes per episode, more than "
                                  f"num_classes={self.num_classes} outputs")
            most = min(FAMILIES[f].ways[1], self.num_classes)  # an episode's classes (at most num_classes)
            if FAMILIES[f].source == "quantiles" and self.min_steps + self.query < most:
                raise ConfigError(f"family {f!r} draws up to {most} classes as quantiles of one sample, which needs at "
                                  f"least {most} examples; min_steps + query = {self.min_steps + self.query}")
        self.check_bytes(1)

    # ------------------------------------------------------------------ sizes
    @property
    def input_size(self) -> int:
        return self.width

    @property
    def n_classes(self) -> int:
        return self.num_classes

    def check_bytes(self, batch_size: int) -> None:
        """MemoryBudgetError unless a batch of the longest episodes fits the byte budget."""
        from ..errors import check_bytes

        blocks = 1 + (self.max_steps // self.query_every if self.query_every else 0)
        n = self.max_steps + self.query * blocks
        native = max(FAMILIES[f].native for f in self.families)
        per_episode = n * (self.width * 4 + 16 + 16 * self.num_classes) + (self.max_steps + self.query) * native * 8 \
            + native * self.width * 8
        check_bytes(f"FamilyTask episodes (batch_size={batch_size} x {n} ticks x {self.width} inputs)",
                    batch_size * per_episode, "use fewer max_steps/query, a larger query_every, or a smaller batch_size")

    # ------------------------------------------------------------------ episodes
    def horizon(self, seed: int) -> int:
        """The batch's number of online steps: log-uniform in ``[min_steps, max_steps]`` from ``seed``."""
        return _horizon(np.random.default_rng([seed, 1]), self.min_steps, self.max_steps)

    def query_points(self, steps: int) -> list[int]:
        every = self.query_every or steps
        return sorted({*range(every, steps + 1, every), steps})

    def sample(self, batch_size: int, seed: int = 0, device=None) -> Episode:
        check_batch(batch_size)
        self.check_bytes(batch_size)
        _check_seed(seed)
        steps = self.horizon(seed)
        episode = with_queries(self.episode(steps, batch_size, self.query, seed), self.query_points(steps),
                               self.num_classes, self.stream_loss)
        return episode.to(device) if device is not None else episode

    def episode(self, steps: int, batch: int, query: int = 100, seed: int = 0) -> Stream:
        """``batch`` episodes of exactly ``steps`` stream examples and ``query`` unseen ones (the raw
        examples the SGD/Adam baselines read, like :meth:`OnlineTask.episode`)."""
        steps, batch, query = (check_int(f"FamilyTask.episode {what}", v, 1) for what, v in
                               (("steps", steps), ("batch", batch), ("query", query)))
        native = max(FAMILIES[f].native for f in self.families)  # the raw examples, then float32 tensors
        check_bytes(f"FamilyTask.episode (batch={batch} x {steps + query} examples x {self.width} inputs)",
                    batch * (steps + query) * (native * 8 + self.width * 12 + 16), "use fewer steps/query or a smaller batch")
        _check_seed(seed)
        rng = np.random.default_rng([seed, 0])
        parts = [self._one(steps, query, rng) for _ in range(batch)]
        x, y, xq, yq = (np.stack([p[i] for p in parts], 1) for i in range(4))
        f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        return Stream(f32(x), torch.tensor(y), f32(xq), torch.tensor(yq))

    def _one(self, steps: int, query: int, rng: np.random.Generator):
        fam = FAMILIES[self.families[int(rng.integers(len(self.families)))]]
        lo, hi = fam.ways[0], min(fam.ways[1], self.num_classes)
        c = int(rng.integers(lo, hi + 1))
        x, y, xq, yq = fam.draw(c, steps, query, rng)
        proj = rng.normal(0.0, 1.0 / math.sqrt(x.shape[1]), (x.shape[1], self.width))
        x, xq = x @ proj, xq @ proj
        scale = np.sqrt(np.concatenate([x, xq]).var(0).mean()).clip(min=1e-6)  # one scale per episode: keeps the geometry
        outputs = rng.permutation(self.num_classes)[:c]
        return x / scale, outputs[y], xq / scale, outputs[yq]

    # ------------------------------------------------------------------ scores
    def metrics(self, outputs, episode: Episode) -> dict:
        outputs = self.check_outputs(outputs, episode)
        right = (outputs.argmax(-1) == episode.targets.argmax(-1)).to(outputs.dtype)
        probe = episode.probe.to(outputs.device).view(-1, 1).to(outputs.dtype).expand_as(right)
        last = torch.zeros_like(probe)
        last[-self.query:] = 1  # every episode ends with a query block
        mean = lambda m: (right * m).sum() / m.sum().clamp(min=1)  # noqa: E731
        return {"accuracy": mean(probe), "final_accuracy": mean(last), "online_accuracy": mean(1 - probe)}


def _horizon(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))))


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"FamilyTask seed must be an int >= 0, got {seed!r}")


def held_out_tasks(width: int = 16, num_classes: int = 5, steps: int = 500, **kw) -> dict[str, FamilyTask]:
    """One task per held-out family, at a fixed horizon (what the learn-to-learn table scores)."""
    return {f: FamilyTask((f,), width, num_classes, steps, steps, name=f, **kw) for f in HELD_OUT_FAMILIES}
