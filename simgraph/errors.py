"""simgraph's own errors, and the one validation layer every public entry point uses.

Every check in the library raises one of these, with a message that names the offending
population, projection, tensor or setting. They subclass the builtin exception a Python user
would expect (ValueError, KeyError, TypeError) so ``except ValueError`` keeps working.

The ``check_*`` functions below are the only way simgraph validates an argument: numbers and ints
(:func:`check_int`, :func:`check_number`, :func:`check_gain`, :func:`check_probability`, :func:`check_seed`,
:func:`check_bool`), names against registries (:func:`check_choice`, :func:`check_name`), types
(:func:`check_type`), tensors (:func:`check_tensor`, :func:`check_finite`), paths (:func:`check_path`,
:func:`check_out_folder`, :func:`check_out_file`), devices (:func:`check_device`) and sizes in bytes
(:func:`check_bytes`). Numpy scalars are valid wherever Python numbers are.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
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
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """A real number (Python or numpy int or float, not a bool, not a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


# ---------------------------------------------------------------------- the validation layer
# Every public entry point checks its arguments with the functions below, so that one kind of value
# is checked one way and refused with one kind of message. Each names the argument (``name``, as the
# caller writes it: "population 'a': size", "[train] steps"), shows the value, says what was wanted,
# and raises ``error`` (ConfigError unless the caller's layer raises another class: GraphError in the
# builder, ShapeError for tensors). Each returns the value converted to the plain Python type (a
# numpy int becomes an int), so what a caller stores is JSON-serialisable and compares as expected.
FLOAT32_MAX = 3.4028234663852886e38  # a gain or rate beyond this is inf in a float32 tensor (and inf * 0 = NaN)


def check_int(name: str, value, low: int | None = None, high: int | None = None, *,
              error: type[SimgraphError] = ConfigError) -> int:
    """``value`` as an int if it is an int (Python or numpy, not a bool) with ``low <= value <= high``;
    ``error`` naming it otherwise."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        want = " and ".join(w for w in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if w)
        if high is None and low in (0, 1):
            want += " (a positive int)" if low == 1 else " (a non-negative int)"
        hint = " (a string: pass the number itself)" if isinstance(value, str) else ""
        raise error(f"{name} must be an int{' ' + want if want else ''}, got {value!r}{hint}")
    return int(value)


def check_ints(name: str, values, low: int | None = None, *, error: type[SimgraphError] = ConfigError) -> list[int]:
    """A non-empty list, tuple or 1-D array of ints (each as :func:`check_int`), as a list of ints."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, (list, tuple, np.ndarray, range)) \
            or np.ndim(values) != 1 or len(values) == 0:
        raise error(f"{name} must be a non-empty list of ints, got {values!r}")
    return [check_int(f"{name}[{i}]", v, low, error=error) for i, v in enumerate(values)]


def check_seed(name: str, value, *, numpy: bool = False, error: type[SimgraphError] = ConfigError) -> int:
    """``value`` as an int if it is a seed torch's generators take (an int in [-2**63, 2**64)), or with
    ``numpy=True`` one numpy's take as well (an int in [0, 2**32)); ``error`` naming it otherwise."""
    low, high, what = (0, 2**32, "[0, 2**32)") if numpy else (-(2**63), 2**64, "[-2**63, 2**64) (a torch generator seed)")
    if not is_int(value) or not low <= value < high:
        raise error(f"{name} must be an int in {what}, got {value!r}")
    return int(value)


def check_number(name: str, value, low: float | None = None, *, positive: bool = False, high: float | None = None,
                 below: float | None = None, error: type[SimgraphError] = ConfigError) -> float:
    """``value`` as a float if it is a finite real number (Python or numpy; not a bool or a string)
    with ``value >= low``, ``value > 0`` when ``positive``, ``value <= high``, ``value < below``;
    ``error`` naming ``name``, the value and the range otherwise."""
    want = ["a positive finite number" if positive else "a finite number"]
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
        raise error(f"{name} must be {want[0]}{' ' + ' and '.join(want[1:]) if want[1:] else ''}, got {value!r}{hint}")
    return float(value)


def check_gain(name: str, value, *, error: type[SimgraphError] = ConfigError) -> float:
    """A finite number a float32 tensor can hold (|value| <= FLOAT32_MAX): a gain, rate or scale that
    multiplies a state (a larger one would be inf in the tensor, and NaN where it meets a zero)."""
    return check_number(name, value, low=-FLOAT32_MAX, high=FLOAT32_MAX, error=error)


def check_probability(name: str, value, *, below_one: bool = False, error: type[SimgraphError] = ConfigError) -> float:
    """A probability: a number in [0, 1] (``below_one``: in [0, 1)), as a float."""
    top = "1)" if below_one else "1]"
    if not is_number(value) or not (0.0 <= float(value) < 1.0 if below_one else 0.0 <= float(value) <= 1.0):
        hint = " (a string: pass the number itself)" if isinstance(value, str) else ""
        raise error(f"{name} must be a probability in [0, {top}, got {value!r}{hint}")
    return float(value)


def check_bool(name: str, value, *, error: type[SimgraphError] = ConfigError) -> bool:
    """``value`` as a bool if it is True or False (or a numpy bool); ``error`` naming it otherwise
    (a string such as "False" would silently mean True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise error(f"{name} must be True or False (true or false in TOML), got {value!r}")


_NAME = re.compile(r"^\S(.*\S)?$", re.DOTALL)  # non-empty, no surrounding whitespace


def check_name(what: str, value, *, error: type[SimgraphError] = GraphError) -> str:
    """A name (of a population, type, projection, record ...): a non-empty string without surrounding spaces."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise error(f"{what} must be a non-empty string without surrounding spaces, got {value!r}")
    return value


def check_choice(kind: str, value, choices: Iterable[str]):
    """``value`` if it is one of ``choices`` (names in a registry); :func:`unknown` ("did you mean") otherwise."""
    if not isinstance(choices, (dict, set, frozenset, list, tuple, type({}.keys()))):
        choices = list(choices)  # a generator: read once (a dict or set is tested in O(1))
    if not isinstance(value, str) or value not in choices:
        raise unknown(kind, value, choices)
    return value


def check_type(who: str, value, kind, what: str, *, error: type[SimgraphError] = ConfigError):
    """``value`` if it is an instance of ``kind`` (a class or tuple of classes), else ``error``:
    "``who`` needs ``what``, got <type>"."""
    if not isinstance(value, kind):
        raise error(f"{who} needs {what}, got {type(value).__name__}")
    return value


def check_tensor(name: str, value, *, floating: bool = False, finite: bool = False, dim: int | None = None,
                 device=None, error: type[SimgraphError] | None = None):
    """``value`` if it is a ``torch.Tensor`` (floating point with ``floating``; no NaN or inf with
    ``finite``, naming the first bad index; ``dim`` dimensions; on ``device``'s type); ShapeError
    (or ``error``) naming ``name`` otherwise. Callers check sizes against their graph themselves, with
    messages that say which axis is which."""
    import torch

    error = error or ShapeError
    if not isinstance(value, torch.Tensor):
        raise error(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dim is not None and value.dim() != dim:
        raise error(f"{name} must have {dim} dimensions, got shape {list(value.shape)}")
    if floating and not value.is_floating_point():
        raise error(f"{name} must be floating point, got dtype {value.dtype}")
    if device is not None and value.device.type != torch.device(device).type:
        raise error(f"{name} is on {value.device} but the graph is on {device}; move one with .to()")
    if finite:
        check_finite(name, value, error=error)
    return value


def check_finite(name: str, value, *, error: type[SimgraphError] | None = None, hint: str = "") -> None:
    """ShapeError (or ``error``) naming ``name``, NaN or inf, the first bad index (and ``hint``: what to do)
    if the floating tensor ``value`` holds NaN or inf (one host sync when it holds none)."""
    import torch

    if not (value.is_floating_point() or value.is_complex()):
        return
    v = value.detach()  # isfinite is abs() != inf underneath: keep it off the autograd graph
    if bool(torch.isfinite(v).all()):
        return
    bad = ~torch.isfinite(v)
    where = [int(i) for i in torch.nonzero(bad)[0]]
    kind = "NaN" if bool(torch.isnan(v[tuple(where)])) else "inf"
    raise (error or ShapeError)(f"{name} holds NaN or inf ({kind} first, at index {where})" + (f"; {hint}" if hint else ""))


def check_path(who: str, path, *, error: type[SimgraphError] = ConfigError):
    """``path`` (a str or os.PathLike, not empty, without NUL bytes) as a ``pathlib.Path``."""
    import os
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)):
        raise error(f"{who}: a path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes) or not str(text).strip() or "\x00" in str(text):
        raise error(f"{who}: {text!r} is not a usable path (empty, bytes or with a NUL byte)")
    return Path(text)


def check_out_folder(who: str, path, *, error: type[SimgraphError] = ConfigError):
    """A folder to write into, as a ``Path``: a folder that exists, or one that can be made (no part
    of it is a file). It is not made here."""
    path = check_path(who, path, error=error)
    if path.exists() and not path.is_dir():
        raise error(f"{who} {str(path)!r} is a file, not a folder")
    _check_ancestors(who, path, error)
    return path


def check_out_file(who: str, path, *, error: type[SimgraphError] = ConfigError):
    """A file to write, as a ``Path``: not a folder, in a folder that exists."""
    path = check_path(who, path, error=error)
    if path.is_dir():
        raise error(f"{who} {str(path)!r} is a folder; name a file to write")
    if not path.parent.is_dir():
        _check_ancestors(who, path, error)
        raise error(f"{who} {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    return path


def _check_ancestors(who: str, path, error) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise error(f"{who} {str(path)!r}: {str(parent)!r} is a file, not a folder")
            return


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
