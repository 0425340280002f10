"""An outsider's checks of the native (C) paths against the plain reference, written from the README
and the public API: ``MLPRule(edge_update="native" | "auto")`` (the C synapse kernel) and
``Graph.propagate`` with 2-64 channels (the C propagate), against ``edge_update="plain"`` and
``SIMGRAPH_NATIVE=0``. Values and gradients must agree (float64 to ~1e-10, float32 to float32
rounding), errors must be the same simgraph errors, and nothing may crash.

The discrepancies it found (a per-type write dropped without use_types, a shared 2-D edge state, w of
another channel count or batch than x in propagate, states of a wrong width or batch) are fixed; their
tests below are the regression tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import networkx as nx
import pytest
import torch

import simgraph as sg
import simgraph.topologies as topologies
from simgraph.errors import GraphError, MemoryBudgetError, ShapeError, SimgraphError, SimgraphWarning
from simgraph.rules import _native, _native_episode
from simgraph.schedule import restrict

F64, F32 = torch.float64, torch.float32


# ---------------------------------------------------------------------- graphs, from the README's vocabulary
def g_typed():
    """The README's own example net (smaller): bernoulli without autapses, fixed in-degree, dense, one_to_one."""
    net = sg.Network(seed=1)
    net.population("exc", 8, neuron_type="excitatory").population("inh", 4, neuron_type="inhibitory")
    net.connect("exc", "exc", "pairwise_bernoulli", p=0.3, allow_autapses=False, synapse_type="ee")
    net.connect("exc", "inh", "fixed_indegree", indegree=3, synapse_type="ei")
    net.connect("inh", "exc", "all_to_all", synapse_type="ie")
    net.connect("inh", "inh", "one_to_one", synapse_type="ii")
    return net.inputs("exc").outputs("exc").build()


def g_multapses():
    """Multapses (fixed_total_number, fixed_outdegree, explicit duplicates) and self loops."""
    net = sg.Network(seed=2)
    net.population("a", 5).population("b", 3)
    net.connect("a", "b", "fixed_total_number", n=20, allow_multapses=True)
    net.connect("b", "a", "fixed_outdegree", outdegree=4, allow_multapses=True, synapse_type="back")
    net.connect("a", "a", "explicit", pre_idx=[0, 0, 0, 1, 2, 2], post_idx=[0, 0, 1, 1, 2, 3], synapse_type="self")
    return net.inputs("a").outputs("b").build()


def g_empty_projection():
    net = sg.Network(seed=3)
    net.population("a", 6).population("b", 4)
    net.connect("a", "b", "pairwise_bernoulli", p=0.0, synapse_type="none")  # no synapses
    net.connect("a", "a", "pairwise_bernoulli", p=0.4, synapse_type="rec")
    net.connect("b", "a", "all_to_all", synapse_type="back")
    return net.inputs("a").outputs("a").build()


def g_one_neuron():
    return sg.Network(seed=0).population("n", 1).connect("n", "n").inputs("n").outputs("n").build()


def g_networkx():
    G = nx.MultiDiGraph()
    G.add_nodes_from([(0, {"type": "s"}), (1, {"type": "i"}), (2, {"type": "i"}), (3, {"type": "m"})])
    G.add_edges_from([(0, 1, {"type": "chem"}), (0, 1, {"type": "chem"}), (1, 1, {"type": "chem"}),
                      (1, 3, {"type": "chem"}), (2, 3, {"type": "chem"}), (1, 2, {"type": "gap"}),
                      (2, 1, {"type": "gap"}), (3, 0, {"type": "chem"})])
    return sg.from_networkx(G, node_type_attr="type", inputs={"type": "s"}, outputs="m")


def g_networkx_undirected():
    G = nx.watts_strogatz_graph(10, 4, 0.3, seed=0)
    nx.set_node_attributes(G, "neuron", "type")
    return sg.from_networkx(G, node_type_attr="type", inputs=["neuron"], outputs=["neuron"])


def g_big_typed():
    """Over 256 synapses (several chunks of the kernel's gradient accumulators), types interleaved."""
    net = sg.Network(seed=4)
    net.population("a", 20, neuron_type="A").population("b", 15, neuron_type="B").population("c", 5, neuron_type="C")
    net.connect("a", "b", "all_to_all", synapse_type="ab")
    net.connect("b", "a", "pairwise_bernoulli", p=0.5, synapse_type="ba")
    net.connect("a", "a", "fixed_indegree", indegree=7, synapse_type="aa")
    net.connect("b", "c", "fixed_total_number", n=300, synapse_type="ab")  # the same type again, later in edge order
    net.connect("c", "a", "all_to_all", synapse_type="ca")
    return net.inputs("a", "c").outputs("b").build()


