"""BLUR genome rule: backprop as an exact special case, layouts agree, stabilisers, errors."""

import pytest
import torch

import simgraph as sg
from simgraph.errors import ConfigError, ShapeError, UnknownNameError
from simgraph.rules.genome import GENOME, GenomeRule, backprop_genome

SIZES = (5, 7, 6, 3)  # 2 hidden layers


def layered(sizes=SIZES, layout="dense"):
    net = sg.Network(0)
    for i, n in enumerate(sizes):
        net.population(f"layer{i}", n)
    for i in range(len(sizes) - 1):
        net.connect(f"layer{i}", f"layer{i + 1}", layout=layout)
    return net.inputs("layer0").outputs(f"layer{len(sizes) - 1}").build()


def weights_of(graph, state, channel=0):
    """Per-episode weight matrices [B, n_post, n_pre] of each projection (dense, post-major)."""
    return [state["edge"][:, p.slice, channel].reshape(-1, p.post.size, p.pre.size) for p in graph.projections.values()]


def sgd_reference(Ws, xs, ys, lr, loss):
    """Autograd online SGD on a bias-free ReLU MLP, one example per step, per episode."""
    Ws = [W.clone().requires_grad_(True) for W in Ws]
    for x, y in zip(xs, ys):
        h = x.unsqueeze(-1)
        for i, W in enumerate(Ws):
            h = W @ h
            if i < len(Ws) - 1:
                h = torch.relu(h)
        z = h.squeeze(-1)
        onehot = torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
        if loss == "mse":
            L = 0.5 * (z - (2 * onehot - 1)).pow(2).sum()
        else:
            L = torch.nn.functional.cross_entropy(z, y, reduction="sum")
        grads = torch.autograd.grad(L, Ws)  # sum over episodes = per-episode gradients
        Ws = [(W - lr * g).detach().requires_grad_(True) for W, g in zip(Ws, grads)]
    return [W.detach() for W in Ws]


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_backprop_genome_is_sgd(loss, symmetric):
    torch.manual_seed(0)
    graph = layered()
    B, T, lr = 3, 10, 0.05
    rule = backprop_genome(lr, loss=loss, symmetric=symmetric).double()
    state = rule.init_state(graph, B)
    W0 = weights_of(graph, state)
    xs = torch.randn(T, B, SIZES[0], dtype=torch.float64)
    ys = torch.randint(0, SIZES[-1], (T, B))
    for t in range(T):
        target = torch.nn.functional.one_hot(ys[t], SIZES[-1]).double()
        state = rule.step(graph, {**state, "target": target}, graph.scatter_inputs(xs[t].unsqueeze(-1)))
    ref = sgd_reference(W0, xs, ys, lr, loss)
    for c in range(rule.edge_dim):
        for W, R in zip(weights_of(graph, state, c), ref):
            assert (W - R).abs().max() <= 1e-6
    moved = max((W - R).abs().max() for W, R in zip(W0, ref))
    assert moved > 1e-2  # the test is meaningful: weights did change


def test_forward_pass_is_mlp_forward():
    graph = layered()
    rule = backprop_genome().double()
    state = rule.init_state(graph, 2)
    x = torch.randn(2, SIZES[0], dtype=torch.float64)
    out = rule.readout(graph, rule.forward_pass(graph, state, graph.scatter_inputs(x.unsqueeze(-1))))
    h = x
    for i, W in enumerate(weights_of(graph, state)):
        h = torch.einsum("bpq,bq->bp", W, h)
        h = torch.relu(h) if i < 2 else h
    torch.testing.assert_close(out, h)


@pytest.mark.parametrize("schedule", ["layer_sweep", "synchronous"])
def test_dense_and_sparse_agree(schedule):
    dense, sparse = layered(layout="dense"), layered(layout="sparse")
    assert {p.layout for p in sparse.projections.values()} == {"sparse"}
    rule = GenomeRule(3, schedule=schedule, normalize=True, oja=0.01, saturation=2.0, symmetric=False).double()
    torch.manual_seed(1)
    x = torch.randn(4, 2, SIZES[0], 1, dtype=torch.float64)
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).double()
    states = []
    for g in (dense, sparse):
        s = rule.init_state(g, 2)
        for t in range(4):
            s = rule.step(g, {**s, "target": target}, g.scatter_inputs(x[t]))
        states.append(s)
    torch.testing.assert_close(states[0]["node"], states[1]["node"])
    torch.testing.assert_close(states[0]["edge"], states[1]["edge"])
    assert states[0]["edge"].abs().max() <= 2.0  # saturation holds


