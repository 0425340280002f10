"""Episode generators: inputs, targets and masks shaped ``[T, B, ...]``, a loss and metrics.

All data is generated (or ships with scikit-learn); nothing is downloaded.
"""

from .recall import CUES, Episode, RecallTask, bit_accuracy, recall_loss

__all__ = ["RecallTask", "Episode", "CUES", "recall_loss", "bit_accuracy"]
