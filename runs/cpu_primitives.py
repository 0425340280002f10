"""The CPU facts behind the README's performance notes, each timed alone (1 thread, medians).

    python runs/cpu_primitives.py

- a 64 MB tensor copy with simgraph's allocator setting on and off (SIMGRAPH_KEEP_FREED_MEMORY),
  each in a fresh process: freed blocks above 32 MB are otherwise unmapped and page-faulted back;
- a 1M-synapse CSR matrix-vector product (N=10,000, 100 per row, int32) against the dense
  1000 x 1000 one, and a 1M-element gather: what a sparse synapse costs next to a dense one;
- the transposed product (into presynaptic neurons) with per-synapse weights in post-sorted edge
  order: permuting the weights into CSR row order then a CSR product, against scattering the
  products with ``index_add_`` (what ``graph.py`` does), and ``index_add_``'s slow variants.
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

    # transposed product: edges sorted by post (k per post), rows = pre
    pre = col.long()  # the pre id of each edge, in post-sorted edge order
    perm = torch.argsort(pre, stable=True)
    counts = torch.bincount(pre, minlength=N)
    crow_t = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).int()
    post_sorted = torch.arange(N).repeat_interleave(k)[perm].int()
    w, y = torch.randn(N * k, generator=g), torch.randn(N, generator=g)

    def permuted_csr():
        return torch.sparse_csr_tensor(crow_t, post_sorted, w.index_select(0, perm), (N, N)) @ y

    def scatter(index=pre, two_d=True):
        prod = (w.view(N, k) * y.view(N, 1)).view(1, -1)
        if two_d:
            return torch.zeros(1, N).index_add_(1, index, prod)
        return torch.zeros(1, N, 1).index_add_(1, index, prod.unsqueeze(-1))

    torch.testing.assert_close(scatter()[0], permuted_csr(), rtol=1e-4, atol=1e-4)
    print(f"transposed product, permute + CSR:       {median_ms(permuted_csr):.2f} ms")
    print(f"transposed product, mul + index_add_:    {median_ms(scatter):.2f} ms")
    print(f"  index_add_ with an int32 index:        {median_ms(lambda: scatter(pre.int())):.2f} ms")
    print(f"  index_add_ on [1, N, 1] (3-D):          {median_ms(lambda: scatter(two_d=False)):.2f} ms")

    # the gradient of a gather (node values per synapse) at batch 1: index_select's own backward
    # (index_add along dim 1 of [1, N, C]) against a CSR product with the 0/1 node-by-edge matrix
    order = torch.argsort(pre, stable=True)
    ones = torch.sparse_csr_tensor(crow_t, order.int(), torch.ones(N * k), (N, N * k))
    for C in (1, 16):
        xg = torch.randn(1, N, C, generator=g, requires_grad=True)
        grad = torch.randn(1, N * k, C, generator=g)
        gathered = xg.index_select(1, col)
        auto = median_ms(lambda: torch.autograd.grad(gathered, xg, grad, retain_graph=True), n=5)
        csr = median_ms(lambda: ones @ (grad[0, :, 0] if C == 1 else grad[0]), n=5)
        torch.testing.assert_close((ones @ grad[0]).view(1, N, C), torch.autograd.grad(gathered, xg, grad, retain_graph=True)[0],
                                   rtol=1e-4, atol=1e-3)
        print(f"gradient of a 1M gather, C={C:<2d}: index_select backward {auto:.1f} ms, 0/1 CSR product {csr:.1f} ms")