def test_gradients_reach_every_genome_number():
    graph = layered()
    rule = GenomeRule(2, symmetric=False)
    s = rule.init_state(graph, 2)
    target = torch.nn.functional.one_hot(torch.tensor([0, 1]), 3).float()
    for _ in range(3):
        s = rule.step(graph, {**s, "target": target}, graph.scatter_inputs(torch.randn(2, SIZES[0], 1)))
    rule.readout(graph, rule.forward_pass(graph, s, graph.scatter_inputs(torch.randn(2, SIZES[0], 1)))).sum().backward()
    for name, p in rule.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_errors():
    with pytest.raises(ConfigError):
        GenomeRule(1)
    with pytest.raises(UnknownNameError):
        GenomeRule(2, sigma=("relu", "swish"))
    with pytest.raises(ConfigError):
        GenomeRule(2, sigma=("relu",))
    with pytest.raises(UnknownNameError):
        backprop_genome(loss="hinge")
    with pytest.raises(UnknownNameError):
        GenomeRule(2, schedule="random")
    graph = layered()
    rule = GenomeRule(2)
    s = rule.init_state(graph, 2)
    with pytest.raises(ShapeError):
        rule.backward_pass(graph, s, torch.zeros(2, 4))  # 4 columns, 3 output neurons


def test_synapse_norm_holds_every_neurons_incoming_norm():
    graph = layered()
    rule = GenomeRule(2, synapse_norm=1.5, symmetric=False, seed=2)
    s = rule.init_state(graph, 2)
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    for _ in range(3):
        s = rule.step(graph, {**s, "target": target}, graph.scatter_inputs(torch.randn(2, SIZES[0], 1)))
    norms = graph.to_post(s["edge"].square(), "sum").sqrt()[:, SIZES[0]:]  # neurons with incoming synapses
    torch.testing.assert_close(norms, torch.full_like(norms, 1.5))
    with pytest.raises(ConfigError):
        GenomeRule(2, synapse_norm=0.0)


def weighted(graph, signed=False):
    """``graph`` with measured strengths (and signs) as from_networkx(weight_attr=, sign_attr=) gives them."""
    import dataclasses

    g = torch.Generator().manual_seed(3)
    w = torch.rand(graph.num_edges, generator=g) * 4 + 0.5  # e.g. contact counts
    sign = (torch.randint(0, 2, (graph.num_edges,), generator=g) * 2 - 1).float() if signed else None
    return dataclasses.replace(graph, edge_weight=w, edge_sign=sign, _cache={})


def test_imported_strengths_start_the_forward_weight():
    """Issue 16: the genome starts every channel of every synapse at the rescaled measured strength
    (times init_scale), the same for every episode; "default" ignores them."""
    from simgraph.rules.constraints import start_weights

    plain = layered()
    g = weighted(plain)
    want = start_weights(g, "test", "auto")[:, 0]
    for rule, scale in ((backprop_genome(0.1), 1.0), (GenomeRule(2, init_scale=0.5, symmetric=False), 0.5)):
        w = rule.init_state(g, 3)["edge"]
        assert w.shape == (3, g.num_edges, rule.edge_dim)
        torch.testing.assert_close(w, (scale * want).view(1, -1, 1).expand_as(w))
    ignore = GenomeRule(2, init_weights="default")
    torch.testing.assert_close(ignore.init_state(g, 2)["edge"], ignore.init_state(plain, 2)["edge"])
    with pytest.raises(sg.errors.GraphError, match="measured strengths"):
        GenomeRule(2, init_weights="edge_weight").init_state(plain, 1)
    with pytest.raises(UnknownNameError):
        GenomeRule(2, init_weights="measured")


@pytest.mark.parametrize("measured", [True, False])
def test_dale_holds_on_the_forward_channels_while_the_genome_learns(measured):
    g = weighted(layered(), signed=True)
    if not measured:
        import dataclasses

        g = dataclasses.replace(g, edge_weight=None, _cache={})
    sign = g.edge_sign.view(1, -1, 1)
    rule = backprop_genome(0.5, symmetric=False)
    s = rule.init_state(g, 2)
    w0 = s["edge"].clone()
    assert (w0 * sign >= 0).all()
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    for _ in range(5):
        s = rule.step(g, {**s, "target": target}, g.scatter_inputs(3 * torch.randn(2, SIZES[0], 1)))
    fwd = s["edge"][..., : rule.k]
    assert (fwd * sign >= 0).all() and (fwd - w0[..., : rule.k]).abs().max() > 1e-2  # learned, on its side of zero
    assert (s["edge"][..., rule.k :] * sign < 0).any()  # the feedback channels are not synapses: free


