"""Online classification streams: labelled examples one at a time, for learning-to-learn rules.

An :class:`OnlineTask` describes where examples come from; ``task.sample(batch, seed)`` draws
``batch`` independent episodes, each a stream of ``steps`` labelled examples to learn from and
``query`` unseen examples of the same episode (same classes, label permutation and input
projection) to test on, as one :class:`~simgraph.tasks.Episode` of ``steps + query`` ticks: on
stream ticks the label arrives as the ``teacher`` signal after the prediction (rules that learn
from labels: genome, LSTM synapse); query ticks are ``probe`` ticks, each read from the state the
stream left. Loss: cross-entropy of the outputs (logits) on the query ticks; metrics: query
``accuracy`` and ``online_accuracy`` (predictions on the stream, before each label). Everything ships with scikit-learn: ``load_digits`` (8x8 digits, 64
features) and the 2-D generators xor, moons, circles and blobs. Nothing is downloaded.

Episodes vary so that a rule has to learn, not remember: labels are permuted per episode, 2-D
datasets are redrawn per episode (blobs with new centres), and ``projection=d`` maps the features
through a fresh random Gaussian matrix per episode to ``d`` inputs. Held-out tasks use other
digit classes, other generators, random projections and another input size (:data:`HELD_OUT`).
Same seed, same episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

import torch.nn.functional as F

from ..errors import ConfigError, check_bool, check_choice, check_int, check_ints, check_number
from .base import Episode
from .base import Task, check_batch

SOURCES = ("digits", "xor", "moons", "circles", "blobs")


class Stream(NamedTuple):
    """The raw examples of :meth:`OnlineTask.episode` (the SGD/Adam baselines read them); training
    and evaluation use :meth:`OnlineTask.sample`, the same examples as one :class:`Episode`."""

    x: Tensor  # [T, B, n_in] float32: the stream
    y: Tensor  # [T, B] long
    xq: Tensor  # [Q, B, n_in]: unseen examples of the same episodes
    yq: Tensor  # [Q, B]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1.0)  # blank border pixels stay 0, not inf
    return x, d.target


class StreamTask(Task):
    """What the online tasks share: sizes from ``input_size`` / ``n_classes`` (the names the SGD/Adam
    baselines and ``analysis.accuracy_after`` read) and the cross-entropy of the logits on the
    scored ticks."""

    @property
    def num_inputs(self) -> int:
        return self.input_size

    @property
    def num_outputs(self) -> int:
        return self.n_classes

    def error(self, outputs: Tensor, episode: Episode) -> Tensor:
        """Cross-entropy of the logits per (tick, episode) on the scored ticks."""
        return -(F.log_softmax(outputs, -1) * episode.targets).sum(-1) * episode.loss_mask[..., 0]

    def loss_norm(self, episode: Episode) -> Tensor:
        return episode.loss_mask[..., 0].sum().clamp(min=1)


@dataclass(frozen=True)
class OnlineTask(StreamTask):
    """``source`` in SOURCES; ``steps`` examples to learn from and ``query`` to test on per episode. ``classes``: digit classes (digits only, default 0-9);
    ``num_classes``: classes of a 2-D generator (blobs: any >= 2; others 2). ``projection``: a
    random input projection to this many inputs per episode. ``bias``: append a constant-1 input."""

    source: str = "digits"
    steps: int = 20
    query: int = 20
    classes: tuple[int, ...] | None = None
    num_classes: int | None = None
    projection: int | None = None
    noise: float = 0.1
    bias: bool = False
    permute_labels: bool = True
    name: str = field(default="", compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: store the checked, plain values)
        set_("steps", check_int("OnlineTask steps", self.steps, 1))
        set_("query", check_int("OnlineTask query", self.query, 1))
        check_choice("online task source", self.source, SOURCES)
        if self.source == "digits":
            if self.num_classes is not None:
                raise ConfigError("digits tasks take classes=(...), not num_classes")
            classes = tuple(range(10)) if self.classes is None else \
                tuple(check_int(f"OnlineTask classes[{i}] (a digit)", c, 0, 9) for i, c in
                      enumerate(check_ints("OnlineTask classes", self.classes)))
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ConfigError(f"digits classes must be at least 2 distinct ints in 0..9, got {self.classes!r}")
            set_("classes", classes)
        else:
            if self.classes is not None:
                raise ConfigError(f"{self.source} is a 2-D generator; pass num_classes=, not classes=")
            n = check_int("OnlineTask num_classes", 2 if self.num_classes is None else self.num_classes, 2)
            if self.source != "blobs" and n != 2:
                raise ConfigError(f"{self.source} makes exactly 2 classes, got num_classes={n!r}")
            set_("num_classes", n)
        if self.projection is not None:
            set_("projection", check_int("OnlineTask projection (inputs after a random projection, or None)", self.projection, 1))
        set_("noise", check_number("OnlineTask noise", self.noise, low=0.0))
        set_("bias", check_bool("OnlineTask bias", self.bias))
        set_("permute_labels", check_bool("OnlineTask permute_labels", self.permute_labels))
        self.check_bytes(1)

    def check_bytes(self, batch_size: int) -> None:
        """MemoryBudgetError unless :meth:`sample`'s arrays for ``batch_size`` episodes fit the byte budget:
        the drawn examples (float64, then float32), a projection matrix per episode, labels, targets, teacher
        and masks."""
        from ..errors import check_bytes

        n, native = self.steps + self.query, 64 if self.source == "digits" else 2
        per_episode = n * (native * 8 + self.input_size * 20 + 16 + 16 * self.n_classes) + native * (self.projection or 0) * 8
        check_bytes(f"OnlineTask episodes (batch_size={batch_size} x {n} examples x {self.input_size} inputs)",
                    batch_size * per_episode, "use fewer steps/query, a smaller projection, or a smaller batch_size")

    def sample(self, batch_size: int, seed: int = 0, device=None) -> Episode:
        """``steps + query`` ticks: the stream (labels as ``teacher``), then the probe queries."""
        check_batch(batch_size)
        self.check_bytes(batch_size)
        seed = check_int("OnlineTask seed", seed, 0)
        episode = with_queries(self.episode(self.steps, batch_size, self.query, seed=seed), [self.steps], self.n_classes)
        return episode.to(device) if device is not None else episode

    def metrics(self, outputs: Tensor, episode: Episode) -> dict[str, Tensor]:
        outputs = self.check_outputs(outputs, episode)
        right = (outputs.argmax(-1) == episode.targets.argmax(-1)).to(outputs.dtype)
        query = episode.loss_mask[..., 0]
        stream = 1 - query
        return {"accuracy": (right * query).sum() / query.sum().clamp(min=1),
                "online_accuracy": (right * stream).sum() / stream.sum().clamp(min=1)}

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.source == "digits" else self.num_classes

    @property
    def input_size(self) -> int:
        native = 64 if self.source == "digits" else 2
        return (self.projection or native) + int(self.bias)

    def episode(self, steps: int, batch: int, query: int = 100, seed: int = 0) -> Stream:
        steps, batch, query = (check_int(f"episode {what}", v, 1) for what, v in (("steps", steps), ("batch", batch), ("query", query)))
        seed = check_int("episode seed", seed, 0)
        from ..errors import check_bytes

        native = 64 if self.source == "digits" else 2  # the drawn examples (float64), then float32 tensors
        check_bytes(f"OnlineTask.episode (batch={batch} x {steps + query} examples x {self.input_size} inputs)",
                    batch * (steps + query) * (native * 8 + self.input_size * 12 + 16), "use fewer steps/query or a smaller batch")
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(batch):
            x, y = self._draw(steps + query, rng, query)
            if self.projection is not None:
                x = x @ rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), (x.shape[1], self.projection))
            if self.permute_labels:
                y = rng.permutation(self.n_classes)[y]
            if self.bias:
                x = np.concatenate([x, np.ones((len(x), 1))], 1)
            xs.append(x)
            ys.append(y)
        x = torch.tensor(np.stack(xs, 1), dtype=torch.float32)  # [T + Q, B, n_in]
        y = torch.tensor(np.stack(ys, 1), dtype=torch.long)
        return Stream(x[:steps], y[:steps], x[steps:], y[steps:])

    def _draw(self, n: int, rng: np.random.Generator, query: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` examples, the last ``query`` of them the queries: never among the stream's."""
        from sklearn import datasets

        rs = int(rng.integers(2**31))
        if self.source == "digits":
            X, Y = _digits()
            pool = np.flatnonzero(np.isin(Y, self.classes))
            if n <= len(pool):  # one draw without replacement: stream and queries distinct
                idx = rng.choice(pool, n, replace=False)
            else:  # a stream longer than the pool repeats examples, but never a query's
                if query >= len(pool):
                    raise ConfigError(f"OnlineTask digits {self.classes} has {len(pool)} images, not more than "
                                      f"query={query}: use fewer queries")
                q = rng.choice(pool, query, replace=False)
                rest = np.setdiff1d(pool, q)
                idx = np.concatenate([rng.choice(rest, n - query, replace=True), q])
            lookup = {c: i for i, c in enumerate(self.classes)}
            return X[idx], np.array([lookup[c] for c in Y[idx]])
        if self.source == "xor":
            x = rng.uniform(-1, 1, (n, 2))
            y = (x[:, 0] * x[:, 1] > 0).astype(int)
            x = x + rng.normal(0, self.noise, x.shape)
        elif self.source == "moons":
            x, y = datasets.make_moons(n, noise=self.noise, random_state=rs)
        elif self.source == "circles":
            x, y = datasets.make_circles(n, noise=self.noise, factor=0.5, random_state=rs)
        else:
            x, y = datasets.make_blobs(n, centers=self.num_classes, cluster_std=1.0 + 10 * self.noise,
                                       center_box=(-4, 4), random_state=rs)
        return (x - x.mean(0)) / x.std(0).clip(min=1e-6), y


