"""PlasticRule (Miconi's differentiable plasticity), its lean backprop, and the pattern-completion,
one-shot and reversal tasks."""

import pytest
import torch

import simgraph as sg
import topologies
from simgraph.errors import ConfigError, GraphError, ShapeError
from simgraph.rules import PlasticRule
from simgraph.tasks.oneshot import OneShotTask
from simgraph.tasks.pattern_completion import PatternCompletionTask

D = torch.float64


def mixed_net(layout="dense", seed=0):
    """Three projections with three synapse types; the a -> b one is sparse whatever ``layout`` says."""
    net = sg.Network(seed).population("a", 5).population("b", 4)
    net.connect("a", "a", "all_to_all", layout=layout, synapse_type="rec")
    net.connect("a", "b", "pairwise_bernoulli", p=0.6, synapse_type="ff")
    net.connect("b", "a", "all_to_all", layout=layout, synapse_type="fb")
    return net.inputs("a").outputs("b", "a").build()


def grads(rule, graph, u, lean):
    rule.zero_grad()
    run = sg.simulate(rule, graph, u, lean=lean)
    weights = torch.linspace(-1, 2, run.outputs.shape[2], dtype=D).view(1, 1, -1, 1)
    ((run.outputs * weights).pow(2).sum() + run.state["edge"].sum()).backward()
    return run.outputs.detach(), {k: p.grad.clone() for k, p in rule.named_parameters()}


def direct(rule, u, n, oja=False, modulated=False):
    """The equations of REFERENCES.md section 2 on explicit [post, pre] matrices (a dense all-to-all net)."""
    w, alpha, eta = rule.w.view(n, n), rule.alpha.view(n, n), rule.eta_table()[0, 0]
    x, H, outs = torch.zeros(u.shape[1], n, dtype=D), torch.zeros(u.shape[1], n, n, dtype=D), []
    for t in range(u.shape[0]):
        x_new = torch.tanh(torch.einsum("bij,bj->bi", w + alpha * H, x) + rule.input_gain * u[t])
        m = torch.tanh(x_new @ rule.mod_v[:, 0] + rule.mod_b).view(-1, 1, 1) if modulated else 1.0
        post, pre = x_new[:, :, None], x[:, None, :]
        if oja:  # H_ij += eta y_i (x_j - y_i H_ij)
            H = H + eta * m * post * (pre - post * H)
        else:  # H_ij = (1 - eta) H_ij + eta x_j(t-1) y_i(t)
            H = (1 - eta) * H + eta * m * post * pre
        x = x_new
        outs.append(x)
    return torch.stack(outs)


@pytest.mark.parametrize("kw", [{}, {"oja": True}, {"neuromodulated": True}], ids=["plain", "oja", "modulated"])
@pytest.mark.parametrize("lean", [False, True])
def test_matches_direct_equations(kw, lean):
    n, graph = 6, topologies.fully_recurrent(6)
    rule = PlasticRule(graph, eta=0.2, init_std=0.4, input_gain=2.0, **kw).double()
    u = torch.randn(9, 2, n, generator=torch.Generator().manual_seed(1), dtype=D)
    ref = direct(rule, u, n, kw.get("oja", False), kw.get("neuromodulated", False))
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), list(rule.parameters()))
    rule.zero_grad()
    out = sg.simulate(rule, graph, u, lean=lean).outputs[..., 0]
    out.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    for g_ref, p in zip(ref_grads, rule.parameters()):
        torch.testing.assert_close(p.grad, g_ref, rtol=1e-10, atol=1e-12)
    assert ref[-1].abs().max() > 0.1 and ref_grads[1].abs().max() > 1e-4  # the check is not vacuous


def test_simulate_runs_the_same_step():
    graph = topologies.fully_recurrent(5)
    rule = PlasticRule(graph, init_std=0.3).double()
    u = torch.randn(7, 3, 5, dtype=D)
    torch.testing.assert_close(sg.simulate(rule, graph, u).outputs, sg.simulate(rule, graph, u, lean=True).outputs)