def test_readout_gain_scales_only_the_logits():
    graph = layered()
    plain, gained = backprop_genome(0.1), backprop_genome(0.1, readout_gain=True)
    assert "log_gain" not in dict(plain.named_parameters()) and "log_gain" in dict(gained.named_parameters())
    with torch.no_grad():
        gained.log_gain.fill_(1.0)
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    x = [graph.scatter_inputs(torch.randn(2, SIZES[0], 1)) for _ in range(4)]
    s1, s2 = plain.init_state(graph, 2), gained.init_state(graph, 2)
    for u in x:
        s1, s2 = plain.step(graph, {**s1, "target": target}, u), gained.step(graph, {**s2, "target": target}, u)
    torch.testing.assert_close(s1["edge"], s2["edge"])  # the dynamics never see the gain
    torch.testing.assert_close(gained.readout(graph, s2), torch.e * plain.readout(graph, s1))
    gained.readout(graph, s2).sum().backward()
    assert gained.log_gain.grad is not None and gained.log_gain.grad != 0


def test_anneal_is_a_one_over_t_decay_of_the_synapse_rate():
    """Issue 17: ``anneal=tau`` learns example n at rate lr / (1 + n / tau): the same step as the
    plain genome at that rate, counted per episode; tau is a meta-parameter (its gradient flows)."""
    graph = layered()
    x = graph.scatter_inputs(torch.randn(2, SIZES[0], 1, generator=torch.Generator().manual_seed(4)))
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    tau, n = 4.0, 3
    annealed = backprop_genome(0.1, anneal=tau)
    s = annealed.init_state(graph, 2)
    for _ in range(n):
        s = annealed.step(graph, {**s, "target": target}, x)
    torch.testing.assert_close(s["updates"], torch.full((2, 1, 1), float(n)))
    after = annealed.step(graph, {**s, "target": target}, x)
    plain = backprop_genome(0.1 / (1 + n / tau))
    expected = plain.step(graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)
    torch.testing.assert_close(after["edge"] - s["edge"], expected["edge"] - s["edge"])
    assert not torch.allclose(after["edge"] - s["edge"], backprop_genome(0.1).step(
        graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)["edge"] - s["edge"])
    after["edge"].sum().backward()
    assert annealed.log_tau.grad is not None and annealed.log_tau.grad.abs() > 0
    # without a label nothing is learned, so nothing is counted
    unlabelled = {k: v for k, v in s.items() if k != "target"}
    assert annealed.step(graph, unlabelled, x)["updates"].eq(n).all()
    # an enormous tau is the plain genome, output for output
    huge, base = backprop_genome(0.1, anneal=1e15), backprop_genome(0.1)
    a, b = huge.init_state(graph, 2), base.init_state(graph, 2)
    for _ in range(3):
        a, b = huge.step(graph, {**a, "target": target}, x), base.step(graph, {**b, "target": target}, x)
    torch.testing.assert_close(a["edge"], b["edge"])
    for bad in (0.0, -1.0, float("nan"), "10"):
        with pytest.raises(ConfigError, match="anneal"):
            GenomeRule(2, anneal=bad)
    with pytest.raises(ShapeError, match="updates"):
        annealed.step(graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)
    # only an annealed genome uses the count: a plain one refuses the field instead of ignoring it
    with pytest.raises(ShapeError, match="updates"):
        base.check_state(graph, {"node": s["node"], "edge": s["edge"], "updates": s["updates"]})
    annealed.check_state(graph, {"node": s["node"], "edge": s["edge"], "updates": s["updates"]})


