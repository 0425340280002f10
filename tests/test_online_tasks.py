"""Online tasks (digits, 2-D generators, held-out variants), the meta-training loop, CMA-ES, baselines."""

import pytest
import torch

import simgraph as sg

from simgraph.baselines import best_of_sweep, mlp_online, sweep
from simgraph.errors import ConfigError, UnknownNameError
from simgraph.rules.genome import GenomeRule, backprop_genome
from simgraph.rules.lstm_synapse import LSTMSynapseRule
from simgraph.tasks.online import HELD_OUT, META_TRAIN, SOURCES, OnlineTask
import topologies
from simgraph.analysis import accuracy_after
from simgraph.train import fit, run_ticks
from simgraph.train.cma_es import cma_es


def graph_for(task, hidden=()):
    return topologies.layered([task.input_size, *hidden, task.n_classes])


def query_accuracy(rule, graph, ep):
    out, _ = run_ticks(rule, graph, ep, rule.init_state(graph, ep.inputs.shape[1]))
    return float((out.argmax(-1) == ep.targets.argmax(-1)).float()[ep.probe].mean())


@pytest.mark.parametrize("source", SOURCES)
def test_shapes_seeds_and_labels(source):
    task = OnlineTask(source, projection=7, bias=True) if source != "blobs" else OnlineTask(source, num_classes=4)
    ep = task.episode(12, 3, query=5, seed=1)
    assert ep.x.shape == (12, 3, task.input_size) and ep.y.shape == (12, 3)
    assert ep.xq.shape == (5, 3, task.input_size) and ep.yq.shape == (5, 3)
    assert ep.x.dtype == torch.float32 and ep.y.dtype == torch.long
    assert int(ep.y.min()) >= 0 and int(ep.y.max()) < task.n_classes
    again = task.episode(12, 3, query=5, seed=1)
    assert torch.equal(ep.x, again.x) and torch.equal(ep.y, again.y)
    other = task.episode(12, 3, query=5, seed=2)
    assert not torch.equal(ep.x, other.x)
    assert not torch.equal(ep.x[:, 0], ep.x[:, 1])  # episodes in a batch differ


def test_digits_classes_and_held_out():
    ep = OnlineTask("digits", classes=(3, 7), permute_labels=False).episode(50, 2, seed=0)
    assert set(ep.y.unique().tolist()) == {0, 1} and ep.x.shape[-1] == 64
    assert HELD_OUT["digits5-9/16in"].input_size == 16 and META_TRAIN["digits0-4"].input_size == 32
    assert set(META_TRAIN["digits0-4"].classes).isdisjoint(HELD_OUT["digits5-9"].classes)


def test_validation_errors():
    with pytest.raises(UnknownNameError):
        OnlineTask("mnist")
    with pytest.raises(ConfigError):
        OnlineTask("digits", classes=(1, 1))
    with pytest.raises(ConfigError):
        OnlineTask("digits", classes=(3, 12))
    with pytest.raises(ConfigError):
        OnlineTask("moons", num_classes=3)
    with pytest.raises(ConfigError):
        OnlineTask("xor", classes=(0, 1))
    with pytest.raises(ConfigError):
        OnlineTask("blobs", projection=0)
    with pytest.raises(ConfigError):
        OnlineTask("moons").episode(0, 2)
    with pytest.raises(ConfigError):
        mlp_online(OnlineTask("moons"), lr=-1)
    with pytest.raises(UnknownNameError):
        mlp_online(OnlineTask("moons"), "rmsprop")
    with pytest.raises(ConfigError):  # a task whose classes do not fit the graph's outputs
        fit(backprop_genome(), graph_for(OnlineTask("moons")), OnlineTask("blobs", num_classes=4), steps=1)
    with pytest.raises(ConfigError, match="predict-then-learn"):  # labels need a rule that learns from them
        task = OnlineTask("moons", steps=3, query=2)
        fit(sg.rules.MLPRule(2, 1), graph_for(task), task, steps=1, progress=False)


