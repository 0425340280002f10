"""RecallTask(blank_slots=...) and RecallTask(objective=...): issue 13's K=1 recipe on the N=64 sparse nets."""
import pytest
import torch

from simgraph.errors import ConfigError, UnknownNameError
from simgraph.tasks import RecallTask


def _slots(task, ep):
    """[B, K] True where a write slot shows a pattern (the first present tick of each slot)."""
    step = task.present_ticks + task.gap_ticks
    return ep.inputs[: task.write_ticks : step, :, : task.bits].abs().sum(-1).T > 0


def test_blank_slots_first_puts_every_blank_slot_before_the_patterns_and_keeps_the_episodes():
    kw = dict(num_patterns=6, bits=16, min_patterns=1, queries=8)
    shuffled, first = RecallTask(**kw).sample(200, seed=4), RecallTask(**kw, blank_slots="first").sample(200, seed=4)
    task = RecallTask(**kw)
    a, b = _slots(task, shuffled), _slots(task, first)
    stored = a.sum(1)
    assert torch.equal(stored, b.sum(1)) and stored.min() == 1 and stored.max() == 6  # the same load per episode
    # "first": an episode storing k patterns shows them in its last k slots, right before the delay and queries
    assert torch.equal(b, torch.arange(6).expand(200, 6) >= 6 - stored.unsqueeze(1))
    assert not torch.equal(a, b)  # "shuffled" (the default) interleaves them
    # the same patterns are asked and the same bits given (only the write order moved)
    for x, y in zip(shuffled[1:], first[1:4]):
        assert torch.equal(x, y)
    written = lambda ep, i: {tuple(r.tolist()) for r in ep.inputs[: task.write_ticks, i, :16] if r.abs().sum() > 0}  # noqa: E731
    assert all(written(shuffled, i) == written(first, i) for i in range(20))


def test_blank_slots_change_nothing_at_a_fixed_load():
    a, b = RecallTask(num_patterns=4, bits=8).sample(16, seed=2), RecallTask(num_patterns=4, bits=8, blank_slots="first").sample(16, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4]))


def test_squared_hinge_objective_scores_only_wrong_and_barely_right_bits():
    task = RecallTask(num_patterns=2, bits=8, objective="squared_hinge")
    plain = RecallTask(num_patterns=2, bits=8)
    ep = task.sample(4, seed=0)
    t = ep.targets
    assert task.loss(2 * t, ep) == 0 and plain.loss(2 * t, ep) > 0  # right by more than a margin of 1: no loss
    y = 0.5 * t
    y[ep.loss_mask > 0] *= torch.where(torch.rand(int((ep.loss_mask > 0).sum()), generator=torch.Generator().manual_seed(0)) < 0.2, -1.0, 1.0)
    hand = (torch.relu(1 - y * t).square() * ep.loss_mask).sum() / ep.loss_mask.sum()
    assert torch.allclose(task.loss(y, ep), hand) and task.loss(y, ep) > task.loss(0.5 * t, ep)  # the wrong bits cost more
    assert torch.allclose(task.loss(0.3 * t, ep), plain.loss(0.3 * t, ep))  # below the margin: the squared error
    assert task.metrics(y, ep)["accuracy"] == plain.metrics(y, ep)["accuracy"]


@pytest.mark.parametrize("bad", [dict(blank_slots="last"), dict(objective="hinge"), dict(objective=1)])
def test_unknown_blank_slots_or_objective_is_refused(bad):
    with pytest.raises(UnknownNameError, match="blank_slots|objective"):
        RecallTask(**bad)


