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


class SimgraphWarning(UserWarning):
    """Something will run but probably not as meant (e.g. outputs that cannot depend on the inputs)."""


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


# ---------------------------------------------------------------------- byte budget
class MemoryBudgetError(SimgraphError, MemoryError):
    """A call would allocate more bytes than the budget (``SIMGRAPH_MAX_BYTES``, else the machine's
    RAM); refused up front, before anything is allocated, with the size and what to change."""


BUDGET_ENV = "SIMGRAPH_MAX_BYTES"


def format_bytes(nbytes: float) -> str:
    """``nbytes`` human readable: ``"512 B"``, ``"1.5 MB"``, ``"2.0 TB"`` (powers of 1000)."""
    n = float(nbytes)
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        n /= 1000.0
        if n < 1000 or unit == "ZB":
            return f"{n:.1f} {unit}"
    raise AssertionError  # unreachable


def total_ram() -> int | None:
    """The machine's physical memory in bytes (None where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def max_bytes() -> int | None:
    """The byte budget: ``SIMGRAPH_MAX_BYTES`` (an int such as ``4000000000`` or ``4e9``) if set, else
    the machine's total RAM; None when neither is known (no limit)."""
    import os

    raw = os.environ.get(BUDGET_ENV)
    if raw is not None and raw.strip():
        try:
            value = float(raw.strip().replace("_", ""))
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value < 1:
            raise ConfigError(f"{BUDGET_ENV} must be a positive number of bytes (e.g. 8e9), got {raw!r}")
        return int(value)
    return total_ram()


def check_bytes(what: str, nbytes: float, hint: str = "") -> int:
    """Refuse, before allocating, ``nbytes`` (an estimate) that ``what`` would need if it is more than
    :func:`max_bytes`: :class:`MemoryBudgetError` naming the size, ``what`` and ``hint`` (what to change).
    Returns ``nbytes`` as an int."""
    budget = max_bytes()
    nbytes = int(nbytes)
    if budget is not None and nbytes > budget:
        source = f"{BUDGET_ENV}={budget}" if _budget_from_env() else "this machine's RAM"
        msg = (f"{what} would allocate {format_bytes(nbytes)} ({nbytes:,} bytes), more than the byte budget of "
               f"{format_bytes(budget)} ({source})")
        if hint:
            msg += f"; {hint}"
        msg += f" (set {BUDGET_ENV} to change the budget)"
        raise MemoryBudgetError(msg)
    return nbytes


def _budget_from_env() -> bool:
    import os

    return bool(os.environ.get(BUDGET_ENV, "").strip())


def dtype_bytes(dtype=None) -> int:
    """Bytes per element of ``dtype`` (default: torch's default dtype)."""
    import torch

    return (dtype or torch.get_default_dtype()).itemsize


def check_device(what: str, device):
    """``device`` (a ``torch.device``, a string such as ``"cpu"`` / ``"cuda:0"``, or a CUDA index) as a
    ``torch.device`` this machine has; ConfigError naming ``what`` otherwise (an unknown name, ``"cuda"``
    on a CPU-only build, an index past the last GPU)."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str) and device.strip():
        try:
            dev = torch.device(device.strip())
        except (RuntimeError, ValueError, TypeError):
            raise ConfigError(f"{what}: device must be 'cpu', 'cuda' or 'cuda:i' (a torch device), got {device!r}") from None
    elif is_int(device) and device >= 0:
        dev = torch.device("cuda", int(device))
    else:
        raise ConfigError(f"{what}: device must be 'cpu', 'cuda' or 'cuda:i' (a torch device) or None, got {device!r}")
    try:
        torch.empty(0, device=dev)  # an unavailable device (no CUDA build, no such GPU) refuses an empty tensor
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ConfigError(f"{what}: device {str(dev)!r} is not available on this machine "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return dev
