"""Outsider tests, fifth set: the training side checked against hand computations.

Written from the README ("The two commands", "Training", "Write your own rule", "Robustness") and the
docstrings of simgraph/train: the loop against a hand-written Adam loop, truncated windows against
hand-detached windows, ES against the true gradient, resume after a stop between checkpoints, seeds,
logs, init_from, user rules and builders from config files, CLI round trips and refusals.
Its five findings are fixed and their tests are regression tests: a CMA run whose candidate diverged
could not checkpoint; a non-row line in metrics.jsonl crashed resume; result.task lagged the
curriculum; init_from took a rule of another kind of the same class (frozen from mlp); fit's es, pes
and cma never checked their population against the memory budget.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import simgraph as sg
from simgraph import topologies
from simgraph.errors import CheckpointError, ConfigError, SimgraphError
from simgraph.train import Config, evaluate, load_rule, train
from simgraph.train.bptt import unroll
from simgraph.train.estimators import BPTT, ES
from simgraph.train.loop import EVAL_SEED

ROOT = Path(__file__).resolve().parents[1]
TASK = dict(num_patterns=2, bits=4)
MLP = dict(hidden=4, node_dim=3, edge_dim=2)


def net(n=4):
    return topologies.fully_recurrent(n=n)


def mlp(g, seed=0):
    return sg.rules.MLPRule(g.num_neuron_types, g.num_synapse_types, seed=seed, **MLP)


def flat_grad(rule):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in rule.parameters()])


def no_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def read_log(folder):
    return no_seconds([json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()])


def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "simgraph.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def hand_fit(g_list, task, steps, B, lr, warmup, clip, seed, make_rule, resample=True):
    """The loop of README "Training" written out: batch s from (seed, step), graph s mod n, squared-error loss
    over the task's normaliser, clip to the stated norm, Adam at lr * min(1, (s+1)/warmup) (constant schedule)."""
    rule = make_rule()
    params = [p for p in rule.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for s in range(steps):
        g = g_list[s % len(g_list)]
        ep = task.sample(B, seed=seed * 1_000_003 + (s if resample else 0))
        opt.zero_grad()
        out = sg.simulate(rule, g, ep.inputs).outputs[..., 0]
        loss = task.loss(out, ep)
        loss.backward()
        losses.append(float(loss.detach()))
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        if clip > 0 and norm > clip:
            for p in params:
                p.grad.mul_(clip / norm)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (s + 1) / warmup) if warmup else lr
        opt.step()
    return rule, losses


