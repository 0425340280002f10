"""The byte budget (issue 15, part 2): work that cannot fit is refused up front, with its size named.

Every case runs under ``SIMGRAPH_MAX_BYTES=10**9`` and must fail fast (no allocation attempted)
with a :class:`simgraph.errors.MemoryBudgetError` (a SimgraphError and a MemoryError) whose
message names the number of bytes, human readable, and what to change.
"""

from __future__ import annotations

import re
import time

import pytest
import torch

import simgraph as sg
from simgraph.errors import ConfigError, MemoryBudgetError, SimgraphError, check_bytes, format_bytes, max_bytes, total_ram
from simgraph.rules.lstm_synapse import BackpropCell, LSTMCell

BUDGET = 10**9
FAST_S = 3.0  # generous on a loaded 2-core machine; an attempted allocation of GBs takes far longer or crashes
SIZE = re.compile(r"\d+(\.\d+)? (kB|MB|GB|TB|PB|EB|ZB)")


@pytest.fixture(autouse=True)
def budget(monkeypatch):
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", str(BUDGET))


def refused(fn, *words: str) -> MemoryBudgetError:
    """``fn()`` raises MemoryBudgetError quickly, naming the size (and ``words``, case-insensitive)."""
    start = time.perf_counter()
    with pytest.raises(MemoryBudgetError) as info:
        fn()
    elapsed = time.perf_counter() - start
    assert elapsed < FAST_S, f"took {elapsed:.1f} s: something was allocated or computed before the refusal"
    msg = str(info.value)
    assert isinstance(info.value, SimgraphError) and isinstance(info.value, MemoryError)
    assert SIZE.search(msg), f"no human-readable size in {msg!r}"
    assert "bytes" in msg and "SIMGRAPH_MAX_BYTES" in msg
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return info.value


# ---------------------------------------------------------------------- the budget itself
def test_format_bytes():
    assert format_bytes(0) == "0 B"
    assert format_bytes(999) == "999 B"
    assert format_bytes(1500) == "1.5 kB"
    assert format_bytes(2 * 10**12) == "2.0 TB"


def test_budget_from_env_and_default(monkeypatch):
    assert max_bytes() == BUDGET
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", "4e9")
    assert max_bytes() == 4 * 10**9
    monkeypatch.delenv("SIMGRAPH_MAX_BYTES")
    assert max_bytes() == total_ram() and total_ram() > 10**8  # the machine's RAM
    for bad in ("lots", "-5", "0", "nan", "inf"):
        monkeypatch.setenv("SIMGRAPH_MAX_BYTES", bad)
        with pytest.raises(ConfigError, match="SIMGRAPH_MAX_BYTES"):
            max_bytes()


def test_check_bytes_names_size_what_and_hint():
    assert check_bytes("a small thing", 10) == 10
    exc = refused(lambda: check_bytes("the frobnicator", 2 * 10**12, "frobnicate less"), "the frobnicator", "frobnicate less",
                  "2.0 TB", "2,000,000,000,000")
    assert "1.0 GB" in str(exc)  # the budget


# ---------------------------------------------------------------------- builder
def test_population_too_large():
    refused(lambda: sg.Network().population("a", 2**31 - 1), "population 'a'", "size")


def test_population_total_too_large():
    net = sg.Network().population("a", 2**24)  # 16M neurons: 0.5 GB of ids, fits
    refused(lambda: net.population("b", 2**24), "population 'b'")


def test_all_to_all_of_huge_populations():
    net = sg.Network().population("a", 2**15).population("b", 2**15)  # 2**30 synapses: under MAX_SIZE, over the budget
    refused(lambda: net.connect("a", "b", "all_to_all"), "a->b", "all_to_all")
    refused(lambda: net.connect("a", "b", "pairwise_bernoulli", p=0.5), "pairwise_bernoulli")
    refused(lambda: net.connect("a", "b", "fixed_indegree", indegree=2**14, allow_multapses=False), "fixed_indegree")
    net.connect("a", "b", "fixed_indegree", indegree=1)  # 32k synapses: fine


def test_build_refuses_total(monkeypatch):
    monkeypatch.delenv("SIMGRAPH_MAX_BYTES")
    net = sg.Network().population("a", 1000).connect("a", "a").connect("a", "a", name="again")
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", str(10**7))  # 2M synapses need more than 10 MB
    refused(net.build, "Network.build", "synapses")


# ---------------------------------------------------------------------- simulate
def _graph(n=100):
    return sg.Network(seed=0).population("a", n).connect("a", "a").inputs("a").outputs("a").build()


def test_simulate_huge_batch():
    refused(lambda: sg.simulate(sg.rules.HebbianRule(), _graph(), ticks=1, batch_size=2**40), "batch_size")