GRAPHS = {
    "fully_recurrent": lambda: topologies.fully_recurrent(6, seed=0),
    "fully_recurrent_no_autapses": lambda: topologies.fully_recurrent(6, autapses=False, seed=0),
    "sparse_random": lambda: topologies.sparse_random(20, 0.2, seed=0),
    "small_world": lambda: topologies.small_world(16, 4, 0.2, seed=0),
    "modular": lambda: topologies.modular(3, 5, 0.5, 0.1, seed=0),
    "layered": lambda: topologies.layered((3, 5, 2), seed=0),
    "hopfield": lambda: topologies.hopfield(8, seed=0),
    "recall_network": lambda: topologies.recall_network(4, 6, 3, seed=0),
    "recall_sparse_teach": lambda: topologies.recall_network(4, 8, 3, p_recurrent=0.3, teach=True, seed=0),
    "typed": g_typed,
    "multapses": g_multapses,
    "empty_projection": g_empty_projection,
    "one_neuron": g_one_neuron,
    "networkx": g_networkx,
    "networkx_undirected": g_networkx_undirected,
    "big_typed": g_big_typed,
}
_CACHE: dict = {}


def graph(name):
    if name not in _CACHE:
        _CACHE[name] = GRAPHS[name]()
    return _CACHE[name]


# ---------------------------------------------------------------------- helpers
@pytest.fixture
def native_calls(monkeypatch):
    """How many ticks MLPRule handed to the native kernel, one by one or as a whole episode
    (``rules/_native_episode.py``), so a 'native' run that silently fell back is caught."""
    calls = {"n": 0}
    real, real_episode = _native.edge_update, _native_episode.run

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    def counting_episode(ends, U, *a, **k):
        calls["n"] += U.shape[0]
        return real_episode(ends, U, *a, **k)

    monkeypatch.setattr(_native, "edge_update", counting)
    monkeypatch.setattr(_native_episode, "run", counting_episode)
    return calls


def make_rule(g, mode, dtype=F64, perturb=0.05, **kw):
    """The same rule for every mode (same seed), moved off its start point by the same seeded amount."""
    kw.setdefault("num_neuron_types", max(1, g.num_neuron_types))
    kw.setdefault("num_synapse_types", max(1, g.num_synapse_types))
    rule = sg.rules.MLPRule(edge_update=mode, **kw).to(dtype)
    if perturb:
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            for p in rule.parameters():
                p.add_(perturb * torch.randn(p.shape, generator=gen, dtype=F64).to(dtype))
    return rule


def episode(rule, g, inputs, grad=True, **sim):
    rule.zero_grad(set_to_none=True)
    run = sg.simulate(rule, g, inputs, **sim)
    loss = (run.outputs ** 2).sum() + 0.1 * (run.state["edge"] ** 2).sum() + 0.1 * run.state["node"].sum()
    grads = {}
    if grad:
        loss.backward()
        grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in rule.named_parameters()}
    return {"outputs": run.outputs.detach(), "edge": run.state["edge"].detach(), "node": run.state["node"].detach()}, grads


def assert_close(a, b, dtype, what):
    """float64: within 1e-10 of the larger of 1 and the tensor's scale; float32: 1e-4 for values, 5e-4 for gradients."""
    rel = {F64: 1e-10, F32: 1e-4}[dtype] * (5 if what.startswith("grad") else 1)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    if a.numel() == 0:
        return
    scale = max(1.0, a.abs().max().item())
    diff = (a.double() - b.double()).abs().max().item()
    assert diff <= rel * scale, f"{what}: max |plain - native| = {diff:.3e} (scale {scale:.3e}, tolerance {rel * scale:.1e})"


def compare_modes(g, inputs, dtype=F64, native_calls=None, mode="native", **kw):
    vals, grads = {}, {}
    for m in ("plain", mode):
        before = native_calls["n"] if native_calls is not None else 0
        vals[m], grads[m] = episode(make_rule(g, m, dtype, **kw), g, inputs.to(dtype))
        if native_calls is not None:
            ran = native_calls["n"] - before
            assert ran == (0 if m == "plain" else inputs.shape[0]), f"{m}: the native kernel ran {ran} ticks"
    for k in vals["plain"]:
        assert_close(vals["plain"][k], vals[mode][k], dtype, k)
    for k in grads["plain"]:
        assert_close(grads["plain"][k], grads[mode][k], dtype, "grad " + k)
    # the comparison means something: the gradients are not all zero
    assert sum(float(v.abs().sum()) for v in grads["plain"].values()) > 0


def inputs_for(g, T=3, B=2, seed=0):
    return torch.randn(T, B, g.num_inputs, generator=torch.Generator().manual_seed(seed), dtype=F64)