# ---------------------------------------------------------------------- 1. the loop against a hand-written one
@pytest.mark.parametrize("clip", [0.05, 0.0])
def test_fit_equals_a_hand_written_adam_loop_with_warmup_and_clipping(clip):
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=4, batch_size=4, lr=0.01, warmup=2, clip=clip, seed=7)
    res = sg.train.fit(mlp(g), g, task, lr_schedule="constant", eval_every=100, eval_batch=4, log_every=1,
                       curriculum=False, progress=False, steps=kw["steps"], batch_size=kw["batch_size"], lr=kw["lr"],
                       warmup=kw["warmup"], clip=clip, seed=kw["seed"])
    hand, losses = hand_fit([g], task, kw["steps"], kw["batch_size"], kw["lr"], kw["warmup"], clip, kw["seed"], lambda: mlp(g))
    for k, v in hand.state_dict().items():
        torch.testing.assert_close(res.rule.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    assert [r["train_loss"] for r in res.history] == pytest.approx(losses, rel=1e-5)
    # the comparison can fail: the other clip setting gives other parameters
    other, _ = hand_fit([g], task, kw["steps"], kw["batch_size"], kw["lr"], kw["warmup"], 0.05 if clip == 0 else 0.0,
                        kw["seed"], lambda: mlp(g))
    assert max(float((a - b).abs().max()) for a, b in zip(other.state_dict().values(), res.rule.state_dict().values())) > 1e-5


def test_a_graph_distribution_runs_step_s_on_graph_s_mod_n():
    task = sg.tasks.RecallTask(**TASK)
    g1 = net()
    g2 = topologies.sparse_random(n=4, p=0.6, seed=3)
    assert g1.num_edges != g2.num_edges
    make = lambda: mlp(g1)  # noqa: E731  one neuron and one synapse type on both
    res = sg.train.fit(make(), [g1, g2], task, steps=3, batch_size=4, lr=0.02, warmup=0, clip=0.0, lr_schedule="constant",
                       eval_every=3, eval_batch=8, curriculum=False, progress=False, seed=2)
    hand, _ = hand_fit([g1, g2], task, 3, 4, 0.02, 0, 0.0, 2, make)
    for k, v in hand.state_dict().items():
        torch.testing.assert_close(res.rule.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    # evaluation averages over the graphs
    both = evaluate(res.rule, [g1, g2], task, 8)
    one, two = evaluate(res.rule, g1, task, 8), evaluate(res.rule, g2, task, 8)
    assert both["accuracy"] == pytest.approx((one["accuracy"] + two["accuracy"]) / 2, abs=1e-12)
    assert res.history[-1]["eval_accuracy"] == pytest.approx(both["accuracy"], abs=1e-12)


def test_resample_false_trains_on_the_first_batch_every_step():
    task, g = sg.tasks.RecallTask(**TASK), net()
    res = sg.train.fit(mlp(g), g, task, steps=3, batch_size=4, lr=0.02, warmup=0, clip=0.0, lr_schedule="constant",
                       resample=False, eval_every=3, eval_batch=4, curriculum=False, progress=False, seed=4)
    hand, _ = hand_fit([g], task, 3, 4, 0.02, 0, 0.0, 4, lambda: mlp(g), resample=False)
    fresh, _ = hand_fit([g], task, 3, 4, 0.02, 0, 0.0, 4, lambda: mlp(g), resample=True)
    for k, v in hand.state_dict().items():
        torch.testing.assert_close(res.rule.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(fresh.state_dict()[k], v) for k, v in res.rule.state_dict().items())


@pytest.mark.parametrize("kind", ["constant", "cosine"])
def test_the_logged_learning_rate_follows_the_schedule(kind):
    task, g = sg.tasks.RecallTask(**TASK), net()
    lr, warm, steps = 0.01, 3, 8
    res = sg.train.fit(mlp(g), g, task, steps=steps, batch_size=2, lr=lr, warmup=warm, lr_schedule=kind, log_every=1,
                       eval_every=100, eval_batch=4, curriculum=False, progress=False)
    lrs = [r["lr"] for r in res.history]
    assert len(lrs) == steps and all(0 < x <= lr * (1 + 1e-12) for x in lrs)
    assert lrs[:warm] == sorted(lrs[:warm]) and lrs[0] < lr  # warming up
    after = lrs[warm - 1:]
    if kind == "constant":
        assert after == pytest.approx([lr] * len(after))
    else:
        assert after == sorted(after, reverse=True) and after[-1] < after[0]  # a cosine decays


# ---------------------------------------------------------------------- 2. estimators
@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("which", ["mlp", "plastic_lean"])
def test_truncated_windows_equal_hand_detached_windows(window, which):
    """bptt.unroll's docstring: window losses over the whole episode's normaliser, state detached between."""
    task, g = sg.tasks.RecallTask(**TASK), net()
    ep = task.sample(3, seed=5)
    T = ep.inputs.shape[0]
    make = (lambda: mlp(g)) if which == "mlp" else (lambda: sg.rules.PlasticRule(g, learn_eta=True))
    r1 = make()
    res = unroll(r1, g, ep, task, window=window, lean=which.endswith("lean"))
    r2 = make()
    norm, state, total = task.loss_norm(ep), r2.init_state(g, 3), 0.0
    for a in range(0, T, window):
        part = ep.ticks(slice(a, a + window))
        run = sg.simulate(r2, g, part.inputs, state=state)
        loss = task.error(run.outputs[..., 0], part).sum() / norm
        if loss.requires_grad:
            loss.backward()
        total += float(loss.detach())
        state = {k: v.detach() for k, v in run.state.items()}
    torch.testing.assert_close(flat_grad(r1), flat_grad(r2), atol=1e-7, rtol=1e-5)
    assert float(res.loss) == pytest.approx(total, rel=1e-6)
    assert float(res.loss) == pytest.approx(float(task.loss(torch.cat([res.outputs]), ep)), rel=1e-6)
    r3 = make()
    unroll(r3, g, ep, task, window=0)
    assert not torch.allclose(flat_grad(r3), flat_grad(r1))  # the truncation really cuts


@pytest.mark.parametrize("window,every", [(0, 3), (5, 2), (7, 7)])
def test_recomputation_inside_windows_gives_the_plain_gradient(window, every):
    task, g = sg.tasks.RecallTask(**TASK), net()
    ep = task.sample(3, seed=1)
    a, b = mlp(g), mlp(g)
    la = unroll(a, g, ep, task, window=window)
    lb = unroll(b, g, ep, task, window=window, checkpoint_every=every)
    torch.testing.assert_close(flat_grad(a), flat_grad(b), atol=1e-6, rtol=1e-5)
    assert float(la.loss) == pytest.approx(float(lb.loss), rel=1e-6)


def test_es_estimate_points_along_the_true_gradient_with_its_size():
    """ES (es.py docstring): grad = -sum (f+ - f-) eps / (2 pairs sigma) with f = -loss: for small sigma and many
    pairs it is the loss gradient itself (direction and size)."""
    task, g = sg.tasks.RecallTask(**TASK), net()
    ep = task.sample(4, seed=5)
    r = sg.rules.PlasticRule(g, learn_eta=True)
    params = [p for p in r.parameters() if p.requires_grad]
    BPTT().step(r, g, task, ep, params, 0)
    true = flat_grad(r)
    r.zero_grad(set_to_none=True)
    ES(pairs=600, sigma=1e-3, rank_shaping=False, seed=1).step(r, g, task, ep, params, 0)
    est = flat_grad(r)
    assert float(torch.nn.functional.cosine_similarity(true, est, 0)) > 0.93
    assert 0.8 < float(est.norm() / true.norm()) < 1.25


def test_es_leaves_the_rule_unchanged_and_mirrored_pairs_cancel_on_a_flat_task():
    task, g = sg.tasks.RecallTask(**TASK), net()
    ep = task.sample(2, seed=1)
    r = sg.rules.PlasticRule(g, learn_eta=True)
    before = {k: v.clone() for k, v in r.state_dict().items()}
    params = [p for p in r.parameters() if p.requires_grad]
    res = ES(pairs=4, sigma=0.05, seed=3).step(r, g, task, ep, params, 0)
    for k, v in r.state_dict().items():
        assert torch.equal(v, before[k])
    assert res.loss == pytest.approx(-res.extra["fitness_mean"]) and res.extra["fitness_best"] >= res.extra["fitness_mean"]


# ---------------------------------------------------------------------- 3. resume, reproducibility, logs
@pytest.mark.parametrize("estimator,extra", [("bptt", {}), ("es", {"pairs": 3}), ("tbptt", {"window": 7}),
                                             ("pes", {"window": 9, "pairs": 2}), ("cma", {"popsize": 4})])
def test_stop_between_checkpoints_then_resume_equals_one_run(tmp_path, estimator, extra):
    """Stopped at step 5 (checkpoints every 2, so the run resumes from step 4 and replays step 5), with the
    curriculum moving and every step logged: parameters bit for bit, and metrics.jsonl row for row."""
    task, g = sg.tasks.RecallTask(num_patterns=4, bits=4), net()
    kw = dict(steps=7, batch_size=4, eval_every=2, eval_batch=8, checkpoint_every=2, log_every=1, warmup=2,
              curriculum=True, curriculum_threshold=0.3, progress=False, seed=5, estimator=estimator, **extra)
    whole = sg.train.fit(mlp(g), g, task, out=tmp_path / "whole", **kw)
    sg.train.fit(mlp(g), g, task, out=tmp_path / "cut", stop_after=5, **kw)
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["step"] == 4
    again = sg.train.fit(mlp(g), g, task, out=tmp_path / "cut", resume=True, **kw)
    for k, v in whole.rule.state_dict().items():
        assert torch.equal(again.rule.state_dict()[k], v), k
    assert read_log(tmp_path / "whole") == read_log(tmp_path / "cut") == no_seconds(whole.history)
    assert no_seconds(again.history) == no_seconds(whole.history)
    levels = [r["num_patterns"] for r in whole.history]
    assert levels[0] == 2 and levels[-1] > 2  # the curriculum did move across the cut


def test_optimizer_state_after_resume_equals_one_run(tmp_path):
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=6, batch_size=2, eval_every=3, eval_batch=4, checkpoint_every=3, progress=False, seed=1)
    sg.train.fit(mlp(g), g, task, out=tmp_path / "a", **kw)
    sg.train.fit(mlp(g), g, task, out=tmp_path / "b", stop_after=3, **kw)
    sg.train.fit(mlp(g), g, task, out=tmp_path / "b", resume=True, **kw)
    _, ta = sg.train.checkpoint.load(tmp_path / "a")
    _, tb = sg.train.checkpoint.load(tmp_path / "b")
    assert ta["scheduler"] == tb["scheduler"] and torch.equal(ta["progress"], tb["progress"])
    for i, st in ta["optimizer"]["state"].items():
        for key, v in st.items():
            assert torch.equal(v, tb["optimizer"]["state"][i][key]), (i, key)


def test_same_seed_is_bitwise_identical_and_another_seed_differs():
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=3, batch_size=4, eval_every=3, eval_batch=4, progress=False)
    a = sg.train.fit(mlp(g), g, task, seed=11, **kw)
    b = sg.train.fit(mlp(g), g, task, seed=11, **kw)
    c = sg.train.fit(mlp(g), g, task, seed=12, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a.rule.state_dict().values(), b.rule.state_dict().values()))
    assert no_seconds(a.history) == no_seconds(b.history)
    assert any(not torch.equal(x, y) for x, y in zip(a.rule.state_dict().values(), c.rule.state_dict().values()))