def test_simulate_huge_ticks_with_monitor():
    graph = _graph()
    refused(lambda: sg.simulate(sg.rules.HebbianRule(), graph, ticks=10**10, batch_size=1, monitors=[sg.Monitor("node")]))
    # outputs fit (400 MB) but a per-tick edge record does not (40 GB): the monitor is named
    refused(lambda: sg.simulate(sg.rules.HebbianRule(), graph, ticks=10**6, batch_size=1, monitors=[sg.Monitor("edge")]),
            "monitor", "'edge'", "every=")


def test_simulate_huge_ticks_outputs():
    refused(lambda: sg.simulate(sg.rules.HebbianRule(), _graph(), ticks=10**10, batch_size=1), "outputs", "ticks")


def test_simulate_lean_episode_too_large():
    graph = (sg.Network(seed=0).population("in", 1).population("m", 10**6).connect("in", "m", "fixed_indegree", indegree=1)
             .inputs("in").outputs("in").build())
    refused(lambda: sg.simulate(sg.rules.HebbianRule(), graph, torch.zeros(1000, 1, 1), lean=True), "lean=True")


def test_simulate_small_still_runs():
    graph = _graph(8)
    run = sg.simulate(sg.rules.HebbianRule(), graph, ticks=5, batch_size=2, monitors=[sg.Monitor("edge", every=2)])
    assert run.records["edge"].shape[0] == 3


# ---------------------------------------------------------------------- rules
def test_mlp_rule_huge_hidden():
    refused(lambda: sg.rules.MLPRule(hidden=2**34), "MLPRule", "hidden")
    refused(lambda: sg.rules.MLPRule(num_neuron_types=2**40), "MLPRule")


def test_other_rules_huge_parameters():
    refused(lambda: sg.rules.GenomeRule(k=2**20), "GenomeRule", "k")
    refused(lambda: sg.rules.LSTMSynapseRule(hidden=2**20), "LSTMSynapseRule", "hidden")
    refused(lambda: LSTMCell(hidden=2**20), "LSTMCell")
    refused(lambda: BackpropCell(hidden=2**30, message=2**10), "BackpropCell")


def test_plastic_rule_checks_its_parameters(monkeypatch):
    graph = _graph(100)
    monkeypatch.setenv("SIMGRAPH_MAX_BYTES", str(10**4))
    refused(lambda: sg.rules.PlasticRule(graph), "PlasticRule", "synapses")


# ---------------------------------------------------------------------- tasks
def test_recall_task_huge_bits():
    refused(lambda: sg.tasks.RecallTask(bits=2**36), "RecallTask", "bits")
    refused(lambda: sg.tasks.RecallTask(num_patterns=2**30), "RecallTask")
    refused(lambda: sg.tasks.RecallTask(delay=10**12), "RecallTask", "ticks")


def test_task_huge_batch():
    refused(lambda: sg.tasks.RecallTask().sample(2**40), "batch_size")
    refused(lambda: sg.tasks.PatternCompletionTask(n_bits=16).sample(2**40), "batch_size")
    refused(lambda: sg.tasks.OneShotTask().sample(2**40), "batch_size")
    refused(lambda: sg.tasks.OnlineTask("xor").sample(2**40), "batch_size")


def test_other_tasks_huge_sizes():
    refused(lambda: sg.tasks.PatternCompletionTask(n_bits=2**36), "PatternCompletionTask")
    refused(lambda: sg.tasks.OneShotTask(label_bits=2**20), "OneShotTask", "label_bits")
    refused(lambda: sg.tasks.OnlineTask("xor", steps=2**40), "OnlineTask")
    refused(lambda: sg.tasks.OnlineTask("xor", projection=2**40), "OnlineTask")


def test_fit_with_huge_batch():
    task = sg.tasks.RecallTask(num_patterns=2, bits=4)
    graph = sg.Network(seed=0).population("m", 4).connect("m", "m").inputs("m").outputs("m").build()
    rule = sg.rules.HebbianRule()
    with pytest.raises(SimgraphError) as info:  # the loop may refuse the batch itself; else the task's budget does
        sg.train.fit(rule, graph, task, steps=1, batch_size=2**40, eval_every=1, eval_batch=2, progress=False)
    assert str(info.value)


def test_small_tasks_still_sample():
    for task in (sg.tasks.RecallTask(), sg.tasks.PatternCompletionTask(n_bits=8), sg.tasks.OneShotTask(),
                 sg.tasks.OnlineTask("xor", steps=3, query=2)):
        ep = task.sample(2, seed=0)
        assert ep.inputs.shape[1] == 2
