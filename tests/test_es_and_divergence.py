"""Evolution strategies (one process) and divergence handling in the training loop."""

import json
import math

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from simgraph.errors import CheckpointError, ConfigError, DivergenceError
from simgraph.rules.mlp import MLPRule
from simgraph.tasks.recall import RecallTask
from simgraph.train import Config, checkpoint, train, unroll
from simgraph.train.cma_es import cma_es
from simgraph.train.es import centred_ranks, es
from simgraph.train.loop import batch_seed


def tiny(**train) -> Config:
    t = {"steps": 6, "batch_size": 4, "eval_every": 3, "eval_batch": 8, "checkpoint_every": 1, "warmup": 1, "threads": 1}
    t.update(train)
    return Config.from_dict({"task": {"num_patterns": 2, "bits": 8, "queries": 2}, "rule": {"hidden": 8, "node_dim": 4}, "train": t})


def small_rule():
    cfg = tiny()
    return cfg.make_rule(cfg.make_graph())


def test_es_improves_a_non_differentiable_fitness():
    rule = small_rule()
    target = torch.sign(torch.randn(parameters_to_vector(rule.parameters()).numel(), generator=torch.Generator().manual_seed(0)))
    # the fraction of parameters with the target's sign: a step function, its gradient is zero almost everywhere
    fitness = lambda r: float((torch.sign(parameters_to_vector(r.parameters())) == target).float().mean())  # noqa: E731
    before = fitness(rule)
    history = es(rule, fitness, generations=25, pairs=8, sigma=0.05, lr=0.05, seed=1)
    assert len(history) == 25 and all(math.isfinite(r["mean"]) for r in history)
    assert fitness(rule) > before + 0.1, (before, fitness(rule))


def test_es_mirrored_pairs_give_zero_step_on_a_flat_fitness():
    """A fitness even around theta (here theta = 0, so that the mirrors -x and +x are exact in floating
    point) scores both candidates of a mirrored pair the same, so the step is exactly zero; were the
    candidates not paired as mirrors, or the step not built from the pair differences, it would not be.
    (A constant fitness would give zero whatever the pairing.)"""
    rule = small_rule()
    with torch.no_grad():
        for p in rule.parameters():
            p.zero_()
    seen = []

    def even(r):
        v = parameters_to_vector(r.parameters()).detach().double()
        seen.append(v.clone())
        return float(v.square().sum() + v.abs().pow(3).sum())  # not constant: candidates differ, pairs tie

    es(rule, even, generations=3, pairs=4, rank_shaping=False)
    assert torch.count_nonzero(parameters_to_vector(rule.parameters()).detach()) == 0
    assert len(seen) == 3 * 8
    for a, b in zip(seen[0::2], seen[1::2]):
        assert torch.equal(a, -b) and bool(a.abs().sum() > 0)  # candidate 2i+1 mirrors candidate 2i
    assert len({float(v.square().sum()) for v in seen[0:8:2]}) == 4  # the four pairs of a generation score differently


def test_es_ranks_and_bad_settings():
    assert centred_ranks(torch.tensor([3.0, float("nan"), 1.0, 2.0])).tolist() == pytest.approx([0.5, -0.5, -1 / 6, 1 / 6])
    with pytest.raises(ConfigError, match="sigma"):
        es(small_rule(), lambda r: 0.0, sigma=0.0)
    with pytest.raises(ConfigError, match="callable"):
        es(small_rule(), 3, generations=1)
    with pytest.raises(ConfigError, match="number"):
        es(small_rule(), lambda r: "high", generations=1, pairs=1)
    with pytest.raises(DivergenceError, match="NaN or inf"):
        es(small_rule(), lambda r: float("nan"), generations=1, pairs=2)
    with pytest.raises(ConfigError, match="popsize"):
        cma_es(small_rule(), lambda r: 0.0, popsize=1)


def poison(monkeypatch, at_step: int, at_tick: int):
    """Make the batch of step ``at_step`` drive the edge state to NaN at tick ``at_tick``."""
    cfg = tiny()
    step = MLPRule.step
    sample = RecallTask.sample

    def marked(self, batch_size, seed=0, device=None):
        ep = sample(self, batch_size, seed=seed, device=device)
        if seed == batch_seed(cfg.seed, at_step):
            ep.inputs[at_tick, 0, 0] = 1e4  # a legal, finite input the poisoned rule reacts to
        return ep

    def poisoned(self, graph, state, inputs):
        new = step(self, graph, state, inputs)
        bad = inputs.abs().amax() > 1e3  # stays on the device: no sync
        return {**new, "edge": torch.where(bad, torch.full_like(new["edge"], float("nan")), new["edge"])}

    monkeypatch.setattr(RecallTask, "sample", marked)
    monkeypatch.setattr(MLPRule, "step", poisoned)
    return cfg


def test_nan_in_a_state_names_tick_step_and_quantity_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = poison(monkeypatch, at_step=4, at_tick=5)
    with pytest.raises(DivergenceError, match=r"state\['edge'\] became NaN at tick 5 of step 4; .*last good checkpoint \(step 4\)"):
        train(cfg, tmp_path, progress=False)
    spec, tensors = checkpoint.load(tmp_path)  # the last good one, loadable and finite
    assert spec["step"] == 4
    assert all(bool(torch.isfinite(v).all()) for v in tensors["rule"].values())
    assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [3]


def test_windowed_unroll_locates_the_first_bad_tick(monkeypatch):
    cfg = poison(monkeypatch, at_step=0, at_tick=9)
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    ep = cfg.make_task().sample(2, seed=batch_seed(cfg.seed, 0))
    with pytest.raises(DivergenceError, match=r"state\['edge'\] became NaN at tick 9$"):
        unroll(rule, graph, ep, window=4)


def test_an_overflowing_loss_is_named():
    cfg = tiny()
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    with torch.no_grad():
        rule.read.weight.mul_(1e30)  # finite outputs whose squares overflow float32
        rule.read.bias.fill_(1e30)
    with pytest.raises(DivergenceError, match=r"the loss became (NaN|inf) at tick 0 \(the error overflowed\)"):
        unroll(rule, graph, cfg.make_task().sample(2))


def test_checkpoint_never_holds_nan(tmp_path):
    checkpoint.save(tmp_path, 1, {"w": torch.ones(2)}, {})
    with pytest.raises(CheckpointError, match="w holds NaN"):
        checkpoint.save(tmp_path, 2, {"w": torch.tensor([1.0, float("inf")])}, {})
    assert checkpoint.load(tmp_path)[0]["step"] == 1  # the good one is untouched
