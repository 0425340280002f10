"""Binary pattern completion (Miconi, Clune & Stanley 2018): store a few patterns, complete a cue.

One episode: ``n_patterns`` random +-1 patterns of ``n_bits`` bits; each shown for ``present_ticks``
ticks then ``blank_ticks`` blank ticks, all patterns in shuffled order, the whole sequence shown
``repeats`` times (reshuffled each time); then a cue for ``cue_ticks`` ticks: one of the patterns
with every bit zeroed with probability ``cue_zero_prob``. The network must output the full pattern
at the last tick. Defaults are the paper's 1000-bit benchmark: 2 * 5 * (6 + 4) + 6 = 106 ticks.

With ``bias=True`` the input has one extra channel that is always 1 (a bias neuron, as in the
51-neuron, 50-bit network); targets cover only the pattern bits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, check_int


class Episode(NamedTuple):
    inputs: Tensor  # [T, B, n_in]
    targets: Tensor  # [T, B, n_out]
    mask: Tensor  # [T, B] bool: the ticks whose output is scored


def generator(seed) -> torch.Generator:
    """Every episode comes from a seed (an int) or an existing ``torch.Generator``."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def random_signs(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).float() * 2 - 1


def shuffled(g: torch.Generator, batch: int, n: int) -> Tensor:
    """An independent random order of ``n`` items per episode, ``[batch, n]``."""
    return torch.rand(batch, n, generator=g).argsort(1)


def scored(outputs: Tensor, episode: Episode, n_out: int) -> tuple[Tensor, Tensor]:
    """(outputs, targets) at the scored ticks, ``[K, n_out]``; validates the outputs' shape."""
    if outputs.dim() == 4 and outputs.shape[-1] == 1:
        outputs = outputs[..., 0]
    T, B = episode.targets.shape[:2]
    if outputs.dim() != 3 or tuple(outputs.shape) != (T, B, n_out):
        raise ShapeError(f"outputs must have shape [T={T}, B={B}, {n_out}] (or [..., 1]), got {list(outputs.shape)}")
    return outputs[episode.mask], episode.targets[episode.mask].to(outputs.dtype)


def squared_error(outputs: Tensor, episode: Episode, n_out: int) -> Tensor:
    """Sum of squared errors over bits and scored ticks, averaged over episodes."""
    y, target = scored(outputs, episode, n_out)
    return (y - target).pow(2).sum() / episode.targets.shape[1]


def sign_error(outputs: Tensor, episode: Episode, n_out: int) -> Tensor:
    """Fraction of scored bits whose sign is wrong."""
    y, target = scored(outputs.detach(), episode, n_out)
    return (torch.sign(y) != target).float().mean()


class PatternCompletionTask:
    def __init__(
        self,
        n_bits: int = 1000,
        n_patterns: int = 5,
        present_ticks: int = 6,
        blank_ticks: int = 4,
        repeats: int = 2,
        cue_ticks: int = 6,
        cue_zero_prob: float = 0.5,
        bias: bool = False,
    ):
        self.n_bits = check_int("PatternCompletionTask n_bits", n_bits, 1)
        self.n_patterns = check_int("PatternCompletionTask n_patterns", n_patterns, 1)
        self.present_ticks = check_int("PatternCompletionTask present_ticks", present_ticks, 1)
        self.blank_ticks = check_int("PatternCompletionTask blank_ticks", blank_ticks, 0)
        self.repeats = check_int("PatternCompletionTask repeats", repeats, 1)
        self.cue_ticks = check_int("PatternCompletionTask cue_ticks", cue_ticks, 1)
        if isinstance(cue_zero_prob, bool) or not isinstance(cue_zero_prob, (int, float)) or not 0 <= cue_zero_prob < 1:
            raise ConfigError(f"PatternCompletionTask cue_zero_prob must be a number in [0, 1), got {cue_zero_prob!r}")
        if not isinstance(bias, bool):
            raise ConfigError(f"PatternCompletionTask bias must be True or False, got {bias!r}")
        self.cue_zero_prob, self.bias = float(cue_zero_prob), bias

    @property
    def ticks(self) -> int:
        return self.repeats * self.n_patterns * (self.present_ticks + self.blank_ticks) + self.cue_ticks

    @property
    def num_inputs(self) -> int:
        return self.n_bits + int(self.bias)

    @property
    def num_outputs(self) -> int:
        return self.n_bits

    def sample(self, batch_size: int = 1, seed: int | torch.Generator = 0) -> Episode:
        """A batch of independent episodes: inputs ``[T, B, n_in]``, targets ``[T, B, n_bits]``, mask ``[T, B]``."""
        B = check_int("batch_size", batch_size, 1)
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
        mask = torch.zeros(self.ticks, B, dtype=torch.bool)
        mask[-1] = True
        return Episode(inputs, target.unsqueeze(0).expand(self.ticks, B, self.n_bits).contiguous(), mask)

    def loss(self, outputs: Tensor, episode: Episode) -> Tensor:
        """Sum of squared errors between the last tick's output and the full pattern (mean over episodes)."""
        return squared_error(outputs, episode, self.n_bits)

    def sign_error(self, outputs: Tensor, episode: Episode) -> Tensor:
        """Fraction of the pattern's bits whose sign is wrong at the last tick."""
        return sign_error(outputs, episode, self.n_bits)