def run_python(code, native="1", timeout=120):
    env = {**os.environ, "SIMGRAPH_NATIVE": native, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout)


HEBB_WRITES = dict(start="hebbian", learn_from="activity", init_weight_std=1.0)  # a non-zero Hebbian write everywhere

# ---------------------------------------------------------------------- values and gradients: every topology
OPTIONS = {
    "random": dict(),
    "hebbian": dict(start="hebbian"),
    "hebbian_writes": HEBB_WRITES,
    "untyped": dict(use_types=False),
    "mirror": dict(mirror=True, hidden=8, edge_dim=3),
    "small": dict(hidden=4, edge_dim=1, node_dim=3),
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", list(GRAPHS))
def test_native_equals_plain_float64_every_topology(name, option, native_calls):
    g = graph(name)
    compare_modes(g, inputs_for(g), F64, native_calls, **OPTIONS[option])


@pytest.mark.parametrize("option", ["random", "hebbian_writes", "mirror"])
@pytest.mark.parametrize("name", ["fully_recurrent", "sparse_random", "typed", "multapses", "big_typed", "recall_sparse_teach"])
def test_native_equals_plain_float32(name, option, native_calls):
    g = graph(name)
    compare_modes(g, inputs_for(g), F32, native_calls, **OPTIONS[option])


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("mode", ["native", "auto"])
def test_batch_sizes_and_auto_runs_native_on_the_cpu(batch, mode, native_calls):
    g = graph("typed")
    compare_modes(g, inputs_for(g, T=4, B=batch), F64, native_calls, mode=mode, **HEBB_WRITES)


# each (hidden, edge_dim) is its own C build (20-40 s on a cold cache): vector widths 2, 4, 8, 16 lanes, and
# edge rows of 1 (a lane), 2-8 (masked) and 9 (beyond a 64-byte vector in float64)
@pytest.mark.parametrize("hidden,edge_dim", [(16, 1), (16, 3), (16, 5), (8, 2), (32, 9), (2, 7)])
def test_hidden_and_edge_dim_combinations(hidden, edge_dim, native_calls):
    g = graph("multapses")
    compare_modes(g, inputs_for(g), F64, native_calls, hidden=hidden, edge_dim=edge_dim, node_dim=5)


@pytest.mark.parametrize("start", ["random", "hebbian"])
def test_per_type_hebbian_core_on_a_typed_net(start, native_calls):
    g = topologies.recall_network(4, 8, 3, teach=True, seed=1)
    kw = dict(write_types=["efferent"], init_weight_std={"afferent": 4.0}) if start == "hebbian" else {}
    compare_modes(g, inputs_for(g), F64, native_calls, start=start, **({"learn_from": "activity"} if kw else {}), **kw)


MORE_OPTIONS = {
    "mirror typed core": dict(mirror=True, start="hebbian", learn_from="activity", init_weight_std={"afferent": 4.0},
                              write_types=["efferent"]),
    "mirror two write types": dict(mirror=True, start="hebbian", write_types=["efferent", "recurrent"]),
    "no residual bias": dict(residual_bias=False, **HEBB_WRITES),
    "hebbian constants": dict(eta=0.5, beta=0.3, input_gain=2.0, output_gain=3.0, residual_scale=0.7, **HEBB_WRITES),
    "type_dim 1, no edge noise": dict(type_dim=1, init_edge_std=0.0),
    "type_dim 9, update_scale 2": dict(type_dim=9, update_scale=2.0),
    "output_dim 2": dict(node_dim=2, output_dim=2),
    "node_dim 1": dict(node_dim=1),
}


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("option", list(MORE_OPTIONS))
def test_more_rule_options_on_a_typed_sparse_net(option, dtype, native_calls):
    g = topologies.recall_network(4, 8, 3, teach=True, p_recurrent=0.5, seed=2)
    compare_modes(g, inputs_for(g, T=4), dtype, native_calls, **MORE_OPTIONS[option])


@pytest.mark.parametrize("input_dim,output_dim", [(3, 1), (2, 2)])
def test_vector_inputs(input_dim, output_dim, native_calls):
    g = graph("typed")
    u = torch.randn(3, 2, g.num_inputs, input_dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    compare_modes(g, u, F64, native_calls, input_dim=input_dim, output_dim=output_dim)


def test_write_types_really_changes_the_result():
    """Guards the previous test: with write_types the Hebbian write lands on fewer synapses, so the run differs."""
    g = topologies.recall_network(4, 8, 3, teach=True, seed=1)
    u = inputs_for(g)
    a = episode(make_rule(g, "plain", **HEBB_WRITES), g, u, grad=False)[0]["edge"]
    b = episode(make_rule(g, "plain", write_types=["efferent"], **HEBB_WRITES), g, u, grad=False)[0]["edge"]
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("write", [["efferent"], ["afferent"]])
def test_untyped_rule_with_write_types_equals_plain(write, native_calls):
    g = topologies.recall_network(4, 6, 3, teach=True, seed=0)
    compare_modes(g, inputs_for(g), F64, native_calls, use_types=False, write_types=write, **HEBB_WRITES)


def test_non_power_of_two_hidden_warns_and_falls_back(native_calls):
    g = graph("typed")
    u = inputs_for(g)
    plain = episode(make_rule(g, "plain", hidden=12), g, u)
    with pytest.warns(SimgraphWarning, match="hidden=12 is not a power of two"):
        native = episode(make_rule(g, "native", hidden=12), g, u)
    assert native_calls["n"] == 0
    for k in plain[0]:
        assert torch.allclose(plain[0][k], native[0][k], rtol=0, atol=1e-12)
    for k in plain[1]:
        assert torch.allclose(plain[1][k], native[1][k], rtol=0, atol=1e-12)


def test_native_off_by_environment(monkeypatch, native_calls):
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0")
    g = graph("typed")
    with pytest.warns(SimgraphWarning, match="SIMGRAPH_NATIVE=0"):
        episode(make_rule(g, "native", edge_dim=6), g, inputs_for(g))
    assert native_calls["n"] == 0


def test_default_mode_from_the_environment(monkeypatch, native_calls):
    monkeypatch.setenv("SIMGRAPH_EDGE_UPDATE", "native")
    g = graph("sparse_random")
    rule = sg.rules.MLPRule()
    assert rule.edge_update == "native"
    sg.simulate(rule, g, inputs_for(g).float())
    assert native_calls["n"] == 3


# ---------------------------------------------------------------------- gradients: second order, inputs, recomputation
def _grads(g, mode, u, kw, *, second=False, input_grad=False, checkpoint_every=0):
    rule = make_rule(g, mode, **kw)
    u = u.clone().requires_grad_(input_grad)
    run = sg.simulate(rule, g, u, checkpoint_every=checkpoint_every)
    loss = (run.outputs ** 2).sum() + (run.state["edge"] ** 2).mean()
    params = list(rule.parameters())
    if second:  # the gradient of the squared gradient norm (what a meta-meta-gradient needs)
        gr = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        loss = sum((x ** 2).sum() for x in gr if x is not None)
    out = torch.autograd.grad(loss, ([u] if input_grad else []) + params, allow_unused=True)
    return [torch.zeros(1, dtype=F64) if x is None else x for x in out]


@pytest.mark.parametrize("kw", [dict(), HEBB_WRITES], ids=["random", "hebbian"])
@pytest.mark.parametrize("how", ["second_order", "input_grad", "checkpoint_every"])
def test_gradients_beyond_first_order(how, kw, native_calls):
    g = graph("recall_sparse_teach")
    u = inputs_for(g, T=4)
    extra = {"second_order": dict(second=True), "input_grad": dict(input_grad=True),
             "checkpoint_every": dict(checkpoint_every=2)}[how]
    a, b = _grads(g, "plain", u, kw, **extra), _grads(g, "native", u, kw, **extra)
    assert native_calls["n"] >= 4
    for x, y in zip(a, b):
        assert_close(x, y, F64, "grad")
    if how == "input_grad":
        assert a[0].abs().max() > 0


def test_backward_that_recomputes_the_hidden_layer(monkeypatch, native_calls):
    """Above KEEP_HIDDEN_MAX values a tick the backward recomputes the hidden layer instead of keeping it."""
    g = graph("big_typed")
    u = inputs_for(g)
    plain = episode(make_rule(g, "plain", **HEBB_WRITES), g, u)
    monkeypatch.setattr(_native, "KEEP_HIDDEN_MAX", 0)
    native = episode(make_rule(g, "native", **HEBB_WRITES), g, u)
    assert native_calls["n"] == 3
    for k in plain[1]:
        assert_close(plain[1][k], native[1][k], F64, "grad " + k)


def test_no_grad_forward_equals_grad_forward():
    g = graph("typed")
    u = inputs_for(g)
    rule = make_rule(g, "native")
    with torch.no_grad():
        a = sg.simulate(rule, g, u).state["edge"]
    b = sg.simulate(rule, g, u).state["edge"].detach()
    assert torch.equal(a, b)


# ---------------------------------------------------------------------- tensors the user hands in
STATES = {
    "contiguous": lambda n, e: {"node": n, "edge": e},
    "edge batch 1": lambda n, e: {"node": n, "edge": e[:1]},
    "edge expanded": lambda n, e: {"node": n, "edge": e[:1].expand_as(e)},
    "node expanded": lambda n, e: {"node": n[:1].expand_as(n), "edge": e},
    "edge channel-strided": lambda n, e: {"node": n, "edge": torch.cat([e, e], -1)[..., ::2]},
    "edge slice of a wider tensor": lambda n, e: {"node": n, "edge": torch.cat([e, e], -1)[..., : e.shape[-1]]},
    "edge synapse-major storage": lambda n, e: {"node": n, "edge": e.permute(1, 0, 2).contiguous().permute(1, 0, 2)},
    "edge channels-first storage": lambda n, e: {"node": n, "edge": e.permute(2, 0, 1).contiguous().permute(1, 2, 0)},
    "node channels-first storage": lambda n, e: {"node": n.permute(2, 0, 1).contiguous().permute(1, 2, 0), "edge": e},
    "edge flipped": lambda n, e: {"node": n, "edge": e.flip(0)},
}


@pytest.mark.parametrize("start", ["random", "hebbian"])
@pytest.mark.parametrize("layout", list(STATES))
def test_non_contiguous_and_expanded_states(layout, start, native_calls):
    g = graph("typed")
    res = {}
    for mode in ("plain", "native"):
        rule = make_rule(g, mode, start=start)
        s0 = rule.init_state(g, 3)
        gen = torch.Generator().manual_seed(5)
        node = (s0["node"] + 0.3 * torch.randn(s0["node"].shape, generator=gen, dtype=F64)).requires_grad_()
        edge = (s0["edge"] + 0.3 * torch.randn(s0["edge"].shape, generator=gen, dtype=F64)).requires_grad_()
        u = inputs_for(g, B=3).transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous inputs
        run = sg.simulate(rule, g, u, state=STATES[layout](node, edge))
        loss = (run.outputs ** 2).sum() + (run.state["edge"] ** 2).sum()
        res[mode] = [run.outputs.detach(), run.state["edge"].detach(), *torch.autograd.grad(loss, [node, edge, rule.edge_in.weight])]
    assert native_calls["n"] == 3
    for a, b in zip(res["plain"], res["native"]):
        assert_close(a, b, F64, layout)


@pytest.mark.parametrize("start", ["random", "hebbian"])
def test_shared_two_dimensional_edge_state(start):
    g = graph("fully_recurrent")
    u = inputs_for(g)
    out = {}
    for mode in ("plain", "native"):
        rule = make_rule(g, mode, start=start)
        st = rule.init_state(g, 2)
        out[mode] = sg.simulate(rule, g, u, state={"node": st["node"], "edge": st["edge"][0].clone()}).state["edge"]
    assert_close(out["plain"], out["native"], F64, "edge")


@pytest.mark.parametrize("mode", ["plain", "native"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_inputs_are_refused_the_same_way(mode, bad):
    g = graph("typed")
    u = inputs_for(g)
    u[1, 0, 2] = bad
    with pytest.raises(ShapeError, match=r"inputs contain NaN or inf \(first at tick 1\)"):
        sg.simulate(make_rule(g, mode), g, u)


@pytest.mark.parametrize("field", ["node", "edge"])
def test_nan_state_is_refused_the_same_way(field):
    g = graph("typed")
    msgs = []
    for mode in ("plain", "native"):
        rule = make_rule(g, mode)
        st = {k: v.clone() for k, v in rule.init_state(g, 2).items()}
        st[field][1, 0, 0] = float("nan")
        with pytest.raises(SimgraphError) as info:
            sg.simulate(rule, g, inputs_for(g), state=st)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] and field in msgs[0]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_saturating_and_non_finite_parameters_agree(dtype):
    """Huge pre-activations (tanh saturated; the float32 kernel clamps its exp) and a NaN/inf parameter: the
    same values, the same NaN pattern."""
    g = graph("typed")
    u = inputs_for(g).to(dtype)
    for tweak in ("scale", "nan", "inf"):
        res = {}
        for mode in ("plain", "native"):
            rule = make_rule(g, mode, dtype, perturb=0)
            with torch.no_grad():
                if tweak == "scale":
                    rule.node_to_edge.weight.mul_(1e20)
                    rule.edge_in.weight.mul_(1e3)
                else:
                    rule.edge_in.weight.view(-1)[3] = float(tweak)
                run = sg.simulate(rule, g, u)
            res[mode] = run.state["edge"]
        p, n = res["plain"], res["native"]
        assert torch.equal(torch.isnan(p), torch.isnan(n)), tweak
        assert_close(p.nan_to_num(0), n.nan_to_num(0), dtype, tweak)


# ---------------------------------------------------------------------- graphs without synapses, views, compile
@pytest.mark.parametrize("mode", ["plain", "native"])
@pytest.mark.parametrize("empty", ["no projections", "only an empty projection"])
def test_graph_without_synapses_is_refused_the_same_way(mode, empty):
    net = sg.Network(seed=0).population("n", 4)
    if empty == "only an empty projection":
        net.connect("n", "n", "pairwise_bernoulli", p=0.0)
    g = net.inputs("n").outputs("n").build()
    with pytest.raises(GraphError, match="at least one synapse"):
        sg.simulate(sg.rules.MLPRule(edge_update=mode), g, torch.randn(2, 1, 4))


@pytest.mark.parametrize("which", ["one projection", "two projections", "all projections"])
def test_restricted_views(which, monkeypatch, native_calls):
    """schedule.restrict: the view's propagate (several channels) and MLPRule.step on the view."""
    g = graph("typed")
    names = list(g.projections)
    view = restrict(g, {"one projection": names[:1], "two projections": names[1:3], "all projections": names}[which])
    gen = torch.Generator().manual_seed(0)
    w, x = torch.randn(2, g.num_edges, 5, generator=gen, dtype=F64), torch.randn(2, g.num_nodes, 5, generator=gen, dtype=F64)
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0")
    y0 = view.propagate(w, x)
    monkeypatch.setenv("SIMGRAPH_NATIVE", "1")
    y1 = view.propagate(w, x)
    assert_close(y0, y1, F64, "propagate")
    out = {}
    for mode in ("plain", "native"):
        rule = make_rule(g, mode)
        st = rule.init_state(g, 2)
        out[mode] = rule.step(view, st, torch.randn(2, g.num_nodes, 1, generator=torch.Generator().manual_seed(1), dtype=F64))
    assert out["plain"]["edge"].shape == out["native"]["edge"].shape
    assert_close(out["plain"]["edge"], out["native"]["edge"], F64, "edge")
    assert_close(out["plain"]["node"], out["native"]["node"], F64, "node")
    assert native_calls["n"] == (1 if which == "all projections" else 0)  # a partial view runs edge_map


def test_compiled_tick_equals_plain():
    """simulate(compile=True) with edge_update="native" (the trace runs the torch code) against plain."""
    g = graph("typed").prepare()
    u = inputs_for(g).float()
    res = {}
    for mode, comp in (("plain", False), ("native", True)):
        rule = make_rule(g, mode, F32, **HEBB_WRITES)
        run = sg.simulate(rule, g, u, compile=comp)
        ((run.outputs ** 2).sum() + (run.state["edge"] ** 2).sum()).backward()
        res[mode] = (run.outputs.detach(), run.state["edge"].detach(), rule.edge_in.weight.grad.clone())
    for a, b in zip(res["plain"], res["native"]):
        assert_close(a, b, F32, "compiled")


# ---------------------------------------------------------------------- Graph.propagate, C = 2..64 channels
@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("channels", [2, 3, 4, 5, 6, 7, 8, 9, 64])
@pytest.mark.parametrize("shape", ["batch", "shared 2-D w", "w batch 1", "x batch 1"])
@pytest.mark.parametrize("name", ["fully_recurrent", "sparse_random", "typed", "multapses", "empty_projection", "one_neuron", "layered"])
def test_propagate_equals_the_layouts(name, shape, channels, dtype, monkeypatch):
    g = graph(name)
    gen = torch.Generator().manual_seed(channels)
    Bw, Bx = {"batch": (3, 3), "shared 2-D w": (None, 3), "w batch 1": (1, 3), "x batch 1": (3, 1)}[shape]
    w = torch.randn(*((Bw,) if Bw else ()), g.num_edges, channels, generator=gen, dtype=F64).to(dtype)
    x = torch.randn(Bx, g.num_nodes, channels, generator=gen, dtype=F64).to(dtype)
    res = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("SIMGRAPH_NATIVE", flag)
        wi, xi = w.clone().requires_grad_(), x.clone().requires_grad_()
        y = g.propagate(wi, xi)
        gw, gx = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum(), [wi, xi], create_graph=True)
        hw, = torch.autograd.grad((gx ** 2).sum() + (gw ** 2).sum(), [wi])  # double backward
        res[flag] = (y, gw, gx, hw)
    for a, b in zip(res["0"], res["1"]):
        assert_close(a, b, dtype, "propagate")


@pytest.mark.parametrize("channels", [2, 5, 9])
@pytest.mark.parametrize("name", ["typed", "multapses", "fully_recurrent", "empty_projection", "one_neuron", "networkx"])
def test_propagate_back_equals_the_layouts_and_to_pre(name, channels, monkeypatch):
    g = graph(name)
    gen = torch.Generator().manual_seed(0)
    w, y = torch.randn(2, g.num_edges, channels, generator=gen, dtype=F64), torch.randn(2, g.num_nodes, channels, generator=gen, dtype=F64)
    monkeypatch.setenv("SIMGRAPH_NATIVE", "0")
    off = g.propagate_back(w, y)
    monkeypatch.setenv("SIMGRAPH_NATIVE", "1")
    on = g.propagate_back(w, y)
    assert_close(off, on, F64, "propagate_back")
    assert_close(g.to_pre(w * g.post(y)), on, F64, "to_pre")


@pytest.mark.parametrize("flag", ["0", "1"])
def test_propagate_on_a_graph_whose_only_projection_is_empty(flag, monkeypatch):
    monkeypatch.setenv("SIMGRAPH_NATIVE", flag)
    g = sg.Network(seed=0).population("n", 4).connect("n", "n", "pairwise_bernoulli", p=0.0).inputs("n").outputs("n").build()
    assert g.num_edges == 0
    y = g.propagate(torch.zeros(2, 0, 3), torch.randn(2, 4, 3))
    assert y.shape == (2, 4, 3) and torch.equal(y, torch.zeros(2, 4, 3))


def test_inference_mode(native_calls):
    g = graph("typed")
    u = inputs_for(g)
    out = {}
    for mode in ("plain", "native"):
        with torch.inference_mode():
            out[mode] = sg.simulate(make_rule(g, mode, **HEBB_WRITES), g, u).state["edge"]
    assert native_calls["n"] == 3
    assert_close(out["plain"], out["native"], F64, "edge")


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "native_off"])
def test_propagate_one_channel_weights_broadcast_like_the_layouts(native):
    """A 1-channel w with a 4-channel x: the same weight for every channel (a fresh process: a wrong
    read past w's end crashed the native kernel)."""
    r = run_python("""
        import torch, simgraph.topologies as topologies
        torch.manual_seed(0)
        g = topologies.fully_recurrent(6, seed=0)
        w, x = torch.randn(2, g.num_edges, 1), torch.randn(2, g.num_nodes, 4)
        ref = (w.view(2, 6, 6, 1) * x.unsqueeze(1)).sum(2)
        print((g.propagate(w, x) - ref).abs().max().item())
    """, native=native)
    assert r.returncode == 0, r.stderr[-500:]
    assert float(r.stdout.split()[-1]) < 1e-5


