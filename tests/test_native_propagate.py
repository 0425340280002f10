"""``Graph.propagate`` with several channels as one C loop (graph/native.py) against the layouts'
own products (dense views, ELL, CSR, a typed graph of several blocks): values, gradients of both
operands with the weights per episode or shared, and gradcheck / gradgradcheck in float64."""

import pytest
import torch

from simgraph.graph import native
from test_fused_edge_update import _graphs  # dense, ELL, non-uniform CSR, typed

pytestmark = pytest.mark.skipif(not native.available(3, torch.float64, torch.device("cpu")),
                                reason="the native kernel cannot be built here (no C compiler)")


@pytest.mark.parametrize("name", ["dense", "ell", "csr", "typed"])
@pytest.mark.parametrize("batches", [(2, 2), (1, 2), (2, 1)], ids=["per_episode", "shared_weights", "shared_input"])
def test_native_propagate_equals_the_layouts_products(name, batches, monkeypatch):
    graph = _graphs()[name]
    g = torch.Generator().manual_seed(0)
    w = torch.randn(batches[0], graph.num_edges, 3, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(batches[1], graph.num_nodes, 3, generator=g, dtype=torch.float64, requires_grad=True)
    runs = {}
    for on in ("1", "0"):
        monkeypatch.setenv("SIMGRAPH_NATIVE", on)
        y, yb = graph.propagate(w, x), graph.propagate_back(w, x)
        runs[on] = (y, yb, *torch.autograd.grad(y.square().sum() + (2 * yb).square().sum(), [w, x]))
    for a, b in zip(runs["1"], runs["0"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    monkeypatch.setenv("SIMGRAPH_NATIVE", "1")
    assert torch.autograd.gradcheck(lambda w, x: graph.propagate(w, x), (w, x))
    assert torch.autograd.gradgradcheck(lambda w, x: graph.propagate_back(w, x), (w, x))


def test_one_channel_keeps_the_matrix_products():
    assert not native.available(1, torch.float32, torch.device("cpu"))
    assert not native.available(native.MAX_CHANNELS + 1, torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batches", [(3, 3), (1, 3)], ids=["per_episode", "shared_weights"])
def test_every_channel_count_equals_the_layouts_products(dtype, batches, monkeypatch):
    """2-8 channels run as one vector per synapse (masked loads of exactly C lanes on AVX-512), 9 and
    more the generic loop: each against the layouts' own products, values and both gradients."""
    scale = 1e-5 if dtype == torch.float32 else 1e-12  # of the largest value: float32 sums in another order
    for name in ("dense", "csr"):
        graph = _graphs()[name]
        for channels in range(2, 11):
            g = torch.Generator().manual_seed(channels)
            w = torch.randn(batches[0], graph.num_edges, channels, generator=g, dtype=dtype, requires_grad=True)
            x = torch.randn(batches[1], graph.num_nodes, channels, generator=g, dtype=dtype, requires_grad=True)
            runs = {}
            for on in ("1", "0"):
                monkeypatch.setenv("SIMGRAPH_NATIVE", on)
                y, yb = graph.propagate(w, x), graph.propagate_back(w, x)
                runs[on] = (y, yb, *torch.autograd.grad(y.square().sum() + (2 * yb).square().sum(), [w, x]))
            for what, a, b in zip(("out", "out_back", "grad_w", "grad_x"), runs["1"], runs["0"]):
                err = (a - b).abs().max().item()
                assert err <= scale * b.abs().max().item(), f"{name}, {channels} channels, {what}: {err}"


@pytest.mark.parametrize("name", ["dense", "csr"])
@pytest.mark.parametrize("on", ["1", "0"])
def test_weights_of_another_channel_count_are_refused(name, on, monkeypatch):
    """w with C channels against x with 1 (or 2 against 3) was summed over its first channel only, or
    read past w's end by the C loop: a ShapeError now; a 1-channel w is the same weight for every channel."""
    from simgraph.errors import ShapeError

    monkeypatch.setenv("SIMGRAPH_NATIVE", on)
    graph = _graphs()[name]
    E, N = graph.num_edges, graph.num_nodes
    for cw, cx in ((3, 1), (2, 3)):
        with pytest.raises(ShapeError, match="channels"):
            graph.propagate(torch.randn(2, E, cw), torch.randn(2, N, cx))
    w, x = torch.randn(2, E, 1, dtype=torch.float64), torch.randn(2, N, 3, dtype=torch.float64)
    pre, post, _ = graph.endpoints()
    want = torch.zeros(2, N, 3, dtype=torch.float64).index_add_(1, post.long(), w * x[:, pre.long()])
    torch.testing.assert_close(graph.propagate(w, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batches", [(5, 5), (1, 5), (5, 1)], ids=["per_episode", "shared_weights", "shared_input"])
def test_split_over_threads_gives_the_one_thread_results(batches, monkeypatch):
    """Episodes split over 2 and 3 threads (B = 5: uneven ranges), both products, both gradients: the
    same numbers as one thread (each episode's sums run in the same order either way)."""
    graph = _graphs()["csr"]
    g = torch.Generator().manual_seed(0)
    w = torch.randn(batches[0], graph.num_edges, 5, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(batches[1], graph.num_nodes, 5, generator=g, dtype=torch.float64, requires_grad=True)
    before, runs = torch.get_num_threads(), {}
    try:
        for threads, work in ((1, 2**40), (2, 0), (3, 0)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(native, "PARALLEL_MIN", work)
            y, yb = graph.propagate(w, x), graph.propagate_back(w, x)
            runs[threads] = (y, yb, *torch.autograd.grad(y.square().sum() + (2 * yb).square().sum(), [w, x]))
    finally:
        torch.set_num_threads(before)
    for threads in (2, 3):
        for a, b in zip(runs[threads], runs[1]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
