"""The CPU facts behind the README's performance notes, each timed alone (1 thread, medians).

    python runs/cpu_primitives.py

- a 64 MB tensor copy with simgraph's allocator setting on and off (SIMGRAPH_KEEP_FREED_MEMORY),
  each in a fresh process: freed blocks above 32 MB are otherwise unmapped and page-faulted back;
- a 1M-synapse CSR matrix-vector product (N=10,000, 100 per row, int32) against the dense
  1000 x 1000 one, and a 1M-element gather: what a sparse synapse costs next to a dense one.
"""

import os
import subprocess
import sys
import time

import torch


def median_ms(fn, n=15):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2] * 1e3


def copy_ms() -> float:
    torch.set_num_threads(1)
    w = torch.randn(16, 1_000_000, 1)  # 64 MB: a batch-16 edge state of a 1000-neuron net
    return median_ms(lambda: w.clone())


if __name__ == "__main__" and sys.argv[1:] == ["--copy"]:
    import simgraph  # noqa: F401  (applies the allocator setting unless opted out)

    print(copy_ms())
    sys.exit()

if __name__ == "__main__":
    for value in ("1", "0"):
        out = subprocess.run([sys.executable, __file__, "--copy"], capture_output=True, text=True, check=True,
                             env={**os.environ, "SIMGRAPH_KEEP_FREED_MEMORY": value})
        print(f"64 MB copy, SIMGRAPH_KEEP_FREED_MEMORY={value}: {float(out.stdout):.1f} ms")
    import simgraph  # noqa: F401,E402

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    N, k = 10_000, 100
    col = torch.randint(0, N, (N, k), generator=g).sort(1).values.reshape(-1).int()
    crow = torch.arange(0, N * k + 1, k).int()
    A = torch.sparse_csr_tensor(crow, col, torch.randn(N * k, generator=g), (N, N))
    x = torch.randn(N, generator=g)
    D, xd = torch.randn(1000, 1000, generator=g), torch.randn(1000, generator=g)
    print(f"CSR matvec, 1M synapses (N=10k, int32): {median_ms(lambda: A @ x):.2f} ms")
    print(f"dense matvec, 1M synapses (N=1k):       {median_ms(lambda: D @ xd):.2f} ms")
    print(f"gather of 1M node values (int32 ids):    {median_ms(lambda: x.index_select(0, col)):.2f} ms")
