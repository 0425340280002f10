import dataclasses
import json
from pathlib import Path

import pytest
import torch

from simgraph.cli import main
from simgraph.errors import CheckpointError, ConfigError, DivergenceError, UnknownNameError
from simgraph.train import Curriculum, Config, checkpoint, evaluate, load_rule, train, unroll

ROOT = Path(__file__).resolve().parents[1]


def tiny(**train_overrides) -> Config:
    t = {"steps": 6, "batch_size": 8, "eval_every": 3, "eval_batch": 16, "checkpoint_every": 2, "warmup": 1}
    t.update(train_overrides)
    return Config.from_dict({"task": {"num_patterns": 2, "bits": 8, "queries": 2},
                             "rule": {"hidden": 8, "node_dim": 4}, "train": t})


def params(rule):
    return {k: v.clone() for k, v in rule.state_dict().items()}


def test_meta_training_lowers_the_recall_loss():
    cfg = tiny(steps=40, lr=1e-2, eval_every=40, curriculum=False)
    task = cfg.make_task()
    before = evaluate(cfg.make_rule(cfg.make_graph()), cfg.make_graph(), task, 64)
    result = train(cfg, progress=False)
    after = evaluate(result.rule, result.graph, task, 64)
    assert after["loss"] < 0.8 * before["loss"]


def test_truncated_windows_give_the_full_gradient_when_the_window_is_the_episode():
    cfg = tiny()
    graph, task = cfg.make_graph(), cfg.make_task()
    ep = task.sample(4, seed=0)
    grads = []
    for window in (0, task.num_ticks, 5):
        rule = cfg.make_rule(graph)
        unroll(rule, graph, ep, window=window)
        grads.append(torch.cat([p.grad.flatten() for p in rule.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])
    assert not torch.allclose(grads[0], grads[2])  # truncation really cuts the gradient


def test_checkpoint_round_trip(tmp_path):
    result = train(tiny(steps=4), tmp_path, progress=False)
    rule, graph, cfg = load_rule(tmp_path)
    for k, v in result.rule.state_dict().items():
        assert torch.equal(rule.state_dict()[k], v)
    spec = json.loads((tmp_path / "checkpoint.json").read_text())
    assert spec["step"] == 4 and len(list(tmp_path.glob("checkpoint-*.pt"))) == 1
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [3, 4]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = train(tiny(), tmp_path / "whole", progress=False)
    train(tiny(), tmp_path / "cut", progress=False, stop_after=3)  # "killed" after step 3; last checkpoint: step 2
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["step"] == 2
    resumed = train(tiny(), tmp_path / "cut", resume=True, progress=False)
    for k, v in whole.rule.state_dict().items():
        assert torch.equal(resumed.rule.state_dict()[k], v), k
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history]


def test_checkpoint_misuse_is_refused(tmp_path):
    train(tiny(steps=2), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(tiny(steps=2), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="different config .train.steps"):
        train(tiny(steps=3), tmp_path, resume=True, progress=False)


def test_a_checkpoint_from_before_a_train_setting_existed_resumes_at_its_default(tmp_path):
    # remember64's step-260 checkpoint predates train.init_from; resuming it was refused
    train(tiny(), tmp_path, progress=False, stop_after=3)
    spec = tmp_path / "checkpoint.json"
    meta = json.loads(spec.read_text())
    del meta["run"]["config"]["train"]["init_from"]  # as an older simgraph wrote it
    spec.write_text(json.dumps(meta))
    resumed = train(tiny(), tmp_path, resume=True, progress=False)
    assert resumed.history[-1]["step"] == 6
    meta = json.loads(spec.read_text())
    meta["run"]["config"]["train"]["init_from"] = "elsewhere"  # a setting that differs still refuses
    spec.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="different config .train.init_from: 'elsewhere'"):
        train(tiny(steps=8), tmp_path, resume=True, progress=False)


def test_corrupt_truncated_and_unsafe_checkpoints_are_refused(tmp_path):
    train(tiny(steps=2), tmp_path, progress=False)
    pt = next(tmp_path.glob("checkpoint-*.pt"))
    good = pt.read_bytes()
    pt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load(tmp_path)
    pt.write_bytes(good)
    spec = tmp_path / "checkpoint.json"
    text = spec.read_text()
    spec.write_text(text[:20])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_rule(tmp_path)
    spec.write_text(text)
    # a tensor file carrying pickled code, with a matching hash: weights_only refuses it
    evil = tmp_path / "evil"
    checkpoint.save(evil, 1, {"rule": {}}, {})
    bad = next(evil.glob("*.pt"))
    torch.save({"rule": Config()}, bad)  # an arbitrary Python object, not plain tensors
    meta = json.loads((evil / "checkpoint.json").read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    (evil / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="refused: not a plain tensor checkpoint"):
        checkpoint.load(evil)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "nowhere")


