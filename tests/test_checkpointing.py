"""Gradient checkpointing per chunk of ticks gives the same values and gradients as plain backprop."""

import pytest
import torch

import simgraph as sg
import topologies
from simgraph.errors import ShapeError
from simgraph.tasks.recall import RecallTask
from simgraph.train import unroll


def _grads(rule):
    return torch.cat([p.grad.flatten() for p in rule.parameters() if p.grad is not None])


@pytest.mark.parametrize("window", [0, 7])
def test_checkpointed_unroll_gives_the_same_gradients(window):
    task = RecallTask(num_patterns=2, bits=6)
    graph = topologies.fully_recurrent(task.num_inputs, seed=0)
    ep = task.sample(3, seed=1)
    ep = ep._replace(**{k: v.double() for k, v in ep._asdict().items() if torch.is_tensor(v) and v.is_floating_point()})
    results = []
    for every in (0, 1, 4):
        torch.manual_seed(0)
        rule = sg.rules.MLPRule(graph.num_neuron_types, graph.num_synapse_types).double()
        res = unroll(rule, graph, ep, window=window, checkpoint_every=every)
        results.append((res.loss, res.outputs, _grads(rule)))
    for loss, out, g in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(out, results[0][1])
        torch.testing.assert_close(g, results[0][2])


def test_checkpointed_simulate_with_a_state_leaf_and_monitors():
    graph = topologies.sparse_random(20, p=0.3, seed=0)
    rule = sg.rules.HebbianRule(learn_from="activity")
    u = torch.randn(9, 2, 20, dtype=torch.float64)
    runs = []
    for every in (0, 2):
        state = rule.init_state(graph, 2)
        state = {k: v.double() + 0.1 for k, v in state.items()}
        state["edge"].requires_grad_()
        run = sg.simulate(rule, graph, u, state=state, checkpoint_every=every, monitors=[sg.Monitor("node", every=3)])
        (grad,) = torch.autograd.grad(run.outputs.square().sum(), state["edge"])
        runs.append((run.outputs, run.records["node"], grad))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)


def test_checkpoint_every_must_be_a_non_negative_int():
    graph = topologies.fully_recurrent(4)
    with pytest.raises(ShapeError, match="checkpoint_every"):
        sg.simulate(sg.rules.StaticRule(), graph, torch.zeros(2, 1, 4), checkpoint_every=-1)
