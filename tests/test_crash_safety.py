"""Crash safety: SIGKILL ``simgraph train`` at random moments, resume, end where an unkilled run ends.

Checkpoints are written every step, so kills land before, during and after checkpoint writes.
After every kill the folder must hold a complete, loadable checkpoint (never half of one), and
the final parameters and log must equal an uninterrupted run of the same config bit for bit
(CPU, one thread, batches drawn from (seed, step)).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from simgraph.train import Config, checkpoint, train

KILLS = 5
CONFIG = """
seed = 3
[rule]
hidden = 8
node_dim = 4
[task]
num_patterns = 2
bits = 8
queries = 2
[train]
steps = 30
batch_size = 4
eval_every = 7
eval_batch = 8
checkpoint_every = 1
warmup = 2
threads = 1
"""
RESULTS = Path(__file__).resolve().parents[1] / "runs" / "out"


def saved_step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def launch(config: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "simgraph.cli", "train", str(config), "--out", str(out), "--resume",
           "--no-progress", "--no-baselines"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    config, out = tmp_path / "tiny.toml", tmp_path / "run"
    config.write_text(CONFIG)
    rng = random.Random(7)
    kills, steps_at_kill = 0, []
    for _ in range(KILLS):
        before = saved_step(out)
        proc = launch(config, out)
        deadline = time.time() + 120
        while saved_step(out) <= before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)  # wait for progress past the last checkpoint ...
        time.sleep(rng.uniform(0.0, 0.2))  # ... then kill at a random moment
        if proc.poll() is not None:
            break  # finished before we could kill it; the final run below still checks the result
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        spec, tensors = checkpoint.load(out)  # whole and loadable, never half-written
        steps_at_kill.append(spec["step"])
        assert all(bool(torch.isfinite(v).all()) for v in tensors["rule"].values())
    assert kills >= 3, f"only {kills} kills landed before the run finished"
    final = launch(config, out)
    stdout, stderr = final.communicate(timeout=180)
    assert final.returncode == 0, stderr.decode()[-2000:]

    whole = train(Config.load(config), tmp_path / "whole", progress=False)
    spec, tensors = checkpoint.load(out)
    assert spec["step"] == 30
    for k, v in whole.rule.state_dict().items():
        assert torch.equal(tensors["rule"][k], v), k
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [drop(r) for r in rows] == [drop(r) for r in whole.history]  # no lost or doubled log lines
    assert not list(out.glob(".*.tmp*"))  # temporary files of killed writers were swept
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kill_resume.json").write_text(json.dumps({"kills": kills, "checkpoint_step_after_each_kill": steps_at_kill,
                                                          "steps": 30, "params_equal_uninterrupted": True}))
