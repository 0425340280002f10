"""Binary pattern completion (Miconi, Clune & Stanley 2018): store a few patterns, complete a cue.

One episode: ``n_patterns`` random +-1 patterns of ``n_bits`` bits; each shown for ``present_ticks``
ticks then ``blank_ticks`` blank ticks, all patterns in shuffled order, the whole sequence shown
``repeats`` times (reshuffled each time); then a cue for ``cue_ticks`` ticks: one of the patterns
with every bit zeroed with probability ``cue_zero_prob``. The network must output the full pattern
at the last tick. Defaults are the paper's 1000-bit benchmark: 2 * 5 * (6 + 4) + 6 = 106 ticks.

With ``bias=True`` the input has one extra channel that is always 1 (a bias neuron, as in the
51-neuron, 50-bit network); targets cover only the pattern bits.

Loss: the sum of squared errors over the bits at the last tick, averaged over episodes (the
paper's). Metrics: ``sign_error`` (fraction of wrong bits at the last tick) and
``accuracy = 1 - sign_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Episode, SignTask, check_batch, check_fields, generator, random_signs, shuffled


@dataclass(frozen=True)
class PatternCompletionTask(SignTask):
    n_bits: int = 1000
    n_patterns: int = 5
    present_ticks: int = 6
    blank_ticks: int = 4
    repeats: int = 2
    cue_ticks: int = 6
    cue_zero_prob: float = 0.5
    bias: bool = False

    def __post_init__(self):
        check_fields(self, ints={"n_bits": 1, "n_patterns": 1, "present_ticks": 1, "blank_ticks": 0, "repeats": 1,
                                 "cue_ticks": 1}, bools=("bias",), probabilities={"cue_zero_prob": True})
        self.check_bytes(1)

    def check_bytes(self, batch_size: int) -> None:
        """MemoryBudgetError unless :meth:`sample`'s tensors for ``batch_size`` episodes fit the byte budget:
        the blocks and their concatenation (inputs), targets and the mask, float32 ``[T, B, ...]``."""
        from ..errors import check_bytes

        size = batch_size * (4 * self.ticks * (3 * self.num_inputs + 2 * self.n_bits) + 12 * self.n_patterns * self.n_bits)
        check_bytes(f"PatternCompletionTask episodes (batch_size={batch_size} x {self.ticks} ticks x {self.num_inputs} "
                    f"inputs)", size, "use fewer n_bits, patterns or ticks, or a smaller batch_size")

    @property
    def ticks(self) -> int:
        return self.repeats * self.n_patterns * (self.present_ticks + self.blank_ticks) + self.cue_ticks

    @property
    def num_inputs(self) -> int:
        return self.n_bits + int(self.bias)

    @property
    def num_outputs(self) -> int:
        return self.n_bits

    def sample(self, batch_size: int = 1, seed: int | torch.Generator = 0, device=None) -> Episode:
        """Inputs ``[T, B, n_in]``, targets ``[T, B, n_bits]`` (the pattern), scored at the last tick."""
        B = check_batch(batch_size)
        self.check_bytes(B)
        g = generator(seed)
        patterns = random_signs(g, B, self.n_patterns, self.n_bits)
        rows = torch.arange(B).unsqueeze(1)
        period = self.present_ticks + self.blank_ticks
        blocks = []
        for _ in range(self.repeats):
            seq = patterns[rows, shuffled(g, B, self.n_patterns)]  # [B, P, bits]
            block = torch.zeros(B, self.n_patterns, period, self.n_bits)
            block[:, :, : self.present_ticks] = seq.unsqueeze(2)
            blocks.append(block.reshape(B, -1, self.n_bits))
        which = torch.randint(0, self.n_patterns, (B,), generator=g)
        target = patterns[torch.arange(B), which]  # [B, bits]
        cue = target * (torch.rand(B, self.n_bits, generator=g) >= self.cue_zero_prob)
        blocks.append(cue.unsqueeze(1).expand(B, self.cue_ticks, self.n_bits))
        inputs = torch.cat(blocks, 1).transpose(0, 1).contiguous()  # [T, B, bits]
        if self.bias:
            inputs = torch.cat([inputs, torch.ones(self.ticks, B, 1)], 2)
        episode = last_tick_episode(inputs, target)
        return episode.to(device) if device is not None else episode


def last_tick_episode(inputs: Tensor, target: Tensor) -> Episode:
    """An episode scored at its last tick only, against ``target [B, n_out]``."""
    T, B = inputs.shape[:2]
    targets = target.unsqueeze(0).expand(T, B, target.shape[-1]).contiguous()
    mask = torch.zeros_like(targets)
    mask[-1] = 1.0
    return Episode(inputs, targets, mask, mask)
