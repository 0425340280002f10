"""Miconi 2016's one-shot association and reversal tasks.

Inputs are ``pattern_bits`` pattern channels followed by ``label_bits`` label channels; the
network's outputs are the label neurons. Each episode draws ``n_patterns`` random +-1 patterns and
gives each a distinct +-1 label code (``2 * onehot - 1``, assigned in a random order per episode,
so nothing about the association can be learned across episodes: it must be stored in the trace).

One *phase*: every pattern in shuffled order, shown for ``present_ticks`` ticks with its label
present only during the first ``label_ticks`` of them, then ``blank_ticks`` blank ticks; then a
query: one random pattern for ``query_ticks`` ticks with no label. The label neurons must output
that pattern's label on the query's last tick.

- one-shot (default): one phase, 2 * (4 + 2) + 8 = 20 ticks.
- ``reversal=True``: two phases of 2 * (2 + 1) + 4 = 10 ticks each; in the second the labels are
  swapped (rotated by one pattern) from tick 10 on, and both queries are scored. Use
  ``OneShotTask.reversal_task()`` for these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import Episode, SignTask, check_batch, check_fields, generator, random_signs, shuffled


@dataclass(frozen=True)
class OneShotTask(SignTask):
    pattern_bits: int = 8
    label_bits: int = 2
    n_patterns: int = 2
    present_ticks: int = 4
    label_ticks: int = 1
    blank_ticks: int = 2
    query_ticks: int = 8
    reversal: bool = False

    def __post_init__(self):
        check_fields(self, ints={"pattern_bits": 1, "label_bits": 1, "n_patterns": 1, "present_ticks": 1, "label_ticks": 1,
                                 "blank_ticks": 0, "query_ticks": 1}, bools=("reversal",))
        if self.label_ticks > self.present_ticks:
            raise ConfigError(f"OneShotTask label_ticks ({self.label_ticks}) cannot exceed present_ticks ({self.present_ticks})")
        if self.label_bits < self.n_patterns:
            raise ConfigError(f"OneShotTask needs label_bits >= n_patterns for distinct labels, got {self.label_bits} < {self.n_patterns}")
        if self.reversal and self.n_patterns < 2:
            raise ConfigError("OneShotTask reversal needs n_patterns >= 2 (labels swap between patterns)")
        self.check_bytes(1)

    def check_bytes(self, batch_size: int) -> None:
        """MemoryBudgetError unless :meth:`sample`'s tensors for ``batch_size`` episodes fit the byte budget:
        inputs, targets and the mask (float32 ``[T, B, ...]``), the patterns and labels, and the label codes."""
        from ..errors import check_bytes

        P, L = self.n_patterns, self.label_bits
        size = batch_size * (4 * self.ticks * (self.num_inputs + 2 * L) + 12 * P * (self.pattern_bits + L)) + 8 * L * L
        check_bytes(f"OneShotTask episodes (batch_size={batch_size} x {self.ticks} ticks x {self.num_inputs} inputs, "
                    f"label_bits={L})", size, "use fewer bits, patterns or ticks, or a smaller batch_size")

    @classmethod
    def reversal_task(cls, **kw) -> "OneShotTask":
        """The reversal task: labels swap at tick 10 of a 20-tick episode (with the default sizes)."""
        return cls(**{**REVERSAL, **kw})

    @property
    def phase_ticks(self) -> int:
        return self.n_patterns * (self.present_ticks + self.blank_ticks) + self.query_ticks

    @property
    def ticks(self) -> int:
        return self.phase_ticks * (2 if self.reversal else 1)

    @property
    def num_inputs(self) -> int:
        return self.pattern_bits + self.label_bits

    @property
    def num_outputs(self) -> int:
        return self.label_bits

    def sample(self, batch_size: int = 1, seed: int | torch.Generator = 0, device=None) -> Episode:
        """Inputs ``[T, B, pattern_bits + label_bits]``, label targets ``[T, B, label_bits]``, scored on each query's last tick."""
        B = check_batch(batch_size)
        self.check_bytes(B)
        g = generator(seed)
        P, rows = self.n_patterns, torch.arange(B)
        patterns = random_signs(g, B, P, self.pattern_bits)
        codes = 2 * torch.eye(self.label_bits)[:P] - 1  # distinct +-1 codes
        labels = codes[shuffled(g, B, P)]  # [B, P, label_bits]: a fresh assignment per episode
        inputs = torch.zeros(self.ticks, B, self.num_inputs)
        targets = torch.zeros(self.ticks, B, self.label_bits)
        mask = torch.zeros(self.ticks, B, self.label_bits)
        for phase in range(2 if self.reversal else 1):
            t = phase * self.phase_ticks
            if phase == 1:
                labels = labels.roll(1, dims=1)  # reversal: each pattern takes another's label
            for k in shuffled(g, B, P).T:  # k: [B] pattern index shown by each episode
                inputs[t : t + self.present_ticks, :, : self.pattern_bits] = patterns[rows, k]
                inputs[t : t + self.label_ticks, :, self.pattern_bits :] = labels[rows, k]
                t += self.present_ticks + self.blank_ticks
            q = torch.randint(0, P, (B,), generator=g)
            inputs[t : t + self.query_ticks, :, : self.pattern_bits] = patterns[rows, q]
            t += self.query_ticks
            targets[t - 1], mask[t - 1] = labels[rows, q], 1.0
        episode = Episode(inputs, targets, mask, mask)
        return episode.to(device) if device is not None else episode


REVERSAL = {"present_ticks": 2, "blank_ticks": 1, "query_ticks": 4, "reversal": True}