VARIANTS = {
    "plain": {},
    "oja": {"oja": True},
    "modulated": {"neuromodulated": True},
    "eta_per_type": {"learn_eta": True, "eta_per_type": True, "eta": 0.3},
    "all": {"oja": True, "neuromodulated": True, "learn_eta": True, "eta": 0.2},
    "non_plastic": {"plastic": False},
}


@pytest.mark.parametrize("name", VARIANTS)
def test_lean_backprop_equals_autograd(name):
    graph = mixed_net()
    rule = PlasticRule(graph, init_std=0.5, input_gain=2.0, **VARIANTS[name]).double()
    u = torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(2), dtype=D)
    out0, g0 = grads(rule, graph, u, lean=False)
    out1, g1 = grads(rule, graph, u, lean=True)
    torch.testing.assert_close(out1, out0, rtol=0, atol=1e-12)
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-9, atol=1e-11, msg=f"gradient of {k}")


def test_lean_float32_stays_close_over_a_long_episode():
    """Running the trace backwards divides by 1 - eta every tick: rounding must stay small over 106 ticks."""
    graph = topologies.fully_recurrent(64)
    rule = PlasticRule(graph, init_std=0.1)
    task = PatternCompletionTask(n_bits=64)
    ep = task.sample(2, seed=3)
    rule64 = PlasticRule(graph, init_std=0.1).double()
    _, g32 = grads(rule, graph, ep.inputs, lean=True)
    _, g64 = grads(rule64, graph, ep.inputs.double(), lean=True)  # float64 lean == autograd (tested above)
    for k in g64:
        err = (g32[k].double() - g64[k]).norm() / g64[k].norm()
        assert err < 1e-4, (k, float(err))


def test_dense_and_sparse_layouts_agree():
    dense, sparse = mixed_net("dense"), mixed_net("sparse")
    assert {p.layout for p in dense.projections.values()} == {"dense", "sparse"}
    assert {p.layout for p in sparse.projections.values()} == {"sparse"}
    assert torch.equal(dense.edge_index, sparse.edge_index)
    u = torch.randn(10, 2, 5, dtype=D)
    for lean in (False, True):
        rd = PlasticRule(dense, init_std=0.5, oja=True, learn_eta=True, eta_per_type=True, eta=0.2).double()
        rs = PlasticRule(sparse, init_std=0.5, oja=True, learn_eta=True, eta_per_type=True, eta=0.2).double()
        out_d, g_d = grads(rd, dense, u, lean)
        out_s, g_s = grads(rs, sparse, u, lean)
        torch.testing.assert_close(out_s, out_d, rtol=1e-12, atol=1e-12)
        for k in g_d:
            torch.testing.assert_close(g_s[k], g_d[k], rtol=1e-10, atol=1e-12)


def test_non_plastic_has_no_alpha_to_learn():
    rule = PlasticRule(topologies.fully_recurrent(4), plastic=False)
    assert [k for k, _ in rule.named_parameters()] == ["w"] and rule.alpha.abs().sum() == 0


def test_learned_eta_stays_in_range_and_per_type():
    graph = mixed_net()
    rule = PlasticRule(graph, eta=0.3, learn_eta=True, eta_per_type=True)
    assert rule.eta_table().shape == (graph.num_synapse_types, 1)
    torch.testing.assert_close(rule.eta_table(), torch.full((3, 1), 0.3))
    with torch.no_grad():
        rule.eta_logit.fill_(-50.0)
    assert (rule.eta_table() >= 0).all() and (rule.eta_table() < 1).all()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"eta": 1.0}, ConfigError),
        ({"eta": -0.1}, ConfigError),
        ({"eta": float("nan")}, ConfigError),
        ({"eta": 0.0, "learn_eta": True}, ConfigError),
        ({"input_gain": "20"}, ConfigError),
        ({"init_std": -1.0}, ConfigError),
    ],
)
def test_rule_config_errors(kwargs, error):
    with pytest.raises(error):
        PlasticRule(topologies.fully_recurrent(3), **kwargs)


