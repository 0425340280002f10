"""Tasks: episode generators over one protocol (``base.Task``): ``sample``, ``loss``, ``metrics``.

Every task gives ``sample(batch_size, seed, device) -> Episode`` (inputs ``[T, B, n_in]``, targets,
loss and metric masks, an optional teacher signal and probe ticks), ``loss(outputs, episode)`` and
``metrics(outputs, episode)``. ``TASKS`` names them for configs (``[task] kind = ...``). All data is
generated (or ships with scikit-learn); nothing is downloaded.
"""

from functools import partial

from .base import Episode, Task
from .families import FAMILIES, HELD_OUT_FAMILIES, META_TRAIN_FAMILIES, Family, FamilyTask, register_family
from .online import HELD_OUT, META_TRAIN, SOURCES, OnlineTask
from .oneshot import REVERSAL, OneShotTask
from .pattern_completion import PatternCompletionTask
from .recall import CUES, RecallTask


# config name -> constructor taking the task's settings as keywords
TASKS = {
    "recall": RecallTask,
    "pattern_completion": PatternCompletionTask,
    "oneshot": OneShotTask,
    "reversal": partial(OneShotTask, **REVERSAL),  # OneShotTask with the reversal defaults
    "online": OnlineTask,
    "families": FamilyTask,
}

__all__ = ["Task", "Episode", "TASKS", "RecallTask", "CUES", "OnlineTask", "META_TRAIN", "HELD_OUT", "SOURCES",
           "PatternCompletionTask", "OneShotTask",
           "FamilyTask", "Family", "FAMILIES", "META_TRAIN_FAMILIES", "HELD_OUT_FAMILIES", "register_family"]
