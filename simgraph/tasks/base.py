"""The task protocol: one ``Episode`` type and the four calls every task gives the training loop.

A task is a frozen dataclass (its fields are the settings a config or a curriculum changes)::

    task.sample(batch_size, seed=0, device=None) -> Episode       # same seed, same episodes
    task.loss(outputs, episode)    -> 0-d tensor                   # what meta-training minimises
    task.metrics(outputs, episode) -> {"accuracy": 0-d tensor, ...}  # higher is better for "accuracy"
    task.num_inputs, task.num_outputs                              # the graph's input / output sizes

``outputs`` are the output neurons' readout per tick, ``[T, B, num_outputs]``.

The loss is a sum over the episode's entries divided by a normaliser that adds up over episodes:
``loss = error(outputs, episode).sum() / loss_norm(episode)``. That is what lets truncated BPTT
split an episode into windows (the windows' errors, over the whole episode's normaliser, add up
to the loss) and data parallelism split a batch across processes (each process's gradient is
weighted by its own normaliser).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ShapeError, check_bool, check_int, check_probability, check_seed, check_type, unknown


class Episode(NamedTuple):
    """A batch of B episodes of T ticks.

    ``teacher`` (optional): a label signal per tick for rules that learn from labels (SweepRule:
    ``backward_pass`` gets ``teacher[t]``; all-zero rows teach nothing). ``probe`` (optional,
    ``[T]`` bool): ticks that read the network without changing it (the state after a probe tick
    is discarded), e.g. the unseen query examples of an online-learning episode.
    """

    inputs: Tensor  # [T, B, num_inputs]
    targets: Tensor  # [T, B, num_outputs]
    loss_mask: Tensor  # [T, B, num_outputs], 1 where the loss looks
    metric_mask: Tensor  # [T, B, num_outputs], 1 where the metric looks
    teacher: Tensor | None = None  # [T, B, num_outputs]
    probe: Tensor | None = None  # [T] bool

    def ticks(self, part: slice) -> "Episode":
        """The ticks ``part`` of every episode (a truncated-BPTT window)."""
        return Episode(*(None if x is None else x[part] for x in self))

    def episodes(self, part: slice) -> "Episode":
        """The episodes ``part`` of the batch (one process's share); ``probe`` is per tick, kept whole."""
        return Episode(*(None if x is None else x if i == 5 else x[:, part] for i, x in enumerate(self)))

    def to(self, device) -> "Episode":
        from ..errors import check_device

        device = check_device("task.sample", device)
        return Episode(*(None if x is None else x.to(device) for x in self))


class Task:
    """Base of every task: subclasses are frozen dataclasses that implement ``sample`` and ``error``."""

    metric = "accuracy"  # the metric a curriculum and model selection look at (higher is better)

    @property
    def num_inputs(self) -> int:
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def sample(self, batch_size: int, seed: int | torch.Generator = 0, device=None) -> Episode:
        raise NotImplementedError

    def error(self, outputs: Tensor, episode: Episode) -> Tensor:
        """Per-entry loss, zero where ``loss_mask`` is zero (any shape; the loss is its sum over ``loss_norm``)."""
        return (outputs - episode.targets).square() * episode.loss_mask

    def loss_norm(self, episode: Episode) -> Tensor:
        """The loss's normaliser (it must add up over episodes): by default the number of scored entries."""
        return episode.loss_mask.sum().clamp(min=1)

    def loss(self, outputs: Tensor, episode: Episode) -> Tensor:
        outputs = self.check_outputs(outputs, episode)
        return self.error(outputs, episode).sum() / self.loss_norm(episode)

    def metrics(self, outputs: Tensor, episode: Episode) -> dict[str, Tensor]:
        """Sign accuracy on the metric mask (targets +-1); tasks with other targets override this."""
        outputs = self.check_outputs(outputs, episode)
        right = (torch.sign(outputs) == episode.targets).to(outputs.dtype) * episode.metric_mask
        return {"accuracy": right.sum() / episode.metric_mask.sum().clamp(min=1)}

    # ------------------------------------------------------------------ shared
    def check_outputs(self, outputs: Tensor, episode: Episode) -> Tensor:
        """``[T, B, n_out]`` (or ``[T, B, n_out, 1]``, squeezed) matching the episode; ShapeError otherwise."""
        check_type(type(self).__name__, outputs, Tensor, "outputs as a tensor [T, B, n_out]", error=ShapeError)
        if outputs.dim() == 4 and outputs.shape[-1] == 1:
            outputs = outputs[..., 0]
        want = tuple(episode.targets.shape)
        if tuple(outputs.shape) != want:
            raise ShapeError(f"{type(self).__name__}: outputs must have shape [T, B, n_out] = {list(want)} (one channel "
                             f"per output neuron), got {list(outputs.shape)}")
        return outputs

    def replace(self, **changes) -> "Task":
        """A copy with some fields changed (checked again), e.g. ``task.replace(num_patterns=8)``."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                raise unknown(f"{type(self).__name__} setting", key, names)
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict:
        """The task's fields as plain values (for configs and checkpoints)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}


class SignTask(Task):
    """Miconi's tasks (pattern completion, one-shot, reversal): the loss is the squared error summed
    over bits and scored ticks per episode, averaged over episodes; ``sign_error = 1 - accuracy``."""

    def loss_norm(self, episode: Episode) -> Tensor:
        return torch.tensor(float(episode.targets.shape[1]), device=episode.targets.device)

    def metrics(self, outputs: Tensor, episode: Episode) -> dict[str, Tensor]:
        acc = super().metrics(outputs, episode)["accuracy"]
        return {"accuracy": acc, "sign_error": 1 - acc}


def generator(seed) -> torch.Generator:
    """Every episode comes from a seed (an int, Python or numpy) or an existing ``torch.Generator``."""
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(check_seed("task.sample seed (or a torch.Generator)", seed))


def random_signs(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).float() * 2 - 1


def shuffled(g: torch.Generator, batch: int, n: int) -> Tensor:
    """An independent random order of ``n`` items per episode, ``[batch, n]``."""
    return torch.rand(batch, n, generator=g).argsort(1)


def check_batch(batch_size, who: str = "task.sample") -> int:
    return check_int(f"{who} batch_size", batch_size, 1)


def check_fields(task: Task, ints: dict[str, int] = {}, bools: tuple[str, ...] = (), probabilities: dict[str, bool] = {},
                 ) -> None:
    """Check a frozen task dataclass's fields and store them as plain Python values (a numpy int becomes an
    int, so the task's settings stay JSON-serialisable): ``ints`` maps a field to its lowest value,
    ``bools`` are True/False fields, ``probabilities`` maps a field to whether 1 is excluded."""
    who = type(task).__name__
    for name, low in ints.items():
        object.__setattr__(task, name, check_int(f"{who} {name}", getattr(task, name), low))
    for name in bools:
        object.__setattr__(task, name, check_bool(f"{who} {name}", getattr(task, name)))
    for name, below_one in probabilities.items():
        object.__setattr__(task, name, check_probability(f"{who} {name}", getattr(task, name), below_one=below_one))
