"""The MLP rule's synapse function as a C kernel (rules/_native.py) against the plain autograd
version: gradcheck and double backward in float64 on random edge lists (typed or not, with the
Hebbian start's extra terms or without, an edge state broadcast over the batch), the float32 kernel
(its inline tanh) within float32 rounding, the rule on every layout and both starts, second order
through a whole episode, and the fallbacks where the kernel cannot run."""

import os

import pytest
import torch

import simgraph as sg
from simgraph import _cc, topologies
from simgraph.rules import MLPRule, _native
from test_fused_edge_update import _graphs  # dense, ELL, non-uniform CSR, typed

needs_native = pytest.mark.skipif(not _native.available(16, 4, torch.float32, torch.device("cpu")),
                                  reason="the native kernel cannot be built here (no C compiler)")
pytestmark = needs_native


def _case(typed=True, hebbian=True, table=True, broadcast=False, dtype=torch.float64, B=2, N=6, E=17, H=8, De=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = 3 if typed else 1
    src = torch.randint(0, N, (E,), generator=g, dtype=torch.int32)
    dst = torch.sort(torch.randint(0, N, (E,), generator=g))[0].to(torch.int32)  # post-sorted, with runs
    sid = torch.randint(0, S, (E,), generator=g, dtype=torch.int32) if typed else None
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    x = [r(B, N, H), r(B, N, H), r(B, N, H), r(B, N, H), 0.5 * r(B, N, H).detach(), r(1 if broadcast else B, E, De),
         r(S, H), 0.7 * r(H, De).detach(), 0.5 * r(De, H).detach(), r(De)]
    x = [t.detach().requires_grad_() for t in x]
    if hebbian:
        x += [r(De), r(B, N, 1), r(B, N, 1), r(S, De) if typed and table else r(De)]
    else:
        x += [None] * 4
    return (src, dst, sid), x


def _call(ends, x, B):
    e = x[5].expand(B, -1, -1)
    return _native.edge_update(ends, *x[:5], e, *x[6:])


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "one_type"])
@pytest.mark.parametrize("hebbian", [True, False], ids=["hebbian", "random"])
@pytest.mark.parametrize("broadcast", [False, True], ids=["edge_per_episode", "edge_broadcast"])
@pytest.mark.parametrize("keep", [True, False], ids=["hidden_kept", "hidden_recomputed"])
def test_native_gradcheck_double_backward_and_equal_to_the_reference(typed, hebbian, broadcast, keep, monkeypatch):
    """E = 17 synapses: two full blocks of the kernels' 8 side by side and a tail of one."""
    if not keep:  # the backward recomputes the hidden layer (ticks above KEEP_HIDDEN_MAX values)
        monkeypatch.setattr(_native, "KEEP_HIDDEN_MAX", 0)
    ends, x = _case(typed, hebbian, broadcast=broadcast)
    leaves = [t for t in x if t is not None]

    def f(*t):
        it = iter(t)
        return _call(ends, [next(it) if v is not None else None for v in x], 2)

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(f, leaves, eps=1e-6, atol=1e-6)
    got = f(*leaves)
    want = _native._gathered_reference(*ends, *x[:5], x[5].expand(2, -1, -1), *x[6:])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, leaves, go), torch.autograd.grad(want, leaves, go)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "one_type"])