def _trained_looking(rule, seed=5):
    """Move every genome entry off its start (as meta-training would), keeping the anchor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rule.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return rule


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_fade_blends_the_learned_genome_back_to_its_start(layout):
    """Issue 17: ``fade=T`` runs example n with the genome theta_0 + (theta - theta_0) / (1 + n / T):
    the same step as a plain genome holding that blend, on every layout; at its start it is the
    start output for output; gradients reach every genome entry."""
    graph = layered(layout=layout)
    x = graph.scatter_inputs(torch.randn(2, SIZES[0], 1, generator=torch.Generator().manual_seed(4)))
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    T, n = 3.0, 4
    faded = backprop_genome(0.1, fade=T)
    untouched, plain = faded.init_state(graph, 2), backprop_genome(0.1)
    b = plain.init_state(graph, 2)
    for _ in range(3):  # no residual yet: exactly backprop
        untouched, b = faded.step(graph, {**untouched, "target": target}, x), plain.step(graph, {**b, "target": target}, x)
    torch.testing.assert_close(untouched["edge"], b["edge"])
    _trained_looking(faded)
    s = faded.init_state(graph, 2)
    for _ in range(n):
        s = faded.step(graph, {**s, "target": target}, x)
    torch.testing.assert_close(s["updates"], torch.full((2, 1, 1), float(n)))
    after = faded.step(graph, {**s, "target": target}, x)
    blend = backprop_genome(0.1)
    r = 1 / (1 + n / T)
    with torch.no_grad():
        for name, p in blend.named_parameters():
            start = getattr(faded, f"anchor_{name}")
            p.copy_(start + r * (getattr(faded, name) - start))
    expected = blend.step(graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)
    torch.testing.assert_close(after["edge"], expected["edge"])
    torch.testing.assert_close(after["node"], expected["node"])
    # neither the learned genome itself nor its start
    full = backprop_genome(0.1)
    with torch.no_grad():
        for name, p in full.named_parameters():
            p.copy_(getattr(faded, name))
    assert not torch.allclose(after["edge"], full.step(graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)["edge"])
    assert not torch.allclose(after["edge"], plain.step(graph, {"node": s["node"], "edge": s["edge"], "target": target}, x)["edge"])
    after["edge"].sum().backward()
    for name, p in faded.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fade_anchor_is_saved_and_checked():
    graph = layered()
    faded = _trained_looking(backprop_genome(0.1, fade=10.0))
    state = faded.state_dict()
    assert torch.equal(state["anchor_eta_syn"], torch.tensor(-0.1))  # the anchor is backprop, not the moved genome
    again = backprop_genome(0.3, fade=10.0)
    again.load_state_dict(state)
    torch.testing.assert_close(again.anchor_eta_syn, torch.tensor(-0.1))
    again.anchor()  # re-anchor at the current genome: the residual is zero again
    torch.testing.assert_close(again.anchor_beta, again.beta.detach())
    for bad in (0.0, -2.0, float("inf"), "20"):
        with pytest.raises(ConfigError, match="fade"):
            GenomeRule(2, fade=bad)
    s = faded.init_state(graph, 2)
    with pytest.raises(ShapeError, match="updates"):
        faded.step(graph, {"node": s["node"], "edge": s["edge"]}, graph.scatter_inputs(torch.zeros(2, SIZES[0], 1)))


def test_per_entry_fade_times_fixed_and_learned():
    """``fade_times`` fades the named entries on their own time (the others on ``fade``); ``learn_fade``
    gives the same step from meta-parameters ``log_fade`` that the gradient reaches; a checkpoint of a
    genome without them loads with its starts; bad settings are refused by name."""
    graph = layered()
    x = graph.scatter_inputs(torch.randn(2, SIZES[0], 1, generator=torch.Generator().manual_seed(4)))
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    T, T_bwd, n = 3.0, 0.5, 4
    fixed = _trained_looking(backprop_genome(0.1, fade=T, fade_times={"eta_bwd": T_bwd}))
    learned = backprop_genome(0.1, fade=T, fade_times={"eta_bwd": T_bwd}, learn_fade=True)
    learned.load_state_dict(fixed.state_dict())  # no log_fade in it: starts at fade / fade_times
    torch.testing.assert_close(learned.log_fade.exp()[GENOME.index("eta_bwd")], torch.tensor(T_bwd))
    s = fixed.init_state(graph, 2)
    for _ in range(n):
        s = fixed.step(graph, {**s, "target": target}, x)
    blend = backprop_genome(0.1)
    with torch.no_grad():
        for name, p in blend.named_parameters():
            start, r = getattr(fixed, f"anchor_{name}"), 1 / (1 + n / (T_bwd if name == "eta_bwd" else T))
            p.copy_(start + r * (getattr(fixed, name) - start))
    given = {"node": s["node"], "edge": s["edge"], "target": target}
    expected = blend.step(graph, given, x)
    torch.testing.assert_close(fixed.step(graph, {**s, "target": target}, x)["edge"], expected["edge"])
    after = learned.step(graph, {**s, "target": target}, x)
    torch.testing.assert_close(after["edge"], expected["edge"])
    one_time = _trained_looking(backprop_genome(0.1, fade=T))  # the same genome on one fade time differs
    one_time.load_state_dict({k: v for k, v in fixed.state_dict().items()})
    assert not torch.allclose(one_time.step(graph, {**s, "target": target}, x)["edge"], expected["edge"])
    after["edge"].sum().backward()
    assert learned.log_fade.grad is not None and learned.log_fade.grad.abs().sum() > 0
    for bad, match in ((dict(fade_times={"eta_bwd": 2.0}), "need fade"), (dict(learn_fade=True), "need fade"),
                       (dict(fade=3.0, fade_times=[2.0]), "fade_times must be"),
                       (dict(fade=3.0, fade_times={"eta_bwd": 0.0}), "fade_times"),
                       (dict(fade=3.0, learn_fade="yes"), "learn_fade")):
        with pytest.raises(ConfigError, match=match):
            GenomeRule(2, **bad)
    with pytest.raises(UnknownNameError, match="eta_bwdd"):
        GenomeRule(2, fade=3.0, fade_times={"eta_bwdd": 2.0})


def test_fade_and_anneal_times_float32_can_hold_and_backprop_genome_settings():
    """A time that is 0 or inf in float32 (NaN at the first example, or a NaN meta-gradient of log T)
    is refused by name; backprop_genome refuses the settings that make it backprop, and unknown ones."""
    for kw, match in ((dict(fade=1e-46), "fade"), (dict(fade=1e39, learn_fade=True), "fade"),
                      (dict(fade=3.0, fade_times={"beta": 1e-46}), "fade_times"),
                      (dict(fade=3.0, fade_times={"beta": 1e39}), "fade_times"), (dict(anneal=1e-46), "anneal")):
        with pytest.raises(ConfigError, match=match):
            GenomeRule(2, **kw)
    assert GenomeRule(2, fade=1e30, learn_fade=True).log_fade.isfinite().all()
    with pytest.raises(ConfigError, match="sets sigma itself"):
        backprop_genome(0.1, sigma=("relu", "relu"))
    with pytest.raises(UnknownNameError, match="fade_time"):
        backprop_genome(0.1, fade_time=3.0)
    with pytest.raises(ConfigError, match="lr"):
        backprop_genome(1e39)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_tied_synapses_hold_one_weight(layout):
    """Issue 17: ``tied=True`` keeps one weight per synapse, read by every channel and moved by the
    mean of the channel updates: backprop is the same rule tied or not, and a genome that would
    drive the channels apart moves the one weight by their average."""
    graph = layered(layout=layout)
    x = graph.scatter_inputs(torch.randn(2, SIZES[0], 1, generator=torch.Generator().manual_seed(4)))
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    tied, plain = backprop_genome(0.1, tied=True), backprop_genome(0.1)
    a, b = tied.init_state(graph, 2), plain.init_state(graph, 2)
    assert a["edge"].shape[-1] == 1 and b["edge"].shape[-1] == 2
    for _ in range(3):
        a, b = tied.step(graph, {**a, "target": target}, x), plain.step(graph, {**b, "target": target}, x)
    torch.testing.assert_close(a["edge"][..., 0], b["edge"][..., 0])
    torch.testing.assert_close(a["node"], b["node"])
    # a genome whose channels would part: untied they do, tied the weight moves by their mean
    moved_t, moved_u = _trained_looking(backprop_genome(0.1, tied=True)), _trained_looking(backprop_genome(0.1))
    s = moved_t.init_state(graph, 2)
    two = {"node": s["node"], "edge": s["edge"].expand(-1, -1, 2).contiguous(), "target": target}
    after_t, after_u = moved_t.step(graph, {**s, "target": target}, x), moved_u.step(graph, two, x)
    assert not torch.allclose(after_u["edge"][..., 0], after_u["edge"][..., 1])
    torch.testing.assert_close(after_t["edge"][..., 0] - s["edge"][..., 0],
                               (after_u["edge"] - two["edge"]).mean(-1))
    with pytest.raises(ConfigError, match="tied"):
        GenomeRule(2, tied=True, symmetric=False)
    with pytest.raises(ConfigError, match="tied"):
        GenomeRule(2, tied="yes")
