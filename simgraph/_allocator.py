"""Keep freed CPU memory in the process instead of handing it back to the OS every tick.

A simulation tick allocates its new edge state (``[B, E, D]``, often tens of MB) and frees the
old one. glibc serves every block above 32 MB with a fresh ``mmap`` and returns it with
``munmap``, so each tick page-faults its whole edge state in again: measured on this project's
CPU, a 64 MB ``clone`` took 45 ms that way and 6 ms with freed memory kept, the copy itself
(``python runs/cpu_primitives.py``).
This is the CPU counterpart of PyTorch's CUDA caching allocator.

:func:`keep_freed_memory` asks glibc (``mallopt``) to serve large blocks from the heap and never
trim it. simgraph calls it once at import on Linux/glibc; set ``SIMGRAPH_KEEP_FREED_MEMORY=0``
before importing to opt out. The cost: the process's resident memory does not shrink after a
peak (it is reused by the next tick instead).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc malloc.h
_applied = False


def keep_freed_memory() -> bool:
    """Serve large CPU blocks from the heap and keep freed memory for reuse. True if applied."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has mallopt with these parameters)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no mmap'd blocks (they are unmapped on free), and never trim the heap top
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def apply_default() -> None:
    if os.environ.get("SIMGRAPH_KEEP_FREED_MEMORY", "1") not in ("0", "false", "False", "no"):
        keep_freed_memory()


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS now (glibc ``malloc_trim``), e.g. before measuring a
    peak: otherwise memory freed by set-up is reused unseen and the peak looks smaller."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
