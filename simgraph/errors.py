"""simgraph's own errors.

Every check in the library raises one of these, with a message that names the offending
population, projection, tensor or setting. They subclass the builtin exception a Python user
would expect (ValueError, KeyError, TypeError) so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Iterable

import numpy as np


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


class NonFiniteStateError(ShapeError, DivergenceError):
    """A state passed to ``simulate`` holds NaN or inf: a ShapeError (a bad input) and a
    DivergenceError (what a diverged run hands on), so either ``except`` catches it."""


def unknown(kind: str, name: object, known: Iterable[str]) -> UnknownNameError:
    """Build an UnknownNameError with a 'did you mean' suggestion."""
    known = sorted(str(k) for k in known)
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" (known: {', '.join(known) if known else 'none'})"
    return UnknownNameError(msg)


def is_int(value) -> bool:
    """An integer (Python or numpy, not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number (Python or numpy int or float, not a bool, not a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, low: int | None = None) -> int:
    """``value`` as an int if it is an int (Python or numpy, not a bool) >= ``low``; raise ConfigError naming it otherwise."""
    if not is_int(value) or (low is not None and value < low):
        raise ConfigError(f"{name} must be an int{f' >= {low}' if low is not None else ''}, got {value!r}")
    return int(value)


def check_seed(name: str, value) -> int:
    """``value`` as an int if it is an int torch's generators take (in [-2**63, 2**64)); ConfigError otherwise."""
    if not is_int(value) or not -(2**63) <= value < 2**64:
        raise ConfigError(f"{name} must be an int in [-2**63, 2**64) (a torch generator seed), got {value!r}")
    return int(value)


def check_number(name: str, value, low: float | None = None, *, positive: bool = False, high: float | None = None,
                 below: float | None = None) -> float:
    """``value`` as a float if it is a finite real number (Python or numpy; not a bool or a string)
    with ``value >= low``, ``value > 0`` when ``positive``, ``value <= high``, ``value < below``.
    Raise ConfigError naming ``name``, the value and the range otherwise."""
    want = ["a finite number"]
    if positive:
        want.append("> 0")
    if low is not None:
        want.append(f">= {low}")
    if high is not None:
        want.append(f"<= {high}")
    if below is not None:
        want.append(f"< {below}")
    ok = is_number(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = not (positive and v <= 0) and not (low is not None and v < low) and not (high is not None and v > high) \
            and not (below is not None and v >= below)
    if not ok:
        hint = " (a string: pass the number itself)" if isinstance(value, str) else ""
        raise ConfigError(f"{name} must be {' '.join(want)}, got {value!r}{hint}")
    return float(value)


def check_bool(name: str, value) -> bool:
    """``value`` as a bool if it is True or False (or a numpy bool); ConfigError naming it otherwise
    (a string such as "False" would silently mean True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(f"{name} must be True or False, got {value!r}")
