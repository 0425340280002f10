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

from ..errors import CheckpointError

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
    """Write a checkpoint for ``step``; refuses to write NaN/inf parameters."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in _flat_tensors(tensors):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"refusing to checkpoint step {step}: {name} holds NaN or inf")
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
    return (Path(folder) / SPEC).is_file()


def load(folder: str | Path, map_location=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(spec, tensors)``; raises CheckpointError naming the problem otherwise."""
    folder = Path(folder)
    spec_path = folder / SPEC if folder.is_dir() else folder
    if not spec_path.is_file():
        raise CheckpointError(f"no checkpoint at {str(spec_path)!r}")
    try:
        spec = json.loads(spec_path.read_text())
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting or number length
        raise CheckpointError(f"{spec_path} is corrupt or truncated (not valid JSON: {str(exc)[:200]})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise CheckpointError(f"{spec_path} is not a simgraph checkpoint (format {spec.get('format') if isinstance(spec, dict) else None!r}, expected {FORMAT!r})")
    for key, kind in (("step", int), ("tensors", str), ("sha256", str)):
        if key not in spec:
            raise CheckpointError(f"{spec_path} lacks {key!r}")
        if not isinstance(spec[key], kind) or isinstance(spec[key], bool) or (key == "step" and spec[key] < 0):
            raise CheckpointError(f"{spec_path}: {key!r} must be {'an int >= 0' if kind is int else 'a string'}, got {spec[key]!r}")
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


def _flat_tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat_tensors(v, f"{prefix}[{i}]")
