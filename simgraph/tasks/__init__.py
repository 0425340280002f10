"""Episode generators: inputs, targets and masks shaped ``[T, B, ...]``, a loss and metrics.

All data is generated (or ships with scikit-learn); nothing is downloaded.
"""

from .online import HELD_OUT, META_TRAIN, SOURCES, OnlineTask
from .oneshot import OneShotTask
from .pattern_completion import PatternCompletionTask
from .recall import CUES, Episode, RecallTask, bit_accuracy, recall_loss

__all__ = ["RecallTask", "Episode", "CUES", "recall_loss", "bit_accuracy", "OnlineTask", "META_TRAIN", "HELD_OUT", "SOURCES",
           "PatternCompletionTask", "OneShotTask"]
