"""Task families (simgraph.tasks.families): datasets and generators from scikit-learn, random
projections, label permutations, varied horizons, the held-out split, config and baselines."""

import math

import numpy as np
import pytest
import torch

from simgraph.baselines import mlp_online
from simgraph.errors import ConfigError, UnknownNameError
from simgraph.tasks import FAMILIES, HELD_OUT_FAMILIES, META_TRAIN_FAMILIES, TASKS, Family, FamilyTask
from simgraph.tasks.families import DATASETS, held_out_tasks, register_family
from simgraph.train.config import Config


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_draws_valid_episodes(name):
    task = FamilyTask((name,), width=12, num_classes=5)
    ep = task.episode(40, 6, query=8, seed=3)
    assert ep.x.shape == (40, 6, 12) and ep.xq.shape == (8, 6, 12) and ep.x.dtype == torch.float32
    lo, hi = FAMILIES[name].ways
    for b in range(6):
        used = set(ep.y[:, b].tolist()) | set(ep.yq[:, b].tolist())
        assert used <= set(range(5)) and len(used) <= hi  # c of the 5 outputs, c <= the family's most
    # one RMS scale per episode: the inputs are of order one whatever the source's units
    rms = torch.cat([ep.x, ep.xq]).pow(2).mean((0, 2)).sqrt()
    assert torch.all((rms > 0.5) & (rms < 2.0))


def test_same_seed_same_batch_other_seed_other_batch():
    task = FamilyTask()
    a, b, c = task.sample(4, seed=7), task.sample(4, seed=7), task.sample(4, seed=8)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a.inputs.shape != c.inputs.shape or not torch.equal(a.inputs, c.inputs)
    ep = task.episode(30, 8, 5, seed=1)
    assert not torch.equal(ep.x[:, 0], ep.x[:, 1])  # episodes within a batch differ


def test_projection_and_labels_change_per_episode():
    """The same dataset episode after episode: another projection and another class -> output map."""
    task = FamilyTask(("iris",), width=8, num_classes=5)
    ep = task.episode(60, 16, 10, seed=0)
    maps = {tuple(sorted(set(ep.y[:, b].tolist()))) for b in range(16)}
    assert len(maps) > 3  # the 3 iris classes land on different outputs in different episodes
    assert all(len(m) == 3 for m in maps)  # ways=(3, 3): always all three classes
    first = [ep.x[:, b][ep.y[:, b] == ep.y[0, b]][0] for b in range(2)]
    assert not torch.allclose(first[0], first[1])


def test_dataset_queries_are_unseen_and_stream_cycles():
    """Wine: the query examples are never in the stream, and a stream longer than the dataset
    goes through the remaining examples once before repeating any."""
    task = FamilyTask(("wine",), width=13, num_classes=3)
    # no projection noise in the comparison: compare rows after the (shared) projection
    ep = task.episode(400, 3, query=20, seed=2)
    for b in range(3):
        stream, queries = ep.x[:, b], ep.xq[:, b]
        dist = torch.cdist(queries, stream)
        assert float(dist.min()) > 1e-4  # no query example reappears in the stream
        n_pool = len(torch.unique(stream, dim=0))
        first_pass = stream[:n_pool]
        assert len(torch.unique(first_pass, dim=0)) == n_pool  # no repeat within the first pass


def test_horizon_is_log_uniform_and_query_points():
    task = FamilyTask(min_steps=10, max_steps=200)
    hs = np.array([task.horizon(s) for s in range(3000)])
    assert hs.min() >= 10 and hs.max() <= 200 and hs.min() <= 11 and hs.max() >= 190
    assert abs(np.exp(np.log(hs).mean()) - math.sqrt(10 * 200)) < 3.0  # geometric mean of the range
    assert abs((hs < 20).mean() - math.log(2) / math.log(20)) < 0.03  # log-uniform, not uniform (0.05)
    assert FamilyTask(min_steps=30, max_steps=30).horizon(5) == 30
    assert task.query_points(45) == [20, 40, 45] and FamilyTask(query_every=0).query_points(45) == [45]


@pytest.mark.parametrize("stream_loss", [False, True])
def test_sample_interleaves_query_blocks_along_the_episode(stream_loss):
    task = FamilyTask(min_steps=10, max_steps=200, query=4, query_every=20, stream_loss=stream_loss)
    seed = next(s for s in range(100) if task.horizon(s) > 45)
    T = task.horizon(seed)
    ep = task.sample(3, seed=seed)
    points = task.query_points(T)
    assert ep.inputs.shape[0] == T + 4 * len(points)
    assert int(ep.probe.sum()) == 4 * len(points)
    where = torch.nonzero(ep.probe).flatten().tolist()
    starts = [w for i, w in enumerate(where) if i == 0 or where[i - 1] != w - 1]
    assert starts == [k + 4 * i for i, k in enumerate(points)]  # a block after steps 20, 40, ..., T
    assert ep.teacher[ep.probe].abs().sum() == 0 and torch.equal(ep.teacher[~ep.probe], ep.targets[~ep.probe])
    scored = ep.loss_mask[..., 0, 0].bool()
    assert torch.equal(scored, torch.ones_like(scored) if stream_loss else ep.probe)
    raw = task.episode(T, 3, 4, seed)
    assert torch.equal(ep.inputs[ep.probe][:4], raw.xq)  # the same queries at every point
    out = torch.randn(ep.targets.shape)
    m = task.metrics(out, ep)
    right = (out.argmax(-1) == ep.targets.argmax(-1)).float()
    assert float(m["final_accuracy"]) == pytest.approx(float(right[-4:].mean()))
    assert float(m["accuracy"]) == pytest.approx(float(right[ep.probe].mean()))
    want = torch.nn.functional.cross_entropy(out[scored].reshape(-1, 5), ep.targets[scored].argmax(-1).reshape(-1))
    torch.testing.assert_close(task.loss(out, ep), want)


