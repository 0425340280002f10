"""Checkpoints: a JSON spec plus a tensor file that loads with ``torch.load(weights_only=True)``.

Layout in a run folder::

    checkpoint.json          {"format", "step", "tensors": "checkpoint-000050.pt", "sha256", ...}
    checkpoint-000050.pt     {"rule": state_dict, "optimizer": ..., "scheduler": ...}

Every file is written to a temporary name, flushed and fsynced, then renamed over the old one, so
a crash at any moment leaves either the previous checkpoint or the new one, never half of one.
The JSON names the tensor file and its SHA-256: the tensor file is written first, the JSON
second, and older tensor files are removed only after the JSON points past them. One process
writes (rank 0 under torchrun); temporary files a killed writer left behind are swept on the next save.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, check_finite, check_int, check_out_folder, check_path, check_type

FORMAT = "simgraph-checkpoint-1"
SPEC = "checkpoint.json"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(folder: str | Path, step: int, tensors: dict[str, Any], spec: dict[str, Any]) -> Path:
    """Write a checkpoint for ``step`` (an int >= 0) into ``folder`` (made if missing); refuses to write
    NaN/inf parameters."""
    step = check_int("checkpoint step", step, 0, error=CheckpointError)
    check_type("checkpoint.save spec", spec, dict, "a dict (what checkpoint.json records beside the step)",
               error=CheckpointError)
    try:
        json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint.save spec must hold JSON values only: {exc}") from None
    taken = sorted({"format", "step", "tensors", "sha256"} & set(spec))
    if taken:
        raise CheckpointError(f"checkpoint.save spec must not set {taken}: checkpoint.json writes them itself")
    folder = check_out_folder("checkpoint folder", folder, error=CheckpointError)
    for name, value in _flat_tensors(tensors):
        check_finite(f"refusing to checkpoint step {step}: {name}", value, error=CheckpointError)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    data = buffer.getvalue()
    name = f"checkpoint-{step:06d}.pt"
    atomic_write(folder / name, data)
    meta = {"format": FORMAT, "step": step, "tensors": name, "sha256": hashlib.sha256(data).hexdigest(), **spec}
    atomic_write(folder / SPEC, json.dumps(meta, indent=1).encode())
    for old in folder.glob("checkpoint-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)
    for stale in folder.glob(".*.tmp*"):  # left by a writer killed before its rename (one writer per folder)
        stale.unlink(missing_ok=True)
    return folder / SPEC


def exists(folder: str | Path) -> bool:
    return (check_path("checkpoint folder", folder, error=CheckpointError) / SPEC).is_file()


def load(folder: str | Path, map_location=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(spec, tensors)``; raises CheckpointError naming the problem otherwise."""
    folder = check_path("checkpoint", folder, error=CheckpointError)
    spec_path = folder / SPEC if folder.is_dir() else folder
    if not spec_path.is_file():
        raise CheckpointError(f"no checkpoint at {str(spec_path)!r}")
    try:
        spec = json.loads(spec_path.read_text())
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting or number length
        raise CheckpointError(f"{spec_path} is corrupt or truncated (not valid JSON: {str(exc)[:200]})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise CheckpointError(f"{spec_path} is not a simgraph checkpoint (format {spec.get('format') if isinstance(spec, dict) else None!r}, expected {FORMAT!r})")
    for key in ("step", "tensors", "sha256"):
        if key not in spec:
            raise CheckpointError(f"{spec_path} lacks {key!r}")
    check_int(f"{spec_path}: 'step'", spec["step"], 0, error=CheckpointError)
    for key in ("tensors", "sha256"):
        check_type(f"{spec_path}: {key!r}", spec[key], str, "a string", error=CheckpointError)
    tensor_path = spec_path.parent / spec["tensors"]
    if tensor_path.parent != spec_path.parent or tensor_path.name in ("", ".", "..") or not tensor_path.is_file():
        raise CheckpointError(f"{spec_path} names tensor file {spec['tensors']!r}, which is missing")
    data = tensor_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise CheckpointError(f"{tensor_path} is corrupt or truncated (SHA-256 does not match {spec_path})")
    try:
        tensors = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code with an UnpicklingError
        raise CheckpointError(f"{tensor_path} refused: not a plain tensor checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return spec, tensors


def load_state(module: torch.nn.Module, state, where: str, what: str = "rule parameters") -> None:
    """``module.load_state_dict(state)``; CheckpointError naming every tensor that does not fit otherwise
    (torch's message, all of it: its first line names no tensor)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{where}: the checkpoint holds no {what} (a table of tensors)")
    try:
        module.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{where}: {what} do not fit: {one_line(exc)}") from None


def load_optimizer(opt: torch.optim.Optimizer, state, where: str, names: dict | None = None) -> None:
    """``opt.load_state_dict(state)``, then every per-parameter state tensor checked against its
    parameter's shape (torch loads a moment of the wrong shape and fails at the next step, mid-run)."""
    try:
        opt.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{where}: the optimizer state does not fit this rule: {one_line(exc)}") from None
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                    name = (names or {}).get(id(p), f"of shape {list(p.shape)}")
                    raise CheckpointError(f"{where}: the optimizer's {key!r} of parameter {name} has shape "
                                          f"{list(value.shape)}, the parameter {list(p.shape)}; the files were edited or mixed up")


def one_line(exc: BaseException) -> str:
    """An exception's whole message on one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:2000] or type(exc).__name__


def _flat_tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat_tensors(v, f"{prefix}[{i}]")
