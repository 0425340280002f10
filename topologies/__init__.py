"""Ready-made networks: ``import topologies`` is ``simgraph.topologies`` (kept for scripts and configs)."""

from simgraph.topologies import *  # noqa: F401,F403
from simgraph.topologies import TOPOLOGIES, __all__  # noqa: F401