def test_held_out_split_has_a_new_dataset():
    assert set(META_TRAIN_FAMILIES).isdisjoint(HELD_OUT_FAMILIES)
    seen = {FAMILIES[f].source for f in META_TRAIN_FAMILIES}
    new = [f for f in HELD_OUT_FAMILIES if FAMILIES[f].source not in seen]
    assert any(FAMILIES[f].source in DATASETS for f in new)  # a dataset meta-training never sees
    seen_digits = {c for f in META_TRAIN_FAMILIES if FAMILIES[f].source == "digits" for c in FAMILIES[f].classes}
    assert seen_digits.isdisjoint(FAMILIES["digits5-9"].classes)
    tasks = held_out_tasks(steps=50)
    assert list(tasks) == list(HELD_OUT_FAMILIES) and all(t.min_steps == t.max_steps == 50 for t in tasks.values())


def test_errors_are_clear():
    with pytest.raises(UnknownNameError, match="iris"):
        FamilyTask(("irsi",))
    with pytest.raises(ConfigError, match="min_steps"):
        FamilyTask(min_steps=50, max_steps=20)
    with pytest.raises(ConfigError, match="num_classes"):
        FamilyTask(("iris",), num_classes=2)
    with pytest.raises(ConfigError, match="exactly 2"):
        Family("moons", ways=(2, 3))
    with pytest.raises(ConfigError, match="fewer than"):
        Family("iris", ways=(2, 4))
    with pytest.raises(ConfigError, match="distinct"):
        Family("digits", classes=(1, 1))
    with pytest.raises(UnknownNameError):
        Family("mnist")
    with pytest.raises(ConfigError, match="already"):
        register_family("iris", Family("iris"))
    with pytest.raises(ConfigError, match="seed"):
        FamilyTask().sample(2, seed=-1)


def test_config_kind_and_baselines():
    cfg = Config.from_dict({"network": {"topology": "layered", "params": {"sizes": [16, 8, 5]}}, "rule": {"kind": "genome"},
                            "task": {"kind": "families", "families": ["iris", "moons"], "max_steps": 30}})
    task = cfg.make_task()
    assert TASKS["families"] is FamilyTask and task.families == ("iris", "moons") and cfg.make_graph(task).num_inputs == 16
    with pytest.raises(UnknownNameError, match="query_every"):
        Config.from_dict({"task": {"kind": "families", "query_evry": 5}})
    res = mlp_online(FamilyTask(("moons",)), "sgd", 0.1, hidden=(8,), at=(5, 20), batch=4, query=10)
    assert set(res) == {5, 20} and all(0 <= a <= 1 for a in res.values())


def test_class_sep_sets_how_far_apart_the_generated_classes_lie():
    """``class_sep`` of the classification generator: smaller overlaps the classes (a nearest-centroid
    read-out of one large draw gets worse); it must be positive."""
    def centroid_accuracy(sep):
        x, y, _, _ = Family("classification", ways=(3, 3), features=4, class_sep=sep).draw(3, 3000, 10, np.random.default_rng(0))
        centres = np.stack([x[y == c].mean(0) for c in range(3)])
        return float((np.argmin(((x[:, None] - centres) ** 2).sum(-1), 1) == y).mean())

    assert centroid_accuracy(0.3) + 0.1 < centroid_accuracy(2.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="class_sep"):
            Family("classification", class_sep=bad)


def test_diabetes_is_its_progression_in_tertiles():
    from simgraph.tasks.families import dataset

    x, y = dataset("diabetes")
    assert x.shape == (442, 10) and sorted(set(y.tolist())) == [0, 1, 2]
    assert np.bincount(y).min() >= 147  # three equal thirds of 442
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-9)


def test_settings_a_source_does_not_read_are_refused_and_quantiles_needs_its_classes():
    for kw, match in ((dict(source="iris", class_sep=0.1), "class_sep"), (dict(source="quantiles", noise=0.9), "noise"),
                      (dict(source="diabetes", features=3), "features"), (dict(source="blobs", class_sep=2.0), "class_sep")):
        with pytest.raises(ConfigError, match=match):
            Family(**kw)
    Family("quantiles", features=3)  # read there
    with pytest.raises(ConfigError, match="quantiles"):
        FamilyTask(("quantiles4",), 16, 5, 1, 1, query=1)
    FamilyTask(("quantiles4",), 16, 5, 2, 2, query=1).sample(2, 0)  # 3 examples for up to 3 classes
