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
