"""Data parallelism: 2 CPU processes under torchrun (gloo) give what one process gives.

One torchrun launch (tests/dist_worker.py) covers the three estimators: truncated-BPTT training
through the CLI, antithetic ES and CMA-ES with a non-differentiable fitness; and a NaN on one rank. Training splits each
step's batch (6 episodes: 3 per rank) and all-reduces weighted gradients; the sums happen in a
different order than on one process, so parameters agree to float32 rounding (TOL below).
Evolution only gathers whole fitness values, so 2 ranks reproduce 1 rank bit for bit.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import dist_worker
from simgraph.train import Config, checkpoint, train

TOL = 1e-5  # absolute, on parameters of order 0.1-1 after 4 Adam steps (measured: ~3e-8)
RESULTS = Path(__file__).resolve().parents[1] / "runs" / "out"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(Path(dist_worker.__file__)), str(out)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_two_process_training_equals_one_process_with_the_whole_batch(two_ranks):
    out, proc = two_ranks
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # rank 0 alone prints the summary
    assert summary["command"] == "train" and proc.stdout.count('"command"') == 1
    spec, tensors = checkpoint.load(out / "train")
    assert spec["step"] == 4
    one = train(Config().override(**dist_worker.TRAIN_SETS), progress=False)
    diff = max(float((tensors["rule"][k] - v).abs().max()) for k, v in one.rule.state_dict().items())
    changed = max(float((tensors["rule"][k] - v).abs().max())
                  for k, v in Config().override(**dist_worker.TRAIN_SETS).make_rule(one.graph).state_dict().items())
    assert diff <= TOL < changed  # equal to one process, and training really moved the parameters
    logged = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [r["step"] for r in one.history]  # one writer: no duplicate rows
    for a, b in zip(logged, one.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["eval_accuracy"] == pytest.approx(b["eval_accuracy"], abs=1e-6)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_equality.json").write_text(json.dumps(
        {"processes": 2, "tolerance": TOL, "max_abs_param_difference": diff, "max_abs_param_change": changed}))


@pytest.mark.parametrize("method", ["es", "cma", "fit_es", "fit_cma"])
def test_population_split_across_two_ranks_equals_one(two_ranks, method):
    out, _ = two_ranks
    two = torch.load(out / "evolution.pt", weights_only=True)
    assert two["world"] == 2
    run = getattr(dist_worker, f"run_{method}") if not method.startswith("fit_") else (
        lambda: dist_worker.run_fit(method[4:]))
    theta, history = run()
    assert torch.equal(two[method][0], theta)
    assert two[method][1] == history


def test_nan_on_one_rank_stops_every_rank_without_a_hang(two_ranks):
    out, _ = two_ranks
    assert (out / "diverged-rank1.txt").read_text().startswith("state['edge'] became NaN at tick 3 of step 2 on rank 1;")
    assert "another rank's episodes went NaN" in (out / "diverged-rank0.txt").read_text()
    assert checkpoint.load(out / "diverged")[0]["step"] == 2  # the last good checkpoint stays