def test_load_weighting_weighs_each_episode_by_its_load():
    kw = dict(num_patterns=8, bits=16, min_patterns=1)
    plain, weighted = RecallTask(**kw).sample(64, seed=5), RecallTask(**kw, load_weighting=1.0).sample(64, seed=5)
    stored = _slots(RecallTask(**kw), plain).sum(1).float()
    assert torch.equal(plain.inputs, weighted.inputs) and torch.equal(plain.metric_mask, weighted.metric_mask)
    read = plain.loss_mask > 0
    assert torch.equal(read, weighted.loss_mask > 0)
    assert torch.allclose(weighted.loss_mask, plain.loss_mask / stored.view(1, -1, 1))
    # the loss: the per-episode mean squared error, each episode weighted 1/k
    task = RecallTask(**kw, load_weighting=1.0)
    y = torch.randn(plain.targets.shape, generator=torch.Generator().manual_seed(1))
    per_episode = ((y - plain.targets).square() * plain.loss_mask).sum((0, 2)) / plain.loss_mask.sum((0, 2))
    assert torch.allclose(task.loss(y, weighted), (per_episode / stored).sum() / (1 / stored).sum())
    assert not torch.allclose(task.loss(y, weighted), RecallTask(**kw).loss(y, plain))
    fixed = dict(num_patterns=4, bits=8)  # a fixed load: ignored
    assert torch.equal(RecallTask(**fixed, load_weighting=2.0).sample(8, seed=0).loss_mask, RecallTask(**fixed).sample(8, seed=0).loss_mask)
    with pytest.raises(ConfigError, match="load_weighting"):
        RecallTask(**kw, load_weighting=-1.0)


def test_blank_slots_mixed_puts_the_blanks_first_in_about_half_the_episodes():
    kw = dict(num_patterns=6, bits=16, min_patterns=1)
    task = RecallTask(**kw, blank_slots="mixed")
    ep = task.sample(400, seed=6)
    slots = _slots(task, ep)
    stored = slots.sum(1)
    tail = (slots == (torch.arange(6).expand(400, 6) >= 6 - stored.unsqueeze(1))).all(1)  # blanks first (or no blank)
    full = stored == 6
    # the shuffled episodes put their blanks first only by chance; "mixed" puts them first in about half
    share = tail[~full].float().mean()
    shuffled_share = (_slots(task, RecallTask(**kw).sample(400, seed=6)) == (torch.arange(6).expand(400, 6) >= 6 - stored.unsqueeze(1))).all(1)[~full].float().mean()
    assert 0.5 < share < 0.75 and shuffled_share < 0.25
    assert torch.equal(task.sample(400, seed=6).inputs, ep.inputs)  # seeded


def test_residual_bias_false_runs_the_hebbian_cores_residuals_without_their_biases():
    import simgraph as sg
    from simgraph.topologies import sparse_random

    graph = sparse_random(12, 0.4, seed=3)
    task = RecallTask(num_patterns=2, bits=12)
    ep = task.sample(3, seed=1)
    run = lambda rule: sg.simulate(rule, graph, ep.inputs).outputs  # noqa: E731
    with torch.no_grad():
        want = run(sg.rules.HebbianRule(beta=0.3))
        plain, free = sg.rules.MLPRule(start="hebbian", beta=0.3), sg.rules.MLPRule(start="hebbian", beta=0.3, residual_bias=False)
        torch.testing.assert_close(run(free), want, atol=1e-6, rtol=1e-5)  # untrained: still the Hebbian rule
        for rule in (plain, free):
            rule.read.bias.fill_(3.0)
            rule.activity_residual.bias.fill_(3.0)
        torch.testing.assert_close(run(free), want, atol=1e-6, rtol=1e-5)  # the biases are not used
        assert (run(plain) - want).abs().max() > 0.1  # with residual_bias=True they are
    free.zero_grad()
    task.loss(sg.simulate(free, graph, ep.inputs).outputs, ep).backward()
    assert free.read.bias.grad is None and free.read.weight.grad is not None
    with pytest.raises(ConfigError, match="start='hebbian'"):
        sg.rules.MLPRule(residual_bias=False)
    with pytest.raises(ConfigError, match="residual_bias"):
        sg.rules.MLPRule(start="hebbian", residual_bias="no")