def test_rule_graph_and_input_errors():
    graph = topologies.fully_recurrent(4)
    rule = PlasticRule(graph)
    with pytest.raises(GraphError, match="built for a graph"):
        sg.simulate(rule, topologies.fully_recurrent(5), torch.zeros(3, 1, 5), lean=True)
    with pytest.raises(GraphError, match="built for a graph"):
        sg.simulate(rule, topologies.fully_recurrent(5), torch.zeros(3, 1, 5), lean=True)
    with pytest.raises(GraphError):
        PlasticRule("not a graph")
    with pytest.raises(ShapeError):
        sg.simulate(rule, graph, torch.zeros(3, 1, 7), lean=True)
    u = torch.randn(3, 1, 4)  # inputs take the state's precision, as in sg.simulate
    torch.testing.assert_close(sg.simulate(rule, graph, u.to(D), lean=True).outputs, sg.simulate(rule, graph, u, lean=True).outputs)
    state64 = {k: v.to(D) for k, v in rule.init_state(graph, 1).items()}
    with pytest.raises(ShapeError, match="float64"):
        sg.simulate(rule, graph, u, state=state64, lean=True)


# ---------------------------------------------------------------------- tasks
def test_pattern_completion_defaults_are_the_paper():
    task = PatternCompletionTask()
    assert task.ticks == 106 and task.num_inputs == task.num_outputs == 1000
    ep = task.sample(3, seed=0)
    assert ep.inputs.shape == (106, 3, 1000) and ep.targets.shape == (106, 3, 1000) and ep.loss_mask.shape == (106, 3, 1000)
    assert ep.loss_mask.sum() == 3 * 1000 and ep.loss_mask[-1].all() and torch.equal(ep.loss_mask, ep.metric_mask)
    x, target = ep.inputs[:, 0], ep.targets[-1, 0]
    shown = x[:100].reshape(10, 10, 1000)  # 2 repeats x 5 patterns, each 6 on + 4 blank
    assert (shown[:, 6:] == 0).all() and (shown[:, :6] == shown[:, :1]).all()
    patterns = shown[:, 0]
    assert set(patterns.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(p.tolist()) for p in patterns}) == 5  # every pattern shown twice
    assert any(torch.equal(p, target) for p in patterns)
    cue = x[100:]
    assert (cue == cue[:1]).all() and ((cue[0] == 0) | (cue[0] == target)).all()
    assert 0.4 < (cue[0] == 0).float().mean() < 0.6
    assert torch.equal(task.sample(3, seed=0).inputs, ep.inputs)
    assert not torch.equal(task.sample(3, seed=1).inputs, ep.inputs)


def test_pattern_completion_knobs_and_metrics():
    task = PatternCompletionTask(n_bits=50, n_patterns=2, present_ticks=3, blank_ticks=0, repeats=1, cue_ticks=2,
                                 cue_zero_prob=0.0, bias=True)
    ep = task.sample(2, seed=0)
    assert task.ticks == 2 * 3 + 2 and ep.inputs.shape == (8, 2, 51) and (ep.inputs[..., 50] == 1).all()
    assert torch.equal(ep.inputs[-1, :, :50], ep.targets[-1])  # nothing zeroed
    perfect = ep.targets.clone()
    assert task.loss(perfect, ep) == 0 and task.metrics(perfect, ep)["sign_error"] == 0
    assert task.metrics(-perfect, ep)["sign_error"] == 1 and task.loss(-perfect, ep) == 4 * 50
    with pytest.raises(ShapeError):
        task.loss(perfect[:, :, :10], ep)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_bits": 0}, {"n_patterns": 0}, {"present_ticks": 0}, {"blank_ticks": -1}, {"repeats": 0}, {"cue_ticks": 0},
     {"cue_zero_prob": 1.0}, {"cue_zero_prob": -0.1}, {"cue_zero_prob": True}, {"n_bits": 2.5}, {"bias": "yes"}],
)
def test_pattern_completion_validation(kwargs):
    with pytest.raises(ConfigError):
        PatternCompletionTask(**kwargs)


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"seed": "a"}, {"seed": 1.5}])
def test_sample_validation(kw):
    with pytest.raises(ConfigError):
        PatternCompletionTask(n_bits=4).sample(**kw)
    with pytest.raises(ConfigError):
        OneShotTask().sample(**kw)


