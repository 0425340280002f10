"""The engine's speed paths are switched on and behave: allocator setting, fast dense products."""

import subprocess
import sys

import pytest
import torch

import simgraph as sg
from simgraph import _allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_freed_memory_is_kept_unless_opted_out():
    assert _allocator._applied  # importing simgraph applied it
    code = "import simgraph._allocator as a, simgraph; print(a._applied)"
    env = {"SIMGRAPH_KEEP_FREED_MEMORY": "0", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("batch_w, batch_x", [(1, 1), (1, 3), (3, 3), (3, 1)])
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "broadcast"])
@pytest.mark.parametrize("channels", [1, 3])
def test_dense_matvec_paths_match_the_definition(batch_w, batch_x, blas, channels, monkeypatch):
    """Every branch of the dense product (matvec, shared GEMM, batched rows, strided channel, the
    broadcast product small nets take) equals w * pre(x) summed."""
    from simgraph.graph import dense

    monkeypatch.setattr(dense, "BROADCAST_BELOW", 0 if blas else 2**18)
    g = sg.Network(seed=0).population("n", 7).connect("n", "n").inputs("n").outputs("n").build()
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(batch_w, g.num_edges, channels, generator=gen, dtype=torch.float64)[..., -1:]  # strided when 3
    x = torch.randn(batch_x, g.num_nodes, 1, generator=gen, dtype=torch.float64)
    for wb in (w, w[:1].expand(max(batch_w, batch_x), -1, -1)):
        src, dst = g.edge_index
        B = max(wb.shape[0], x.shape[0])
        fwd = torch.zeros(B, 7, 1, dtype=torch.float64).index_add(1, dst, wb * x[:, src])
        back = torch.zeros(B, 7, 1, dtype=torch.float64).index_add(1, src, wb * x[:, dst])
        torch.testing.assert_close(g.propagate(wb, x).expand(B, -1, -1), fwd)
        torch.testing.assert_close(g.propagate_back(wb, x).expand(B, -1, -1), back)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_every_rule_step_traces_without_graph_breaks(kind):
    """torch.compile sees each rule's whole tick as one graph (after graph.prepare())."""
    import torch._dynamo as dynamo

    from simgraph.bench import suite

    g = suite.make_graph(kind, 24 if kind == "dense" else 120, 0.05)
    for name in suite.RULES:
        rule = suite.make_rule(name, g)
        state = rule.init_state(g, 2)
        u = torch.randn(2, g.num_nodes, rule.input_dim)
        rule.step(g, state, u)  # an eager tick makes the schedule's restricted views
        g.prepare()
        dynamo.reset()
        explained = dynamo.explain(rule.step)(g, state, u)
        assert explained.graph_break_count == 0, (name, [str(b.reason)[:200] for b in explained.break_reasons])
        assert explained.graph_count == 1, name


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_simulate_compiled_equals_eager(kind):
    """simulate(compile=...) runs the compiled tick and gives the eager numbers (dynamo with the
    eager backend here: the wiring, guards and prepared lookups, without a C++ build in CI)."""
    from simgraph.bench import suite

    g = suite.make_graph(kind, 16 if kind == "dense" else 100, 0.05)
    rule = suite.make_rule("mlp", g)
    u = torch.randn(5, 2, g.num_inputs, generator=torch.Generator().manual_seed(0))
    eager = sg.simulate(rule, g, u)
    compiled = sg.simulate(rule, g, u, compile={"backend": "eager", "fullgraph": True})
    torch.testing.assert_close(compiled.outputs, eager.outputs)
    torch.testing.assert_close(compiled.state["edge"], eager.state["edge"])
    with pytest.raises(sg.errors.ConfigError, match="compile"):
        sg.simulate(rule, g, u, compile="yes")


def test_compiled_and_checkpointed_gradients_match_plain_backprop():
    from simgraph.bench import suite

    g = suite.make_graph("dense", 12)
    rule = suite.make_rule("mlp", g).double()
    u = torch.randn(9, 2, g.num_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = [p for p in rule.parameters() if p.requires_grad]

    def grads(**kw):
        loss = sg.simulate(rule, g, u, **kw).outputs.square().sum()
        return torch.autograd.grad(loss, params, allow_unused=True)

    plain = grads()
    for got in (grads(checkpoint_every=3, compile={"backend": "eager"}), grads(compile={"backend": "eager"})):
        for a, b in zip(plain, got):
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