def test_config_seed_sets_the_rule_init_and_the_batches():
    def cfg(seed):
        return Config.from_dict({"seed": seed, "rule": {"kind": "mlp", **MLP}, "task": {"kind": "recall", **TASK},
                                 "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "eval_batch": 4}})
    r0, r1 = cfg(0).make_rule(cfg(0).make_graph()), cfg(1).make_rule(cfg(1).make_graph())
    assert any(not torch.equal(x, y) for x, y in zip(r0.state_dict().values(), r1.state_dict().values()))
    a, b = train(cfg(4), progress=False), train(cfg(4), progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.rule.state_dict().values(), b.rule.state_dict().values()))


def test_the_last_eval_row_equals_evaluate_at_that_level(tmp_path):
    task, g = sg.tasks.RecallTask(num_patterns=4, bits=4), net()
    res = sg.train.fit(mlp(g), g, task, steps=4, batch_size=2, eval_every=2, eval_batch=24, curriculum=True,
                       curriculum_threshold=0.01, progress=False, out=tmp_path)
    row = res.history[-1]
    again = evaluate(res.rule, g, task.replace(num_patterns=row["num_patterns"]), 24, seed=EVAL_SEED)
    assert row["eval_accuracy"] == again["accuracy"] and row["eval_loss"] == again["loss"]
    assert read_log(tmp_path) == no_seconds(res.history)


def test_result_task_is_where_the_curriculum_stands(tmp_path):
    task, g = sg.tasks.RecallTask(num_patterns=6, bits=4), net()
    res = sg.train.fit(mlp(g), g, task, steps=2, batch_size=2, eval_every=1, eval_batch=4, curriculum=True,
                       curriculum_threshold=1e-9, progress=False, out=tmp_path)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())["num_patterns"]
    again = sg.train.fit(mlp(g), g, task, steps=2, batch_size=2, eval_every=1, eval_batch=4, curriculum=True,
                         curriculum_threshold=1e-9, progress=False, out=tmp_path, resume=True)
    assert res.task.num_patterns == saved == again.task.num_patterns