def with_queries(stream: Stream, at, n_classes: int, stream_loss: bool = False) -> Episode:
    """One :class:`Episode` of the stream with its query examples inserted as probe ticks after each
    step in ``at`` (a block of ``Q`` ticks each; probes leave the state alone, so each block scores
    the state after that many examples). Labels arrive as ``teacher`` on stream ticks only. The loss
    and metric masks cover the probe ticks, and the stream ticks too with ``stream_loss`` (each
    example predicted before its label: the online loss of VSML)."""
    T = stream.x.shape[0]
    at = sorted(set(check_int(f"query point at[{i}] (a step count in 1..{T})", k, 1, T)
                    for i, k in enumerate(check_ints("query points at", at))))
    Q = stream.xq.shape[0]
    xs, ys, probe, done = [], [], [], 0
    for k in at:
        xs += [stream.x[done:k], stream.xq]
        ys += [stream.y[done:k], stream.yq]
        probe += [False] * (k - done) + [True] * Q
        done = k
    targets = F.one_hot(torch.cat(ys), n_classes).float()
    probe = torch.tensor(probe)
    teacher = targets * (~probe).view(-1, 1, 1)
    scored = torch.ones_like(probe) if stream_loss else probe
    mask = scored.view(-1, 1, 1).float().expand_as(targets).contiguous()
    return Episode(torch.cat(xs), targets, mask, mask, teacher, probe)


# Meta-training tasks and held-out ones. Digits through a 32-d random projection keep the
# network small; "another input size" is the 16-d projection, "other classes" digits 5-9.
META_TRAIN = {
    "digits0-4": OnlineTask("digits", classes=(0, 1, 2, 3, 4), projection=32, name="digits0-4"),
}
HELD_OUT = {
    "digits5-9": OnlineTask("digits", classes=(5, 6, 7, 8, 9), projection=32, name="digits5-9"),
    "digits5-9/16in": OnlineTask("digits", classes=(5, 6, 7, 8, 9), projection=16, name="digits5-9/16in"),
    "blobs5": OnlineTask("blobs", num_classes=5, projection=32, name="blobs5"),
    "moons": OnlineTask("moons", projection=32, name="moons"),
}