@pytest.mark.parametrize("broadcast", [False, True], ids=["edge_per_episode", "edge_broadcast"])
@pytest.mark.parametrize("keep", [True, False], ids=["hidden_kept", "hidden_recomputed"])
def test_the_kernels_split_over_threads_give_the_one_thread_results(typed, broadcast, keep, monkeypatch):
    """Episodes split over threads (B = 5 over 2 and 3: uneven ranges): the same outputs and, the
    weights' gradients summed per thread, the same gradients to float64 rounding."""
    if not keep:
        monkeypatch.setattr(_native, "KEEP_HIDDEN_MAX", 0)
    ends, x = _case(typed, True, broadcast=broadcast, B=5)
    leaves = [t for t in x if t is not None]
    go = torch.randn(5, 17, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    before = torch.get_num_threads()
    results = {}
    try:
        for threads, work in ((1, 2**40), (2, 0), (3, 0)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(_native, "PARALLEL_MIN", work)
            out = _call(ends, x, 5)
            results[threads] = (out, torch.autograd.grad(out, leaves, go))
    finally:
        torch.set_num_threads(before)
    for threads in (2, 3):
        torch.testing.assert_close(results[threads][0], results[1][0], rtol=0, atol=0)
        for a, b in zip(results[threads][1], results[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("keep", [True, False], ids=["hidden_kept", "hidden_recomputed"])
def test_float32_kernel_within_float32_rounding(keep, monkeypatch):
    """The float kernel's inline tanh (a polynomial exp) and its float sums against the reference in
    float64 on the same numbers: over a few thousand synapses, values to 3e-6, gradients to 1e-5 relative."""
    if not keep:
        monkeypatch.setattr(_native, "KEEP_HIDDEN_MAX", 0)
    ends, x = _case(True, True, B=3, N=50, E=4000, H=16, De=5, seed=1)
    x32 = [None if t is None else t.detach().float().requires_grad_() for t in x]
    got = _call(ends, x32, 3)
    want = _native._gathered_reference(*ends, *x[:5], x[5].expand(3, -1, -1), *x[6:])
    assert (got.double() - want).abs().max().item() < 3e-6
    go = torch.randn(want.shape, dtype=torch.float64)
    leaves32, leaves = [t for t in x32 if t is not None], [t for t in x if t is not None]
    for a, b in zip(torch.autograd.grad(got, leaves32, go.float()), torch.autograd.grad(want, leaves, go)):
        assert (a.double() - b).abs().max().item() <= 1e-5 * (1 + b.abs().max().item())


@pytest.mark.parametrize("start", ["random", "hebbian", "hebbian_write_types", "mirror"])
def test_rule_gives_the_plain_values_and_gradients_on_every_layout(start):
    """simulate + backward through the MLP rule, native against plain, float64: dense, ELL,
    non-uniform CSR and a typed graph of 5 projections are one edge list to the kernel."""
    for name, graph in _graphs().items():
        kw = {"random": {}, "mirror": dict(start="hebbian", mirror=True),
              "hebbian": dict(start="hebbian", learn_from="activity", init_weight_std=1.0),
              "hebbian_write_types": dict(start="hebbian", write_types=[graph.synapse_types[0]])}[start]
        runs = {}
        for mode in ("plain", "native"):
            torch.manual_seed(0)
            rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types, node_dim=3, edge_dim=2, hidden=4,
                           type_dim=2, edge_update=mode, **kw).double()
            with torch.no_grad():  # a trained-looking rule: every learned term non-zero
                for p in rule.parameters():
                    p.add_(0.1 * torch.randn_like(p))
            u = torch.randn(5, 2, graph.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            run = sg.simulate(rule, graph, u)
            params = [p for p in rule.parameters() if p.requires_grad]
            loss = run.outputs.square().sum() + run.state["edge"].square().sum()
            runs[mode] = (run.outputs, run.state["edge"], torch.autograd.grad(loss, params, allow_unused=True))
        torch.testing.assert_close(runs["native"][0], runs["plain"][0], rtol=1e-11, atol=1e-12, msg=name)
        torch.testing.assert_close(runs["native"][1], runs["plain"][1], rtol=1e-11, atol=1e-12, msg=name)
        for a, b in zip(runs["native"][2], runs["plain"][2]):
            if b is None:
                assert a is None or not a.any(), name
            else:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)


def test_second_order_through_an_episode_equals_plain():
    """The gradient of the squared gradient norm: the node inputs of a tick are computed from the
    edge state it updates, so the double backward must take partial derivatives (it once took the
    total derivative through the inputs' own history: 1e8 off here)."""
    graph = topologies.sparse_random(12, p=0.4, seed=0)
    out = {}
    for mode in ("plain", "native"):
        torch.manual_seed(0)
        rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types, edge_update=mode).double()
        u = torch.randn(4, 2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        run = sg.simulate(rule, graph, u)
        params = list(rule.parameters())
        g = torch.autograd.grad(run.outputs.square().sum(), params, create_graph=True, allow_unused=True)
        out[mode] = torch.autograd.grad(sum(x.square().sum() for x in g if x is not None), params, allow_unused=True)
    for a, b in zip(out["native"], out["plain"]):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_auto_runs_native_on_the_cpu_and_falls_back_where_it_cannot():
    graph = topologies.sparse_random(10, p=0.3, seed=0)
    rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types)
    e = rule.init_state(graph, 2)["edge"]
    assert rule.edge_update == "auto" and rule._runs_native(graph, "auto", e)
    assert not rule._runs_native(graph, "plain", e) and not rule._runs_native(graph, "compiled", e)
    odd = MLPRule(hidden=6, edge_update="native")  # not a power of two: one vector type cannot hold it
    state = odd.init_state(graph, 2)
    with pytest.warns(sg.errors.SimgraphWarning, match="hidden=6 is not a power of two"):
        odd.step(graph, state, torch.zeros(2, 10, 1))
    assert not odd._runs_native(graph, "native", state["edge"])


def test_native_off_and_without_a_compiler(monkeypatch, tmp_path):
    graph = topologies.sparse_random(10, p=0.3, seed=0)
    rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types)
    e = rule.init_state(graph, 2)["edge"]
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0")
    assert not rule._runs_native(graph, "auto", e)
    monkeypatch.delenv("SIMGRAPH_NATIVE")
    # no compiler: nothing is built, load() says why, and the caller runs its torch code
    monkeypatch.setattr(_cc, "_compiler", lambda: None)
    monkeypatch.setenv("SIMGRAPH_CACHE_DIR", str(tmp_path))
    assert _cc.load("probe_without_compiler", ["int f(void) { return 1; }"]) is None
    assert "no C compiler" in _cc.FAILED["probe_without_compiler"]


def test_a_broken_source_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMGRAPH_CACHE_DIR", str(tmp_path))
    assert _cc.load("broken_probe", ["this is not C"]) is None
    assert "error" in _cc.FAILED["broken_probe"]
    assert _cc.load("good_probe", ["int f(void) { return 41 + 1; }"]).f() == 42


def test_loading_the_kernels_leaves_subnormal_floats_alone():
    """-ffast-math in a shared library would switch the whole process to flush-to-zero."""
    assert _native.library(16, 5) is not None
    tiny = torch.tensor(1e-40, dtype=torch.float32)
    assert tiny.item() != 0.0 and (tiny * 1.0).item() != 0.0


def test_a_corrupt_cached_library_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMGRAPH_CACHE_DIR", str(tmp_path))
    assert _cc.load("cached_probe", ["int f(void) { return 7; }"]).f() == 7
    (built,) = list(tmp_path.glob("cached_probe_*.so"))
    built.unlink()  # a new file, not the one this process has mapped
    built.write_bytes(b"not a shared library")
    _cc._LIBS.pop("cached_probe")
    assert _cc.load("cached_probe", ["int f(void) { return 7; }"]).f() == 7


def _cpu_has(*flags: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith("flags")), "")
    except OSError:
        return False
    return set(flags) <= set(line.split(":", 1)[-1].split())


