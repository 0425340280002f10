"""VSML LSTM-synapse rule: hand-set forward-mode backprop equals SGD, layouts agree, errors."""

import pytest
import torch

from simgraph.errors import ConfigError, ShapeError, UnknownNameError
from simgraph.rules.lstm_synapse import BackpropCell, LSTMSynapseRule

from test_genome import SIZES, layered, sgd_reference


def test_backprop_cell_is_sgd():
    torch.manual_seed(0)
    graph = layered()
    B, T, lr = 3, 10, 0.1
    rule = LSTMSynapseRule(cell=BackpropCell(lr), reduce="sum", ticks=1).double()
    state = rule.init_state(graph, B)
    weights = lambda s: [s["edge"][:, p.slice, rule.hidden].reshape(B, p.post.size, p.pre.size)  # noqa: E731
                         for p in graph.projections.values()]
    W0 = weights(state)
    xs = torch.randn(T, B, SIZES[0], dtype=torch.float64)
    ys = torch.randint(0, SIZES[-1], (T, B))
    for t in range(T):
        u = graph.scatter_inputs(xs[t].unsqueeze(-1))
        state = rule.forward_pass(graph, state, u)
        if t == 0:  # the prediction is the MLP's logits
            h = xs[0]
            for i, W in enumerate(W0):
                h = torch.einsum("bpq,bq->bp", W, h)
                h = torch.relu(h) if i < len(W0) - 1 else h
            torch.testing.assert_close(rule.readout(graph, state), h)
        state = rule.backward_pass(graph, state, torch.nn.functional.one_hot(ys[t], SIZES[-1]).double())
    ref = sgd_reference(W0, xs, ys, lr, "ce")
    for W, R in zip(weights(state), ref):
        assert (W - R).abs().max() <= 1e-6
    assert max((W - R).abs().max() for W, R in zip(W0, ref)) > 1e-2


@pytest.mark.parametrize("schedule", ["layer_sweep", "synchronous"])
def test_dense_and_sparse_agree(schedule):
    rule = LSTMSynapseRule(schedule=schedule).double()
    torch.manual_seed(1)
    x = torch.randn(3, 2, SIZES[0], 1, dtype=torch.float64)
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).double()
    states = []
    for layout in ("dense", "sparse"):
        g = layered(layout=layout)
        s = rule.init_state(g, 2)
        for t in range(3):
            s = rule.step(g, {**s, "target": target}, g.scatter_inputs(x[t]))
        states.append(s)
    torch.testing.assert_close(states[0]["node"], states[1]["node"])
    torch.testing.assert_close(states[0]["edge"], states[1]["edge"])
    assert states[0]["edge"][..., :16].abs().max() > 0  # something happened


def test_init_and_gradients():
    graph = layered()
    rule = LSTMSynapseRule()
    s = rule.init_state(graph, 2)
    c = s["edge"][..., 16:]
    assert (c[..., 8:] == 0).all() and c[..., :8].std() > 0 and (s["edge"][..., :16] == 0).all()
    assert rule.cell.w_bwd.bias[16:32].eq(5).all() and rule.cell.w_bwd.bias[:16].eq(-5).all()
    assert 2000 < sum(p.numel() for p in rule.parameters()) < 2600  # about 2.4k shared numbers
    target = torch.nn.functional.one_hot(torch.tensor([0, 1]), 3).float()
    s = rule.step(graph, {**s, "target": target}, graph.scatter_inputs(torch.randn(2, SIZES[0], 1)))
    out = rule.readout(graph, rule.forward_pass(graph, s, graph.scatter_inputs(torch.randn(2, SIZES[0], 1))))
    out.sum().backward()
    assert all(p.grad is not None for p in rule.parameters())


def test_errors():
    with pytest.raises(ConfigError):
        LSTMSynapseRule(ticks=0)
    with pytest.raises(UnknownNameError):
        LSTMSynapseRule(reduce="median")
    with pytest.raises(ConfigError):
        LSTMSynapseRule(hidden=8, cell=BackpropCell())
    graph = layered()
    rule = LSTMSynapseRule()
    s = rule.init_state(graph, 2)
    with pytest.raises(ShapeError):
        rule.backward_pass(graph, s, torch.zeros(2, 5))
    with pytest.raises(ConfigError):
        BackpropCell(message=1)


def test_stabilisers():
    graph = layered()
    target = torch.nn.functional.one_hot(torch.tensor([0, 1]), 3).float()
    rule = LSTMSynapseRule(saturation=0.5, normalize=True, forget_bias=1.0, input_bias=0.0, seed=1)
    assert rule.cell.w_bwd.bias[16:32].eq(1).all() and rule.cell.w_bwd.bias[:16].eq(0).all()
    s = rule.init_state(graph, 2)
    for _ in range(4):
        s = rule.step(graph, {**s, "target": target}, graph.scatter_inputs(10 * torch.randn(2, SIZES[0], 1)))
    c = s["edge"][..., 16:]
    assert c.abs().max() <= 0.5 and c.abs().max() > 0.3  # saturated, and it did grow
    s = rule.forward_pass(graph, s, graph.scatter_inputs(10 * torch.randn(2, SIZES[0], 1)))
    for p in list(graph.populations.values())[1:]:  # every population a forward phase updates
        rms = s["node"][:, p.slice, :8].pow(2).mean(1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), atol=0.02, rtol=0)  # eps 1e-6 under the root
    with pytest.raises(ConfigError, match="gates"):
        LSTMSynapseRule(cell=BackpropCell(), forget_bias=3.0)
    with pytest.raises(ConfigError):
        LSTMSynapseRule(saturation=-1.0)


def test_imported_strengths_start_the_first_cell_channel():
    """Issue 16: c[0] starts at init_std times the rescaled measured strength (the weight
    BackpropCell uses), the rest of the random half stays random; signs hold at the start."""
    from simgraph.rules.constraints import start_weights
    from test_genome import weighted

    g = weighted(layered(), signed=True)
    want = start_weights(g, "test", "auto")[:, 0] * g.edge_sign
    rule = LSTMSynapseRule(init_std=0.5)
    c = rule.init_state(g, 2)["edge"][..., 16:]
    torch.testing.assert_close(c[..., 0], (0.5 * want).expand(2, -1))
    plain = LSTMSynapseRule(init_std=0.5).init_state(layered(), 2)["edge"][..., 16:]
    torch.testing.assert_close(c[..., 1:], plain[..., 1:])  # the other channels: the usual draw
    assert (LSTMSynapseRule(init_weights="default").init_state(g, 1)["edge"][..., 16] != 0.5 * want).any()
    # with BackpropCell that channel is the weight: SGD starts from the measured strengths
    bp = LSTMSynapseRule(cell=BackpropCell(0.1), reduce="sum", ticks=1, init_std=1.0)
    torch.testing.assert_close(bp.init_state(g, 1)["edge"][0, :, 16], want)
