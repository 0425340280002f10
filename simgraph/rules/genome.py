"""Bidirectional multi-state rules, "BLUR" (Sandler et al. 2021; REFERENCES.md section 3).

Every neuron has ``k`` states ``a [k]``, every synapse ``k`` forward channels ``w`` (and, when
``symmetric=False``, ``k`` separate backward channels ``w~``). One *genome* shared by all of them:

    forward   a_j <- s_f( f_f * a_j + eta_f * sum_i w_ij * (nu a_i) )                 (channel-wise)
    backward  a_i <- s_b( f_b * a_i + eta_b * m_i + gamma * a_i * m_i ),  m_i = sum_j w~_ji * (mu a_j)
    synapse   w_ij <- f~ * w_ij + eta~ * (a_i nu~) * (mu~ a_j)      [+ stabilisers]

(``i`` presynaptic, ``j`` postsynaptic). The paper's gates f, eta are scalars; here they are
per-state vectors and the backward update has an extra multiplicative gate ``gamma``, a superset
that contains the paper's genome (all entries equal, gamma = 0) and, as a point of the same
space, backprop: state 0 = activation, state 1 = derivative, the backward pass multiplies the
second state only (gamma = (0, 1)), single-valued symmetric synapses. See :func:`backprop_genome`.

``readout_gain=True`` adds one meta-parameter, a positive gain on the logits the loss reads
(``exp(log_gain) * a^0``; the rule's own dynamics never see it): meta-training on cross-entropy
can then calibrate the logits there instead of bending the genome to shrink them (argmax, hence
accuracy, does not depend on it).

No loss or gradient enters the network: before the backward sweep the output neurons' second
state is set from the label, ``a^1 <- beta0 a^0 + beta1 * l + beta2 a^1`` with ``l = +1`` for the
true class and ``-1`` otherwise (the paper's injection is beta = (0, 1, 0); backprop on the
squared error to +-1 targets is beta = (1, -1, 0)). Logits are the output neurons' first state.

Stabilisers (all off by default; a run chooses them): ``normalize`` rescales each state channel
of every updated population to unit RMS; ``oja`` subtracts ``oja * (mu~ a_j)^2 * w`` (an
Oja-like decay); ``saturation=alpha`` squashes synapses through ``alpha * tanh(w / alpha)``;
``synapse_norm=r`` rescales each neuron's incoming synapses, per channel, to L2 norm ``r`` after
every update (BLUR's normalisation of incoming synapse norms); ``anneal=tau0`` divides the synapse
rate by ``1 + n / tau`` after ``n`` examples of the episode (each synapse counting its own updates,
so still local; ``tau`` a meta-parameter starting at ``tau0``): the Robbins-Monro 1/t decay that
lets a genome learn fast early without unlearning late, which a constant-rate genome cannot do.

``tied=True`` gives every synapse one weight that all ``k`` channels read (``edge_dim`` 1, as in
backprop), updated by the mean of the genome's ``k`` channel updates; backprop is the same point of
the tied space. Why (issue 17): untied, a learned genome drives the channels apart (on iris,
channel 0 vs 1 at cosine 0.97 after 100 examples, 0.91 after 500, seed 0 of the fading genome) and
backprop never brings them back together, since it updates both channels alike: its backward
sweep then runs on other weights than the forward one, and learning late slows (iris .808 at
step 500 against backprop's .837; forcing the channels equal after every example: .831).

``fade=T`` makes the meta-learned genome a residual over its start that fades with experience:
after ``n`` examples of the episode every genome entry is ``theta_0 + (theta - theta_0) / (1 + n / T)``,
``theta_0`` the genome it started from (:meth:`GenomeRule.anchor`; :func:`backprop_genome` anchors at
backprop). Early in an episode it is the learned rule, late it is its start. ``fade_times``
(``{entry: T}``) gives some entries their own fade; ``learn_fade=True`` makes every entry's fade
time a meta-parameter (``log_fade``, starting at ``fade`` / ``fade_times``; a checkpoint without it,
``train.init_from``, loads with those starts; one with it brings its own, which replace them). Why (issue 17, seed 0 of
``runs/l2l_genome_anneal.toml``, 64 held-out episodes): a learned genome learns faster than backprop in
the first 20 examples but settles lower by example 500 (digits 5-9 .839 vs .868), because its learned
label injection ``beta`` stops following the error; handing the same genome back to backprop with
``T = 20`` kept the early lead (.591 at 20) and ended at backprop's level (.871 at 500).

Imported strengths (issue 16): on a graph with ``graph.edge_weight`` (``init_weights="auto"``,
the default, or ``"edge_weight"``) every episode starts with all synapse channels at the
rescaled measured strengths times ``init_scale`` (``rules/constraints.py``: ``w0 = edge_weight /
(mean|edge_weight| sqrt(mean indegree))``) instead of a random draw; ``"default"`` ignores
them. Dale's law (``graph.edge_sign``) and tied gap-junction pairs (``graph.edge_partner``) hold
the forward channels, at the start and after every update, as for the Hebbian and plastic
rules; the backward channels of ``symmetric=False`` are feedback paths, not synapses, and stay free.

The order of updates is a :class:`simgraph.schedule.Schedule`; ``layer_sweep`` (default) runs one
forward pass and one backward pass per ``step``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, check_choice, check_gain, check_number, unknown
from ..graph import Graph
from ..schedule import Schedule, check_schedule, node_mask, restrict, set_edges, split_phases
from .base import State, SweepRule
from .constraints import check_init, constrain, constrain_start, constrained, start_weights

# per-state nonlinearities; "step" and "one" are the derivatives of relu and identity
ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "step": lambda x: (x > 0).to(x.dtype),
    "one": torch.ones_like,
}
INJECTIONS = ("label", "softmax_error")
# fade and anneal times, in examples: n / T and log T stay finite in float32 for any episode (a time of 1e-46
# is 0 in float32, and 0 / 0 NaN at the first example; one of 1e39 is inf, and log(inf) a NaN gradient)
TIME_MIN, TIME_MAX = 1e-6, 1e30
# the genome: the meta-parameters of the neuron and synapse updates (``fade`` blends these back to their start)
GENOME = ("f_fwd", "eta_fwd", "f_bwd", "eta_bwd", "gamma", "f_syn", "eta_syn", "nu", "mu", "nu_syn", "mu_syn", "beta")


class GenomeRule(SweepRule):
    def __init__(
        self,
        k: int = 2,
        sigma: tuple[str, ...] | None = None,
        output_sigma: tuple[str, ...] | None = None,
        backward_sigma: tuple[str, ...] | None = None,
        symmetric: bool = True,
        tied: bool = False,
        schedule: "str | Schedule" = "layer_sweep",
        injection: str = "label",
        normalize: bool = False,
        oja: float = 0.0,
        saturation: float | None = None,
        synapse_norm: float | None = None,
        anneal: float | None = None,
        fade: float | None = None,
        fade_times: dict | None = None,
        learn_fade: bool = False,
        init_scale: float = 1.0,
        init_weights: str = "auto",
        readout_gain: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        from ..errors import check_bool, check_bytes, check_number, check_seed, dtype_bytes, is_int

        if not is_int(k) or k < 2:
            raise ConfigError(f"GenomeRule k must be an int >= 2 (activation and label states), got {k!r}")
        k = int(k)
        # the genome's k x k matrices (and the k-tuples of activation names built below), before allocating any
        check_bytes(f"GenomeRule(k={k})'s parameters", (4 * k * k + 5 * k) * dtype_bytes() + 3 * 8 * k,
                    "use a smaller k (states per neuron)")
        for what, names in (("sigma", sigma), ("output_sigma", output_sigma), ("backward_sigma", backward_sigma)):
            if names is not None and (isinstance(names, str) or not isinstance(names, (tuple, list))):  # not letters of a string
                raise ConfigError(f"GenomeRule {what} must be a tuple of {k} activation names (one per state), got {names!r}")
        symmetric, normalize = check_bool("GenomeRule symmetric", symmetric), check_bool("GenomeRule normalize", normalize)
        tied = check_bool("GenomeRule tied", tied)
        if tied and not symmetric:
            raise ConfigError("GenomeRule tied=True (one weight per synapse) needs symmetric=True: separate backward "
                              "channels are the opposite choice")
        readout_gain = check_bool("GenomeRule readout_gain", readout_gain)
        oja, init_scale = check_number("GenomeRule oja", oja), check_number("GenomeRule init_scale", init_scale)
        if saturation is not None:
            saturation = check_number("GenomeRule saturation (None: no saturation)", saturation, positive=True)
        if synapse_norm is not None:
            synapse_norm = check_number("GenomeRule synapse_norm (None: off)", synapse_norm, positive=True)
        if anneal is not None:
            anneal = check_number("GenomeRule anneal (the starting 1/t time constant in examples; None: off)", anneal,
                                  low=TIME_MIN, high=TIME_MAX)
        if fade is not None:
            fade = check_number("GenomeRule fade (examples until the learned residual over the start halves; None: off)",
                                fade, low=TIME_MIN, high=TIME_MAX)
        learn_fade = check_bool("GenomeRule learn_fade", learn_fade)
        if fade_times is not None and not isinstance(fade_times, dict):
            raise ConfigError(f"GenomeRule fade_times must be a {{genome entry: examples}} table, got {fade_times!r}")
        if (fade_times or learn_fade) and fade is None:
            raise ConfigError("GenomeRule fade_times and learn_fade set the fade of each genome entry; they need fade=T "
                              "(the fade of the entries not named)")
        fade_times = {check_choice("GenomeRule fade_times entry", name, GENOME):
                      check_number(f"GenomeRule fade_times[{name!r}]", t, low=TIME_MIN, high=TIME_MAX)
                      for name, t in (fade_times or {}).items()}
        self.init_weights = check_init("GenomeRule", init_weights)
        seed = check_seed("GenomeRule seed", seed)
        sigma = tuple(sigma or ("tanh",) * k)
        output_sigma = tuple(output_sigma or sigma)
        backward_sigma = tuple(backward_sigma or ("identity",) * k)
        for what, names in (("sigma", sigma), ("output_sigma", output_sigma), ("backward_sigma", backward_sigma)):
            if len(names) != k:
                raise ConfigError(f"GenomeRule {what} needs one activation per state (k={k}), got {names}")
            for n in names:
                if not isinstance(n, str) or n not in ACTIVATIONS:
                    raise unknown(f"activation in GenomeRule {what}", n, ACTIVATIONS)
        check_schedule(schedule)
        if injection not in INJECTIONS:
            raise unknown("GenomeRule injection", injection, INJECTIONS)
        self.k, self.symmetric, self.injection = k, bool(symmetric), injection
        self.sigma, self.output_sigma, self.backward_sigma = sigma, output_sigma, backward_sigma
        self.schedule, self.normalize, self.oja, self.saturation = schedule, bool(normalize), float(oja), saturation
        self.init_scale, self.seed, self.synapse_norm = float(init_scale), int(seed), synapse_norm
        self.tied = tied
        self.node_dim, self.edge_dim = k, 1 if tied else k if symmetric else 2 * k
        self.input_dim, self.output_dim = 1, 1

        g = torch.Generator().manual_seed(seed)
        small = lambda *s: nn.Parameter(0.5 * torch.randn(*s, generator=g))  # noqa: E731
        self.f_fwd, self.eta_fwd = nn.Parameter(torch.zeros(k)), nn.Parameter(torch.ones(k))
        self.f_bwd, self.eta_bwd = nn.Parameter(torch.ones(k)), nn.Parameter(0.1 * torch.ones(k))
        self.gamma = nn.Parameter(torch.zeros(k))
        self.f_syn, self.eta_syn = nn.Parameter(torch.ones(())), nn.Parameter(torch.tensor(-0.01))
        self.nu, self.mu = small(k, k), small(k, k)  # forward / backward neuron transforms
        self.nu_syn, self.mu_syn = small(k, k), small(k, k)  # pre- / post-synaptic transforms
        self.beta = nn.Parameter(torch.tensor([0.0, 1.0, 0.0]))  # label injection mix
        self.readout_gain = readout_gain
        if readout_gain:  # only then a parameter: checkpoints of genomes without it still load
            self.log_gain = nn.Parameter(torch.zeros(()))
        self.anneal = anneal
        if anneal is not None:  # likewise
            self.log_tau = nn.Parameter(torch.tensor(float(anneal)).log())
        self.fade, self.fade_times, self.learn_fade = fade, fade_times, learn_fade
        if fade is not None:  # the start the residual fades back to, saved with the rule
            for name in GENOME:
                self.register_buffer(f"anchor_{name}", getattr(self, name).detach().clone())
        if learn_fade:  # each entry's fade time a meta-parameter, log T (in GENOME's order)
            self.log_fade = nn.Parameter(torch.tensor([float(fade_times.get(name, fade)) for name in GENOME]).log())
        # updates: the examples learned from this episode, a field only an annealed or fading genome uses (check_state)
        counts = anneal is not None or fade is not None
        self.state_fields = ("node", "edge", "updates") if counts else ("node", "edge")

    def anchor(self) -> "GenomeRule":
        """Make the current genome the start that ``fade`` returns to (a no-op without ``fade``)."""
        if self.fade is not None:
            with torch.no_grad():
                for name in GENOME:
                    getattr(self, f"anchor_{name}").copy_(getattr(self, name))
        return self

    def _genome(self, state: State) -> dict[str, Tensor]:
        """The genome entries this example uses: the parameters, or with ``fade`` per episode
        ``theta_0 + (theta - theta_0) / (1 + n / T)`` (vectors ``[B, 1, k]``, matrices ``[B, k, k]``)."""
        if self.fade is None:
            return {name: getattr(self, name) for name in GENOME}
        n = self._count(state)  # [B, 1, 1]
        if self.learn_fade:
            times = dict(zip(GENOME, self.log_fade.exp().unbind(0)))
        else:
            times = {name: self.fade_times.get(name, self.fade) for name in GENOME}
        out = {}
        for name in GENOME:
            start = getattr(self, f"anchor_{name}")
            out[name] = start + (getattr(self, name) - start) / (1 + n / times[name])
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a genome trained without learned fade times starts this one's at fade / fade_times (train.init_from)
        if self.learn_fade and prefix + "log_fade" not in state_dict:
            state_dict[prefix + "log_fade"] = self.log_fade.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ state
    def init_state(self, graph: Graph, batch_size: int, generator: torch.Generator | None = None) -> State:
        """Zero neuron states; synapses ~ N(0, init_scale^2 / fan_in) per episode, or the graph's
        rescaled measured strengths times ``init_scale`` (``init_weights``); all channels equal
        (backward channels too, so a symmetric start)."""
        batch_size = self.check_init(graph, batch_size)  # check_graph, then the batch size and its bytes
        dtype = self.f_fwd.dtype
        measured = start_weights(graph, "GenomeRule", self.init_weights)
        if measured is not None:
            w = constrain_start(graph, self.init_scale * measured.to(graph.device, dtype))
            w = w.unsqueeze(0).expand(batch_size, -1, -1)
        else:
            g = generator or torch.Generator().manual_seed(self.seed)
            fan_in = graph.post(graph.in_degree().view(1, -1, 1).to(dtype)).clamp(min=1)  # [1, E, 1]
            w = torch.randn(batch_size, graph.num_edges, 1, generator=g, dtype=dtype).to(graph.device)
            w = self.init_scale * w / fan_in.sqrt()
            if constrained(graph):  # constrain_start takes [E, D]: the episodes as channels
                w = constrain_start(graph, w[..., 0].T).T.unsqueeze(-1)
        w = w.expand(-1, -1, self.edge_dim).contiguous()
        state = {"node": torch.zeros(batch_size, graph.num_nodes, self.k, dtype=dtype, device=graph.device), "edge": w}
        if "updates" in self.state_fields:  # examples learned from so far in this episode
            state["updates"] = torch.zeros(batch_size, 1, 1, dtype=dtype, device=graph.device)
        return state

    # ------------------------------------------------------------------ one example (step, backward_pass: SweepRule)
    def forward_pass(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        a = self._clamp(graph, state["node"], inputs)
        w, rate, g = state["edge"], self._rate(state), self._genome(state)
        for ph in split_phases(self.schedule, graph)[0]:
            a, w = self._phase(graph, ph, g, a, w, inputs, rate)
        return {**state, "node": a, "edge": w}

    def backward_pass(self, graph: Graph, state: State, target: Tensor | None) -> State:
        a, w, rate, g = state["node"], state["edge"], self._rate(state), self._genome(state)
        if target is not None:
            a = self._inject(graph, g, a, target)
        for ph in split_phases(self.schedule, graph)[1]:
            a, w = self._phase(graph, ph, g, a, w, None, rate)
        state = {**state, "node": a, "edge": w}
        if "updates" in self.state_fields and target is not None:  # one more example learned from
            state["updates"] = state["updates"] + 1
        return state

    def _count(self, state: State) -> Tensor:
        if "updates" not in state:
            raise ShapeError("GenomeRule(anneal=... or fade=...) needs state['updates'] [B, 1, 1]: start the state "
                             "with init_state")
        return state["updates"]

    def _rate(self, state: State) -> Tensor | None:
        """The synapse-rate factor ``1 / (1 + n / tau)`` ``[B, 1, 1]`` (None: no annealing)."""
        if self.anneal is None:
            return None
        return 1 / (1 + self._count(state) / self.log_tau.exp())

    def readout(self, graph: Graph, state: State) -> Tensor:
        logits = super().readout(graph, state)
        return logits * self.log_gain.exp() if self.readout_gain else logits

    # ------------------------------------------------------------------ pieces
    def _clamp(self, graph: Graph, a: Tensor, inputs: Tensor) -> Tensor:
        """Input neurons: state 0 = the input value, other states 0."""
        m = graph.input_mask()
        u = F.pad(inputs.to(a.dtype), (0, self.k - inputs.shape[-1]))
        return torch.where(m, u, a)

    def _inject(self, graph: Graph, g: dict[str, Tensor], a: Tensor, target: Tensor) -> Tensor:
        n_out = graph.num_outputs
        if target.dim() != 2 or target.shape[1] != n_out:
            raise ShapeError(f"target must be one-hot [B, {n_out}] (one column per output neuron), got {list(target.shape)}")
        out = graph.read_outputs(a)  # [B, n_out, k]
        t = target.to(a.dtype)
        if self.injection == "label":
            l = 2 * t - 1
            beta = g["beta"]  # [3], or [B, 1, 3] with fade
            s1 = beta[..., 0] * out[..., 0] + beta[..., 1] * l + beta[..., 2] * out[..., 1]
        else:  # softmax_error: the cross-entropy gradient, for comparisons with SGD on that loss
            s1 = torch.softmax(out[..., 0], -1) - t
        out = torch.cat([out[..., :1], s1.unsqueeze(-1), out[..., 2:]], -1)
        return graph.write_outputs(a, out)

    def _act(self, graph: Graph, names: tuple[str, ...], x: Tensor) -> Tensor:
        return torch.stack([ACTIVATIONS[n](x[..., c]) for c, n in enumerate(names)], -1)

    def _phase(self, graph: Graph, ph, g: dict[str, Tensor], a: Tensor, w: Tensor, inputs: Tensor | None = None,
               rate: Tensor | None = None):
        view = restrict(graph, ph.projections)
        mask = node_mask(graph, ph.populations)
        w_f = w.expand(-1, -1, self.k) if self.tied else w[..., : self.k]
        w_b = w_f if self.symmetric else w[..., self.k :]
        new = a
        if ph.direction in ("forward", "both"):
            h = view.propagate(w_f, a @ g["nu"].transpose(-1, -2))
            z = g["f_fwd"] * a + g["eta_fwd"] * h
            out = graph.output_mask()
            new = torch.where(out, self._act(graph, self.output_sigma, z), self._act(graph, self.sigma, z))
            # neurons that got no forward input this phase (e.g. inputs in "both") keep their state
            new = torch.where(graph.input_mask(), a, new)
        if ph.direction in ("backward", "both"):
            m = view.propagate_back(w_b, a @ g["mu"].transpose(-1, -2))
            new = self._act(graph, self.backward_sigma, g["f_bwd"] * new + g["eta_bwd"] * m + g["gamma"] * new * m)
        if self.normalize and ph.direction != "backward":  # per state channel over each population
            new = torch.cat([_rms_normalize(new[:, p.slice]) if n in ph.populations else new[:, p.slice]
                             for n, p in graph.populations.items()], 1)
        a = torch.where(mask, new, a)
        if ph.learn:
            w = self._learn(graph, view, g, a, w, rate)
        return a, w

    def _learn(self, graph: Graph, view: Graph, g: dict[str, Tensor], a: Tensor, w: Tensor,
               rate: Tensor | None = None) -> Tensor:
        p = a @ g["nu_syn"]  # presynaptic factor per node  [B, N, k]
        q = a @ g["mu_syn"].transpose(-1, -2)  # postsynaptic factor per node [B, N, k]
        if not self.symmetric:
            p, q = p.repeat(1, 1, 2), q.repeat(1, 1, 2)
        f, eta, oja, alpha = g["f_syn"], g["eta_syn"], self.oja, self.saturation
        if rate is not None:  # annealed: the presynaptic factor carries the episode's rate  [B, 1, 1]
            p = p * rate
        p = p * eta  # so does the synapse rate (the same numbers as eta * p_i * q_j; with fade eta is [B, 1, 1])
        # with fade f is per episode [B, 1, 1]: a node view, so every layout broadcasts it like p
        pre = [p, f.expand(-1, a.shape[1], 1)] if f.dim() else [p]

        def update(*views):
            p_i, f_i, q_j, w_ij = views if f.dim() else (views[0], f, *views[1:])
            new = f_i * w_ij + p_i * q_j
            if oja:
                new = new - oja * q_j * q_j * w_ij
            new = new.mean(-1, keepdim=True) if self.tied else new  # one weight: the channels' mean update
            return alpha * torch.tanh(new / alpha) if alpha else new

        w = set_edges(graph, w, view, view.edge_map(update, pre=pre, post=[q], edge=[w]))
        if self.synapse_norm is not None:  # every neuron's incoming synapses back to norm r, per channel
            norm = graph.post(graph.to_post(w.square(), "sum").add(1e-12).sqrt())
            w = self.synapse_norm * w / norm
        if constrained(graph):  # Dale's law and tied pairs on the forward channels (the synapses)
            w = torch.cat([constrain(graph, w[..., : self.k]), w[..., self.k :]], -1)
        return w


def _rms_normalize(x: Tensor) -> Tensor:
    return x / x.pow(2).mean(1, keepdim=True).add(1e-6).sqrt()


def backprop_genome(lr: float = 0.1, schedule: "str | Schedule" = "layer_sweep", loss: str = "mse", **kw) -> GenomeRule:
    """The genome whose rule *is* online SGD on a ReLU MLP without biases.

    State 0 = activation, state 1 = derivative (relu' in the forward sweep, then the error signal
    delta in the backward sweep); synapses hold one weight in both channels. ``loss="mse"``:
    0.5 * ||logits - (2 onehot - 1)||^2 through the paper's +-1 label injection; ``loss="ce"``:
    cross-entropy through ``injection="softmax_error"``.
    """
    lr = check_gain("backprop_genome lr", lr)
    losses = {"mse": "label", "ce": "softmax_error"}
    if not isinstance(loss, str) or loss not in losses:
        raise unknown("backprop_genome loss", loss, losses)
    import inspect

    fixed = ("k", "sigma", "output_sigma", "backward_sigma", "injection")  # what makes it backprop
    free = [name for name in inspect.signature(GenomeRule.__init__).parameters if name not in ("self", *fixed, "schedule")]
    for name in kw:
        if name in fixed:
            raise ConfigError(f"backprop_genome sets {name} itself (it is part of what makes the genome backprop); "
                              f"build a GenomeRule to choose it")
        check_choice("backprop_genome setting", name, free)
    rule = GenomeRule(2, sigma=("relu", "step"), output_sigma=("identity", "one"), backward_sigma=("identity", "identity"),
                      schedule=schedule, injection=losses[loss], **kw)
    eye = lambda rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        rule.f_fwd.copy_(torch.tensor([0.0, 0.0]))
        rule.eta_fwd.copy_(torch.tensor([1.0, 1.0]))
        rule.nu.copy_(eye([[1, 0], [1, 0]]))  # both states see z = sum_i w_ij a_i^0
        rule.f_bwd.copy_(torch.tensor([1.0, 0.0]))  # keep the activation
        rule.eta_bwd.copy_(torch.tensor([0.0, 0.0]))
        rule.gamma.copy_(torch.tensor([0.0, 1.0]))  # delta_i = relu'(z_i) * sum_j w_ji delta_j
        rule.mu.copy_(eye([[0, 0], [0, 1]]))
        rule.f_syn.fill_(1.0)
        rule.eta_syn.fill_(-lr)  # w_ij -= lr * a_i * delta_j, in both channels
        rule.nu_syn.copy_(eye([[1, 1], [0, 0]]))
        rule.mu_syn.copy_(eye([[0, 1], [0, 1]]))
        rule.beta.copy_(torch.tensor([1.0, -1.0, 0.0]))  # delta_out = logits - target
    return rule.anchor()  # with fade, the learned residual fades back to backprop