@pytest.mark.parametrize("bad", ["7", "[1, 2]", '{"step": "3"}', '{"step": null}'])
def test_resume_with_an_odd_line_in_metrics_jsonl(tmp_path, bad):
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=4, batch_size=2, eval_every=2, eval_batch=4, checkpoint_every=2, progress=False)
    sg.train.fit(mlp(g), g, task, out=tmp_path, stop_after=2, **kw)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(bad + "\n")
    try:
        res = sg.train.fit(mlp(g), g, task, out=tmp_path, resume=True, **kw)
    except SimgraphError:
        return  # a clear refusal is fine
    assert [r["step"] for r in res.history] == [2, 4]


def test_a_cut_last_line_in_metrics_jsonl_is_dropped_on_resume(tmp_path):
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=4, batch_size=2, eval_every=1, eval_batch=4, checkpoint_every=2, progress=False)
    sg.train.fit(mlp(g), g, task, out=tmp_path, stop_after=3, **kw)
    text = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(text[:-20])  # killed mid-write of the step-3 row
    res = sg.train.fit(mlp(g), g, task, out=tmp_path, resume=True, **kw)
    assert [r["step"] for r in read_log(tmp_path)] == [1, 2, 3, 4] == [r["step"] for r in res.history]


# ---------------------------------------------------------------------- 4. checkpoints
def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(tmp_path):
    task, g = sg.tasks.RecallTask(**TASK), net()
    kw = dict(steps=2, batch_size=2, eval_every=2, eval_batch=4, progress=False)
    sg.train.fit(mlp(g), g, task, out=tmp_path / "a", **kw)
    with pytest.raises(CheckpointError, match="different"):
        sg.train.fit(mlp(g), g, task, out=tmp_path / "a", resume=True, **{**kw, "steps": 4})
    with pytest.raises(CheckpointError, match="different"):
        sg.train.fit(mlp(g, seed=0), g, task.replace(bits=4, queries=3), out=tmp_path / "a", resume=True, **kw)
    with pytest.raises(CheckpointError, match="already holds"):
        sg.train.fit(mlp(g), g, task, out=tmp_path / "a", **kw)
    pt = next((tmp_path / "a").glob("checkpoint-*.pt"))
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        sg.train.fit(mlp(g), g, task, out=tmp_path / "a", resume=True, **kw)
    with pytest.raises(CheckpointError):
        load_rule(tmp_path / "a")