def test_propagate_mismatched_batches_raise():
    r = run_python("""
        import torch, simgraph.topologies as topologies
        g = topologies.fully_recurrent(6, seed=0)
        try:
            g.propagate(torch.randn(2, g.num_edges, 3), torch.randn(3, g.num_nodes, 3))
            print("no error")
        except Exception as e:
            print("raised", type(e).__name__)
    """)
    assert r.returncode == 0 and "raised" in r.stdout, (r.stdout, r.stderr[-300:])


@pytest.mark.parametrize("extra", [1, -1])
def test_step_with_a_wrong_edge_width_raises(extra):
    r = run_python(f"""
        import torch, simgraph as sg, simgraph.topologies as topologies
        g = topologies.fully_recurrent(6, seed=0)
        rule = sg.rules.MLPRule(edge_update="native")
        st = rule.init_state(g, 2)
        st = {{"node": st["node"], "edge": torch.ones(2, g.num_edges, rule.edge_dim + {extra})}}
        try:
            rule.step(g, st, torch.zeros(2, g.num_nodes, 1))
            print("no error")
        except Exception as e:
            print("raised", type(e).__name__)
    """)
    assert r.returncode == 0 and "raised" in r.stdout, (r.stdout, r.stderr[-300:])


def test_step_with_mismatched_state_batches_raises():
    r = run_python("""
        import torch, simgraph as sg, simgraph.topologies as topologies
        g = topologies.sparse_random(30, 0.2, seed=0)
        rule = sg.rules.MLPRule(edge_update="native")
        st = rule.init_state(g, 3)
        try:
            rule.step(g, {"node": st["node"], "edge": torch.randn(2, g.num_edges, rule.edge_dim)}, torch.zeros(3, g.num_nodes, 1))
            print("no error")
        except Exception as e:
            print("raised", type(e).__name__)
    """)
    assert r.returncode == 0 and "raised" in r.stdout, (r.stdout, r.stderr[-300:])


