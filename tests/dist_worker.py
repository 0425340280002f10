"""Run by ``torchrun --nproc_per_node=2`` from tests/test_distributed.py (not a test module itself).

Every rank runs the same code: ES and CMA-ES with a non-differentiable fitness (recall bit
accuracy), a training run where one rank's episodes go NaN, then ``simgraph train`` through the CLI. Rank 0 saves what the test compares with one
process. The problem definitions live here so the test builds exactly the same ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector

from simgraph.train import Config
from simgraph.train.loop import evaluate

TRAIN_SETS = {"task.num_patterns": 2, "task.bits": 8, "task.queries": 2, "rule.hidden": 8, "rule.node_dim": 4,
              "train.steps": 4, "train.batch_size": 6, "train.eval_every": 2, "train.eval_batch": 10,
              "train.checkpoint_every": 2, "train.warmup": 1, "train.threads": 1}


def problem():
    """A tiny rule, graph and recall task; fitness = bit accuracy (non-differentiable)."""
    cfg = Config().override(**{k: v for k, v in TRAIN_SETS.items() if not k.startswith("train.")})
    graph = cfg.make_graph()
    task = cfg.make_task()
    fitness = lambda rule, generation: evaluate(rule, graph, task, 16, seed=generation)["accuracy"]  # noqa: E731
    return cfg.make_rule(graph), fitness


def run_es():
    from simgraph.train.es import es

    rule, fitness = problem()
    history = es(rule, fitness, generations=2, pairs=3, sigma=0.1, lr=0.05, seed=3)
    return parameters_to_vector(rule.parameters()).detach(), history


def run_cma():
    from simgraph.train.cma_es import cma_es

    rule, fitness = problem()
    history = cma_es(rule, fitness, generations=2, popsize=5, sigma0=0.1, seed=3)
    return parameters_to_vector(rule.parameters()).detach(), history


def run_fit(estimator: str):
    """The one loop with a population estimator: every candidate scored on the whole batch, the
    population split across ranks, the loop's evaluation split by episodes."""
    from simgraph.train import train

    sets = {**TRAIN_SETS, "train.estimator": estimator, "train.pairs": 3, "train.popsize": 5, "train.steps": 3}
    res = train(Config().override(**sets), progress=False)
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in res.history]
    return parameters_to_vector(res.rule.parameters()).detach(), history


def run_poisoned(out: Path) -> str:
    """Training where only rank 1's episodes go NaN (at tick 3 of step 2): every rank must stop."""
    from simgraph.errors import DivergenceError
    from simgraph.rules.mlp import MLPRule
    from simgraph.tasks.recall import RecallTask
    from simgraph.train import train
    from simgraph.train.loop import batch_seed

    cfg = Config().override(**TRAIN_SETS)
    sample, step = RecallTask.sample, MLPRule.step

    def marked(self, batch_size, seed=0, device=None):
        ep = sample(self, batch_size, seed=seed, device=device)
        if seed == batch_seed(cfg.seed, 2) and batch_size == 6:
            ep.inputs[3, 5, 0] = 1e4  # episode 5 of 6: in rank 1's half
        return ep

    def poisoned(self, graph, state, inputs):
        new = step(self, graph, state, inputs)
        return {**new, "edge": torch.where(inputs.abs().amax() > 1e3, torch.full_like(new["edge"], float("nan")), new["edge"])}

    # the poison is in step: the ticks run one by one (not as the rule's native episode, which bypasses step)
    fast = MLPRule.fast_episode
    RecallTask.sample, MLPRule.step, MLPRule.fast_episode = marked, poisoned, lambda *a: None
    try:
        train(cfg, out, progress=False)
        return "no error"
    except DivergenceError as exc:
        return str(exc)
    finally:
        RecallTask.sample, MLPRule.step, MLPRule.fast_episode = sample, step, fast


if __name__ == "__main__":
    from simgraph.cli import main
    from simgraph.train import distributed as dist

    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    assert dist.setup("cpu") and dist.world() == 2, "expected torchrun with 2 processes"
    results = {"es": run_es(), "cma": run_cma(), "fit_es": run_fit("es"), "fit_cma": run_fit("cma"), "world": dist.world()}
    if dist.is_main():
        torch.save(results, out / "evolution.pt")
    (out / f"diverged-rank{dist.rank()}.txt").write_text(run_poisoned(out / "diverged"))
    argv = ["train", "--out", str(out / "train"), "--no-progress", "--no-baselines"]
    for k, v in TRAIN_SETS.items():
        argv += ["--set", f"{k}={v}"]
    sys.exit(main(argv))