def test_cma_with_one_diverging_candidate_checkpoints_and_goes_on(tmp_path):
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "sqrtrule.py").write_text(SQRT_RULE)
    try:
        from sqrtrule import SqrtRule
        task, g = sg.tasks.RecallTask(**TASK), net()
        res = sg.train.fit(SqrtRule(g=0.5), g, task, estimator="cma", popsize=8, sigma0=1.0, steps=2, batch_size=2,
                           eval_every=2, eval_batch=4, progress=False, out=tmp_path / "run", checkpoint_every=1,
                           curriculum=False)
    finally:
        sys.path.remove(str(tmp_path))
    assert res.step == 2 and math.isfinite(res.history[-1]["eval_loss"])


SQRT_RULE = textwrap.dedent('''
    import torch
    from torch import nn
    import simgraph as sg
    from simgraph.rules.base import zeros_state

    class SqrtRule(sg.rules.Rule):
        """A Hebbian rule with gain sqrt(g): a candidate with g < 0 diverges (NaN)."""
        def __init__(self, g: float = 1.0, eta: float = 0.1):
            super().__init__()
            self.g = nn.Parameter(torch.tensor(float(g)))
            self.eta = nn.Parameter(torch.tensor(float(eta)))
        def init_state(self, graph, batch_size):
            return zeros_state(graph, batch_size, node_dim=1, edge_dim=1)
        def step(self, graph, state, inputs):
            w = state["edge"]
            x = torch.tanh(self.g.sqrt() * graph.propagate(w, state["node"]) + inputs)
            return {"node": x, "edge": w + self.eta * graph.post(x) * graph.pre(x)}
''')


