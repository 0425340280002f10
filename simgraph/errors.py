"""simgraph's own errors.

Every check in the library raises one of these, with a message that names the offending
population, projection, tensor or setting. They subclass the builtin exception a Python user
would expect (ValueError, KeyError, TypeError) so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class SimgraphError(Exception):
    """Base class of every error simgraph raises on purpose."""


class GraphError(SimgraphError, ValueError):
    """A network description is invalid (bad rule parameters, indices out of range, ...)."""


class UnknownNameError(SimgraphError, KeyError):
    """A population, projection, type or config key that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ShapeError(SimgraphError, ValueError):
    """A tensor has the wrong shape, dtype or device, or holds NaN/inf."""


class ConfigError(SimgraphError, ValueError):
    """A training/task configuration is invalid."""


class CheckpointError(SimgraphError, ValueError):
    """A checkpoint is missing, truncated, corrupt or unsafe."""


class DivergenceError(SimgraphError, FloatingPointError):
    """NaN or inf appeared in a loss or a state during a run."""


def unknown(kind: str, name: object, known: Iterable[str]) -> UnknownNameError:
    """Build an UnknownNameError with a 'did you mean' suggestion."""
    known = sorted(str(k) for k in known)
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" (known: {', '.join(known) if known else 'none'})"
    return UnknownNameError(msg)


def check_int(name: str, value, low: int) -> int:
    """Return ``value`` if it is an int (not a bool) >= ``low``; raise ConfigError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return value
