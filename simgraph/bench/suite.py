"""The pieces of ``simgraph bench``: graphs, the timed variants, the roofline, peak memory.

A *variant* is one implementation (``engine``, hand-written ``dense``, ``pyg``) of one rule on one
graph and batch size: an initial carry, a tick, and the leaves a backward pass differentiates.
Timings of the variants of a case are interleaved and repeated (medians), because the machine
is shared and noisy: only ratios measured side by side mean anything.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .. import rules
from .._allocator import release_freed_memory
from ..build import Network
from ..errors import ConfigError
from ..graph import Graph

RULES = ("static", "hebbian", "mlp", "genome", "lstm_synapse", "plastic")
IMPLS = ("engine", "dense", "pyg", "plain")
HAND_WRITTEN = {"static", "hebbian", "mlp"}  # rules with dense and PyG references
# "plain": the engine with the MLP rule's synapse function under plain autograd (edge_update="plain"),
# the reference the fused one (rules/_fused.py) is measured against
PLAIN_REFERENCE = {"mlp"}


def make_graph(kind: str, n: int, density: float = 0.01, device="cpu") -> Graph:
    """One recurrent population: ``dense`` all-to-all, or ``sparse`` with indegree ``density * n``."""
    net = Network(seed=0).population("neurons", n, neuron_type="neuron")
    if kind == "dense":
        net.connect("neurons", "neurons", "all_to_all")
    elif kind == "sparse":
        # fixed indegree with multapses allowed draws k ids per node (no n x n matrix at build time)
        k = max(1, round(density * n))
        net.connect("neurons", "neurons", "fixed_indegree", indegree=k, allow_multapses=True, allow_autapses=False)
    else:
        raise ConfigError(f"bench graph kind must be 'dense' or 'sparse', got {kind!r}")
    return net.inputs("neurons").outputs("neurons").build(device)


def make_rule(name: str, graph: Graph) -> rules.Rule:
    if name not in RULES:
        raise ConfigError(f"unknown bench rule {name!r}; choose from {list(RULES)}")
    torch.manual_seed(0)
    make = {
        "static": lambda: rules.StaticRule(),
        "hebbian": lambda: rules.HebbianRule(),
        "mlp": lambda: rules.MLPRule(),
        "genome": lambda: rules.GenomeRule(schedule="synchronous"),
        "lstm_synapse": lambda: rules.LSTMSynapseRule(schedule="synchronous"),
        "plastic": lambda: rules.PlasticRule(graph),
    }
    return make[name]().to(graph.device)


def cost_model(rule: rules.Rule, batch: int, backward: bool = False) -> tuple[float, float]:
    """Minimal (bytes moved, flops) per synapse update of one tick: the roofline's inputs.

    Bytes count the edge state read and written once (shared weights once per batch); flops the
    per-synapse arithmetic. Node-side work is O(N) and ignored. ``backward``: forward and backward
    of the tick, counted as 3x the forward flops (a layer's backward costs twice its forward: the
    gradients of its input and of its weights) and 2.5x the bytes (backward reads the edge state
    and its gradient and writes the gradient of the state before: 12 bytes a channel to the
    forward's 8). Recomputing the forward in backward is not counted: the bound is the work a
    tick needs, not what a given implementation does.
    """
    bytes_per, flops = _forward_cost(rule, batch)
    return (2.5 * bytes_per, 3 * flops) if backward else (bytes_per, flops)


def _forward_cost(rule: rules.Rule, batch: int) -> tuple[float, float]:
    if isinstance(rule, rules.StaticRule):
        return 4 / batch, 2
    if isinstance(rule, rules.HebbianRule):
        return 8, 4
    if isinstance(rule, rules.PlasticRule):
        return 8 + 8 / batch, 6
    if isinstance(rule, rules.MLPRule):
        De, H = rule.edge_dim, rule.edge_in.out_features
        return 8 * De, 4 * De * H + 8 * H
    if isinstance(rule, rules.LSTMSynapseRule):
        H = rule.edge_dim // 2
        return 8 * rule.edge_dim, 8 * H * H + 30 * H
    return 8 * rule.edge_dim, 6 * rule.edge_dim


def memory_factor(rule_name: str, impl: str) -> int:
    """Rough floats kept per synapse per tick (for skipping variants that would not fit)."""
    f = {"static": 2, "hebbian": 4, "plastic": 5, "mlp": 110, "genome": 20, "lstm_synapse": 400}[rule_name]
    return f + (200 if impl == "pyg" and rule_name == "mlp" else 0)


@dataclass
class Variant:
    init: Callable[[], object]
    tick: Callable[[object], object]
    node: Callable[[object], torch.Tensor]
    leaves: list[torch.Tensor]


def make_variant(rule_name: str, impl: str, graph: Graph, batch: int, backward: bool, rule=None) -> Variant:
    """One implementation of ``rule_name`` on ``graph``; all implementations share the rule's parameters."""
    if impl not in IMPLS:
        raise ConfigError(f"unknown bench implementation {impl!r}; choose from {list(IMPLS)}")
    if impl == "plain" and rule_name not in PLAIN_REFERENCE:
        raise ConfigError(f"no plain reference for rule {rule_name!r} (only {sorted(PLAIN_REFERENCE)})")
    if impl not in ("engine", "plain") and rule_name not in HAND_WRITTEN:
        raise ConfigError(f"no {impl} reference for rule {rule_name!r} (only {sorted(HAND_WRITTEN)})")
    rule = rule if rule is not None else make_rule(rule_name, graph)
    N, dev = graph.num_nodes, graph.device
    g = torch.Generator().manual_seed(1)
    u = (torch.randint(0, 2, (batch, N, rule.input_dim), generator=g) * 2 - 1).float().to(dev)
    with torch.no_grad():  # the initial state is data here: timed runs start from it again and again
        state = rule.init_state(graph, batch)
    leaves = [p for p in rule.parameters() if p.requires_grad]
    if rule_name == "hebbian":  # a non-zero starting matrix, as after some storage
        state["edge"] = 0.01 * torch.randn(batch, graph.num_edges, 1, generator=g).to(dev)
    if backward and not leaves:  # rules without meta-parameters: differentiate the initial synapses
        edge = state["edge"][:1].detach().clone() if rule_name == "static" else state["edge"].detach().clone()
        leaves = [edge.requires_grad_()]
        state["edge"] = edge.expand(batch, -1, -1)
    if not backward:
        leaves = []
    if impl in ("engine", "plain"):
        mode = "plain" if impl == "plain" else rule.edge_update if rule_name in PLAIN_REFERENCE else None
        return Variant(lambda: state, lambda s: _step_in(rule, mode, graph, s, u), lambda s: s["node"], leaves)

    from . import reference as ref  # here, not at the top: torch_geometric takes seconds to import in every memory child

    x0, e0 = state["node"], state["edge"]
    eta = rule.learning_rate(graph) if rule_name == "hebbian" else N / max(graph.num_edges, 1)
    if impl == "dense":
        if len(graph.projections) != 1 or next(iter(graph.projections.values())).layout != "dense":
            raise ConfigError("the hand-written dense reference needs one all-to-all (dense) projection")
        W0 = e0.view(e0.shape[0], N, N, e0.shape[-1])
        fn = {"static": lambda c: ref.dense_static(rule, *c, u), "hebbian": lambda c: ref.dense_hebbian(rule, *c, u, eta),
              "mlp": lambda c: ref.dense_mlp(rule, *c, u)}[rule_name]
        return Variant(lambda: (x0, W0), fn, lambda c: c[0], leaves)
    ei = graph.edge_index
    conv = ref.PygWeighted()
    if rule_name == "static":
        fn = lambda c: ref.pyg_static(rule, conv, ei, *c, u)  # noqa: E731
    elif rule_name == "hebbian":
        hebb = ref.PygHebb()
        fn = lambda c: ref.pyg_hebbian(rule, conv, hebb, ei, *c, u, eta)  # noqa: E731
    else:
        edge, scale = ref.PygMLPEdge(rule), graph.in_degree().clamp(min=1).rsqrt().view(1, -1, 1)
        fn = lambda c: ref.pyg_mlp(rule, conv, edge, ei, scale, *c, u)  # noqa: E731
    return Variant(lambda: (x0, e0), fn, lambda c: c[0], leaves)


def _step_in(rule: rules.Rule, mode: str | None, graph: Graph, state, u):
    """One tick with the MLP rule's synapse function in ``mode`` (variants of one case share the
    rule object, so its own mode is put back after the tick; each Function records its mode, so
    the backward runs in it too)."""
    if mode is None:
        return rule.step(graph, state, u)
    own, rule.edge_update = rule.edge_update, mode
    try:
        return rule.step(graph, state, u)
    finally:
        rule.edge_update = own


def run_variant(v: Variant, ticks: int, backward: bool) -> torch.Tensor:
    """``ticks`` ticks (and, with ``backward``, the gradient of the final activity's square sum)."""
    with torch.set_grad_enabled(backward):
        c = v.init()
        for _ in range(ticks):
            c = v.tick(c)
        x = v.node(c)
        if backward:
            torch.autograd.grad(x.square().sum(), v.leaves, allow_unused=True)
    return x.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(variants: dict[str, Variant], ticks: int, backward: bool, repeats: int, device) -> dict[str, float]:
    """Median seconds per tick of each variant, the variants taking turns in every round."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for k, v in variants.items():  # warm-up (allocator, lazy caches, first-call dispatch)
        run_variant(v, 1, backward)
    for _ in range(repeats):
        for k, v in variants.items():
            _sync(device)
            t = time.perf_counter()
            run_variant(v, ticks, backward)
            _sync(device)
            times[k].append((time.perf_counter() - t) / ticks)
    return {k: statistics.median(ts) for k, ts in times.items()}


# ---------------------------------------------------------------------- the machine's limits
def roofline(device, quick: bool = False) -> dict[str, float]:
    """Measured memory bandwidth (GB/s, a large copy: read + write) and matmul throughput (GFLOP/s)."""
    device = torch.device(device)
    n = (1 << 24) if quick else (1 << 26)
    a, b = torch.empty(n, device=device).normal_(), torch.empty(n, device=device)
    best_copy = min(_timed(lambda: b.copy_(a), device) for _ in range(5))
    m = 1024 if quick else 2048
    x, y = torch.randn(m, m, device=device), torch.randn(m, m, device=device)
    best_mm = min(_timed(lambda: x @ y, device) for _ in range(5))
    return {"bandwidth_gbs": 2 * 4 * n / best_copy / 1e9, "matmul_gflops": 2 * m**3 / best_mm / 1e9}


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def roofline_seconds(bytes_per: float, flops_per: float, updates: float, roof: dict) -> float:
    """Lower bound on the time of ``updates`` synapse updates: memory- or compute-bound, whichever is slower."""
    return max(bytes_per * updates / (roof["bandwidth_gbs"] * 1e9), flops_per * updates / (roof["matmul_gflops"] * 1e9))


# ---------------------------------------------------------------------- backprop through whole episodes
LEAN = {"mlp": "checkpoint", "hebbian": "lean", "plastic": "lean"}  # how each rule avoids storing every tick's edges


def episode_loss(rule_name: str, graph: Graph, ticks: int, batch: int, how: str) -> Callable[[], torch.Tensor]:
    """A closure running one episode with gradients and returning a loss to backpropagate.

    ``how``: ``plain`` autograd, ``checkpoint`` (``sg.simulate(checkpoint_every=sqrt(T))``) or
    ``lean`` (``sg.simulate(lean=True)``: the rule's ``lean_episode``, which runs the edge update backwards). Rules without
    meta-parameters (Hebbian) differentiate their initial synapses.
    """
    from ..simulate import simulate

    rule = make_rule(rule_name, graph)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(ticks, batch, graph.num_inputs, generator=g).to(graph.device)
    state = None
    if rule_name == "hebbian":
        w0 = (0.01 * torch.randn(1, graph.num_edges, 1, generator=g)).to(graph.device).requires_grad_()
        state = {"node": torch.zeros(batch, graph.num_nodes, 1, device=graph.device), "edge": w0.expand(batch, -1, -1)}
    if how == "lean":
        return lambda: simulate(rule, graph, u, state=state, lean=True).outputs.square().sum()
    every = checkpoint_interval(ticks) if how == "checkpoint" else 0
    return lambda: simulate(rule, graph, u, state=state, checkpoint_every=every).outputs.square().sum()


def checkpoint_interval(ticks: int) -> int:
    """sqrt(T) chunks balance the stored chunk boundaries against one chunk's intermediates."""
    return max(1, round(ticks**0.5))


# ---------------------------------------------------------------------- typed graphs: many projections vs one
# (name: neurons, synapses, populations = neuron types, projections); the connectome is about the
# size of C. elegans' imported from networkx (issue 14): ~300 neurons, ~7k synapses, ~20 projections;
# the 10k net has the synapses of the sparse bench net (indegree 100). Nets past 1000 neurons run at
# the smallest batch only (16 episodes of the MLP rule's forward+backward on the 10k net take many
# seconds a tick on 2 cores); --quick runs the connectome alone.
TYPED_NETS = {"connectome": (300, 7000, 6, 20), "10k": (10000, 1_000_000, 5, 20)}
TYPED_QUICK = {"connectome": (300, 7000, 6, 20)}
TYPED_RULES = ("hebbian", "mlp")


def make_typed_graphs(n: int, synapses: int, populations: int = 5, projections: int = 20, synapse_types: int = 2,
                      seed: int = 0, device="cpu") -> tuple[Graph, Graph]:
    """A typed net (``populations`` populations of unequal sizes, one neuron type each, and
    ``projections`` sparse projections, each a random (pre, post, synapse type) triple of its own
    with distinct random synapses, all at about the same density) and the very same synapses as one
    projection of one population: the pair the typed-graph ratio compares."""
    g = torch.Generator().manual_seed(seed)
    cuts = torch.sort(torch.randperm(n - 1, generator=g)[: populations - 1] + 1).values.tolist()
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    triples = [(a, b, s) for a in range(populations) for b in range(populations) for s in range(synapse_types)]
    if projections > len(triples):
        raise ConfigError(f"{projections} projections need more than {populations} populations x {synapse_types} types")
    chosen = [triples[i] for i in torch.randperm(len(triples), generator=g)[:projections].tolist()]
    density = synapses / sum(sizes[a] * sizes[b] for a, b, _ in chosen)
    typed = Network(seed=seed)
    for i, size in enumerate(sizes):
        typed.population(f"p{i}", size, neuron_type=f"t{i}")
    starts = [sum(sizes[:i]) for i in range(populations)]
    pre_all, post_all = [], []
    for a, b, s in chosen:
        pairs = torch.randperm(sizes[a] * sizes[b], generator=g)[: max(1, round(density * sizes[a] * sizes[b]))]
        post_i, pre_i = pairs // sizes[a], pairs % sizes[a]
        typed.connect(f"p{a}", f"p{b}", "explicit", pre_idx=pre_i, post_idx=post_i, synapse_type=f"s{s}",
                      name=f"p{a}->p{b}:s{s}")
        pre_all.append(pre_i + starts[a])
        post_all.append(post_i + starts[b])
    names = [f"p{i}" for i in range(populations)]
    one = (Network(seed=seed).population("all", n, neuron_type="t0")
           .connect("all", "all", "explicit", pre_idx=torch.cat(pre_all), post_idx=torch.cat(post_all)))
    return (typed.inputs(*names).outputs(*names).build(device),
            one.inputs("all").outputs("all").build(device))


def typed_rule(name: str, typed: Graph) -> rules.Rule:
    """The rule both graphs of a typed pair run (the MLP rule sized for the typed graph's types)."""
    torch.manual_seed(0)
    if name == "mlp":
        return rules.MLPRule(typed.num_neuron_types, typed.num_synapse_types).to(typed.device)
    return make_rule(name, typed)


def _ticks_for(v: Variant, ticks: int, backward: bool, device, seconds: float = 0.02, most: int = 20) -> int:
    """``ticks``, or up to ``most`` times as many, so that one timed round takes about ``seconds``."""
    run_variant(v, 1, backward)  # warm
    _sync(device)
    t = time.perf_counter()
    run_variant(v, ticks, backward)
    _sync(device)
    took = time.perf_counter() - t
    return ticks if took >= seconds else min(most * ticks, int(ticks * seconds / max(took, 1e-9)) + 1)


def typed_case(rule_names, batches, repeats: int, device, quick: bool = False, print_row=None) -> tuple[list, dict]:
    """Each typed net against the same synapses as one projection, every rule, batch and mode,
    interleaved: rows (``impl`` ``typed`` / ``one_projection``) and the time ratios typed / one."""
    rows, ratios = [], {}
    for net, (n, synapses, pops, projs) in (TYPED_QUICK if quick else TYPED_NETS).items():
        typed, one = make_typed_graphs(n, synapses, pops, projs, device=device)
        for rule_name in rule_names:
            rule = typed_rule(rule_name, typed)
            for B in batches if n <= 1000 else batches[:1]:
                for backward in (False, True):
                    mode = "fwd+bwd" if backward else "fwd"
                    variants = {impl: make_variant(rule_name, "engine", g, B, backward, rule)
                                for impl, g in (("typed", typed), ("one_projection", one))}
                    # long enough runs that a timing is not one scheduler hiccup: ~1 ms ticks at 300 neurons, ~5 ms
                    # for the Hebbian rule at 10k (3 ticks of it swung the ratio from 1.04 to 1.45 on the shared machine)
                    per = 1 if rule_name == "mlp" else 3
                    ticks = (2 if quick else 3 * per) if n > 1000 else (5 if quick else 10) * per
                    if not quick:  # rounds of at least ~20 ms: 30 Hebbian ticks of 0.05 ms were one preemption from 1.35
                        ticks = _ticks_for(variants["one_projection"], ticks, backward, device)
                    times = time_interleaved(variants, ticks, backward, repeats if quick else max(repeats, 5), device)
                    for impl, sec in times.items():
                        row = dict(rule=rule_name, graph=f"typed:{net}", n=n, synapses=typed.num_edges,
                                   projections=len(typed.projections) if impl == "typed" else 1, batch=B, mode=mode,
                                   impl=impl, s_per_tick=sec, ticks_per_s=1 / sec, syn_updates_per_s=typed.num_edges * B / sec)
                        rows.append(row)
                        if print_row is not None:
                            print_row(row)
                    ratios[f"{rule_name}/{net}/B{B}/{mode}"] = round(times["typed"] / times["one_projection"], 3)
    return rows, ratios


# ---------------------------------------------------------------------- the recall default's meta-training step
def train_step_case(repeats: int, device, quick: bool = False, print_row=None) -> tuple[list, float]:
    """One meta-training step of the built-in default (``simgraph train`` with no arguments: the
    Hebbian-start MLP rule on the 32-neuron recall net, batch 32) at its final load, forward and
    backward through the whole episode, with the rule's default synapse function (``engine``) and
    with plain autograd (``plain``), interleaved in this process: rows and the time ratio plain / engine."""
    from ..train.bptt import unroll
    from ..train.config import Config

    cfg = Config()
    task = cfg.make_task()
    graph = cfg.make_graph(task, device)
    rule = cfg.make_rule(graph).to(graph.device)
    B = cfg.train.batch_size
    episode = task.sample(B, seed=0, device=graph.device)
    T = int(episode.inputs.shape[0])
    modes = {"engine": rule.edge_update, "plain": "plain"}

    def step(mode: str) -> None:
        rule.edge_update = mode
        rule.zero_grad(set_to_none=True)
        unroll(rule, graph, episode, task)
        _sync(graph.device)

    times: dict[str, list[float]] = {k: [] for k in modes}
    for mode in modes.values():  # warm-up: the compiled kernels are built here (or read from torch's cache)
        step(mode)
    for _ in range(max(repeats, 3) if quick else 3 * repeats):
        for impl, mode in modes.items():
            t = time.perf_counter()
            step(mode)
            times[impl].append(time.perf_counter() - t)
    rule.edge_update = modes["engine"]
    rows = []
    for impl, ts in times.items():
        sec = statistics.median(ts)
        row = dict(rule="mlp", graph="recall default", n=graph.num_nodes, synapses=graph.num_edges, batch=B,
                   mode="train step", impl=impl, ticks=T, s_per_step=sec, s_per_tick=sec / T, ticks_per_s=T / sec,
                   syn_updates_per_s=graph.num_edges * B * T / sec)
        rows.append(row)
        if print_row is not None:
            print_row(row)
    return rows, round(statistics.median(times["plain"]) / statistics.median(times["engine"]), 3)


# ---------------------------------------------------------------------- peak memory, one process per variant
def measure_peak(spec: dict) -> dict:
    """Run ``spec`` in a fresh Python and return its peak memory (CPU: max RSS; GPU: max allocated)."""
    cmd = [sys.executable, "-m", "simgraph.bench.suite", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=spec.get("timeout", 900))
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _current_rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak so far, an overestimate of the base)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec; ru_maxrss
    does not (it keeps the forking parent's peak), so it is only the fallback."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Start VmHWM afresh at the current RSS (Linux >= 4.0), so set-up transients (imports, graph
    building) do not hide a run that needs less than they did; set-up's freed memory goes back
    to the OS first, so the run's reuse of it counts."""
    release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_child(spec: dict) -> dict:
    device = torch.device(spec.get("device", "cpu"))
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    graph = make_graph(spec["graph"], spec["n"], spec.get("density", 0.01), device)
    backward = spec["backward"]
    if "episode" in spec:  # a whole episode's forward and backward: plain, checkpointed or lean
        loss = episode_loss(spec["rule"], graph, spec["ticks"], spec["batch"], spec["episode"])
        run = lambda: loss().backward()  # noqa: E731
    else:
        v = make_variant(spec["rule"], spec["impl"], graph, spec["batch"], backward)
        run = lambda: run_variant(v, spec["ticks"], backward)  # noqa: E731
    _reset_peak_rss()
    base = _current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    with torch.set_grad_enabled(backward):
        run()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mb()
    return {"peak_mb": round(peak, 1), "base_mb": round(base, 1), "extra_mb": round(peak - base, 1)}


if __name__ == "__main__":
    print(json.dumps(_peak_child(json.loads(sys.argv[1]))))