# ---------------------------------------------------------------------- 5. init_from
def _cfg(base, kind="mlp", hidden=4, **t):
    tt = dict(steps=2, batch_size=2, eval_every=2, eval_batch=4, checkpoint_every=2)
    tt.update(t)
    return Config.from_dict({"seed": 1, "rule": {"kind": kind, "hidden": hidden, "node_dim": 3, "edge_dim": 2},
                             "task": {"kind": "recall", **TASK}, "train": tt}, base_dir=base)


def test_init_from_starts_at_the_trained_parameters_relative_to_the_config(tmp_path, monkeypatch):
    a = train(_cfg(tmp_path), tmp_path / "a", progress=False)
    monkeypatch.chdir("/")  # relative to the config's folder, not the working directory
    b = train(_cfg(tmp_path, steps=1, lr=1e-30, warmup=0, init_from="a"), tmp_path / "b", progress=False)
    for k, v in a.rule.state_dict().items():
        assert torch.equal(b.rule.state_dict()[k], v), k
    fresh = _cfg(tmp_path).make_rule(_cfg(tmp_path).make_graph())
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in a.rule.state_dict().items())
    with pytest.raises(CheckpointError, match="do not fit"):
        train(_cfg(tmp_path, hidden=8, init_from="a"), progress=False)
    with pytest.raises(CheckpointError, match="not a run folder"):
        train(_cfg(tmp_path, init_from="nowhere"), progress=False)


def test_init_from_refuses_another_rule_kind(tmp_path):
    train(_cfg(tmp_path), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError):
        train(_cfg(tmp_path, kind="frozen", init_from="a"), progress=False)


# ---------------------------------------------------------------------- 6. configs and the CLI
TINY_TOML = """
seed = 3
[network]
topology = "fully_recurrent"
[rule]
kind = "mlp"
node_dim = 3
edge_dim = 2
hidden = 4
[task]
kind = "recall"
num_patterns = 2
bits = 4
[train]
steps = 2
batch_size = 4
eval_every = 2
eval_batch = 8
checkpoint_every = 2
warmup = 1
"""


def test_cli_config_round_trip_and_eval_reproduces_the_printed_accuracy(tmp_path):
    (tmp_path / "c.toml").write_text(TINY_TOML)
    p = cli("train", tmp_path / "c.toml", "--out", tmp_path / "r", "--no-progress", "--no-baselines",
            "--set", "train.lr=0.02", "--set", "task.cue_fraction=0.75", "--set", "rule.type_dim=2", "--set", "seed=9")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["seed"] == 9 and saved["train"]["lr"] == 0.02 and saved["task"]["cue_fraction"] == 0.75
    assert saved["rule"] == {"kind": "mlp", "node_dim": 3, "edge_dim": 2, "hidden": 4, "type_dim": 2}
    assert saved["train"]["steps"] == 2 and saved["train"]["batch_size"] == 4 and saved["network"] == {"topology": "fully_recurrent"}
    assert Config.from_dict(saved).to_dict() == saved
    rule, _, cfg = load_rule(tmp_path / "r")
    assert cfg.rule.settings["type_dim"] == 2 and cfg.seed == 9
    e = cli("eval", tmp_path / "r", cwd="/")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout.strip().splitlines()[-1])
    assert ev["accuracy"] == summary["accuracy"]["mlp"] == summary["metrics"]["accuracy"] and ev["episodes"] == 512
    assert ev["task"]["cue_fraction"] == 0.75
    log = read_log(tmp_path / "r")
    assert [r["step"] for r in log] == [2]