def test_simulate_refuses_mismatched_state_batches_on_both_modes():
    g = graph("sparse_random")
    for mode in ("plain", "native"):
        rule = sg.rules.MLPRule(edge_update=mode)
        st = rule.init_state(g, 3)
        with pytest.raises(ShapeError, match="state\\['edge'\\] has batch 2 but state\\['node'\\] has batch 3"):
            sg.simulate(rule, g, torch.zeros(2, 3, g.num_inputs), state={"node": st["node"], "edge": torch.randn(2, g.num_edges, 4)})


def test_step_with_a_wrong_edge_width_raises_on_plain():
    g = graph("fully_recurrent")
    rule = sg.rules.MLPRule(edge_update="plain")
    st = rule.init_state(g, 2)
    with pytest.raises(Exception):
        rule.step(g, {"node": st["node"], "edge": torch.ones(2, g.num_edges, rule.edge_dim + 1)}, torch.zeros(2, g.num_nodes, 1))


# ---------------------------------------------------------------------- determinism, checkpoints, budgets
@pytest.mark.parametrize("dtype", [F32, F64])
def test_native_is_bitwise_deterministic(dtype, native_calls):
    g = graph("big_typed")
    runs = [episode(make_rule(g, "native", dtype, **HEBB_WRITES), g, inputs_for(g).to(dtype)) for _ in range(2)]
    assert native_calls["n"] == 6
    for k in runs[0][0]:
        assert torch.equal(runs[0][0][k], runs[1][0][k]), k
    for k in runs[0][1]:
        assert torch.equal(runs[0][1][k], runs[1][1][k]), k


