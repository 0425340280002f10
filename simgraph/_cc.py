"""C kernels compiled at first use (the MLP rule's synapse function, the multi-channel propagate).

A kernel is C source built with the machine's C compiler (``CC``, else ``cc``/``gcc``/``clang``: the
one ``torch.compile`` needs on the CPU too) into a shared library in a per-user cache
(``SIMGRAPH_CACHE_DIR``, else ``~/.cache/simgraph``), keyed by the source, the compiler, the flags and
the CPU (``-march=native`` code runs only where it was built), and loaded with ``ctypes``. The first
flags that build win: ``-O3 -march=native -fopenmp``, else without OpenMP (the kernels then run on one
thread), else portable ``-O3``. With OpenMP the library needs ``libgomp.so.1``, which the dynamic
linker finds already loaded by torch's CPU build (the same soname), so the kernels' parallel loops run
on torch's own thread team (``torch.set_num_threads``), not on a second one. Where nothing builds
(no compiler) :func:`load` returns None and the caller runs its torch code instead;
``SIMGRAPH_NATIVE=0`` turns every kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

import torch
from torch import Tensor

# not -ffast-math: linked into a shared library it sets the CPU's flush-to-zero mode for the whole process
# (every subnormal float in the user's program would silently become 0)
FLAGS = (["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared"], ["-lm"]), \
        (["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"], ["-lm"]), \
        (["-O3", "-fno-math-errno", "-fPIC", "-shared"], ["-lm"])

_LIBS: dict = {}
FAILED: dict = {}  # name -> why it could not be built
FLAGS_USED: dict = {}  # name -> which entry of FLAGS built it (0: the machine's own with OpenMP; 1: without; 2: portable)


def enabled() -> bool:
    return os.environ.get("SIMGRAPH_NATIVE", "1") != "0"


def load(name: str, sources: list[str]):
    """The library built from ``sources`` (one translation unit each), once per process; None where
    it cannot be built (the reason in ``FAILED[name]``)."""
    if name in FAILED:
        return None
    if name not in _LIBS:
        try:
            _LIBS[name] = _build(name, sources)
        except Exception as exc:  # noqa: BLE001 - no compiler, a failed build: the torch code gives the same numbers
            FAILED[name] = f"{type(exc).__name__}: {exc}"[:300]
            return None
    return _LIBS[name]


def ptr(t: Tensor | None):
    """A tensor's data pointer for a C call (None: NULL)."""
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def i64(n: int):
    return ctypes.c_int64(n)


def threads(work: int, minimum: int):
    """The threads a kernel call splits over (a C int): torch's intra-op threads (``torch.get_num_threads()``,
    as ATen's kernels use) from ``minimum`` units of work, else 1 (a small call is cheaper on one)."""
    return ctypes.c_int(torch.get_num_threads() if work >= minimum else 1)


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> str:
    return os.environ.get("SIMGRAPH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "simgraph")


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() + platform.machine()


def _build(name: str, sources: list[str]):
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC)")
    errors = []
    for n_flags, (flags, libs) in enumerate(FLAGS):
        FLAGS_USED[name] = n_flags
        key = hashlib.sha256("\n".join([*sources, cc, *flags, *libs, _cpu_id(), torch.__version__]).encode()).hexdigest()[:20]
        path = os.path.join(_cache_dir(), f"{name}_{key}.so")
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path)
            except OSError:  # a truncated or corrupt cached library: build it again
                os.remove(path)
        if not os.path.exists(path):
            os.makedirs(_cache_dir(), exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                c_files = [os.path.join(tmp, f"k{n}.c") for n in range(len(sources))]
                for c_file, text in zip(c_files, sources):
                    with open(c_file, "w") as f:
                        f.write(text)
                so_file = os.path.join(tmp, "k.so")
                # each translation unit compiled by its own process (float and double side by side: a cold
                # cache builds a kernel in half the time on 2 cores), then linked
                compile_flags = [f for f in flags if f != "-shared"]
                jobs = [subprocess.Popen([cc, *compile_flags, "-c", c, "-o", c[:-2] + ".o"], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True) for c in c_files]
                outs = [(job.returncode, *streams) for job in jobs for streams in [job.communicate()]]
                failed = next(((out or err) for code, out, err in outs if code != 0), None)
                run = None if failed is not None else subprocess.run(
                    [cc, *flags, *(c[:-2] + ".o" for c in c_files), "-o", so_file, *libs], capture_output=True, text=True)
                if failed is not None or run.returncode != 0:
                    lines = (failed if failed is not None else (run.stderr or run.stdout)).strip().splitlines()
                    errors.append(next((x for x in lines if "error" in x), lines[-1] if lines else "failed"))
                    continue
                tmp_path = f"{path}.{os.getpid()}.tmp"  # atomic: several processes (torchrun) may build at once
                shutil.copyfile(so_file, tmp_path)
                os.replace(tmp_path, path)
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            errors.append(str(exc))
    raise RuntimeError("; ".join(errors))