def run_main(capsys, *args):
    """simgraph's CLI in this process: a raw (non-simgraph) exception propagates and fails the test."""
    from simgraph.cli import main
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_resume_with_more_steps_is_refused_naming_steps(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(TINY_TOML)
    base = ["train", tmp_path / "c.toml", "--out", tmp_path / "r", "--no-progress", "--no-baselines"]
    assert run_main(capsys, *base)[0] == 0
    code, _, err = run_main(capsys, *base, "--resume", "--set", "train.steps=4")
    assert code == 2 and "train.steps" in err
    code, out, err = run_main(capsys, *base, "--resume")
    assert code == 0, err  # a finished run resumes as a no-op
    assert [x["step"] for x in read_log(tmp_path / "r")] == [2]
    code, _, err = run_main(capsys, *base)  # without --resume: refused, not overwritten
    assert code == 2 and "already holds a checkpoint" in err


@pytest.mark.parametrize("setting,needle", [
    ("train.steps=3.0", "steps"), ("train.curriculum=1", "curriculum"), ("seed=1.5", "seed"), ("train.clip=true", "clip"),
    ("rule.hidden=4.0", "hidden"), ('task.bits="4"', "bits"), ("train.estimator=BPTT", "estimator"),
    ("train.threads=-1", "threads"), ("seed=-1", "seed"), ("network.params={n=5}", "5 inputs"),
    ("train.init_from=nowhere", "init_from"), ("task.num_patterns=0", "num_patterns"), ("train.eval_batch=0", "eval_batch"),
    ("train.lr=nan", "lr"), ("train.lr=inf", "lr"), ("train.window=-2", "window"), ("train.lr_schedule=linear", "lr_schedule"),
    ("train.keep=worst", "keep"), ("train.warmup=1e3", "warmup"), ("train.stepz=3", "steps"), ("trian.steps=3", "train"),
    ("network.topology=fully_recurent", "fully_recurrent"), ("rule.kind=mlpp", "mlp"), ("task.kind=recal", "recall"),
    ("train.fitness=acuracy", "accuracy"), ("train.curriculum_field=bitz", "bitz"), ("train.curriculum_threshold=1.5", "threshold"),
    ("network.builder=nomodule_xyz:f", "nomodule_xyz"), ("network.file=missing.graphml", "missing.graphml"),
    ("network.file=net.txt", ".graphml"), ("rule.eta=0.1", "eta"), ("network.inputs=[]", "inputs"),
])
def test_cli_bad_settings_are_named(tmp_path, capsys, setting, needle):
    (tmp_path / "c.toml").write_text(TINY_TOML)
    extra = ["--set", "train.estimator=es"] if setting.startswith("train.fitness") else []
    code, out, err = run_main(capsys, "train", tmp_path / "c.toml", "--out", tmp_path / "r", "--no-progress",
                              "--no-baselines", *extra, "--set", setting)
    assert code == 2, (out, err)
    assert needle in err, err
    assert not (tmp_path / "r" / "checkpoint.json").exists()


def test_a_user_rule_and_builder_from_module_files_next_to_the_config(tmp_path, capsys, monkeypatch):
    (tmp_path / "sqrtrule.py").write_text(SQRT_RULE)
    (tmp_path / "mynets.py").write_text(textwrap.dedent('''
        import networkx as nx, simgraph as sg
        def ring(n, seed=0):
            G = nx.cycle_graph(n, create_using=nx.DiGraph)
            G.add_edges_from([(v, u) for u, v in list(G.edges)])
            nx.set_node_attributes(G, "neuron", "type")
            return sg.from_networkx(G, inputs="neuron", outputs="neuron")
        def raw(n):
            return nx.complete_graph(n, create_using=nx.DiGraph)
    '''))
    (tmp_path / "u.toml").write_text(textwrap.dedent('''
        [network]
        builder = "mynets:ring"
        [rule]
        kind = "sqrtrule:SqrtRule"
        g = 0.25
        [task]
        kind = "recall"
        num_patterns = 2
        bits = 6
        [train]
        steps = 2
        batch_size = 2
        eval_every = 2
        eval_batch = 8
        curriculum = false
    '''))
    p = cli("train", tmp_path / "u.toml", "--out", tmp_path / "r", "--no-progress", cwd="/")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    rule, graph, cfg = load_rule(tmp_path / "r")
    assert graph.num_nodes == 6 and graph.num_edges == 12  # a ring, both directions
    assert type(rule).__name__ == "SqrtRule" and cfg.rule.settings == {"g": 0.25}
    e2 = cli("eval", tmp_path / "r", cwd="/")
    assert e2.returncode == 0, e2.stderr
    assert json.loads(e2.stdout.strip().splitlines()[-1])["accuracy"] == summary["accuracy"]["sqrtrule:SqrtRule"]
    (tmp_path / "u.toml").write_text((tmp_path / "u.toml").read_text().replace("mynets:ring", "mynets:raw"))
    monkeypatch.chdir("/")
    code, _, err = run_main(capsys, "train", tmp_path / "u.toml", "--out", tmp_path / "r2", "--no-progress")
    assert code == 2 and "not a simgraph Graph" in err


def test_a_graphml_network_with_attribute_inputs(tmp_path):
    import networkx as nx
    G = nx.DiGraph()
    for i in range(6):
        G.add_node(f"n{i}", type="neuron", cls="sensory" if i < 4 else "inter")
    G.add_edges_from((f"n{i}", f"n{j}") for i in range(6) for j in range(6) if i != j)
    nx.write_graphml(G, tmp_path / "net.graphml")
    cfg = Config.from_dict({"network": {"file": "net.graphml", "inputs": {"cls": "sensory"}, "outputs": {"cls": "sensory"}},
                            "rule": {"kind": "hebbian"}, "task": {"kind": "recall", "num_patterns": 2, "bits": 4},
                            "train": {"steps": 1}}, base_dir=tmp_path)
    g = cfg.make_graph()
    assert g.num_inputs == 4 and g.num_nodes == 6 and g.num_edges == 30
    labels = [g.node_labels[int(i)] for i in g.input_nodes]
    assert sorted(labels) == ["n0", "n1", "n2", "n3"]
    with pytest.raises(SimgraphError, match="did you mean 'cls'"):
        Config.from_dict({"network": {"file": "net.graphml", "inputs": {"clss": "sensory"}, "outputs": {"cls": "sensory"}},
                          "task": {"kind": "recall", "num_patterns": 2, "bits": 4}}, base_dir=tmp_path).make_graph()


def test_config_override_keeps_and_drops_what_the_readme_says():
    cfg = Config()
    assert cfg.to_dict()["rule"] == {"kind": "mlp", "start": "hebbian", "beta": 0.03}
    frozen = cfg.override(**{"rule.kind": "frozen"})
    assert frozen.rule.settings == {"start": "hebbian", "beta": 0.03}
    plastic = cfg.override(**{"rule.kind": "plastic"})
    assert "start" not in plastic.rule.settings
    f = cfg.override(**{"network.file": "x.graphml"})
    assert f.network.topology is None and f.network.file == "x.graphml"
    with pytest.raises(ConfigError, match="one of topology"):
        Config.from_dict({"network": {"topology": "fully_recurrent", "builder": "a.b:c"}})
    with pytest.raises(ConfigError, match="names no key"):
        cfg.override(**{"train.": 3})


# ---------------------------------------------------------------------- 7. population sizes against the byte budget
class _Ran(Exception):
    pass


class _Boom(sg.rules.Rule):
    """50 parameters; running it at all means nothing refused the population first."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(50))

    def init_state(self, graph, batch_size):
        from simgraph.rules.base import zeros_state
        return zeros_state(graph, batch_size, node_dim=1, edge_dim=1)

    def step(self, graph, state, inputs):
        raise _Ran("a candidate ran")


def test_the_es_and_cma_functions_refuse_a_population_over_the_budget(monkeypatch):
    from simgraph.errors import MemoryBudgetError
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", "100000")
    with pytest.raises(MemoryBudgetError, match="pairs"):
        sg.train.es(_Boom(), lambda r: 0.0, pairs=1000)
    with pytest.raises(MemoryBudgetError, match="popsize|population"):
        sg.train.cma_es(_Boom(), lambda r: 0.0, popsize=1000)


@pytest.mark.parametrize("estimator,size", [("es", {"pairs": 1000}), ("pes", {"pairs": 1000}), ("cma", {"popsize": 1000})])
def test_fit_refuses_a_population_over_the_budget(monkeypatch, estimator, size):
    from simgraph.errors import MemoryBudgetError
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", "100000")
    task, g = sg.tasks.RecallTask(**TASK), net()
    try:
        sg.train.fit(_Boom(), g, task, estimator=estimator, steps=1, progress=False, curriculum=False, **size)
    except MemoryBudgetError:
        return
    except _Ran:
        pytest.fail("the population was not checked against the byte budget")