def test_checkpoint_round_trip_then_rerun(tmp_path, native_calls):
    g = graph("recall_sparse_teach")
    u = inputs_for(g)
    trained = make_rule(g, "native", F64, perturb=0.2, **HEBB_WRITES)
    torch.save(trained.state_dict(), tmp_path / "rule.pt")
    first = episode(trained, g, u)
    for mode in ("native", "plain"):
        again = make_rule(g, mode, F64, perturb=0, **HEBB_WRITES)
        again.load_state_dict(torch.load(tmp_path / "rule.pt", weights_only=True))
        second = episode(again, g, u)
        for k in first[0]:
            (torch.testing.assert_close if mode == "plain" else lambda a, b: assert_close(a, b, F64, k))(first[0][k], second[0][k])
        if mode == "native":  # the same kernel on the same parameters: bit for bit
            assert all(torch.equal(first[0][k], second[0][k]) for k in first[0])


@pytest.mark.parametrize("mode", ["plain", "native"])
def test_huge_sizes_are_refused_before_allocation(mode, monkeypatch):
    with pytest.raises(MemoryBudgetError):
        sg.rules.MLPRule(hidden=2 ** 34, edge_update=mode)
    g = graph("typed")
    with pytest.raises(MemoryBudgetError):
        sg.simulate(sg.rules.MLPRule(2, 4, edge_update=mode), g, ticks=3, batch_size=10 ** 12)
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", "100000")
    with pytest.raises(MemoryBudgetError):
        sg.simulate(sg.rules.MLPRule(2, 4, edge_update=mode), g, ticks=3, batch_size=1000)