@pytest.mark.skipif(not _cpu_has("avx2", "fma"), reason="needs an x86 CPU with AVX2 and FMA to run the AVX2 build")
def test_the_kernels_built_without_avx512_give_the_same_results(tmp_path):
    """CPUs without AVX-512 build other branches of both C sources (edge rows copied instead of
    masked loads, scalar channel loops in propagate): built here for AVX2 (-march=x86-64-v3) in a
    fresh process and checked against the reference (H = 4, De = 3 in 4 lanes: a small kernel, quick to build)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, sys, torch
        os.environ["SIMGRAPH_CACHE_DIR"] = {str(tmp_path)!r}
        from simgraph import _cc
        _cc.FLAGS = ((["-O3", "-march=x86-64-v3", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"], ["-lm"]),)
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_native_edge_update import _case, _call
        from simgraph.rules import _native
        from simgraph.graph import native
        ends, x = _case(True, True, B=2, N=7, E=19, H=4, De=3)
        leaves = [t for t in x if t is not None]
        got = _call(ends, x, 2)
        want = _native._gathered_reference(*ends, *x[:5], x[5].expand(2, -1, -1), *x[6:])
        assert (got - want).abs().max() < 1e-12
        go = torch.randn_like(want)
        for a, b in zip(torch.autograd.grad(got, leaves, go), torch.autograd.grad(want, leaves, go)):
            assert (a - b).abs().max() < 1e-10
        w, v = torch.randn(2, 19, 3, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
        src, dst, _ = ends
        out = native.NativePropagate.apply(w, v, src, dst, 7)
        ref = torch.zeros(2, 7, 3, dtype=torch.float64).index_add_(1, dst.long(), w * v[:, src.long()])
        assert (out - ref).abs().max() < 1e-12
        assert any(n.endswith(".so") for n in os.listdir({str(tmp_path)!r}))  # built here, not read from the cache
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


@pytest.mark.parametrize("edge_dim", [1, 3, 5, 9])  # every branch of the edge-row loads, float and double
def test_the_kernels_build_with_the_machine_flags(edge_dim):
    """A source that only builds with the portable fallback flags runs without AVX-512, silently slower:
    the masked edge-row loads once failed to compile for De = 1 (4 bytes in an 8-byte vector)."""
    probe = _cc.load("flags_probe", ["int f(void) { return 3; }"])
    if probe is None or _cc.FLAGS_USED.get("flags_probe") != 0:
        pytest.skip("the machine flags do not build here")
    assert _native.library(4, edge_dim) is not None
    assert _cc.FLAGS_USED[f"mlp_edge_4x{edge_dim}"] == 0
