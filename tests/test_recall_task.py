import pytest
import torch

from simgraph.errors import ConfigError, UnknownNameError
from simgraph.tasks import RecallTask


@pytest.mark.parametrize("cue,n_in", [("partial", 8), ("key", 16), ("position", 8 + 3)])
def test_shapes_timing_and_determinism(cue, n_in):
    task = RecallTask(num_patterns=3, bits=8, present_ticks=2, gap_ticks=1, delay=2, queries=2, cue=cue,
                      query_ticks=3, readout_ticks=2)
    assert task.num_inputs == n_in and task.num_outputs == 8
    assert task.num_ticks == 3 * 3 + 2 + 2 * 4
    ep = task.sample(5, seed=1)
    assert ep.inputs.shape == (task.num_ticks, 5, n_in)
    assert ep.targets.shape == ep.loss_mask.shape == ep.metric_mask.shape == (task.num_ticks, 5, 8)
    again = task.sample(5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(ep[:4], again[:4])) and ep.teacher is None and ep.probe is None
    assert not torch.equal(task.sample(5, seed=2).inputs, ep.inputs)
    # read-out ticks: the last 2 of each 3-tick query
    read = ep.loss_mask[:, 0, 0].nonzero().flatten().tolist()
    assert read == [12, 13, 16, 17]
    # targets are stored patterns: each appears in the write phase
    for t in read:
        shown = ep.inputs[: task.write_ticks, 0, :8] if cue != "key" else ep.inputs[: task.write_ticks, 0, 8:]
        assert any(torch.equal(ep.targets[t, 0], row) for row in shown)


def test_partial_cue_gives_a_fraction_of_bits_and_metric_counts_the_rest():
    task = RecallTask(num_patterns=2, bits=200, cue_fraction=0.25, queries=1)
    ep = task.sample(4, seed=0)
    t = ep.loss_mask[:, 0, 0].nonzero().flatten()[0]
    cue = ep.inputs[t]
    given = cue != 0
    assert 0.15 < given.float().mean() < 0.35
    assert torch.equal(cue[given], ep.targets[t][given])
    assert torch.equal(ep.metric_mask[t].bool(), ~given)


def test_loss_and_accuracy():
    task = RecallTask(num_patterns=2, bits=8)
    ep = task.sample(3, seed=0)
    perfect = ep.targets.clone()
    assert task.loss(perfect, ep) == 0
    assert task.metrics(perfect, ep)["accuracy"] == 1
    assert task.metrics(-perfect, ep)["accuracy"] == 0
    assert task.loss(torch.zeros_like(perfect), ep) == pytest.approx(1.0)


def test_distractors_fill_the_delay():
    task = RecallTask(num_patterns=2, bits=8, delay=4, distractors=True)
    ep = task.sample(2, seed=0)
    assert (ep.inputs[task.write_ticks : task.write_ticks + 4].abs() == 1).all()


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"num_patterns": 0}, "num_patterns must be an int >= 1"),
        ({"bits": 2.5}, "bits must be an int"),
        ({"gap_ticks": -1}, "gap_ticks must be an int >= 0"),
        ({"cue_fraction": 1.0}, "cue_fraction"),
        ({"cue_fraction": -0.1}, "cue_fraction"),
        ({"readout_ticks": 4, "query_ticks": 3}, "exceeds"),
        ({"cue": "position", "repeats": 2}, "repeats=1"),
        ({"shuffle": "yes"}, "true or false"),
    ],
)
def test_validation_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        RecallTask(**kw)


def test_unknown_cue_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'partial'"):
        RecallTask(cue="partal")
    with pytest.raises(ConfigError, match="batch_size"):
        RecallTask().sample(0)