def test_mirror_makes_the_rule_exactly_odd_and_keeps_the_hebbian_start():
    import simgraph as sg
    from simgraph.topologies import sparse_random

    graph = sparse_random(12, 0.4, seed=3)
    ep = RecallTask(num_patterns=2, bits=12).sample(3, seed=1)
    run = lambda rule, u: sg.simulate(rule, graph, u).outputs  # noqa: E731
    with torch.no_grad():
        want = run(sg.rules.HebbianRule(beta=0.3), ep.inputs)
        torch.testing.assert_close(run(sg.rules.MLPRule(start="hebbian", beta=0.3, mirror=True), ep.inputs), want, atol=1e-6, rtol=1e-5)
        for start in ("hebbian", "random"):
            kw = dict(beta=0.3) if start == "hebbian" else {}
            plain, odd = sg.rules.MLPRule(start=start, seed=2, **kw), sg.rules.MLPRule(start=start, seed=2, mirror=True, **kw)
            for rule in (plain, odd):  # a rule whose residuals are not zero (as after training)
                for p in rule.parameters():
                    p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
            y = run(odd, ep.inputs)
            torch.testing.assert_close(run(odd, -ep.inputs), -y)  # exactly odd
            assert y.abs().mean() > 0.01
            assert (run(plain, -ep.inputs) + run(plain, ep.inputs)).abs().max() > 1e-3  # without it, not odd
            half = 3
            full = run(plain, torch.cat([ep.inputs, -ep.inputs], 1))  # the mirror read-out: half the copies' difference
            torch.testing.assert_close(y, (full[:, :half] - full[:, half:]) / 2)
    assert sg.rules.MLPRule(mirror=True).init_state(graph, 3)["node"].shape[0] == 6
    with pytest.raises(sg.errors.ShapeError, match="mirror"):
        odd.step(graph, odd.init_state(graph, 3), torch.zeros(6, 12, 1))
    with pytest.raises(ConfigError, match="mirror"):
        sg.rules.MLPRule(mirror=1)


def test_a_mirrored_rule_is_analysed_on_its_episodes_own_copies():
    # simgraph analyze on a mirror=True rule raised IndexError: its state holds 2B weight sets for B patterns
    import simgraph as sg
    from simgraph.analysis.graphs import stored_weights, summarize
    from simgraph.topologies import fully_recurrent

    graph = fully_recurrent(8)
    task = RecallTask(num_patterns=2, bits=8)
    rule = sg.rules.MLPRule(start="hebbian", beta=0.3, mirror=True)
    ws = stored_weights(rule, graph, task, episodes=3)
    assert ws.weights.shape == (3, graph.num_edges) and ws.patterns.shape[0] == 3
    plain = stored_weights(sg.rules.MLPRule(start="hebbian", beta=0.3), graph, task, episodes=3)
    torch.testing.assert_close(ws.weights, plain.weights)  # untrained, the mirror is the plain Hebbian start
    assert summarize(graph, ws)["accuracy"] == plain.accuracy


def test_the_portrait_of_a_mirrored_rule_is_its_episodes_own_update():
    # rule_portrait on a mirror=True rule raised a raw RuntimeError (a state of batch B for a rule keeping 2B)
    import simgraph as sg
    from simgraph.topologies import fully_recurrent

    graph = fully_recurrent(12)
    plain = sg.analysis.rule_portrait(sg.rules.MLPRule(start="hebbian", beta=0.3, seed=1), graph)
    odd = sg.analysis.rule_portrait(sg.rules.MLPRule(start="hebbian", beta=0.3, seed=1, mirror=True), graph)
    torch.testing.assert_close(odd.dw, plain.dw)  # untrained: the Hebbian write, the same in either
    assert odd.r2 > 0.99 and abs(odd.coefficients["pre*post"] - plain.coefficients["pre*post"]) < 1e-6
