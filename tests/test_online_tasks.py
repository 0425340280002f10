"""Online tasks (digits, 2-D generators, held-out variants), the meta-training loop, CMA-ES, baselines."""

import pytest
import torch

from simgraph.baselines import best_of_sweep, mlp_online, sweep
from simgraph.errors import ConfigError, UnknownNameError
from simgraph.rules.genome import GenomeRule, backprop_genome
from simgraph.rules.lstm_synapse import LSTMSynapseRule
from simgraph.tasks.online import HELD_OUT, META_TRAIN, SOURCES, OnlineTask
from simgraph.train.cma_es import cma_es
from simgraph.train.learn_to_learn import evaluate, graph_for, meta_train, online_unroll, query_logits


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
    with pytest.raises(ConfigError):  # labels that do not fit the graph's outputs
        g = graph_for(OnlineTask("moons"), ())
        ep = OnlineTask("blobs", num_classes=4).episode(3, 2)
        online_unroll(backprop_genome(), g, ep.x, ep.y)
    with pytest.raises(ConfigError):
        meta_train(backprop_genome(), {}, iterations=1)


@pytest.mark.parametrize("make,lr,margin", [
    (lambda: GenomeRule(2, saturation=1.0, seed=1), 3e-2, 0.02),
    (lambda: LSTMSynapseRule(hidden=8, message=4, ticks=1), 1e-1, 2e-3),  # slow gates: small steps
])
def test_tiny_meta_training_improves_meta_loss(make, lr, margin):
    """Same fixed episodes before and after: meta-training must lower their query cross-entropy."""
    torch.manual_seed(0)
    task = OnlineTask("blobs", num_classes=3, projection=4, noise=0.0)
    rule = make()
    graph = graph_for(task, ())
    ep = task.episode(8, 8, 8, seed=99)

    def loss():
        with torch.no_grad():
            _, s, _ = online_unroll(rule, graph, ep.x, ep.y)
            q = query_logits(rule, graph, s, ep.xq)
            return torch.nn.functional.cross_entropy(q.reshape(-1, 3), ep.yq.reshape(-1)).item()

    before = loss()
    meta_train(rule, {"blobs": task}, hidden=(), iterations=10, unroll=8, batch=8, query=8, lr=lr, seed=0)
    assert loss() < before - margin


def test_cma_es_improves_fitness_and_keeps_best():
    task = OnlineTask("blobs", num_classes=2, projection=4, noise=0.0)
    graph = graph_for(task, ())
    ep = task.episode(8, 8, 8, seed=5)
    rule = GenomeRule(2, saturation=1.0, seed=2)

    def fitness(r):
        _, s, _ = online_unroll(r, graph, ep.x, ep.y)
        return (query_logits(r, graph, s, ep.xq).argmax(-1) == ep.yq).float().mean().item()

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
    acc = evaluate(backprop_genome(0.1, loss="ce"), task, hidden=(), at=(5, 10), batch=4, query=5)
    assert set(acc) == {5, 10}
