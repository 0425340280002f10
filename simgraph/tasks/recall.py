"""The recall task family: store a stream of patterns online, recall it when cued.

An episode (REFERENCES.md section 1, defined precisely here):

- **write phase**: ``num_patterns`` (K) random +-1 patterns of ``bits`` (D) bits, each shown for
  ``present_ticks`` (p) ticks then ``gap_ticks`` (g) blank ticks; the stream is shown ``repeats`` (r)
  times, each repeat in a fresh shuffled order (in stored order when ``shuffle=False``).
- **delay**: ``delay`` (d) ticks of zeros, or of random +-1 patterns that are never queried when
  ``distractors=True``.
- **recall phase**: ``queries`` (Q) queries, each shown for ``query_ticks`` ticks followed by ``gap_ticks``
  blank ticks; the output is read on the query's last ``readout_ticks`` ticks. Queried patterns are
  drawn uniformly from the K stored ones (without replacement while Q <= K).

Cue kinds and the input each tick carries (``num_inputs`` channels, one input neuron each):

- ``partial`` (auto-associative, ``num_inputs = D``): write shows the pattern; a query shows the
  pattern with each bit kept with probability ``cue_fraction`` and zeroed otherwise.
- ``key`` (hetero-associative, ``num_inputs = 2D``): each stored item is a (key, value) pair of
  patterns; write shows ``[key, value]``; a query shows ``[key, 0]`` and the value must be produced.
- ``position`` (``num_inputs = D + K``): write shows ``[pattern, onehot(k)]`` for the k-th pattern of
  the stream (``repeats`` must be 1, so "k-th" is well defined); a query shows ``[0, onehot(k)]``.

With ``teach=True`` the value is also a *teacher input* to the output neurons while it is written:
``D`` more input channels (the last ones), which carry the value during the write phase and zeros at
queries (for ``key`` cues these are the value channels themselves, so nothing is added). A network
whose output neurons are not its input neurons (``recall_network``: input -> memory -> output) needs
it: without it the output neurons never see the pattern while it is stored, every output neuron runs
the same shared function with the same type embedding, and no rule can know which output stands for
which bit, so chance is the only possible result. Route the channels with ``inputs=["input",
"output"]`` (``recall_network(teach=True)`` does; a config fills ``teach`` from the task).
``cue="key", teach=True`` on such a net is the hetero-associative task: the key enters the input
population, the value the output population while it is written, and a query gives the whole key
(every value bit is scored). ``cue="partial", teach=True`` asks more: the value from half of a key
that equals it, so the memory's code of the cue overlaps its code of the stored key only partly (a
hand-set hetero-associative Hebbian memory with 32 memory neurons: 0.93 at K=4 with half cues
against 0.99 with whole keys).

Targets are the full D-bit pattern on the ``num_outputs = D`` output neurons. The loss is the mean
squared error at read-out ticks; the metric is bit accuracy (sign of the output) on the bits the cue
did *not* give (all D bits for ``key``/``position``). Capacity is the largest K with >= 95% bit accuracy.

**Mixed loads** (``min_patterns = m > 0``): each episode stores its own number of patterns, drawn
uniformly from ``m..K``; the write phase keeps K slots and leaves the slots of patterns an episode
does not store blank, and its queries ask only for what it stored. A rule trained this way is
trained at every load up to K (a fixed load, the default ``m = 0``, leaves the lower loads unseen).
To score one load, set ``min_patterns = 0``. ``blank_slots`` says where an episode's blank slots lie:
``"shuffled"`` (default) among its patterns, in the shuffled order; ``"first"`` all before them, so an
episode storing k patterns ends its write phase as a fixed-load-k episode does, its queries right after
its last pattern (a fixed-load episode's timing; with ``"shuffled"`` a k=1 episode's pattern sits
(K-1)/2 slots before the queries on average); ``"mixed"`` each episode one of the two, "first" with
probability 1/2. A fixed load (``min_patterns = 0``) has no blank slots.
``load_weighting = p`` weighs each mixed-load episode's loss by ``k^-p`` (``k`` the patterns it stores;
the loss mask carries the weight, the normaliser is its sum): with the default 0 every read-out entry
counts the same, so the few-pattern episodes, whose bits are nearly all right, add little to the mean
loss; with ``p = 1`` a one-pattern episode counts as much as sixteen sixteen-pattern ones. A fixed
load ignores it.

**Objective** (``objective``): ``"squared"`` (default) is the squared error above; ``"squared_hinge"``
is ``max(0, 1 - y t)^2`` on the same entries (``y`` the output, ``t`` the +-1 target): no loss once a
bit is right by a margin of 1, so the loss sits on the wrong and barely-right bits (those that decide
the bit accuracy) instead of on the size of outputs that are already right, such as outputs beyond 1.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import Tensor

from ..errors import ConfigError, check_choice, check_number
from .base import Episode, Task, check_batch, check_fields, generator, random_signs

CUES = ("partial", "key", "position")
BLANK_SLOTS = ("shuffled", "first", "mixed")  # mixed loads: where an episode's blank slots lie
OBJECTIVES = ("squared", "squared_hinge")  # the per-entry loss


@dataclass(frozen=True)
class RecallTask(Task):
    num_patterns: int = 4
    bits: int = 16
    present_ticks: int = 2
    gap_ticks: int = 1
    repeats: int = 1
    shuffle: bool = True
    delay: int = 0
    distractors: bool = False
    queries: int = 4
    cue: str = "partial"
    cue_fraction: float = 0.5
    query_ticks: int = 3
    readout_ticks: int = 1
    teach: bool = False
    min_patterns: int = 0
    blank_slots: str = "shuffled"
    objective: str = "squared"
    load_weighting: float = 0.0

    def __post_init__(self):
        positive = ("num_patterns", "bits", "present_ticks", "repeats", "queries", "query_ticks", "readout_ticks")
        check_fields(self, ints={**{name: 1 for name in positive}, "gap_ticks": 0, "delay": 0, "min_patterns": 0},
                     bools=("shuffle", "distractors", "teach"), probabilities={"cue_fraction": True})
        check_choice("recall cue", self.cue, CUES)
        check_choice("RecallTask blank_slots (where a mixed-load episode's blank slots lie)", self.blank_slots, BLANK_SLOTS)
        check_choice("RecallTask objective (the per-entry loss)", self.objective, OBJECTIVES)
        object.__setattr__(self, "load_weighting", check_number("RecallTask load_weighting (the loss weight k^-p of an "
                                                                "episode storing k patterns)", self.load_weighting, low=0.0))
        if self.min_patterns > self.num_patterns:
            raise ConfigError(f"RecallTask min_patterns={self.min_patterns} exceeds num_patterns={self.num_patterns} "
                              f"(each episode stores between min_patterns and num_patterns; 0: always num_patterns)")
        if self.min_patterns and self.cue == "position":
            raise ConfigError("RecallTask min_patterns needs cue='partial' or 'key' (a position cue's one-hot width is "
                              "num_patterns)")
        if self.readout_ticks > self.query_ticks:
            raise ConfigError(f"RecallTask readout_ticks={self.readout_ticks} exceeds query_ticks={self.query_ticks}")
        if self.teach is True and self.cue == "position":
            raise ConfigError("RecallTask teach=True supports cue='partial' and cue='key' (a position cue has no "
                              "value channels to teach with)")
        if self.cue == "position" and self.repeats != 1:
            raise ConfigError("RecallTask cue='position' needs repeats=1 (the k-th pattern is ambiguous otherwise)")
        self.check_bytes(1)

    def episode_bytes(self, batch_size: int) -> int:
        """What :meth:`sample` allocates for ``batch_size`` episodes: inputs, targets and two masks (float32,
        ``[T, B, ...]``) and the drawn patterns (keys too for ``cue='key'``)."""
        T, K, D = self.num_ticks, self.num_patterns, self.bits
        return batch_size * (4 * T * (self.num_inputs + 3 * D) + 12 * K * D * (2 if self.cue == "key" else 1))

    def check_bytes(self, batch_size: int) -> None:
        """MemoryBudgetError unless ``batch_size`` episodes fit the byte budget (see :func:`simgraph.errors.check_bytes`)."""
        from ..errors import check_bytes

        check_bytes(f"RecallTask episodes (batch_size={batch_size} x {self.num_ticks} ticks x {self.num_inputs} inputs, "
                    f"bits={self.bits}, num_patterns={self.num_patterns})", self.episode_bytes(batch_size),
                    "use fewer bits, patterns or ticks, or a smaller batch_size")

    # ------------------------------------------------------------------ sizes
    @property
    def num_inputs(self) -> int:
        return self.cue_inputs + self.teacher_inputs

    @property
    def cue_inputs(self) -> int:
        """Input channels that carry the stream and the cues (all but the teacher's)."""
        return {"partial": self.bits, "key": (1 if self.teach else 2) * self.bits, "position": self.bits + self.num_patterns}[self.cue]

    @property
    def teacher_inputs(self) -> int:
        """Input channels that carry the value to the output neurons while it is written (``teach``)."""
        return self.bits if self.teach else 0

    @property
    def num_outputs(self) -> int:
        return self.bits

    @property
    def write_ticks(self) -> int:
        return self.repeats * self.num_patterns * (self.present_ticks + self.gap_ticks)

    @property
    def num_ticks(self) -> int:
        return self.write_ticks + self.delay + self.queries * (self.query_ticks + self.gap_ticks)

    # ------------------------------------------------------------------ episodes
    def sample(self, batch_size: int, seed: int | torch.Generator = 0, device=None) -> Episode:
        """A batch of episodes; the same seed gives the same episodes (generated on CPU, then moved)."""
        batch_size = check_batch(batch_size, "RecallTask.sample")
        self.check_bytes(int(batch_size))
        g = generator(seed)
        B, K, D = batch_size, self.num_patterns, self.bits
        sign = lambda *shape: random_signs(g, *shape)  # noqa: E731
        values = sign(B, K, D)
        keys = sign(B, K, D) if self.cue == "key" else None
        inputs = torch.zeros(self.num_ticks, B, self.num_inputs)
        targets = torch.zeros(self.num_ticks, B, D)
        loss_mask = torch.zeros(self.num_ticks, B, D)
        metric_mask = torch.zeros(self.num_ticks, B, D)
        batch = torch.arange(B)

        def shown(k: Tensor) -> Tensor:  # [B] item ids -> what the write phase shows
            if self.cue == "partial":
                return values[batch, k].repeat(1, 2) if self.teach else values[batch, k]
            if self.cue == "key":
                return torch.cat([keys[batch, k], values[batch, k]], -1)
            return torch.cat([values[batch, k], torch.nn.functional.one_hot(k, K).float()], -1)

        stored = None  # mixed loads: how many patterns each episode stores; the rest of the slots stay blank
        if self.min_patterns:
            stored = torch.randint(self.min_patterns, K + 1, (B,), generator=g)
        first = None  # the episodes whose blank slots come first (blank_slots="first" or "mixed")
        if stored is not None and self.blank_slots != "shuffled":
            first = torch.ones(B, 1, dtype=torch.bool) if self.blank_slots == "first" else torch.rand(B, 1, generator=g) < 0.5
        t = 0
        # position cues define "k-th" by the stream order, so that stream is shown unshuffled
        shuffled = self.shuffle and self.cue != "position"
        for _ in range(self.repeats):
            order = torch.argsort(torch.rand(B, K, generator=g), 1) if shuffled else torch.arange(K).expand(B, K)
            if first is not None:  # the blank items first, the rest in their order
                moved = order.gather(1, torch.argsort((order < stored.unsqueeze(1)).long(), dim=1, stable=True))
                order = torch.where(first, moved, order)
            for i in range(K):
                item = order[:, i]
                inputs[t : t + self.present_ticks] = shown(item) if stored is None else shown(item) * (item < stored).unsqueeze(1)
                t += self.present_ticks + self.gap_ticks
        if self.distractors and self.delay:
            inputs[t : t + self.delay, :, :D] = sign(self.delay, B, D)
        t += self.delay
        if stored is not None:  # without replacement while the episode has patterns left, then with
            scores = torch.rand(B, K, generator=g) + (torch.arange(K) >= stored.unsqueeze(1))
            order = torch.argsort(scores, 1)
            again = (torch.rand(B, self.queries, generator=g) * stored.unsqueeze(1)).long()
            q = torch.arange(self.queries)
            asked = torch.where(q < stored.unsqueeze(1), order[:, q.clamp(max=K - 1)], again)
        elif self.queries <= K:
            asked = torch.argsort(torch.rand(B, K, generator=g), 1)[:, : self.queries]
        else:
            asked = torch.randint(0, K, (B, self.queries), generator=g)
        for q in range(self.queries):
            k = asked[:, q]
            target = values[batch, k]
            if self.cue == "partial":
                given = (torch.rand(B, D, generator=g) < self.cue_fraction).float()
                cue = torch.cat([target * given, torch.zeros(B, self.teacher_inputs)], -1)
            elif self.cue == "key":
                given = torch.zeros(B, D)
                cue = torch.cat([keys[batch, k], torch.zeros(B, D)], -1)
            else:
                given = torch.zeros(B, D)
                cue = torch.cat([torch.zeros(B, D), torch.nn.functional.one_hot(k, K).float()], -1)
            inputs[t : t + self.query_ticks] = cue
            read = slice(t + self.query_ticks - self.readout_ticks, t + self.query_ticks)
            targets[read] = target
            loss_mask[read] = 1.0
            metric_mask[read] = 1.0 - given
            t += self.query_ticks + self.gap_ticks
        if stored is not None and self.load_weighting:  # each episode's loss weighs k^-p
            loss_mask *= stored.double().pow(-self.load_weighting).float().view(1, B, 1)
        episode = Episode(inputs, targets, loss_mask, metric_mask)
        return episode.to(device) if device is not None else episode

    def error(self, outputs: Tensor, episode: Episode) -> Tensor:
        """Per-entry loss on the loss mask: the squared error, or ``max(0, 1 - y t)^2`` (``objective``)."""
        if self.objective == "squared_hinge":
            return torch.relu(1 - outputs * episode.targets).square() * episode.loss_mask
        return super().error(outputs, episode)
