"""Meta-training: one loop, several gradient estimators.

- ``train`` / ``unroll``: truncated backprop through time on the recall task (``loop.py``, ``bptt.py``).
- ``meta_train``: backprop through online-learning unrolls for genome and LSTM-synapse rules.
- ``es``: antithetic evolution strategies; ``cma_es``: CMA-ES (the ``cma`` package); both on any
  fitness, differentiable or not, with the population split across ``torch.distributed`` ranks.
"""

from . import checkpoint, distributed
from .bptt import unroll
from .cma_es import cma_es
from .es import es
from .config import Config, NetworkConfig, RuleConfig, TrainConfig
from .learn_to_learn import graph_for, meta_train, online_unroll, query_logits
from .learn_to_learn import evaluate as evaluate_online
from .loop import TrainResult, evaluate, load_rule, train

__all__ = ["train", "evaluate", "unroll", "load_rule", "Config", "NetworkConfig", "RuleConfig", "TrainConfig",
           "TrainResult", "checkpoint", "meta_train", "evaluate_online", "online_unroll", "query_logits", "graph_for",
           "cma_es", "es", "distributed"]
