"""Meta-training: one loop (``fit``) over any rule, graph and task, with separate estimators.

- ``fit(rule, graph, task, ...)``: the loop (``loop.py``); ``train(config)``: the same loop from a
  :class:`Config` (what ``simgraph train CONFIG.toml`` runs); ``evaluate``, ``load_rule``.
- estimators (``estimators.py``): truncated BPTT (``bptt.unroll``), antithetic ES, CMA-ES.
- ``es`` / ``cma_es``: the same searches as plain optimisers of any fitness function, with the
  population split across ``torch.distributed`` ranks.
"""

from . import checkpoint, distributed
from .bptt import run_ticks, unroll
from .cma_es import cma_es
from .config import Config, NetworkConfig, RuleConfig, TaskConfig, TrainConfig
from .es import es
from .estimators import BPTT, CMA, ES
from .loop import EVAL_SEED, Curriculum, TrainResult, evaluate, fit, load_rule, train

__all__ = ["fit", "train", "evaluate", "load_rule", "unroll", "run_ticks", "Config", "NetworkConfig", "RuleConfig",
           "TaskConfig", "TrainConfig", "TrainResult", "Curriculum", "BPTT", "ES", "CMA", "EVAL_SEED", "checkpoint",
           "cma_es", "es", "distributed"]
