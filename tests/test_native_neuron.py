"""The Hebbian-start MLP rule's neuron update as a C kernel (rules/_native_neuron.py) against its
torch reference: gradcheck and double backward in float64 (with and without the residual's bias,
plastic or not, row counts that are not a multiple of the kernel's 16 or 8 lanes), float32 within
float32 rounding, the rule's values and second-order gradients through an episode equal to the
plain mode's, and the fallbacks where the kernel cannot run."""

import pytest
import torch

import simgraph as sg
from simgraph import topologies
from simgraph.errors import ShapeError
from simgraph.rules import MLPRule, _native_neuron

needs_native = pytest.mark.skipif(not _native_neuron.available(4, 8, 4, 80, torch.float32, torch.device("cpu")),
                                  reason="the native kernel cannot be built here (no C compiler)")
pytestmark = needs_native


def _case(B=2, N=3, DM=4, HN=8, TT=4, H=16, bias=True, plastic=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    CI, QI = DM + TT + 3, HN + TT + 2
    return dict(both=r(B, N, DM + 1), x=r(B, N, HN + 1), u=r(B, N, 1), t=r(1, N, TT),
                scale=(torch.rand(1, N, 1, generator=g, dtype=dtype) + 0.5), w_ih=r(3 * HN, CI), w_hh=r(3 * HN, HN),
                b_ih=r(3 * HN), b_hh=r(3 * HN), beta=r(()), gain=r(()), eps=0.3, res_w=r(1, HN),
                res_b=r(1) if bias else None, q_w=r(5 * H, QI) if plastic else None, q_b=r(5 * H) if plastic else None)


def _grads(outs, case, seed=1):
    g = torch.Generator().manual_seed(seed)
    outs = [o for o in outs if o is not None]
    wanted = [v for v in case.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    cot = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    return torch.autograd.grad(outs, wanted, cot)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("plastic", [True, False])
@pytest.mark.parametrize("rows", [(2, 3), (3, 11), (1, 16)])
def test_values_and_gradients_equal_the_reference_in_float64(bias, plastic, rows):
    case = _case(*rows, bias=bias, plastic=plastic, HN=5, TT=3, H=4)  # widths unlike the default's
    native = _native_neuron.neuron_update(**case)
    assert type(native[0].grad_fn).__name__ == "NativeNeuronUpdateBackward"
    ref = _native_neuron.reference(**case)
    for a, b in zip(native, ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    for a, b in zip(_grads(native, case), _grads(ref, case)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_gradcheck_and_double_backward():
    case = _case(B=2, N=5, DM=2, HN=3, TT=2, H=2)
    names = [k for k, v in case.items() if isinstance(v, torch.Tensor)]

    def f(*tensors):
        xo, y = _native_neuron.neuron_update(**{**case, **dict(zip(names, tensors))})
        return xo, y

    tensors = [case[k] for k in names]
    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)


def test_float32_kernel_within_float32_rounding():
    """The default widths in float32 (its inline tanh and lane-wise float sums) against float64."""
    case64 = _case(B=4, N=32)
    case32 = {k: (v.detach().float().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v)
              for k, v in case64.items()}
    ref, got = _native_neuron.reference(**case64), _native_neuron.neuron_update(**case32)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=2e-5)
    for a, b in zip(_grads(got, case32), _grads(ref, case64)):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw", [{}, dict(learn_from="activity", residual_bias=False), dict(mirror=True, plastic=False)])
def test_rule_native_equals_plain_to_second_order(kw):
    """A trained-looking Hebbian-start rule through a whole episode, native against plain: outputs,
    gradients and the gradient of the squared gradient norm."""
    graph = topologies.sparse_random(12, p=0.4, seed=0)
    out = {}
    for mode in ("plain", "native"):
        torch.manual_seed(0)
        rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types, start="hebbian", edge_update=mode, **kw).double()
        with torch.no_grad():
            for p in rule.parameters():
                p.add_(0.1 * torch.randn_like(p))
        u = torch.randn(4, 3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        run = sg.simulate(rule, graph, u)
        params = [p for p in rule.parameters() if p.requires_grad]
        g = torch.autograd.grad(run.outputs.square().sum(), params, create_graph=True, allow_unused=True)
        gg = torch.autograd.grad(sum(x.square().sum() for x in g if x is not None), params, allow_unused=True)
        out[mode] = (run.outputs, g, gg)
    torch.testing.assert_close(out["native"][0], out["plain"][0], rtol=1e-11, atol=1e-12)
    for which in (1, 2):
        for a, b in zip(out["native"][which], out["plain"][which]):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_falls_back_to_the_reference_where_the_kernel_cannot_run(monkeypatch):
    case = _case()
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0")
    off = _native_neuron.neuron_update(**case)
    monkeypatch.delenv("SIMGRAPH_NATIVE")
    mixed = _native_neuron.neuron_update(**{**case, "u": case["u"].float()})  # mixed dtypes: torch's promotion
    plain = _native_neuron.neuron_update(**case, native=False)
    for out in (off, mixed, plain):
        assert type(out[0].grad_fn).__name__ != "NativeNeuronUpdateBackward"
    torch.testing.assert_close(off[0], _native_neuron.neuron_update(**case)[0], rtol=1e-12, atol=1e-13)


def test_wrong_widths_are_a_shape_error_not_a_read_past_the_end():
    case = _case()
    with pytest.raises(ShapeError, match="w_ih must be"):
        _native_neuron.neuron_update(**{**case, "w_ih": case["w_ih"][:, :-1]})
    with pytest.raises(ShapeError, match="q_w must be"):
        _native_neuron.neuron_update(**{**case, "q_w": case["q_w"][:, :-1]})
    with pytest.raises(ShapeError, match="t must be"):
        _native_neuron.neuron_update(**{**case, "t": case["t"][:, :-1]})


def test_the_hebbian_tick_traces_without_graph_breaks_and_compiles_to_the_eager_numbers():
    """Under torch.compile the neuron update is the torch reference (one graph, no break at the C call)."""
    import torch._dynamo as dynamo

    graph = topologies.sparse_random(20, p=0.3, seed=0)
    rule = MLPRule(graph.num_neuron_types, graph.num_synapse_types, start="hebbian")
    state = rule.init_state(graph, 2)
    u = torch.randn(2, 20, 1, generator=torch.Generator().manual_seed(0))
    rule.step(graph, state, u)
    graph.prepare()
    dynamo.reset()
    explained = dynamo.explain(rule.step)(graph, state, u)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    inputs = torch.randn(4, 2, 20, generator=torch.Generator().manual_seed(1))
    eager = sg.simulate(rule, graph, inputs)
    compiled = sg.simulate(rule, graph, inputs, compile={"backend": "eager", "fullgraph": True})
    torch.testing.assert_close(compiled.outputs, eager.outputs, rtol=1e-5, atol=1e-6)


def test_split_over_threads_gives_the_one_thread_results(monkeypatch):
    """Rows split over 2 and 3 threads (43 rows: uneven, with a partial block of lanes): the same
    outputs and, the weights' gradients summed per thread, the same gradients to float64 rounding."""
    case = _case(B=1, N=43)
    before, results = torch.get_num_threads(), {}
    try:
        for threads, rows in ((1, 2**40), (2, 0), (3, 0)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(_native_neuron, "PARALLEL_ROWS", rows)
            out = _native_neuron.neuron_update(**case)
            results[threads] = (out, _grads(out, case))
    finally:
        torch.set_num_threads(before)
    for threads in (2, 3):
        for a, b in zip(results[threads][0], results[1][0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(results[threads][1], results[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