def test_oneshot_and_reversal_layout():
    task = OneShotTask()
    ep = task.sample(4, seed=0)
    assert task.ticks == 20 and ep.inputs.shape == (20, 4, 10) and ep.targets.shape == (20, 4, 2)
    assert ep.loss_mask[-1].all() and ep.loss_mask.sum() == 4 * 2
    lab = ep.inputs[..., 8:]
    assert (lab[[1, 2, 3, 4, 5, 7, 8, 9, 10, 11]] == 0).all() and (lab[[0, 6]].abs() == 1).all()  # first tick only
    assert (ep.inputs[12:] [..., 8:] == 0).all() and (ep.inputs[12:, :, :8].abs() == 1).all()  # query: no label
    for b in range(4):  # the target is the label shown with the queried pattern
        shown = {tuple(ep.inputs[t, b, :8].tolist()): ep.inputs[t, b, 8:] for t in (0, 6)}
        torch.testing.assert_close(shown[tuple(ep.inputs[-1, b, :8].tolist())], ep.targets[-1, b])

    rev = OneShotTask.reversal_task()
    ep = rev.sample(8, seed=1)
    assert rev.ticks == 20 and rev.phase_ticks == 10 and ep.loss_mask[[9, 19]].all() and ep.loss_mask.sum() == 16 * 2
    for b in range(8):
        first = {tuple(ep.inputs[t, b, :8].tolist()): ep.inputs[t, b, 8:] for t in (0, 3)}
        second = {tuple(ep.inputs[t, b, :8].tolist()): ep.inputs[t, b, 8:] for t in (10, 13)}
        for p in first:
            assert torch.equal(first[p], -second[p])  # 2 labels: the swap flips every label bit


@pytest.mark.parametrize(
    "kwargs",
    [{"pattern_bits": 0}, {"label_bits": 1}, {"n_patterns": 0}, {"present_ticks": 0}, {"label_ticks": 5},
     {"blank_ticks": -1}, {"query_ticks": 0}, {"reversal": 1}, {"n_patterns": 1, "label_bits": 2, "reversal": True}],
)
def test_oneshot_validation(kwargs):
    with pytest.raises(ConfigError):
        OneShotTask(**kwargs)


def test_plastic_rule_learns_a_small_completion_task():
    """A few Adam steps on 16-bit, 2-pattern completion: the plastic network's error must fall."""
    torch.manual_seed(0)
    task = PatternCompletionTask(n_bits=16, n_patterns=2, repeats=1, present_ticks=3, blank_ticks=1, cue_ticks=3)
    graph = topologies.fully_recurrent(16)
    rule = PlasticRule(graph, init_std=0.01, seed=0)
    opt = torch.optim.Adam(rule.parameters(), lr=0.03)
    errs = []
    for i in range(60):
        ep = task.sample(16, seed=i)
        out = sg.simulate(rule, graph, ep.inputs, lean=True).outputs
        loss = task.loss(out, ep)
        opt.zero_grad()
        loss.backward()
        opt.step()
        errs.append(float(task.metrics(out, ep)["sign_error"]))
    first, last = sum(errs[:5]) / 5, sum(errs[-5:]) / 5
    assert first > 0.15 and last < 0.5 * first, errs  # deterministic: seeded init and episodes


@pytest.mark.parametrize("lean", [True, False])
def test_simulate_leaves_the_given_state_alone(lean):
    """The lean episode wrote its traces into the caller's state['edge'] (contiguous() of a same-size
    expand is the tensor itself): a second run from the same state then started elsewhere."""
    g = topologies.fully_recurrent(8, seed=0)
    rule = PlasticRule(g, eta=0.2, seed=0)
    state = rule.init_state(g, 2)
    state = {"node": 0.1 * torch.ones_like(state["node"]), "edge": 0.1 * torch.ones_like(state["edge"])}
    before = {k: v.clone() for k, v in state.items()}
    u = torch.randn(5, 2, g.num_inputs, generator=torch.Generator().manual_seed(0))
    first = sg.simulate(rule, g, u, state=state, lean=lean)
    for k in state:
        assert torch.equal(state[k], before[k]), k
    second = sg.simulate(rule, g, u, state=state, lean=lean)
    torch.testing.assert_close(first.outputs, second.outputs, rtol=0, atol=0)