def test_nan_is_never_checkpointed_and_stops_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="NaN"):
        checkpoint.save(tmp_path, 1, {"w": torch.tensor([1.0, float("nan")])}, {})
    assert not checkpoint.exists(tmp_path)
    cfg = tiny()
    graph = cfg.make_graph()
    rule = cfg.make_rule(graph)
    with torch.no_grad():
        rule.read.bias.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="NaN"):
        unroll(rule, graph, cfg.make_task().sample(2))


@pytest.mark.parametrize(
    "data,err,match",
    [
        ({"trian": {}}, UnknownNameError, "did you mean 'train'"),
        ({"train": {"stpes": 3}}, UnknownNameError, "did you mean 'steps'"),
        ({"task": {"num_pattern": 3}}, UnknownNameError, "did you mean 'num_patterns'"),
        ({"train": {"steps": "10"}}, ConfigError, "steps must be int"),
        ({"train": {"lr": -1.0}}, ConfigError, "lr must be a positive"),
        ({"rule": {"kind": "mpl"}}, UnknownNameError, "did you mean 'mlp'"),
        ({"network": {"topology": "smallworld"}}, UnknownNameError, "did you mean 'small_world'"),
        ({"task": {"bits": 0}}, ConfigError, "bits must be an int"),
        ({"train": {"curriculum_threshold": 2.0}}, ConfigError, "curriculum_threshold"),
    ],
)
def test_config_errors(data, err, match):
    with pytest.raises(err, match=match):
        Config.from_dict(data)


def test_a_task_that_does_not_fit_the_network_is_refused_before_training():
    cfg = Config.from_dict({"task": {"cue": "key", "bits": 8}})  # 16 inputs, 8 outputs; fully_recurrent(n=16)
    with pytest.raises(ConfigError, match=r"needs 16 input and 8 output neurons.*outputs = \[\.\.\.\]"):
        cfg.make_graph()
    graph = cfg.override(**{"network.outputs": ["neurons[8:16]"]}).make_graph()
    assert graph.num_inputs == 16 and graph.num_outputs == 8


def test_default_config_is_runs_default_toml():
    from_file = Config.load(ROOT / "runs" / "default.toml")
    default = Config()
    assert from_file.make_task() == default.make_task()
    for section in ("seed", "network"):
        assert getattr(from_file, section) == getattr(default, section), section
    task = default.make_task()  # curriculum: the file says true, the default "on for recall"
    assert Curriculum.of(from_file.train, task) == Curriculum.of(default.train, task) is not None
    assert dataclasses.replace(from_file.train, curriculum=None) == default.train
    assert from_file.rule.kind == default.rule.kind  # the file spells out MLPRule's defaults
    a, b = from_file.make_rule(from_file.make_graph()), default.make_rule(default.make_graph())
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_cli_train_eval_export(tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["task.num_patterns=2", "task.bits=8", "train.steps=2", "train.batch_size=4", "train.eval_batch=8",
            "rule.hidden=4"]
    argv = ["train", "--out", str(out), "--no-progress", "--no-baselines"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["command"] == "train" and 0 <= summary["accuracy"]["mlp"] <= 1
    assert main(["eval", str(out), "--set", "task.num_patterns=3", "--episodes", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["task"]["num_patterns"] == 3
    assert main(["export", str(out), "--out", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text())["nodes"]
    capsys.readouterr()
    assert main(["train", "--set", "train.stpes=3", "--no-progress"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2


def test_init_from_starts_a_run_from_a_trained_rule(tmp_path):
    """``[train] init_from``: the run begins at the folder's trained parameters (one step at lr ~ 0
    leaves them there), and a folder of another rule kind or shape is refused naming it."""
    first = train(tiny(steps=4, lr=3e-2, curriculum=False), tmp_path / "a", progress=False)
    trained = params(first.rule)
    cfg = tiny(steps=1, lr=1e-12, warmup=0, curriculum=False, init_from=str(tmp_path / "a"))
    again = train(cfg, tmp_path / "b", progress=False)
    for k, v in params(again.rule).items():
        torch.testing.assert_close(v, trained[k], atol=1e-6, rtol=0)
    fresh = params(cfg.make_rule(cfg.make_graph()))
    assert any(not torch.allclose(fresh[k], trained[k]) for k in trained)  # really another starting point
    wider = Config.from_dict({**cfg.to_dict(), "rule": {"hidden": 16, "node_dim": 4}})
    with pytest.raises(CheckpointError, match="init_from"):
        train(wider, tmp_path / "c", progress=False)
    other = Config.from_dict({**cfg.to_dict(), "rule": {"kind": "hebbian"}})
    with pytest.raises((ConfigError, CheckpointError), match="init_from"):
        train(other, tmp_path / "d", progress=False)
    with pytest.raises(CheckpointError):
        train(tiny(init_from=str(tmp_path / "missing")), tmp_path / "e", progress=False)
    with pytest.raises(ConfigError, match="init_from"):
        tiny(init_from=3)
