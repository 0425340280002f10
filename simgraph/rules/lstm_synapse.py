"""LSTM synapses, "VSML" (Kirsch & Schmidhuber 2021; REFERENCES.md section 4).

Every synapse ``a -> b`` is a tiny LSTM with state ``s_ab = (h, c)``; all synapses share one
parameter set. Every neuron holds a forward message ``fwd`` and a backward message ``bwd``:

    s_ab  <- LSTM(s_ab, [fwd_a, bwd_b])
    fwd_b  = mean_a Linear_f(h_ab)        (forward phases, into the post population)
    bwd_a  = mean_b Linear_b(h_ab)        (backward phases, into the pre population)

The input value enters channel 0 of the input neurons' ``fwd``; after the forward sweep the
output neurons' ``bwd`` is set to the error ``softmax(pred) - onehot`` (channel 0 onwards, one
row per output neuron, i.e. each neuron gets its own class's error); the prediction is channel 0
of the output neurons' ``fwd``. That error is the only gradient-like signal the network sees.
Backward messages are cleared at the start of each example, so a forward sweep sees no stale error.

Synapses tick ``ticks`` times (micro-ticks) in every phase of the schedule (default
``layer_sweep``: layers in order, then in reverse): the LSTM state is both weight and activity.

Speed: the LSTM's input layer is applied per *node* (``W_f fwd`` and ``W_b bwd`` are ``[B, N, 4H]``)
and broadcast to edges inside ``graph.edge_map``; ``Linear_f`` commutes with the mean, so it is
applied after aggregation to ``[B, N, H]``, never per edge.

Stabilisers (off by default; a run chooses them): ``forget_bias`` / ``input_bias`` set the
default cell's gate biases (VSML's +5 / -5: the state changes slowly, like a weight);
``normalize`` rescales each forward-message channel of every updated population to unit RMS;
``saturation=alpha`` squashes every cell state through ``alpha * tanh(c / alpha)`` after each
micro-tick, so no synapse state can grow without bound over a long stream.

Imported strengths (issue 16): on a graph with ``graph.edge_weight`` (``init_weights="auto"``,
the default, or ``"edge_weight"``) the first cell channel ``c[0]`` of every synapse starts at the
rescaled measured strength times ``init_std`` (``rules/constraints.py``; Dale's law gives signed
synapses ``s * |w|``) instead of a random draw; the other random half of ``c`` stays random. That
channel *is* the weight for ``BackpropCell``; for a learned cell it is one state channel among 16,
and no channel is a signed weight the rule keeps on one side of zero: Dale's law and tied pairs
hold at the start only.

``cell=BackpropCell(lr)`` swaps the learned LSTM for hand-set functions running backprop in
forward mode in the same structure (c[0] = weight, fwd = w x, bwd = w delta, w -= lr x delta);
with ``reduce="sum"`` and ``ticks=1`` it is exactly online SGD on cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..graph import Graph
from ..schedule import Schedule, check_schedule, node_mask, restrict, set_edges, split_phases
from .base import State, SweepRule, seeded_init
from .constraints import check_init, constrain_start, start_weights
from .genome import _rms_normalize

REDUCE = ("mean", "sum")


def _lstm_params(hidden: int, message: int) -> int:
    """How many numbers :class:`LSTMCell` holds: w_fwd, w_bwd (+bias), w_hh, out_f, out_b."""
    return 4 * hidden * (2 * message + hidden + 1) + 2 * (hidden + 1) * message


class LSTMCell(nn.Module):
    """The shared synapse LSTM; input ``[fwd_pre, bwd_post]``, state ``[h, c]``."""

    def __init__(self, hidden: int = 16, message: int = 8, forget_bias: float = 5.0, input_bias: float = -5.0):
        super().__init__()
        from ..errors import check_bytes, check_gain, check_int, dtype_bytes

        hidden, message = check_int("LSTMCell hidden", hidden, 1), check_int("LSTMCell message", message, 1)
        check_bytes(f"LSTMCell(hidden={hidden}, message={message})'s parameters",
                    _lstm_params(hidden, message) * dtype_bytes(), "use a smaller hidden or message size")
        forget_bias, input_bias = check_gain("LSTMCell forget_bias", forget_bias), check_gain("LSTMCell input_bias", input_bias)
        self.hidden, self.message = hidden, message
        self.w_fwd = nn.Linear(message, 4 * hidden, bias=False)
        self.w_bwd = nn.Linear(message, 4 * hidden)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.out_f, self.out_b = nn.Linear(hidden, message), nn.Linear(hidden, message)
        with torch.no_grad():  # gates i, f, g, o: slow state change, like a weight
            self.w_bwd.bias.zero_()
            self.w_bwd.bias[:hidden].fill_(input_bias)
            self.w_bwd.bias[hidden : 2 * hidden].fill_(forget_bias)

    def node_in(self, fwd: Tensor, bwd: Tensor) -> tuple[Tensor, Tensor]:
        return self.w_fwd(fwd), self.w_bwd(bwd)

    def edge(self, x_j: Tensor, y_i: Tensor, s: Tensor) -> Tensor:
        h, c = s.split(self.hidden, -1)
        i, f, g, o = (x_j + y_i + self.w_hh(h)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], -1)


class BackpropCell(nn.Module):
    """Hand-set synapse functions that make the structure run online SGD (forward-mode backprop).

    Messages: ``fwd = [z, 1, 0...]`` (pre-activation and an 'I am computed' flag; input neurons
    carry ``[x, 0, ...]`` so they are not rectified), ``bwd = [delta, 0...]``. Per synapse
    ``c[0] = w``; ``h = [w x_a, w delta_b relu'(z_a), 1, 0...]``; ``w <- w - lr x_a delta_b``.
    """

    def __init__(self, lr: float = 0.1, hidden: int = 16, message: int = 8):
        super().__init__()
        from ..errors import check_bytes, check_gain, check_int, dtype_bytes

        lr = check_gain("BackpropCell lr", lr)
        hidden, message = check_int("BackpropCell hidden", hidden, 3), check_int("BackpropCell message", message, 2)
        check_bytes(f"BackpropCell(hidden={hidden}, message={message})'s parameters",
                    2 * (int(hidden) + 1) * int(message) * dtype_bytes(), "use a smaller hidden or message size")
        self.hidden, self.message, self.lr = int(hidden), int(message), lr
        self.out_f, self.out_b = nn.Linear(hidden, message), nn.Linear(hidden, message)
        with torch.no_grad():
            for lin in (self.out_f, self.out_b):
                lin.weight.zero_()
                lin.bias.zero_()
            self.out_f.weight[0, 0] = 1.0  # z_b = sum_a w x_a
            self.out_f.weight[1, 2] = 1.0  # flag
            self.out_b.weight[0, 1] = 1.0  # delta_a = relu'(z_a) sum_b w delta_b

    def node_in(self, fwd: Tensor, bwd: Tensor) -> tuple[Tensor, Tensor]:
        hidden = fwd[..., 1:2] > 0.5
        x = torch.where(hidden, torch.relu(fwd[..., :1]), fwd[..., :1])
        d = torch.where(hidden, (fwd[..., :1] > 0).to(fwd.dtype), torch.ones_like(x))
        return torch.cat([x, d], -1), bwd[..., :1]

    def edge(self, x_j: Tensor, y_i: Tensor, s: Tensor) -> Tensor:
        h, c = s.split(self.hidden, -1)
        x, d, delta, w = x_j[..., :1], x_j[..., 1:2], y_i, c[..., :1]
        h = torch.cat([w * x, w * delta * d, torch.ones_like(w * x)], -1)
        h = F.pad(h, (0, self.hidden - 3))
        c = torch.cat([w - self.lr * x * delta, c[..., 1:]], -1)
        return torch.cat([h, c], -1)


class LSTMSynapseRule(SweepRule):
    state_fields = ("node", "edge")

    @seeded_init  # the default cell's parameters come from seed
    def __init__(
        self,
        hidden: int = 16,
        message: int = 8,
        ticks: int = 2,
        reduce: str = "mean",
        schedule: "str | Schedule" = "layer_sweep",
        cell: nn.Module | None = None,
        init_std: float = 1.0,
        forget_bias: float = 5.0,
        input_bias: float = -5.0,
        normalize: bool = False,
        saturation: float | None = None,
        init_weights: str = "auto",
        seed: int = 0,
    ):
        super().__init__()
        from ..errors import FLOAT32_MAX, check_bool, check_bytes, check_choice, check_int, check_number, check_seed, check_type, dtype_bytes

        hidden, message, ticks = (check_int(f"LSTMSynapseRule {name}", v, 1)
                                  for name, v in (("hidden", hidden), ("message", message), ("ticks", ticks)))
        if cell is None:  # the default cell, counted before it is built
            check_bytes(f"LSTMSynapseRule(hidden={hidden}, message={message})'s parameters",
                        _lstm_params(hidden, message) * dtype_bytes(), "use a smaller hidden or message size")
        init_std = check_number("LSTMSynapseRule init_std", init_std, low=0.0, high=FLOAT32_MAX)
        seed = check_seed("LSTMSynapseRule seed", seed)
        check_choice("LSTMSynapseRule reduce", reduce, REDUCE)
        check_schedule(schedule)
        if cell is not None:
            check_type("LSTMSynapseRule cell", cell, nn.Module, "an nn.Module with .hidden and .message (an LSTMCell, "
                       "a BackpropCell) or None (the default LSTMCell)")
            for attr in ("hidden", "message"):
                check_int(f"LSTMSynapseRule cell.{attr}", getattr(cell, attr, None))
        if cell is not None and (forget_bias, input_bias) != (5.0, -5.0):
            raise ConfigError("forget_bias and input_bias set the default cell's gates; a given cell keeps its own")
        self.normalize = check_bool("LSTMSynapseRule normalize", normalize)
        if saturation is not None:
            saturation = check_number("LSTMSynapseRule saturation (None: off)", saturation, positive=True)
        self.saturation, self.init_weights = saturation, check_init("LSTMSynapseRule", init_weights)
        self.cell = cell if cell is not None else LSTMCell(hidden, message, forget_bias, input_bias)
        if (self.cell.hidden, self.cell.message) != (hidden, message):
            raise ConfigError(f"cell has hidden={self.cell.hidden}, message={self.cell.message}; rule has {hidden}, {message}")
        self.hidden, self.message, self.ticks, self.reduce = hidden, message, ticks, reduce
        self.schedule, self.init_std, self.seed = schedule, float(init_std), int(seed)
        self.node_dim, self.edge_dim, self.input_dim, self.output_dim = 2 * message, 2 * hidden, 1, 1

    def init_state(self, graph: Graph, batch_size: int, generator: torch.Generator | None = None) -> State:
        """h = 0; the first half of c ~ N(0, init_std^2 / fan_in) per synapse and episode, rest 0;
        ``c[0]`` from the graph's measured strengths where it has them (``init_weights``)."""
        batch_size = self.check_init(graph, batch_size)  # check_graph, then the batch size and its bytes
        dtype = self.cell.out_f.weight.dtype
        g = generator or torch.Generator().manual_seed(self.seed)
        fan_in = graph.post(graph.in_degree().view(1, -1, 1).to(dtype)).clamp(min=1)
        half = self.hidden // 2
        c = torch.randn(batch_size, graph.num_edges, half, generator=g, dtype=dtype).to(graph.device)
        c = self.init_std * c / fan_in.sqrt()
        measured = start_weights(graph, "LSTMSynapseRule", self.init_weights)
        if measured is not None:
            w0 = constrain_start(graph, self.init_std * measured.to(graph.device, dtype))  # [E, 1]
            c = torch.cat([w0.unsqueeze(0).expand(batch_size, -1, -1), c[..., 1:]], -1)  # hidden=1: c is w0 alone
        edge = torch.cat([c.new_zeros(batch_size, graph.num_edges, self.hidden), c,
                          c.new_zeros(batch_size, graph.num_edges, self.hidden - c.shape[-1])], -1)
        node = torch.zeros(batch_size, graph.num_nodes, self.node_dim, dtype=dtype, device=graph.device)
        return {"node": node, "edge": edge}

    # ------------------------------------------------------------------ one example (step, backward_pass: SweepRule)
    def forward_pass(self, graph: Graph, state: State, inputs: Tensor) -> State:
        self.check_inputs(graph, inputs)
        M = self.message
        x = state["node"]
        fwd = torch.where(graph.input_mask(), F.pad(inputs.to(x.dtype), (0, M - inputs.shape[-1])), x[..., :M])
        x, s = torch.cat([fwd, torch.zeros_like(fwd)], -1), state["edge"]  # clear stale errors
        for ph in split_phases(self.schedule, graph)[0]:
            x, s = self._phase(graph, ph, x, s)
        return {**state, "node": x, "edge": s}

    # ------------------------------------------------------------------ pieces
    def _inject(self, graph: Graph, x: Tensor, target: Tensor) -> Tensor:
        n_out, M = graph.num_outputs, self.message
        if target.dim() != 2 or target.shape[1] != n_out:
            raise ShapeError(f"target must be one-hot [B, {n_out}] (one column per output neuron), got {list(target.shape)}")
        err = torch.softmax(self.readout(graph, {"node": x}), -1) - target.to(x.dtype)  # [B, n_out]
        bwd = graph.write_outputs(x[..., M:], F.pad(err.unsqueeze(-1), (0, M - 1)))
        return torch.cat([x[..., :M], bwd], -1)

    def _phase(self, graph: Graph, ph, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        view, M, cell = restrict(graph, ph.projections), self.message, self.cell
        edge = cell.edge if self.saturation is None else self._saturated
        for _ in range(self.ticks):
            x_j, y_i = cell.node_in(x[..., :M], x[..., M:])
            part = view.edge_map(edge, pre=[x_j], post=[y_i], edge=[s])
            s = set_edges(graph, s, view, part)
        h = s[..., : self.hidden]
        mask = node_mask(graph, ph.populations)
        fwd, bwd = x[..., :M], x[..., M:]
        if ph.direction in ("forward", "both"):
            new, reached = self._aggregate(view, h, cell.out_f, into_post=True)
            fwd = torch.where(mask & reached, new, fwd)
            if self.normalize:  # per channel over each updated population
                fwd = torch.cat([_rms_normalize(fwd[:, p.slice]) if n in ph.populations else fwd[:, p.slice]
                                 for n, p in graph.populations.items()], 1)
        if ph.direction in ("backward", "both"):
            new, reached = self._aggregate(view, h, cell.out_b, into_post=False)
            bwd = torch.where(mask & reached, new, bwd)
        return torch.cat([fwd, bwd], -1), s

    def _saturated(self, x_j: Tensor, y_i: Tensor, s: Tensor) -> Tensor:
        h, c = self.cell.edge(x_j, y_i, s).split(self.hidden, -1)
        return torch.cat([h, self.saturation * torch.tanh(c / self.saturation)], -1)

    def _aggregate(self, view: Graph, h: Tensor, lin: nn.Linear, into_post: bool) -> tuple[Tensor, Tensor]:
        """reduce(Linear(h)) computed as Linear(reduce(h)); which nodes the view reaches."""
        agg = view.to_post(h, self.reduce) if into_post else view.to_pre(h, self.reduce)
        deg = (view.in_degree() if into_post else view.out_degree()).view(1, -1, 1).to(h.dtype)
        out = F.linear(agg, lin.weight) + lin.bias * (deg if self.reduce == "sum" else 1.0)
        return out, deg > 0