def test_sample_is_one_episode_of_stream_and_probes():
    task = OnlineTask("blobs", num_classes=3, projection=4, steps=6, query=4)
    ep = task.sample(5, seed=3)
    raw = task.episode(6, 5, 4, seed=3)
    assert ep.inputs.shape == (10, 5, 4) and ep.targets.shape == (10, 5, 3)
    assert torch.equal(ep.inputs[:6], raw.x) and torch.equal(ep.inputs[6:], raw.xq)
    assert torch.equal(ep.targets.argmax(-1), torch.cat([raw.y, raw.yq]))
    assert ep.probe.tolist() == [False] * 6 + [True] * 4
    assert ep.teacher[6:].abs().sum() == 0 and torch.equal(ep.teacher[:6], ep.targets[:6])
    assert ep.loss_mask[:6].sum() == 0 and ep.loss_mask[6:].sum() == 4 * 5 * 3
    logits = torch.randn(10, 5, 3)
    want = torch.nn.functional.cross_entropy(logits[6:].reshape(-1, 3), raw.yq.reshape(-1))
    torch.testing.assert_close(task.loss(logits, ep), want)


def test_probe_ticks_equal_queries_from_a_snapshot():
    """Probe ticks read the state and leave it: same logits as querying the state after the stream."""
    torch.manual_seed(0)
    task = OnlineTask("blobs", num_classes=3, projection=4, steps=5, query=3)
    rule, graph = GenomeRule(2, saturation=1.0, seed=1), graph_for(task, (6,))
    ep = task.sample(2, seed=1)
    out, _ = run_ticks(rule, graph, ep, rule.init_state(graph, 2))
    stream = ep.ticks(slice(0, 5))._replace(probe=None)
    _, state = run_ticks(rule, graph, stream, rule.init_state(graph, 2))
    for q in range(3):
        x = graph.scatter_inputs(ep.inputs[5 + q].unsqueeze(-1))
        torch.testing.assert_close(out[5 + q], rule.readout(graph, rule.forward_pass(graph, state, x)))


@pytest.mark.parametrize("make,lr,margin", [
    (lambda: GenomeRule(2, saturation=1.0, seed=1), 3e-2, 0.02),
    (lambda: LSTMSynapseRule(hidden=8, message=4, ticks=1), 1e-1, 2e-3),  # slow gates: small steps
])
def test_tiny_meta_training_improves_meta_loss(make, lr, margin):
    """Same fixed episodes before and after: meta-training must lower their query cross-entropy."""
    torch.manual_seed(0)
    task = OnlineTask("blobs", num_classes=3, projection=4, noise=0.0, steps=8, query=8)
    rule = make()
    graph = graph_for(task, ())
    ep = task.sample(8, seed=99)

    def loss():
        with torch.no_grad():
            out, _ = run_ticks(rule, graph, ep, rule.init_state(graph, 8))
            return task.loss(out, ep).item()

    before = loss()
    fit(rule, graph, task, steps=10, batch_size=8, lr=lr, lr_schedule="constant", warmup=0, clip=10.0, eval_every=10,
        eval_batch=4, progress=False)
    assert loss() < before - margin


def test_cma_es_improves_fitness_and_keeps_best():
    task = OnlineTask("blobs", num_classes=2, projection=4, noise=0.0, steps=8, query=8)
    graph = graph_for(task, ())
    ep = task.sample(8, seed=5)
    rule = GenomeRule(2, saturation=1.0, seed=2)

    def fitness(r):
        with torch.no_grad():
            return query_accuracy(r, graph, ep)

    hist = cma_es(rule, fitness, generations=4, popsize=8, sigma0=0.5, seed=0)
    assert len(hist) == 5 and hist[-1]["best_so_far"] >= hist[0]["best"]
    assert fitness(rule) == pytest.approx(hist[-1]["best_so_far"])  # rule holds the best candidate
    with pytest.raises(ConfigError):
        cma_es(rule, fitness, generations=0)


def test_baselines_and_evaluate_run():
    task = OnlineTask("blobs", num_classes=2, projection=4)
    res = sweep(task, "sgd", (0.01, 0.3), hidden=(), at=(5, 10), batch=4, query=5)
    best = best_of_sweep(res)
    assert set(best) == {5, 10} and all(0 <= a <= 1 for a, _ in best.values())
    acc = accuracy_after(backprop_genome(0.1, loss="ce"), graph_for(task), task, at=(5, 10), batch=4, query=5)
    assert set(acc) == {5, 10} and all(0 <= a <= 1 for a in acc.values())