# ---------------------------------------------------------------------- the command line
def _train(tmp_path, name, native, *extra):
    out = tmp_path / name
    cmd = [sys.executable, "-m", "simgraph.cli", "train", "--out", str(out), "--no-progress", "--no-baselines",
           "--set", "task.bits=8", "--set", "task.num_patterns=2", "--set", "train.steps=4", "--set", "train.batch_size=4",
           "--set", "train.eval_every=2", "--set", "train.eval_batch=8", "--set", "train.curriculum=false", *extra]
    env = {**os.environ, "SIMGRAPH_NATIVE": native, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), out


def test_cli_train_native_against_native_off(tmp_path):
    runs = [_train(tmp_path, "on", "1")[0], _train(tmp_path, "off", "0")[0],
            _train(tmp_path, "plain", "1", "--set", "rule.edge_update=plain")[0],
            _train(tmp_path, "forced", "1", "--set", "rule.edge_update=native")[0]]
    acc = [r["accuracy"]["mlp"] for r in runs]
    loss = [r["metrics"]["loss"] for r in runs]
    assert all(0.5 < a <= 1 for a in acc)
    assert max(acc) - min(acc) <= 0.01, acc
    assert max(loss) - min(loss) <= 1e-3 * max(loss), loss


def test_cli_run_folder_loads_and_reruns_the_same_on_both_modes(tmp_path):
    _, out = _train(tmp_path, "run", "1")
    evals = []
    for native in ("1", "0"):
        r = subprocess.run([sys.executable, "-m", "simgraph.cli", "eval", str(out), "--episodes", "64", "--set", "task.num_patterns=3"],
                           env={**os.environ, "SIMGRAPH_NATIVE": native, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-1000:]
        evals.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert abs(evals[0]["accuracy"] - evals[1]["accuracy"]) <= 0.01 and abs(evals[0]["loss"] - evals[1]["loss"]) <= 1e-4
    rule, g, cfg = sg.train.load_rule(out)
    u = torch.randn(5, 2, g.num_inputs, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rule.edge_update = "native"
        a = sg.simulate(rule, g, u).outputs
        rule.edge_update = "plain"
        b = sg.simulate(rule, g, u).outputs
    assert_close(b, a, F32, "outputs")
