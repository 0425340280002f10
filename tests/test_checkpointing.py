"""Gradient checkpointing per chunk of ticks gives the same values and gradients as plain backprop."""

import importlib

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


# ---------------------------------------------------------------------- recomputation schedule and replay
_simulate = importlib.import_module("simgraph.simulate")  # the module (sg.simulate is the function)


class _Noisy(sg.rules.MLPRule):
    """Draws random numbers in every tick: recomputation must replay the same ones."""

    def step(self, graph, state, inputs):
        new = super().step(graph, state, inputs)
        return {**new, "node": new["node"] + 0.1 * torch.randn_like(new["node"])}


class _Gained(sg.rules.MLPRule):
    """Reads ``self.gain``, a tensor needing a gradient that is not a parameter of the rule."""

    def step(self, graph, state, inputs):
        new = super().step(graph, state, inputs)
        return {**new, "node": new["node"] * self.gain}


def _episode(rule_cls=sg.rules.MLPRule, T=10):
    graph = topologies.sparse_random(12, p=0.4, seed=0)
    torch.manual_seed(0)
    rule = rule_cls(graph.num_neuron_types, graph.num_synapse_types).double()
    u = torch.randn(T, 2, 12, dtype=torch.float64)
    return graph, rule, u


def _backprop(rule, graph, u, every, extra=(), create_graph=False):
    """Outputs, final state and the gradients of every parameter, the inputs, the initial state and ``extra``."""
    torch.manual_seed(7)
    rule.zero_grad(set_to_none=True)
    u = u.clone().requires_grad_()
    state = {k: (v.detach() + 0.1).requires_grad_() for k, v in rule.init_state(graph, u.shape[1]).items()}
    run = sg.simulate(rule, graph, u, state=state, checkpoint_every=every)
    loss = run.outputs.square().sum() + run.state["edge"].square().sum()
    leaves = [*rule.parameters(), u, *state.values(), *extra]
    grads = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
    if create_graph:  # a second-order quantity: the gradient of the squared gradient norm
        grads = torch.autograd.grad(sum(g.square().sum() for g in grads if g is not None), leaves, allow_unused=True)
    return [run.outputs, *run.state.values(), *(g if g is not None else torch.zeros(()) for g in grads)]


def _assert_same(got, want):
    for a, b in zip(got, want, strict=True):
        assert (a.detach() - b.detach()).abs().max().item() <= 1e-6


@pytest.mark.parametrize("every", [1, 3, 4, 9, 10, 25])
def test_gradients_match_plain_backprop_within_1e_6_in_float64(every):
    graph, rule, u = _episode()
    _assert_same(_backprop(rule, graph, u, every), _backprop(rule, graph, u, 0))


def test_the_last_chunk_runs_plainly_and_the_others_are_replayed(monkeypatch):
    graph, rule, u = _episode(T=10)
    calls, replays = [0], [0]
    step, apply = rule.step, _simulate._Replay.apply

    def counting_step(*args):
        calls[0] += 1
        return step(*args)

    def counting_apply(*args):
        replays[0] += 1
        return apply(*args)

    monkeypatch.setattr(rule, "step", counting_step)
    monkeypatch.setattr(_simulate._Replay, "apply", counting_apply)
    for every, recomputed, replayed in ((3, 7, 2), (4, 6, 2), (10, 0, 0)):
        calls[0] = replays[0] = 0
        run = sg.simulate(rule, graph, u, checkpoint_every=every)
        assert calls[0] == 10
        run.outputs.square().sum().backward()
        # every=3: chunks [0,1) (under torch.utils.checkpoint, which shows that the step reads only
        # the state, the inputs and the parameters), then [1,4) and [4,7) replayed; ticks 7-9 run
        # plainly and are not recomputed. every=4: [0,1), [1,2), [2,6), then 6-9 plainly
        assert calls[0] == 10 + recomputed
        assert replays[0] == replayed


def test_recomputation_does_not_rewrite_the_monitors():
    graph, rule, u = _episode()
    run = sg.simulate(rule, graph, u, checkpoint_every=3, monitors=[sg.Monitor("node")])
    run.records["node"].fill_(float("nan"))
    run.outputs.square().sum().backward()
    assert run.records["node"].isnan().all()


def test_random_numbers_drawn_by_the_step_are_replayed():
    graph, rule, u = _episode(_Noisy)
    _assert_same(_backprop(rule, graph, u, 3), _backprop(rule, graph, u, 0))


@pytest.mark.parametrize("leaf", [True, False])
def test_a_step_reading_another_tensor_that_needs_a_gradient(monkeypatch, leaf):
    graph, rule, u = _episode(_Gained)
    source = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    replays = [0]
    apply = _simulate._Replay.apply
    monkeypatch.setattr(_simulate._Replay, "apply", lambda *a: replays.__setitem__(0, replays[0] + 1) or apply(*a))

    def run(every):
        rule.gain = source if leaf else source * 0.9  # a leaf of its own, or computed outside simulate
        return _backprop(rule, graph, u, every, extra=[source])

    _assert_same(run(3), run(0))
    assert replays[0] == 0  # seen in the first chunk: all chunks stay under torch.utils.checkpoint


def test_second_order_gradients_match_plain_backprop():
    graph, rule, u = _episode(T=7)
    _assert_same(_backprop(rule, graph, u, 2, create_graph=True), _backprop(rule, graph, u, 0, create_graph=True))
